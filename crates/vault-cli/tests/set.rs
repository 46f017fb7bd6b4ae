//! `vault set`: an empty value needs `--allow-empty`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::process::Stdio;

use common::{Env, code, one_line, stderr};

#[test]
fn an_empty_value_is_refused_without_allow_empty() {
    let e = Env::new();
    e.init();
    // stdin closed at once, and /dev/null.
    let closed = e.run_with(&["set", "a"], None, &[]);
    assert_eq!(code(&closed), 2, "{}", stderr(&closed));
    let line = one_line(&closed);
    assert!(
        line.contains("empty value") && line.contains("--allow-empty"),
        "{line}"
    );
    let null = e
        .command(&["set", "a"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&null), 2, "{}", stderr(&null));
    assert_eq!(code(&e.run(&["get", "a"])), 4, "nothing was stored");

    e.ok(&["set", "a", "--allow-empty"], None);
    assert_eq!(e.ok(&["get", "a"], None), b"");
    e.ok(&["set", "a", "--allow-empty"], Some(b"not empty"));
    assert_eq!(e.ok(&["get", "a"], None), b"not empty");
}
