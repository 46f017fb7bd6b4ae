//! Where a vault's agent listens: a socket per user and vault, in a directory only that user
//! can enter (`$XDG_RUNTIME_DIR/vault`, else `/tmp/vault-<uid>`), beside the lock file the
//! running agent holds.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The agent's files for one vault.
pub(crate) struct Place {
    /// The directory: the user's own, mode 0700.
    pub(crate) dir: PathBuf,
    /// The socket (0600).
    pub(crate) socket: PathBuf,
    /// Held (`flock`) by the running agent: at most one per vault.
    pub(crate) lock: PathBuf,
}

/// The agent's place for the vault in `vault_dir` (named by a hash of its canonical path, so
/// every spelling of the path finds the same agent).
pub(crate) fn place(vault_dir: &Path) -> Place {
    let uid = rustix::process::getuid().as_raw();
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("vault"))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/vault-{uid}")));
    let canonical = std::fs::canonicalize(vault_dir).unwrap_or_else(|_| vault_dir.to_path_buf());
    let digest =
        vault_crypto::hash::sha256(&[b"vault agent", canonical.as_os_str().as_encoded_bytes()]);
    let id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Place {
        socket: dir.join(format!("agent-{id}.sock")),
        lock: dir.join(format!("agent-{id}.lock")),
        dir,
    }
}

/// Whether `dir` is this user's and closed to everyone else (not a symbolic link): the only
/// kind of directory whose socket a client trusts with its streams, or an agent listens in.
pub(crate) fn private(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir()
            && m.uid() == rustix::process::getuid().as_raw()
            && m.permissions().mode() & 0o077 == 0
    })
}

/// Creates the agent directory (0700), or checks the one there is private.
pub(crate) fn prepare(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    if private(dir) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a directory only you can enter (mode 0700, yours): the agent will not listen there (set XDG_RUNTIME_DIR to a directory of yours with mode 0700)",
            dir.display()
        ))
    }
}
