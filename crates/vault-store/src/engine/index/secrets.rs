//! The secrets' part of the index: versions, soft deletes, destruction and pruning.

use std::collections::{BTreeMap, VecDeque};

use vault_format::payload::{SecretState, SecretStatePayload, SecretVersionPayload, Tag};

use super::RecordRef;

/// One kept version of a secret.
#[derive(Clone)]
pub(crate) struct VersionMeta {
    pub(crate) created_ms: i64,
    pub(crate) tags: Vec<Tag>,
    pub(crate) size: usize,
    pub(crate) env: RecordRef,
}

/// The kept versions of a secret, in version order: a sorted ring buffer, since most secrets
/// have one or a few versions (a map's node would cost ten times their size), new versions come
/// last and pruning takes the first.
#[derive(Clone, Default)]
pub(crate) struct Versions(VecDeque<(u32, VersionMeta)>);

impl Versions {
    pub(crate) fn get(&self, version: &u32) -> Option<&VersionMeta> {
        self.0
            .binary_search_by_key(version, |(v, _)| *v)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, m)| m)
    }

    /// Adds or replaces `version`; returns what it replaced.
    pub(crate) fn insert(&mut self, version: u32, meta: VersionMeta) -> Option<VersionMeta> {
        match self.0.binary_search_by_key(&version, |(v, _)| *v) {
            Ok(i) => self.0.get_mut(i).map(|(_, m)| std::mem::replace(m, meta)),
            Err(i) => {
                // Grown one at a time: a first push would reserve room for four versions, and
                // most secrets never have a second.
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact(1);
                }
                self.0.insert(i, (version, meta));
                None
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u32, &VersionMeta)> {
        self.0.iter().map(|(v, m)| (v, m))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &VersionMeta> {
        self.0.iter().map(|(_, m)| m)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut VersionMeta> {
        self.0.iter_mut().map(|(_, m)| m)
    }

    #[cfg(test)]
    pub(crate) fn keys(&self) -> impl Iterator<Item = &u32> {
        self.0.iter().map(|(v, _)| v)
    }

    /// Removes the oldest version.
    pub(crate) fn pop_first(&mut self) -> Option<(u32, VersionMeta)> {
        self.0.pop_front()
    }
}

/// A secret: its kept versions, the latest version number, and the record deleting it, if any.
#[derive(Clone, Default)]
pub(crate) struct SecretEntry {
    pub(crate) versions: Versions,
    pub(crate) latest: u32,
    pub(crate) deleted: Option<RecordRef>,
}

/// The secrets, by name.
#[derive(Clone, Default)]
pub(crate) struct Secrets(BTreeMap<String, SecretEntry>);

impl std::ops::Deref for Secrets {
    type Target = BTreeMap<String, SecretEntry>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

fn len(env: &RecordRef) -> u64 {
    env.len()
}

impl Secrets {
    /// Applies a new version, keeping at most `max` versions; returns the bytes it made dead.
    pub(crate) fn apply_version(
        &mut self,
        env: RecordRef,
        p: &SecretVersionPayload,
        max: usize,
    ) -> u64 {
        let mut dead = 0;
        let e = self.0.entry(p.name.clone()).or_default();
        let meta = VersionMeta {
            created_ms: p.created_ms,
            tags: p.tags.clone(),
            size: p.value.len(),
            env,
        };
        if let Some(old) = e.versions.insert(p.version, meta) {
            dead += len(&old.env);
        }
        e.latest = e.latest.max(p.version);
        dead + prune_entry(e, max)
    }

    /// Applies a state change; returns the bytes it made dead.
    pub(crate) fn apply_state(&mut self, env: RecordRef, p: &SecretStatePayload) -> u64 {
        let size = len(&env);
        match p.state {
            SecretState::Deleted => match self.0.get_mut(&p.name) {
                Some(e) => e.deleted.replace(env).map_or(0, |old| len(&old)),
                None => size,
            },
            SecretState::Restored => {
                size + self
                    .0
                    .get_mut(&p.name)
                    .and_then(|e| e.deleted.take())
                    .map_or(0, |old| len(&old))
            }
            SecretState::Destroyed => {
                size + self.0.remove(&p.name).map_or(0, |e| {
                    e.versions.values().map(|v| len(&v.env)).sum::<u64>()
                        + e.deleted.map_or(0, |d| len(&d))
                })
            }
        }
    }

    /// Drops versions beyond `max` of every secret; returns the bytes it made dead.
    pub(crate) fn prune(&mut self, max: usize) -> u64 {
        self.0.values_mut().map(|e| prune_entry(e, max)).sum()
    }

    /// Lets `f` move every live record.
    pub(crate) fn relocate(&mut self, f: &mut dyn FnMut(&mut RecordRef)) {
        for e in self.0.values_mut() {
            e.versions.values_mut().for_each(|v| f(&mut v.env));
            e.deleted.iter_mut().for_each(&mut *f);
        }
    }

    /// Every live record.
    pub(crate) fn live(&self) -> impl Iterator<Item = &RecordRef> {
        self.0
            .values()
            .flat_map(|e| e.versions.values().map(|v| &v.env).chain(e.deleted.iter()))
    }
}

fn prune_entry(e: &mut SecretEntry, max: usize) -> u64 {
    let mut dead = 0;
    while e.versions.len() > max {
        match e.versions.pop_first() {
            Some((_, old)) => dead += len(&old.env),
            None => break,
        }
    }
    dead
}
