//! The agent end to end: unlocked once, commands need no passphrase; it sees commits made
//! without it; `vault lock` and the idle timeout lock it; it serves only its own user; a
//! master-key rotation by another process locks it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::*;

/// An environment with its own agent directory, and no passphrase source unless asked for.
struct Agent {
    e: Env,
}

impl Agent {
    fn new() -> Self {
        let e = Env::new();
        std::fs::create_dir(e.path("run")).unwrap();
        std::fs::set_permissions(e.path("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        e.init();
        Agent { e }
    }
    fn vars(&self, with_passphrase: bool) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut v = vec![("XDG_RUNTIME_DIR", self.e.path("run").into_os_string())];
        if !with_passphrase {
            v.push(("VAULT_PASSPHRASE_FILE", "".into()));
        }
        v
    }
    fn run(
        &self,
        args: &[&str],
        input: Option<&[u8]>,
        with_passphrase: bool,
    ) -> std::process::Output {
        let vars = self.vars(with_passphrase);
        let envs: Vec<(&str, &OsStr)> = vars.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        self.e.run_with(args, input, &envs)
    }
    fn socket_dir(&self) -> PathBuf {
        self.e.path("run").join("vault")
    }
    /// The agent's socket.
    fn socket(&self) -> PathBuf {
        std::fs::read_dir(self.socket_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "sock"))
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.run(&["lock"], None, false);
    }
}

#[test]
fn unlocked_commands_need_no_passphrase_until_locked() {
    let a = Agent::new();
    a.e.ok(&["set", "db/password"], Some(b"hunter2"));
    // No passphrase and no agent: refused, pointing at `vault unlock`.
    let o = a.run(&["get", "db/password"], None, false);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("vault unlock"), "{}", stderr(&o));
    // The passphrase from the least safe source, to show it does not reach the agent's
    // command line or environment.
    let mut envs = a.vars(false);
    envs.push(("VAULT_PASSPHRASE", PASSPHRASE.into()));
    let envs: Vec<(&str, &OsStr)> = envs.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let o = a.e.run_with(&["unlock", "--timeout", "60s"], None, &envs);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(said.starts_with("unlocked"), "{said}");
    let pid: u32 = said
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    for f in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{f}")).unwrap();
        assert!(
            !bytes
                .windows(PASSPHRASE.len())
                .any(|w| w == PASSPHRASE.as_bytes()),
            "{f}"
        );
    }
    // No core dumps.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace().filter(|w| *w == "0").count() >= 2,
        "{core}"
    );
    // The socket: private directory, owner-only socket.
    let dir = a.socket_dir();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let sock = a.socket();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for _ in 0..100 {
        let o = a.run(&["get", "db/password"], None, false);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(o.stdout, b"hunter2");
    }
    // Writes, errors and exit codes go through it.
    let o = a.run(&["set", "api/token"], Some(b"t0k"), false);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = a.run(&["get", "missing"], None, false);
    assert_eq!(code(&o), 4);
    assert!(stderr(&o).contains("not found"));
    let o = a.run(&["list"], None, false);
    assert_eq!(o.stdout, b"api/token\ndb/password\n");
    // A commit made without the agent is seen by it.
    let direct = [("VAULT_NO_AGENT", OsStr::new("1"))];
    let o =
        a.e.run_with(&["set", "db/password"], Some(b"second"), &direct);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = a.run(&["get", "db/password"], None, false);
    assert_eq!(o.stdout, b"second");
    // A second unlock finds it running (no passphrase asked).
    let o = a.run(&["unlock"], None, false);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("already unlocked"));
    // Locked: no more.
    assert_eq!(code(&a.run(&["lock"], None, false)), 0);
    let o = a.run(&["get", "db/password"], None, false);
    assert_eq!(code(&o), 1);
    assert!(!sock.exists(), "the socket is removed when it locks");
}

#[test]
fn the_agent_locks_itself_after_its_idle_timeout() {
    let a = Agent::new();
    a.e.ok(&["set", "k"], Some(b"v"));
    let o = a.run(&["unlock", "--timeout", "1s"], None, true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(a.run(&["get", "k"], None, false).stdout, b"v");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(code(&a.run(&["get", "k"], None, false)), 1);
}

#[test]
fn a_rotation_by_another_process_locks_the_agent() {
    let a = Agent::new();
    a.e.ok(&["set", "k"], Some(b"v"));
    assert_eq!(code(&a.run(&["unlock"], None, true)), 0);
    let direct = [("VAULT_NO_AGENT", OsStr::new("1"))];
    let o = a.e.run_with(&["rotate-master-key"], None, &direct);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The agent's key is stale: it says so and locks; the next command falls back.
    let o = a.run(&["get", "k"], None, false);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("unlock"), "{}", stderr(&o));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = a.run(&["get", "k"], None, true);
    assert_eq!(o.stdout, b"v", "{}", stderr(&o));
}

/// A process of another user reaching the socket (its directory opened up for the test) gets
/// nothing: the agent checks the peer's credentials. Needs root to run as another user.
#[test]
fn another_user_is_refused() {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let a = Agent::new();
    a.e.ok(&["set", "k"], Some(b"v"));
    assert_eq!(code(&a.run(&["unlock"], None, true)), 0);
    let sock = a.socket();
    // Opened up, so that nobody can connect at all.
    for d in [
        a.e.tmp.path().to_path_buf(),
        a.e.path("run"),
        a.socket_dir(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "connect_as_child", "--ignored", "--nocapture"])
        .env("AGENT_SOCKET", &sock)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("connected; no reply"), "{text}");
    std::fs::set_permissions(a.socket_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
}

use std::os::unix::process::CommandExt;

/// Run by `another_user_is_refused` as another user: connects, asks for the agent's status,
/// and must get no reply.
#[test]
#[ignore = "run by another_user_is_refused"]
fn connect_as_child() {
    use std::io::{Read, Write};
    let path = std::env::var_os("AGENT_SOCKET").unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    let _ = s.write_all(b"{\"kind\":\"status\"}\n");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    println!("connected; no reply");
}

/// A command asking for fail-closed auditing is not run by an agent unlocked without it; a
/// client that connects and sends nothing does not hold the agent up for long.
#[test]
fn fail_closed_clients_and_stalled_connections() {
    let a = Agent::new();
    a.e.ok(&["set", "k"], Some(b"v"));
    assert_eq!(code(&a.run(&["unlock"], None, true)), 0);
    // Declined by the agent: without a passphrase it cannot run here either.
    let o = a.run(&["--audit-fail-closed", "get", "k"], None, false);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("no passphrase"), "{}", stderr(&o));
    // With one, it runs itself, fail-closed.
    let o = a.run(&["--audit-fail-closed", "get", "k"], None, true);
    assert_eq!(o.stdout, b"v", "{}", stderr(&o));
    let sock = a.socket();
    let staller = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let start = std::time::Instant::now();
    let o = a.run(&["get", "k"], None, false);
    assert_eq!(o.stdout, b"v", "{}", stderr(&o));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    drop(staller);
}

/// A command run by the agent is recorded in the audit trail as its client's, not the agent's.
#[test]
fn the_audit_trail_names_the_client() {
    let a = Agent::new();
    a.e.ok(&["set", "k"], Some(b"v"));
    let o = a.run(&["unlock"], None, true);
    assert_eq!(code(&o), 0);
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    let agent_pid: u64 = said
        .split("pid ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .parse()
        .unwrap();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vault"));
    a.e.configure(&mut c);
    for (k, v) in a.vars(false) {
        c.env(k, v);
    }
    let child = c
        .args(["get", "k"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client_pid = u64::from(child.id());
    assert!(child.wait_with_output().unwrap().status.success());
    let o = a.run(&["audit", "--json", "--op", "read"], None, false);
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["pid"], client_pid, "{last}");
    assert_ne!(last["pid"], agent_pid);
}

/// Under a small `RLIMIT_MEMLOCK` (an ordinary user's 8 MiB or less), the agent cannot lock all
/// its memory, but it locks the pages of the vault's keys, and says so at unlock.
#[test]
fn under_a_small_memlock_limit_the_keys_are_locked() {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: needs root to run the agent as an unprivileged user");
        return;
    }
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no prlimit(1)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = root.join("home");
    for d in ["home", "home/run", "home/state"] {
        std::fs::create_dir(root.join(d)).unwrap();
        std::fs::set_permissions(root.join(d), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let pass = home.join("pass");
    std::fs::write(&pass, "small limit\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    for p in [
        home.clone(),
        home.join("run"),
        home.join("state"),
        pass.clone(),
    ] {
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    let vault = |args: &[&str]| {
        std::process::Command::new("prlimit")
            .args(["--memlock=262144:262144", env!("CARGO_BIN_EXE_vault")])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("VAULT_DIR", home.join("vault"))
            .env("VAULT_STATE_DIR", home.join("state"))
            .env("XDG_RUNTIME_DIR", home.join("run"))
            .env("VAULT_PASSPHRASE_FILE", &pass)
            .env("VAULT_NEW_PASSPHRASE_FILE", &pass)
            .stdin(std::process::Stdio::null())
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let o = vault(&["init", "--kdf-memory-mib", "1", "--kdf-iterations", "1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = vault(&["unlock"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(
        said.contains("only the vault's 10 keys are locked against swapping")
            && said.contains("RLIMIT_MEMLOCK is 256 KiB"),
        "{said}"
    );
    let pid = agent_pid(&said);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let locked_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!((4..=256).contains(&locked_kib), "VmLck {locked_kib} kB");
    let o = vault(&["lock"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// Stores 4000 secrets with long names: `vault list` then writes about 200 KiB, more than a
/// pipe holds, so a client that does not read it blocks the command.
fn fill_pipes(a: &Agent) {
    let dotenv: String = (0..4000)
        .map(|i| format!("a-rather-long-secret-name-to-fill-pipes-{i:05}=v{i}\n"))
        .collect();
    let file = a.e.path("many.env");
    std::fs::write(&file, dotenv).unwrap();
    a.e.ok(
        &["import", file.to_str().unwrap(), "--format", "dotenv"],
        None,
    );
}

/// The agent's process id, from what `vault unlock` said.
fn agent_pid(said: &str) -> u32 {
    said.split("agent pid ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap()
}

/// Each client has its own thread: one that does not read its output (`vault list | less` left
/// open) holds up neither another command nor `vault lock`; relative paths are the client's.
#[test]
fn a_client_not_reading_its_output_holds_up_no_other() {
    let a = Agent::new();
    fill_pipes(&a);
    assert_eq!(code(&a.run(&["unlock"], None, true)), 0);
    // About 200 KiB of names into a pipe nobody reads: the command blocks on it.
    let vars = a.vars(false);
    let mut stuck = a.e.command(&["list"]);
    stuck.envs(vars.iter().map(|(k, v)| (k, v)));
    let mut stuck = stuck
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let started = std::time::Instant::now();
    let o = a.run(
        &["get", "a-rather-long-secret-name-to-fill-pipes-00007"],
        None,
        false,
    );
    assert_eq!(o.stdout, b"v7", "{}", stderr(&o));
    // A relative output path is the client's, whatever the agent's directory.
    let dir = a.e.path("work");
    std::fs::create_dir(&dir).unwrap();
    let mut inject = a.e.command(&["inject", "-o", "out.txt"]);
    inject
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .current_dir(&dir);
    let o = {
        use std::io::Write;
        let mut child = inject
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"x={{ vault:a-rather-long-secret-name-to-fill-pipes-00001 }}\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(dir.join("out.txt")).unwrap(), b"x=v1\n");
    // And it locks at once.
    let o = a.run(&["lock"], None, false);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let gone = std::time::Instant::now();
    while std::fs::read_dir(a.socket_dir())
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "sock"))
        })
        .unwrap_or(false)
    {
        assert!(
            gone.elapsed() < std::time::Duration::from_secs(5),
            "the socket stays"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = a.run(
        &["get", "a-rather-long-secret-name-to-fill-pipes-00007"],
        None,
        false,
    );
    assert_ne!(code(&o), 0, "locked: {}", stderr(&o));
    let _ = stuck.kill();
    let _ = stuck.wait();
}

/// An agent whose socket file goes (a runtime directory cleaned at logout) can no longer be
/// reached: it locks itself at once rather than keeping the keys until its idle timeout.
#[test]
fn an_agent_whose_socket_is_removed_locks_itself() {
    let a = Agent::new();
    let o = a.run(&["unlock"], None, true);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let pid = agent_pid(&said);
    std::fs::remove_file(a.socket()).unwrap();
    let start = std::time::Instant::now();
    while std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "the agent is still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Past the most clients served at once, commands are declined (the client runs them itself)
/// and a lock is still done at once; a client killed while the agent waited for its input is
/// not served.
#[test]
fn past_the_client_bound_lock_still_works_and_killed_clients_are_not_served() {
    let a = Agent::new();
    fill_pipes(&a);
    let mut vars = a.vars(true);
    vars.push(("VAULT_AGENT_MAX_CLIENTS", "2".into()));
    let envs: Vec<(&str, &OsStr)> = vars.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    assert_eq!(code(&a.e.run_with(&["unlock"], None, &envs)), 0);
    let no_pass = a.vars(false);
    let spawn = |args: &[&str]| {
        let mut c = a.e.command(args);
        c.envs(no_pass.iter().map(|(k, v)| (k, v)));
        c
    };
    // A set whose client is killed before its value arrives: not stored.
    let mut killed = spawn(&["set", "kill/a"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut value_in = killed.stdin.take().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = killed.kill();
    let _ = killed.wait();
    {
        use std::io::Write;
        let _ = value_in.write_all(b"late");
    }
    drop(value_in);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        code(&a.run(&["get", "kill/a"], None, false)),
        4,
        "not stored"
    );
    // Two clients whose output is not read fill the agent.
    let mut stuck: Vec<_> = (0..2)
        .map(|_| {
            spawn(&["list"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // Declined: without a passphrase the command cannot run itself...
    let o = a.run(
        &["get", "a-rather-long-secret-name-to-fill-pipes-00003"],
        None,
        false,
    );
    assert_ne!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("no passphrase"), "{}", stderr(&o));
    // ...with one, it does.
    let o = a.run(
        &["get", "a-rather-long-secret-name-to-fill-pipes-00003"],
        None,
        true,
    );
    assert_eq!(o.stdout, b"v3", "{}", stderr(&o));
    let started = std::time::Instant::now();
    let o = a.run(&["lock"], None, false);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for s in &mut stuck {
        let _ = s.kill();
        let _ = s.wait();
    }
}
