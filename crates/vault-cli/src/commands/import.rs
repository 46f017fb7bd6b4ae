//! `vault import`: many secrets from a dotenv or JSON file (or stdin) with one unlock, checked in
//! full before anything is written, and committed with check-and-set against what was compared.

use std::io::Read;
use std::path::Path;

use vault_store::{Batch, Error, SecretBytes, SetOptions, Vault};

use crate::cli::Cli;
use crate::exit::Exit;
use crate::import::{self, Entry, Format};
use crate::location::{current_passphrase, with_vault};
use crate::output::{Stdout, stderr_line};
use crate::{Failure, fail};

/// The most input read: enough for millions of small secrets, short of exhausting memory on an
/// endless stream.
const MAX_INPUT: u64 = 1 << 30;

/// How many errors are listed before the rest are only counted.
const MAX_ERRORS_SHOWN: usize = 20;

/// Reads all of `source` (`-`: stdin) into a buffer that is zeroized when dropped.
fn read_input(source: &Path) -> Result<SecretBytes, Failure> {
    let what = if source == Path::new("-") {
        "stdin".to_string()
    } else {
        source.display().to_string()
    };
    let cannot = |e: std::io::Error| fail(Exit::Other, format!("cannot read {what}: {e}"));
    let mut buf = Vec::new();
    if source == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
            .map_err(cannot)?;
    } else {
        std::fs::File::open(source)
            .map_err(cannot)?
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
            .map_err(cannot)?;
    }
    let buf = SecretBytes::new(buf);
    if buf.len() as u64 > MAX_INPUT {
        return Err(fail(
            Exit::Usage,
            format!("{what} is larger than the import limit of {MAX_INPUT} bytes; split it"),
        ));
    }
    Ok(buf)
}

/// What importing one entry does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Modify,
    Restore,
    Same,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::Add => "add",
            Change::Modify => "change",
            Change::Restore => "restore",
            Change::Same => "unchanged",
        }
    }
}

/// Compares every entry with the vault: what it would do, and the version a write expects.
fn plan(v: &Vault, entries: &[Entry]) -> vault_store::Result<Vec<(Change, u32)>> {
    let current: std::collections::HashMap<String, (u32, bool)> = v
        .list(true)?
        .into_iter()
        .map(|s| (s.name, (s.latest, s.deleted)))
        .collect();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let change = match current.get(&e.name) {
            None => (Change::Add, 0),
            Some(&(latest, true)) => (Change::Restore, latest),
            Some(&(latest, false)) => match v.get(&e.name) {
                Ok(s) if s.value.expose_secret() == e.value.expose_secret() => {
                    (Change::Same, latest)
                }
                Ok(_) => (Change::Modify, latest),
                // Its latest version was dropped or destroyed meanwhile: a write decides.
                Err(Error::NotFound { .. }) => (Change::Modify, latest),
                Err(e) => return Err(e),
            },
        };
        out.push(change);
    }
    Ok(out)
}

/// `vault import`.
pub(crate) fn import(
    cli: &Cli,
    source: &Path,
    format: Format,
    dry_run: bool,
    allow_empty: bool,
) -> Result<(), Failure> {
    let pass = current_passphrase(cli)?;
    // All of the input is read and checked before the vault is opened: nothing is written unless
    // every entry is valid, and a slow producer holds no unlocked handle.
    let input = read_input(source)?;
    let entries = match import::parse(input.expose_secret(), format, allow_empty) {
        Ok(entries) => entries,
        Err(errors) => {
            for e in errors.iter().take(MAX_ERRORS_SHOWN) {
                stderr_line(format!("vault: import: {e}"));
            }
            if errors.len() > MAX_ERRORS_SHOWN {
                stderr_line(format!(
                    "vault: import: … and {} more errors",
                    errors.len() - MAX_ERRORS_SHOWN
                ));
            }
            return Err(fail(
                Exit::Usage,
                format!("nothing imported: {} error(s) in the input", errors.len()),
            ));
        }
    };
    drop(input);
    let planned = with_vault(cli, &pass, false, |v| {
        let planned = plan(v, &entries)?;
        if dry_run {
            return Ok(planned);
        }
        let mut batch = Batch::new();
        for (e, (change, expected)) in entries.iter().zip(&planned) {
            if *change != Change::Same {
                batch.set(
                    &e.name,
                    e.value.duplicate(),
                    SetOptions {
                        expected_version: Some(*expected),
                        ..SetOptions::default()
                    },
                );
            }
        }
        // One commit: all or nothing. A concurrent writer that changed an entry after it was
        // compared makes it a conflict (exit 7), with nothing written.
        if !batch.is_empty() {
            v.commit(batch)?;
        }
        Ok(planned)
    })?;
    let count = |c: Change| planned.iter().filter(|(p, _)| *p == c).count();
    if dry_run {
        let mut out = Stdout::lock();
        for (e, (change, _)) in entries.iter().zip(&planned) {
            if *change != Change::Same {
                out.write(format!("{} {}\n", change.word(), e.name).as_bytes())?;
            }
        }
        out.finish()?;
    }
    stderr_line(format!(
        "{}{} added, {} changed, {} restored, {} unchanged",
        if dry_run {
            "dry run, nothing written: "
        } else {
            "imported: "
        },
        count(Change::Add),
        count(Change::Modify),
        count(Change::Restore),
        count(Change::Same),
    ));
    Ok(())
}
