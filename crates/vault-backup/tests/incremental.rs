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
        let checked = chain::verify(&files[..n], BACKUP_PASS, &Limits::default()).unwrap();
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
        kept: vec![(1, false)],
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
