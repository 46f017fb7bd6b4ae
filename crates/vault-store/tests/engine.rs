//! Behaviour of the engine through its public API, on both backends.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use common::*;
use vault_store::{Error, KeyState, MemoryBackend, SetOptions, Tag, Vault, VaultOptions};

fn exercise(v: &Vault) {
    assert_eq!(v.set("a", secret(b"1"), SetOptions::default()).unwrap(), 1);
    assert_eq!(v.set("a", secret(b"2"), SetOptions::default()).unwrap(), 2);
    assert_eq!(v.get("a").unwrap().value.expose_secret(), b"2");
    assert_eq!(v.get_version("a", 1).unwrap().value.expose_secret(), b"1");
    assert!(matches!(v.get("missing"), Err(Error::NotFound { .. })));
    assert!(matches!(v.get_version("a", 9), Err(Error::NotFound { .. })));
    // Check-and-set.
    let stale = v.set(
        "a",
        secret(b"x"),
        SetOptions {
            expected_version: Some(1),
            ..SetOptions::default()
        },
    );
    assert!(matches!(
        stale,
        Err(Error::Conflict {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    assert_eq!(v.get("a").unwrap().value.expose_secret(), b"2");
    // Soft delete and undelete.
    v.delete("a").unwrap();
    assert!(matches!(v.get("a"), Err(Error::NotFound { .. })));
    assert!(v.list(false).unwrap().is_empty());
    assert_eq!(v.list(true).unwrap().len(), 1);
    assert_eq!(v.history("a").unwrap().len(), 2);
    v.undelete("a").unwrap();
    assert_eq!(v.get("a").unwrap().value.expose_secret(), b"2");
    // Destroy.
    v.set("b", secret(b"bee"), SetOptions::default()).unwrap();
    v.destroy("b").unwrap();
    assert!(matches!(v.history("b"), Err(Error::NotFound { .. })));
    assert_eq!(
        v.set("b", secret(b"again"), SetOptions::default()).unwrap(),
        1
    );
    // Tags and exact bytes.
    let value: Vec<u8> = (0..=255u8).collect();
    let tags = vec![Tag {
        key: "env".into(),
        value: "prod".into(),
    }];
    v.set(
        "bin",
        secret(&value),
        SetOptions {
            tags: tags.clone(),
            ..SetOptions::default()
        },
    )
    .unwrap();
    let got = v.get("bin").unwrap();
    assert_eq!(got.value.expose_secret(), &value[..]);
    assert_eq!(got.tags, tags);
    // Keys.
    let k = v
        .create_key(
            "signing",
            vault_store::KeySpec::new(vault_store::Algorithm::Ed25519),
        )
        .unwrap();
    assert_eq!(k.primary, 1);
    let public = v.public_key("signing", None).unwrap();
    assert_eq!(v.rotate_key("signing", Default::default()).unwrap(), 2);
    v.set_key_version_state("signing", 1, KeyState::Disabled)
        .unwrap();
    assert_eq!(
        v.key_versions("signing").unwrap()[0].state,
        KeyState::Disabled
    );
    assert_eq!(v.public_key("signing", Some(1)).unwrap(), public);
}

#[test]
fn file_backend_round_trip_and_reopen() {
    let d = TestDir::new();
    let v = d.create();
    exercise(&v);
    let generation = v.generation();
    drop(v);
    let v = d.open().unwrap();
    assert_eq!(v.generation(), generation);
    assert_eq!(v.get("a").unwrap().value.expose_secret(), b"2");
    assert_eq!(v.get("b").unwrap().version, 1);
    let report = v.verify().unwrap();
    assert_eq!(report.generation, generation);
    assert_eq!(report.recorded_generation, Some(generation));
    v.compact().unwrap();
    drop(v);
    let v = d.open().unwrap();
    assert_eq!(v.get_version("a", 1).unwrap().value.expose_secret(), b"1");
    assert_eq!(v.verify().unwrap().superseded_bytes, 0);
}

#[test]
fn memory_backend_round_trip_and_reopen() {
    let (b, v) = memory();
    exercise(&v);
    let v2 = Vault::open(b, &pass(), VaultOptions::default()).unwrap();
    assert_eq!(v2.get("a").unwrap().value.expose_secret(), b"2");
}

#[test]
fn wrong_passphrase_is_its_own_error() {
    let d = TestDir::new();
    drop(d.create());
    let r = Vault::open(d.backend(), &secret(b"nope"), d.options());
    assert!(matches!(r, Err(Error::WrongPassphrase)), "{r:?}");
}

#[test]
fn files_are_owner_only_from_creation() {
    let d = TestDir::new();
    let v = d.create();
    v.set("x", secret(b"y"), SetOptions::default()).unwrap();
    v.compact().unwrap();
    let dir_mode = std::fs::metadata(d.vault_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    for e in std::fs::read_dir(d.vault_dir()).unwrap() {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?}", e.path());
    }
    for e in std::fs::read_dir(d.state_dir()).unwrap() {
        let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn passphrase_change_add_and_remove_slots() {
    let d = TestDir::new();
    let v = d.create();
    v.set("k", secret(b"v"), SetOptions::default()).unwrap();
    v.change_passphrase(&pass(), &secret(b"new"), None).unwrap();
    assert!(matches!(d.open(), Err(Error::WrongPassphrase)));
    let recovery = v
        .add_passphrase(&secret(b"new"), &secret(b"recovery"), cheap_kdf())
        .unwrap();
    for p in [&b"new"[..], b"recovery"] {
        let v2 = Vault::open(d.backend(), &secret(p), d.options()).unwrap();
        assert_eq!(v2.get("k").unwrap().value.expose_secret(), b"v");
    }
    // Rotation refuses to silently drop the recovery slot.
    assert!(matches!(
        v.rotate_master_key(&secret(b"new"), false),
        Err(Error::Invalid { .. })
    ));
    v.remove_slot(&secret(b"new"), recovery).unwrap();
    assert!(matches!(
        Vault::open(d.backend(), &secret(b"recovery"), d.options()),
        Err(Error::WrongPassphrase)
    ));
    assert!(matches!(
        v.remove_slot(&secret(b"new"), 0),
        Err(Error::Invalid { .. })
    ));
    // The slot the caller opens with is refused even when another remains; another slot's
    // holder removes it.
    let second = v
        .add_passphrase(&secret(b"new"), &secret(b"second"), cheap_kdf())
        .unwrap();
    let r = v.remove_slot(&secret(b"second"), second);
    assert!(
        matches!(&r, Err(Error::Invalid { reason, .. }) if reason.contains("the one this passphrase opens")),
        "{r:?}"
    );
    v.remove_slot(&secret(b"second"), 0).unwrap();
    assert!(matches!(d.open(), Err(Error::WrongPassphrase)));
    let v2 = Vault::open(d.backend(), &secret(b"second"), d.options()).unwrap();
    assert_eq!(v2.slots().len(), 1);
}

#[test]
fn master_key_rotation_keeps_data_and_changes_every_ciphertext() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..20 {
        v.set(
            &format!("s{i}"),
            secret(format!("value {i}").as_bytes()),
            SetOptions::default(),
        )
        .unwrap();
    }
    let before = std::fs::read(log_path(&d.vault_dir())).unwrap();
    let gen_before = v.generation();
    v.rotate_master_key(&pass(), false).unwrap();
    assert!(v.generation() > gen_before);
    let after_path = log_path(&d.vault_dir());
    assert!(after_path.ends_with("log.1"));
    let after = std::fs::read(after_path).unwrap();
    // No 32-byte window of the old log's ciphertexts survives in the new log.
    let windows: std::collections::HashSet<&[u8]> = before[40..].windows(32).step_by(7).collect();
    assert!(after.windows(32).all(|w| !windows.contains(w)));
    v.set("after", secret(b"x"), SetOptions::default()).unwrap();
    drop(v);
    let v = d.open().unwrap();
    assert_eq!(v.get("s7").unwrap().value.expose_secret(), b"value 7");
    assert_eq!(v.get("after").unwrap().value.expose_secret(), b"x");
    v.verify().unwrap();
}

#[test]
fn handles_see_each_others_commits() {
    let d = TestDir::new();
    let a = d.create();
    let b = d.open().unwrap();
    a.set("x", secret(b"1"), SetOptions::default()).unwrap();
    assert_eq!(b.get("x").unwrap().value.expose_secret(), b"1");
    b.set("x", secret(b"2"), SetOptions::default()).unwrap();
    assert_eq!(a.get("x").unwrap().value.expose_secret(), b"2");
    a.compact().unwrap();
    b.set("y", secret(b"3"), SetOptions::default()).unwrap();
    assert_eq!(a.get("y").unwrap().value.expose_secret(), b"3");
    // A stale check-and-set from the other handle conflicts rather than overwriting.
    let r = a.set(
        "x",
        secret(b"stale"),
        SetOptions {
            expected_version: Some(1),
            ..SetOptions::default()
        },
    );
    assert!(matches!(r, Err(Error::Conflict { .. })));
    // Rotation by one handle: the other is told to reopen rather than using a stale key.
    b.rotate_master_key(&pass(), false).unwrap();
    assert!(matches!(a.get("x"), Err(Error::Rekeyed)));
}

#[test]
fn max_versions_prunes_history() {
    let (_b, v) = memory();
    v.set_max_versions(3).unwrap();
    for i in 0..10u8 {
        v.set("x", secret(&[i]), SetOptions::default()).unwrap();
    }
    let h = v.history("x").unwrap();
    assert_eq!(
        h.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    assert!(matches!(v.get_version("x", 7), Err(Error::NotFound { .. })));
}

#[test]
fn names_and_sizes_are_policed() {
    let (_b, v) = memory();
    for bad in ["", " lead", "trail ", "ctl\u{7}", &"n".repeat(257)] {
        assert!(
            matches!(
                v.set(bad, secret(b"x"), SetOptions::default()),
                Err(Error::Invalid { .. })
            ),
            "{bad:?}"
        );
    }
    let big = vec![0u8; (1 << 20) + 1];
    assert!(v.set("big", secret(&big), SetOptions::default()).is_err());
    let max = vec![0xA5u8; 1 << 20];
    v.set("max", secret(&max), SetOptions::default()).unwrap();
    assert_eq!(v.get("max").unwrap().value.expose_secret().len(), 1 << 20);
}

#[test]
fn debug_output_never_shows_values() {
    let (_b, v) = memory();
    v.set("n", secret(b"TOPSECRETVALUE"), SetOptions::default())
        .unwrap();
    let s = v.get("n").unwrap();
    assert!(!format!("{s:?}").contains("TOPSECRETVALUE"));
    assert!(!format!("{v:?}").contains("TOPSECRETVALUE"));
}

#[test]
fn cloned_memory_backends_share_storage() {
    let b = Arc::new(MemoryBackend::new());
    let v = Vault::create(b.clone(), &pass(), cheap_kdf(), VaultOptions::default()).unwrap();
    let other = Vault::open(b, &pass(), VaultOptions::default()).unwrap();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    assert_eq!(other.get("a").unwrap().value.expose_secret(), b"1");
}

#[test]
fn vault_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Vault>();
}

#[test]
fn automatic_compaction_bounds_the_log() {
    let d = TestDir::new();
    let opts = VaultOptions {
        auto_compact_bytes: 64 * 1024,
        ..d.options()
    };
    let v = Vault::create(d.backend(), &pass(), cheap_kdf(), opts.clone()).unwrap();
    v.set_max_versions(2).unwrap();
    for i in 0..2000u32 {
        v.set(
            "hot",
            secret(&[(i % 251) as u8; 200]),
            SetOptions::default(),
        )
        .unwrap();
    }
    let len = std::fs::metadata(log_path(&d.vault_dir())).unwrap().len();
    // 2000 versions of 200 bytes would be over 500 KiB uncompacted.
    assert!(len < 200 * 1024, "log is {len} bytes");
    assert_eq!(
        v.get("hot").unwrap().value.expose_secret(),
        &[(1999 % 251) as u8; 200]
    );
    drop(v);
    let v = Vault::open(d.backend(), &pass(), opts).unwrap();
    assert_eq!(v.history("hot").unwrap().len(), 2);
    v.verify().unwrap();
}

/// Key derivations (Argon2id, slow by design) run on this thread while `f` runs.
fn derivations(f: impl FnOnce()) -> u64 {
    let before = vault_crypto::kdf::derivations_on_this_thread();
    f();
    vault_crypto::kdf::derivations_on_this_thread() - before
}

/// A change authorised by the passphrase the handle was opened with does not derive the old key
/// again: change-passphrase costs two derivations in all (open, new slot), add-passphrase and
/// rotation two, removing a slot one. A passphrase that is not the one remembered, or a slot
/// another handle changed meanwhile, still goes through the key derivation and its checks.
#[test]
fn header_changes_reuse_the_unlock_of_the_open() {
    let d = TestDir::new();
    drop(d.create());
    let new = secret(b"new passphrase");
    let mut v = None;
    assert_eq!(derivations(|| v = Some(d.open().unwrap())), 1);
    let v = v.unwrap();
    assert_eq!(
        derivations(|| {
            v.add_passphrase(&pass(), &secret(b"spare"), cheap_kdf())
                .unwrap();
        }),
        1,
        "only the new slot's key is derived"
    );
    let spare = v.slots().into_iter().find(|s| !s.in_use).unwrap().id;
    assert_eq!(derivations(|| v.remove_slot(&pass(), spare).unwrap()), 0);
    assert_eq!(
        derivations(|| v.rotate_master_key(&pass(), false).unwrap()),
        1
    );
    // Still remembered across the rotation (new master key, same slot and passphrase).
    assert_eq!(
        derivations(|| v.change_passphrase(&pass(), &new, None).unwrap()),
        1
    );
    // The handle's passphrase changed: the old one is refused after a derivation.
    let mut r = Ok(());
    assert!(derivations(|| r = v.change_passphrase(&pass(), &new, None)) >= 1);
    assert!(matches!(r, Err(Error::WrongPassphrase)), "{r:?}");
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    drop(v);
    let reopened = Vault::open(d.backend(), &new, d.options()).unwrap();
    assert_eq!(reopened.get("a").unwrap().value.expose_secret(), b"1");

    // Another handle changes the passphrase this one was opened with: the old passphrase no
    // longer authorises anything, remembered or not.
    let other = Vault::open(d.backend(), &new, d.options()).unwrap();
    other
        .change_passphrase(&new, &secret(b"third"), None)
        .unwrap();
    let r = reopened.add_passphrase(&new, &secret(b"x"), cheap_kdf());
    assert!(matches!(r, Err(Error::WrongPassphrase)), "{r:?}");
}

/// A snapshot larger than one frame may hold (here: frames of 512 bytes of records, as every
/// `TestDir` vault has; in use 64 MiB, against the format's 256 MiB bound on a frame) is written
/// as several frames: compaction and rotation work at any size, keep every value, and leave a log
/// that verifies, that a fresh handle reads back, and whose generation compaction keeps.
#[test]
fn large_snapshots_are_written_as_several_frames() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..40u8 {
        v.set(&format!("s{i}"), secret(&[i; 100]), SetOptions::default())
            .unwrap();
    }
    v.set("s0", secret(b"second"), SetOptions::default())
        .unwrap();
    let generation = v.generation();
    v.compact().unwrap();
    assert_eq!(
        v.generation(),
        generation,
        "compaction keeps the generation"
    );
    let frames = frame_starts(&std::fs::read(log_path(&d.vault_dir())).unwrap()).len();
    assert!(frames >= 8, "{frames} frames");
    let report = v.verify().unwrap();
    assert_eq!(report.frames, frames as u64);
    assert_eq!(report.superseded_bytes, 0);
    let check = |v: &Vault| {
        assert_eq!(v.get("s0").unwrap().value.expose_secret(), b"second");
        assert_eq!(
            v.get_version("s0", 1).unwrap().value.expose_secret(),
            &[0; 100]
        );
        for i in 1..40u8 {
            assert_eq!(
                v.get(&format!("s{i}")).unwrap().value.expose_secret(),
                &[i; 100]
            );
        }
    };
    check(&v);
    check(&d.open().unwrap());
    v.rotate_master_key(&pass(), false).unwrap();
    assert!(v.generation() > generation);
    check(&v);
    let fresh = d.open().unwrap();
    check(&fresh);
    assert_eq!(fresh.generation(), v.generation());
    assert!(fresh.verify().unwrap().frames >= 8);
    // Writes go on after a split snapshot, and a young vault whose generations are fewer than
    // its snapshot's frames moves its generation on instead.
    v.set("after", secret(b"1"), SetOptions::default()).unwrap();
    let young = TestDir::new();
    let y = Vault::create(young.backend(), &pass(), cheap_kdf(), young.options()).unwrap();
    let mut b = vault_store::Batch::new();
    for i in 0..20u8 {
        b.set(&format!("b{i}"), secret(&[i; 100]), SetOptions::default());
    }
    y.commit(b).unwrap();
    let before = y.generation();
    y.compact().unwrap();
    assert!(y.generation() > before, "{} -> {}", before, y.generation());
    let reopened = young.open().unwrap();
    assert_eq!(reopened.generation(), y.generation());
    assert_eq!(
        reopened.get("b19").unwrap().value.expose_secret(),
        &[19; 100]
    );
    reopened.verify().unwrap();
}

/// A handle keeps where each live record is, not the record: a value is read from the log when
/// asked for, found where another handle's compaction moved it, and authenticated on every read,
/// so a record changed on disk after the open is an integrity error for a read and for a
/// compaction (which leaves the log as it was), never a wrong value or a laundered copy.
#[test]
fn values_are_read_from_the_log_when_asked_and_authenticated_each_time() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..20u8 {
        v.set(&format!("s{i}"), secret(&[i; 60]), SetOptions::default())
            .unwrap();
    }
    v.set("s3", secret(b"newer"), SetOptions::default())
        .unwrap();
    let other = d.open().unwrap();
    // The first handle rewrites the log: every record moves.
    v.compact().unwrap();
    assert_eq!(other.get("s3").unwrap().value.expose_secret(), b"newer");
    assert_eq!(
        other.get_version("s3", 1).unwrap().value.expose_secret(),
        &[3; 60]
    );
    for i in 4..20u8 {
        assert_eq!(
            other.get(&format!("s{i}")).unwrap().value.expose_secret(),
            &[i; 60]
        );
    }
    // A last commit of one record, then a byte of its ciphertext flipped in place (same length,
    // same chain MAC at the end of the log: nothing a cheap change check would notice).
    v.set("last", secret(b"the value"), SetOptions::default())
        .unwrap();
    assert_eq!(
        other.get("last").unwrap().value.expose_secret(),
        b"the value"
    );
    let log = log_path(&d.vault_dir());
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() - 32 - 8;
    bytes[at] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    for h in [&v, &other] {
        let e = h.get("last").unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "{e:?}");
        assert_eq!(h.get("s5").unwrap().value.expose_secret(), &[5; 60]);
        let e = h.compact().unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "{e:?}");
        assert_eq!(std::fs::read(&log).unwrap(), bytes, "the log is as it was");
    }
    // A fresh open replays the chain and refuses the changed frame.
    assert!(matches!(d.open(), Err(Error::Integrity { .. })));
}

/// `open_and_verify` is an open and a verify in one pass: the same report as a verify after an
/// open, a handle that works, and the same refusals (damage, a rolled-back copy).
#[test]
fn open_and_verify_is_open_then_verify_in_one_pass() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..10u8 {
        v.set(&format!("s{i}"), secret(&[i; 10]), SetOptions::default())
            .unwrap();
    }
    v.delete("s2").unwrap();
    let (h, report) = Vault::open_and_verify(d.backend(), &pass(), d.options()).unwrap();
    assert_eq!(report, d.open().unwrap().verify().unwrap());
    assert_eq!(report.secrets, 10);
    assert_eq!(h.get("s9").unwrap().value.expose_secret(), &[9; 10]);
    assert!(matches!(h.get("s2"), Err(Error::NotFound { .. })));
    h.set("s9", secret(b"new"), SetOptions::default()).unwrap();
    assert_eq!(v.get("s9").unwrap().value.expose_secret(), b"new");
    // A copy of the vault from before that write is caught as a rollback.
    let old = TestDir::new();
    copy_dir(&d.vault_dir(), &old.vault_dir());
    v.set("later", secret(b"x"), SetOptions::default()).unwrap();
    copy_dir(&old.vault_dir(), &d.vault_dir());
    let r = Vault::open_and_verify(d.backend(), &pass(), d.options());
    assert!(
        matches!(r, Err(Error::RollbackDetected { .. })),
        "{:?}",
        r.err()
    );
    // Damage in the middle of the log.
    let log = log_path(&d.vault_dir());
    let mut bytes = std::fs::read(&log).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&log, &bytes).unwrap();
    let r = Vault::open_and_verify(d.backend(), &pass(), d.options());
    assert!(matches!(r, Err(Error::Integrity { .. })), "{:?}", r.err());
}

/// Compaction and master-key rotation report their progress: steps in order, each frame's
/// records counted, ending at the number of live records.
#[test]
fn compaction_and_rotation_report_progress() {
    use std::sync::Mutex;
    let d = TestDir::new();
    d.create();
    let steps: Arc<Mutex<Vec<vault_store::Step>>> = Arc::default();
    let seen = steps.clone();
    let options = VaultOptions {
        progress: vault_store::Progress::from_fn(move |s| seen.lock().unwrap().push(s)),
        ..d.options()
    };
    let v = Vault::open(d.backend(), &pass(), options).unwrap();
    for i in 0..40 {
        v.set(&format!("s{i}"), secret(&[7; 64]), SetOptions::default())
            .unwrap();
    }
    for what in ["compacting", "rotating the master key"] {
        steps.lock().unwrap().clear();
        if what == "compacting" {
            v.compact().map(drop).unwrap();
        } else {
            v.rotate_master_key(&pass(), false).unwrap();
        }
        let got = steps.lock().unwrap().clone();
        assert!(
            got.len() > 2,
            "{what}: several frames, so several steps: {got:?}"
        );
        assert!(got.iter().all(|s| s.what == what), "{got:?}");
        assert!(got.windows(2).all(|w| w[0].done <= w[1].done), "{got:?}");
        let last = got.last().unwrap();
        assert_eq!(last.done, last.total, "{got:?}");
        assert!(last.total >= 40, "{got:?}");
    }
}
