//! The agent itself (`vault agent-serve`, started by `vault unlock`): hardens the process (no
//! core dumps, not dumpable, memory locked where permitted), opens the vault with the
//! passphrase `vault unlock` pipes to it, then runs commands for clients of its own user on its
//! socket, each on its own thread, until it is locked, idle past its timeout, signalled, or its key goes
//! stale (a master-key rotation by another process).

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
            "the vault's keys and the agent's memory as it was at unlock are locked against swapping; memory it allocates later is not (RLIMIT_MEMLOCK is {limit})"
        )),
        (Ok(n), Err(_)) => Some(format!(
            "only the vault's {n} keys are locked against swapping, not the rest of the agent's memory (RLIMIT_MEMLOCK is {limit})"
        )),
        (Err(e), Err(_)) => Some(format!(
            "the vault's keys could not all be locked against swapping ({e}; RLIMIT_MEMLOCK is {limit}, and they need a few pages: 64 KiB is enough)"
        )),
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
    let vault = match location::place(cli).and_then(|_| {
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
    let Ok(key) = location::agent_key(cli) else {
        return Exit::Other.into();
    };
    let place = place::place(&key);
    if let Err(why) = place::prepare(&place.dir) {
        say(&format!("error 1 {why}"));
        return Exit::Other.into();
    }
    // One agent per vault: the lock is held for the agent's life.
    let Ok(lock) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
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

/// Most clients served at once (each on a thread); a command arriving past it is declined (the
/// client runs it itself), a lock is still done.
const MAX_CLIENTS: usize = 256;

/// What the serving threads share.
struct Shared {
    vault: Arc<Vault>,
    stop: AtomicBool,
    start: Instant,
    /// When the last command ended or a client arrived, in ms since `start`.
    last: AtomicU64,
    /// Commands running now: the idle clock waits for them.
    busy: AtomicUsize,
    /// Clients being served now, and the most at once.
    clients: AtomicUsize,
    max_clients: usize,
    idle: Duration,
    fail_closed: bool,
    socket: std::path::PathBuf,
}

impl Shared {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Ms since the last activity (saturating: another thread may have noted one after
    /// `elapsed` was read).
    fn idle_ms(&self) -> u64 {
        (self.start.elapsed().as_millis() as u64).saturating_sub(self.last.load(Ordering::Relaxed))
    }

    /// Stops the agent: the accept loop sees it within a quarter of a second, or at once when
    /// connecting to it wakes it.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.socket);
    }
}

/// Serves until told to stop, each client on its own thread (one whose output is not read, as
/// in `vault list | less` left open, holds up no other, nor `vault lock`); then forgets the keys
/// and removes the socket. Commands still running for clients when the agent stops end with
/// the process.
fn run(
    listener: &UnixListener,
    place: &Place,
    vault: Arc<Vault>,
    idle: Duration,
    fail_closed: bool,
) {
    let bound = socket_id(&place.socket);
    let shared = Arc::new(Shared {
        vault,
        stop: AtomicBool::new(false),
        start: Instant::now(),
        last: AtomicU64::new(0),
        busy: AtomicUsize::new(0),
        clients: AtomicUsize::new(0),
        // A smaller bound only for tests of what happens past it.
        max_clients: std::env::var("VAULT_AGENT_MAX_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(MAX_CLIENTS),
        idle,
        fail_closed,
        socket: place.socket.clone(),
    });
    {
        let shared = shared.clone();
        // If the socket's file goes (the runtime directory cleaned at logout, or removed by
        // hand) or is replaced, no client can reach this agent any more, so it locks.
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let idle = shared.idle_ms() >= shared.idle.as_millis() as u64
                    && shared.busy.load(Ordering::SeqCst) == 0;
                if idle || socket_id(&shared.socket) != bound {
                    shared.stop();
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
        let shared = shared.clone();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                shared.stop();
            }
        });
    }
    let uid = rustix::process::getuid();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        // Waits for a client a quarter of a second at a time, so that a stop is seen even when
        // connecting to the socket cannot wake the loop (its file removed from under it).
        let mut ready = [rustix::event::PollFd::new(
            listener,
            rustix::event::PollFlags::IN,
        )];
        let quarter = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 250_000_000,
        };
        if !matches!(rustix::event::poll(&mut ready, Some(&quarter)), Ok(n) if n > 0) {
            continue;
        }
        let Ok((conn, _)) = listener.accept() else {
            continue;
        };
        // Only the agent's own user is served.
        match rustix::net::sockopt::socket_peercred(&conn) {
            Ok(c) if c.uid == uid => {}
            _ => continue,
        }
        shared.touch();
        if shared.clients.load(Ordering::SeqCst) >= shared.max_clients {
            // Full: the accept loop never waits for a thread (a stop would then go unseen).
            overflow(&shared, &conn);
            continue;
        }
        shared.clients.fetch_add(1, Ordering::SeqCst);
        let one = shared.clone();
        let spawned = std::thread::Builder::new().spawn(move || {
            serve_one(&one, &conn);
            one.clients.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            shared.clients.fetch_sub(1, Ordering::SeqCst);
        }
    }
    drop(shared);
    // Only its own: a socket put in its place belongs to someone else.
    if socket_id(&place.socket) == bound {
        let _ = std::fs::remove_file(&place.socket);
    }
}

/// The device and inode of the socket file at `path`, if there is one.
fn socket_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// A client arriving while [`MAX_CLIENTS`] are served: a lock or status request is answered
/// here, on the accept loop (read for a quarter of a second at most); a command is declined, so
/// the client runs it itself, with the passphrase.
fn overflow(shared: &Shared, conn: &UnixStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(250)));
    let _ = conn.set_write_timeout(Some(Duration::from_millis(250)));
    let Ok((request, _fds)) = wire::receive(conn) else {
        return;
    };
    let mut reply = Reply {
        pid: std::process::id(),
        ..Reply::default()
    };
    match request {
        Request::Lock => {
            reply.locking = true;
            let _ = wire::answer(conn, &reply);
            shared.stop();
            return;
        }
        Request::Status => {}
        Request::Run { .. } => reply.declined = true,
    }
    let _ = wire::answer(conn, &reply);
}

/// Serves one client's request on its own thread.
fn serve_one(shared: &Shared, conn: &UnixStream) {
    // A client that connects and sends nothing does not keep a thread for long.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok((request, fds)) = wire::receive(conn) else {
        return;
    };
    let idle_left = || {
        shared
            .idle
            .as_secs()
            .saturating_sub(shared.idle_ms() / 1000)
    };
    let mut reply = Reply {
        pid: std::process::id(),
        idle_left_s: idle_left(),
        ..Reply::default()
    };
    match request {
        Request::Status => {}
        Request::Lock => {
            reply.locking = true;
            let _ = wire::answer(conn, &reply);
            shared.stop();
            return;
        }
        Request::Run {
            fail_closed: wanted,
            ..
        } if wanted && !shared.fail_closed => reply.declined = true,
        // A client that went away while it waited (its process is gone) is not served: it
        // would do what its user saw fail.
        Request::Run { .. } if !alive(conn) => return,
        Request::Run { argv, cwd, log, .. } => {
            shared.busy.fetch_add(1, Ordering::SeqCst);
            let peer = rustix::net::sockopt::socket_peercred(conn).ok();
            let client = peer.as_ref().map(|c| c.pid);
            // The audit trail records the client as the acting process, not the agent.
            let _actor = peer.as_ref().map(|c| {
                vault_store::AuditActor::set(c.pid.as_raw_nonzero().get() as u32, c.uid.as_raw())
            });
            let (code, stale) = run_command(&shared.vault, argv, cwd, log, fds, client);
            shared.touch();
            shared.busy.fetch_sub(1, Ordering::SeqCst);
            reply.exit = code;
            if stale {
                reply.locking = true;
                let _ = wire::answer(conn, &reply);
                shared.stop();
                return;
            }
        }
    }
    let _ = wire::answer(conn, &reply);
    shared.touch();
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
    cwd: std::path::PathBuf,
    log: Option<String>,
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
        // Relative paths in the command are the client's: made absolute as they are parsed
        // (`cli::PathArg`), as the agent's threads share one working directory.
        cwd,
    };
    served::serving(served, || {
        let cli = match Cli::try_parse_from(&argv) {
            Ok(c) => c,
            Err(e) => {
                crate::output::stderr_line(e.render().to_string().trim_end());
                return Exit::Usage as u8;
            }
        };
        // As in a process of its own: the client's VAULT_LOG, else its -v.
        served::set_log_level(
            log.as_deref()
                .and_then(crate::logging::most_detailed)
                .unwrap_or_else(|| crate::logging::level(cli.verbose)),
        );
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
