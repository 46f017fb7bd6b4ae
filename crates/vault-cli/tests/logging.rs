//! `-v`, `-vv` and `VAULT_LOG`: what a user debugging sees on stderr (the vault's path, where the
//! passphrase came from, key derivation and open times, lock waits, generations), through the
//! agent too, and never a value, a passphrase or, at these levels, a secret's name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NAME: &str = "zz-name-zz";
const VALUE: &[u8] = b"zz-value-zz";

fn assert_nothing_secret(log: &str) {
    for secret in [NAME, "zz-value-zz", PASSPHRASE] {
        assert!(!log.contains(secret), "{secret} in\n{log}");
    }
}

#[test]
fn verbose_levels_say_what_happened_and_nothing_secret() {
    let e = Env::new();
    e.init();
    e.ok(&["set", NAME], Some(VALUE));
    // Without -v: nothing but the command's own output.
    let o = e.run(&["get", NAME]);
    assert_eq!(o.stdout, VALUE);
    assert_eq!(stderr(&o), "");
    // -v: where, how and how long.
    let o = e.run(&["-v", "get", NAME]);
    let log = stderr(&o);
    for said in [
        "vault at",
        "passphrase from the file",
        "unlocked with key slot 0",
        "opened the vault at",
        "generation 2",
    ] {
        assert!(log.contains(said), "{said:?} in\n{log}");
    }
    assert!(!log.contains("DEBUG"), "{log}");
    assert_nothing_secret(&log);
    // -vv: each step.
    let o = e.run_with(&["-vv", "set", NAME], Some(b"zz-value-zz-2"), &[]);
    let log = stderr(&o);
    for said in [
        "Argon2id",
        "took the read lock",
        "took the write lock",
        "committed generation 3",
        "written and synced in",
    ] {
        assert!(log.contains(said), "{said:?} in\n{log}");
    }
    // The command's own confirmation names the secret; the log lines do not.
    let log_lines: String = log
        .lines()
        .filter(|l| l.contains("INFO") || l.contains("DEBUG"))
        .collect();
    assert_nothing_secret(&log_lines);
    // VAULT_LOG picks levels and modules.
    let o = e.run_with(
        &["get", NAME],
        None,
        &[("VAULT_LOG", OsStr::new("vault_store::engine::unlock=debug"))],
    );
    let log = stderr(&o);
    assert!(log.contains("Argon2id"), "{log}");
    assert!(!log.contains("vault at"), "{log}");
    // A directive that does not parse is named and left out; the others apply.
    let o = e.run_with(&["get", NAME], None, &[("VAULT_LOG", OsStr::new("=,info"))]);
    let log = stderr(&o);
    assert_eq!(code(&o), 0, "{log}");
    assert!(log.contains("VAULT_LOG: ignoring \"=\""), "{log}");
    assert!(log.contains("vault at"), "{log}");
}

/// A writer that waits for the lock says so, with how long.
#[test]
fn a_lock_wait_is_logged() {
    let e = Env::new();
    e.init();
    if Command::new("flock").arg("--version").output().is_err() {
        eprintln!("skipped: no flock(1) on this machine");
        return;
    }
    let lock = e.vault_dir().join("lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "1"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let o = e.run_with(&["-v", "set", "a"], Some(b"1"), &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    holder.wait().unwrap();
    let log = stderr(&o);
    assert!(
        log.contains("lock after waiting"),
        "{log} ({:?})",
        started.elapsed()
    );
}

/// Through the agent, the command's -vv shows the agent's work on the client's stderr.
#[test]
fn the_agent_logs_to_its_client() {
    let e = Env::new();
    std::fs::create_dir(e.path("run")).unwrap();
    std::fs::set_permissions(e.path("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    e.init();
    let run = e.path("run");
    let runtime = [("XDG_RUNTIME_DIR", run.as_os_str())];
    let o = e.run_with(&["unlock"], None, &runtime);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = e.run_with(&["-vv", "set", NAME], Some(VALUE), &runtime);
    let log = stderr(&o);
    for said in [
        "using the agent at",
        "took the write lock",
        "committed generation",
    ] {
        assert!(log.contains(said), "{said:?} in\n{log}");
    }
    // The client's VAULT_LOG, as for a command run directly.
    let mut with_log = runtime.to_vec();
    with_log.push(("VAULT_LOG", OsStr::new("vault_store=debug")));
    let o = e.run_with(&["set", NAME], Some(VALUE), &with_log);
    assert!(stderr(&o).contains("took the write lock"), "{}", stderr(&o));
    // Without -v, the agent says nothing on the client's stderr either.
    let o = e.run_with(&["set", NAME], Some(VALUE), &runtime);
    assert!(!stderr(&o).contains("committed"), "{}", stderr(&o));
    e.run_with(&["lock"], None, &runtime);
}
