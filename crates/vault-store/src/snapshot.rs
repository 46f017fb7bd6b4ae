//! A vault as a stream, for backups: [`Vault::snapshot`] reads one consistent view record by
//! record (all of it, or only what changed since a cursor an earlier snapshot gave), and
//! [`Vault::load`] writes such a stream back, batch by batch.

use vault_format::payload::{
    EventKind, KeyPayload, KeyState, KeyVersionPayload, Payload, SecretState, SecretStatePayload,
    SecretVersionPayload,
};

use crate::audit::On;
use crate::engine::fetch::read_envelope;
use crate::engine::index::RecordRef;
use crate::engine::index::secrets::SecretEntry;
use crate::engine::payload_of;
use crate::vault::Vault;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

/// Where a snapshot stands in the vault's history: what an incremental snapshot after it starts
/// from. Every record written after it has a higher sequence number (numbers are never used
/// twice, FORMAT §5), as long as the vault's history since runs through it: same vault, same
/// master key epoch (a rotation re-seals every record) and no older state accepted since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotCursor {
    /// The vault's id.
    pub vault_id: [u8; 16],
    /// Its master key epoch.
    pub key_epoch: u32,
    /// Its generation.
    pub generation: u64,
    /// The highest record sequence number used.
    pub sequence: u64,
    /// The vault's latest acceptance of an older state (`accept-rollback`): that record's
    /// sequence number (u64 LE) and the first 8 bytes of its nonce; zero if there is none.
    pub lineage: [u8; 16],
}

/// A kept version of a secret in a snapshot: its number, whether its record follows, and what
/// the index knows of it without reading it (so that a restore can tell the version an older
/// backup holds is this one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptVersion {
    /// Version number.
    pub version: u32,
    /// Its record follows in this snapshot.
    pub carried: bool,
    /// When it was made, ms since the Unix epoch.
    pub created_ms: i64,
    /// Its value's length.
    pub size: u64,
}

/// What [`Vault::snapshot`] gives, in order: where it stands, the settings, the managed keys
/// (every one, or those changed since the cursor), then every secret in key order, each
/// followed by its versions (every one, or those written since the cursor).
#[derive(Debug)]
pub enum SnapshotItem {
    /// The view the snapshot is of.
    Start(SnapshotCursor),
    /// The vault's settings: how many versions of each secret it keeps.
    Settings {
        /// Versions kept per secret.
        max_versions: u32,
    },
    /// A managed key: its key record and version records (a destroyed version's without
    /// material).
    Key(KeyPayload, Vec<KeyVersionPayload>),
    /// A secret; the versions flagged `true` follow, in this order.
    Secret {
        /// The order: secrets come in strictly increasing order of (order, name), the same
        /// order in every snapshot of one key epoch (the first two bytes, big-endian, of the
        /// name's HMAC under the index-name subkey: the key the checkpoint is sorted by).
        order: u16,
        /// Name.
        name: String,
        /// Soft-deleted.
        deleted: bool,
        /// Every kept version, in increasing order, and whether it follows (every one in a
        /// full snapshot; those written since the cursor in an incremental one).
        versions: Vec<KeptVersion>,
    },
    /// A version of the secret last given.
    Version(SecretVersionPayload),
}

/// What [`Vault::load`] writes into a vault (a restore's batches).
#[derive(Debug)]
pub enum LoadItem {
    /// A managed key with its versions.
    Key(
        vault_format::payload::KeyPayload,
        Vec<vault_format::payload::KeyVersionPayload>,
    ),
    /// A secret version.
    Version(vault_format::payload::SecretVersionPayload),
    /// A secret, all of whose versions came before, is soft-deleted.
    Deleted(String),
    /// How many versions of each secret the vault keeps.
    Settings(u32),
}

impl Vault {
    /// Reads the vault as one consistent view, one record at a time, handing each key and
    /// secret version to `f` as it is read (memory: one record and the secrets changed since
    /// the last checkpoint, whatever the vault's size). With `since`, only what changed after
    /// that cursor is read: the managed keys with a record written since, and the versions
    /// written since (every secret is still listed, with its kept versions, so that secrets
    /// removed or undeleted since are known). The view is held for the duration (writers in
    /// other processes wait, as for a verify).
    ///
    /// # Errors
    /// [`Error::Invalid`] when `since` is not in this vault's history (another vault, another
    /// key epoch, a newer state, an older state accepted since); `f`'s error; integrity and
    /// storage errors.
    pub fn snapshot(
        &self,
        since: Option<&SnapshotCursor>,
        f: &mut dyn FnMut(SnapshotItem) -> Result<()>,
    ) -> Result<()> {
        self.audited_around(AuditOp::Backup, On::Nothing, String::new(), || {
            self.snapshot_inner(since, f)
        })
    }

    fn snapshot_inner(
        &self,
        since: Option<&SnapshotCursor>,
        f: &mut dyn FnMut(SnapshotItem) -> Result<()>,
    ) -> Result<()> {
        let session: Box<dyn crate::backend::ReadSession> = self.e.session()?;
        self.e.refresh_in(&*session)?;
        let st = crate::sync::read(&self.e.state);
        let keys = st.keys.clone();
        let read = |r: &RecordRef| -> Result<Payload> {
            let env = read_envelope(&*session, keys.epoch, r)?;
            payload_of(&env, &keys, &self.e.vault_id)
        };
        let mut lineage = [0u8; 16];
        let mut last_accept = 0;
        for r in st.index.vault.events() {
            if r.sequence < last_accept {
                continue;
            }
            let env = read_envelope(&*session, keys.epoch, r)?;
            let Payload::Event(ev) = payload_of(&env, &keys, &self.e.vault_id)? else {
                return Err(Error::integrity("event", "not an event record"));
            };
            if ev.kind == EventKind::RollbackAccepted {
                last_accept = r.sequence;
                lineage[..8].copy_from_slice(&r.sequence.to_le_bytes());
                lineage[8..].copy_from_slice(&env.nonce.as_bytes()[..8]);
            }
        }
        let here = SnapshotCursor {
            vault_id: *self.e.vault_id.as_bytes(),
            key_epoch: keys.epoch,
            generation: st.generation,
            sequence: st.max_seq,
            lineage,
        };
        let after = match since {
            None => None,
            Some(base) => Some(base_check(base, &here)?),
        };
        let new = |r: &RecordRef| after.is_none_or(|s| r.sequence > s);
        f(SnapshotItem::Start(here))?;
        f(SnapshotItem::Settings {
            max_versions: st.index.max_versions(),
        })?;
        for k in st.index.keys.values() {
            let Some((s, at)) = &k.settings else { continue };
            if !new(at) && !k.versions.values().any(|m| new(&m.env)) {
                continue;
            }
            let mut versions = Vec::with_capacity(s.versions.len());
            for v in &s.versions {
                let Some(m) = k.versions.get(&v.version) else {
                    return Err(Error::integrity(
                        format!("key {:?}", s.name),
                        format!("version {} has no record", v.version),
                    ));
                };
                let Payload::KeyVersion(mut p) = read(&m.env)? else {
                    return Err(Error::integrity("key version", "not a key version record"));
                };
                if v.state == KeyState::Destroyed {
                    p.state = KeyState::Destroyed;
                    p.material = vault_crypto::SecretBytes::zeroed(0);
                }
                versions.push(p);
            }
            f(SnapshotItem::Key(s.clone(), versions))?;
        }
        let key_of = |name: &str| vault_format::index::name_key(&keys.index_name, name);
        // Secrets come in the checkpoint's order (by key), grouped by the key's first two bytes
        // and sorted by name within a group: an order a reader can compare (two bytes and the
        // name) that needs only one group's metadata here, never the vault's names.
        let mut emit = |order: u16, name: &str, e: &SecretEntry| -> Result<()> {
            f(SnapshotItem::Secret {
                order,
                name: name.to_string(),
                deleted: e.deleted.is_some(),
                versions: e
                    .versions
                    .iter()
                    .map(|(v, m)| KeptVersion {
                        version: *v,
                        carried: new(&m.env),
                        created_ms: m.created_ms,
                        size: m.size as u64,
                    })
                    .collect(),
            })?;
            for m in e.versions.values().filter(|m| new(&m.env)) {
                let Payload::SecretVersion(p) = read(&m.env)? else {
                    return Err(Error::integrity(
                        "secret version",
                        "not a secret version record",
                    ));
                };
                f(SnapshotItem::Version(p))?;
            }
            Ok(())
        };
        let mut group: Vec<(String, SecretEntry)> = Vec::new();
        let mut group_order = 0u16;
        let mut flush = |order: u16, group: &mut Vec<(String, SecretEntry)>| -> Result<()> {
            group.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (name, e) in group.drain(..) {
                emit(order, &name, &e)?;
            }
            Ok(())
        };
        st.index
            .secrets
            .for_each_ordered(&key_of, &mut |key, name, e| {
                let [k0, k1, ..] = *key;
                let order = u16::from_be_bytes([k0, k1]);
                if order != group_order {
                    flush(group_order, &mut group)?;
                    group_order = order;
                }
                group.push((name.to_string(), e.clone()));
                Ok(())
            })?;
        flush(group_order, &mut group)
    }

    /// Writes `items` in one commit: what a restore replays into a new vault, batch by batch
    /// (keys and versions as given, version numbers and times kept).
    ///
    /// # Errors
    /// Storage errors; a record outside the format's limits.
    pub fn load(&self, items: Vec<LoadItem>, event: Option<String>) -> Result<()> {
        self.audited_around(AuditOp::Restore, On::Nothing, String::new(), || {
            self.load_inner(items, event)
        })
    }

    fn load_inner(&self, items: Vec<LoadItem>, event: Option<String>) -> Result<()> {
        let now = self.e.options.clock.now_ms();
        self.e.write_txn(move |st| {
            let mut out = Vec::with_capacity(items.len() + 1);
            // What this batch adds, beside what the vault has: a key, or a secret's version,
            // given twice is refused (a restore from a malformed backup), never overwritten.
            let mut seen: std::collections::HashSet<(String, u32)> =
                std::collections::HashSet::new();
            let twice = |what: &str, name: &str| {
                Error::invalid("load", format!("{what} {name:?} is given twice"))
            };
            for item in items {
                match item {
                    LoadItem::Key(k, versions) => {
                        if st.index.keys.contains_key(&k.name)
                            || !seen.insert((format!("key {}", k.name), 0))
                        {
                            return Err(twice("key", &k.name));
                        }
                        out.extend(versions.into_iter().map(Payload::KeyVersion));
                        out.push(Payload::Key(k));
                    }
                    LoadItem::Version(v) => {
                        // Within the batch only: across batches, a restore checks the whole
                        // backup for names given twice before it loads anything (a lookup per
                        // version here doubled a million-secret restore's time).
                        if !seen.insert((v.name.clone(), v.version)) {
                            return Err(twice(
                                "secret version",
                                &format!("{} v{}", v.name, v.version),
                            ));
                        }
                        out.push(Payload::SecretVersion(v));
                    }
                    LoadItem::Settings(max_versions) => {
                        out.push(Payload::Settings(vault_format::payload::SettingsPayload {
                            max_versions,
                        }));
                    }
                    LoadItem::Deleted(name) => out.push(Payload::SecretState(SecretStatePayload {
                        name,
                        state: SecretState::Deleted,
                        time_ms: now,
                    })),
                }
            }
            if let Some(text) = event {
                out.push(Payload::Event(vault_format::payload::EventPayload {
                    kind: vault_format::payload::EventKind::Restored,
                    time_ms: now,
                    text,
                }));
            }
            Ok((out, ()))
        })
    }
}

/// The sequence number after which an incremental snapshot on `base` reads, or why `base` is
/// not in the history of the vault now at `here`.
fn base_check(base: &SnapshotCursor, here: &SnapshotCursor) -> Result<u64> {
    let refuse = |why: &str| Err(Error::invalid("incremental backup", why.to_string()));
    if base.vault_id != here.vault_id {
        return refuse(
            "the base backup is of another vault (a restored vault is a new vault: make a full backup)",
        );
    }
    if base.key_epoch != here.key_epoch {
        return refuse(
            "the vault's master key was rotated since the base backup: make a full backup",
        );
    }
    if base.lineage != here.lineage {
        return refuse(
            "an older state of the vault was accepted (accept-rollback) since the base backup: make a full backup",
        );
    }
    if base.generation > here.generation || base.sequence > here.sequence {
        return refuse(
            "the base backup is newer than the vault (was the vault put back from a copy?): make a full backup",
        );
    }
    Ok(base.sequence)
}
