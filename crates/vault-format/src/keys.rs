//! The managed keys' on-disk vocabulary (docs/FORMAT.md §6.3, kind 7): algorithms, the operations
//! a key's policy allows, and the key record that holds a key's settings (primary version, floors,
//! expiry, rotation period, policy) beside its version records (kind 3).

use crate::payload::KeyState;
use crate::reader::Reader;
use crate::{Error, Result};

const OBJECT: &str = "record payload";

/// Length of a key id: random at creation, carried by every token the key makes, so that a token
/// shown to the wrong key is told apart from a damaged one.
pub const KEY_ID_LEN: usize = 8;

/// A managed key's algorithm. Stored as its name (1–32 ASCII bytes), so more can be added
/// without a format change; a name this build does not know is refused with a typed error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// XChaCha20-Poly1305: encrypt, decrypt, rewrap, data keys. 32-byte material.
    XChaCha20Poly1305,
    /// HMAC-SHA256: sign and verify (a MAC). 32-byte material.
    HmacSha256,
    /// Ed25519: sign, and verify with the public key alone. 32-byte seed.
    Ed25519,
}

impl Algorithm {
    /// Every algorithm, in the order the CLI lists them.
    pub const ALL: [Algorithm; 3] = [
        Algorithm::XChaCha20Poly1305,
        Algorithm::HmacSha256,
        Algorithm::Ed25519,
    ];

    /// The stored (and CLI) name.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::XChaCha20Poly1305 => "xchacha20poly1305",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// The algorithm stored as `name`, if this build knows it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Length of a version's key material.
    pub const fn material_len(self) -> usize {
        32
    }

    /// The operations the algorithm can do at all.
    pub const fn capable(self) -> KeyOps {
        match self {
            Algorithm::XChaCha20Poly1305 => {
                KeyOps(KeyOps::ENCRYPT.0 | KeyOps::DECRYPT.0 | KeyOps::REWRAP.0 | KeyOps::DATAKEY.0)
                    .with(KeyOps::EXPORT)
            }
            Algorithm::HmacSha256 | Algorithm::Ed25519 => {
                KeyOps(KeyOps::SIGN.0 | KeyOps::VERIFY.0).with(KeyOps::EXPORT)
            }
        }
    }
}

impl core::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of key operations: what a key's policy allows. A bit mask on disk (`u16`); bits this
/// build does not know are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct KeyOps(u16);

impl KeyOps {
    /// Encrypt with the primary version.
    pub const ENCRYPT: KeyOps = KeyOps(1);
    /// Decrypt a token.
    pub const DECRYPT: KeyOps = KeyOps(1 << 1);
    /// Re-encrypt a token to the primary version.
    pub const REWRAP: KeyOps = KeyOps(1 << 2);
    /// Make a data key and its wrapped form.
    pub const DATAKEY: KeyOps = KeyOps(1 << 3);
    /// Sign (or MAC).
    pub const SIGN: KeyOps = KeyOps(1 << 4);
    /// Verify a signature (or MAC).
    pub const VERIFY: KeyOps = KeyOps(1 << 5);
    /// Let the key material leave the vault (in an encrypted export). A public-only export of an
    /// Ed25519 key is always allowed.
    pub const EXPORT: KeyOps = KeyOps(1 << 6);
    /// Every operation this build knows.
    pub const KNOWN: KeyOps = KeyOps((1 << 7) - 1);
    /// No operation.
    pub const NONE: KeyOps = KeyOps(0);

    /// Each single operation with its CLI name.
    pub const NAMED: [(KeyOps, &'static str); 7] = [
        (KeyOps::ENCRYPT, "encrypt"),
        (KeyOps::DECRYPT, "decrypt"),
        (KeyOps::REWRAP, "rewrap"),
        (KeyOps::DATAKEY, "datakey"),
        (KeyOps::SIGN, "sign"),
        (KeyOps::VERIFY, "verify"),
        (KeyOps::EXPORT, "export"),
    ];

    /// The bits on disk.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// The set for bits read from disk, if every bit is known.
    pub const fn from_bits(bits: u16) -> Option<Self> {
        if bits & !Self::KNOWN.0 == 0 {
            Some(KeyOps(bits))
        } else {
            None
        }
    }

    /// This set and `other`.
    pub const fn with(self, other: KeyOps) -> KeyOps {
        KeyOps(self.0 | other.0)
    }

    /// This set without `other`.
    pub const fn without(self, other: KeyOps) -> KeyOps {
        KeyOps(self.0 & !other.0)
    }

    /// Whether every operation of `other` is in this set.
    pub const fn contains(self, other: KeyOps) -> bool {
        self.0 & other.0 == other.0
    }

    /// The operation named `name` (one of [`KeyOps::NAMED`]).
    pub fn from_name(name: &str) -> Option<KeyOps> {
        Self::NAMED
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(o, _)| o)
    }

    /// The names of the operations in this set, in [`KeyOps::NAMED`] order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMED
            .into_iter()
            .filter(|(o, _)| self.contains(*o))
            .map(|(_, n)| n)
            .collect()
    }
}

impl core::fmt::Display for KeyOps {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// Most versions one key may have.
pub const MAX_KEY_VERSIONS: usize = 4096;

/// A version's lifecycle state as the key record holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionState {
    /// Version (≥ 1).
    pub version: u32,
    /// Lifecycle state.
    pub state: KeyState,
    /// Last state change, ms since the Unix epoch.
    pub changed_ms: i64,
}

/// A managed key's settings and the states of its versions: the record of kind 7. A later
/// record for the same name replaces it. The versions' material is in their own records (kind 3),
/// written once; a destroyed version's material record is replaced by one without material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPayload {
    /// Key name.
    pub name: String,
    /// Random id, fixed at creation; carried by every token the key makes.
    pub key_id: [u8; KEY_ID_LEN],
    /// Algorithm name (as [`Algorithm::name`]; stored as text so more can be added).
    pub algorithm: String,
    /// The version new encryptions and signatures use (≥ 1).
    pub primary: u32,
    /// Versions below this are refused for decrypt and verify (0 or 1: none refused).
    pub min_decrypt_version: u32,
    /// Versions below this cannot be primary.
    pub min_encrypt_version: u32,
    /// After this time (ms since the Unix epoch) the key refuses to encrypt, sign or make data keys.
    pub expires_ms: Option<i64>,
    /// Rotation period, ms: a primary older than this is rotated on the key's next encryption.
    pub rotate_every_ms: Option<u64>,
    /// The operations the key allows.
    pub allowed: KeyOps,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Last change of these settings, ms since the Unix epoch.
    pub changed_ms: i64,
    /// Every version's state, in increasing version order (the primary among them).
    pub versions: Vec<VersionState>,
}

impl KeyPayload {
    pub(crate) fn encoded_len(&self) -> usize {
        2 + self.name.len()
            + KEY_ID_LEN
            + 1
            + self.algorithm.len()
            + 12
            + 9
            + 9
            + 2
            + 2
            + 16
            + 4
            + 13 * self.versions.len()
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        crate::payload::check_algorithm(&self.algorithm)?;
        if self.primary == 0 {
            return Err(invalid("primary version", "versions start at 1"));
        }
        if KeyOps::from_bits(self.allowed.bits()).is_none() {
            return Err(invalid("allowed operations", "unknown operation bits"));
        }
        out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.key_id);
        out.push(self.algorithm.len() as u8);
        out.extend_from_slice(self.algorithm.as_bytes());
        out.extend_from_slice(&self.primary.to_le_bytes());
        out.extend_from_slice(&self.min_decrypt_version.to_le_bytes());
        out.extend_from_slice(&self.min_encrypt_version.to_le_bytes());
        match self.expires_ms {
            None => out.extend_from_slice(&[0; 9]),
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        match self.rotate_every_ms {
            None => out.extend_from_slice(&[0; 9]),
            Some(t) => {
                if t == 0 || t > i64::MAX as u64 {
                    return Err(invalid("rotation period", "must be 1 ms to i64::MAX ms"));
                }
                out.push(1);
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.allowed.bits().to_le_bytes());
        out.extend_from_slice(&[0, 0]); // reserved flags
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.extend_from_slice(&self.changed_ms.to_le_bytes());
        check_versions(&self.versions, self.primary)?;
        out.extend_from_slice(&(self.versions.len() as u32).to_le_bytes());
        for v in &self.versions {
            out.extend_from_slice(&v.version.to_le_bytes());
            out.push(v.state.to_byte());
            out.extend_from_slice(&v.changed_ms.to_le_bytes());
        }
        Ok(())
    }

    /// Decodes the fields after the name; the caller checks that nothing follows.
    pub(crate) fn decode_from(r: &mut Reader<'_>, name: String) -> Result<Self> {
        let key_id = r.array("key id")?;
        let alen = usize::from(r.u8("algorithm length")?);
        let algorithm = crate::payload::utf8(r.bytes("algorithm", alen)?, "algorithm")?;
        crate::payload::check_algorithm(&algorithm)?;
        let primary = r.u32("primary version")?;
        if primary == 0 {
            return Err(r.invalid("primary version", "versions start at 1"));
        }
        let min_decrypt_version = r.u32("minimum decrypt version")?;
        let min_encrypt_version = r.u32("minimum encrypt version")?;
        let expires_ms = optional_i64(r, "expiry")?;
        let rotate_every_ms = match optional_i64(r, "rotation period")? {
            None => None,
            Some(t) if t > 0 => Some(t as u64),
            Some(_) => return Err(r.invalid("rotation period", "must be at least 1 ms")),
        };
        let allowed = KeyOps::from_bits(r.u16("allowed operations")?)
            .ok_or_else(|| r.invalid("allowed operations", "unknown operation bits"))?;
        r.zero("key flags", 2)?;
        let created_ms = i64::from_le_bytes(r.array("created")?);
        let changed_ms = i64::from_le_bytes(r.array("changed")?);
        let n = r.u32("version count")? as usize;
        if n > MAX_KEY_VERSIONS || n.saturating_mul(13) > r.remaining() {
            return Err(r.invalid(
                "version count",
                format!("{n} is more than the record holds or {MAX_KEY_VERSIONS}"),
            ));
        }
        let mut versions = Vec::with_capacity(n);
        for _ in 0..n {
            let version = r.u32("version")?;
            let state = KeyState::from_byte(r.u8("key state")?)
                .ok_or_else(|| r.invalid("key state", "unknown key state"))?;
            let changed_ms = i64::from_le_bytes(r.array("state changed")?);
            versions.push(VersionState {
                version,
                state,
                changed_ms,
            });
        }
        check_versions(&versions, primary)?;
        Ok(KeyPayload {
            versions,
            name,
            key_id,
            algorithm,
            primary,
            min_decrypt_version,
            min_encrypt_version,
            expires_ms,
            rotate_every_ms,
            allowed,
            created_ms,
            changed_ms,
        })
    }
}

fn check_versions(versions: &[VersionState], primary: u32) -> Result<()> {
    if versions.len() > MAX_KEY_VERSIONS {
        return Err(invalid("versions", format!("more than {MAX_KEY_VERSIONS}")));
    }
    let mut last = 0;
    for v in versions {
        if v.version <= last {
            return Err(invalid(
                "versions",
                "not in strictly increasing order from 1",
            ));
        }
        last = v.version;
    }
    if !versions.iter().any(|v| v.version == primary) {
        return Err(invalid("primary version", "not one of the key's versions"));
    }
    Ok(())
}

fn optional_i64(r: &mut Reader<'_>, field: &'static str) -> Result<Option<i64>> {
    let flag = r.u8(field)?;
    let v = i64::from_le_bytes(r.array(field)?);
    match flag {
        0 if v == 0 => Ok(None),
        0 => Err(r.invalid(field, "absent, yet not zero")),
        1 => Ok(Some(v)),
        _ => Err(r.invalid(field, "presence flag must be 0 or 1")),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidField {
        object: OBJECT,
        field,
        reason: reason.into(),
    }
}
