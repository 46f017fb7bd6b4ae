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
    let slot = KeySlot::create_with(
        0,
        &kek,
        example_kdf(),
        salt(),
        &master(),
        &vault_id(),
        0,
        Some(nonce),
    )
    .unwrap();
    VaultHeader::new(vault_id(), 0, vec![slot], &master()).unwrap()
}

pub fn record_key() -> Key256 {
    derive::subkey(
        &master(),
        derive::Purpose::RecordEncryption,
        vault_id().as_bytes(),
    )
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
