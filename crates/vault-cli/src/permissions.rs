//! Warnings about vault files and directories that other users can reach. `vault` still uses
//! them (refusing would lock the owner out over a chmod) but says so on stderr, once per run.

use std::fs::Metadata;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::output::stderr_line;

/// Warns if `dir` (a `what`, e.g. "vault directory") exists with any group or other permission
/// bit. One that does not exist yet is created private later.
pub(crate) fn warn_if_shared_dir(what: &str, dir: &Path) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        stderr_line(format!(
            "warning: {what} {} is accessible by other users (mode {mode:o}); chmod 700 it",
            dir.display()
        ));
    }
}

/// Warns if the file `shown` (already open, its metadata in `meta`) is readable or writable by
/// anyone but its owner.
pub(crate) fn warn_if_shared_file(shown: &str, meta: &Metadata) {
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        stderr_line(format!(
            "warning: {shown} is readable by other users (mode {mode:o}); chmod 600 it"
        ));
    }
}
