//! A session on a vault directory: the `flock` held for its lifetime, and the operations allowed
//! under it. A write session removes what interrupted operations left behind (temp files, logs of
//! older epochs) before it first reads the log of the epoch the caller found in the header.

use std::cell::RefCell;

use super::{FileBackend, HEADER};
use crate::Result;
use crate::backend::{
    Appended, Cursor, Frames, IndexFile, IndexWriter, ReadOutcome, ReadSession, RecordAt,
    RecordSource, StoredFrame, Visit, WriteSession,
};
use crate::io::{IoFile, IoLock};

/// A read or write session: the lock file's descriptor, whose closing releases the `flock`.
pub(super) struct FileSession<'a> {
    pub(super) backend: &'a FileBackend,
    pub(super) _lock: Box<dyn IoLock>,
    /// The lock is exclusive.
    pub(super) writer: bool,
    /// The log last read a record from, by epoch: a snapshot copies records one at a time, and
    /// opening the file for each would cost more than reading it. Forgotten whenever this
    /// session replaces a log.
    pub(super) open_log: RefCell<Option<(u32, Box<dyn IoFile>)>>,
}

impl RecordSource for FileSession<'_> {
    fn read_record(&self, key_epoch: u32, at: RecordAt) -> Result<Vec<u8>> {
        let mut open = self.open_log.borrow_mut();
        if open.as_ref().is_none_or(|(e, _)| *e != key_epoch) {
            *open = Some((key_epoch, self.backend.open_log(key_epoch, false)?));
        }
        match open.as_ref() {
            Some((_, f)) => self.backend.read_record_in(&**f, key_epoch, at),
            None => Err(crate::Error::Rekeyed),
        }
    }
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

    fn open_index(&self, key_epoch: u32) -> Result<Option<Box<dyn IndexFile>>> {
        self.backend.open_index_file(key_epoch)
    }
}

impl WriteSession for FileSession<'_> {
    fn append(&mut self, key_epoch: u32, expected: &Cursor, frame: &[u8]) -> Result<Appended> {
        self.backend.append_frame(key_epoch, expected, frame)
    }

    fn discard_tail(&mut self, key_epoch: u32, at: &Cursor) -> Result<()> {
        self.open_log.get_mut().take();
        self.backend.truncate_log(key_epoch, at)
    }

    fn replace_log(&mut self, key_epoch: u32, frames: &mut Frames<'_>) -> Result<Vec<Cursor>> {
        let written = self.backend.write_log(key_epoch, frames, &*self);
        self.open_log.get_mut().take();
        written
    }

    fn rekey(
        &mut self,
        new_epoch: u32,
        frames: &mut Frames<'_>,
        header: &[u8],
    ) -> Result<Vec<Cursor>> {
        let b = self.backend;
        let old_epoch = new_epoch.wrapping_sub(1);
        let new_log = b.log_path(new_epoch);
        let written = b.write_log(new_epoch, frames, &*self);
        self.open_log.get_mut().take();
        let pos = match written {
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
        // If this fails, the next write session removes the old log (and index).
        let _ = b.io.remove(&b.log_path(old_epoch));
        let _ = b.io.remove(&b.index_path(old_epoch));
        let _ = b.io.sync_dir(&b.dir);
        Ok(pos)
    }

    fn write_header(&mut self, header: &[u8]) -> Result<()> {
        self.backend.replace_file(HEADER, header)
    }

    fn write_index(&mut self, key_epoch: u32, write: &mut IndexWriter<'_>) -> Result<()> {
        self.backend.write_index_file(key_epoch, write)
    }
}
