//! Export files: keys and secrets round-trip between vaults in both encodings with everything
//! intact; each bad file (wrong passphrase, changed, cut short, too much KDF work, newer version)
//! is its own typed error; conflicts, renames and replacement; nothing changes before all is
//! checked.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::sync::Arc;

use common::*;
use vault_store::{
    Algorithm, Error, ExportFileError, ExportSelection, FormatError, ImportOptions, KdfParams,
    KeyError, KeyOps, KeySpec, KeyState, MemoryBackend, RotateOptions, SetOptions, UseOptions,
    Vault, VaultOptions,
};

fn vault() -> Vault {
    Vault::create(
        Arc::new(MemoryBackend::new()),
        &pass(),
        cheap_kdf(),
        VaultOptions::default(),
    )
    .unwrap()
}

fn kdf() -> KdfParams {
    KdfParams::for_key(64, 1, 1).unwrap()
}

const EXPORT_PASS: &[u8] = b"export passphrase";

fn source() -> (Vault, Vec<u8>) {
    let v = vault();
    let mut spec = KeySpec::new(Algorithm::XChaCha20Poly1305);
    spec.rotate_every_ms = Some(86_400_000);
    spec.allowed = Some(
        KeyOps::ENCRYPT
            .with(KeyOps::DECRYPT)
            .with(KeyOps::EXPORT)
            .with(KeyOps::REWRAP),
    );
    v.create_key("pay", spec).unwrap();
    let t = v.encrypt("pay", b"card", b"ad").unwrap();
    v.rotate_key("pay", RotateOptions::default()).unwrap();
    v.rotate_key("pay", RotateOptions::default()).unwrap();
    v.destroy_key_version("pay", 2).unwrap();
    v.set_key_version_state("pay", 1, KeyState::Disabled)
        .unwrap();
    v.set_key_floors("pay", Some(1), Some(3)).unwrap();
    v.create_key("ed", KeySpec::new(Algorithm::Ed25519))
        .unwrap();
    v.set("db/pw", secret(b"one"), tags("env", "prod")).unwrap();
    v.set("db/pw", secret(b"two"), SetOptions::default())
        .unwrap();
    v.set("gone", secret(b"x"), SetOptions::default()).unwrap();
    v.delete("gone").unwrap();
    (v, t)
}

fn tags(k: &str, val: &str) -> SetOptions {
    SetOptions {
        tags: vec![vault_store::Tag {
            key: k.into(),
            value: val.into(),
        }],
        ..SetOptions::default()
    }
}

fn all() -> ExportSelection {
    ExportSelection::default()
}

fn export_err(r: Result<impl std::fmt::Debug, Error>) -> ExportFileError {
    match r {
        Err(Error::Export(e)) => e,
        other => panic!("expected an export file error, got {other:?}"),
    }
}

#[test]
fn keys_and_secrets_round_trip_in_both_encodings() {
    let (v, token) = source();
    let file = v.export(&all(), EXPORT_PASS, kdf()).unwrap().file;
    let json = vault_store::export_to_json(&file).unwrap();
    for bytes in [file.clone(), json.into_bytes()] {
        let w = vault();
        let report = w
            .import_export(&bytes, EXPORT_PASS, &ImportOptions::default())
            .unwrap();
        assert_eq!(report.keys, ["ed", "pay"]);
        assert_eq!(report.secrets, ["db/pw", "gone"]);
        assert_eq!(
            w.key("pay").unwrap(),
            v.key("pay").unwrap(),
            "every version, state, floor, policy and time"
        );
        assert_eq!(w.key("ed").unwrap(), v.key("ed").unwrap());
        assert_eq!(
            w.public_key("ed", None).unwrap(),
            v.public_key("ed", None).unwrap()
        );
        // Version 1 is disabled in both: re-enable it in the copy and its old token opens.
        w.set_key_version_state("pay", 1, KeyState::Deactivated)
            .unwrap();
        assert_eq!(
            w.decrypt("pay", &token, b"ad", UseOptions::default())
                .unwrap()
                .expose_secret(),
            b"card"
        );
        let t3 = v.encrypt("pay", b"new", b"").unwrap();
        assert_eq!(
            w.decrypt("pay", &t3, b"", UseOptions::default())
                .unwrap()
                .expose_secret(),
            b"new"
        );
        assert_eq!(w.history("db/pw").unwrap(), v.history("db/pw").unwrap());
        assert_eq!(
            w.get_version("db/pw", 1).unwrap().value.expose_secret(),
            b"one"
        );
        assert_eq!(
            w.list(true).unwrap(),
            v.list(true).unwrap(),
            "the deleted one stays deleted"
        );
        w.verify().unwrap();
    }
}

#[test]
fn each_bad_file_has_its_own_error() {
    let (v, _) = source();
    let file = v.export(&all(), EXPORT_PASS, kdf()).unwrap().file;
    let w = vault();
    let opts = ImportOptions::default();
    let before = w.generation();
    assert!(matches!(
        export_err(w.import_export(&file, b"wrong", &opts)),
        ExportFileError::WrongPassphrase
    ));
    let mut changed = file.clone();
    let last = changed.len() - 20;
    changed[last] ^= 1;
    assert!(matches!(
        export_err(w.import_export(&changed, EXPORT_PASS, &opts)),
        ExportFileError::Tampered
    ));
    for cut in [0, 10, 60, file.len() - 1] {
        assert!(
            matches!(
                export_err(w.import_export(&file[..cut], EXPORT_PASS, &opts)),
                ExportFileError::Format(_)
            ),
            "cut at {cut}"
        );
    }
    let mut newer = file.clone();
    newer[12] = 2;
    assert!(matches!(
        export_err(w.import_export(&newer, EXPORT_PASS, &opts)),
        ExportFileError::Format(FormatError::UnsupportedVersion { .. })
    ));
    let json =
        vault_store::export_to_json(&file)
            .unwrap()
            .replacen("\"version\":1", "\"version\":2", 1);
    assert!(matches!(
        export_err(w.import_export(json.as_bytes(), EXPORT_PASS, &opts)),
        ExportFileError::Format(FormatError::UnsupportedVersion { .. })
    ));
    // A file asking for 2 GiB of Argon2id memory is refused before any work is done.
    let mut greedy = file.clone();
    greedy[16..20].copy_from_slice(&(2u32 * 1024 * 1024).to_le_bytes());
    let t = std::time::Instant::now();
    assert!(matches!(
        export_err(w.import_export(&greedy, EXPORT_PASS, &opts)),
        ExportFileError::KdfLimit(_)
    ));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "no derivation was run"
    );
    assert!(matches!(
        export_err(w.import_export(b"{\"format\":\"nope\"}", EXPORT_PASS, &opts)),
        ExportFileError::Format(_)
    ));
    assert_eq!(w.generation(), before, "nothing was written");
    assert!(w.keys().unwrap().is_empty());
}

/// An export naming a secret or key twice is malformed, not half imported (hostile pass).
#[test]
fn a_name_twice_in_an_export_is_refused() {
    use vault_format::export::{ExportContents, ExportedSecret, seal};
    let (v, _) = source();
    let once = v
        .export(
            &ExportSelection {
                keys: Some(Vec::new()),
                secrets: Some(vec!["db/pw".into()]),
            },
            EXPORT_PASS,
            kdf(),
        )
        .unwrap()
        .file;
    let c = Vault::read_export(&once, EXPORT_PASS, &vault_store::KdfLimit::DEFAULT).unwrap();
    let dup = |s: &ExportedSecret| ExportedSecret {
        name: s.name.clone(),
        deleted: s.deleted,
        versions: s
            .versions
            .iter()
            .map(|x| vault_format::payload::SecretVersionPayload {
                name: x.name.clone(),
                version: x.version,
                created_ms: x.created_ms,
                tags: x.tags.clone(),
                value: x.value.duplicate(),
            })
            .collect(),
    };
    let twice = ExportContents {
        exported_ms: 0,
        keys: Vec::new(),
        secrets: vec![dup(&c.secrets[0]), dup(&c.secrets[0])],
    };
    let file = seal(&twice, EXPORT_PASS, kdf()).unwrap();
    let w = vault();
    assert!(matches!(
        export_err(w.import_export(&file, EXPORT_PASS, &ImportOptions::default())),
        ExportFileError::Format(_)
    ));
    assert!(w.list(true).unwrap().is_empty());
}

#[test]
fn conflicts_renames_replacement_and_policy() {
    let (v, _) = source();
    let pay = v
        .export(&ExportSelection::keys(&["pay".into()]), EXPORT_PASS, kdf())
        .unwrap()
        .file;
    let w = vault();
    w.create_key("pay", KeySpec::new(Algorithm::XChaCha20Poly1305))
        .unwrap();
    for _ in 0..4 {
        w.rotate_key("pay", RotateOptions::default()).unwrap();
    }
    let before = w.generation();
    assert!(matches!(
        w.import_export(&pay, EXPORT_PASS, &ImportOptions::default()),
        Err(Error::Key(KeyError::Exists { .. }))
    ));
    assert_eq!(w.generation(), before);
    let renamed = ImportOptions {
        rename: Some("pay-old".into()),
        ..ImportOptions::default()
    };
    w.import_export(&pay, EXPORT_PASS, &renamed).unwrap();
    assert_eq!(
        w.key("pay-old").unwrap().versions,
        v.key("pay").unwrap().versions
    );
    let replace = ImportOptions {
        replace: true,
        ..ImportOptions::default()
    };
    let old5 = w.encrypt("pay", b"old", b"").unwrap();
    w.import_export(&pay, EXPORT_PASS, &replace).unwrap();
    assert_eq!(w.key("pay").unwrap().primary, v.key("pay").unwrap().primary);
    // The file's key is another key (another id): the replaced key's tokens say so.
    assert!(matches!(
        w.decrypt("pay", &old5, b"", UseOptions::default()),
        Err(Error::Key(KeyError::WrongKey { .. }))
    ));
    // The replaced key's versions 4 and 5 are destroyed, not forgotten: their numbers stay
    // taken, and a token of the old version 5 is refused as destroyed, never opened by a new
    // version 5 (hostile pass finding).
    let replaced = w.key("pay").unwrap();
    assert_eq!(replaced.versions.len(), 5);
    assert_eq!(replaced.version(4).unwrap().state, KeyState::Destroyed);
    assert_eq!(replaced.version(5).unwrap().state, KeyState::Destroyed);
    assert_eq!(w.rotate_key("pay", RotateOptions::default()).unwrap(), 6);
    // The same key put back from its own older export: what it made since is refused as
    // destroyed.
    let own = w
        .export(&ExportSelection::keys(&["pay".into()]), EXPORT_PASS, kdf())
        .unwrap()
        .file;
    w.rotate_key("pay", RotateOptions::default()).unwrap();
    let t7 = w.encrypt("pay", b"seven", b"").unwrap();
    w.import_export(&own, EXPORT_PASS, &replace).unwrap();
    assert!(matches!(
        w.decrypt("pay", &t7, b"", UseOptions::default()),
        Err(Error::Key(KeyError::Destroyed { version: 7, .. }))
    ));
    assert_eq!(w.rotate_key("pay", RotateOptions::default()).unwrap(), 8);

    v.create_key("kept", {
        let mut s = KeySpec::new(Algorithm::HmacSha256);
        s.allowed = Some(KeyOps::SIGN.with(KeyOps::VERIFY));
        s
    })
    .unwrap();
    assert!(matches!(
        v.export(&ExportSelection::keys(&["kept".into()]), EXPORT_PASS, kdf()),
        Err(Error::Key(KeyError::Forbidden { op: "export", .. }))
    ));
    let every = v.export(&all(), EXPORT_PASS, kdf()).unwrap();
    assert_eq!(every.skipped_keys, ["kept"]);
    assert!(matches!(
        v.export(
            &ExportSelection {
                keys: Some(Vec::new()),
                secrets: Some(vec!["nope".into()])
            },
            EXPORT_PASS,
            kdf()
        ),
        Err(Error::NotFound { .. })
    ));
}
