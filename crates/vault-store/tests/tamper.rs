//! Tamper cases about specific bytes, one named file each in `tests/data/tamper/` (rage's
//! testkit is the model): a comment saying what the case is and why, then which file, where, what
//! is done to it, whether the rollback record stays, and what must happen. Every case also checks
//! that opening changed nothing in the vault. A new case is a new file.
//!
//! ```text
//! file:   header | log | rollback
//! at:     <offset> | end | last-frame + <n> | header-mac
//! op:     xor <hex> | set <hex>... | append <hex>... | append-half-of-last-frame | sparse <length>
//! record: kept | removed
//! expect: integrity | newer-version | torn | ok-with-warning
//! ```
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use vault_store::{Error, SetOptions};

struct Case {
    name: String,
    fields: BTreeMap<String, String>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tamper");
    let mut out: Vec<Case> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tamper"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let fields = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .map(|l| {
                    let (k, v) = l
                        .split_once(':')
                        .unwrap_or_else(|| panic!("{}: {l}", p.display()));
                    (k.trim().to_string(), v.trim().to_string())
                })
                .collect();
            Case {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                fields,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn target(d: &TestDir, which: &str) -> PathBuf {
    match which {
        "header" => d.vault_dir().join("header"),
        "log" => log_path(&d.vault_dir()),
        "rollback" => rollback_record(d),
        other => panic!("unknown file {other}"),
    }
}

fn offset(bytes: &[u8], at: &str) -> usize {
    if at == "end" {
        bytes.len()
    } else if at == "header-mac" {
        vault_format::HEADER_FIXED_LEN + vault_format::KEY_SLOT_LEN
    } else if let Some(n) = at.strip_prefix("last-frame +") {
        frame_starts(bytes).last().unwrap() + n.trim().parse::<usize>().unwrap()
    } else {
        at.parse().unwrap()
    }
}

fn apply(path: &Path, at: &str, op: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = offset(&bytes, at);
    let (verb, arg) = op.split_once(' ').unwrap_or((op, ""));
    match verb {
        "xor" => bytes[at] ^= hex(arg)[0],
        "set" => {
            let v = hex(arg);
            bytes[at..at + v.len()].copy_from_slice(&v);
        }
        "append" => bytes.extend_from_slice(&hex(arg)),
        "append-half-of-last-frame" => {
            let last = *frame_starts(&bytes).last().unwrap();
            let half = bytes[last..last + (bytes.len() - last) / 2].to_vec();
            bytes.extend_from_slice(&half);
        }
        "sparse" => {
            std::fs::write(path, &bytes).unwrap();
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.set_len(arg.parse().unwrap()).unwrap();
            return;
        }
        other => panic!("unknown op {other}"),
    }
    std::fs::write(path, &bytes).unwrap();
}

/// Hashes of every vault file (the sizes, for sparse files), to check that opening changed none.
/// The vault's files (the audit trail left out: an open records the unlock in it, by design).
fn fingerprint(dir: &Path) -> Vec<(String, u64, [u8; 32])> {
    let mut out: Vec<_> = file_names(dir)
        .into_iter()
        .filter(|n| !n.starts_with("audit."))
        .map(|n| {
            let p = dir.join(&n);
            let len = std::fs::metadata(&p).unwrap().len();
            let sum = if len < 1 << 20 {
                vault_crypto::hash::sha256(&[&std::fs::read(&p).unwrap()])
            } else {
                [0; 32]
            };
            (n, len, sum)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_tamper_case_has_its_documented_outcome() {
    let cases = cases();
    assert!(cases.len() >= 8, "{} cases", cases.len());
    for case in cases {
        let f = |k: &str| {
            case.fields
                .get(k)
                .unwrap_or_else(|| panic!("{}: no {k}", case.name))
                .as_str()
        };
        let d = TestDir::new();
        {
            let v = d.create();
            for i in 0..3u8 {
                v.set("a", secret(&[i; 40]), SetOptions::default()).unwrap();
            }
        }
        apply(&target(&d, f("file")), f("at"), f("op"));
        if f("record") == "removed" {
            std::fs::remove_dir_all(d.state_dir()).unwrap();
        }
        let before = fingerprint(&d.vault_dir());
        let opened = d.open().and_then(|v| v.verify().map(|r| (v, r)));
        let ctx = format!("{}: {:?}", case.name, opened.as_ref().map(|(_, r)| r));
        match f("expect") {
            "integrity" => assert!(matches!(&opened, Err(e) if e.is_integrity()), "{ctx}"),
            "newer-version" => assert!(
                matches!(
                    &opened,
                    Err(Error::Format(
                        vault_format::Error::UnsupportedVersion { .. }
                    ))
                ),
                "{ctx}"
            ),
            "torn" => {
                let (v, report) = opened.as_ref().unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert!(report.torn_tail, "{ctx}");
                assert_eq!(v.get("a").unwrap().value.expose_secret(), [2; 40], "{ctx}");
            }
            "ok-with-warning" => {
                let (_, report) = opened.as_ref().unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert!(!report.warnings.is_empty(), "{ctx}");
            }
            other => panic!("{}: unknown expectation {other}", case.name),
        }
        drop(opened);
        assert_eq!(
            fingerprint(&d.vault_dir()),
            before,
            "{}: opening changed the vault",
            case.name
        );
    }
}
