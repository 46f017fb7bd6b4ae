//! Leftovers of interrupted operations, and telling what is in a directory: temp files and logs
//! of older key epochs are removed by a writer holding the lock; a log without a header is a vault
//! that lost its header, never a place to create a new one.

use super::FileBackend;
use crate::backend::Backend;
use crate::{Error, Result};

/// The epoch of a log file's name (`log.<epoch>`).
fn log_epoch(name: &str) -> Option<u32> {
    name.strip_prefix("log.")?.parse().ok()
}

/// The epoch of an index file's name (`index.<epoch>`).
fn index_epoch(name: &str) -> Option<u32> {
    name.strip_prefix("index.")?.parse().ok()
}

impl FileBackend {
    /// Why a vault cannot be created here: one exists, or one that lost its header does.
    pub(super) fn existing(&self) -> Error {
        match self.read_header_file() {
            Err(e @ Error::Integrity { .. }) => e,
            _ => Error::AlreadyExists(self.location()),
        }
    }

    /// Names of the log files in the directory.
    pub(super) fn log_names(&self) -> Result<Vec<String>> {
        match self.io.list_dir(&self.dir) {
            Ok(names) => Ok(names
                .into_iter()
                .filter(|n| log_epoch(n).is_some())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("listing", &self.dir, e)),
        }
    }

    pub(super) fn remove_leftovers(&self, current_epoch: u32) -> Result<()> {
        let names = self
            .io
            .list_dir(&self.dir)
            .map_err(self.io_err("listing", &self.dir))?;
        let mut removed = false;
        for name in names {
            // A log of a newer epoch than the header's is an interrupted rotation's; it is left
            // for the next rotation to overwrite rather than deleted on the word of a header
            // that might itself be an old copy.
            let stale = name.ends_with(".tmp")
                || log_epoch(&name).is_some_and(|e| e < current_epoch)
                || index_epoch(&name).is_some_and(|e| e < current_epoch);
            if stale {
                let p = self.path(&name);
                tracing::info!(file = %p.display(), "removing leftover of an interrupted operation");
                match self.io.remove(&p) {
                    Ok(()) => removed = true,
                    // Not something this crate leaves (it writes files only): left alone rather
                    // than letting it block every write.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EISDIR)
                            || e.kind() == std::io::ErrorKind::IsADirectory =>
                    {
                        tracing::warn!(file = %p.display(), "a directory named like a leftover temp file is in the vault directory; leaving it");
                    }
                    Err(e) => return Err(Error::io("removing", &p, e)),
                }
            }
        }
        if removed {
            self.io
                .sync_dir(&self.dir)
                .map_err(self.io_err("syncing directory", &self.dir))?;
        }
        Ok(())
    }
}
