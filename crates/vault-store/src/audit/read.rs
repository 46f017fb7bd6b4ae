//! Reading the audit trail (docs/designs/audit.md, FORMAT.md §6.13): every chain file checked in
//! order (the current key epoch's by their MACs, older ones through the hash the next file links
//! to), entries handed over one at a time so a reader holds one file at most, the start of a
//! trail that retention shortened accounted for; and copying the files for a backup.

use vault_format::audit::{
    AuditEntry, AuditKeys, AuditOp, FILE_HEADER_LEN, FLAG_BEFORE_UNLOCK, FLAG_TRAIL, FileHeader,
    LINK_LEN, NameKeys, RetentionNote, Target, check_file, frames,
};

use super::files::{AuditFiles, PENDING, epoch_link};
use super::segments::{FileId, file_name, parse_file_name};
use crate::{Error, Result};

/// Largest audit file a check reads (it reads each file whole; files are sealed at 16 MiB, so
/// only a file written before there were several per key epoch comes near this).
const MAX_CHECKED_BYTES: u64 = 1 << 30;
/// Most bytes of a pending file counted.
const MAX_PENDING_BYTES: u64 = 4 << 20;

/// One chain file as read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditFileInfo {
    /// Its key epoch.
    pub epoch: u32,
    /// Its place among the key epoch's files, from 0.
    pub segment: u32,
    /// Entries in it.
    pub entries: u64,
}

/// The names an entry of one key epoch records, as its caller can match them: with that epoch's
/// name keys (the current epoch's, or handed over by the rotations since), or none when they
/// were not handed over (a rotation interrupted before it could).
pub struct AuditNames<'a>(Option<&'a NameKeys>);

impl AuditNames<'_> {
    /// Whether `target` is the secret (`key: false`) or managed key named `name`.
    pub fn is(&self, target: &Target, name: &str, key: bool) -> bool {
        self.0
            .is_some_and(|k| k.names(target, if key { 2 } else { 1 }, name))
    }

    /// The name a sealed target holds, with whether it is a managed key's.
    pub fn name_of(&self, target: &Target) -> Option<(String, bool)> {
        self.0?.open_name(target).map(|(k, n)| (n, k == 2))
    }
}

/// The audit trail as read: the entries (when collected), the chain files with their entry
/// counts, the first problem the checks found, entries recorded before an unlock not yet folded
/// in, and where a trail shortened by retention now starts.
#[derive(Debug, Default)]
pub struct AuditRead {
    /// Entries, oldest first ([`crate::Vault::audit_trail`]; empty when they were handed over
    /// one at a time).
    pub entries: Vec<AuditEntry>,
    /// How many entries were read.
    pub count: u64,
    /// The chain files, oldest first.
    pub files: Vec<AuditFileInfo>,
    /// The first entry the checks found wrong, and why.
    pub problem: Option<(u64, String)>,
    /// Entries in the pending file.
    pub pending: u64,
    /// The first entry kept when retention removed the ones before it.
    pub retained_from: Option<u64>,
    /// Files of later key epochs than the reader's (a rotation since it opened the vault, or
    /// files put there: [`crate::Vault::audit_each`] tells which).
    pub later: Vec<String>,
    /// What the checks found that is not tampering but limits what the trail shows.
    pub notes: Vec<String>,
}

impl AuditFiles {
    /// Reads and checks every chain file of key epochs up to `epoch`, oldest first, handing each
    /// entry to `f` as it is read; counts the pending entries not yet folded.
    pub(crate) fn read_each(
        &self,
        keys: &AuditKeys,
        epoch: u32,
        f: &mut dyn FnMut(AuditEntry, &AuditNames<'_>) -> Result<()>,
    ) -> Result<AuditRead> {
        let _lock = self.lock_for_reading()?;
        let (ids, later): (Vec<_>, Vec<_>) = self
            .chain_files()?
            .into_iter()
            .partition(|(e, _)| *e <= epoch);
        let older = self.handed_over(keys, epoch, &ids);
        // The last entry appended (by a process keeping its anchor where this one does): the
        // trail must still hold it, with that link.
        let mut out = AuditRead {
            later: later.into_iter().map(file_name).collect(),
            ..AuditRead::default()
        };
        let (anchor, changed) = match self.read_anchor(keys, epoch) {
            Ok(a) => (a, None),
            Err(why) => (None, Some(why)),
        };
        let mut anchor_seen = false;
        let mut last_seen = 0;
        let mut expected: Option<(u64, [u8; LINK_LEN])> = None;
        let mut first: Option<(String, FileHeader)> = None;
        let mut note: Option<RetentionNote> = None;
        // Problems by the order they are found; the start's is decided at the end.
        let mut problem: Option<(u64, String)> = None;
        let mut trail_problem: Option<(u64, String)> = None;
        for id in ids.iter().copied() {
            let name = file_name(id);
            let at = expected.map_or(1, |x| x.0);
            let size = self.io.stamp(&self.path(&name)).map_or(0, |s| s.len);
            if size > MAX_CHECKED_BYTES {
                problem.get_or_insert((
                    at,
                    format!("{name} is {size} bytes, more than this build checks at once"),
                ));
                break;
            }
            let Ok(Some(bytes)) = self.read_all(&name) else {
                // Listed but not readable as a file (a link to nothing, a directory): the
                // entries it should hold are missing.
                problem.get_or_insert((at, format!("{name} cannot be read as an audit file")));
                break;
            };
            // The current key epoch's files are checked by their MACs; an older one's through
            // the next file's link to its hash (its key is gone).
            let current = id.0 == epoch;
            let check = check_file(&bytes, false, &self.vault_id, current.then_some(keys), None)
                .map_err(|err| self.damaged(&name, err.to_string()))?;
            if first.is_none() {
                first = Some((name.clone(), check.header));
            }
            if let Some((index, link)) = expected
                && (check.header.first_index != index || check.header.previous != link)
            {
                problem.get_or_insert((
                    check.header.first_index,
                    format!(
                        "{name} does not continue the file before it (that file changed after it was sealed, or a file is missing)"
                    ),
                ));
            }
            if let Some((i, why)) = &check.problem
                && (current || !why.contains("link"))
            {
                problem.get_or_insert((*i, why.clone()));
            }
            let (fs, _) = frames(bytes.get(FILE_HEADER_LEN..).unwrap_or_default());
            let names = AuditNames(if current {
                Some(keys.name_keys())
            } else {
                older.iter().find(|(e, _)| *e == id.0).map(|(_, k)| k)
            });
            let mut entries = 0;
            let mut last_index = check.header.first_index.saturating_sub(1);
            for fr in &fs {
                let Ok(entry) = AuditEntry::decode(fr.entry) else {
                    continue;
                };
                if entry.flags & FLAG_TRAIL != 0
                    && entry.op == AuditOp::Retention
                    && let Ok(n) = RetentionNote::from_detail(&entry.detail)
                {
                    note = Some(n);
                }
                // The trail's own report of entries it could not record, or of a file that
                // did not verify when it was sealed.
                if entry.op == AuditOp::Maintenance
                    && entry.outcome == 5
                    && entry.flags & (FLAG_BEFORE_UNLOCK | FLAG_TRAIL) != 0
                {
                    trail_problem.get_or_insert((entry.index, entry.detail.clone()));
                }
                if current
                    && let Some((index, link, _)) = anchor
                    && entry.index == index
                {
                    anchor_seen = true;
                    if fr.link != link {
                        problem.get_or_insert((
                            index,
                            "it is not the entry last written there (the anchor beside the rollback record says so): the trail was replaced".into(),
                        ));
                    }
                }
                last_index = entry.index;
                last_seen = last_seen.max(entry.index);
                entries += 1;
                out.count += 1;
                f(entry, &names)?;
            }
            expected = Some((last_index + 1, epoch_link(&bytes)));
            out.files.push(AuditFileInfo {
                epoch: id.0,
                segment: id.1,
                entries,
            });
        }
        if let Some(why) = changed {
            problem.get_or_insert((
                last_seen + 1,
                format!("the anchor beside the rollback record was changed ({why})"),
            ));
        }
        // An earlier key epoch whose names were not handed over: its rotation stopped before its
        // audit step (the new epoch's first file started without it), so the old epoch's last
        // file was sealed without being checked, and its names cannot be matched.
        let first_epoch = ids.first().map_or(epoch, |(e, _)| *e);
        let reached = older.last().map_or(epoch, |(e, _)| *e);
        if reached > first_epoch {
            out.notes.push(format!(
                "key epoch {reached}'s files do not hand over key epoch {}'s names (a rotation that stopped before its audit step): its last file was sealed without being checked, and names of key epochs before {reached} cannot be matched",
                reached - 1
            ));
        }
        if let Some((index, _, _)) = anchor
            && !anchor_seen
            && last_seen < index
        {
            problem.get_or_insert((
                last_seen + 1,
                format!(
                    "the trail ends at entry {last_seen}, but entry {index} was written (the anchor beside the rollback record says so): entries or files were removed from its end"
                ),
            ));
        }
        // Where the trail starts: at entry 1, or where the latest retention entry says it
        // kept from (or before it: a retention stopped between removing files).
        let start = first.and_then(|(name, h)| {
            if h.first_index == 1 && h.previous == [0; LINK_LEN] {
                return None;
            }
            match note {
                Some(n)
                    if h.first_index < n.first_kept
                        || (h.first_index == n.first_kept && h.previous == n.link) =>
                {
                    out.retained_from = Some(h.first_index);
                    None
                }
                Some(n) => Some((
                    n.first_kept,
                    format!(
                        "{name} starts at entry {}, but retention kept from entry {}: files were removed",
                        h.first_index, n.first_kept
                    ),
                )),
                None => Some((
                    1,
                    format!(
                        "{name} starts at entry {}: the files before it are missing (no retention entry accounts for them)",
                        h.first_index
                    ),
                )),
            }
        });
        out.problem = start.or(problem).or(trail_problem);
        let pending_len = self.io.stamp(&self.path(PENDING)).map_or(0, |s| s.len);
        if pending_len <= MAX_PENDING_BYTES
            && let Ok(Some(bytes)) = self.read_all(PENDING)
        {
            let (fs, _) = frames(bytes.get(FILE_HEADER_LEN..).unwrap_or_default());
            out.pending = fs.len() as u64;
        }
        Ok(out)
    }
}

impl AuditFiles {
    /// The name keys of the key epochs before `epoch`, newest first, as far as each rotation
    /// handed them over: the key-handover entry among the first entries of an epoch's files
    /// holds the previous epoch's, sealed under its own.
    fn handed_over(&self, keys: &AuditKeys, epoch: u32, ids: &[FileId]) -> Vec<(u32, NameKeys)> {
        let mut out: Vec<(u32, NameKeys)> = Vec::new();
        let mut at = epoch;
        loop {
            let found = {
                let holder = if at == epoch {
                    keys.name_keys()
                } else if let Some((_, k)) = out.last() {
                    k
                } else {
                    break;
                };
                self.find_handover(holder, at, ids)
            };
            match found {
                Some((e, k)) if e < at => {
                    out.push((e, k));
                    at = e;
                }
                _ => break,
            }
        }
        out
    }

    /// The handover among the first entries of the first two files of key epoch `epoch`.
    fn find_handover(
        &self,
        holder: &NameKeys,
        epoch: u32,
        ids: &[FileId],
    ) -> Option<(u32, NameKeys)> {
        for id in ids.iter().filter(|(e, _)| *e == epoch).take(2) {
            let path = self.path(&file_name(*id));
            let Ok(file) = self.io.open_read(&path) else {
                continue;
            };
            let len = file.stamp().map_or(0, |s| s.len).min(8192);
            let mut head = vec![0u8; len as usize];
            if file.read_exact_at(&mut head, 0).is_err() {
                continue;
            }
            let (fs, _) = frames(head.get(FILE_HEADER_LEN..).unwrap_or_default());
            for fr in fs.iter().take(4) {
                let Ok(e) = AuditEntry::decode(fr.entry) else {
                    continue;
                };
                if e.op != AuditOp::KeyHandover || e.flags & FLAG_TRAIL == 0 {
                    continue;
                }
                let Some(from) = e
                    .detail
                    .strip_prefix("key epoch ")
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(k) = holder.open_handover(&e.target) {
                    return Some((from, k));
                }
            }
        }
        None
    }
}

/// What [`crate::Vault::audit_files`] hands each piece to: (file name, offset, bytes).
pub type AuditPieces<'a> = dyn FnMut(&str, u64, &[u8]) -> Result<()> + 'a;

/// Largest piece [`crate::Vault::audit_files`] hands over at once.
pub const AUDIT_PART_LEN: usize = 1 << 20;

impl AuditFiles {
    /// Every audit file (the chain files in order, then the pending file), read under the lock
    /// in pieces of at most [`AUDIT_PART_LEN`]: `f(file name, offset, bytes)`.
    pub(crate) fn copy(&self, f: &mut AuditPieces<'_>) -> Result<()> {
        let _lock = self.lock()?;
        let names = self.chain_files()?.into_iter().map(file_name);
        let pending = self
            .io
            .stamp(&self.path(PENDING))
            .is_ok()
            .then(|| PENDING.to_string());
        // A piece at a time: a backup's memory stays bounded whatever the trail's size.
        let mut piece = vec![0u8; AUDIT_PART_LEN];
        for name in names.chain(pending) {
            let path = self.path(&name);
            let file = match self.io.open_read(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("opening", &path, e)),
            };
            let len = file
                .stamp()
                .map_err(|e| Error::io("reading", &path, e))?
                .len;
            let mut offset = 0u64;
            while offset < len {
                let n = (len - offset).min(AUDIT_PART_LEN as u64) as usize;
                let buf = piece.get_mut(..n).unwrap_or_default();
                file.read_exact_at(buf, offset)
                    .map_err(|e| Error::io("reading", &path, e))?;
                f(&name, offset, buf)?;
                offset += n as u64;
            }
        }
        Ok(())
    }
}

/// Whether `name` is the name of an audit file (a chain file `audit.<epoch>` or
/// `audit.<epoch>.<n>`, or `audit.pending`): what a restore accepts to write.
pub fn is_audit_file_name(name: &str) -> bool {
    name == PENDING || parse_file_name(name).is_some()
}
