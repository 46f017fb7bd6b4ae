//! Crash safety by fault injection: every write, fsync, directory fsync, rename and create that
//! an operation performs is failed in turn (k = 1, 2, ... until the operation no longer reaches
//! k), once (transient) and from then on (persistent), with EIO and with ENOSPC. After each
//! failure the "device" heals and the vault is reopened with real I/O: it must open, hold exactly
//! the last acknowledged state, and have no leftover temp files.
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
use std::path::Path;
use std::sync::Arc;

use common::*;
use vault_crypto::SecretBytes;
use vault_store::{Error, FileBackend, FileBackendOptions, SetOptions, Vault, VaultOptions};

type Snapshot = BTreeMap<String, (bool, Vec<(u32, Vec<u8>)>)>;

fn snapshot(v: &Vault) -> Snapshot {
    let mut out = BTreeMap::new();
    for s in v.list(true).unwrap() {
        let versions = v
            .history(&s.name)
            .unwrap()
            .into_iter()
            .map(|h| {
                let value = if s.deleted {
                    Vec::new()
                } else {
                    v.get_version(&s.name, h.version)
                        .unwrap()
                        .value
                        .expose_secret()
                        .to_vec()
                };
                (h.version, value)
            })
            .collect();
        out.insert(s.name, (s.deleted, versions));
    }
    out
}

// The operations come from the shared list in vault-testkit, so a new one is crash-tested here
// without touching this file.
use vault_testkit::MutatingOp as Scenario;
use vault_testkit::ops::NEW_PASS;

fn run(s: Scenario, v: &Vault) -> vault_store::Result<()> {
    s.run(v)
}

/// Which passphrases open the vault after the scenario, depending on whether it took effect.
fn passes_after(s: Scenario, succeeded: bool) -> Vec<&'static [u8]> {
    s.passphrases_after(succeeded)
}

fn copy_tree(from: &Path, to: &Path) {
    for sub in ["vault", "state/rollback"] {
        if from.join(sub).exists() {
            copy_dir(&from.join(sub), &to.join(sub));
        }
    }
}

fn open_real(root: &Path, passphrase: &[u8]) -> vault_store::Result<Vault> {
    Vault::open(
        Arc::new(FileBackend::new(root.join("vault"))),
        &SecretBytes::from_slice(passphrase),
        VaultOptions {
            rollback_dir: Some(root.join("state").join("rollback")),
            // Every compaction and rotation writes a snapshot of several frames.
            snapshot_part_bytes: 512,
            ..VaultOptions::default()
        },
    )
}

/// Leftovers of the interrupted operation are gone once the next writer has run (opening is
/// read-only and leaves them).
fn assert_clean(root: &Path) {
    if let Ok(v) = open_real(root, b"test passphrase").or_else(|_| open_real(root, NEW_PASS)) {
        // A member removal the fault interrupted is finished first: nothing else is written
        // while it is pending.
        v.finish_removals(&pass(), false).unwrap();
        v.set("after", secret(b"x"), SetOptions::default()).unwrap();
    }
    let names = file_names(&root.join("vault"));
    assert!(
        names.iter().all(|n| !n.ends_with(".tmp")),
        "leftover temp files: {names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("log.")).count(),
        1,
        "exactly one log expected: {names:?}"
    );
}

/// Runs `scenario` on a copy of `template` through a FaultyIo failing the k-th operation.
fn trial(
    template: &Path,
    scenario: Scenario,
    k: u64,
    persistent: bool,
    kind: FaultKind,
) -> (tempfile::TempDir, vault_store::Result<()>, Arc<FaultyIo>) {
    let root = tempfile::tempdir().unwrap();
    copy_tree(template, root.path());
    let faulty = Arc::new(FaultyIo::new(&FaultyIo::ALL, k, persistent, kind));
    let backend = FileBackend::with_options(
        root.path().join("vault"),
        FileBackendOptions {
            io: Arc::new(SharedFaultyIo(faulty.clone())),
        },
    );
    let opts = VaultOptions {
        rollback_dir: Some(root.path().join("state").join("rollback")),
        snapshot_part_bytes: 512,
        ..VaultOptions::default()
    };
    let result = Vault::open(Arc::new(backend), &pass(), opts).and_then(|v| run(scenario, &v));
    faulty.heal();
    (root, result, faulty)
}

fn check_scenario(scenario: Scenario) -> u64 {
    let template = TestDir::new();
    {
        let v = template.create();
        for i in 0..4u8 {
            v.set(&format!("base{i}"), secret(&[i; 50]), SetOptions::default())
                .unwrap();
        }
        v.set("base0", secret(b"second"), SetOptions::default())
            .unwrap();
        scenario.prepare(&v);
    }
    let before = snapshot(&template.open().unwrap());
    // A fault-free run gives the operation count and the state after success.
    let (root, result, counter) = trial(template.tmp.path(), scenario, 0, false, FaultKind::Eio);
    result.unwrap();
    let total = counter.count();
    assert!(total > 0, "{scenario:?} performed no counted I/O");
    let after = snapshot(&open_real(root.path(), passes_after(scenario, true)[0]).unwrap());
    if matches!(scenario, Scenario::Set | Scenario::Batch | Scenario::Delete) {
        assert_ne!(before, after, "{scenario:?} should change the state");
    }
    let mut trials = 0;
    for k in 1..=total {
        for persistent in [false, true] {
            for kind in [FaultKind::Eio, FaultKind::Enospc] {
                trials += 1;
                let (root, result, faulty) =
                    trial(template.tmp.path(), scenario, k, persistent, kind);
                let ctx = format!(
                    "{scenario:?} k={k}/{total} persistent={persistent} {kind:?} fired={:?} result={result:?}",
                    faulty.fired_op()
                );
                if let Err(e) = &result {
                    assert!(faulty.fired(), "{ctx}: failed without a fault");
                    match kind {
                        FaultKind::Enospc => {
                            assert!(matches!(e, Error::StorageFull { .. }), "{ctx}")
                        }
                        FaultKind::Eio => assert!(matches!(e, Error::Io { .. }), "{ctx}"),
                    }
                }
                // Which outcomes are acceptable: success → the new state. Failure → the old
                // state, except where the fault struck after the change was already in place
                // (an fsync that failed after the write, or the directory fsync after a rename),
                // when the outcome is legitimately unknown to the caller; then either.
                let late = matches!(faulty.fired_op(), Some(FaultOp::SyncDir))
                    || (persistent && matches!(faulty.fired_op(), Some(FaultOp::Sync)));
                let candidates: Vec<bool> = match (&result, late) {
                    (Ok(()), _) => vec![true],
                    (Err(_), false) => vec![false],
                    (Err(_), true) => vec![false, true],
                };
                let mut matched = false;
                for succeeded in candidates {
                    let expected = if succeeded { &after } else { &before };
                    let passes = passes_after(scenario, succeeded);
                    let opened: Vec<_> = passes.iter().map(|p| open_real(root.path(), p)).collect();
                    if opened.iter().all(Result::is_ok) {
                        let v = opened.into_iter().next().unwrap().unwrap();
                        if &snapshot(&v) == expected {
                            v.verify().unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
                            matched = true;
                            break;
                        }
                    }
                }
                assert!(
                    matched,
                    "{ctx}: vault did not reopen to the last acknowledged state"
                );
                assert_clean(root.path());
            }
        }
    }
    trials
}

/// Every operation of the shared list, including those without a test of their own here
/// (undelete, destroy, max versions, slot removal, managed keys).
#[test]
fn every_mutating_operation_survives_every_fault() {
    for op in Scenario::ALL {
        let trials = check_scenario(op);
        assert!(trials >= 4, "{op:?}: {trials} trials");
    }
}

#[test]
fn set_survives_every_fault() {
    assert!(check_scenario(Scenario::Set) >= 8);
}

#[test]
fn batch_survives_every_fault() {
    check_scenario(Scenario::Batch);
}

#[test]
fn delete_survives_every_fault() {
    check_scenario(Scenario::Delete);
}

#[test]
fn compaction_survives_every_fault() {
    check_scenario(Scenario::Compact);
}

#[test]
fn passphrase_change_survives_every_fault() {
    check_scenario(Scenario::ChangePassphrase);
}

#[test]
fn adding_a_key_slot_survives_every_fault() {
    check_scenario(Scenario::AddPassphrase);
}

#[test]
fn master_key_rotation_survives_every_fault() {
    check_scenario(Scenario::Rotate);
}

#[test]
fn creation_fails_cleanly_or_completes() {
    let total = {
        let root = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyIo::new(&FaultyIo::ALL, 0, false, FaultKind::Eio));
        let b = FileBackend::with_options(
            root.path().join("vault"),
            FileBackendOptions {
                io: Arc::new(SharedFaultyIo(faulty.clone())),
            },
        );
        Vault::create(Arc::new(b), &pass(), cheap_kdf(), VaultOptions::default()).unwrap();
        faulty.count()
    };
    for k in 1..=total {
        for persistent in [false, true] {
            let root = tempfile::tempdir().unwrap();
            let faulty = Arc::new(FaultyIo::new(
                &FaultyIo::ALL,
                k,
                persistent,
                FaultKind::Enospc,
            ));
            let b = FileBackend::with_options(
                root.path().join("vault"),
                FileBackendOptions {
                    io: Arc::new(SharedFaultyIo(faulty.clone())),
                },
            );
            let r = Vault::create(Arc::new(b), &pass(), cheap_kdf(), VaultOptions::default());
            let reopened = Vault::open(
                Arc::new(FileBackend::new(root.path().join("vault"))),
                &pass(),
                VaultOptions::default(),
            );
            match (&r, &reopened) {
                (Ok(_), Ok(v)) => assert!(v.list(true).unwrap().is_empty()),
                (Err(_), Err(Error::NoVault(_))) => {}
                // The header's directory fsync failed after its rename: the vault exists and is
                // whole, the caller was told it might not.
                (Err(_), Ok(v)) if faulty.fired_op() == Some(FaultOp::SyncDir) => {
                    assert!(v.list(true).unwrap().is_empty());
                }
                other => panic!("k={k} persistent={persistent}: {other:?}"),
            }
        }
    }
}
