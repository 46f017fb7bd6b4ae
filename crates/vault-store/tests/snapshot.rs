//! Snapshots for backups: secrets come in one order across checkpoints and changes, an
//! incremental snapshot carries exactly what was written after its cursor (sequence numbers
//! are never used twice, even when compaction drops the highest-numbered record), and a cursor
//! from outside the vault's history is refused.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::sync::Arc;

use common::*;
use vault_store::{
    Algorithm, Error, KeySpec, MemoryBackend, RotateOptions, SetOptions, SnapshotCursor,
    SnapshotItem, Vault, VaultOptions,
};

/// What a snapshot gave: its cursor, the keys, and per secret (name, deleted, kept versions
/// with their carried flag, the carried versions' values).
#[derive(Debug, Default)]
struct Seen {
    cursor: Option<SnapshotCursor>,
    keys: Vec<String>,
    secrets: Vec<SeenSecret>,
    orders: Vec<(u16, String)>,
}

/// A secret as a snapshot gave it: name, deleted, kept versions with their carried flag, the
/// carried versions' values.
type SeenSecret = (String, bool, Vec<(u32, bool)>, Vec<(u32, Vec<u8>)>);

fn snap(v: &Vault, since: Option<&SnapshotCursor>) -> Result<Seen, Error> {
    let mut seen = Seen::default();
    v.snapshot(since, &mut |item| {
        match item {
            SnapshotItem::Start(c) => seen.cursor = Some(c),
            SnapshotItem::Settings { .. } => {}
            SnapshotItem::Key(k, _) => seen.keys.push(k.name),
            SnapshotItem::Secret {
                order,
                name,
                deleted,
                versions,
            } => {
                seen.orders.push((order, name.clone()));
                let versions = versions.iter().map(|k| (k.version, k.carried)).collect();
                seen.secrets.push((name, deleted, versions, Vec::new()));
            }
            SnapshotItem::Version(p) => {
                let last = seen.secrets.last_mut().unwrap();
                assert_eq!(p.name, last.0);
                last.3.push((p.version, p.value.expose_secret().to_vec()));
            }
        }
        Ok(())
    })?;
    Ok(seen)
}

fn set(v: &Vault, name: &str, value: &[u8]) {
    v.set(name, secret(value), SetOptions::default()).unwrap();
}

#[test]
fn secrets_come_in_key_order_across_a_checkpoint_and_later_changes() {
    let backend = Arc::new(MemoryBackend::new());
    let v = Vault::create(backend, &pass(), cheap_kdf(), VaultOptions::default()).unwrap();
    for i in 0..300 {
        set(&v, &format!("s{i}"), b"x");
    }
    v.checkpoint().unwrap();
    // Changed since the checkpoint: new names, new versions of old ones, a destroyed one.
    for i in (0..400).step_by(7) {
        set(&v, &format!("s{i}"), b"y");
    }
    v.destroy("s3").unwrap();
    let seen = snap(&v, None).unwrap();
    assert_eq!(seen.secrets.len(), 300 - 1 + (300..400).step_by(7).count());
    assert!(
        seen.orders.windows(2).all(|w| w[0] < w[1]),
        "(order, name) strictly increases"
    );
    // Every version is carried in a full snapshot.
    for (name, _, versions, values) in &seen.secrets {
        assert!(versions.iter().all(|(_, carried)| *carried), "{name}");
        assert_eq!(versions.len(), values.len(), "{name}");
    }
}

#[test]
fn an_incremental_snapshot_carries_what_was_written_after_its_cursor() {
    let backend = Arc::new(MemoryBackend::new());
    let v = Vault::create(backend, &pass(), cheap_kdf(), VaultOptions::default()).unwrap();
    set(&v, "same", b"1");
    set(&v, "grows", b"1");
    set(&v, "deleted-later", b"1");
    set(&v, "undeleted-later", b"1");
    v.delete("undeleted-later").unwrap();
    set(&v, "destroyed-later", b"1");
    set(&v, "recreated", b"old");
    v.create_key("k-same", KeySpec::new(Algorithm::HmacSha256))
        .unwrap();
    v.create_key("k-rotated", KeySpec::new(Algorithm::HmacSha256))
        .unwrap();
    let base = snap(&v, None).unwrap().cursor.unwrap();

    set(&v, "grows", b"2");
    v.delete("deleted-later").unwrap();
    v.undelete("undeleted-later").unwrap();
    v.destroy("destroyed-later").unwrap();
    v.destroy("recreated").unwrap();
    set(&v, "recreated", b"new");
    set(&v, "new", b"1");
    v.rotate_key("k-rotated", RotateOptions::default()).unwrap();

    let inc = snap(&v, Some(&base)).unwrap();
    assert_eq!(inc.keys, vec!["k-rotated".to_string()]);
    let by_name = |n: &str| inc.secrets.iter().find(|s| s.0 == n).cloned();
    assert!(by_name("destroyed-later").is_none());
    assert_eq!(by_name("same").unwrap().2, vec![(1, false)]);
    assert!(by_name("same").unwrap().3.is_empty());
    assert_eq!(by_name("grows").unwrap().2, vec![(1, false), (2, true)]);
    assert_eq!(by_name("grows").unwrap().3, vec![(2, b"2".to_vec())]);
    assert!(by_name("deleted-later").unwrap().1);
    assert!(!by_name("undeleted-later").unwrap().1);
    assert_eq!(by_name("recreated").unwrap().2, vec![(1, true)]);
    assert_eq!(by_name("recreated").unwrap().3, vec![(1, b"new".to_vec())]);
    assert_eq!(by_name("new").unwrap().3, vec![(1, b"1".to_vec())]);
    assert_eq!(inc.secrets.len(), 6);
}

#[test]
fn sequence_numbers_are_not_used_again_after_compaction_drops_the_highest() {
    let backend = Arc::new(MemoryBackend::new());
    let v = Vault::create(
        backend.clone(),
        &pass(),
        cheap_kdf(),
        VaultOptions::default(),
    )
    .unwrap();
    set(&v, "a", b"1");
    set(&v, "b", b"1");
    // The highest-numbered records (b's version, then the destroying record) are dead.
    v.destroy("b").unwrap();
    let base = snap(&v, None).unwrap().cursor.unwrap();
    v.compact().unwrap();
    drop(v);
    let v = Vault::open(backend, &pass(), VaultOptions::default()).unwrap();
    let after = snap(&v, None).unwrap().cursor.unwrap();
    assert!(after.sequence > base.sequence, "{after:?} vs {base:?}");
    // What is written next is carried by an incremental on the cursor taken before.
    set(&v, "c", b"new");
    let inc = snap(&v, Some(&base)).unwrap();
    let c = inc.secrets.iter().find(|s| s.0 == "c").unwrap();
    assert_eq!(c.3, vec![(1, b"new".to_vec())]);
    assert_eq!(v.get("a").unwrap().value.expose_secret(), b"1");
}

#[test]
fn a_cursor_outside_the_vaults_history_is_refused() {
    let backend = Arc::new(MemoryBackend::new());
    let v = Vault::create(
        backend.clone(),
        &pass(),
        cheap_kdf(),
        VaultOptions::default(),
    )
    .unwrap();
    set(&v, "a", b"1");
    let base = snap(&v, None).unwrap().cursor.unwrap();
    let other = Vault::create(
        Arc::new(MemoryBackend::new()),
        &pass(),
        cheap_kdf(),
        VaultOptions::default(),
    )
    .unwrap();
    let refused = |r: Result<Seen, Error>, what: &str| match r {
        Err(Error::Invalid { reason, .. }) => assert!(reason.contains(what), "{reason}"),
        other => panic!("{other:?}"),
    };
    refused(snap(&other, Some(&base)), "another vault");
    let mut newer = base;
    newer.sequence += 1;
    refused(snap(&v, Some(&newer)), "newer than the vault");
    let mut accepted = base;
    accepted.lineage[0] = 1;
    refused(snap(&v, Some(&accepted)), "accept-rollback");
    v.rotate_master_key(&pass(), false).unwrap();
    drop(v);
    let v = Vault::open(backend, &pass(), VaultOptions::default()).unwrap();
    refused(snap(&v, Some(&base)), "master key was rotated");
}
