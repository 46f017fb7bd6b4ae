//! Criterion micro-benchmarks of the engine without a disk: a `get` from an open in-memory vault
//! and a batched commit. `cargo bench -p vault-store --bench micro`. (Durable commits against the
//! fsync floor are process-level figures: `cargo xtask bench store`.)
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::unwrap_used,
    clippy::expect_used
)] // benchmark code

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vault_store::{Batch, KdfParams, MemoryBackend, SecretBytes, SetOptions, Vault, VaultOptions};

fn vault_with(n: usize) -> Vault {
    let backend = Arc::new(MemoryBackend::new());
    let v = Vault::create(
        backend,
        &SecretBytes::from_slice(b"bench"),
        KdfParams::for_key(64, 1, 1).unwrap(),
        VaultOptions::default(),
    )
    .unwrap();
    let mut b = Batch::new();
    for i in 0..n {
        b.set(
            &format!("secret/{i:06}"),
            SecretBytes::from_slice(&[i as u8; 64]),
            SetOptions::default(),
        );
    }
    v.commit(b).unwrap();
    v
}

fn get(c: &mut Criterion) {
    let v = vault_with(10_000);
    c.bench_function("get, in-memory vault of 10 000 secrets", |b| {
        b.iter(|| v.get(black_box("secret/004242")).unwrap())
    });
}

fn batched_commit(c: &mut Criterion) {
    // A fresh vault of 1 000 secrets for every commit (built outside the timing), so every
    // measured commit meets the same state.
    c.bench_function(
        "commit of a 100-set batch into 1 000 secrets, in memory",
        |b| {
            b.iter_batched(
                || {
                    let mut batch = Batch::new();
                    for i in 0..100 {
                        batch.set(
                            &format!("batch/{i:03}"),
                            SecretBytes::from_slice(&[1; 64]),
                            SetOptions::default(),
                        );
                    }
                    (vault_with(1_000), batch)
                },
                |(v, batch)| v.commit(batch).unwrap(),
                BatchSize::LargeInput,
            )
        },
    );
}

criterion_group!(benches, get, batched_commit);
criterion_main!(benches);
