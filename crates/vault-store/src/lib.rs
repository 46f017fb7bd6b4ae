//! The vault engine: named secrets and managed keys, encrypted and authenticated at rest, in an
//! append-structured log whose every commit is durable before it is acknowledged.
//!
//! - [`Vault`] is the handle: `Send + Sync`, many threads read and write through one.
//! - [`Backend`] is where the encrypted bytes live; it never sees a key or a plaintext.
//!   [`FileBackend`] keeps a vault in a directory (multi-process safe through a lock file that
//!   is never renamed); [`MemoryBackend`] keeps it in memory.
//! - Rollback detection: the highest committed generation is also recorded, MAC'd, outside the
//!   vault directory ([`VaultOptions::rollback_dir`], or any [`RollbackStore`]); opening an older
//!   copy of the vault fails with [`Error::RollbackDetected`].
//!
//! The byte layouts are in `docs/FORMAT.md`; the commit protocol is in [`FileBackend`]'s docs.
//!
//! ```
//! use std::sync::Arc;
//! use vault_crypto::{SecretBytes, kdf::KdfParams};
//! use vault_store::{MemoryBackend, SetOptions, Vault, VaultOptions};
//!
//! # fn main() -> Result<(), vault_store::Error> {
//! let backend = Arc::new(MemoryBackend::new());
//! let pass = SecretBytes::from_slice(b"correct horse battery staple");
//! // Cheap KDF parameters for the example; real vaults use KdfParams::DEFAULT or calibrate.
//! let kdf = KdfParams::for_key(64, 1, 1)?;
//! let vault = Vault::create(backend.clone(), &pass, kdf, VaultOptions::default())?;
//! vault.set("db/password", SecretBytes::from_slice(b"hunter2"), SetOptions::default())?;
//!
//! let reopened = Vault::open(backend, &pass, VaultOptions::default())?;
//! assert_eq!(reopened.get("db/password")?.value.expose_secret(), b"hunter2");
//! # Ok(())
//! # }
//! ```

mod audit;
mod backend;
mod batch;
mod engine;
mod error;
pub mod io;
pub mod keys;
mod members;
mod rollback;
mod rotation;
mod secrets;
mod slots;
mod snapshot;
mod sync;
mod transfer;
mod vault;
mod verify;

pub use audit::{
    AUDIT_PART_LEN, AuditActor, AuditFileInfo, AuditNames, AuditPieces, AuditRead,
    is_audit_file_name,
};
pub use backend::{
    Appended, Backend, CHECK_LEN, Cursor, FileBackend, FileBackendOptions, Frames, IndexFile,
    IndexSink, IndexWriter, MemoryBackend, ReadOutcome, ReadSession, RecordAt, RecordSource,
    StoredFrame, Tail, Visit, WriteSession,
};
#[cfg(feature = "postgres")]
pub use backend::{PgDiagnosis, PgIndex, PostgresBackend, PostgresLocation};
pub use batch::Batch;
pub use engine::index::DEFAULT_MAX_VERSIONS;
pub use engine::unlock::{KdfLimit, Unlock};
pub use error::{Error, Result};
pub use keys::{
    Algorithm, KeyError, KeyInfo, KeyOps, KeySpec, KeyVersionInfo, RotateOptions, UseOptions,
    parse_state, state_name,
};
pub use members::{MemberInfo, Removal};
pub use rollback::{DirRollbackStore, MemoryRollbackStore, RollbackStore};
pub use secrets::{Secret, SecretInfo, SetOptions, VersionInfo};
pub use slots::SlotInfo;
pub use snapshot::{KeptVersion, LoadItem, SnapshotCursor, SnapshotItem};
pub use transfer::{ExportFileError, ExportSelection, Exported, ImportOptions, ImportReport};
pub use vault::{Clock, Progress, Step, Vault, VaultOptions};
pub use verify::VerifyReport;
// What this crate's API takes and returns, re-exported so that a user needs no second vault
// crate kept in step with this one.
pub use vault_crypto::SecretBytes;
pub use vault_crypto::kdf::{self, KdfParams};
pub use vault_format::Error as FormatError;
pub use vault_format::MemberState;
pub use vault_format::audit::{AuditEntry, AuditOp, AuditPolicy, Target as AuditTarget};
/// Flags an audit entry can carry.
pub mod audit_flags {
    /// Recorded before an unlock (a failed unlock, folded in at the next one).
    pub use vault_format::audit::FLAG_BEFORE_UNLOCK as BEFORE_UNLOCK;
    /// Written by the trail itself (a policy restated, a retention note).
    pub use vault_format::audit::FLAG_TRAIL as TRAIL;
    /// The smallest size limit an audit policy takes.
    pub use vault_format::audit::MIN_RETAINED_BYTES;
}
pub use vault_format::export::{
    ExportContents, from_json as export_from_json, to_json as export_to_json,
};
pub use vault_format::log::LOG_HEADER_LEN;
pub use vault_format::payload::{KeyState, MAX_NAME_LEN, MAX_VALUE_LEN, Tag, check_new_name};
pub use vault_format::token;
