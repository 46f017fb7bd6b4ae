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
    FRAME_PREFIX_LEN, LOG_HEADER_LEN, MAX_FRAME_LEN, MAX_TORN_TAIL_LEN, Tail, classify_tail,
    decode_log_header, encode_log_header, frame_len_from_prefix,
};

use super::{Backend, CHECK_LEN, LockGuard, Position, ReadOutcome, StoredFrame, Visit, check_of};
use crate::io::{Io, IoFile, RealIo};
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
        let open = |create: bool| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .mode(0o600)
                .open(&path)
        };
        let f = match open(false) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.exists()? {
                    return Err(Error::NoVault(self.dir.clone()));
                }
                // Someone removed the lock file of an existing vault. It holds no data, so it is
                // recreated (never exclusively: two processes doing this at once share one file).
                tracing::warn!(file = %path.display(), "the lock file was missing; recreating it");
                open(true).map_err(|e| Error::io("creating", &path, e))?
            }
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
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

    /// Opens the log of `epoch`. A missing log is an integrity failure here; the engine turns it
    /// into [`Error::Rekeyed`] when the header shows that a rotation moved on to a newer epoch.
    fn open_log(&self, epoch: u32, write: bool) -> Result<Box<dyn IoFile>> {
        let path = self.log_path(epoch);
        let r = if write {
            self.io.open_rw(&path)
        } else {
            self.io.open_read(&path)
        };
        r.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::integrity(
                    path.display().to_string(),
                    format!("the log of key epoch {epoch} is missing"),
                )
            } else {
                Error::io("opening", &path, e)
            }
        })
    }

    /// Whether the log open as `f`, `len` bytes long, still holds what `at` consumed: the bytes
    /// before `at.offset` end with `at.check`.
    fn holds(&self, f: &dyn IoFile, len: u64, at: &Position, path: &Path) -> Result<bool> {
        let min = (LOG_HEADER_LEN + CHECK_LEN) as u64;
        if at.offset < min || at.offset > len {
            return Ok(false);
        }
        let mut check = [0u8; CHECK_LEN];
        f.read_exact_at(&mut check, at.offset - CHECK_LEN as u64)
            .map_err(self.io_err("reading", path))?;
        Ok(check == at.check)
    }

    /// Why a vault cannot be created here: one exists, or one that lost its header does.
    fn existing(&self) -> Error {
        match self.read_header() {
            Err(e @ Error::Integrity { .. }) => e,
            _ => Error::AlreadyExists(self.dir.clone()),
        }
    }

    /// Names of the log files in the directory.
    fn log_names(&self) -> Result<Vec<String>> {
        match self.io.list_dir(&self.dir) {
            Ok(names) => Ok(names
                .into_iter()
                .filter(|n| log_epoch(n).is_some())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("listing", &self.dir, e)),
        }
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
            check: check_of(&bytes),
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

/// The epoch of a log file's name (`log.<epoch>`).
fn log_epoch(name: &str) -> Option<u32> {
    name.strip_prefix("log.")?.parse().ok()
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
        let path = self.path(HEADER);
        let f = match self.io.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let logs = self.log_names()?;
                return Err(match logs.first() {
                    None => Error::NoVault(self.dir.clone()),
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
        let f = match self.io.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(Error::io("checking", &path, e)),
        };
        let len = f.stamp().map_err(self.io_err("checking", &path))?.len;
        Ok(len != since.offset || !self.holds(&*f, len, since, &path)?)
    }

    fn read(
        &self,
        key_epoch: u32,
        since: &Position,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome> {
        let path = self.log_path(key_epoch);
        let object = || path.display().to_string();
        let f = self.open_log(key_epoch, false)?;
        let stamp = f.stamp().map_err(self.io_err("reading", &path))?;
        let len = stamp.len;
        let reset = !self.holds(&*f, len, since, &path)?;
        let mut end = *since;
        if reset {
            end = Position::default();
            let mut head = [0u8; LOG_HEADER_LEN];
            if len < LOG_HEADER_LEN as u64 {
                return Err(Error::integrity(
                    object(),
                    "log file is shorter than its header",
                ));
            }
            f.read_exact_at(&mut head, 0)
                .map_err(self.io_err("reading", &path))?;
            let epoch = decode_log_header(&head)?;
            if epoch != key_epoch {
                return Err(Error::integrity(
                    object(),
                    format!("log is for key epoch {epoch}, the header says {key_epoch}"),
                ));
            }
        }
        // Frames are read one at a time, each only after its length was checked against the
        // format's maximum and the file's size: memory stays bounded by one frame whatever the
        // file claims.
        let mut offset = if reset {
            LOG_HEADER_LEN as u64
        } else {
            since.offset
        };
        loop {
            let remaining = len - offset;
            if remaining < FRAME_PREFIX_LEN as u64 {
                break;
            }
            let mut prefix = [0u8; FRAME_PREFIX_LEN];
            f.read_exact_at(&mut prefix, offset)
                .map_err(self.io_err("reading", &path))?;
            let Some(body_len) = frame_len_from_prefix(prefix) else {
                break;
            };
            if (FRAME_PREFIX_LEN + body_len) as u64 > remaining {
                break;
            }
            let mut body = vec![0u8; body_len];
            f.read_exact_at(&mut body, offset + FRAME_PREFIX_LEN as u64)
                .map_err(self.io_err("reading", &path))?;
            let frame_end = Position {
                instance: stamp.ino,
                offset: offset + (FRAME_PREFIX_LEN + body_len) as u64,
                check: check_of(&body),
            };
            match visit(StoredFrame {
                body,
                end: frame_end,
                from_start: reset,
            })? {
                Visit::Continue => {
                    end = frame_end;
                    offset = frame_end.offset;
                }
                Visit::Stop => break,
            }
        }
        let tail_len = len - offset;
        let tail = if tail_len > MAX_TORN_TAIL_LEN {
            Tail::Damaged
        } else {
            let mut bytes = vec![0u8; tail_len as usize];
            f.read_exact_at(&mut bytes, offset)
                .map_err(self.io_err("reading", &path))?;
            classify_tail(&bytes, offset)
        };
        Ok(ReadOutcome { reset, end, tail })
    }

    fn append(&self, key_epoch: u32, at: &Position, body: &[u8]) -> Result<Position> {
        let path = self.log_path(key_epoch);
        let len = frame_len(body)?;
        let f = self.open_log(key_epoch, true)?;
        let stamp = f.stamp().map_err(self.io_err("reading", &path))?;
        if stamp.len != at.offset || !self.holds(&*f, stamp.len, at, &path)? {
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
            // that fails, the next reader finds it as a torn tail (or, if it is complete, as an
            // unacknowledged commit).
            let _ = self.truncate(key_epoch, at);
            return Err(e);
        }
        Ok(Position {
            instance: stamp.ino,
            offset: at.offset + buf.len() as u64,
            check: check_of(body),
        })
    }

    fn truncate(&self, key_epoch: u32, at: &Position) -> Result<()> {
        let path = self.log_path(key_epoch);
        let f = self.open_log(key_epoch, true)?;
        let len = f.stamp().map_err(self.io_err("reading", &path))?.len;
        if len <= at.offset {
            return Ok(());
        }
        // Never cut on the strength of a position alone: the log must still hold what was read.
        if !self.holds(&*f, len, at, &path)? {
            return Err(Error::integrity(
                path.display().to_string(),
                "refusing to discard the log's tail: the log no longer holds what was read",
            ));
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
        let new_log = self.log_path(new_epoch);
        let pos = match self.write_log(new_epoch, snapshot) {
            Ok(pos) => pos,
            Err(e) => {
                let _ = self.io.remove(&new_log);
                return Err(e);
            }
        };
        // The commit point: until the new header is in place the old key and log are current.
        if let Err(e) = self.replace_file(HEADER, header) {
            // Unless the rename happened (only its directory fsync failed, and the new header may
            // be current), the new log is garbage under a key nobody has: remove it.
            if self.read_header().ok().as_deref() != Some(header) {
                let _ = self.io.remove(&new_log);
            }
            return Err(e);
        }
        // If this fails, the next writer's cleanup removes the old log.
        let _ = self.io.remove(&self.log_path(old_epoch));
        let _ = self.io.sync_dir(&self.dir);
        Ok(pos)
    }

    fn cleanup(&self, current_epoch: u32) -> Result<()> {
        let names = self
            .io
            .list_dir(&self.dir)
            .map_err(self.io_err("listing", &self.dir))?;
        let mut removed = false;
        for name in names {
            // A log of a newer epoch than the header's is an interrupted rotation's; it is left
            // for the next rotation to overwrite rather than deleted on the word of a header
            // that might itself be an old copy.
            let stale =
                name.ends_with(".tmp") || log_epoch(&name).is_some_and(|e| e < current_epoch);
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
