//! The hidden passphrase prompt on a real (pseudo-)terminal: Ctrl-C, SIGTERM or SIGHUP while
//! echo is off must leave the terminal as it was, end the process as the signal would, and
//! never echo what was typed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{LocalModes, tcgetattr};

use common::{Env, PASSPHRASE, stderr, wait_at_most};

const SETSID: &str = "/usr/bin/setsid";

/// A pseudo-terminal: the master end the test types into, the terminal end `vault` gets.
struct Pty {
    master: File,
    terminal: File,
    /// Everything `vault` wrote to the terminal so far.
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn open() -> std::io::Result<Self> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname(&master, Vec::new())?;
        let terminal = OpenOptions::new()
            .read(true)
            .write(true)
            // Not the test process's controlling terminal: only vault's.
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(OsStr::from_bytes(name.as_bytes()))?;
        let master = File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone()?;
        let sink = Arc::clone(&screen);
        // Drains the master end so vault's writes never block; ends when the test process does.
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Ok(Self {
            master,
            terminal,
            screen,
        })
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    fn echo(&self) -> bool {
        tcgetattr(&self.terminal)
            .unwrap()
            .local_modes
            .contains(LocalModes::ECHO)
    }

    fn wait_for(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}; screen: {:?}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Why this machine cannot run the test, if it cannot.
fn unsupported() -> Option<String> {
    let help = Command::new(SETSID).arg("--help").output();
    match help {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("--ctty") => None,
        Ok(_) => Some(format!("{SETSID} has no --ctty")),
        Err(e) => Some(format!("no {SETSID}: {e}")),
    }
}

/// `vault ARGS` in a new session whose controlling terminal is `pty`, with no passphrase
/// variable, so it prompts; stdout is a pipe, as in `$(vault get ...)`.
fn spawn_on(e: &Env, pty: &Pty, args: &[&str]) -> Child {
    let mut cmd = Command::new(SETSID);
    e.configure(&mut cmd);
    cmd.arg("--ctty")
        .arg(env!("CARGO_BIN_EXE_vault"))
        .args(args)
        .env_remove("VAULT_PASSPHRASE_FILE")
        .stdin(pty.terminal.try_clone().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What a shell would show as `$?`.
fn shell_status(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap())
}

fn prompt_then(action: impl FnOnce(&Pty, &Child)) -> Option<(Pty, std::process::Output)> {
    if let Some(why) = unsupported() {
        println!("skipped: {why}");
        return None;
    }
    let e = Env::new();
    e.init();
    e.ok(&["set", "k"], Some(b"v"));
    let pty = Pty::open().unwrap();
    assert!(pty.echo(), "a new terminal echoes");
    let mut child = spawn_on(&e, &pty, &["get", "k"]);
    pty.wait_for("the prompt", |p| p.screen().contains("vault passphrase: "));
    pty.wait_for("echo to go off", |p| !p.echo());
    action(&pty, &child);
    assert!(
        wait_at_most(&mut child, Duration::from_secs(20)).is_some(),
        "vault did not end; screen: {:?}",
        pty.screen()
    );
    let out = child.wait_with_output().unwrap();
    // Let the reader catch up with anything written last.
    std::thread::sleep(Duration::from_millis(100));
    Some((pty, out))
}

fn type_keys(pty: &Pty, keys: &[u8]) {
    (&pty.master).write_all(keys).unwrap();
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn assert_restored(pty: &Pty, out: &std::process::Output, signal: i32) {
    let status = shell_status(out.status);
    assert_eq!(status, 128 + signal, "stderr: {}", stderr(out));
    assert!(pty.echo(), "echo is still off; screen: {:?}", pty.screen());
    let modes = tcgetattr(&pty.terminal).unwrap().local_modes;
    assert!(
        modes.contains(LocalModes::ICANON | LocalModes::ISIG),
        "{modes:?}"
    );
    assert!(
        !pty.screen().contains("sekrit"),
        "typed text was echoed: {:?}",
        pty.screen()
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn ctrl_c_at_the_prompt_restores_echo_and_exits_130() {
    let Some((pty, out)) = prompt_then(|pty, _| type_keys(pty, b"sekrit\x03")) else {
        return;
    };
    assert_restored(&pty, &out, 2);
}

#[test]
fn sigterm_at_the_prompt_restores_echo() {
    let Some((pty, out)) = prompt_then(|pty, child| {
        type_keys(pty, b"sekrit");
        kill(child, "TERM");
    }) else {
        return;
    };
    assert_restored(&pty, &out, 15);
}

#[test]
fn sighup_at_the_prompt_restores_echo() {
    let Some((pty, out)) = prompt_then(|pty, child| {
        type_keys(pty, b"sekrit");
        kill(child, "HUP");
    }) else {
        return;
    };
    assert_restored(&pty, &out, 1);
}

#[test]
fn a_passphrase_typed_at_the_prompt_works() {
    let Some((pty, out)) = prompt_then(|pty, _| {
        type_keys(pty, format!("{PASSPHRASE}\r").as_bytes());
    }) else {
        return;
    };
    assert_eq!(out.stdout, b"v", "{}", stderr(&out));
    assert!(out.status.success());
    assert!(pty.echo());
    assert!(!pty.screen().contains(PASSPHRASE), "{:?}", pty.screen());
}

/// A value piped in with a trailing newline is stored as it is, with a note when stderr is a
/// terminal (none on a pipe); `--trim` drops one newline (`\n` or `\r\n`).
#[test]
fn a_piped_value_ending_in_a_newline_is_noted_on_a_terminal() {
    use std::io::Write;
    if let Some(why) = unsupported() {
        println!("skipped: {why}");
        return;
    }
    let e = Env::new();
    e.init();
    let pty = Pty::open().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
    e.configure(&mut cmd);
    let mut child = cmd
        .args(["set", "k"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(pty.terminal.try_clone().unwrap())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"tok\n").unwrap();
    assert!(child.wait().unwrap().success());
    pty.wait_for("the note", |p| p.screen().contains("ends with a newline"));
    assert_eq!(e.ok(&["get", "k"], None), b"tok\n");
    let o = e.run_with(&["set", "k2"], Some(b"tok\n"), &[]);
    assert!(!stderr(&o).contains("newline"), "{}", stderr(&o));
    e.ok(&["set", "k3", "--trim"], Some(b"tok\r\n"));
    assert_eq!(e.ok(&["get", "k3"], None), b"tok");
    e.ok(&["set", "k4", "--trim"], Some(b"tok\n\n"));
    assert_eq!(e.ok(&["get", "k4"], None), b"tok\n");
    e.ok(&["set", "k5", "--trim"], Some(b"tok"));
    assert_eq!(e.ok(&["get", "k5"], None), b"tok");
    // Nothing left once trimmed: an empty value, refused as any.
    assert_eq!(
        common::code(&e.run_with(&["set", "k6", "--trim"], Some(b"\n"), &[])),
        2
    );
}

/// `destroy` on a terminal asks, and does nothing unless the answer is yes.
#[test]
fn destroy_asks_on_a_terminal() {
    if let Some(why) = unsupported() {
        println!("skipped: {why}");
        return;
    }
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    for (answer, destroyed) in [(&b"n\n"[..], false), (b"yes\n", true)] {
        let pty = Pty::open().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
        e.configure(&mut cmd);
        let mut child = cmd
            .args(["destroy", "a"])
            .stdin(pty.terminal.try_clone().unwrap())
            .stdout(Stdio::null())
            .stderr(pty.terminal.try_clone().unwrap())
            .spawn()
            .unwrap();
        pty.wait_for("the question", |p| p.screen().contains("[y/N]"));
        type_keys(&pty, answer);
        let status = child.wait().unwrap();
        assert_eq!(status.success(), destroyed, "{:?}", pty.screen());
        let gone = common::code(&e.run(&["get", "a"])) == 4;
        assert_eq!(gone, destroyed);
    }
}

/// `vault init` calibrating Argon2id for `ms` milliseconds, its stderr on `pty`: work long
/// enough for progress to be drawn.
fn calibrating_init(e: &Env, pty: &Pty, ms: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
    e.configure(&mut cmd);
    cmd.args(["init", "--kdf-target-ms", ms])
        .env("VAULT_NEW_PASSPHRASE_FILE", e.pass_file())
        // A terminal that can move the cursor (with TERM unset, or dumb, nothing is drawn).
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(pty.terminal.try_clone().unwrap());
    cmd
}

/// Work that takes over a second shows progress on a terminal (here Argon2id calibration, which
/// takes as long as asked), cleared at the end; on a pipe there is none.
#[test]
fn progress_is_shown_on_a_terminal_only() {
    if let Some(why) = unsupported() {
        println!("skipped: {why}");
        return;
    }
    let e = Env::new();
    let pty = Pty::open().unwrap();
    let status = calibrating_init(&e, &pty, "1500").status().unwrap();
    assert!(status.success(), "{:?}", pty.screen());
    pty.wait_for("the vault's creation", |p| {
        p.screen().contains("created vault")
    });
    let screen = pty.screen();
    assert!(screen.contains("calibrating Argon2id ("), "{screen:?}");
    // Cleared: the line is erased before the next output.
    assert!(screen.contains("\x1b[2K"), "{screen:?}");

    let other = Env::new();
    let o = other.run_with(
        &["init", "--kdf-target-ms", "1500"],
        None,
        &[("VAULT_NEW_PASSPHRASE_FILE", other.pass_file().as_os_str())],
    );
    assert_eq!(common::code(&o), 0, "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("calibrating Argon2id ("),
        "{}",
        stderr(&o)
    );
}

/// Listings are aligned in columns on a terminal and tab-separated lines on a pipe.
#[test]
fn listings_are_aligned_on_a_terminal_and_tab_separated_otherwise() {
    if let Some(why) = unsupported() {
        println!("skipped: {why}");
        return;
    }
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    e.ok(&["set", "a", "--tag", "env=prod"], Some(b"22"));
    e.ok(&["set", "much/longer/name"], Some(b"1"));
    e.ok(&["rm", "much/longer/name"], None);
    e.ok(&["key", "create", "k"], None);
    for args in [
        &["history", "a"][..],
        &["list", "--all"],
        &["slots"],
        &["key", "list"],
    ] {
        let pty = Pty::open().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
        e.configure(&mut cmd);
        let status = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(pty.terminal.try_clone().unwrap())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
        std::thread::sleep(Duration::from_millis(100));
        let screen = pty.screen();
        assert!(!screen.contains('\t'), "{args:?}: {screen:?}");
        assert!(screen.contains("  "), "{args:?}: {screen:?}");
        let piped = String::from_utf8(e.ok(args, None)).unwrap();
        assert!(piped.contains('\t'), "{args:?}: {piped:?}");
        // Same cells, either way.
        let cells = |text: &str| -> Vec<Vec<String>> {
            text.lines()
                .map(|l| {
                    l.split(['\t', ' '])
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect()
                })
                .collect()
        };
        assert_eq!(cells(&screen), cells(&piped), "{args:?}");
    }
    // History columns line up: every line's third column starts at the same place.
    let pty = Pty::open().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
    e.configure(&mut cmd);
    cmd.args(["history", "a"])
        .stdin(Stdio::null())
        .stdout(pty.terminal.try_clone().unwrap())
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let screen = pty.screen();
    let starts: Vec<usize> = screen
        .lines()
        .filter_map(|l| l.find(" bytes").map(|end| l[..end].rfind(' ').unwrap_or(0)))
        .collect();
    assert_eq!(starts.len(), 2, "{screen:?}");
    assert!(starts.windows(2).all(|w| w[0] == w[1]), "{screen:?}");
}

/// A signal while a progress line is drawn erases it before ending the process, so the shell's
/// prompt starts on a clean line.
#[test]
fn a_signal_erases_the_progress_line() {
    if let Some(why) = unsupported() {
        println!("skipped: {why}");
        return;
    }
    let e = Env::new();
    let pty = Pty::open().unwrap();
    let child = calibrating_init(&e, &pty, "6000").spawn().unwrap();
    pty.wait_for("the spinner", |p| {
        p.screen().contains("calibrating Argon2id (")
    });
    kill(&child, "INT");
    let status = child.wait_with_output().unwrap().status;
    assert_eq!(shell_status(status), 130);
    std::thread::sleep(Duration::from_millis(100));
    let screen = pty.screen();
    let last_spinner = screen.rfind("calibrating Argon2id (").unwrap();
    assert!(
        screen[last_spinner..].contains("\r\x1b[2K"),
        "not erased: {screen:?}"
    );
    assert!(!e.vault_dir().join("header").exists(), "no vault was made");
}

/// A backup is binary: to a terminal it is refused (exit 2, nothing written there); to a pipe it
/// goes.
#[test]
fn a_backup_is_not_written_to_a_terminal() {
    if let Some(why) = unsupported() {
        println!("skipped: {why}");
        return;
    }
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let pty = Pty::open().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vault"));
    e.configure(&mut cmd);
    let out = cmd
        .args(["backup", "-"])
        .env("VAULT_BACKUP_PASSPHRASE", "backup pass")
        .stdin(Stdio::null())
        .stdout(pty.terminal.try_clone().unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(common::code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("binary"), "{}", stderr(&out));
    // Named as a file: the terminal device itself.
    let tty = rustix::pty::ptsname(&pty.master, Vec::new()).unwrap();
    let named = e.run_with(
        &["backup", tty.to_str().unwrap()],
        None,
        &[("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass"))],
    );
    assert_eq!(common::code(&named), 2, "{}", stderr(&named));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pty.screen(), "", "nothing on the terminal");
    let piped = e.run_with(
        &["backup", "-"],
        None,
        &[("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass"))],
    );
    assert_eq!(common::code(&piped), 0, "{}", stderr(&piped));
    assert!(piped.stdout.len() > 100);
}
