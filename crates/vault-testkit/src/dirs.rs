//! Test vaults: cheap KDF parameters, a vault directory with its own rollback-record directory,
//! in-memory vaults, and small file helpers.
//
// ok: every unwrap here is in test machinery (a dev-dependency only); a failure is the test's
// finding and should stop it loudly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vault_store::{
    Backend, FileBackend, KdfParams, MemoryBackend, SecretBytes, Vault, VaultOptions,
};

/// Cheap Argon2 parameters: these tests exercise storage, not the KDF.
pub fn cheap_kdf() -> KdfParams {
    KdfParams::for_key(64, 1, 1).unwrap()
}

pub fn pass() -> SecretBytes {
    SecretBytes::from_slice(b"test passphrase")
}

pub fn secret(v: &[u8]) -> SecretBytes {
    SecretBytes::from_slice(v)
}

/// A vault directory plus its own rollback-record directory, both temporary.
pub struct TestDir {
    pub tmp: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    pub fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    pub fn vault_dir(&self) -> PathBuf {
        self.tmp.path().join("vault")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.tmp.path().join("state")
    }
    /// Options for the test vault: its own rollback directory, and snapshots split into frames
    /// of at most 512 bytes of records, so that every compaction and rotation the harnesses run
    /// writes a snapshot of several frames.
    pub fn options(&self) -> VaultOptions {
        VaultOptions {
            rollback_dir: Some(self.state_dir()),
            snapshot_part_bytes: 512,
            ..VaultOptions::default()
        }
    }
    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(FileBackend::new(self.vault_dir()))
    }
    pub fn create(&self) -> Vault {
        Vault::create(self.backend(), &pass(), cheap_kdf(), self.options()).unwrap()
    }
    pub fn open(&self) -> vault_store::Result<Vault> {
        Vault::open(self.backend(), &pass(), self.options())
    }
}

pub fn memory() -> (Arc<MemoryBackend>, Vault) {
    let b = Arc::new(MemoryBackend::new());
    let v = Vault::create(b.clone(), &pass(), cheap_kdf(), VaultOptions::default()).unwrap();
    (b, v)
}

pub fn log_path(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("log.") && !n.ends_with(".tmp"))
        })
        .collect();
    assert_eq!(logs.len(), 1, "exactly one log file expected: {logs:?}");
    logs.pop().unwrap()
}

/// Copies a directory (flat) recursively enough for a vault directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Names of the entries of a directory.
pub fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The rollback record file of the test vault in `d` (there is one after the first write).
pub fn rollback_record(d: &TestDir) -> PathBuf {
    std::fs::read_dir(d.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "rollback"))
        .unwrap()
}

/// Start offsets of the frames of a log file's bytes (length prefixes followed blindly: for
/// tests that tamper with specific frames).
pub fn frame_starts(log: &[u8]) -> Vec<usize> {
    let mut at = vault_store::LOG_HEADER_LEN;
    let mut out = Vec::new();
    while at + 4 <= log.len() {
        out.push(at);
        at += 4 + u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
    }
    out
}
