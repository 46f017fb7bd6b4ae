//! The index file (`index.<epoch>`, docs/FORMAT.md §8): a checkpoint of what the log says up to a
//! cursor, as blocks each sealed on its own, so that a reader authenticates exactly the blocks it
//! reads. Derived data: the log stays the source of truth.
//!
//! ```text
//! file    = block* footer
//! block   = nonce (24) ‖ XChaCha20-Poly1305(index key, nonce, aad, plaintext)
//! aad     = "vault v1 index block" ‖ vault id (16) ‖ key epoch (u32) ‖ checkpoint id (16)
//!           ‖ block offset (u64) ‖ block kind (u8)
//! footer  = "VLTINDEX" ‖ version (u16) ‖ reserved (u16, 0) ‖ vault id (16) ‖ key epoch (u32)
//!           ‖ checkpoint id (16) ‖ header offset (u64) ‖ header length (u32)     (60 bytes)
//! ```
//!
//! The header block says which log prefix the checkpoint describes (a cursor), the vault's own
//! records and managed keys, and where the root of the secrets' tree is. Leaves hold secrets in
//! order of their keyed name hash; interior blocks hold, per child, its first key and place.

use vault_crypto::SecretBytes;
use vault_crypto::aead::{self, NONCE_LEN, Nonce, TAG_LEN};
use vault_crypto::derive::IndexKey;
use vault_crypto::mac::MAC_LEN;

use crate::payload::{KeyPayload, Payload};
use crate::payload::{KeyState, MAX_TAG_KEY_LEN, MAX_TAG_VALUE_LEN, MAX_TAGS, Tag};
use crate::reader::Reader;
use crate::wire::wire_enum;
use crate::{Error, RecordKind, Result, VaultId};

const OBJECT: &str = "index file";
const FOOTER_MAGIC: &[u8; 8] = b"VLTINDEX";
const AAD_LABEL: &[u8] = b"vault v1 index block";
/// The newest index file format version this build writes and reads. Version 2 adds the managed
/// keys' settings records to the header block; a writer writes version 1 while a vault has none,
/// so builds that know only version 1 keep using the index of a vault without managed keys.
pub const INDEX_VERSION: u16 = 2;
/// Length of the footer.
pub const FOOTER_LEN: usize = 8 + 2 + 2 + 16 + 4 + 16 + 8 + 4;
/// The size a writer fills a block to before it starts the next (a larger entry makes a larger
/// block).
pub const BLOCK_TARGET: usize = 4096;
/// Largest block a reader accepts.
pub const MAX_BLOCK_LEN: usize = 16 << 20;
/// Deepest tree a reader follows.
pub const MAX_DEPTH: u8 = 16;
/// Length of a key in the tree: HMAC-SHA256 of the name.
pub const KEY_LEN: usize = MAC_LEN;

wire_enum! {
    /// What a block holds (bound into its associated data).
    pub enum BlockKind {
        /// The checkpoint's header.
        Header = 1,
        /// Secrets, in key order.
        Leaf = 2,
        /// Children, in key order.
        Interior = 3,
    }
}

/// The footer: where the header block is, and the identity every block is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// The index format version (1 or 2: see [`INDEX_VERSION`]).
    pub version: u16,
    /// The vault.
    pub vault_id: VaultId,
    /// The key epoch (the index of one epoch's log).
    pub key_epoch: u32,
    /// Random per checkpoint: blocks of one checkpoint cannot be spliced into another.
    pub checkpoint_id: [u8; 16],
    /// Offset of the header block.
    pub header_offset: u64,
    /// Length of the header block.
    pub header_len: u32,
}

impl Footer {
    /// The footer's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        out.extend_from_slice(FOOTER_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(self.vault_id.as_bytes());
        out.extend_from_slice(&self.key_epoch.to_le_bytes());
        out.extend_from_slice(&self.checkpoint_id);
        out.extend_from_slice(&self.header_offset.to_le_bytes());
        out.extend_from_slice(&self.header_len.to_le_bytes());
        out
    }

    /// Decodes a footer.
    ///
    /// # Errors
    /// [`Error::UnsupportedVersion`] for a newer index format; a precise error otherwise.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(OBJECT, bytes);
        if r.bytes("magic", 8)? != FOOTER_MAGIC {
            return Err(r.invalid("magic", "not a vault index file"));
        }
        let version = r.u16("version")?;
        if version == 0 {
            return Err(r.invalid("version", "version 0 does not exist"));
        }
        if version > INDEX_VERSION {
            return Err(Error::UnsupportedVersion {
                object: OBJECT,
                found: version,
                max: INDEX_VERSION,
            });
        }
        r.zero("reserved", 2)?;
        let f = Self {
            version,
            vault_id: VaultId::from_bytes(r.array("vault id")?),
            key_epoch: r.u32("key epoch")?,
            checkpoint_id: r.array("checkpoint id")?,
            header_offset: r.u64("header offset")?,
            header_len: r.u32("header length")?,
        };
        r.finish()?;
        Ok(f)
    }

    fn aad(&self, offset: u64, kind: BlockKind) -> Vec<u8> {
        let mut aad = Vec::with_capacity(AAD_LABEL.len() + 16 + 4 + 16 + 8 + 1);
        aad.extend_from_slice(AAD_LABEL);
        aad.extend_from_slice(self.vault_id.as_bytes());
        aad.extend_from_slice(&self.key_epoch.to_le_bytes());
        aad.extend_from_slice(&self.checkpoint_id);
        aad.extend_from_slice(&offset.to_le_bytes());
        aad.push(kind.to_byte());
        aad
    }

    /// Seals `plaintext` as the block of `kind` at `offset` of this checkpoint.
    ///
    /// # Errors
    /// [`Error::Crypto`] if no nonce could be drawn.
    pub fn seal_block(
        &self,
        key: &IndexKey,
        offset: u64,
        kind: BlockKind,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let sealed =
            aead::seal(key.key(), &self.aad(offset, kind), plaintext).map_err(|source| {
                Error::Crypto {
                    object: OBJECT,
                    source,
                }
            })?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.ciphertext.len());
        out.extend_from_slice(sealed.nonce.as_bytes());
        out.extend_from_slice(&sealed.ciphertext);
        Ok(out)
    }

    /// As [`Footer::seal_block`] with a caller-chosen nonce: for worked examples and test vectors
    /// only (a nonce must never repeat under one key).
    ///
    /// # Errors
    /// [`Error::Crypto`] if the input is too large.
    pub fn seal_block_with_nonce(
        &self,
        key: &IndexKey,
        nonce: &Nonce,
        offset: u64,
        kind: BlockKind,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let ct = aead::seal_with_nonce(key.key(), nonce, &self.aad(offset, kind), plaintext)
            .map_err(|source| Error::Crypto {
                object: OBJECT,
                source,
            })?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(nonce.as_bytes());
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens the block of `kind` read from `offset`.
    ///
    /// # Errors
    /// [`Error::Authentication`] if it was changed, moved, or belongs to another checkpoint,
    /// epoch or vault.
    pub fn open_block(
        &self,
        key: &IndexKey,
        offset: u64,
        kind: BlockKind,
        block: &[u8],
    ) -> Result<SecretBytes> {
        if block.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::Authentication { object: OBJECT });
        }
        let (nonce, ct) = block.split_at(NONCE_LEN);
        let nonce =
            Nonce::from_slice(nonce).map_err(|_| Error::Authentication { object: OBJECT })?;
        aead::open(key.key(), &nonce, &self.aad(offset, kind), ct)
            .map_err(|_| Error::Authentication { object: OBJECT })
    }
}

/// Where a record is in the log (the engine's record reference, as stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The record's sequence number.
    pub sequence: u64,
    /// The record's kind.
    pub kind: RecordKind,
    /// The end of its frame, as the log's cursors count.
    pub frame_end: u64,
    /// How far before that end the record starts.
    pub back: u32,
    /// The record's length.
    pub len: u32,
}

/// A kept version of a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionEntry {
    /// Version number.
    pub version: u32,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Value length.
    pub size: u32,
    /// Tags.
    pub tags: Vec<Tag>,
    /// The record.
    pub place: Place,
}

/// A secret in a leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretEntry {
    /// HMAC-SHA256 of the name under the index-name key: the tree's order.
    pub key: [u8; KEY_LEN],
    /// The name.
    pub name: String,
    /// The latest version number.
    pub latest: u32,
    /// The record deleting it, if it is deleted.
    pub deleted: Option<Place>,
    /// The kept versions, in version order.
    pub versions: Vec<VersionEntry>,
}

/// A child of an interior block: its first key and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child {
    /// The first key in the child's subtree.
    pub first_key: [u8; KEY_LEN],
    /// The child's offset.
    pub offset: u64,
    /// The child's length.
    pub len: u32,
}

/// A managed key's version, as the header keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// Key name.
    pub name: String,
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
    /// The record.
    pub place: Place,
}

/// The header block: what the checkpoint describes and where its tree is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexHeader {
    /// The cursor the checkpoint describes the log up to: incarnation hint, offset, check bytes.
    pub cursor: (u64, u64, [u8; 32]),
    /// Generation at the cursor.
    pub generation: u64,
    /// Chain MAC at the cursor.
    pub last_mac: [u8; MAC_LEN],
    /// Highest record sequence number up to the cursor.
    pub max_seq: u64,
    /// Bytes of records in the log up to the cursor.
    pub total_bytes: u64,
    /// Bytes of those no longer live.
    pub dead_bytes: u64,
    /// Number of secrets in the tree.
    pub secrets: u64,
    /// The root block (leaf or interior) and the tree's depth (1: the root is a leaf); `None`
    /// when there are no secrets.
    pub root: Option<(Child, u8)>,
    /// The settings record and its `max_versions`.
    pub settings: Option<(u32, Place)>,
    /// Event records.
    pub events: Vec<Place>,
    /// The confirmed header binding: digest and record.
    pub header_confirmed: Option<([u8; 32], Place)>,
    /// A pending header binding.
    pub header_pending: Option<([u8; 32], Place)>,
    /// Managed key versions.
    pub keys: Vec<KeyEntry>,
    /// Managed keys' settings records (index version 2).
    pub key_settings: Vec<(KeyPayload, Place)>,
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}
fn get_str(r: &mut Reader<'_>, field: &'static str, max: usize) -> Result<String> {
    let b = r.len_prefixed_u32(field, max)?;
    String::from_utf8(b.to_vec()).map_err(|_| r.invalid(field, "not UTF-8"))
}
fn put_place(out: &mut Vec<u8>, p: &Place) {
    put_u64(out, p.sequence);
    out.push(p.kind.to_byte());
    put_u64(out, p.frame_end);
    put_u32(out, p.back);
    put_u32(out, p.len);
}
fn get_place(r: &mut Reader<'_>) -> Result<Place> {
    let sequence = r.u64("sequence")?;
    let kind = RecordKind::from_byte(r.u8("record kind")?)
        .ok_or_else(|| r.invalid("record kind", "unknown record kind"))?;
    Ok(Place {
        sequence,
        kind,
        frame_end: r.u64("frame end")?,
        back: r.u32("back")?,
        len: r.u32("length")?,
    })
}
fn put_opt_place(out: &mut Vec<u8>, p: Option<&Place>) {
    match p {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            put_place(out, p);
        }
    }
}
fn flag(r: &mut Reader<'_>, field: &'static str) -> Result<bool> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(r.invalid(field, "not 0 or 1")),
    }
}
fn get_opt_place(r: &mut Reader<'_>) -> Result<Option<Place>> {
    if flag(r, "place present")? {
        Ok(Some(get_place(r)?))
    } else {
        Ok(None)
    }
}
/// A count read from untrusted bytes, bounded by what the remaining bytes could hold.
fn count(r: &mut Reader<'_>, field: &'static str, min_each: usize) -> Result<usize> {
    let n = r.u32(field)? as usize;
    if n > r.remaining() / min_each.max(1) {
        return Err(r.invalid(
            field,
            format!("{n} items cannot fit in {} bytes", r.remaining()),
        ));
    }
    Ok(n)
}
const PLACE_LEN: usize = 8 + 1 + 8 + 4 + 4;
const NAME_MAX: usize = crate::payload::MAX_NAME_LEN;

impl SecretEntry {
    /// Appends the entry's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key);
        put_str(out, &self.name);
        put_u32(out, self.latest);
        put_opt_place(out, self.deleted.as_ref());
        put_u32(out, self.versions.len() as u32);
        for v in &self.versions {
            put_u32(out, v.version);
            put_u64(out, v.created_ms as u64);
            put_u32(out, v.size);
            put_u16(out, v.tags.len() as u16);
            for t in &v.tags {
                put_str(out, &t.key);
                put_str(out, &t.value);
            }
            put_place(out, &v.place);
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let key = r.array("key")?;
        let name = get_str(r, "name", NAME_MAX)?;
        let latest = r.u32("latest")?;
        let deleted = get_opt_place(r)?;
        let n = count(r, "version count", 4 + 8 + 4 + 2 + PLACE_LEN)?;
        let mut versions = Vec::with_capacity(n);
        for _ in 0..n {
            let version = r.u32("version")?;
            let created_ms = r.u64("created")? as i64;
            let size = r.u32("size")?;
            let tags_n = usize::from(r.u16("tag count")?);
            if tags_n > MAX_TAGS {
                return Err(r.invalid("tag count", "too many tags"));
            }
            let mut tags = Vec::with_capacity(tags_n);
            for _ in 0..tags_n {
                let key = get_str(r, "tag key", MAX_TAG_KEY_LEN)?;
                let value = get_str(r, "tag value", MAX_TAG_VALUE_LEN)?;
                tags.push(Tag { key, value });
            }
            versions.push(VersionEntry {
                version,
                created_ms,
                size,
                tags,
                place: get_place(r)?,
            });
        }
        Ok(Self {
            key,
            name,
            latest,
            deleted,
            versions,
        })
    }
}

/// The plaintext of a leaf holding `entries` (already encoded, concatenated), `n` of them.
pub fn leaf_plaintext(n: u32, encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + encoded.len());
    put_u32(&mut out, n);
    out.extend_from_slice(encoded);
    out
}

/// Decodes a leaf's plaintext.
///
/// # Errors
/// A precise error for anything malformed.
pub fn decode_leaf(bytes: &[u8]) -> Result<Vec<SecretEntry>> {
    let mut r = Reader::new(OBJECT, bytes);
    let n = count(&mut r, "entry count", KEY_LEN + 4 + 4 + 1 + 4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(SecretEntry::decode_from(&mut r)?);
    }
    r.finish()?;
    Ok(out)
}

/// The plaintext of an interior block.
pub fn interior_plaintext(children: &[Child]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + children.len() * (KEY_LEN + 12));
    put_u32(&mut out, children.len() as u32);
    for c in children {
        out.extend_from_slice(&c.first_key);
        put_u64(&mut out, c.offset);
        put_u32(&mut out, c.len);
    }
    out
}

/// Decodes an interior block's plaintext.
///
/// # Errors
/// A precise error for anything malformed.
pub fn decode_interior(bytes: &[u8]) -> Result<Vec<Child>> {
    let mut r = Reader::new(OBJECT, bytes);
    let n = count(&mut r, "child count", KEY_LEN + 12)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Child {
            first_key: r.array("first key")?,
            offset: r.u64("child offset")?,
            len: r.u32("child length")?,
        });
    }
    r.finish()?;
    Ok(out)
}

impl IndexHeader {
    /// The header block's plaintext, in the layout of [`IndexHeader::version`].
    ///
    /// # Errors
    /// A key settings record outside the format's limits.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(512);
        put_u64(&mut out, self.cursor.0);
        put_u64(&mut out, self.cursor.1);
        out.extend_from_slice(&self.cursor.2);
        put_u64(&mut out, self.generation);
        out.extend_from_slice(&self.last_mac);
        put_u64(&mut out, self.max_seq);
        put_u64(&mut out, self.total_bytes);
        put_u64(&mut out, self.dead_bytes);
        put_u64(&mut out, self.secrets);
        match &self.root {
            None => out.push(0),
            Some((c, depth)) => {
                out.push(*depth);
                out.extend_from_slice(&c.first_key);
                put_u64(&mut out, c.offset);
                put_u32(&mut out, c.len);
            }
        }
        match &self.settings {
            None => out.push(0),
            Some((max, p)) => {
                out.push(1);
                put_u32(&mut out, *max);
                put_place(&mut out, p);
            }
        }
        put_u32(&mut out, self.events.len() as u32);
        for p in &self.events {
            put_place(&mut out, p);
        }
        for b in [&self.header_confirmed, &self.header_pending] {
            match b {
                None => out.push(0),
                Some((d, p)) => {
                    out.push(1);
                    out.extend_from_slice(d);
                    put_place(&mut out, p);
                }
            }
        }
        put_u32(&mut out, self.keys.len() as u32);
        for k in &self.keys {
            put_str(&mut out, &k.name);
            put_u32(&mut out, k.version);
            put_str(&mut out, &k.algorithm);
            out.push(k.state.to_byte());
            put_u64(&mut out, k.created_ms as u64);
            put_u64(&mut out, k.state_changed_ms as u64);
            put_place(&mut out, &k.place);
        }
        if self.version() >= 2 {
            put_u32(&mut out, self.key_settings.len() as u32);
            for (k, place) in &self.key_settings {
                let bytes = Payload::Key(k.clone()).encode()?;
                put_u32(&mut out, bytes.len() as u32);
                out.extend_from_slice(&bytes);
                put_place(&mut out, place);
            }
        }
        Ok(out)
    }

    /// The index version this header needs: 2 if it holds managed keys' settings, else 1.
    pub fn version(&self) -> u16 {
        if self.key_settings.is_empty() { 1 } else { 2 }
    }

    /// Decodes the header block's plaintext, as laid out in index version `version` (the
    /// footer's).
    ///
    /// # Errors
    /// A precise error for anything malformed.
    pub fn decode(bytes: &[u8], version: u16) -> Result<Self> {
        let mut r = Reader::new(OBJECT, bytes);
        let cursor = (
            r.u64("cursor hint")?,
            r.u64("cursor offset")?,
            r.array("cursor check")?,
        );
        let generation = r.u64("generation")?;
        let last_mac = r.array("chain MAC")?;
        let max_seq = r.u64("max sequence")?;
        let total_bytes = r.u64("total bytes")?;
        let dead_bytes = r.u64("dead bytes")?;
        let secrets = r.u64("secrets")?;
        let depth = r.u8("depth")?;
        let root = if depth == 0 {
            None
        } else {
            if depth > MAX_DEPTH {
                return Err(r.invalid("depth", "deeper than any index this build writes"));
            }
            Some((
                Child {
                    first_key: r.array("root key")?,
                    offset: r.u64("root offset")?,
                    len: r.u32("root length")?,
                },
                depth,
            ))
        };
        let settings = if flag(&mut r, "settings present")? {
            Some((r.u32("max versions")?, get_place(&mut r)?))
        } else {
            None
        };
        let n = count(&mut r, "event count", PLACE_LEN)?;
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(get_place(&mut r)?);
        }
        let binding = |r: &mut Reader<'_>| -> Result<Option<([u8; 32], Place)>> {
            if flag(r, "binding present")? {
                Ok(Some((r.array("binding digest")?, get_place(r)?)))
            } else {
                Ok(None)
            }
        };
        let header_confirmed = binding(&mut r)?;
        let header_pending = binding(&mut r)?;
        let n = count(&mut r, "key count", 4 + 4 + 4 + 1 + 16 + PLACE_LEN)?;
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let name = get_str(&mut r, "key name", NAME_MAX)?;
            let version = r.u32("key version")?;
            let algorithm = get_str(&mut r, "algorithm", crate::payload::MAX_ALGORITHM_LEN)?;
            let state = KeyState::from_byte(r.u8("key state")?)
                .ok_or_else(|| r.invalid("key state", "unknown key state"))?;
            keys.push(KeyEntry {
                name,
                version,
                algorithm,
                state,
                created_ms: r.u64("created")? as i64,
                state_changed_ms: r.u64("state changed")? as i64,
                place: get_place(&mut r)?,
            });
        }
        let mut key_settings = Vec::new();
        if version >= 2 {
            let n = count(&mut r, "key settings count", 4 + 1 + PLACE_LEN)?;
            if n == 0 {
                return Err(r.invalid("key settings count", "version 2 holds at least one"));
            }
            key_settings.reserve(n);
            for _ in 0..n {
                let bytes = r.len_prefixed_u32("key settings", 64 * 1024)?;
                let Payload::Key(k) = Payload::decode(RecordKind::Key, bytes)? else {
                    return Err(r.invalid("key settings", "not a key record"));
                };
                key_settings.push((k, get_place(&mut r)?));
            }
        }
        r.finish()?;
        Ok(Self {
            key_settings,
            cursor,
            generation,
            last_mac,
            max_seq,
            total_bytes,
            dead_bytes,
            secrets,
            root,
            settings,
            events,
            header_confirmed,
            header_pending,
            keys,
        })
    }
}

/// The index key's companion for names: the key under which names are hashed into the tree's
/// order. Kept apart from the block key so that the order reveals nothing about the blocks.
pub fn name_key(names: &vault_crypto::derive::IndexNameKey, name: &str) -> [u8; KEY_LEN] {
    *vault_crypto::mac::hmac_sha256(names.key().expose_secret(), &[&[1], name.as_bytes()])
        .as_bytes()
}
