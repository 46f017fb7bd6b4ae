//! `vault import`: many secrets from a dotenv or JSON file (or stdin) with one unlock, checked in
//! full before anything is written, and committed with check-and-set against what was compared:
//! in one commit, or for a very large import in commits of bounded size.

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
        crate::output::stdin()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
            .map_err(cannot)?;
    } else {
        // A regular file over the limit is refused before any of it is read.
        if std::fs::metadata(source).is_ok_and(|m| m.is_file() && m.len() > MAX_INPUT) {
            return Err(fail(
                Exit::Usage,
                format!("{what} is larger than the import limit of {MAX_INPUT} bytes; split it"),
            ));
        }
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

/// The most value bytes, and entries, in one commit: well inside the format's bound on a frame
/// (256 MiB) with every record's own overhead added.
const CHUNK_BYTES: usize = 64 << 20;
const CHUNK_ENTRIES: usize = 250_000;

/// Splits the changes into commits of bounded size.
fn chunked<'a>(
    changes: &'a [(&'a Entry, u32)],
    max_bytes: usize,
    max_entries: usize,
) -> Vec<&'a [(&'a Entry, u32)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (e, _)) in changes.iter().enumerate() {
        let len = e.value.len() + e.name.len();
        if i > start && (bytes + len > max_bytes || i - start >= max_entries) {
            out.extend(changes.get(start..i));
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < changes.len() {
        out.extend(changes.get(start..));
    }
    out
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

/// Prints the input's errors (the first [`MAX_ERRORS_SHOWN`]) and says nothing was imported.
fn report(errors: &[import::ParseError]) -> Failure {
    for e in errors.iter().take(MAX_ERRORS_SHOWN) {
        stderr_line(format!("vault: import: {e}"));
    }
    if errors.len() > MAX_ERRORS_SHOWN {
        stderr_line(format!(
            "vault: import: … and {} more errors",
            errors.len() - MAX_ERRORS_SHOWN
        ));
    }
    fail(
        Exit::Usage,
        format!("nothing imported: {} error(s) in the input", errors.len()),
    )
}

/// `vault import`.
pub(crate) fn import(
    cli: &Cli,
    source: &Path,
    format: Format,
    dry_run: bool,
    allow_empty: bool,
) -> Result<(), Failure> {
    // All of the input is read and checked before the passphrase is asked for and the vault
    // opened: nothing is written unless every entry is valid, a slow producer holds no unlocked
    // handle, and a mistake in the input is reported before any passphrase is typed.
    let input = read_input(source)?;
    let entries = match import::parse(input.expose_secret(), format, allow_empty) {
        Ok(entries) => entries,
        Err(errors) => return Err(report(&errors)),
    };
    let pass = current_passphrase(cli)?;
    drop(input);
    let bad_names = std::cell::RefCell::new(Vec::new());
    let planned = with_vault(cli, &pass, false, |v| {
        let comparing = crate::progress::Bar::spinner("comparing with the vault");
        let planned = plan(v, &entries)?;
        drop(comparing);
        // Names outside the current syntax are taken only for secrets the vault holds.
        let bad = import::new_name_errors(&entries, |i| {
            planned.get(i).is_some_and(|(c, _)| *c == Change::Add)
        });
        if !bad.is_empty() {
            *bad_names.borrow_mut() = bad;
            return Err(Error::Invalid {
                what: "import",
                reason: "invalid names".into(),
            });
        }
        if dry_run {
            return Ok(planned);
        }
        let changes: Vec<(&Entry, u32)> = entries
            .iter()
            .zip(&planned)
            .filter(|(_, (change, _))| *change != Change::Same)
            .map(|(e, (_, expected))| (e, *expected))
            .collect();
        // A commit is one log frame, whose size the format bounds: a large import goes in
        // chunks, each all or nothing. Starting over (after a rotation by another process)
        // compares again, so entries already committed count as unchanged.
        let chunks = chunked(&changes, CHUNK_BYTES, CHUNK_ENTRIES);
        let total = chunks.len();
        // One commit cannot say how far it has got: a spinner then, a bar over several.
        let bar = if total > 1 {
            crate::progress::Bar::counted(
                "importing",
                crate::progress::Unit::Records,
                Some(changes.len() as u64),
            )
        } else {
            crate::progress::Bar::spinner(&format!("importing {} secrets", changes.len()))
        };
        for (i, chunk) in chunks.into_iter().enumerate() {
            let in_chunk = chunk.len() as u64;
            let mut batch = Batch::new();
            for (e, expected) in chunk {
                batch.set(
                    &e.name,
                    e.value.duplicate(),
                    SetOptions {
                        expected_version: Some(*expected),
                        ..SetOptions::default()
                    },
                );
            }
            // A concurrent writer that changed an entry after it was compared makes it a
            // conflict (exit 7), with nothing of this chunk written.
            v.commit(batch).inspect_err(|_| {
                if i > 0 {
                    stderr_line(format!(
                        "vault: import: {i} of {total} commits were made before this error; importing again completes it"
                    ));
                }
            })?;
            bar.inc(in_chunk);
        }
        Ok(planned)
    });
    let bad_names = bad_names.into_inner();
    if !bad_names.is_empty() {
        return Err(report(&bad_names));
    }
    let planned = planned?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, len: usize) -> Entry {
        Entry {
            name: name.into(),
            value: SecretBytes::from_slice(&vec![b'v'; len]),
            line: 1,
        }
    }

    #[test]
    fn chunks_are_bounded_and_cover_every_change_once() {
        let entries: Vec<Entry> = (0..10).map(|i| entry(&format!("n{i}"), 8)).collect();
        let changes: Vec<(&Entry, u32)> = entries.iter().map(|e| (e, 0)).collect();
        for (max_bytes, max_entries, expected) in [
            (1000, 1000, vec![10]),
            (1000, 4, vec![4, 4, 2]),
            (25, 1000, vec![2, 2, 2, 2, 2]),
            // An entry larger than the bound still goes, alone.
            (1, 1000, vec![1; 10]),
        ] {
            let chunks = chunked(&changes, max_bytes, max_entries);
            let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert_eq!(sizes, expected, "{max_bytes} {max_entries}");
            let names: Vec<&str> = chunks
                .iter()
                .flat_map(|c| c.iter().map(|(e, _)| e.name.as_str()))
                .collect();
            assert_eq!(names.len(), 10);
            assert!(
                names
                    .windows(2)
                    .all(|w| w[0] < w[1] || w[0].len() < w[1].len())
            );
        }
        assert!(chunked(&[], 10, 10).is_empty());
    }
}
