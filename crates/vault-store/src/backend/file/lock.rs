//! Locking a vault directory: `flock` on the `lock` file, which is never renamed (locking a file
//! that a rename replaces excludes no one), retried with backoff until a timeout.

use std::time::{Duration, Instant};

use super::{FileBackend, LOCK};
use crate::backend::Backend;
use crate::io::IoLock;
use crate::{Error, Result};

/// The "lock" of a vault on storage nothing can write to.
struct Unlocked;

impl IoLock for Unlocked {
    fn try_lock(&self, _exclusive: bool) -> std::io::Result<bool> {
        Ok(true)
    }
}

impl FileBackend {
    /// Takes the `flock` (held until the returned descriptor is dropped).
    pub(super) fn lock(&self, exclusive: bool, timeout: Duration) -> Result<Box<dyn IoLock>> {
        let path = self.path(LOCK);
        let open = |create: bool| self.io.open_lock(&path, create);
        let read_only = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            )
        };
        let f = match open(false) {
            Ok(f) => f,
            // A reader on read-only storage (a backup mounted read-only, a vault the user may
            // only read): a shared lock needs only a read-only descriptor.
            Err(e) if !exclusive && read_only(&e) => self
                .io
                .open_lock_readonly(&path)
                .map_err(|e| Error::io("opening", &path, e))?,

            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.exists()? {
                    return Err(Error::NoVault(self.location()));
                }
                // Someone removed the lock file of an existing vault. It holds no data, so it is
                // recreated (never exclusively: two processes doing this at once share one file).
                match open(true) {
                    Ok(f) => {
                        tracing::warn!(file = %path.display(), "the lock file was missing; recreated it");
                        f
                    }
                    // None can be made, so no writer can change this vault either.
                    Err(e) if !exclusive && read_only(&e) => return Ok(Box::new(Unlocked)),
                    Err(e) => return Err(Error::io("creating", &path, e)),
                }
            }
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        let kind = if exclusive { "write" } else { "read" };
        let mut tries = 0u32;
        loop {
            tries += 1;
            match f.try_lock(exclusive) {
                Ok(true) if tries == 1 => {
                    tracing::debug!(file = %path.display(), "took the {kind} lock");
                    return Ok(f);
                }
                Ok(true) => {
                    tracing::info!(
                        file = %path.display(),
                        "took the {kind} lock after waiting {} ms for another process",
                        start.elapsed().as_millis()
                    );
                    return Ok(f);
                }
                Ok(false) => {}
                Err(e) => return Err(Error::io("locking", &path, e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::Busy {
                    waited_ms: waited.as_millis() as u64,
                });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}
