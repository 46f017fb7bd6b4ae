//! `vault export --format dotenv|json|jsonl`: plaintext that `vault import --format` reads back
//! into the same values, whatever they hold (quotes, backslashes, line ends, `$`, `#`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::os::unix::fs::PermissionsExt;

use common::*;

const VALUES: [(&str, &[u8]); 6] = [
    ("db/password", b"hun\"ter'2"),
    ("path", b"C:\\new\\table"),
    ("multi", b"line one\nline two\r\n\tend"),
    ("shell", b"$HOME #not a comment"),
    ("spaces", b"  padded  "),
    ("app-token", b"t0k\n"),
];

#[test]
fn plaintext_formats_round_trip_through_import() {
    let e = Env::new();
    e.init();
    for (n, v) in VALUES {
        e.ok(&["set", n], Some(v));
    }
    for format in ["dotenv", "json", "jsonl"] {
        let file = e.path(&format!("out.{format}"));
        let o = e.run(&[
            "export",
            "--all",
            "--format",
            format,
            "--out",
            file.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{format}: {}", stderr(&o));
        assert!(stderr(&o).contains("plaintext"));
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let other = Env::new();
        other.init();
        let o = other.run(&["import", file.to_str().unwrap(), "--format", format]);
        assert_eq!(code(&o), 0, "{format}: {}", stderr(&o));
        for (n, v) in VALUES {
            assert_eq!(other.ok(&["get", n], None), v, "{format}: {n}");
        }
    }
    // To stdout.
    let out = e.ok(
        &["export", "db/password", "--format", "dotenv", "--out", "-"],
        None,
    );
    assert_eq!(out, b"db/password=\"hun\\\"ter'2\"\n");
    // A name dotenv cannot hold back (only an older vault has one): see tests/names.rs.
}

/// `--out -` writes to the descriptor the command was given: output appended with `>>` keeps
/// what the file held, and what came before in a shared redirection is not overwritten.
#[test]
fn out_dash_writes_where_stdout_stands() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let path = e.path("log");
    std::fs::write(&path, b"LINE1\n").unwrap();
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let o = e
        .command(&["export", "a", "--format", "jsonl", "--out", "-"])
        .stdout(f)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(o.success());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "LINE1\n{\"name\":\"a\",\"value\":\"1\"}\n"
    );
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let o = e
        .command(&["export", "a", "--format", "jsonl", "--out", "/dev/stdout"])
        .stdout(f)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(o.success());
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("LINE1\n{")
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
}
