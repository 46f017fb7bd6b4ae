//! `vault run`: the command sees exactly the chosen secrets under their variables, its exit
//! code and signals are its own, names that map to no variable are refused before anything
//! runs, and no process but the command holds a value (with or without the agent).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::*;

/// `vault ARGS` as a direct child (no setsid wrapper: the exit status is vault's own).
fn vault(e: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vault"));
    e.configure(&mut c);
    c.args(args).env("XDG_RUNTIME_DIR", e.path("run"));
    c
}

fn setup() -> Env {
    let e = Env::new();
    std::fs::create_dir(e.path("run")).unwrap();
    std::fs::set_permissions(e.path("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    e.init();
    e.ok(&["set", "db/password"], Some(b"hunter2"));
    e.ok(&["set", "app/api-token"], Some(b"t0ken"));
    e.ok(
        &["set", "app/url", "--tag", "env-var=SERVICE_URL"],
        Some(b"https://x"),
    );
    e
}

fn env_of(e: &Env, args: &[&str]) -> Vec<String> {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--", "env"]);
    let out = vault(e, &full).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut vars: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            ["DB_", "APP_", "API_", "SERVICE_", "URL"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(str::to_string)
        .collect();
    vars.sort();
    vars
}

#[test]
fn the_chosen_secrets_under_their_variables() {
    let e = setup();
    assert_eq!(
        env_of(&e, &[]),
        [
            "APP_API_TOKEN=t0ken",
            "DB_PASSWORD=hunter2",
            "SERVICE_URL=https://x"
        ]
    );
    assert_eq!(
        env_of(&e, &["--only", "db/password"]),
        ["DB_PASSWORD=hunter2"]
    );
    assert_eq!(
        env_of(&e, &["--prefix", "app/"]),
        ["API_TOKEN=t0ken", "SERVICE_URL=https://x"]
    );
    // A name that maps to no variable (it starts with a digit), a clash, a NUL byte: refused, nothing run.
    e.ok(&["set", "9lives"], Some(b"x"));
    let out = vault(&e, &["run", "--", "touch", e.path("ran").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("maps to no valid variable"));
    assert!(!e.path("ran").exists());
    e.ok(&["rm", "9lives"], None);
    e.ok(&["set", "db-password"], Some(b"other"));
    let out = vault(&e, &["run", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("both map to DB_PASSWORD"));
    e.ok(&["rm", "db-password"], None);
    e.ok(&["set", "bin"], Some(b"a\0b"));
    let out = vault(&e, &["run", "--only", "bin", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A missing secret: not found.
    let out = vault(&e, &["run", "--only", "nope", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn exit_codes_and_signals_are_the_commands_own() {
    let e = setup();
    let s = vault(
        &e,
        &["run", "--only", "db/password", "--", "sh", "-c", "exit 3"],
    )
    .status()
    .unwrap();
    assert_eq!(s.code(), Some(3));
    let s = vault(
        &e,
        &[
            "run",
            "--only",
            "db/password",
            "--",
            "sh",
            "-c",
            "kill -TERM $$",
        ],
    )
    .status()
    .unwrap();
    assert_eq!(s.signal(), Some(15));
    let out = vault(&e, &["run", "--", "no-such-command-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

/// While the command runs, its environment is the only place a value is: not in any process's
/// command line, nor in another process's environment (the agent's included).
#[test]
fn no_other_process_holds_a_value() {
    let e = setup();
    for with_agent in [false, true] {
        if with_agent {
            let s = vault(&e, &["unlock"])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(s.success());
        }
        let mut c = vault(&e, &["run", "--only", "db/password", "--", "sleep", "1"]);
        if with_agent {
            c.env("VAULT_PASSPHRASE_FILE", "");
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut holders = Vec::new();
        for p in std::fs::read_dir("/proc").unwrap() {
            let p = p.unwrap();
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            for f in ["cmdline", "environ"] {
                let Ok(bytes) = std::fs::read(p.path().join(f)) else {
                    continue;
                };
                if bytes.windows(7).any(|w| w == b"hunter2") {
                    holders.push((pid, f));
                }
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "with agent {with_agent}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(holders, [(pid, "environ")], "with agent {with_agent}");
    }
    let _ = vault(&e, &["lock"]).output();
}

/// The command gets the secrets, never the vault's own passphrase sources; a secret that would
/// set PATH, LD_PRELOAD and the like, or is too long for an environment, is refused.
#[test]
fn no_passphrase_and_no_takeover() {
    let e = setup();
    let out = vault(&e, &["run", "--only", "db/password", "--", "env"])
        .env("VAULT_PASSPHRASE", "leaked?")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8(out.stdout).unwrap();
    assert!(env.contains("DB_PASSWORD=hunter2"));
    assert!(!env.contains("PASSPHRASE"), "{env}");
    for (name, tag) in [
        ("path", None),
        ("ld_preload", None),
        ("x", Some("env-var=HOME")),
    ] {
        let mut args = vec!["set", name];
        if let Some(t) = tag {
            args.extend(["--tag", t]);
        }
        let o = e.run_with(&args, Some(b"/tmp/evil"), &[]);
        if tag.is_some() {
            // Refused when set.
            assert_eq!(code(&o), 2, "{}", stderr(&o));
            continue;
        }
        assert_eq!(code(&o), 0);
        let out = vault(&e, &["run", "--only", name, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("decides what program runs"));
        e.ok(&["rm", name], None);
    }
    e.ok(&["set", "big"], Some(&vec![b'x'; 200 * 1024]));
    let out = vault(&e, &["run", "--only", "big", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("128 KiB"));
}
