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
    let (mut header, keys) = vault_backup::create(b"fuzz", kdf, [1; 16], 2, "seed").unwrap();
    header.flags = 0;
    let mut payload = PayloadWriter::new(Vec::new()).unwrap();
    payload
        .write(&Item::Secret {
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
    let mut whole = vec![2u8];
    whole.extend_from_slice(&file);
    vec![
        ("seed-header", head),
        ("seed-payload", items),
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
    assert!(count >= 3, "the backup corpus is empty");
    // The seeds are valid, so the fuzzer starts from inputs that get deep.
    let whole = std::fs::read(dir.join("seed-container")).unwrap();
    let limits = vault_backup::Limits {
        max_memory_kib: 64,
        max_cost: 64,
    };
    let mut r = vault_backup::open(&whole[1..], b"fuzz", &limits).unwrap();
    let mut payload = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut payload).unwrap();
    let mut items = vault_backup::payload::PayloadReader::new(&payload[..]).unwrap();
    let mut n = 0;
    while items.next_item().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 2);
}
