//! A backup's payload (inside the container, gzip-compressed unless turned off): a version byte,
//! then items, one at a time, so neither side ever holds more than one record:
//!
//! ```text
//! payload = version (u8 = 1) ‖ item* ‖ end
//! item    = kind (u8) ‖ length (u32) ‖ body            (body ≤ 16 MiB)
//!   1 key            key record (u32 length ‖ kind-7 payload) ‖ count (u32)
//!                    ‖ (u32 length ‖ kind-3 payload)*   (the versions the key record lists)
//!   2 secret         order (u16 BE) ‖ name (u16 length ‖ UTF-8) ‖ deleted (u8)
//!                    ‖ version count (u32, ≥ 1)                      (full backups only)
//!   5 changed secret order (u16 BE) ‖ name (u16 length ‖ UTF-8) ‖ deleted (u8)
//!                    ‖ kept count (u32, 1..=10 000)
//!                    ‖ (version (u32) ‖ (u8 1 | u8 0 ‖ check (u32)))*   (1: carried here)
//!                                                                   (incremental backups only)
//!   3 secret version a kind-1 payload of the secret last started: its version count of them,
//!                    or its carried versions in the order listed
//!   4 settings       versions kept per secret (u32, 1..=10 000); first, at most once
//!   6 audit part     file name (u8 length ‖ ASCII: audit.<epoch> or audit.pending)
//!                    ‖ offset (u64) ‖ bytes (≤ 1 MiB): a piece of the vault's audit trail,
//!                    after the secrets; each file's pieces in order from offset 0
//!   0 end            keys (u64) ‖ secrets (u64) ‖ secret versions (u64); nothing may follow
//! ```
//!
//! Keys come before secrets, keys in increasing order of name, secrets in strictly increasing
//! order of (order, name) (so that a chain of backups can be merged as streams). Record
//! payloads are FORMAT.md §6.3's, checked as a vault's records are; the end item's counts catch
//! a payload cut short inside the compressed stream.

use std::io::{self, Read, Write};

use vault_format::RecordKind;
use vault_format::payload::{KeyPayload, KeyVersionPayload, Payload, SecretVersionPayload};
use zeroize::Zeroizing;

/// The payload layout version.
pub const PAYLOAD_VERSION: u8 = 1;
/// Largest item body.
pub const MAX_ITEM: usize = 16 << 20;

/// One item of a payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// The vault's settings: versions kept per secret.
    Settings(u32),
    /// A managed key: its key record and version records.
    Key(KeyPayload, Vec<KeyVersionPayload>),
    /// A secret begins (a full backup): its name, whether it is soft-deleted, how many versions
    /// follow.
    Secret {
        /// Its place in the order of secrets (with the name).
        order: u16,
        /// Name.
        name: String,
        /// Soft-deleted.
        deleted: bool,
        /// Versions that follow.
        versions: u32,
    },
    /// A secret as it is now (an incremental backup): every kept version, and which of them
    /// were written since the base and follow.
    Changed {
        /// Its place in the order of secrets (with the name).
        order: u16,
        /// Name.
        name: String,
        /// Soft-deleted.
        deleted: bool,
        /// Kept versions in increasing order: each carried here, or with the check of the version
        /// an earlier backup of the chain must hold.
        kept: Vec<Kept>,
    },
    /// A version of the secret last begun.
    Version(SecretVersionPayload),
    /// A piece of one of the vault's audit files.
    AuditPart {
        /// The file's name in the vault directory.
        name: String,
        /// Where the piece starts in the file.
        offset: u64,
        /// The piece.
        bytes: Vec<u8>,
    },
}

/// A kept version of a changed secret: carried in this backup (`check: None`), or held by an
/// earlier backup of the chain, which must hold the version with this check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Version number.
    pub version: u32,
    /// `None`: carried here; otherwise [`version_check`] of the version an earlier backup holds.
    pub check: Option<u32>,
}

/// What tells the version an earlier backup holds from another version with the same number
/// (the vault's history having split from the base's: an older copy put back without a rollback
/// record to stop it): the first four bytes of SHA-256 over its creation time and length.
pub fn version_check(created_ms: i64, size: u64) -> u32 {
    let h = vault_crypto::hash::sha256(&[
        b"vault v1 backup version",
        &created_ms.to_le_bytes(),
        &size.to_le_bytes(),
    ]);
    let [a, b, c, d, ..] = h;
    u32::from_be_bytes([a, b, c, d])
}

/// What a payload held, as its end item says (and the reader counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Managed keys.
    pub keys: u64,
    /// Secrets.
    pub secrets: u64,
    /// Secret versions.
    pub versions: u64,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("backup payload: {}", msg.into()),
    )
}

/// The input's own error (a chunk that does not authenticate, a gzip stream that is damaged),
/// or, where it simply ended, what that means here.
fn eof_or(e: io::Error, what: &str) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad(what)
    } else if e.kind() == io::ErrorKind::InvalidInput {
        // flate2 reports a corrupt deflate stream as InvalidInput.
        bad(format!("the compressed stream is damaged ({e})"))
    } else {
        e
    }
}

fn encoded(p: Payload) -> io::Result<Zeroizing<Vec<u8>>> {
    p.encode().map_err(|e| bad(e.to_string()))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Bytes of items gathered before one write to the output: a compressor called once per small
/// item spent most of its time clearing its own buffers (perf: memset 15 % of a backup).
const WRITE_BATCH: usize = 64 * 1024;

/// Writes a payload item by item.
pub struct PayloadWriter<W: Write> {
    out: W,
    counts: Counts,
    /// Items not yet written to `out` (zeroized: they hold secret values).
    pending: Zeroizing<Vec<u8>>,
}

impl<W: Write> PayloadWriter<W> {
    /// Starts a payload on `out`.
    ///
    /// # Errors
    /// `out`'s error.
    pub fn new(out: W) -> io::Result<Self> {
        let mut pending = Zeroizing::new(Vec::with_capacity(2 * WRITE_BATCH));
        pending.push(PAYLOAD_VERSION);
        Ok(PayloadWriter {
            out,
            counts: Counts::default(),
            pending,
        })
    }

    fn item(&mut self, kind: u8, body: &[u8]) -> io::Result<()> {
        if body.len() > MAX_ITEM {
            return Err(bad("an item over 16 MiB"));
        }
        if self.pending.len() + 5 + body.len() > self.pending.capacity() {
            // Written out before it would grow (a grown buffer leaves a copy behind).
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        if 5 + body.len() > self.pending.capacity() {
            self.out.write_all(&[kind])?;
            self.out.write_all(&(body.len() as u32).to_le_bytes())?;
            return self.out.write_all(body);
        }
        self.pending.push(kind);
        self.pending
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(body);
        if self.pending.len() >= WRITE_BATCH {
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Writes an item.
    ///
    /// # Errors
    /// A record outside the format's limits; `out`'s error.
    pub fn write(&mut self, item: &Item) -> io::Result<()> {
        let mut body = Zeroizing::new(Vec::new());
        let kind = match item {
            Item::Settings(max) => {
                body.extend_from_slice(&max.to_le_bytes());
                4
            }
            Item::Key(k, versions) => {
                put_bytes(&mut body, &encoded(Payload::Key(k.clone()))?);
                body.extend_from_slice(&(versions.len() as u32).to_le_bytes());
                for v in versions {
                    let p = Payload::KeyVersion(KeyVersionPayload {
                        name: v.name.clone(),
                        version: v.version,
                        algorithm: v.algorithm.clone(),
                        state: v.state,
                        created_ms: v.created_ms,
                        state_changed_ms: v.state_changed_ms,
                        material: v.material.duplicate(),
                    });
                    put_bytes(&mut body, &encoded(p)?);
                }
                self.counts.keys += 1;
                1
            }
            Item::Secret {
                order,
                name,
                deleted,
                versions,
            } => {
                body.extend_from_slice(&order.to_be_bytes());
                body.extend_from_slice(&(name.len() as u16).to_le_bytes());
                body.extend_from_slice(name.as_bytes());
                body.push(u8::from(*deleted));
                body.extend_from_slice(&versions.to_le_bytes());
                self.counts.secrets += 1;
                2
            }
            Item::Changed {
                order,
                name,
                deleted,
                kept,
            } => {
                body.extend_from_slice(&order.to_be_bytes());
                body.extend_from_slice(&(name.len() as u16).to_le_bytes());
                body.extend_from_slice(name.as_bytes());
                body.push(u8::from(*deleted));
                body.extend_from_slice(&(kept.len() as u32).to_le_bytes());
                for k in kept {
                    body.extend_from_slice(&k.version.to_le_bytes());
                    match k.check {
                        None => body.push(1),
                        Some(c) => {
                            body.push(0);
                            body.extend_from_slice(&c.to_le_bytes());
                        }
                    }
                }
                self.counts.secrets += 1;
                5
            }
            Item::AuditPart {
                name,
                offset,
                bytes,
            } => {
                if !vault_store::is_audit_file_name(name)
                    || bytes.len() > vault_store::AUDIT_PART_LEN
                {
                    return Err(bad("an audit part with a bad name or over 1 MiB"));
                }
                body.push(name.len() as u8);
                body.extend_from_slice(name.as_bytes());
                body.extend_from_slice(&offset.to_le_bytes());
                body.extend_from_slice(bytes);
                6
            }
            Item::Version(v) => {
                let p = Payload::SecretVersion(SecretVersionPayload {
                    name: v.name.clone(),
                    version: v.version,
                    created_ms: v.created_ms,
                    tags: v.tags.clone(),
                    value: v.value.duplicate(),
                });
                body.extend_from_slice(&encoded(p)?);
                self.counts.versions += 1;
                3
            }
        };
        self.item(kind, &body)
    }

    /// Writes the end item; returns the output and the counts.
    ///
    /// # Errors
    /// `out`'s error.
    pub fn finish(mut self) -> io::Result<(W, Counts)> {
        let c = self.counts;
        let mut body = Vec::with_capacity(24);
        for n in [c.keys, c.secrets, c.versions] {
            body.extend_from_slice(&n.to_le_bytes());
        }
        self.item(0, &body)?;
        self.out.write_all(&self.pending)?;
        self.pending.clear();
        self.out.flush()?;
        Ok((self.out, c))
    }
}

/// Reads a payload item by item, checking each record, that a secret's versions are its own and
/// as many as announced, and the end item's counts.
pub struct PayloadReader<R: Read> {
    input: R,
    counts: Counts,
    /// Whether this is an incremental backup's payload (changed-secret items, not secrets).
    incremental: bool,
    /// The secret whose versions are being read.
    open: Option<Open>,
    /// The last key's name and the last secret's order and name: each must be above the last.
    last_key: Option<String>,
    last_order: Option<(u16, String)>,
    /// The audit file being read and where its next piece must start.
    audit: Option<(String, u64)>,
    /// Audit bytes read.
    audit_bytes: u64,
    done: bool,
}

/// The secret whose versions are being read: how many are still to come, the last one's
/// number, and (for a changed secret) the numbers they must have.
struct Open {
    name: String,
    left: u32,
    last: u32,
    expect: std::collections::VecDeque<u32>,
}

fn name_and_state(c: &mut Cur<'_>) -> io::Result<(u16, String, bool)> {
    let order = u16::from_be_bytes(c.take(2, "order")?.try_into().map_err(|_| bad("order"))?);
    let n = usize::from(u16::from_le_bytes(
        c.take(2, "name length")?
            .try_into()
            .map_err(|_| bad("name"))?,
    ));
    let name = String::from_utf8(c.take(n, "name")?.to_vec())
        .map_err(|_| bad("a name that is not UTF-8"))?;
    let deleted = match c.take(1, "deleted")?.first() {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(bad("deleted must be 0 or 1")),
    };
    Ok((order, name, deleted))
}

struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize, what: &str) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad(format!("{what} is cut short")));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> io::Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| bad(what))?))
    }
    fn bytes(&mut self, what: &str) -> io::Result<&'a [u8]> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
}

fn record(kind: RecordKind, bytes: &[u8]) -> io::Result<Payload> {
    Payload::decode(kind, bytes).map_err(|e| bad(e.to_string()))
}

impl<R: Read> PayloadReader<R> {
    /// Starts reading a payload from `input`: a full backup's, or an incremental one's.
    ///
    /// # Errors
    /// A newer payload version, or `input`'s error.
    pub fn new(mut input: R, incremental: bool) -> io::Result<Self> {
        let mut v = [0u8; 1];
        input.read_exact(&mut v).map_err(|e| eof_or(e, "empty"))?;
        let [version] = v;
        if version != PAYLOAD_VERSION {
            return Err(bad(format!(
                "version {version} (this build reads version {PAYLOAD_VERSION})"
            )));
        }
        Ok(PayloadReader {
            input,
            counts: Counts::default(),
            incremental,
            open: None,
            last_key: None,
            last_order: None,
            audit: None,
            audit_bytes: 0,
            done: false,
        })
    }

    /// What has been read so far (all of it, once [`PayloadReader::next_item`] gave `None`).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Bytes of the audit trail read so far.
    pub fn audit_bytes(&self) -> u64 {
        self.audit_bytes
    }

    /// The input the payload was read from (after the end item: what follows it).
    pub fn into_inner(self) -> R {
        self.input
    }

    /// The next item, or `None` after the end item (whose counts have then been checked).
    ///
    /// # Errors
    /// Anything malformed, with [`io::ErrorKind::InvalidData`].
    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        let mut head = [0u8; 5];
        self.input
            .read_exact(&mut head)
            .map_err(|e| eof_or(e, "it ends before its end item (cut short)"))?;
        let [kind, l0, l1, l2, l3] = head;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        if len > MAX_ITEM {
            return Err(bad(format!("an item of {len} bytes, over 16 MiB")));
        }
        let mut body = Zeroizing::new(vec![0u8; len]);
        self.input
            .read_exact(&mut body)
            .map_err(|e| eof_or(e, "an item is cut short"))?;
        if kind != 3
            && let Some(open) = &self.open
            && open.left > 0
        {
            return Err(bad(format!(
                "secret {:?} has fewer versions than announced",
                open.name
            )));
        }
        if kind == 1 && self.last_order.is_some() {
            return Err(bad("a key after the secrets"));
        }
        if matches!(kind, 1..=5) && self.audit.is_some() {
            return Err(bad("a key or secret after the audit trail"));
        }
        let mut c = Cur(&body);
        let item = match kind {
            0 => {
                let mut n = [0u64; 3];
                for x in &mut n {
                    let b = c.take(8, "the end item")?;
                    *x = u64::from_le_bytes(b.try_into().map_err(|_| bad("end item"))?);
                }
                let said = Counts {
                    keys: n[0],
                    secrets: n[1],
                    versions: n[2],
                };
                if said != self.counts || !c.0.is_empty() {
                    return Err(bad(format!(
                        "the end item says {said:?}, the payload held {:?}",
                        self.counts
                    )));
                }
                let mut more = [0u8; 1];
                if self
                    .input
                    .read(&mut more)
                    .map_err(|e| eof_or(e, "the compressed stream ends without its checksum"))?
                    != 0
                {
                    return Err(bad("bytes after the end item"));
                }
                self.done = true;
                return Ok(None);
            }
            1 => {
                let Payload::Key(k) = record(RecordKind::Key, c.bytes("key record")?)? else {
                    return Err(bad("not a key record"));
                };
                let n = c.u32("key version count")?;
                let mut versions = Vec::new();
                for _ in 0..n {
                    let Payload::KeyVersion(v) =
                        record(RecordKind::KeyVersion, c.bytes("key version")?)?
                    else {
                        return Err(bad("not a key version"));
                    };
                    versions.push(v);
                }
                if versions.iter().any(|v| v.name != k.name)
                    || versions
                        .iter()
                        .map(|v| v.version)
                        .ne(k.versions.iter().map(|v| v.version))
                    || !c.0.is_empty()
                {
                    return Err(bad(format!(
                        "key {:?}: its versions are not the ones its key record lists",
                        k.name
                    )));
                }
                if self.last_key.as_ref().is_some_and(|l| *l >= k.name) {
                    return Err(bad(format!("key {:?} is out of order", k.name)));
                }
                self.last_key = Some(k.name.clone());
                self.counts.keys += 1;
                Item::Key(k, versions)
            }
            2 | 5 => {
                if (kind == 5) != self.incremental {
                    return Err(bad(if self.incremental {
                        "a full secret item in an incremental backup"
                    } else {
                        "a changed-secret item in a full backup"
                    }));
                }
                let (order, name, deleted) = name_and_state(&mut c)?;
                if self
                    .last_order
                    .as_ref()
                    .is_some_and(|(o, n)| (*o, n.as_str()) >= (order, name.as_str()))
                {
                    return Err(bad(format!("secret {name:?} is out of order")));
                }
                self.last_order = Some((order, name.clone()));
                self.counts.secrets += 1;
                if kind == 2 {
                    let versions = c.u32("version count")?;
                    if versions == 0 || !c.0.is_empty() {
                        return Err(bad(format!("secret {name:?}: no versions, or bytes after")));
                    }
                    self.open = Some(Open {
                        name: name.clone(),
                        left: versions,
                        last: 0,
                        expect: Default::default(),
                    });
                    Item::Secret {
                        order,
                        name,
                        deleted,
                        versions,
                    }
                } else {
                    let n = c.u32("kept count")?;
                    if n == 0 || n > vault_format::payload::MAX_MAX_VERSIONS {
                        return Err(bad(format!("secret {name:?}: {n} kept versions")));
                    }
                    let mut kept = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        let v = c.u32("kept version")?;
                        let check = match c.take(1, "carried")?.first() {
                            Some(1) => None,
                            Some(0) => Some(c.u32("version check")?),
                            _ => return Err(bad("carried must be 0 or 1")),
                        };
                        if kept.last().is_some_and(|k: &Kept| k.version >= v) || v == 0 {
                            return Err(bad(format!(
                                "secret {name:?}: its kept versions are not in increasing order"
                            )));
                        }
                        kept.push(Kept { version: v, check });
                    }
                    if !c.0.is_empty() {
                        return Err(bad(format!("secret {name:?}: bytes after its versions")));
                    }
                    let expect: std::collections::VecDeque<u32> = kept
                        .iter()
                        .filter(|k| k.check.is_none())
                        .map(|k| k.version)
                        .collect();
                    self.open = Some(Open {
                        name: name.clone(),
                        left: expect.len() as u32,
                        last: 0,
                        expect,
                    });
                    Item::Changed {
                        order,
                        name,
                        deleted,
                        kept,
                    }
                }
            }
            3 => {
                let Payload::SecretVersion(v) = record(RecordKind::SecretVersion, &body)? else {
                    return Err(bad("not a secret version"));
                };
                match &mut self.open {
                    Some(o)
                        if o.left > 0
                            && o.name == v.name
                            && v.version > o.last
                            && o.expect.front().is_none_or(|e| *e == v.version) =>
                    {
                        o.left -= 1;
                        o.last = v.version;
                        o.expect.pop_front();
                    }
                    _ => return Err(bad("a secret version that is not the open secret's next")),
                }
                self.counts.versions += 1;
                Item::Version(v)
            }
            4 => {
                let max = c.u32("max versions")?;
                if !(1..=vault_format::payload::MAX_MAX_VERSIONS).contains(&max)
                    || !c.0.is_empty()
                    || self.counts != Counts::default()
                {
                    return Err(bad("settings out of range, or not first"));
                }
                Item::Settings(max)
            }
            6 => {
                let n = usize::from(*c.take(1, "audit file name length")?.first().unwrap_or(&0));
                let name = String::from_utf8(c.take(n, "audit file name")?.to_vec())
                    .map_err(|_| bad("an audit file name that is not UTF-8"))?;
                if !vault_store::is_audit_file_name(&name) {
                    return Err(bad(format!("{name:?} is not an audit file's name")));
                }
                let b = c.take(8, "audit offset")?;
                let offset = u64::from_le_bytes(b.try_into().map_err(|_| bad("audit offset"))?);
                let bytes = c.0.to_vec();
                if bytes.len() > vault_store::AUDIT_PART_LEN {
                    return Err(bad("an audit part over 1 MiB"));
                }
                // Each file's pieces in order from 0, files in increasing order of name.
                let expected = match &self.audit {
                    Some((last, next)) if *last == name => *next,
                    Some((last, _)) if *last >= name => {
                        return Err(bad(format!("audit file {name:?} out of order")));
                    }
                    _ => 0,
                };
                if offset != expected {
                    return Err(bad(format!(
                        "audit file {name:?}: a piece at {offset} where {expected} belongs"
                    )));
                }
                self.audit = Some((name.clone(), offset + bytes.len() as u64));
                self.audit_bytes += bytes.len() as u64;
                Item::AuditPart {
                    name,
                    offset,
                    bytes,
                }
            }
            other => return Err(bad(format!("unknown item kind {other}"))),
        };
        Ok(Some(item))
    }
}
