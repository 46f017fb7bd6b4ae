//! An in-memory backend for tests and embedding. Sessions take a reader-writer lock, as the file
//! backend's take its lock file; each operation is one atomic step under the store's mutex.

use std::time::Duration;

use super::{
    Appended, Backend, Cursor, Frames, IndexFile, IndexWriter, ReadOutcome, ReadSession, RecordAt,
    RecordSource, StoredFrame, Tail, Visit, WriteSession,
};
use crate::sync::{
    Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, lock, read_for, write_for,
};
use crate::{Error, Result};

#[derive(Default)]
struct Store {
    header: Option<Vec<u8>>,
    epoch: u32,
    instance: u64,
    frames: Vec<Arc<Vec<u8>>>,
    /// The index file, by epoch.
    index: Option<(u32, Arc<Vec<u8>>)>,
}

impl Store {
    /// Replaces the log with a new incarnation holding only `frames`; the cursor after each.
    fn start_log(&mut self, frames: Vec<Arc<Vec<u8>>>) -> Result<Vec<Cursor>> {
        if frames.is_empty() {
            return Err(Error::invalid("log", "a log needs at least one frame"));
        }
        self.instance += 1;
        let ends = (1u64..)
            .zip(&frames)
            .map(|(n, f)| Cursor::after(self.instance, n, f))
            .collect();
        self.frames = frames;
        Ok(ends)
    }

    /// Whether the log still holds what `at` consumed.
    fn holds(&self, at: &Cursor) -> bool {
        at.offset() >= 1
            && at.hint() == self.instance
            && self
                .frames
                .get(at.offset() as usize - 1)
                .is_some_and(|f| Cursor::after(self.instance, at.offset(), f) == *at)
    }

    /// The record at `at` (frames are numbered from 1 by their end cursor's offset).
    fn record(&self, at: RecordAt) -> Result<Vec<u8>> {
        let body = usize::try_from(at.frame_end)
            .ok()
            .and_then(|end| end.checked_sub(1))
            .and_then(|i| self.frames.get(i));
        body.and_then(|b| {
            let start = b.len().checked_sub(at.back as usize)?;
            b.get(start..start.checked_add(at.len as usize)?)
        })
        .filter(|_| at.len <= at.back)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            Error::integrity(
                "memory vault",
                format!(
                    "no record of {} bytes {} bytes before the end of frame {}",
                    at.len, at.back, at.frame_end
                ),
            )
        })
    }

    fn check_epoch(&self, key_epoch: u32) -> Result<()> {
        if self.epoch == key_epoch {
            Ok(())
        } else {
            Err(Error::Rekeyed)
        }
    }
}

/// Keeps the vault in memory. Cloning gives another handle to the same storage, as two processes
/// opening one directory would have.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    store: Arc<Mutex<Store>>,
    sessions: Arc<RwLock<()>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn read_frames(
        &self,
        key_epoch: u32,
        since: &Cursor,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome> {
        // Copy the frames out so `visit` runs without the store's mutex held.
        let (reset, instance, start, frames) = {
            let s = lock(&self.store);
            s.check_epoch(key_epoch)?;
            let reset = !s.holds(since);
            let start = if reset { 0 } else { since.offset() as usize };
            let frames: Vec<Arc<Vec<u8>>> = s.frames.iter().skip(start).cloned().collect();
            (reset, s.instance, start, frames)
        };
        let mut end = if reset { Cursor::START } else { *since };
        // Whole frames are stored whole: a frame that does not authenticate is never a torn
        // write here.
        let mut tail = Tail::Clean;
        for (i, f) in frames.iter().enumerate() {
            let pos = Cursor::after(instance, (start + i + 1) as u64, f);
            match visit(StoredFrame {
                body: f.as_ref().clone(),
                end: pos,
                from_start: reset,
            })? {
                Visit::Continue => end = pos,
                Visit::Stop => {
                    tail = Tail::Damaged;
                    break;
                }
                Visit::Abandon => break,
            }
        }
        Ok(ReadOutcome { reset, end, tail })
    }

    fn header(&self) -> Result<Vec<u8>> {
        lock(&self.store)
            .header
            .clone()
            .ok_or_else(|| Error::NoVault("memory".into()))
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBackend")
    }
}

fn busy(timeout: Duration) -> Error {
    Error::Busy {
        waited_ms: timeout.as_millis() as u64,
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".into()
    }

    fn exists(&self) -> Result<bool> {
        Ok(lock(&self.store).header.is_some())
    }

    fn create(&self, header: &[u8], key_epoch: u32, snapshot: &[u8]) -> Result<()> {
        let mut s = lock(&self.store);
        if s.header.is_some() {
            return Err(Error::AlreadyExists("memory".into()));
        }
        s.header = Some(header.to_vec());
        s.epoch = key_epoch;
        s.start_log(vec![Arc::new(snapshot.to_vec())])?;
        Ok(())
    }

    fn read_header(&self) -> Result<Vec<u8>> {
        self.header()
    }

    fn changed(&self, key_epoch: u32, since: &Cursor) -> Result<bool> {
        let s = lock(&self.store);
        s.check_epoch(key_epoch)?;
        Ok(!s.holds(since) || s.frames.len() as u64 != since.offset())
    }

    fn begin_read(&self, timeout: Duration) -> Result<Box<dyn ReadSession + '_>> {
        let guard = read_for(&self.sessions, timeout).ok_or_else(|| busy(timeout))?;
        Ok(Box::new(MemoryRead {
            backend: self,
            _guard: guard,
        }))
    }

    fn begin_write(&self, timeout: Duration) -> Result<Box<dyn WriteSession + '_>> {
        let guard = write_for(&self.sessions, timeout).ok_or_else(|| busy(timeout))?;
        Ok(Box::new(MemoryWrite {
            backend: self,
            _guard: guard,
        }))
    }
}

/// A session: the sessions lock's guard (shared for a read session, exclusive for the write
/// session) and the backend.
struct MemorySession<'a, G> {
    backend: &'a MemoryBackend,
    _guard: G,
}

type MemoryRead<'a> = MemorySession<'a, RwLockReadGuard<'a, ()>>;
type MemoryWrite<'a> = MemorySession<'a, RwLockWriteGuard<'a, ()>>;

impl<G> RecordSource for MemorySession<'_, G> {
    fn read_record(&self, key_epoch: u32, at: RecordAt) -> Result<Vec<u8>> {
        let s = lock(&self.backend.store);
        s.check_epoch(key_epoch)?;
        s.record(at)
    }
}

/// An index as it was when opened.
struct MemoryIndex(Arc<Vec<u8>>);

impl IndexFile for MemoryIndex {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.0.get(o..o.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                Error::integrity("memory index", format!("no {len} bytes at offset {offset}"))
            })
    }

    fn location(&self) -> String {
        "memory index".into()
    }
}

impl<G> ReadSession for MemorySession<'_, G> {
    fn header(&self) -> Result<Vec<u8>> {
        self.backend.header()
    }

    fn read(
        &self,
        key_epoch: u32,
        since: &Cursor,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome> {
        self.backend.read_frames(key_epoch, since, visit)
    }

    fn open_index(&self, key_epoch: u32) -> Result<Option<Box<dyn IndexFile>>> {
        let s = lock(&self.backend.store);
        Ok(s.index
            .as_ref()
            .filter(|(e, _)| *e == key_epoch)
            .map(|(_, b)| Box::new(MemoryIndex(b.clone())) as Box<dyn IndexFile>))
    }
}

impl MemoryWrite<'_> {
    /// Produces the frames of a new log, which may read the current one.
    fn gather(&self, frames: &mut Frames<'_>) -> Result<Vec<Arc<Vec<u8>>>> {
        let mut out = Vec::new();
        while let Some(f) = frames(self) {
            out.push(Arc::new(f?));
        }
        Ok(out)
    }
}

impl WriteSession for MemoryWrite<'_> {
    fn append(&mut self, key_epoch: u32, expected: &Cursor, frame: &[u8]) -> Result<Appended> {
        let mut s = lock(&self.backend.store);
        s.check_epoch(key_epoch)?;
        if !s.holds(expected) || s.frames.len() as u64 != expected.offset() {
            return Ok(Appended::Stale);
        }
        s.frames.push(Arc::new(frame.to_vec()));
        Ok(Appended::Done(Cursor::after(
            s.instance,
            s.frames.len() as u64,
            frame,
        )))
    }

    fn discard_tail(&mut self, key_epoch: u32, at: &Cursor) -> Result<()> {
        let mut s = lock(&self.backend.store);
        s.check_epoch(key_epoch)?;
        if s.holds(at) {
            let keep = at.offset() as usize;
            s.frames.truncate(keep);
        }
        Ok(())
    }

    fn replace_log(&mut self, key_epoch: u32, frames: &mut Frames<'_>) -> Result<Vec<Cursor>> {
        lock(&self.backend.store).check_epoch(key_epoch)?;
        // Gathered before the store is locked again: producing them may take long.
        let frames = self.gather(frames)?;
        let mut s = lock(&self.backend.store);
        s.check_epoch(key_epoch)?;
        s.start_log(frames)
    }

    fn rekey(
        &mut self,
        new_epoch: u32,
        frames: &mut Frames<'_>,
        header: &[u8],
    ) -> Result<Vec<Cursor>> {
        let frames = self.gather(frames)?;
        let mut s = lock(&self.backend.store);
        let end = s.start_log(frames)?;
        s.epoch = new_epoch;
        s.header = Some(header.to_vec());
        Ok(end)
    }

    fn write_header(&mut self, header: &[u8]) -> Result<()> {
        lock(&self.backend.store).header = Some(header.to_vec());
        Ok(())
    }

    fn write_index(&mut self, key_epoch: u32, write: &mut IndexWriter<'_>) -> Result<()> {
        let mut bytes = Vec::new();
        write(&mut |b: &[u8]| {
            bytes.extend_from_slice(b);
            Ok(())
        })?;
        lock(&self.backend.store).index = Some((key_epoch, Arc::new(bytes)));
        Ok(())
    }
}
