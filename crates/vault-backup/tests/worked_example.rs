//! FORMAT.md §7.11 rebuilt byte for byte: a backup container from fixed ids, salt, nonce prefix
//! and passphrase, with an uncompressed payload of one secret version; read back it gives that
//! version.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::io::{Read, Write};

use vault_backup::container::Sealer;
use vault_backup::payload::{Item, PayloadReader, PayloadWriter};
use vault_crypto::kdf::KdfParams;
use vault_format::VaultId;
use vault_format::backup::{BackupHeader, BackupKeys};

fn seq(start: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| start.wrapping_add(i as u8)).collect()
}

fn dump(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let hex: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}\n", i * 16, hex.join(" "))
        })
        .collect()
}

fn spec_example(name: &str) -> Vec<u8> {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
            .unwrap();
    let open = format!("```hex example={name}\n");
    let Some(at) = spec.find(&open) else {
        return Vec::new();
    };
    let start = at + open.len();
    let end = start + spec[start..].find("```").unwrap();
    let hex: String = spec[start..end]
        .lines()
        .map(|l| l.split_once(": ").map_or(l, |(_, rest)| rest))
        .collect::<Vec<_>>()
        .join(" ")
        .replace(' ', "");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn example() -> Vec<u8> {
    let kdf = KdfParams::for_key(64, 1, 1).unwrap();
    let salt: [u8; 16] = seq(0xa0, 16).try_into().unwrap();
    let backup_id: [u8; 16] = seq(0x10, 16).try_into().unwrap();
    let (keys, check) =
        BackupKeys::derive(b"correct horse battery staple", &kdf, &salt, &backup_id).unwrap();
    let header = BackupHeader {
        flags: 0,
        vault_id: VaultId::from_bytes(seq(0x00, 16).try_into().unwrap()),
        backup_id,
        created_ms: 1_700_000_000_000,
        key_epoch: 1,
        source_generation: 2,
        source_sequence: 2,
        lineage: [0; 16],
        base_id: [0; 16],
        base_generation: 0,
        base_sequence: 0,
        kdf,
        salt,
        check,
        chunk_size: 4096,
        nonce_prefix: seq(0x30, 19).try_into().unwrap(),
        comment: "example".into(),
    };
    let mut payload = PayloadWriter::new(Vec::new()).unwrap();
    payload
        .write(&Item::Secret {
            order: 0xc0c1,
            name: "db/password".into(),
            deleted: false,
            versions: 1,
        })
        .unwrap();
    payload
        .write(&Item::Version(
            vault_format::payload::SecretVersionPayload {
                name: "db/password".into(),
                version: 1,
                created_ms: 1_700_000_000_000,
                tags: Vec::new(),
                value: vault_crypto::SecretBytes::from_slice(b"hunter2"),
            },
        ))
        .unwrap();
    let (payload, _) = payload.finish().unwrap();
    let mut w = Sealer::new(Vec::new(), &header, &keys).unwrap();
    w.write_all(&payload).unwrap();
    w.finish().unwrap()
}

#[test]
fn the_backup_example_matches_the_spec_byte_for_byte() {
    let built = example();
    let spec = spec_example("backup");
    if spec.is_empty() {
        panic!(
            "FORMAT.md has no backup example; this build makes:\n{}",
            dump(&built)
        );
    }
    assert_eq!(dump(&built), dump(&spec));
    let limits = vault_backup::Limits::default();
    let mut r = vault_backup::open(&spec[..], b"correct horse battery staple", &limits).unwrap();
    let mut payload = Vec::new();
    r.read_to_end(&mut payload).unwrap();
    let mut items = PayloadReader::new(&payload[..], false).unwrap();
    assert!(matches!(
        items.next_item().unwrap(),
        Some(Item::Secret { .. })
    ));
    match items.next_item().unwrap() {
        Some(Item::Version(v)) => assert_eq!(v.value.expose_secret(), b"hunter2"),
        other => panic!("{other:?}"),
    }
    assert!(items.next_item().unwrap().is_none());
}
