//! The on-disk objects of `vault`: explicit, versioned byte layouts and strict parsers.
//!
//! Every layout here is specified byte for byte in `docs/FORMAT.md`; the code follows the
//! spec, not the other way round, and serialisation is hand-written so the format never depends on
//! Rust struct definitions. Parsers bound every length before slicing or allocating, reject
//! trailing bytes, refuse files written by a newer version with [`Error::UnsupportedVersion`], and
//! never panic: every failure is an [`Error`] that names the object and the field.
//!
//! This crate does no I/O beyond bytes in and bytes out.
//!
//! ```
//! use vault_crypto::{Key256, kdf::KdfParams, SecretBytes};
//! use vault_format::{KeySlot, RecordEnvelope, RecordKind, VaultHeader, VaultId};
//!
//! # fn main() -> Result<(), vault_format::Error> {
//! let master = Key256::generate().map_err(|source| vault_format::Error::Crypto { object: "example", source })?;
//! let id = VaultId::random().map_err(|source| vault_format::Error::Crypto { object: "example", source })?;
//! let cheap = KdfParams::for_key(64, 1, 1).expect("valid example parameters");
//!
//! // A header with one passphrase slot round-trips through its encoding and unlocks.
//! let slot = KeySlot::create(0, b"passphrase", cheap, &master, &id, 0)?;
//! let header = VaultHeader::new(id, 0, vec![slot], &master)?;
//! let decoded = VaultHeader::decode(&header.encode())?;
//! let (unlocked, slot_id) = decoded.unlock(&SecretBytes::from_slice(b"passphrase"))?;
//! assert_eq!((unlocked == master, slot_id), (true, 0));
//!
//! // Records are sealed under a subkey and bound to the vault id, kind and sequence.
//! let key = vault_crypto::derive::RecordKey::derive(&master, id.as_bytes());
//! let env = RecordEnvelope::seal(&key, &id, RecordKind::SecretVersion, 1, b"payload")?;
//! let back = RecordEnvelope::decode(&env.encode())?;
//! assert_eq!(back.open(&key, &id)?.expose_secret(), b"payload");
//! # Ok(())
//! # }
//! ```

pub mod audit;
pub mod backup;
mod envelope;
mod error;
pub mod export;
mod header;
pub mod index;
pub mod keys;
pub mod log;
pub mod member_slot;
mod names;
pub mod passphrase_slot;
pub mod payload;
mod preamble;
mod reader;
pub mod rollback;
pub mod token;
mod wire;

use core::fmt;

pub use envelope::{
    ENVELOPE_FIXED_LEN, ENVELOPE_VERSION, MAX_CIPHERTEXT_LEN, MAX_ENVELOPE_LEN, MAX_PLAINTEXT_LEN,
    RecordEnvelope, RecordKind,
};
pub use error::{Error, Result};
pub use header::{
    HEADER_FIXED_LEN, KEY_SLOT_LEN, KeySlot, MAX_HEADER_LEN, MAX_KEY_SLOTS, MAX_SLOT_BODY_LEN,
    SLOT_ENTRY_HEADER_LEN, SlotBody, VaultHeader,
};
pub use member_slot::{MemberSlot, MemberState, NewMember, check_member_name};
pub use passphrase_slot::{FixedPassphraseSlot, PassphraseSlot};
pub use preamble::{MAGIC, PREAMBLE_LEN};

/// A vault's random 128-bit identifier. Public; bound into every record's associated data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VaultId([u8; 16]);

impl VaultId {
    /// A fresh random id.
    ///
    /// # Errors
    /// If the OS RNG fails.
    pub fn random() -> core::result::Result<Self, vault_crypto::Error> {
        vault_crypto::rng::bytes().map(Self)
    }

    /// The id from its bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lower-case hex, as used in file names and messages.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        self.0.iter().fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl fmt::Debug for VaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VaultId({})", self.to_hex())
    }
}

impl fmt::Display for VaultId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Fuzzing entry points: decode, and when decoding succeeds, check that re-encoding reproduces
/// the input exactly. Not part of the stable API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Fuzz the header parser.
    pub fn header(data: &[u8]) {
        if let Ok(h) = VaultHeader::decode(data) {
            assert_eq!(
                h.encode(),
                data,
                "header re-encoding differs from its input"
            );
        }
    }

    /// Fuzz the log's tail rule: the first two bytes give the file offset (in pages plus bytes),
    /// the rest is the tail. It never panics; only an empty tail is clean; a tail longer than one
    /// frame is never torn; an incomplete frame is always torn.
    pub fn tail(data: &[u8]) {
        use crate::log::{FRAME_PREFIX_LEN, MAX_TORN_TAIL_LEN, Tail, classify_tail};
        let Some((at, tail)) = data.split_first_chunk::<2>() else {
            return;
        };
        let offset = u64::from(at[0]) * crate::log::PAGE_LEN + u64::from(at[1]);
        let verdict = classify_tail(tail, offset);
        assert_eq!(verdict == Tail::Clean, tail.is_empty());
        if tail.len() as u64 > MAX_TORN_TAIL_LEN {
            assert_eq!(verdict, Tail::Damaged);
        }
        let incomplete = tail.first_chunk::<FRAME_PREFIX_LEN>().is_none_or(|p| {
            let announced = u32::from_le_bytes(*p) as usize;
            announced == 0 || FRAME_PREFIX_LEN + announced > tail.len()
        });
        if !tail.is_empty() && incomplete {
            assert_eq!(verdict, Tail::Torn);
        }
    }

    /// Fuzz the log frame parser (and the log file header).
    pub fn frame(data: &[u8]) {
        if let Ok(f) = crate::log::Frame::decode(data) {
            assert_eq!(
                f.encode().ok().as_deref(),
                Some(data),
                "frame re-encoding differs from its input"
            );
        }
        if let Ok(epoch) = crate::log::decode_log_header(data) {
            assert_eq!(crate::log::encode_log_header(epoch), data);
        }
    }

    /// Fuzz the audit trail's parsers: an entry (first byte 0: what decodes re-encodes), or the
    /// frames of a file read forwards and its last frame read backwards (1: both must agree on
    /// the last whole frame when the frames end cleanly), or a whole file checked (2: a main
    /// file under a fixed key, 3: a pending file). Nothing may panic.
    pub fn audit(data: &[u8]) {
        use crate::audit::*;
        let Some((which, rest)) = data.split_first() else {
            return;
        };
        match which % 4 {
            0 => {
                if let Ok(e) = AuditEntry::decode(rest) {
                    assert_eq!(
                        e.encode().ok().as_deref(),
                        Some(rest),
                        "audit entry re-encoding differs from its input"
                    );
                    if let Ok(key) = vault_crypto::Key256::from_slice(&[7; 32]) {
                        let _ = AuditKeys::derive(&key, &VaultId::from_bytes([0; 16]))
                            .open_name(&e.target);
                    }
                }
                // The details the trail reads back: a policy, a retention note.
                if let Ok(s) = core::str::from_utf8(rest) {
                    if let Ok(p) = AuditPolicy::from_detail(s) {
                        assert_eq!(p.to_detail(), s, "audit policy re-encoding differs");
                    }
                    if let Ok(n) = RetentionNote::from_detail(s) {
                        assert_eq!(n.to_detail(), s, "retention note re-encoding differs");
                    }
                }
            }
            1 => {
                let (frames, tail) = frames(rest);
                if tail == Tail::Clean
                    && let Some(last) = frames.last()
                {
                    assert_eq!(last_frame(rest).as_ref(), Some(last));
                }
            }
            n => {
                let key = vault_crypto::Key256::from_slice(&[7; 32]);
                let Ok(key) = key else { return };
                let vault_id = VaultId::from_bytes(
                    rest.get(16..32)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0; 16]),
                );
                let keys = AuditKeys::derive(&key, &vault_id);
                let _ = check_file(rest, n == 3, &vault_id, Some(&keys), Some((3, [0; 32])));
            }
        }
    }

    /// Fuzz the record payload parsers: the first byte picks the record kind.
    #[allow(clippy::expect_used)] // a failure here is the finding the fuzzer reports
    pub fn payload(data: &[u8]) {
        let Some((kind, rest)) = data.split_first() else {
            return;
        };
        let Some(kind) = RecordKind::from_byte(*kind) else {
            return;
        };
        if let Ok(p) = crate::payload::Payload::decode(kind, rest) {
            // ok: a fuzz entry point; a payload that decodes but cannot re-encode is the finding.
            let encoded = p.encode().expect("a decoded payload must re-encode");
            assert_eq!(
                &encoded[..],
                rest,
                "payload re-encoding differs from its input"
            );
        }
    }

    /// Fuzz the managed-key token parsers: the first byte picks the binary header and body (0),
    /// the text form (1), the streaming text reader (2) or opening a one-shot token under a fixed
    /// key (3). Nothing may panic; what decodes must re-encode to the same bytes.
    pub fn token(data: &[u8]) {
        use crate::token::*;
        use std::io::Read;
        let Some((which, rest)) = data.split_first() else {
            return;
        };
        match which % 4 {
            0 => {
                if let Ok((h, body)) = TokenHeader::decode(rest) {
                    assert_eq!(
                        rest.get(..TOKEN_HEADER_LEN),
                        Some(&h.encode()[..]),
                        "token header re-encoding differs"
                    );
                    match h.form {
                        TokenForm::Sealed => {
                            let _ = Sealed::decode(body);
                        }
                        TokenForm::Stream => {
                            if let Ok((sh, _)) = StreamHeader::decode(body) {
                                assert_eq!(body.get(..STREAM_HEADER_LEN), Some(&sh.encode()[..]));
                            }
                        }
                        _ => {}
                    }
                    let text = to_text(rest).unwrap_or_default();
                    assert_eq!(
                        from_text(&text).ok().as_deref(),
                        Some(rest),
                        "text round trip"
                    );
                }
            }
            1 => {
                if let Ok(text) = core::str::from_utf8(rest)
                    && let Ok(bytes) = from_text(text)
                {
                    let again = to_text(&bytes).unwrap_or_default();
                    assert_eq!(from_text(&again).ok(), Some(bytes), "text round trip");
                }
            }
            2 => {
                let mut out = Vec::new();
                let _ = TextReader::new(rest).take(1 << 20).read_to_end(&mut out);
            }
            _ => {
                if let Ok(key) = vault_crypto::Key256::from_slice(&[0x40; 32]) {
                    let _ = open(&key, rest, b"");
                }
            }
        }
    }

    /// Fuzz the export container's parsers: the first byte picks the binary header (0), the
    /// decrypted contents (1) or the JSON encoding (2). Nothing may panic; what decodes
    /// re-encodes to the same bytes.
    #[allow(clippy::expect_used)] // a failure here is the finding the fuzzer reports
    pub fn export(data: &[u8]) {
        use crate::export::*;
        let Some((which, rest)) = data.split_first() else {
            return;
        };
        match which % 3 {
            0 => {
                if let Ok((h, ct)) = ExportHeader::decode(rest) {
                    let mut again = h.encode();
                    again.extend_from_slice(ct);
                    assert_eq!(again, rest, "export header re-encoding differs");
                }
            }
            1 => {
                if let Ok(c) = ExportContents::decode(rest) {
                    // ok: a fuzz entry point; contents that decode but cannot re-encode are the finding.
                    let again = c.encode().expect("decoded contents must re-encode");
                    assert_eq!(&again[..], rest, "export contents re-encoding differs");
                }
            }
            _ => {
                if let Ok(text) = core::str::from_utf8(rest)
                    && let Ok(bin) = from_json(text)
                {
                    let json = to_json(&bin).unwrap_or_default();
                    assert_eq!(from_json(&json).ok(), Some(bin), "JSON round trip");
                }
            }
        }
    }

    /// Fuzz the rollback record parser.
    pub fn rollback(data: &[u8]) {
        if let Ok((id, [Some(a), Some(b)])) = crate::rollback::decode_rollback_file(data) {
            assert_eq!(
                crate::rollback::encode_rollback_file(&id, [&a, &b]),
                data,
                "rollback record re-encoding differs from its input"
            );
        }
    }

    /// Fuzz the index file's parsers: the first byte picks footer (0), leaf (1), interior (2),
    /// version-1 header (3) or version-2 header (4); whatever decodes must re-encode to exactly the input.
    pub fn index(data: &[u8]) {
        use crate::index::*;
        let Some((which, rest)) = data.split_first() else {
            return;
        };
        match which {
            0 => {
                if let Ok(f) = Footer::decode(rest) {
                    assert_eq!(f.encode(), rest, "footer re-encoding differs");
                }
            }
            1 => {
                if let Ok(entries) = decode_leaf(rest) {
                    let mut encoded = Vec::new();
                    for e in &entries {
                        e.encode_into(&mut encoded);
                    }
                    let n = entries.len() as u32;
                    assert_eq!(
                        leaf_plaintext(n, &encoded),
                        rest,
                        "leaf re-encoding differs"
                    );
                }
            }
            2 => {
                if let Ok(children) = decode_interior(rest) {
                    assert_eq!(
                        interior_plaintext(&children),
                        rest,
                        "interior re-encoding differs"
                    );
                }
            }
            3 | 4 => {
                let version = if *which == 3 { 1 } else { 2 };
                if let Ok(h) = IndexHeader::decode(rest, version) {
                    assert_eq!(h.version(), version, "index header version differs");
                    assert_eq!(
                        h.encode().ok().as_deref(),
                        Some(rest),
                        "index header re-encoding differs"
                    );
                }
            }
            _ => {}
        }
    }

    /// Fuzz the envelope parser.
    pub fn envelope(data: &[u8]) {
        if let Ok(e) = RecordEnvelope::decode(data) {
            assert_eq!(
                e.encode(),
                data,
                "envelope re-encoding differs from its input"
            );
        }
    }
}
