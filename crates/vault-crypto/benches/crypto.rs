#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)] // benchmark code
//! `cargo xtask bench crypto`: figures for the crypto layer against the floors the hardware sets.
//!
//! - Argon2id at the default parameters (256 MiB, t=3, p=4), median of several runs, beside the
//!   multi-threaded C reference (`argon2` CLI from Debian's package of the same name) when present.
//! - Calibration accuracy: for several targets, the parameters `kdf::calibrate` picks and the time
//!   they then measure, as a ratio to the target (the acceptance bound is ±25%).
//! - AEAD throughput at 64 B, 4 KiB and 1 MiB; HKDF subkey and HMAC latency.
//!
//! A plain timing harness (no criterion): these are a handful of long operations where a median of
//! a few runs is the honest figure, and the output is a report, not a statistical comparison.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vault_crypto::derive::{self, Purpose};
use vault_crypto::kdf::{self, KdfParams};
use vault_crypto::{Key256, aead, mac};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_n(n: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..n)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed()
            })
            .collect(),
    )
}

fn c_reference(params: &KdfParams) -> Option<Duration> {
    let runs: Option<Vec<Duration>> = (0..3)
        .map(|_| {
            let start = Instant::now();
            let mut child = Command::new("argon2")
                .args(["somesaltsomesalt", "-id", "-r"])
                .args(["-t", &params.iterations().to_string()])
                .args(["-k", &params.memory_kib().to_string()])
                .args(["-p", &params.lanes().to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .ok()?;
            use std::io::Write;
            child.stdin.take()?.write_all(b"password").ok()?;
            child.wait().ok()?.success().then(|| start.elapsed())
        })
        .collect();
    runs.map(median)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!(
        "# vault-crypto benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let salt = [7u8; kdf::SALT_LEN];
    for params in [
        KdfParams::DEFAULT,
        KdfParams::for_key(64 * 1024, 4, 4).unwrap(),
    ] {
        let rust = time_n(5, || {
            kdf::derive_key(b"password", &salt, &params).unwrap();
        });
        let label = format!(
            "argon2id m={} MiB t={} p={}",
            params.memory_kib() / 1024,
            params.iterations(),
            params.lanes()
        );
        match c_reference(&params) {
            Some(c) => println!(
                "{label}: vault-crypto {:.3} s, C reference (argon2 CLI) {:.3} s, ratio {:.2}x",
                rust.as_secs_f64(),
                c.as_secs_f64(),
                rust.as_secs_f64() / c.as_secs_f64()
            ),
            None => println!(
                "{label}: vault-crypto {:.3} s (C reference skipped: `apt-get install argon2` to compare)",
                rust.as_secs_f64()
            ),
        }
    }

    for target_ms in [250u64, 500, 1000] {
        let target = Duration::from_millis(target_ms);
        let params = kdf::calibrate(
            target,
            KdfParams::DEFAULT.memory_kib(),
            KdfParams::DEFAULT.lanes(),
        )
        .unwrap();
        let took = time_n(3, || {
            kdf::derive_key(b"password", &salt, &params).unwrap();
        });
        println!(
            "calibrate target {target_ms} ms -> m={} MiB t={} p={}: measured {:.0} ms ({:+.1}% of target)",
            params.memory_kib() / 1024,
            params.iterations(),
            params.lanes(),
            took.as_secs_f64() * 1e3,
            (took.as_secs_f64() / target.as_secs_f64() - 1.0) * 100.0
        );
    }

    let key = Key256::generate().unwrap();
    let nonce = aead::Nonce::random().unwrap();
    for size in [64usize, 4096, 1 << 20] {
        let msg = vec![0u8; size];
        let iters = (64 << 20) / size.max(4096) + 10;
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(aead::seal_with_nonce(&key, &nonce, b"ad", &msg).unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "xchacha20-poly1305 seal {size} B: {:.0} MB/s ({:.2} us/op)",
            (size * iters) as f64 / secs / 1e6,
            secs / iters as f64 * 1e6
        );
    }
    let n = 100_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(derive::subkey(
            &key,
            Purpose::RecordEncryption,
            b"0123456789abcdef",
        ));
    }
    println!(
        "hkdf-sha256 subkey: {:.2} us/op",
        start.elapsed().as_secs_f64() / n as f64 * 1e6
    );
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(mac::hmac_sha256(key.expose_secret(), &[&[0u8; 64]]));
    }
    println!(
        "hmac-sha256 64 B: {:.2} us/op",
        start.elapsed().as_secs_f64() / n as f64 * 1e6
    );
}
