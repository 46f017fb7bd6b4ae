//! `vault audit` end to end: the filters and `--json`; a failed unlock shown after the next
//! unlock; `vault audit verify` exit 5 naming the entry when one is changed; and 50 processes at
//! once leaving a gap-free chain with exactly one entry per operation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;
use std::ffi::OsStr;

use common::*;

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn filters_json_failed_unlocks_and_verify() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "db/password"], Some(b"hunter2"));
    e.ok(&["set", "api/token"], Some(b"t"));
    e.ok(&["get", "db/password"], None);
    assert_eq!(code(&e.run(&["get", "missing"])), 4);
    let wrong = [
        ("VAULT_PASSPHRASE", OsStr::new("wrong")),
        ("VAULT_PASSPHRASE_FILE", OsStr::new("")),
    ];
    assert_eq!(code(&e.run_with(&["get", "db/password"], None, &wrong)), 3);
    let all = json_lines(&e.ok(&["audit", "--json"], None));
    let ops: Vec<&str> = all.iter().map(|v| v["op"].as_str().unwrap()).collect();
    assert!(ops.contains(&"failed-unlock"), "{ops:?}");
    assert!(all.iter().any(|v| v["before_unlock"] == true));
    // Indexes from 1, no gaps.
    for (i, v) in all.iter().enumerate() {
        assert_eq!(v["index"].as_u64().unwrap(), i as u64 + 1);
    }
    // --name: the secret's writes and reads, and nothing else.
    let named = json_lines(&e.ok(&["audit", "--json", "--name", "db/password"], None));
    let ops: Vec<&str> = named.iter().map(|v| v["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["write", "read"]);
    // --op and --outcome.
    let reads = json_lines(&e.ok(&["audit", "--json", "--op", "read"], None));
    assert_eq!(reads.len(), 2);
    let errors = json_lines(&e.ok(&["audit", "--json", "--outcome", "error"], None));
    assert!(errors.iter().all(|v| v["outcome_code"] != 0));
    assert_eq!(errors.len(), 2, "{errors:?}");
    // --since in the future: nothing; --until in the future: everything so far.
    assert!(e.ok(&["audit", "--since", "2999-01-01"], None).is_empty());
    assert_eq!(
        json_lines(&e.ok(
            &["audit", "--json", "--until", "2999-01-01T00:00:00Z"],
            None
        ))
        .len(),
        json_lines(&e.ok(&["audit", "--json"], None)).len() - 1,
        "the second listing adds its own unlock"
    );
    assert_eq!(code(&e.run(&["audit", "--since", "yesterday"])), 2);
    for odd in ["é", "5é", "ꙮ", "-5d", "", "99999999999999999999d"] {
        assert_eq!(code(&e.run(&["audit", "--since", odd])), 2, "{odd:?}");
    }
    assert_eq!(code(&e.run(&["audit", "--name", ""])), 2);
    assert_eq!(code(&e.run(&["audit", "--op", "nope"])), 2);
    // No name or value in the files.
    for f in std::fs::read_dir(e.vault_dir()).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("audit.")
        {
            let bytes = std::fs::read(&p).unwrap();
            for needle in [&b"db/password"[..], b"hunter2"] {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{p:?}");
            }
        }
    }
    let ok = e.ok(&["audit", "verify"], None);
    assert!(String::from_utf8_lossy(&ok).starts_with("ok: "));
    // A changed entry: exit 5, naming it.
    let chain = e.vault_dir().join("audit.0");
    let mut bytes = std::fs::read(&chain).unwrap();
    bytes[200] ^= 1;
    std::fs::write(&chain, &bytes).unwrap();
    let bad = e.run(&["audit", "verify"]);
    assert_eq!(code(&bad), 5, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("broken at entry"), "{}", stderr(&bad));
}

/// 50 processes at once, each one operation: every one is in the chain exactly once (with its
/// unlock), the indexes have no gap, and the chain verifies.
#[test]
fn fifty_processes_leave_a_gap_free_chain_with_one_entry_each() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "shared"], Some(b"0"));
    let before = json_lines(&e.ok(&["audit", "--json"], None)).len();
    let mut children = Vec::new();
    for i in 0..50 {
        let mut c = if i % 2 == 0 {
            e.command(&["set", &format!("s{i}")])
        } else {
            e.command(&["get", "shared"])
        };
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        if i % 2 == 0 {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"v").unwrap();
        }
        children.push(child);
    }
    let mut pids = Vec::new();
    for c in children {
        pids.push(c.id());
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all = json_lines(&e.ok(&["audit", "--json"], None));
    for (i, v) in all.iter().enumerate() {
        assert_eq!(
            v["index"].as_u64().unwrap(),
            i as u64 + 1,
            "a gap or a repeat"
        );
    }
    let new = &all[before..];
    for pid in pids {
        let mine: Vec<&str> = new
            .iter()
            .filter(|v| v["pid"].as_u64() == Some(u64::from(pid)))
            .map(|v| v["op"].as_str().unwrap())
            .collect();
        assert!(
            mine == ["unlock", "write"] || mine == ["unlock", "read"],
            "process {pid}: {mine:?}"
        );
    }
    assert!(String::from_utf8_lossy(&e.ok(&["audit", "verify"], None)).starts_with("ok: "));
}

/// `--audit-fail-closed`: with the trail unwritable, a change and a read are refused (exit 1,
/// saying why) and the change is not made; without it they go ahead.
#[test]
fn fail_closed_refuses_when_the_trail_cannot_be_written() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "a"], Some(b"1"));
    let chain = e.vault_dir().join("audit.0");
    std::fs::remove_file(&chain).unwrap();
    std::fs::create_dir(&chain).unwrap();
    let strict = [("VAULT_AUDIT_FAIL_CLOSED", OsStr::new("true"))];
    let o = e.run_with(&["set", "a"], Some(b"2"), &strict);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("audit entry could not be written"),
        "{}",
        stderr(&o)
    );
    let o = e.run_with(&["get", "a"], None, &strict);
    assert_eq!(code(&o), 1);
    assert!(o.stdout.is_empty(), "no value shown");
    assert_eq!(
        e.ok(&["get", "a"], None),
        b"1",
        "the refused change was not made"
    );
    // The variable takes the usual spellings of a switch: 1 and yes hold, 0 and off do not.
    for on in ["1", "yes"] {
        let o = e.run_with(
            &["get", "a"],
            None,
            &[("VAULT_AUDIT_FAIL_CLOSED", OsStr::new(on))],
        );
        assert_eq!(code(&o), 1, "{on}: {}", stderr(&o));
    }
    for off in ["0", "off"] {
        let o = e.run_with(
            &["get", "a"],
            None,
            &[("VAULT_AUDIT_FAIL_CLOSED", OsStr::new(off))],
        );
        assert_eq!(code(&o), 0, "{off}: {}", stderr(&o));
    }
}

/// `vault audit policy`: shown, changed, refused before any passphrase when out of range; names
/// kept in clear are shown (and matched by `--name`) to whoever holds the passphrase, and are not
/// in the files.
#[test]
fn policy_names_in_clear_and_limits() {
    let e = Env::new();
    e.init();
    e.ok(&["set", "db/password"], Some(b"hunter2"));
    let shown = String::from_utf8(e.ok(&["audit", "policy"], None)).unwrap();
    assert!(
        shown.contains("names hashed; no size limit; no age limit"),
        "{shown}"
    );
    // Out of range: usage errors, before the passphrase is asked for.
    let no_pass = [
        ("VAULT_PASSPHRASE", OsStr::new("")),
        ("VAULT_PASSPHRASE_FILE", OsStr::new("/nonexistent")),
    ];
    for bad in [
        &["audit", "policy", "--max-size", "512KiB"][..],
        &["audit", "policy", "--max-size", "lots"],
        &["audit", "policy", "--max-age", "0"],
        &["audit", "policy", "--names", "plain"],
    ] {
        assert_eq!(code(&e.run_with(bad, None, &no_pass)), 2, "{bad:?}");
    }
    e.ok(
        &[
            "audit",
            "policy",
            "--names",
            "clear",
            "--max-size",
            "64MiB",
            "--max-age",
            "90",
        ],
        None,
    );
    let json: serde_json::Value =
        serde_json::from_slice(&e.ok(&["audit", "policy", "--json"], None)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"names": "clear", "max_size": 64 << 20, "max_age_days": 90})
    );
    e.ok(&["get", "db/password"], None);
    let named = json_lines(&e.ok(&["audit", "--json", "--name", "db/password"], None));
    let ops: Vec<&str> = named.iter().map(|v| v["op"].as_str().unwrap()).collect();
    // The write (hashed, before the change) and the read (in clear, after it).
    assert_eq!(ops, ["write", "read"]);
    assert!(named[0].get("target").is_none() && named[0]["target_hash"].is_string());
    assert_eq!(named[1]["target"], "db/password");
    assert_eq!(named[1]["target_kind"], "secret");
    let changes = json_lines(&e.ok(&["audit", "--json", "--op", "audit-policy"], None));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0]["detail"],
        "names=clear max-size=67108864 max-age-days=90"
    );
    for f in std::fs::read_dir(e.vault_dir()).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().starts_with("audit.") {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(!bytes.windows(11).any(|w| w == b"db/password"));
        }
    }
    let verified = String::from_utf8(e.ok(&["audit", "verify"], None)).unwrap();
    assert!(verified.contains("2 files, key epoch 0"), "{verified}");
    // Back to hashed names and no limits.
    e.ok(
        &[
            "audit",
            "policy",
            "--names",
            "hashed",
            "--max-size",
            "none",
            "--max-age",
            "none",
        ],
        None,
    );
    let shown = String::from_utf8(e.ok(&["audit", "policy"], None)).unwrap();
    assert!(
        shown.contains("names hashed; no size limit; no age limit"),
        "{shown}"
    );
}
