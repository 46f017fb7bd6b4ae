//! The secrets' part of the index: versions, soft deletes, destruction and pruning.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use vault_format::payload::{SecretState, SecretStatePayload, SecretVersionPayload, Tag};

use super::RecordRef;
use crate::Result;
use crate::sync::Arc;

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

/// What [`Secrets::for_each_ordered`] is given for each secret: its key, name and entry.
pub(crate) type EachOrdered<'a> = dyn FnMut(&[u8; 32], &str, &SecretEntry) -> Result<()> + 'a;

/// What [`SecretsBase::for_each`] is given for each secret: its key, name and entry.
pub(crate) type EachSecret<'a> = dyn FnMut(&[u8; 32], &str, SecretEntry) -> Result<()> + 'a;

/// Where the secrets of a checkpoint are read from: the secrets as they were at its cursor. The
/// index changes nothing there; what changed since is kept beside it.
pub(crate) trait SecretsBase: Send + Sync {
    /// The secret named `name`, if the checkpoint holds it.
    fn lookup(&self, name: &str) -> Result<Option<SecretEntry>>;
    /// Every secret, in the checkpoint's order, with its key there.
    fn for_each(&self, f: &mut EachSecret<'_>) -> Result<()>;
    /// How many secrets it holds.
    fn len(&self) -> u64;
    /// Sorts `names` into the order in which looking them up reads each block once.
    fn sort_for_lookup(&self, names: &mut Vec<&str>);
}

/// The secrets: those of a checkpoint (the base, read on demand), and those changed since it,
/// by name (`None`: not there any more). Without a base, every secret is in the changes.
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    base: Option<Arc<dyn SecretsBase>>,
    changed: BTreeMap<String, Option<SecretEntry>>,
    len: u64,
}

fn len(env: &RecordRef) -> u64 {
    env.len()
}

impl Secrets {
    /// The secrets of a checkpoint, nothing changed since.
    pub(crate) fn on(base: Arc<dyn SecretsBase>) -> Self {
        Self {
            len: base.len(),
            base: Some(base),
            changed: BTreeMap::new(),
        }
    }

    /// The checkpoint's secrets, if there is a checkpoint.
    pub(crate) fn base(&self) -> Option<&Arc<dyn SecretsBase>> {
        self.base.as_ref()
    }

    /// The secrets changed since the checkpoint (or every secret, without one).
    pub(crate) fn changed(&self) -> &BTreeMap<String, Option<SecretEntry>> {
        &self.changed
    }

    /// How many secrets there are (soft-deleted ones included).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The secret named `name`.
    pub(crate) fn get(&self, name: &str) -> Result<Option<Cow<'_, SecretEntry>>> {
        match self.changed.get(name) {
            Some(e) => Ok(e.as_ref().map(Cow::Borrowed)),
            None => match &self.base {
                Some(b) => Ok(b.lookup(name)?.map(Cow::Owned)),
                None => Ok(None),
            },
        }
    }

    /// Sorts `names` into the order in which looking them up costs least (each block of the
    /// checkpoint read once for a large batch).
    pub(crate) fn sort_for_lookup(&self, names: &mut Vec<&str>) {
        if let Some(b) = &self.base {
            b.sort_for_lookup(names);
        }
    }

    /// The secret named `name`, brought into the changes to be changed.
    fn load(&mut self, name: &str) -> Result<&mut Option<SecretEntry>> {
        if !self.changed.contains_key(name) {
            let from_base = match &self.base {
                Some(b) => b.lookup(name)?,
                None => None,
            };
            self.changed.insert(name.to_owned(), from_base);
        }
        self.changed
            .get_mut(name)
            .ok_or_else(|| crate::Error::integrity("index", "a secret vanished while applied"))
    }

    /// Applies a new version, keeping at most `max` versions; returns the bytes it made dead.
    pub(crate) fn apply_version(
        &mut self,
        env: RecordRef,
        p: &SecretVersionPayload,
        max: usize,
    ) -> Result<u64> {
        let slot = self.load(&p.name)?;
        let added = slot.is_none();
        let e = slot.get_or_insert_with(SecretEntry::default);
        let mut dead = 0;
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
        dead += prune_entry(e, max);
        if added {
            self.len += 1;
        }
        Ok(dead)
    }

    /// Applies a state change; returns the bytes it made dead.
    pub(crate) fn apply_state(&mut self, env: RecordRef, p: &SecretStatePayload) -> Result<u64> {
        let size = len(&env);
        let slot = self.load(&p.name)?;
        Ok(match p.state {
            SecretState::Deleted => match slot {
                Some(e) => e.deleted.replace(env).map_or(0, |old| len(&old)),
                None => size,
            },
            SecretState::Restored => {
                size + slot
                    .as_mut()
                    .and_then(|e| e.deleted.take())
                    .map_or(0, |old| len(&old))
            }
            SecretState::Destroyed => {
                let gone = slot.take().map(|e| {
                    e.versions.values().map(|v| len(&v.env)).sum::<u64>()
                        + e.deleted.map_or(0, |d| len(&d))
                });
                if gone.is_some() {
                    self.len -= 1;
                }
                size + gone.unwrap_or(0)
            }
        })
    }

    /// Drops versions beyond `max` of every secret; returns the bytes it made dead. Every secret
    /// of the checkpoint is brought into the changes (a rare, vault-wide change).
    pub(crate) fn prune(&mut self, max: usize) -> Result<u64> {
        let mut dead = 0;
        if let Some(b) = &self.base {
            let mut pruned = Vec::new();
            b.for_each(&mut |_, name, mut e| {
                if !self.changed.contains_key(name) && e.versions.len() > max {
                    dead += prune_entry(&mut e, max);
                    pruned.push((name.to_owned(), e));
                }
                Ok(())
            })?;
            for (name, e) in pruned {
                self.changed.insert(name, Some(e));
            }
        }
        Ok(dead
            + self
                .changed
                .values_mut()
                .flatten()
                .map(|e| prune_entry(e, max))
                .sum::<u64>())
    }

    /// Lets `f` move every live record of the changed secrets (a checkpoint's own are moved
    /// when it is rewritten).
    pub(crate) fn relocate(&mut self, f: &mut dyn FnMut(&mut RecordRef)) {
        for e in self.changed.values_mut().flatten() {
            e.versions.values_mut().for_each(|v| f(&mut v.env));
            e.deleted.iter_mut().for_each(&mut *f);
        }
    }

    /// Calls `f` on every secret (in no particular order).
    pub(crate) fn for_each(
        &self,
        f: &mut dyn FnMut(&str, &SecretEntry) -> Result<()>,
    ) -> Result<()> {
        if let Some(b) = &self.base {
            b.for_each(&mut |_, name, e| {
                if self.changed.contains_key(name) {
                    Ok(())
                } else {
                    f(name, &e)
                }
            })?;
        }
        for (name, e) in &self.changed {
            if let Some(e) = e {
                f(name, e)?;
            }
        }
        Ok(())
    }

    /// Calls `f` on every secret in the order of its key (`key_of` gives a name's key, the one
    /// a checkpoint orders its secrets by): the checkpoint's secrets, read in their order,
    /// merged with those changed since it, sorted here (as many as the checkpoint policy lets
    /// build up between checkpoints).
    pub(crate) fn for_each_ordered(
        &self,
        key_of: &dyn Fn(&str) -> [u8; 32],
        f: &mut EachOrdered<'_>,
    ) -> Result<()> {
        let mut changed: Vec<([u8; 32], &str, Option<&SecretEntry>)> = self
            .changed
            .iter()
            .map(|(n, e)| (key_of(n), n.as_str(), e.as_ref()))
            .collect();
        changed.sort_unstable_by_key(|c| c.0);
        let mut next = changed.iter().peekable();
        if let Some(b) = &self.base {
            b.for_each(&mut |key, name, e| {
                // A changed secret comes at its key; its checkpoint entry (same name, same
                // key) is passed over.
                while let Some((k, n, c)) = next.next_if(|c| c.0 <= *key) {
                    if let Some(c) = c {
                        f(k, n, c)?;
                    }
                }
                if self.changed.contains_key(name) {
                    return Ok(());
                }
                f(key, name, &e)
            })?;
        }
        for (k, n, c) in next {
            if let Some(c) = c {
                f(k, n, c)?;
            }
        }
        Ok(())
    }

    /// Every live record.
    pub(crate) fn live(&self, out: &mut Vec<RecordRef>) -> Result<()> {
        self.for_each(&mut |_, e| {
            out.extend(e.versions.values().map(|v| v.env).chain(e.deleted));
            Ok(())
        })
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
