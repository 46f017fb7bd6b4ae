//! Storage backends: where the vault's encrypted bytes live. A backend stores a small header and
//! a log of opaque frames per key epoch; it never sees a key or a plaintext, so a networked
//! backend fits the same trait.

mod file;
mod memory;

use std::time::Duration;

pub use file::{FileBackend, FileBackendOptions};
pub use memory::MemoryBackend;
pub use vault_format::log::Tail;

use crate::Result;

/// Length of [`Position::check`].
pub const CHECK_LEN: usize = 32;

/// How far a reader has consumed a log.
///
/// A position is only trusted after proving that the log still holds what the reader consumed:
/// `check` is the last [`CHECK_LEN`] bytes before `offset` (the chain MAC of the last frame
/// consumed, which commits to every frame before it). File-system identities such as inode
/// numbers recur after a compaction replaces the file, so `instance` is only a hint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// A hint identifying the log incarnation (the file's inode for [`FileBackend`]).
    pub instance: u64,
    /// Backend-specific offset just past the last complete frame consumed; 0 = nothing consumed.
    pub offset: u64,
    /// The last [`CHECK_LEN`] bytes of the log before `offset`.
    pub check: [u8; CHECK_LEN],
}

/// The last [`CHECK_LEN`] bytes of `bytes` (zero-padded in front if shorter).
pub(crate) fn check_of(bytes: &[u8]) -> [u8; CHECK_LEN] {
    let mut out = [0u8; CHECK_LEN];
    let n = bytes.len().min(CHECK_LEN);
    let (_, dst) = out.split_at_mut(CHECK_LEN - n);
    dst.copy_from_slice(bytes.get(bytes.len() - n..).unwrap_or_default());
    out
}

/// One frame as stored.
#[derive(Clone, Debug)]
pub struct StoredFrame {
    /// The frame body.
    pub body: Vec<u8>,
    /// The position just past this frame.
    pub end: Position,
    /// The log no longer held what the reader's position consumed: this frame is part of a
    /// read from the start of the log, so the reader rebuilds its view.
    pub from_start: bool,
}

/// What the reader of [`Backend::read`] does after a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// The frame was accepted; go on.
    Continue,
    /// The frame does not authenticate: stop, and judge the log from this frame on as its tail.
    Stop,
}

/// The result of [`Backend::read`].
#[derive(Clone, Copy, Debug)]
pub struct ReadOutcome {
    /// The log was replaced since the given position: the frames started from the beginning.
    pub reset: bool,
    /// Position after the last frame accepted (the given position if none, or the default after
    /// a reset with none).
    pub end: Position,
    /// What follows that frame.
    pub tail: Tail,
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
    /// Whether a vault, or any part of one, exists here.
    fn exists(&self) -> Result<bool>;
    /// Creates the vault: the log of `key_epoch` holding `snapshot`, then the header (which makes
    /// the vault exist). Fails with [`crate::Error::AlreadyExists`] if any part of a vault is
    /// there.
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
    /// May be called without a lock; `true` when unsure.
    fn changed(&self, key_epoch: u32, since: &Position) -> Result<bool>;
    /// Passes the frames after `since` to `visit` one at a time (all frames, with `reset`, if the
    /// log no longer holds what `since` consumed), then judges what follows the last accepted one.
    fn read(
        &self,
        key_epoch: u32,
        since: &Position,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome>;
    /// Durably appends one frame at `at`, which must be the end of the log and still hold what
    /// `at` consumed. Holding the writer lock. On error nothing was appended (the backend removes
    /// any partial write).
    fn append(&self, key_epoch: u32, at: &Position, body: &[u8]) -> Result<Position>;
    /// Discards a torn tail after `at`, only if the log still holds what `at` consumed. Holding
    /// the writer lock.
    fn truncate(&self, key_epoch: u32, at: &Position) -> Result<()>;
    /// Atomically replaces the log with one holding only `snapshot` (compaction). Holding the
    /// writer lock.
    fn replace(&self, key_epoch: u32, snapshot: &[u8]) -> Result<Position>;
    /// Master-key rotation: writes the log of `new_epoch` holding `snapshot`, then atomically
    /// replaces the header (the commit point), then removes the old epoch's log. Holding the
    /// writer lock.
    fn rekey(&self, new_epoch: u32, snapshot: &[u8], header: &[u8]) -> Result<Position>;
    /// Removes leftovers of interrupted operations: temp files and logs of epochs older than
    /// `current_epoch`, which the caller read from the header under the writer lock. Never a log
    /// of the current or a newer epoch. Holding the writer lock.
    fn cleanup(&self, current_epoch: u32) -> Result<()>;
}
