//! `cargo xtask bench keys`: managed-key throughput beside the raw XChaCha20-Poly1305 crate on
//! the same buffers in the same run (one-shot at 64 B, 4 KiB and 1 MiB, on a file vault and on
//! a memory vault, the difference being the per-use check that no other process changed the
//! key), a 1 GiB stream with its peak memory, and rotation latency. Prints Markdown rows for
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

use vault_crypto::kdf::KdfParams;
use vault_crypto::{Key256, SecretBytes, aead};
use vault_store::{
    Algorithm, FileBackend, KeySpec, MemoryBackend, RotateOptions, UseOptions, Vault, VaultOptions,
};

fn mb_s(bytes: usize, iters: u32, d: Duration) -> f64 {
    bytes as f64 * f64::from(iters) / d.as_secs_f64() / 1e6
}

/// Runs `f` for about `budget`, at least 3 times; returns (iterations, elapsed).
fn time(budget: Duration, mut f: impl FnMut()) -> (u32, Duration) {
    f();
    let t = Instant::now();
    let mut n = 0;
    while n < 3 || t.elapsed() < budget {
        f();
        n += 1;
    }
    (n, t.elapsed())
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn vault(file: bool, dir: &std::path::Path) -> Vault {
    let kdf = KdfParams::for_key(8, 1, 1).unwrap();
    let pass = SecretBytes::from_slice(b"bench");
    if file {
        Vault::create(
            Arc::new(FileBackend::new(dir.join("v"))),
            &pass,
            kdf,
            VaultOptions {
                rollback_dir: Some(dir.join("state")),
                ..VaultOptions::default()
            },
        )
        .unwrap()
    } else {
        Vault::create(
            Arc::new(MemoryBackend::new()),
            &pass,
            kdf,
            VaultOptions::default(),
        )
        .unwrap()
    }
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let tmp = tempfile::tempdir().unwrap();
    let raw_key = Key256::from_slice(&[7; 32]).unwrap();
    println!("| operation | size | vault MB/s | raw XChaCha20-Poly1305 MB/s | ratio | per call |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (label, file) in [("file vault", true), ("memory vault", false)] {
        let dir = tmp.path().join(label.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let v = vault(file, &dir);
        v.create_key("k", KeySpec::new(Algorithm::XChaCha20Poly1305))
            .unwrap();
        for size in [64usize, 4096, 1 << 20] {
            let buf = vec![0xA5u8; size];
            let (n, d) = time(budget, || {
                std::hint::black_box(v.encrypt("k", &buf, b"ad").unwrap());
            });
            let (rn, rd) = time(budget, || {
                std::hint::black_box(aead::seal(&raw_key, b"ad", &buf).unwrap());
            });
            let (ours, raw) = (mb_s(size, n, d), mb_s(size, rn, rd));
            println!(
                "| encrypt, {label} | {size} B | {ours:.0} | {raw:.0} | {:.2}× | {:.1} µs |",
                ours / raw,
                d.as_secs_f64() * 1e6 / f64::from(n)
            );
            let tok = v.encrypt("k", &buf, b"ad").unwrap();
            let sealed = aead::seal(&raw_key, b"ad", &buf).unwrap();
            let (n, d) = time(budget, || {
                std::hint::black_box(v.decrypt("k", &tok, b"ad", UseOptions::default()).unwrap());
            });
            let (rn, rd) = time(budget, || {
                std::hint::black_box(
                    aead::open(&raw_key, &sealed.nonce, b"ad", &sealed.ciphertext).unwrap(),
                );
            });
            let (ours, raw) = (mb_s(size, n, d), mb_s(size, rn, rd));
            println!(
                "| decrypt, {label} | {size} B | {ours:.0} | {raw:.0} | {:.2}× | {:.1} µs |",
                ours / raw,
                d.as_secs_f64() * 1e6 / f64::from(n)
            );
        }
        if file {
            // A 1 GiB stream from a generator to a sink: memory must not grow with it.
            let gib: u64 = std::env::var("BENCH_STREAM_MIB")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024)
                << 20;
            let before = peak_rss_kib();
            let t = Instant::now();
            let mut input = std::io::Read::take(std::io::repeat(0x5A), gib);
            v.encrypt_stream("k", b"", &mut input, &mut std::io::sink())
                .unwrap();
            let d = t.elapsed();
            // The same bytes through the raw AEAD in 64 KiB chunks.
            let chunk = vec![0x5Au8; 64 * 1024];
            let t = Instant::now();
            for _ in 0..(gib / chunk.len() as u64) {
                std::hint::black_box(aead::seal(&raw_key, b"", &chunk).unwrap());
            }
            let rd = t.elapsed();
            let (ours, raw) = (
                gib as f64 / d.as_secs_f64() / 1e6,
                gib as f64 / rd.as_secs_f64() / 1e6,
            );
            println!(
                "| encrypt stream, {label} | {} MiB | {ours:.0} | {raw:.0} | {:.2}× | peak RSS {} MiB (before {} MiB) |",
                gib >> 20,
                ours / raw,
                peak_rss_kib() / 1024,
                before / 1024
            );
            let mut samples = Vec::new();
            for _ in 0..50 {
                let t = Instant::now();
                v.rotate_key("k", RotateOptions::default()).unwrap();
                samples.push(t.elapsed());
            }
            samples.sort_unstable();
            println!(
                "| rotate (one durable commit), {label} | | | | | p50 {:.0} µs, p99 {:.0} µs |",
                samples[25].as_secs_f64() * 1e6,
                samples[49].as_secs_f64() * 1e6
            );
        }
    }
    export_import(tmp.path());
}

/// Export and import of 1 and 1,000 keys at the default Argon2id parameters (256 MiB, 3 passes):
/// one derivation per file, shown beside one derivation alone.
fn export_import(dir: &std::path::Path) {
    use vault_store::{ExportSelection, ImportOptions};
    let t = Instant::now();
    vault_crypto::kdf::derive_key(b"export", &[1; 16], &KdfParams::DEFAULT).unwrap();
    println!(
        "| one Argon2id derivation at the defaults (256 MiB, 3 passes, 4 lanes) | | | | | {:.2} s |",
        t.elapsed().as_secs_f64()
    );
    let v = vault(true, &dir.join("export"));
    for i in 0..1000 {
        v.create_key(&format!("k{i}"), KeySpec::new(Algorithm::XChaCha20Poly1305))
            .unwrap();
    }
    for n in [1usize, 1000] {
        let names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
        let t = Instant::now();
        let file = v
            .export(
                &ExportSelection::keys(&names),
                b"export",
                KdfParams::DEFAULT,
            )
            .unwrap()
            .file;
        let export = t.elapsed();
        let w = vault(true, &dir.join(format!("import-{n}")));
        let t = Instant::now();
        w.import_export(&file, b"export", &ImportOptions::default())
            .unwrap();
        let import = t.elapsed();
        println!(
            "| export / import of {n} keys, default KDF | {} B | | | | {:.2} s / {:.2} s |",
            file.len(),
            export.as_secs_f64(),
            import.as_secs_f64()
        );
    }
}
