//! Where the vault is and how it is opened: the vault and state directories, the options, and
//! opening with a command's operation, starting over if a rotation raced it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vault_store::{Backend, Error, FileBackend, KdfLimit, SecretBytes, Vault, VaultOptions};

use crate::cli::Cli;
use crate::exit::Exit;
use crate::{Failure, fail, passphrase, permissions};

/// Where the vault is: a directory, or (built with the `postgres` feature) a PostgreSQL
/// database.
pub(crate) enum Place {
    Dir(PathBuf),
    #[cfg(feature = "postgres")]
    Db(Box<vault_store::PostgresLocation>),
}

impl Place {
    /// A backend on it.
    pub(crate) fn backend(&self) -> Arc<dyn Backend> {
        match self {
            Place::Dir(d) => Arc::new(FileBackend::new(d)),
            #[cfg(feature = "postgres")]
            Place::Db(at) => Arc::new(vault_store::PostgresBackend::new((**at).clone())),
        }
    }
}

/// What names this vault's agent (with the member unlocking it, if any): a directory vault's
/// canonical path, or a database vault's location without its password. Only the agent's
/// place is derived from it (a hash), so it never appears on a command line.
pub(crate) fn agent_key(cli: &Cli) -> Result<PathBuf, Failure> {
    let base = match place(cli)? {
        Place::Dir(d) => std::fs::canonicalize(&d).unwrap_or(d).into_os_string(),
        #[cfg(feature = "postgres")]
        Place::Db(at) => format!("postgres:{at:?}").into(),
    };
    let mut key = base;
    if let Some(m) = cli.member.as_deref().filter(|m| !m.is_empty()) {
        key.push(format!("#member={m}"));
    }
    Ok(PathBuf::from(key))
}

/// Whether `text` names a PostgreSQL database.
fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The vault's place: `--vault` (or `VAULT_DIR`) as a directory, a `file://` URL or a
/// `postgres://` URL, else the default directory.
pub(crate) fn place(cli: &Cli) -> Result<Place, Failure> {
    if let Some(text) = cli.vault.as_ref().and_then(|v| v.to_str())
        && is_postgres_url(text)
    {
        #[cfg(feature = "postgres")]
        return vault_store::PostgresLocation::parse(text)
            .map(|at| Place::Db(Box::new(at)))
            .map_err(Failure::from);
        #[cfg(not(feature = "postgres"))]
        return Err(fail(
            Exit::Usage,
            "the postgres:// scheme is not supported by this build (build vault with `--features postgres`)",
        ));
    }
    vault_dir(cli).map(Place::Dir)
}

/// The vault's directory; a database location is refused (for what only a directory has).
pub(crate) fn vault_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(d) = &cli.vault {
        if d.to_str().is_some_and(is_postgres_url) {
            return Err(fail(
                Exit::Usage,
                "this command needs a vault directory, not a database",
            ));
        }
        return location_path(d);
    }
    default_dirs().map(|(vault, _)| vault).ok_or_else(|| {
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
    default_dirs().map(|(_, state)| state).ok_or_else(|| {
        fail(
            Exit::Other,
            "cannot find a home directory; pass --state-dir DIR",
        )
    })
}

/// This platform's default vault and state directories, from the user's base directories.
fn default_dirs() -> Option<(PathBuf, PathBuf)> {
    directories::BaseDirs::new().map(|b| places(b.data_dir(), b.state_dir(), b.data_local_dir()))
}

/// The vault and state directories under a platform's base directories: the vault in the data
/// directory (`$XDG_DATA_HOME/vault`; `~/Library/Application Support/vault` on macOS), the state
/// in the state directory where the platform has one (`$XDG_STATE_HOME/vault`), else beside the
/// vault's as `vault-state` (macOS, where the data and local data directories are the same one):
/// never inside the vault directory, so that a copy of it put back does not bring its rollback
/// record along.
pub(crate) fn places(data: &Path, state: Option<&Path>, data_local: &Path) -> (PathBuf, PathBuf) {
    let vault = data.join("vault");
    let state = match state {
        Some(s) => s.join("vault"),
        None => data_local.join("vault-state"),
    };
    (vault, state)
}

/// `path` made absolute, with every symbolic link on it followed, dangling ones included (what
/// a later `mkdir -p` of the path would create), and `.` and `..` taken away as the system
/// would, after the links.
fn resolved(path: &Path) -> PathBuf {
    resolve(path).0
}

/// [`resolved`], and whether a loop of links (or more than 40 on the way) stopped the walk.
fn resolve(path: &Path) -> (PathBuf, bool) {
    use std::collections::VecDeque;
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut todo: VecDeque<std::ffi::OsString> = VecDeque::new();
    let push_front = |todo: &mut VecDeque<std::ffi::OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => todo.push_front(n.to_os_string()),
                Component::ParentDir => todo.push_front("..".into()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
    };
    push_front(&mut todo, &absolute);
    let mut out = PathBuf::from("/");
    let mut links = 0;
    let mut looped = false;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            out.pop();
            continue;
        }
        let next = out.join(&part);
        match std::fs::read_link(&next) {
            // As the system does, at most 40 links in one path.
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                push_front(&mut todo, &target);
            }
            Ok(_) => {
                looped = true;
                out = next;
            }
            Err(_) => out = next,
        }
    }
    (out, looped)
}

/// Whether the state directory is the vault directory or inside it, where a copy of the vault
/// directory put back would carry the rollback record with it: by path once links are followed,
/// or because a directory on the state directory's path is the vault directory itself (a bind
/// mount of it, seen by device and inode).
pub(crate) fn state_inside_vault(state: &Path, vault: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (state, vault) = (resolved(state), resolved(vault));
    if state.starts_with(&vault) {
        return true;
    }
    let Ok(v) = std::fs::metadata(&vault) else {
        return false;
    };
    state
        .ancestors()
        .any(|a| std::fs::metadata(a).is_ok_and(|m| m.dev() == v.dev() && m.ino() == v.ino()))
}

/// The state directory, refused (exit 2) when it is inside the vault directory or its path
/// loops; as used, with `.` and `..` taken away after its links (so that creating it creates
/// nothing on the way, as `dir/sub/../../state` would inside `dir`).
#[cfg_attr(
    not(feature = "postgres"),
    allow(clippy::infallible_destructuring_match)
)]
fn checked_state_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    let state = state_dir(cli)?;
    let vault = match place(cli)? {
        Place::Dir(d) => d,
        // A database has no directory for the state to be inside of.
        #[cfg(feature = "postgres")]
        Place::Db(_) => PathBuf::new(),
    };
    let (real, looped) = resolve(&state);
    if looped {
        return Err(fail(
            Exit::Usage,
            format!(
                "the state directory {}: its symbolic links loop (or are more than 40 deep)",
                state.display()
            ),
        ));
    }
    if !vault.as_os_str().is_empty() && state_inside_vault(&state, &vault) {
        return Err(fail(
            Exit::Usage,
            format!(
                "the state directory {} is inside the vault directory {}: a copy of the vault put back would bring its rollback record with it; give --state-dir (or VAULT_STATE_DIR) a directory outside it",
                state.display(),
                vault.display()
            ),
        ));
    }
    Ok(real)
}

pub(crate) fn options(cli: &Cli, accept_rollback: bool) -> Result<VaultOptions, Failure> {
    let state = checked_state_dir(cli)?;
    Ok(VaultOptions {
        lock_timeout: Duration::from_millis(cli.lock_timeout_ms),
        rollback_dir: Some(state.join("rollback")),
        accept_rollback,
        audit_fail_closed: cli.audit_fail_closed,
        progress: crate::progress::for_store(),
        member: cli.member.clone().filter(|m| !m.is_empty()),
        kdf_limit: KdfLimit {
            max_memory_kib: cli.max_kdf_memory_mib.saturating_mul(1024),
            max_cost: cli.max_kdf_cost.saturating_mul(1024),
        },
        ..VaultOptions::default()
    })
}

/// The existing vault's backend, not yet opened: checked before anything is asked of the user.
#[cfg_attr(not(feature = "postgres"), allow(irrefutable_let_patterns))]
pub(crate) fn existing_backend(cli: &Cli) -> Result<Arc<dyn Backend>, Failure> {
    let place = place(cli)?;
    let backend = place.backend();
    tracing::info!("vault at {}", backend.location());
    // Checked before a passphrase is asked for; the message and its hint come from the typed
    // error, as they would from opening.
    if !backend.exists()? {
        return Err(Error::NoVault(backend.location()).into());
    }
    checked_state_dir(cli)?;
    if let Place::Dir(dir) = &place {
        warn_if_shared_dirs(cli, dir)?;
    }
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
        // A client killed while its input was read (a `set` whose value came late) saw the
        // command fail: it is not done for it.
        if crate::agent::served::client_gone() {
            return Err(fail(Exit::Other, "the client went away; nothing was done"));
        }
        let r = pending_removals(cli, &v, pass).and_then(|()| op(&v));
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
        Vault::open(backend, pass, options.clone()).and_then(|v| {
            pending_removals(cli, &v, pass)?;
            op(&v)
        })
    })
}

/// A member removal whose rotation was interrupted: a command that writes finishes it first
/// (the removed member's slot already opens nothing; the rotation makes the key they may have
/// kept useless); a read-only command only says so, since it never changes the vault.
fn pending_removals(cli: &Cli, v: &Vault, pass: &SecretBytes) -> vault_store::Result<()> {
    let pending = v.pending_removals();
    if pending.is_empty() {
        return Ok(());
    }
    let names = pending.join(", ");
    if !cli.command.writes() {
        crate::output::stderr_line(format!(
            "warning: the removal of member(s) {names} is not finished: the master key has not been rotated since; the next command that writes finishes it"
        ));
        return Ok(());
    }
    // A write under the key the removed member may have kept would be theirs to read: none is
    // made until the rotation is done.
    if crate::agent::served::active() {
        return Err(Error::RemovalPending { members: names });
    }
    match v.finish_removals(pass, false) {
        Ok(()) => {
            crate::output::stderr_line(format!(
                "finished removing member(s) {names}: master key rotated, every record re-encrypted"
            ));
            let unvouched: Vec<String> = v
                .members()
                .into_iter()
                .filter(|m| !m.vouched)
                .map(|m| m.name)
                .collect();
            if !unvouched.is_empty() {
                crate::output::stderr_line(format!(
                    "warning: these members were added, directly or through others, by members no longer in the vault, and stay members: {}; remove them too unless you know them for other people",
                    unvouched.join(", ")
                ));
            }
            Ok(())
        }
        // The server or the disk: the error as it is (its own exit code), with why it stops
        // this command.
        Err(e @ (Error::Io { .. } | Error::Busy { .. })) => {
            crate::output::stderr_line(format!(
                "vault: the removal of member(s) {names} is not finished and could not be now; nothing is written under the key they may hold until it is"
            ));
            Err(e)
        }
        Err(e) => {
            crate::output::stderr_line(format!(
                "vault: the removal could not be finished now: {e}"
            ));
            Err(Error::RemovalPending { members: names })
        }
    }
}

/// Runs `run` on a fresh backend for the vault, starting over if another process rotated the
/// master key meanwhile.
pub(crate) fn retry_rekeyed<R>(
    cli: &Cli,
    run: impl Fn(Arc<dyn Backend>) -> vault_store::Result<R>,
) -> Result<R, Failure> {
    let place = place(cli)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = run(place.backend());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux keeps the state in `$XDG_STATE_HOME`; macOS has no state directory and one
    /// directory for data and local data: the state goes beside the vault, not in it.
    #[test]
    fn the_state_directory_is_never_inside_the_vault_directory() {
        let (vault, state) = places(
            Path::new("/home/u/.local/share"),
            Some(Path::new("/home/u/.local/state")),
            Path::new("/home/u/.local/share"),
        );
        assert_eq!(vault, Path::new("/home/u/.local/share/vault"));
        assert_eq!(state, Path::new("/home/u/.local/state/vault"));
        let support = Path::new("/Users/u/Library/Application Support");
        let (vault, state) = places(support, None, support);
        assert_eq!(vault, support.join("vault"));
        assert_eq!(state, support.join("vault-state"));
        assert!(!state_inside_vault(&state, &vault));
        assert!(state_inside_vault(&vault.join("state"), &vault));
        assert!(state_inside_vault(&vault, &vault));
        assert!(state_inside_vault(
            &vault.join("a/../b"),
            &vault.join("b/..")
        ));
    }
}
