//! Usage errors are reported before any passphrase is asked for: a bad name or tag for `set`,
//! `max-versions 0`, `init` over an existing vault.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::ffi::OsStr;

use common::*;

#[test]
fn usage_errors_come_before_the_passphrase() {
    let e = Env::new();
    e.init();
    // No passphrase source at all: had one been asked for, the error would be about that.
    let none = [
        ("VAULT_PASSPHRASE_FILE", OsStr::new("")),
        ("VAULT_NEW_PASSPHRASE_FILE", OsStr::new("")),
    ];
    for (args, input) in [
        (&["set", " padded"][..], Some(&b"v"[..])),
        (&["set", "a\u{7}b"], Some(b"v")),
        (&["set", "ok", "--tag", "=empty-key"], Some(b"v")),
        (&["max-versions", "0"], None),
        (&["max-versions", "10001"], None),
    ] {
        let o = e.run_with(args, input, &none);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("no passphrase"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let o = e.run_with(&["init"], None, &none);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("no passphrase"), "{}", stderr(&o));
}

/// `destroy` and `remove-passphrase` cannot be undone: without a terminal to ask on they need
/// `--yes`, and nothing changes without it.
#[test]
fn irreversible_commands_need_confirming() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let o = e.run(&["destroy", "a"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    assert_eq!(e.ok(&["get", "a"], None), b"1");
    e.ok(&["destroy", "a", "--yes"], None);
    assert_eq!(code(&e.run(&["get", "a"])), 4);
    let o = e.run(&["remove-passphrase", "0"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("--yes"));
}

/// An import's input is read and checked before the passphrase: a missing file, or a bad entry.
#[test]
fn import_input_is_checked_before_the_passphrase() {
    let e = Env::new();
    e.init();
    let none = [("VAULT_PASSPHRASE_FILE", OsStr::new(""))];
    let o = e.run_with(
        &["import", "/nonexistent", "--format", "dotenv"],
        None,
        &none,
    );
    assert!(!stderr(&o).contains("no passphrase"), "{}", stderr(&o));
    assert_ne!(code(&o), 0);
    let o = e.run_with(
        &["import", "-", "--format", "dotenv"],
        Some(b"bad\x07name=1\n"),
        &none,
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!stderr(&o).contains("no passphrase"), "{}", stderr(&o));
}

/// A state directory inside the vault directory (given, or reached through a symbolic link)
/// is refused before anything is opened: a copy of the vault put back would bring its rollback
/// record with it.
#[test]
fn a_state_directory_inside_the_vault_is_refused() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let link = e.path("elsewhere");
    std::os::unix::fs::symlink(e.vault_dir(), &link).unwrap();
    for inside in [
        e.vault_dir().join("state"),
        link.join("state"),
        e.vault_dir(),
    ] {
        for args in [&["get", "a"][..], &["set", "b"]] {
            let o = e.run_with(args, Some(b"2"), &[("VAULT_STATE_DIR", inside.as_os_str())]);
            assert_eq!(code(&o), 2, "{inside:?} {args:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("inside the vault directory"),
                "{}",
                stderr(&o)
            );
        }
    }
    assert!(!e.vault_dir().join("state").exists(), "nothing was created");
    assert_eq!(code(&e.run(&["get", "b"])), 4, "nothing was written");
    // A link to a directory not there yet inside the vault, and `..` after a link.
    let dangling = e.path("dangling");
    std::os::unix::fs::symlink(e.vault_dir().join("not-yet"), &dangling).unwrap();
    let sub = e.path("sub");
    std::fs::create_dir(e.vault_dir().join("deep")).unwrap();
    std::os::unix::fs::symlink(e.vault_dir().join("deep"), &sub).unwrap();
    for inside in [dangling.clone(), sub.join("..").join("st")] {
        let o = e.run_with(
            &["get", "a"],
            None,
            &[("VAULT_STATE_DIR", inside.as_os_str())],
        );
        assert_eq!(code(&o), 2, "{inside:?}: {}", stderr(&o));
    }
    // Links that loop: a usage error, not damage.
    std::os::unix::fs::symlink(e.path("loop-b"), e.path("loop-a")).unwrap();
    std::os::unix::fs::symlink(e.path("loop-a"), e.path("loop-b")).unwrap();
    let o = e.run_with(
        &["get", "a"],
        None,
        &[("VAULT_STATE_DIR", e.path("loop-a").as_os_str())],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("loop"), "{}", stderr(&o));
    // A path that goes into the vault and out again is outside it, and creates nothing inside.
    let round = e.vault_dir().join("st/../../round-trip");
    let o = e.run_with(
        &["set", "r"],
        Some(b"1"),
        &[("VAULT_STATE_DIR", round.as_os_str())],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        !e.vault_dir().join("st").exists(),
        "a directory was made inside the vault"
    );
    assert!(e.path("round-trip").join("rollback").is_dir());
    // A bind mount of the vault directory (where this machine lets the test mount).
    let bind = e.path("bind");
    std::fs::create_dir(&bind).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["--bind"])
        .arg(e.vault_dir())
        .arg(&bind)
        .output()
        .is_ok_and(|o| o.status.success());
    if mounted {
        let o = e.run_with(
            &["get", "a"],
            None,
            &[("VAULT_STATE_DIR", bind.join("st").as_os_str())],
        );
        let _ = std::process::Command::new("umount").arg(&bind).status();
        assert_eq!(code(&o), 2, "bind mount: {}", stderr(&o));
    } else {
        eprintln!("bind mount not tried: mount --bind is not permitted here");
    }
    // A restore's target holding the state directory.
    let backup = e.path("b.vbak");
    let o = e.run_with(
        &["backup", backup.to_str().unwrap()],
        None,
        &[("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass"))],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let to = e.path("restored");
    let o = e.run_with(
        &[
            "restore",
            backup.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
        None,
        &[
            ("VAULT_STATE_DIR", to.join("st").as_os_str()),
            ("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass")),
            ("VAULT_NEW_PASSPHRASE_FILE", OsStr::new("")),
        ],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(!to.exists(), "nothing was made");
}
