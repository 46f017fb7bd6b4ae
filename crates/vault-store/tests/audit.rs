//! The audit trail of a vault on files: operations append one entry each (names hashed, never a
//! value), a failed unlock is recorded without a key and folded in at the next unlock (flagged),
//! the chain checks, and a changed, removed or cut entry is found where it is.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use common::*;
use vault_store::{AuditOp, AuditTarget, Error, SetOptions, Vault};

/// Removes the anchor kept beside the rollback record.
fn remove_anchor(d: &TestDir) {
    for e in std::fs::read_dir(d.state_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".audit-head") {
            std::fs::remove_file(p).unwrap();
        }
    }
}

fn ops(v: &Vault) -> Vec<(AuditOp, u8)> {
    v.audit_trail()
        .unwrap()
        .entries
        .iter()
        .map(|e| (e.op, e.outcome))
        .collect()
}

#[test]
fn operations_are_recorded_once_each_with_names_hashed() {
    let d = TestDir::new();
    let v = d.create();
    v.set("db/password", secret(b"hunter2"), SetOptions::default())
        .unwrap();
    v.get("db/password").unwrap();
    assert!(matches!(v.get("missing"), Err(Error::NotFound { .. })));
    v.list(false).unwrap();
    v.delete("db/password").unwrap();
    let trail = v.audit_trail().unwrap();
    assert_eq!(trail.problem, None, "{trail:?}");
    assert_eq!(
        ops(&v),
        vec![
            (AuditOp::Write, 0),
            (AuditOp::Read, 0),
            (AuditOp::Read, 4),
            (AuditOp::List, 0),
            (AuditOp::Delete, 0),
        ]
    );
    let hash = v.audit_name_hash("db/password", false);
    assert_eq!(trail.entries[0].target, AuditTarget::Hashed(hash));
    assert_eq!(trail.entries[0].detail, "v1");
    assert_eq!(trail.entries[0].pid, std::process::id());
    // Neither the name nor the value is in the file.
    let bytes = std::fs::read(d.vault_dir().join("audit.0")).unwrap();
    for needle in [&b"db/password"[..], b"hunter2"] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }
}

#[test]
fn a_failed_unlock_is_folded_in_at_the_next_unlock() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    drop(v);
    let wrong = vault_store::SecretBytes::from_slice(b"not the passphrase");
    for _ in 0..2 {
        assert!(matches!(
            Vault::open(d.backend(), &wrong, d.options()),
            Err(Error::WrongPassphrase)
        ));
    }
    assert!(d.vault_dir().join("audit.pending").exists());
    let v = d.open().unwrap();
    let trail = v.audit_trail().unwrap();
    assert_eq!(trail.problem, None, "{trail:?}");
    assert_eq!(trail.pending, 0);
    assert!(!d.vault_dir().join("audit.pending").exists());
    let got: Vec<(AuditOp, u8, u8)> = trail
        .entries
        .iter()
        .map(|e| (e.op, e.outcome, e.flags))
        .collect();
    assert_eq!(
        got,
        vec![
            (AuditOp::Write, 0, 0),
            (AuditOp::FailedUnlock, 3, 1),
            (AuditOp::FailedUnlock, 3, 1),
            (AuditOp::Maintenance, 0, 0),
            (AuditOp::Unlock, 0, 0),
        ]
    );
}

#[test]
fn a_changed_removed_or_cut_entry_is_found() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..5 {
        v.set(&format!("s{i}"), secret(b"x"), SetOptions::default())
            .unwrap();
    }
    let path = d.vault_dir().join("audit.0");
    let good = std::fs::read(&path).unwrap();
    assert_eq!(v.audit_trail().unwrap().entries.len(), 5);
    // A byte of the third entry changed.
    let third = 72 + 2 * (good.len() - 72) / 5 + 20;
    let mut bad = good.clone();
    bad[third] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let p = v.audit_trail().unwrap().problem.unwrap();
    assert_eq!(p.0, 3, "{p:?}");
    // The second entry removed.
    let frame = (good.len() - 72) / 5;
    let mut removed = good[..72 + frame].to_vec();
    removed.extend_from_slice(&good[72 + 2 * frame..]);
    std::fs::write(&path, &removed).unwrap();
    assert_eq!(v.audit_trail().unwrap().problem.unwrap().0, 2);
    // A torn last append is cut by the next writer, and the chain goes on (a process that
    // dies while appending has not moved the anchor on: a torn entry the anchor vouches for
    // is reported as lost, by the tests of the anchor).
    std::fs::write(&path, &good[..good.len() - 7]).unwrap();
    remove_anchor(&d);
    v.set("after", secret(b"y"), SetOptions::default()).unwrap();
    let trail = v.audit_trail().unwrap();
    assert_eq!(trail.problem, None, "{trail:?}");
    assert_eq!(trail.entries.len(), 5);
}

/// Every public operation appends exactly one entry, of its own kind, with its outcome.
#[test]
fn every_operation_appends_one_entry_of_its_kind() {
    use vault_store::{
        Algorithm, ExportSelection, ImportOptions, KdfParams, KeyOps, KeySpec, KeyState,
        RotateOptions, UseOptions,
    };
    let d = TestDir::new();
    let v = d.create();
    v.set("s", secret(b"1"), SetOptions::default()).unwrap();
    v.create_key("enc", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    v.create_key("sig", KeySpec::new(Algorithm::Ed25519))
        .unwrap();
    let token = v.encrypt("enc", b"x", b"").unwrap();
    let sig = v.sign("sig", b"m").unwrap();
    let kdf = KdfParams::for_key(64, 1, 1).unwrap();
    let export = v
        .export(&ExportSelection::keys(&["enc".to_string()]), b"p", kdf)
        .unwrap();
    type Step<'a> = (AuditOp, Box<dyn Fn(&Vault) -> bool + 'a>);
    let steps: Vec<Step<'_>> = vec![
        (AuditOp::Read, Box::new(|v| v.get("s").is_ok())),
        (AuditOp::Read, Box::new(|v| v.get_version("s", 1).is_ok())),
        (AuditOp::List, Box::new(|v| v.list(true).is_ok())),
        (AuditOp::List, Box::new(|v| v.history("s").is_ok())),
        (
            AuditOp::Write,
            Box::new(|v| v.set("s", secret(b"2"), SetOptions::default()).is_ok()),
        ),
        (AuditOp::Delete, Box::new(|v| v.delete("s").is_ok())),
        (AuditOp::Undelete, Box::new(|v| v.undelete("s").is_ok())),
        (
            AuditOp::Maintenance,
            Box::new(|v| v.set_max_versions(5).is_ok()),
        ),
        (
            AuditOp::KeyCreate,
            Box::new(|v| {
                v.create_key("k2", KeySpec::new(Algorithm::HmacSha256))
                    .is_ok()
            }),
        ),
        (
            AuditOp::KeyRotate,
            Box::new(|v| v.rotate_key("enc", RotateOptions::default()).is_ok()),
        ),
        (
            AuditOp::KeyChange,
            Box::new(|v| {
                let _ = v.promote_key_version("enc", 1);
                true
            }),
        ),
        (
            AuditOp::KeyChange,
            Box::new(|v| {
                let _ = v.set_key_version_state("enc", 1, KeyState::Active);
                true
            }),
        ),
        (
            AuditOp::KeyChange,
            Box::new(|v| v.set_key_expiry("enc", None).is_ok()),
        ),
        (
            AuditOp::KeyChange,
            Box::new(|v| v.set_key_rotation("enc", None).is_ok()),
        ),
        (
            AuditOp::KeyChange,
            Box::new(|v| {
                let _ = v.set_key_policy("k2", KeyOps::KNOWN, true);
                true
            }),
        ),
        (
            AuditOp::KeyEncrypt,
            Box::new(|v| v.encrypt("enc", b"y", b"").is_ok()),
        ),
        (
            AuditOp::KeyDecrypt,
            Box::new(|v| v.decrypt("enc", &token, b"", UseOptions::default()).is_ok()),
        ),
        (
            AuditOp::KeyRewrap,
            Box::new(|v| v.rewrap("enc", &token, b"", UseOptions::default()).is_ok()),
        ),
        (
            AuditOp::KeyDataKey,
            Box::new(|v| v.datakey("enc", b"").is_ok()),
        ),
        (AuditOp::KeySign, Box::new(|v| v.sign("sig", b"m").is_ok())),
        (
            AuditOp::KeyVerify,
            Box::new(|v| {
                v.verify_signature("sig", b"m", &sig, UseOptions::default())
                    .is_ok()
            }),
        ),
        (AuditOp::List, Box::new(|v| v.key("enc").is_ok())),
        (AuditOp::List, Box::new(|v| v.keys().is_ok())),
        (AuditOp::List, Box::new(|v| v.key_versions("enc").is_ok())),
        (
            AuditOp::KeyChange,
            Box::new(|v| v.destroy_key_version("k2", 1).is_err()),
        ),
        (
            AuditOp::Export,
            Box::new(|v| {
                v.export(&ExportSelection::keys(&["sig".to_string()]), b"p", kdf)
                    .is_ok()
            }),
        ),
        (
            AuditOp::Import,
            Box::new(|v| {
                v.import_export(
                    &export.file,
                    b"p",
                    &ImportOptions {
                        rename: Some("copy".into()),
                        ..ImportOptions::default()
                    },
                )
                .is_ok()
            }),
        ),
        (
            AuditOp::Backup,
            Box::new(|v| v.snapshot(None, &mut |_| Ok(())).is_ok()),
        ),
        (AuditOp::Verify, Box::new(|v| v.verify().is_ok())),
        (AuditOp::Maintenance, Box::new(|v| v.compact().is_ok())),
        (AuditOp::Maintenance, Box::new(|v| v.checkpoint().is_ok())),
        (
            AuditOp::PassphraseChange,
            Box::new(|v| {
                v.add_passphrase(&pass(), &secret(b"second pass"), cheap_kdf())
                    .is_ok()
            }),
        ),
        (AuditOp::Destroy, Box::new(|v| v.destroy("s").is_ok())),
        (AuditOp::Read, Box::new(|v| v.get("s").is_err())),
    ];
    for (want, step) in &steps {
        let before = v.audit_trail().unwrap().entries.len();
        assert!(step(&v), "{want:?}: the step did not do what it should");
        let trail = v.audit_trail().unwrap();
        assert_eq!(trail.problem, None, "{want:?}");
        let new: Vec<_> = trail.entries[before..]
            .iter()
            .map(|e| (e.op, e.outcome))
            .collect();
        assert_eq!(new.len(), 1, "{want:?}: {new:?}");
        assert_eq!(new[0].0, *want, "{new:?}");
    }
    // A master-key rotation starts the next epoch's file, linked to the last one's hash.
    v.rotate_master_key(&pass(), true).unwrap();
    drop(v);
    let v = d.open().unwrap();
    let trail = v.audit_trail().unwrap();
    assert_eq!(trail.problem, None, "{trail:?}");
    assert_eq!(trail.files.len(), 2, "{:?}", trail.files);
    let ops: Vec<AuditOp> = trail.entries.iter().rev().take(2).map(|e| e.op).collect();
    assert_eq!(ops, [AuditOp::Unlock, AuditOp::MasterKeyRotation]);
    let indexes: Vec<u64> = trail.entries.iter().map(|e| e.index).collect();
    assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1), "{indexes:?}");
    // The old epoch's file changed after the rotation sealed it: found.
    let old = d.vault_dir().join("audit.0");
    let mut bytes = std::fs::read(&old).unwrap();
    let n = bytes.len() - 50;
    bytes[n] ^= 1;
    std::fs::write(&old, &bytes).unwrap();
    assert!(v.audit_trail().unwrap().problem.is_some());
}

/// A fold interrupted after it appended, before it removed the pending file, is not appended
/// again by the next unlock.
#[test]
fn an_interrupted_fold_is_not_folded_twice() {
    let d = TestDir::new();
    drop(d.create());
    let wrong = vault_store::SecretBytes::from_slice(b"not the passphrase");
    assert!(Vault::open(d.backend(), &wrong, d.options()).is_err());
    let pending = d.vault_dir().join("audit.pending");
    let saved = std::fs::read(&pending).unwrap();
    drop(d.open().unwrap());
    assert!(!pending.exists());
    // As if the process had died after the fold was written and synced, before it removed the
    // pending file: the chain ends with the fold's entry (the unlock after it cut off).
    let chain = d.vault_dir().join("audit.0");
    let bytes = std::fs::read(&chain).unwrap();
    let head = vault_format::audit::FILE_HEADER_LEN;
    let last = vault_format::audit::last_frame(&bytes[head..]).unwrap();
    std::fs::write(&chain, &bytes[..head + last.offset]).unwrap();
    std::fs::write(&pending, &saved).unwrap();
    // Nor had it moved the anchor on (it is written after the whole append).
    remove_anchor(&d);
    let v = d.open().unwrap();
    let trail = v.audit_trail().unwrap();
    assert_eq!(trail.problem, None, "{trail:?}");
    let failed = trail
        .entries
        .iter()
        .filter(|e| e.op == AuditOp::FailedUnlock)
        .count();
    assert_eq!(failed, 1);
    assert!(!pending.exists());
}

/// The anchor kept beside the rollback record finds entries cut off the trail's end (whole
/// entries: what the chain alone cannot see); without it (another machine, a lost state
/// directory) such a cut is not seen.
#[test]
fn entries_cut_off_the_end_are_found_through_the_anchor() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..4 {
        v.set(&format!("s{i}"), secret(b"x"), SetOptions::default())
            .unwrap();
    }
    assert_eq!(v.audit_trail().unwrap().problem, None);
    let chain = d.vault_dir().join("audit.0");
    let bytes = std::fs::read(&chain).unwrap();
    let head = vault_format::audit::FILE_HEADER_LEN;
    let last = vault_format::audit::last_frame(&bytes[head..]).unwrap();
    std::fs::write(&chain, &bytes[..head + last.offset]).unwrap();
    let p = v.audit_trail().unwrap().problem.unwrap();
    assert!(p.1.contains("removed from its end"), "{p:?}");
    // A changed anchor is reported as such (it can no longer vouch for the end).
    let anchors: Vec<_> = std::fs::read_dir(d.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".audit-head"))
        .collect();
    assert_eq!(anchors.len(), 1, "{anchors:?}");
    let mut a = std::fs::read(&anchors[0]).unwrap();
    a[5] ^= 1;
    std::fs::write(&anchors[0], &a).unwrap();
    let p = v.audit_trail().unwrap().problem.unwrap();
    assert!(p.1.contains("was changed"), "{p:?}");
}

/// Hostile-pass findings on the pending file: anyone can write a keyless chain, so only failed
/// unlocks come in through it (forged entries of other kinds are recorded as a problem, not as
/// what they claim); a pending file that is not this vault's is moved aside and the trail goes
/// on; both make verify report a problem.
#[test]
fn forged_or_foreign_pending_files_do_not_enter_or_stop_the_trail() {
    use vault_format::audit::{FileHeader, LINK_LEN, frame, pending_link};
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let id = v.vault_id();
    drop(v);
    // A forged pending file: a "destroy ok" entry, linked correctly (no key is needed).
    let header = FileHeader {
        pending: true,
        vault_id: id,
        first_index: 1,
        previous: [0; LINK_LEN],
    };
    let forged = vault_store::AuditEntry {
        index: 1,
        time_ms: 1,
        op: AuditOp::Destroy,
        outcome: 0,
        flags: 0,
        generation: 9,
        pid: 1,
        uid: 0,
        host: "forged".into(),
        target: AuditTarget::None,
        detail: "forged destroy".into(),
    };
    let bytes = forged.encode().unwrap();
    let link = pending_link(&id, &[0; LINK_LEN], &bytes);
    let mut file = header.encode();
    file.extend_from_slice(&frame(&bytes, &link).unwrap());
    std::fs::write(d.vault_dir().join("audit.pending"), &file).unwrap();
    let v = d.open().unwrap();
    let trail = v.audit_trail().unwrap();
    assert!(
        trail.entries.iter().all(|e| e.op != AuditOp::Destroy),
        "{trail:?}"
    );
    let p = trail.problem.expect("a forged pending entry is a problem");
    assert!(p.1.contains("only failed unlocks"), "{p:?}");
    drop(v);
    // Another vault's pending file: moved aside, and the trail goes on.
    let other = TestDir::new();
    drop(other.create());
    assert!(
        Vault::open(
            other.backend(),
            &vault_store::SecretBytes::from_slice(b"wrong"),
            other.options()
        )
        .is_err()
    );
    std::fs::copy(
        other.vault_dir().join("audit.pending"),
        d.vault_dir().join("audit.pending"),
    )
    .unwrap();
    let v = d.open().unwrap();
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    let trail = v.audit_trail().unwrap();
    assert_eq!(trail.entries.last().unwrap().op, AuditOp::Write);
    assert!(
        trail
            .entries
            .iter()
            .any(|e| e.detail.contains("moved aside"))
    );
    assert!(!d.vault_dir().join("audit.pending").exists());
}

/// Hostile-pass findings on the chain files: a link to nothing at `audit.0`, and an earlier key
/// epoch's file removed after a rotation, are problems for verify (not "ok, 0 entries"); a
/// zero-filled tail (what a crash can leave) is cut and the trail goes on; a huge sparse file is
/// never read whole by an append.
#[test]
fn missing_dangling_zero_filled_and_huge_chain_files() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    // Zeros after the last entry.
    let chain = d.vault_dir().join("audit.0");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&chain)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 4096]).unwrap();
    drop(f);
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    let trail = v.audit_trail().unwrap();
    assert_eq!(trail.problem, None, "{trail:?}");
    assert_eq!(trail.entries.last().unwrap().op, AuditOp::Write);
    // A huge sparse file: an append reads its tail only (it is damage: refused, with a warning),
    // and the operation itself works.
    let saved = std::fs::read(&chain).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&chain)
        .unwrap();
    f.set_len(8 << 30).unwrap();
    drop(f);
    v.set("c", secret(b"3"), SetOptions::default()).unwrap();
    assert!(v.audit_trail().unwrap().problem.is_some());
    std::fs::write(&chain, &saved).unwrap();
    // A link to nothing.
    std::fs::remove_file(&chain).unwrap();
    std::os::unix::fs::symlink(d.tmp.path().join("nowhere"), &chain).unwrap();
    v.get("a").unwrap();
    let p = v
        .audit_trail()
        .unwrap()
        .problem
        .expect("a dangling audit.0 is a problem");
    assert!(p.1.contains("cannot be read"), "{p:?}");
    assert!(
        !d.tmp.path().join("nowhere").exists(),
        "nothing made where it points"
    );
    std::fs::remove_file(&chain).unwrap();
    std::fs::write(&chain, &saved).unwrap();
    // The first epoch's file removed after a rotation.
    v.rotate_master_key(&pass(), true).unwrap();
    drop(v);
    let v = d.open().unwrap();
    assert_eq!(v.audit_trail().unwrap().problem, None);
    std::fs::remove_file(&chain).unwrap();
    let p = v
        .audit_trail()
        .unwrap()
        .problem
        .expect("a missing earlier file is a problem");
    assert!(p.1.contains("missing"), "{p:?}");
}

/// Fail-closed auditing: with the trail unwritable, a change is refused before it is made and a
/// read's result is not handed back; without fail-closed, both go ahead (with a warning). When
/// the trail can be written, a change's entry comes first and a failed change adds a second.
#[test]
fn fail_closed_refuses_what_cannot_be_recorded() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    drop(v);
    let strict = || {
        Vault::open(
            d.backend(),
            &pass(),
            vault_store::VaultOptions {
                audit_fail_closed: true,
                ..d.options()
            },
        )
    };
    // Writable: a failed change is recorded twice (before, and its failure).
    let v = strict().unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    assert!(v.undelete("a").is_err());
    let trail = v.audit_trail().unwrap();
    let last: Vec<(AuditOp, u8)> = trail
        .entries
        .iter()
        .rev()
        .take(2)
        .map(|e| (e.op, e.outcome))
        .collect();
    assert_eq!(last, [(AuditOp::Undelete, 2), (AuditOp::Undelete, 0)]);
    drop(v);
    // Unwritable (a directory where the chain file is): refused.
    let chain = d.vault_dir().join("audit.0");
    let saved = std::fs::read(&chain).unwrap();
    let v = d.open().unwrap();
    std::fs::remove_file(&chain).unwrap();
    std::fs::create_dir(&chain).unwrap();
    assert!(
        matches!(strict(), Err(Error::AuditUnwritten(_))),
        "the unlock itself"
    );
    // A handle opened before: its change and its read are refused.
    let held = {
        std::fs::remove_dir(&chain).unwrap();
        std::fs::write(&chain, &saved).unwrap();
        let h = strict().unwrap();
        std::fs::remove_file(&chain).unwrap();
        std::fs::create_dir(&chain).unwrap();
        h
    };
    assert!(matches!(
        held.set("a", secret(b"3"), SetOptions::default()),
        Err(Error::AuditUnwritten(_))
    ));
    assert!(matches!(held.get("a"), Err(Error::AuditUnwritten(_))));
    // Not fail-closed: both go ahead.
    assert_eq!(
        v.get("a").unwrap().value.expose_secret(),
        b"2",
        "the refused set changed nothing"
    );
    v.set("a", secret(b"4"), SetOptions::default()).unwrap();
    std::fs::remove_dir(&chain).unwrap();
}
