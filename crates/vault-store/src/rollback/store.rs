//! Where rollback records are kept: behind [`RollbackStore`], outside the vault's own storage
//! (the point of the record is to remember what a copy of the vault can no longer show). A
//! directory of files ([`DirRollbackStore`], what `VaultOptions::rollback_dir` names) for the CLI,
//! memory ([`MemoryRollbackStore`]) for tests and embedding; another client of a shared backend
//! supplies its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc as StdArc;

use vault_format::VaultId;
use vault_format::rollback::ROLLBACK_FILE_LEN;

use crate::io::{Io, RealIo};
use crate::sync::{Arc, Mutex, lock};
use crate::{Error, Result};

/// Storage for the rollback records of vaults, by vault id. Records are small (FORMAT.md §8) and
/// their contents are authenticated by the engine; the store only keeps bytes.
pub trait RollbackStore: Send + Sync + std::fmt::Debug {
    /// Where the record of `vault` is, for messages.
    fn location(&self, vault: &VaultId) -> String;
    /// The record's bytes (at most one byte more than the format's length, enough to tell a
    /// record that is too long), or `None` if there is none.
    fn read(&self, vault: &VaultId) -> Result<Option<Vec<u8>>>;
    /// Overwrites `bytes` at `offset` of an existing record (one slot; it need not be atomic,
    /// since each slot is authenticated on its own and the other one serves if this write tears).
    fn write_at(&self, vault: &VaultId, offset: u64, bytes: &[u8]) -> Result<()>;
    /// Replaces the whole record atomically (creating it if needed).
    fn replace(&self, vault: &VaultId, bytes: &[u8]) -> Result<()>;
}

/// Rollback records as files `<vault id>.rollback` in one directory (0700, created when first
/// needed), written through the I/O seam.
pub struct DirRollbackStore {
    dir: PathBuf,
    io: StdArc<dyn Io>,
}

impl std::fmt::Debug for DirRollbackStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirRollbackStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl DirRollbackStore {
    /// Records in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_io(dir, StdArc::new(RealIo))
    }

    /// Records in `dir`, through `io`.
    pub fn with_io(dir: impl Into<PathBuf>, io: StdArc<dyn Io>) -> Self {
        Self {
            dir: dir.into(),
            io,
        }
    }

    /// The record file of `vault`.
    pub fn path(&self, vault: &VaultId) -> PathBuf {
        self.dir.join(format!("{}.rollback", vault.to_hex()))
    }
}

impl RollbackStore for DirRollbackStore {
    fn location(&self, vault: &VaultId) -> String {
        self.path(vault).display().to_string()
    }

    fn read(&self, vault: &VaultId) -> Result<Option<Vec<u8>>> {
        let path = self.path(vault);
        let f = match self.io.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A name that is listed but cannot be opened is a dangling link: something was
                // put in the record's place, and taking it for "no record" would switch rollback
                // detection off.
                let listed = self.io.list_dir(&self.dir).unwrap_or_default();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if name.is_some_and(|n| listed.contains(&n)) {
                    return Err(Error::integrity(
                        format!("rollback record {}", path.display()),
                        "it is a link to nothing: something was put in its place",
                    ));
                }
                return Ok(None);
            }
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
        let len = f.stamp().map_err(|e| Error::io("reading", &path, e))?.len;
        // One byte more than the format's length is enough to tell the file is too long.
        let mut buf = vec![0u8; len.min(ROLLBACK_FILE_LEN as u64 + 1) as usize];
        f.read_exact_at(&mut buf, 0)
            .map_err(|e| Error::io("reading", &path, e))?;
        Ok(Some(buf))
    }

    fn write_at(&self, vault: &VaultId, offset: u64, bytes: &[u8]) -> Result<()> {
        let path = self.path(vault);
        let f = self
            .io
            .open_rw(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        f.write_all_at(bytes, offset)
            .map_err(|e| Error::io("writing", &path, e))
    }

    fn replace(&self, vault: &VaultId, bytes: &[u8]) -> Result<()> {
        let path = self.path(vault);
        self.io
            .create_dir_all(&self.dir)
            .map_err(|e| Error::io("creating directory", &self.dir, e))?;
        crate::io::replace_atomically(
            &*self.io,
            &path.with_extension("rollback.tmp"),
            &path,
            &self.dir,
            bytes,
        )
    }
}

/// Rollback records in memory. Cloning gives another handle to the same records.
#[derive(Clone, Debug, Default)]
pub struct MemoryRollbackStore {
    records: Arc<Mutex<HashMap<VaultId, Vec<u8>>>>,
}

impl MemoryRollbackStore {
    /// No records.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RollbackStore for MemoryRollbackStore {
    fn location(&self, vault: &VaultId) -> String {
        format!("memory:{}.rollback", vault.to_hex())
    }

    fn read(&self, vault: &VaultId) -> Result<Option<Vec<u8>>> {
        Ok(lock(&self.records).get(vault).cloned())
    }

    fn write_at(&self, vault: &VaultId, offset: u64, bytes: &[u8]) -> Result<()> {
        let mut records = lock(&self.records);
        let record = records.entry(*vault).or_default();
        let start = offset as usize;
        let end = start + bytes.len();
        if record.len() < end {
            record.resize(end, 0);
        }
        if let Some(dst) = record.get_mut(start..end) {
            dst.copy_from_slice(bytes);
        }
        Ok(())
    }

    fn replace(&self, vault: &VaultId, bytes: &[u8]) -> Result<()> {
        lock(&self.records).insert(*vault, bytes.to_vec());
        Ok(())
    }
}

/// The store `options` name: `rollback_store`, else files in `rollback_dir`, else none.
pub(crate) fn from_options(
    store: Option<&StdArc<dyn RollbackStore>>,
    dir: Option<&Path>,
) -> Option<StdArc<dyn RollbackStore>> {
    store
        .cloned()
        .or_else(|| dir.map(|d| StdArc::new(DirRollbackStore::new(d)) as StdArc<dyn RollbackStore>))
}
