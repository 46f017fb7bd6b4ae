//! Replays every file of every fuzz corpus (fuzz/corpus/<target>/*) through its target's entry
//! point on stable Rust, so inputs the fuzzer found interesting stay regression tests in CI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    println!("{target}: replayed {count} corpus files");
    assert!(count > 0, "the {target} corpus is empty");
    count
}

#[test]
fn header_corpus() {
    replay("header", vault_format::fuzzing::header);
}

#[test]
fn index_corpus() {
    replay("index", vault_format::fuzzing::index);
}

#[test]
fn envelope_corpus() {
    replay("envelope", vault_format::fuzzing::envelope);
}

#[test]
fn tail_corpus() {
    replay("tail", vault_format::fuzzing::tail);
}

#[test]
fn frame_corpus() {
    replay("frame", vault_format::fuzzing::frame);
}

#[test]
fn payload_corpus() {
    replay("payload", vault_format::fuzzing::payload);
}

#[test]
fn rollback_corpus() {
    replay("rollback", vault_format::fuzzing::rollback);
}

#[test]
fn export_corpus() {
    replay("export", vault_format::fuzzing::export);
}

#[test]
fn token_corpus() {
    replay("token", vault_format::fuzzing::token);
}

/// Valid audit objects under the target's fixed key (written when missing): an entry, a file of
/// two frames (main and pending), and the frames alone.
fn audit_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use vault_format::audit::*;
    let vault_id = vault_format::VaultId::from_bytes([0; 16]);
    let key = vault_crypto::Key256::from_slice(&[7; 32]).unwrap();
    let keys = AuditKeys::derive(&key, &vault_id);
    let entry = |index: u64| AuditEntry {
        index,
        time_ms: 1_700_000_000_000,
        op: AuditOp::Read,
        outcome: 0,
        flags: 0,
        generation: 3,
        pid: 7,
        uid: 1000,
        host: "host".into(),
        target: Target::Hashed(keys.name_hash(1, "db/password")),
        detail: "v1".into(),
    };
    let file = |pending: bool| {
        let header = FileHeader {
            pending,
            vault_id,
            first_index: 1,
            previous: [0; LINK_LEN],
        };
        let mut out = header.encode();
        let mut previous = [0u8; LINK_LEN];
        for i in 1..=2 {
            let bytes = entry(i).encode().unwrap();
            let link = if pending {
                pending_link(&vault_id, &previous, &bytes)
            } else {
                keys.link(&previous, &bytes)
            };
            out.extend_from_slice(&frame(&bytes, &link).unwrap());
            previous = link;
        }
        out
    };
    let with = |b: u8, rest: &[u8]| [&[b][..], rest].concat();
    let main = file(false);
    let sealed = AuditEntry {
        target: keys.seal_name(1, "db/password").unwrap(),
        ..entry(1)
    };
    let policy = AuditPolicy {
        names_clear: true,
        max_bytes: 64 << 20,
        max_age_days: 90,
    };
    let note = RetentionNote {
        first_kept: 5001,
        link: [0xab; LINK_LEN],
        files: 3,
    };
    vec![
        ("entry", with(0, &entry(1).encode().unwrap())),
        ("entry-sealed-name", with(0, &sealed.encode().unwrap())),
        ("policy", with(0, policy.to_detail().as_bytes())),
        ("retention-note", with(0, note.to_detail().as_bytes())),
        ("frames", with(1, &main[FILE_HEADER_LEN..])),
        ("main-file", with(2, &main)),
        ("pending-file", with(3, &file(true))),
    ]
}

#[test]
fn audit_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/audit");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in audit_seeds() {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(&path, bytes).unwrap();
        }
    }
    assert!(replay("audit", vault_format::fuzzing::audit) >= 7);
    // The seeds are sound: the whole file checks clean under the target's key.
    let main = std::fs::read(dir.join("main-file")).unwrap();
    let vault_id = vault_format::VaultId::from_bytes([0; 16]);
    let key = vault_crypto::Key256::from_slice(&[7; 32]).unwrap();
    let keys = vault_format::audit::AuditKeys::derive(&key, &vault_id);
    let c =
        vault_format::audit::check_file(&main[1..], false, &vault_id, Some(&keys), None).unwrap();
    assert_eq!((c.chain.verified, c.problem), (2, None));
}

#[test]
fn every_fuzz_target_has_a_replay() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    let replayed = [
        "header.rs",
        "envelope.rs",
        "frame.rs",
        "payload.rs",
        "rollback.rs",
        "tail.rs",
        "index.rs",
        "token.rs",
        "export.rs",
        "audit.rs",
        // Replayed by vault-backup's own tests/fuzz_corpus.rs (it depends on this crate).
        "backup.rs",
    ];
    for entry in std::fs::read_dir(targets).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            replayed.contains(&name.as_str()),
            "fuzz target {name} has no corpus replay test"
        );
    }
}

/// The hand-written seeds are valid objects, so the fuzzer starts from inputs that get deep.
#[test]
fn hand_written_seeds_decode() {
    use vault_format::RecordKind;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let read = |t: &str, n: &str| std::fs::read(corpus.join(t).join(n)).unwrap();
    for n in ["snapshot-two-records", "commit-one-record", "empty-commit"] {
        vault_format::log::Frame::decode(&read("frame", n)).unwrap();
    }
    assert_eq!(
        vault_format::log::decode_log_header(&read("frame", "log-header")).unwrap(),
        3
    );
    for n in [
        "secret-version",
        "secret-state",
        "key-version",
        "settings",
        "event",
        "key",
    ] {
        let b = read("payload", n);
        let kind = RecordKind::from_byte(b[0]).unwrap();
        vault_format::payload::Payload::decode(kind, &b[1..])
            .unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    let (_, slots) =
        vault_format::rollback::decode_rollback_file(&read("rollback", "two-slots")).unwrap();
    assert!(slots.iter().all(Option::is_some));
    use vault_format::index::*;
    Footer::decode(&read("index", "footer")[1..]).unwrap();
    assert_eq!(
        decode_leaf(&read("index", "leaf-one")[1..]).unwrap().len(),
        1
    );
    assert_eq!(
        decode_leaf(&read("index", "leaf-two")[1..]).unwrap().len(),
        2
    );
    assert_eq!(
        decode_interior(&read("index", "interior-two")[1..])
            .unwrap()
            .len(),
        2
    );
    let full = IndexHeader::decode(&read("index", "header-full")[1..], 1).unwrap();
    assert_eq!((full.events.len(), full.keys.len()), (1, 1));
    IndexHeader::decode(&read("index", "header-empty")[1..], 1).unwrap();
    let text = String::from_utf8(read("token", "text-sealed")[1..].to_vec()).unwrap();
    vault_format::token::from_text(&text).unwrap();
    let c = vault_format::export::ExportContents::decode(&read("export", "contents")[1..]).unwrap();
    assert_eq!(c.keys.len(), 1);
    vault_format::export::ExportHeader::decode(&read("export", "binary")[1..]).unwrap();
    let json = String::from_utf8(read("export", "json")[1..].to_vec()).unwrap();
    vault_format::export::from_json(&json).unwrap();
    for n in ["sealed", "stream", "mac"] {
        vault_format::token::TokenHeader::decode(&read("token", n)[1..]).unwrap();
    }
}
