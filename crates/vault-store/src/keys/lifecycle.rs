//! A managed key's life: creation, rotation (staged or not), promotion, version states,
//! destruction, floors, expiry, rotation period and policy. Each change is one commit that reads
//! the key as it is under the write lock, so two processes changing one key cannot undo each
//! other's change.

use vault_crypto::SecretBytes;
use vault_format::keys::{Algorithm, KEY_ID_LEN, KeyOps, MAX_KEY_VERSIONS, VersionState};
use vault_format::payload::{
    EventKind, EventPayload, KeyPayload, KeyState, KeyVersionPayload, Payload,
};

use super::{KeyError, KeyVersionInfo, algorithm_of, settings, state_name};
use crate::audit::On;
use crate::batch::check_name;
use crate::engine::replay::State;
use crate::vault::Vault;
use crate::{Error, Result, sync};
use vault_format::audit::AuditOp;

/// What a new key is.
#[derive(Clone, Debug)]
pub struct KeySpec {
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The operations it allows; `None`: everything its algorithm can do.
    pub allowed: Option<KeyOps>,
    /// Rotate the primary version once it is this old (ms).
    pub rotate_every_ms: Option<u64>,
    /// Refuse to encrypt, sign or make data keys after this time (ms since the Unix epoch).
    pub expires_ms: Option<i64>,
}

impl KeySpec {
    /// A key of `algorithm` allowing everything it can do, never expiring, rotated by hand.
    pub fn new(algorithm: Algorithm) -> Self {
        KeySpec {
            algorithm,
            allowed: None,
            rotate_every_ms: None,
            expires_ms: None,
        }
    }
}

/// How a rotation treats the versions.
#[derive(Clone, Copy, Debug, Default)]
pub struct RotateOptions {
    /// Add the new version as pending, without promoting it (staged rotation: it decrypts and
    /// verifies at once, and becomes primary with [`Vault::promote_key_version`]).
    pub stage: bool,
    /// Leave the previous primary active instead of making it decrypt-only.
    pub keep_active: bool,
}

/// What is known about a managed key (no material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key's name.
    pub name: String,
    /// Its random id, carried by every token it makes.
    pub key_id: [u8; KEY_ID_LEN],
    /// Its algorithm (by name: a key from a newer build may use one this build does not know).
    pub algorithm: String,
    /// The version new encryptions and signatures use.
    pub primary: u32,
    /// Versions below this are refused for decrypt and verify.
    pub min_decrypt_version: u32,
    /// Versions below this cannot be primary.
    pub min_encrypt_version: u32,
    /// When the key stops encrypting (ms since the Unix epoch).
    pub expires_ms: Option<i64>,
    /// Rotation period, ms.
    pub rotate_every_ms: Option<u64>,
    /// The operations it allows.
    pub allowed: KeyOps,
    /// Created, ms.
    pub created_ms: i64,
    /// Its settings last changed, ms.
    pub changed_ms: i64,
    /// Its versions, oldest first.
    pub versions: Vec<KeyVersionInfo>,
    /// Whether the primary is older than the rotation period.
    pub rotation_due: bool,
}

impl KeyInfo {
    /// The version `version`, if the key has it.
    pub fn version(&self, version: u32) -> Option<&KeyVersionInfo> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// Whether the key's primary is older than its rotation period at `now`.
pub(crate) fn rotation_due(st: &State, s: &KeyPayload, now: i64) -> bool {
    let Some(every) = s.rotate_every_ms else {
        return false;
    };
    let created = st
        .index
        .keys
        .get(&s.name)
        .and_then(|k| k.versions.get(&s.primary))
        .map_or(s.created_ms, |m| m.info.created_ms);
    now.saturating_sub(created) >= i64::try_from(every).unwrap_or(i64::MAX)
}

pub(crate) fn info_of(st: &State, s: &KeyPayload, now: i64) -> KeyInfo {
    let metas = st.index.keys.get(&s.name).map(|k| &k.versions);
    KeyInfo {
        name: s.name.clone(),
        key_id: s.key_id,
        algorithm: s.algorithm.clone(),
        primary: s.primary,
        min_decrypt_version: s.min_decrypt_version,
        min_encrypt_version: s.min_encrypt_version,
        expires_ms: s.expires_ms,
        rotate_every_ms: s.rotate_every_ms,
        allowed: s.allowed,
        created_ms: s.created_ms,
        changed_ms: s.changed_ms,
        versions: s
            .versions
            .iter()
            .map(|v| KeyVersionInfo {
                version: v.version,
                algorithm: s.algorithm.clone(),
                state: v.state,
                created_ms: metas
                    .and_then(|m| m.get(&v.version))
                    .map_or(s.created_ms, |m| m.info.created_ms),
                state_changed_ms: v.changed_ms,
            })
            .collect(),
        rotation_due: rotation_due(st, s, now),
    }
}

fn material(algorithm: Algorithm) -> Result<SecretBytes> {
    let mut m = SecretBytes::zeroed(algorithm.material_len());
    vault_crypto::rng::fill(m.expose_secret_mut())?;
    Ok(m)
}

fn version_record(
    name: &str,
    algorithm: Algorithm,
    version: u32,
    state: KeyState,
    now: i64,
    material: SecretBytes,
) -> Payload {
    Payload::KeyVersion(KeyVersionPayload {
        name: name.to_string(),
        version,
        algorithm: algorithm.name().to_string(),
        state,
        created_ms: now,
        state_changed_ms: now,
        material,
    })
}

fn set_state(s: &mut KeyPayload, version: u32, state: KeyState, now: i64) {
    if let Some(v) = s.versions.iter_mut().find(|v| v.version == version)
        && v.state != state
    {
        v.state = state;
        v.changed_ms = now;
    }
}

fn state_of(s: &KeyPayload, version: u32) -> Result<KeyState> {
    s.versions
        .iter()
        .find(|v| v.version == version)
        .map(|v| v.state)
        .ok_or_else(|| {
            KeyError::UnknownVersion {
                key: s.name.clone(),
                version,
            }
            .into()
        })
}

fn refuse_state(s: &KeyPayload, version: u32, state: KeyState, reason: &'static str) -> Error {
    if state == KeyState::Destroyed {
        let when = s
            .versions
            .iter()
            .find(|v| v.version == version)
            .map_or(0, |v| v.changed_ms);
        return KeyError::Destroyed {
            key: s.name.clone(),
            version,
            when: super::rfc3339(when),
        }
        .into();
    }
    KeyError::State {
        key: s.name.clone(),
        version,
        state: state_name(state),
        reason,
    }
    .into()
}

/// The event recording that key `name` was loosened: a policy widened, a floor lowered, a
/// compromised version trusted again.
fn loosened(name: &str, what: &str, now: i64) -> Payload {
    Payload::Event(EventPayload {
        kind: EventKind::KeyPolicyLoosened,
        time_ms: now,
        text: format!("key {name:?}: {what}"),
    })
}

/// Adds version n+1 to `s` (payloads appended to `out`); returns it.
fn rotate_into(
    s: &mut KeyPayload,
    options: RotateOptions,
    now: i64,
    out: &mut Vec<Payload>,
) -> Result<u32> {
    let algorithm = algorithm_of(s)?;
    if s.versions.len() >= MAX_KEY_VERSIONS {
        return Err(Error::invalid(
            "rotation",
            format!(
                "key {:?} has {MAX_KEY_VERSIONS} versions, the most a key can have",
                s.name
            ),
        ));
    }
    let version = s.versions.last().map_or(0, |v| v.version) + 1;
    let state = if options.stage {
        KeyState::Pending
    } else {
        KeyState::Active
    };
    out.push(version_record(
        &s.name,
        algorithm,
        version,
        state,
        now,
        material(algorithm)?,
    ));
    s.versions.push(VersionState {
        version,
        state,
        changed_ms: now,
    });
    if !options.stage {
        demote_primary(s, options.keep_active, now);
        s.primary = version;
    }
    Ok(version)
}

/// The primary, about to be replaced, becomes decrypt-only (if it was active and not kept).
fn demote_primary(s: &mut KeyPayload, keep_active: bool, now: i64) {
    let old = s.primary;
    if !keep_active
        && s.versions
            .iter()
            .any(|v| v.version == old && v.state == KeyState::Active)
    {
        set_state(s, old, KeyState::Deactivated, now);
    }
}

impl Vault {
    /// Changes key `name` under the write lock: `change` gets its settings as they are now, the
    /// time, and a place for extra payloads (new versions, events); the changed settings are
    /// written after them in the same commit.
    fn change_key<R>(
        &self,
        name: &str,
        change: impl FnOnce(&State, &mut KeyPayload, i64, &mut Vec<Payload>) -> Result<R>,
    ) -> Result<R> {
        let now = self.e.options.clock.now_ms();
        self.e.write_txn(|st| {
            let (_, s) = settings(&st.index.keys, name)?;
            let mut s = s.clone();
            let mut out = Vec::new();
            let r = change(st, &mut s, now, &mut out)?;
            s.changed_ms = now;
            out.push(Payload::Key(s));
            Ok((out, r))
        })
    }

    /// Creates managed key `name` with version 1 as its active primary.
    ///
    /// # Errors
    /// [`KeyError::Exists`]; [`Error::Invalid`] for a bad name or a policy allowing what the
    /// algorithm cannot do; storage errors.
    pub fn create_key(&self, name: &str, spec: KeySpec) -> Result<KeyInfo> {
        self.audited_around(
            vault_format::audit::AuditOp::KeyCreate,
            crate::audit::On::Key(name),
            String::new(),
            || self.create_key_inner(name, spec),
        )
    }

    fn create_key_inner(&self, name: &str, spec: KeySpec) -> Result<KeyInfo> {
        check_name(name)?;
        let capable = spec.algorithm.capable();
        let allowed = spec.allowed.unwrap_or(capable);
        if !capable.contains(allowed) {
            return Err(Error::invalid(
                "policy",
                format!(
                    "an {} key cannot {}",
                    spec.algorithm,
                    allowed.without(capable)
                ),
            ));
        }
        if spec.rotate_every_ms == Some(0) {
            return Err(Error::invalid("rotation period", "must be at least 1 ms"));
        }
        let now = self.e.options.clock.now_ms();
        if let Some(at) = spec.expires_ms
            && at <= now
        {
            return Err(Error::invalid(
                "expiry",
                format!(
                    "{} is not in the future: the key could never be used",
                    super::rfc3339(at)
                ),
            ));
        }
        let key_id = vault_crypto::rng::bytes::<KEY_ID_LEN>()?;
        let first = material(spec.algorithm)?;
        self.e.write_txn(|st| {
            if st.index.keys.get(name).is_some() {
                return Err(KeyError::Exists { key: name.into() }.into());
            }
            let s = KeyPayload {
                name: name.to_string(),
                key_id,
                algorithm: spec.algorithm.name().to_string(),
                primary: 1,
                min_decrypt_version: 0,
                min_encrypt_version: 0,
                expires_ms: spec.expires_ms,
                rotate_every_ms: spec.rotate_every_ms,
                allowed,
                created_ms: now,
                changed_ms: now,
                versions: vec![VersionState {
                    version: 1,
                    state: KeyState::Active,
                    changed_ms: now,
                }],
            };
            let out = vec![
                version_record(name, spec.algorithm, 1, KeyState::Active, now, first),
                Payload::Key(s.clone()),
            ];
            Ok((out, ()))
        })?;
        self.key_inner(name)
    }

    /// What is known about key `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`]; errors catching up with other writers.
    pub fn key(&self, name: &str) -> Result<KeyInfo> {
        self.audited_around(AuditOp::List, On::Key(name), String::new(), || {
            self.key_inner(name)
        })
    }

    fn key_inner(&self, name: &str) -> Result<KeyInfo> {
        self.e.refresh()?;
        let st = sync::read(&self.e.state);
        let (_, s) = settings(&st.index.keys, name)?;
        Ok(info_of(&st, s, self.e.options.clock.now_ms()))
    }

    /// Every managed key, by name.
    ///
    /// # Errors
    /// Errors catching up with other writers.
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        self.audited_around(AuditOp::List, On::Nothing, String::new(), || {
            self.keys_inner()
        })
    }

    fn keys_inner(&self) -> Result<Vec<KeyInfo>> {
        self.e.refresh()?;
        let st = sync::read(&self.e.state);
        let now = self.e.options.clock.now_ms();
        Ok(st
            .index
            .keys
            .values()
            .filter_map(|k| k.settings.as_ref())
            .map(|(s, _)| info_of(&st, s, now))
            .collect())
    }

    /// Names of the managed keys.
    ///
    /// # Errors
    /// Errors catching up with other writers.
    pub fn key_names(&self) -> Result<Vec<String>> {
        Ok(self.keys_inner()?.into_iter().map(|k| k.name).collect())
    }

    /// Versions of key `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn key_versions(&self, name: &str) -> Result<Vec<KeyVersionInfo>> {
        self.audited_around(AuditOp::List, On::Key(name), String::new(), || {
            self.key_versions_inner(name)
        })
    }

    fn key_versions_inner(&self, name: &str) -> Result<Vec<KeyVersionInfo>> {
        self.e.refresh()?;
        let st = sync::read(&self.e.state);
        let entry = st.index.keys.get(name).ok_or_else(|| Error::NotFound {
            what: format!("key {name:?}"),
        })?;
        Ok(match &entry.settings {
            Some((s, _)) => info_of(&st, s, self.e.options.clock.now_ms()).versions,
            // Versions written before keys had settings records (the version-1 golden vault):
            // what their own records say.
            None => entry.versions.values().map(|m| m.info.clone()).collect(),
        })
    }

    /// Adds a new version of key `name`: primary at once (the old primary, if active, becomes
    /// decrypt-only unless `keep_active`), or pending if `stage`. Returns the new version.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::Invalid`] past the most versions a key can have.
    pub fn rotate_key(&self, name: &str, options: RotateOptions) -> Result<u32> {
        self.audited_around(
            vault_format::audit::AuditOp::KeyRotate,
            crate::audit::On::Key(name),
            String::new(),
            || self.change_key(name, |_, s, now, out| rotate_into(s, options, now, out)),
        )
    }

    /// Rotates every key whose primary is older than its rotation period, in one commit;
    /// returns each rotated key with its new version.
    ///
    /// # Errors
    /// Storage errors (nothing is rotated).
    pub fn rotate_due_keys(&self) -> Result<Vec<(String, u32)>> {
        self.audited_around(AuditOp::KeyRotate, On::Nothing, String::new(), || {
            self.rotate_due_keys_inner()
        })
    }

    fn rotate_due_keys_inner(&self) -> Result<Vec<(String, u32)>> {
        let now = self.e.options.clock.now_ms();
        self.e.write_txn(|st| {
            let mut out = Vec::new();
            let mut rotated = Vec::new();
            for k in st.index.keys.values() {
                let Some((s, _)) = &k.settings else { continue };
                if !rotation_due(st, s, now) || algorithm_of(s).is_err() {
                    continue;
                }
                let mut s = s.clone();
                let v = rotate_into(&mut s, RotateOptions::default(), now, &mut out)?;
                s.changed_ms = now;
                rotated.push((s.name.clone(), v));
                out.push(Payload::Key(s));
            }
            Ok((out, rotated))
        })
    }

    /// Rotates key `name` if (under the lock) its primary is past the rotation period; returns
    /// whether it did. Two processes finding the key due rotate it once.
    pub(crate) fn rotate_if_due(&self, name: &str) -> Result<bool> {
        let now = self.e.options.clock.now_ms();
        self.e.write_txn(|st| {
            let (_, s) = settings(&st.index.keys, name)?;
            if !rotation_due(st, s, now) {
                return Ok((Vec::new(), false));
            }
            let mut s = s.clone();
            let mut out = Vec::new();
            rotate_into(&mut s, RotateOptions::default(), now, &mut out)?;
            s.changed_ms = now;
            out.push(Payload::Key(s));
            Ok((out, true))
        })
    }

    /// Makes `version` (pending or active) the primary; the old primary, if active, becomes
    /// decrypt-only.
    ///
    /// # Errors
    /// [`KeyError::UnknownVersion`], [`KeyError::State`] for a version in another state,
    /// [`KeyError::BelowFloor`] below the minimum encrypt version.
    pub fn promote_key_version(&self, name: &str, version: u32) -> Result<()> {
        self.audited_around(AuditOp::KeyChange, On::Key(name), String::new(), || {
            self.promote_key_version_inner(name, version)
        })
    }

    fn promote_key_version_inner(&self, name: &str, version: u32) -> Result<()> {
        self.change_key(name, |_, s, now, _| {
            let state = state_of(s, version)?;
            if !matches!(state, KeyState::Pending | KeyState::Active) {
                return Err(refuse_state(
                    s,
                    version,
                    state,
                    "only a pending or active version can become primary",
                ));
            }
            if version < s.min_encrypt_version {
                return Err(KeyError::BelowFloor {
                    key: s.name.clone(),
                    version,
                    what: "encrypt",
                    floor: s.min_encrypt_version,
                }
                .into());
            }
            if s.primary != version {
                demote_primary(s, false, now);
                s.primary = version;
            }
            set_state(s, version, KeyState::Active, now);
            Ok(())
        })
    }

    /// Sets the state of a version: active, decrypt-only, disabled or compromised (re-enabling a
    /// disabled version is setting it active or decrypt-only). A version becomes pending only by
    /// a staged rotation and destroyed only by [`Vault::destroy_key_version`].
    ///
    /// # Errors
    /// [`KeyError::UnknownVersion`]; [`KeyError::Destroyed`]; [`KeyError::State`] for the
    /// primary made decrypt-only (promote another first); [`Error::Invalid`] for pending or
    /// destroyed.
    pub fn set_key_version_state(&self, name: &str, version: u32, state: KeyState) -> Result<()> {
        self.audited_around(AuditOp::KeyChange, On::Key(name), String::new(), || {
            self.set_key_version_state_inner(name, version, state)
        })
    }

    fn set_key_version_state_inner(&self, name: &str, version: u32, state: KeyState) -> Result<()> {
        match state {
            KeyState::Destroyed => {
                return Err(Error::invalid(
                    "state",
                    "a version is destroyed with destroy, which erases its material",
                ));
            }
            KeyState::Pending => {
                return Err(Error::invalid(
                    "state",
                    "a version becomes pending only when a rotation stages it",
                ));
            }
            _ => {}
        }
        self.change_key(name, |_, s, now, out| {
            let current = state_of(s, version)?;
            if current == KeyState::Destroyed {
                return Err(refuse_state(s, version, current, ""));
            }
            if version == s.primary && state == KeyState::Deactivated {
                return Err(KeyError::State {
                    key: s.name.clone(),
                    version,
                    state: state_name(current),
                    reason: "it is the primary version; promote or rotate to another first",
                }
                .into());
            }
            if current == KeyState::Compromised && state != KeyState::Compromised {
                out.push(loosened(
                    &s.name,
                    &format!(
                        "version {version} no longer marked compromised (now {})",
                        state_name(state)
                    ),
                    now,
                ));
            }
            set_state(s, version, state, now);
            Ok(())
        })
    }

    /// Destroys a version: its material is replaced by a record without it (and is gone from
    /// the vault's files after the next compaction); its metadata stays. Destroying a destroyed
    /// version does nothing.
    ///
    /// # Errors
    /// [`KeyError::UnknownVersion`]; [`KeyError::State`] for the primary.
    pub fn destroy_key_version(&self, name: &str, version: u32) -> Result<()> {
        self.audited_around(AuditOp::KeyChange, On::Key(name), String::new(), || {
            self.destroy_key_version_inner(name, version)
        })
    }

    fn destroy_key_version_inner(&self, name: &str, version: u32) -> Result<()> {
        self.change_key(name, |st, s, now, out| {
            let current = state_of(s, version)?;
            if current == KeyState::Destroyed {
                return Ok(());
            }
            if version == s.primary {
                return Err(KeyError::State {
                    key: s.name.clone(),
                    version,
                    state: state_name(current),
                    reason: "it is the primary version; promote or rotate to another first",
                }
                .into());
            }
            let created = st
                .index
                .keys
                .get(name)
                .and_then(|k| k.versions.get(&version))
                .map_or(now, |m| m.info.created_ms);
            let algorithm = algorithm_of(s)?;
            let mut record = version_record(
                name,
                algorithm,
                version,
                KeyState::Destroyed,
                now,
                SecretBytes::zeroed(0),
            );
            if let Payload::KeyVersion(p) = &mut record {
                p.created_ms = created;
            }
            out.push(record);
            set_state(s, version, KeyState::Destroyed, now);
            Ok(())
        })
    }

    /// Sets the floors: versions below `min_decrypt` no longer decrypt or verify; versions
    /// below `min_encrypt` cannot be primary. `None` leaves a floor as it is.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a floor above the primary version (rotate first).
    pub fn set_key_floors(
        &self,
        name: &str,
        min_decrypt: Option<u32>,
        min_encrypt: Option<u32>,
    ) -> Result<()> {
        self.audited_around(AuditOp::KeyChange, On::Key(name), String::new(), || {
            self.set_key_floors_inner(name, min_decrypt, min_encrypt)
        })
    }

    fn set_key_floors_inner(
        &self,
        name: &str,
        min_decrypt: Option<u32>,
        min_encrypt: Option<u32>,
    ) -> Result<()> {
        self.change_key(name, |_, s, now, out| {
            for (floor, what) in [(min_decrypt, "decrypt"), (min_encrypt, "encrypt")] {
                if let Some(f) = floor
                    && f > s.primary
                {
                    return Err(Error::invalid(
                        "floor",
                        format!(
                            "a minimum {what} version of {f} is above the primary version {} of key {:?}; rotate or promote first",
                            s.primary, s.name
                        ),
                    ));
                }
            }
            // Lowering a floor lets old versions work again: recorded, as loosening a policy is.
            let mut lowered = Vec::new();
            if let Some(f) = min_decrypt {
                if f < s.min_decrypt_version {
                    lowered.push(format!(
                        "minimum decrypt version lowered from {} to {f}",
                        s.min_decrypt_version
                    ));
                }
                s.min_decrypt_version = f;
            }
            if let Some(f) = min_encrypt {
                if f < s.min_encrypt_version {
                    lowered.push(format!(
                        "minimum encrypt version lowered from {} to {f}",
                        s.min_encrypt_version
                    ));
                }
                s.min_encrypt_version = f;
            }
            if !lowered.is_empty() {
                out.push(loosened(&s.name, &lowered.join(", "), now));
            }
            Ok(())
        })
    }

    /// Sets (or, with `None`, removes) when the key expires.
    ///
    /// # Errors
    /// [`Error::NotFound`]; storage errors.
    pub fn set_key_expiry(&self, name: &str, expires_ms: Option<i64>) -> Result<()> {
        self.audited_around(AuditOp::KeyChange, On::Key(name), String::new(), || {
            self.set_key_expiry_inner(name, expires_ms)
        })
    }

    fn set_key_expiry_inner(&self, name: &str, expires_ms: Option<i64>) -> Result<()> {
        self.change_key(name, |_, s, _, _| {
            s.expires_ms = expires_ms;
            Ok(())
        })
    }

    /// Sets (or, with `None`, removes) the rotation period.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a period of 0.
    pub fn set_key_rotation(&self, name: &str, rotate_every_ms: Option<u64>) -> Result<()> {
        self.audited_around(AuditOp::KeyChange, On::Key(name), String::new(), || {
            self.set_key_rotation_inner(name, rotate_every_ms)
        })
    }

    fn set_key_rotation_inner(&self, name: &str, rotate_every_ms: Option<u64>) -> Result<()> {
        if matches!(rotate_every_ms, Some(0))
            || rotate_every_ms.is_some_and(|t| t > i64::MAX as u64)
        {
            return Err(Error::invalid("rotation period", "must be at least 1 ms"));
        }
        self.change_key(name, |_, s, _, _| {
            s.rotate_every_ms = rotate_every_ms;
            Ok(())
        })
    }

    /// Sets the operations key `name` allows. Removing operations (tightening) needs nothing
    /// more; adding any (loosening) needs `loosen`, and is recorded in the vault as an event.
    ///
    /// # Errors
    /// [`KeyError::Loosen`] when it would add an operation without `loosen`; [`Error::Invalid`]
    /// for an operation the algorithm cannot do.
    pub fn set_key_policy(&self, name: &str, allowed: KeyOps, loosen: bool) -> Result<()> {
        self.audited_around(AuditOp::KeyChange, On::Key(name), String::new(), || {
            self.set_key_policy_inner(name, allowed, loosen)
        })
    }

    fn set_key_policy_inner(&self, name: &str, allowed: KeyOps, loosen: bool) -> Result<()> {
        self.change_key(name, |_, s, now, out| {
            let algorithm = algorithm_of(s)?;
            if !algorithm.capable().contains(allowed) {
                return Err(Error::invalid(
                    "policy",
                    format!(
                        "an {algorithm} key cannot {}",
                        allowed.without(algorithm.capable())
                    ),
                ));
            }
            let added = allowed.without(s.allowed);
            if added != KeyOps::NONE {
                if !loosen {
                    return Err(KeyError::Loosen {
                        key: s.name.clone(),
                        added,
                    }
                    .into());
                }
                out.push(loosened(
                    &s.name,
                    &format!("policy loosened from {} to {allowed}", s.allowed),
                    now,
                ));
            }
            s.allowed = allowed;
            Ok(())
        })
    }
}
