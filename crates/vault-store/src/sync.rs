//! Every lock and shared pointer the engine uses, in one place, so a loom build
//! (`RUSTFLAGS="--cfg vault_loom"`) swaps in loom's model-checked versions. The cfg is
//! crate-specific so a user's `--cfg loom` does not change this crate. Outside loom the locks are
//! parking_lot's: no poisoning to unwrap, and smaller and faster uncontended than std's. The
//! crate's clippy.toml refuses std's locks everywhere else.

#[cfg(vault_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(vault_loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
// `Arc` is not a synchronisation point, and it appears in the public API (`Arc<dyn Backend>`),
// which must not change type under loom: always std's.
#[allow(clippy::disallowed_types)] // not a lock
pub(crate) use std::sync::Arc;

// A panic while a lock is held cannot leave the engine's state half-updated (commits are applied
// only after they are durable, with no fallible step in between), so loom's poisoning is ignored
// (parking_lot has none).

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(vault_loom)]
    return m.lock().unwrap_or_else(|e| e.into_inner());
    #[cfg(not(vault_loom))]
    m.lock()
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    #[cfg(vault_loom)]
    return m.read().unwrap_or_else(|e| e.into_inner());
    #[cfg(not(vault_loom))]
    m.read()
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    #[cfg(vault_loom)]
    return m.write().unwrap_or_else(|e| e.into_inner());
    #[cfg(not(vault_loom))]
    m.write()
}

/// Read-locks `m`, waiting at most `timeout` (`None` if that passed). Under loom, which has no
/// timed locks, it waits as long as it takes.
pub(crate) fn read_for<T>(
    m: &RwLock<T>,
    timeout: std::time::Duration,
) -> Option<RwLockReadGuard<'_, T>> {
    #[cfg(vault_loom)]
    {
        let _ = timeout;
        return Some(read(m));
    }
    #[cfg(not(vault_loom))]
    m.try_read_for(timeout)
}

/// Write-locks `m`, waiting at most `timeout`, as [`read_for`].
pub(crate) fn write_for<T>(
    m: &RwLock<T>,
    timeout: std::time::Duration,
) -> Option<RwLockWriteGuard<'_, T>> {
    #[cfg(vault_loom)]
    {
        let _ = timeout;
        return Some(write(m));
    }
    #[cfg(not(vault_loom))]
    m.try_write_for(timeout)
}
