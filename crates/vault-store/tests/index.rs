//! The index file (`index.<epoch>`), a checkpoint of the log: an open starts from it and reads
//! only the log after it; it is derived data, so a missing or stale one is replaced by reading
//! the log and the next write rewrites it; a damaged, foreign or forged one is an integrity error,
//! never a wrong answer.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use vault_store::{Batch, Error, SetOptions, Vault};

fn index_path(d: &TestDir) -> PathBuf {
    d.vault_dir().join("index.0")
}

/// Per secret: deleted, and every kept version's value.
type Contents = BTreeMap<String, (bool, Vec<Vec<u8>>)>;

/// Everything a handle shows: each secret's listing and every kept version's value.
fn contents(v: &Vault) -> vault_store::Result<Contents> {
    let mut out = BTreeMap::new();
    for s in v.list(true)? {
        let mut values = Vec::new();
        if !s.deleted {
            for h in v.history(&s.name)? {
                values.push(
                    v.get_version(&s.name, h.version)?
                        .value
                        .expose_secret()
                        .to_vec(),
                );
            }
        }
        out.insert(s.name, (s.deleted, values));
    }
    Ok(out)
}

/// A vault of `n` secrets in one commit, some changed, deleted and destroyed after.
fn filled(d: &TestDir, n: u32) -> Vault {
    let v = d.create();
    let mut b = Batch::new();
    for i in 0..n {
        b.set(
            &format!("s/{i}"),
            secret(format!("value {i}").as_bytes()),
            SetOptions::default(),
        );
    }
    v.commit(b).unwrap();
    v.set("s/1", secret(b"second"), SetOptions::default())
        .unwrap();
    v.delete("s/2").unwrap();
    v.destroy("s/3").unwrap();
    v
}

#[test]
fn a_writer_checkpoints_after_enough_records_and_an_open_starts_from_there() {
    let new = TestDir::new();
    new.create()
        .set("a", secret(b"1"), SetOptions::default())
        .unwrap();
    assert!(!index_path(&new).exists(), "a new vault has no index yet");
    let d = TestDir::new();
    let v2 = filled(&d, 9000);
    assert!(
        index_path(&d).exists(),
        "a commit of 9000 records is followed by a checkpoint"
    );
    let expected = contents(&v2).unwrap();
    assert_eq!(expected.len(), 8999);
    assert_eq!(contents(&d.open().unwrap()).unwrap(), expected);
    // What follows the checkpoint is read from the log; what precedes it is not read at open:
    // a changed byte in the first commit's frame goes unnoticed until that record is read or
    // the vault verified.
    v2.set("after", secret(b"x"), SetOptions::default())
        .unwrap();
    let log = log_path(&d.vault_dir());
    let mut bytes = std::fs::read(&log).unwrap();
    let second_frame = frame_starts(&bytes)[1];
    bytes[second_frame + 4 + 16 + 60] ^= 1;
    std::fs::write(&log, &bytes).unwrap();
    let fresh = d.open().unwrap();
    assert_eq!(fresh.get("after").unwrap().value.expose_secret(), b"x");
    assert!(matches!(contents(&fresh), Err(Error::Integrity { .. })));
    assert!(matches!(fresh.verify(), Err(Error::Integrity { .. })));
}

/// Few but large records also make a checkpoint (an open would otherwise decrypt them all).
#[test]
fn a_writer_checkpoints_after_enough_bytes() {
    let d = TestDir::new();
    let v = d.create();
    let mut b = Batch::new();
    for i in 0..5u8 {
        b.set(
            &format!("big{i}"),
            secret(&vec![i; 1 << 20]),
            SetOptions::default(),
        );
    }
    v.commit(b).unwrap();
    assert!(
        index_path(&d).exists(),
        "5 MiB of records are followed by a checkpoint"
    );
    assert_eq!(
        d.open().unwrap().get("big3").unwrap().value.expose_secret(),
        &vec![3u8; 1 << 20][..]
    );
}

#[test]
fn a_missing_or_stale_index_gives_the_same_answers_and_the_next_write_rewrites_it() {
    let d = TestDir::new();
    let v = filled(&d, 300);
    v.checkpoint().unwrap();
    let old_index = std::fs::read(index_path(&d)).unwrap();
    v.set("s/5", secret(b"changed after"), SetOptions::default())
        .unwrap();
    let expected = contents(&v).unwrap();
    // Removed: the log is read whole.
    std::fs::remove_file(index_path(&d)).unwrap();
    let fresh = d.open().unwrap();
    assert_eq!(contents(&fresh).unwrap(), expected);
    // An older checkpoint of the same log: used, with a longer tail after it.
    std::fs::write(index_path(&d), &old_index).unwrap();
    assert_eq!(contents(&d.open().unwrap()).unwrap(), expected);
    // A compaction rewrites the log and the index; the index of the old log put back is not
    // used (the new log does not hold its cursor).
    v.compact().unwrap();
    let after_compaction = std::fs::read(index_path(&d)).unwrap();
    assert_ne!(after_compaction, old_index);
    std::fs::write(index_path(&d), &old_index).unwrap();
    let reopened = d.open().unwrap();
    assert_eq!(contents(&reopened).unwrap(), expected);
    // ... and the next write makes a fresh one: a compaction, or a checkpoint.
    reopened.checkpoint().unwrap();
    assert_ne!(std::fs::read(index_path(&d)).unwrap(), old_index);
    assert_eq!(contents(&d.open().unwrap()).unwrap(), expected);
    // A removed index is rewritten by the next writer once enough of the log follows it.
    std::fs::remove_file(index_path(&d)).unwrap();
    let w = d.open().unwrap();
    let mut b = Batch::new();
    for i in 0..8200 {
        b.set(&format!("t/{i}"), secret(b"t"), SetOptions::default());
    }
    w.commit(b).unwrap();
    assert!(index_path(&d).exists());
}

/// Any byte of the index changed: an open, listing or read is refused as damage (naming the
/// index file), or (where the byte was not read) answers exactly as the log says; never a wrong
/// answer.
#[test]
fn a_damaged_or_forged_index_is_an_integrity_error_never_a_wrong_answer() {
    let d = TestDir::new();
    let v = filled(&d, 400);
    v.checkpoint().unwrap();
    let expected = contents(&v).unwrap();
    drop(v);
    let good = std::fs::read(index_path(&d)).unwrap();
    assert!(good.len() > 3 * 4096, "several blocks: {}", good.len());
    let mut refused = 0;
    for at in (0..good.len())
        .step_by(509)
        .chain([good.len() - 1, good.len() - 30])
    {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(index_path(&d), &bad).unwrap();
        match d.open().and_then(|h| contents(&h)) {
            Ok(c) => assert_eq!(c, expected, "byte {at}"),
            Err(Error::Integrity { object, .. }) => {
                assert!(object.contains("index"), "byte {at}: {object}");
                refused += 1;
            }
            Err(e) => panic!("byte {at}: {e:?}"),
        }
    }
    assert!(refused > 5, "{refused}");
    // Cut short, or emptied.
    for len in [0, 10, good.len() / 2, good.len() - 1] {
        std::fs::write(index_path(&d), &good[..len]).unwrap();
        let r = d.open();
        assert!(
            matches!(r, Err(Error::Integrity { .. })),
            "{len}: {:?}",
            r.err()
        );
    }
    // Another vault's index, in place of this one's.
    let other = TestDir::new();
    let o = filled(&other, 400);
    o.checkpoint().unwrap();
    std::fs::copy(index_path(&other), index_path(&d)).unwrap();
    let r = d.open();
    assert!(matches!(r, Err(Error::Integrity { .. })), "{:?}", r.err());
    // Removing it is the remedy the message gives, and loses nothing.
    std::fs::remove_file(index_path(&d)).unwrap();
    assert_eq!(contents(&d.open().unwrap()).unwrap(), expected);
    // A newer build's index format is not used (the log gives the same answers) and the next
    // checkpoint replaces it; version 0, which no build writes, is damage.
    let footer = good.len() - 60;
    let mut newer = good.clone();
    newer[footer + 8] = 9;
    std::fs::write(index_path(&d), &newer).unwrap();
    let h = d.open().unwrap();
    assert_eq!(contents(&h).unwrap(), expected);
    assert_eq!(
        h.verify().unwrap().index_secrets,
        None,
        "not used, and said so"
    );
    h.checkpoint().unwrap();
    assert_ne!(std::fs::read(index_path(&d)).unwrap(), newer);
    assert_eq!(contents(&d.open().unwrap()).unwrap(), expected);
    let mut zero = good.clone();
    zero[footer + 8] = 0;
    std::fs::write(index_path(&d), &zero).unwrap();
    let r = d.open();
    assert!(matches!(r, Err(Error::Integrity { .. })), "{:?}", r.err());
}

/// A pre-compaction index put back after the compaction describes no prefix of the new log: it
/// is not used, and verify says so rather than describing it as matching (hostile pass finding).
#[test]
fn an_index_from_before_a_compaction_is_not_reported_as_used() {
    let d = TestDir::new();
    let v = filled(&d, 300);
    v.checkpoint().unwrap();
    let before = std::fs::read(index_path(&d)).unwrap();
    v.set("s/1", secret(b"newer"), SetOptions::default())
        .unwrap();
    v.compact().unwrap();
    let expected = contents(&v).unwrap();
    drop(v);
    std::fs::write(index_path(&d), &before).unwrap();
    let h = d.open().unwrap();
    assert_eq!(contents(&h).unwrap(), expected);
    let report = h.verify().unwrap();
    assert_eq!(report.index_secrets, None, "{report:?}");
}

/// Reads, writes and compaction on a handle that started from a checkpoint agree with a handle
/// that read the log whole, through deletes, destroys, pruning and a rotation.
#[test]
fn a_handle_on_a_checkpoint_agrees_with_one_on_the_whole_log() {
    let d = TestDir::new();
    let v = filled(&d, 500);
    v.checkpoint().unwrap();
    let on_index = d.open().unwrap();
    on_index
        .set("s/7", secret(b"v2"), SetOptions::default())
        .unwrap();
    on_index.undelete("s/2").unwrap();
    on_index.destroy("s/8").unwrap();
    on_index.set_max_versions(1).unwrap();
    on_index.compact().unwrap();
    let expected = contents(&on_index).unwrap();
    assert_eq!(expected["s/7"].1, vec![b"v2".to_vec()]);
    assert!(!expected.contains_key("s/8"));
    let whole = TestDir::new();
    copy_dir(&d.vault_dir(), &whole.vault_dir());
    std::fs::remove_file(whole.vault_dir().join("index.0")).unwrap();
    let w = Vault::open(whole.backend(), &pass(), d.options()).unwrap();
    assert_eq!(contents(&w).unwrap(), expected);
    assert_eq!(contents(&d.open().unwrap()).unwrap(), expected);
    // verify reads the log whole; with the index it keeps the index's view for the part the
    // index covers, and both ways agree.
    let with = d.open().unwrap().verify().unwrap();
    let without = w.verify().unwrap();
    assert_eq!(with.index_secrets, Some(expected.len() as u64));
    assert_eq!(without.index_secrets, None);
    assert_eq!(
        (
            with.records,
            with.secrets,
            with.superseded_bytes,
            with.generation
        ),
        (
            without.records,
            without.secrets,
            without.superseded_bytes,
            without.generation
        )
    );
    on_index.rotate_master_key(&pass(), false).unwrap();
    assert!(d.vault_dir().join("index.1").exists());
    assert!(!d.vault_dir().join("index.0").exists());
    assert_eq!(contents(&d.open().unwrap()).unwrap(), expected);
    d.open().unwrap().verify().unwrap();
}

/// A handle whose log was replaced by another's compaction starts again from the new index, not
/// from the start of the new log: a byte changed in the part the index covers is not read until
/// a record there is.
#[test]
fn a_handle_behind_a_compaction_starts_again_from_the_new_index() {
    let d = TestDir::new();
    let a = filled(&d, 300);
    let expected = contents(&a).unwrap();
    let b = d.open().unwrap();
    b.compact().unwrap();
    let log = log_path(&d.vault_dir());
    let mut bytes = std::fs::read(&log).unwrap();
    let second_frame = frame_starts(&bytes)[1];
    bytes[second_frame + 4 + 16 + 60] ^= 1;
    std::fs::write(&log, &bytes).unwrap();
    assert_eq!(a.list(true).unwrap().len(), expected.len());
    assert_eq!(d.open().unwrap().list(true).unwrap().len(), expected.len());
    assert!(matches!(a.verify(), Err(Error::Integrity { .. })));
}
