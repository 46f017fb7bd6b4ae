//! Hostile and unlucky conditions: rollback, tampering, truncation, many threads, a full disk.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use vault_store::{
    Batch, Error, FileBackend, MemoryRollbackStore, RollbackStore, SetOptions, Vault, VaultOptions,
};

/// A vault holding a = "1", and a copy of its directory taken at that point.
fn vault_with_a_saved_copy() -> (TestDir, std::path::PathBuf) {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    drop(v);
    let old = d.tmp.path().join("old");
    copy_dir(&d.vault_dir(), &old);
    (d, old)
}

/// Replaces the vault directory with the saved copy, as a restore from backup would.
fn put_back(d: &TestDir, old: &Path) {
    std::fs::remove_dir_all(d.vault_dir()).unwrap();
    copy_dir(old, &d.vault_dir());
}

#[test]
fn copying_back_an_old_vault_directory_is_detected() {
    let (d, old) = vault_with_a_saved_copy();
    let v = d.open().unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    drop(v);
    put_back(&d, &old);
    let r = d.open();
    assert!(
        matches!(
            r,
            Err(Error::RollbackDetected {
                vault_generation: 2,
                recorded_generation: 3,
                ..
            })
        ),
        "{r:?}"
    );
    // Accepting is explicit and recorded; afterwards the vault opens normally.
    let accepted = Vault::open(
        d.backend(),
        &pass(),
        VaultOptions {
            accept_rollback: true,
            ..d.options()
        },
    )
    .unwrap();
    assert_eq!(accepted.get("a").unwrap().value.expose_secret(), b"1");
    assert!(accepted.generation() > 3);
    drop(accepted);
    d.open().unwrap().verify().unwrap();
}

/// The rollback record can live in any `RollbackStore` the caller supplies (here memory, as
/// another backend's client would keep its own): it takes precedence over `rollback_dir`, and a
/// copied-back vault is caught through it, with a torn slot reported by `verify`.
#[test]
fn a_supplied_rollback_store_catches_a_copy_put_back() {
    let d = TestDir::new();
    let store = MemoryRollbackStore::new();
    let options = VaultOptions {
        rollback_store: Some(Arc::new(store.clone())),
        ..d.options()
    };
    let v = Vault::create(d.backend(), &pass(), cheap_kdf(), options.clone()).unwrap();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let id = v.vault_id();
    drop(v);
    assert!(!d.state_dir().exists(), "nothing written to rollback_dir");
    let old = d.tmp.path().join("old");
    copy_dir(&d.vault_dir(), &old);
    let v = Vault::open(d.backend(), &pass(), options.clone()).unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    drop(v);
    put_back(&d, &old);
    let r = Vault::open(d.backend(), &pass(), options.clone());
    assert!(matches!(r, Err(Error::RollbackDetected { .. })), "{r:?}");
    // Without the store (files in an empty directory instead) the copy is not caught: the record
    // really came from the store.
    Vault::open(d.backend(), &pass(), d.options()).unwrap();
    // One slot torn: still usable, but verify says so.
    let mut bytes = store.read(&id).unwrap().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    store.replace(&id, &bytes).unwrap();
    let accepted = Vault::open(
        d.backend(),
        &pass(),
        VaultOptions {
            accept_rollback: true,
            ..options.clone()
        },
    )
    .unwrap();
    drop(accepted);
    let mut bytes = store.read(&id).unwrap().unwrap();
    bytes[last] ^= 1;
    store.write_at(&id, 0, &bytes).unwrap();
    let report = Vault::open(d.backend(), &pass(), options)
        .unwrap()
        .verify()
        .unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
}

#[test]
fn rolling_back_across_a_master_key_rotation_is_detected() {
    let (d, old) = vault_with_a_saved_copy();
    d.open().unwrap().rotate_master_key(&pass(), false).unwrap();
    put_back(&d, &old);
    assert!(matches!(d.open(), Err(Error::RollbackDetected { .. })));
}

#[test]
fn truncating_log_or_header_at_every_length_is_detected() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..3u8 {
        v.set("a", secret(&[i]), SetOptions::default()).unwrap();
    }
    drop(v);
    // Every shorter length of the log: a cut inside a frame reads as a torn tail and is
    // discarded, a cut between frames drops whole commits; either way generations the rollback
    // record has seen are missing. Cuts into the file header are damage. Every shorter header
    // fails its checksum or structure.
    let n = truncate_every_length(&d, &log_path(&d.vault_dir()))
        + truncate_every_length(&d, &d.vault_dir().join("header"));
    assert!(n > 400, "{n}");
}

fn truncate_every_length(d: &TestDir, file: &Path) -> usize {
    let full = std::fs::read(file).unwrap();
    for len in 0..full.len() {
        std::fs::write(file, &full[..len]).unwrap();
        let r = d.open();
        assert!(
            matches!(&r, Err(e) if e.is_integrity()),
            "{} truncated to {len} of {}: {r:?}",
            file.display(),
            full.len()
        );
    }
    std::fs::write(file, &full).unwrap();
    d.open().unwrap();
    full.len()
}

fn flip_every_bit(d: &TestDir, file: &Path) -> usize {
    let original = std::fs::read(file).unwrap();
    let mut checked = 0;
    for i in 0..original.len() * 8 {
        let mut bytes = original.clone();
        bytes[i / 8] ^= 1 << (i % 8);
        std::fs::write(file, &bytes).unwrap();
        let r = d.open();
        match &r {
            Err(e) if e.is_integrity() => {}
            // A flipped version number reads as "written by a newer version": refused, typed.
            Err(Error::Format(vault_format::Error::UnsupportedVersion { .. })) => {}
            other => panic!(
                "bit {i} of {}: expected a typed integrity error, got {other:?}",
                file.display()
            ),
        }
        checked += 1;
    }
    std::fs::write(file, &original).unwrap();
    d.open().unwrap();
    checked
}

#[test]
fn every_flipped_bit_of_header_and_log_is_refused() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"value"), SetOptions::default()).unwrap();
    v.set("b", secret(b"other"), SetOptions::default()).unwrap();
    drop(v);
    let header = d.vault_dir().join("header");
    let log = log_path(&d.vault_dir());
    let n = flip_every_bit(&d, &header) + flip_every_bit(&d, &log);
    assert!(n > 4000, "{n}");
}

#[test]
fn a_record_from_another_vault_is_refused() {
    let a = TestDir::new();
    let b = TestDir::new();
    a.create()
        .set("x", secret(b"1"), SetOptions::default())
        .unwrap();
    b.create()
        .set("x", secret(b"1"), SetOptions::default())
        .unwrap();
    std::fs::copy(log_path(&a.vault_dir()), log_path(&b.vault_dir())).unwrap();
    assert!(matches!(b.open(), Err(e) if e.is_integrity()));
}

#[test]
fn a_hundred_threads_share_one_handle() {
    let d = TestDir::new();
    let v = Arc::new(d.create());
    v.set("counter", secret(b"0"), SetOptions::default())
        .unwrap();
    let threads: Vec<_> = (0..100)
        .map(|t| {
            let v = v.clone();
            std::thread::spawn(move || {
                for i in 0..10u32 {
                    v.set(
                        &format!("t{t}/k{i}"),
                        secret(&i.to_le_bytes()),
                        SetOptions::default(),
                    )
                    .unwrap();
                    // A read-modify-write through check-and-set.
                    loop {
                        let cur = v.get("counter").unwrap();
                        let n: u64 = std::str::from_utf8(cur.value.expose_secret())
                            .unwrap()
                            .parse()
                            .unwrap();
                        match v.set(
                            "counter",
                            secret((n + 1).to_string().as_bytes()),
                            SetOptions {
                                expected_version: Some(cur.version),
                                ..SetOptions::default()
                            },
                        ) {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    if t % 25 == 0 && i == 5 {
                        v.compact().unwrap();
                    }
                    let _ = v.list(false).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(v.get("counter").unwrap().value.expose_secret(), b"1000");
    assert_eq!(v.list(false).unwrap().len(), 1001);
    drop(v);
    let v = d.open().unwrap();
    for t in 0..100 {
        assert_eq!(
            v.get(&format!("t{t}/k9")).unwrap().value.expose_secret(),
            &9u32.to_le_bytes()
        );
    }
    v.verify().unwrap();
}

/// Mounts a small tmpfs (needs root); `None` if the system refuses.
struct Tmpfs(std::path::PathBuf);
impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_commits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let Some(_fs) = Tmpfs::mount(&mnt, "256k") else {
        eprintln!(
            "SKIPPED a_full_disk_fails_commits_cleanly: cannot mount a tmpfs here (needs root)"
        );
        return;
    };
    let opts = VaultOptions {
        rollback_dir: Some(tmp.path().join("state")),
        ..VaultOptions::default()
    };
    let backend = || Arc::new(FileBackend::new(mnt.join("vault")));
    let v = Vault::create(backend(), &pass(), cheap_kdf(), opts.clone()).unwrap();
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..1000u32 {
        let mut b = Batch::new();
        b.set(
            &format!("k{i}"),
            secret(&[i as u8; 8000]),
            SetOptions::default(),
        );
        match v.commit(b) {
            Ok(_) => acknowledged.push(i),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let e = full.expect("a 256 KiB file system never filled");
    assert!(matches!(e, Error::StorageFull { .. }), "{e:?}");
    assert!(!acknowledged.is_empty());
    // Compaction needs room for a second copy: it must fail cleanly too.
    let c = v.compact();
    assert!(matches!(c, Err(Error::StorageFull { .. })), "{c:?}");
    // The handle still works for reads, and a small write may still fit after the failure.
    assert!(v.get("k0").is_ok());
    drop(v);
    let names = file_names(&mnt.join("vault"));
    let v = Vault::open(backend(), &pass(), opts).unwrap();
    let after = file_names(&mnt.join("vault"));
    assert!(
        after.iter().all(|n| !n.ends_with(".tmp")),
        "temp files left after reopen: {after:?} (before: {names:?})"
    );
    for i in &acknowledged {
        assert_eq!(
            v.get(&format!("k{i}")).unwrap().value.expose_secret(),
            &[*i as u8; 8000][..]
        );
    }
    assert_eq!(v.list(false).unwrap().len(), acknowledged.len());
    v.verify().unwrap();
}

#[test]
fn a_forged_or_foreign_rollback_record_is_refused() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let id = v.vault_id();
    drop(v);
    let record = d.state_dir().join(format!("{}.rollback", id.to_hex()));
    let good = std::fs::read(&record).unwrap();
    // Forging a lower generation without the key: both slots' MACs fail.
    let mut forged = good.clone();
    for slot in [32usize, 88] {
        forged[slot + 16] = 0; // generation, low byte
        forged[slot + 17] ^= 0xff;
    }
    std::fs::write(&record, &forged).unwrap();
    let r = d.open();
    assert!(
        matches!(&r, Err(Error::Integrity { object, .. }) if object.contains("rollback record")),
        "{r:?}"
    );
    // A record naming another vault.
    let mut foreign = good.clone();
    foreign[16] ^= 1;
    std::fs::write(&record, &foreign).unwrap();
    assert!(matches!(d.open(), Err(Error::Integrity { .. })));
    // Garbage.
    std::fs::write(&record, b"not a record").unwrap();
    assert!(matches!(d.open(), Err(Error::Integrity { .. })));
    // The explicit acceptance path repairs it (and records that it did).
    let accepted = Vault::open(
        d.backend(),
        &pass(),
        VaultOptions {
            accept_rollback: true,
            ..d.options()
        },
    );
    drop(accepted.unwrap());
    let v = d.open().unwrap();
    assert_eq!(
        v.verify().unwrap().recorded_generation,
        Some(v.generation())
    );
    // A torn write of one slot leaves the other: still opens.
    drop(v);
    let mut torn = std::fs::read(&record).unwrap();
    for b in &mut torn[32..88] {
        *b = 0;
    }
    std::fs::write(&record, &torn).unwrap();
    d.open().unwrap();
}
