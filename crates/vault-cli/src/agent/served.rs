//! The command being served by the agent on this thread: the agent's open vault and the
//! client's stdin, stdout and stderr (received over the socket), which the command's code uses
//! in place of the process's own.

use std::cell::RefCell;
use std::fs::File;
use std::sync::Arc;

use vault_store::Vault;

/// What a served command runs against.
pub(crate) struct Served {
    /// The agent's vault, open since `vault unlock`.
    pub(crate) vault: Arc<Vault>,
    /// The client's standard streams.
    pub(crate) stdin: File,
    pub(crate) stdout: File,
    pub(crate) stderr: File,
    /// Set when the vault's key went stale (a rotation by another process): the agent locks
    /// itself after this command.
    pub(crate) stale: bool,
    /// The client's process.
    pub(crate) client: Option<rustix::process::Pid>,
    /// The most detailed log level the command asked for (`-v`), once its arguments are parsed.
    pub(crate) log_level: tracing::Level,
    /// The client's working directory, which its relative paths are relative to.
    pub(crate) cwd: std::path::PathBuf,
}

thread_local! {
    static SERVED: RefCell<Option<Served>> = const { RefCell::new(None) };
}

/// Runs `f` with `served` as this thread's served command; returns what `f` returned and
/// whether the vault went stale meanwhile.
pub(crate) fn serving<R>(served: Served, f: impl FnOnce() -> R) -> (R, bool) {
    SERVED.with(|s| *s.borrow_mut() = Some(served));
    let r = f();
    let stale = SERVED.with(|s| s.borrow_mut().take().is_some_and(|s| s.stale));
    (r, stale)
}

/// Whether a command is being served on this thread.
pub(crate) fn active() -> bool {
    SERVED.with(|s| s.borrow().is_some())
}

/// The served command's vault.
pub(crate) fn vault() -> Option<Arc<Vault>> {
    SERVED.with(|s| s.borrow().as_ref().map(|s| s.vault.clone()))
}

/// `path` as the command means it: relative to the client's directory when served (`-`, URLs
/// such as `file:///…` and absolute paths as they are).
pub(crate) fn absolute(path: std::path::PathBuf) -> std::path::PathBuf {
    let url = path.to_str().is_some_and(|p| p.contains("://"));
    if path.is_absolute() || path.as_os_str() == "-" || url {
        return path;
    }
    SERVED.with(|s| match s.borrow().as_ref() {
        Some(s) => s.cwd.join(&path),
        None => path,
    })
}

/// The most detailed level of log events the served command shows.
pub(crate) fn log_level() -> tracing::Level {
    SERVED.with(|s| {
        s.borrow()
            .as_ref()
            .map_or(tracing::Level::WARN, |s| s.log_level)
    })
}

/// Sets the served command's log level (from its `-v`).
pub(crate) fn set_log_level(level: tracing::Level) {
    SERVED.with(|s| {
        if let Some(s) = s.borrow_mut().as_mut() {
            s.log_level = level;
        }
    });
}

/// Notes that the vault's key went stale.
pub(crate) fn mark_stale() {
    SERVED.with(|s| {
        if let Some(s) = s.borrow_mut().as_mut() {
            s.stale = true;
        }
    });
}

/// Which of the client's streams.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    In,
    Out,
    Err,
}

/// A handle on one of the served client's streams (a duplicate of the descriptor: reads and
/// writes go straight to the client's pipe or terminal, with no buffer shared between
/// commands).
pub(crate) fn stream(which: Stream) -> Option<File> {
    SERVED.with(|s| {
        let s = s.borrow();
        let s = s.as_ref()?;
        match which {
            Stream::In => &s.stdin,
            Stream::Out => &s.stdout,
            Stream::Err => &s.stderr,
        }
        .try_clone()
        .ok()
    })
}

/// Whether the served command's client process is gone (killed while the agent worked for it).
pub(crate) fn client_gone() -> bool {
    SERVED.with(|s| s.borrow().as_ref().and_then(|s| s.client).is_some_and(gone))
}

/// Whether process `pid` has ended: no such process, or a zombie not yet reaped (dead all the
/// same; where nothing reaps orphans, one stays a zombie).
pub(crate) fn gone(pid: rustix::process::Pid) -> bool {
    if rustix::process::test_kill_process(pid).is_err() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            after
                .split_whitespace()
                .next()
                .map(|state| state == "Z" || state == "X")
        })
        .unwrap_or(false)
}
