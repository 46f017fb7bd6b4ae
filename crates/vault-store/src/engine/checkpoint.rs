//! The checkpoint: the index file of an epoch (docs/FORMAT.md §8), read block by block when a
//! secret is looked up, and written by a writer as a streaming merge of the previous checkpoint's
//! secrets with those changed since, so that an open reads the checkpoint's header and the log
//! after its cursor instead of the whole log.

use std::collections::HashMap;

use vault_format::VaultId;
use vault_format::index::{
    self as fmt, BLOCK_TARGET, BlockKind, Child, FOOTER_LEN, Footer, IndexHeader, KEY_LEN,
    MAX_BLOCK_LEN,
};

use super::index::keys::{KeyMeta, KeyVersionInfo};
use super::index::secrets::{EachSecret, SecretEntry, SecretsBase, VersionMeta, Versions};
use super::index::vault_records::VaultRecords;
use super::index::{Index, RecordRef, secrets::Secrets};
use super::replay::State;
use super::subkeys::Keys;
use crate::backend::{Cursor, IndexFile, IndexSink, RecordAt, WriteSession};
use crate::sync::{Arc, Mutex, lock};
use crate::{Error, Result};

/// A writer checkpoints when the log holds this many records after the last checkpoint...
pub(crate) const CHECKPOINT_RECORDS: u64 = 8192;

/// ... or this many bytes of records (an open replays, and decrypts, what follows it).
pub(crate) const CHECKPOINT_BYTES: u64 = 4 << 20;

/// Interior blocks kept decoded per checkpoint (a million secrets need about 200).
const INTERIOR_CACHE: usize = 4096;

/// An index file, opened and its header authenticated.
pub(crate) struct Checkpoint {
    file: Box<dyn IndexFile>,
    footer: Footer,
    pub(crate) header: IndexHeader,
    keys: Arc<Keys>,
    interior: Mutex<HashMap<u64, Arc<Vec<Child>>>>,
    /// The leaf read last: lookups in key order read each leaf once.
    last_leaf: Mutex<Option<(u64, Arc<Vec<fmt::SecretEntry>>)>>,
}

fn place_of(r: &RecordRef) -> fmt::Place {
    fmt::Place {
        sequence: r.sequence,
        kind: r.kind,
        frame_end: r.at.frame_end,
        back: r.at.back,
        len: r.at.len,
    }
}

fn ref_of(p: &fmt::Place) -> RecordRef {
    RecordRef {
        sequence: p.sequence,
        kind: p.kind,
        at: RecordAt {
            frame_end: p.frame_end,
            back: p.back,
            len: p.len,
        },
    }
}

fn entry_of(e: fmt::SecretEntry) -> (String, SecretEntry) {
    let mut versions = Versions::default();
    for v in e.versions {
        versions.insert(
            v.version,
            VersionMeta {
                created_ms: v.created_ms,
                tags: v.tags,
                size: v.size as usize,
                env: ref_of(&v.place),
            },
        );
    }
    (
        e.name,
        SecretEntry {
            versions,
            latest: e.latest,
            deleted: e.deleted.as_ref().map(ref_of),
        },
    )
}

fn stored_of(key: [u8; KEY_LEN], name: &str, e: &SecretEntry) -> fmt::SecretEntry {
    fmt::SecretEntry {
        key,
        name: name.to_owned(),
        latest: e.latest,
        deleted: e.deleted.as_ref().map(place_of),
        versions: e
            .versions
            .iter()
            .map(|(v, m)| fmt::VersionEntry {
                version: *v,
                created_ms: m.created_ms,
                size: m.size as u32,
                tags: m.tags.clone(),
                place: place_of(&m.env),
            })
            .collect(),
    }
}

impl Checkpoint {
    /// Opens `file` for the vault `vault_id` at `keys`' epoch: the footer and the header block,
    /// authenticated. Anything wrong with them is an integrity error naming the file; an index
    /// of a newer format (`None`) is not used.
    pub(crate) fn open(
        file: Box<dyn IndexFile>,
        keys: Arc<Keys>,
        vault_id: &VaultId,
    ) -> Result<Option<Self>> {
        let location = file.location();
        let len = file.len();
        if len < FOOTER_LEN as u64 {
            return Err(damaged(&location, "it is shorter than its footer"));
        }
        let footer = match Footer::decode(&file.read_at(len - FOOTER_LEN as u64, FOOTER_LEN)?) {
            Ok(f) => f,
            // A newer build's index: derived data this build cannot read, so it is not used
            // (the log alone gives the same answers) and this build's next checkpoint replaces it.
            Err(e @ vault_format::Error::UnsupportedVersion { .. }) => {
                tracing::warn!(index = %location, "{e}: not used");
                return Ok(None);
            }
            Err(other) => return Err(damaged(&location, &other.to_string())),
        };
        if footer.vault_id != *vault_id || footer.key_epoch != keys.epoch {
            return Err(damaged(
                &location,
                "it belongs to another vault or key epoch",
            ));
        }
        let mut cp = Self {
            file,
            footer,
            header: empty_header(),
            keys,
            interior: Mutex::new(HashMap::new()),
            last_leaf: Mutex::new(None),
        };
        let at = Child {
            first_key: [0; KEY_LEN],
            offset: footer.header_offset,
            len: footer.header_len,
        };
        let plain = cp.block(&at, BlockKind::Header)?;
        cp.header = IndexHeader::decode(plain.expose_secret(), footer.version)
            .map_err(|e| damaged(&location, &e.to_string()))?;
        if cp.header.cursor.2 != cp.header.last_mac {
            return Err(damaged(&location, "its cursor and chain MAC disagree"));
        }
        Ok(Some(cp))
    }

    /// The cursor of the log prefix the checkpoint describes.
    pub(crate) fn cursor(&self) -> Cursor {
        let (hint, offset, check) = self.header.cursor;
        Cursor::new(hint, offset, check)
    }

    fn block(&self, at: &Child, kind: BlockKind) -> Result<vault_crypto::SecretBytes> {
        let location = self.file.location();
        let end = at.offset.checked_add(u64::from(at.len));
        if end.is_none_or(|e| e > self.file.len() - FOOTER_LEN as u64)
            || at.len as usize > MAX_BLOCK_LEN
        {
            return Err(damaged(&location, "a block lies outside the file"));
        }
        let bytes = self.file.read_at(at.offset, at.len as usize)?;
        self.footer
            .open_block(&self.keys.index, at.offset, kind, &bytes)
            .map_err(|_| {
                damaged(
                    &location,
                    &format!(
                        "the block at offset {} does not authenticate: it was modified, moved or taken from another index",
                        at.offset
                    ),
                )
            })
    }

    fn interior(&self, at: &Child) -> Result<Arc<Vec<Child>>> {
        if let Some(c) = lock(&self.interior).get(&at.offset) {
            return Ok(c.clone());
        }
        let plain = self.block(at, BlockKind::Interior)?;
        let children = Arc::new(
            fmt::decode_interior(plain.expose_secret())
                .map_err(|e| damaged(&self.file.location(), &e.to_string()))?,
        );
        if children.is_empty() {
            return Err(damaged(&self.file.location(), "an interior block is empty"));
        }
        let mut cache = lock(&self.interior);
        if cache.len() < INTERIOR_CACHE {
            cache.insert(at.offset, children.clone());
        }
        Ok(children)
    }

    fn leaf(&self, at: &Child) -> Result<Vec<fmt::SecretEntry>> {
        let plain = self.block(at, BlockKind::Leaf)?;
        fmt::decode_leaf(plain.expose_secret())
            .map_err(|e| damaged(&self.file.location(), &e.to_string()))
    }

    /// The leaves, in key order.
    fn leaves(&self) -> Result<Vec<Child>> {
        let Some((root, depth)) = self.header.root else {
            return Ok(Vec::new());
        };
        let mut level = vec![root];
        for _ in 1..depth {
            let mut next = Vec::new();
            for c in &level {
                next.extend(self.interior(c)?.iter().copied());
            }
            level = next;
        }
        Ok(level)
    }
}

fn damaged(location: &str, why: &str) -> Error {
    Error::integrity(
        location.to_owned(),
        format!(
            "the index is damaged: {why}; it is derived from the log, so removing the file loses nothing (the next write rebuilds it)"
        ),
    )
}

fn empty_header() -> IndexHeader {
    IndexHeader {
        cursor: (0, 0, [0; 32]),
        generation: 0,
        last_mac: [0; 32],
        max_seq: 0,
        total_bytes: 0,
        dead_bytes: 0,
        secrets: 0,
        root: None,
        settings: None,
        events: Vec::new(),
        header_confirmed: None,
        header_pending: None,
        keys: Vec::new(),
        key_settings: Vec::new(),
    }
}

impl SecretsBase for Checkpoint {
    fn lookup(&self, name: &str) -> Result<Option<SecretEntry>> {
        let key = fmt::name_key(&self.keys.index_name, name);
        let Some((mut node, depth)) = self.header.root else {
            return Ok(None);
        };
        for _ in 1..depth {
            let children = self.interior(&node)?;
            let i = children.partition_point(|c| c.first_key <= key);
            match i.checked_sub(1).and_then(|i| children.get(i)) {
                Some(c) => node = *c,
                None => return Ok(None),
            }
        }
        let cached = lock(&self.last_leaf)
            .as_ref()
            .filter(|(at, _)| *at == node.offset)
            .map(|(_, l)| l.clone());
        let entries = match cached {
            Some(l) => l,
            None => {
                let l = Arc::new(self.leaf(&node)?);
                *lock(&self.last_leaf) = Some((node.offset, l.clone()));
                l
            }
        };
        let Ok(i) = entries.binary_search_by(|e| e.key.cmp(&key)) else {
            return Ok(None);
        };
        match entries.get(i) {
            Some(e) if e.name == name => Ok(Some(entry_of(e.clone()).1)),
            Some(_) => Err(damaged(
                &self.file.location(),
                "an entry's name does not match its key",
            )),
            None => Ok(None),
        }
    }

    fn for_each(&self, f: &mut EachSecret<'_>) -> Result<()> {
        let mut last: Option<[u8; KEY_LEN]> = None;
        for leaf in self.leaves()? {
            for e in self.leaf(&leaf)? {
                if last.is_some_and(|l| l >= e.key) {
                    return Err(damaged(&self.file.location(), "its keys are out of order"));
                }
                last = Some(e.key);
                let key = e.key;
                let (name, entry) = entry_of(e);
                f(&key, &name, entry)?;
            }
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.header.secrets
    }

    fn sort_for_lookup(&self, names: &mut Vec<&str>) {
        let mut keyed: Vec<([u8; KEY_LEN], &str)> = names
            .iter()
            .map(|n| (fmt::name_key(&self.keys.index_name, n), *n))
            .collect();
        keyed.sort_unstable_by_key(|k| k.0);
        *names = keyed.into_iter().map(|(_, n)| n).collect();
    }
}

/// What a finished tree is: its root and depth (none without secrets), the offset after its
/// last block, and how many secrets it holds.
type Finished = (Option<(Child, u8)>, u64, u64);

/// Fills leaves and the interior levels above them, block by block, into a sink.
struct TreeWriter<'a, 's> {
    sink: &'a mut IndexSink<'s>,
    footer: Footer,
    keys: &'a Keys,
    offset: u64,
    buf: Vec<u8>,
    n: u32,
    first: Option<[u8; KEY_LEN]>,
    leaves: Vec<Child>,
    count: u64,
}

impl TreeWriter<'_, '_> {
    fn put(&mut self, kind: BlockKind, plain: &[u8]) -> Result<Child> {
        let block = self
            .footer
            .seal_block(&self.keys.index, self.offset, kind, plain)?;
        (self.sink)(&block)?;
        let at = Child {
            first_key: [0; KEY_LEN],
            offset: self.offset,
            len: block.len() as u32,
        };
        self.offset += block.len() as u64;
        Ok(at)
    }

    fn push(&mut self, e: &fmt::SecretEntry) -> Result<()> {
        let before = self.buf.len();
        e.encode_into(&mut self.buf);
        if self.n > 0 && self.buf.len() > BLOCK_TARGET {
            let tail = self.buf.split_off(before);
            self.flush()?;
            self.buf = tail;
        }
        if self.n == 0 {
            self.first = Some(e.key);
        }
        self.n += 1;
        self.count += 1;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.n == 0 {
            return Ok(());
        }
        let plain = fmt::leaf_plaintext(self.n, &self.buf);
        let mut at = self.put(BlockKind::Leaf, &plain)?;
        at.first_key = self.first.unwrap_or([0; KEY_LEN]);
        self.leaves.push(at);
        self.buf.clear();
        self.n = 0;
        Ok(())
    }

    /// Writes the interior levels; returns the root and the depth.
    fn finish(mut self) -> Result<Finished> {
        self.flush()?;
        let mut level = std::mem::take(&mut self.leaves);
        if level.is_empty() {
            return Ok((None, self.offset, self.count));
        }
        let per_block = (BLOCK_TARGET / (KEY_LEN + 12)).max(2);
        let mut depth = 1u8;
        while level.len() > 1 {
            let mut next = Vec::with_capacity(level.len() / per_block + 1);
            for group in level.chunks(per_block) {
                let mut at = self.put(BlockKind::Interior, &fmt::interior_plaintext(group))?;
                at.first_key = group.first().map_or([0; KEY_LEN], |c| c.first_key);
                next.push(at);
            }
            level = next;
            depth += 1;
        }
        Ok((level.first().map(|c| (*c, depth)), self.offset, self.count))
    }
}

impl super::Engine {
    /// Writes a checkpoint of `st` in the write session and makes `st` read from it. The merge
    /// streams: the previous checkpoint's secrets in key order, the changed ones sorted by key
    /// beside them. `relocate` moves the previous checkpoint's records (after compaction).
    pub(crate) fn checkpoint_locked(
        &self,
        session: &mut dyn WriteSession,
        st: &mut State,
        relocate: Option<&dyn Fn(&mut RecordRef)>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let changed = st.index.secrets.changed().len();
        self.write_checkpoint(session, st, relocate)?;
        tracing::debug!(
            "wrote the index file at generation {} ({changed} changed secret(s)) in {} ms",
            st.generation,
            started.elapsed().as_millis()
        );
        Ok(())
    }

    fn write_checkpoint(
        &self,
        session: &mut dyn WriteSession,
        st: &mut State,
        relocate: Option<&dyn Fn(&mut RecordRef)>,
    ) -> Result<()> {
        let keys = st.keys.clone();
        let mut changed: Vec<([u8; KEY_LEN], &String, &Option<SecretEntry>)> = st
            .index
            .secrets
            .changed()
            .iter()
            .map(|(name, e)| (fmt::name_key(&keys.index_name, name), name, e))
            .collect();
        changed.sort_unstable_by_key(|c| c.0);
        let mut id = [0u8; 16];
        vault_crypto::rng::fill(&mut id)?;
        let base = st.index.secrets.base().cloned();
        let index = &st.index;
        let pos = st.pos;
        // The oldest layout that holds what there is, so that builds reading only version 1
        // keep using the index of a vault without managed keys.
        let version: u16 = if index.keys.values().any(|k| k.settings.is_some()) {
            2
        } else {
            1
        };
        let header_of = |root, secrets| IndexHeader {
            cursor: (pos.hint(), pos.offset(), *pos.check()),
            generation: st.generation,
            last_mac: st.last_mac,
            max_seq: st.max_seq,
            total_bytes: index.total_bytes,
            dead_bytes: index.dead_bytes,
            secrets,
            root,
            settings: index.vault.settings().map(|(m, r)| (m, place_of(&r))),
            events: index.vault.events().iter().map(place_of).collect(),
            header_confirmed: index.vault.confirmed().map(|(d, r)| (d, place_of(&r))),
            header_pending: index.vault.pending().map(|(d, r)| (d, place_of(&r))),
            key_settings: index
                .keys
                .values()
                .filter_map(|k| k.settings.as_ref())
                .map(|(p, env)| (p.clone(), place_of(env)))
                .collect(),
            keys: index
                .keys
                .iter()
                .flat_map(|(name, k)| {
                    k.versions.values().map(move |m| fmt::KeyEntry {
                        name: name.clone(),
                        version: m.info.version,
                        algorithm: m.info.algorithm.clone(),
                        state: m.info.state,
                        created_ms: m.info.created_ms,
                        state_changed_ms: m.info.state_changed_ms,
                        place: place_of(&m.env),
                    })
                })
                .collect(),
        };
        let footer_of = |header_offset, header_len| Footer {
            version,
            vault_id: self.vault_id,
            key_epoch: keys.epoch,
            checkpoint_id: id,
            header_offset,
            header_len,
        };
        session.write_index(keys.epoch, &mut |sink| {
            let mut w = TreeWriter {
                sink,
                footer: footer_of(0, 0),
                keys: &keys,
                offset: 0,
                buf: Vec::with_capacity(BLOCK_TARGET * 2),
                n: 0,
                first: None,
                leaves: Vec::new(),
                count: 0,
            };
            let mut next = 0usize;
            let mut emit_changed_before =
                |w: &mut TreeWriter<'_, '_>, key: Option<&[u8; KEY_LEN]>| -> Result<bool> {
                    // Emits changed secrets ordered before `key`; says whether one has `key`.
                    while let Some((k, name, e)) = changed.get(next) {
                        if key.is_some_and(|key| k > key) {
                            return Ok(false);
                        }
                        next += 1;
                        if let Some(e) = e {
                            w.push(&stored_of(*k, name, e))?;
                        }
                        if key == Some(k) {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                };
            if let Some(base) = &base {
                base.for_each(&mut |key, name, mut e| {
                    if emit_changed_before(&mut w, Some(key))? {
                        return Ok(());
                    }
                    if let Some(f) = relocate {
                        e.versions.values_mut().for_each(|v| f(&mut v.env));
                        e.deleted.iter_mut().for_each(f);
                    }
                    w.push(&stored_of(*key, name, &e))
                })?;
            }
            emit_changed_before(&mut w, None)?;
            let (root, offset, count) = w.finish()?;
            let footer = footer_of(0, 0);
            let header = header_of(root, count).encode()?;
            let block = footer.seal_block(&keys.index, offset, BlockKind::Header, &header)?;
            sink(&block)?;
            sink(&footer_of(offset, block.len() as u32).encode())
        })?;
        let file = session
            .open_index(keys.epoch)?
            .ok_or_else(|| Error::integrity("index", "the index just written is not there"))?;
        let cp = Checkpoint::open(file, keys.clone(), &self.vault_id)?
            .ok_or_else(|| Error::integrity("index", "the index just written is unreadable"))?;
        st.index.secrets = Secrets::on(Arc::new(cp));
        st.tail_records = 0;
        st.tail_bytes = 0;
        Ok(())
    }

    /// The state a view starts from: the checkpoint's, if the backend has an index file for
    /// this epoch (its cursor is checked by the read that follows: a log that no longer holds it
    /// is read from its start instead); otherwise empty.
    pub(crate) fn start_state(
        &self,
        keys: Arc<Keys>,
        session: &dyn crate::backend::ReadSession,
    ) -> Result<State> {
        let Some(file) = session.open_index(keys.epoch)? else {
            tracing::debug!("no index file: reading the whole log");
            return Ok(State::empty(keys));
        };
        let Some(cp) = Checkpoint::open(file, keys.clone(), &self.vault_id)? else {
            return Ok(State::empty(keys));
        };
        let h = &cp.header;
        tracing::debug!(
            "index file at generation {}: reading the log after it",
            h.generation
        );
        let mut vault = VaultRecords::default();
        vault.restore(
            h.settings.as_ref().map(|(m, p)| (*m, ref_of(p))),
            h.events.iter().map(ref_of).collect(),
            h.header_confirmed.as_ref().map(|(d, p)| (*d, ref_of(p))),
            h.header_pending.as_ref().map(|(d, p)| (*d, ref_of(p))),
        );
        let mut index_keys = super::index::keys::Keys::default();
        for k in &h.keys {
            index_keys.restore(
                k.name.clone(),
                KeyMeta {
                    info: KeyVersionInfo {
                        version: k.version,
                        algorithm: k.algorithm.clone(),
                        state: k.state,
                        created_ms: k.created_ms,
                        state_changed_ms: k.state_changed_ms,
                    },
                    env: ref_of(&k.place),
                },
            );
        }
        for (p, place) in &h.key_settings {
            index_keys.apply_settings(ref_of(place), p);
        }
        let mut st = State::empty(keys);
        st.pos = cp.cursor();
        st.generation = h.generation;
        st.last_mac = h.last_mac;
        st.max_seq = h.max_seq;
        st.index = Index {
            keys: index_keys,
            vault,
            total_bytes: h.total_bytes,
            dead_bytes: h.dead_bytes,
            secrets: Secrets::default(),
        };
        st.index.secrets = Secrets::on(Arc::new(cp));
        Ok(st)
    }
}
