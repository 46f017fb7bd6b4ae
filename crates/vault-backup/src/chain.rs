//! A chain of backups (a full backup, then incrementals, each made on the one before it)
//! merged into the vault the last one was made of: every file is read at once, as streams in
//! the one order their secrets share, so memory holds one item per file whatever their size.
//!
//! Each secret of the last backup lists its kept versions and carries those written since its
//! base; every other version comes from the newest earlier backup that carries it (or the full
//! backup, which carries every version it kept). A version that no backup of the chain holds
//! means the chain is not whole, and is refused by name.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;

use vault_format::backup::{BackupHeader, FLAG_INCREMENTAL};
use vault_store::LoadItem;

use crate::backup::ItemStream;
use crate::payload::{Counts, Item, Kept, version_check};
use crate::{Error, Limits};

/// What a chain holds, merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// Every backup's header, in chain order.
    pub headers: Vec<BackupHeader>,
    /// The merged vault's keys, secrets and secret versions.
    pub counts: Counts,
    /// Sealed chunks read, all files together.
    pub chunks: u64,
    /// Bytes of the vault's audit trail the chain carries (from its newest backup that has it).
    pub audit_bytes: u64,
}

/// What a merge hands on: the merged vault's items, and the pieces of its audit trail.
#[derive(Debug)]
pub enum Merged {
    /// Something to load into the restored vault.
    Load(LoadItem),
    /// A piece of the audit file `name` of the backed-up vault.
    Audit {
        /// The file's name in the vault directory.
        name: String,
        /// Where the piece starts.
        offset: u64,
        /// The piece.
        bytes: Vec<u8>,
    },
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn chain_err(msg: String) -> Error {
    Error::Chain(msg)
}

/// The files are each sound but do not add up: damage, as a bad chunk is.
fn damaged(msg: String) -> Error {
    Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, msg))
}

/// Checks that `headers` (of the files `names`) form one chain: a full backup first, then each
/// an incremental on the one before it (same vault, key epoch and lineage; its base id,
/// generation and sequence those of the one before). No passphrase is needed.
///
/// # Errors
/// [`Error::Chain`] naming the first file that does not follow.
pub fn check(names: &[String], headers: &[BackupHeader]) -> Result<(), Error> {
    let (Some(first), Some(first_name)) = (headers.first(), names.first()) else {
        return Err(chain_err("no backup given".into()));
    };
    if first.flags & FLAG_INCREMENTAL != 0 {
        return Err(chain_err(format!(
            "{first_name} is an incremental backup (on backup {}): a chain starts with the full backup it is based on",
            hex(&first.base_id)
        )));
    }
    for (i, pair) in headers.windows(2).enumerate() {
        let [prev, next] = pair else { continue };
        let prev_name = names.get(i).map_or("?", String::as_str);
        let name = names.get(i + 1).map_or("?", String::as_str);
        if next.flags & FLAG_INCREMENTAL == 0 {
            return Err(chain_err(format!(
                "{name} is a full backup: only incremental backups follow the first"
            )));
        }
        if next.vault_id != prev.vault_id {
            return Err(chain_err(format!(
                "{name} is of vault {}, {prev_name} of vault {}",
                next.vault_id.to_hex(),
                prev.vault_id.to_hex()
            )));
        }
        if next.base_id != prev.backup_id {
            return Err(chain_err(format!(
                "{name} is not based on {prev_name}: its base is backup {} (generation {}), {prev_name} is backup {} (generation {}){}",
                hex(&next.base_id),
                next.base_generation,
                hex(&prev.backup_id),
                prev.source_generation,
                if next.base_generation > prev.source_generation {
                    " (a backup between them is missing?)"
                } else {
                    ""
                }
            )));
        }
        if next.base_generation != prev.source_generation
            || next.base_sequence != prev.source_sequence
            || next.key_epoch != prev.key_epoch
            || next.lineage != prev.lineage
        {
            return Err(chain_err(format!(
                "{name} names {prev_name} as its base but does not continue it (generation, sequence, key epoch or lineage differ)"
            )));
        }
    }
    Ok(())
}

/// The files of a chain, each opened once: every pass reads the same files (a name that comes to
/// point at another file meanwhile changes nothing), with their headers read and the chain
/// checked from them (no passphrase needed).
pub struct ChainFiles {
    names: Vec<String>,
    files: Vec<File>,
    headers: Vec<BackupHeader>,
}

impl ChainFiles {
    /// Opens `paths` (regular files only), reads their headers and checks they form a chain.
    ///
    /// # Errors
    /// A file that cannot be opened or is not a regular file ([`Error::Io`]: `InvalidInput`);
    /// a header that is not a backup's; [`Error::Chain`].
    pub fn open(paths: &[PathBuf]) -> Result<Self, Error> {
        let mut files = Vec::with_capacity(paths.len());
        let mut headers = Vec::with_capacity(paths.len());
        let names: Vec<String> = paths.iter().map(|f| f.display().to_string()).collect();
        for (p, name) in paths.iter().zip(&names) {
            use std::os::unix::fs::OpenOptionsExt;
            // Non-blocking, so that a FIFO in a file's place is refused, not waited on.
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(p)?;
            if !f.metadata()?.is_file() {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{name} is not a regular file"),
                )));
            }
            let (h, _) = crate::read_header(&mut f).map_err(|e| in_file(name, e))?;
            headers.push(h);
            files.push(f);
        }
        check(&names, &headers)?;
        Ok(ChainFiles {
            names,
            files,
            headers,
        })
    }

    /// The headers, in chain order.
    pub fn headers(&self) -> &[BackupHeader] {
        &self.headers
    }

    /// Each file from its start, as a stream under `passphrase`; its header must be the one read
    /// when it was opened.
    fn streams(&self, passphrase: &[u8], limits: &Limits) -> Result<Vec<Src<'_>>, Error> {
        let mut srcs = Vec::with_capacity(self.files.len());
        for ((f, name), header) in self.files.iter().zip(&self.names).zip(&self.headers) {
            let mut r = f;
            std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(0))?;
            let stream = ItemStream::open(r, passphrase, limits).map_err(|e| in_file(name, e))?;
            if stream.header() != header {
                return Err(damaged(format!("{name} changed while it was being read")));
            }
            let mut src = Src {
                stream,
                peek: None,
                name: name.clone(),
            };
            src.advance()?;
            srcs.push(src);
        }
        Ok(srcs)
    }
}

/// One backup of the chain, read as a stream, with its next item looked at.
struct Src<'a> {
    stream: ItemStream<&'a File>,
    peek: Option<Item>,
    name: String,
}

impl Src<'_> {
    fn advance(&mut self) -> Result<(), Error> {
        self.peek = self
            .stream
            .next_item()
            .map_err(|e| in_file(&self.name, e))?;
        Ok(())
    }

    /// Where the secret it looks at stands in the order secrets share: (order, name).
    fn place(&self) -> Option<(u16, &str)> {
        match &self.peek {
            Some(Item::Secret { order, name, .. } | Item::Changed { order, name, .. }) => {
                Some((*order, name.as_str()))
            }
            _ => None,
        }
    }

    /// Passes over the secret it looks at and its versions.
    fn skip_secret(&mut self) -> Result<(), Error> {
        self.advance()?;
        while matches!(self.peek, Some(Item::Version(_))) {
            self.advance()?;
        }
        Ok(())
    }
}

/// Names the file an error came from (a chunk number alone does not say which file).
fn in_file(name: &str, e: Error) -> Error {
    match e {
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), format!("{name}: {io}"))),
        other => other,
    }
}

/// What an earlier backup holds of the secret being merged.
enum Part {
    /// The full backup: its versions, whichever they are.
    Full,
    /// An incremental: the versions it carries.
    Carried(HashSet<u32>),
}

/// Reads the chain `chain` (a full backup, then its incrementals in order) and hands the
/// merged vault to `emit`: the settings, every key, then every secret's versions, each followed
/// by its soft delete if any. Checks every file to its last byte, that every kept version is
/// found (and is the version the last backup lists), and that no name is given twice.
///
/// # Errors
/// Each file's errors (naming the file), `emit`'s.
pub fn merge(
    chain: &ChainFiles,
    passphrase: &[u8],
    limits: &Limits,
    emit: &mut dyn FnMut(Merged) -> Result<(), Error>,
) -> Result<ChainSummary, Error> {
    merge_inner(chain, passphrase, limits, emit, true)
}

/// [`merge`] of a chain [`verify`] passed: the names are not collected again (16 bytes a
/// secret, which a restore of a million secrets would hold beside the vault it builds).
pub(crate) fn merge_verified(
    chain: &ChainFiles,
    passphrase: &[u8],
    limits: &Limits,
    emit: &mut dyn FnMut(Merged) -> Result<(), Error>,
) -> Result<ChainSummary, Error> {
    merge_inner(chain, passphrase, limits, emit, false)
}

fn merge_inner(
    chain: &ChainFiles,
    passphrase: &[u8],
    limits: &Limits,
    emit: &mut dyn FnMut(Merged) -> Result<(), Error>,
    check_names: bool,
) -> Result<ChainSummary, Error> {
    let names = &chain.names;
    let headers = chain.headers.clone();
    let mut srcs = chain.streams(passphrase, limits)?;
    let mut emit_load = |item: LoadItem| emit(Merged::Load(item));
    let mut counts = Counts::default();
    // Settings: the newest backup's.
    let mut settings = None;
    for s in &mut srcs {
        if let Some(Item::Settings(m)) = s.peek {
            settings = Some(m);
            s.advance()?;
        }
    }
    if let Some(m) = settings {
        emit_load(LoadItem::Settings(m))?;
    }
    // Keys: in name order in every backup; a key is never removed from a vault, so every key of
    // every backup is kept, as the newest backup holding it has it.
    loop {
        let next = srcs
            .iter()
            .filter_map(|s| match &s.peek {
                Some(Item::Key(k, _)) => Some(k.name.clone()),
                _ => None,
            })
            .min();
        let Some(name) = next else { break };
        let mut newest = None;
        for s in &mut srcs {
            if matches!(&s.peek, Some(Item::Key(k, _)) if k.name == name) {
                newest = s.peek.take();
                s.advance()?;
            }
        }
        if let Some(Item::Key(k, v)) = newest {
            counts.keys += 1;
            emit_load(LoadItem::Key(k, v))?;
        }
    }
    let last = srcs.len() - 1;
    // Every name, as a 128-bit keyed hash (16 bytes a name), to find one given twice (each
    // file is in strictly increasing order, but a crafted file could give a name two orders).
    let mut seen_names: Vec<u128> = Vec::new();
    let (a, b) = (
        std::collections::hash_map::RandomState::new(),
        std::collections::hash_map::RandomState::new(),
    );
    let hash = |name: &str| {
        use std::hash::BuildHasher;
        (u128::from(a.hash_one(name)) << 64) | u128::from(b.hash_one(name))
    };
    while let Some(driver) = srcs.get_mut(last) {
        let (order, name, deleted, kept) = match driver.peek.take() {
            None => break,
            Some(Item::Secret {
                order,
                name,
                deleted,
                ..
            }) => (order, name, deleted, None),
            Some(Item::Changed {
                order,
                name,
                deleted,
                kept,
            }) => (order, name, deleted, Some(kept)),
            Some(part @ Item::AuditPart { .. }) => {
                // The secrets ended; the audit trail follows (read in the drain below).
                driver.peek = Some(part);
                break;
            }
            Some(_) => {
                return Err(damaged(format!(
                    "{}: an item out of place among the secrets",
                    driver.name
                )));
            }
        };
        driver.advance()?;
        if check_names {
            seen_names.push(hash(&name));
        }
        counts.secrets += 1;
        let Some(kept) = kept else {
            // A full backup alone: its versions as they come.
            while matches!(driver.peek, Some(Item::Version(_))) {
                if let Some(Item::Version(v)) = driver.peek.take() {
                    counts.versions += 1;
                    emit_load(LoadItem::Version(v))?;
                }
                driver.advance()?;
            }
            if deleted {
                emit_load(LoadItem::Deleted(name))?;
            }
            continue;
        };
        // The earlier backups, brought to this secret (passing over secrets removed since).
        let mut parts: Vec<Option<Part>> = Vec::with_capacity(last);
        for s in srcs.iter_mut().take(last) {
            while s.place().is_some_and(|p| p < (order, name.as_str())) {
                s.skip_secret()?;
            }
            let part = match &s.peek {
                Some(Item::Secret {
                    order: o, name: n, ..
                }) if *o == order && *n == name => Some(Part::Full),
                Some(Item::Changed {
                    order: o,
                    name: n,
                    kept: k,
                    ..
                }) if *o == order && *n == name => Some(Part::Carried(
                    k.iter()
                        .filter(|k| k.check.is_none())
                        .map(|k| k.version)
                        .collect(),
                )),
                _ => None,
            };
            parts.push(part);
        }
        // Which backup each kept version comes from: the newest that carries it.
        let supplier = |v: u32| -> Option<usize> {
            let k = kept.iter().find(|k| k.version == v)?;
            if k.check.is_none() {
                return Some(last);
            }
            parts.iter().enumerate().rev().find_map(|(j, p)| match p {
                Some(Part::Carried(set)) if set.contains(&v) => Some(j),
                Some(Part::Full) => Some(j),
                _ => None,
            })
        };
        let mut found: HashSet<u32> = HashSet::with_capacity(kept.len());
        for (j, s) in srcs.iter_mut().enumerate() {
            if j < last && parts.get(j).is_none_or(Option::is_none) {
                continue;
            }
            if j < last {
                s.advance()?; // past the secret item itself
            }
            while let Some(Item::Version(v)) = &s.peek {
                let take = supplier(v.version) == Some(j);
                let Some(Item::Version(v)) = s.peek.take() else {
                    break;
                };
                s.advance()?;
                if take && found.insert(v.version) {
                    // From an earlier backup: it must be the version the last one lists.
                    let expected = kept.iter().find(|k| k.version == v.version);
                    if let Some(c) = expected.and_then(|k| k.check)
                        && c != version_check(v.created_ms, v.value.len() as u64)
                    {
                        return Err(damaged(format!(
                            "secret {name:?} version {} in {} is not the version the last backup lists: the vault's history split from this chain's (an older copy of the vault put back?); make a full backup",
                            v.version, s.name
                        )));
                    }
                    counts.versions += 1;
                    emit_load(LoadItem::Version(v))?;
                }
            }
        }
        if let Some(Kept {
            version: missing, ..
        }) = kept.iter().find(|k| !found.contains(&k.version))
        {
            return Err(damaged(format!(
                "secret {name:?} version {missing} is in none of the backups of the chain (the chain is not whole: a backup missing, or one that is not a base of the next)"
            )));
        }
        if deleted {
            emit_load(LoadItem::Deleted(name))?;
        }
    }
    seen_names.sort_unstable();
    if seen_names.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(damaged(format!(
            "{}: backup payload: a secret is in the backup twice",
            names.last().map_or("", String::as_str)
        )));
    }
    drop(seen_names);
    // The backups are read to their ends, so that each is checked whole; the audit trail is
    // taken from the newest backup that carries one (each carries the whole trail).
    let audit_from = headers
        .iter()
        .rposition(|h| h.flags & vault_format::backup::FLAG_AUDIT != 0);
    let mut chunks = 0;
    let mut audit_bytes = 0;
    for (j, s) in srcs.iter_mut().enumerate() {
        while let Some(item) = s.peek.take() {
            match item {
                Item::AuditPart {
                    name,
                    offset,
                    bytes,
                } if Some(j) == audit_from => {
                    audit_bytes += bytes.len() as u64;
                    emit(Merged::Audit {
                        name,
                        offset,
                        bytes,
                    })?;
                }
                Item::AuditPart { .. } => {}
                _ if j == last => {
                    return Err(damaged(format!(
                        "{}: an item out of place after the secrets",
                        s.name
                    )));
                }
                _ => {}
            }
            s.advance()?;
        }
        chunks += s.stream.summary().chunks;
    }
    Ok(ChainSummary {
        headers,
        counts,
        chunks,
        audit_bytes,
    })
}

/// Checks a chain without writing anything; returns what the merged vault holds.
///
/// # Errors
/// As [`merge`].
pub fn verify(
    chain: &ChainFiles,
    passphrase: &[u8],
    limits: &Limits,
) -> Result<ChainSummary, Error> {
    merge(chain, passphrase, limits, &mut |_| Ok(()))
}
