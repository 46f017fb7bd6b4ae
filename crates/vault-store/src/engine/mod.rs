//! The engine under the [`crate::Vault`] handle: the replicated view of the log and everything
//! that reads, writes and recovers it. Modules here import only each other and lower crates,
//! never the public API modules above them:
//!
//! - [`index`]: what the log says, as an in-memory index (pure).
//! - [`subkeys`]: the per-purpose keys derived from the master key.
//! - [`unlock`]: opening a header's key slots within the limit on key-derivation work.
//! - [`checkpoint`]: the index file: a checkpoint of the view, read block by block, and written.
//! - [`replay`]: the view of the log ([`replay::State`]), catching up, frame checks, torn tails.
//! - [`fetch`]: reading a live record back from the log by the place the index keeps.
//! - [`commit`]: the write transaction (locks in one order, catch-up, checks, append), compaction.
//! - [`options`]: [`options::VaultOptions`], how a vault is opened.
//! - [`seal`]: the one place payloads are sealed into records and records into frames.
//! - [`recovery`]: the read-only open: header under the lock, header binding, rollback record.

pub(crate) mod checkpoint;
pub(crate) mod commit;
pub(crate) mod fetch;
pub(crate) mod index;
pub(crate) mod options;
pub(crate) mod recovery;
pub(crate) mod replay;
pub(crate) mod seal;
pub(crate) mod subkeys;
pub(crate) mod unlock;

use std::time::{SystemTime, UNIX_EPOCH};

use vault_crypto::hash;
use vault_format::payload::{BindingPhase, HeaderBindingPayload, Payload};
use vault_format::{RecordEnvelope, VaultHeader, VaultId};

use std::time::Duration;

use crate::backend::{Backend, ReadSession, WriteSession};
use crate::rollback::RollbackFile;
use crate::sync::{Arc, Mutex, RwLock};
use crate::{Error, Result};
use options::VaultOptions;

use replay::State;
use subkeys::Keys;

/// An open vault. `Send + Sync`: share it between threads behind an `Arc`.
pub(crate) struct Engine {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) vault_id: VaultId,
    pub(crate) options: VaultOptions,
    pub(crate) rollback: RollbackFile,
    pub(crate) header: RwLock<HeaderView>,
    pub(crate) state: RwLock<State>,
    /// Serialises this handle's writers; the backend's lock serialises processes.
    pub(crate) writer: Mutex<()>,
    /// What opening with `accept_rollback` accepted, if anything (the event's text).
    pub(crate) accepted: Mutex<Option<String>>,
    /// What this handle was opened with, for changes authorised by the same passphrase.
    pub(crate) opened: Mutex<Option<unlock::OpenedWith>>,
    /// Managed-key material this handle has read, by key and version, with the key epoch and
    /// record sequence it came from (a use checks the key's state first, every time; only the
    /// read of the material is saved). Zeroized when dropped.
    pub(crate) material: Mutex<MaterialCache>,
    /// The audit trail's files, for a backend that keeps them.
    pub(crate) audit: Option<crate::audit::AuditFiles>,
    /// Whether this handle has already warned that the trail could not be written.
    pub(crate) audit_warned: std::sync::atomic::AtomicBool,
}

/// Key material by (key name, version), with the key epoch and record sequence it was read from.
pub(crate) type MaterialCache =
    std::collections::HashMap<(String, u32), (u32, u64, vault_crypto::SecretBytes)>;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn decode_header(bytes: &[u8], location: &str) -> Result<VaultHeader> {
    VaultHeader::decode(bytes).map_err(|e| match e {
        vault_format::Error::UnsupportedVersion { .. } => Error::Format(e),
        other => Error::integrity(format!("vault header in {location}"), other.to_string()),
    })
}

/// The header as this handle knows it, with the bytes it was decoded from.
#[derive(Clone)]
pub(crate) struct HeaderView {
    pub(crate) header: VaultHeader,
    pub(crate) bytes: Vec<u8>,
}

impl HeaderView {
    pub(crate) fn digest(&self) -> [u8; 32] {
        hash::sha256(&[&self.bytes])
    }
}

pub(crate) fn binding(phase: BindingPhase, digest: [u8; 32]) -> Payload {
    Payload::HeaderBinding(HeaderBindingPayload { phase, digest })
}

pub(crate) fn payload_of(env: &RecordEnvelope, keys: &Keys, vault_id: &VaultId) -> Result<Payload> {
    let plain = env.open(&keys.record, vault_id).map_err(|_| {
        Error::integrity(
            format!("record {}", env.sequence),
            "the record does not authenticate: it was modified or does not belong to this vault",
        )
    })?;
    Payload::decode(env.kind, plain.expose_secret()).map_err(|e| match e {
        vault_format::Error::UnsupportedVersion { .. } => Error::Format(e),
        other => Error::integrity(format!("record {}", env.sequence), other.to_string()),
    })
}

/// A backend session of either kind: `Box<dyn ReadSession>` (readers: many at once, none while
/// the writer's lives) or `Box<dyn WriteSession>` (the writer, alone).
pub(crate) trait Session<'a>: Sized {
    fn begin(backend: &'a dyn Backend, timeout: Duration) -> Result<Self>;
}

impl<'a> Session<'a> for Box<dyn ReadSession + 'a> {
    fn begin(backend: &'a dyn Backend, timeout: Duration) -> Result<Self> {
        backend.begin_read(timeout)
    }
}

impl<'a> Session<'a> for Box<dyn WriteSession + 'a> {
    fn begin(backend: &'a dyn Backend, timeout: Duration) -> Result<Self> {
        backend.begin_write(timeout)
    }
}

impl Engine {
    /// Begins a backend session (and so takes the backend's lock), waiting at most the
    /// configured timeout. The one place the engine does: the writer through
    /// [`commit::WriteTxn`], readers around a catch-up or a strict re-read. Always before the
    /// state lock, never while holding it.
    pub(crate) fn session<'a, S: Session<'a>>(&'a self) -> Result<S> {
        S::begin(&*self.backend, self.options.lock_timeout)
    }

    /// The member whose slot `id` is, in the header as this handle read it.
    pub(crate) fn header_slot_member(&self, id: u16) -> Option<String> {
        crate::sync::read(&self.header)
            .header
            .slot(id)
            .and_then(|s| s.member().map(|(n, _)| n.to_string()))
    }

    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        view: HeaderView,
        keys: Keys,
        options: VaultOptions,
    ) -> Self {
        let vault_id = view.header.vault_id;
        let store = crate::rollback::from_options(
            options.rollback_store.as_ref(),
            options.rollback_dir.as_deref(),
        );
        let rollback = RollbackFile::new(store, &vault_id);
        let audit = backend
            .audit_place()
            .filter(|_| options.audit)
            .map(|(dir, io)| {
                crate::audit::AuditFiles::new(&dir, io, vault_id, options.lock_timeout)
                    // Beside the rollback record when it is kept in files (a supplied store
                    // keeps it elsewhere: then no anchor).
                    .with_anchor_in(
                        options
                            .rollback_dir
                            .as_deref()
                            .filter(|_| options.rollback_store.is_none()),
                    )
            });
        Self {
            backend,
            vault_id,
            options,
            rollback,
            header: RwLock::new(view),
            state: RwLock::new(State::empty(Arc::new(keys))),
            writer: Mutex::new(()),
            accepted: Mutex::new(None),
            opened: Mutex::new(None),
            material: Mutex::new(std::collections::HashMap::new()),
            audit,
            audit_warned: std::sync::atomic::AtomicBool::new(false),
        }
    }
}
