//! Running one `vault` process against the vault under test: an explicit environment (nothing
//! inherited but `PATH`), stdin given at once or trickled in late, and a watchdog so a hung child
//! is killed and reported instead of stalling the soak.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long a writer waits for another's lock before giving up with exit 6. Long enough that
/// "busy" means a stuck process rather than a slow compaction.
pub const LOCK_TIMEOUT_MS: u64 = 30_000;
/// A child still running after this is hung (well past the lock timeout): kill it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Which passphrase a command that takes a new one (`change-passphrase`, `add-passphrase`) gets.
#[derive(Clone, Copy)]
pub enum NewPassphrase {
    /// The vault's own passphrase: `change-passphrase` then keeps it valid for everyone.
    Same,
    /// A second passphrase, for the extra key slots `add-passphrase` creates.
    Second,
}

/// What a child reads on stdin.
pub enum Input {
    Nothing,
    /// Written at once, then closed.
    Now(Vec<u8>),
    /// Written only after `delay`, then closed: `vault set` opens the vault before it reads
    /// the value, so this widens the window between opening and committing in which another
    /// process may compact or rotate underneath it.
    Late(Duration, Vec<u8>),
}

/// What a child did.
pub struct Outcome {
    /// The exit code, if it exited (not killed by a signal).
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// The watchdog killed it.
    pub hung: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    /// Exited normally with one of `codes` and did not report a panic.
    pub fn exited_with(&self, codes: &[i32]) -> bool {
        !self.hung && !self.panicked() && self.code.is_some_and(|c| codes.contains(&c))
    }

    pub fn is(&self, code: i32) -> bool {
        self.exited_with(&[code])
    }

    pub fn panicked(&self) -> bool {
        self.stderr.contains("panicked")
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// "exit 5", "signal 6 (exit 134 in a shell)", "hung, killed after 120 s".
    pub fn status(&self) -> String {
        if self.hung {
            return format!("hung, killed after {} s", CHILD_TIMEOUT.as_secs());
        }
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s} (exit {} in a shell)", 128 + s),
            (None, None) => "did not run".into(),
        }
    }
}

/// The vault under test and how to run `vault` against it.
pub struct VaultCmd {
    bin: PathBuf,
    vars: Vec<(&'static str, OsString)>,
    second_passphrase: PathBuf,
}

impl VaultCmd {
    /// Lays out `dir` (vault, state directory, home, two passphrase files) for `bin`.
    pub fn new(bin: &Path, dir: &Path) -> Result<VaultCmd> {
        let secrets = dir.join("passphrases");
        let home = dir.join("home");
        let state = dir.join("state");
        for d in [&secrets, &home, &state] {
            // Owner-only, as a user's would be: vault warns about shared directories.
            std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o700)
                .create(d)
                .with_context(|| format!("creating {}", d.display()))?;
        }
        let first = secrets.join("passphrase");
        let second = secrets.join("second-passphrase");
        for (path, text) in [
            (&first, "soak passphrase one\n"),
            (&second, "soak passphrase two\n"),
        ] {
            fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            // vault warns about passphrase files other users can read.
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        }
        let vars = vec![
            (
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            ),
            // A private HOME so no XDG default can reach the developer's own vault.
            ("HOME", home.into_os_string()),
            ("VAULT_DIR", dir.join("vault").into_os_string()),
            ("VAULT_STATE_DIR", state.into_os_string()),
            ("VAULT_PASSPHRASE_FILE", first.clone().into_os_string()),
            ("VAULT_NEW_PASSPHRASE_FILE", first.into_os_string()),
        ];
        Ok(VaultCmd {
            bin: bin.to_path_buf(),
            vars,
            second_passphrase: second,
        })
    }

    /// Creates the vault with the cheapest KDF `vault init` accepts: the soak is about
    /// concurrency, and every process pays one Argon2id evaluation to open the vault.
    pub fn init(&self) -> Result<()> {
        let args = [
            "init",
            "--kdf-memory-mib",
            "1",
            "--kdf-iterations",
            "1",
            "--kdf-parallelism",
            "1",
        ];
        let o = self.run(&args, Input::Nothing, NewPassphrase::Same);
        if !o.is(0) {
            bail!("vault init failed ({}): {}", o.status(), o.stderr.trim());
        }
        // A small trail: files sealed every 256 KiB and the oldest removed past 1 MiB, so a
        // run seals and removes many while everything else goes on.
        let policy = ["audit", "policy", "--max-size", "1MiB"];
        let o = self.run(&policy, Input::Nothing, NewPassphrase::Same);
        if !o.is(0) {
            bail!(
                "vault audit policy failed ({}): {}",
                o.status(),
                o.stderr.trim()
            );
        }
        Ok(())
    }

    /// Runs `vault --lock-timeout-ms … ARGS` and waits for it (or the watchdog).
    pub fn run(&self, args: &[&str], input: Input, new: NewPassphrase) -> Outcome {
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .arg("--lock-timeout-ms")
            .arg(LOCK_TIMEOUT_MS.to_string())
            .args(args)
            .stdin(match input {
                Input::Nothing => Stdio::null(),
                _ => Stdio::piped(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let NewPassphrase::Second = new {
            cmd.env("VAULT_NEW_PASSPHRASE_FILE", &self.second_passphrase);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Outcome {
                    code: None,
                    signal: None,
                    hung: false,
                    stdout: Vec::new(),
                    stderr: format!("could not start {}: {e}", self.bin.display()),
                };
            }
        };
        let pid = child.id();
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        std::thread::scope(|s| {
            s.spawn(move || {
                let (delay, bytes) = match input {
                    Input::Nothing => return,
                    Input::Now(b) => (Duration::ZERO, b),
                    Input::Late(d, b) => (d, b),
                };
                std::thread::sleep(delay);
                if let Some(mut pipe) = stdin {
                    // The child may have exited already (e.g. it failed to open the vault):
                    // a broken pipe here is its outcome to report, not ours.
                    let _ = pipe.write_all(&bytes);
                } // dropping the pipe closes the child's stdin
            });
            let out = s.spawn(move || drain(stdout.as_mut()));
            let err = s.spawn(move || drain(stderr.as_mut()));
            // Wait on another thread so the watchdog is a timed channel receive.
            let (tx, rx) = mpsc::channel();
            s.spawn(move || {
                let _ = tx.send(child.wait());
            });
            let mut hung = false;
            let status = match rx.recv_timeout(CHILD_TIMEOUT) {
                Ok(r) => r.ok(),
                Err(_) => {
                    hung = true;
                    // Not reaped yet (the waiting thread still blocks in wait), so the pid is
                    // still our child's.
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    rx.recv().ok().and_then(Result::ok)
                }
            };
            Outcome {
                code: status.and_then(|s| s.code()),
                signal: status.and_then(|s| s.signal()),
                hung,
                stdout: out.join().unwrap_or_default(),
                stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
            }
        })
    }
}

fn drain(pipe: Option<&mut impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}
