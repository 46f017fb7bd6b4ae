//! The trail's files in sequence (docs/designs/audit.md, FORMAT.md §6.13): their names (a key
//! epoch's files `audit.<epoch>`, `audit.<epoch>.1`, …), the policy a file starts with, sealing a
//! full or old file by its hash and starting the next, and retention removing the oldest files
//! with an entry saying so.

use vault_format::audit::{
    AuditEntry, AuditKeys, AuditOp, AuditPolicy, FILE_HEADER_LEN, FLAG_TRAIL, FRAME_OVERHEAD,
    FileHeader, LINK_LEN, MAX_ENTRY, RetentionNote, Target, check_file, last_frame,
};

use super::files::{AuditFiles, ChainEnd, epoch_link, process};
use crate::{Error, Result};

/// A chain file: (key epoch, segment). Files sort in chain order.
pub(crate) type FileId = (u32, u32);

/// Where a sealed file's successor is written before it is renamed into place (not `*.tmp`:
/// the vault's own leftover sweep removes those, and would race a seal under way).
pub(crate) const ROLL_TMP: &str = "audit.next";

/// The name of chain file `id`: `audit.<epoch>` for a key epoch's first file (the name older
/// builds used for the only one), `audit.<epoch>.<n>` for the ones after it.
pub(crate) fn file_name((epoch, segment): FileId) -> String {
    if segment == 0 {
        format!("audit.{epoch}")
    } else {
        format!("audit.{epoch}.{segment}")
    }
}

/// The chain file a name is, if it is one (written exactly as [`file_name`] writes it).
pub(crate) fn parse_file_name(name: &str) -> Option<FileId> {
    let rest = name.strip_prefix("audit.")?;
    let number = |t: &str| t.parse::<u32>().ok().filter(|n| n.to_string() == t);
    match rest.split_once('.') {
        None => Some((number(rest)?, 0)),
        Some((e, s)) => Some((number(e)?, number(s).filter(|n| *n >= 1)?)),
    }
}

/// Largest a file grows before the next one starts: 16 MiB, or a quarter of a size limit (so
/// retention removes at most that much more than it must).
pub(crate) fn segment_limit(policy: &AuditPolicy) -> u64 {
    const MAX: u64 = 16 << 20;
    if policy.max_bytes == 0 {
        MAX
    } else {
        (policy.max_bytes / 4).clamp(64 << 10, MAX)
    }
}

const DAY_MS: i64 = 86_400_000;

/// An entry the trail writes itself.
pub(crate) fn trail_entry(op: AuditOp, outcome: u8, detail: String, now_ms: i64) -> AuditEntry {
    let (pid, uid, host) = process();
    AuditEntry {
        index: 0,
        time_ms: now_ms,
        op,
        outcome,
        flags: FLAG_TRAIL,
        generation: 0,
        pid,
        uid,
        host,
        target: Target::None,
        detail,
    }
}

impl AuditFiles {
    /// The chain files there, in chain order.
    pub(crate) fn chain_files(&self) -> Result<Vec<FileId>> {
        let mut ids: Vec<FileId> = self
            .io
            .list_dir(&self.dir)
            .map_err(|e| Error::io("listing", &self.dir, e))?
            .iter()
            .filter_map(|n| parse_file_name(n))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The first entry of the chain file at `end`, with its bytes and link, if it has one
    /// that reads as an entry.
    fn first_entry(
        &self,
        end: &ChainEnd,
    ) -> Option<(FileHeader, AuditEntry, Vec<u8>, [u8; LINK_LEN])> {
        let mut head = vec![0u8; FILE_HEADER_LEN + 4];
        end.file.read_exact_at(&mut head, 0).ok()?;
        let header = FileHeader::decode(&head, false).ok()?;
        let len = u32::from_le_bytes(head.get(FILE_HEADER_LEN..)?.try_into().ok()?) as usize;
        if len > MAX_ENTRY || (FILE_HEADER_LEN + len + FRAME_OVERHEAD) as u64 > end.len {
            return None;
        }
        let mut frame = vec![0u8; len + FRAME_OVERHEAD];
        end.file
            .read_exact_at(&mut frame, FILE_HEADER_LEN as u64)
            .ok()?;
        let f = last_frame(&frame).filter(|f| f.offset == 0)?;
        let entry = AuditEntry::decode(f.entry).ok()?;
        Some((header, entry, f.entry.to_vec(), f.link))
    }

    /// The policy of the chain file at `end` (its first entry's, when that is a policy that
    /// authenticates under `keys`; the default otherwise) and the time of its first entry.
    pub(crate) fn policy_at(&self, keys: &AuditKeys, end: &ChainEnd) -> (AuditPolicy, Option<i64>) {
        let Some((header, entry, bytes, link)) = self.first_entry(end) else {
            return (AuditPolicy::default(), None);
        };
        let time = Some(entry.time_ms);
        let authentic =
            entry.index == header.first_index && keys.link(&header.previous, &bytes) == link;
        if entry.op == AuditOp::Policy && entry.outcome == 0 && authentic {
            (
                AuditPolicy::from_detail(&entry.detail).unwrap_or_default(),
                time,
            )
        } else {
            (AuditPolicy::default(), time)
        }
    }

    /// Whether the file at `end` is due to be sealed: past its size, or (with an age limit) its
    /// first entry older than an eighth of the limit, so retention removes entries at most that
    /// much later than the limit says.
    pub(crate) fn due(
        end: &ChainEnd,
        policy: &AuditPolicy,
        first_ms: Option<i64>,
        now_ms: i64,
    ) -> bool {
        if end.len >= segment_limit(policy) {
            return true;
        }
        policy.max_age_days > 0
            && first_ms.is_some_and(|t| {
                now_ms.saturating_sub(t) > i64::from(policy.max_age_days) * DAY_MS / 8
            })
    }

    /// Seals the file `from` (at `from_end`; its entries under `from_keys`) and starts `next`
    /// after it: the new file's header links to the whole sealed file's hash, and it starts with
    /// `first` (a policy) under `keys`, then, if the sealed file did not verify, an entry saying
    /// where. The new file is written aside, synced and renamed into place, so it is there
    /// whole or not at all. Returns the new file's end.
    pub(crate) fn seal_and_start(
        &self,
        (from, from_end, from_keys): (FileId, &ChainEnd, &AuditKeys),
        next: FileId,
        keys: &AuditKeys,
        mut first: Vec<AuditEntry>,
        now_ms: i64,
    ) -> Result<ChainEnd> {
        let from_path = self.path(&file_name(from));
        // The sealed file must be on disk as hashed: a crash must not lose its tail after
        // the next file has committed to it.
        from_end
            .file
            .sync_data()
            .map_err(|e| Error::io("syncing", &from_path, e))?;
        let mut bytes = from_end
            .file
            .read_from(0)
            .map_err(|e| Error::io("reading", &from_path, e))?;
        bytes.truncate(from_end.len as usize);
        if let Ok(check) = check_file(&bytes, false, &self.vault_id, Some(from_keys), None)
            && let Some((at, why)) = check.problem
        {
            first.push(super::files::trail_problem(
                format!(
                    "{} did not verify when it was sealed, from entry {at} on: {why}",
                    file_name(from)
                ),
                now_ms,
            ));
        }
        let header = FileHeader {
            pending: false,
            vault_id: self.vault_id,
            first_index: from_end.next,
            previous: epoch_link(&bytes),
        };
        drop(bytes);
        let tmp = self.path(ROLL_TMP);
        match self.io.remove(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("removing", &tmp, e));
            }
            _ => {}
        }
        // A failure part way leaves no file behind (a later seal would remove it anyway).
        let written = self.write_next(&tmp, &header, keys, first, next);
        if written.is_err() {
            let _ = self.io.remove(&tmp);
        }
        written
    }

    /// Writes the file after a sealed one at `tmp` (its header, then `first`), syncs it and
    /// renames it to `next`'s name.
    fn write_next(
        &self,
        tmp: &std::path::Path,
        header: &FileHeader,
        keys: &AuditKeys,
        first: Vec<AuditEntry>,
        next: FileId,
    ) -> Result<ChainEnd> {
        let file = self
            .io
            .create_new(tmp)
            .map_err(|e| Error::io("creating", tmp, e))?;
        let head = header.encode();
        file.write_all_at(&head, 0)
            .map_err(|e| Error::io("writing", tmp, e))?;
        let mut end = ChainEnd {
            file,
            len: head.len() as u64,
            next: header.first_index,
            previous: header.previous,
        };
        if !first.is_empty() {
            self.write_entries(keys, &mut end, first, tmp)?;
        }
        end.file
            .sync_data()
            .map_err(|e| Error::io("syncing", tmp, e))?;
        let path = self.path(&file_name(next));
        self.io
            .rename(tmp, &path)
            .map_err(|e| Error::io("renaming", tmp, e))?;
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("syncing", &self.dir, e))?;
        Ok(end)
    }

    /// The time of the last entry of file `id`, if it reads as one.
    fn last_time(&self, id: FileId) -> Option<i64> {
        let f = self.io.open_read(&self.path(&file_name(id))).ok()?;
        let len = f.stamp().ok()?.len;
        let from = len
            .saturating_sub((MAX_ENTRY + FRAME_OVERHEAD) as u64)
            .max(FILE_HEADER_LEN as u64);
        let tail = f.read_from(from).ok()?;
        AuditEntry::decode(last_frame(&tail)?.entry)
            .ok()
            .map(|e| e.time_ms)
    }

    /// Retention: removes the oldest files, never `current`, while the trail is over the size
    /// limit or their last entry is older than the age limit, after appending (at `end`, synced)
    /// an entry naming the first entry kept and the link before it, which is what a check of the
    /// trail then starts from. Only a run of the oldest files goes, so what is kept is one chain.
    pub(crate) fn retain(
        &self,
        keys: &AuditKeys,
        end: &mut ChainEnd,
        current: FileId,
        policy: &AuditPolicy,
        now_ms: i64,
    ) -> Result<()> {
        if policy.max_bytes == 0 && policy.max_age_days == 0 {
            return Ok(());
        }
        let files = self.chain_files()?;
        let sizes: Vec<(FileId, u64)> = files
            .iter()
            .map(|id| {
                let len = self
                    .io
                    .stamp(&self.path(&file_name(*id)))
                    .map_or(0, |s| s.len);
                (*id, len)
            })
            .collect();
        let mut total: u64 = sizes.iter().map(|(_, l)| l).sum();
        let cutoff = now_ms.saturating_sub(i64::from(policy.max_age_days) * DAY_MS);
        let mut remove = Vec::new();
        for (id, len) in sizes.iter().filter(|(id, _)| *id < current) {
            let too_big = policy.max_bytes > 0 && total > policy.max_bytes;
            let too_old =
                policy.max_age_days > 0 && self.last_time(*id).is_some_and(|t| t < cutoff);
            if !(too_big || too_old) {
                break;
            }
            remove.push(*id);
            total -= len;
        }
        let Some(kept) = files.get(remove.len()) else {
            return Ok(());
        };
        if remove.is_empty() {
            return Ok(());
        }
        let kept_path = self.path(&file_name(*kept));
        let mut head = vec![0u8; FILE_HEADER_LEN];
        self.io
            .open_read(&kept_path)
            .and_then(|f| f.read_exact_at(&mut head, 0))
            .map_err(|e| Error::io("reading", &kept_path, e))?;
        let header = FileHeader::decode(&head, false)
            .map_err(|e| self.damaged(&file_name(*kept), e.to_string()))?;
        let note = RetentionNote {
            first_kept: header.first_index,
            link: header.previous,
            files: remove.len() as u32,
        };
        let path = self.path(&file_name(current));
        self.write_entries(
            keys,
            end,
            vec![trail_entry(AuditOp::Retention, 0, note.to_detail(), now_ms)],
            &path,
        )?;
        // The note is durable before anything it accounts for is gone.
        end.file
            .sync_data()
            .map_err(|e| Error::io("syncing", &path, e))?;
        for id in remove {
            let p = self.path(&file_name(id));
            self.io
                .remove(&p)
                .map_err(|e| Error::io("removing", &p, e))?;
        }
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("syncing", &self.dir, e))
    }

    /// The policy restated as a new file's first entry (none for the default policy).
    pub(crate) fn restated(policy: &AuditPolicy, now_ms: i64) -> Vec<AuditEntry> {
        if *policy == AuditPolicy::default() {
            Vec::new()
        } else {
            vec![trail_entry(AuditOp::Policy, 0, policy.to_detail(), now_ms)]
        }
    }

    /// Changes the trail's policy: seals the current file and starts the next with `entry`
    /// (the change, recorded for its caller) as its first entry, then applies retention.
    pub(crate) fn set_policy(
        &self,
        keys: &AuditKeys,
        epoch: u32,
        policy: &AuditPolicy,
        mut entry: AuditEntry,
        now_ms: i64,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let (id, end) = self.current_end(epoch, 1, super::files::Later::Rotated)?;
        entry.op = AuditOp::Policy;
        entry.outcome = 0;
        entry.detail = policy.to_detail();
        let next = (id.0, id.1 + 1);
        let mut end = self.seal_and_start((id, &end, keys), next, keys, vec![entry], now_ms)?;
        self.retain(keys, &mut end, next, policy, now_ms)?;
        self.write_anchor(keys, epoch, end.next - 1, &end.previous, (next.1, end.len));
        self.remember(next);
        Ok(())
    }

    /// The policy in force: the current file's.
    pub(crate) fn policy(&self, keys: &AuditKeys, epoch: u32) -> Result<AuditPolicy> {
        let _lock = self.lock_for_reading()?;
        let Some(id) = self
            .chain_files()?
            .into_iter()
            .rev()
            .find(|(e, _)| *e == epoch)
        else {
            return Ok(AuditPolicy::default());
        };
        let path = self.path(&file_name(id));
        let file = self
            .io
            .open_read(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        let len = file
            .stamp()
            .map_err(|e| Error::io("reading", &path, e))?
            .len;
        let end = ChainEnd {
            file,
            len,
            next: 0,
            previous: [0; LINK_LEN],
        };
        Ok(self.policy_at(keys, &end).0)
    }

    /// After a master-key rotation (by the process holding both keys): checks the old key
    /// epoch's last file under the old key, seals it, and starts the new epoch's first file
    /// with the policy carried over and the old epoch's name keys handed over. Another process
    /// may have started that file first (it could not check or carry anything); both then
    /// start the next file.
    pub(crate) fn begin_epoch(
        &self,
        old_keys: &AuditKeys,
        old_epoch: u32,
        keys: &AuditKeys,
        epoch: u32,
        now_ms: i64,
    ) -> Result<()> {
        let _lock = self.lock()?;
        let listed = self.chain_files()?;
        if listed.iter().any(|(e, _)| *e > epoch) {
            return Ok(());
        }
        let Some(old) = listed.iter().rev().find(|(e, _)| *e == old_epoch).copied() else {
            return Ok(());
        };
        let old_end = self.end_of(&file_name(old), false, (1, [0; LINK_LEN]))?;
        let (policy, _) = self.policy_at(old_keys, &old_end);
        // Another process may have started the new epoch's file first (it had neither the
        // old key nor the policy): the handover and the policy then start the next file.
        let (from, from_end, from_keys, next) =
            match listed.iter().rev().find(|(e, _)| *e == epoch).copied() {
                None => (old, old_end, old_keys, (epoch, 0)),
                Some(cur) => {
                    let end = self.end_of(&file_name(cur), false, (1, [0; LINK_LEN]))?;
                    (cur, end, keys, (cur.0, cur.1 + 1))
                }
            };
        let mut first = Self::restated(&policy, now_ms);
        // The old epoch's name keys, sealed under the new: names recorded before the rotation
        // can still be matched by `vault audit --name`.
        first.push(trail_entry(
            AuditOp::KeyHandover,
            0,
            format!("key epoch {old_epoch}"),
            now_ms,
        ));
        if let Some(e) = first.last_mut() {
            e.target = keys.seal_handover(old_keys.name_keys())?;
        }
        let end = self.seal_and_start((from, &from_end, from_keys), next, keys, first, now_ms)?;
        if end.len > FILE_HEADER_LEN as u64 {
            self.write_anchor(keys, epoch, end.next - 1, &end.previous, (next.1, end.len));
        }
        Ok(())
    }
}
