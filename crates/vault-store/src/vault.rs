//! The vault engine: an in-memory index over the log, commits, refresh, compaction, key slots
//! and master-key rotation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vault_crypto::derive::{self, Purpose};
use vault_crypto::kdf::KdfParams;
use vault_crypto::mac::MAC_LEN;
use vault_crypto::{Key256, SecretBytes};
use vault_format::log::{Frame, FrameType};
use vault_format::payload::{
    self, EventKind, EventPayload, KeyState, KeyVersionPayload, Payload, SecretState,
    SecretStatePayload, SecretVersionPayload, SettingsPayload, Tag,
};
use vault_format::{KeySlot, RecordEnvelope, VaultHeader, VaultId};

use crate::backend::{Backend, Position, ReadOutcome};
use crate::rollback::{Recorded, RollbackFile};
use crate::sync::{self, Arc, Mutex, RwLock};
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
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(10),
            rollback_dir: None,
            accept_rollback: false,
            auto_compact_bytes: 8 << 20,
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
        }
    }
}

/// An open vault. `Send + Sync`: share it between threads behind an `Arc`.
pub struct Vault {
    backend: Arc<dyn Backend>,
    vault_id: VaultId,
    options: VaultOptions,
    rollback: RollbackFile,
    header: RwLock<VaultHeader>,
    state: RwLock<State>,
    /// Serialises this handle's writers; the backend's lock serialises processes.
    writer: Mutex<()>,
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

fn map_unlock(e: vault_format::Error) -> Error {
    match e {
        vault_format::Error::Authentication { object: "key slot" } => Error::WrongPassphrase,
        vault_format::Error::Authentication { object } => Error::integrity(
            object,
            "the header MAC does not verify: the header was modified",
        ),
        other => Error::Format(other),
    }
}

fn decode_header(bytes: &[u8], location: &str) -> Result<VaultHeader> {
    VaultHeader::decode(bytes).map_err(|e| match e {
        vault_format::Error::UnsupportedVersion { .. } => Error::Format(e),
        other => Error::integrity(format!("vault header in {location}"), other.to_string()),
    })
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
    payload::check_name(name).map_err(|r| Error::invalid("name", r))
}

/// The generation recorded in a frame body, if the body is long enough to hold one.
fn frame_generation(body: &[u8]) -> Option<u64> {
    let b: [u8; 8] = body.get(4..12)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// A change prepared by a writer: payloads to seal and commit.
type Prepared = Vec<Payload>;

impl Vault {
    /// Creates a new vault with one passphrase slot.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], or I/O and crypto errors.
    pub fn create(
        backend: Arc<dyn Backend>,
        passphrase: &SecretBytes,
        kdf: KdfParams,
        options: VaultOptions,
    ) -> Result<Self> {
        if backend.exists()? {
            return Err(Error::AlreadyExists(backend.location().into()));
        }
        let vault_id = VaultId::random()?;
        let master = Key256::generate()?;
        let slot = KeySlot::create(0, passphrase.expose_secret(), kdf, &master, &vault_id, 0)?;
        let header = VaultHeader::new(vault_id, 0, vec![slot], &master)?;
        let keys = Keys::derive(&master, &vault_id, 0, 0);
        drop(master);
        let initial = [
            Payload::Settings(SettingsPayload {
                max_versions: DEFAULT_MAX_VERSIONS,
            }),
            Payload::Event(EventPayload {
                kind: EventKind::Created,
                time_ms: now_ms(),
                text: "vault created".into(),
            }),
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
        backend.create(&header.encode(), 0, &frame.encode()?)?;
        let vault = Self::new(backend, header, keys, options);
        {
            let _w = sync::lock(&vault.writer);
            let _g = vault.backend.lock_exclusive(vault.options.lock_timeout)?;
            let mut st = sync::write(&vault.state);
            vault.reload(&mut st, true)?;
            vault.record_generation(&st);
        }
        Ok(vault)
    }

    fn new(
        backend: Arc<dyn Backend>,
        header: VaultHeader,
        keys: Keys,
        options: VaultOptions,
    ) -> Self {
        let vault_id = header.vault_id;
        let rollback = RollbackFile::new(options.rollback_dir.as_deref(), &vault_id);
        Self {
            backend,
            vault_id,
            options,
            rollback,
            header: RwLock::new(header),
            state: RwLock::new(State::empty(Arc::new(keys))),
            writer: Mutex::new(()),
        }
    }

    /// Opens an existing vault with a passphrase.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`], [`Error::RollbackDetected`], [`Error::Integrity`],
    /// [`Error::Format`] (e.g. a newer format version), [`Error::NoVault`], I/O errors.
    pub fn open(
        backend: Arc<dyn Backend>,
        passphrase: &SecretBytes,
        options: VaultOptions,
    ) -> Result<Self> {
        if !backend.exists()? {
            return Err(Error::NoVault(backend.location().into()));
        }
        let header = decode_header(&backend.read_header()?, &backend.location())?;
        let (master, slot_id) = header.unlock(passphrase).map_err(map_unlock)?;
        let keys = Keys::derive(&master, &header.vault_id, header.key_epoch, slot_id);
        drop(master);
        let vault = Self::new(backend, header, keys, options);
        vault.open_log()?;
        Ok(vault)
    }

    /// Reads the log, cleans up after interrupted operations and checks the rollback record.
    fn open_log(&self) -> Result<()> {
        let _w = sync::lock(&self.writer);
        // With the writer lock we can also clean up after interrupted operations and cut off a
        // torn tail; if another process is writing, read under a shared lock and leave that to
        // it (unless a rollback must be accepted, which is a write).
        let exclusive = if self.options.accept_rollback {
            Some(self.backend.lock_exclusive(self.options.lock_timeout)?)
        } else {
            self.backend.lock_exclusive(Duration::ZERO).ok()
        };
        let is_writer = exclusive.is_some();
        let _guard = match exclusive {
            Some(g) => {
                self.backend.cleanup(self.epoch())?;
                g
            }
            None => self.backend.lock_shared(self.options.lock_timeout)?,
        };
        let mut st = sync::write(&self.state);
        self.reload(&mut st, is_writer)?;
        let recorded = match self
            .rollback
            .load(&self.vault_id, &st.keys.rollback, st.keys.epoch)
        {
            Ok(r) => r,
            Err(e) if self.options.accept_rollback => {
                tracing::warn!(error = %e, "ignoring an unreadable rollback record, as asked");
                Recorded::Nothing
            }
            Err(e) => return Err(e),
        };
        let behind = match recorded {
            Recorded::Generation(r) if r > st.generation => Some(r),
            Recorded::NewerEpoch { generation, .. } => Some(generation.max(st.generation + 1)),
            _ => None,
        };
        match behind {
            Some(r) if !self.options.accept_rollback => Err(Error::RollbackDetected {
                vault_generation: st.generation,
                recorded_generation: r,
                record: self.rollback.path(),
            }),
            Some(r) => {
                let text = format!(
                    "accepted an older state: vault generation {}, rollback record {}",
                    st.generation, r
                );
                tracing::warn!("{text}");
                let event = Payload::Event(EventPayload {
                    kind: EventKind::RollbackAccepted,
                    time_ms: now_ms(),
                    text,
                });
                // Continue above the recorded generation so the record stays monotonic.
                self.append_locked(&mut st, vec![event], r + 1)?;
                self.record_generation(&st);
                Ok(())
            }
            None => {
                if is_writer {
                    self.record_generation(&st);
                }
                Ok(())
            }
        }
    }

    fn epoch(&self) -> u32 {
        sync::read(&self.state).keys.epoch
    }

    /// Brings `st` up to date with the backend. `writer`: the caller holds the writer lock, so a
    /// torn tail may be cut off.
    fn reload(&self, st: &mut State, writer: bool) -> Result<()> {
        if st.poisoned {
            return Err(Error::Rekeyed);
        }
        let since = if st.needs_reload {
            Position::default()
        } else {
            st.pos
        };
        let out = self.backend.read(st.keys.epoch, &since)?;
        if out.reset || st.needs_reload {
            // Build the new view aside so a failure leaves the old one intact.
            let mut fresh = State::empty(st.keys.clone());
            self.replay(&mut fresh, out, writer)?;
            *st = fresh;
        } else {
            self.replay(st, out, writer)?;
        }
        Ok(())
    }

    /// Whether an unreadable last frame is a torn write rather than damage: it is if the
    /// rollback record does not show its generation as committed.
    fn is_torn(&self, st: &State, body: &[u8]) -> bool {
        let recorded = self
            .rollback
            .load(&self.vault_id, &st.keys.rollback, st.keys.epoch);
        match (recorded, frame_generation(body)) {
            (Ok(Recorded::Generation(r)), Some(g)) => g > r,
            (Ok(Recorded::Generation(_)), None) => true,
            (Ok(_), _) => true,
            (Err(_), _) => false,
        }
    }

    fn replay(&self, st: &mut State, out: ReadOutcome, writer: bool) -> Result<()> {
        let n = out.frames.len();
        let mut torn = out.torn_tail;
        let location = self.backend.location();
        for (i, f) in out.frames.into_iter().enumerate() {
            match self.check_frame(st, &f.body) {
                Ok((frame, decoded)) => {
                    for (env, p) in decoded {
                        st.max_seq = st.max_seq.max(env.sequence);
                        st.index.apply(env, &p);
                    }
                    st.generation = frame.generation;
                    st.last_mac = frame.mac;
                    st.pos = f.end;
                }
                Err(e) => {
                    // Snapshots are written aside and renamed into place, so only a commit
                    // appended last can be torn.
                    let last_commit = i + 1 == n && st.generation > 0;
                    if last_commit && !out.torn_tail && self.is_torn(st, &f.body) {
                        torn = true;
                        break;
                    }
                    return Err(match e {
                        Error::Format(fe) => {
                            Error::integrity(format!("log in {location}"), fe.to_string())
                        }
                        other => other,
                    });
                }
            }
        }
        if st.generation == 0 {
            return Err(Error::integrity(
                format!("log in {location}"),
                "the log holds no snapshot frame",
            ));
        }
        if torn {
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
    ) -> Result<(Frame, Vec<(Arc<RecordEnvelope>, Payload)>)> {
        let keys = &st.keys;
        let frame = Frame::decode(body)?;
        frame
            .verify(body, &keys.mac, &self.vault_id, keys.epoch, &st.last_mac)
            .map_err(|_| {
                Error::integrity(
                    format!("log frame at generation {}", frame.generation),
                    "the frame does not authenticate: the log was modified, reordered or truncated in the middle",
                )
            })?;
        let first = st.generation == 0;
        match (first, frame.frame_type) {
            (true, FrameType::Snapshot) | (false, FrameType::Commit) => {}
            (true, FrameType::Commit) => {
                return Err(Error::integrity(
                    "log",
                    "the log does not start with a snapshot",
                ));
            }
            (false, FrameType::Snapshot) => {
                return Err(Error::integrity(
                    "log",
                    "a snapshot frame in the middle of the log",
                ));
            }
        }
        if frame.generation <= st.generation {
            return Err(Error::integrity(
                "log",
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
                return Err(Error::integrity(
                    format!("record {}", env.sequence),
                    "record sequence numbers are not increasing",
                ));
            }
            max_seq = env.sequence;
            let p = payload_of(env, keys, &self.vault_id)?;
            decoded.push((Arc::new(env.clone()), p));
        }
        Ok((frame, decoded))
    }

    /// Notices commits by other handles or processes before a read.
    fn refresh(&self) -> Result<()> {
        let (epoch, pos, needs) = {
            let st = sync::read(&self.state);
            (st.keys.epoch, st.pos, st.needs_reload)
        };
        if sync::read(&self.state).poisoned {
            return Err(Error::Rekeyed);
        }
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
        let _w = sync::lock(&self.writer);
        let _g = self.backend.lock_exclusive(self.options.lock_timeout)?;
        let mut st = sync::write(&self.state);
        self.reload(&mut st, true)?;
        let (payloads, result) = prepare(&st)?;
        if payloads.is_empty() {
            return Ok(result);
        }
        self.append_locked(&mut st, payloads, 0)?;
        self.record_generation(&st);
        let compact = st.index.dead_bytes > self.options.auto_compact_bytes
            && st.index.dead_bytes * 2 > st.index.total_bytes;
        if compact && let Err(e) = self.compact_locked(&mut st) {
            // The commit is durable; compaction is an optimisation that will be retried.
            tracing::warn!(error = %e, "automatic compaction failed");
        }
        Ok(result)
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
        let _w = sync::lock(&self.writer);
        let _g = self.backend.lock_exclusive(self.options.lock_timeout)?;
        let mut st = sync::write(&self.state);
        self.reload(&mut st, true)?;
        self.compact_locked(&mut st)
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
            .slots
            .iter()
            .map(|s| SlotInfo {
                id: s.id,
                kdf: s.kdf,
                in_use: s.id == in_use,
            })
            .collect()
    }

    /// Runs `change` on a fresh copy of the header (under the writer lock), with the master key
    /// unlocked by `current`, then writes the header atomically and records an event.
    fn modify_header<R>(
        &self,
        current: &SecretBytes,
        event: &str,
        change: impl FnOnce(&mut VaultHeader, &Key256, u8) -> Result<R>,
    ) -> Result<R> {
        let _w = sync::lock(&self.writer);
        let _g = self.backend.lock_exclusive(self.options.lock_timeout)?;
        let mut st = sync::write(&self.state);
        self.reload(&mut st, true)?;
        let mut header = decode_header(&self.backend.read_header()?, &self.backend.location())?;
        if header.key_epoch != st.keys.epoch {
            return Err(Error::Rekeyed);
        }
        let (master, slot_id) = header.unlock(current).map_err(map_unlock)?;
        let result = change(&mut header, &master, slot_id)?;
        header.seal(&master);
        self.backend.write_header(&header.encode())?;
        *sync::write(&self.header) = header;
        let e = Payload::Event(EventPayload {
            kind: EventKind::KeySlotChanged,
            time_ms: now_ms(),
            text: event.to_string(),
        });
        // The header change is durable and is what the caller asked for; the audit event is
        // best effort after it.
        match self.append_locked(&mut st, vec![e], 0) {
            Ok(()) => self.record_generation(&st),
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
        let _w = sync::lock(&self.writer);
        let _g = self.backend.lock_exclusive(self.options.lock_timeout)?;
        let mut st = sync::write(&self.state);
        self.reload(&mut st, true)?;
        let header = decode_header(&self.backend.read_header()?, &self.backend.location())?;
        if header.key_epoch != st.keys.epoch {
            return Err(Error::Rekeyed);
        }
        let (_old_master, slot_id) = header.unlock(passphrase).map_err(map_unlock)?;
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
        let mut records = Vec::new();
        for env in st.index.live() {
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
        records.push(RecordEnvelope::seal(
            &keys.record,
            &self.vault_id,
            event.kind(),
            st.max_seq + 1,
            &event.encode()?,
        )?);
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
        if let Err(e) = self
            .backend
            .rekey(epoch, &frame.encode()?, &new_header.encode())
        {
            // The header may or may not have switched to the new key: this handle can no longer
            // tell which log is current, so it stops; reopening resolves it from the header.
            st.poisoned = true;
            return Err(e);
        }
        *sync::write(&self.header) = new_header;
        let mut fresh = State::empty(Arc::new(keys));
        self.reload(&mut fresh, true)?;
        *st = fresh;
        self.record_generation(&st);
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
        let out = self.backend.read(keys.epoch, &Position::default())?;
        let frames = out.frames.len() as u64;
        let records = out
            .frames
            .iter()
            .map(|f| Frame::decode(&f.body).map(|fr| fr.records.len() as u64))
            .sum::<std::result::Result<u64, _>>()
            .map_err(|e| Error::integrity("log", e.to_string()))?;
        if out.torn_tail {
            return Err(Error::integrity(
                format!("log in {}", self.backend.location()),
                "the log ends with an incomplete frame (an interrupted commit; the next write discards it)",
            ));
        }
        let mut st = State::empty(keys.clone());
        // Strict: every frame must authenticate, including the last.
        for f in out.frames {
            let (frame, decoded) = self.check_frame(&st, &f.body)?;
            for (env, p) in decoded {
                st.max_seq = st.max_seq.max(env.sequence);
                st.index.apply(env, &p);
            }
            st.generation = frame.generation;
            st.last_mac = frame.mac;
        }
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
        })
    }
}
