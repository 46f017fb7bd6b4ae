//! The managed keys' part of the index: each key's settings record and its versions with their
//! lifecycle states (metadata only: material stays in the log until asked for).

use std::collections::BTreeMap;

use vault_format::payload::{KeyPayload, KeyState, KeyVersionPayload};

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

/// One managed key: its settings (absent only for versions written before keys had settings)
/// and its versions.
#[derive(Clone, Default)]
pub(crate) struct KeyEntry {
    pub(crate) settings: Option<(KeyPayload, RecordRef)>,
    pub(crate) versions: BTreeMap<u32, KeyMeta>,
}

/// The managed keys, by name.
#[derive(Clone, Default)]
pub(crate) struct Keys(BTreeMap<String, KeyEntry>);

impl std::ops::Deref for Keys {
    type Target = BTreeMap<String, KeyEntry>;
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
            .versions
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
            .versions
            .insert(p.version, meta)
            .map_or(0, |old| old.env.len())
    }

    /// Applies a key's settings record (also how a checkpoint's are put back); returns the bytes
    /// it made dead.
    pub(crate) fn apply_settings(&mut self, env: RecordRef, p: &KeyPayload) -> u64 {
        self.0
            .entry(p.name.clone())
            .or_default()
            .settings
            .replace((p.clone(), env))
            .map_or(0, |(_, old)| old.len())
    }

    /// Lets `f` move every live record.
    pub(crate) fn relocate(&mut self, f: &mut dyn FnMut(&mut RecordRef)) {
        for k in self.0.values_mut() {
            k.versions.values_mut().for_each(|v| f(&mut v.env));
            k.settings.iter_mut().for_each(|(_, env)| f(env));
        }
    }

    /// Every live record.
    pub(crate) fn live(&self) -> impl Iterator<Item = &RecordRef> {
        self.0.values().flat_map(|k| {
            k.versions
                .values()
                .map(|v| &v.env)
                .chain(k.settings.iter().map(|(_, env)| env))
        })
    }
}
