//! `vault doctor`: findings with fixes, without a passphrase; loose permissions and weak key
//! derivation warned about, a missing header and a state directory inside the vault's failed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;

use common::*;

fn findings(e: &Env, envs: &[(&str, &OsStr)]) -> (i32, Vec<serde_json::Value>) {
    let o = e.run_with(&["doctor", "--json"], None, envs);
    let lines = String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (code(&o), lines)
}

fn status<'a>(f: &'a [serde_json::Value], check: &str) -> Vec<&'a str> {
    f.iter()
        .filter(|v| v["check"] == check)
        .map(|v| v["status"].as_str().unwrap())
        .collect()
}

#[test]
fn doctor_finds_what_is_wrong_and_says_how_to_fix_it() {
    let e = Env::new();
    e.init();
    // No passphrase needed.
    let none = [("VAULT_PASSPHRASE_FILE", OsStr::new("/nonexistent"))];
    let (c, f) = findings(&e, &none);
    assert_eq!(c, 0);
    for v in &f {
        let o = v.as_object().unwrap();
        let mut keys: Vec<&String> = o.keys().collect();
        keys.sort();
        assert_eq!(keys, ["check", "detail", "fix", "status"]);
        assert!(["ok", "warn", "fail", "info"].contains(&v["status"].as_str().unwrap()));
    }
    assert_eq!(status(&f, "vault directory"), ["ok"]);
    assert_eq!(status(&f, "format"), ["ok"]);
    // The tests' vaults use 1 MiB and 1 pass: below the floor.
    assert_eq!(status(&f, "key derivation"), ["warn"]);
    assert_eq!(status(&f, "rollback record"), ["ok"]);
    // Loose permissions.
    std::fs::set_permissions(e.vault_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        e.vault_dir().join("header"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (_, f) = findings(&e, &none);
    assert_eq!(status(&f, "vault directory"), ["warn"]);
    assert_eq!(status(&f, "vault files"), ["warn"]);
    let fix = f.iter().find(|v| v["check"] == "vault directory").unwrap()["fix"]
        .as_str()
        .unwrap();
    assert!(fix.starts_with("chmod 700"), "{fix}");
    // The state directory inside the vault's: a failure, exit 1.
    let inside = e.vault_dir().join("state");
    let (c, f) = findings(&e, &[("VAULT_STATE_DIR", inside.as_os_str())]);
    assert_eq!(c, 1);
    assert_eq!(status(&f, "rollback record"), ["fail"]);
    // No header: a failure.
    std::fs::remove_file(e.vault_dir().join("header")).unwrap();
    let (c, f) = findings(&e, &none);
    assert_eq!(c, 1);
    assert_eq!(status(&f, "format"), ["fail"]);
}
