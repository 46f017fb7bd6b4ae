//! `vault run [--only NAME,…] [--prefix P] -- COMMAND ARGS…`: runs a command with secrets in its
//! environment, and writes their values nowhere else. The command replaces `vault` (exec): its
//! exit code and signals are the command's own, and no other process holds the values. With an
//! agent unlocked, the values come from it through a pipe (`vault env-values`, hidden).

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;

use vault_store::{SecretBytes, Vault};

use crate::cli::Cli;
use crate::exit::Exit;
use crate::location::{current_passphrase, with_vault};
use crate::output::Stdout;
use crate::{Failure, fail};

/// The tag that names a secret's variable instead of the mapping.
pub(crate) const ENV_TAG: &str = "env-var";

/// The variable for the secret `name` (its prefix already dropped): letters upper-cased, the
/// name syntax's punctuation (`/ - . @ +`) made `_`; what is left must be a portable variable
/// name (letters, digits and `_`, not starting with a digit). So every name of the current syntax
/// maps, except one starting with a digit.
pub(crate) fn variable(name: &str) -> Option<String> {
    let v: String = name
        .chars()
        .map(|c| {
            if vault_format::payload::NAME_PUNCTUATION.contains(c) {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    let valid = !v.is_empty()
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !v.starts_with(|c: char| c.is_ascii_digit());
    valid.then_some(v)
}

fn valid_variable(v: &str) -> bool {
    variable(v).as_deref() == Some(v)
}

/// Variables a secret may not set: they change which program runs or what it loads (a secret
/// anyone with write access to the vault can set would take over the command).
pub(crate) fn reserved(var: &str) -> bool {
    ["PATH", "HOME", "SHELL", "IFS", "ENV", "BASH_ENV", "CDPATH"].contains(&var)
        || var.starts_with("LD_")
        || var.starts_with("DYLD_")
}

/// Longest value an environment string may hold on Linux (`MAX_ARG_STRLEN`, 128 KiB, with the
/// name, `=` and the final NUL).
const MAX_ENV_STRING: usize = 128 * 1024;

/// The chosen secrets as (variable, value), checked: each maps to a valid variable that is not
/// reserved, no two to the same, no value holds a NUL byte or is too long for an environment.
fn chosen(
    v: &Vault,
    only: &[String],
    prefix: Option<&str>,
) -> vault_store::Result<Vec<(String, SecretBytes)>> {
    let refuse = |reason: String| vault_store::Error::Invalid {
        what: "variable",
        reason,
    };
    let names: Vec<String> = if only.is_empty() {
        v.list(false)?.into_iter().map(|i| i.name).collect()
    } else {
        // A name given twice is one secret, not two mapping to one variable.
        let mut seen = std::collections::HashSet::new();
        only.iter().filter(|n| seen.insert(*n)).cloned().collect()
    };
    let mut out: Vec<(String, String, SecretBytes)> = Vec::new();
    for name in names {
        let rest = match prefix {
            Some(p) => match name.strip_prefix(p) {
                Some(r) => r.to_string(),
                None if only.is_empty() => continue,
                None => {
                    return Err(refuse(format!(
                        "{name:?} does not start with the prefix {p:?}"
                    )));
                }
            },
            None => name.clone(),
        };
        let s = v.get(&name)?;
        let var = match s.tags.iter().find(|t| t.key == ENV_TAG) {
            Some(t) if valid_variable(&t.value) => t.value.clone(),
            Some(t) => {
                return Err(refuse(format!(
                    "secret {name:?}: its {ENV_TAG} tag {:?} is not a valid variable name (letters, digits and _, not starting with a digit)",
                    t.value
                )));
            }
            None => variable(&rest).ok_or_else(|| {
                refuse(format!(
                    "secret {name:?} maps to no valid variable name; give it a tag {ENV_TAG}=NAME, or leave it out with --only or --prefix"
                ))
            })?,
        };
        if reserved(&var) {
            return Err(refuse(format!(
                "secret {name:?} would set {var}, which decides what program runs or what it loads; give it another name with a tag {ENV_TAG}=NAME, or leave it out"
            )));
        }
        if s.value.expose_secret().contains(&0) {
            return Err(refuse(format!(
                "secret {name:?} holds a NUL byte, which no environment variable can hold"
            )));
        }
        if var.len() + 1 + s.value.len() + 1 > MAX_ENV_STRING {
            return Err(refuse(format!(
                "secret {name:?} is {} bytes, more than an environment variable can hold (128 KiB); use `vault inject` to put it in a file",
                s.value.len()
            )));
        }
        if let Some((_, other, _)) = out.iter().find(|(v, _, _)| *v == var) {
            return Err(refuse(format!(
                "secrets {other:?} and {name:?} both map to {var}; give one a tag {ENV_TAG}=NAME"
            )));
        }
        out.push((var, name, s.value));
    }
    Ok(out.into_iter().map(|(v, _, s)| (v, s)).collect())
}

/// `vault env-values` (hidden): the chosen secrets as `VARIABLE=value` records ending in NUL,
/// on stdout, which must not be a terminal: what `vault run` reads from an agent.
pub(crate) fn env_values(cli: &Cli, only: &[String], prefix: Option<&str>) -> Result<(), Failure> {
    if crate::output::stdout_is_terminal() {
        return Err(fail(
            Exit::Usage,
            "env-values writes values for `vault run`, not for a terminal",
        ));
    }
    let pass = current_passphrase(cli)?;
    let vars = with_vault(cli, &pass, false, |v| chosen(v, only, prefix))?;
    let mut out = Stdout::lock();
    for (var, value) in &vars {
        out.write(var.as_bytes())?;
        out.write(b"=")?;
        out.write(value.expose_secret())?;
        out.write(b"\0")?;
    }
    out.finish()
}

/// `vault run`.
pub(crate) fn run(
    cli: &Cli,
    only: &[String],
    prefix: Option<&str>,
    command: &[OsString],
) -> Result<(), Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(fail(Exit::Usage, "vault run needs a command after --"));
    };
    let vars: Vec<(OsString, OsString)> = match crate::agent::client::env_values(cli, only, prefix)?
    {
        Some(records) => records,
        None => {
            let pass = current_passphrase(cli)?;
            let vars = with_vault(cli, &pass, false, |v| chosen(v, only, prefix))?;
            vars.into_iter()
                .map(|(k, v)| {
                    (
                        OsString::from(k),
                        OsString::from_vec(v.expose_secret().to_vec()),
                    )
                })
                .collect()
        }
    };
    // Replaces this process: nothing of vault's is left running with the values. The vault's
    // own passphrase sources are not handed on (the command gets secrets, not the key to all).
    let mut cmd = std::process::Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| k.starts_with("VAULT_") && k.contains("PASSPHRASE"))
        {
            cmd.env_remove(k);
        }
    }
    let err = cmd.args(args).envs(vars).exec();
    let code = if err.kind() == std::io::ErrorKind::NotFound {
        Exit::NotFound
    } else {
        Exit::Other
    };
    Err(fail(
        code,
        format!("cannot run {}: {err}", program.to_string_lossy()),
    ))
}

/// Reads `VARIABLE=value` NUL-ended records.
pub(crate) fn parse_records(mut r: impl Read) -> std::io::Result<Vec<(OsString, OsString)>> {
    let mut all = Vec::new();
    r.read_to_end(&mut all)?;
    let records = all
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .filter_map(|r| {
            let eq = r.iter().position(|b| *b == b'=')?;
            let (k, v) = r.split_at(eq);
            Some((
                OsString::from_vec(k.to_vec()),
                OsString::from_vec(v.get(1..).unwrap_or_default().to_vec()),
            ))
        })
        .collect();
    zeroize::Zeroize::zeroize(&mut all);
    Ok(records)
}
