//! `vault backup`, `vault backup verify` and `vault restore` end to end: a backup to a file and
//! to stdout, verified, restored into a new vault that holds the same secrets and keys; a cut or
//! changed backup is exit 5 and restores nothing; a wrong passphrase is exit 3; an existing
//! target is refused without --force.
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
fn back_up_verify_and_restore() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "db/pw"], Some(b"one"));
    e.ok(&["set", "db/pw"], Some(b"two"));
    e.ok(&["set", "gone"], Some(b"x"));
    e.ok(&["rm", "gone"], None);
    e.ok(&["key", "create", "k"], None);
    let t = e.ok(&["key", "encrypt", "k"], Some(b"sealed"));
    let bp = [("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass"))];
    let file = e.path("v.vbak");
    let f = file.to_str().unwrap();
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    let mut args = vec!["backup", f, "--comment", "nightly"];
    args.extend_from_slice(&cheap);
    let out = e.run_with(&args, None, &bp);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = e.run_with(&["backup", "verify", f], None, &bp);
    assert!(v.status.success(), "{}", stderr(&v));
    let said = String::from_utf8(v.stdout).unwrap();
    assert!(said.contains("2 secrets (3 versions), 1 keys"), "{said}");
    assert!(said.contains("nightly"));
    // To stdout, and verified from stdin.
    let mut args = vec!["backup", "-"];
    args.extend_from_slice(&cheap);
    let piped = e.run_with(&args, None, &bp);
    assert!(piped.status.success());
    assert!(
        e.run_with(&["backup", "verify", "-"], Some(&piped.stdout), &bp)
            .status
            .success()
    );
    // Damage: cut, or a byte changed: exit 5, and a restore writes nothing.
    let bytes = std::fs::read(&file).unwrap();
    let bad = e.path("bad.vbak");
    std::fs::write(&bad, &bytes[..bytes.len() - 10]).unwrap();
    let b = bad.to_str().unwrap();
    assert_eq!(code(&e.run_with(&["backup", "verify", b], None, &bp)), 5);
    let target = e.path("restored");
    let t_str = target.to_str().unwrap();
    let new = [
        ("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass")),
        ("VAULT_NEW_PASSPHRASE", OsStr::new("restored pass")),
    ];
    let mut args = vec!["restore", b, "--to", t_str];
    args.extend_from_slice(&cheap);
    assert_eq!(code(&e.run_with(&args, None, &new)), 5);
    assert!(!target.exists());
    let wrong = [("VAULT_BACKUP_PASSPHRASE", OsStr::new("nope"))];
    assert_eq!(code(&e.run_with(&["backup", "verify", f], None, &wrong)), 3);
    // The real restore, then the restored vault under its own passphrase.
    let mut args = vec!["restore", f, "--to", t_str];
    args.extend_from_slice(&cheap);
    let r = e.run_with(&args, None, &new);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(
        code(&e.run_with(&args, None, &new)),
        7,
        "an existing target"
    );
    let restored_pass = e.path("restored-pass");
    std::fs::write(&restored_pass, "restored pass\n").unwrap();
    let env = [
        ("VAULT_DIR", target.as_os_str()),
        ("VAULT_PASSPHRASE_FILE", restored_pass.as_os_str()),
    ];
    let get = |args: &[&str], input: Option<&[u8]>| {
        let o = e.run_with(args, input, &env);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o.stdout
    };
    assert_eq!(get(&["get", "db/pw"], None), b"two");
    assert_eq!(get(&["get", "db/pw", "--version", "1"], None), b"one");
    assert_eq!(get(&["list", "--all"], None), b"db/pw\ngone\t(deleted)\n");
    assert_eq!(get(&["key", "decrypt", "k"], Some(&t)), b"sealed");
    get(&["verify"], None);
}

/// `--since`: a full backup and two incrementals, verified and restored as a chain; the chain
/// given wrong (an incremental first, one skipped) is exit 2 naming the file, before any
/// passphrase is asked for; an incremental after a master-key rotation is exit 2.
#[test]
fn incremental_backups_chain_and_restore() {
    let e = Env::new();
    e.init();
    let bp = [("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass"))];
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    let backup = |name: &str, since: Option<&str>| {
        let f = e.path(name);
        let f = f.to_str().unwrap().to_string();
        let mut args = vec!["backup".to_string(), f.clone()];
        if let Some(b) = since {
            args.extend(["--since".to_string(), b.to_string()]);
        }
        args.extend(cheap.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = e.run_with(&args, None, &bp);
        assert!(out.status.success(), "{}", stderr(&out));
        f
    };
    e.ok(&["set", "a"], Some(b"a1"));
    e.ok(&["set", "b"], Some(b"b1"));
    let full = backup("full.vbak", None);
    e.ok(&["set", "a"], Some(b"a2"));
    e.ok(&["rm", "b"], None);
    e.ok(&["set", "c"], Some(b"c1"));
    e.ok(&["compact"], None);
    let inc1 = backup("inc1.vbak", Some(&full));
    e.ok(&["undelete", "b"], None);
    e.ok(&["destroy", "c", "--yes"], None);
    e.ok(&["set", "d"], Some(b"d1"));
    let inc2 = backup("inc2.vbak", Some(&inc1));
    let v = e.run_with(&["backup", "verify", &inc1], None, &bp);
    assert!(v.status.success(), "{}", stderr(&v));
    assert!(String::from_utf8_lossy(&v.stdout).contains("incremental backup"));
    let v = e.run_with(&["backup", "verify", &full, &inc1, &inc2], None, &bp);
    assert!(v.status.success(), "{}", stderr(&v));
    let said = String::from_utf8(v.stdout).unwrap();
    assert!(said.contains("3 secrets (4 versions), 0 keys"), "{said}");
    // Wrong chains: refused from the headers, before a passphrase is asked (none is given).
    for (files, file) in [
        (vec![inc1.as_str(), inc2.as_str()], &inc1),
        (vec![full.as_str(), inc2.as_str()], &inc2),
        (vec![full.as_str(), inc2.as_str(), inc1.as_str()], &inc2),
    ] {
        let target = e.path("never");
        let mut args = vec!["restore"];
        args.extend(files.iter());
        args.extend(["--to", target.to_str().unwrap()]);
        let out = e.run_with(&args, None, &[]);
        assert_eq!(code(&out), 2, "{files:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(file.as_str()), "{}", stderr(&out));
        assert!(!target.exists());
    }
    let target = e.path("restored");
    let new = [
        ("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass")),
        ("VAULT_NEW_PASSPHRASE", OsStr::new("restored pass")),
    ];
    let mut args = vec![
        "restore",
        full.as_str(),
        inc1.as_str(),
        inc2.as_str(),
        "--to",
        target.to_str().unwrap(),
    ];
    args.extend_from_slice(&cheap);
    let r = e.run_with(&args, None, &new);
    assert!(r.status.success(), "{}", stderr(&r));
    let pass_file = e.path("restored-pass");
    std::fs::write(&pass_file, "restored pass\n").unwrap();
    let env = [
        ("VAULT_DIR", target.as_os_str()),
        ("VAULT_PASSPHRASE_FILE", pass_file.as_os_str()),
    ];
    let get = |args: &[&str]| {
        let o = e.run_with(args, None, &env);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o.stdout
    };
    assert_eq!(get(&["list", "--all"]), b"a\nb\nd\n");
    assert_eq!(get(&["get", "a"]), b"a2");
    assert_eq!(get(&["get", "a", "--version", "1"]), b"a1");
    assert_eq!(get(&["get", "b"]), b"b1");
    // After a master-key rotation, an incremental on an older backup is refused.
    e.ok(&["rotate-master-key"], None);
    let f = e.path("after.vbak");
    let mut args = vec!["backup", f.to_str().unwrap(), "--since", inc2.as_str()];
    args.extend_from_slice(&cheap);
    let out = e.run_with(&args, None, &bp);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("full backup"), "{}", stderr(&out));
    assert!(!f.exists());
}

/// A restore killed part-way (SIGKILL, at several moments) never leaves a vault, whole or half,
/// at the target; running it again restores everything.
#[test]
fn a_killed_restore_leaves_no_vault_at_the_target() {
    let e = Env::new();
    e.init();
    let mut input = Vec::new();
    for i in 0..3000 {
        input.extend_from_slice(format!("s{i}={}\n", "x".repeat(4000 + i % 7)).as_bytes());
    }
    e.ok(&["import", "-", "--format", "dotenv"], Some(&input));
    let file = e.path("v.vbak");
    let f = file.to_str().unwrap();
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    let bp = [("VAULT_BACKUP_PASSPHRASE", OsStr::new("b"))];
    let mut args = vec!["backup", f, "--no-compress"];
    args.extend_from_slice(&cheap);
    assert!(e.run_with(&args, None, &bp).status.success());
    let target = e.path("restored");
    let t = target.to_str().unwrap();
    let mut killed = 0;
    for delay_ms in [20u64, 60, 120, 250] {
        let mut cmd = e.command(&[
            "restore",
            f,
            "--to",
            t,
            "--kdf-memory-mib",
            "1",
            "--kdf-iterations",
            "1",
        ]);
        cmd.env("VAULT_BACKUP_PASSPHRASE", "b")
            .env("VAULT_NEW_PASSPHRASE", "n")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            // It finished first: a whole vault, which the next round replaces.
            std::fs::remove_dir_all(&target).unwrap();
            continue;
        }
        assert!(
            !target.exists(),
            "killed after {delay_ms} ms: something is at the target"
        );
        killed += 1;
    }
    assert!(
        killed > 0,
        "every restore finished before its kill: the test proves nothing"
    );
    let new = [
        ("VAULT_BACKUP_PASSPHRASE", OsStr::new("b")),
        ("VAULT_NEW_PASSPHRASE", OsStr::new("n")),
    ];
    let mut args = vec!["restore", f, "--to", t];
    args.extend_from_slice(&cheap);
    let r = e.run_with(&args, None, &new);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(target.join("header").exists());
    // What the killed restores left beside the target was swept by this one.
    let left: Vec<String> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restoring"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Hostile-pass findings on `--since` and on output files: an incremental written over its own
/// base is refused (the base kept); a base that is not a regular file (a directory, stdin, a
/// FIFO) is exit 2 without waiting; a link a killed command left beside an output is removed by
/// the next command writing there, unless its command still runs (its lock is held).
#[test]
fn since_refuses_its_own_base_and_odd_files_and_stale_links_are_swept() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let bp = [("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass"))];
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&cheap);
        e.run_with(&all, None, &bp)
    };
    let base = e.path("base.vbak");
    let b = base.to_str().unwrap();
    assert!(run(&["backup", b]).status.success());
    let before = std::fs::read(&base).unwrap();
    let link = e.path("link.vbak");
    std::os::unix::fs::symlink(&base, &link).unwrap();
    for out in [b, link.to_str().unwrap()] {
        let o = run(&["backup", out, "--since", b]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains("its own base"), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read(&base).unwrap(), before);
    let fifo = e.path("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let inc = e.path("inc.vbak");
    for since in [fifo.to_str().unwrap(), e.path("").to_str().unwrap(), "-"] {
        let o = run(&["backup", inc.to_str().unwrap(), "--since", since]);
        assert_eq!(code(&o), 2, "{since}: {}", stderr(&o));
    }
    assert!(!inc.exists());
    // Links left by killed commands: one whose lock is free goes, one still locked stays.
    let dead = e.path(".vault-out-000000000001.tmp");
    std::fs::write(&dead, b"left by a killed backup").unwrap();
    let live = e.path(".vault-out-000000000002.tmp");
    std::fs::write(&live, b"a backup still running").unwrap();
    let held = std::fs::File::open(&live).unwrap();
    held.lock().unwrap();
    assert!(
        run(&["backup", inc.to_str().unwrap(), "--since", b])
            .status
            .success()
    );
    assert!(!dead.exists(), "a stale link is swept");
    assert!(live.exists(), "a running command's link is left alone");
    drop(held);
}

/// `--include-audit`: verify says the backup carries the trail, and a restore keeps it in
/// audit-archive/<old vault id>/ beside the new vault.
#[test]
fn include_audit_end_to_end() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let env = [
        ("VAULT_BACKUP_PASSPHRASE", OsStr::new("backup pass")),
        ("VAULT_NEW_PASSPHRASE", OsStr::new("restored pass")),
    ];
    let cheap = ["--kdf-memory-mib", "1", "--kdf-iterations", "1"];
    let f = e.path("a.vbak");
    let f = f.to_str().unwrap();
    let mut args = vec!["backup", f, "--include-audit"];
    args.extend_from_slice(&cheap);
    let o = e.run_with(&args, None, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = e.run_with(&["backup", "verify", f], None, &env);
    assert!(String::from_utf8_lossy(&v.stdout).contains("with the audit trail"));
    let target = e.path("restored");
    let mut args = vec!["restore", f, "--to", target.to_str().unwrap()];
    args.extend_from_slice(&cheap);
    let r = e.run_with(&args, None, &env);
    assert!(r.status.success(), "{}", stderr(&r));
    let archive = std::fs::read_dir(target.join("audit-archive"))
        .unwrap()
        .count();
    assert_eq!(archive, 1);
}
