//! Every lock and shared pointer the engine uses, in one place, so a loom build
//! (`RUSTFLAGS="--cfg vault_loom"`) swaps in loom's model-checked versions. The cfg is
//! crate-specific so a user's `--cfg loom` does not change this crate.

#[cfg(vault_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(vault_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
// `Arc` is not a synchronisation point, and it appears in the public API (`Arc<dyn Backend>`),
// which must not change type under loom: always std's.
pub(crate) use std::sync::Arc;

// A panic while a lock is held cannot leave the engine's state half-updated (commits are applied
// only after they are durable, with no fallible step in between), so poisoning is ignored.

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}
