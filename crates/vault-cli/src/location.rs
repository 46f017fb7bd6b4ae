//! Where the vault is and how it is opened: the vault and state directories, the options, and
//! opening with a command's operation, starting over if a rotation raced it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vault_store::{Error, FileBackend, KdfLimit, SecretBytes, Vault, VaultOptions};

use crate::cli::Cli;
use crate::exit::Exit;
use crate::{Failure, fail, passphrase, permissions};

pub(crate) fn vault_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(d) = &cli.vault {
        return location_path(d);
    }
    directories::BaseDirs::new()
        .map(|b| b.data_dir().join("vault"))
        .ok_or_else(|| {
            fail(
                Exit::Other,
                "cannot find a home directory; pass --vault DIR or set VAULT_DIR",
            )
        })
}

/// The directory a `--vault` location names: a path, or a `file://` URL. Any other `scheme://`
/// is refused before anything is created (a directory named `postgres:` helps nobody).
pub(crate) fn location_path(location: &Path) -> Result<PathBuf, Failure> {
    let Some(text) = location.to_str() else {
        return Ok(location.to_path_buf());
    };
    match text.split_once("://") {
        None => Ok(location.to_path_buf()),
        Some(("file", path)) if path.starts_with('/') => Ok(PathBuf::from(path)),
        Some(("file", _)) => Err(fail(
            Exit::Usage,
            format!("vault location {text:?}: a file:// URL needs an absolute path (file:///path)"),
        )),
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Err(fail(
                Exit::Usage,
                format!(
                    "vault location {text:?}: the {scheme}:// scheme is not supported by this build; give a directory path (or file:///path)"
                ),
            ))
        }
        Some(_) => Ok(location.to_path_buf()),
    }
}

pub(crate) fn state_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(d) = &cli.state_dir {
        return Ok(d.clone());
    }
    directories::BaseDirs::new()
        .map(|b| {
            b.state_dir()
                .unwrap_or_else(|| b.data_local_dir())
                .join("vault")
        })
        .ok_or_else(|| {
            fail(
                Exit::Other,
                "cannot find a home directory; pass --state-dir DIR",
            )
        })
}

pub(crate) fn options(cli: &Cli, accept_rollback: bool) -> Result<VaultOptions, Failure> {
    Ok(VaultOptions {
        lock_timeout: Duration::from_millis(cli.lock_timeout_ms),
        rollback_dir: Some(state_dir(cli)?.join("rollback")),
        accept_rollback,
        audit_fail_closed: cli.audit_fail_closed,
        progress: crate::progress::for_store(),
        kdf_limit: KdfLimit {
            max_memory_kib: cli.max_kdf_memory_mib.saturating_mul(1024),
            max_cost: cli.max_kdf_cost.saturating_mul(1024),
        },
        ..VaultOptions::default()
    })
}

/// The existing vault's backend, not yet opened: checked before anything is asked of the user.
pub(crate) fn existing_backend(cli: &Cli) -> Result<Arc<FileBackend>, Failure> {
    let dir = vault_dir(cli)?;
    tracing::info!("vault directory {}", dir.display());
    let backend = Arc::new(FileBackend::new(&dir));
    use vault_store::Backend;
    // Checked before a passphrase is asked for; the message and its hint come from the typed
    // error, as they would from opening.
    if !backend.exists()? {
        return Err(Error::NoVault(dir.display().to_string()).into());
    }
    warn_if_shared_dirs(cli, &dir)?;
    Ok(backend)
}

/// Warns about a vault or state directory that already exists and other users can reach.
pub(crate) fn warn_if_shared_dirs(cli: &Cli, vault_dir: &Path) -> Result<(), Failure> {
    permissions::warn_if_shared_dir("vault directory", vault_dir);
    permissions::warn_if_shared_dir("state directory", &state_dir(cli)?);
    Ok(())
}

/// How many times a command starts over when another process rotated the master key between
/// its open and its operation (nothing was written: the operation is refused before any write).
const REKEYED_ATTEMPTS: usize = 10;

/// Opens the vault with `pass` and runs `op` on it, starting over if another process rotated
/// the master key meanwhile.
pub(crate) fn with_vault<R>(
    cli: &Cli,
    pass: &SecretBytes,
    accept_rollback: bool,
    op: impl Fn(&Vault) -> vault_store::Result<R>,
) -> Result<R, Failure> {
    // Served by the agent: its vault, open since `vault unlock`.
    if let Some(v) = crate::agent::served::vault() {
        let r = op(&v);
        if matches!(r, Err(Error::Rekeyed)) {
            crate::agent::served::mark_stale();
        }
        return r.map_err(Failure::from);
    }
    let options = options(cli, accept_rollback)?;
    if let Some(record) = &options.rollback_dir {
        tracing::debug!("rollback records in {}", record.display());
    }
    retry_rekeyed(cli, |backend| {
        Vault::open(backend, pass, options.clone()).and_then(|v| op(&v))
    })
}

/// Runs `run` on a fresh backend for the vault, starting over if another process rotated the
/// master key meanwhile.
pub(crate) fn retry_rekeyed<R>(
    cli: &Cli,
    run: impl Fn(Arc<FileBackend>) -> vault_store::Result<R>,
) -> Result<R, Failure> {
    let dir = vault_dir(cli)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = run(Arc::new(FileBackend::new(&dir)));
        match result {
            Err(Error::Rekeyed) if attempt < REKEYED_ATTEMPTS => {
                tracing::info!("the master key was rotated meanwhile; opening again");
            }
            other => return other.map_err(Failure::from),
        }
    }
}

/// The current passphrase of the existing vault, after checking there is one.
pub(crate) fn current_passphrase(cli: &Cli) -> Result<SecretBytes, Failure> {
    // Served by the agent: the vault is open already, and no passphrase is asked for.
    if crate::agent::served::active() {
        return Ok(SecretBytes::new(Vec::new()));
    }
    existing_backend(cli)?;
    passphrase::current()
}
