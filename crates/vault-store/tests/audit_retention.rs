//! The audit trail over many files: a file sealed when full starts the next, retention removes
//! the oldest by size or age and says so in the chain, a removed file retention did not account
//! for is found, the policy (names in clear, limits) carries over a master-key rotation, a file
//! changed before a rotation sealed it is found, and a policy change failing at any write leaves
//! a trail that verifies.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use common::*;
use vault_store::{AuditOp, AuditPolicy, AuditTarget, Clock, SetOptions, Vault, VaultOptions};
use vault_store::{FileBackend, FileBackendOptions};

/// The chain files in the vault directory and their total size.
fn chain_files(dir: &Path) -> (Vec<String>, u64) {
    let mut names: Vec<String> = file_names(dir)
        .into_iter()
        .filter(|n| vault_store::is_audit_file_name(n) && n != "audit.pending")
        .collect();
    names.sort();
    let total = names
        .iter()
        .map(|n| std::fs::metadata(dir.join(n)).unwrap().len())
        .sum();
    (names, total)
}

fn policy(max_bytes: u64, max_age_days: u32, names_clear: bool) -> AuditPolicy {
    AuditPolicy {
        names_clear,
        max_bytes,
        max_age_days,
    }
}

#[test]
fn retention_by_size_keeps_one_verifiable_chain_and_finds_what_it_did_not_remove() {
    let d = TestDir::new();
    let v = d.create();
    v.set("db/password", secret(b"hunter2"), SetOptions::default())
        .unwrap();
    v.set_audit_policy(policy(1 << 20, 0, false)).unwrap();
    assert_eq!(v.audit_policy().unwrap(), policy(1 << 20, 0, false));
    // Reads until retention has removed files at least twice.
    let mut reads = 0u64;
    loop {
        v.get("db/password").unwrap();
        reads += 1;
        if reads.is_multiple_of(1000) {
            let t = v.audit_trail().unwrap();
            let notes = t
                .entries
                .iter()
                .filter(|e| e.op == AuditOp::Retention)
                .count();
            if notes >= 2 {
                break;
            }
        }
        assert!(reads < 200_000, "retention never ran");
    }
    let t = v.audit_trail().unwrap();
    assert_eq!(t.problem, None, "{:?}", t.files);
    let from = t.retained_from.expect("retention removed the first files");
    assert!(from > 1);
    // What is kept is one run of entries, from the first kept to the last.
    let indexes: Vec<u64> = t.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes[0], from);
    assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1));
    // Within the limit, give or take the file being written (a quarter of it).
    let (names, total) = chain_files(&d.vault_dir());
    assert!(
        total <= (1 << 20) + (1 << 18) + 4096,
        "{total} bytes in {names:?}"
    );
    assert!(names.len() >= 3, "{names:?}");
    // Each file starts with the policy it was written under (restated by the trail).
    let policies = t
        .entries
        .iter()
        .filter(|e| e.op == AuditOp::Policy && e.flags & vault_store::audit_flags::TRAIL != 0)
        .count();
    assert!(policies >= names.len() - 1, "{policies} for {names:?}");
    // The oldest file kept, removed without retention: found.
    let oldest = d.vault_dir().join(&names[0]);
    let aside = d.vault_dir().parent().unwrap().join("aside");
    std::fs::rename(&oldest, &aside).unwrap();
    let p = v
        .audit_trail()
        .unwrap()
        .problem
        .expect("a removed file is found");
    assert!(p.1.contains("retention kept from"), "{p:?}");
    std::fs::rename(&aside, &oldest).unwrap();
    // A file in the middle: found.
    let middle = d.vault_dir().join(&names[1]);
    std::fs::rename(&middle, &aside).unwrap();
    let p = v
        .audit_trail()
        .unwrap()
        .problem
        .expect("a removed file is found");
    assert!(p.1.contains("does not continue"), "{p:?}");
    std::fs::rename(&aside, &middle).unwrap();
    // A retention entry changed: it no longer authenticates.
    assert_eq!(v.audit_trail().unwrap().problem, None);
    // Reading a trail an entry at a time gives the same count.
    let mut n = 0;
    let each = v
        .audit_each(&mut |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(each.count, n);
    assert!(each.entries.is_empty());
    assert_eq!(n, t.count);
}

#[test]
fn retention_by_age_removes_files_whose_entries_are_all_older_than_the_limit() {
    let d = TestDir::new();
    let now = Arc::new(AtomicI64::new(1_800_000_000_000));
    let clock = now.clone();
    let opts = VaultOptions {
        clock: Clock::from_fn(move || clock.load(Ordering::SeqCst)),
        ..d.options()
    };
    let v = Vault::create(d.backend(), &pass(), cheap_kdf(), opts).unwrap();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.set_audit_policy(policy(0, 10, false)).unwrap();
    const DAY: i64 = 86_400_000;
    // Two days at a time for 30 days: the file is sealed each time its first entry is older
    // than an eighth of the limit.
    for _ in 0..15 {
        for _ in 0..5 {
            v.get("a").unwrap();
        }
        now.fetch_add(2 * DAY, Ordering::SeqCst);
    }
    v.get("a").unwrap();
    let t = v.audit_trail().unwrap();
    assert_eq!(t.problem, None, "{:?}", t.files);
    assert!(t.retained_from.is_some());
    let oldest = t.entries[0].time_ms;
    let at = now.load(Ordering::SeqCst);
    // Files go whole, when their last entry is past the limit: the oldest kept entry is at
    // most one file's span (two days here) older than the limit.
    assert!(at - oldest <= 12 * DAY, "{} days", (at - oldest) / DAY);
    assert!(at - oldest >= 8 * DAY, "{} days", (at - oldest) / DAY);
}

#[test]
fn names_kept_in_clear_are_sealed_and_carried_over_a_rotation() {
    let d = TestDir::new();
    let v = d.create();
    v.set("db/password", secret(b"hunter2"), SetOptions::default())
        .unwrap();
    v.set_audit_policy(policy(0, 0, true)).unwrap();
    v.set("db/password", secret(b"second"), SetOptions::default())
        .unwrap();
    let t = v.audit_trail().unwrap();
    assert_eq!(t.problem, None);
    let writes: Vec<_> = t
        .entries
        .iter()
        .filter(|e| e.op == AuditOp::Write)
        .collect();
    assert_eq!(writes.len(), 2);
    assert!(matches!(writes[0].target, AuditTarget::Hashed(_)));
    assert!(matches!(writes[1].target, AuditTarget::Sealed { .. }));
    assert_eq!(
        v.audit_target_name(&writes[1].target),
        Some(("db/password".to_string(), false))
    );
    // --name finds both: the hashed one and the sealed one.
    assert!(
        writes
            .iter()
            .all(|e| v.audit_target_is(&e.target, "db/password", false))
    );
    assert!(!v.audit_target_is(&writes[1].target, "db/password", true));
    assert!(!v.audit_target_is(&writes[1].target, "db/other", false));
    // Sealed, not in clear in the file.
    let (names, _) = chain_files(&d.vault_dir());
    for n in &names {
        let bytes = std::fs::read(d.vault_dir().join(n)).unwrap();
        assert!(!bytes.windows(11).any(|w| w == b"db/password"), "{n}");
    }
    // A rotation carries the policy into the new key epoch's file.
    v.rotate_master_key(&pass(), true).unwrap();
    drop(v);
    let v = d.open().unwrap();
    assert!(v.audit_policy().unwrap().names_clear);
    v.get("db/password").unwrap();
    let t = v.audit_trail().unwrap();
    assert_eq!(t.problem, None, "{:?}", t.files);
    let read = t.entries.iter().rfind(|e| e.op == AuditOp::Read).unwrap();
    assert_eq!(
        v.audit_target_name(&read.target),
        Some(("db/password".to_string(), false))
    );
    // Back to hashed names.
    v.set_audit_policy(policy(0, 0, false)).unwrap();
    v.get("db/password").unwrap();
    let t = v.audit_trail().unwrap();
    let read = t.entries.iter().rfind(|e| e.op == AuditOp::Read).unwrap();
    assert!(matches!(read.target, AuditTarget::Hashed(_)));
}

/// An entry changed before a master-key rotation sealed its file by hash: the rotation checks
/// the file under the old key first, and the trail says it did not verify.
#[test]
fn a_file_changed_before_a_rotation_sealed_it_is_found() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..5u8 {
        v.set(&format!("s{i}"), secret(&[i]), SetOptions::default())
            .unwrap();
    }
    let file = d.vault_dir().join("audit.0");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    assert!(v.audit_trail().unwrap().problem.is_some());
    v.rotate_master_key(&pass(), true).unwrap();
    let t = v.audit_trail().unwrap();
    let p = t.problem.expect("found after the rotation too");
    assert!(p.1.contains("did not verify when it was sealed"), "{p:?}");
}

/// Changing the policy (sealing a file, starting the next, removing the oldest files) failing at
/// each write, sync, rename and create in turn, with EIO from then on: the trail afterwards
/// verifies and still reaches the last entry it held before.
#[test]
fn a_policy_change_failing_at_any_step_leaves_a_trail_that_verifies() {
    let template = TestDir::new();
    {
        let v = template.create();
        v.set("a", secret(b"1"), SetOptions::default()).unwrap();
        v.set_audit_policy(policy(4 << 20, 0, false)).unwrap();
        // Files of 1 MiB: enough for the change below to remove some.
        while chain_files(&template.vault_dir()).0.len() < 4 {
            for _ in 0..1000 {
                v.get("a").unwrap();
            }
        }
    }
    let mut k = 1;
    loop {
        let root = tempfile::tempdir().unwrap();
        copy_dir(&template.vault_dir(), &root.path().join("vault"));
        copy_dir(&template.state_dir(), &root.path().join("state"));
        let faulty = Arc::new(FaultyIo::new(&FaultyIo::ALL, k, true, FaultKind::Eio));
        let backend = FileBackend::with_options(
            root.path().join("vault"),
            FileBackendOptions {
                io: Arc::new(SharedFaultyIo(faulty.clone())),
            },
        );
        let opts = VaultOptions {
            rollback_dir: Some(root.path().join("state")),
            ..VaultOptions::default()
        };
        let before = {
            let v = Vault::open(
                Arc::new(FileBackend::new(root.path().join("vault"))),
                &pass(),
                opts.clone(),
            )
            .unwrap();
            v.audit_trail().unwrap().entries.last().unwrap().index
        };
        if let Ok(v) = Vault::open(Arc::new(backend), &pass(), opts.clone()) {
            let _ = v.set_audit_policy(policy(1 << 20, 0, true));
        }
        let fired = faulty.fired();
        faulty.heal();
        let v = Vault::open(
            Arc::new(FileBackend::new(root.path().join("vault"))),
            &pass(),
            opts,
        )
        .unwrap();
        let t = v.audit_trail().unwrap();
        assert_eq!(t.problem, None, "fault at step {k}: {:?}", faulty.trace());
        let last = t.entries.last().unwrap().index;
        assert!(last >= before, "fault at step {k}: {last} < {before}");
        if !fired {
            // The change went through: the files past the limit are gone.
            assert!(t.retained_from.is_some());
            assert!(chain_files(&root.path().join("vault")).1 <= (1 << 20) + (1 << 18));
        }
        let (names, _) = chain_files(&root.path().join("vault"));
        assert!(
            file_names(&root.path().join("vault"))
                .iter()
                .all(|n| n != "audit.next.tmp"),
            "step {k}: {names:?}"
        );
        if !fired {
            break;
        }
        k += 1;
        assert!(k < 200);
    }
    eprintln!("a policy change failed at each of {} steps in turn", k - 1);
    assert!(k > 5, "only {k} steps");
}

/// Cuts the last `n` whole frames off the audit file at `path`.
fn cut_frames(path: &Path, n: usize) {
    let bytes = std::fs::read(path).unwrap();
    let mut end = bytes.len();
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[end - 4..end].try_into().unwrap()) as usize;
        end -= len + vault_format::audit::FRAME_OVERHEAD;
    }
    std::fs::write(path, &bytes[..end]).unwrap();
}

fn trail_problem(v: &Vault) -> String {
    let t = v.audit_trail().unwrap();
    t.problem.expect("the loss is found").1
}

/// Entries cut off the end, the newest file removed, every file removed, or the newest key
/// epochs' files removed: the anchor beside the rollback record says what was written, the loss
/// is found on reading (with nothing appended since), and the next append records it in the
/// chain, so that moving the anchor on does not make it disappear.
#[test]
fn what_the_anchor_vouches_for_cannot_be_removed_unseen() {
    let d = TestDir::new();
    let v = d.create();
    for i in 0..4u8 {
        v.set(&format!("s{i}"), secret(&[i]), SetOptions::default())
            .unwrap();
    }
    assert_eq!(v.audit_trail().unwrap().problem, None);
    cut_frames(&d.vault_dir().join("audit.0"), 2);
    assert!(trail_problem(&v).contains("removed from its end"));
    v.get("s0").unwrap();
    v.set("s9", secret(b"9"), SetOptions::default()).unwrap();
    drop(v);
    let v = d.open().unwrap();
    let t = v.audit_trail().unwrap();
    let (_, why) = t.problem.clone().expect("still found after more appends");
    assert!(why.contains("had been written"), "{why}");
    assert!(t.entries.iter().any(|e| e.op == AuditOp::Maintenance
        && e.outcome == 5
        && e.flags & vault_store::audit_flags::TRAIL != 0));

    // Every file removed.
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.set_audit_policy(policy(1 << 20, 0, false)).unwrap();
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    let (names, _) = chain_files(&d.vault_dir());
    assert_eq!(names.len(), 2, "{names:?}");
    for n in &names {
        std::fs::remove_file(d.vault_dir().join(n)).unwrap();
    }
    assert!(trail_problem(&v).contains("removed from its end"));
    drop(v);
    let v = d.open().unwrap();
    assert!(trail_problem(&v).contains("had been written"));

    // The newest file removed (and with it the policy change it started with).
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.set_audit_policy(policy(1 << 20, 0, true)).unwrap();
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    std::fs::remove_file(d.vault_dir().join("audit.0.1")).unwrap();
    assert!(trail_problem(&v).contains("removed from its end"));

    // The newest key epochs' files removed.
    let d = TestDir::new();
    let v = d.create();
    for i in 0..3u8 {
        v.set("a", secret(&[i]), SetOptions::default()).unwrap();
        v.rotate_master_key(&pass(), true).unwrap();
    }
    v.set("a", secret(b"last"), SetOptions::default()).unwrap();
    assert_eq!(v.audit_trail().unwrap().problem, None);
    let (names, _) = chain_files(&d.vault_dir());
    for n in names
        .iter()
        .filter(|n| n.starts_with("audit.3") || n.starts_with("audit.2"))
    {
        std::fs::remove_file(d.vault_dir().join(n)).unwrap();
    }
    assert!(trail_problem(&v).contains("removed from its end"));
    v.get("a").unwrap();
    assert!(trail_problem(&v).contains("had been written"));
}

/// A master-key rotation hands the old epoch's name keys over to the new epoch's file: hashed
/// and sealed names written before any number of rotations are still matched and opened.
#[test]
fn names_of_earlier_key_epochs_are_matched_after_rotations() {
    let d = TestDir::new();
    let v = d.create();
    v.set("db/password", secret(b"1"), SetOptions::default())
        .unwrap();
    v.set_audit_policy(policy(0, 0, true)).unwrap();
    v.set("db/password", secret(b"2"), SetOptions::default())
        .unwrap();
    v.rotate_master_key(&pass(), true).unwrap();
    v.rotate_master_key(&pass(), true).unwrap();
    v.get("db/password").unwrap();
    let mut found = Vec::new();
    let mut opened = Vec::new();
    let t = v
        .audit_each(&mut |e, names| {
            if names.is(&e.target, "db/password", false) {
                found.push(e.op);
            }
            if let Some(n) = names.name_of(&e.target) {
                opened.push(n);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(t.problem, None);
    assert_eq!(found, [AuditOp::Write, AuditOp::Write, AuditOp::Read]);
    assert_eq!(opened, vec![("db/password".to_string(), false); 2]);
    // Not matched as a key of that name, nor as another secret.
    let mut other = 0;
    v.audit_each(&mut |e, names| {
        if names.is(&e.target, "db/password", true) || names.is(&e.target, "db/other", false) {
            other += 1;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(other, 0);
}

/// Policy changes (each writing the next file aside, then renaming it) while other handles
/// open and write (each sweeping the vault directory of leftovers once): no change fails, and
/// the trail verifies. The file written aside was once named like a leftover and swept away
/// under a change in progress.
#[test]
fn policy_changes_race_writers_that_sweep_leftovers() {
    let d = TestDir::new();
    drop(d.create());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let failures = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while std::time::Instant::now() < deadline {
                let v = d.open().unwrap();
                i += 1;
                let p = policy(
                    if i.is_multiple_of(2) {
                        1 << 20
                    } else {
                        2 << 20
                    },
                    0,
                    i.is_multiple_of(3),
                );
                if let Err(e) = v.set_audit_policy(p) {
                    eprintln!("policy change {i}: {e}");
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        for t in 0..2 {
            let d = &d;
            s.spawn(move || {
                let mut i = 0u64;
                while std::time::Instant::now() < deadline {
                    let v = d.open().unwrap();
                    i += 1;
                    v.set(
                        &format!("t{t}"),
                        secret(&i.to_le_bytes()),
                        SetOptions::default(),
                    )
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    let v = d.open().unwrap();
    assert_eq!(v.audit_trail().unwrap().problem, None);
    // The race is narrow; the cause is not: a writer's sweep leaves the file a change writes
    // aside (`audit.next`) alone, and removes what is named like a leftover.
    std::fs::write(d.vault_dir().join("audit.next"), b"").unwrap();
    std::fs::write(d.vault_dir().join("log.0.tmp"), b"").unwrap();
    drop(v);
    d.open()
        .unwrap()
        .set("after", secret(b"x"), SetOptions::default())
        .unwrap();
    assert!(d.vault_dir().join("audit.next").exists());
    assert!(!d.vault_dir().join("log.0.tmp").exists());
}

/// A file named for a key epoch the vault has not reached (no rotation happened) does not stop
/// the trail: appends go on and say so, and a reader reports it; a changed anchor is recorded
/// by the next append, so overwriting it does not hide what it vouched for; a rotation whose
/// audit step did not happen (the new epoch's file started without the handover) is noted.
#[test]
fn foreign_later_files_changed_anchors_and_missing_handovers() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    std::fs::write(d.vault_dir().join("audit.1"), b"junk").unwrap();
    let p = trail_problem(&v);
    assert!(p.contains("has not reached"), "{p}");
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    std::fs::remove_file(d.vault_dir().join("audit.1")).unwrap();
    let t = v.audit_trail().unwrap();
    assert!(
        t.entries
            .iter()
            .any(|e| e.op == AuditOp::Write && e.detail == "v1" && e.index > 2)
    );
    let (_, why) = t.problem.expect("recorded in the chain");
    assert!(why.contains("has not reached"), "{why}");

    // A changed anchor.
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let anchor = std::fs::read_dir(d.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".audit-head"))
        .unwrap();
    let mut bytes = std::fs::read(&anchor).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&anchor, &bytes).unwrap();
    assert!(trail_problem(&v).contains("anchor"));
    v.get("a").unwrap();
    v.get("a").unwrap();
    assert!(trail_problem(&v).contains("was changed"));
    // Emptied, its epoch field moved past the vault's, or a link to nothing: changed too (each
    // in a vault of its own, the first report being the one looked for).
    for change in ["empty", "epoch", "dangling"] {
        let d = TestDir::new();
        let v = d.create();
        v.set("a", secret(b"1"), SetOptions::default()).unwrap();
        let anchor = std::fs::read_dir(d.state_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".audit-head"))
            .unwrap();
        match change {
            "empty" => std::fs::write(&anchor, b"").unwrap(),
            "epoch" => {
                let mut bytes = std::fs::read(&anchor).unwrap();
                bytes[0] = 1;
                std::fs::write(&anchor, &bytes).unwrap();
            }
            _ => {
                std::fs::remove_file(&anchor).unwrap();
                std::os::unix::fs::symlink("/nonexistent", &anchor).unwrap();
            }
        }
        assert!(trail_problem(&v).contains("was changed"), "{change}");
        v.get("a").unwrap();
        assert!(
            trail_problem(&v).contains("was changed"),
            "{change}, after an append"
        );
    }

    // A rotation whose audit step did not happen: its handover is missing (simulated by
    // removing the new epoch's first file before anything else was appended to it).
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.rotate_master_key(&pass(), true).unwrap();
    drop(v);
    std::fs::remove_file(d.vault_dir().join("audit.1")).unwrap();
    for e in std::fs::read_dir(d.state_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".audit-head") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let v = d.open().unwrap();
    let t = v.audit_trail().unwrap();
    assert_eq!(t.problem, None);
    assert!(
        t.notes.iter().any(|n| n.contains("do not hand over")),
        "{:?}",
        t.notes
    );
}
