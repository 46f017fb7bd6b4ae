//! Backups of real vaults: random contents → backup → verify → restore → the same secrets (with
//! history, deleted ones deleted), the same keys (every version, state and policy; old tokens
//! open); with and without gzip; a damaged backup restores nothing; an existing target is
//! refused without --force and replaced whole with it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use vault_backup::Limits;
use vault_backup::backup::{BackupOptions, backup, restore, verify};
use vault_crypto::kdf::KdfParams;
use vault_store::{
    Algorithm, FileBackend, KeySpec, RotateOptions, SetOptions, UseOptions, Vault, VaultOptions,
};
use vault_testkit::{TestDir, cheap_kdf, pass, secret};

const BACKUP_PASS: &[u8] = b"backup passphrase";

fn options(compress: bool) -> BackupOptions {
    BackupOptions {
        compress,
        comment: "test".into(),
        kdf: KdfParams::for_key(64, 1, 1).unwrap(),
    }
}

fn make(state: &Path) -> impl Fn(&Path) -> vault_store::Result<Vault> + '_ {
    move |dir: &Path| {
        Vault::create(
            Arc::new(FileBackend::new(dir)),
            &pass(),
            cheap_kdf(),
            VaultOptions {
                rollback_dir: Some(state.to_path_buf()),
                ..VaultOptions::default()
            },
        )
    }
}

type Contents = (
    Vec<(
        vault_store::SecretInfo,
        Vec<vault_store::VersionInfo>,
        Vec<Vec<u8>>,
    )>,
    Vec<vault_store::KeyInfo>,
);

fn contents(v: &Vault) -> Contents {
    let secrets = v
        .list(true)
        .unwrap()
        .into_iter()
        .map(|s| {
            let history = v.history(&s.name).unwrap();
            let values = if s.deleted {
                Vec::new()
            } else {
                history
                    .iter()
                    .map(|h| {
                        v.get_version(&s.name, h.version)
                            .unwrap()
                            .value
                            .expose_secret()
                            .to_vec()
                    })
                    .collect()
            };
            (s, history, values)
        })
        .collect();
    (secrets, v.keys().unwrap())
}

fn round_trip(ops: &[(u8, u8, Vec<u8>)], compress: bool) -> Result<(), TestCaseError> {
    let d = TestDir::new();
    let v = d.create();
    v.create_key("k", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    let token = v.encrypt("k", b"kept", b"").unwrap();
    v.rotate_key("k", RotateOptions::default()).unwrap();
    for (what, name, value) in ops {
        let name = format!("s/{}", name % 8);
        match what % 4 {
            0 | 1 => {
                v.set(&name, secret(value), SetOptions::default()).unwrap();
            }
            2 => {
                let _ = v.delete(&name);
            }
            _ => {
                let _ = v.undelete(&name);
            }
        }
    }
    let (file, summary) = backup(&v, Vec::new(), BACKUP_PASS, &options(compress)).unwrap();
    let checked = verify(&file[..], BACKUP_PASS, &Limits::default()).unwrap();
    prop_assert_eq!(checked.counts, summary.counts);
    let path = d.state_dir().with_extension("vbak");
    std::fs::write(&path, &file).unwrap();
    let target = d.state_dir().with_extension("restored");
    let state = d.state_dir().with_extension("state2");
    restore(
        &path,
        BACKUP_PASS,
        &Limits::default(),
        &target,
        false,
        &make(&state),
    )
    .unwrap();
    let w = Vault::open(
        Arc::new(FileBackend::new(&target)),
        &pass(),
        VaultOptions {
            rollback_dir: Some(state),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    prop_assert_eq!(contents(&w), contents(&v));
    let kept = w.decrypt("k", &token, b"", UseOptions::default()).unwrap();
    prop_assert_eq!(kept.expose_secret(), b"kept");
    w.verify().unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn random_vaults_round_trip_through_a_backup(
        ops in prop::collection::vec((any::<u8>(), any::<u8>(), prop::collection::vec(any::<u8>(), 0..300)), 0..40),
        compress in any::<bool>(),
    ) {
        round_trip(&ops, compress)?;
    }
}

#[test]
fn a_damaged_backup_restores_nothing_and_force_replaces_whole() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..50 {
        v.set(
            &format!("s{i}"),
            secret(&vec![i as u8; 3000]),
            SetOptions::default(),
        )
        .unwrap();
    }
    let (file, _) = backup(&v, Vec::new(), BACKUP_PASS, &options(true)).unwrap();
    let path = d.state_dir().with_extension("vbak");
    let target = d.state_dir().with_extension("restored");
    let state = d.state_dir().with_extension("state2");
    let mut bad = file.clone();
    let n = bad.len() - 40;
    bad[n] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    let r = restore(
        &path,
        BACKUP_PASS,
        &Limits::default(),
        &target,
        false,
        &make(&state),
    );
    assert!(r.is_err());
    assert!(!target.exists(), "nothing is written for a damaged backup");
    let parent = target.parent().unwrap();
    assert!(
        std::fs::read_dir(parent).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("restoring")),
        "no staging directory left behind"
    );
    std::fs::write(&path, &file).unwrap();
    restore(
        &path,
        BACKUP_PASS,
        &Limits::default(),
        &target,
        false,
        &make(&state),
    )
    .unwrap();
    // An existing target: refused without force; replaced whole with it.
    assert!(
        restore(
            &path,
            BACKUP_PASS,
            &Limits::default(),
            &target,
            false,
            &make(&state)
        )
        .is_err()
    );
    restore(
        &path,
        BACKUP_PASS,
        &Limits::default(),
        &target,
        true,
        &make(&state),
    )
    .unwrap();
    assert!(std::fs::read_dir(parent).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains("replaced")
    }));
}
