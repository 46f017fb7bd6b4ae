//! The managed keys' part of the index: each key's versions and their lifecycle states.

use std::collections::BTreeMap;

use vault_format::payload::{KeyState, KeyVersionPayload};

use super::RecordRef;

/// Metadata of a managed key version (no material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersionInfo {
    /// Version.
    pub version: u32,
    /// Algorithm.
    pub algorithm: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// Created, ms.
    pub created_ms: i64,
    /// Last state change, ms.
    pub state_changed_ms: i64,
}

/// One version of a managed key, as indexed.
#[derive(Clone)]
pub(crate) struct KeyMeta {
    pub(crate) info: KeyVersionInfo,
    pub(crate) env: RecordRef,
}

/// The managed keys, by name, then version.
#[derive(Clone, Default)]
pub(crate) struct Keys(BTreeMap<String, BTreeMap<u32, KeyMeta>>);

impl std::ops::Deref for Keys {
    type Target = BTreeMap<String, BTreeMap<u32, KeyMeta>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Keys {
    /// Puts back a version as a checkpoint kept it.
    pub(crate) fn restore(&mut self, name: String, meta: KeyMeta) {
        self.0
            .entry(name)
            .or_default()
            .insert(meta.info.version, meta);
    }

    /// Applies a key version (a new one, or a state change of an existing one); returns the bytes
    /// it made dead.
    pub(crate) fn apply(&mut self, env: RecordRef, p: &KeyVersionPayload) -> u64 {
        let meta = KeyMeta {
            info: KeyVersionInfo {
                version: p.version,
                algorithm: p.algorithm.clone(),
                state: p.state,
                created_ms: p.created_ms,
                state_changed_ms: p.state_changed_ms,
            },
            env,
        };
        self.0
            .entry(p.name.clone())
            .or_default()
            .insert(p.version, meta)
            .map_or(0, |old| old.env.len())
    }

    /// Lets `f` move every live record.
    pub(crate) fn relocate(&mut self, f: &mut dyn FnMut(&mut RecordRef)) {
        for k in self.0.values_mut() {
            k.values_mut().for_each(|v| f(&mut v.env));
        }
    }

    /// Every live record.
    pub(crate) fn live(&self) -> impl Iterator<Item = &RecordRef> {
        self.0.values().flat_map(|k| k.values().map(|v| &v.env))
    }
}
