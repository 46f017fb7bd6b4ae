//! The file-system operations the store performs, behind one small trait so tests can inject
//! failures into any of them (the dev-only `vault-testkit` crate's `FaultyIo`). Production code
//! uses [`RealIo`].
//!
//! Files are created owner-only (0600) and directories 0700 by the `open`/`mkdir` call itself,
//! never by a later `chmod`, so no other user can open them even for an instant.
// This is the I/O seam: the one module allowed to touch the file system (the crate's clippy.toml
// refuses std::fs elsewhere).
#![allow(clippy::disallowed_methods)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Identity and size of a file, to notice that another process appended to it or replaced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    /// Device number.
    pub dev: u64,
    /// Inode number: changes when a rename replaces the file.
    pub ino: u64,
    /// Length in bytes.
    pub len: u64,
}

/// An open file, as `FileBackend` uses it.
pub trait IoFile: Send + Sync {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fsync`: data and metadata durable.
    fn sync_all(&self) -> io::Result<()>;
    /// `fdatasync`: data (and the size needed to read it) durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Sets the length (truncates or extends with zeros).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reads the whole file from offset `from`.
    fn read_from(&self, from: u64) -> io::Result<Vec<u8>>;
    /// Fills `buf` from offset `offset` (an error if the file ends first).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Identity and size.
    fn stamp(&self) -> io::Result<FileStamp>;
}

/// The file-system operations `FileBackend` needs.
pub trait Io: Send + Sync + 'static {
    /// Creates a new file, failing if it exists, mode 0600.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn IoFile>>;
    /// Opens an existing file read-write.
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn IoFile>>;
    /// Opens an existing file read-only.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn IoFile>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory (and missing parents), mode 0700.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// `fsync` on a directory, making renames and creations in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Identity and size of the file at `path`.
    fn stamp(&self, path: &Path) -> io::Result<FileStamp>;
    /// Names of the entries in a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens the lock file read-write (creating it, mode 0600, if `create`), for `flock`.
    fn open_lock(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoLock>>;
    /// Opens the lock file for reading only (a shared `flock` needs no more): how a reader
    /// locks a vault on read-only storage.
    fn open_lock_readonly(&self, path: &Path) -> io::Result<Box<dyn IoLock>> {
        self.open_lock(path, false)
    }
}

/// An open lock file.
pub trait IoLock: Send + Sync {
    /// Takes the `flock` (exclusive or shared) without waiting: `Ok(false)` if another holder
    /// prevents it. Released when this is dropped.
    fn try_lock(&self, exclusive: bool) -> io::Result<bool>;
}

struct RealLock(File);

impl IoLock for RealLock {
    fn try_lock(&self, exclusive: bool) -> io::Result<bool> {
        let r = if exclusive {
            self.0.try_lock()
        } else {
            self.0.try_lock_shared()
        };
        match r {
            Ok(()) => Ok(true),
            Err(fs::TryLockError::WouldBlock) => Ok(false),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Opens an existing regular file. `O_NONBLOCK` keeps a FIFO (or device) put in a vault file's
/// place from blocking the open forever; such a file is then refused. On a regular file the flag
/// changes nothing.
pub(crate) fn open_regular(path: &Path, write: bool) -> io::Result<File> {
    // Opened for writing, a symbolic link in a vault file's place is not followed: it would
    // make this process write wherever it points.
    let nofollow = if write { libc::O_NOFOLLOW } else { 0 };
    let f = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | nofollow)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(io::ErrorKind::InvalidInput, NotRegularFile)
            } else {
                e
            }
        })?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, NotRegularFile));
    }
    Ok(f)
}

/// The error of opening a vault file that is not a regular file (a directory, FIFO or device
/// put in its place): damage, which [`crate::Error`] reports as an integrity failure.
#[derive(Debug)]
pub struct NotRegularFile;

impl std::fmt::Display for NotRegularFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a regular file (something else was put in its place)")
    }
}

impl std::error::Error for NotRegularFile {}

/// Whether `e` says a vault file is not a regular file.
pub(crate) fn is_not_regular(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<NotRegularFile>())
        || e.raw_os_error() == Some(libc::EISDIR)
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

struct RealFile(File);

fn stamp_of(m: &fs::Metadata) -> FileStamp {
    FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
    }
}

impl IoFile for RealFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn read_from(&self, from: u64) -> io::Result<Vec<u8>> {
        let len = self.0.metadata()?.len();
        let mut out = Vec::with_capacity(usize::try_from(len.saturating_sub(from)).unwrap_or(0));
        let mut f = &self.0;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(from))?;
        f.read_to_end(&mut out)?;
        Ok(out)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn stamp(&self) -> io::Result<FileStamp> {
        Ok(stamp_of(&self.0.metadata()?))
    }
}

impl Io for RealIo {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        Ok(Box::new(RealFile(open_regular(path, true)?)))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        Ok(Box::new(RealFile(open_regular(path, false)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn stamp(&self, path: &Path) -> io::Result<FileStamp> {
        Ok(stamp_of(&fs::metadata(path)?))
    }
    fn open_lock(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoLock>> {
        // Creating, a symlink in the lock's place is not followed (it would make a file
        // wherever it points).
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .mode(0o600)
            .custom_flags(if create { libc::O_NOFOLLOW } else { 0 })
            .open(path)?;
        Ok(Box::new(RealLock(f)))
    }
    fn open_lock_readonly(&self, path: &Path) -> io::Result<Box<dyn IoLock>> {
        Ok(Box::new(RealLock(
            OpenOptions::new().read(true).open(path)?,
        )))
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(path)? {
            if let Some(name) = e?.file_name().to_str() {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }
}

/// Replaces `dst` atomically with `bytes`: writes `tmp` (created exclusively, owner-only), fsyncs
/// it, renames it over `dst`, fsyncs `dir`. The one routine for every whole-file write the store
/// makes (the header, a new log, the rollback record). A crash leaves the old file or the new one;
/// a failure before the rename removes `tmp`. If only the directory fsync fails, the new file is
/// in place but may not be durable: the error is reported and the caller does not acknowledge.
///
/// # Errors
/// [`crate::Error::StorageFull`] or [`crate::Error::Io`] naming the step that failed.
pub(crate) fn replace_atomically(
    io: &dyn Io,
    tmp: &Path,
    dst: &Path,
    dir: &Path,
    bytes: &[u8],
) -> crate::Result<()> {
    replace_atomically_with(io, tmp, dst, dir, &mut |f| {
        f.write_all_at(bytes, 0)
            .map_err(|e| crate::Error::io("writing", tmp, e))
    })
}

/// As [`replace_atomically`], with the new contents written by `write` into the temp file (a
/// large file written piece by piece, never whole in memory). An error from `write` leaves `dst`
/// as it was.
pub(crate) fn replace_atomically_with(
    io: &dyn Io,
    tmp: &Path,
    dst: &Path,
    dir: &Path,
    write: &mut dyn FnMut(&dyn IoFile) -> crate::Result<()>,
) -> crate::Result<()> {
    use crate::Error;
    // A stale temp file is from an interrupted operation of a writer that no longer holds the
    // lock (the caller does); create_new below must not follow or reuse it.
    let _ = io.remove(tmp);
    let result = (|| {
        let f = io
            .create_new(tmp)
            .map_err(|e| Error::io("creating", tmp, e))?;
        write(&*f)?;
        f.sync_all().map_err(|e| Error::io("syncing", tmp, e))?;
        drop(f);
        io.rename(tmp, dst)
            .map_err(|e| Error::io("renaming into place", dst, e))
    })();
    if let Err(e) = result {
        let _ = io.remove(tmp);
        return Err(e);
    }
    io.sync_dir(dir)
        .map_err(|e| Error::io("syncing directory", dir, e))
}
