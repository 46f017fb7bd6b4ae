//! What a managed key does with its material, which never leaves the vault: encrypt, decrypt,
//! rewrap, data keys, sign and verify, with self-describing tokens (`vault_format::token`). Every
//! use is checked against the key's policy, expiry, floors and the version's state first.

use vault_crypto::{Key256, SecretBytes, mac, sign};
use vault_format::keys::{Algorithm, KeyOps};
use vault_format::payload::{EventKind, EventPayload, KeyPayload, KeyState, Payload};
use vault_format::token::{self, MAC_LEN, SIGNATURE_LEN, TokenForm, TokenHeader};

use super::lifecycle::rotation_due;
use super::{KeyError, algorithm_of, settings, state_name};
use crate::audit::On;
use crate::engine::payload_of;
use crate::engine::replay::State;
use crate::vault::Vault;
use crate::{Error, Result, sync};
use vault_format::audit::AuditOp;

/// How a use of a key may go beyond the usual checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct UseOptions {
    /// Use a version marked compromised (each such use is recorded in the vault as an event).
    pub allow_compromised: bool,
}

/// Which kind of use: one that makes something new (with the primary) or one that checks or
/// opens something made earlier (with the version it names).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Encrypt, data key, sign: the primary version; refused once the key has expired.
    Make(KeyOps, &'static str),
    /// Decrypt, verify, the source of a rewrap: the token's version; refused below the floor.
    Open(KeyOps, &'static str),
}

impl Use {
    fn op(self) -> (KeyOps, &'static str) {
        match self {
            Use::Make(o, n) | Use::Open(o, n) => (o, n),
        }
    }
}

/// Most key versions' material one handle keeps (then it starts again).
const MATERIAL_CACHE: usize = 1024;

/// What a check of a use picked: the version, and what a token of it carries.
struct Picked {
    key_id: [u8; vault_format::keys::KEY_ID_LEN],
    algorithm: Algorithm,
    version: u32,
    compromised: bool,
    epoch: u32,
}

/// A version's material, ready to use, and what it is.
pub(crate) struct Material {
    pub(crate) key_id: [u8; vault_format::keys::KEY_ID_LEN],
    pub(crate) algorithm: Algorithm,
    pub(crate) version: u32,
    pub(crate) bytes: SecretBytes,
    /// The version is compromised and the caller overrode that: the use is to be reported.
    pub(crate) compromised: bool,
}

impl Material {
    fn key256(&self) -> Result<Key256> {
        Ok(Key256::from_slice(self.bytes.expose_secret())?)
    }

    pub(crate) fn header(&self, form: TokenForm) -> TokenHeader {
        TokenHeader {
            form,
            key_id: self.key_id,
            version: self.version,
        }
    }
}

/// Checks a use of `version` (`None`: the primary) of key `s` at `now`; returns the version.
fn check_use(
    s: &KeyPayload,
    version: Option<u32>,
    u: Use,
    now: i64,
    options: UseOptions,
) -> Result<(u32, bool)> {
    let algorithm = algorithm_of(s)?;
    let (op, op_name) = u.op();
    let key = || s.name.clone();
    if !algorithm.capable().contains(op) {
        return Err(KeyError::NotCapable {
            key: key(),
            algorithm,
            op: op_name,
        }
        .into());
    }
    if !s.allowed.contains(op) {
        return Err(KeyError::Forbidden {
            key: key(),
            op: op_name,
            allowed: s.allowed,
        }
        .into());
    }
    let version = match u {
        Use::Make(..) => {
            if let Some(at) = s.expires_ms
                && now >= at
            {
                return Err(KeyError::Expired {
                    key: key(),
                    when: super::rfc3339(at),
                }
                .into());
            }
            s.primary
        }
        Use::Open(..) => version.unwrap_or(s.primary),
    };
    let v = s
        .versions
        .iter()
        .find(|v| v.version == version)
        .ok_or_else(|| KeyError::UnknownVersion {
            key: key(),
            version,
        })?;
    let (floor, what) = match u {
        Use::Make(..) => (s.min_encrypt_version, "encrypt"),
        Use::Open(..) => (s.min_decrypt_version, "decrypt"),
    };
    if version < floor {
        return Err(KeyError::BelowFloor {
            key: key(),
            version,
            what,
            floor,
        }
        .into());
    }
    let mut compromised = false;
    match v.state {
        KeyState::Active => {}
        KeyState::Pending | KeyState::Deactivated if matches!(u, Use::Open(..)) => {}
        KeyState::Pending | KeyState::Deactivated => {
            return Err(KeyError::State {
                key: key(),
                version,
                state: state_name(v.state),
                reason: "it only decrypts and verifies",
            }
            .into());
        }
        KeyState::Disabled => {
            return Err(KeyError::Disabled {
                key: key(),
                version,
            }
            .into());
        }
        KeyState::Compromised if options.allow_compromised => compromised = true,
        KeyState::Compromised => {
            return Err(KeyError::Compromised {
                key: key(),
                version,
            }
            .into());
        }
        KeyState::Destroyed => {
            return Err(KeyError::Destroyed {
                key: key(),
                version,
                when: super::rfc3339(v.changed_ms),
            }
            .into());
        }
    }
    Ok((version, compromised))
}

fn token_header(name: &str, s: &KeyPayload, token: &[u8]) -> Result<(TokenHeader, usize)> {
    let (h, body) = TokenHeader::decode(token).map_err(|e| KeyError::BadToken {
        key: name.into(),
        reason: e.to_string(),
    })?;
    if h.key_id != s.key_id {
        return Err(KeyError::WrongKey {
            key: name.into(),
            token_key_id: hex(&h.key_id),
        }
        .into());
    }
    Ok((h, token.len() - body.len()))
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Vault {
    /// Checks a use of key `name` and reads the material it needs, from one view of the vault.
    /// `token` (for an opening use) names the version and must be the key's.
    pub(crate) fn material(
        &self,
        name: &str,
        u: Use,
        token: Option<&[u8]>,
        options: UseOptions,
    ) -> Result<Material> {
        // One catch-up with other writers (cheap when nothing changed), then every check against
        // that view; the material is read from the log unless this handle already holds that
        // very record's.
        self.e.refresh()?;
        if matches!(u, Use::Make(..)) {
            // New tokens and signatures are not made with material a member being removed may
            // hold: the header as it is now (read and verified under a reader lock) says.
            let keys = crate::sync::read(&self.e.state).keys.clone();
            let session: Box<dyn crate::backend::ReadSession> = self.e.session()?;
            let view = self.e.current_header(&*session, &keys)?;
            drop(session);
            crate::engine::commit::refuse_while_removal_pending(&view.header)?;
            self.rotate_when_due(name)?;
        }
        let now = self.e.options.clock.now_ms();
        let pick = |st: &State| -> Result<(crate::engine::index::RecordRef, Picked)> {
            let (entry, s) = settings(&st.index.keys, name)?;
            let asked = match token {
                Some(t) => Some(token_header(name, s, t)?.0.version),
                None => None,
            };
            let (version, compromised) = check_use(s, asked, u, now, options)?;
            let meta = entry
                .versions
                .get(&version)
                .ok_or_else(|| KeyError::UnknownVersion {
                    key: name.into(),
                    version,
                })?;
            Ok((
                meta.env,
                Picked {
                    key_id: s.key_id,
                    algorithm: algorithm_of(s)?,
                    version,
                    compromised,
                    epoch: st.keys.epoch,
                },
            ))
        };
        let (env, p) = pick(&sync::read(&self.e.state))?;
        let cache_key = (name.to_string(), p.version);
        let cached = sync::lock(&self.e.material)
            .get(&cache_key)
            .filter(|(epoch, seq, _)| *epoch == p.epoch && *seq == env.sequence)
            .map(|(_, _, b)| b.duplicate());
        let (bytes, p) = match cached {
            Some(b) => (b, p),
            None => {
                let (record, keys, p) = self.e.fetch(pick)?;
                let bytes = match payload_of(&record, &keys, &self.e.vault_id)? {
                    Payload::KeyVersion(kv)
                        if kv.name == name
                            && kv.version == p.version
                            && kv.state != KeyState::Destroyed
                            && kv.material.len() == p.algorithm.material_len() =>
                    {
                        kv.material
                    }
                    _ => {
                        return Err(Error::integrity(
                            format!("record {}", record.sequence),
                            format!(
                                "expected the material of version {} of key {name:?}",
                                p.version
                            ),
                        ));
                    }
                };
                let mut cache = sync::lock(&self.e.material);
                if cache.len() >= MATERIAL_CACHE {
                    cache.clear();
                }
                cache.insert(
                    (name.to_string(), p.version),
                    (p.epoch, record.sequence, bytes.duplicate()),
                );
                (bytes, p)
            }
        };
        Ok(Material {
            key_id: p.key_id,
            algorithm: p.algorithm,
            version: p.version,
            bytes,
            compromised: p.compromised,
        })
    }

    /// Rotates key `name` first if it is past its rotation period (a read finds out; the
    /// rotation itself checks again under the lock).
    fn rotate_when_due(&self, name: &str) -> Result<()> {
        let due = {
            let st = sync::read(&self.e.state);
            let (_, s) = settings(&st.index.keys, name)?;
            rotation_due(&st, s, self.e.options.clock.now_ms())
        };
        if due {
            self.rotate_if_due(name)?;
        }
        Ok(())
    }

    /// Records that a compromised version was used (with the caller's override).
    pub(crate) fn report_compromised(&self, name: &str, m: &Material, op: &str) -> Result<()> {
        if !m.compromised {
            return Ok(());
        }
        tracing::warn!(
            key = name,
            version = m.version,
            op,
            "compromised key version used"
        );
        let now = self.e.options.clock.now_ms();
        let text = format!(
            "key {name:?}: compromised version {} used to {op}, with an override",
            m.version
        );
        self.e.write_txn(|_: &State| {
            Ok((
                vec![Payload::Event(EventPayload {
                    kind: EventKind::CompromisedKeyUsed,
                    time_ms: now,
                    text,
                })],
                (),
            ))
        })
    }

    /// Encrypts `plaintext` under the primary version of key `name`, binding `associated_data`
    /// (which decryption must give again); returns the token (binary; `token::to_text` gives
    /// `vault:v<N>:…`). A key past its rotation period is rotated first.
    ///
    /// # Errors
    /// The [`KeyError`] for a refusal; storage errors.
    pub fn encrypt(&self, name: &str, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>> {
        self.encrypt_with(name, plaintext, associated_data, UseOptions::default())
    }

    /// [`Vault::encrypt`] with options (such as using a compromised primary).
    ///
    /// # Errors
    /// As [`Vault::encrypt`].
    pub fn encrypt_with(
        &self,
        name: &str,
        plaintext: &[u8],
        associated_data: &[u8],
        options: UseOptions,
    ) -> Result<Vec<u8>> {
        self.audited_around(AuditOp::KeyEncrypt, On::Key(name), String::new(), || {
            self.encrypt_with_inner(name, plaintext, associated_data, options)
        })
    }

    fn encrypt_with_inner(
        &self,
        name: &str,
        plaintext: &[u8],
        associated_data: &[u8],
        options: UseOptions,
    ) -> Result<Vec<u8>> {
        let m = self.material(name, Use::Make(KeyOps::ENCRYPT, "encrypt"), None, options)?;
        let token = seal(&m, plaintext, associated_data)?;
        self.report_compromised(name, &m, "encrypt")?;
        Ok(token)
    }

    /// Decrypts a one-shot token made by key `name` with the same `associated_data`.
    ///
    /// # Errors
    /// [`KeyError::Decrypt`] if it does not authenticate; [`KeyError::WrongKey`],
    /// [`KeyError::BadToken`], and the refusals of the version it names.
    pub fn decrypt(
        &self,
        name: &str,
        token: &[u8],
        associated_data: &[u8],
        options: UseOptions,
    ) -> Result<SecretBytes> {
        self.audited_around(AuditOp::KeyDecrypt, On::Key(name), String::new(), || {
            self.decrypt_inner(name, token, associated_data, options)
        })
    }

    pub(crate) fn decrypt_inner(
        &self,
        name: &str,
        token: &[u8],
        associated_data: &[u8],
        options: UseOptions,
    ) -> Result<SecretBytes> {
        let m = self.material(
            name,
            Use::Open(KeyOps::DECRYPT, "decrypt"),
            Some(token),
            options,
        )?;
        let plain = open(name, &m, token, associated_data)?;
        self.report_compromised(name, &m, "decrypt")?;
        Ok(plain)
    }

    /// Re-encrypts a one-shot token of key `name` under its primary version, without the
    /// plaintext leaving the vault.
    ///
    /// # Errors
    /// As [`Vault::decrypt`] for the token, and as [`Vault::encrypt`] for the primary; the key's
    /// policy must allow rewrap.
    pub fn rewrap(
        &self,
        name: &str,
        token: &[u8],
        associated_data: &[u8],
        options: UseOptions,
    ) -> Result<Vec<u8>> {
        self.audited_around(AuditOp::KeyRewrap, On::Key(name), String::new(), || {
            self.rewrap_inner(name, token, associated_data, options)
        })
    }

    fn rewrap_inner(
        &self,
        name: &str,
        token: &[u8],
        associated_data: &[u8],
        options: UseOptions,
    ) -> Result<Vec<u8>> {
        let from = self.material(
            name,
            Use::Open(KeyOps::REWRAP, "rewrap"),
            Some(token),
            options,
        )?;
        let plain = open(name, &from, token, associated_data)?;
        let to = self.material(name, Use::Make(KeyOps::REWRAP, "rewrap"), None, options)?;
        let out = seal(&to, plain.expose_secret(), associated_data)?;
        self.report_compromised(name, &from, "rewrap")?;
        self.report_compromised(name, &to, "rewrap")?;
        Ok(out)
    }

    /// A fresh 32-byte data key and its wrapped form (a token of key `name` that
    /// [`Vault::decrypt`] opens with the same `associated_data`): envelope encryption.
    ///
    /// # Errors
    /// As [`Vault::encrypt`]; the key's policy must allow datakey.
    pub fn datakey(&self, name: &str, associated_data: &[u8]) -> Result<(SecretBytes, Vec<u8>)> {
        self.datakey_with(name, associated_data, UseOptions::default())
    }

    /// [`Vault::datakey`] with options (such as using a compromised primary).
    ///
    /// # Errors
    /// As [`Vault::datakey`].
    pub fn datakey_with(
        &self,
        name: &str,
        associated_data: &[u8],
        options: UseOptions,
    ) -> Result<(SecretBytes, Vec<u8>)> {
        self.audited_around(AuditOp::KeyDataKey, On::Key(name), String::new(), || {
            self.datakey_with_inner(name, associated_data, options)
        })
    }

    fn datakey_with_inner(
        &self,
        name: &str,
        associated_data: &[u8],
        options: UseOptions,
    ) -> Result<(SecretBytes, Vec<u8>)> {
        let m = self.material(name, Use::Make(KeyOps::DATAKEY, "datakey"), None, options)?;
        let mut dk = SecretBytes::zeroed(32);
        vault_crypto::rng::fill(dk.expose_secret_mut())?;
        let wrapped = seal(&m, dk.expose_secret(), associated_data)?;
        self.report_compromised(name, &m, "make a data key")?;
        Ok((dk, wrapped))
    }

    /// Signs `message` with the primary version of key `name`: an HMAC-SHA256 tag or an Ed25519
    /// signature of the message itself, in a token naming the version.
    ///
    /// # Errors
    /// The [`KeyError`] for a refusal.
    pub fn sign(&self, name: &str, message: &[u8]) -> Result<Vec<u8>> {
        self.sign_with(name, message, UseOptions::default())
    }

    /// [`Vault::sign`] with options (such as using a compromised primary).
    ///
    /// # Errors
    /// As [`Vault::sign`].
    pub fn sign_with(&self, name: &str, message: &[u8], options: UseOptions) -> Result<Vec<u8>> {
        self.audited_around(AuditOp::KeySign, On::Key(name), String::new(), || {
            self.sign_with_inner(name, message, options)
        })
    }

    fn sign_with_inner(&self, name: &str, message: &[u8], options: UseOptions) -> Result<Vec<u8>> {
        let m = self.material(name, Use::Make(KeyOps::SIGN, "sign"), None, options)?;
        let mut out = Vec::new();
        match m.algorithm {
            Algorithm::HmacSha256 => {
                out.extend_from_slice(&m.header(TokenForm::Mac).encode());
                out.extend_from_slice(
                    mac::hmac_sha256(m.bytes.expose_secret(), &[message]).as_bytes(),
                );
            }
            Algorithm::Ed25519 => {
                out.extend_from_slice(&m.header(TokenForm::Signature).encode());
                out.extend_from_slice(&sign::sign(&m.bytes, message)?);
            }
            Algorithm::XChaCha20Poly1305 => {
                return Err(KeyError::NotCapable {
                    key: name.into(),
                    algorithm: m.algorithm,
                    op: "sign",
                }
                .into());
            }
        }
        self.report_compromised(name, &m, "sign")?;
        Ok(out)
    }

    /// Verifies a signature token of key `name` over `message`: `Ok(())` if it holds.
    ///
    /// # Errors
    /// [`KeyError::BadSignature`] if it does not; the refusals of the version it names.
    pub fn verify_signature(
        &self,
        name: &str,
        message: &[u8],
        signature: &[u8],
        options: UseOptions,
    ) -> Result<()> {
        self.audited_around(AuditOp::KeyVerify, On::Key(name), String::new(), || {
            self.verify_signature_inner(name, message, signature, options)
        })
    }

    fn verify_signature_inner(
        &self,
        name: &str,
        message: &[u8],
        signature: &[u8],
        options: UseOptions,
    ) -> Result<()> {
        let m = self.material(
            name,
            Use::Open(KeyOps::VERIFY, "verify"),
            Some(signature),
            options,
        )?;
        // The header was checked (key id, version) when the material was picked.
        let (h, body) = TokenHeader::decode(signature).map_err(|e| KeyError::BadToken {
            key: name.into(),
            reason: e.to_string(),
        })?;
        let bad = || -> Error {
            KeyError::BadSignature {
                key: name.into(),
                version: h.version,
            }
            .into()
        };
        let ok = match (m.algorithm, h.form) {
            (Algorithm::HmacSha256, TokenForm::Mac) if body.len() == MAC_LEN => {
                mac::verify(m.bytes.expose_secret(), &[message], body).is_ok()
            }
            (Algorithm::Ed25519, TokenForm::Signature) => {
                let sig: &[u8; SIGNATURE_LEN] = body.try_into().map_err(|_| bad())?;
                sign::verify(&sign::public_key(&m.bytes)?, message, sig).is_ok()
            }
            _ => {
                return Err(KeyError::BadToken {
                    key: name.into(),
                    reason: format!(
                        "a {:?} token of {} bytes is not a signature of an {} key",
                        h.form,
                        body.len(),
                        m.algorithm
                    ),
                }
                .into());
            }
        };
        self.report_compromised(name, &m, "verify")?;
        if ok { Ok(()) } else { Err(bad()) }
    }

    /// The Ed25519 public key of `version` (`None`: the primary) of key `name`: what anyone
    /// verifies its signatures with. Allowed whatever the key's policy (it is public).
    ///
    /// # Errors
    /// [`KeyError::NotCapable`] for a key that is not Ed25519; [`KeyError::Destroyed`] and
    /// [`KeyError::UnknownVersion`].
    pub fn public_key(&self, name: &str, version: Option<u32>) -> Result<[u8; 32]> {
        self.audited_around(AuditOp::List, On::Key(name), String::new(), || {
            self.public_key_inner(name, version)
        })
    }

    fn public_key_inner(&self, name: &str, version: Option<u32>) -> Result<[u8; 32]> {
        let (env, keys, v) = self.e.fetch(|st| {
            let (entry, s) = settings(&st.index.keys, name)?;
            if algorithm_of(s)? != Algorithm::Ed25519 {
                return Err(KeyError::NotCapable {
                    key: name.into(),
                    algorithm: algorithm_of(s)?,
                    op: "have a public key",
                }
                .into());
            }
            let v = version.unwrap_or(s.primary);
            let state = s.versions.iter().find(|x| x.version == v).ok_or_else(|| {
                KeyError::UnknownVersion {
                    key: name.into(),
                    version: v,
                }
            })?;
            if state.state == KeyState::Destroyed {
                return Err(KeyError::Destroyed {
                    key: name.into(),
                    version: v,
                    when: super::rfc3339(state.changed_ms),
                }
                .into());
            }
            let meta = entry
                .versions
                .get(&v)
                .ok_or_else(|| KeyError::UnknownVersion {
                    key: name.into(),
                    version: v,
                })?;
            Ok((meta.env, v))
        })?;
        match payload_of(&env, &keys, &self.e.vault_id)? {
            Payload::KeyVersion(p) if p.name == name && p.version == v => {
                Ok(sign::public_key(&p.material)?)
            }
            _ => Err(Error::integrity(
                format!("record {}", env.sequence),
                "expected a key version",
            )),
        }
    }
}

/// Seals `plaintext` as a one-shot token of `m`.
pub(crate) fn seal(m: &Material, plaintext: &[u8], associated_data: &[u8]) -> Result<Vec<u8>> {
    Ok(token::seal(
        &m.key256()?,
        &m.header(TokenForm::Sealed),
        associated_data,
        plaintext,
    )?)
}

/// Opens a one-shot token with `m` (the version it names).
fn open(name: &str, m: &Material, tok: &[u8], associated_data: &[u8]) -> Result<SecretBytes> {
    token::open(&m.key256()?, tok, associated_data).map_err(|e| match e {
        vault_format::Error::Authentication { .. } => KeyError::Decrypt {
            key: name.into(),
            version: m.version,
        }
        .into(),
        other => KeyError::BadToken {
            key: name.into(),
            reason: other.to_string(),
        }
        .into(),
    })
}
