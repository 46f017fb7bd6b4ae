//! Where passphrases come from: a hidden prompt on the terminal, or for scripts a file, a
//! command or (least safe) an environment variable. Never from the command line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use vault_store::SecretBytes;

use crate::exit::Exit;
use crate::permissions;
use crate::terminal;
use crate::{Failure, fail};

/// The most bytes read from a passphrase source.
const MAX_PASSPHRASE: u64 = 64 * 1024;

/// How long a passphrase file may take to yield its contents, unless
/// `VAULT_PASSPHRASE_TIMEOUT_MS` says otherwise: a FIFO with no writer would block forever.
const DEFAULT_FILE_TIMEOUT_MS: u64 = 30_000;

/// Strips one trailing newline (`\n` or `\r\n`), as files and command output usually end with
/// one. Every source follows the same rule, the variables too, so a passphrase moved from one
/// source to another still opens the vault.
fn trim_newline(mut v: Vec<u8>) -> SecretBytes {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    SecretBytes::new(v)
}

/// The wait for a passphrase file; `None` (from 0) waits as long as it takes.
fn file_timeout() -> Result<Option<Duration>, Failure> {
    let var = "VAULT_PASSPHRASE_TIMEOUT_MS";
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        None => Ok(Some(Duration::from_millis(DEFAULT_FILE_TIMEOUT_MS))),
        Some(v) => v
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
            .map(|ms| (ms > 0).then(|| Duration::from_millis(ms)))
            .ok_or_else(|| {
                fail(
                    Exit::Usage,
                    format!(
                        "{var} must be a whole number of milliseconds, not {:?}",
                        v.to_string_lossy()
                    ),
                )
            }),
    }
}

/// Reads the passphrase file `path` (named by the variable `var`), waiting at most
/// [`file_timeout`]. Opening a FIFO blocks until a writer comes, and so can reading, with no way
/// to give up from the same thread: the helper thread is left blocked on a timeout, and dies
/// with the process, which is about to exit with the error.
fn read_file(var: String, path: PathBuf) -> Result<SecretBytes, Failure> {
    let timeout = file_timeout()?;
    let shown = format!("{var} {}", path.display());
    let (tx, rx) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("passphrase-file".into())
        .spawn(move || {
            let _ = tx.send(read_file_blocking(&var, &path));
        })
        .map_err(|e| {
            fail(
                Exit::Other,
                format!("cannot read {shown}: no thread to read it on: {e}"),
            )
        })?;
    let Some(timeout) = timeout else {
        return rx.recv().unwrap_or_else(|_| {
            Err(fail(
                Exit::Other,
                format!("cannot read {shown}: the reader stopped"),
            ))
        });
    };
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(fail(
            Exit::Other,
            format!(
                "cannot read {shown}: waited {} ms for a writer (a FIFO no one writes to?); VAULT_PASSPHRASE_TIMEOUT_MS sets the wait",
                timeout.as_millis()
            ),
        )),
        Err(RecvTimeoutError::Disconnected) => Err(fail(
            Exit::Other,
            format!("cannot read {shown}: the reader stopped"),
        )),
    }
}

fn read_file_blocking(var: &str, path: &Path) -> Result<SecretBytes, Failure> {
    let shown = format!("{var} {}", path.display());
    let f = std::fs::File::open(path)
        .map_err(|e| fail(Exit::Other, format!("cannot read {shown}: {e}")))?;
    if let Ok(meta) = f.metadata() {
        permissions::warn_if_shared_file(&shown, &meta);
    }
    let mut buf = Vec::with_capacity(256);
    f.take(MAX_PASSPHRASE)
        .read_to_end(&mut buf)
        .map_err(|e| fail(Exit::Other, format!("cannot read {shown}: {e}")))?;
    Ok(trim_newline(buf))
}

/// Runs a passphrase command (named by the variable `var`) and takes its standard output,
/// giving up after the same wait as for a file: a command that hangs (or keeps running after it
/// printed) is killed rather than blocking the vault forever.
fn run_command(var: &str, cmd: &std::ffi::OsStr) -> Result<SecretBytes, Failure> {
    let timeout = file_timeout()?;
    // Not in a process group of its own: a command that prompts on the terminal must stay in
    // the foreground. On a timeout only the shell is killed; what it started may outlive it.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail(Exit::Other, format!("cannot run {var}: {e}")))?;
    let stdout = child.stdout.take();
    let (tx, rx) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("passphrase-command".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(256);
            let read = stdout.map_or(Ok(0), |o| o.take(MAX_PASSPHRASE).read_to_end(&mut buf));
            let _ = tx.send(read.map(|_| buf));
        })
        .map_err(|e| fail(Exit::Other, format!("cannot run {var}: no thread: {e}")))?;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let gave_up = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
        fail(
            Exit::Other,
            format!(
                "{var} did not finish within {} ms; VAULT_PASSPHRASE_TIMEOUT_MS sets the wait (0: no limit)",
                timeout.map_or(0, |t| t.as_millis())
            ),
        )
    };
    let output = match deadline {
        None => rx.recv().ok(),
        Some(d) => match rx.recv_timeout(d.saturating_duration_since(std::time::Instant::now())) {
            Ok(o) => Some(o),
            Err(RecvTimeoutError::Timeout) => return Err(gave_up(&mut child)),
            Err(RecvTimeoutError::Disconnected) => None,
        },
    };
    let output = output
        .ok_or_else(|| fail(Exit::Other, format!("cannot read the output of {var}")))?
        .map_err(|e| fail(Exit::Other, format!("cannot read the output of {var}: {e}")))?;
    let output = SecretBytes::new(output);
    // The output is complete; the command must still finish, successfully, in time.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => {
                return Err(gave_up(&mut child));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(fail(Exit::Other, format!("cannot wait for {var}: {e}"))),
        }
    };
    if !status.success() {
        return Err(fail(Exit::Other, format!("{var} failed ({status})")));
    }
    Ok(trim_newline(output.expose_secret().to_vec()))
}

/// Warns when more than one source for the same passphrase is set: only the first is used, and
/// a user who set two probably expects the other.
fn warn_if_several(prefix: &str) {
    let set: Vec<String> = [
        format!("{prefix}_FILE"),
        format!("{prefix}_COMMAND"),
        prefix.to_string(),
    ]
    .into_iter()
    .filter(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    .collect();
    if let [used, ignored @ ..] = set.as_slice()
        && !ignored.is_empty()
    {
        crate::output::stderr_line(format!(
            "warning: {} set; using {used} and ignoring {}",
            set.join(", "),
            ignored.join(", ")
        ));
    }
}

fn from_env(prefix: &str) -> Result<Option<SecretBytes>, Failure> {
    warn_if_several(prefix);
    let file_var = format!("{prefix}_FILE");
    if let Some(path) = std::env::var_os(&file_var).filter(|v| !v.is_empty()) {
        tracing::info!(
            "passphrase from the file {} ({file_var})",
            Path::new(&path).display()
        );
        return read_file(file_var, PathBuf::from(path)).map(Some);
    }
    if let Some(cmd) = std::env::var_os(format!("{prefix}_COMMAND")).filter(|v| !v.is_empty()) {
        tracing::info!("passphrase from the command in {prefix}_COMMAND");
        return run_command(&format!("{prefix}_COMMAND"), &cmd).map(Some);
    }
    if let Some(v) = std::env::var_os(prefix) {
        tracing::info!("passphrase from the variable {prefix}");
        return Ok(Some(trim_newline(
            std::os::unix::ffi::OsStringExt::into_vec(v),
        )));
    }
    Ok(None)
}

fn has_terminal() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

fn prompt(label: &str) -> Result<SecretBytes, Failure> {
    tracing::debug!("asking at the terminal: {}", label.trim_end());
    let _restore_on_signal = terminal::before_prompt();
    match rpassword::prompt_password(label) {
        Ok(s) => Ok(SecretBytes::new(s.into_bytes())),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => terminal::interrupted(),
        Err(e) => Err(fail(
            Exit::Other,
            format!("cannot read from the terminal: {e}"),
        )),
    }
}

/// Asks twice at a hidden prompt; the answers must match.
pub(crate) fn prompt_twice(first: &str, second: &str) -> Result<SecretBytes, Failure> {
    if !has_terminal() {
        return Err(fail(Exit::Other, "no terminal to prompt on"));
    }
    let a = prompt(first)?;
    let b = prompt(second)?;
    if a != b {
        return Err(fail(Exit::Usage, "the two entries do not match"));
    }
    Ok(a)
}

const NO_SOURCE: &str = "no passphrase: there is no terminal to prompt on, none of VAULT_PASSPHRASE_FILE, VAULT_PASSPHRASE_COMMAND or VAULT_PASSPHRASE is set, and no agent is unlocked for this vault (`vault unlock`)";

/// The passphrase of an existing vault.
pub(crate) fn current() -> Result<SecretBytes, Failure> {
    if let Some(p) = from_env("VAULT_PASSPHRASE")? {
        return Ok(p);
    }
    if !has_terminal() {
        return Err(fail(Exit::Other, NO_SOURCE));
    }
    prompt("vault passphrase: ")
}

fn check_new(p: SecretBytes) -> Result<SecretBytes, Failure> {
    if p.is_empty() {
        return Err(fail(Exit::Usage, "the passphrase cannot be empty"));
    }
    Ok(p)
}

/// The passphrase for a new vault.
pub(crate) fn new_for_init() -> Result<SecretBytes, Failure> {
    if let Some(p) = from_env("VAULT_NEW_PASSPHRASE")? {
        return check_new(p);
    }
    if let Some(p) = from_env("VAULT_PASSPHRASE")? {
        return check_new(p);
    }
    if !has_terminal() {
        return Err(fail(Exit::Other, NO_SOURCE));
    }
    check_new(prompt_twice(
        "new vault passphrase: ",
        "repeat the passphrase: ",
    )?)
}

/// A replacement passphrase.
pub(crate) fn new_passphrase() -> Result<SecretBytes, Failure> {
    if let Some(p) = from_env("VAULT_NEW_PASSPHRASE")? {
        return check_new(p);
    }
    if !has_terminal() {
        return Err(fail(
            Exit::Other,
            "no new passphrase: there is no terminal to prompt on and none of VAULT_NEW_PASSPHRASE_FILE, VAULT_NEW_PASSPHRASE_COMMAND or VAULT_NEW_PASSPHRASE is set",
        ));
    }
    check_new(prompt_twice(
        "new passphrase: ",
        "repeat the new passphrase: ",
    )?)
}

/// An invitation code (`vault member join`): VAULT_INVITATION_FILE / _COMMAND /
/// VAULT_INVITATION, or a hidden prompt. Dashes and whitespace are ignored and letters taken in
/// either case, as the code may have been copied by hand.
pub(crate) fn invitation_code() -> Result<SecretBytes, Failure> {
    let raw = match from_env("VAULT_INVITATION")? {
        Some(p) => p,
        None if has_terminal() => prompt("invitation code: ")?,
        None => {
            return Err(fail(
                Exit::Other,
                "no invitation code: there is no terminal to prompt on and none of VAULT_INVITATION_FILE, VAULT_INVITATION_COMMAND or VAULT_INVITATION is set",
            ));
        }
    };
    Ok(SecretBytes::new(
        raw.expose_secret()
            .iter()
            .filter(|b| !(b.is_ascii_whitespace() || **b == b'-'))
            .map(u8::to_ascii_lowercase)
            .collect(),
    ))
}

/// The passphrase of an export file: for a new export (`twice`), asked twice on a terminal; for
/// one being read, once. VAULT_EXPORT_PASSPHRASE_FILE, _COMMAND or VAULT_EXPORT_PASSPHRASE
/// otherwise, never the vault's own.
pub(crate) fn export_passphrase(twice: bool) -> Result<SecretBytes, Failure> {
    if let Some(p) = from_env("VAULT_EXPORT_PASSPHRASE")? {
        return check_new(p);
    }
    if !has_terminal() {
        return Err(fail(
            Exit::Other,
            "no export passphrase: there is no terminal to prompt on and none of VAULT_EXPORT_PASSPHRASE_FILE, VAULT_EXPORT_PASSPHRASE_COMMAND or VAULT_EXPORT_PASSPHRASE is set",
        ));
    }
    if twice {
        check_new(prompt_twice(
            "export passphrase: ",
            "repeat the export passphrase: ",
        )?)
    } else {
        prompt("export passphrase: ")
    }
}

/// The passphrase of a backup: VAULT_BACKUP_PASSPHRASE_FILE, _COMMAND or VAULT_BACKUP_PASSPHRASE,
/// or asked (twice for a new backup).
pub(crate) fn backup_passphrase(twice: bool) -> Result<SecretBytes, Failure> {
    if let Some(p) = from_env("VAULT_BACKUP_PASSPHRASE")? {
        return check_new(p);
    }
    if !has_terminal() {
        return Err(fail(
            Exit::Other,
            "no backup passphrase: there is no terminal to prompt on and none of VAULT_BACKUP_PASSPHRASE_FILE, VAULT_BACKUP_PASSPHRASE_COMMAND or VAULT_BACKUP_PASSPHRASE is set (or pass --use-vault-passphrase)",
        ));
    }
    if twice {
        check_new(prompt_twice(
            "backup passphrase: ",
            "repeat the backup passphrase: ",
        )?)
    } else {
        prompt("backup passphrase: ")
    }
}
