//! How a vault is opened or created: lock timeout, rollback checking, automatic compaction and
//! the limit on key-derivation work.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::unlock::KdfLimit;
use crate::rollback::RollbackStore;
use crate::sync::Arc;

/// How a vault is opened or created.
#[derive(Clone, Debug)]
pub struct VaultOptions {
    /// How long a writer waits for another process's write lock before [`crate::Error::Busy`].
    pub lock_timeout: Duration,
    /// Directory holding rollback records (a [`crate::DirRollbackStore`]); with
    /// `rollback_store` also `None`, rollback detection is off (in-memory vaults).
    pub rollback_dir: Option<PathBuf>,
    /// Where rollback records are kept, if not in files in `rollback_dir` (takes precedence).
    pub rollback_store: Option<Arc<dyn RollbackStore>>,
    /// Accept a vault older than its rollback record (after a deliberate restore). The acceptance
    /// is recorded in the vault as an event.
    pub accept_rollback: bool,
    /// Compact automatically when the log holds more than this many bytes of superseded records
    /// and they outweigh the live ones.
    pub auto_compact_bytes: u64,
    /// The most record bytes in one frame of a snapshot written by compaction or master-key
    /// rotation (a larger vault is written as several frames). Tests make it small; there is no
    /// reason to change it otherwise.
    #[doc(hidden)]
    pub snapshot_part_bytes: usize,
    /// The most Argon2id work a key slot may ask for before it is tried (and the most a new
    /// slot may be given).
    pub kdf_limit: KdfLimit,
    /// What the vault takes the time to be: the system clock, or a test's.
    pub clock: Clock,
    /// Record every operation in the audit trail beside the vault (on by default). Off only to
    /// measure what the trail costs (`cargo xtask bench audit`); the CLI always records.
    pub audit: bool,
    /// Refuse any operation whose audit entry cannot be written durably: a change's entry is
    /// written and synced before the change is made (and a second entry says so if the change
    /// then fails), a read's before its result is handed back.
    pub audit_fail_closed: bool,
    /// Told how far a long operation (compaction, master-key rotation) has got.
    pub progress: Progress,
    /// Unlock with this member's slot only (a team vault): one key derivation instead of one
    /// per slot until one opens.
    pub member: Option<String>,
    /// Open only to join: only an invited member's slot is tried (their invitation code opens
    /// nothing else, and nothing else is tried with it).
    pub join: bool,
}

/// A long operation's progress: which, how many records it has written of how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// `"compacting"` or `"rotating the master key"`.
    pub what: &'static str,
    /// Records written so far.
    pub done: u64,
    /// Records it will write.
    pub total: u64,
}

/// Where a long operation reports its [`Step`]s: nowhere by default; a progress bar in the CLI.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn Fn(Step) + Send + Sync>>);

impl Progress {
    /// Reports each step to `f` (called on the thread doing the work, at most once a frame).
    pub fn from_fn(f: impl Fn(Step) + Send + Sync + 'static) -> Self {
        Progress(Some(Arc::new(f)))
    }

    pub(crate) fn report(&self, what: &'static str, done: u64, total: u64) {
        if let Some(f) = &self.0 {
            f(Step { what, done, total });
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(reported)"
        } else {
            "Progress(none)"
        })
    }
}

/// The time a vault stamps records with and checks key expiry and rotation against.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Fn() -> i64 + Send + Sync>>);

impl Clock {
    /// A clock that reads `f` (milliseconds since the Unix epoch); for tests of expiry and
    /// rotation periods.
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Some(Arc::new(f)))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.0.as_ref().map_or_else(crate::engine::now_ms, |f| f())
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(custom)"
        } else {
            "Clock(system)"
        })
    }
}

impl Default for VaultOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(10),
            rollback_dir: None,
            rollback_store: None,
            accept_rollback: false,
            auto_compact_bytes: 8 << 20,
            audit: true,
            audit_fail_closed: false,
            snapshot_part_bytes: 16 << 20,
            kdf_limit: KdfLimit::DEFAULT,
            clock: Clock::default(),
            progress: Progress::default(),
            member: None,
            join: false,
        }
    }
}
