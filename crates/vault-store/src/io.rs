//! The file-system operations `FileBackend` performs, behind one small trait so tests can inject
//! failures into any of them ([`FaultyIo`]). Production code uses [`RealIo`].
//!
//! Files are created owner-only (0600) and directories 0700 by the `open`/`mkdir` call itself,
//! never by a later `chmod`, so no other user can open them even for an instant.
// This is the I/O seam: the one module allowed to touch the file system (the crate's clippy.toml
// refuses std::fs elsewhere). FaultyIo is test machinery, never run under loom: std's locks.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    let f = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (something else was put in its place)",
        ));
    }
    Ok(f)
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
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(RealLock(f)))
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

/// Which operations a [`FaultyIo`] counts and fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// `write_all_at` and `set_len`.
    Write,
    /// `sync_all`/`sync_data` on a file.
    Sync,
    /// `fsync` on a directory.
    SyncDir,
    /// `rename`.
    Rename,
    /// `create_new` and `create_dir_all`.
    Create,
}

/// What error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `EIO`.
    Eio,
    /// `ENOSPC`.
    Enospc,
}

/// Fault injection for tests: counts every operation of the chosen kinds and fails the k-th (and,
/// if persistent, every later one). A failed write writes a prefix of its buffer first, as a
/// short write before the error would.
#[derive(Debug)]
pub struct FaultyIo {
    inner: RealIo,
    ops: Vec<FaultOp>,
    fail_at: AtomicU64,
    count: AtomicU64,
    persistent: bool,
    kind: FaultKind,
    fired: AtomicBool,
    fired_op: std::sync::Mutex<Option<FaultOp>>,
    trace: std::sync::Mutex<Vec<String>>,
}

impl FaultyIo {
    /// Fails the `k`-th (1-based) operation among `ops`; `k = 0` never fails (for counting).
    pub fn new(ops: &[FaultOp], k: u64, persistent: bool, kind: FaultKind) -> Self {
        Self {
            inner: RealIo,
            ops: ops.to_vec(),
            fail_at: AtomicU64::new(k),
            count: AtomicU64::new(0),
            persistent,
            kind,
            fired: AtomicBool::new(false),
            fired_op: std::sync::Mutex::new(None),
            trace: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// How many counted operations ran (including failed ones).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Whether a fault was injected.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Every counted operation in order, as `"<op> <file name>"` (e.g. `"Rename log.0.tmp -> log.0"`),
    /// for tests of the order of writes, syncs and renames.
    pub fn trace(&self) -> Vec<String> {
        self.trace.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The kind of the first operation that failed.
    pub fn fired_op(&self) -> Option<FaultOp> {
        *self.fired_op.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// All operation kinds, for counting or failing every one.
    pub const ALL: [FaultOp; 5] = [
        FaultOp::Write,
        FaultOp::Sync,
        FaultOp::SyncDir,
        FaultOp::Rename,
        FaultOp::Create,
    ];

    /// Stops injecting faults (the "device" recovers).
    pub fn heal(&self) {
        self.fail_at.store(0, Ordering::SeqCst);
    }

    fn check(&self, op: FaultOp, what: &str) -> io::Result<()> {
        if !self.ops.contains(&op) {
            return Ok(());
        }
        self.trace
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{op:?} {what}"));
        let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        let k = self.fail_at.load(Ordering::SeqCst);
        if k != 0 && (n == k || (self.persistent && n > k)) {
            if !self.fired.swap(true, Ordering::SeqCst) {
                *self.fired_op.lock().unwrap_or_else(|e| e.into_inner()) = Some(op);
            }
            return Err(match self.kind {
                FaultKind::Eio => io::Error::from_raw_os_error(5),
                FaultKind::Enospc => io::Error::from_raw_os_error(28),
            });
        }
        Ok(())
    }
}

struct SharedFaultyFile {
    io: std::sync::Arc<FaultyIo>,
    inner: Box<dyn IoFile>,
    name: String,
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl IoFile for SharedFaultyFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Err(e) = self.io.check(FaultOp::Write, &self.name) {
            let half = buf.get(..buf.len() / 2).unwrap_or(&[]);
            let _ = self.inner.write_all_at(half, offset);
            return Err(e);
        }
        self.inner.write_all_at(buf, offset)
    }
    fn sync_all(&self) -> io::Result<()> {
        self.io.check(FaultOp::Sync, &self.name)?;
        self.inner.sync_all()
    }
    fn sync_data(&self) -> io::Result<()> {
        self.io.check(FaultOp::Sync, &self.name)?;
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.io.check(FaultOp::Write, &self.name)?;
        self.inner.set_len(len)
    }
    fn read_from(&self, from: u64) -> io::Result<Vec<u8>> {
        self.inner.read_from(from)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn stamp(&self) -> io::Result<FileStamp> {
        self.inner.stamp()
    }
}

/// [`FaultyIo`] shared behind an `Arc`, so the test keeps a handle to its counters while the
/// backend owns the I/O layer.
#[derive(Debug, Clone)]
pub struct SharedFaultyIo(pub std::sync::Arc<FaultyIo>);

impl Io for SharedFaultyIo {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        self.0.check(FaultOp::Create, &name_of(path))?;
        Ok(Box::new(SharedFaultyFile {
            io: self.0.clone(),
            inner: self.0.inner.create_new(path)?,
            name: name_of(path),
        }))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        Ok(Box::new(SharedFaultyFile {
            io: self.0.clone(),
            inner: self.0.inner.open_rw(path)?,
            name: name_of(path),
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn IoFile>> {
        self.0.inner.open_read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.check(
            FaultOp::Rename,
            &format!("{} -> {}", name_of(from), name_of(to)),
        )?;
        self.0.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.0.inner.remove(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.check(FaultOp::Create, &name_of(path))?;
        self.0.inner.create_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.0.check(FaultOp::SyncDir, &name_of(path))?;
        self.0.inner.sync_dir(path)
    }
    fn stamp(&self, path: &Path) -> io::Result<FileStamp> {
        self.0.inner.stamp(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.0.inner.list_dir(path)
    }
    fn open_lock(&self, path: &Path, create: bool) -> io::Result<Box<dyn IoLock>> {
        self.0.inner.open_lock(path, create)
    }
}
