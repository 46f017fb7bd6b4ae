//! The stdout/stderr rule: a failed write never panics. A full stderr is ignored, a closed
//! stdout (EPIPE) ends the command quietly with exit 0, any other stdout failure is exit 1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::fs::{File, OpenOptions};
use std::process::Stdio;

use common::{Env, code, one_line, stderr};

fn dev_full() -> File {
    OpenOptions::new().write(true).open("/dev/full").unwrap()
}

#[test]
fn a_full_stderr_does_not_turn_a_commit_into_a_crash() {
    let e = Env::new();
    e.init();
    let mut cmd = e.command(&["set", "a"]);
    // Debug logging too: the logger writes to the same full stderr.
    cmd.env("VAULT_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(dev_full());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"v").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "the commit is durable, so exit 0");
    assert_eq!(e.ok(&["get", "a"], None), b"v");

    // A failing command keeps its own exit code.
    let out = e
        .command(&["get", "absent"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(dev_full())
        .output()
        .unwrap();
    assert_eq!(code(&out), 4);
}

#[test]
fn a_reader_that_went_away_is_exit_0_and_silent() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"value"));
    e.ok(&["set", "b"], Some(b"value"));
    for args in [
        &["list"][..],
        &["list", "--all"],
        &["get", "a"],
        &["history", "a"],
        &["slots"],
        &["verify"],
    ] {
        // The read end is closed before the command starts: every write gets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = e
            .command(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "vault {args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "vault {args:?}");
    }
}

#[test]
fn a_full_stdout_is_exit_1_with_a_message() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"value"));
    for args in [&["get", "a"][..], &["list"], &["verify"], &["--help"]] {
        let out = e
            .command(args)
            .stdin(Stdio::null())
            .stdout(dev_full())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(code(&out), 1, "vault {args:?}: {}", stderr(&out));
        assert!(
            one_line(&out).contains("cannot write to stdout"),
            "vault {args:?}: {}",
            stderr(&out)
        );
    }
}
