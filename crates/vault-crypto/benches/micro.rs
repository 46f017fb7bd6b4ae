//! Criterion micro-benchmarks of the primitives vault-crypto wraps: AEAD sealing at three sizes,
//! HKDF subkey derivation and HMAC. `cargo bench -p vault-crypto --bench micro`. (Argon2 against
//! the C reference is a process-level comparison: `cargo xtask bench crypto`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vault_crypto::derive::{self, Purpose};
use vault_crypto::{Key256, aead, mac};

fn aead_seal(c: &mut Criterion) {
    let key = Key256::generate().unwrap();
    let mut group = c.benchmark_group("xchacha20poly1305 seal");
    for size in [64usize, 4096, 1 << 20] {
        let plaintext = vec![7u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &plaintext, |b, p| {
            b.iter(|| aead::seal(&key, b"aad", black_box(p)).unwrap())
        });
    }
    group.finish();
}

fn hkdf_and_hmac(c: &mut Criterion) {
    let master = Key256::generate().unwrap();
    c.bench_function("hkdf-sha256 subkey", |b| {
        b.iter(|| {
            derive::subkey(
                &master,
                Purpose::RecordEncryption,
                black_box(b"vault id 16 byte"),
            )
        })
    });
    let key = [9u8; 32];
    let data = [1u8; 64];
    c.bench_function("hmac-sha256 64 B", |b| {
        b.iter(|| mac::hmac_sha256(&key, &[black_box(&data)]))
    });
}

criterion_group!(benches, aead_seal, hkdf_and_hmac);
criterion_main!(benches);
