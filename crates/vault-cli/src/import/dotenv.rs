//! The dotenv format: `NAME=value` lines.
//!
//! - Blank lines and lines whose first non-blank character is `#` are skipped; `export ` before
//!   a name is allowed and ignored.
//! - The name is everything before the first `=`, without surrounding blanks.
//! - A value in double quotes may span lines and knows the escapes `\n`, `\r`, `\t`, `\"` and
//!   `\\` (any other backslash is kept as it is); a value in single quotes is taken literally and
//!   may span lines. After the closing quote only blanks and a `#` comment may follow.
//! - An unquoted value runs to the end of the line, without trailing blanks; ` #` (a blank, then
//!   `#`) starts a comment.
//! - Nothing is expanded: `$VAR` is text. Line ends may be `\n` or `\r\n`.

use vault_store::SecretBytes;

use super::{Entry, ParseError, error};

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A reader over the input that counts lines.
struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    line: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    /// The rest of the current line (without its line end), consumed with the line end.
    fn rest_of_line(&mut self) -> &[u8] {
        let start = self.pos;
        let end = self
            .input
            .get(start..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map_or(self.input.len(), |i| start + i);
        self.pos = end;
        if self.peek() == Some(b'\n') {
            self.bump();
        }
        let line = self.input.get(start..end).unwrap_or_default();
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    /// After a closing quote: only blanks and a comment to the end of the line.
    fn end_after_quote(&mut self, line: usize) -> Result<(), ParseError> {
        let rest = self.rest_of_line();
        let rest = trim(rest);
        if rest.is_empty() || rest.first() == Some(&b'#') {
            Ok(())
        } else {
            Err(error(
                line,
                "unexpected text after the closing quote (only a # comment may follow)",
            ))
        }
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && is_blank(*first)
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && is_blank(*last)
    {
        s = rest;
    }
    s
}

/// Parses a dotenv file.
#[cfg(test)]
pub(super) fn parse(input: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let (entries, mut errors) = parse_all(input);
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors.remove(0))
    }
}

/// Every entry that parses, and an error for every line that does not (after one, the next
/// line is read: one mistake does not hide the others).
pub(super) fn parse_all(input: &[u8]) -> (Vec<Entry>, Vec<ParseError>) {
    let mut r = Reader {
        input,
        pos: 0,
        line: 1,
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    while r.peek().is_some() {
        let line = r.line;
        r.skip_blanks();
        match r.peek() {
            None => break,
            Some(b'\n') | Some(b'#') => {
                r.rest_of_line();
                continue;
            }
            Some(b'\r') if r.input.get(r.pos + 1) == Some(&b'\n') => {
                r.rest_of_line();
                continue;
            }
            _ => {}
        }
        match entry(&mut r, line) {
            Ok(e) => out.push(e),
            Err(e) => {
                errors.push(e);
                r.rest_of_line();
            }
        }
    }
    (out, errors)
}

/// The entry starting at `r` (on line `line`).
fn entry(r: &mut Reader<'_>, line: usize) -> Result<Entry, ParseError> {
    if r.input
        .get(r.pos..)
        .is_some_and(|s| s.starts_with(b"export"))
        && r.input.get(r.pos + 6).copied().is_some_and(is_blank)
    {
        r.pos += 6;
        r.skip_blanks();
    }
    let start = r.pos;
    while let Some(b) = r.peek() {
        if b == b'=' || b == b'\n' {
            break;
        }
        r.pos += 1;
    }
    if r.peek() != Some(b'=') {
        return Err(error(line, "expected NAME=value"));
    }
    let name_bytes = trim(r.input.get(start..r.pos).unwrap_or_default());
    let name = std::str::from_utf8(name_bytes)
        .map_err(|_| error(line, "the name is not valid UTF-8"))?
        .to_string();
    if name.is_empty() {
        return Err(error(line, "a line starts with `=`: the name is missing"));
    }
    r.pos += 1; // '='
    r.skip_blanks();
    let value = match r.peek() {
        Some(q @ (b'"' | b'\'')) => {
            r.bump();
            let mut v = Vec::new();
            loop {
                let Some(b) = r.bump() else {
                    return Err(error(
                        line,
                        format!("the quoted value of {name:?} has no closing quote"),
                    ));
                };
                match b {
                    b if b == q => break,
                    b'\\' if q == b'"' => match r.peek() {
                        Some(e @ (b'n' | b'r' | b't' | b'"' | b'\\')) => {
                            r.bump();
                            v.push(match e {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                other => other,
                            });
                        }
                        _ => v.push(b'\\'),
                    },
                    b => v.push(b),
                }
            }
            r.end_after_quote(line)?;
            SecretBytes::new(v)
        }
        _ => {
            let rest = r.rest_of_line();
            let mut end = rest.len();
            // ` #` starts a comment; a value starting with `#` is a value.
            for (i, pair) in rest.windows(2).enumerate() {
                if matches!(pair, [blank, b'#'] if is_blank(*blank)) {
                    end = i;
                    break;
                }
            }
            SecretBytes::from_slice(trim(rest.get(..end).unwrap_or_default()))
        }
    };
    Ok(Entry { name, value, line })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(input: &str) -> Vec<(String, Vec<u8>, usize)> {
        parse(input.as_bytes())
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.expose_secret().to_vec(), e.line))
            .collect()
    }

    fn one(name: &str, value: &str, line: usize) -> (String, Vec<u8>, usize) {
        (name.into(), value.as_bytes().to_vec(), line)
    }

    #[test]
    fn the_usual_forms() {
        let input = "# a comment\n\nA=1\nexport B = two words  \nC=\"x\\ny\\t\\\"q\\\" \\\\ \\$HOME\" # c\nD='lit $X \\n'\nE=a #comment\nF=#not-a-comment\r\nG=\n";
        assert_eq!(
            parsed(input),
            vec![
                one("A", "1", 3),
                one("B", "two words", 4),
                one("C", "x\ny\t\"q\" \\ \\$HOME", 5),
                one("D", "lit $X \\n", 6),
                one("E", "a", 7),
                one("F", "#not-a-comment", 8),
                one("G", "", 9),
            ]
        );
    }

    #[test]
    fn quoted_values_span_lines_and_lines_keep_counting() {
        let input = "K=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT='a\nb'\nLAST=z";
        assert_eq!(
            parsed(input),
            vec![
                one("K", "-----BEGIN-----\nabc\n-----END-----", 1),
                one("NEXT", "a\nb", 4),
                one("LAST", "z", 6),
            ]
        );
    }

    #[test]
    fn errors_name_the_line_and_never_the_value() {
        let cases: [(&str, usize); 5] = [
            ("A=1\nno equals sign here\n", 2),
            ("A=1\n\nB=\"hunter2\n", 3),
            ("A='hunter2' trailing\n", 1),
            ("=hunter2\n", 1),
            ("A=1\nB=\"hunter2\" x", 2),
        ];
        for (input, line) in cases {
            let e = parse(input.as_bytes()).err().unwrap();
            assert_eq!(e.line, line, "{input:?}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        for input in [
            &b"\xff=\x00"[..],
            b"A=\"\\",
            b"export",
            b"export \n",
            b"\r",
            b"A=\r",
        ] {
            let _ = parse(input);
        }
    }
}
