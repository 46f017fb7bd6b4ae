//! Incremental backups: random histories (sets, deletes, undeletes, destroys, max-versions
//! changes, compactions, checkpoints, key rotations) with a backup taken now and then, the first
//! full and each later one on the one before; restoring any prefix of the chain gives the vault
//! as it was when its last backup was made. A chain that is not one (out of order, a gap, an
//! incremental first, another vault's) is refused before anything is written, as is a chain
//! that does not add up or a damaged incremental.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use vault_backup::Limits;
use vault_backup::backup::{BackupOptions, Summary, backup, verify};
use vault_backup::chain::{self, ChainSummary};
use vault_backup::payload::{Item, PayloadWriter};
use vault_crypto::kdf::KdfParams;
use vault_store::{
    Algorithm, FileBackend, KeySpec, RotateOptions, SetOptions, Vault, VaultOptions,
};
use vault_testkit::{TestDir, pass, secret};

mod common;
use common::{Contents, contents, make};

const BACKUP_PASS: &[u8] = b"backup passphrase";

fn options(base: Option<&Summary>, compress: bool) -> BackupOptions {
    BackupOptions {
        base: base.map(|s| s.header.clone()),
        include_audit: false,
        compress,
        comment: String::new(),
        kdf: KdfParams::for_key(64, 1, 1).unwrap(),
    }
}

fn restore(
    files: &[PathBuf],
    target: &Path,
    state: &Path,
) -> Result<ChainSummary, vault_backup::Error> {
    vault_backup::restore::restore(
        files,
        BACKUP_PASS,
        &Limits::default(),
        target,
        false,
        &make(state),
    )
}

fn open(target: &Path, state: &Path) -> Vault {
    Vault::open(
        Arc::new(FileBackend::new(target)),
        &pass(),
        VaultOptions {
            rollback_dir: Some(state.to_path_buf()),
            ..VaultOptions::default()
        },
    )
    .unwrap()
}

/// A backup of `v` written to `path`: full, or incremental on `base`.
fn take(v: &Vault, path: &Path, base: Option<&Summary>, compress: bool) -> Summary {
    let (file, summary) = backup(v, Vec::new(), BACKUP_PASS, &options(base, compress)).unwrap();
    std::fs::write(path, &file).unwrap();
    // Each file verifies alone, and says what it holds.
    let alone = verify(&file[..], BACKUP_PASS, &Limits::default()).unwrap();
    assert_eq!(alone.counts, summary.counts);
    summary
}

fn run(ops: &[(u8, u8, Vec<u8>)], compress: bool) -> Result<(), TestCaseError> {
    let d = TestDir::new();
    let v = d.create();
    v.create_key("k", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut states: Vec<Contents> = Vec::new();
    let mut last: Option<Summary> = None;
    let mut backup_now = |v: &Vault, last: &mut Option<Summary>| {
        let path = d.state_dir().with_extension(format!("b{}", files.len()));
        let s = take(v, &path, last.as_ref(), compress);
        files.push(path);
        states.push(contents(v));
        *last = Some(s);
    };
    backup_now(&v, &mut last);
    for (what, name, value) in ops {
        let name = format!("s/{}", name % 10);
        match what % 12 {
            0..=3 => {
                v.set(&name, secret(value), SetOptions::default()).unwrap();
            }
            4 => {
                let _ = v.delete(&name);
            }
            5 => {
                let _ = v.undelete(&name);
            }
            6 => {
                let _ = v.destroy(&name);
            }
            7 => v
                .set_max_versions(u32::from(value.first().copied().unwrap_or(0) % 4) + 1)
                .unwrap(),
            8 => v.compact().unwrap(),
            9 => v.checkpoint().unwrap(),
            10 => {
                v.rotate_key("k", RotateOptions::default()).unwrap();
            }
            _ => backup_now(&v, &mut last),
        }
    }
    backup_now(&v, &mut last);
    // Every prefix of the chain restores the vault as it was at its last backup.
    for n in 1..=files.len() {
        let target = d.state_dir().with_extension(format!("restored{n}"));
        let state = d.state_dir().with_extension(format!("state{n}"));
        let opened = chain::ChainFiles::open(&files[..n]).unwrap();
        let checked = chain::verify(&opened, BACKUP_PASS, &Limits::default()).unwrap();
        let s = restore(&files[..n], &target, &state).unwrap();
        prop_assert_eq!(&s.counts, &checked.counts);
        let w = open(&target, &state);
        prop_assert_eq!(
            contents(&w),
            states[n - 1].clone(),
            "prefix of {} backups",
            n
        );
        w.verify().unwrap();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_prefix_of_a_chain_restores_the_vault_as_it_was(
        ops in prop::collection::vec((any::<u8>(), any::<u8>(), prop::collection::vec(any::<u8>(), 0..200)), 0..60),
        compress in any::<bool>(),
    ) {
        run(&ops, compress)?;
    }
}

/// A vault with a full backup and two incrementals, their files, and another vault's
/// incremental.
struct Chain {
    d: TestDir,
    files: Vec<PathBuf>,
    summaries: Vec<Summary>,
    foreign: PathBuf,
}

fn chain() -> Chain {
    let d = TestDir::new();
    let v = d.create();
    let mut files = Vec::new();
    let mut summaries: Vec<Summary> = Vec::new();
    for round in 0..3 {
        for i in 0..20 {
            v.set(
                &format!("s{i}"),
                secret(format!("{round}-{i}").as_bytes()),
                SetOptions::default(),
            )
            .unwrap();
        }
        let path = d.state_dir().with_extension(format!("b{round}"));
        summaries.push(take(&v, &path, summaries.last(), true));
        files.push(path);
    }
    let other = TestDir::new();
    let o = other.create();
    let full = take(&o, &d.state_dir().with_extension("other0"), None, true);
    o.set("x", secret(b"1"), SetOptions::default()).unwrap();
    let foreign = d.state_dir().with_extension("other1");
    take(&o, &foreign, Some(&full), true);
    Chain {
        d,
        files,
        summaries,
        foreign,
    }
}

#[test]
fn a_chain_that_is_not_one_is_refused_before_anything_is_written() {
    let c = chain();
    let [f0, f1, f2] = [&c.files[0], &c.files[1], &c.files[2]].map(|p| p.clone());
    let target = c.d.state_dir().with_extension("target");
    let state = c.d.state_dir().with_extension("st");
    let cases: Vec<(Vec<PathBuf>, &str)> = vec![
        (vec![f1.clone()], "starts with the full backup"),
        (vec![f0.clone(), f2.clone()], "is not based on"),
        (vec![f0.clone(), f2.clone(), f1.clone()], "is not based on"),
        (vec![f0.clone(), f0.clone()], "is a full backup"),
        (vec![f0.clone(), c.foreign.clone()], "of vault"),
    ];
    for (files, why) in cases {
        match restore(&files, &target, &state) {
            Err(vault_backup::Error::Chain(msg)) => assert!(msg.contains(why), "{msg}"),
            other => panic!("{files:?}: {other:?}"),
        }
        assert!(!target.exists());
    }
    // The whole chain in order restores the last state.
    restore(&[f0, f1, f2], &target, &state).unwrap();
    let w = open(&target, &state);
    assert_eq!(w.get("s3").unwrap().value.expose_secret(), b"2-3");
    assert_eq!(w.history("s3").unwrap().len(), 3);
    assert_eq!(c.summaries[2].counts.versions, 20);
}

#[test]
fn a_damaged_incremental_or_one_that_does_not_add_up_restores_nothing() {
    let c = chain();
    let target = c.d.state_dir().with_extension("target");
    let state = c.d.state_dir().with_extension("st");
    // A flipped byte in the middle incremental.
    let good = std::fs::read(&c.files[1]).unwrap();
    let mut bad = good.clone();
    let n = bad.len() - 50;
    bad[n] ^= 0x20;
    std::fs::write(&c.files[1], &bad).unwrap();
    match restore(&c.files, &target, &state) {
        Err(vault_backup::Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(e.to_string().contains(".b1"), "names the file: {e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!target.exists());
    std::fs::write(&c.files[1], &good).unwrap();

    // An authentic incremental on the full backup that lists a version no backup holds.
    let base = &c.summaries[0].header;
    let mut source = vault_backup::cursor_of(base);
    source.generation += 1;
    source.sequence += 1;
    let (header, keys) = vault_backup::create(
        BACKUP_PASS,
        KdfParams::for_key(64, 1, 1).unwrap(),
        &source,
        Some(base),
        "",
    )
    .unwrap();
    let mut header = header;
    header.flags &= !vault_backup::FLAG_GZIP;
    let mut p = PayloadWriter::new(Vec::new()).unwrap();
    p.write(&Item::Settings(10)).unwrap();
    p.write(&Item::Changed {
        order: 0xffff,
        name: "never-backed-up".into(),
        deleted: false,
        kept: vec![vault_backup::payload::Kept {
            version: 1,
            check: Some(0),
        }],
    })
    .unwrap();
    let (payload, _) = p.finish().unwrap();
    let mut w = vault_backup::container::Sealer::new(Vec::new(), &header, &keys).unwrap();
    w.write_all(&payload).unwrap();
    let forged = c.d.state_dir().with_extension("forged");
    std::fs::write(&forged, w.finish().unwrap()).unwrap();
    match restore(&[c.files[0].clone(), forged], &target, &state) {
        Err(vault_backup::Error::Io(e)) => {
            assert!(e.to_string().contains("in none of the backups"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!target.exists());
}

#[test]
fn an_incremental_after_a_master_key_rotation_is_refused() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let full = take(&v, &d.state_dir().with_extension("b0"), None, true);
    v.rotate_master_key(&pass(), false).unwrap();
    drop(v);
    let v = d.open().unwrap();
    match backup(&v, Vec::new(), BACKUP_PASS, &options(Some(&full), true)) {
        Err(vault_backup::Error::Vault(vault_store::Error::Invalid { reason, .. })) => {
            assert!(reason.contains("rotated"), "{reason}")
        }
        other => panic!("{:?}", other.map(|(_, s)| s)),
    }
}

/// Compaction drops dead records; the sequence numbers an incremental relies on must still never
/// be used again (the records written after the base would otherwise look older than it).
#[test]
fn what_is_written_after_a_compaction_is_in_the_next_incremental() {
    let d = TestDir::new();
    let v = d.create();
    v.set("kept", secret(b"1"), SetOptions::default()).unwrap();
    v.set("gone", secret(b"1"), SetOptions::default()).unwrap();
    v.destroy("gone").unwrap();
    let f0 = d.state_dir().with_extension("b0");
    let full = take(&v, &f0, None, true);
    v.compact().unwrap();
    drop(v);
    let v = d.open().unwrap();
    v.set("new", secret(b"after"), SetOptions::default())
        .unwrap();
    v.set("kept", secret(b"2"), SetOptions::default()).unwrap();
    let f1 = d.state_dir().with_extension("b1");
    take(&v, &f1, Some(&full), true);
    let target = d.state_dir().with_extension("target");
    let state = d.state_dir().with_extension("st");
    restore(&[f0, f1], &target, &state).unwrap();
    let w = open(&target, &state);
    assert_eq!(contents(&w), contents(&v));
    assert_eq!(w.get("new").unwrap().value.expose_secret(), b"after");
}

/// Hostile-pass finding: a vault put back from an older copy, with no rollback record to stop
/// it (another machine, a lost state directory), numbers new records with numbers its base
/// backup already used; an incremental then carries none of them. The restore must refuse,
/// not put the base's versions where the vault has others.
#[test]
fn a_vault_put_back_from_an_older_copy_does_not_restore_wrong_versions() {
    let d = TestDir::new();
    let v = d.create();
    v.set("x", secret(b"orig1"), SetOptions::default()).unwrap();
    v.set("y", secret(b"y1"), SetOptions::default()).unwrap();
    drop(v);
    let old = d.state_dir().with_extension("old-copy");
    vault_testkit::copy_dir(&d.vault_dir(), &old);
    let v = d.open().unwrap();
    v.set("x", secret(b"secretA"), SetOptions::default())
        .unwrap();
    v.set("x", secret(b"secretB"), SetOptions::default())
        .unwrap();
    let f0 = d.state_dir().with_extension("b0");
    let base = take(&v, &f0, None, true);
    drop(v);
    std::fs::remove_dir_all(d.vault_dir()).unwrap();
    vault_testkit::copy_dir(&old, &d.vault_dir());
    std::fs::remove_dir_all(d.state_dir()).ok();
    let v = d.open().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    v.set("x", secret(b"DIFFERENT2"), SetOptions::default())
        .unwrap();
    v.set("x", secret(b"DIFFERENT3"), SetOptions::default())
        .unwrap();
    v.set("y", secret(b"y2"), SetOptions::default()).unwrap();
    let f1 = d.state_dir().with_extension("b1");
    take(&v, &f1, Some(&base), true);
    let target = d.state_dir().with_extension("target");
    let state = d.state_dir().with_extension("st");
    match restore(&[f0, f1], &target, &state) {
        Err(vault_backup::Error::Io(e)) => {
            assert!(e.to_string().contains("history split"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!target.exists());
}

/// Hostile-pass finding: a file renamed over one of the chain's between verify and restore is
/// not read: each file is opened once, and both passes read what was opened; a file changed in
/// place meanwhile is found, and nothing is restored.
#[test]
fn the_files_verified_are_the_files_restored() {
    let c = chain();
    let state = c.d.state_dir().with_extension("st");
    let restore_opened = |chain_files: &vault_backup::chain::ChainFiles, target: &Path| {
        vault_backup::restore::restore_chain(
            chain_files,
            BACKUP_PASS,
            &Limits::default(),
            target,
            false,
            &make(&state),
            vault_backup::restore::Batches::default(),
        )
    };
    // Renamed over: the opened file is still the one read.
    let opened = vault_backup::chain::ChainFiles::open(&c.files[..2]).unwrap();
    let other = c.d.state_dir().with_extension("other-copy");
    std::fs::copy(&c.files[2], &other).unwrap();
    let original = std::fs::read(&c.files[1]).unwrap();
    std::fs::rename(&other, &c.files[1]).unwrap();
    let target = c.d.state_dir().with_extension("renamed");
    let s = restore_opened(&opened, &target).unwrap();
    assert_eq!(s.headers[1], c.summaries[1].header);
    let w = open(&target, &state);
    assert_eq!(w.get("s3").unwrap().value.expose_secret(), b"1-3");
    drop(opened);
    // Changed in place: found, nothing restored.
    std::fs::write(&c.files[1], &original).unwrap();
    let opened = vault_backup::chain::ChainFiles::open(&c.files[..2]).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&c.files[1])
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &std::fs::read(&c.files[2]).unwrap(), 0).unwrap();
    let target = c.d.state_dir().with_extension("in-place");
    assert!(restore_opened(&opened, &target).is_err());
    assert!(!target.exists());
}

/// `--include-audit`: the backup carries the vault's audit files as they were, a verify counts
/// them, and a restore keeps them beside the new vault (audit-archive/<old vault id>/), from the
/// newest backup of the chain that carries them.
#[test]
fn the_audit_trail_travels_with_a_backup_that_includes_it() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.get("a").unwrap();
    let mut with_audit = options(None, true);
    with_audit.include_audit = true;
    let (file, summary) = backup(&v, Vec::new(), BACKUP_PASS, &with_audit).unwrap();
    let trail_then = std::fs::read(d.vault_dir().join("audit.0")).unwrap();
    let f0 = d.state_dir().with_extension("b0");
    std::fs::write(&f0, &file).unwrap();
    let checked = verify(&file[..], BACKUP_PASS, &Limits::default()).unwrap();
    assert_eq!(checked.counts, summary.counts);
    assert_eq!(checked.audit_bytes, trail_then.len() as u64);
    // An incremental without it: the archive comes from the full backup.
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    let f1 = d.state_dir().with_extension("b1");
    take(&v, &f1, Some(&summary), true);
    let target = d.state_dir().with_extension("target");
    let state = d.state_dir().with_extension("st");
    let s = restore(&[f0, f1], &target, &state).unwrap();
    assert_eq!(s.audit_bytes, trail_then.len() as u64);
    let archived = target
        .join("audit-archive")
        .join(v.vault_id().to_hex())
        .join("audit.0");
    assert_eq!(std::fs::read(&archived).unwrap(), trail_then);
    let w = open(&target, &state);
    assert_eq!(w.get("b").unwrap().value.expose_secret(), b"2");
}
