//! `--help` of every command: each visible command and `vault key`, `vault audit` and `vault
//! backup` subcommand has a description and its own help, and each is documented in README.md or
//! docs/OPERATIONS.md, so the manual and the binary cannot drift apart silently.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use common::*;

/// The commands `vault [PREFIX] --help` lists, with their descriptions.
fn commands(e: &Env, prefix: &[&str]) -> Vec<(String, String)> {
    let mut args = prefix.to_vec();
    args.push("--help");
    let help = String::from_utf8(e.ok(&args, None)).unwrap();
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let l = l.trim_start();
            let (name, about) = l.split_once(' ')?;
            Some((name.to_string(), about.trim().to_string()))
        })
        .filter(|(name, _)| name != "help")
        .collect()
}

#[test]
fn every_command_has_help_and_is_documented() {
    let e = Env::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manual = [
        std::fs::read_to_string(root.join("README.md")).unwrap(),
        std::fs::read_to_string(root.join("docs/OPERATIONS.md")).unwrap(),
    ]
    .concat();
    let top = commands(&e, &[]);
    assert!(top.len() > 25, "{top:?}");
    let mut all: Vec<Vec<String>> = Vec::new();
    for (name, about) in &top {
        assert!(
            about.len() > 10,
            "`vault {name}` has no description: {about:?}"
        );
        all.push(vec![name.clone()]);
    }
    for group in ["key", "audit", "backup"] {
        for (name, about) in commands(&e, &[group]) {
            assert!(about.len() > 10, "`vault {group} {name}`: {about:?}");
            all.push(vec![group.to_string(), name]);
        }
    }
    let mut undocumented = Vec::new();
    for words in &all {
        let args: Vec<&str> = words.iter().map(String::as_str).chain(["--help"]).collect();
        let help = String::from_utf8(e.ok(&args, None)).unwrap();
        assert!(help.contains("Usage: vault"), "{words:?}: {help}");
        let phrase = format!("vault {}", words.join(" "));
        // Documented as `vault key sign`, or as `key sign` in the section on `vault key`.
        let short = words.join(" ");
        if !manual.contains(&phrase) && !manual.contains(&format!("`{short}")) {
            undocumented.push(phrase);
        }
    }
    assert!(
        undocumented.is_empty(),
        "not in README.md or OPERATIONS.md: {undocumented:?}"
    );
}

/// A database URL in `VAULT_DIR` may hold a password: help never shows the variable's value.
#[test]
fn help_never_shows_the_vault_location_it_was_given() {
    let e = Env::new();
    let url = std::ffi::OsStr::new("postgres://vault:Hunter2Pw@localhost/db?vault=main");
    for args in [
        &["--help"][..],
        &["get", "--help"],
        &["key", "encrypt", "--help"],
    ] {
        let o = e.run_with(args, None, &[("VAULT_DIR", url)]);
        assert_eq!(code(&o), 0, "{args:?}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(!text.contains("Hunter2Pw"), "{args:?}: {text}");
    }
}
