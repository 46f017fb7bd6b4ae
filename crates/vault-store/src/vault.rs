//! The vault engine: an in-memory index over the log, commits, refresh, compaction, key slots
//! and master-key rotation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vault_crypto::derive::{self, Purpose};
use vault_crypto::hash;
use vault_crypto::kdf::KdfParams;
use vault_crypto::mac::MAC_LEN;
use vault_crypto::{Key256, SecretBytes};
use vault_format::log::{Frame, FrameType};
use vault_format::payload::{
    self, BindingPhase, EventKind, EventPayload, HeaderBindingPayload, KeyState, KeyVersionPayload,
    Payload, SecretState, SecretStatePayload, SecretVersionPayload, SettingsPayload, Tag,
};
use vault_format::{KeySlot, RecordEnvelope, VaultHeader, VaultId};

use crate::backend::{Backend, LockGuard, Position, Tail, Visit};
use crate::rollback::{Recorded, RollbackFile};
use crate::sync::{self, Arc, Mutex, MutexGuard, RwLock, RwLockWriteGuard};
use crate::unlock::{self, KdfLimit};
use crate::{Error, Result};

/// Default number of versions kept per secret.
pub const DEFAULT_MAX_VERSIONS: u32 = 100;

/// How a vault is opened or created.
#[derive(Clone, Debug)]
pub struct VaultOptions {
    /// How long a writer waits for another process's write lock before [`Error::Busy`].
    pub lock_timeout: Duration,
    /// Directory holding rollback records; `None` turns rollback detection off (in-memory vaults).
    pub rollback_dir: Option<PathBuf>,
    /// Accept a vault older than its rollback record (after a deliberate restore). The acceptance
    /// is recorded in the vault as an event.
    pub accept_rollback: bool,
    /// Compact automatically when the log holds more than this many bytes of superseded records
    /// and they outweigh the live ones.
    pub auto_compact_bytes: u64,
    /// The most Argon2id work a key slot may ask for before it is tried (and the most a new
    /// slot may be given).
    pub kdf_limit: KdfLimit,
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(10),
            rollback_dir: None,
            accept_rollback: false,
            auto_compact_bytes: 8 << 20,
            kdf_limit: KdfLimit::DEFAULT,
        }
    }
}

/// A secret version as read.
#[derive(Debug)]
pub struct Secret {
    /// Name.
    pub name: String,
    /// Version number.
    pub version: u32,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Metadata.
    pub tags: Vec<Tag>,
    /// The value (zeroized on drop; `Debug` is redacted).
    pub value: SecretBytes,
}

/// Metadata of one secret version (no value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version number.
    pub version: u32,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Value length in bytes.
    pub size: usize,
    /// Metadata.
    pub tags: Vec<Tag>,
}

/// A secret as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    /// Name.
    pub name: String,
    /// Latest version.
    pub latest: u32,
    /// Versions kept.
    pub versions: usize,
    /// Soft-deleted.
    pub deleted: bool,
}

/// Metadata of a managed key version (no material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersionInfo {
    /// Version.
    pub version: u32,
    /// Algorithm.
    pub algorithm: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// Created, ms.
    pub created_ms: i64,
    /// Last state change, ms.
    pub state_changed_ms: i64,
}

/// Options of one `set`.
#[derive(Clone, Debug, Default)]
pub struct SetOptions {
    /// Check-and-set: the version the secret must be at (0 = must not exist) for the write to
    /// happen; otherwise [`Error::Conflict`].
    pub expected_version: Option<u32>,
    /// Metadata for the new version.
    pub tags: Vec<Tag>,
}

/// A key slot as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot id.
    pub id: u8,
    /// Its Argon2id parameters.
    pub kdf: KdfParams,
    /// Whether this handle was unlocked with it.
    pub in_use: bool,
}

/// What [`Vault::verify`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Frames read and authenticated.
    pub frames: u64,
    /// Records decrypted and authenticated.
    pub records: u64,
    /// Generation at the head of the log.
    pub generation: u64,
    /// What the rollback record says (`None` if there is none or checking is off).
    pub recorded_generation: Option<u64>,
    /// Secrets (including soft-deleted ones).
    pub secrets: usize,
    /// Managed keys.
    pub keys: usize,
    /// Bytes in the log that a compaction would drop.
    pub superseded_bytes: u64,
    /// The log ends with the torn tail of an interrupted commit (never acknowledged); the next
    /// write discards it.
    pub torn_tail: bool,
}

/// One change in a batch.
#[derive(Debug)]
enum Op {
    Set {
        name: String,
        value: SecretBytes,
        options: SetOptions,
    },
    State {
        name: String,
        state: SecretState,
    },
    Settings {
        max_versions: u32,
    },
    KeyVersion {
        name: String,
        algorithm: String,
        material: SecretBytes,
        state: KeyState,
        version: Option<u32>,
    },
}

/// Several changes committed together, atomically and with one fsync.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a new version of `name`.
    pub fn set(&mut self, name: &str, value: SecretBytes, options: SetOptions) -> &mut Self {
        self.ops.push(Op::Set {
            name: name.to_string(),
            value,
            options,
        });
        self
    }

    /// Soft-deletes `name`.
    pub fn delete(&mut self, name: &str) -> &mut Self {
        self.ops.push(Op::State {
            name: name.to_string(),
            state: SecretState::Deleted,
        });
        self
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

struct Keys {
    epoch: u32,
    record: Key256,
    mac: Key256,
    rollback: Key256,
    slot_id: u8,
}

impl Keys {
    fn derive(master: &Key256, vault_id: &VaultId, epoch: u32, slot_id: u8) -> Self {
        let ctx = vault_id.as_bytes();
        Self {
            epoch,
            record: derive::subkey(master, Purpose::RecordEncryption, ctx),
            mac: derive::subkey(master, Purpose::RecordMac, ctx),
            rollback: derive::subkey(master, Purpose::RollbackRecord, ctx),
            slot_id,
        }
    }
}

#[derive(Clone)]
struct VersionMeta {
    created_ms: i64,
    tags: Vec<Tag>,
    size: usize,
    env: Arc<RecordEnvelope>,
}

#[derive(Clone, Default)]
struct SecretEntry {
    versions: BTreeMap<u32, VersionMeta>,
    latest: u32,
    deleted: Option<Arc<RecordEnvelope>>,
}

#[derive(Clone)]
struct KeyMeta {
    info: KeyVersionInfo,
    env: Arc<RecordEnvelope>,
}

/// Everything known about the vault's contents, rebuilt from the log.
#[derive(Clone, Default)]
struct Index {
    secrets: BTreeMap<String, SecretEntry>,
    keys: BTreeMap<String, BTreeMap<u32, KeyMeta>>,
    settings: Option<(u32, Arc<RecordEnvelope>)>,
    events: Vec<Arc<RecordEnvelope>>,
    /// The header the log last confirmed (SHA-256 of the header file).
    header_confirmed: Option<([u8; 32], Arc<RecordEnvelope>)>,
    /// A header change announced but not yet confirmed.
    header_pending: Option<([u8; 32], Arc<RecordEnvelope>)>,
    /// Bytes of envelopes appended to the current log.
    total_bytes: u64,
    /// Bytes of envelopes no longer live.
    dead_bytes: u64,
}

impl Index {
    fn max_versions(&self) -> u32 {
        self.settings.as_ref().map_or(DEFAULT_MAX_VERSIONS, |s| s.0)
    }

    fn apply(&mut self, env: Arc<RecordEnvelope>, payload: &Payload) {
        let size = env.encoded_len() as u64;
        self.total_bytes += size;
        match payload {
            Payload::SecretVersion(p) => {
                let max = self.max_versions() as usize;
                let e = self.secrets.entry(p.name.clone()).or_default();
                if let Some(old) = e.versions.insert(
                    p.version,
                    VersionMeta {
                        created_ms: p.created_ms,
                        tags: p.tags.clone(),
                        size: p.value.len(),
                        env,
                    },
                ) {
                    self.dead_bytes += old.env.encoded_len() as u64;
                }
                e.latest = e.latest.max(p.version);
                while e.versions.len() > max {
                    match e.versions.pop_first() {
                        Some((_, old)) => self.dead_bytes += old.env.encoded_len() as u64,
                        None => break,
                    }
                }
            }
            Payload::SecretState(p) => match p.state {
                SecretState::Deleted => {
                    if let Some(e) = self.secrets.get_mut(&p.name) {
                        if let Some(old) = e.deleted.replace(env) {
                            self.dead_bytes += old.encoded_len() as u64;
                        }
                    } else {
                        self.dead_bytes += size;
                    }
                }
                SecretState::Restored => {
                    self.dead_bytes += size;
                    if let Some(old) = self.secrets.get_mut(&p.name).and_then(|e| e.deleted.take())
                    {
                        self.dead_bytes += old.encoded_len() as u64;
                    }
                }
                SecretState::Destroyed => {
                    self.dead_bytes += size;
                    if let Some(e) = self.secrets.remove(&p.name) {
                        self.dead_bytes += e
                            .versions
                            .values()
                            .map(|v| v.env.encoded_len() as u64)
                            .sum::<u64>()
                            + e.deleted.map_or(0, |d| d.encoded_len() as u64);
                    }
                }
            },
            Payload::KeyVersion(p) => {
                let versions = self.keys.entry(p.name.clone()).or_default();
                if let Some(old) = versions.insert(
                    p.version,
                    KeyMeta {
                        info: KeyVersionInfo {
                            version: p.version,
                            algorithm: p.algorithm.clone(),
                            state: p.state,
                            created_ms: p.created_ms,
                            state_changed_ms: p.state_changed_ms,
                        },
                        env,
                    },
                ) {
                    self.dead_bytes += old.env.encoded_len() as u64;
                }
            }
            Payload::Settings(p) => {
                if let Some((_, old)) = self.settings.replace((p.max_versions, env)) {
                    self.dead_bytes += old.encoded_len() as u64;
                }
                let max = p.max_versions as usize;
                for e in self.secrets.values_mut() {
                    while e.versions.len() > max {
                        match e.versions.pop_first() {
                            Some((_, old)) => self.dead_bytes += old.env.encoded_len() as u64,
                            None => break,
                        }
                    }
                }
            }
            Payload::Event(_) => self.events.push(env),
            Payload::HeaderBinding(p) => {
                let dead = match p.phase {
                    BindingPhase::Intent => self.header_pending.replace((p.digest, env)),
                    BindingPhase::Confirmed => {
                        let old_pending = self.header_pending.take();
                        if let Some((_, old)) = &old_pending {
                            self.dead_bytes += old.encoded_len() as u64;
                        }
                        self.header_confirmed.replace((p.digest, env))
                    }
                };
                if let Some((_, old)) = dead {
                    self.dead_bytes += old.encoded_len() as u64;
                }
            }
        }
    }

    /// Whether the header with `digest` is the one the log vouches for: `Ok(true)` if it is and
    /// a writer should confirm it (it was only announced, a later announcement was abandoned, or
    /// the log predates header binding), `Ok(false)` if it is settled.
    ///
    /// # Errors
    /// An integrity error if the log vouches for another header: an older header was put back.
    fn header_binding(&self, digest: &[u8; 32]) -> Result<bool> {
        let confirmed = self.header_confirmed.as_ref().map(|(d, _)| d);
        let pending = self.header_pending.as_ref().map(|(d, _)| d);
        match (confirmed, pending) {
            (None, None) => Ok(true),
            (_, Some(p)) if p == digest => Ok(true),
            (Some(c), p) if c == digest => Ok(p.is_some()),
            _ => Err(Error::integrity(
                "vault header",
                "the header is not the one the log last recorded: an older or foreign header file was put back (a changed or removed passphrase could open it again); if this was deliberate, accept it with accept-rollback",
            )),
        }
    }

    /// Every live envelope, in sequence order.
    fn live(&self) -> Vec<Arc<RecordEnvelope>> {
        let mut out: Vec<Arc<RecordEnvelope>> = Vec::new();
        if let Some((_, s)) = &self.settings {
            out.push(s.clone());
        }
        for e in self.secrets.values() {
            out.extend(e.versions.values().map(|v| v.env.clone()));
            out.extend(e.deleted.iter().cloned());
        }
        for k in self.keys.values() {
            out.extend(k.values().map(|v| v.env.clone()));
        }
        out.extend(self.events.iter().cloned());
        out.extend(self.header_confirmed.iter().map(|(_, e)| e.clone()));
        out.extend(self.header_pending.iter().map(|(_, e)| e.clone()));
        out.sort_by_key(|e| e.sequence);
        out
    }
}

/// The replicated view of the log.
struct State {
    keys: Arc<Keys>,
    index: Index,
    pos: Position,
    generation: u64,
    last_mac: [u8; MAC_LEN],
    /// Highest record sequence seen.
    max_seq: u64,
    /// Set after a failed commit: the next operation re-reads the log from the start.
    needs_reload: bool,
    /// Set after a master-key rotation failed midway: only reopening can tell which key is
    /// current, so every operation fails with [`Error::Rekeyed`].
    poisoned: bool,
    /// Leftovers of interrupted operations were removed by this handle (once is enough).
    cleaned: bool,
}

impl State {
    fn empty(keys: Arc<Keys>) -> Self {
        Self {
            keys,
            index: Index::default(),
            pos: Position::default(),
            generation: 0,
            last_mac: [0; MAC_LEN],
            max_seq: 0,
            needs_reload: false,
            poisoned: false,
            cleaned: false,
        }
    }
}

/// An open vault. `Send + Sync`: share it between threads behind an `Arc`.
pub struct Vault {
    backend: Arc<dyn Backend>,
    vault_id: VaultId,
    options: VaultOptions,
    rollback: RollbackFile,
    header: RwLock<HeaderView>,
    state: RwLock<State>,
    /// Serialises this handle's writers; the backend's lock serialises processes.
    writer: Mutex<()>,
    /// What opening with `accept_rollback` accepted, if anything (the event's text).
    accepted: Mutex<Option<String>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("location", &self.backend.location())
            .field("vault_id", &self.vault_id)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn decode_header(bytes: &[u8], location: &str) -> Result<VaultHeader> {
    VaultHeader::decode(bytes).map_err(|e| match e {
        vault_format::Error::UnsupportedVersion { .. } => Error::Format(e),
        other => Error::integrity(format!("vault header in {location}"), other.to_string()),
    })
}

/// The header as this handle knows it, with the bytes it was decoded from.
#[derive(Clone)]
struct HeaderView {
    header: VaultHeader,
    bytes: Vec<u8>,
}

impl HeaderView {
    fn digest(&self) -> [u8; 32] {
        hash::sha256(&[&self.bytes])
    }
}

fn binding(phase: BindingPhase, digest: [u8; 32]) -> Payload {
    Payload::HeaderBinding(HeaderBindingPayload { phase, digest })
}

fn payload_of(env: &RecordEnvelope, keys: &Keys, vault_id: &VaultId) -> Result<Payload> {
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

fn check_name(name: &str) -> Result<()> {
    payload::check_new_name(name).map_err(|r| Error::invalid("name", r))
}

/// Why a frame was not accepted.
enum FrameError {
    /// It does not parse or does not authenticate: damage, or part of a torn tail.
    Unauthentic(Error),
    /// It authenticates but breaks a rule of the log: written by a holder of the key, never torn.
    Invalid(Error),
}

/// Applies an accepted frame to `st`.
fn apply_frame(
    st: &mut State,
    frame: &Frame,
    decoded: Vec<(Arc<RecordEnvelope>, Payload)>,
    end: Position,
) {
    for (env, p) in decoded {
        st.max_seq = st.max_seq.max(env.sequence);
        st.index.apply(env, &p);
    }
    st.generation = frame.generation;
    st.last_mac = frame.mac;
    st.pos = end;
}

/// The error for a damaged log tail: the frame that failed, or the bytes that no interrupted
/// commit can leave.
fn damage(failure: Option<Error>, location: &str) -> Error {
    failure.unwrap_or_else(|| {
        Error::integrity(
            format!("log in {location}"),
            "the log continues after its last frame with more bytes than an interrupted commit can leave",
        )
    })
}

/// A change prepared by a writer: payloads to seal and commit.
type Prepared = Vec<Payload>;

/// How many times `open` starts over when another process rotates the master key meanwhile.
const OPEN_ATTEMPTS: usize = 3;

/// The locks of one write, taken in the one documented order (this handle's writer mutex, the
/// backend's exclusive lock, the state lock) and released in reverse (fields drop in order).
struct WriteTxn<'a> {
    st: RwLockWriteGuard<'a, State>,
    _backend: Box<dyn LockGuard + 'a>,
    _writer: MutexGuard<'a, ()>,
    /// The header as read under the lock.
    view: HeaderView,
}

impl Vault {
    /// Creates a new vault with one passphrase slot.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] (also when only part of a vault is there), [`Error::Invalid`]
    /// for KDF parameters over `options.kdf_limit`, or I/O and crypto errors.
    pub fn create(
        backend: Arc<dyn Backend>,
        passphrase: &SecretBytes,
        kdf: KdfParams,
        options: VaultOptions,
    ) -> Result<Self> {
        options.kdf_limit.check_new(&kdf)?;
        if backend.exists()? {
            // A vault that lost its header is reported as that, not as "a vault exists".
            return Err(match backend.read_header() {
                Err(e @ Error::Integrity { .. }) => e,
                _ => Error::AlreadyExists(backend.location().into()),
            });
        }
        let vault_id = VaultId::random()?;
        let master = Key256::generate()?;
        let slot = KeySlot::create(0, passphrase.expose_secret(), kdf, &master, &vault_id, 0)?;
        let header = VaultHeader::new(vault_id, 0, vec![slot], &master)?;
        let keys = Keys::derive(&master, &vault_id, 0, 0);
        drop(master);
        let view = HeaderView {
            bytes: header.encode(),
            header,
        };
        let initial = [
            Payload::Settings(SettingsPayload {
                max_versions: DEFAULT_MAX_VERSIONS,
            }),
            Payload::Event(EventPayload {
                kind: EventKind::Created,
                time_ms: now_ms(),
                text: "vault created".into(),
            }),
            binding(BindingPhase::Confirmed, view.digest()),
        ];
        let mut records = Vec::new();
        for (seq, p) in (1u64..).zip(&initial) {
            records.push(RecordEnvelope::seal(
                &keys.record,
                &vault_id,
                p.kind(),
                seq,
                &p.encode()?,
            )?);
        }
        let frame = Frame::seal(
            &keys.mac,
            &vault_id,
            0,
            &[0; MAC_LEN],
            FrameType::Snapshot,
            1,
            records,
        );
        backend.create(&view.bytes, 0, &frame.encode()?)?;
        let vault = Self::new(backend, view, keys, options);
        {
            let txn = vault.begin_write(false)?;
            vault.record_generation(&txn.st);
        }
        Ok(vault)
    }

    fn new(backend: Arc<dyn Backend>, view: HeaderView, keys: Keys, options: VaultOptions) -> Self {
        let vault_id = view.header.vault_id;
        let rollback = RollbackFile::new(options.rollback_dir.as_deref(), &vault_id);
        Self {
            backend,
            vault_id,
            options,
            rollback,
            header: RwLock::new(view),
            state: RwLock::new(State::empty(Arc::new(keys))),
            writer: Mutex::new(()),
            accepted: Mutex::new(None),
        }
    }

    /// Opens an existing vault with a passphrase. Reads only: nothing in the vault is changed
    /// (a torn tail is discarded, and leftovers removed, by the first write).
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`], [`Error::KdfLimit`], [`Error::RollbackDetected`],
    /// [`Error::Integrity`], [`Error::Format`] (e.g. a newer format version),
    /// [`Error::NoVault`], I/O errors.
    pub fn open(
        backend: Arc<dyn Backend>,
        passphrase: &SecretBytes,
        options: VaultOptions,
    ) -> Result<Self> {
        let mut last = Error::Rekeyed;
        for _ in 0..OPEN_ATTEMPTS {
            // Read and unlock without a lock (Argon2 takes long; writers must not wait on it),
            // then check under the lock that the header is still the one unlocked.
            let bytes = backend.read_header()?;
            let header = decode_header(&bytes, &backend.location())?;
            let (master, slot_id) = unlock::unlock(&header, passphrase, &options.kdf_limit)?;
            let keys = Keys::derive(&master, &header.vault_id, header.key_epoch, slot_id);
            drop(master);
            let vault = Self::new(
                backend.clone(),
                HeaderView { header, bytes },
                keys,
                options.clone(),
            );
            match vault.open_log() {
                // Another process rotated the master key after the header was read.
                Err(Error::Rekeyed) => last = Error::Rekeyed,
                Err(e) => return Err(e),
                Ok(()) => return Ok(vault),
            }
        }
        Err(last)
    }

    /// Reads the log under a reader lock and checks the header binding and the rollback record.
    fn open_log(&self) -> Result<()> {
        if self.options.accept_rollback {
            return self.begin_write(true).map(drop);
        }
        let _w = sync::lock(&self.writer);
        let _g = self.backend.lock_shared(self.options.lock_timeout)?;
        let mut st = sync::write(&self.state);
        let view = self.current_header(&st.keys)?;
        self.reload(&mut st, false)?;
        st.index.header_binding(&view.digest())?;
        match self.rollback_behind(&st, false)? {
            Some(r) => Err(Error::RollbackDetected {
                vault_generation: st.generation,
                recorded_generation: r,
                record: self.rollback.path(),
            }),
            None => Ok(()),
        }
    }

    /// Reads the header (holding a backend lock) and checks it against this handle's keys,
    /// adopting it if another process changed a key slot.
    fn current_header(&self, keys: &Keys) -> Result<HeaderView> {
        let bytes = self.backend.read_header()?;
        {
            let known = sync::read(&self.header);
            if known.bytes == bytes {
                return Ok(known.clone());
            }
        }
        let header = decode_header(&bytes, &self.backend.location())?;
        if header.vault_id != self.vault_id {
            return Err(Error::integrity(
                "vault header",
                format!(
                    "the header is of vault {}, not {}",
                    header.vault_id, self.vault_id
                ),
            ));
        }
        if header.key_epoch > keys.epoch {
            return Err(Error::Rekeyed);
        }
        if header.key_epoch < keys.epoch {
            return Err(Error::integrity(
                "vault header",
                format!(
                    "the header is of key epoch {}, older than epoch {} this vault was opened at: an older header was put back",
                    header.key_epoch, keys.epoch
                ),
            ));
        }
        header.verify_mac_with_subkey(&keys.mac).map_err(|_| {
            Error::integrity(
                "vault header",
                "the header MAC does not verify: the header was modified",
            )
        })?;
        let view = HeaderView { header, bytes };
        *sync::write(&self.header) = view.clone();
        Ok(view)
    }

    /// The generation the rollback record shows as committed, if the vault is behind it.
    /// `lenient`: an unreadable record is ignored (when accepting a rollback).
    fn rollback_behind(&self, st: &State, lenient: bool) -> Result<Option<u64>> {
        let recorded = match self
            .rollback
            .load(&self.vault_id, &st.keys.rollback, st.keys.epoch)
        {
            Ok(r) => r,
            Err(e) if lenient => {
                tracing::warn!(error = %e, "ignoring an unreadable rollback record, as asked");
                Recorded::Nothing
            }
            Err(e) => return Err(e),
        };
        Ok(match recorded {
            Recorded::Generation(r) if r > st.generation => Some(r),
            Recorded::NewerEpoch { generation, .. } => Some(generation.max(st.generation + 1)),
            _ => None,
        })
    }

    /// Starts a write: takes the locks, re-reads the header under them, removes leftovers of
    /// interrupted operations (once per handle), catches up with the log (discarding a torn
    /// tail), and refuses to write over a rollback or a replaced header unless `accept`, in
    /// which case the acceptance is committed here. Every mutation starts here.
    fn begin_write(&self, accept: bool) -> Result<WriteTxn<'_>> {
        let writer = sync::lock(&self.writer);
        let guard = self.backend.lock_exclusive(self.options.lock_timeout)?;
        let mut st = sync::write(&self.state);
        if st.poisoned {
            return Err(Error::Rekeyed);
        }
        let view = self.current_header(&st.keys)?;
        if !st.cleaned {
            self.backend.cleanup(view.header.key_epoch)?;
            st.cleaned = true;
        }
        self.reload(&mut st, true)?;
        // Checked before anything is written: a write must never overwrite the evidence.
        let behind = self.rollback_behind(&st, accept)?;
        if let (Some(r), false) = (behind, accept) {
            return Err(Error::RollbackDetected {
                vault_generation: st.generation,
                recorded_generation: r,
                record: self.rollback.path(),
            });
        }
        let digest = view.digest();
        let (confirm, foreign_header) = match st.index.header_binding(&digest) {
            Ok(confirm) => (confirm, false),
            Err(e) if accept => {
                tracing::warn!(error = %e, "accepting the header as it is, as asked");
                (true, true)
            }
            Err(e) => return Err(e),
        };
        let mut txn = WriteTxn {
            st,
            _backend: guard,
            _writer: writer,
            view,
        };
        let mut payloads = Vec::new();
        if confirm {
            payloads.push(binding(BindingPhase::Confirmed, digest));
        }
        let mut min_generation = 0;
        if behind.is_some() || foreign_header {
            let mut text = format!(
                "accepted an older state: vault generation {}",
                txn.st.generation
            );
            if let Some(r) = behind {
                text.push_str(&format!(", rollback record {r}"));
                // Continue above the recorded generation so the record stays monotonic.
                min_generation = r + 1;
            }
            if foreign_header {
                text.push_str(", and a header the log did not record");
            }
            tracing::warn!("{text}");
            *sync::lock(&self.accepted) = Some(text.clone());
            payloads.push(Payload::Event(EventPayload {
                kind: EventKind::RollbackAccepted,
                time_ms: now_ms(),
                text,
            }));
        }
        let wrote = !payloads.is_empty();
        if wrote {
            self.append_locked(&mut txn.st, payloads, min_generation)?;
        }
        if wrote || accept {
            self.record_generation(&txn.st);
        }
        Ok(txn)
    }

    /// `e`, or [`Error::Rekeyed`] if the header shows that the master key was rotated past
    /// `epoch` (which explains a missing or replaced log).
    fn rekeyed_or(&self, e: Error, epoch: u32) -> Error {
        if matches!(e, Error::Rekeyed) {
            return e;
        }
        match self
            .backend
            .read_header()
            .ok()
            .and_then(|b| VaultHeader::decode(&b).ok())
        {
            Some(h) if h.key_epoch > epoch => Error::Rekeyed,
            _ => e,
        }
    }

    /// Brings `st` up to date with the backend. `writer`: the caller holds the writer lock, so a
    /// torn tail is cut off; a reader leaves it (a read-only command never modifies the vault).
    fn reload(&self, st: &mut State, writer: bool) -> Result<()> {
        if st.poisoned {
            return Err(Error::Rekeyed);
        }
        let since = if st.needs_reload {
            Position::default()
        } else {
            st.pos
        };
        let keys = st.keys.clone();
        // A read from the start builds the new view aside, so a failure leaves the old one.
        let mut fresh: Option<State> = None;
        let mut failure: Option<Error> = None;
        let out = self.backend.read(keys.epoch, &since, &mut |f| {
            let target: &mut State = if f.from_start {
                fresh.get_or_insert_with(|| State::empty(keys.clone()))
            } else {
                &mut *st
            };
            match self.check_frame(target, &f.body) {
                Ok((frame, decoded)) => {
                    apply_frame(target, &frame, decoded, f.end);
                    Ok(Visit::Continue)
                }
                Err(FrameError::Unauthentic(e)) => {
                    failure = Some(e);
                    Ok(Visit::Stop)
                }
                Err(FrameError::Invalid(e)) => Err(e),
            }
        });
        let out = out.map_err(|e| self.rekeyed_or(e, keys.epoch))?;
        let location = self.backend.location();
        if out.reset {
            let mut f = fresh.unwrap_or_else(|| State::empty(keys.clone()));
            f.cleaned = st.cleaned;
            if f.generation == 0 {
                let why = failure.map_or_else(String::new, |e| format!(" ({e})"));
                return Err(Error::integrity(
                    format!("log in {location}"),
                    format!("the log holds no snapshot frame{why}"),
                ));
            }
            if out.tail == Tail::Damaged {
                return Err(damage(failure, &location));
            }
            *st = f;
        } else if out.tail == Tail::Damaged {
            return Err(damage(failure, &location));
        }
        if out.tail == Tail::Torn {
            if writer {
                tracing::warn!(
                    at = st.pos.offset,
                    "discarding a torn log tail left by an interrupted commit"
                );
                self.backend.truncate(st.keys.epoch, &st.pos)?;
            } else {
                tracing::debug!("log has a torn tail; the next writer will discard it");
            }
        }
        Ok(())
    }

    /// Decodes, authenticates and decrypts one frame against the chain so far.
    #[allow(clippy::type_complexity)]
    fn check_frame(
        &self,
        st: &State,
        body: &[u8],
    ) -> std::result::Result<(Frame, Vec<(Arc<RecordEnvelope>, Payload)>), FrameError> {
        let keys = &st.keys;
        let frame = Frame::decode(body)
            .map_err(|e| FrameError::Unauthentic(Error::integrity("log frame", e.to_string())))?;
        frame
            .verify(body, &keys.mac, &self.vault_id, keys.epoch, &st.last_mac)
            .map_err(|_| {
                FrameError::Unauthentic(Error::integrity(
                    format!("log frame at generation {}", frame.generation),
                    "the frame does not authenticate: the log was modified, reordered or truncated in the middle",
                ))
            })?;
        let invalid =
            |object: String, detail: String| FrameError::Invalid(Error::integrity(object, detail));
        let first = st.generation == 0;
        match (first, frame.frame_type) {
            (true, FrameType::Snapshot) | (false, FrameType::Commit) => {}
            (true, FrameType::Commit) => {
                return Err(invalid(
                    "log".into(),
                    "the log does not start with a snapshot".into(),
                ));
            }
            (false, FrameType::Snapshot) => {
                return Err(invalid(
                    "log".into(),
                    "a snapshot frame in the middle of the log".into(),
                ));
            }
        }
        if frame.generation <= st.generation {
            return Err(invalid(
                "log".into(),
                format!(
                    "generation {} does not follow generation {}",
                    frame.generation, st.generation
                ),
            ));
        }
        let mut max_seq = st.max_seq;
        let mut decoded = Vec::with_capacity(frame.records.len());
        for env in &frame.records {
            if env.sequence <= max_seq {
                return Err(invalid(
                    format!("record {}", env.sequence),
                    "record sequence numbers are not increasing".into(),
                ));
            }
            max_seq = env.sequence;
            let p = payload_of(env, keys, &self.vault_id).map_err(FrameError::Invalid)?;
            decoded.push((Arc::new(env.clone()), p));
        }
        Ok((frame, decoded))
    }

    /// Notices commits by other handles or processes before a read.
    fn refresh(&self) -> Result<()> {
        let (epoch, pos, needs) = {
            let st = sync::read(&self.state);
            if st.poisoned {
                return Err(Error::Rekeyed);
            }
            (st.keys.epoch, st.pos, st.needs_reload)
        };
        if !needs && !self.backend.changed(epoch, &pos)? {
            return Ok(());
        }
        // Backend lock before the state lock, always: a writer holds them in that order.
        let _g = self.backend.lock_shared(self.options.lock_timeout)?;
        let mut st = sync::write(&self.state);
        if st.pos != pos && !st.needs_reload {
            return Ok(()); // another thread caught up meanwhile
        }
        self.reload(&mut st, false)
    }

    fn record_generation(&self, st: &State) {
        if let Err(e) = self.rollback.store(
            &self.vault_id,
            &st.keys.rollback,
            st.keys.epoch,
            st.generation,
        ) {
            // The commit itself is durable; only rollback detection is weakened until the next
            // successful update.
            tracing::warn!(error = %e, "could not update the rollback record");
        }
    }

    /// Seals `payloads` into one commit frame and appends it. Caller holds the writer lock and
    /// an up-to-date `st`.
    fn append_locked(&self, st: &mut State, payloads: Prepared, min_generation: u64) -> Result<()> {
        let keys = st.keys.clone();
        let mut seq = st.max_seq;
        let mut envs = Vec::with_capacity(payloads.len());
        for p in &payloads {
            seq += 1;
            envs.push(RecordEnvelope::seal(
                &keys.record,
                &self.vault_id,
                p.kind(),
                seq,
                &p.encode()?,
            )?);
        }
        let generation = (st.generation + 1).max(min_generation);
        let frame = Frame::seal(
            &keys.mac,
            &self.vault_id,
            keys.epoch,
            &st.last_mac,
            FrameType::Commit,
            generation,
            envs,
        );
        let body = frame.encode()?;
        match self.backend.append(keys.epoch, &st.pos, &body) {
            Ok(pos) => {
                let Frame { records, mac, .. } = frame;
                for (env, p) in records.into_iter().zip(&payloads) {
                    st.index.apply(Arc::new(env), p);
                }
                st.max_seq = seq;
                st.generation = generation;
                st.last_mac = mac;
                st.pos = pos;
                Ok(())
            }
            Err(e) => {
                st.needs_reload = true;
                Err(e)
            }
        }
    }

    /// Runs a write: takes the locks, catches up with the log, lets `prepare` validate against
    /// the current state and produce payloads, commits them durably, then applies them.
    fn write_txn<R>(&self, prepare: impl FnOnce(&State) -> Result<(Prepared, R)>) -> Result<R> {
        let mut txn = self.begin_write(false)?;
        let st = &mut *txn.st;
        let (payloads, result) = prepare(st)?;
        if payloads.is_empty() {
            return Ok(result);
        }
        self.append_locked(st, payloads, 0)?;
        self.record_generation(st);
        let compact = st.index.dead_bytes > self.options.auto_compact_bytes
            && st.index.dead_bytes * 2 > st.index.total_bytes;
        if compact && let Err(e) = self.compact_locked(st) {
            // The commit is durable; compaction is an optimisation that will be retried.
            tracing::warn!(error = %e, "automatic compaction failed");
        }
        Ok(result)
    }

    /// What opening with [`VaultOptions::accept_rollback`] accepted and recorded in the vault (an
    /// older state, a header the log did not record), or `None` if there was nothing to accept.
    pub fn accepted_rollback(&self) -> Option<String> {
        sync::lock(&self.accepted).clone()
    }

    /// The vault's id.
    pub fn vault_id(&self) -> VaultId {
        self.vault_id
    }

    /// Where the vault is stored.
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// The generation of the last commit seen by this handle.
    pub fn generation(&self) -> u64 {
        sync::read(&self.state).generation
    }

    /// Reads the latest version of `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is no such secret or it is deleted; integrity errors.
    pub fn get(&self, name: &str) -> Result<Secret> {
        self.get_version_opt(name, None)
    }

    /// Reads version `version` of `name`.
    ///
    /// # Errors
    /// As [`Vault::get`].
    pub fn get_version(&self, name: &str, version: u32) -> Result<Secret> {
        self.get_version_opt(name, Some(version))
    }

    fn get_version_opt(&self, name: &str, version: Option<u32>) -> Result<Secret> {
        self.refresh()?;
        let (env, keys) = {
            let st = sync::read(&self.state);
            let entry = st.index.secrets.get(name).ok_or_else(|| Error::NotFound {
                what: format!("secret {name:?}"),
            })?;
            if entry.deleted.is_some() {
                return Err(Error::NotFound {
                    what: format!("secret {name:?} (it is deleted; undelete it to read it)"),
                });
            }
            let v = version.unwrap_or(entry.latest);
            let meta = entry.versions.get(&v).ok_or_else(|| Error::NotFound {
                what: format!("version {v} of secret {name:?}"),
            })?;
            (meta.env.clone(), st.keys.clone())
        };
        match payload_of(&env, &keys, &self.vault_id)? {
            Payload::SecretVersion(p) => Ok(Secret {
                name: p.name,
                version: p.version,
                created_ms: p.created_ms,
                tags: p.tags,
                value: p.value,
            }),
            _ => Err(Error::integrity(
                format!("record {}", env.sequence),
                "expected a secret version",
            )),
        }
    }

    /// Lists secrets, sorted by name; soft-deleted ones only if `include_deleted`.
    ///
    /// # Errors
    /// If catching up with other writers fails.
    pub fn list(&self, include_deleted: bool) -> Result<Vec<SecretInfo>> {
        self.refresh()?;
        let st = sync::read(&self.state);
        Ok(st
            .index
            .secrets
            .iter()
            .filter(|(_, e)| include_deleted || e.deleted.is_none())
            .map(|(name, e)| SecretInfo {
                name: name.clone(),
                latest: e.latest,
                versions: e.versions.len(),
                deleted: e.deleted.is_some(),
            })
            .collect())
    }

    /// The versions of `name` that are kept, oldest first (also for a deleted secret).
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn history(&self, name: &str) -> Result<Vec<VersionInfo>> {
        self.refresh()?;
        let st = sync::read(&self.state);
        let e = st.index.secrets.get(name).ok_or_else(|| Error::NotFound {
            what: format!("secret {name:?}"),
        })?;
        Ok(e.versions
            .iter()
            .map(|(v, m)| VersionInfo {
                version: *v,
                created_ms: m.created_ms,
                size: m.size,
                tags: m.tags.clone(),
            })
            .collect())
    }

    /// Stores a new version of `name`; returns its version number. Setting a deleted secret
    /// restores it.
    ///
    /// # Errors
    /// [`Error::Conflict`] if `options.expected_version` does not match; [`Error::Invalid`]
    /// for a bad name, tag or oversized value; storage errors (the vault is then unchanged).
    pub fn set(&self, name: &str, value: SecretBytes, options: SetOptions) -> Result<u32> {
        let mut b = Batch::new();
        b.set(name, value, options);
        let versions = self.commit(b)?;
        versions
            .first()
            .copied()
            .ok_or_else(|| Error::invalid("set", "nothing was written"))
    }

    /// Commits a batch atomically with one fsync; returns, for each `set`, the new version.
    ///
    /// # Errors
    /// As [`Vault::set`]; if any change is refused, nothing is written.
    pub fn commit(&self, batch: Batch) -> Result<Vec<u32>> {
        let ops = batch.ops;
        self.write_txn(move |st| {
            // Per-name view of (latest version, deleted) including this batch's earlier changes;
            // `None` = the secret does not exist.
            let mut latest: BTreeMap<&str, Option<(u32, bool)>> = BTreeMap::new();
            let mut payloads = Vec::with_capacity(ops.len());
            let mut versions = Vec::new();
            let time_ms = now_ms();
            for op in &ops {
                let current = |latest: &BTreeMap<&str, Option<(u32, bool)>>, name: &str| {
                    latest.get(name).copied().unwrap_or_else(|| {
                        st.index
                            .secrets
                            .get(name)
                            .map(|e| (e.latest, e.deleted.is_some()))
                    })
                };
                match op {
                    Op::Set {
                        name,
                        value,
                        options,
                    } => {
                        check_name(name)?;
                        let (actual, deleted) = current(&latest, name).unwrap_or((0, false));
                        if let Some(expected) = options.expected_version
                            && expected != actual
                        {
                            return Err(Error::Conflict {
                                name: name.clone(),
                                expected,
                                actual,
                            });
                        }
                        if deleted {
                            payloads.push(Payload::SecretState(SecretStatePayload {
                                name: name.clone(),
                                state: SecretState::Restored,
                                time_ms,
                            }));
                        }
                        let version = actual.checked_add(1).ok_or_else(|| {
                            Error::invalid(
                                "version",
                                "the secret has reached the last version number",
                            )
                        })?;
                        payloads.push(Payload::SecretVersion(SecretVersionPayload {
                            name: name.clone(),
                            version,
                            created_ms: time_ms,
                            tags: options.tags.clone(),
                            value: value.duplicate(),
                        }));
                        latest.insert(name, Some((version, false)));
                        versions.push(version);
                    }
                    Op::State { name, state } => {
                        let (v, deleted) =
                            current(&latest, name).ok_or_else(|| Error::NotFound {
                                what: format!("secret {name:?}"),
                            })?;
                        match state {
                            SecretState::Deleted if deleted => {
                                return Err(Error::NotFound {
                                    what: format!("secret {name:?} (already deleted)"),
                                });
                            }
                            SecretState::Restored if !deleted => {
                                return Err(Error::invalid(
                                    "undelete",
                                    format!("secret {name:?} is not deleted"),
                                ));
                            }
                            _ => {}
                        }
                        payloads.push(Payload::SecretState(SecretStatePayload {
                            name: name.clone(),
                            state: *state,
                            time_ms,
                        }));
                        let after = match state {
                            SecretState::Deleted => Some((v, true)),
                            SecretState::Restored => Some((v, false)),
                            SecretState::Destroyed => None,
                        };
                        latest.insert(name, after);
                    }
                    Op::Settings { max_versions } => {
                        payloads.push(Payload::Settings(SettingsPayload {
                            max_versions: *max_versions,
                        }));
                    }
                    Op::KeyVersion {
                        name,
                        algorithm,
                        material,
                        state,
                        version,
                    } => {
                        check_name(name)?;
                        let existing = st.index.keys.get(name);
                        let (version, created_ms) = match version {
                            Some(v) => {
                                let meta = existing.and_then(|k| k.get(v)).ok_or_else(|| {
                                    Error::NotFound {
                                        what: format!("version {v} of key {name:?}"),
                                    }
                                })?;
                                (*v, meta.info.created_ms)
                            }
                            None => (
                                existing
                                    .and_then(|k| k.keys().next_back().copied())
                                    .unwrap_or(0)
                                    + 1,
                                time_ms,
                            ),
                        };
                        payloads.push(Payload::KeyVersion(KeyVersionPayload {
                            name: name.clone(),
                            version,
                            algorithm: algorithm.clone(),
                            state: *state,
                            created_ms,
                            state_changed_ms: time_ms,
                            material: material.duplicate(),
                        }));
                        versions.push(version);
                    }
                }
            }
            Ok((payloads, versions))
        })
    }

    fn state_change(&self, name: &str, state: SecretState) -> Result<()> {
        let mut b = Batch::new();
        b.ops.push(Op::State {
            name: name.to_string(),
            state,
        });
        self.commit(b).map(|_| ())
    }

    /// Soft-deletes `name`: reads fail with [`Error::NotFound`], history is kept.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist or is already deleted.
    pub fn delete(&self, name: &str) -> Result<()> {
        self.state_change(name, SecretState::Deleted)
    }

    /// Restores a soft-deleted secret.
    ///
    /// # Errors
    /// [`Error::NotFound`], or [`Error::Invalid`] if it is not deleted.
    pub fn undelete(&self, name: &str) -> Result<()> {
        self.state_change(name, SecretState::Restored)
    }

    /// Destroys `name` and all its versions; they leave the disk at the next compaction.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn destroy(&self, name: &str) -> Result<()> {
        self.state_change(name, SecretState::Destroyed)
    }

    /// Sets how many versions of each secret are kept (older ones are dropped).
    ///
    /// # Errors
    /// [`Error::Invalid`] outside `1..=10000`.
    pub fn set_max_versions(&self, max_versions: u32) -> Result<()> {
        if !(1..=payload::MAX_MAX_VERSIONS).contains(&max_versions) {
            return Err(Error::invalid(
                "max versions",
                format!("must be 1..={}", payload::MAX_MAX_VERSIONS),
            ));
        }
        let mut b = Batch::new();
        b.ops.push(Op::Settings { max_versions });
        self.commit(b).map(|_| ())
    }

    /// How many versions of each secret are kept.
    pub fn max_versions(&self) -> u32 {
        sync::read(&self.state).index.max_versions()
    }

    /// Adds a new version of managed key `name`; returns its version.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name, algorithm or material; storage errors.
    pub fn add_key_version(
        &self,
        name: &str,
        algorithm: &str,
        material: SecretBytes,
        state: KeyState,
    ) -> Result<u32> {
        let mut b = Batch::new();
        b.ops.push(Op::KeyVersion {
            name: name.to_string(),
            algorithm: algorithm.to_string(),
            material,
            state,
            version: None,
        });
        self.commit(b)?
            .first()
            .copied()
            .ok_or_else(|| Error::invalid("key", "nothing was written"))
    }

    /// Changes the lifecycle state of a key version.
    ///
    /// # Errors
    /// [`Error::NotFound`]; storage errors.
    pub fn set_key_state(&self, name: &str, version: u32, state: KeyState) -> Result<()> {
        let (material, algorithm) = self.key_material(name, version)?;
        let mut b = Batch::new();
        b.ops.push(Op::KeyVersion {
            name: name.to_string(),
            algorithm,
            material,
            state,
            version: Some(version),
        });
        self.commit(b).map(|_| ())
    }

    /// Versions of managed key `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn key_versions(&self, name: &str) -> Result<Vec<KeyVersionInfo>> {
        self.refresh()?;
        let st = sync::read(&self.state);
        let k = st.index.keys.get(name).ok_or_else(|| Error::NotFound {
            what: format!("key {name:?}"),
        })?;
        Ok(k.values().map(|m| m.info.clone()).collect())
    }

    /// Names of the managed keys.
    ///
    /// # Errors
    /// If catching up with other writers fails.
    pub fn key_names(&self) -> Result<Vec<String>> {
        self.refresh()?;
        Ok(sync::read(&self.state).index.keys.keys().cloned().collect())
    }

    /// Material and algorithm of a key version.
    ///
    /// # Errors
    /// [`Error::NotFound`]; integrity errors.
    pub fn key_material(&self, name: &str, version: u32) -> Result<(SecretBytes, String)> {
        self.refresh()?;
        let (env, keys) = {
            let st = sync::read(&self.state);
            let m = st
                .index
                .keys
                .get(name)
                .and_then(|k| k.get(&version))
                .ok_or_else(|| Error::NotFound {
                    what: format!("version {version} of key {name:?}"),
                })?;
            (m.env.clone(), st.keys.clone())
        };
        match payload_of(&env, &keys, &self.vault_id)? {
            Payload::KeyVersion(p) => Ok((p.material, p.algorithm)),
            _ => Err(Error::integrity(
                format!("record {}", env.sequence),
                "expected a key version",
            )),
        }
    }

    /// Rewrites the log with only the live records (one snapshot frame), dropping superseded,
    /// pruned and destroyed ones. Atomic: a crash leaves the old log or the new one.
    ///
    /// # Errors
    /// Storage errors (the old log then stays in place).
    pub fn compact(&self) -> Result<()> {
        let mut txn = self.begin_write(false)?;
        self.compact_locked(&mut txn.st)
    }

    fn compact_locked(&self, st: &mut State) -> Result<()> {
        let live = st.index.live();
        let records: Vec<RecordEnvelope> = live.iter().map(|e| e.as_ref().clone()).collect();
        let frame = Frame::seal(
            &st.keys.mac,
            &self.vault_id,
            st.keys.epoch,
            &[0; MAC_LEN],
            FrameType::Snapshot,
            st.generation,
            records,
        );
        let body = frame.encode()?;
        match self.backend.replace(st.keys.epoch, &body) {
            Ok(pos) => {
                st.pos = pos;
                st.last_mac = frame.mac;
                st.index.total_bytes = live.iter().map(|e| e.encoded_len() as u64).sum();
                st.index.dead_bytes = 0;
                Ok(())
            }
            Err(e) => {
                st.needs_reload = true;
                Err(e)
            }
        }
    }

    /// The key slots.
    pub fn slots(&self) -> Vec<SlotInfo> {
        let in_use = sync::read(&self.state).keys.slot_id;
        sync::read(&self.header)
            .header
            .slots
            .iter()
            .map(|s| SlotInfo {
                id: s.id,
                kdf: s.kdf,
                in_use: s.id == in_use,
            })
            .collect()
    }

    /// Runs `change` on the header as read under the writer lock, with the master key unlocked
    /// by `current`, then replaces the header: the log first records the intent to switch to the
    /// new header (so a crash leaves a header the log vouches for either way), then the header is
    /// written, then the log confirms it and records the event.
    fn modify_header<R>(
        &self,
        current: &SecretBytes,
        event: &str,
        change: impl FnOnce(&mut VaultHeader, &Key256, u8) -> Result<R>,
    ) -> Result<R> {
        let mut txn = self.begin_write(false)?;
        let mut header = txn.view.header.clone();
        let (master, slot_id) = unlock::unlock(&header, current, &self.options.kdf_limit)?;
        let result = change(&mut header, &master, slot_id)?;
        header.seal(&master);
        drop(master);
        let view = HeaderView {
            bytes: header.encode(),
            header,
        };
        let digest = view.digest();
        let st = &mut *txn.st;
        self.append_locked(st, vec![binding(BindingPhase::Intent, digest)], 0)?;
        self.record_generation(st);
        self.backend.write_header(&view.bytes)?;
        *sync::write(&self.header) = view;
        let e = Payload::Event(EventPayload {
            kind: EventKind::KeySlotChanged,
            time_ms: now_ms(),
            text: event.to_string(),
        });
        // The header change is durable and is what the caller asked for; the confirmation (the
        // next writer confirms it otherwise) and the audit event are best effort after it.
        match self.append_locked(st, vec![binding(BindingPhase::Confirmed, digest), e], 0) {
            Ok(()) => self.record_generation(st),
            Err(err) => tracing::warn!(error = %err, "could not record the key-slot event"),
        }
        Ok(result)
    }

    /// Changes the passphrase of the slot that `current` opens (no data is re-encrypted).
    /// `kdf` defaults to the slot's current parameters.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`]; storage errors (the old header then stays in place).
    pub fn change_passphrase(
        &self,
        current: &SecretBytes,
        new: &SecretBytes,
        kdf: Option<KdfParams>,
    ) -> Result<()> {
        let vault_id = self.vault_id;
        if let Some(k) = &kdf {
            self.options.kdf_limit.check_new(k)?;
        }
        self.modify_header(current, "passphrase changed", |h, master, slot_id| {
            let epoch = h.key_epoch;
            let slot = h
                .slots
                .iter_mut()
                .find(|s| s.id == slot_id)
                .ok_or_else(|| Error::integrity("vault header", "unlocked slot vanished"))?;
            *slot = KeySlot::create(
                slot_id,
                new.expose_secret(),
                kdf.unwrap_or(slot.kdf),
                master,
                &vault_id,
                epoch,
            )?;
            Ok(())
        })
    }

    /// Adds a key slot for another passphrase (e.g. a recovery passphrase); returns its id.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] for `current`; [`Error::Invalid`] if all 8 slots are used.
    pub fn add_passphrase(
        &self,
        current: &SecretBytes,
        new: &SecretBytes,
        kdf: KdfParams,
    ) -> Result<u8> {
        let vault_id = self.vault_id;
        self.options.kdf_limit.check_new(&kdf)?;
        self.modify_header(current, "key slot added", |h, master, _| {
            let id = h
                .free_slot_id()
                .ok_or_else(|| Error::invalid("key slot", "all 8 key slots are in use"))?;
            let slot =
                KeySlot::create(id, new.expose_secret(), kdf, master, &vault_id, h.key_epoch)?;
            h.slots.push(slot);
            Ok(id)
        })
    }

    /// Removes key slot `id`. The last slot cannot be removed.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] for `current`; [`Error::NotFound`]; [`Error::Invalid`] for the
    /// last slot.
    pub fn remove_slot(&self, current: &SecretBytes, id: u8) -> Result<()> {
        self.modify_header(current, &format!("key slot {id} removed"), |h, _, _| {
            if h.slot(id).is_none() {
                return Err(Error::NotFound {
                    what: format!("key slot {id}"),
                });
            }
            if h.slots.len() == 1 {
                return Err(Error::invalid(
                    "key slot",
                    "the last key slot cannot be removed",
                ));
            }
            h.slots.retain(|s| s.id != id);
            Ok(())
        })
    }

    /// Replaces the master key: re-encrypts every live record under a new one, writes them as
    /// the log of a new key epoch and switches the header to it atomically. Only the slot that
    /// `passphrase` opens can be carried over; other slots are refused unless
    /// `drop_other_slots`.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`]; [`Error::Invalid`] if other slots exist; storage errors (the
    /// old key and log then stay current).
    pub fn rotate_master_key(
        &self,
        passphrase: &SecretBytes,
        drop_other_slots: bool,
    ) -> Result<()> {
        let mut txn = self.begin_write(false)?;
        let header = txn.view.header.clone();
        let st = &mut *txn.st;
        let (_old_master, slot_id) = unlock::unlock(&header, passphrase, &self.options.kdf_limit)?;
        let old_slot = header
            .slot(slot_id)
            .ok_or_else(|| Error::integrity("vault header", "unlocked slot vanished"))?
            .clone();
        let others = header.slots.len() - 1;
        if others > 0 && !drop_other_slots {
            return Err(Error::invalid(
                "key slots",
                format!(
                    "{others} other key slot(s) cannot be carried over to a new master key without their passphrases; remove them first or drop them explicitly"
                ),
            ));
        }
        let epoch = header
            .key_epoch
            .checked_add(1)
            .ok_or_else(|| Error::invalid("key epoch", "no more key epochs"))?;
        let master = Key256::generate()?;
        let keys = Keys::derive(&master, &self.vault_id, epoch, slot_id);
        let slot = KeySlot::create(
            slot_id,
            passphrase.expose_secret(),
            old_slot.kdf,
            &master,
            &self.vault_id,
            epoch,
        )?;
        let new_header = VaultHeader::new(self.vault_id, epoch, vec![slot], &master)?;
        drop(master);
        let view = HeaderView {
            bytes: new_header.encode(),
            header: new_header,
        };
        let mut records = Vec::new();
        for env in st.index.live() {
            // The new log vouches for the new header only.
            if env.kind == vault_format::RecordKind::HeaderBinding {
                continue;
            }
            let p = payload_of(&env, &st.keys, &self.vault_id)?;
            records.push(RecordEnvelope::seal(
                &keys.record,
                &self.vault_id,
                env.kind,
                env.sequence,
                &p.encode()?,
            )?);
        }
        let event = Payload::Event(EventPayload {
            kind: EventKind::MasterKeyRotated,
            time_ms: now_ms(),
            text: format!("master key rotated to key epoch {epoch}"),
        });
        let bound = binding(BindingPhase::Confirmed, view.digest());
        for (seq, p) in (st.max_seq + 1..).zip([&event, &bound]) {
            records.push(RecordEnvelope::seal(
                &keys.record,
                &self.vault_id,
                p.kind(),
                seq,
                &p.encode()?,
            )?);
        }
        let generation = st.generation + 1;
        let frame = Frame::seal(
            &keys.mac,
            &self.vault_id,
            epoch,
            &[0; MAC_LEN],
            FrameType::Snapshot,
            generation,
            records,
        );
        if let Err(e) = self.backend.rekey(epoch, &frame.encode()?, &view.bytes) {
            // The header may or may not have switched to the new key: this handle can no longer
            // tell which log is current, so it stops; reopening resolves it from the header.
            st.poisoned = true;
            return Err(e);
        }
        *sync::write(&self.header) = view;
        let mut fresh = State::empty(Arc::new(keys));
        fresh.cleaned = true;
        self.reload(&mut fresh, true)?;
        *st = fresh;
        self.record_generation(st);
        Ok(())
    }

    /// Re-reads the whole log from storage and authenticates every frame and record, checks the
    /// generation chain and compares with the rollback record.
    ///
    /// # Errors
    /// The first integrity failure found, or [`Error::RollbackDetected`].
    pub fn verify(&self) -> Result<VerifyReport> {
        let _g = self.backend.lock_shared(self.options.lock_timeout)?;
        let keys = sync::read(&self.state).keys.clone();
        let view = self.current_header(&keys)?;
        let mut st = State::empty(keys.clone());
        let mut frames = 0u64;
        let mut records = 0u64;
        let mut failure = None;
        let out =
            self.backend
                .read(keys.epoch, &Position::default(), &mut |f| match self
                    .check_frame(&st, &f.body)
                {
                    Ok((frame, decoded)) => {
                        frames += 1;
                        records += decoded.len() as u64;
                        apply_frame(&mut st, &frame, decoded, f.end);
                        Ok(Visit::Continue)
                    }
                    Err(FrameError::Unauthentic(e)) => {
                        failure = Some(e);
                        Ok(Visit::Stop)
                    }
                    Err(FrameError::Invalid(e)) => Err(e),
                })
                .map_err(|e| self.rekeyed_or(e, keys.epoch))?;
        let location = self.backend.location();
        // A torn tail is what a crash leaves, not damage: reported, not an error.
        if out.tail == Tail::Damaged {
            return Err(damage(failure, &location));
        }
        if st.generation == 0 {
            return Err(Error::integrity(
                format!("log in {location}"),
                "the log holds no snapshot frame",
            ));
        }
        st.index.header_binding(&view.digest())?;
        let recorded = match self
            .rollback
            .load(&self.vault_id, &keys.rollback, keys.epoch)?
        {
            Recorded::Generation(r) if r > st.generation => {
                return Err(Error::RollbackDetected {
                    vault_generation: st.generation,
                    recorded_generation: r,
                    record: self.rollback.path(),
                });
            }
            Recorded::Generation(r) => Some(r),
            Recorded::NewerEpoch { generation, .. } => {
                return Err(Error::RollbackDetected {
                    vault_generation: st.generation,
                    recorded_generation: generation,
                    record: self.rollback.path(),
                });
            }
            Recorded::Nothing => None,
        };
        Ok(VerifyReport {
            frames,
            records,
            generation: st.generation,
            recorded_generation: recorded,
            secrets: st.index.secrets.len(),
            keys: st.index.keys.len(),
            superseded_bytes: st.index.dead_bytes,
            torn_tail: out.tail == Tail::Torn,
        })
    }
}
