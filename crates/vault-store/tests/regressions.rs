//! Regression tests for the defects found by attacking the release binary (issue 7): each
//! failed on the engine before its fix. Races are made deterministic with a backend wrapper that
//! runs another handle's operation at the moment the engine asks for a lock.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use vault_crypto::Key256;
use vault_crypto::kdf::KdfParams;
use vault_format::{KeySlot, VaultHeader};
use vault_store::{
    Appended, Backend, Cursor, Error, FileBackend, KdfLimit, ReadSession, SetOptions, Vault,
    VaultOptions, Visit, WriteSession,
};

type Hook = Box<dyn FnOnce() + Send>;

/// A [`FileBackend`] that runs `hook` once, just before the first lock (of either kind) is
/// requested: the moment between reading the header unlocked and locking.
struct BeforeLock {
    inner: FileBackend,
    hook: Mutex<Option<Hook>>,
}

impl BeforeLock {
    fn new(dir: &Path, hook: impl FnOnce() + Send + 'static) -> Arc<Self> {
        Arc::new(Self {
            inner: FileBackend::new(dir),
            hook: Mutex::new(Some(Box::new(hook))),
        })
    }
    fn fire(&self) {
        let hook = self.hook.lock().unwrap().take();
        if let Some(h) = hook {
            h();
        }
    }
}

impl Backend for BeforeLock {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn exists(&self) -> vault_store::Result<bool> {
        self.inner.exists()
    }
    fn create(&self, header: &[u8], epoch: u32, snapshot: &[u8]) -> vault_store::Result<()> {
        self.inner.create(header, epoch, snapshot)
    }
    fn read_header(&self) -> vault_store::Result<Vec<u8>> {
        self.inner.read_header()
    }
    fn changed(&self, epoch: u32, since: &Cursor) -> vault_store::Result<bool> {
        self.inner.changed(epoch, since)
    }
    fn begin_read(&self, t: Duration) -> vault_store::Result<Box<dyn ReadSession + '_>> {
        self.fire();
        self.inner.begin_read(t)
    }
    fn begin_write(&self, t: Duration) -> vault_store::Result<Box<dyn WriteSession + '_>> {
        self.fire();
        self.inner.begin_write(t)
    }
}

fn options_for(root: &Path) -> VaultOptions {
    VaultOptions {
        rollback_dir: Some(root.join("state")),
        ..VaultOptions::default()
    }
}

fn get(v: &Vault, name: &str) -> Vec<u8> {
    v.get(name).unwrap().value.expose_secret().to_vec()
}

/// Defect 1: a process that read the header before a rotation and locked after it removed the
/// new log as a leftover of its stale epoch; every later command failed.
#[test]
fn opening_across_a_rotation_never_removes_the_new_log() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    drop(v);
    let (dir, root) = (d.vault_dir(), d.tmp.path().to_path_buf());
    let rotate = {
        let (dir, root) = (dir.clone(), root.clone());
        move || {
            let other = Vault::open(
                Arc::new(FileBackend::new(&dir)),
                &pass(),
                options_for(&root),
            )
            .unwrap();
            other.rotate_master_key(&pass(), false).unwrap();
        }
    };
    let opened = Vault::open(BeforeLock::new(&dir, rotate), &pass(), options_for(&root));
    // The open starts over with the new header and succeeds; the vault is whole.
    let opened = opened.unwrap();
    assert_eq!(get(&opened, "a"), b"1");
    opened
        .set("b", secret(b"2"), SetOptions::default())
        .unwrap();
    let names = file_names(&dir);
    assert!(names.contains(&"log.1".to_string()), "{names:?}");
    let fresh = d.open().unwrap();
    assert_eq!(get(&fresh, "a"), b"1");
    assert_eq!(get(&fresh, "b"), b"2");
    fresh.verify().unwrap();
}

/// Defect 1, the writer side: a write whose handle was opened before another process rotated
/// the key is told to reopen, and removes nothing.
#[test]
fn a_stale_writer_after_a_rotation_is_rekeyed_and_removes_nothing() {
    let d = TestDir::new();
    let stale = d.create();
    stale.set("a", secret(b"1"), SetOptions::default()).unwrap();
    d.open().unwrap().rotate_master_key(&pass(), false).unwrap();
    let r = stale.set("a", secret(b"2"), SetOptions::default());
    assert!(matches!(r, Err(Error::Rekeyed)), "{r:?}");
    assert!(matches!(stale.compact(), Err(Error::Rekeyed)));
    let v = d.open().unwrap();
    assert_eq!(get(&v, "a"), b"1");
    v.verify().unwrap();
}

/// Defect 2: positions were recognised by inode and length, and ext4 reuses inode numbers,
/// so after compactions a handle read the new log from its old offset and, as a writer, cut
/// acknowledged commits off. Another handle compacts until the log file has the inode the first
/// handle saw (ext4, where the temp directory is on these machines, hands a freed inode out
/// again), then commits until the log is longer than the first handle's position.
#[test]
fn a_handle_survives_compactions_that_recycle_the_log_inode() {
    use std::os::unix::fs::MetadataExt;
    let mut recycled = 0;
    for round in 0..10u8 {
        let d = TestDir::new();
        let a = d.create();
        for i in 0..5u8 {
            a.set(&format!("k{i}"), secret(&[i; 64]), SetOptions::default())
                .unwrap();
        }
        let ino = |d: &TestDir| std::fs::metadata(log_path(&d.vault_dir())).unwrap().ino();
        let (first, len) = (
            ino(&d),
            std::fs::metadata(log_path(&d.vault_dir())).unwrap().len(),
        );
        let b = d.open().unwrap();
        b.compact().unwrap();
        for _ in 0..50 {
            b.compact().unwrap();
            if ino(&d) == first {
                recycled += 1;
                break;
            }
        }
        let mut n = 0u32;
        while std::fs::metadata(log_path(&d.vault_dir())).unwrap().len() <= len + 64 {
            b.set("acked", secret(&[round; 64]), SetOptions::default())
                .unwrap();
            n += 1;
        }
        // `a` still holds its position in the first log; its write must catch up properly.
        a.set("later", secret(b"x"), SetOptions::default()).unwrap();
        let v = d.open().unwrap();
        assert_eq!(get(&v, "acked"), vec![round; 64], "round {round}");
        assert_eq!(
            v.history("acked").unwrap().len(),
            n as usize,
            "round {round}"
        );
        assert_eq!(get(&v, "later"), b"x");
        assert_eq!(get(&a, "acked"), vec![round; 64]);
        v.verify().unwrap();
    }
    eprintln!("the log inode was recycled in {recycled} of 10 rounds");
}

/// Defect 2, at the storage seam: a truncation or append at a position whose log was replaced
/// is refused, whatever the file's inode and length.
#[test]
fn the_file_backend_never_cuts_or_appends_at_a_stale_position() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let backend = FileBackend::new(d.vault_dir());
    let out = (backend.begin_read(Duration::from_secs(5)).unwrap())
        .read(0, &Cursor::START, &mut |_| Ok(Visit::Continue))
        .unwrap();
    let stale = out.end;
    v.compact().unwrap();
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    let log = log_path(&d.vault_dir());
    let before = std::fs::read(&log).unwrap();
    // The stale cursor's check, with the new log's inode and an offset inside it.
    let ino = std::fs::metadata(&log)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        })
        .unwrap();
    let forged = Cursor::new(
        ino,
        stale.offset().min(before.len() as u64 - 1),
        *stale.check(),
    );
    let mut session = backend.begin_write(Duration::from_secs(5)).unwrap();
    assert!(session.discard_tail(0, &forged).is_err());
    assert_eq!(
        session.append(0, &forged, b"frame").unwrap(),
        Appended::Stale
    );
    drop(session);
    assert_eq!(std::fs::read(&log).unwrap(), before);
    assert!(backend.changed(0, &forged).unwrap());
}

/// Defect 3: copying back only the header revived a changed or removed passphrase.
#[test]
fn an_old_header_copied_back_is_refused_and_only_accepted_explicitly() {
    for removal in [false, true] {
        let d = TestDir::new();
        let v = d.create();
        v.set("a", secret(b"1"), SetOptions::default()).unwrap();
        let header = d.vault_dir().join("header");
        let old_header = std::fs::read(&header).unwrap();
        if removal {
            let id = v
                .add_passphrase(&pass(), &secret(b"second"), cheap_kdf())
                .unwrap();
            let with_two = std::fs::read(&header).unwrap();
            v.remove_slot(&pass(), id).unwrap();
            drop(v);
            std::fs::write(&header, &with_two).unwrap();
            let r = Vault::open(d.backend(), &secret(b"second"), d.options());
            assert!(matches!(&r, Err(e) if e.is_integrity()), "{r:?}");
        } else {
            v.change_passphrase(&pass(), &secret(b"new"), None).unwrap();
            drop(v);
            std::fs::write(&header, &old_header).unwrap();
            let r = d.open();
            assert!(matches!(&r, Err(e) if e.is_integrity()), "{r:?}");
        }
        // Also on a machine without the rollback record: the log itself vouches for the header.
        std::fs::remove_dir_all(d.state_dir()).ok();
        let opened = if removal {
            Vault::open(d.backend(), &secret(b"second"), d.options())
        } else {
            d.open()
        };
        assert!(matches!(&opened, Err(e) if e.is_integrity()), "{opened:?}");
    }
}

/// Defect 3, the crash window: a header change interrupted after its intent was logged opens
/// with either header.
#[test]
fn a_header_change_interrupted_after_its_intent_opens_with_either_header() {
    let d = TestDir::new();
    let v = d.create();
    let header = d.vault_dir().join("header");
    let old_header = std::fs::read(&header).unwrap();
    v.change_passphrase(&pass(), &secret(b"new"), None).unwrap();
    drop(v);
    // Drop the confirmation frame: as if the process died right after writing the header.
    let log = log_path(&d.vault_dir());
    let bytes = std::fs::read(&log).unwrap();
    let frames = frame_starts(&bytes);
    let last_start = *frames.last().unwrap();
    std::fs::write(&log, &bytes[..last_start]).unwrap();
    std::fs::remove_dir_all(d.state_dir()).ok();
    Vault::open(d.backend(), &secret(b"new"), d.options()).unwrap();
    // ... or before the header was written.
    std::fs::write(&header, &old_header).unwrap();
    let v = d.open().unwrap();
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    d.open().unwrap().verify().unwrap();
}

/// Defect 4: accepting a pre-rotation copy rewrote one slot of the rollback record, and the next
/// command failed again.
#[test]
fn accepting_a_pre_rotation_copy_sticks() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    drop(v);
    let old = d.tmp.path().join("old");
    copy_dir(&d.vault_dir(), &old);
    let v = d.open().unwrap();
    v.rotate_master_key(&pass(), false).unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    v.set("a", secret(b"3"), SetOptions::default()).unwrap();
    drop(v);
    std::fs::remove_dir_all(d.vault_dir()).unwrap();
    copy_dir(&old, &d.vault_dir());
    assert!(matches!(d.open(), Err(Error::RollbackDetected { .. })));
    let accepted = Vault::open(
        d.backend(),
        &pass(),
        VaultOptions {
            accept_rollback: true,
            ..d.options()
        },
    )
    .unwrap();
    drop(accepted);
    let v = d.open().unwrap();
    assert_eq!(get(&v, "a"), b"1");
    v.set("a", secret(b"4"), SetOptions::default()).unwrap();
    d.open().unwrap().verify().unwrap();
}

/// Defect 5: with no rollback record, a modified last commit frame was taken for a torn write
/// and silently dropped (and a writer cut it off).
#[test]
fn a_modified_last_frame_is_damage_even_without_a_rollback_record() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    drop(v);
    let log = log_path(&d.vault_dir());
    let original = std::fs::read(&log).unwrap();
    let last = *frame_starts(&original).last().unwrap();
    // Every byte of the last frame's body (its length prefix can only announce more than is
    // there, which is what a crash leaves too: covered by the torn-tail tests).
    for i in last + 4..original.len() {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        std::fs::write(&log, &bytes).unwrap();
        std::fs::remove_dir_all(d.state_dir()).ok();
        let r = d.open();
        assert!(matches!(&r, Err(e) if e.is_integrity()), "byte {i}: {r:?}");
        assert_eq!(
            std::fs::read(&log).unwrap(),
            bytes,
            "byte {i}: the log was modified"
        );
    }
}

/// Defect 5, the second half: a read-only open never modifies the vault, not even to cut a
/// torn tail or to clean up, and a frame made to look "torn" is not cut before the rollback is
/// reported.
#[test]
fn reading_never_modifies_the_vault() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    drop(v);
    let log = log_path(&d.vault_dir());
    let original = std::fs::read(&log).unwrap();
    // The last frame's cleartext generation set to 2^64-1: damage, reported, nothing cut.
    let last = *frame_starts(&original).last().unwrap();
    let mut bytes = original.clone();
    bytes[last + 4 + 4..last + 4 + 12].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&log, &bytes).unwrap();
    let r = d.open();
    assert!(matches!(&r, Err(e) if e.is_integrity()), "{r:?}");
    assert_eq!(std::fs::read(&log).unwrap(), bytes);
    // A real torn tail (half a frame) and a leftover temp file: reads leave both alone.
    let mut torn = original.clone();
    torn.extend_from_slice(&original[last..last + (original.len() - last) / 2]);
    std::fs::write(&log, &torn).unwrap();
    std::fs::write(d.vault_dir().join("header.tmp"), b"leftover").unwrap();
    let before = dir_contents(&d.vault_dir());
    let v = d.open().unwrap();
    assert_eq!(get(&v, "a"), b"2");
    v.list(true).unwrap();
    v.history("a").unwrap();
    let report = v.verify().unwrap();
    assert!(report.torn_tail);
    assert_eq!(dir_contents(&d.vault_dir()), before);
    // The first write discards the torn tail and the leftover.
    v.set("a", secret(b"3"), SetOptions::default()).unwrap();
    assert!(!d.vault_dir().join("header.tmp").exists());
    let report = d.open().unwrap().verify().unwrap();
    assert!(!report.torn_tail);
}

/// The vault's own files and their bytes. The audit trail (`audit.*`) is left out: it records
/// reads too, by design (docs/designs/audit.md), so a read appends to it and changes nothing else.
fn dir_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = file_names(dir)
        .into_iter()
        .filter(|n| !n.starts_with("audit."))
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    out.sort();
    out
}

/// Defect 6: a sparse 64 GiB log made the process abort allocating 64 GiB.
#[test]
fn a_huge_sparse_log_is_refused_without_allocating_it() {
    let d = TestDir::new();
    drop(d.create());
    let log = log_path(&d.vault_dir());
    for size in [64u64 << 30, 3 << 30] {
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let start = Instant::now();
        let r = d.open();
        assert!(matches!(&r, Err(e) if e.is_integrity()), "{size}: {r:?}");
        assert!(start.elapsed() < Duration::from_secs(20));
    }
}

/// Inserts, before the real slot, passphrase slots with ids `ids` and KDF `kdf` that wrap a key
/// nobody has (the header MAC is not recomputed: someone without the master key did this).
fn insert_foreign_slots(header_path: &Path, ids: &[u16], kdf: KdfParams) {
    let mut header = VaultHeader::decode(&std::fs::read(header_path).unwrap()).unwrap();
    for &id in ids {
        let slot = KeySlot::create_with(&vault_format::FixedPassphraseSlot {
            id,
            kek: &Key256::generate().unwrap(),
            kdf,
            salt: [0; 16],
            master: &Key256::generate().unwrap(),
            vault_id: &header.vault_id,
            key_epoch: header.key_epoch,
            nonce: None,
        })
        .unwrap();
        header.slots.insert(0, slot);
    }
    std::fs::write(header_path, header.encode()).unwrap();
}

/// Defect 6: a key slot asking for hours of Argon2id is not tried; an inserted slot is caught
/// by the header MAC once the real slot opens.
#[test]
fn a_hostile_kdf_slot_is_refused_before_running_it() {
    let d = TestDir::new();
    drop(d.create());
    let header_path = d.vault_dir().join("header");
    let hostile = KdfParams::for_key(4 * 1024 * 1024, 1024, 1).unwrap();
    insert_foreign_slots(&header_path, &[7], hostile);
    let start = Instant::now();
    let r = d.open();
    assert!(matches!(&r, Err(e) if e.is_integrity()), "{r:?}");
    let r = Vault::open(d.backend(), &secret(b"wrong"), d.options());
    match r {
        Err(Error::KdfLimit { slot: 7, detail }) => {
            assert!(detail.contains("4096 MiB"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(20));
    // Creating or adding a slot the default limit could not open is refused up front.
    let d2 = TestDir::new();
    let r = Vault::create(d2.backend(), &pass(), hostile, d2.options());
    assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
    let limit = KdfLimit::DEFAULT;
    assert!(limit.refusal(&KdfParams::DEFAULT).is_none());
}

/// Found by the second hostile pass: the work limit was per slot, so several inserted slots,
/// each within it, added up (two of 1 GiB x 4 passes took 9.5 s). The limit now bounds one open.
#[test]
fn extra_slots_cannot_add_up_past_the_work_limit() {
    let d = TestDir::new();
    drop(d.create());
    let header_path = d.vault_dir().join("header");
    // Each slot costs 16 MiB x 2 passes; the limit allows 40 MiB-passes for one open.
    let each = KdfParams::for_key(16 * 1024, 2, 1).unwrap();
    insert_foreign_slots(&header_path, &[5, 6], each);
    let limit = KdfLimit {
        max_memory_kib: 1024 * 1024,
        max_cost: 40 * 1024,
    };
    assert!(
        limit.refusal(&each).is_none(),
        "each slot alone is within the limit"
    );
    let r = Vault::open(
        d.backend(),
        &secret(b"wrong"),
        VaultOptions {
            kdf_limit: limit,
            ..d.options()
        },
    );
    match r {
        Err(Error::KdfLimit { slot: 5, detail }) => {
            assert!(detail.contains("for one open"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

/// Defect 8: a removed lock file made every command say "no vault"; a missing header made
/// `create` overwrite the log; a deleted log was reported as a rotation.
#[test]
fn missing_files_are_reported_exactly() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    drop(v);
    std::fs::remove_file(d.vault_dir().join("lock")).unwrap();
    let v = d.open().unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    assert!(d.vault_dir().join("lock").exists());
    drop(v);

    let header = d.vault_dir().join("header");
    let saved = std::fs::read(&header).unwrap();
    std::fs::remove_file(&header).unwrap();
    let r = d.open();
    assert!(matches!(&r, Err(e) if e.is_integrity()), "{r:?}");
    let log_before = std::fs::read(log_path(&d.vault_dir())).unwrap();
    let r = Vault::create(d.backend(), &pass(), cheap_kdf(), d.options());
    assert!(
        matches!(&r, Err(Error::Integrity { detail, .. }) if detail.contains("header file is missing")),
        "{r:?}"
    );
    assert_eq!(std::fs::read(log_path(&d.vault_dir())).unwrap(), log_before);
    std::fs::write(&header, &saved).unwrap();

    std::fs::remove_file(log_path(&d.vault_dir())).unwrap();
    let r = d.open();
    assert!(matches!(&r, Err(e) if e.is_integrity()), "{r:?}");
    assert!(!matches!(r, Err(Error::Rekeyed)));
}

/// Defect 9: names with bidi overrides or zero-width characters looked like other names.
#[test]
fn deceptive_names_are_refused() {
    let (_b, v) = memory();
    for name in [
        "evil\u{202E}txt",
        "a\u{200B}b",
        "x\u{2028}y",
        "nb\u{00A0}sp",
        "\u{FEFF}bom",
    ] {
        let r = v.set(name, secret(b"1"), SetOptions::default());
        assert!(matches!(r, Err(Error::Invalid { .. })), "{name:?}: {r:?}");
    }
    v.set("ordinary-name/e", secret(b"1"), SetOptions::default())
        .unwrap();
}

/// Found by the hostile tester after the fixes: a FIFO put in place of the header (or the log,
/// or the rollback record) made every command block forever in `open`. Such a file, or a
/// directory, is damage: an integrity failure (exit 5), not an I/O error.
#[test]
fn a_fifo_in_place_of_a_vault_file_is_refused_without_blocking() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    drop(v);
    let record = rollback_record(&d);
    for file in [
        d.vault_dir().join("header"),
        log_path(&d.vault_dir()),
        record,
    ] {
        let saved = d.tmp.path().join("saved");
        std::fs::rename(&file, &saved).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&file)
            .status()
            .unwrap();
        assert!(made.success());
        let start = Instant::now();
        let r = d
            .open()
            .map(|v| v.get("a").map(|s| s.value.expose_secret().to_vec()));
        assert!(
            matches!(&r, Err(e) if e.is_integrity()),
            "{}: {r:?}",
            file.display()
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        let r = d.open().map(|_| ());
        assert!(
            matches!(&r, Err(e) if e.is_integrity()),
            "a directory as {}: {r:?}",
            file.display()
        );
        std::fs::remove_dir(&file).unwrap();
        std::fs::rename(&saved, &file).unwrap();
    }
    assert_eq!(get(&d.open().unwrap(), "a"), b"1");
}

/// A damaged slot of the rollback record is survivable (the other slot serves), but `verify`
/// says so rather than a plain ok; the next write rewrites the record.
#[test]
fn verify_reports_a_damaged_rollback_slot() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    drop(v);
    assert!(d.open().unwrap().verify().unwrap().warnings.is_empty());
    let record = rollback_record(&d);
    let mut bytes = std::fs::read(&record).unwrap();
    bytes[32 + 40] ^= 0xff; // inside slot 0's MAC
    std::fs::write(&record, &bytes).unwrap();
    let v = d.open().unwrap();
    let report = v.verify().unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("slot 0"),
        "{:?}",
        report.warnings
    );
    v.set("a", secret(b"3"), SetOptions::default()).unwrap();
    assert!(v.verify().unwrap().warnings.is_empty());
}

/// Found by the third hostile pass: a rollback record cut short inside its second slot locked
/// every command out; the whole first slot still serves. A record that is unreadable as a whole
/// is an integrity failure until accepted, and accepting says what it accepted.
#[test]
fn a_rollback_record_cut_short_in_a_slot_still_serves() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    drop(v);
    let record = rollback_record(&d);
    let full = std::fs::read(&record).unwrap();
    std::fs::write(&record, &full[..100]).unwrap();
    let v = d.open().unwrap();
    assert_eq!(get(&v, "a"), b"2");
    let report = v.verify().unwrap();
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    v.set("a", secret(b"3"), SetOptions::default()).unwrap();
    assert!(v.verify().unwrap().warnings.is_empty());
    drop(v);
    // Zeroed: unusable as a whole.
    std::fs::write(&record, vec![0u8; full.len()]).unwrap();
    assert!(matches!(d.open(), Err(e) if e.is_integrity()));
    let accepted = Vault::open(
        d.backend(),
        &pass(),
        VaultOptions {
            accept_rollback: true,
            ..d.options()
        },
    )
    .unwrap();
    let what = accepted.accepted_rollback().unwrap();
    assert!(what.contains("unreadable rollback record"), "{what}");
    drop(accepted);
    assert_eq!(get(&d.open().unwrap(), "a"), b"3");
}

/// Found by the fourth hostile pass: a record cut to its preamble and vault id (no slot left)
/// read as "no record", switching rollback detection off; and accepting over a record that could
/// not be rewritten reported success.
#[test]
fn a_record_with_no_readable_slot_is_damage_and_accepting_must_rewrite_it() {
    let (d, old) = {
        let d = TestDir::new();
        let v = d.create();
        v.set("a", secret(b"1"), SetOptions::default()).unwrap();
        drop(v);
        let old = d.tmp.path().join("old");
        copy_dir(&d.vault_dir(), &old);
        (d, old)
    };
    let v = d.open().unwrap();
    v.set("a", secret(b"2"), SetOptions::default()).unwrap();
    drop(v);
    std::fs::remove_dir_all(d.vault_dir()).unwrap();
    copy_dir(&old, &d.vault_dir());
    let record = rollback_record(&d);
    let full = std::fs::read(&record).unwrap();
    for len in [32, 40, 87] {
        std::fs::write(&record, &full[..len]).unwrap();
        let r = d.open();
        assert!(matches!(&r, Err(e) if e.is_integrity()), "{len}: {r:?}");
    }
    // A directory where the record goes: accepting cannot rewrite it, and says so.
    std::fs::remove_file(&record).unwrap();
    std::fs::create_dir(&record).unwrap();
    let accept = VaultOptions {
        accept_rollback: true,
        ..d.options()
    };
    assert!(Vault::open(d.backend(), &pass(), accept.clone()).is_err());
    std::fs::remove_dir(&record).unwrap();
    Vault::open(d.backend(), &pass(), accept).unwrap();
    assert_eq!(get(&d.open().unwrap(), "a"), b"1");
}

/// Found by the fifth hostile pass: bad tags were reported as an integrity failure (exit 5), a
/// directory named `*.tmp` in the vault directory blocked every write, and a dangling link in
/// place of the rollback record was taken for "no record" (switching rollback detection off).
#[test]
fn fifth_hostile_pass_findings() {
    let d = TestDir::new();
    let v = d.create();
    v.set("a", secret(b"1"), SetOptions::default()).unwrap();
    let tag = |key: &str, value: &str| vault_store::Tag {
        key: key.into(),
        value: value.into(),
    };
    let long = "v".repeat(1025);
    let too_many: Vec<_> = (0..65).map(|i| tag(&format!("k{i}"), "v")).collect();
    for tags in [
        vec![tag("", "x")],
        vec![tag("k", &long)],
        vec![tag("k\n", "v")],
        vec![tag("k", "v\u{1}")],
        vec![tag("k", "v"), tag("k", "w")],
        too_many,
    ] {
        let r = v.set(
            "t",
            secret(b"x"),
            SetOptions {
                tags,
                ..SetOptions::default()
            },
        );
        assert!(matches!(r, Err(Error::Invalid { .. })), "{r:?}");
    }
    drop(v);

    std::fs::create_dir(d.vault_dir().join("foo.tmp")).unwrap();
    let v = d.open().unwrap();
    v.set("b", secret(b"2"), SetOptions::default()).unwrap();
    v.compact().unwrap();
    assert!(d.vault_dir().join("foo.tmp").is_dir(), "left alone");
    drop(v);

    let record = rollback_record(&d);
    std::fs::remove_file(&record).unwrap();
    std::os::unix::fs::symlink(d.tmp.path().join("nothing"), &record).unwrap();
    let r = d.open().map(|_| ());
    assert!(matches!(&r, Err(e) if e.is_integrity()), "{r:?}");
}

/// Found by the concurrency soak on the build that added the index: a compaction kept the
/// highest sequence number of the records it dropped in the index it wrote, while a handle that
/// re-read the compacted log whole continued from the highest one left, so every later reader
/// starting from the index refused the next commit as out of order (exit 5 for every command).
/// The index says what the log says; a sequence number of a dropped record may be used again.
#[test]
fn a_commit_after_another_handles_compaction_reads_back_from_the_index() {
    let d = TestDir::new();
    let a = d.create();
    let b = d.open().unwrap();
    a.set("x", secret(b"1"), SetOptions::default()).unwrap();
    a.set("y", secret(b"2"), SetOptions::default()).unwrap();
    // The highest sequence numbers are now dead records.
    a.destroy("y").unwrap();
    assert_eq!(b.get("x").unwrap().value.expose_secret(), b"1");
    a.compact().unwrap();
    // b's cursor is not in the new log: it reads the new log whole, then commits.
    b.set("z", secret(b"3"), SetOptions::default()).unwrap();
    let fresh = d.open().unwrap();
    assert_eq!(fresh.get("z").unwrap().value.expose_secret(), b"3");
    assert_eq!(a.get("z").unwrap().value.expose_secret(), b"3");
    fresh.verify().unwrap();
    // And the other way round: the compacting handle commits next.
    a.compact().unwrap();
    a.set("w", secret(b"4"), SetOptions::default()).unwrap();
    assert_eq!(b.get("w").unwrap().value.expose_secret(), b"4");
    assert_eq!(
        d.open().unwrap().get("w").unwrap().value.expose_secret(),
        b"4"
    );
    d.open().unwrap().verify().unwrap();
}
