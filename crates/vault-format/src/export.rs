//! The export container (docs/FORMAT.md §6.11): managed keys (every version, state, policy and
//! time) and secrets (with their history) sealed under a key derived from an export passphrase,
//! for moving them between vaults. One Argon2id derivation per file, whatever it holds. A binary
//! encoding and a JSON one carry the same fields and the same ciphertext.
//!
//! ```text
//! header     = preamble("VEXP", 1) ‖ memory KiB (u32) ‖ iterations (u32) ‖ lanes (u32)
//!              ‖ salt (16) ‖ check (16) ‖ nonce (24) ‖ ciphertext length (u64)
//! file       = header ‖ XChaCha20-Poly1305(export key, nonce, aad = header, contents) ‖ tag
//! export key = HKDF-SHA256(Argon2id(passphrase, salt, params), "vault v1 export" ‖ 00 ‖ salt)
//! check      = HMAC-SHA256(export key, "vault v1 export check"), first 16 bytes
//! ```

use base64ct::{Base64, Encoding};
use vault_crypto::kdf::{self, KdfParams, SALT_LEN};
use vault_crypto::{Key256, SecretBytes, derive, mac};
use zeroize::Zeroizing;

use crate::RecordKind;
use crate::payload::{KeyPayload, KeyVersionPayload, Payload, SecretVersionPayload};
use crate::preamble::{self, ObjectKind};
use crate::reader::Reader;
use crate::{Error, Result};

const KIND: ObjectKind = ObjectKind {
    name: "export file",
    tag: *b"VEXP",
    current_version: 1,
};
const OBJECT: &str = "export file";
/// Length of the header.
pub const HEADER_LEN: usize = 16 + 12 + SALT_LEN + CHECK_LEN + 24 + 8;
/// Length of the passphrase check.
pub const CHECK_LEN: usize = 16;
/// Largest ciphertext an export may hold: 1 GiB (the contents are held in memory).
pub const MAX_CONTENTS: u64 = 1 << 30;
/// The contents' layout version.
pub const CONTENTS_VERSION: u8 = 1;
const CHECK_LABEL: &[u8] = b"vault v1 export check";

/// A managed key as exported: its key record and every version's record (a destroyed version's
/// without material).
#[derive(Debug, PartialEq, Eq)]
pub struct ExportedKey {
    /// The key record.
    pub key: KeyPayload,
    /// Its versions, in version order.
    pub versions: Vec<KeyVersionPayload>,
}

/// A secret as exported: its kept versions, and whether it is soft-deleted.
#[derive(Debug, PartialEq, Eq)]
pub struct ExportedSecret {
    /// The name.
    pub name: String,
    /// Soft-deleted.
    pub deleted: bool,
    /// Its kept versions, in version order.
    pub versions: Vec<SecretVersionPayload>,
}

/// What an export holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ExportContents {
    /// When it was made, ms since the Unix epoch.
    pub exported_ms: i64,
    /// Managed keys.
    pub keys: Vec<ExportedKey>,
    /// Secrets.
    pub secrets: Vec<ExportedSecret>,
}

fn put_payload(out: &mut Vec<u8>, p: Payload) -> Result<()> {
    let bytes = p.encode()?;
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

fn get_payload(r: &mut Reader<'_>, kind: RecordKind) -> Result<Payload> {
    let bytes = r.len_prefixed_u32("record", crate::MAX_PLAINTEXT_LEN)?;
    Payload::decode(kind, bytes)
}

fn count(r: &mut Reader<'_>, field: &'static str, min_each: usize) -> Result<usize> {
    let n = r.u32(field)? as usize;
    if n.saturating_mul(min_each) > r.remaining() {
        return Err(r.invalid(field, format!("{n} entries cannot fit in what is left")));
    }
    Ok(n)
}

impl ExportContents {
    /// The plaintext, in a buffer zeroized when dropped.
    ///
    /// # Errors
    /// A record outside the format's limits.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::new());
        out.push(CONTENTS_VERSION);
        out.extend_from_slice(&self.exported_ms.to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        for k in &self.keys {
            put_payload(&mut out, Payload::Key(k.key.clone()))?;
            out.extend_from_slice(&(k.versions.len() as u32).to_le_bytes());
            for v in &k.versions {
                put_payload(
                    &mut out,
                    Payload::KeyVersion(KeyVersionPayload {
                        name: v.name.clone(),
                        version: v.version,
                        algorithm: v.algorithm.clone(),
                        state: v.state,
                        created_ms: v.created_ms,
                        state_changed_ms: v.state_changed_ms,
                        material: v.material.duplicate(),
                    }),
                )?;
            }
        }
        out.extend_from_slice(&(self.secrets.len() as u32).to_le_bytes());
        for s in &self.secrets {
            out.extend_from_slice(&(s.name.len() as u16).to_le_bytes());
            out.extend_from_slice(s.name.as_bytes());
            out.push(u8::from(s.deleted));
            out.extend_from_slice(&(s.versions.len() as u32).to_le_bytes());
            for v in &s.versions {
                put_payload(
                    &mut out,
                    Payload::SecretVersion(SecretVersionPayload {
                        name: v.name.clone(),
                        version: v.version,
                        created_ms: v.created_ms,
                        tags: v.tags.clone(),
                        value: v.value.duplicate(),
                    }),
                )?;
            }
        }
        Ok(out)
    }

    /// Decodes the plaintext; every record is checked as a record of the vault would be, and
    /// each key's versions and each secret's versions must be its own.
    ///
    /// # Errors
    /// A precise error for anything malformed.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(OBJECT, bytes);
        let v = r.u8("contents version")?;
        if v == 0 || v > CONTENTS_VERSION {
            return Err(Error::UnsupportedVersion {
                object: OBJECT,
                found: u16::from(v),
                max: u16::from(CONTENTS_VERSION),
            });
        }
        let exported_ms = i64::from_le_bytes(r.array("exported")?);
        let n = count(&mut r, "key count", 8)?;
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let Payload::Key(key) = get_payload(&mut r, RecordKind::Key)? else {
                return Err(r.invalid("key record", "not a key record"));
            };
            let m = count(&mut r, "key version count", 4)?;
            let mut versions = Vec::with_capacity(m);
            for _ in 0..m {
                let Payload::KeyVersion(v) = get_payload(&mut r, RecordKind::KeyVersion)? else {
                    return Err(r.invalid("key version", "not a key version record"));
                };
                if v.name != key.name
                    || versions
                        .last()
                        .is_some_and(|p: &KeyVersionPayload| p.version >= v.version)
                {
                    return Err(r.invalid("key version", "not this key's, or out of order"));
                }
                versions.push(v);
            }
            if versions
                .iter()
                .map(|v| v.version)
                .ne(key.versions.iter().map(|v| v.version))
            {
                return Err(r.invalid(
                    "key versions",
                    format!(
                        "key {:?}: the versions differ from its key record's",
                        key.name
                    ),
                ));
            }
            keys.push(ExportedKey { key, versions });
        }
        let n = count(&mut r, "secret count", 7)?;
        let mut secrets = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::from(r.u16("secret name length")?);
            let name = String::from_utf8(r.bytes("secret name", len)?.to_vec())
                .map_err(|_| r.invalid("secret name", "not UTF-8"))?;
            let deleted = match r.u8("deleted")? {
                0 => false,
                1 => true,
                _ => return Err(r.invalid("deleted", "must be 0 or 1")),
            };
            let m = count(&mut r, "secret version count", 4)?;
            let mut versions = Vec::with_capacity(m);
            for _ in 0..m {
                let Payload::SecretVersion(v) = get_payload(&mut r, RecordKind::SecretVersion)?
                else {
                    return Err(r.invalid("secret version", "not a secret version record"));
                };
                if v.name != name
                    || versions
                        .last()
                        .is_some_and(|p: &SecretVersionPayload| p.version >= v.version)
                {
                    return Err(r.invalid("secret version", "not this secret's, or out of order"));
                }
                versions.push(v);
            }
            if versions.is_empty() {
                return Err(r.invalid("secret versions", "a secret has at least one"));
            }
            if secrets.iter().any(|x: &ExportedSecret| x.name == name) {
                return Err(r.invalid("secret", format!("secret {name:?} is in the file twice")));
            }
            secrets.push(ExportedSecret {
                name,
                deleted,
                versions,
            });
        }
        r.finish()?;
        Ok(ExportContents {
            exported_ms,
            keys,
            secrets,
        })
    }
}

/// The fields of an export file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportHeader {
    /// Argon2id parameters of the export passphrase.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// Tells a wrong passphrase from a damaged file.
    pub check: [u8; CHECK_LEN],
    /// AEAD nonce.
    pub nonce: [u8; 24],
    /// Length of the ciphertext (contents and tag).
    pub ciphertext_len: u64,
}

impl ExportHeader {
    /// The header's bytes: also the associated data the contents are sealed with.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        preamble::write(&mut out, KIND);
        out.extend_from_slice(&self.kdf.memory_kib().to_le_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_le_bytes());
        out.extend_from_slice(&self.kdf.lanes().to_le_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.check);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext_len.to_le_bytes());
        out
    }

    /// Reads a header from the start of a binary export; returns it and the ciphertext. The
    /// KDF parameters are checked against the format's bounds here; the caller checks them
    /// against its own work limit before deriving anything.
    ///
    /// # Errors
    /// Not an export file, a newer version, truncation, parameters out of bounds, a ciphertext
    /// length that is not the rest of the file or over [`MAX_CONTENTS`].
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8])> {
        let mut r = Reader::new(OBJECT, bytes);
        preamble::read(&mut r, KIND)?;
        let (m, t, p) = (
            r.u32("Argon2id memory")?,
            r.u32("Argon2id iterations")?,
            r.u32("Argon2id lanes")?,
        );
        let kdf = KdfParams::for_key(m, t, p)
            .map_err(|e| r.invalid("Argon2id parameters", e.to_string()))?;
        let salt = r.array("salt")?;
        let check = r.array("passphrase check")?;
        let nonce = r.array("nonce")?;
        let ciphertext_len = r.u64("ciphertext length")?;
        if !(16..=MAX_CONTENTS + 16).contains(&ciphertext_len) {
            return Err(r.invalid(
                "ciphertext length",
                format!("{ciphertext_len} is outside 16..={}", MAX_CONTENTS + 16),
            ));
        }
        if (r.remaining() as u64) > ciphertext_len {
            return Err(Error::TrailingBytes {
                object: OBJECT,
                count: r.remaining() - ciphertext_len as usize,
            });
        }
        if ciphertext_len != r.remaining() as u64 {
            return Err(Error::Truncated {
                object: OBJECT,
                field: "ciphertext",
                needed: ciphertext_len as usize,
                got: r.remaining(),
            });
        }
        let ct = r.bytes("ciphertext", r.remaining())?;
        Ok((
            ExportHeader {
                kdf,
                salt,
                check,
                nonce,
                ciphertext_len,
            },
            ct,
        ))
    }
}

/// Why an export could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file is malformed or of a newer version.
    #[error("{0}")]
    Format(#[from] Error),
    /// The export passphrase is not the one it was made with.
    #[error("wrong export passphrase")]
    WrongPassphrase,
    /// The passphrase is right but the contents do not authenticate: the file was changed.
    #[error("export file: the contents do not authenticate (the file was changed)")]
    Tampered,
}

/// The export key and its check value for `passphrase` under `header`'s parameters and salt.
fn export_key(
    passphrase: &[u8],
    kdf: &KdfParams,
    salt: &[u8; SALT_LEN],
) -> Result<(Key256, [u8; CHECK_LEN])> {
    let crypto = |source| Error::Crypto {
        object: OBJECT,
        source,
    };
    let stretched = kdf::derive_key(passphrase, salt, kdf).map_err(crypto)?;
    let key = derive::subkey(&stretched, derive::Purpose::Export, salt);
    let tag = mac::hmac_sha256(key.expose_secret(), &[CHECK_LABEL]);
    let mut check = [0u8; CHECK_LEN];
    check.copy_from_slice(tag.as_bytes().get(..CHECK_LEN).unwrap_or_default());
    Ok((key, check))
}

/// Seals `contents` as a binary export file under `passphrase` (one Argon2id derivation).
///
/// # Errors
/// Contents over the format's limits; a crypto failure.
pub fn seal(contents: &ExportContents, passphrase: &[u8], kdf: KdfParams) -> Result<Vec<u8>> {
    let crypto = |source| Error::Crypto {
        object: OBJECT,
        source,
    };
    let salt = vault_crypto::rng::bytes::<SALT_LEN>().map_err(crypto)?;
    let nonce = vault_crypto::rng::bytes::<24>().map_err(crypto)?;
    seal_with(contents, passphrase, kdf, salt, nonce)
}

/// [`seal`] with a caller-chosen salt and nonce: for the worked example only (a nonce must never
/// repeat under a key).
///
/// # Errors
/// As [`seal`].
pub fn seal_with(
    contents: &ExportContents,
    passphrase: &[u8],
    kdf: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; 24],
) -> Result<Vec<u8>> {
    let crypto = |source| Error::Crypto {
        object: OBJECT,
        source,
    };
    let plain = contents.encode()?;
    if plain.len() as u64 > MAX_CONTENTS {
        return Err(Error::TooLong {
            object: OBJECT,
            field: "contents",
            len: plain.len() as u64,
            max: MAX_CONTENTS,
        });
    }
    let (key, check) = export_key(passphrase, &kdf, &salt)?;
    let header = ExportHeader {
        kdf,
        salt,
        check,
        nonce,
        ciphertext_len: plain.len() as u64 + 16,
    };
    let mut out = header.encode();
    let aad = out.clone();
    vault_crypto::aead::seal_append(
        &key,
        &vault_crypto::aead::Nonce::from_bytes(nonce),
        &aad,
        &plain,
        &mut out,
    )
    .map_err(crypto)?;
    Ok(out)
}

/// Opens a binary export file. `allow` is asked about the KDF parameters before any work is
/// done (a crafted file cannot demand gigabytes or hours): it returns why they are refused.
///
/// # Errors
/// [`OpenError`]: malformed (or refused parameters), wrong passphrase, or tampered.
pub fn open(
    file: &[u8],
    passphrase: &[u8],
    allow: &dyn Fn(&KdfParams) -> Option<String>,
) -> core::result::Result<ExportContents, OpenError> {
    let (header, ct) = ExportHeader::decode(file)?;
    if let Some(why) = allow(&header.kdf) {
        return Err(OpenError::Format(Error::InvalidField {
            object: OBJECT,
            field: "Argon2id parameters",
            reason: why,
        }));
    }
    let (key, check) = export_key(passphrase, &header.kdf, &header.salt)?;
    if !bool::from(subtle_eq(&check, &header.check)) {
        return Err(OpenError::WrongPassphrase);
    }
    let plain: SecretBytes = vault_crypto::aead::open(
        &key,
        &vault_crypto::aead::Nonce::from_bytes(header.nonce),
        &header.encode(),
        ct,
    )
    .map_err(|_| OpenError::Tampered)?;
    Ok(ExportContents::decode(plain.expose_secret())?)
}

fn subtle_eq(a: &[u8; CHECK_LEN], b: &[u8; CHECK_LEN]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

/// The JSON encoding of a binary export file: the same header fields and ciphertext, as
/// `{"format": "vault-export", "version": 1, "kdf": {…}, "salt": …, "check": …, "nonce": …,
/// "ciphertext": …}` with standard base64.
///
/// # Errors
/// A malformed binary export.
pub fn to_json(file: &[u8]) -> Result<String> {
    let (h, ct) = ExportHeader::decode(file)?;
    Ok(format!(
        "{{\"format\":\"vault-export\",\"version\":1,\"kdf\":{{\"algorithm\":\"argon2id\",\"memory_kib\":{},\"iterations\":{},\"lanes\":{}}},\"salt\":\"{}\",\"check\":\"{}\",\"nonce\":\"{}\",\"ciphertext\":\"{}\"}}\n",
        h.kdf.memory_kib(),
        h.kdf.iterations(),
        h.kdf.lanes(),
        Base64::encode_string(&h.salt),
        Base64::encode_string(&h.check),
        Base64::encode_string(&h.nonce),
        Base64::encode_string(ct)
    ))
}

/// The binary export file a JSON export encodes.
///
/// # Errors
/// Not a vault export, a newer version, a field missing or malformed.
pub fn from_json(text: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::InvalidField {
        object: OBJECT,
        field: "JSON",
        reason,
    };
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if v.get("format").and_then(|f| f.as_str()) != Some("vault-export") {
        return Err(bad(
            "not a vault export (\"format\" is not \"vault-export\")".into(),
        ));
    }
    let version = v
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if version != 1 {
        return Err(if version > 1 {
            Error::UnsupportedVersion {
                object: OBJECT,
                found: u16::try_from(version).unwrap_or(u16::MAX),
                max: 1,
            }
        } else {
            bad("\"version\" must be 1".into())
        });
    }
    let kdf = v.get("kdf").ok_or_else(|| bad("no \"kdf\"".into()))?;
    if kdf.get("algorithm").and_then(|a| a.as_str()) != Some("argon2id") {
        return Err(bad("\"kdf\".\"algorithm\" must be \"argon2id\"".into()));
    }
    let num = |k: &str| -> Result<u32> {
        kdf.get(k)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(format!("\"kdf\".\"{k}\" is not a number")))
    };
    let params = KdfParams::for_key(num("memory_kib")?, num("iterations")?, num("lanes")?)
        .map_err(|e| bad(e.to_string()))?;
    let field = |k: &str| -> Result<Vec<u8>> {
        let s = v
            .get(k)
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad(format!("no \"{k}\"")))?;
        Base64::decode_vec(s).map_err(|_| bad(format!("\"{k}\" is not base64")))
    };
    let fixed = |k: &str, bytes: Vec<u8>, n: usize| -> Result<Vec<u8>> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(bad(format!("\"{k}\" must be {n} bytes")))
        }
    };
    let salt = fixed("salt", field("salt")?, SALT_LEN)?;
    let check = fixed("check", field("check")?, CHECK_LEN)?;
    let nonce = fixed("nonce", field("nonce")?, 24)?;
    let ct = field("ciphertext")?;
    let header = ExportHeader {
        kdf: params,
        salt: salt.try_into().map_err(|_| bad("salt".into()))?,
        check: check.try_into().map_err(|_| bad("check".into()))?,
        nonce: nonce.try_into().map_err(|_| bad("nonce".into()))?,
        ciphertext_len: ct.len() as u64,
    };
    let mut out = header.encode();
    out.extend_from_slice(&ct);
    // The same checks as a binary file's.
    ExportHeader::decode(&out)?;
    Ok(out)
}

/// Whether `bytes` start like a binary export file.
pub fn is_binary_export(bytes: &[u8]) -> bool {
    bytes.starts_with(&preamble::MAGIC) && bytes.get(8..12) == Some(&KIND.tag[..])
}
