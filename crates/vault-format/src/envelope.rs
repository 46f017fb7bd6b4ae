//! The record envelope: one encrypted, authenticated record.
//!
//! ```text
//! offset  size  field
//!      0     1  record kind (u8, see RecordKind)
//!      1     1  envelope version (1)
//!      2     2  reserved, zero
//!      4     8  sequence (u64 LE): the record's number, unique within the vault, never reused
//!     12    24  nonce (random)
//!     36     4  ciphertext length L (u32 LE), 16..=MAX_CIPHERTEXT_LEN
//!     40     L  ciphertext ‖ 16-byte Poly1305 tag
//! ```
//!
//! Sealed with XChaCha20-Poly1305 under the vault's record-encryption subkey. The associated data
//! binds every cleartext field and the vault: `"vault v1 record" ‖ vault id (16) ‖ sequence (u64
//! LE) ‖ kind (u8) ‖ envelope version (u8)`, so a record cannot be moved to another vault, renumbered
//! or relabelled without failing to open.

use vault_crypto::SecretBytes;
use vault_crypto::aead::{self, NONCE_LEN, Nonce, TAG_LEN};
use vault_crypto::derive::RecordKey;

use crate::reader::Reader;
use crate::wire::wire_enum;
use crate::{Error, Result, VaultId};

const OBJECT: &str = "record envelope";
const AAD_LABEL: &[u8] = b"vault v1 record";

/// Current envelope version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Fixed bytes before the ciphertext.
pub const ENVELOPE_FIXED_LEN: usize = 40;
/// Largest plaintext an envelope may carry: a 1 MiB secret value plus 64 KiB for its name,
/// metadata and encoding.
pub const MAX_PLAINTEXT_LEN: usize = (1 << 20) + (64 << 10);
/// Largest ciphertext (plaintext plus tag).
pub const MAX_CIPHERTEXT_LEN: usize = MAX_PLAINTEXT_LEN + TAG_LEN;
/// Largest encoded envelope.
pub const MAX_ENVELOPE_LEN: usize = ENVELOPE_FIXED_LEN + MAX_CIPHERTEXT_LEN;

wire_enum! {
    /// What a record holds. The numbering is part of the format.
    pub enum RecordKind {
        /// A new version of a secret.
        SecretVersion = 1,
        /// A secret's lifecycle change: soft delete, undelete, destroy.
        SecretState = 2,
        /// A version of a managed key.
        KeyVersion = 3,
        /// Vault-wide settings (such as `max_versions`).
        Settings = 4,
        /// An audited event recorded in the vault itself (such as accepting a rolled-back state).
        Event = 5,
        /// Which vault header the log vouches for (docs/FORMAT.md, "Header binding").
        HeaderBinding = 6,
        /// A managed key's settings: primary version, floors, expiry, rotation period, policy.
        Key = 7,
    }
}

/// An encrypted record as stored. Opening it needs the vault's record key and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordEnvelope {
    /// What the record holds.
    pub kind: RecordKind,
    /// The record's sequence number.
    pub sequence: u64,
    /// The nonce it was sealed under.
    pub nonce: Nonce,
    /// Ciphertext ‖ tag.
    pub ciphertext: Vec<u8>,
}

impl RecordEnvelope {
    /// Seals `plaintext` into a new envelope with a random nonce.
    ///
    /// # Errors
    /// [`Error::TooLong`] if the plaintext exceeds [`MAX_PLAINTEXT_LEN`]; [`Error::Crypto`] if
    /// the RNG fails.
    pub fn seal(
        key: &RecordKey,
        vault_id: &VaultId,
        kind: RecordKind,
        sequence: u64,
        plaintext: &[u8],
    ) -> Result<Self> {
        let nonce = Nonce::random().map_err(|source| Error::Crypto {
            object: OBJECT,
            source,
        })?;
        Self::seal_with_nonce(key, vault_id, kind, sequence, &nonce, plaintext)
    }

    /// [`RecordEnvelope::seal`] with a fixed nonce: for worked examples and tests only.
    ///
    /// # Errors
    /// As [`RecordEnvelope::seal`].
    pub fn seal_with_nonce(
        key: &RecordKey,
        vault_id: &VaultId,
        kind: RecordKind,
        sequence: u64,
        nonce: &Nonce,
        plaintext: &[u8],
    ) -> Result<Self> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::TooLong {
                object: OBJECT,
                field: "plaintext",
                len: plaintext.len() as u64,
                max: MAX_PLAINTEXT_LEN as u64,
            });
        }
        let aad = aad(vault_id, kind, sequence);
        let ciphertext =
            aead::seal_with_nonce(key.key(), nonce, &aad, plaintext).map_err(|source| {
                Error::Crypto {
                    object: OBJECT,
                    source,
                }
            })?;
        Ok(Self {
            kind,
            sequence,
            nonce: *nonce,
            ciphertext,
        })
    }

    /// Decrypts and authenticates the record.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the key or vault id is wrong or any byte was modified.
    pub fn open(&self, key: &RecordKey, vault_id: &VaultId) -> Result<SecretBytes> {
        let aad = aad(vault_id, self.kind, self.sequence);
        aead::open(key.key(), &self.nonce, &aad, &self.ciphertext)
            .map_err(|_| Error::Authentication { object: OBJECT })
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        ENVELOPE_FIXED_LEN + self.ciphertext.len()
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.kind.to_byte());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(self.nonce.as_bytes());
        // Bounded by MAX_CIPHERTEXT_LEN at construction and decode, so it fits a u32.
        out.extend_from_slice(&(self.ciphertext.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.ciphertext);
    }

    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one envelope; trailing bytes are an error.
    ///
    /// # Errors
    /// A precise [`Error`] for every malformed input.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(OBJECT, bytes);
        let env = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(env)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let kind_byte = r.u8("record kind")?;
        let kind = RecordKind::from_byte(kind_byte)
            .ok_or_else(|| r.invalid("record kind", format!("unknown record kind {kind_byte}")))?;
        let version = r.u8("envelope version")?;
        if version == 0 {
            return Err(r.invalid("envelope version", "version 0 does not exist"));
        }
        if version > ENVELOPE_VERSION {
            return Err(Error::UnsupportedVersion {
                object: OBJECT,
                found: version.into(),
                max: ENVELOPE_VERSION.into(),
            });
        }
        r.zero("reserved", 2)?;
        let sequence = r.u64("sequence")?;
        let nonce = Nonce::from_bytes(r.array::<NONCE_LEN>("nonce")?);
        let ciphertext = r.len_prefixed_u32("ciphertext", MAX_CIPHERTEXT_LEN)?;
        if ciphertext.len() < TAG_LEN {
            return Err(r.invalid("ciphertext", "shorter than the authentication tag"));
        }
        Ok(Self {
            kind,
            sequence,
            nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn aad(vault_id: &VaultId, kind: RecordKind, sequence: u64) -> [u8; 15 + 16 + 8 + 2] {
    let mut aad = [0u8; 15 + 16 + 8 + 2];
    let (label, rest) = aad.split_at_mut(AAD_LABEL.len());
    label.copy_from_slice(AAD_LABEL);
    let (id, rest) = rest.split_at_mut(16);
    id.copy_from_slice(vault_id.as_bytes());
    let (seq, rest) = rest.split_at_mut(8);
    seq.copy_from_slice(&sequence.to_le_bytes());
    if let [k, v] = rest {
        *k = kind.to_byte();
        *v = ENVELOPE_VERSION;
    }
    aad
}
