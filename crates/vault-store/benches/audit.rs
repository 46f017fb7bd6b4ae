//! `cargo xtask bench audit`: what the audit trail adds to a durable `set` (the same sets on a
//! file vault with the trail on and off, in the same run, on the disk the target directory is
//! on), and reading and checking a trail of 1 000 000 entries. Prints Markdown rows for
//! docs/BENCHMARKS.md. Not a test: nothing here asserts a time.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // bench code

use std::sync::Arc;
use std::time::{Duration, Instant};

use vault_crypto::SecretBytes;
use vault_crypto::kdf::KdfParams;
use vault_store::{FileBackend, SetOptions, Vault, VaultOptions};

fn vault(dir: &std::path::Path, audit: bool, fail_closed: bool) -> Vault {
    Vault::create(
        Arc::new(FileBackend::new(dir.join("vault"))),
        &SecretBytes::from_slice(b"bench"),
        KdfParams::for_key(64, 1, 1).unwrap(),
        VaultOptions {
            rollback_dir: Some(dir.join("state")),
            audit,
            audit_fail_closed: fail_closed,
            ..VaultOptions::default()
        },
    )
    .unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // On the disk the target directory is on (not /tmp, which may be memory: fsync is free there).
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-audit");
    std::fs::create_dir_all(&base).unwrap();
    let on_dir = tempfile::tempdir_in(&base).unwrap();
    let off_dir = tempfile::tempdir_in(&base).unwrap();
    let strict_dir = tempfile::tempdir_in(&base).unwrap();
    let on = vault(on_dir.path(), true, false);
    let off = vault(off_dir.path(), false, false);
    let strict = vault(strict_dir.path(), true, true);
    let value = SecretBytes::from_slice(&[7u8; 64]);
    let (mut t_on, mut t_off, mut t_strict) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so that the disk's moods fall on all alike.
    for i in 0..400 {
        for (v, t) in [
            (&on, &mut t_on),
            (&off, &mut t_off),
            (&strict, &mut t_strict),
        ] {
            let s = Instant::now();
            v.set(
                &format!("s{}", i % 50),
                value.duplicate(),
                SetOptions::default(),
            )
            .unwrap();
            t.push(s.elapsed());
        }
    }
    let (m_on, m_off, m_strict) = (median(t_on), median(t_off), median(t_strict));
    println!(
        "| durable `set` (64-byte value), median of 400 | audit on | audit off | ratio | fail-closed | ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| file vault under {} | {:.1} µs | {:.1} µs | {:.2}× | {:.1} µs | {:.2}× |",
        base.display(),
        m_on.as_secs_f64() * 1e6,
        m_off.as_secs_f64() * 1e6,
        m_on.as_secs_f64() / m_off.as_secs_f64(),
        m_strict.as_secs_f64() * 1e6,
        m_strict.as_secs_f64() / m_off.as_secs_f64()
    );
    drop(strict);
    let gets = 1_000_000;
    let t = Instant::now();
    for _ in 0..gets {
        on.get("s1").unwrap();
    }
    let fill = t.elapsed();
    // The floor: the same gets with no trail.
    let few = 100_000u32;
    let t = Instant::now();
    for _ in 0..few {
        off.get("s1").unwrap();
    }
    let bare = t.elapsed();
    let t = Instant::now();
    let trail = on.audit_trail().unwrap();
    let read = t.elapsed();
    assert!(trail.problem.is_none());
    let files = trail.files.len();
    let total = trail.entries.len();
    drop(trail);
    // What `vault audit` does: entries one at a time, none kept.
    let t = Instant::now();
    let mut matching = 0u64;
    let each = on
        .audit_each(&mut |e, names| {
            if names.is(&e.target, "s1", false) {
                matching += 1;
            }
            Ok(())
        })
        .unwrap();
    let streamed = t.elapsed();
    assert!(each.problem.is_none());
    // Names kept in clear: each entry seals its name.
    on.set_audit_policy(vault_store::AuditPolicy {
        names_clear: true,
        ..Default::default()
    })
    .unwrap();
    let t = Instant::now();
    for _ in 0..few {
        on.get("s1").unwrap();
    }
    let clear = t.elapsed();
    println!(
        "\n{total} entries in {files} files: appended by {gets} `get`s in {:.1} s ({:.1} µs a get with its entry; {:.1} µs without a trail, {:.1} µs with names kept in clear); read and every link checked in {:.2} s holding them all, {:.2} s one at a time with a --name match on each ({matching} matches)",
        fill.as_secs_f64(),
        fill.as_secs_f64() * 1e6 / f64::from(gets),
        bare.as_secs_f64() * 1e6 / f64::from(few),
        clear.as_secs_f64() * 1e6 / f64::from(few),
        read.as_secs_f64(),
        streamed.as_secs_f64(),
    );
    drop(on);
    drop(off);
    let _ = std::fs::remove_dir_all(&base);
}
