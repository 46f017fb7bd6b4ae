//! Managed keys: versions with lifecycle states, stored like secrets (storage and API only; the
//! key-management issue adds rotation, policies and the CLI).

use vault_crypto::SecretBytes;
use vault_format::payload::{KeyState, KeyVersionPayload, Payload};

use crate::batch::{Batch, Op, Prepare, check_name};
use crate::engine::payload_of;
use crate::sync;
use crate::vault::Vault;
use crate::{Error, Result};

pub use crate::engine::index::KeyVersionInfo;

impl Vault {
    /// Adds a new version of managed key `name`; returns its version.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad name, algorithm or material; storage errors.
    pub fn add_key_version(
        &self,
        name: &str,
        algorithm: &str,
        material: SecretBytes,
        state: KeyState,
    ) -> Result<u32> {
        let mut b = Batch::new();
        b.ops.push(Op::KeyVersion {
            name: name.to_string(),
            algorithm: algorithm.to_string(),
            material,
            state,
            version: None,
        });
        self.commit(b)?
            .first()
            .copied()
            .ok_or_else(|| Error::invalid("key", "nothing was written"))
    }

    /// Changes the lifecycle state of a key version.
    ///
    /// # Errors
    /// [`Error::NotFound`]; storage errors.
    pub fn set_key_state(&self, name: &str, version: u32, state: KeyState) -> Result<()> {
        let (material, algorithm) = self.key_material(name, version)?;
        let mut b = Batch::new();
        b.ops.push(Op::KeyVersion {
            name: name.to_string(),
            algorithm,
            material,
            state,
            version: Some(version),
        });
        self.commit(b).map(|_| ())
    }

    /// Versions of managed key `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn key_versions(&self, name: &str) -> Result<Vec<KeyVersionInfo>> {
        self.e.refresh()?;
        let st = sync::read(&self.e.state);
        let k = st.index.keys.get(name).ok_or_else(|| Error::NotFound {
            what: format!("key {name:?}"),
        })?;
        Ok(k.values().map(|m| m.info.clone()).collect())
    }

    /// Names of the managed keys.
    ///
    /// # Errors
    /// If catching up with other writers fails.
    pub fn key_names(&self) -> Result<Vec<String>> {
        self.e.refresh()?;
        Ok(sync::read(&self.e.state)
            .index
            .keys
            .keys()
            .cloned()
            .collect())
    }

    /// Material and algorithm of a key version.
    ///
    /// # Errors
    /// [`Error::NotFound`]; integrity errors.
    pub fn key_material(&self, name: &str, version: u32) -> Result<(SecretBytes, String)> {
        let (env, keys, ()) = self.e.fetch(|st| {
            let m = st
                .index
                .keys
                .get(name)
                .and_then(|k| k.get(&version))
                .ok_or_else(|| Error::NotFound {
                    what: format!("version {version} of key {name:?}"),
                })?;
            Ok((m.env, ()))
        })?;
        match payload_of(&env, &keys, &self.e.vault_id)? {
            Payload::KeyVersion(p) if p.name == name && p.version == version => {
                Ok((p.material, p.algorithm))
            }
            _ => Err(Error::integrity(
                format!("record {}", env.sequence),
                "expected a key version",
            )),
        }
    }
}

/// Prepares a key version: a new one (`version` `None`: the next number) or a state change of an
/// existing one (keeping its creation time).
pub(crate) fn prepare_version(
    p: &mut Prepare<'_>,
    name: &str,
    algorithm: &str,
    material: &SecretBytes,
    state: KeyState,
    version: Option<u32>,
) -> Result<()> {
    check_name(name)?;
    let existing = p.st.index.keys.get(name);
    let (version, created_ms) = match version {
        Some(v) => {
            let meta = existing
                .and_then(|k| k.get(&v))
                .ok_or_else(|| Error::NotFound {
                    what: format!("version {v} of key {name:?}"),
                })?;
            (v, meta.info.created_ms)
        }
        None => (
            existing
                .and_then(|k| k.keys().next_back().copied())
                .unwrap_or(0)
                + 1,
            p.time_ms,
        ),
    };
    p.payloads.push(Payload::KeyVersion(KeyVersionPayload {
        name: name.to_string(),
        version,
        algorithm: algorithm.to_string(),
        state,
        created_ms,
        state_changed_ms: p.time_ms,
        material: material.duplicate(),
    }));
    p.versions.push(version);
    Ok(())
}
