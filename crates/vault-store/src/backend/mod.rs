//! Storage backends: where the vault's encrypted bytes live. A backend stores a small header and
//! a log of opaque frames per key epoch; it never sees a key or a plaintext, so a networked
//! backend fits the same trait.

mod file;
mod memory;

use std::time::Duration;

pub use file::{FileBackend, FileBackendOptions};
pub use memory::MemoryBackend;

use crate::Result;

/// How far a reader has consumed a log: which incarnation of it (a compaction or rotation
/// replaces the log with a new one) and how far into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Identifies the log incarnation (the file's inode for [`FileBackend`]).
    pub instance: u64,
    /// Backend-specific offset just past the last complete frame consumed.
    pub offset: u64,
}

/// One frame as stored.
#[derive(Clone, Debug)]
pub struct StoredFrame {
    /// The frame body.
    pub body: Vec<u8>,
    /// The position just past this frame.
    pub end: Position,
}

/// The result of [`Backend::read`].
#[derive(Clone, Debug)]
pub struct ReadOutcome {
    /// The log was replaced since the given position: `frames` start from the beginning.
    pub reset: bool,
    /// Complete frames after the position.
    pub frames: Vec<StoredFrame>,
    /// Position after the last complete frame (equal to the given position if none).
    pub end: Position,
    /// Bytes after the last complete frame that do not form one: a torn tail left by a crash (or
    /// damage; the engine decides with the rollback record).
    pub torn_tail: bool,
}

/// A held lock; dropping it releases the lock.
pub trait LockGuard {}
impl<T> LockGuard for T {}

/// Storage for one vault: a header and, per key epoch, an append-only log of frames.
///
/// Writers hold [`Backend::lock_exclusive`] around every mutation; readers of more than one
/// call's worth of state hold [`Backend::lock_shared`].
pub trait Backend: Send + Sync {
    /// Human-readable location, for messages.
    fn location(&self) -> String;
    /// Whether a vault exists here.
    fn exists(&self) -> Result<bool>;
    /// Creates the vault: the log of `key_epoch` holding `snapshot`, then the header (which makes
    /// the vault exist). Fails with [`crate::Error::AlreadyExists`] if it does.
    fn create(&self, header: &[u8], key_epoch: u32, snapshot: &[u8]) -> Result<()>;
    /// The header bytes.
    fn read_header(&self) -> Result<Vec<u8>>;
    /// Atomically replaces the header.
    fn write_header(&self, header: &[u8]) -> Result<()>;
    /// Takes the writer lock, waiting at most `timeout` ([`crate::Error::Busy`] after).
    fn lock_exclusive(&self, timeout: Duration) -> Result<Box<dyn LockGuard + '_>>;
    /// Takes a reader lock, waiting at most `timeout`.
    fn lock_shared(&self, timeout: Duration) -> Result<Box<dyn LockGuard + '_>>;
    /// Cheap check whether the log differs from `since` (a commit or compaction by someone else).
    fn changed(&self, key_epoch: u32, since: &Position) -> Result<bool>;
    /// Frames after `since` (all frames if the log was replaced since).
    fn read(&self, key_epoch: u32, since: &Position) -> Result<ReadOutcome>;
    /// Durably appends one frame at `at`, which must be the end of the log. Holding the writer
    /// lock. On error nothing was appended (the backend removes any partial write).
    fn append(&self, key_epoch: u32, at: &Position, body: &[u8]) -> Result<Position>;
    /// Discards everything after `at` (a torn tail). Holding the writer lock.
    fn truncate(&self, key_epoch: u32, at: &Position) -> Result<()>;
    /// Atomically replaces the log with one holding only `snapshot` (compaction). Holding the
    /// writer lock.
    fn replace(&self, key_epoch: u32, snapshot: &[u8]) -> Result<Position>;
    /// Master-key rotation: writes the log of `new_epoch` holding `snapshot`, then atomically
    /// replaces the header (the commit point), then removes the old epoch's log. Holding the
    /// writer lock.
    fn rekey(&self, new_epoch: u32, snapshot: &[u8], header: &[u8]) -> Result<Position>;
    /// Removes leftovers of interrupted operations (temp files, logs of other epochs). Holding
    /// the writer lock.
    fn cleanup(&self, key_epoch: u32) -> Result<()>;
}
