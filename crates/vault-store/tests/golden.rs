//! Golden files: a vault written by format version 1 (`tests/data/v1/vault`, with its passphrase
//! and contents in `tests/data/v1/README.md`) must open, read back exactly and accept writes in
//! every later build. A format change that breaks old vaults cannot land silently. Golden files
//! are never regenerated: a new version adds `data/v2` beside this one.
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
use std::sync::Arc;

use common::*;
use vault_store::{
    Algorithm, FileBackend, KeySpec, KeyState, SecretBytes, SetOptions, Vault, VaultOptions,
};

const PASSPHRASE: &[u8] = b"golden passphrase v1";
const RECOVERY: &[u8] = b"golden recovery v1";

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1/vault")
}

/// Writes the golden vault. Run once, by hand, when the version-1 format was frozen:
/// `cargo test -p vault-store --test golden -- --ignored write_golden_v1`. Never again.
#[test]
#[ignore = "writes the golden files; they are never regenerated"]
fn write_golden_v1() {
    let dir = golden_dir();
    assert!(!dir.exists(), "golden files are never regenerated");
    let v = Vault::create(
        Arc::new(FileBackend::new(&dir)),
        &SecretBytes::from_slice(PASSPHRASE),
        cheap_kdf(),
        VaultOptions::default(),
    )
    .unwrap();
    let tags = |k: &str, v: &str| SetOptions {
        tags: vec![vault_store::Tag {
            key: k.into(),
            value: v.into(),
        }],
        ..SetOptions::default()
    };
    v.set("db/password", secret(b"hunter2"), tags("env", "prod"))
        .unwrap();
    v.set(
        "db/password",
        secret(b"correct horse"),
        SetOptions::default(),
    )
    .unwrap();
    v.set("api/token", secret(&[0, 1, 2, 255]), SetOptions::default())
        .unwrap();
    v.set("old/secret", secret(b"gone"), SetOptions::default())
        .unwrap();
    v.delete("old/secret").unwrap();
    // The golden files hold a key version from before keys had settings records; a vault
    // generated now holds a key with settings. Both read back through `key_versions`.
    v.create_key("signing", KeySpec::new(Algorithm::Ed25519))
        .unwrap();
    v.add_passphrase(
        &SecretBytes::from_slice(PASSPHRASE),
        &SecretBytes::from_slice(RECOVERY),
        cheap_kdf(),
    )
    .unwrap();
    v.compact().unwrap();
    v.rotate_master_key(&SecretBytes::from_slice(PASSPHRASE), true)
        .unwrap();
    v.set(
        "after/rotation",
        secret(b"still here"),
        SetOptions::default(),
    )
    .unwrap();
}

fn check(v: &Vault) {
    let get = |n: &str| v.get(n).unwrap().value.expose_secret().to_vec();
    assert_eq!(get("db/password"), b"correct horse");
    assert_eq!(
        v.get_version("db/password", 1)
            .unwrap()
            .value
            .expose_secret(),
        b"hunter2"
    );
    let history = v.history("db/password").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].tags[0].key, "env");
    assert_eq!(get("api/token"), [0, 1, 2, 255]);
    assert_eq!(get("after/rotation"), b"still here");
    assert!(v.get("old/secret").is_err());
    let names: Vec<_> = v.list(true).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["after/rotation", "api/token", "db/password", "old/secret"]
    );
    let versions = v.key_versions("signing").unwrap();
    assert_eq!(versions[0].state, KeyState::Active);
    let report = v.verify().unwrap();
    assert!(!report.torn_tail);
}

#[test]
fn the_version_1_golden_vault_opens_reads_back_and_takes_writes() {
    // Reading changes none of its files (a copy: reads append to the audit trail, which is not
    // to be written into the source tree).
    let read_dir = tempfile::tempdir().unwrap();
    copy_dir(&golden_dir(), read_dir.path());
    let before: Vec<_> = file_names(read_dir.path())
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(read_dir.path().join(&n)).unwrap()))
        .collect();
    let v = Vault::open(
        Arc::new(FileBackend::new(read_dir.path())),
        &SecretBytes::from_slice(PASSPHRASE),
        VaultOptions {
            rollback_dir: Some(read_dir.path().join("state")),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    check(&v);
    drop(v);
    for (name, bytes) in &before {
        assert_eq!(
            &std::fs::read(read_dir.path().join(name)).unwrap(),
            bytes,
            "{name}"
        );
    }
    // A copy takes writes, and its slot count and epoch are as written.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&golden_dir(), &tmp.path().join("vault"));
    let v = Vault::open(
        Arc::new(FileBackend::new(tmp.path().join("vault"))),
        &SecretBytes::from_slice(PASSPHRASE),
        VaultOptions {
            rollback_dir: Some(tmp.path().join("state")),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    assert_eq!(v.slots().len(), 1, "the rotation dropped the recovery slot");
    check(&v);
    v.set("new", secret(b"written later"), SetOptions::default())
        .unwrap();
    v.compact().unwrap();
    assert_eq!(
        v.get("new").unwrap().value.expose_secret(),
        b"written later"
    );
    assert_eq!(
        v.get("db/password").unwrap().value.expose_secret(),
        b"correct horse"
    );
    v.verify().unwrap();
    // The recovery passphrase was dropped by the rotation, as written.
    assert!(
        Vault::open(
            Arc::new(FileBackend::new(tmp.path().join("vault"))),
            &SecretBytes::from_slice(RECOVERY),
            VaultOptions::default(),
        )
        .is_err()
    );
}

/// The upgrade of a version-1 vault (made before the index existed) is the writing of its index
/// (`Vault::checkpoint`, `vault upgrade`): the vault's own files stay byte for byte as they were
/// (an interrupted upgrade leaves the vault as it was, and an older build still reads it), and a
/// later open starts from the index with the same answers.
#[test]
fn the_version_1_golden_vault_upgrades_to_an_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    copy_dir(&golden_dir(), &dir);
    let options = VaultOptions {
        rollback_dir: Some(tmp.path().join("state")),
        ..VaultOptions::default()
    };
    let open = || {
        Vault::open(
            Arc::new(FileBackend::new(&dir)),
            &SecretBytes::from_slice(PASSPHRASE),
            options.clone(),
        )
        .unwrap()
    };
    let before: Vec<_> = file_names(&dir)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect();
    assert!(before.iter().all(|(n, _)| !n.starts_with("index.")));
    open().checkpoint().unwrap();
    let index = dir.join("index.1");
    assert!(index.exists(), "{:?}", file_names(&dir));
    for (name, bytes) in &before {
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), bytes, "{name}");
    }
    check(&open());
    // Removing the index goes back to reading the log whole, with the same answers.
    std::fs::remove_file(&index).unwrap();
    check(&open());
}
