//! The vault in a directory:
//!
//! ```text
//! DIR/            0700
//!   header        the vault header (VHDR); replaced atomically when a key slot changes
//!   log.<epoch>   the log (VLOG) of the current key epoch: commit frames, appended and fsynced
//!   lock          never renamed: flock'ed exclusive by writers, shared by readers
//!   *.tmp         a compaction, rotation or header write in progress (removed on next open)
//! ```
//!
//! Commit protocol: under the exclusive lock, write the frame at the end of the log with one
//! `pwrite`, then `fdatasync`; only then is the commit acknowledged. If either fails, the
//! partial frame is cut off through a fresh descriptor (fsync is never retried on the descriptor
//! whose fsync failed: after a failed fsync the kernel may have dropped the dirty pages and a
//! second fsync would report success for data that is not on disk), and the commit fails.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc as StdArc;
use std::time::{Duration, Instant};

use vault_format::log::{
    FRAME_PREFIX_LEN, LOG_HEADER_LEN, MAX_FRAME_LEN, decode_log_header, encode_log_header,
};

use super::{Backend, LockGuard, Position, ReadOutcome, StoredFrame};
use crate::io::{Io, RealIo};
use crate::{Error, Result};

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
}

impl std::fmt::Debug for FileBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBackend")
            .field("dir", &self.dir)
            .finish()
    }
}

struct FileLock(#[allow(dead_code)] File);

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
        move |e| Error::io(op, path, e)
    }

    /// Writes `bytes` to `name.tmp`, fsyncs it, renames it over `name`, fsyncs the directory.
    fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = self.path(&format!("{name}.tmp"));
        let dst = self.path(name);
        // A stale temp file is from an interrupted operation of a writer that no longer holds
        // the lock (we do); create_new below must not follow or reuse it.
        let _ = self.io.remove(&tmp);
        let result = (|| {
            let f = self
                .io
                .create_new(&tmp)
                .map_err(self.io_err("creating", &tmp))?;
            f.write_all_at(bytes, 0)
                .map_err(self.io_err("writing", &tmp))?;
            f.sync_all().map_err(self.io_err("syncing", &tmp))?;
            drop(f);
            self.io
                .rename(&tmp, &dst)
                .map_err(self.io_err("renaming into place", &dst))
        })();
        if let Err(e) = result {
            let _ = self.io.remove(&tmp);
            return Err(e);
        }
        // The rename happened; if the directory fsync fails we cannot know whether it is durable,
        // so report the failure (the caller does not acknowledge).
        self.io
            .sync_dir(&self.dir)
            .map_err(self.io_err("syncing directory", &self.dir))
    }

    fn lock(&self, exclusive: bool, timeout: Duration) -> Result<Box<dyn LockGuard + '_>> {
        let path = self.path(LOCK);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::NoVault(self.dir.clone())
                } else {
                    Error::io("opening", &path, e)
                }
            })?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let r = if exclusive {
                f.try_lock()
            } else {
                f.try_lock_shared()
            };
            match r {
                Ok(()) => return Ok(Box::new(FileLock(f))),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("locking", &path, e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::Busy {
                    waited_ms: waited.as_millis() as u64,
                });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Opens the log of `epoch`, mapping its absence after a rotation to [`Error::Rekeyed`].
    fn open_log(&self, epoch: u32, write: bool) -> Result<Box<dyn crate::io::IoFile>> {
        let path = self.log_path(epoch);
        let r = if write {
            self.io.open_rw(&path)
        } else {
            self.io.open_read(&path)
        };
        r.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                if self.path(HEADER).exists() {
                    Error::Rekeyed
                } else {
                    Error::NoVault(self.dir.clone())
                }
            } else {
                Error::io("opening", &path, e)
            }
        })
    }

    /// Atomically (re)writes the log of `epoch` holding only `snapshot`.
    fn write_log(&self, epoch: u32, snapshot: &[u8]) -> Result<Position> {
        let name = format!("log.{epoch}");
        let bytes = Self::log_bytes(epoch, snapshot)?;
        self.replace_file(&name, &bytes)?;
        let path = self.path(&name);
        let stamp = self
            .io
            .stamp(&path)
            .map_err(self.io_err("reading", &path))?;
        Ok(Position {
            instance: stamp.ino,
            offset: bytes.len() as u64,
        })
    }

    fn log_bytes(epoch: u32, snapshot: &[u8]) -> Result<Vec<u8>> {
        let mut out = encode_log_header(epoch);
        out.reserve(FRAME_PREFIX_LEN + snapshot.len());
        out.extend_from_slice(&frame_len(snapshot)?.to_le_bytes());
        out.extend_from_slice(snapshot);
        Ok(out)
    }
}

fn frame_len(body: &[u8]) -> Result<u32> {
    if body.is_empty() || body.len() > MAX_FRAME_LEN {
        return Err(Error::invalid(
            "commit",
            format!(
                "frame of {} bytes is outside 1..={MAX_FRAME_LEN}",
                body.len()
            ),
        ));
    }
    Ok(body.len() as u32)
}

impl Backend for FileBackend {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn exists(&self) -> Result<bool> {
        Ok(self.path(HEADER).exists())
    }

    fn create(&self, header: &[u8], key_epoch: u32, snapshot: &[u8]) -> Result<()> {
        if self.exists()? {
            return Err(Error::AlreadyExists(self.dir.clone()));
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
            return Err(Error::AlreadyExists(self.dir.clone()));
        }
        self.replace_file(
            &format!("log.{key_epoch}"),
            &Self::log_bytes(key_epoch, snapshot)?,
        )?;
        // The header goes last: until it exists there is no vault, and a retry starts over.
        self.replace_file(HEADER, header)
    }

    fn read_header(&self) -> Result<Vec<u8>> {
        let path = self.path(HEADER);
        let f = self.io.open_read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NoVault(self.dir.clone())
            } else {
                Error::io("opening", &path, e)
            }
        })?;
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
        f.read_from(0).map_err(self.io_err("reading", &path))
    }

    fn write_header(&self, header: &[u8]) -> Result<()> {
        self.replace_file(HEADER, header)
    }

    fn lock_exclusive(&self, timeout: Duration) -> Result<Box<dyn LockGuard + '_>> {
        self.lock(true, timeout)
    }

    fn lock_shared(&self, timeout: Duration) -> Result<Box<dyn LockGuard + '_>> {
        self.lock(false, timeout)
    }

    fn changed(&self, key_epoch: u32, since: &Position) -> Result<bool> {
        let path = self.log_path(key_epoch);
        match self.io.stamp(&path) {
            Ok(s) => Ok(s.ino != since.instance || s.len != since.offset),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io("checking", &path, e)),
        }
    }

    fn read(&self, key_epoch: u32, since: &Position) -> Result<ReadOutcome> {
        let path = self.log_path(key_epoch);
        let f = self.open_log(key_epoch, false)?;
        let stamp = f.stamp().map_err(self.io_err("reading", &path))?;
        let reset = stamp.ino != since.instance || stamp.len < since.offset;
        let from = if reset { 0 } else { since.offset };
        let bytes = f.read_from(from).map_err(self.io_err("reading", &path))?;
        let mut rest: &[u8] = &bytes;
        let mut offset = from;
        if reset {
            let (head, tail) = rest.split_at_checked(LOG_HEADER_LEN).ok_or_else(|| {
                Error::integrity(
                    path.display().to_string(),
                    "log file is shorter than its header",
                )
            })?;
            let epoch = decode_log_header(head)?;
            if epoch != key_epoch {
                return Err(Error::integrity(
                    path.display().to_string(),
                    format!("log is for key epoch {epoch}, the header says {key_epoch}"),
                ));
            }
            rest = tail;
            offset = LOG_HEADER_LEN as u64;
        }
        let mut frames = Vec::new();
        let mut torn_tail = false;
        while !rest.is_empty() {
            let Some((prefix, after)) = rest.split_at_checked(FRAME_PREFIX_LEN) else {
                torn_tail = true;
                break;
            };
            let mut len_bytes = [0u8; FRAME_PREFIX_LEN];
            len_bytes.copy_from_slice(prefix);
            let len = u32::from_le_bytes(len_bytes) as usize;
            if len == 0 || len > MAX_FRAME_LEN || len > after.len() {
                torn_tail = true;
                break;
            }
            let (body, next) = after.split_at(len);
            offset += (FRAME_PREFIX_LEN + len) as u64;
            frames.push(StoredFrame {
                body: body.to_vec(),
                end: Position {
                    instance: stamp.ino,
                    offset,
                },
            });
            rest = next;
        }
        Ok(ReadOutcome {
            reset,
            frames,
            end: Position {
                instance: stamp.ino,
                offset,
            },
            torn_tail,
        })
    }

    fn append(&self, key_epoch: u32, at: &Position, body: &[u8]) -> Result<Position> {
        let path = self.log_path(key_epoch);
        let len = frame_len(body)?;
        let f = self.open_log(key_epoch, true)?;
        let stamp = f.stamp().map_err(self.io_err("reading", &path))?;
        if stamp.ino != at.instance || stamp.len != at.offset {
            return Err(Error::integrity(
                path.display().to_string(),
                "the log changed while the writer lock was held",
            ));
        }
        let mut buf = Vec::with_capacity(FRAME_PREFIX_LEN + body.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(body);
        let written = f
            .write_all_at(&buf, at.offset)
            .map_err(self.io_err("appending to", &path))
            .and_then(|()| f.sync_data().map_err(self.io_err("syncing", &path)));
        drop(f);
        if let Err(e) = written {
            // Cut the partial or unacknowledged frame off through a fresh descriptor. If even
            // that fails, the next writer's read finds it as a torn tail (or, if it is complete,
            // as an unacknowledged commit above the rollback record).
            let _ = self.truncate(key_epoch, at);
            return Err(e);
        }
        Ok(Position {
            instance: at.instance,
            offset: at.offset + buf.len() as u64,
        })
    }

    fn truncate(&self, key_epoch: u32, at: &Position) -> Result<()> {
        let path = self.log_path(key_epoch);
        let f = self.open_log(key_epoch, true)?;
        let stamp = f.stamp().map_err(self.io_err("reading", &path))?;
        if stamp.ino != at.instance || stamp.len <= at.offset {
            return Ok(());
        }
        f.set_len(at.offset)
            .map_err(self.io_err("truncating", &path))?;
        f.sync_all().map_err(self.io_err("syncing", &path))
    }

    fn replace(&self, key_epoch: u32, snapshot: &[u8]) -> Result<Position> {
        self.write_log(key_epoch, snapshot)
    }

    fn rekey(&self, new_epoch: u32, snapshot: &[u8], header: &[u8]) -> Result<Position> {
        let old_epoch = new_epoch.wrapping_sub(1);
        let pos = self.write_log(new_epoch, snapshot)?;
        // The commit point: until the new header is in place the old key and log are current,
        // and the new log is a leftover the next open removes.
        self.replace_file(HEADER, header)?;
        let _ = self.io.remove(&self.log_path(old_epoch));
        let _ = self.io.sync_dir(&self.dir);
        Ok(pos)
    }

    fn cleanup(&self, key_epoch: u32) -> Result<()> {
        let names = self
            .io
            .list_dir(&self.dir)
            .map_err(self.io_err("listing", &self.dir))?;
        let current = format!("log.{key_epoch}");
        let mut removed = false;
        for name in names {
            let stale = name.ends_with(".tmp") || (name.starts_with("log.") && name != current);
            if stale {
                let p = self.path(&name);
                tracing::info!(file = %p.display(), "removing leftover of an interrupted operation");
                self.io.remove(&p).map_err(self.io_err("removing", &p))?;
                removed = true;
            }
        }
        if removed {
            self.io
                .sync_dir(&self.dir)
                .map_err(self.io_err("syncing directory", &self.dir))?;
        }
        Ok(())
    }
}
