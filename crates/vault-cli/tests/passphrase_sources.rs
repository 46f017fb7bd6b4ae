//! Passphrase sources for scripts: one rule for trailing newlines across the file, the command
//! and the variable (and their VAULT_NEW_PASSPHRASE* twins), and a passphrase file that never
//! yields anything (a FIFO with no writer) fails after a timeout instead of hanging.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, PASSPHRASE, code, one_line, stderr, wait_at_most};

/// Exactly one trailing `\n` or `\r\n` is stripped; these are what the source holds after the
/// passphrase, and whether it still opens the vault.
const ENDINGS: &[(&[u8], bool)] = &[
    (b"", true),
    (b"\n", true),
    (b"\r\n", true),
    (b"\n\n", false),
    (b"\r\n\r\n", false),
    (b"\n\r\n", false),
    (b"\r", false),
    (b" \n", false),
];

/// The environment that makes `source` (FILE, COMMAND or the bare variable named `prefix`)
/// yield `bytes`; the file and command read a file written under `dir`.
fn source(dir: &Path, prefix: &str, kind: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let file = dir.join(format!("{prefix}-{kind}"));
    std::fs::write(&file, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The other sources of the same prefix are emptied: the file takes precedence otherwise.
    let mut env = vec![
        (format!("{prefix}_FILE"), Vec::new()),
        (format!("{prefix}_COMMAND"), Vec::new()),
    ];
    match kind {
        "file" => env[0].1 = file.as_os_str().as_bytes().to_vec(),
        "command" => env[1].1 = format!("cat '{}'", file.display()).into_bytes(),
        _ => env.push((prefix.to_string(), bytes.to_vec())),
    }
    env
}

fn run(e: &Env, args: &[&str], env: &[(String, Vec<u8>)]) -> std::process::Output {
    let mut cmd = e.command(args);
    for (k, v) in env {
        cmd.env(k, OsStr::from_bytes(v));
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn one_trailing_newline_is_stripped_from_every_current_passphrase_source() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "k"], Some(b"v"));
    for kind in ["file", "command", "variable"] {
        for (ending, opens) in ENDINGS {
            let bytes = [PASSPHRASE.as_bytes(), ending].concat();
            let env = source(e.tmp.path(), "VAULT_PASSPHRASE", kind, &bytes);
            let out = run(&e, &["get", "k"], &env);
            let expected = if *opens { 0 } else { 3 };
            assert_eq!(
                code(&out),
                expected,
                "{kind} holding {:?}: {}",
                String::from_utf8_lossy(&bytes),
                stderr(&out)
            );
        }
    }
}

#[test]
fn one_trailing_newline_is_stripped_from_every_new_passphrase_source() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "k"], Some(b"v"));
    let mut current = PASSPHRASE.to_string();
    for kind in ["file", "command", "variable"] {
        for (ending, opens) in [(&b"\n"[..], true), (b"\r\n", true), (b"\n\n", false)] {
            let new = format!("{kind} passphrase {}", ending.len());
            let mut env = source(
                e.tmp.path(),
                "VAULT_NEW_PASSPHRASE",
                kind,
                &[new.as_bytes(), ending].concat(),
            );
            env.push(("VAULT_PASSPHRASE_FILE".into(), Vec::new()));
            // With a newline of its own, as the variable loses one.
            env.push((
                "VAULT_PASSPHRASE".into(),
                format!("{current}\n").into_bytes(),
            ));
            let out = run(&e, &["change-passphrase"], &env);
            assert_eq!(code(&out), 0, "{kind} {ending:?}: {}", stderr(&out));
            // The new passphrase, typed without any newline, opens the vault iff exactly one
            // newline was stripped when it was set.
            let by_new = [
                ("VAULT_PASSPHRASE_FILE".to_string(), Vec::new()),
                ("VAULT_PASSPHRASE".to_string(), new.clone().into_bytes()),
            ];
            let out = run(&e, &["get", "k"], &by_new);
            assert_eq!(
                code(&out) == 0,
                opens,
                "{kind} {ending:?}: {}",
                stderr(&out)
            );
            current = if opens { new } else { format!("{new}\n") };
        }
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_with_no_writer_times_out_with_a_clear_message() {
    let e = Env::new();
    e.init();
    let fifo = e.path("fifo");
    mkfifo(&fifo);
    for var in ["VAULT_PASSPHRASE_FILE", "VAULT_NEW_PASSPHRASE_FILE"] {
        let args: &[&str] = if var == "VAULT_PASSPHRASE_FILE" {
            &["list"]
        } else {
            &["change-passphrase"]
        };
        let start = Instant::now();
        let mut child = e
            .command(args)
            .env(var, &fifo)
            .env("VAULT_PASSPHRASE_TIMEOUT_MS", "300")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(20));
        assert!(
            status.is_some(),
            "{var}: vault hung on a FIFO with no writer"
        );
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 1, "{var}: {}", stderr(&out));
        let line = one_line(&out);
        assert!(
            line.contains(var) && line.contains("waited 300 ms for a writer"),
            "{line}"
        );
        assert!(line.contains("VAULT_PASSPHRASE_TIMEOUT_MS"), "{line}");
        assert!(start.elapsed() < Duration::from_secs(10), "{var}");
    }
}

/// Found by the second hostile pass: a passphrase command that hangs, or keeps running after it
/// printed the passphrase, blocked vault forever.
#[test]
fn a_passphrase_command_that_does_not_finish_is_killed_after_the_timeout() {
    let e = Env::new();
    e.init();
    for cmd in [
        "exec sleep 100",
        "echo pw; exec sleep 100",
        "echo pw; exec >&-; exec sleep 100",
    ] {
        let start = Instant::now();
        // stderr into a file: a process the command started may outlive vault and hold it.
        let err_path = e.path("command-stderr");
        let mut child = e
            .command(&["list"])
            .env_remove("VAULT_PASSPHRASE_FILE")
            .env("VAULT_PASSPHRASE_COMMAND", cmd)
            .env("VAULT_PASSPHRASE_TIMEOUT_MS", "500")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let status = wait_at_most(&mut child, Duration::from_secs(20));
        assert!(status.is_some(), "{cmd}: vault hung on the command");
        assert_eq!(status.unwrap().code(), Some(1), "{cmd}");
        let err = std::fs::read_to_string(&err_path).unwrap();
        let line = err.lines().last().unwrap_or_default().to_string();
        assert!(
            line.contains("VAULT_PASSPHRASE_COMMAND did not finish within 500 ms"),
            "{line}"
        );
        assert!(start.elapsed() < Duration::from_secs(10), "{cmd}");
    }
}

#[test]
fn a_fifo_or_pipe_with_a_writer_works() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "k"], Some(b"v"));
    let fifo: PathBuf = e.path("fifo");
    mkfifo(&fifo);
    let writer = {
        let fifo = fifo.clone();
        // Opening for writing blocks until vault opens the FIFO for reading.
        std::thread::spawn(move || std::fs::write(fifo, format!("{PASSPHRASE}\n")).unwrap())
    };
    // 0: no time limit.
    let out = e.run_with(
        &["get", "k"],
        None,
        &[
            ("VAULT_PASSPHRASE_FILE", fifo.as_os_str()),
            ("VAULT_PASSPHRASE_TIMEOUT_MS", OsStr::new("0")),
        ],
    );
    assert_eq!(out.stdout, b"v", "{}", stderr(&out));
    writer.join().unwrap();

    // Process substitution: /dev/fd/N, a pipe whose writer is the substituted command.
    let mut cmd = Command::new("bash");
    e.configure(&mut cmd);
    let out = cmd
        .arg("-c")
        .arg(r#"VAULT_PASSPHRASE_FILE=<(printf '%s\n' "$PW") "$@""#)
        .arg("bash")
        .arg(env!("CARGO_BIN_EXE_vault"))
        .args(["get", "k"])
        .env("PW", PASSPHRASE)
        .env("VAULT_PASSPHRASE_TIMEOUT_MS", "5000")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"v", "{}", stderr(&out));
}

#[test]
fn a_bad_timeout_is_a_usage_error() {
    let e = Env::new();
    e.init();
    let out = e.run_with(
        &["list"],
        None,
        &[("VAULT_PASSPHRASE_TIMEOUT_MS", OsStr::new("soon"))],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(one_line(&out).contains("VAULT_PASSPHRASE_TIMEOUT_MS"));
}
