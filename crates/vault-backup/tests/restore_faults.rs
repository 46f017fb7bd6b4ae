//! Restore under injected faults: every write, sync, rename and create the restored vault makes
//! is failed in turn (EIO and ENOSPC, once and from then on), in a restore of many small
//! commits. Each time the restore either fails and leaves nothing at the target (no vault, no
//! staging directory), or succeeds with the whole vault there; never a half-restored vault.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vault_backup::Limits;
use vault_backup::backup::{BackupOptions, backup};
use vault_backup::restore::{Batches, restore_in_batches};
use vault_crypto::kdf::KdfParams;
use vault_store::{FileBackend, FileBackendOptions, SetOptions, Vault, VaultOptions};
use vault_testkit::{FaultKind, FaultyIo, SharedFaultyIo, TestDir, cheap_kdf, pass, secret};

mod common;
use common::contents;

const BACKUP_PASS: &[u8] = b"backup passphrase";

fn rollback_dir(root: &Path) -> PathBuf {
    root.join("rollback")
}

/// Restores `file` into `root/target` through `io`, in commits of 7 items.
fn restore_through(
    file: &Path,
    root: &Path,
    io: Option<Arc<FaultyIo>>,
) -> Result<vault_backup::chain::ChainSummary, vault_backup::Error> {
    let make = |dir: &Path| {
        let backend = match &io {
            Some(f) => FileBackend::with_options(
                dir,
                FileBackendOptions {
                    io: Arc::new(SharedFaultyIo(f.clone())),
                },
            ),
            None => FileBackend::new(dir),
        };
        Vault::create(
            Arc::new(backend),
            &pass(),
            cheap_kdf(),
            VaultOptions {
                rollback_dir: Some(rollback_dir(root)),
                ..VaultOptions::default()
            },
        )
    };
    restore_in_batches(
        &[file.to_path_buf()],
        BACKUP_PASS,
        &Limits::default(),
        &root.join("target"),
        false,
        &make,
        Batches {
            bytes: 4096,
            items: 7,
        },
    )
}

fn leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restoring"))
        .collect()
}

#[test]
fn a_fault_anywhere_in_a_restore_leaves_nothing_or_everything() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..40 {
        v.set(
            &format!("s{i:02}"),
            secret(format!("value {i}").as_bytes()),
            SetOptions::default(),
        )
        .unwrap();
        if i % 3 == 0 {
            v.set(&format!("s{i:02}"), secret(b"again"), SetOptions::default())
                .unwrap();
        }
    }
    v.delete("s05").unwrap();
    let opts = BackupOptions {
        base: None,
        include_audit: false,
        compress: true,
        comment: String::new(),
        kdf: KdfParams::for_key(64, 1, 1).unwrap(),
    };
    let (bytes, _) = backup(&v, Vec::new(), BACKUP_PASS, &opts).unwrap();
    let file = d.state_dir().with_extension("vbak");
    std::fs::write(&file, &bytes).unwrap();
    let want = contents(&v);

    // A clean run counts the operations there are to fail.
    let counting = Arc::new(FaultyIo::new(&FaultyIo::ALL, 0, false, FaultKind::Eio));
    let root = tempfile::tempdir().unwrap();
    restore_through(&file, root.path(), Some(counting.clone())).unwrap();
    let total = counting.count();
    assert!(
        total > 30,
        "only {total} operations: too few commits to test"
    );

    let mut failed = 0;
    for k in 1..=total {
        for (persistent, kind) in [(true, FaultKind::Eio), (false, FaultKind::Enospc)] {
            let root = tempfile::tempdir().unwrap();
            let faulty = Arc::new(FaultyIo::new(&FaultyIo::ALL, k, persistent, kind));
            let r = restore_through(&file, root.path(), Some(faulty.clone()));
            let target = root.path().join("target");
            assert!(
                leftovers(root.path()).is_empty(),
                "fault {k} ({kind:?}): staging left behind"
            );
            match r {
                Err(_) => {
                    assert!(faulty.fired(), "fault {k}: failed without a fault");
                    assert!(
                        !target.exists(),
                        "fault {k} ({kind:?}, {:?}): a failed restore left a vault at the target",
                        faulty.fired_op()
                    );
                    failed += 1;
                }
                Ok(_) => {
                    let w = Vault::open(
                        Arc::new(FileBackend::new(&target)),
                        &pass(),
                        VaultOptions {
                            rollback_dir: Some(rollback_dir(root.path())),
                            ..VaultOptions::default()
                        },
                    )
                    .unwrap();
                    assert_eq!(contents(&w), want, "fault {k}: a restore that succeeded");
                }
            }
        }
    }
    eprintln!("{total} operations, {failed} restores failed");
    assert!(failed > total as usize, "most faults must fail the restore");
}
