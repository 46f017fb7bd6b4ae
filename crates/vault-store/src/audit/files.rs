//! The audit trail's files (docs/designs/audit.md; FORMAT.md §6.13): the lock, finding a chain
//! file's end (cutting a torn append), appending entries under the lock, entries recorded before
//! an unlock (the pending file) and their fold into the chain, and the anchor beside the
//! rollback record.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vault_format::VaultId;
use vault_format::audit::{
    AuditEntry, AuditKeys, AuditOp, AuditPolicy, FILE_HEADER_LEN, FLAG_BEFORE_UNLOCK,
    FRAME_OVERHEAD, FileHeader, LINK_LEN, MAX_ENTRY, Target, check_file, frame, frames, last_frame,
    pending_link,
};

use super::segments::{FileId, file_name};
use crate::io::{Io, IoFile, IoLock};
use crate::{Error, Result};

/// The lock every append takes (a file of its own, never renamed).
pub(crate) const LOCK: &str = "audit.lock";
/// Entries recorded before an unlock.
pub(crate) const PENDING: &str = "audit.pending";
const EPOCH_LABEL: &[u8] = b"vault v1 audit epoch";
/// Most bytes of a pending file a fold reads (about 40 000 failed unlocks): a larger one is
/// moved aside, not read (a forged file must not cost every command its memory).
const MAX_PENDING_BYTES: u64 = 4 << 20;
/// Most entries one fold moves into the chain.
const MAX_PENDING_FOLD: usize = 10_000;
/// What a folded entry's detail starts with: the pending file's last link follows, so a fold
/// interrupted after it appended is not appended twice.
const FOLDED: &str = "folded the entries recorded before an unlock; last link ";

thread_local! {
    /// The process an operation on this thread is done for, when it is not this one (an agent
    /// running a client's command): [`AuditActor`].
    static ACTOR: std::cell::Cell<Option<(u32, u32)>> = const { std::cell::Cell::new(None) };
}

/// Records the operations done on this thread, while it lives, as done by process `pid` of user
/// `uid` (the client an agent runs a command for), not by this process.
pub struct AuditActor(Option<(u32, u32)>);

impl AuditActor {
    /// Operations on this thread are recorded as `pid`'s and `uid`'s until the guard is dropped.
    pub fn set(pid: u32, uid: u32) -> Self {
        AuditActor(ACTOR.with(|a| a.replace(Some((pid, uid)))))
    }
}

impl Drop for AuditActor {
    fn drop(&mut self) {
        ACTOR.with(|a| a.set(self.0));
    }
}

/// The acting process: pid, uid, host name.
pub(crate) fn process() -> (u32, u32, String) {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .chars()
        .take(64)
        .collect();
    let (pid, uid) = ACTOR
        .with(std::cell::Cell::get)
        .unwrap_or_else(|| (std::process::id(), rustix::process::getuid().as_raw()));
    (pid, uid, host)
}

/// A vault's audit files.
pub(crate) struct AuditFiles {
    pub(crate) dir: PathBuf,
    pub(crate) io: Arc<dyn Io>,
    pub(crate) vault_id: VaultId,
    timeout: Duration,
    /// Where the anchor is kept: beside the rollback record, outside the vault directory, so
    /// that cutting entries off the trail's end is seen (FORMAT §6.13).
    anchor: Option<PathBuf>,
    /// The file this handle last appended to: a hint, checked under the lock before use.
    current: crate::sync::Mutex<Option<FileId>>,
    /// The policy and first entry's time of a file by its identity (id, device, inode): a
    /// file's first entry is written once, so while the name leads to the same inode it holds.
    policy: crate::sync::Mutex<Option<(PolicyKey, AuditPolicy, i64)>>,
}

/// A chain file's identity: its id, device and inode.
type PolicyKey = (FileId, u64, u64);

const ANCHOR_LABEL: &[u8] = b"vault v1 audit head";
/// The anchor as first written: key epoch (u32) ‖ index (u64) ‖ link (32) ‖ MAC (32).
const ANCHOR_LEN: usize = 4 + 8 + LINK_LEN + 32;
/// The anchor with the entry's place: key epoch (u32) ‖ index (u64) ‖ link (32) ‖ the file's
/// segment (u32) ‖ where the entry's frame ends in it (u64) ‖ MAC (32). Where others append to
/// the same trail (a team's, in a database) the anchor is soon behind the end, and its place
/// is what lets an appender check, in one read, that the entry it saw is still there.
const ANCHOR_PLACED_LEN: usize = ANCHOR_LEN + 4 + 8;

/// What an anchor says: the index and link of the last entry written, and where it ends (its
/// file's segment and offset), when the anchor records it.
pub(crate) type Anchor = (u64, [u8; LINK_LEN], Option<(u32, u64)>);

/// Where a chain file stands: its handle, its length, the next entry's index and the link
/// before it.
pub(crate) struct ChainEnd {
    pub(crate) file: Box<dyn IoFile>,
    pub(crate) len: u64,
    pub(crate) next: u64,
    pub(crate) previous: [u8; LINK_LEN],
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl AuditFiles {
    pub(crate) fn new(dir: &Path, io: Arc<dyn Io>, vault_id: VaultId, timeout: Duration) -> Self {
        AuditFiles {
            dir: dir.to_path_buf(),
            io,
            vault_id,
            timeout,
            anchor: None,
            current: crate::sync::Mutex::new(None),
            policy: crate::sync::Mutex::new(None),
        }
    }

    /// Keeps the anchor in `dir` (the rollback record's directory).
    pub(crate) fn with_anchor_in(mut self, dir: Option<&Path>) -> Self {
        self.anchor = dir.map(|d| d.join(format!("{}.audit-head", self.vault_id.to_hex())));
        self
    }

    fn anchor_mac(keys: &AuditKeys, body: &[u8]) -> [u8; 32] {
        keys.mac_of(&[ANCHOR_LABEL, body])
    }

    /// Records the chain's last entry of `epoch` in the anchor (not synced: it lags at most the
    /// entries a crash loses). A failure is logged: the trail itself was written.
    pub(crate) fn write_anchor(
        &self,
        keys: &AuditKeys,
        epoch: u32,
        index: u64,
        link: &[u8; LINK_LEN],
        at: (u32, u64),
    ) {
        let Some(path) = &self.anchor else { return };
        let mut body = Vec::with_capacity(ANCHOR_PLACED_LEN);
        body.extend_from_slice(&epoch.to_le_bytes());
        body.extend_from_slice(&index.to_le_bytes());
        body.extend_from_slice(link);
        body.extend_from_slice(&at.0.to_le_bytes());
        body.extend_from_slice(&at.1.to_le_bytes());
        let mac = Self::anchor_mac(keys, &body);
        body.extend_from_slice(&mac);
        let written = match self.io.open_rw(path) {
            Ok(f) => f.write_all_at(&body, 0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = path.parent().map(|d| self.io.create_dir_all(d));
                self.io
                    .create_new(path)
                    .and_then(|f| f.write_all_at(&body, 0))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "the audit anchor could not be written");
            // A write that failed part way leaves an anchor that no longer authenticates, which
            // the next append would report as changed: none is better than a torn one.
            let _ = self.io.remove(path);
        }
    }

    /// The anchor's (index, link) for `epoch`: `Ok(None)` when none is kept, or it is of an
    /// earlier key epoch (it says nothing about this one's files, and cannot be checked with
    /// this key); `Err` when it was changed: it claims this epoch and does not authenticate,
    /// claims a later one, is not 76 bytes (empty included), or is a link to nothing.
    pub(crate) fn read_anchor(
        &self,
        keys: &AuditKeys,
        epoch: u32,
    ) -> std::result::Result<Option<Anchor>, String> {
        let Some(path) = self.anchor.as_ref() else {
            return Ok(None);
        };
        let bytes = match self.io.open_read(path) {
            Ok(f) => f.read_from(0).map_err(|e| e.to_string())?,
            // A name that leads nowhere (a dangling link) is not "none kept".
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return match std::fs::symlink_metadata(path) {
                    Ok(_) => Err("it is a link to nothing".into()),
                    Err(_) => Ok(None),
                };
            }
            Err(e) => return Err(e.to_string()),
        };
        if bytes.len() != ANCHOR_LEN && bytes.len() != ANCHOR_PLACED_LEN {
            return Err(format!("it is {} bytes, not an anchor", bytes.len()));
        }
        let (body, mac) = bytes.split_at(bytes.len() - 32);
        let field = |r: std::ops::Range<usize>| body.get(r).unwrap_or_default();
        let e = u32::from_le_bytes(field(0..4).try_into().unwrap_or_default());
        // A later epoch than this handle's key: changed (a rotation writes its epoch's anchor
        // as it starts the new file). An earlier one is left after a rotation stopped before
        // its audit step, and cannot be checked with this key: not used.
        if e > epoch {
            return Err(format!("it claims key epoch {e}, past the vault's {epoch}"));
        }
        if e != epoch {
            return Ok(None);
        }
        if !keys.mac_matches(&[ANCHOR_LABEL, body], mac) {
            return Err("it does not authenticate".into());
        }
        let index = u64::from_le_bytes(field(4..12).try_into().unwrap_or_default());
        let link: [u8; LINK_LEN] = field(12..12 + LINK_LEN).try_into().unwrap_or_default();
        let place = (body.len() == ANCHOR_PLACED_LEN - 32).then(|| {
            let at = 12 + LINK_LEN;
            (
                u32::from_le_bytes(field(at..at + 4).try_into().unwrap_or_default()),
                u64::from_le_bytes(field(at + 4..at + 12).try_into().unwrap_or_default()),
            )
        });
        Ok(Some((index, link, place)))
    }

    /// The index and link of the entry whose frame ends at `end` in chain file `id`, if that
    /// file is there and a whole entry ends there.
    fn entry_ending_at(&self, id: FileId, end: u64) -> Option<(u64, [u8; LINK_LEN])> {
        let file = self.io.open_read(&self.path(&file_name(id))).ok()?;
        let mut trailer = [0u8; 4];
        file.read_exact_at(&mut trailer, end.checked_sub(4)?).ok()?;
        let flen = u32::from_le_bytes(trailer) as usize;
        if flen > MAX_ENTRY {
            return None;
        }
        let start = end.checked_sub((flen + FRAME_OVERHEAD) as u64)?;
        let mut buf = vec![0u8; flen + FRAME_OVERHEAD];
        file.read_exact_at(&mut buf, start).ok()?;
        let f = last_frame(&buf).filter(|f| f.offset == 0)?;
        let e = AuditEntry::decode(f.entry).ok()?;
        Some((e.index, f.link))
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn damaged(&self, name: &str, why: impl Into<String>) -> Error {
        Error::integrity(self.path(name).display().to_string(), why)
    }

    /// Takes the audit lock (exclusive; held until dropped), waiting up to the timeout.
    pub(crate) fn lock(&self) -> Result<Box<dyn IoLock>> {
        let path = self.path(LOCK);
        let f = self
            .io
            .open_lock(&path, true)
            .map_err(|e| Error::io("opening", &path, e))?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            if f.try_lock(true)
                .map_err(|e| Error::io("locking", &path, e))?
            {
                return Ok(f);
            }
            let waited = start.elapsed();
            if waited >= self.timeout {
                return Err(Error::Busy {
                    waited_ms: waited.as_millis() as u64,
                });
            }
            std::thread::sleep(pause.min(self.timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// The lock for reading the trail: shared, and none at all where the lock file cannot be
    /// opened for writing (read-only storage: nothing can append there either).
    pub(crate) fn lock_for_reading(&self) -> Result<Option<Box<dyn IoLock>>> {
        let path = self.path(LOCK);
        let f = match self.io.open_lock_readonly(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
        let start = Instant::now();
        loop {
            if f.try_lock(false)
                .map_err(|e| Error::io("locking", &path, e))?
            {
                return Ok(Some(f));
            }
            if start.elapsed() >= self.timeout {
                return Err(Error::Busy {
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(crate) fn read_all(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(name);
        match self.io.open_read(&path) {
            Ok(f) => Ok(Some(
                f.read_from(0).map_err(|e| Error::io("reading", &path, e))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("opening", &path, e)),
        }
    }

    /// Opens (or starts) the file `name` and finds its end: the last whole frame, read from the
    /// end; a torn last append is cut (only that: bytes that are not a frame are damage).
    pub(crate) fn end_of(
        &self,
        name: &str,
        pending: bool,
        start: (u64, [u8; LINK_LEN]),
    ) -> Result<ChainEnd> {
        let path = self.path(name);
        let file = match self.io.open_rw(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let f = self
                    .io
                    .create_new(&path)
                    .map_err(|e| Error::io("creating", &path, e))?;
                let header = FileHeader {
                    pending,
                    vault_id: self.vault_id,
                    first_index: start.0,
                    previous: start.1,
                };
                f.write_all_at(&header.encode(), 0)
                    .map_err(|e| Error::io("writing", &path, e))?;
                f
            }
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
        let len = file
            .stamp()
            .map_err(|e| Error::io("reading", &path, e))?
            .len;
        let head_len = FILE_HEADER_LEN as u64;
        if len < head_len {
            // A creation cut short before its header was whole: nothing in it yet.
            let header = FileHeader {
                pending,
                vault_id: self.vault_id,
                first_index: start.0,
                previous: start.1,
            };
            file.set_len(0)
                .and_then(|()| file.write_all_at(&header.encode(), 0))
                .map_err(|e| Error::io("writing", &path, e))?;
            return Ok(ChainEnd {
                file,
                len: head_len,
                next: start.0,
                previous: start.1,
            });
        }
        let mut head = vec![0u8; FILE_HEADER_LEN];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io("reading", &path, e))?;
        let header =
            FileHeader::decode(&head, pending).map_err(|e| self.damaged(name, e.to_string()))?;
        if header.vault_id != self.vault_id {
            return Err(self.damaged(name, "it is another vault's audit file"));
        }
        if len == head_len {
            return Ok(ChainEnd {
                file,
                len,
                next: header.first_index,
                previous: header.previous,
            });
        }
        // The last frame, read backwards from the end; a torn append leaves at most one
        // frame's bytes after it, so only the last two frames' worth is ever read (a file of
        // any size, sparse or zero-filled, costs this much).
        let frame_max = MAX_ENTRY + FRAME_OVERHEAD;
        // The common case first: the trailing length says where the last frame starts, and
        // that frame alone is read.
        let mut trailer = [0u8; 4];
        if file.read_exact_at(&mut trailer, len - 4).is_ok() {
            let flen = u32::from_le_bytes(trailer) as usize;
            let start = len.checked_sub((flen + FRAME_OVERHEAD) as u64);
            if flen <= MAX_ENTRY
                && let Some(start) = start.filter(|s| *s >= head_len)
            {
                let mut buf = vec![0u8; flen + FRAME_OVERHEAD];
                if file.read_exact_at(&mut buf, start).is_ok()
                    && let Some(f) = last_frame(&buf)
                    && f.offset == 0
                    && let Ok(e) = AuditEntry::decode(f.entry)
                    && (start > head_len || e.index == header.first_index)
                {
                    return Ok(ChainEnd {
                        file,
                        len,
                        next: e.index + 1,
                        previous: f.link,
                    });
                }
            }
        }
        let from = len.saturating_sub(2 * frame_max as u64).max(head_len);
        let tail = file
            .read_from(from)
            .map_err(|e| Error::io("reading", &path, e))?;
        let whole_frame_at = |t: &[u8]| -> Option<(u64, [u8; LINK_LEN])> {
            let f = last_frame(t)?;
            let e = AuditEntry::decode(f.entry).ok()?;
            (from + f.offset as u64 > head_len || e.index == header.first_index)
                .then_some((e.index + 1, f.link))
        };
        if let Some((next, previous)) = whole_frame_at(&tail) {
            return Ok(ChainEnd {
                file,
                len,
                next,
                previous,
            });
        }
        for cut in 1..=frame_max.min(tail.len()) {
            let kept = tail.get(..tail.len() - cut).unwrap_or_default();
            let found = if kept.is_empty() && from == head_len {
                Some((header.first_index, header.previous))
            } else {
                whole_frame_at(kept)
            };
            if let Some((next, previous)) = found {
                let keep = from + kept.len() as u64;
                tracing::warn!(file = %path.display(), cut = len - keep, "cutting a torn audit append");
                file.set_len(keep)
                    .map_err(|e| Error::io("truncating", &path, e))?;
                return Ok(ChainEnd {
                    file,
                    len: keep,
                    next,
                    previous,
                });
            }
        }
        Err(self.damaged(
            name,
            "its end is not an audit entry (run `vault audit verify`)",
        ))
    }

    /// The end of the chain file of key epoch `epoch` that appends go to (its newest), started
    /// if there is none, found under the lock the caller holds from a fresh listing; a process
    /// on an older key epoch than the files is refused.
    pub(crate) fn current_end(
        &self,
        epoch: u32,
        count: usize,
        later: Later,
    ) -> Result<(FileId, ChainEnd)> {
        // The file appended to last is still the one while it is whole and nothing follows it
        // (no next file of its epoch, no first file of the next epoch: files are only ever
        // added after the current one, and retention never removes the current one). Three
        // `stat`s under the lock instead of listing the directory.
        let hint = *crate::sync::lock(&self.current);
        let exists = |id: FileId| self.io.stamp(&self.path(&file_name(id)));
        if let Some(id) = hint
            && id.0 == epoch
            && exists(id).is_ok_and(|s| s.len >= FILE_HEADER_LEN as u64)
            && exists((id.0, id.1 + 1)).is_err()
            && exists((id.0 + 1, 0)).is_err()
        {
            return Ok((id, self.end_of(&file_name(id), false, (1, [0; LINK_LEN]))?));
        }
        let mut listed = self.chain_files()?;
        // A process still on an older key epoch after a rotation sealed its files (a race with
        // the rotation): it has no key for the new file, and the pending file takes only
        // failed unlocks, so its entries are not recorded, and it says so. Unless the vault's
        // header shows no rotation: then those files were put there, and are left out.
        if listed.iter().any(|(e, _)| *e > epoch) {
            match later {
                Later::Rotated => {
                    tracing::debug!(
                        count,
                        "a later key epoch's audit file: entries not recorded"
                    );
                    return Err(Error::Rekeyed);
                }
                Later::Foreign => listed.retain(|(e, _)| *e <= epoch),
            }
        }
        let id = listed
            .iter()
            .rev()
            .find(|(e, _)| *e == epoch)
            .copied()
            .unwrap_or((epoch, 0));
        // Where a new file would start: only worked out when there is no file yet (it hashes
        // the whole file before, which no append should read otherwise).
        let whole = exists(id).is_ok_and(|s| s.len >= FILE_HEADER_LEN as u64);
        let start = if whole {
            (1, [0; LINK_LEN])
        } else {
            self.start_after(&listed, id)?
        };
        Ok((id, self.end_of(&file_name(id), false, start)?))
    }

    /// [`AuditFiles::policy_at`], remembered for the file's identity (checked here, under the
    /// lock: a file replaced under the same name is read again).
    fn policy_of(
        &self,
        keys: &AuditKeys,
        id: FileId,
        end: &ChainEnd,
    ) -> (AuditPolicy, Option<i64>) {
        let key = end.file.stamp().ok().map(|s| (id, s.dev, s.ino));
        if let Some(key) = key
            && let Some((k, p, t)) = *crate::sync::lock(&self.policy)
            && k == key
        {
            return (p, Some(t));
        }
        let (p, t) = self.policy_at(keys, end);
        if let (Some(key), Some(t)) = (key, t) {
            *crate::sync::lock(&self.policy) = Some((key, p, t));
        }
        (p, t)
    }

    /// What the anchor says was written that the chain's end at `end` no longer holds: entries
    /// cut off its end (or lost in a crash: without fail-closed auditing neither the entries
    /// nor the anchor are synced), its last file or whole key epochs' files removed, or the file
    /// replaced. (A chain that has grown past the anchor was appended to by a process keeping
    /// another anchor: nothing to say.)
    fn behind_anchor(&self, keys: &AuditKeys, epoch: u32, end: &ChainEnd) -> Option<String> {
        let (index, link, place) = match self.read_anchor(keys, epoch) {
            Ok(a) => a?,
            Err(why) => {
                return Some(format!(
                    "the anchor beside the rollback record was changed ({why}): a cut of the trail's end before this entry may be hidden"
                ));
            }
        };
        let last = end.next - 1;
        if last < index {
            Some(format!(
                "the trail ended at entry {last}, but entry {index} had been written (the anchor beside the rollback record says so): entries or files were removed, or lost in a crash"
            ))
        } else if last == index && end.previous != link {
            Some(format!(
                "entry {index} is not the entry last written there (the anchor beside the rollback record says so): the trail was replaced"
            ))
        } else if last > index
            && let Some((segment, at)) = place
            // The file is gone only by retention (which says so in the trail), or with the
            // rest of the chain's files, which a reader reports.
            && self.io.stamp(&self.path(&file_name((epoch, segment)))).is_ok()
            && self.entry_ending_at((epoch, segment), at) != Some((index, link))
        {
            Some(format!(
                "entry {index}, which this client saw written, is no longer where it was (the anchor beside the rollback record says so): entries were removed or replaced, and others appended after"
            ))
        } else {
            None
        }
    }

    /// Notes the file appended to last (a hint for [`AuditFiles::current_end`]).
    pub(crate) fn remember(&self, id: FileId) {
        *crate::sync::lock(&self.current) = Some(id);
    }

    /// Appends `entries` (their indexes set here, in order; a named target hashed or sealed
    /// as the file's policy says) to the chain of `epoch` under `keys`, folding any pending
    /// entries in first, and sealing the file and starting the next first when it is due
    /// (retention then runs); syncs when `sync`. The lock is held throughout, and the chain's
    /// end is read under it.
    pub(crate) fn append(
        &self,
        keys: &AuditKeys,
        epoch: u32,
        entries: Vec<NewEntry>,
        sync: bool,
        now_ms: i64,
        later: Later,
    ) -> Result<u64> {
        let _lock = self.lock()?;
        let (mut id, mut end) = self.current_end(epoch, entries.len(), later)?;
        // What the anchor says was written and the chain no longer holds is recorded in the
        // chain before anything else, so that the next append (which moves the anchor on)
        // cannot make the loss disappear.
        let mut problems: Vec<String> = self.behind_anchor(keys, epoch, &end).into_iter().collect();
        if later == Later::Foreign {
            let names: Vec<String> = self
                .chain_files()?
                .into_iter()
                .filter(|(e, _)| *e > epoch)
                .map(file_name)
                .collect();
            problems.push(format!(
                "{} of a key epoch the vault has not reached (the vault is at key epoch {epoch}): put there by something other than vault, and left out of the trail",
                names.join(", ")
            ));
        }
        let (policy, first_ms) = self.policy_of(keys, id, &end);
        if Self::due(&end, &policy, first_ms, now_ms) {
            let next = (id.0, id.1 + 1);
            let first = Self::restated(&policy, now_ms);
            // Sealing is upkeep: when it fails (a full disk), the entries still go where they
            // would have gone.
            match self.seal_and_start((id, &end, keys), next, keys, first, now_ms) {
                Ok(new) => {
                    (id, end) = (next, new);
                    if let Err(e) = self.retain(keys, &mut end, id, &policy, now_ms) {
                        tracing::warn!(error = %e, "audit retention failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "the audit file could not be sealed"),
            }
        }
        let path = self.path(&file_name(id));
        // Entries recorded before an unlock first, in a write of their own ending with the
        // fold's entry, synced, and only then is the pending file removed: a fold interrupted
        // in between leaves the chain ending with that entry, which the next fold recognises.
        let folded = self.take_pending(&end)?;
        let pending_exists = self.io.stamp(&self.path(PENDING)).is_ok();
        if !folded.is_empty() {
            self.write_entries(keys, &mut end, folded, &path)?;
            end.file
                .sync_data()
                .map_err(|e| Error::io("syncing", &path, e))?;
        }
        if pending_exists {
            self.io
                .remove(&self.path(PENDING))
                .map_err(|e| Error::io("removing", self.path(PENDING), e))?;
        }
        let problems = problems.into_iter().map(|why| NewEntry {
            entry: trail_problem(why, now_ms),
            name: None,
        });
        let entries = problems
            .chain(entries)
            .map(|NewEntry { mut entry, name }| {
                if let Some((kind, name)) = name {
                    entry.target = match policy.names_clear {
                        true => keys
                            .seal_name(kind, &name)
                            .unwrap_or_else(|_| Target::Hashed(keys.name_hash(kind, &name))),
                        false => Target::Hashed(keys.name_hash(kind, &name)),
                    };
                }
                entry
            })
            .collect();
        let last = self.write_entries(keys, &mut end, entries, &path)?;
        if sync {
            end.file
                .sync_data()
                .map_err(|e| Error::io("syncing", &path, e))?;
        }
        self.write_anchor(keys, epoch, end.next - 1, &end.previous, (id.1, end.len));
        self.remember(id);
        Ok(last)
    }

    /// Appends `entries` at `end` in one write (their indexes and links set here); returns the
    /// last index.
    pub(crate) fn write_entries(
        &self,
        keys: &AuditKeys,
        end: &mut ChainEnd,
        entries: Vec<AuditEntry>,
        path: &Path,
    ) -> Result<u64> {
        let mut last = 0;
        let mut out = Vec::new();
        for mut e in entries {
            e.index = end.next;
            let bytes = e
                .encode()
                .map_err(|e| Error::invalid("audit entry", e.to_string()))?;
            let link = keys.link(&end.previous, &bytes);
            out.extend_from_slice(
                &frame(&bytes, &link).map_err(|e| Error::invalid("audit entry", e.to_string()))?,
            );
            last = e.index;
            end.next += 1;
            end.previous = link;
        }
        end.file
            .write_all_at(&out, end.len)
            .map_err(|e| Error::io("writing", path, e))?;
        end.len += out.len() as u64;
        Ok(last)
    }

    /// Where chain file `id` starts: index 1 and a zero link for the first file, or the entry
    /// after the last of the file before it (in `listed`) and that whole file's hash.
    pub(crate) fn start_after(
        &self,
        listed: &[FileId],
        id: FileId,
    ) -> Result<(u64, [u8; LINK_LEN])> {
        let Some(before) = listed.iter().rev().find(|b| **b < id) else {
            return Ok((1, [0; LINK_LEN]));
        };
        let name = file_name(*before);
        let Some(old) = self.read_all(&name)? else {
            return Ok((1, [0; LINK_LEN]));
        };
        let next = match last_frame(old.get(FILE_HEADER_LEN..).unwrap_or_default()) {
            Some(f) => {
                AuditEntry::decode(f.entry)
                    .map_err(|e| self.damaged(&name, e.to_string()))?
                    .index
                    + 1
            }
            None => {
                FileHeader::decode(&old, false)
                    .map_err(|e| self.damaged(&name, e.to_string()))?
                    .first_index
            }
        };
        Ok((next, epoch_link(&old)))
    }

    /// An entry of the fold saying what in the pending file could not be recorded.
    fn fold_problem(detail: String) -> AuditEntry {
        let (pid, uid, host) = process();
        AuditEntry {
            index: 0,
            time_ms: crate::engine::now_ms(),
            op: AuditOp::Maintenance,
            outcome: 5,
            flags: FLAG_BEFORE_UNLOCK,
            generation: 0,
            pid,
            uid,
            host,
            target: Target::None,
            detail: detail.chars().take(900).collect(),
        }
    }

    /// The pending entries to fold into the chain whose end is `end` (none when the chain's
    /// last entry shows they were folded already), flagged as recorded before an unlock, then
    /// the fold's own entry naming the pending file's last link. Only failed unlocks may come
    /// this way (anyone can write a keyless chain): anything else, a file that is not this
    /// vault's pending file, or more than [`MAX_PENDING_FOLD`] entries, is recorded as a
    /// problem, and a file that cannot be read as one is moved aside so the trail goes on.
    fn take_pending(&self, end: &ChainEnd) -> Result<Vec<AuditEntry>> {
        let path = self.path(PENDING);
        let moved_aside = |why: String| -> Result<Vec<AuditEntry>> {
            let aside = self.path(&format!("{PENDING}.bad-{}", crate::engine::now_ms()));
            let what = match self.io.rename(&path, &aside) {
                Ok(()) => format!("moved aside to {}", aside.display()),
                Err(e) => format!("could not be moved aside ({e})"),
            };
            Ok(vec![Self::fold_problem(format!(
                "the file of entries recorded before an unlock is not this vault's ({why}); {what}"
            ))])
        };
        match self.io.stamp(&path) {
            Ok(s) if s.len > MAX_PENDING_BYTES => {
                return moved_aside(format!("{} bytes", s.len));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Nothing there, unless a name leads nowhere (a dangling symlink).
                if self
                    .io
                    .list_dir(&self.dir)
                    .is_ok_and(|n| n.iter().any(|n| n == PENDING))
                {
                    return moved_aside("a link to nothing".into());
                }
                return Ok(Vec::new());
            }
            Err(e) => return moved_aside(e.to_string()),
        }
        let bytes = match self.read_all(PENDING) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Vec::new()),
            Err(e) => return moved_aside(e.to_string()),
        };
        let check = match check_file(&bytes, true, &self.vault_id, None, None) {
            Ok(c) => c,
            Err(e) => return moved_aside(e.to_string()),
        };
        let last_link = check.chain.last.1;
        let marker = format!("{FOLDED}{}", hex(&last_link));
        // Interrupted after appending, before removing the file: the chain ends with them.
        let head_len = FILE_HEADER_LEN as u64;
        if end.len > head_len {
            let window = (MAX_ENTRY + FRAME_OVERHEAD) as u64;
            let from = end.len.saturating_sub(window).max(head_len);
            let tail = end
                .file
                .read_from(from)
                .map_err(|e| Error::io("reading", &path, e))?;
            if let Some(f) = last_frame(&tail)
                && AuditEntry::decode(f.entry).is_ok_and(|e| e.detail == marker)
            {
                return Ok(Vec::new());
            }
        }
        let (fs, _) = frames(bytes.get(FILE_HEADER_LEN..).unwrap_or_default());
        let mut out = Vec::new();
        let mut problem = check.problem.clone();
        for f in fs.iter().take(check.chain.verified as usize) {
            let Ok(mut e) = AuditEntry::decode(f.entry) else {
                break;
            };
            if e.op != AuditOp::FailedUnlock || e.target != Target::None || e.flags != 0 {
                problem.get_or_insert((
                    e.index,
                    format!(
                        "it records {} (only failed unlocks are recorded this way)",
                        e.op.name()
                    ),
                ));
                break;
            }
            if out.len() >= MAX_PENDING_FOLD {
                problem.get_or_insert((e.index, "more entries than one fold takes".into()));
                break;
            }
            e.flags |= FLAG_BEFORE_UNLOCK;
            e.detail.truncate(0);
            out.push(e);
        }
        if let Some((at, why)) = problem {
            // What did not verify is reported in the chain, not silently dropped.
            out.push(Self::fold_problem(format!(
                "entries recorded before an unlock, from {at} on, were not recorded: {why}"
            )));
        }
        if !out.is_empty() {
            // The fold itself, last: it names the pending file's last link, so a fold
            // interrupted after appending is not appended again.
            let (pid, uid, host) = process();
            out.push(AuditEntry {
                index: 0,
                time_ms: crate::engine::now_ms(),
                op: AuditOp::Maintenance,
                outcome: 0,
                flags: 0,
                generation: 0,
                pid,
                uid,
                host,
                target: Target::None,
                detail: marker,
            });
        }
        Ok(out)
    }

    /// Appends `entry` to the pending file (no key: a failed unlock, or a process whose epoch a
    /// rotation sealed).
    pub(crate) fn append_pending(&self, entry: AuditEntry, sync: bool) -> Result<()> {
        let _lock = self.lock()?;
        self.append_pending_locked(entry, sync)
    }

    fn append_pending_locked(&self, mut entry: AuditEntry, sync: bool) -> Result<()> {
        let end = self.end_of(PENDING, true, (1, [0; LINK_LEN]))?;
        entry.index = end.next;
        let bytes = entry
            .encode()
            .map_err(|e| Error::invalid("audit entry", e.to_string()))?;
        let link = pending_link(&self.vault_id, &end.previous, &bytes);
        let f = frame(&bytes, &link).map_err(|e| Error::invalid("audit entry", e.to_string()))?;
        let path = self.path(PENDING);
        end.file
            .write_all_at(&f, end.len)
            .map_err(|e| Error::io("writing", &path, e))?;
        if sync {
            end.file
                .sync_data()
                .map_err(|e| Error::io("syncing", &path, e))?;
        }
        Ok(())
    }
}

/// What a file's successor links to: the hash of the whole file.
pub(crate) fn epoch_link(bytes: &[u8]) -> [u8; LINK_LEN] {
    vault_crypto::hash::sha256(&[EPOCH_LABEL, bytes])
}

/// An entry to append, with the name it acts on (kind 1 secret, 2 key): the file's policy says
/// whether the name is hashed or sealed.
#[derive(Clone)]
pub(crate) struct NewEntry {
    pub(crate) entry: AuditEntry,
    pub(crate) name: Option<(u8, String)>,
}

/// An entry the trail writes about itself reporting a problem (operation 26, outcome 5, flag
/// "by the trail"): `vault audit verify` reports it for as long as the chain holds it.
pub(crate) fn trail_problem(why: String, now_ms: i64) -> AuditEntry {
    super::segments::trail_entry(
        AuditOp::Maintenance,
        5,
        why.chars().take(900).collect(),
        now_ms,
    )
}

/// What an appender takes a file of a later key epoch than its own for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Later {
    /// A rotation since this process opened the vault: its entries cannot be recorded.
    Rotated,
    /// Not the vault's (its header shows no such rotation): left out, and reported.
    Foreign,
}
