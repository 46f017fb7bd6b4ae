//! Commands on secrets: set, get, list, rm, undelete, destroy, history, max-versions.

use std::io::Read;

use vault_store::{MAX_VALUE_LEN, SecretBytes, SetOptions, Tag};

use crate::cli::Cli;
use crate::exit::Exit;
use crate::location::{current_passphrase, with_vault};
use crate::output::{Stdout, Table, stderr_line};
use crate::text::format_time;
use crate::{Failure, fail, passphrase};

/// Reads a secret value: all of stdin when it is not a terminal, else a hidden prompt, twice.
/// An empty value is refused unless `allow_empty`: `vault set NAME </dev/null` is a mistake far
/// more often than a wish to store nothing.
fn read_value(name: &str, allow_empty: bool, trim: bool) -> Result<SecretBytes, Failure> {
    let from_stdin = !crate::output::stdin_is_terminal();
    let mut value = read_value_from_user(name)?;
    if from_stdin {
        let bytes = value.expose_secret();
        let cut = match bytes {
            [.., b'\r', b'\n'] => 2,
            [.., b'\n'] => 1,
            _ => 0,
        };
        if trim && cut > 0 {
            value = SecretBytes::from_slice(bytes.get(..bytes.len() - cut).unwrap_or_default());
        } else if cut > 0 && crate::output::stderr_is_terminal() {
            stderr_line(
                "note: the value ends with a newline, which is stored with it (--trim drops it; printf %s avoids it)",
            );
        }
    }
    if value.is_empty() && !allow_empty {
        return Err(fail(
            Exit::Usage,
            format!(
                "refusing to store an empty value for {name} (empty or closed stdin, or nothing typed); pass --allow-empty to store one"
            ),
        ));
    }
    Ok(value)
}

fn read_value_from_user(name: &str) -> Result<SecretBytes, Failure> {
    if !crate::output::stdin_is_terminal() {
        // Full capacity up front: a buffer grown while reading leaves copies of the secret in
        // freed memory.
        let mut buf = Vec::with_capacity(MAX_VALUE_LEN + 1);
        crate::output::stdin()
            .take(MAX_VALUE_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| {
                fail(
                    Exit::Other,
                    format!("cannot read the value from stdin: {e}"),
                )
            })?;
        let value = SecretBytes::new(buf);
        if value.len() > MAX_VALUE_LEN {
            return Err(fail(
                Exit::Usage,
                format!("the value is larger than the limit of {MAX_VALUE_LEN} bytes"),
            ));
        }
        return Ok(value);
    }
    passphrase::prompt_twice(&format!("value for {name}: "), "repeat the value: ")
}

/// `vault set`: the whole value is read before the vault is opened.
pub(crate) fn set(
    cli: &Cli,
    name: &str,
    expect_version: &Option<u32>,
    tags: &[Tag],
    allow_empty: bool,
    trim: bool,
) -> Result<(), Failure> {
    // What can be checked is, before a passphrase is asked for (the name's syntax was, by clap,
    // as far as it can be: a name refused only by the current syntax may be an existing secret's,
    // which the vault decides).
    vault_format::payload::check_tags(tags)
        .map_err(|why| fail(Exit::Usage, format!("invalid tags: {why}")))?;
    // The variable `vault run` sets from this secret, checked now rather than at the run.
    if let Some(t) = tags.iter().find(|t| t.key == super::run::ENV_TAG)
        && (super::run::variable(&t.value).as_deref() != Some(t.value.as_str())
            || super::run::reserved(&t.value))
    {
        return Err(fail(
            Exit::Usage,
            format!(
                "tag {}={:?}: not a variable `vault run` can set (letters, digits and _, not starting with a digit; not PATH, HOME, LD_… and the like)",
                super::run::ENV_TAG,
                t.value
            ),
        ));
    }
    let pass = current_passphrase(cli)?;
    // The whole value before the vault is opened: a slow producer must not keep an
    // unlocked handle waiting on a master key and log that another process can rotate
    // or compact meanwhile.
    let value = read_value(name, allow_empty, trim)?;
    let version = with_vault(cli, &pass, false, |v| {
        v.set(
            name,
            value.duplicate(),
            SetOptions {
                expected_version: *expect_version,
                tags: tags.to_vec(),
            },
        )
    })?;
    stderr_line(format!("stored {name} version {version}"));
    Ok(())
}

/// `vault get`.
pub(crate) fn get(cli: &Cli, name: &str, version: &Option<u32>) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    let s = with_vault(cli, &pass, false, |v| match version {
        Some(n) => v.get_version(name, *n),
        None => v.get(name),
    })?;
    let mut out = Stdout::lock();
    out.write(s.value.expose_secret())?;
    if crate::output::stdout_is_terminal() {
        out.write(b"\n")?;
    }
    out.finish()?;
    Ok(())
}

/// `vault list`.
pub(crate) fn list(cli: &Cli, all: &bool, json: bool) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    let listed = with_vault(cli, &pass, false, |v| v.list(*all))?;
    if !json {
        let mut table = Table::new();
        for s in listed {
            let mut row = vec![s.name];
            if s.deleted {
                row.push("(deleted)".into());
            }
            table.row(row)?;
        }
        return table.finish();
    }
    let mut out = Stdout::lock();
    for s in listed {
        let line = {
            format!(
                "{}\n",
                serde_json::json!({
                    "name": s.name,
                    "latest": s.latest,
                    "versions": s.versions,
                    "deleted": s.deleted,
                })
            )
        };
        out.write(line.as_bytes())?;
    }
    out.finish()?;
    Ok(())
}

/// `vault rm`.
pub(crate) fn rm(cli: &Cli, name: &str) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    with_vault(cli, &pass, false, |v| v.delete(name))?;
    stderr_line(format!(
        "deleted {name} (history kept; `vault undelete {name}` restores it)"
    ));
    Ok(())
}

/// `vault undelete`.
pub(crate) fn undelete(cli: &Cli, name: &str) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    with_vault(cli, &pass, false, |v| v.undelete(name))?;
    stderr_line(format!("restored {name}"));
    Ok(())
}

/// `vault destroy`.
pub(crate) fn destroy(cli: &Cli, name: &str, yes: bool) -> Result<(), Failure> {
    if !yes {
        crate::output::confirm(
            &format!("destroy {name} and all its versions? This cannot be undone."),
            "destroy",
        )?;
    }
    let pass = current_passphrase(cli)?;
    with_vault(cli, &pass, false, |v| v.destroy(name))?;
    stderr_line(format!("destroyed {name} and all its versions"));
    Ok(())
}

/// `vault history`.
pub(crate) fn history(cli: &Cli, name: &str, json: bool) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    let history = with_vault(cli, &pass, false, |v| v.history(name))?;
    if !json {
        let mut table = Table::new();
        for h in history {
            let tags: Vec<String> = h
                .tags
                .iter()
                .map(|t| format!("{}={}", t.key, t.value))
                .collect();
            table.row(vec![
                h.version.to_string(),
                format_time(h.created_ms),
                format!("{} bytes", h.size),
                tags.join(","),
            ])?;
        }
        return table.finish();
    }
    let mut out = Stdout::lock();
    for h in history {
        {
            let tags: serde_json::Map<String, serde_json::Value> = h
                .tags
                .iter()
                .map(|t| (t.key.clone(), serde_json::Value::String(t.value.clone())))
                .collect();
            let line = serde_json::json!({
                "version": h.version,
                "created": format_time(h.created_ms),
                "created_ms": h.created_ms,
                "size": h.size,
                "tags": tags,
            });
            out.write(format!("{line}\n").as_bytes())?;
        }
    }
    out.finish()?;
    Ok(())
}

/// `vault max-versions`.
pub(crate) fn max_versions(cli: &Cli, count: &u32) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    with_vault(cli, &pass, false, |v| v.set_max_versions(*count))?;
    stderr_line(format!("keeping at most {count} versions of each secret"));
    Ok(())
}
