//! The agent's clients: `vault unlock` (starts one, or finds it running), `vault lock`, and
//! every other command, which is run by the agent when one is unlocked for its vault (and
//! falls back to the passphrase otherwise).

use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command as Process, ExitCode, Stdio};
use std::time::Duration;

use super::place::{self, Place};
use super::wire::{self, Reply, Request};
use crate::cli::{Cli, Command};
use crate::cli_keys::KeyCommand;
use crate::exit::Exit;
use crate::location;
use crate::output::stdout_line;
use crate::{Failure, fail};

/// Whether the agent runs `cli`'s command: those that need nothing but the open vault (no
/// other passphrase, no prompt). `set` only with its value on stdin, not typed at a prompt.
pub(crate) fn delegable(cli: &Cli) -> bool {
    match &cli.command {
        Command::Get { .. }
        | Command::List { .. }
        | Command::Rm { .. }
        | Command::Undelete { .. }
        | Command::Destroy { .. }
        | Command::History { .. }
        | Command::MaxVersions { .. }
        | Command::Slots { .. }
        | Command::EnvValues { .. }
        | Command::Inject { .. }
        | Command::Audit { .. }
        | Command::Member {
            command: crate::cli::MemberCommand::List { .. },
        } => true,
        Command::Set { .. } => !crate::output::stdin_is_terminal(),
        Command::Key { command } => !matches!(
            command,
            KeyCommand::Export { .. } | KeyCommand::Import { .. }
        ),
        _ => false,
    }
}

/// The agent's place for `cli`'s vault, and a connection to it if one is listening in a
/// private directory and runs as this user.
fn connect(cli: &Cli) -> Option<(Place, UnixStream)> {
    let key = location::agent_key(cli).ok()?;
    let place = place::place(&key);
    if !place::private(&place.dir) {
        if place.socket.exists() {
            crate::output::stderr_line(format!(
                "vault: not using the agent: {} is not a directory only you can enter (mode 0700, yours)",
                place.dir.display()
            ));
        }
        return None;
    }
    let stream = match UnixStream::connect(&place.socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("no agent at {} ({e})", place.socket.display());
            return None;
        }
    };
    // The agent gets this process's streams (a `set` value among them): only one of this user.
    let peer = rustix::net::sockopt::socket_peercred(&stream).ok()?;
    if peer.uid != rustix::process::getuid() {
        tracing::warn!(
            "not using {}: its process is of another user",
            place.socket.display()
        );
        return None;
    }
    tracing::info!(
        "using the agent at {} (process {})",
        place.socket.display(),
        peer.pid.as_raw_nonzero()
    );
    Some((place, stream))
}

/// Runs `cli`'s command through the agent when one is unlocked for its vault: `None` when
/// there is none (or it does not run this command), so the command runs here.
pub(crate) fn delegate(cli: &Cli) -> Option<ExitCode> {
    if std::env::var_os("VAULT_NO_AGENT").is_some_and(|v| !v.is_empty()) || !delegable(cli) {
        return None;
    }
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.into_string().ok())
        .collect::<Option<_>>()?;
    let cwd = std::env::current_dir().ok()?;
    let (_, stream) = connect(cli)?;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let fds = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let request = Request::Run {
        argv,
        cwd,
        fail_closed: cli.audit_fail_closed,
        log: crate::logging::vault_log(),
    };
    wire::send(&stream, &request, &fds).ok()?;
    // From here the agent has the command: running it here as well could do it twice.
    match wire::read_reply(&stream) {
        // Fail-closed auditing asked of an agent unlocked without it: run here instead.
        Ok(Reply { declined: true, .. }) => None,
        Ok(Reply { exit, locking, .. }) => {
            if locking {
                crate::output::stderr_line(
                    "vault: the agent locked itself (the master key was rotated); run `vault unlock` again",
                );
            }
            Some(ExitCode::from(exit))
        }
        Err(e) => {
            crate::output::stderr_line(format!(
                "vault: the agent stopped while running the command ({e}); it may or may not have been done"
            ));
            Some(Exit::Other.into())
        }
    }
}

/// A duration as `--timeout` takes it: `90s`, `15m`, `2h`, or seconds.
fn parse_duration(s: &str) -> Result<Duration, Failure> {
    let bad = || {
        fail(
            Exit::Usage,
            format!("--timeout {s:?}: give a duration such as 90s, 15m or 2h"),
        )
    };
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

/// `vault unlock [--timeout 15m]`.
pub(crate) fn unlock(cli: &Cli, timeout: &str) -> Result<(), Failure> {
    let idle = parse_duration(timeout)?;
    if let Some((_, stream)) = connect(cli) {
        wire::send(&stream, &Request::Status, &[]).ok();
        if let Ok(r) = wire::read_reply(&stream) {
            return stdout_line(format!(
                "already unlocked: agent pid {}, locks after {} s idle (its timeout is unchanged: `vault lock`, then `vault unlock --timeout …`, to change it)",
                r.pid, r.idle_left_s
            ));
        }
    }
    let at = location::place(cli)?;
    let state = location::state_dir(cli)?;
    let pass = location::current_passphrase(cli)?;
    let exe = std::env::current_exe()
        .map_err(|e| fail(Exit::Other, format!("cannot find this program: {e}")))?;
    let mut cmd = Process::new(exe);
    match &at {
        location::Place::Dir(d) => {
            cmd.arg("--vault")
                .arg(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
        }
        // A database location may hold a password: it goes to the agent in its environment
        // (this user's only), never on its command line (anyone's to read).
        #[cfg(feature = "postgres")]
        location::Place::Db(_) => {
            if let Some(url) = &cli.vault {
                cmd.env("VAULT_DIR", url);
            }
        }
    }
    if let Some(m) = cli.member.as_deref().filter(|m| !m.is_empty()) {
        cmd.arg("--member").arg(m);
    }
    cmd.arg("--state-dir")
        .arg(&state)
        .arg("--lock-timeout-ms")
        .arg(cli.lock_timeout_ms.to_string())
        .arg("--max-kdf-memory-mib")
        .arg(cli.max_kdf_memory_mib.to_string())
        .arg("--max-kdf-cost")
        .arg(cli.max_kdf_cost.to_string());
    if cli.audit_fail_closed {
        cmd.arg("--audit-fail-closed");
    }
    let mut child = cmd
        .arg("agent-serve")
        .arg("--timeout-secs")
        .arg(idle.as_secs().to_string())
        // No passphrase source is handed down: the passphrase goes through the pipe alone.
        .env_remove("VAULT_PASSPHRASE")
        .env_remove("VAULT_PASSPHRASE_FILE")
        .env_remove("VAULT_PASSPHRASE_COMMAND")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(Exit::Other, format!("cannot start the agent: {e}")))?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(pass.expose_secret());
    }
    drop(pass);
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let line = line.trim_end();
    match line.split_once(' ').unwrap_or((line, "")) {
        ("ready", rest) => {
            let (pid, note) = rest.split_once(' ').unwrap_or((rest, ""));
            if !note.is_empty() {
                crate::output::stderr_line(format!("note: {note}"));
            }
            stdout_line(format!(
                "unlocked: agent pid {pid}; it locks itself after {timeout} without a command (`vault lock` locks it now)"
            ))
        }
        ("already", _) => stdout_line("already unlocked"),
        ("error", rest) => {
            let _ = child.wait();
            let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
            Err(fail(
                exit_of(code.parse().unwrap_or(1)),
                message.to_string(),
            ))
        }
        _ => {
            let _ = child.wait();
            Err(fail(Exit::Other, "the agent did not start"))
        }
    }
}

/// `vault lock`.
pub(crate) fn lock(cli: &Cli) -> Result<(), Failure> {
    let Some((_, stream)) = connect(cli) else {
        return stdout_line("no agent is unlocked for this vault");
    };
    wire::send(&stream, &Request::Lock, &[])
        .and_then(|()| wire::read_reply(&stream))
        .map_err(|e| fail(Exit::Other, format!("cannot reach the agent: {e}")))?;
    stdout_line("locked")
}

/// Runs `argv` in the agent when one is unlocked, its stdout into a pipe of this process's own
/// (never the terminal), and returns what it wrote: `None` when there is no agent (or it
/// declined). The agent reports failures on this process's stderr.
pub(crate) fn capture(cli: &Cli, argv: Vec<String>) -> Result<Option<Vec<u8>>, Failure> {
    if std::env::var_os("VAULT_NO_AGENT").is_some_and(|v| !v.is_empty()) {
        return Ok(None);
    }
    let Some((_, stream)) = connect(cli) else {
        return Ok(None);
    };
    let cwd = std::env::current_dir().map_err(|e| fail(Exit::Other, e.to_string()))?;
    let (mut reader, writer) =
        std::io::pipe().map_err(|e| fail(Exit::Other, format!("cannot make a pipe: {e}")))?;
    let reading = std::thread::spawn(move || {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut all).map(|_| all)
    });
    let (stdin, stderr) = (std::io::stdin(), std::io::stderr());
    let sent = wire::send(
        &stream,
        &Request::Run {
            argv,
            cwd,
            fail_closed: cli.audit_fail_closed,
            log: crate::logging::vault_log(),
        },
        &[stdin.as_fd(), writer.as_fd(), stderr.as_fd()],
    );
    // The agent holds its own copy of the pipe's end: ours goes, so the reader sees its end.
    drop(writer);
    if sent.is_err() {
        return Ok(None);
    }
    let reply = wire::read_reply(&stream)
        .map_err(|e| fail(Exit::Other, format!("the agent stopped: {e}")))?;
    let out = reading
        .join()
        .map_err(|_| fail(Exit::Other, "reading the agent's output failed"))?
        .map_err(|e| fail(Exit::Other, format!("reading the agent's output: {e}")))?;
    if reply.declined {
        return Ok(None);
    }
    if reply.exit != 0 {
        return Err(Failure {
            code: exit_of(reply.exit),
            message: None,
        });
    }
    Ok(Some(out))
}

/// The values `vault run` needs, from the agent when one is unlocked (`None` when there is
/// none), as NUL-ended `VARIABLE=value` records written by `vault env-values` in the agent.
pub(crate) fn env_values(
    cli: &Cli,
    only: &[String],
    prefix: Option<&str>,
) -> Result<Option<Vec<(std::ffi::OsString, std::ffi::OsString)>>, Failure> {
    let mut argv = vec!["vault".to_string(), "env-values".to_string()];
    if !only.is_empty() {
        argv.push(format!("--only={}", only.join(",")));
    }
    if let Some(p) = prefix {
        argv.push(format!("--prefix={p}"));
    }
    let Some(out) = capture(cli, argv)? else {
        return Ok(None);
    };
    let out = zeroize::Zeroizing::new(out);
    crate::commands::run::parse_records(out.as_slice())
        .map(Some)
        .map_err(|e| fail(Exit::Other, format!("reading the values: {e}")))
}

/// The agent's answer to a status request, if one is unlocked for `cli`'s vault.
pub(crate) fn status(cli: &Cli) -> Option<Reply> {
    let (_, stream) = connect(cli)?;
    wire::send(&stream, &Request::Status, &[]).ok()?;
    wire::read_reply(&stream).ok()
}

/// The exit class of a code the agent returned.
fn exit_of(code: u8) -> Exit {
    match code {
        2 => Exit::Usage,
        3 => Exit::WrongPassphrase,
        4 => Exit::NotFound,
        5 => Exit::Integrity,
        6 => Exit::Busy,
        7 => Exit::Conflict,
        8 => Exit::KeyRefused,
        9 => Exit::BadToken,
        _ => Exit::Other,
    }
}
