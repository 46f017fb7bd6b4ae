//! The log file: reading its frames one bounded frame at a time after a proven position,
//! appending a frame durably, discarding a torn tail, and writing a whole new log.

use std::path::Path;

use vault_format::log::{
    FRAME_PREFIX_LEN, LOG_HEADER_LEN, MAX_FRAME_LEN, MAX_TORN_TAIL_LEN, Tail, classify_tail,
    decode_log_header, encode_log_header, frame_len_from_prefix,
};

use super::FileBackend;
use crate::backend::{
    Appended, CHECK_LEN, Cursor, Frames, ReadOutcome, RecordAt, RecordSource, StoredFrame, Visit,
    check_of,
};
use crate::io::IoFile;
use crate::{Error, Result};

/// How much of a new log is gathered before it is written.
const WRITE_CHUNK: usize = 8 << 20;

fn frame_len(body: &[u8]) -> Result<u32> {
    if body.is_empty() || body.len() > MAX_FRAME_LEN {
        return Err(Error::invalid(
            "commit",
            format!(
                "frame of {} bytes is outside 1..={MAX_FRAME_LEN}",
                body.len()
            ),
        ));
    }
    Ok(body.len() as u32)
}

impl FileBackend {
    /// Opens the log of `epoch`. A missing log is an integrity failure here; the engine turns it
    /// into [`Error::Rekeyed`] when the header shows that a rotation moved on to a newer epoch.
    pub(super) fn open_log(&self, epoch: u32, write: bool) -> Result<Box<dyn IoFile>> {
        let path = self.log_path(epoch);
        let r = if write {
            self.io.open_rw(&path)
        } else {
            self.io.open_read(&path)
        };
        r.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::integrity(
                    path.display().to_string(),
                    format!("the log of key epoch {epoch} is missing"),
                )
            } else {
                Error::io("opening", &path, e)
            }
        })
    }

    /// Whether the log open as `f`, `len` bytes long, still holds what `at` consumed: the bytes
    /// before `at.offset` end with `at.check`.
    pub(super) fn holds(&self, f: &dyn IoFile, len: u64, at: &Cursor, path: &Path) -> Result<bool> {
        let min = (LOG_HEADER_LEN + CHECK_LEN) as u64;
        if at.offset() < min || at.offset() > len {
            return Ok(false);
        }
        let mut check = [0u8; CHECK_LEN];
        f.read_exact_at(&mut check, at.offset() - CHECK_LEN as u64)
            .map_err(self.io_err("reading", path))?;
        Ok(&check == at.check())
    }

    /// Atomically (re)writes the log of `epoch` holding only `frames`, written one at a time;
    /// the producer reads the logs as they were through `source`.
    pub(super) fn write_log(
        &self,
        epoch: u32,
        frames: &mut Frames<'_>,
        source: &dyn RecordSource,
    ) -> Result<Vec<Cursor>> {
        let name = format!("log.{epoch}");
        let path = self.path(&name);
        let tmp = self.path(&format!("{name}.tmp"));
        let mut ends: Vec<(u64, [u8; CHECK_LEN])> = Vec::new();
        crate::io::replace_atomically_with(&*self.io, &tmp, &path, &self.dir, &mut |f| {
            ends.clear();
            // Frames are gathered into writes of about WRITE_CHUNK bytes: memory stays bounded
            // by that and one frame, and a small log is one write.
            let mut buf = encode_log_header(epoch);
            let mut written = 0u64;
            while let Some(frame) = frames(source) {
                let body = frame?;
                buf.extend_from_slice(&frame_len(&body)?.to_le_bytes());
                buf.extend_from_slice(&body);
                ends.push((written + buf.len() as u64, check_of(&body)));
                if buf.len() >= WRITE_CHUNK {
                    f.write_all_at(&buf, written)
                        .map_err(self.io_err("writing", &tmp))?;
                    written += buf.len() as u64;
                    buf.clear();
                }
            }
            if ends.is_empty() {
                return Err(Error::invalid("log", "a log needs at least one frame"));
            }
            if !buf.is_empty() {
                f.write_all_at(&buf, written)
                    .map_err(self.io_err("writing", &tmp))?;
            }
            Ok(())
        })?;
        let stamp = self
            .io
            .stamp(&path)
            .map_err(self.io_err("reading", &path))?;
        Ok(ends
            .into_iter()
            .map(|(end, check)| Cursor::new(stamp.ino, end, check))
            .collect())
    }

    /// Reads the record at `at` from `f`, the log of `epoch`.
    pub(super) fn read_record_in(
        &self,
        f: &dyn IoFile,
        epoch: u32,
        at: RecordAt,
    ) -> Result<Vec<u8>> {
        let path = self.log_path(epoch);
        let missing = || {
            Error::integrity(
                path.display().to_string(),
                format!(
                    "the log of key epoch {epoch} does not hold a record of {} bytes {} bytes before offset {}",
                    at.len, at.back, at.frame_end
                ),
            )
        };
        let start = at
            .frame_end
            .checked_sub(u64::from(at.back))
            .filter(|s| {
                *s >= (LOG_HEADER_LEN + FRAME_PREFIX_LEN) as u64
                    && at.back >= at.len
                    && at.len as usize <= MAX_FRAME_LEN
            })
            .ok_or_else(missing)?;
        let mut out = vec![0u8; at.len as usize];
        match f.read_exact_at(&mut out, start) {
            Ok(()) => Ok(out),
            // Past the end of the file: the log is shorter than what was read from it.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(missing()),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// The bytes of a new log holding only `snapshot` (creation: one small frame).
    pub(super) fn log_bytes(epoch: u32, snapshot: &[u8]) -> Result<Vec<u8>> {
        let mut out = encode_log_header(epoch);
        out.reserve(FRAME_PREFIX_LEN + snapshot.len());
        out.extend_from_slice(&frame_len(snapshot)?.to_le_bytes());
        out.extend_from_slice(snapshot);
        Ok(out)
    }

    pub(super) fn changed_log(&self, key_epoch: u32, since: &Cursor) -> Result<bool> {
        let path = self.log_path(key_epoch);
        let f = match self.io.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(Error::io("checking", &path, e)),
        };
        let len = f.stamp().map_err(self.io_err("checking", &path))?.len;
        Ok(len != since.offset() || !self.holds(&*f, len, since, &path)?)
    }

    pub(super) fn read_log(
        &self,
        key_epoch: u32,
        since: &Cursor,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome> {
        let path = self.log_path(key_epoch);
        let object = || path.display().to_string();
        let f = self.open_log(key_epoch, false)?;
        let stamp = f.stamp().map_err(self.io_err("reading", &path))?;
        let len = stamp.len;
        let reset = !self.holds(&*f, len, since, &path)?;
        let mut end = *since;
        if reset {
            end = Cursor::START;
            let mut head = [0u8; LOG_HEADER_LEN];
            if len < LOG_HEADER_LEN as u64 {
                return Err(Error::integrity(
                    object(),
                    "log file is shorter than its header",
                ));
            }
            f.read_exact_at(&mut head, 0)
                .map_err(self.io_err("reading", &path))?;
            let epoch = decode_log_header(&head)?;
            if epoch != key_epoch {
                return Err(Error::integrity(
                    object(),
                    format!("log is for key epoch {epoch}, the header says {key_epoch}"),
                ));
            }
        }
        // Frames are read one at a time, each only after its length was checked against the
        // format's maximum and the file's size: memory stays bounded by one frame whatever the
        // file claims.
        let mut offset = if reset {
            LOG_HEADER_LEN as u64
        } else {
            since.offset()
        };
        loop {
            let remaining = len - offset;
            if remaining < FRAME_PREFIX_LEN as u64 {
                break;
            }
            let mut prefix = [0u8; FRAME_PREFIX_LEN];
            f.read_exact_at(&mut prefix, offset)
                .map_err(self.io_err("reading", &path))?;
            let Some(body_len) = frame_len_from_prefix(prefix) else {
                break;
            };
            if (FRAME_PREFIX_LEN + body_len) as u64 > remaining {
                break;
            }
            let mut body = vec![0u8; body_len];
            f.read_exact_at(&mut body, offset + FRAME_PREFIX_LEN as u64)
                .map_err(self.io_err("reading", &path))?;
            let frame_end = Cursor::after(
                stamp.ino,
                offset + (FRAME_PREFIX_LEN + body_len) as u64,
                &body,
            );
            match visit(StoredFrame {
                body,
                end: frame_end,
                from_start: reset,
            })? {
                Visit::Continue => {
                    end = frame_end;
                    offset = frame_end.offset();
                }
                Visit::Stop => break,
                Visit::Abandon => {
                    return Ok(ReadOutcome {
                        reset,
                        end,
                        tail: Tail::Clean,
                    });
                }
            }
        }
        let tail_len = len - offset;
        let tail = if tail_len > MAX_TORN_TAIL_LEN {
            Tail::Damaged
        } else {
            let mut bytes = vec![0u8; tail_len as usize];
            f.read_exact_at(&mut bytes, offset)
                .map_err(self.io_err("reading", &path))?;
            classify_tail(&bytes, offset)
        };
        Ok(ReadOutcome { reset, end, tail })
    }

    pub(super) fn append_frame(
        &self,
        key_epoch: u32,
        at: &Cursor,
        body: &[u8],
    ) -> Result<Appended> {
        let path = self.log_path(key_epoch);
        let len = frame_len(body)?;
        let f = self.open_log(key_epoch, true)?;
        let stamp = f.stamp().map_err(self.io_err("reading", &path))?;
        if stamp.len != at.offset() || !self.holds(&*f, stamp.len, at, &path)? {
            return Ok(Appended::Stale);
        }
        let mut buf = Vec::with_capacity(FRAME_PREFIX_LEN + body.len());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(body);
        let written = f
            .write_all_at(&buf, at.offset())
            .map_err(self.io_err("appending to", &path))
            .and_then(|()| f.sync_data().map_err(self.io_err("syncing", &path)));
        drop(f);
        if let Err(e) = written {
            // Cut the partial or unacknowledged frame off through a fresh descriptor. If even
            // that fails, the next reader finds it as a torn tail (or, if it is complete, as an
            // unacknowledged commit).
            let _ = self.truncate_log(key_epoch, at);
            return Err(e);
        }
        Ok(Appended::Done(Cursor::after(
            stamp.ino,
            at.offset() + buf.len() as u64,
            body,
        )))
    }

    pub(super) fn truncate_log(&self, key_epoch: u32, at: &Cursor) -> Result<()> {
        let path = self.log_path(key_epoch);
        let f = self.open_log(key_epoch, true)?;
        let len = f.stamp().map_err(self.io_err("reading", &path))?.len;
        if len <= at.offset() {
            return Ok(());
        }
        // Never cut on the strength of a position alone: the log must still hold what was read.
        if !self.holds(&*f, len, at, &path)? {
            return Err(Error::integrity(
                path.display().to_string(),
                "refusing to discard the log's tail: the log no longer holds what was read",
            ));
        }
        f.set_len(at.offset())
            .map_err(self.io_err("truncating", &path))?;
        f.sync_all().map_err(self.io_err("syncing", &path))
    }
}
