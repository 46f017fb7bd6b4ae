//! Shared by the regression tests: the `Env` of tests/cli.rs (a temporary vault, the binary run
//! under setsid with no terminal and a clean environment), with a `Command` to hand for tests
//! that need their own stdin, stdout or stderr.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PASSPHRASE: &str = "correct horse";

pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        let e = Self {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::write(e.pass_file(), format!("{PASSPHRASE}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(e.pass_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
        e
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    pub fn pass_file(&self) -> PathBuf {
        self.path("pass")
    }
    pub fn vault_dir(&self) -> PathBuf {
        self.path("vault")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }
    /// `vault ARGS` with no controlling terminal (setsid) and the passphrase file; stdio is
    /// left to the caller.
    pub fn command(&self, args: &[&str]) -> Command {
        let bin = env!("CARGO_BIN_EXE_vault");
        let mut cmd = if Path::new("/usr/bin/setsid").exists() {
            let mut c = Command::new("/usr/bin/setsid");
            c.arg("--wait").arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(args);
        self.configure(&mut cmd);
        cmd
    }
    /// The clean environment every run gets, for commands that run `vault` indirectly.
    pub fn configure(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Coverage runs need the profile path the instrumented binary writes to.
            .envs(std::env::var_os("LLVM_PROFILE_FILE").map(|v| ("LLVM_PROFILE_FILE", v)))
            .env("HOME", self.tmp.path())
            .env("VAULT_DIR", self.vault_dir())
            .env("VAULT_STATE_DIR", self.state_dir())
            .env("VAULT_PASSPHRASE_FILE", self.pass_file());
    }
    /// Runs `vault ARGS` with stdin from `input` (closed at once when `None`).
    pub fn run_with(&self, args: &[&str], input: Option<&[u8]>, envs: &[(&str, &OsStr)]) -> Output {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        // Stdin is fed from a thread while the output is read: a large input and a large
        // output through pipes would otherwise wait on each other for ever.
        let mut stdin = child.stdin.take().unwrap();
        let input = input.map(<[u8]>::to_vec);
        let feeder = std::thread::spawn(move || {
            if let Some(i) = input {
                // The command may stop reading early (a refusal): that is its answer.
                let _ = stdin.write_all(&i);
            }
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        out
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None, &[])
    }
    pub fn ok(&self, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let out = self.run_with(args, input, &[]);
        assert!(
            out.status.success(),
            "vault {args:?} failed: {}",
            stderr(&out)
        );
        out.stdout
    }
    pub fn init(&self) {
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

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one `vault: ...` error line on stderr.
pub fn one_line(o: &Output) -> String {
    let s = stderr(o);
    let lines: Vec<&str> = s.lines().filter(|l| l.starts_with("vault: ")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {s:?}");
    lines[0].to_string()
}

/// Waits for `child` at most `limit`; kills it and returns `None` if it is still running.
pub fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
