//! Replays every file of the backup fuzz corpus (fuzz/corpus/backup/*) through the target's
//! entry point, so inputs the fuzzer found interesting stay regression tests in CI; and writes
//! the hand-made seeds (a real container and its parts) when they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::io::Write;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/backup")
}

/// A small real backup container under the passphrase `fuzz` (the target's), with a payload of
/// one secret version, and its header alone and its payload alone.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use vault_backup::payload::{Item, PayloadWriter};
    use vault_crypto::kdf::KdfParams;
    let kdf = KdfParams::for_key(8, 1, 1).unwrap();
    let source = vault_store::SnapshotCursor {
        vault_id: [1; 16],
        key_epoch: 1,
        generation: 2,
        sequence: 2,
        lineage: [0; 16],
    };
    let (mut header, keys) = vault_backup::create(b"fuzz", kdf, &source, None, "seed").unwrap();
    header.flags = 0;
    let mut payload = PayloadWriter::new(Vec::new()).unwrap();
    payload
        .write(&Item::Secret {
            order: 7,
            name: "a".into(),
            deleted: false,
            versions: 1,
        })
        .unwrap();
    payload
        .write(&Item::Version(
            vault_format::payload::SecretVersionPayload {
                name: "a".into(),
                version: 1,
                created_ms: 0,
                tags: Vec::new(),
                value: vault_crypto::SecretBytes::from_slice(b"v"),
            },
        ))
        .unwrap();
    let (payload, _) = payload.finish().unwrap();
    let mut w = vault_backup::container::Sealer::new(Vec::new(), &header, &keys).unwrap();
    w.write_all(&payload).unwrap();
    let file = w.finish().unwrap();
    let mut head = vec![0u8];
    head.extend_from_slice(&header.encode().unwrap());
    let mut items = vec![1u8];
    items.extend_from_slice(&payload);
    // An incremental payload: one secret with two kept versions, the second carried.
    let mut inc = PayloadWriter::new(Vec::new()).unwrap();
    inc.write(&Item::Changed {
        order: 7,
        name: "a".into(),
        deleted: true,
        kept: vec![
            vault_backup::payload::Kept {
                version: 1,
                check: Some(7),
            },
            vault_backup::payload::Kept {
                version: 2,
                check: None,
            },
        ],
    })
    .unwrap();
    inc.write(&Item::Version(
        vault_format::payload::SecretVersionPayload {
            name: "a".into(),
            version: 2,
            created_ms: 0,
            tags: Vec::new(),
            value: vault_crypto::SecretBytes::from_slice(b"w"),
        },
    ))
    .unwrap();
    let (inc, _) = inc.finish().unwrap();
    let mut inc_items = vec![3u8];
    inc_items.extend_from_slice(&inc);
    let mut whole = vec![2u8];
    whole.extend_from_slice(&file);
    vec![
        ("seed-header", head),
        ("seed-payload", items),
        ("seed-payload-incremental", inc_items),
        ("seed-container", whole),
    ]
}

#[test]
fn backup_corpus() {
    let dir = corpus();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds() {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            vault_backup::fuzzing::backup(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count >= 4, "the backup corpus is empty");
    // The seeds are valid, so the fuzzer starts from inputs that get deep.
    let whole = std::fs::read(dir.join("seed-container")).unwrap();
    let limits = vault_backup::Limits {
        max_memory_kib: 64,
        max_cost: 64,
    };
    let mut r = vault_backup::open(&whole[1..], b"fuzz", &limits).unwrap();
    let mut payload = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut payload).unwrap();
    let mut items = vault_backup::payload::PayloadReader::new(&payload[..], false).unwrap();
    let mut n = 0;
    while items.next_item().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 2);
    let inc = std::fs::read(dir.join("seed-payload-incremental")).unwrap();
    let mut items = vault_backup::payload::PayloadReader::new(&inc[1..], true).unwrap();
    let mut n = 0;
    while items.next_item().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 2);
}
