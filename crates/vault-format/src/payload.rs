//! The plaintexts sealed inside record envelopes (docs/FORMAT.md §6): secret versions, secret
//! state changes, key versions, settings and events. Each starts with a payload version byte.
//!
//! Decoders bound every length before slicing, reject trailing bytes and unknown enum values, and
//! check names against the name policy, so a record that authenticates but was produced by a buggy
//! or hostile writer still cannot make the engine misbehave.

use vault_crypto::SecretBytes;
use zeroize::Zeroizing;

use crate::envelope::RecordKind;
pub use crate::keys::KeyPayload;
use crate::reader::Reader;
use crate::wire::wire_enum;

pub use crate::names::{NAME_PUNCTUATION, check_name, check_new_name};
use crate::{Error, Result};

const OBJECT: &str = "record payload";
/// The payload version this build writes and the highest it reads.
pub const PAYLOAD_VERSION: u8 = 1;
/// Longest name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 256;
/// Largest secret value: 1 MiB.
pub const MAX_VALUE_LEN: usize = 1 << 20;
/// Most tags on one secret version.
pub const MAX_TAGS: usize = 64;
/// Longest tag key, bytes.
pub const MAX_TAG_KEY_LEN: usize = 128;
/// Longest tag value, bytes.
pub const MAX_TAG_VALUE_LEN: usize = 1024;
/// Longest key material, bytes.
pub const MAX_KEY_MATERIAL_LEN: usize = 16 * 1024;
/// Longest key algorithm name, bytes.
pub const MAX_ALGORITHM_LEN: usize = 32;
/// Longest event text, bytes.
pub const MAX_EVENT_TEXT_LEN: usize = 4096;

/// A `key=value` tag on a secret version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag {
    /// Tag key (1..=128 bytes, no control characters).
    pub key: String,
    /// Tag value (up to 1024 bytes).
    pub value: String,
}

/// One version of a secret.
#[derive(Debug, PartialEq, Eq)]
pub struct SecretVersionPayload {
    /// Secret name.
    pub name: String,
    /// Version number, from 1.
    pub version: u32,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// Metadata.
    pub tags: Vec<Tag>,
    /// The value.
    pub value: SecretBytes,
}

wire_enum! {
    /// The lifecycle change a [`SecretStatePayload`] records.
    pub enum SecretState {
        /// Soft-deleted: hidden from reads, history kept.
        Deleted = 1,
        /// Undeleted.
        Restored = 2,
        /// Destroyed: every version is gone for good (after the next compaction, also from disk).
        Destroyed = 3,
    }
}

/// A secret's state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretStatePayload {
    /// Secret name.
    pub name: String,
    /// New state.
    pub state: SecretState,
    /// When, ms since the Unix epoch.
    pub time_ms: i64,
}

wire_enum! {
    /// Lifecycle state of a managed key version.
    pub enum KeyState {
        /// Created, not yet in use.
        Pending = 1,
        /// In use for new operations.
        Active = 2,
        /// Usable only to decrypt or verify (CLI: `decrypt-only`).
        Deactivated = 3,
        /// Known or suspected compromised: refused unless the caller overrides, every use reported.
        Compromised = 4,
        /// Material destroyed; the version's metadata stays.
        Destroyed = 5,
        /// Refused for everything until enabled again.
        Disabled = 6,
    }
}

/// One version of a managed key.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyVersionPayload {
    /// Key name.
    pub name: String,
    /// Version, from 1.
    pub version: u32,
    /// Algorithm name, ASCII (e.g. `aes-256-gcm`, `ed25519`).
    pub algorithm: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Last state change, ms since the Unix epoch.
    pub state_changed_ms: i64,
    /// Key material.
    pub material: SecretBytes,
}

/// Vault-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsPayload {
    /// How many versions of each secret are kept (1..=10 000).
    pub max_versions: u32,
}

wire_enum! {
    /// What an [`EventPayload`] records.
    pub enum EventKind {
        /// The vault was created.
        Created = 1,
        /// An older state was accepted after rollback detection.
        RollbackAccepted = 2,
        /// The master key was rotated.
        MasterKeyRotated = 3,
        /// A key slot was added, changed or removed.
        KeySlotChanged = 4,
        /// A managed key's policy was loosened (allowed an operation it did not).
        KeyPolicyLoosened = 5,
        /// A compromised key version was used, with the caller's override.
        CompromisedKeyUsed = 6,
        /// The vault was restored from a backup.
        Restored = 7,
    }
}

/// An audited event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPayload {
    /// What happened.
    pub kind: EventKind,
    /// When, ms since the Unix epoch.
    pub time_ms: i64,
    /// Details (no secrets).
    pub text: String,
}

wire_enum! {
    /// Where a header change stands (docs/FORMAT.md, "Header binding").
    pub enum BindingPhase {
        /// Written before the header is replaced: the header may be the new one or still the old.
        Intent = 1,
        /// The header is this one; any earlier intent is settled.
        Confirmed = 2,
    }
}

/// The SHA-256 of the vault header file that the log vouches for, so that putting back an older
/// header alone (reviving a changed or removed passphrase) is noticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderBindingPayload {
    /// Intent or confirmation.
    pub phase: BindingPhase,
    /// SHA-256 of the whole header file.
    pub digest: [u8; 32],
}

/// Any record plaintext.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload {
    /// [`RecordKind::SecretVersion`].
    SecretVersion(SecretVersionPayload),
    /// [`RecordKind::SecretState`].
    SecretState(SecretStatePayload),
    /// [`RecordKind::KeyVersion`].
    KeyVersion(KeyVersionPayload),
    /// [`RecordKind::Settings`].
    Settings(SettingsPayload),
    /// [`RecordKind::Event`].
    Event(EventPayload),
    /// [`RecordKind::HeaderBinding`].
    HeaderBinding(HeaderBindingPayload),
    /// [`RecordKind::Key`].
    Key(KeyPayload),
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn too_long(field: &'static str, len: usize, max: usize) -> Error {
    Error::TooLong {
        object: OBJECT,
        field,
        len: len as u64,
        max: max as u64,
    }
}

fn checked_name(name: &str) -> Result<()> {
    check_name(name).map_err(|reason| Error::InvalidField {
        object: OBJECT,
        field: "name",
        reason,
    })
}

impl Payload {
    /// The record kind this payload is sealed as.
    pub fn kind(&self) -> RecordKind {
        match self {
            Payload::SecretVersion(_) => RecordKind::SecretVersion,
            Payload::SecretState(_) => RecordKind::SecretState,
            Payload::KeyVersion(_) => RecordKind::KeyVersion,
            Payload::Settings(_) => RecordKind::Settings,
            Payload::Event(_) => RecordKind::Event,
            Payload::HeaderBinding(_) => RecordKind::HeaderBinding,
            Payload::Key(_) => RecordKind::Key,
        }
    }

    /// Encodes the payload into a buffer that is zeroized when dropped. Validates every limit,
    /// so nothing that could not be decoded is ever written.
    ///
    /// # Errors
    /// [`Error::TooLong`] or [`Error::InvalidField`] for a field outside the format's limits.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        // Reserve the final size first: a Vec grown by push leaves copies of the secret in freed
        // memory.
        let mut out = Zeroizing::new(Vec::with_capacity(self.encoded_len_hint()));
        out.push(PAYLOAD_VERSION);
        match self {
            Payload::SecretVersion(p) => {
                checked_name(&p.name)?;
                if p.version == 0 {
                    return Err(invalid("version", "versions start at 1"));
                }
                if p.tags.len() > MAX_TAGS {
                    return Err(too_long("tags", p.tags.len(), MAX_TAGS));
                }
                if p.value.len() > MAX_VALUE_LEN {
                    return Err(too_long("value", p.value.len(), MAX_VALUE_LEN));
                }
                put_str16(&mut out, &p.name);
                out.extend_from_slice(&p.version.to_le_bytes());
                out.extend_from_slice(&p.created_ms.to_le_bytes());
                out.extend_from_slice(&(p.tags.len() as u16).to_le_bytes());
                for t in &p.tags {
                    check_tag(t)?;
                    put_str16(&mut out, &t.key);
                    put_str16(&mut out, &t.value);
                }
                put_bytes32(&mut out, p.value.expose_secret());
            }
            Payload::SecretState(p) => {
                checked_name(&p.name)?;
                put_str16(&mut out, &p.name);
                out.push(p.state.to_byte());
                out.extend_from_slice(&p.time_ms.to_le_bytes());
            }
            Payload::KeyVersion(p) => {
                checked_name(&p.name)?;
                if p.version == 0 {
                    return Err(invalid("version", "versions start at 1"));
                }
                check_algorithm(&p.algorithm)?;
                if p.material.len() > MAX_KEY_MATERIAL_LEN {
                    return Err(too_long(
                        "key material",
                        p.material.len(),
                        MAX_KEY_MATERIAL_LEN,
                    ));
                }
                put_str16(&mut out, &p.name);
                out.extend_from_slice(&p.version.to_le_bytes());
                out.push(p.algorithm.len() as u8);
                out.extend_from_slice(p.algorithm.as_bytes());
                out.push(p.state.to_byte());
                out.extend_from_slice(&p.created_ms.to_le_bytes());
                out.extend_from_slice(&p.state_changed_ms.to_le_bytes());
                put_bytes32(&mut out, p.material.expose_secret());
            }
            Payload::Settings(p) => {
                check_max_versions(p.max_versions)?;
                out.extend_from_slice(&p.max_versions.to_le_bytes());
            }
            Payload::Event(p) => {
                if p.text.len() > MAX_EVENT_TEXT_LEN {
                    return Err(too_long("event text", p.text.len(), MAX_EVENT_TEXT_LEN));
                }
                out.push(p.kind.to_byte());
                out.extend_from_slice(&p.time_ms.to_le_bytes());
                put_str16(&mut out, &p.text);
            }
            Payload::HeaderBinding(p) => {
                out.push(p.phase.to_byte());
                out.extend_from_slice(&p.digest);
            }
            Payload::Key(p) => {
                checked_name(&p.name)?;
                p.encode_into(&mut out)?;
            }
        }
        Ok(out)
    }

    fn encoded_len_hint(&self) -> usize {
        1 + match self {
            Payload::SecretVersion(p) => {
                2 + p.name.len()
                    + 4
                    + 8
                    + 2
                    + p.tags
                        .iter()
                        .map(|t| 4 + t.key.len() + t.value.len())
                        .sum::<usize>()
                    + 4
                    + p.value.len()
            }
            Payload::SecretState(p) => 2 + p.name.len() + 1 + 8,
            Payload::KeyVersion(p) => {
                2 + p.name.len() + 4 + 1 + p.algorithm.len() + 1 + 16 + 4 + p.material.len()
            }
            Payload::Settings(_) => 4,
            Payload::Event(p) => 1 + 8 + 2 + p.text.len(),
            Payload::HeaderBinding(_) => 1 + 32,
            Payload::Key(p) => p.encoded_len(),
        }
    }

    /// Decodes the plaintext of a record of kind `kind`.
    ///
    /// # Errors
    /// A precise [`Error`] for anything malformed, including a payload version newer than this
    /// build reads.
    pub fn decode(kind: RecordKind, bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(OBJECT, bytes);
        let v = r.u8("payload version")?;
        if v == 0 {
            return Err(r.invalid("payload version", "version 0 does not exist"));
        }
        if v > PAYLOAD_VERSION {
            return Err(Error::UnsupportedVersion {
                object: OBJECT,
                found: u16::from(v),
                max: u16::from(PAYLOAD_VERSION),
            });
        }
        let p = match kind {
            RecordKind::SecretVersion => {
                let name = name(&mut r)?;
                let version = r.u32("version")?;
                if version == 0 {
                    return Err(r.invalid("version", "versions start at 1"));
                }
                let created_ms = i64::from_le_bytes(r.array("created")?);
                let count = usize::from(r.u16("tag count")?);
                if count > MAX_TAGS {
                    return Err(too_long("tags", count, MAX_TAGS));
                }
                let mut tags = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = str16(&mut r, "tag key", MAX_TAG_KEY_LEN)?;
                    let value = str16(&mut r, "tag value", MAX_TAG_VALUE_LEN)?;
                    let t = Tag { key, value };
                    check_tag(&t)?;
                    tags.push(t);
                }
                let value = SecretBytes::from_slice(r.len_prefixed_u32("value", MAX_VALUE_LEN)?);
                Payload::SecretVersion(SecretVersionPayload {
                    name,
                    version,
                    created_ms,
                    tags,
                    value,
                })
            }
            RecordKind::SecretState => {
                let name = name(&mut r)?;
                let state = SecretState::from_byte(r.u8("state")?)
                    .ok_or_else(|| r.invalid("state", "unknown secret state"))?;
                let time_ms = i64::from_le_bytes(r.array("time")?);
                Payload::SecretState(SecretStatePayload {
                    name,
                    state,
                    time_ms,
                })
            }
            RecordKind::KeyVersion => {
                let name = name(&mut r)?;
                let version = r.u32("version")?;
                if version == 0 {
                    return Err(r.invalid("version", "versions start at 1"));
                }
                let alen = usize::from(r.u8("algorithm length")?);
                let algorithm = utf8(r.bytes("algorithm", alen)?, "algorithm")?;
                check_algorithm(&algorithm)?;
                let state = KeyState::from_byte(r.u8("key state")?)
                    .ok_or_else(|| r.invalid("key state", "unknown key state"))?;
                let created_ms = i64::from_le_bytes(r.array("created")?);
                let state_changed_ms = i64::from_le_bytes(r.array("state changed")?);
                let material = SecretBytes::from_slice(
                    r.len_prefixed_u32("key material", MAX_KEY_MATERIAL_LEN)?,
                );
                Payload::KeyVersion(KeyVersionPayload {
                    name,
                    version,
                    algorithm,
                    state,
                    created_ms,
                    state_changed_ms,
                    material,
                })
            }
            RecordKind::Settings => {
                let max_versions = r.u32("max versions")?;
                check_max_versions(max_versions)?;
                Payload::Settings(SettingsPayload { max_versions })
            }
            RecordKind::Event => {
                let kind = EventKind::from_byte(r.u8("event kind")?)
                    .ok_or_else(|| r.invalid("event kind", "unknown event"))?;
                let time_ms = i64::from_le_bytes(r.array("time")?);
                let text = str16(&mut r, "event text", MAX_EVENT_TEXT_LEN)?;
                Payload::Event(EventPayload {
                    kind,
                    time_ms,
                    text,
                })
            }
            RecordKind::HeaderBinding => {
                let phase = BindingPhase::from_byte(r.u8("binding phase")?)
                    .ok_or_else(|| r.invalid("binding phase", "unknown phase"))?;
                let digest = r.array("header digest")?;
                Payload::HeaderBinding(HeaderBindingPayload { phase, digest })
            }
            RecordKind::Key => {
                let name = name(&mut r)?;
                Payload::Key(KeyPayload::decode_from(&mut r, name)?)
            }
        };
        r.finish()?;
        Ok(p)
    }
}

/// Most versions a vault can be set to keep per secret.
pub const MAX_MAX_VERSIONS: u32 = 10_000;

fn check_max_versions(n: u32) -> Result<()> {
    if !(1..=MAX_MAX_VERSIONS).contains(&n) {
        return Err(invalid(
            "max versions",
            format!("{n} is outside 1..={MAX_MAX_VERSIONS}"),
        ));
    }
    Ok(())
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidField {
        object: OBJECT,
        field,
        reason: reason.into(),
    }
}

/// Checks the tags of a new secret version, in words for the person who gave them: at most
/// [`MAX_TAGS`], each key 1 to [`MAX_TAG_KEY_LEN`] bytes without control characters or `=`, each
/// value at most [`MAX_TAG_VALUE_LEN`] bytes without control characters, no key twice.
///
/// # Errors
/// The first reason a tag is refused.
pub fn check_tags(tags: &[Tag]) -> core::result::Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("{} tags, over the limit of {MAX_TAGS}", tags.len()));
    }
    for (i, t) in tags.iter().enumerate() {
        check_tag(t).map_err(|e| match e {
            Error::InvalidField { field, reason, .. } => format!("{field} {:?}: {reason}", t.key),
            Error::TooLong { len, max, .. } => {
                format!(
                    "the value of tag {:?} is {len} bytes, over the limit of {max}",
                    t.key
                )
            }
            other => format!("tag {:?}: {other}", t.key),
        })?;
        if tags
            .get(..i)
            .is_some_and(|before| before.iter().any(|b| b.key == t.key))
        {
            return Err(format!("tag key {:?} is given twice", t.key));
        }
    }
    Ok(())
}

fn check_tag(t: &Tag) -> Result<()> {
    if t.key.is_empty() || t.key.len() > MAX_TAG_KEY_LEN {
        return Err(invalid(
            "tag key",
            format!("must be 1..={MAX_TAG_KEY_LEN} bytes"),
        ));
    }
    if t.key.chars().any(|c| c.is_control() || c == '=') {
        return Err(invalid(
            "tag key",
            "cannot contain control characters or '='",
        ));
    }
    if t.value.len() > MAX_TAG_VALUE_LEN {
        return Err(too_long("tag value", t.value.len(), MAX_TAG_VALUE_LEN));
    }
    if t.value.chars().any(char::is_control) {
        return Err(invalid("tag value", "cannot contain control characters"));
    }
    Ok(())
}

pub(crate) fn check_algorithm(a: &str) -> Result<()> {
    if a.is_empty()
        || a.len() > MAX_ALGORITHM_LEN
        || !a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "algorithm",
            format!("must be 1..={MAX_ALGORITHM_LEN} ASCII letters, digits, '-' or '_'"),
        ));
    }
    Ok(())
}

pub(crate) fn utf8(b: &[u8], field: &'static str) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| invalid(field, "not valid UTF-8"))
}

fn str16(r: &mut Reader<'_>, field: &'static str, max: usize) -> Result<String> {
    let len = usize::from(r.u16(field)?);
    if len > max {
        return Err(too_long(field, len, max));
    }
    utf8(r.bytes(field, len)?, field)
}

fn name(r: &mut Reader<'_>) -> Result<String> {
    let n = str16(r, "name", MAX_NAME_LEN)?;
    checked_name(&n)?;
    Ok(n)
}
