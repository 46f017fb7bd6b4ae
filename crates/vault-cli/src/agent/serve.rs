//! The agent itself (`vault agent-serve`, started by `vault unlock`): hardens the process (no
//! core dumps, not dumpable, memory locked where permitted), opens the vault with the
//! passphrase `vault unlock` pipes to it, then runs commands for clients of its own user on its
//! socket, one at a time, until it is locked, idle past its timeout, signalled, or its key goes
//! stale (a master-key rotation by another process).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use vault_store::{SecretBytes, Vault};

use super::place::{self, Place};
use super::served::{self, Served};
use super::wire::{self, Reply, Request};
use crate::cli::Cli;
use crate::exit::Exit;
use crate::location;

/// Most bytes of passphrase read from `vault unlock`.
const MAX_PASSPHRASE: u64 = 64 * 1024;

/// Tells `vault unlock` how starting went (the one line it reads from this process).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// Makes the process's memory as hard to read from outside as the platform allows; returns
/// what could not be done (for `vault agent status`).
fn harden() -> Vec<String> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let mut missing = Vec::new();
    if let Err(e) = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    ) {
        missing.push(format!("core dumps not disabled: {e}"));
    }
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        missing.push(format!("still dumpable: {e}"));
    }
    missing
}

/// Locks the agent's memory against swapping: all of it from now on where the limit allows
/// (root, or an unlimited `RLIMIT_MEMLOCK`). Under a limit, the vault's keys first (a few pages,
/// within any limit), then what is mapped now if the limit allows: locking future memory under a
/// limit would make later allocations fail. Returns a note on what is not locked, if anything.
fn lock_memory(vault: &Vault) -> Option<String> {
    use rustix::mm::{MlockAllFlags, mlockall};
    let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
    if limit.is_none() && mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE).is_ok() {
        return None;
    }
    let keys = vault.lock_keys_in_memory();
    let all_now = mlockall(MlockAllFlags::CURRENT);
    let limit = limit.map_or_else(|| "unlimited".into(), |b| format!("{} KiB", b / 1024));
    match (keys, all_now) {
        (_, Ok(())) => Some(format!(
            "memory allocated after unlocking is not locked against swapping (RLIMIT_MEMLOCK is {limit}); the vault's keys are"
        )),
        (Ok(n), Err(_)) => Some(format!(
            "only the vault's {n} keys are locked against swapping, not the rest of the agent's memory (RLIMIT_MEMLOCK is {limit})"
        )),
        (Err(e), Err(_)) => Some(format!("memory not locked against swapping: {e}")),
    }
}

/// `vault agent-serve`: the agent's whole life.
pub(crate) fn serve(cli: &Cli, idle: Duration) -> ExitCode {
    // Its own session: a terminal closing, or Ctrl-C in the shell that started it, does not
    // reach it.
    let _ = rustix::process::setsid();
    let _missing = harden();
    let mut pass = Vec::new();
    if std::io::stdin()
        .lock()
        .take(MAX_PASSPHRASE)
        .read_to_end(&mut pass)
        .is_err()
    {
        say("error 1 could not read the passphrase");
        return Exit::Other.into();
    }
    let pass = SecretBytes::new(pass);
    let vault = match location::vault_dir(cli).and_then(|_| {
        let options = location::options(cli, false)?;
        location::retry_rekeyed(cli, |b| Vault::open(b, &pass, options.clone()))
    }) {
        Ok(v) => Arc::new(v),
        Err(f) => {
            let code = f.code as u8;
            say(&format!(
                "error {code} {}",
                f.message.unwrap_or_default().replace('\n', " ")
            ));
            return ExitCode::from(code);
        }
    };
    drop(pass);
    let memory = lock_memory(&vault);
    let Ok(dir) = location::vault_dir(cli) else {
        return Exit::Other.into();
    };
    let place = place::place(&dir);
    if let Err(why) = place::prepare(&place.dir) {
        say(&format!("error 1 {why}"));
        return Exit::Other.into();
    }
    // One agent per vault: the lock is held for the agent's life.
    let Ok(lock) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&place.lock)
    else {
        say("error 1 cannot open the agent's lock file");
        return Exit::Other.into();
    };
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        say("already");
        return ExitCode::SUCCESS;
    }
    let _ = std::fs::remove_file(&place.socket);
    let listener = match UnixListener::bind(&place.socket) {
        Ok(l) => l,
        Err(e) => {
            say(&format!(
                "error 1 cannot listen on {}: {e}",
                place.socket.display()
            ));
            return Exit::Other.into();
        }
    };
    let _ = std::fs::set_permissions(&place.socket, std::fs::Permissions::from_mode(0o600));
    say(&format!(
        "ready {} {}",
        std::process::id(),
        memory.unwrap_or_default()
    ));
    run(&listener, &place, vault, idle, cli.audit_fail_closed);
    drop(lock);
    ExitCode::SUCCESS
}

/// Serves until told to stop; then forgets the keys (the vault's drop zeroizes them) and
/// removes the socket.
fn run(
    listener: &UnixListener,
    place: &Place,
    vault: Arc<Vault>,
    idle: Duration,
    fail_closed: bool,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    // A command is running: the idle clock waits for it.
    let busy = Arc::new(AtomicBool::new(false));
    // Wakes the accept loop by connecting to it.
    let wake = {
        let socket = place.socket.clone();
        move || {
            let _ = UnixStream::connect(&socket);
        }
    };
    {
        let (stop, last, wake, busy) = (stop.clone(), last.clone(), wake.clone(), busy.clone());
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(250));
                // Saturating: the loop may have noted a command after `elapsed` was read.
                let since = (start.elapsed().as_millis() as u64)
                    .saturating_sub(last.load(Ordering::Relaxed));
                if since >= idle.as_millis() as u64 && !busy.load(Ordering::SeqCst) {
                    stop.store(true, Ordering::SeqCst);
                    wake();
                    return;
                }
            }
        });
    }
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        let (stop, wake) = (stop.clone(), wake.clone());
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                stop.store(true, Ordering::SeqCst);
                wake();
            }
        });
    }
    let uid = rustix::process::getuid();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        // Only the agent's own user is served.
        match rustix::net::sockopt::socket_peercred(&conn) {
            Ok(c) if c.uid == uid => {}
            _ => continue,
        }
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        // A client that connects and sends nothing, or stops reading its answer, does not hold
        // the agent up for the others for long.
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
        let idle_left = |last: &AtomicU64| {
            let since =
                (start.elapsed().as_millis() as u64).saturating_sub(last.load(Ordering::Relaxed));
            idle.as_secs().saturating_sub(since / 1000)
        };
        let Ok((request, fds)) = wire::receive(&conn) else {
            continue;
        };
        let mut reply = Reply {
            pid: std::process::id(),
            idle_left_s: idle_left(&last),
            ..Reply::default()
        };
        match request {
            Request::Status => {}
            Request::Lock => {
                reply.locking = true;
                stop.store(true, Ordering::SeqCst);
            }
            Request::Run {
                fail_closed: wanted,
                ..
            } if wanted && !fail_closed => reply.declined = true,
            // A client that went away while it waited (its process is gone) is not served: it
            // would do what its user saw fail.
            Request::Run { .. } if !alive(&conn) => continue,
            Request::Run { argv, cwd, .. } => {
                busy.store(true, Ordering::SeqCst);
                let peer = rustix::net::sockopt::socket_peercred(&conn).ok();
                let client = peer.as_ref().map(|c| c.pid);
                // The audit trail records the client as the acting process, not the agent.
                let _actor = peer.as_ref().map(|c| {
                    vault_store::AuditActor::set(
                        c.pid.as_raw_nonzero().get() as u32,
                        c.uid.as_raw(),
                    )
                });
                let (code, stale) = run_command(&vault, argv, &cwd, fds, client);
                last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                busy.store(false, Ordering::SeqCst);
                reply.exit = code;
                if stale {
                    reply.locking = true;
                    stop.store(true, Ordering::SeqCst);
                }
            }
        }
        let _ = wire::answer(&conn, &reply);
        drop(conn);
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    drop(vault);
    let _ = std::fs::remove_file(&place.socket);
}

/// Whether the peer's process is still there.
fn alive(conn: &UnixStream) -> bool {
    rustix::net::sockopt::socket_peercred(conn).is_ok_and(|c| !served::gone(c.pid))
}

/// Runs one client's command on the agent's vault, with the client's streams; returns its exit
/// code and whether the vault's key went stale.
fn run_command(
    vault: &Arc<Vault>,
    argv: Vec<String>,
    cwd: &std::path::Path,
    fds: Vec<std::os::fd::OwnedFd>,
    client: Option<rustix::process::Pid>,
) -> (u8, bool) {
    let mut fds = fds.into_iter().map(std::fs::File::from);
    let (Some(stdin), Some(stdout), Some(stderr)) = (fds.next(), fds.next(), fds.next()) else {
        return (Exit::Other as u8, false);
    };
    let served = Served {
        vault: vault.clone(),
        stdin,
        stdout,
        stderr,
        stale: false,
        client,
        log_level: tracing::Level::WARN,
    };
    served::serving(served, || {
        if let Err(e) = std::env::set_current_dir(cwd) {
            crate::output::stderr_line(format!(
                "vault: the agent cannot work in {}: {e}",
                cwd.display()
            ));
            return Exit::Other as u8;
        }
        let cli = match Cli::try_parse_from(&argv) {
            Ok(c) => c,
            Err(e) => {
                crate::output::stderr_line(e.render().to_string().trim_end());
                return Exit::Usage as u8;
            }
        };
        served::set_log_level(crate::logging::level(cli.verbose));
        if !super::client::delegable(&cli) {
            crate::output::stderr_line("vault: the agent does not run this command");
            return Exit::Usage as u8;
        }
        match crate::run(cli) {
            Ok(()) => 0,
            Err(f) => {
                if let Some(message) = f.message {
                    crate::output::stderr_line(format!("vault: {}", message.replace('\n', " ")));
                }
                f.code as u8
            }
        }
    })
}
