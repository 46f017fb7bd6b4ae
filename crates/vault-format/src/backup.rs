//! The backup container's header (docs/designs/backup.md; FORMAT.md once built): what a backup
//! file says about itself before its sealed chunks, and the keys its passphrase derives.
//!
//! ```text
//! header = preamble("VBAK", 1) ‖ flags (u16) ‖ vault id (16) ‖ backup id (16) ‖ created ms (i64)
//!          ‖ key epoch (u32) ‖ source generation (u64) ‖ source sequence (u64) ‖ lineage (16)
//!          ‖ base backup id (16) ‖ base generation (u64) ‖ base sequence (u64)
//!          ‖ Argon2id m, t, p (u32 ×3) ‖ salt (16) ‖ check (16)
//!          ‖ chunk size (u32) ‖ nonce prefix (19) ‖ comment (u16 length ‖ UTF-8)
//! ```

use vault_crypto::kdf::{KdfParams, SALT_LEN};
use vault_crypto::{Key256, derive, mac};

use crate::preamble::{self, ObjectKind};
use crate::reader::Reader;
use crate::{Error, Result, VaultId};

const KIND: ObjectKind = ObjectKind {
    name: "backup file",
    tag: *b"VBAK",
    current_version: 1,
};
const OBJECT: &str = "backup file";
/// Length of the passphrase check value.
pub const CHECK_LEN: usize = 16;
/// Length of the STREAM nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 19;
/// Chunk sizes a backup may declare (a crafted file cannot ask for more memory).
pub const CHUNK_RANGE: core::ops::RangeInclusive<u32> = 4096..=(1 << 20);
/// The chunk size a writer uses.
pub const CHUNK_SIZE: u32 = 64 * 1024;
/// Longest comment, bytes.
pub const MAX_COMMENT: usize = 1024;
/// Bytes of a header before its comment (the comment's length included).
pub const HEADER_FIXED_LEN: usize = 16
    + 2
    + 16
    + 16
    + 8
    + 4
    + 8
    + 8
    + 16
    + 16
    + 8
    + 8
    + 12
    + SALT_LEN
    + CHECK_LEN
    + 4
    + NONCE_PREFIX_LEN
    + 2;
/// Length of the trailing HMAC.
pub const TRAILER_LEN: usize = 32;
const CHECK_LABEL: &[u8] = b"vault v1 backup check";

/// Flag: the payload is gzip-compressed.
pub const FLAG_GZIP: u16 = 1;
/// Flag: the payload includes the audit log.
pub const FLAG_AUDIT: u16 = 2;
/// Flag: an incremental backup (the base fields name its base).
pub const FLAG_INCREMENTAL: u16 = 4;
const KNOWN_FLAGS: u16 = FLAG_GZIP | FLAG_AUDIT | FLAG_INCREMENTAL;

/// A backup file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupHeader {
    /// [`FLAG_GZIP`], [`FLAG_AUDIT`], [`FLAG_INCREMENTAL`].
    pub flags: u16,
    /// The vault backed up.
    pub vault_id: VaultId,
    /// Random, per backup: what an incremental names as its base.
    pub backup_id: [u8; 16],
    /// When, ms since the Unix epoch.
    pub created_ms: i64,
    /// The vault's master key epoch when it was made (secrets are ordered under it, and an
    /// incremental backup needs the same epoch as its base).
    pub key_epoch: u32,
    /// The vault's generation the backup is of.
    pub source_generation: u64,
    /// The highest record sequence number the vault had used: an incremental on this backup
    /// carries the records numbered above it.
    pub source_sequence: u64,
    /// The vault's latest accepted older state, if any (its record's sequence number and the
    /// first 8 bytes of its nonce): an incremental needs the same as its base.
    pub lineage: [u8; 16],
    /// For an incremental: the base backup's id (zero for a full backup).
    pub base_id: [u8; 16],
    /// For an incremental: the base backup's source generation (zero for a full backup).
    pub base_generation: u64,
    /// For an incremental: the base backup's source sequence (zero for a full backup).
    pub base_sequence: u64,
    /// Argon2id parameters of the backup passphrase.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// Tells a wrong passphrase from damage.
    pub check: [u8; CHECK_LEN],
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// STREAM nonce prefix.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// The user's note, if any.
    pub comment: String,
}

/// The keys a backup passphrase derives: one to seal chunks, one for the trailing MAC.
pub struct BackupKeys {
    /// Seals the chunks.
    pub encrypt: Key256,
    /// The trailing HMAC and the check value.
    pub mac: Key256,
}

impl BackupKeys {
    /// Derives the keys from `passphrase` (one Argon2id run) for a backup with `kdf`, `salt`
    /// and `backup_id`; returns them and the check value.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the derivation fails (out of memory).
    pub fn derive(
        passphrase: &[u8],
        kdf: &KdfParams,
        salt: &[u8; SALT_LEN],
        backup_id: &[u8; 16],
    ) -> Result<(Self, [u8; CHECK_LEN])> {
        let stretched = vault_crypto::kdf::derive_key(passphrase, salt, kdf).map_err(|source| {
            Error::Crypto {
                object: OBJECT,
                source,
            }
        })?;
        let context = |what: &[u8]| [&backup_id[..], what].concat();
        let keys = BackupKeys {
            encrypt: derive::subkey(&stretched, derive::Purpose::Backup, &context(b"encrypt")),
            mac: derive::subkey(&stretched, derive::Purpose::Backup, &context(b"mac")),
        };
        let tag = mac::hmac_sha256(keys.mac.expose_secret(), &[CHECK_LABEL]);
        let mut check = [0u8; CHECK_LEN];
        check.copy_from_slice(tag.as_bytes().get(..CHECK_LEN).unwrap_or_default());
        Ok((keys, check))
    }
}

impl BackupHeader {
    /// The header's bytes (also the associated data of every chunk, and the start of the MAC).
    ///
    /// # Errors
    /// A comment over [`MAX_COMMENT`] bytes, unknown flags or a chunk size out of range.
    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.comment.len() > MAX_COMMENT {
            return Err(Error::TooLong {
                object: OBJECT,
                field: "comment",
                len: self.comment.len() as u64,
                max: MAX_COMMENT as u64,
            });
        }
        if self.flags & !KNOWN_FLAGS != 0 || !CHUNK_RANGE.contains(&self.chunk_size) {
            return Err(Error::InvalidField {
                object: OBJECT,
                field: "flags or chunk size",
                reason: "outside what the format allows".into(),
            });
        }
        let mut out = Vec::with_capacity(200 + self.comment.len());
        preamble::write(&mut out, KIND);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(self.vault_id.as_bytes());
        out.extend_from_slice(&self.backup_id);
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.extend_from_slice(&self.key_epoch.to_le_bytes());
        out.extend_from_slice(&self.source_generation.to_le_bytes());
        out.extend_from_slice(&self.source_sequence.to_le_bytes());
        out.extend_from_slice(&self.lineage);
        out.extend_from_slice(&self.base_id);
        out.extend_from_slice(&self.base_generation.to_le_bytes());
        out.extend_from_slice(&self.base_sequence.to_le_bytes());
        out.extend_from_slice(&self.kdf.memory_kib().to_le_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_le_bytes());
        out.extend_from_slice(&self.kdf.lanes().to_le_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.check);
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&self.nonce_prefix);
        out.extend_from_slice(&(self.comment.len() as u16).to_le_bytes());
        out.extend_from_slice(self.comment.as_bytes());
        Ok(out)
    }

    /// Reads a header from the start of `bytes`; returns it and its length. The KDF parameters
    /// are checked against the format's bounds; the caller checks its own work limit before
    /// deriving anything.
    ///
    /// # Errors
    /// Not a backup, a newer version, truncation, unknown flags, a chunk size out of range,
    /// inconsistent base fields, a comment that is not UTF-8.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize)> {
        let mut r = Reader::new(OBJECT, bytes);
        preamble::read(&mut r, KIND)?;
        let flags = r.u16("flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(r.invalid("flags", "unknown flags"));
        }
        let vault_id = VaultId::from_bytes(r.array("vault id")?);
        let backup_id = r.array("backup id")?;
        let created_ms = i64::from_le_bytes(r.array("created")?);
        let key_epoch = r.u32("key epoch")?;
        let source_generation = r.u64("source generation")?;
        let source_sequence = r.u64("source sequence")?;
        let lineage = r.array("lineage")?;
        let base_id: [u8; 16] = r.array("base backup id")?;
        let base_generation = r.u64("base generation")?;
        let base_sequence = r.u64("base sequence")?;
        let incremental = flags & FLAG_INCREMENTAL != 0;
        if incremental != (base_id != [0; 16])
            || (!incremental && (base_generation != 0 || base_sequence != 0))
        {
            return Err(r.invalid("base", "the incremental flag and the base fields disagree"));
        }
        let (m, t, p) = (
            r.u32("Argon2id memory")?,
            r.u32("Argon2id iterations")?,
            r.u32("Argon2id lanes")?,
        );
        let kdf = KdfParams::for_key(m, t, p)
            .map_err(|e| r.invalid("Argon2id parameter bounds", e.to_string()))?;
        let salt = r.array("salt")?;
        let check = r.array("passphrase check")?;
        let chunk_size = r.u32("chunk size")?;
        if !CHUNK_RANGE.contains(&chunk_size) {
            return Err(r.invalid(
                "chunk size",
                format!(
                    "{chunk_size} is outside {}..={}",
                    CHUNK_RANGE.start(),
                    CHUNK_RANGE.end()
                ),
            ));
        }
        let nonce_prefix = r.array("nonce prefix")?;
        let len = usize::from(r.u16("comment length")?);
        if len > MAX_COMMENT {
            return Err(Error::TooLong {
                object: OBJECT,
                field: "comment",
                len: len as u64,
                max: MAX_COMMENT as u64,
            });
        }
        let comment = String::from_utf8(r.bytes("comment", len)?.to_vec())
            .map_err(|_| r.invalid("comment", "not UTF-8"))?;
        let used = r.position();
        Ok((
            BackupHeader {
                flags,
                vault_id,
                backup_id,
                created_ms,
                key_epoch,
                source_generation,
                source_sequence,
                lineage,
                base_id,
                base_generation,
                base_sequence,
                kdf,
                salt,
                check,
                chunk_size,
                nonce_prefix,
                comment,
            },
            used,
        ))
    }

    /// The length of the header that starts `bytes`, once enough of it is there to tell (the
    /// comment's length is the last fixed field): `None` until then.
    pub fn len_from_prefix(bytes: &[u8]) -> Option<usize> {
        const FIXED: usize = HEADER_FIXED_LEN - 2;
        let len = bytes.get(FIXED..FIXED + 2)?;
        Some(FIXED + 2 + usize::from(u16::from_le_bytes([*len.first()?, *len.get(1)?])))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    fn header() -> BackupHeader {
        BackupHeader {
            flags: FLAG_GZIP,
            vault_id: VaultId::from_bytes([1; 16]),
            backup_id: [2; 16],
            created_ms: 1_700_000_000_000,
            key_epoch: 1,
            source_generation: 42,
            source_sequence: 99,
            lineage: [0; 16],
            base_id: [0; 16],
            base_generation: 0,
            base_sequence: 0,
            kdf: KdfParams::for_key(64, 1, 1).unwrap(),
            salt: [3; 16],
            check: [4; 16],
            chunk_size: CHUNK_SIZE,
            nonce_prefix: [5; 19],
            comment: "nightly".into(),
        }
    }

    #[test]
    fn the_header_round_trips_and_refuses_what_it_does_not_know() {
        let h = header();
        let bytes = h.encode().unwrap();
        assert_eq!(BackupHeader::len_from_prefix(&bytes), Some(bytes.len()));
        assert_eq!(
            BackupHeader::decode(&bytes).unwrap(),
            (h.clone(), bytes.len())
        );
        for n in 0..bytes.len() {
            assert!(BackupHeader::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut flags = bytes.clone();
        flags[16] = 0x80;
        assert!(BackupHeader::decode(&flags).is_err());
        let mut newer = bytes.clone();
        newer[12] = 2;
        assert!(matches!(
            BackupHeader::decode(&newer),
            Err(Error::UnsupportedVersion { .. })
        ));
        let mut base = h.clone();
        base.base_id = [9; 16];
        assert!(
            BackupHeader::decode(&base.encode().unwrap()).is_err(),
            "a base without the flag"
        );
    }
}
