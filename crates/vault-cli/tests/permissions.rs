//! A vault or state directory that other users can reach is used, with a warning on stderr.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Env, stderr};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn shared_vault_and_state_directories_are_warned_about() {
    let e = Env::new();
    e.init();
    let quiet = e.run(&["list"]);
    assert!(quiet.status.success());
    assert_eq!(stderr(&quiet), "", "a fresh vault is private");

    chmod(&e.vault_dir(), 0o755);
    let out = e.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "warning: vault directory {} is accessible by other users (mode 755); chmod 700 it\n",
            e.vault_dir().display()
        )
    );
    chmod(&e.vault_dir(), 0o700);

    chmod(&e.state_dir(), 0o750);
    let out = e.run(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "warning: state directory {} is accessible by other users (mode 750); chmod 700 it\n",
            e.state_dir().display()
        )
    );
}

#[test]
fn init_into_a_shared_directory_is_warned_about() {
    let e = Env::new();
    std::fs::create_dir(e.vault_dir()).unwrap();
    chmod(&e.vault_dir(), 0o711);
    let out = e.run(&[
        "init",
        "--kdf-memory-mib",
        "1",
        "--kdf-iterations",
        "1",
        "--kdf-parallelism",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("vault directory") && stderr(&out).contains("(mode 711)"),
        "{}",
        stderr(&out)
    );
}
