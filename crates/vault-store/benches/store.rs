//! `cargo xtask bench store`: durable-commit latency against the fsync floor measured in the
//! same run, open and get latency, and batched throughput. Prints Markdown rows for
//! docs/BENCHMARKS.md. Not a test: nothing here asserts a time.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // bench code

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vault_crypto::SecretBytes;
use vault_crypto::kdf::{self, KdfParams};
use vault_store::{Batch, FileBackend, SetOptions, Vault, VaultOptions};

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn kdf() -> KdfParams {
    KdfParams::for_key(8, 1, 1).unwrap()
}

fn options(dir: &std::path::Path) -> VaultOptions {
    VaultOptions {
        rollback_dir: Some(dir.join("state")),
        ..VaultOptions::default()
    }
}

/// Raw floor: append 4 KiB + fdatasync, and rename + directory fsync.
fn floor(dir: &std::path::Path) -> (Duration, Duration, Duration, Duration) {
    let path = dir.join("floor");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let buf = vec![0x5Au8; 4096];
    let mut samples = Vec::new();
    for i in 0..300u64 {
        let t = Instant::now();
        f.write_all_at(&buf, i * 4096).unwrap();
        f.sync_data().unwrap();
        samples.push(t.elapsed());
    }
    let (p50, p99) = (pct(&mut samples, 0.5), pct(&mut samples, 0.99));
    // A commit of one small secret appends a few hundred bytes, often within an allocated
    // block: the same floor at that size.
    let small = vec![0x5Au8; 256];
    let base = 300 * 4096;
    let mut small_samples = Vec::new();
    for i in 0..300u64 {
        let t = Instant::now();
        f.write_all_at(&small, base + i * 256).unwrap();
        f.sync_data().unwrap();
        small_samples.push(t.elapsed());
    }
    let small50 = pct(&mut small_samples, 0.5);
    println!(
        "| fsync floor: 256 B append + fdatasync | p50 {:.0} µs | p99 {:.0} µs |",
        us(small50),
        us(pct(&mut small_samples, 0.99))
    );
    let mut renames = Vec::new();
    let d = std::fs::File::open(dir).unwrap();
    for _ in 0..100 {
        let tmp = dir.join("floor.tmp");
        std::fs::write(&tmp, b"x").unwrap();
        let t = Instant::now();
        std::fs::rename(&tmp, dir.join("floor.dst")).unwrap();
        d.sync_all().unwrap();
        renames.push(t.elapsed());
    }
    (p50, p99, pct(&mut renames, 0.5), small50)
}

fn populate(v: &Vault, n: usize) {
    let batch = 10_000;
    let mut i = 0;
    while i < n {
        let mut b = Batch::new();
        for j in i..(i + batch).min(n) {
            b.set(
                &format!("app/service-{j:07}/token"),
                SecretBytes::from_slice(format!("token-value-{j:016}").as_bytes()),
                SetOptions::default(),
            );
        }
        v.commit(b).unwrap();
        i += batch;
    }
    v.compact().unwrap();
}

fn set_latency(v: &Vault, count: usize) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let value = SecretBytes::from_slice(format!("new value {i:016}").as_bytes());
        let t = Instant::now();
        v.set(
            &format!("bench/key-{}", i % 50),
            value,
            SetOptions::default(),
        )
        .unwrap();
        samples.push(t.elapsed());
    }
    (pct(&mut samples, 0.5), pct(&mut samples, 0.99))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = std::env::var_os("VAULT_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let dir = tmp.path();
    println!(
        "# vault-store benchmarks (scratch directory {})",
        base.display()
    );
    let (f50, f99, rename, floor50) = floor(dir);
    println!(
        "| fsync floor: 4 KiB append + fdatasync | p50 {:.0} µs | p99 {:.0} µs |",
        us(f50),
        us(f99)
    );
    println!(
        "| fsync floor: rename + directory fsync | p50 {:.0} µs | |",
        us(rename)
    );

    let sizes: Vec<usize> = std::env::var("VAULT_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 10_000, 1_000_000]);
    let mut first_p50 = None;
    for n in sizes {
        let vdir = dir.join(format!("v{n}"));
        let v = Vault::create(
            Arc::new(FileBackend::new(vdir.join("vault"))),
            &SecretBytes::from_slice(b"bench"),
            kdf(),
            options(&vdir),
        )
        .unwrap();
        let t = Instant::now();
        populate(&v, n);
        let build = t.elapsed();
        let (p50, p99) = set_latency(&v, 300);
        let base50 = *first_p50.get_or_insert(p50);
        println!(
            "| durable set into {n} secrets | p50 {:.0} µs ({:.2}x the 256 B fsync floor, {:.2}x the smallest vault) | p99 {:.0} µs | (built in {:.1} s) |",
            us(p50),
            p50.as_secs_f64() / floor50.as_secs_f64(),
            p50.as_secs_f64() / base50.as_secs_f64(),
            us(p99),
            build.as_secs_f64()
        );
        drop(v);
        std::fs::remove_dir_all(&vdir).unwrap();
    }

    // Open (excluding the KDF) and get, 100 000 secrets.
    let n = 100_000;
    let vdir = dir.join("open");
    let pass = SecretBytes::from_slice(b"bench");
    {
        let v = Vault::create(
            Arc::new(FileBackend::new(vdir.join("vault"))),
            &pass,
            kdf(),
            options(&vdir),
        )
        .unwrap();
        populate(&v, n);
    }
    let salt = [0u8; 16];
    let mut kdf_time = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        kdf::derive_key(b"bench", &salt, &kdf()).unwrap();
        kdf_time = kdf_time.min(t.elapsed());
    }
    let mut opens = Vec::new();
    let mut v = None;
    for _ in 0..5 {
        let t = Instant::now();
        v = Some(
            Vault::open(
                Arc::new(FileBackend::new(vdir.join("vault"))),
                &pass,
                options(&vdir),
            )
            .unwrap(),
        );
        opens.push(t.elapsed().saturating_sub(kdf_time));
    }
    let v = v.unwrap();
    println!(
        "| open of {n} secrets, excluding the KDF | p50 {:.3} s | min {:.3} s | (KDF at test parameters {:.0} µs) |",
        pct(&mut opens, 0.5).as_secs_f64(),
        opens.iter().min().unwrap().as_secs_f64(),
        us(kdf_time)
    );
    let mut gets = Vec::new();
    for i in 0..20_000usize {
        let name = format!("app/service-{:07}/token", (i * 7919) % n);
        let t = Instant::now();
        let s = v.get(&name).unwrap();
        gets.push(t.elapsed());
        std::hint::black_box(s);
    }
    println!(
        "| get after open ({n} secrets) | p50 {:.1} µs | p99 {:.1} µs |",
        us(pct(&mut gets, 0.5)),
        us(pct(&mut gets, 0.99))
    );

    // Batched throughput: many sets, one commit.
    for batch in [100usize, 1000, 10_000] {
        let mut b = Batch::new();
        for j in 0..batch {
            b.set(
                &format!("batch/{batch}/{j}"),
                SecretBytes::from_slice(&[0x42; 64]),
                SetOptions::default(),
            );
        }
        let t = Instant::now();
        v.commit(b).unwrap();
        let el = t.elapsed();
        println!(
            "| batch of {batch} sets (64 B values), one commit | {:.1} ms | {:.0} sets/s |",
            el.as_secs_f64() * 1e3,
            batch as f64 / el.as_secs_f64()
        );
    }
}
