//! The fixed inputs of docs/FORMAT.md's worked examples, shared by the tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use vault_crypto::aead::Nonce;
use vault_crypto::kdf::{self, KdfParams};
use vault_crypto::{Key256, derive};
use vault_format::{KeySlot, RecordEnvelope, RecordKind, VaultHeader, VaultId};

pub const PASSPHRASE: &[u8] = b"correct horse battery staple";

pub fn seq(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

pub fn vault_id() -> VaultId {
    VaultId::from_bytes(seq(0x00, 16).try_into().unwrap())
}

pub fn master() -> Key256 {
    Key256::from_slice(&seq(0x80, 32)).unwrap()
}

pub fn example_kdf() -> KdfParams {
    KdfParams::for_key(64, 1, 1).unwrap()
}

pub fn salt() -> [u8; 16] {
    seq(0xa0, 16).try_into().unwrap()
}

pub fn example_header() -> VaultHeader {
    let kek = kdf::derive_key(PASSPHRASE, &salt(), &example_kdf()).unwrap();
    let nonce = Nonce::from_slice(&seq(0xb0, 24)).unwrap();
    let slot = KeySlot::create_with(&vault_format::FixedPassphraseSlot {
        id: 0,
        kek: &kek,
        kdf: example_kdf(),
        salt: salt(),
        master: &master(),
        vault_id: &vault_id(),
        key_epoch: 0,
        nonce: Some(nonce),
    })
    .unwrap();
    VaultHeader::new(vault_id(), 0, vec![slot], &master()).unwrap()
}

pub fn record_key() -> derive::RecordKey {
    derive::RecordKey::derive(&master(), vault_id().as_bytes())
}

pub fn example_envelope() -> RecordEnvelope {
    let nonce = Nonce::from_slice(&seq(0xc8, 24)).unwrap();
    RecordEnvelope::seal_with_nonce(
        &record_key(),
        &vault_id(),
        RecordKind::SecretVersion,
        1,
        &nonce,
        b"hello, vault",
    )
    .unwrap()
}

/// Formats bytes as the FORMAT.md hex dumps: 16 bytes a line, offset first.
pub fn dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let hex: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}\n", i * 16, hex.join(" "))
        })
        .collect()
}

/// The text in the ```text example=NAME block of docs/FORMAT.md.
pub fn spec_text(name: &str) -> String {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
            .unwrap();
    let open = format!("```text example={name}\n");
    let start = spec
        .find(&open)
        .unwrap_or_else(|| panic!("FORMAT.md has no example {name}"))
        + open.len();
    let end = start + spec[start..].find("```").unwrap();
    spec[start..end].trim().to_string()
}

/// Extracts the hex dump in the ```hex example=NAME block of docs/FORMAT.md.
pub fn spec_example(name: &str) -> Vec<u8> {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
            .unwrap();
    let open = format!("```hex example={name}\n");
    let start = spec
        .find(&open)
        .unwrap_or_else(|| panic!("FORMAT.md has no example {name}"))
        + open.len();
    let end = start + spec[start..].find("```").unwrap();
    let hex: String = spec[start..end]
        .lines()
        .map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest))
        .collect::<Vec<_>>()
        .join("")
        .split_whitespace()
        .collect();
    hex::decode(hex).unwrap()
}

/// Any structurally valid envelope (the ciphertext is random bytes).
pub fn arb_envelope() -> impl proptest::strategy::Strategy<Value = RecordEnvelope> {
    use proptest::prelude::*;
    (
        proptest::sample::select(RecordKind::ALL.to_vec()),
        any::<u64>(),
        any::<[u8; 24]>(),
        proptest::collection::vec(any::<u8>(), 16..512),
    )
        .prop_map(|(kind, sequence, nonce, ciphertext)| RecordEnvelope {
            kind,
            sequence,
            nonce: Nonce::from_bytes(nonce),
            ciphertext,
        })
}

/// The record-MAC subkey of the example master key.
pub fn mac_key() -> derive::ChainMacKey {
    derive::ChainMacKey::derive(&master(), vault_id().as_bytes())
}

/// A second record for the example log: kind 1, sequence 2, nonce `e0 … f7`.
pub fn example_envelope_2() -> RecordEnvelope {
    let nonce = Nonce::from_slice(&seq(0xe0, 24)).unwrap();
    RecordEnvelope::seal_with_nonce(
        &record_key(),
        &vault_id(),
        RecordKind::SecretVersion,
        2,
        &nonce,
        b"hello again",
    )
    .unwrap()
}

/// The example log: header for epoch 0, a snapshot (generation 1) holding the example envelope,
/// then a commit (generation 2) holding the second one, chained to the snapshot.
pub fn example_log() -> Vec<u8> {
    use vault_format::log::{Frame, FrameType, encode_log_header};
    let snapshot = Frame::seal(
        &mac_key(),
        &vault_id(),
        0,
        &[0; 32],
        FrameType::Snapshot,
        1,
        vec![example_envelope()],
    );
    let commit = Frame::seal(
        &mac_key(),
        &vault_id(),
        0,
        &snapshot.mac,
        FrameType::Commit,
        2,
        vec![example_envelope_2()],
    );
    let mut out = encode_log_header(0);
    for f in [snapshot, commit] {
        let body = f.encode().unwrap();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

/// The example secret-version payload (the plaintext of a real record).
pub fn example_payload() -> vault_format::payload::Payload {
    use vault_format::payload::{Payload, SecretVersionPayload, Tag};
    Payload::SecretVersion(SecretVersionPayload {
        name: "db/password".into(),
        version: 1,
        created_ms: 1_700_000_000_000,
        tags: vec![Tag {
            key: "env".into(),
            value: "prod".into(),
        }],
        value: vault_crypto::SecretBytes::from_slice(b"hunter2"),
    })
}

/// The example rollback record: as first written (both slots equal), counter 1, epoch 0,
/// generation 2.
pub fn example_rollback() -> Vec<u8> {
    use vault_format::rollback::{RollbackSlot, encode_rollback_file};
    let key = derive::RollbackKey::derive(&master(), vault_id().as_bytes());
    let slot = RollbackSlot::seal(&key, &vault_id(), 1, 0, 2);
    encode_rollback_file(&vault_id(), [&slot, &slot])
}

/// The index file of §7.6: one secret, `db/password` (version 1, 7 bytes, created
/// 1 700 000 000 000 ms, no tags) at the place of the second record of §7.3's log; the leaf at
/// offset 0 (nonce `10 11 … 27`), the header after it (nonce `30 31 … 47`), checkpoint id
/// `50 51 … 5f`, and a cursor at the end of that log (offset 263; check = chain MAC `60 61 … 7f`).
pub fn example_index() -> Vec<u8> {
    use vault_format::index::*;
    let index_key = derive::IndexKey::derive(&master(), vault_id().as_bytes());
    let names = derive::IndexNameKey::derive(&master(), vault_id().as_bytes());
    let place = Place {
        sequence: 2,
        kind: RecordKind::SecretVersion,
        frame_end: 263,
        back: 99,
        len: 67,
    };
    let entry = SecretEntry {
        key: name_key(&names, "db/password"),
        name: "db/password".into(),
        latest: 1,
        deleted: None,
        versions: vec![VersionEntry {
            version: 1,
            created_ms: 1_700_000_000_000,
            size: 7,
            tags: Vec::new(),
            place,
        }],
    };
    let mut footer = Footer {
        version: 1,
        vault_id: vault_id(),
        key_epoch: 0,
        checkpoint_id: seq(0x50, 16).try_into().unwrap(),
        header_offset: 0,
        header_len: 0,
    };
    let mut encoded = Vec::new();
    entry.encode_into(&mut encoded);
    let leaf = footer
        .seal_block_with_nonce(
            &index_key,
            &Nonce::from_slice(&seq(0x10, 24)).unwrap(),
            0,
            BlockKind::Leaf,
            &leaf_plaintext(1, &encoded),
        )
        .unwrap();
    let check: [u8; 32] = seq(0x60, 32).try_into().unwrap();
    let header = IndexHeader {
        cursor: (0, 263, check),
        generation: 2,
        last_mac: check,
        max_seq: 2,
        total_bytes: 134,
        dead_bytes: 0,
        secrets: 1,
        root: Some((
            Child {
                first_key: entry.key,
                offset: 0,
                len: leaf.len() as u32,
            },
            1,
        )),
        settings: None,
        events: Vec::new(),
        header_confirmed: None,
        header_pending: None,
        keys: Vec::new(),
        key_settings: Vec::new(),
    };
    let header_block = footer
        .seal_block_with_nonce(
            &index_key,
            &Nonce::from_slice(&seq(0x30, 24)).unwrap(),
            leaf.len() as u64,
            BlockKind::Header,
            &header.encode().unwrap(),
        )
        .unwrap();
    footer.header_offset = leaf.len() as u64;
    footer.header_len = header_block.len() as u32;
    let mut out = leaf;
    out.extend_from_slice(&header_block);
    out.extend_from_slice(&footer.encode());
    out
}

/// The managed key of the key examples (§7.7–7.9): material `40 41 … 5f`, key id `01 … 08`.
pub fn key_material() -> Key256 {
    Key256::from_slice(&seq(0x40, 32)).unwrap()
}

pub fn key_header(form: vault_format::token::TokenForm) -> vault_format::token::TokenHeader {
    vault_format::token::TokenHeader {
        form,
        key_id: seq(0x01, 8).try_into().unwrap(),
        version: 1,
    }
}

/// §7.7: the settings record of key "payments", version 2 primary, version 1 decrypt-only.
pub fn example_key_payload() -> vault_format::payload::Payload {
    use vault_format::keys::{KeyOps, VersionState};
    use vault_format::payload::{KeyPayload, KeyState, Payload};
    let t = 1_700_000_000_000;
    Payload::Key(KeyPayload {
        name: "payments".into(),
        key_id: seq(0x01, 8).try_into().unwrap(),
        algorithm: "xchacha20poly1305".into(),
        primary: 2,
        min_decrypt_version: 1,
        min_encrypt_version: 0,
        expires_ms: None,
        rotate_every_ms: Some(30 * 86_400_000),
        allowed: KeyOps::ENCRYPT.with(KeyOps::DECRYPT).with(KeyOps::REWRAP),
        created_ms: t,
        changed_ms: t + 1000,
        versions: vec![
            VersionState {
                version: 1,
                state: KeyState::Deactivated,
                changed_ms: t + 1000,
            },
            VersionState {
                version: 2,
                state: KeyState::Active,
                changed_ms: t + 1000,
            },
        ],
    })
}

/// §7.8: `attack at dawn` with associated data `order 7`, nonce `60 61 … 77`.
pub fn example_token() -> Vec<u8> {
    use vault_format::token::{TokenForm, seal_with_nonce};
    seal_with_nonce(
        &key_material(),
        &key_header(TokenForm::Sealed),
        &seq(0x60, 24).try_into().unwrap(),
        b"order 7",
        b"attack at dawn",
    )
    .unwrap()
}

/// §7.9: `hello stream` as a stream of chunk size 1024 (one, last, chunk), nonce prefix
/// `78 79 … 8a`, no associated data.
pub fn example_stream() -> Vec<u8> {
    use vault_format::token::{StreamHeader, TokenForm};
    let h = key_header(TokenForm::Stream);
    let sh = StreamHeader {
        chunk_size: 1024,
        nonce_prefix: seq(0x78, 19).try_into().unwrap(),
    };
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&sh.encode());
    let mut chunk = b"hello stream".to_vec();
    vault_crypto::stream::Sealer::new(&key_material(), &sh.nonce_prefix)
        .seal_last(&h.aad(&sh.encode(), b""), &mut chunk)
        .unwrap();
    out.extend_from_slice(&chunk);
    out
}

/// §7.9: an HMAC-SHA256 signature token of `hello` by the same material as an hmac-sha256 key.
pub fn example_mac_token() -> Vec<u8> {
    use vault_format::token::TokenForm;
    let mut out = key_header(TokenForm::Mac).encode().to_vec();
    out.extend_from_slice(
        vault_crypto::mac::hmac_sha256(key_material().expose_secret(), &[b"hello"]).as_bytes(),
    );
    out
}

/// §7.10: an export of one hmac-sha256 key (material `40 … 5f`, version 1 active), passphrase
/// `correct horse battery staple`, Argon2id m = 64 KiB, t = 1, p = 1, salt `a0 … af`, nonce
/// `b0 … c7`, exported at 1 700 000 000 000 ms.
pub fn example_export_contents() -> vault_format::export::ExportContents {
    use vault_format::export::{ExportContents, ExportedKey};
    use vault_format::keys::{KeyOps, VersionState};
    use vault_format::payload::{KeyPayload, KeyState, KeyVersionPayload};
    let t = 1_700_000_000_000;
    ExportContents {
        exported_ms: t,
        keys: vec![ExportedKey {
            key: KeyPayload {
                name: "mac".into(),
                key_id: seq(0x01, 8).try_into().unwrap(),
                algorithm: "hmac-sha256".into(),
                primary: 1,
                min_decrypt_version: 0,
                min_encrypt_version: 0,
                expires_ms: None,
                rotate_every_ms: None,
                allowed: KeyOps::SIGN.with(KeyOps::VERIFY).with(KeyOps::EXPORT),
                created_ms: t,
                changed_ms: t,
                versions: vec![VersionState {
                    version: 1,
                    state: KeyState::Active,
                    changed_ms: t,
                }],
            },
            versions: vec![KeyVersionPayload {
                name: "mac".into(),
                version: 1,
                algorithm: "hmac-sha256".into(),
                state: KeyState::Active,
                created_ms: t,
                state_changed_ms: t,
                material: vault_crypto::SecretBytes::from_slice(&seq(0x40, 32)),
            }],
        }],
        secrets: Vec::new(),
    }
}

pub fn example_export() -> Vec<u8> {
    vault_format::export::seal_with(
        &example_export_contents(),
        PASSPHRASE,
        example_kdf(),
        seq(0xa0, 16).try_into().unwrap(),
        seq(0xb0, 24).try_into().unwrap(),
    )
    .unwrap()
}
