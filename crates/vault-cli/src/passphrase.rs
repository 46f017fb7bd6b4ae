//! Where passphrases come from: a hidden prompt on the terminal, or for scripts a file, a
//! command or (least safe) an environment variable. Never from the command line.

use std::io::Read;
use std::process::{Command, Stdio};

use vault_crypto::SecretBytes;

use crate::output::stderr_line;
use crate::{Failure, fail};

/// The most bytes read from a passphrase source.
const MAX_PASSPHRASE: u64 = 64 * 1024;

/// Strips one trailing newline (`\n` or `\r\n`), as files and commands usually end with one.
fn trim_newline(mut v: Vec<u8>) -> SecretBytes {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    SecretBytes::new(v)
}

fn from_env(prefix: &str) -> Result<Option<SecretBytes>, Failure> {
    if let Some(path) = std::env::var_os(format!("{prefix}_FILE")).filter(|v| !v.is_empty()) {
        let f = std::fs::File::open(&path).map_err(|e| {
            fail(
                1,
                format!("cannot read {prefix}_FILE {}: {e}", path.to_string_lossy()),
            )
        })?;
        if let Ok(meta) = f.metadata() {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                stderr_line(format!(
                    "warning: {prefix}_FILE {} is readable by other users (mode {:o}); chmod 600 it",
                    path.to_string_lossy(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        let mut buf = Vec::with_capacity(256);
        f.take(MAX_PASSPHRASE)
            .read_to_end(&mut buf)
            .map_err(|e| fail(1, format!("cannot read {prefix}_FILE: {e}")))?;
        return Ok(Some(trim_newline(buf)));
    }
    if let Some(cmd) = std::env::var_os(format!("{prefix}_COMMAND")).filter(|v| !v.is_empty()) {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| fail(1, format!("cannot run {prefix}_COMMAND: {e}")))?;
        if !out.status.success() {
            return Err(fail(1, format!("{prefix}_COMMAND failed ({})", out.status)));
        }
        return Ok(Some(trim_newline(out.stdout)));
    }
    if let Some(v) = std::env::var_os(prefix) {
        return Ok(Some(SecretBytes::new(
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
    rpassword::prompt_password(label)
        .map(|s| SecretBytes::new(s.into_bytes()))
        .map_err(|e| fail(1, format!("cannot read from the terminal: {e}")))
}

/// Asks twice at a hidden prompt; the answers must match.
pub(crate) fn prompt_twice(first: &str, second: &str) -> Result<SecretBytes, Failure> {
    if !has_terminal() {
        return Err(fail(1, "no terminal to prompt on"));
    }
    let a = prompt(first)?;
    let b = prompt(second)?;
    if a != b {
        return Err(fail(2, "the two entries do not match"));
    }
    Ok(a)
}

const NO_SOURCE: &str = "no passphrase: there is no terminal to prompt on and none of VAULT_PASSPHRASE_FILE, VAULT_PASSPHRASE_COMMAND or VAULT_PASSPHRASE is set";

/// The passphrase of an existing vault.
pub(crate) fn current() -> Result<SecretBytes, Failure> {
    if let Some(p) = from_env("VAULT_PASSPHRASE")? {
        return Ok(p);
    }
    if !has_terminal() {
        return Err(fail(1, NO_SOURCE));
    }
    prompt("vault passphrase: ")
}

fn check_new(p: SecretBytes) -> Result<SecretBytes, Failure> {
    if p.is_empty() {
        return Err(fail(2, "the passphrase cannot be empty"));
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
        return Err(fail(1, NO_SOURCE));
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
            1,
            "no new passphrase: there is no terminal to prompt on and none of VAULT_NEW_PASSPHRASE_FILE, VAULT_NEW_PASSPHRASE_COMMAND or VAULT_NEW_PASSPHRASE is set",
        ));
    }
    check_new(prompt_twice(
        "new passphrase: ",
        "repeat the new passphrase: ",
    )?)
}
