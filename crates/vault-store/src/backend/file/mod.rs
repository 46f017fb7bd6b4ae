//! The vault in a directory:
//!
//! ```text
//! DIR/            0700
//!   header        the vault header (VHDR); replaced atomically when a key slot changes
//!   log.<epoch>   the log (VLOG) of the current key epoch: commit frames, appended and fsynced
//!   lock          never renamed: flock'ed exclusive by writers, shared by readers
//!   *.tmp         a compaction, rotation or header write in progress (removed by the next
//!                 writer)
//! ```
//!
//! [`lock`] takes the directory's lock, [`session`] holds it for a read or write session, [`log`]
//! reads and writes the log, [`leftovers`] tells what is in the directory and cleans up after
//! interrupted operations (inside write sessions: the engine never sees a temp file).
//!
//! Commit protocol: under the exclusive lock, write the frame at the end of the log with one
//! `pwrite`, then `fdatasync`; only then is the commit acknowledged. If either fails, the
//! partial frame is cut off through a fresh descriptor (fsync is never retried on the descriptor
//! whose fsync failed: after a failed fsync the kernel may have dropped the dirty pages and a
//! second fsync would report success for data that is not on disk), and the commit fails.

use std::path::{Path, PathBuf};
use std::sync::Arc as StdArc;
use std::time::Duration;

use super::{Backend, Cursor, ReadSession, WriteSession};
use crate::io::{Io, RealIo};
use crate::sync::{Mutex, lock};
use crate::{Error, Result};

mod index;
mod leftovers;
mod lock;
mod log;
mod session;

const HEADER: &str = "header";
const LOCK: &str = "lock";

/// Options for a [`FileBackend`].
#[derive(Clone)]
pub struct FileBackendOptions {
    /// The I/O layer (tests inject faults here).
    pub io: StdArc<dyn Io>,
}

impl Default for FileBackendOptions {
    fn default() -> Self {
        Self {
            io: StdArc::new(RealIo),
        }
    }
}

/// A vault stored in a directory (see the module docs for the layout and commit protocol).
pub struct FileBackend {
    dir: PathBuf,
    io: StdArc<dyn Io>,
    /// The newest key epoch whose leftovers this handle has removed (once per epoch is enough:
    /// later leftovers come only from this handle's own failed operations, which clean up).
    cleaned: Mutex<Option<u32>>,
}

impl std::fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBackend")
            .field("dir", &self.dir)
            .finish()
    }
}

impl FileBackend {
    /// A backend for the vault in `dir` (which need not exist yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_options(dir, FileBackendOptions::default())
    }

    /// As [`FileBackend::new`], with options.
    pub fn with_options(dir: impl Into<PathBuf>, options: FileBackendOptions) -> Self {
        Self {
            dir: dir.into(),
            io: options.io,
            cleaned: Mutex::new(None),
        }
    }

    /// The vault directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the log of `epoch`.
    pub fn log_path(&self, epoch: u32) -> PathBuf {
        self.dir.join(format!("log.{epoch}"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn io_err(&self, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |e| Error::io(op, &path, e)
    }

    /// Removes leftovers older than `epoch` unless this handle already did, for this epoch.
    fn clean_before(&self, epoch: u32) -> Result<()> {
        let mut cleaned = lock(&self.cleaned);
        if cleaned.is_some_and(|c| c >= epoch) {
            return Ok(());
        }
        self.remove_leftovers(epoch)?;
        *cleaned = Some(epoch);
        Ok(())
    }

    /// Replaces the file `name` in the vault directory atomically (through `name.tmp`).
    fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        crate::io::replace_atomically(
            &*self.io,
            &self.path(&format!("{name}.tmp")),
            &self.path(name),
            &self.dir,
            bytes,
        )
    }
}

impl FileBackend {
    /// The header file's bytes (bounded by the format's maximum before anything is read).
    fn read_header_file(&self) -> Result<Vec<u8>> {
        let path = self.path(HEADER);
        let f = match self.io.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let logs = self.log_names()?;
                return Err(match logs.first() {
                    None => Error::NoVault(self.location()),
                    Some(log) => Error::integrity(
                        path.display().to_string(),
                        format!(
                            "the header file is missing but {log} is there: the header was lost (restore it from a backup) or a vault creation was killed midway (then remove the directory); a new vault will not be created over it"
                        ),
                    ),
                });
            }
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
        let len = f.stamp().map_err(self.io_err("reading", &path))?.len;
        if len > vault_format::MAX_HEADER_LEN as u64 {
            return Err(Error::integrity(
                path.display().to_string(),
                format!(
                    "header file is {len} bytes, over the format's maximum of {}",
                    vault_format::MAX_HEADER_LEN
                ),
            ));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, 0)
            .map_err(self.io_err("reading", &path))?;
        Ok(buf)
    }
}

impl Backend for FileBackend {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn audit_place(&self) -> Option<(PathBuf, StdArc<dyn crate::io::Io>)> {
        Some((self.dir.clone(), self.io.clone()))
    }

    fn exists(&self) -> Result<bool> {
        let header = self.path(HEADER);
        match self.io.stamp(&header) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("checking", &header, e)),
        }
        Ok(!self.log_names()?.is_empty())
    }

    fn create(&self, header: &[u8], key_epoch: u32, snapshot: &[u8]) -> Result<()> {
        if self.exists()? {
            return Err(self.existing());
        }
        self.io
            .create_dir_all(&self.dir)
            .map_err(self.io_err("creating directory", &self.dir))?;
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.io
                .sync_dir(parent)
                .map_err(self.io_err("syncing directory", parent))?;
        }
        let lock_path = self.path(LOCK);
        match self.io.create_new(&lock_path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("creating", &lock_path, e)),
        }
        let _guard = self.lock(true, Duration::from_secs(10))?;
        if self.exists()? {
            return Err(self.existing());
        }
        // The header goes last: until it exists there is no vault. A failure before it is in
        // place removes the log again, so that a retry starts over (and a log without a header
        // otherwise means a lost header, which `create` refuses to paper over).
        let log_name = format!("log.{key_epoch}");
        let result = self
            .replace_file(&log_name, &Self::log_bytes(key_epoch, snapshot)?)
            .and_then(|()| self.replace_file(HEADER, header));
        if result.is_err() && !self.path(HEADER).exists() {
            let _ = self.io.remove(&self.path(&log_name));
        }
        result
    }

    fn read_header(&self) -> Result<Vec<u8>> {
        self.read_header_file()
    }

    fn changed(&self, key_epoch: u32, since: &Cursor) -> Result<bool> {
        self.changed_log(key_epoch, since)
    }

    fn begin_read(&self, timeout: Duration) -> Result<Box<dyn ReadSession + '_>> {
        Ok(Box::new(session::FileSession {
            backend: self,
            _lock: self.lock(false, timeout)?,
            writer: false,
            open_log: Default::default(),
        }))
    }

    fn begin_write(&self, timeout: Duration) -> Result<Box<dyn WriteSession + '_>> {
        Ok(Box::new(session::FileSession {
            backend: self,
            _lock: self.lock(true, timeout)?,
            writer: true,
            open_log: Default::default(),
        }))
    }
}
