//! Storage backends: where the vault's encrypted bytes live. A backend stores a small header and
//! a log of opaque frames per key epoch; it never sees a key or a plaintext, so a networked
//! backend fits the same trait.
//!
//! Everything that must see a consistent vault happens inside a session: a [`ReadSession`]
//! (shared: many readers, no writer) or a [`WriteSession`] (exclusive), which owns the backend's
//! lock for its lifetime and offers the operations allowed under it. For files a session holds
//! the lock file; for a database it would hold one connection and transaction. What a backend
//! needs to recover from its own interrupted operations (temp files, logs of old epochs) it does
//! inside its write sessions; the engine never names it.

mod file;
mod memory;
#[cfg(feature = "postgres")]
mod pg;

use std::time::Duration;

pub use file::{FileBackend, FileBackendOptions};
pub use memory::MemoryBackend;
#[cfg(feature = "postgres")]
pub use pg::{PgDiagnosis, PgIndex, PostgresBackend, PostgresLocation};
pub use vault_format::log::Tail;

use crate::Result;

/// Length of the check a [`Cursor`] carries.
pub const CHECK_LEN: usize = 32;

/// How far a reader has consumed a log: opaque to the engine, which only hands it back to the
/// backend that issued it.
///
/// A cursor is only trusted after proving that the log still holds what the reader consumed: it
/// carries the last [`CHECK_LEN`] bytes of the last frame consumed (its chain MAC, which commits
/// to every frame before it and, through the snapshot frame's fresh nonces, to the log's
/// incarnation). A cursor into a log that was replaced therefore never matches the new log, even
/// where a file system reuses the old file's inode and length. The parts are for backend
/// implementations; [`Cursor::START`] is the cursor of a reader that consumed nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    hint: u64,
    offset: u64,
    check: [u8; CHECK_LEN],
}

impl Cursor {
    /// Nothing consumed: a read from here starts at the beginning of the log.
    pub const START: Cursor = Cursor {
        hint: 0,
        offset: 0,
        check: [0; CHECK_LEN],
    };

    /// A cursor at `offset` (backend-specific, non-zero once anything was consumed), proven by
    /// `check` (the last [`CHECK_LEN`] bytes of the last frame consumed); `hint` may name the log
    /// incarnation but is never trusted alone.
    pub fn new(hint: u64, offset: u64, check: [u8; CHECK_LEN]) -> Self {
        Self {
            hint,
            offset,
            check,
        }
    }

    /// A cursor just past `frame`, at `offset`.
    pub fn after(hint: u64, offset: u64, frame: &[u8]) -> Self {
        Self::new(hint, offset, check_of(frame))
    }

    /// The backend-specific offset just past the last frame consumed (0: nothing consumed).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The bytes that prove the cursor.
    pub fn check(&self) -> &[u8; CHECK_LEN] {
        &self.check
    }

    /// The incarnation hint.
    pub fn hint(&self) -> u64 {
        self.hint
    }
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
    /// The cursor just past this frame.
    pub end: Cursor,
    /// The log no longer held what the reader's cursor consumed: this frame is part of a read
    /// from the start of the log, so the reader rebuilds its view.
    pub from_start: bool,
}

/// What the reader of [`ReadSession::read`] does after a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visit {
    /// The frame was accepted; go on.
    Continue,
    /// The frame does not authenticate: stop, and judge the log from this frame on as its tail.
    Stop,
    /// The reader no longer wants this read (say, it would rather start over from an index
    /// than read a replaced log from its start): stop at once. The outcome's tail is then not
    /// judged and reads [`Tail::Clean`]; the caller ignores it.
    Abandon,
}

/// The result of [`ReadSession::read`].
#[derive(Clone, Copy, Debug)]
pub struct ReadOutcome {
    /// The log was replaced since the given cursor: the frames started from the beginning.
    pub reset: bool,
    /// Cursor after the last frame accepted (the given cursor if none, or [`Cursor::START`]
    /// after a reset with none).
    pub end: Cursor,
    /// What follows that frame.
    pub tail: Tail,
}

/// Where one record sits in a log: inside the frame that ends at a cursor's offset, `back` bytes
/// before that end, `len` bytes long. Only meaningful in the log incarnation it was read from, so
/// an engine keeps it beside a cursor it has proven, and checks what it reads (the record's
/// sequence number, kind and authentication) before trusting it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordAt {
    /// The offset of the end of the frame holding the record, as its [`Cursor::offset`] says.
    pub frame_end: u64,
    /// How far before the end of that frame's body the record starts.
    pub back: u32,
    /// The record's encoded length.
    pub len: u32,
}

/// Reads single records of a log by their place: a reader fetching what it needs, and a
/// snapshot copying the live records of the log it replaces, one at a time.
pub trait RecordSource {
    /// The `at.len` bytes of the record at `at` in the log of `key_epoch`. Bytes past the end of
    /// the frame or the log are an integrity error (the log does not hold what the caller
    /// indexed), never a panic.
    fn read_record(&self, key_epoch: u32, at: RecordAt) -> Result<Vec<u8>>;
}

/// An index file opened for reading: immutable once written, read by offset. It stays readable
/// as it was opened even after a writer replaces it (the reader keeps what it opened).
pub trait IndexFile: Send + Sync {
    /// Its length.
    fn len(&self) -> u64;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `len` bytes at `offset`; bytes past the end are an integrity error.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// Where it is, for messages.
    fn location(&self) -> String;
}

/// Where the writer of an index file puts its bytes, in order.
pub type IndexSink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// Writes a whole index file into the sink it is given.
pub type IndexWriter<'a> = dyn FnMut(&mut IndexSink<'_>) -> Result<()> + 'a;

/// The frames of a new log, produced one at a time (sealing one can fail; `None` after the
/// last). The producer may copy records of the current logs through the given source.
pub type Frames<'a> = dyn FnMut(&dyn RecordSource) -> Option<Result<Vec<u8>>> + 'a;

/// The result of [`WriteSession::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Appended {
    /// The frame is durable; the log now ends at this cursor.
    Done(Cursor),
    /// Nothing was appended: the log no longer ends where the expected cursor says (another
    /// writer appended, or the log was replaced). The caller reads again.
    Stale,
}

/// Storage for one vault: a header and, per key epoch, an append-only log of frames.
pub trait Backend: Send + Sync {
    /// Human-readable location, for messages.
    fn location(&self) -> String;
    /// Where the vault's audit trail is kept (its directory and the I/O layer to write it
    /// through), for a backend that keeps one; `None` keeps no audit trail.
    fn audit_place(&self) -> Option<(std::path::PathBuf, std::sync::Arc<dyn crate::io::Io>)> {
        None
    }
    /// Whether a vault, or any part of one, exists here.
    fn exists(&self) -> Result<bool>;
    /// Creates the vault: the log of `key_epoch` holding `snapshot`, then the header (which makes
    /// the vault exist). Fails with [`crate::Error::AlreadyExists`] if any part of a vault is
    /// there.
    fn create(&self, header: &[u8], key_epoch: u32, snapshot: &[u8]) -> Result<()>;
    /// The header bytes, read outside any session (to unlock before locking: key derivation is
    /// slow and must not hold writers up). Whoever acts on it checks it again in a session.
    fn read_header(&self) -> Result<Vec<u8>>;
    /// Cheap check whether the log differs from `since` (a commit or compaction by someone
    /// else), outside any session; `true` when unsure.
    fn changed(&self, key_epoch: u32, since: &Cursor) -> Result<bool>;
    /// Begins a read session, waiting at most `timeout` for a writer to finish
    /// ([`crate::Error::Busy`] after).
    fn begin_read(&self, timeout: Duration) -> Result<Box<dyn ReadSession + '_>>;
    /// Begins the write session, waiting at most `timeout` for other sessions to finish.
    fn begin_write(&self, timeout: Duration) -> Result<Box<dyn WriteSession + '_>>;
}

/// A consistent view of the vault: no writer changes it while the session lives. Dropping the
/// session ends it. Single records are read through [`RecordSource`].
pub trait ReadSession: RecordSource {
    /// The header bytes.
    fn header(&self) -> Result<Vec<u8>>;
    /// Passes the frames of the log of `key_epoch` after `since` to `visit` one at a time (all
    /// frames, with `reset`, if the log no longer holds what `since` consumed), then judges what
    /// follows the last accepted one. Memory stays bounded by one frame.
    fn read(
        &self,
        key_epoch: u32,
        since: &Cursor,
        visit: &mut dyn FnMut(StoredFrame) -> Result<Visit>,
    ) -> Result<ReadOutcome>;
    /// The index file of `key_epoch`, if there is one (derived data beside the log: a checkpoint
    /// of what the log says up to a cursor).
    fn open_index(&self, key_epoch: u32) -> Result<Option<Box<dyn IndexFile>>>;
}

/// The one writer's session: everything [`ReadSession`] offers, and the writes. Each write is
/// durable when it returns `Ok`; on an error, the vault is as before the call (or, for a header
/// write or a rekey, possibly at the new state: the caller re-reads the header to tell).
///
/// The caller checks the header in the session before it reads a log; reading the log of
/// `key_epoch` in a write session tells the backend that this epoch is current, so it may
/// discard what its own interrupted operations left of older epochs.
pub trait WriteSession: ReadSession {
    /// Appends one frame at `expected`, which must be the end of the log of `key_epoch` and
    /// still hold what it consumed ([`Appended::Stale`] otherwise, with nothing written).
    fn append(&mut self, key_epoch: u32, expected: &Cursor, frame: &[u8]) -> Result<Appended>;
    /// Discards an incomplete tail after `at` (what an interrupted append leaves), only if the
    /// log still holds what `at` consumed.
    fn discard_tail(&mut self, key_epoch: u32, at: &Cursor) -> Result<()>;
    /// Atomically replaces the log of `key_epoch` with one holding only `frames` (compaction: a
    /// snapshot, in as many frames as its size needs). Readers see all of them or none.
    /// The frames are taken one at a time, so a snapshot is never whole in memory; an error from
    /// them leaves the log as it was. While they are produced the old log can still be read
    /// through the [`RecordSource`] given to the producer. Returns the cursor after each frame,
    /// in order (the last is the end of the new log).
    fn replace_log(&mut self, key_epoch: u32, frames: &mut Frames<'_>) -> Result<Vec<Cursor>>;
    /// Master-key rotation: the log of `new_epoch` holding `frames` and `header` become current
    /// together (the header switch is the commit point), and the old epoch's log goes. The
    /// producer reads the old epoch's log as for [`WriteSession::replace_log`]; the cursors
    /// returned are as there.
    fn rekey(
        &mut self,
        new_epoch: u32,
        frames: &mut Frames<'_>,
        header: &[u8],
    ) -> Result<Vec<Cursor>>;
    /// Atomically replaces the header.
    fn write_header(&mut self, header: &[u8]) -> Result<()>;
    /// Atomically replaces the index file of `key_epoch` with what `write` puts into its sink
    /// (readers see the old file or the new one, whole); an error leaves the old one.
    fn write_index(&mut self, key_epoch: u32, write: &mut IndexWriter<'_>) -> Result<()>;
}
