//! Real processes: concurrent writers in 50 processes, and a writer killed with SIGKILL at random
//! points. The children are this test binary re-run with an environment variable naming their
//! job, so they use exactly the public API under test.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use vault_store::{Error, FileBackend, SetOptions, Vault, VaultOptions};

const ROLE: &str = "VAULT_TEST_CHILD_ROLE";
const DIR: &str = "VAULT_TEST_CHILD_DIR";

fn child_options(root: &Path) -> VaultOptions {
    VaultOptions {
        rollback_dir: Some(root.join("state")),
        lock_timeout: Duration::from_secs(120),
        ..VaultOptions::default()
    }
}

fn open_in(root: &Path) -> Vault {
    Vault::open(
        Arc::new(FileBackend::new(root.join("vault"))),
        &pass(),
        child_options(root),
    )
    .unwrap()
}

fn spawn_child(test_name: &str, role: &str, root: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Entry point of the children; a no-op when run as an ordinary test.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let root = PathBuf::from(std::env::var(DIR).unwrap());
    let v = open_in(&root);
    let mut out = std::io::stdout().lock();
    match role.as_str() {
        "increment" => {
            for _ in 0..20 {
                loop {
                    let cur = v.get("counter").unwrap();
                    let n: u64 = std::str::from_utf8(cur.value.expose_secret())
                        .unwrap()
                        .parse()
                        .unwrap();
                    let r = v.set(
                        "counter",
                        secret((n + 1).to_string().as_bytes()),
                        SetOptions {
                            expected_version: Some(cur.version),
                            ..SetOptions::default()
                        },
                    );
                    match r {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            writeln!(out, "done").unwrap();
        }
        "writer" => {
            for i in 0u64.. {
                let name = format!("k{i}");
                v.set(
                    &name,
                    secret(format!("value {i}").as_bytes()),
                    SetOptions::default(),
                )
                .unwrap();
                if i % 37 == 36 {
                    v.compact().unwrap();
                }
                // Acknowledged: the commit is durable.
                writeln!(out, "ack {i}").unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    Vault::create(
        Arc::new(FileBackend::new(root.join("vault"))),
        &pass(),
        cheap_kdf(),
        child_options(&root),
    )
    .unwrap();
    (tmp, root)
}

#[test]
fn fifty_processes_lose_no_update() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let (_tmp, root) = setup();
    let v = open_in(&root);
    v.set("counter", secret(b"0"), SetOptions::default())
        .unwrap();
    let children: Vec<_> = (0..50)
        .map(|_| spawn_child("child_entry", "increment", &root))
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {:?}", out.status);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("done\n"),
            "child did not finish its updates: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let got = v.get("counter").unwrap();
    assert_eq!(got.value.expose_secret(), b"1000", "updates were lost");
    assert_eq!(got.version, 1001);
    v.verify().unwrap();
}

/// xorshift64*, seeded from the clock; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn sigkill_never_loses_an_acknowledged_write() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let seed = std::env::var("VAULT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("seed {seed} (set VAULT_TEST_SEED to replay)");
    let mut rng = Rng(seed);
    let (_tmp, root) = setup();
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..12 {
        let mut child = spawn_child("child_entry", "writer", &root);
        let stdout = child.stdout.take().unwrap();
        let deadline = Duration::from_millis(20 + rng.next() % 300);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints "test child_entry ... " before the child's first line.
                if let Some((_, n)) = line.split_once("ack ") {
                    let _ = tx.send(n.parse::<u64>().unwrap());
                }
            }
        });
        let start = Instant::now();
        while start.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let this_round: Vec<u64> = rx.try_iter().collect();
        // Every acknowledged write of this round, and of all earlier ones that were not
        // overwritten (each round restarts at k0 and overwrites), must be present.
        let v = open_in(&root);
        for i in &this_round {
            let got = v.get(&format!("k{i}")).unwrap_or_else(|e| {
                panic!("round {round} seed {seed}: acknowledged k{i} lost: {e}")
            });
            assert_eq!(got.value.expose_secret(), format!("value {i}").as_bytes());
        }
        for i in &acked {
            assert!(
                v.get(&format!("k{i}")).is_ok(),
                "round {round} seed {seed}: k{i} lost"
            );
        }
        v.verify()
            .unwrap_or_else(|e| panic!("round {round} seed {seed}: {e}"));
        acked.extend(this_round);
        acked.sort_unstable();
        acked.dedup();
    }
    eprintln!(
        "{} distinct acknowledged writes checked across 12 kills",
        acked.len()
    );
    assert!(!acked.is_empty(), "the child never acknowledged a write");
}
