//! The order of writes, fsyncs and renames each operation issues, from a trace of the I/O layer.
//! A missing fsync cannot be seen by a kill test on a machine that never loses power (or under
//! eatmydata); this test sees it.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::sync::Arc;

use common::*;
use vault_store::{FileBackend, FileBackendOptions, SetOptions, Vault};

fn traced(d: &TestDir) -> (Vault, Arc<FaultyIo>) {
    let io = Arc::new(FaultyIo::new(&FaultyIo::ALL, 0, false, FaultKind::Eio));
    let b = FileBackend::with_options(
        d.vault_dir(),
        FileBackendOptions {
            io: Arc::new(SharedFaultyIo(io.clone())),
        },
    );
    (Vault::open(Arc::new(b), &pass(), d.options()).unwrap(), io)
}

/// The vault's own steps since `from`. The audit trail's appends are left out (they follow
/// the operation and are not synced on their own, by design: docs/designs/audit.md); their
/// order is checked by `an_audit_append_is_one_write_after_the_operation`. So is the directory
/// sync that makes a new audit file's name durable (after a rotation, the trail's next file).
fn since(io: &FaultyIo, from: usize) -> Vec<String> {
    let trace = &io.trace()[from..];
    trace
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            let after_audit_rename =
                *i > 0 && s.starts_with("SyncDir") && trace[i - 1].starts_with("Rename audit.");
            !s.contains(" audit.") && !s.ends_with(".audit-head") && !after_audit_rename
        })
        .map(|(_, s)| s.clone())
        .collect()
}

#[test]
fn an_audit_append_is_one_write_after_the_operation() {
    let d = TestDir::new();
    drop(d.create());
    let (v, io) = traced(&d);
    let n = io.trace().len();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let head = format!("Write {}.audit-head", v.vault_id().to_hex());
    assert_eq!(
        io.trace()[n..].to_vec(),
        ["Write log.0", "Sync log.0", "Write audit.0", head.as_str()]
    );
    // A read appends one entry (and moves the anchor), and writes nothing else.
    let n = io.trace().len();
    v.get("a").unwrap();
    assert_eq!(io.trace()[n..].to_vec(), ["Write audit.0", head.as_str()]);
}

#[test]
fn creation_writes_the_log_then_the_header_each_synced_before_rename() {
    let d = TestDir::new();
    let io = Arc::new(FaultyIo::new(&FaultyIo::ALL, 0, false, FaultKind::Eio));
    let b = FileBackend::with_options(
        d.vault_dir(),
        FileBackendOptions {
            io: Arc::new(SharedFaultyIo(io.clone())),
        },
    );
    Vault::create(Arc::new(b), &pass(), cheap_kdf(), d.options()).unwrap();
    let parent = d
        .vault_dir()
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        io.trace(),
        [
            "Create vault".to_string(),
            format!("SyncDir {parent}"),
            "Create lock".into(),
            "Create log.0.tmp".into(),
            "Write log.0.tmp".into(),
            "Sync log.0.tmp".into(),
            "Rename log.0.tmp -> log.0".into(),
            "SyncDir vault".into(),
            "Create header.tmp".into(),
            "Write header.tmp".into(),
            "Sync header.tmp".into(),
            "Rename header.tmp -> header".into(),
            "SyncDir vault".into(),
        ]
    );
}

#[test]
fn a_commit_is_one_write_then_one_sync_of_the_log() {
    let d = TestDir::new();
    drop(d.create());
    let (v, io) = traced(&d);
    let n = io.trace().len();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    assert_eq!(since(&io, n), ["Write log.0", "Sync log.0"]);
}

#[test]
fn compaction_syncs_the_new_log_before_the_rename_and_the_directory_after() {
    let d = TestDir::new();
    drop(d.create());
    let (v, io) = traced(&d);
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let n = io.trace().len();
    v.compact().unwrap();
    assert_eq!(
        since(&io, n),
        [
            "Create log.0.tmp",
            "Write log.0.tmp",
            "Sync log.0.tmp",
            "Rename log.0.tmp -> log.0",
            "SyncDir vault",
            // Then the index of the new log, derived data: after the log is in place.
            "Create index.0.tmp",
            "Write index.0.tmp",
            "Sync index.0.tmp",
            "Rename index.0.tmp -> index.0",
            "SyncDir vault"
        ]
    );
}

#[test]
fn a_passphrase_change_logs_its_intent_then_replaces_the_header_durably_then_confirms() {
    let d = TestDir::new();
    drop(d.create());
    let (v, io) = traced(&d);
    let n = io.trace().len();
    v.change_passphrase(&pass(), &secret(b"new"), None).unwrap();
    assert_eq!(
        since(&io, n),
        [
            "Write log.0",
            "Sync log.0",
            "Create header.tmp",
            "Write header.tmp",
            "Sync header.tmp",
            "Rename header.tmp -> header",
            "SyncDir vault",
            "Write log.0",
            "Sync log.0"
        ]
    );
}

#[test]
fn rotation_makes_the_new_log_durable_before_the_header_switches_to_it() {
    let d = TestDir::new();
    drop(d.create());
    let (v, io) = traced(&d);
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let n = io.trace().len();
    v.rotate_master_key(&pass(), false).unwrap();
    assert_eq!(
        since(&io, n),
        [
            "Create log.1.tmp",
            "Write log.1.tmp",
            "Sync log.1.tmp",
            "Rename log.1.tmp -> log.1",
            "SyncDir vault",
            "Create header.tmp",
            "Write header.tmp",
            "Sync header.tmp",
            "Rename header.tmp -> header",
            "SyncDir vault",
            "SyncDir vault", // after removing log.0
            // Then the new epoch's index, derived data: after the rotation is complete.
            "Create index.1.tmp",
            "Write index.1.tmp",
            "Sync index.1.tmp",
            "Rename index.1.tmp -> index.1",
            "SyncDir vault",
        ]
    );
    assert!(!d.vault_dir().join("log.0").exists());
}

/// For every operation of the shared list: whatever it wrote is synced before it returns (its
/// last counted step is an fsync of a file or a directory), and every file renamed into place was
/// synced before the rename.
#[test]
fn every_mutating_operation_syncs_before_it_returns_and_before_each_rename() {
    for op in vault_testkit::MutatingOp::ALL {
        let d = TestDir::new();
        {
            let v = d.create();
            op.prepare(&v);
        }
        let (v, io) = traced(&d);
        let n = io.trace().len();
        op.run(&v).unwrap();
        let trace = since(&io, n);
        let last = trace
            .last()
            .unwrap_or_else(|| panic!("{op:?} wrote nothing"));
        assert!(
            last.starts_with("Sync"),
            "{op:?}: ends with {last:?}: {trace:?}"
        );
        for (i, step) in trace.iter().enumerate() {
            if let Some(renamed) = step.strip_prefix("Rename ") {
                let tmp = renamed.split(" -> ").next().unwrap();
                assert!(
                    trace[..i].iter().any(|s| s == &format!("Sync {tmp}")),
                    "{op:?}: {tmp} renamed before it was synced: {trace:?}"
                );
            }
        }
    }
}
