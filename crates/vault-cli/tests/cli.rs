//! The `vault` binary end to end, as a script would drive it: passphrase from
//! VAULT_PASSPHRASE_FILE, values on stdin, exit codes and one-line messages checked.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let e = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::write(e.pass_file(), "correct horse\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(e.pass_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
        e
    }
    fn pass_file(&self) -> PathBuf {
        self.tmp.path().join("pass")
    }
    fn vault_dir(&self) -> PathBuf {
        self.tmp.path().join("vault")
    }
    /// Runs `vault ARGS` with no controlling terminal (setsid), stdin from `input`.
    fn run_with(&self, args: &[&str], input: Option<&[u8]>, envs: &[(&str, &Path)]) -> Output {
        let bin = env!("CARGO_BIN_EXE_vault");
        let mut cmd = if Path::new("/usr/bin/setsid").exists() {
            let mut c = Command::new("/usr/bin/setsid");
            c.arg("--wait").arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Coverage runs need the profile path the instrumented binary writes to.
            .envs(std::env::var_os("LLVM_PROFILE_FILE").map(|v| ("LLVM_PROFILE_FILE", v)))
            .env("HOME", self.tmp.path())
            .env("VAULT_DIR", self.vault_dir())
            .env("VAULT_STATE_DIR", self.tmp.path().join("state"))
            .env("VAULT_PASSPHRASE_FILE", self.pass_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        {
            let mut stdin = child.stdin.take().unwrap();
            if let Some(i) = input {
                stdin.write_all(i).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }
    fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None, &[])
    }
    fn ok(&self, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let out = self.run_with(args, input, &[]);
        assert!(
            out.status.success(),
            "vault {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
    fn init(&self) {
        self.ok(
            &[
                "init",
                "--kdf-memory-mib",
                "1",
                "--kdf-iterations",
                "1",
                "--kdf-parallelism",
                "1",
            ],
            None,
        );
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn one_line(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("vault: ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {s:?}");
    lines[0].to_string()
}

#[test]
fn every_command_works_end_to_end() {
    let e = Env::new();
    e.init();
    let value = b"line one\nline two\x00\xff no trailing newline";
    e.ok(&["set", "api/token", "--tag", "env=prod"], Some(value));
    assert_eq!(
        e.ok(&["get", "api/token"], None),
        value,
        "get must return the exact bytes"
    );
    e.ok(&["set", "api/token"], Some(b"v2"));
    assert_eq!(e.ok(&["get", "api/token"], None), b"v2");
    assert_eq!(e.ok(&["get", "api/token", "--version", "1"], None), value);
    e.ok(&["set", "db/password"], Some(b"hunter2"));
    assert_eq!(e.ok(&["list"], None), b"api/token\ndb/password\n");
    let history = String::from_utf8(e.ok(&["history", "api/token"], None)).unwrap();
    assert_eq!(history.lines().count(), 2);
    assert!(history.lines().next().unwrap().contains("env=prod"));
    e.ok(&["rm", "db/password"], None);
    assert_eq!(code(&e.run(&["get", "db/password"])), 4);
    assert_eq!(e.ok(&["list"], None), b"api/token\n");
    assert_eq!(
        e.ok(&["list", "--all"], None),
        b"api/token\ndb/password\t(deleted)\n"
    );
    e.ok(&["undelete", "db/password"], None);
    assert_eq!(e.ok(&["get", "db/password"], None), b"hunter2");
    // Check-and-set.
    let stale = e.run_with(
        &["set", "api/token", "--expect-version", "1"],
        Some(b"x"),
        &[],
    );
    assert_eq!(code(&stale), 7, "{}", one_line(&stale));
    // Passphrase change: the old one stops working.
    let new_pass = e.tmp.path().join("new-pass");
    std::fs::write(&new_pass, "battery staple").unwrap();
    let out = e.run_with(
        &["change-passphrase"],
        None,
        &[("VAULT_NEW_PASSPHRASE_FILE", &new_pass)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(code(&e.run(&["get", "api/token"])), 3);
    std::fs::copy(&new_pass, e.pass_file()).unwrap();
    // A recovery passphrase in a second slot; then removed again (rotation needs one slot).
    let recovery = e.tmp.path().join("recovery");
    std::fs::write(&recovery, "recovery words").unwrap();
    let out = e.run_with(
        &["add-passphrase"],
        None,
        &[("VAULT_NEW_PASSPHRASE_FILE", &recovery)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_recovery = e.run_with(
        &["get", "api/token"],
        None,
        &[("VAULT_PASSPHRASE_FILE", &recovery)],
    );
    assert_eq!(by_recovery.stdout, b"v2");
    let slots = String::from_utf8(e.ok(&["slots"], None)).unwrap();
    assert_eq!(slots.lines().count(), 2, "{slots}");
    // The slot the caller opens with cannot be removed by them (exit 2, nothing changed).
    let o = e.run_with(
        &["remove-passphrase", "1", "--yes"],
        None,
        &[("VAULT_PASSPHRASE_FILE", &recovery)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), 2, "{err}");
    assert!(err.contains("another slot's passphrase"), "{err}");
    e.ok(&["remove-passphrase", "1", "--yes"], None);
    assert_eq!(
        code(&e.run_with(
            &["get", "api/token"],
            None,
            &[("VAULT_PASSPHRASE_FILE", &recovery)]
        )),
        3
    );
    e.ok(&["rotate-master-key"], None);
    assert_eq!(e.ok(&["get", "api/token"], None), b"v2");
    e.ok(&["compact"], None);
    assert!(
        e.vault_dir().join("index.1").exists(),
        "compaction writes the index"
    );
    std::fs::remove_file(e.vault_dir().join("index.1")).unwrap();
    e.ok(&["upgrade"], None);
    assert!(
        e.vault_dir().join("index.1").exists(),
        "upgrade writes the index"
    );
    assert_eq!(e.ok(&["get", "api/token"], None), b"v2");
    let verify = String::from_utf8(e.ok(&["verify"], None)).unwrap();
    assert!(verify.starts_with("ok: "), "{verify}");
    assert!(verify.contains("2 secrets"), "{verify}");
    e.ok(&["max-versions", "1"], None);
    let history = String::from_utf8(e.ok(&["history", "api/token"], None)).unwrap();
    assert_eq!(history.lines().count(), 1, "{history}");
    e.ok(&["destroy", "db/password", "--yes"], None);
    assert_eq!(code(&e.run(&["history", "db/password"])), 4);
}

#[test]
fn exit_codes_and_messages() {
    let e = Env::new();
    let none = e.run(&["get", "x"]);
    assert_eq!(code(&none), 4, "no vault yet");
    assert!(one_line(&none).contains("no vault"));
    e.init();
    e.ok(&["set", "present"], Some(b"v"));

    let missing = e.run(&["get", "absent"]);
    assert_eq!(code(&missing), 4);
    assert_eq!(one_line(&missing), "vault: not found: secret \"absent\"");

    let wrong = e.tmp.path().join("wrong");
    std::fs::write(&wrong, "not it").unwrap();
    let bad = e.run_with(
        &["get", "present"],
        None,
        &[("VAULT_PASSPHRASE_FILE", &wrong)],
    );
    assert_eq!(code(&bad), 3);
    assert!(one_line(&bad).contains("wrong passphrase"));

    let usage = e.run(&["get"]);
    assert_eq!(code(&usage), 2);
    let bad_name = e.run_with(&["set", " padded"], Some(b"v"), &[]);
    assert_eq!(
        code(&bad_name),
        2,
        "{}",
        String::from_utf8_lossy(&bad_name.stderr)
    );

    // A flipped byte anywhere in the log is an integrity failure (5), not a wrong passphrase.
    let log = e.vault_dir().join("log.0");
    let mut bytes = std::fs::read(&log).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let flipped = e.run(&["get", "present"]);
    assert_eq!(code(&flipped), 5);
    assert!(one_line(&flipped).contains("integrity failure"));
    bytes[mid] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();

    // And in the header.
    let header = e.vault_dir().join("header");
    let mut h = std::fs::read(&header).unwrap();
    h[50] ^= 0x80;
    std::fs::write(&header, &h).unwrap();
    let out = e.run(&["get", "present"]);
    assert_eq!(code(&out), 5, "{}", one_line(&out));
}

#[test]
fn rollback_is_exit_5_and_can_be_accepted() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let backup = e.tmp.path().join("backup");
    std::fs::create_dir(&backup).unwrap();
    for f in std::fs::read_dir(e.vault_dir()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), backup.join(f.file_name())).unwrap();
    }
    e.ok(&["set", "a"], Some(b"2"));
    for f in std::fs::read_dir(&backup).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), e.vault_dir().join(f.file_name())).unwrap();
    }
    let out = e.run(&["get", "a"]);
    assert_eq!(code(&out), 5);
    assert!(one_line(&out).contains("rollback detected"));
    e.ok(&["accept-rollback"], None);
    assert_eq!(e.ok(&["get", "a"], None), b"1");
}

#[test]
fn no_terminal_and_no_passphrase_fails_at_once() {
    let e = Env::new();
    e.init();
    let empty = Path::new("");
    let start = std::time::Instant::now();
    let out = e.run_with(&["list"], None, &[("VAULT_PASSPHRASE_FILE", empty)]);
    assert_eq!(code(&out), 1);
    assert!(one_line(&out).contains("no passphrase"));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "must not hang"
    );
}

#[test]
fn passphrase_from_command_and_variable() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "k"], Some(b"v"));
    let empty = Path::new("");
    let cmd = format!("cat {}", e.pass_file().display());
    let out = e.run_with(
        &["get", "k"],
        None,
        &[
            ("VAULT_PASSPHRASE_FILE", empty),
            ("VAULT_PASSPHRASE_COMMAND", Path::new(&cmd)),
        ],
    );
    assert_eq!(out.stdout, b"v", "{}", String::from_utf8_lossy(&out.stderr));
    let out = e.run_with(
        &["get", "k"],
        None,
        &[
            ("VAULT_PASSPHRASE_FILE", empty),
            ("VAULT_PASSPHRASE", Path::new("correct horse")),
        ],
    );
    assert_eq!(out.stdout, b"v", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_busy_vault_times_out_with_exit_6() {
    let e = Env::new();
    e.init();
    // Hold the writer lock as another process would.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(e.vault_dir().join("lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = e.run_with(&["--lock-timeout-ms", "300", "set", "k"], Some(b"v"), &[]);
    assert_eq!(code(&out), 6, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(one_line(&out).contains("busy"));
    drop(lock);
    e.ok(&["set", "k"], Some(b"v"));
}

#[test]
fn a_readable_passphrase_file_is_warned_about() {
    let e = Env::new();
    e.init();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(e.pass_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = e.run(&["list"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("readable by other users"));
}

#[test]
fn an_unknown_location_scheme_is_a_usage_error_and_creates_nothing() {
    let e = Env::new();
    // A build with the postgres feature takes postgres:// (tests/postgres.rs).
    let urls: &[&str] = if cfg!(feature = "postgres") {
        &["foo://x"]
    } else {
        &["postgres://host/db", "foo://x"]
    };
    for &url in urls {
        for args in [&["list"][..], &["init"][..]] {
            let mut full = vec!["--vault", url];
            full.extend_from_slice(args);
            let o = e.run_with(&full, None, &[]);
            assert_eq!(code(&o), 2, "{url} {args:?}: {}", one_line(&o));
            assert!(one_line(&o).contains("not supported"), "{}", one_line(&o));
        }
    }
    // Nothing was created, neither here nor under the working directory.
    assert!(!std::path::Path::new("postgres:").exists());
    assert!(!std::path::Path::new("foo:").exists());
    assert!(!e.vault_dir().exists());
    // file:///path is a path.
    let dir = e.vault_dir();
    let url = format!("file://{}", dir.display());
    let o = e.run_with(
        &[
            "--vault",
            &url,
            "init",
            "--kdf-memory-mib",
            "1",
            "--kdf-iterations",
            "1",
            "--kdf-parallelism",
            "1",
        ],
        None,
        &[],
    );
    assert_eq!(code(&o), 0, "{}", one_line(&o));
    assert!(dir.join("header").exists());
}

/// Findings of the second hostile pass: what the CLI says must be true.
#[test]
fn messages_say_what_happened() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    // accept-rollback on a healthy vault accepts nothing and says so.
    let o = e.run(&["accept-rollback"]);
    assert_eq!(code(&o), 0);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("nothing to accept"), "{err}");
    // The slot listing shows a test vault's 1 MiB, and KiB where it is not whole MiB.
    let slots = String::from_utf8(e.ok(&["slots"], None)).unwrap();
    assert!(slots.contains("m=1 MiB"), "{slots}");
    // Two passphrase sources: the file is used, with a warning naming both.
    let o = e.run_with(
        &["get", "a"],
        None,
        &[("VAULT_PASSPHRASE", Path::new("ignored"))],
    );
    assert_eq!(code(&o), 0);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("using VAULT_PASSPHRASE_FILE and ignoring VAULT_PASSPHRASE"),
        "{err}"
    );
    // Warnings name no Rust module at the default verbosity.
    assert!(!err.contains("vault_store::"), "{err}");
    // init over a vault that lost its header: refused as exactly that, files untouched.
    std::fs::remove_file(e.vault_dir().join("header")).unwrap();
    let log = std::fs::read(e.vault_dir().join("log.0")).unwrap();
    let o = e.run(&["init", "--kdf-memory-mib", "1", "--kdf-iterations", "1"]);
    assert_eq!(code(&o), 5, "{}", one_line(&o));
    assert!(
        one_line(&o).contains("header file is missing"),
        "{}",
        one_line(&o)
    );
    assert_eq!(std::fs::read(e.vault_dir().join("log.0")).unwrap(), log);
    // A weak-KDF warning names what is weak, and only that.
    let e2 = Env::new();
    let o = e2.run(&["init", "--kdf-memory-mib", "128", "--kdf-iterations", "1"]);
    assert_eq!(code(&o), 0);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.contains("1 pass(es) is below 2") && !err.contains("memory"),
        "{err}"
    );
    assert_eq!(code(&e2.run(&["init", "--kdf-target-ms", "0"])), 2);
}
