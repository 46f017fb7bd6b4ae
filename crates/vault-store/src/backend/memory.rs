//! An in-memory backend for tests and embedding.

use std::time::Duration;

use super::{Backend, LockGuard, Position, ReadOutcome, StoredFrame, Tail, Visit, check_of};
use crate::sync::{Arc, Mutex, lock, lock_for};
use crate::{Error, Result};

#[derive(Default)]
struct Store {
    header: Option<Vec<u8>>,
    epoch: u32,
    instance: u64,
    frames: Vec<Arc<Vec<u8>>>,
}

impl Store {
    /// Replaces the log with a new incarnation holding only `snapshot`.
    fn start_log(&mut self, snapshot: &[u8]) -> Position {
        self.instance += 1;
        self.frames = vec![Arc::new(snapshot.to_vec())];
        Position {
            instance: self.instance,
            offset: 1,
            check: check_of(snapshot),
        }
    }

    /// Whether the log still holds what `at` consumed.
    fn holds(&self, at: &Position) -> bool {
        at.offset >= 1
            && at.instance == self.instance
            && self
                .frames
                .get(at.offset as usize - 1)
                .is_some_and(|f| check_of(f) == at.check)
    }
}

/// Keeps the vault in memory. Cloning gives another handle to the same storage, as two processes
/// opening one directory would have.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    store: Arc<Mutex<Store>>,
    writer: Arc<Mutex<()>>,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryBackend")
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
        s.instance += 1;
        s.frames = vec![Arc::new(snapshot.to_vec())];
        Ok(())
    }

    fn read_header(&self) -> Result<Vec<u8>> {
        lock(&self.store)
            .header
            .clone()
            .ok_or_else(|| Error::NoVault("memory".into()))
    }

    fn write_header(&self, header: &[u8]) -> Result<()> {
        lock(&self.store).header = Some(header.to_vec());
        Ok(())
    }

    fn lock_exclusive(&self, timeout: Duration) -> Result<Box<dyn LockGuard + '_>> {
        match lock_for(&self.writer, timeout) {
            Some(guard) => Ok(Box::new(guard)),
            None => Err(Error::Busy {
                waited_ms: timeout.as_millis() as u64,
            }),
        }
    }

    fn lock_shared(&self, _timeout: Duration) -> Result<Box<dyn LockGuard + '_>> {
        // Every read below is a single atomic step under the store mutex.
        Ok(Box::new(()))
    }

    fn changed(&self, key_epoch: u32, since: &Position) -> Result<bool> {
        let s = lock(&self.store);
        if s.epoch != key_epoch {
            return Err(Error::Rekeyed);
        }
        Ok(!s.holds(since) || s.frames.len() as u64 != since.offset)
    }

    fn read(
        &self,
        key_epoch: u32,
        since: &Position,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome> {
        // Copy the frames out so `visit` runs without the store's lock held.
        let (reset, instance, frames) = {
            let s = lock(&self.store);
            if s.epoch != key_epoch {
                return Err(Error::Rekeyed);
            }
            let reset = !s.holds(since);
            let start = if reset { 0 } else { since.offset as usize };
            let frames: Vec<Arc<Vec<u8>>> = s.frames.iter().skip(start).cloned().collect();
            (reset, s.instance, (start, frames))
        };
        let (start, frames) = frames;
        let mut end = if reset { Position::default() } else { *since };
        // Whole frames are stored whole: a frame that does not authenticate is never a torn
        // write here.
        let mut tail = Tail::Clean;
        for (i, f) in frames.iter().enumerate() {
            let pos = Position {
                instance,
                offset: (start + i + 1) as u64,
                check: check_of(f),
            };
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
            }
        }
        Ok(ReadOutcome { reset, end, tail })
    }

    fn append(&self, key_epoch: u32, at: &Position, body: &[u8]) -> Result<Position> {
        let mut s = lock(&self.store);
        if s.epoch != key_epoch {
            return Err(Error::Rekeyed);
        }
        if !s.holds(at) || s.frames.len() as u64 != at.offset {
            return Err(Error::integrity(
                "memory log",
                "append position is not the end of the log",
            ));
        }
        s.frames.push(Arc::new(body.to_vec()));
        Ok(Position {
            instance: s.instance,
            offset: s.frames.len() as u64,
            check: check_of(body),
        })
    }

    fn truncate(&self, _key_epoch: u32, at: &Position) -> Result<()> {
        let mut s = lock(&self.store);
        if s.holds(at) {
            let keep = at.offset as usize;
            s.frames.truncate(keep);
        }
        Ok(())
    }

    fn replace(&self, key_epoch: u32, snapshot: &[u8]) -> Result<Position> {
        let mut s = lock(&self.store);
        if s.epoch != key_epoch {
            return Err(Error::Rekeyed);
        }
        Ok(s.start_log(snapshot))
    }

    fn rekey(&self, new_epoch: u32, snapshot: &[u8], header: &[u8]) -> Result<Position> {
        let mut s = lock(&self.store);
        s.epoch = new_epoch;
        s.header = Some(header.to_vec());
        Ok(s.start_log(snapshot))
    }

    fn cleanup(&self, _current_epoch: u32) -> Result<()> {
        Ok(())
    }
}
