//! Reading secrets to import: the input formats (`dotenv`, `json`, `jsonl`), each parsed in full
//! and checked (names, empty values, duplicates) before anything is written, with errors that
//! give a line number and never a value.

mod dotenv;
mod json;

use std::collections::HashMap;

use vault_store::{MAX_VALUE_LEN, SecretBytes};

/// One secret read from the input.
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) value: SecretBytes,
    /// The line the entry starts on (1-based).
    pub(crate) line: usize,
}

/// Why the input cannot be imported: where, and what (never a value).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

pub(crate) fn error(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// The input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// `NAME=value` lines: `#` comments, an optional `export `, values unquoted, in single
    /// quotes (literal) or double quotes (with \n \r \t \" \\ escapes); no variable expansion.
    Dotenv,
    /// One JSON object of name → string value.
    Json,
    /// JSON lines: one object `{"name": …, "value": …}` per line.
    Jsonl,
}

/// Parses `input` and checks every entry: a valid new name, a value within the limit and not
/// empty unless `allow_empty`, no name twice. All errors are collected (up to a bound), in
/// input order.
pub(crate) fn parse(
    input: &[u8],
    format: Format,
    allow_empty: bool,
) -> Result<Vec<Entry>, Vec<ParseError>> {
    // A line that cannot be read is an error, and the lines after it are still checked.
    let (entries, mut errors) = match format {
        Format::Dotenv => dotenv::parse_all(input),
        Format::Json => match json::parse_object(input) {
            Ok(entries) => (entries, Vec::new()),
            Err(e) => (Vec::new(), vec![e]),
        },
        Format::Jsonl => json::parse_lines_all(input),
    };
    // Names outside the current syntax: errors unless the vault already holds them, which is
    // known only once it is open ([`new_name_errors`]); reported with the others if there are any.
    let mut held = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for e in &entries {
        if let Err(reason) = vault_format::payload::check_name(&e.name) {
            errors.push(error(
                e.line,
                format!("invalid name {:?}: {reason}", e.name),
            ));
        } else if let Err(reason) = vault_store::check_new_name(&e.name) {
            held.push(error(
                e.line,
                format!(
                    "invalid name {:?}: {reason} (taken only for a secret the vault already holds)",
                    e.name
                ),
            ));
        }
        if e.value.is_empty() && !allow_empty {
            errors.push(error(
                e.line,
                format!(
                    "{:?} has an empty value (pass --allow-empty to import empty values)",
                    e.name
                ),
            ));
        }
        if e.value.len() > MAX_VALUE_LEN {
            errors.push(error(
                e.line,
                format!(
                    "the value of {:?} is larger than the limit of {MAX_VALUE_LEN} bytes",
                    e.name
                ),
            ));
        }
        if let Some(first) = seen.insert(&e.name, e.line) {
            errors.push(error(
                e.line,
                format!("{:?} is also on line {first}: each name once", e.name),
            ));
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        errors.extend(held);
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// The entries that would add a secret under a name outside the current syntax (`is_new` says
/// which names the vault does not hold), as errors with their line numbers.
pub(crate) fn new_name_errors(
    entries: &[Entry],
    is_new: impl Fn(usize) -> bool,
) -> Vec<ParseError> {
    entries
        .iter()
        .enumerate()
        .filter(|(i, _)| is_new(*i))
        .filter_map(|(_, e)| {
            let reason = vault_store::check_new_name(&e.name).err()?;
            Some(error(
                e.line,
                format!("invalid name {:?}: {reason}", e.name),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A value in dotenv's double quotes.
    fn quoted(value: &[u8]) -> Vec<u8> {
        let mut out = vec![b'"'];
        for &b in value {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                other => out.push(other),
            }
        }
        out.push(b'"');
        out
    }

    proptest! {
        #[test]
        fn any_input_is_parsed_or_refused_without_panicking(input in prop::collection::vec(any::<u8>(), 0..300)) {
            for format in [Format::Dotenv, Format::Json, Format::Jsonl] {
                let _ = parse(&input, format, false);
            }
        }

        #[test]
        fn dotenv_and_json_carry_any_value_exactly(
            values in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 1..8)
        ) {
            let mut dotenv = Vec::new();
            let mut jsonl = Vec::new();
            for (i, v) in values.iter().enumerate() {
                dotenv.extend_from_slice(format!("name{i}=").as_bytes());
                dotenv.extend_from_slice(&quoted(v));
                dotenv.push(b'\n');
                if let Ok(text) = std::str::from_utf8(v) {
                    let line = serde_json::json!({"name": format!("name{i}"), "value": text});
                    jsonl.extend_from_slice(line.to_string().as_bytes());
                    jsonl.push(b'\n');
                }
            }
            let got = parse(&dotenv, Format::Dotenv, false).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(got.len(), values.len());
            for (e, v) in got.iter().zip(&values) {
                prop_assert_eq!(e.value.expose_secret(), &v[..]);
            }
            let got = parse(&jsonl, Format::Jsonl, false).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let texts: Vec<&Vec<u8>> = values.iter().filter(|v| std::str::from_utf8(v).is_ok()).collect();
            prop_assert_eq!(got.len(), texts.len());
            for (e, v) in got.iter().zip(texts) {
                prop_assert_eq!(e.value.expose_secret(), &v[..]);
            }
        }
    }
}
