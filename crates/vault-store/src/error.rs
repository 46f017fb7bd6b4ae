//! The engine's error type. Variants are what a caller acts on; none carries secret material.

use std::path::Path;

/// An error from the vault engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No key slot opens with the given passphrase.
    #[error("wrong passphrase: no key slot of this vault opens with it")]
    WrongPassphrase,
    /// No key slot opened, and a slot was not tried because its Argon2id parameters exceed the
    /// limit (`VaultOptions::kdf_limit`).
    #[error(
        "key slot {slot} was not tried: {detail} (a hostile vault file can ask for hours of work; raise the limit only for a vault you trust)"
    )]
    KdfLimit {
        /// The refused slot.
        slot: u16,
        /// Which parameter, its value and the limit.
        detail: String,
    },
    /// The named secret or key does not exist (or the named version does not).
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for, e.g. `secret "db/password"` or `version 3 of secret "x"`.
        what: String,
    },
    /// A check-and-set write found a different current version than the caller expected.
    #[error("conflict: {name:?} is at version {actual}, the write expected version {expected}")]
    Conflict {
        /// The secret's name.
        name: String,
        /// The version the writer expected (0 = must not exist).
        expected: u32,
        /// The version found.
        actual: u32,
    },
    /// The writer lock was not granted within the timeout: another process is writing.
    #[error("vault is busy: another process held the write lock for longer than {waited_ms} ms")]
    Busy {
        /// How long the caller waited.
        waited_ms: u64,
    },
    /// The vault is older than the highest generation this machine has seen committed: an older
    /// copy was put back (or the rollback record is from another copy of the vault).
    #[error(
        "rollback detected: the vault is at generation {vault_generation} but generation {recorded_generation} was committed earlier{newer_epoch} (record {record}); if you restored an older copy on purpose, accept it explicitly"
    )]
    RollbackDetected {
        /// Generation found in the vault.
        vault_generation: u64,
        /// Highest generation recorded as committed.
        recorded_generation: u64,
        /// Where the rollback record lives.
        record: String,
        /// When the record is of a later key epoch than the vault's, what that means ("" else):
        /// the vault was put back to before a master-key rotation.
        newer_epoch: String,
    },
    /// A member's removal is not finished (their slot is marked, the master key not yet
    /// rotated): nothing but the rotation is written until it is, since they may hold the key.
    #[error(
        "the removal of member(s) {members} is not finished: nothing is written under the key they may hold until the master key is rotated (any command that writes, run without the agent, finishes it first)"
    )]
    RemovalPending {
        /// The members whose removal is pending.
        members: String,
    },
    /// Data failed authentication or is structurally damaged: tampering or corruption.
    #[error("integrity failure in {object}: {detail}")]
    Integrity {
        /// Which object (file or record).
        object: String,
        /// What is wrong.
        detail: String,
    },
    /// A file is from a newer version of vault.
    #[error("{0}")]
    Format(#[from] vault_format::Error),
    /// The storage device is full; the commit was not made and the vault is unchanged.
    #[error("storage full while {op} {location}: the commit was not made")]
    StorageFull {
        /// The operation that failed.
        op: &'static str,
        /// Where: a file, or a backend's description of the object.
        location: String,
    },
    /// A storage error (I/O, or a networked backend's failure); for a commit, the commit was not
    /// made.
    #[error("I/O error while {op} {location}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// Where: a file, or a backend's description of the object.
        location: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A name, value or parameter the vault does not accept.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A vault already exists where one was to be created.
    #[error("a vault already exists at {0}")]
    AlreadyExists(String),
    /// No vault exists at the location.
    #[error("no vault at {0}")]
    NoVault(String),
    /// Another process rotated the master key; this handle's key is stale.
    #[error("the vault's master key was rotated by another process; open the vault again")]
    Rekeyed,
    /// A managed key refused an operation (its state, floor, policy or expiry), or a token or
    /// signature given to it does not hold.
    #[error("{0}")]
    Key(crate::keys::KeyError),
    /// An export file could not be read: wrong export passphrase, changed, malformed, or asking
    /// for too much key-derivation work.
    #[error("{0}")]
    Export(crate::transfer::ExportFileError),
    /// A cryptographic operation failed (RNG or KDF), not an authentication failure.
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] vault_crypto::Error),
    /// With fail-closed auditing, the operation's audit entry could not be written durably, so
    /// the operation was refused (a change not made, a read's result not handed back).
    #[error("refused: its audit entry could not be written durably ({0})")]
    AuditUnwritten(String),
}

impl Error {
    /// `true` for errors that mean the stored data cannot be trusted: tampering, corruption or
    /// rollback (the CLI's exit code 5).
    pub fn is_integrity(&self) -> bool {
        match self {
            Error::Integrity { .. } | Error::RollbackDetected { .. } => true,
            Error::Format(e) => !matches!(e, vault_format::Error::UnsupportedVersion { .. }),
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: std::io::Error) -> Self {
        let location = path.as_ref().display().to_string();
        if crate::io::is_not_regular(&source) {
            return Error::Integrity {
                object: location,
                detail: "not a regular file: something else (a symbolic link, directory, FIFO or device) was put in its place".into(),
            };
        }
        if is_storage_full(&source) {
            Error::StorageFull { op, location }
        } else {
            Error::Io {
                op,
                location,
                source: Box::new(source),
            }
        }
    }

    /// A storage error from a backend that is not a file system: `location` names the object,
    /// `source` is the backend's own error.
    pub fn storage(
        op: &'static str,
        location: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Io {
            op,
            location: location.into(),
            source: source.into(),
        }
    }

    pub(crate) fn integrity(object: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Integrity {
            object: object.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

fn is_storage_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(28)
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
