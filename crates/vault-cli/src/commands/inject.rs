//! `vault inject [-i TEMPLATE] [-o FILE]`: renders a template whose `{{ vault:NAME }}`
//! references are replaced by the secrets' values (byte for byte), with one unlock; every
//! reference is read before anything is written, so a missing secret leaves no output. The
//! output file is created owner-only and appears only when complete (as every `--out`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use vault_store::SecretBytes;

use crate::cli::Cli;
use crate::exit::Exit;
use crate::location::{current_passphrase, with_vault};
use crate::outfile::OutFile;
use crate::output::Stdout;
use crate::{Failure, fail};

/// Largest template read.
const MAX_TEMPLATE: u64 = 16 << 20;

/// A piece of the template: text as it is, or a reference to the secret named.
enum Piece {
    Text(std::ops::Range<usize>),
    Secret(String),
}

/// Splits `t` into text and `{{ vault:NAME }}` references (spaces inside the braces optional;
/// `{{` not followed by `vault:` is text). An unterminated reference is an error naming its
/// line.
fn parse(t: &[u8]) -> Result<Vec<Piece>, Failure> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut text_from = 0;
    while let Some(off) = t
        .get(at..)
        .and_then(|r| r.windows(2).position(|w| w == b"{{"))
    {
        let open = at + off;
        let inner_from = open + 2;
        let rest = t.get(inner_from..).unwrap_or_default();
        let lead = rest.iter().take_while(|b| **b == b' ').count();
        if !rest.get(lead..).unwrap_or_default().starts_with(b"vault:") {
            // One brace on: in `{{{ vault:x }}` the reference starts at the second brace, and
            // the first is text.
            at = open + 1;
            continue;
        }
        let line = t
            .get(..open)
            .unwrap_or_default()
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        let Some(close) = rest.windows(2).position(|w| w == b"}}") else {
            return Err(fail(
                Exit::Usage,
                format!("template line {line}: a {{{{ vault:… reference is not closed with }}}}"),
            ));
        };
        let inner = rest.get(lead + 6..close).unwrap_or_default();
        let name = std::str::from_utf8(inner).map(str::trim).map_err(|_| {
            fail(
                Exit::Usage,
                format!("template line {line}: the name is not UTF-8"),
            )
        })?;
        if name.is_empty() || name.contains('\n') {
            return Err(fail(
                Exit::Usage,
                format!("template line {line}: a reference names no secret"),
            ));
        }
        // A name no vault can hold is a mistake in the template, found before any passphrase.
        if let Err(why) = vault_format::payload::check_name(name) {
            return Err(fail(
                Exit::Usage,
                format!("template line {line}: invalid name {name:?}: {why}"),
            ));
        }
        out.push(Piece::Text(text_from..open));
        out.push(Piece::Secret(name.to_string()));
        at = inner_from + close + 2;
        text_from = at;
    }
    out.push(Piece::Text(text_from..t.len()));
    Ok(out)
}

fn read_template(input: Option<&Path>) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    let (mut r, what): (Box<dyn Read>, String) =
        match input {
            None => (crate::output::stdin(), "stdin".into()),
            Some(p) if crate::output::is_stdin_path(p) => (crate::output::stdin(), "stdin".into()),
            Some(p) => (
                Box::new(std::fs::File::open(p).map_err(|e| {
                    fail(Exit::NotFound, format!("cannot read {}: {e}", p.display()))
                })?),
                p.display().to_string(),
            ),
        };
    r.by_ref()
        .take(MAX_TEMPLATE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fail(Exit::Other, format!("cannot read {what}: {e}")))?;
    if buf.len() as u64 > MAX_TEMPLATE {
        return Err(fail(Exit::Usage, format!("{what} is larger than 16 MiB")));
    }
    Ok(buf)
}

/// `vault inject`.
pub(crate) fn inject(
    cli: &Cli,
    input: Option<&Path>,
    out: Option<&PathBuf>,
) -> Result<(), Failure> {
    let template = read_template(input)?;
    let pieces = parse(&template)?;
    let mut names: Vec<&str> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Secret(n) => Some(n.as_str()),
            Piece::Text(_) => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let values: Vec<(String, SecretBytes)> = if names.is_empty() {
        Vec::new()
    } else {
        let pass = current_passphrase(cli)?;
        with_vault(cli, &pass, false, |v| {
            names
                .iter()
                .map(|n| Ok((n.to_string(), v.get(n)?.value)))
                .collect()
        })?
    };
    let value_of = |n: &str| values.iter().find(|(k, _)| k == n).map(|(_, v)| v);
    let write_all = |w: &mut dyn Write| -> std::io::Result<()> {
        for p in &pieces {
            match p {
                Piece::Text(r) => w.write_all(template.get(r.clone()).unwrap_or_default())?,
                Piece::Secret(n) => {
                    if let Some(v) = value_of(n) {
                        w.write_all(v.expose_secret())?;
                    }
                }
            }
        }
        Ok(())
    };
    match out {
        Some(path) => {
            let mut f = OutFile::create(path, &super::keys::guarded(cli)?)?;
            write_all(&mut f)
                .map_err(|e| fail(Exit::Other, format!("cannot write {}: {e}", path.display())))?;
            f.finish()
        }
        None => {
            let mut o = Stdout::lock();
            let mut buf = Vec::new();
            write_all(&mut buf).map_err(|e| fail(Exit::Other, e.to_string()))?;
            let buf = SecretBytes::new(buf);
            o.write(buf.expose_secret())?;
            o.finish()
        }
    }
}
