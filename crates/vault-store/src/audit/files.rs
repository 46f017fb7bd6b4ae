//! The audit trail's files (docs/designs/audit.md; FORMAT.md §6.13): appending entries to the
//! chain of the vault's key epoch under the audit lock, entries recorded before an unlock (the
//! pending file) and their fold into the chain, a new key epoch's file linked to the last by
//! hash, the anchor beside the rollback record, and reading and checking everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vault_format::VaultId;
use vault_format::audit::{
    AuditEntry, AuditKeys, AuditOp, FILE_HEADER_LEN, FLAG_BEFORE_UNLOCK, FRAME_OVERHEAD,
    FileHeader, LINK_LEN, MAX_ENTRY, Target, check_file, frame, frames, last_frame, pending_link,
};

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
/// Largest audit file a check reads (it reads each file whole).
const MAX_CHECKED_BYTES: u64 = 1 << 30;
/// What a folded entry's detail starts with: the pending file's last link follows, so a fold
/// interrupted after it appended is not appended twice.
const FOLDED: &str = "folded the entries recorded before an unlock; last link ";

/// The name of the chain file of key epoch `epoch`.
pub(crate) fn chain_name(epoch: u32) -> String {
    format!("audit.{epoch}")
}

/// The acting process: pid, uid, host name.
pub(crate) fn process() -> (u32, u32, String) {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .chars()
        .take(64)
        .collect();
    (std::process::id(), rustix::process::getuid().as_raw(), host)
}

/// A vault's audit files.
pub(crate) struct AuditFiles {
    dir: PathBuf,
    io: Arc<dyn Io>,
    vault_id: VaultId,
    timeout: Duration,
    /// Where the anchor is kept: beside the rollback record, outside the vault directory, so
    /// that cutting entries off the trail's end is seen (FORMAT §6.13).
    anchor: Option<PathBuf>,
}

const ANCHOR_LABEL: &[u8] = b"vault v1 audit head";
/// The anchor: key epoch (u32) ‖ index (u64) ‖ link (32) ‖ MAC (32).
const ANCHOR_LEN: usize = 4 + 8 + LINK_LEN + 32;

/// Where a chain file stands: its handle, its length, the next entry's index and the link
/// before it.
struct ChainEnd {
    file: Box<dyn IoFile>,
    len: u64,
    next: u64,
    previous: [u8; LINK_LEN],
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
    fn write_anchor(&self, keys: &AuditKeys, epoch: u32, index: u64, link: &[u8; LINK_LEN]) {
        let Some(path) = &self.anchor else { return };
        let mut body = Vec::with_capacity(ANCHOR_LEN);
        body.extend_from_slice(&epoch.to_le_bytes());
        body.extend_from_slice(&index.to_le_bytes());
        body.extend_from_slice(link);
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
        }
    }

    /// The anchor's (index, link) for `epoch`, if one is kept, authenticates and is of that
    /// epoch (an anchor of another epoch says nothing about this one's file).
    fn read_anchor(&self, keys: &AuditKeys, epoch: u32) -> Option<(u64, [u8; LINK_LEN])> {
        let path = self.anchor.as_ref()?;
        let bytes = self.io.open_read(path).ok()?.read_from(0).ok()?;
        let body = bytes.get(..ANCHOR_LEN - 32)?;
        let mac = bytes.get(ANCHOR_LEN - 32..ANCHOR_LEN)?;
        if !keys.mac_matches(&[ANCHOR_LABEL, body], mac) {
            tracing::warn!(file = %path.display(), "the audit anchor does not authenticate; not used");
            return None;
        }
        let e = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
        let index = u64::from_le_bytes(body.get(4..12)?.try_into().ok()?);
        let link: [u8; LINK_LEN] = body.get(12..12 + LINK_LEN)?.try_into().ok()?;
        (e == epoch).then_some((index, link))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn damaged(&self, name: &str, why: impl Into<String>) -> Error {
        Error::integrity(self.path(name).display().to_string(), why)
    }

    /// Takes the audit lock (exclusive; held until dropped), waiting up to the timeout.
    fn lock(&self) -> Result<Box<dyn IoLock>> {
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
    fn lock_for_reading(&self) -> Result<Option<Box<dyn IoLock>>> {
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

    fn read_all(&self, name: &str) -> Result<Option<Vec<u8>>> {
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
    fn end_of(&self, name: &str, pending: bool, start: (u64, [u8; LINK_LEN])) -> Result<ChainEnd> {
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

    /// Appends `entries` (their indexes set here, in order) to the chain of `epoch` under
    /// `keys`, folding any pending entries in first; syncs when `sync`. The lock is held
    /// throughout, and the chain's end is read under it.
    pub(crate) fn append(
        &self,
        keys: &AuditKeys,
        epoch: u32,
        entries: Vec<AuditEntry>,
        sync: bool,
    ) -> Result<u64> {
        let _lock = self.lock()?;
        // A process still on an older key epoch after a rotation sealed its file (a race with
        // the rotation): it has no key for the new file, and the pending file takes only
        // failed unlocks, so its entries are not recorded, and it says so.
        if self.io.stamp(&self.path(&chain_name(epoch + 1))).is_ok() {
            return Err(Error::integrity(
                self.path(&chain_name(epoch)).display().to_string(),
                format!(
                    "the master key was rotated while this command ran: its {} audit entries were not recorded",
                    entries.len()
                ),
            ));
        }
        // Where a new file would start: only worked out when there is no file yet (it hashes
        // the whole previous epoch's file, which no append should read otherwise).
        let exists = self
            .io
            .stamp(&self.path(&chain_name(epoch)))
            .is_ok_and(|s| s.len >= FILE_HEADER_LEN as u64);
        let start = if exists {
            (1, [0; LINK_LEN])
        } else {
            self.epoch_start(epoch)?
        };
        let mut end = self.end_of(&chain_name(epoch), false, start)?;
        let path = self.path(&chain_name(epoch));
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
        let last = self.write_entries(keys, &mut end, entries, &path)?;
        if sync {
            end.file
                .sync_data()
                .map_err(|e| Error::io("syncing", &path, e))?;
        }
        self.write_anchor(keys, epoch, end.next - 1, &end.previous);
        Ok(last)
    }

    /// Appends `entries` at `end` in one write (their indexes and links set here); returns the
    /// last index.
    fn write_entries(
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

    /// Where the chain of `epoch` starts: index 1 and a zero link, or, after a rotation, the
    /// entry after the previous epoch's last and that whole file's hash.
    fn epoch_start(&self, epoch: u32) -> Result<(u64, [u8; LINK_LEN])> {
        if epoch == 0 {
            return Ok((1, [0; LINK_LEN]));
        }
        let Some(old) = self.read_all(&chain_name(epoch - 1))? else {
            return Ok((1, [0; LINK_LEN]));
        };
        let next = match last_frame(old.get(FILE_HEADER_LEN..).unwrap_or_default()) {
            Some(f) => {
                AuditEntry::decode(f.entry)
                    .map_err(|e| self.damaged(&chain_name(epoch - 1), e.to_string()))?
                    .index
                    + 1
            }
            None => {
                FileHeader::decode(&old, false)
                    .map_err(|e| self.damaged(&chain_name(epoch - 1), e.to_string()))?
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

    /// Every entry of every chain file, oldest first, with each file's check; and the pending
    /// entries not yet folded.
    pub(crate) fn read(&self, keys: &AuditKeys, epoch: u32) -> Result<AuditRead> {
        let _lock = self.lock_for_reading()?;
        let mut epochs: Vec<u32> = self
            .io
            .list_dir(&self.dir)
            .map_err(|e| Error::io("listing", &self.dir, e))?
            .iter()
            .filter_map(|n| n.strip_prefix("audit.")?.parse().ok())
            .filter(|e| *e <= epoch)
            .collect();
        epochs.sort_unstable();
        let mut out = AuditRead::default();
        let mut expected: Option<(u64, [u8; LINK_LEN])> = None;
        let out_problem = |out: &mut AuditRead, at: u64, why: String| {
            if out.problem.is_none() {
                out.problem = Some((at, why));
            }
        };
        for e in epochs {
            let name = chain_name(e);
            let size = self.io.stamp(&self.path(&name)).map_or(0, |s| s.len);
            if size > MAX_CHECKED_BYTES {
                out_problem(
                    &mut out,
                    expected.map_or(1, |x| x.0),
                    format!("{name} is {size} bytes, more than this build checks at once"),
                );
                break;
            }
            let bytes = match self.read_all(&name) {
                Ok(Some(b)) => b,
                // Listed but not readable as a file (a link to nothing, a directory): the
                // entries it should hold are missing.
                Ok(None) | Err(_) => {
                    out_problem(
                        &mut out,
                        expected.map_or(1, |x| x.0),
                        format!("{name} cannot be read as an audit file"),
                    );
                    break;
                }
            };
            if expected.is_none()
                && let Ok(h) = FileHeader::decode(&bytes, false)
                && h.first_index != 1
            {
                // The first file there starts later: the files before it are gone (nothing
                // removes them yet: there is no retention).
                out_problem(
                    &mut out,
                    1,
                    format!(
                        "{name} starts at entry {}: the files of earlier key epochs are missing",
                        h.first_index
                    ),
                );
            }
            // An older epoch's entries are checked through the next file's link to their
            // hash (its key is gone); the current one's by their MACs.
            let current = e == epoch;
            let anchor = if current {
                self.read_anchor(keys, epoch)
            } else {
                None
            };
            let check = check_file(
                &bytes,
                false,
                &self.vault_id,
                current.then_some(keys),
                anchor,
            )
            .map_err(|err| self.damaged(&name, err.to_string()))?;
            if let Some((first, previous)) = expected
                && (check.header.first_index != first || check.header.previous != previous)
                && out.problem.is_none()
            {
                out.problem = Some((
                    check.header.first_index,
                    format!(
                        "{name} does not continue the file before it (that file changed after the rotation that sealed it, or a file is missing)"
                    ),
                ));
            }
            let (fs, _) = frames(bytes.get(FILE_HEADER_LEN..).unwrap_or_default());
            for f in &fs {
                if let Ok(entry) = AuditEntry::decode(f.entry) {
                    out.entries.push(entry);
                }
            }
            if current && out.problem.is_none() {
                out.problem = check.problem.clone();
            }
            if !current && out.problem.is_none() && check.problem.is_some() {
                // Only structure can be checked without the key; links are checked later.
                if let Some((i, why)) = check.problem.as_ref().filter(|(_, w)| !w.contains("link"))
                {
                    out.problem = Some((*i, why.clone()));
                }
            }
            let last_index = fs
                .last()
                .and_then(|f| AuditEntry::decode(f.entry).ok())
                .map_or(check.header.first_index.saturating_sub(1), |e| e.index);
            expected = Some((last_index + 1, epoch_link(&bytes)));
            out.files.push((e, fs.len() as u64));
        }
        let pending_len = self.io.stamp(&self.path(PENDING)).map_or(0, |s| s.len);
        if pending_len <= MAX_PENDING_BYTES
            && let Ok(Some(bytes)) = self.read_all(PENDING)
        {
            let (fs, _) = frames(bytes.get(FILE_HEADER_LEN..).unwrap_or_default());
            out.pending = fs.len() as u64;
        }
        // A fold that found entries it could not record left an entry saying so.
        if out.problem.is_none()
            && let Some(e) = out.entries.iter().find(|e| {
                e.op == AuditOp::Maintenance && e.outcome == 5 && e.flags & FLAG_BEFORE_UNLOCK != 0
            })
        {
            out.problem = Some((e.index, e.detail.clone()));
        }
        Ok(out)
    }
}

/// What a file's successor links to: the hash of the whole file.
fn epoch_link(bytes: &[u8]) -> [u8; LINK_LEN] {
    vault_crypto::hash::sha256(&[EPOCH_LABEL, bytes])
}

/// The audit trail as read: every entry, the chain files by epoch with their entry counts, the
/// first problem the checks found, and entries recorded before an unlock not yet folded in.
#[derive(Debug, Default)]
pub struct AuditRead {
    /// Entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// (key epoch, entries in its file).
    pub files: Vec<(u32, u64)>,
    /// The first entry the checks found wrong, and why.
    pub problem: Option<(u64, String)>,
    /// Entries in the pending file.
    pub pending: u64,
}

/// What [`crate::Vault::audit_files`] hands each piece to: (file name, offset, bytes).
pub type AuditPieces<'a> = dyn FnMut(&str, u64, &[u8]) -> Result<()> + 'a;

/// Largest piece [`crate::Vault::audit_files`] hands over at once.
pub const AUDIT_PART_LEN: usize = 1 << 20;

impl AuditFiles {
    /// Every audit file (the chain files by epoch, then the pending file), read under the lock
    /// in pieces of at most [`AUDIT_PART_LEN`]: `f(file name, offset, bytes)`.
    pub(crate) fn copy(&self, f: &mut AuditPieces<'_>) -> Result<()> {
        let _lock = self.lock()?;
        let mut names: Vec<(u32, String)> = self
            .io
            .list_dir(&self.dir)
            .map_err(|e| Error::io("listing", &self.dir, e))?
            .into_iter()
            .filter_map(|n| Some((n.strip_prefix("audit.")?.parse().ok()?, n)))
            .collect();
        names.sort_unstable();
        let pending = self
            .io
            .stamp(&self.path(PENDING))
            .is_ok()
            .then(|| PENDING.to_string());
        // A piece at a time: a backup's memory stays bounded whatever the trail's size.
        let mut piece = vec![0u8; AUDIT_PART_LEN];
        for name in names.into_iter().map(|(_, n)| n).chain(pending) {
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

/// Whether `name` is the name of an audit file (`audit.<epoch>` or `audit.pending`): what a
/// restore accepts to write.
pub fn is_audit_file_name(name: &str) -> bool {
    name == PENDING
        || name
            .strip_prefix("audit.")
            .is_some_and(|e| e.parse::<u32>().is_ok_and(|n| n.to_string() == e))
}
