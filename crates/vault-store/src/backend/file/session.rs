//! A session on a vault directory: the `flock` held for its lifetime, and the operations allowed
//! under it. A write session removes what interrupted operations left behind (temp files, logs of
//! older epochs) before it first reads the log of the epoch the caller found in the header.

use super::{FileBackend, HEADER};
use crate::Result;
use crate::backend::{
    Appended, Cursor, Frames, ReadOutcome, ReadSession, StoredFrame, Visit, WriteSession,
};
use crate::io::IoLock;

/// A read or write session: the lock file's descriptor, whose closing releases the `flock`.
pub(super) struct FileSession<'a> {
    pub(super) backend: &'a FileBackend,
    pub(super) _lock: Box<dyn IoLock>,
    /// The lock is exclusive.
    pub(super) writer: bool,
}

impl ReadSession for FileSession<'_> {
    fn header(&self) -> Result<Vec<u8>> {
        self.backend.read_header_file()
    }

    fn read(
        &self,
        key_epoch: u32,
        since: &Cursor,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome> {
        if self.writer {
            self.backend.clean_before(key_epoch)?;
        }
        self.backend.read_log(key_epoch, since, visit)
    }
}

impl WriteSession for FileSession<'_> {
    fn append(&mut self, key_epoch: u32, expected: &Cursor, frame: &[u8]) -> Result<Appended> {
        self.backend.append_frame(key_epoch, expected, frame)
    }

    fn discard_tail(&mut self, key_epoch: u32, at: &Cursor) -> Result<()> {
        self.backend.truncate_log(key_epoch, at)
    }

    fn replace_log(&mut self, key_epoch: u32, frames: &mut Frames<'_>) -> Result<Cursor> {
        self.backend.write_log(key_epoch, frames)
    }

    fn rekey(&mut self, new_epoch: u32, frames: &mut Frames<'_>, header: &[u8]) -> Result<Cursor> {
        let b = self.backend;
        let old_epoch = new_epoch.wrapping_sub(1);
        let new_log = b.log_path(new_epoch);
        let pos = match b.write_log(new_epoch, frames) {
            Ok(pos) => pos,
            Err(e) => {
                let _ = b.io.remove(&new_log);
                return Err(e);
            }
        };
        // The commit point: until the new header is in place the old key and log are current.
        if let Err(e) = b.replace_file(HEADER, header) {
            // Unless the rename happened (only its directory fsync failed, and the new header may
            // be current), the new log is garbage under a key nobody has: remove it.
            if b.read_header_file().ok().as_deref() != Some(header) {
                let _ = b.io.remove(&new_log);
            }
            return Err(e);
        }
        // If this fails, the next write session removes the old log.
        let _ = b.io.remove(&b.log_path(old_epoch));
        let _ = b.io.sync_dir(&b.dir);
        Ok(pos)
    }

    fn write_header(&mut self, header: &[u8]) -> Result<()> {
        self.backend.replace_file(HEADER, header)
    }
}
