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
    // A torn last append is cut by the next writer, and the chain goes on.
    std::fs::write(&path, &good[..good.len() - 7]).unwrap();
    v.set("after", secret(b"y"), SetOptions::default()).unwrap();
    let trail = v.audit_trail().unwrap();
    assert_eq!(trail.problem, None, "{trail:?}");
    assert_eq!(trail.entries.len(), 5);
}
