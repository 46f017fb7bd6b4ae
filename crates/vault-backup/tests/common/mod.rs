//! What the vault-backup integration tests share: a restored vault's maker, and a vault's
//! whole logical contents (secrets with every kept version's value and metadata, keys) to
//! compare a restore with its source.
#![allow(dead_code, clippy::unwrap_used)] // test code; not every test uses every helper

use std::path::Path;
use std::sync::Arc;

use vault_store::{FileBackend, Vault, VaultOptions};
use vault_testkit::{cheap_kdf, pass};

pub fn make(state: &Path) -> impl Fn(&Path) -> vault_store::Result<Vault> + '_ {
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

pub type Contents = (
    Vec<(
        vault_store::SecretInfo,
        Vec<vault_store::VersionInfo>,
        Vec<Vec<u8>>,
    )>,
    Vec<vault_store::KeyInfo>,
);

pub fn contents(v: &Vault) -> Contents {
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
