//! loom models of the engine's in-process concurrency. Built and run only with
//! `RUSTFLAGS="--cfg vault_loom"` (`cargo xtask ci` does this with a bounded preemption count),
//! when every lock in the crate is loom's.
#![cfg(vault_loom)]
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use loom::sync::Arc;
use loom::thread;
use vault_crypto::SecretBytes;
use vault_crypto::kdf::KdfParams;
use vault_store::{Batch, MemoryBackend, SetOptions, Vault, VaultOptions};

fn vault() -> (std::sync::Arc<MemoryBackend>, Vault) {
    let backend = std::sync::Arc::new(MemoryBackend::new());
    let v = Vault::create(
        backend.clone(),
        &SecretBytes::from_slice(b"p"),
        KdfParams::for_key(8, 1, 1).unwrap(),
        VaultOptions::default(),
    )
    .unwrap();
    (backend, v)
}

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn s(v: &[u8]) -> SecretBytes {
    SecretBytes::from_slice(v)
}

/// Two writers and a compaction, interleaved every way: nothing is lost, in memory or on the
/// backend, and generations end exactly two commits on.
#[test]
fn two_writers_and_a_compaction_lose_nothing() {
    loom::model(|| {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (backend, v) = vault();
        let v = Arc::new(v);
        let start = v.generation();
        let a = {
            let v = v.clone();
            thread::spawn(move || v.set("a", s(b"1"), SetOptions::default()).unwrap())
        };
        let b = {
            let v = v.clone();
            thread::spawn(move || v.set("b", s(b"2"), SetOptions::default()).unwrap())
        };
        v.compact().unwrap();
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(v.get("a").unwrap().value.expose_secret(), b"1");
        assert_eq!(v.get("b").unwrap().value.expose_secret(), b"2");
        assert_eq!(v.generation(), start + 2);
        let reopened = Vault::open(backend, &s(b"p"), VaultOptions::default()).unwrap();
        assert_eq!(reopened.get("a").unwrap().value.expose_secret(), b"1");
        assert_eq!(reopened.get("b").unwrap().value.expose_secret(), b"2");
    });
    eprintln!(
        "explored {} interleavings",
        RUNS.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// A reader racing a two-record commit sees both records old or both new, never a mix, and
/// generations it observes never go backwards.
#[test]
fn a_reader_sees_whole_commits_and_monotonic_generations() {
    loom::model(|| {
        let (_backend, v) = vault();
        let mut b = Batch::new();
        b.set("x", s(b"old"), SetOptions::default())
            .set("y", s(b"old"), SetOptions::default());
        v.commit(b).unwrap();
        let v = Arc::new(v);
        let writer = {
            let v = v.clone();
            thread::spawn(move || {
                let mut b = Batch::new();
                b.set("x", s(b"new"), SetOptions::default()).set(
                    "y",
                    s(b"new"),
                    SetOptions::default(),
                );
                v.commit(b).unwrap();
            })
        };
        let g1 = v.generation();
        let listed = v.list(false).unwrap();
        let g2 = v.generation();
        assert!(g2 >= g1, "generation went backwards");
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed[0].latest, listed[1].latest,
            "saw half a commit: {listed:?}"
        );
        writer.join().unwrap();
        assert_eq!(v.get("x").unwrap().value.expose_secret(), b"new");
    });
}

/// A reader in one handle racing a compaction and then a master-key rotation by another handle
/// on the same storage (as two processes would): every read returns the committed value or is
/// told to reopen, never stale or damaged data, and a fresh open afterwards finds everything.
#[test]
fn a_reader_racing_a_compaction_and_a_rotation() {
    loom::model(|| {
        let (backend, v) = vault();
        v.set("a", s(b"1"), SetOptions::default()).unwrap();
        let reader = Vault::open(backend.clone(), &s(b"p"), VaultOptions::default()).unwrap();
        let writer = Arc::new(v);
        let t = {
            let w = writer.clone();
            thread::spawn(move || {
                w.compact().unwrap();
                w.rotate_master_key(&s(b"p"), false).unwrap();
            })
        };
        for _ in 0..2 {
            match reader.get("a") {
                Ok(secret) => assert_eq!(secret.value.expose_secret(), b"1"),
                Err(vault_store::Error::Rekeyed) => {}
                Err(e) => panic!("reader got {e}"),
            }
        }
        t.join().unwrap();
        let fresh = Vault::open(backend, &s(b"p"), VaultOptions::default()).unwrap();
        assert_eq!(fresh.get("a").unwrap().value.expose_secret(), b"1");
        fresh.verify().unwrap();
    });
}

/// A reader in one handle racing a checkpoint and a commit by another: every read gives a
/// committed value, and a fresh open (from the checkpoint and the log after it) finds the last.
#[test]
fn a_reader_racing_a_checkpoint() {
    loom::model(|| {
        let (backend, v) = vault();
        v.set("a", s(b"1"), SetOptions::default()).unwrap();
        let reader = Vault::open(backend.clone(), &s(b"p"), VaultOptions::default()).unwrap();
        let writer = Arc::new(v);
        let t = {
            let w = writer.clone();
            thread::spawn(move || {
                w.checkpoint().unwrap();
                w.set("a", s(b"2"), SetOptions::default()).unwrap();
            })
        };
        for _ in 0..2 {
            let got = reader.get("a").unwrap();
            let got = got.value.expose_secret();
            assert!(got == b"1" || got == b"2", "{got:?}");
        }
        t.join().unwrap();
        let fresh = Vault::open(backend, &s(b"p"), VaultOptions::default()).unwrap();
        assert_eq!(fresh.get("a").unwrap().value.expose_secret(), b"2");
        fresh.verify().unwrap();
    });
}
