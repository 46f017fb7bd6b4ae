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
use vault_backup::backup::{BackupOptions, backup, verify};
use vault_backup::chain::ChainSummary;
use vault_crypto::kdf::KdfParams;
use vault_store::{
    Algorithm, FileBackend, KeySpec, RotateOptions, SetOptions, UseOptions, Vault, VaultOptions,
};
use vault_testkit::{TestDir, pass, secret};

mod common;
use common::{contents, make};

fn cursor(vault_id: [u8; 16], generation: u64) -> vault_store::SnapshotCursor {
    vault_store::SnapshotCursor {
        vault_id,
        key_epoch: 1,
        generation,
        sequence: generation,
        lineage: [0; 16],
    }
}

const BACKUP_PASS: &[u8] = b"backup passphrase";

/// A restore of one full backup.
fn restore(
    file: &Path,
    passphrase: &[u8],
    limits: &Limits,
    target: &Path,
    force: bool,
    make: &dyn Fn(&Path) -> vault_store::Result<Vault>,
) -> Result<ChainSummary, vault_backup::Error> {
    vault_backup::restore::restore(
        &[file.to_path_buf()],
        passphrase,
        limits,
        target,
        force,
        make,
    )
}

fn options(compress: bool) -> BackupOptions {
    BackupOptions {
        base: None,
        include_audit: false,
        compress,
        comment: "test".into(),
        kdf: KdfParams::for_key(64, 1, 1).unwrap(),
    }
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

/// Hostile-pass findings on restore's target and payload: max-versions is kept; a payload naming
/// a secret twice is refused; data after the gzip stream is refused; --force replaces only a
/// vault (never a plain directory or a file), atomically; a target that appears during the
/// restore is never overwritten.
#[test]
fn restore_keeps_settings_and_guards_its_target() {
    use std::io::Write;
    use vault_backup::container::Sealer;
    use vault_backup::payload::{Item, PayloadWriter};
    let d = TestDir::new();
    let v = d.create();
    v.set_max_versions(7).unwrap();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let (file, _) = backup(&v, Vec::new(), BACKUP_PASS, &options(true)).unwrap();
    let path = d.state_dir().with_extension("vbak");
    std::fs::write(&path, &file).unwrap();
    let state = d.state_dir().with_extension("state2");
    let lim = Limits::default();
    let target = d.state_dir().with_extension("restored");
    restore(&path, BACKUP_PASS, &lim, &target, false, &make(&state)).unwrap();
    let opened = |p: &Path| {
        Vault::open(
            Arc::new(FileBackend::new(p)),
            &pass(),
            VaultOptions {
                rollback_dir: Some(state.clone()),
                ..VaultOptions::default()
            },
        )
        .unwrap()
    };
    assert_eq!(opened(&target).max_versions(), 7);

    // --force onto a directory that is not a vault, or onto a file: refused, untouched.
    let plain = d.state_dir().with_extension("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("data.txt"), b"important").unwrap();
    assert!(restore(&path, BACKUP_PASS, &lim, &plain, true, &make(&state)).is_err());
    assert_eq!(std::fs::read(plain.join("data.txt")).unwrap(), b"important");
    let afile = d.state_dir().with_extension("afile");
    std::fs::write(&afile, b"hi").unwrap();
    assert!(restore(&path, BACKUP_PASS, &lim, &afile, true, &make(&state)).is_err());
    assert_eq!(std::fs::read(&afile).unwrap(), b"hi");
    // --force onto a vault: replaced, and nothing left beside it.
    restore(&path, BACKUP_PASS, &lim, &target, true, &make(&state)).unwrap();
    assert_eq!(
        opened(&target).get("a").unwrap().value.expose_secret(),
        b"1"
    );
    let parent = target.parent().unwrap();
    assert!(std::fs::read_dir(parent).unwrap().all(|e| {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        !n.contains("restoring") && !n.contains("replaced")
    }));
    // A target made while the restore runs is never overwritten.
    let late = d.state_dir().with_extension("late");
    let make_then_occupy = |dir: &Path| {
        let v = make(&state)(dir);
        std::fs::create_dir_all(&late).unwrap();
        std::fs::write(late.join("precious.txt"), b"mine").unwrap();
        v
    };
    assert!(restore(&path, BACKUP_PASS, &lim, &late, false, &make_then_occupy).is_err());
    assert_eq!(std::fs::read(late.join("precious.txt")).unwrap(), b"mine");

    // A payload naming a secret twice: refused, nothing restored.
    let (header, keys) = vault_backup::create(
        BACKUP_PASS,
        options(false).kdf,
        &cursor([1; 16], 1),
        None,
        "",
    )
    .unwrap();
    let mut header = header;
    header.flags = 0;
    let mut p = PayloadWriter::new(Vec::new()).unwrap();
    for (i, value) in [b"x", b"y"].into_iter().enumerate() {
        p.write(&Item::Secret {
            order: i as u16,
            name: "dd".into(),
            deleted: false,
            versions: 1,
        })
        .unwrap();
        p.write(&Item::Version(
            vault_format::payload::SecretVersionPayload {
                name: "dd".into(),
                version: 1,
                created_ms: 0,
                tags: Vec::new(),
                value: secret(value),
            },
        ))
        .unwrap();
    }
    let (payload, _) = p.finish().unwrap();
    let mut w = Sealer::new(Vec::new(), &header, &keys).unwrap();
    w.write_all(&payload).unwrap();
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    let dup_target = d.state_dir().with_extension("dup");
    assert!(restore(&path, BACKUP_PASS, &lim, &dup_target, false, &make(&state)).is_err());
    assert!(!dup_target.exists());

    // Data after the gzip stream, inside an authentic container: refused by verify.
    let (header, keys) = vault_backup::create(
        BACKUP_PASS,
        options(true).kdf,
        &cursor([1; 16], 1),
        None,
        "",
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let (gz_payload, _) = PayloadWriter::new(Vec::new()).unwrap().finish().unwrap();
    gz.write_all(&gz_payload).unwrap();
    let mut compressed = gz.finish().unwrap();
    compressed.extend_from_slice(b"trailing junk");
    let mut w = Sealer::new(Vec::new(), &header, &keys).unwrap();
    w.write_all(&compressed).unwrap();
    let junk = w.finish().unwrap();
    assert!(verify(&junk[..], BACKUP_PASS, &lim).is_err());
}

/// An output that fails part-way: the backup returns that error (not a hang, not a success),
/// whether the failure comes early (the header) or in the middle of the payload.
#[test]
fn a_failing_output_fails_the_backup() {
    struct Failing(usize);
    impl std::io::Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 < buf.len() {
                return Err(std::io::Error::other("disk full (test)"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let d = TestDir::new();
    let v = d.create();
    for i in 0..200 {
        let value: Vec<u8> = (0..3000u32).map(|j| (j * 7 + i) as u8).collect();
        v.set(&format!("s{i}"), secret(&value), SetOptions::default())
            .unwrap();
    }
    for budget in [0, 100, 70_000, 300_000] {
        match backup(&v, Failing(budget), BACKUP_PASS, &options(false)) {
            Err(e) => assert!(e.to_string().contains("disk full"), "{budget}: {e}"),
            Ok(_) => panic!("{budget}: a backup that could not be written succeeded"),
        }
    }
    // The vault is untouched and can be backed up whole.
    assert!(backup(&v, Vec::new(), BACKUP_PASS, &options(true)).is_ok());
}
