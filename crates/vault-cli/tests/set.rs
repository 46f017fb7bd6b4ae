//! `vault set`: an empty value needs `--allow-empty`, and the value is read in full before the
//! vault is opened.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{Env, code, one_line, stderr, wait_at_most};

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

/// Starts `vault set a` with a stdin that stays open until the caller writes to it.
fn slow_set(e: &Env, envs: &[(&str, &std::path::Path)]) -> std::process::Child {
    let mut cmd = e.command(&["set", "a"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(mut child: std::process::Child, value: &[u8]) -> std::process::Output {
    child.stdin.take().unwrap().write_all(value).unwrap();
    assert!(
        wait_at_most(&mut child, Duration::from_secs(30)).is_some(),
        "vault set did not finish"
    );
    child.wait_with_output().unwrap()
}

#[test]
fn the_vault_is_opened_only_after_the_value_is_complete() {
    let e = Env::new();
    e.init();
    // A wrong passphrase shows when the vault is opened: not while the value is still coming.
    let wrong = e.path("wrong");
    std::fs::write(&wrong, "not it").unwrap();
    let mut child = slow_set(&e, &[("VAULT_PASSPHRASE_FILE", &wrong)]);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "vault set opened the vault before its value was complete"
    );
    let out = finish(child, b"v");
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}

#[test]
fn a_slow_producer_does_not_hold_stale_state() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let child = slow_set(&e, &[]);
    std::thread::sleep(Duration::from_millis(700));
    // Another process rotates the master key while the value is still on its way.
    e.ok(&["rotate-master-key"], None);
    let out = finish(child, b"2");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(e.ok(&["get", "a"], None), b"2");
}
