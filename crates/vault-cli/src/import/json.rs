//! The JSON formats: one object of name → string value (`json`), or one object
//! `{"name": …, "value": …}` per line (`jsonl`). Values must be strings. serde_json's own messages
//! can quote the value they choke on, so errors here give only a line (and column) and what was
//! expected.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use vault_store::SecretBytes;

use super::{Entry, ParseError, error};

/// A string value, taken into a secret buffer without an intermediate copy where serde_json can
/// lend it from the input.
struct Value(SecretBytes);

impl<'de> de::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
                Ok(Value(SecretBytes::from_slice(s.as_bytes())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
                Ok(Value(SecretBytes::new(s.into_bytes())))
            }
        }
        d.deserialize_str(V)
    }
}

/// What went wrong inside a visitor, in words that quote no value (serde_json adds the
/// position): a failure of our own, or the key whose value was being read.
#[derive(Default)]
struct Why {
    failure: RefCell<Option<String>>,
    reading: RefCell<Option<String>>,
}

impl Why {
    fn fail<E: de::Error>(&self, message: String) -> E {
        *self.failure.borrow_mut() = Some(message);
        E::custom("import")
    }

    fn reading(&self, key: Option<&str>) {
        *self.reading.borrow_mut() = key.map(str::to_string);
    }
}

/// The message for a serde_json error: ours if a visitor set one, else the category (a data
/// error while a value was read: that value is not a string).
fn message(e: &serde_json::Error, why: &Why, expected: &str) -> ParseError {
    use serde_json::error::Category;
    let ours = why.failure.borrow_mut().take();
    let text = ours.unwrap_or_else(|| match (e.classify(), why.reading.borrow().as_deref()) {
        (Category::Data, Some(key)) => format!("the value of {key:?} is not a string"),
        (Category::Data, None) => expected.to_string(),
        (Category::Syntax, _) => "not valid JSON".to_string(),
        (Category::Eof, _) => "the JSON ends too early".to_string(),
        (Category::Io, _) => "cannot be read".to_string(),
    });
    error(e.line(), format!("column {}: {text}", e.column()))
}

/// Entries of one object (lines are numbered afterwards).
struct Object<'a> {
    why: &'a Why,
}

impl<'de> Visitor<'de> for Object<'_> {
    type Value = Vec<Entry>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Entry>, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            self.why.reading(Some(&name));
            let value = map.next_value::<Value>()?;
            self.why.reading(None);
            out.push(Entry {
                name,
                value: value.0,
                line: 0,
            });
        }
        Ok(out)
    }
}

/// `json`: one object of name → string value.
pub(super) fn parse_object(input: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let why = Why::default();
    let mut de = serde_json::Deserializer::from_slice(input);
    let mut entries = de
        .deserialize_map(Object { why: &why })
        .map_err(|e| message(&e, &why, "expected one JSON object of name to string value"))?;
    de.end()
        .map_err(|e| message(&e, &why, "more after the object"))?;
    number_lines(input, &mut entries);
    Ok(entries)
}

/// Gives each entry of a parsed object the line its name is on (serde_json tells a visitor no
/// position): the keys are found in order as JSON strings followed by `:`, which inside valid
/// JSON only a key is. A name written with escapes is not found and keeps the line of the one
/// before.
fn number_lines(input: &[u8], entries: &mut [Entry]) {
    let mut from = 0;
    let mut line = 1;
    for e in entries {
        let key = serde_json::to_string(&e.name).unwrap_or_default();
        if let Some(at) = find_key(input, from, key.as_bytes()) {
            line += input
                .get(from..at)
                .map_or(0, |s| s.iter().filter(|&&b| b == b'\n').count());
            from = at;
        }
        e.line = line;
    }
}

fn find_key(input: &[u8], from: usize, key: &[u8]) -> Option<usize> {
    let mut start = from;
    loop {
        let rest = input.get(start..)?;
        let i = rest.windows(key.len()).position(|w| w == key)?;
        let after = rest.get(i + key.len()..)?;
        if after.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':') {
            return Some(start + i);
        }
        start += i + 1;
    }
}

/// One `{"name": …, "value": …}` line.
struct Line<'a> {
    why: &'a Why,
}

impl<'de> Visitor<'de> for Line<'_> {
    type Value = (String, SecretBytes);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with name and value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut name, mut value): (Option<String>, Option<SecretBytes>) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" if name.is_none() => {
                    name = Some(map.next_value::<String>().map_err(|_: A::Error| {
                        self.why.fail::<A::Error>("\"name\" is not a string".into())
                    })?)
                }
                "value" if value.is_none() => {
                    value = Some(
                        map.next_value::<Value>()
                            .map_err(|_: A::Error| {
                                self.why
                                    .fail::<A::Error>("\"value\" is not a string".into())
                            })?
                            .0,
                    )
                }
                "name" | "value" => {
                    return Err(self.why.fail(format!("{key:?} appears twice")));
                }
                other => {
                    let other = other.to_string();
                    map.next_value::<IgnoredAny>()?;
                    return Err(self.why.fail(format!(
                        "unexpected key {other:?}: only \"name\" and \"value\""
                    )));
                }
            }
        }
        match (name, value) {
            (Some(n), Some(v)) => Ok((n, v)),
            _ => Err(self
                .why
                .fail("each line needs both \"name\" and \"value\"".into())),
        }
    }
}

struct LineSeed<'a>(Line<'a>);

impl<'de> DeserializeSeed<'de> for LineSeed<'_> {
    type Value = (String, SecretBytes);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self.0)
    }
}

/// `jsonl`: one object per line; blank lines are skipped.
#[cfg(test)]
pub(super) fn parse_lines(input: &[u8]) -> Result<Vec<Entry>, ParseError> {
    let (entries, mut errors) = parse_lines_all(input);
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors.remove(0))
    }
}

/// Every line's entry, and an error for every line that does not parse.
pub(super) fn parse_lines_all(input: &[u8]) -> (Vec<Entry>, Vec<ParseError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, text) in input.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let why = Why::default();
        let mut de = serde_json::Deserializer::from_slice(text);
        let parsed = LineSeed(Line { why: &why })
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| {
                let mut p = message(&e, &why, "expected {\"name\": …, \"value\": …}");
                p.line = line;
                p
            });
        match parsed {
            Ok((name, value)) => out.push(Entry { name, value, line }),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[Entry]) -> Vec<(&str, &[u8], usize)> {
        entries
            .iter()
            .map(|e| (e.name.as_str(), e.value.expose_secret(), e.line))
            .collect()
    }

    #[test]
    fn an_object_of_strings() {
        let input =
            b"{\n  \"a\": \"1\",\n  \"db/password\": \"h\\u00e9\\n\",\n\n  \"c\": \"\"\n}\n";
        let e = parse_object(input).unwrap();
        assert_eq!(
            names(&e),
            vec![
                ("a", &b"1"[..], 2),
                ("db/password", "h\u{e9}\n".as_bytes(), 3),
                ("c", &b""[..], 5)
            ]
        );
    }

    #[test]
    fn json_lines() {
        let input = b"{\"name\":\"a\",\"value\":\"1\"}\n\n{\"value\":\"2\",\"name\":\"b\"}\r\n";
        let e = parse_lines(input).unwrap();
        assert_eq!(names(&e), vec![("a", &b"1"[..], 1), ("b", &b"2"[..], 3)]);
    }

    #[test]
    fn errors_give_the_line_and_never_the_value() {
        let object_cases: [(&[u8], usize); 5] = [
            (b"{\n\"a\": \"1\",\n\"b\": 12345678\n}", 3),
            (b"{\n\"a\": \"hunter2\",\n\"b\": [\"hunter2\"]}", 3),
            (b"[\"hunter2\"]", 1),
            (b"{\"a\": \"hunter2\"} {}", 1),
            (b"{\"a\": \"hunter2\n", 2),
        ];
        for (input, line) in object_cases {
            let e = parse_object(input).err().unwrap();
            assert_eq!(e.line, line, "{e}");
            let text = e.to_string();
            assert!(
                !text.contains("hunter2") && !text.contains("12345678"),
                "{text}"
            );
        }
        let line_cases: [(&[u8], usize); 5] = [
            (
                b"{\"name\":\"a\",\"value\":\"1\"}\n{\"name\":\"b\",\"value\":12345678}",
                2,
            ),
            (b"{\"name\":\"a\"}", 1),
            (
                b"\n\n{\"name\":\"a\",\"value\":\"hunter2\",\"extra\":\"hunter2\"}",
                3,
            ),
            (b"{\"name\":\"a\",\"value\":\"hunter2\"} trailing", 1),
            (b"hunter2", 1),
        ];
        for (input, line) in line_cases {
            let e = parse_lines(input).err().unwrap();
            assert_eq!(e.line, line, "{e}");
            let text = e.to_string();
            assert!(
                !text.contains("hunter2") && !text.contains("12345678"),
                "{text}"
            );
        }
    }
}
