//! Fault injection for the store's I/O seam: [`FaultyIo`] counts every write, fsync, directory
//! fsync, rename and create, fails the k-th (once or from then on) with EIO or ENOSPC, and records
//! the order of operations for write-order tests.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use vault_store::io::{FileStamp, Io, IoFile, IoLock, RealIo};

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
