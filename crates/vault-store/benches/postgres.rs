//! `cargo xtask bench postgres`: commit latency and throughput of `Vault::set` on a vault in
//! PostgreSQL with 1, 4 and 16 clients (each its own handle and connection, over TCP loopback,
//! the server syncing its commits), beside the same workload on the file backend, and beside a
//! plain autocommitted `INSERT` of a row of the same size (the floor), in one run. Prints Markdown
//! rows for docs/BENCHMARKS.md. Not a test: nothing here asserts a time.
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
use vault_store::{
    Backend, FileBackend, PostgresBackend, PostgresLocation, SetOptions, Vault, VaultOptions,
};
use vault_testkit::PgServer;

/// How long each configuration runs.
const RUN: Duration = Duration::from_secs(4);
/// A secret's value: 64 bytes, as a token or password is.
const VALUE: [u8; 64] = [7; 64];
/// The bench vaults' passphrase.
const PASS: &[u8] = b"bench passphrase";

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort_unstable();
    d.get(d.len() / 2).copied().unwrap_or_default()
}

fn p99(mut d: Vec<Duration>) -> Duration {
    d.sort_unstable();
    let i = ((d.len() as f64 - 1.0) * 0.99).round() as usize;
    d.get(i).copied().unwrap_or_default()
}

/// `clients` threads each running `op` for [`RUN`]: operations per second, and each one's time.
fn drive(clients: usize, op: impl Fn(usize, usize) + Sync) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let times: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let op = &op;
                s.spawn(move || {
                    let mut t = Vec::new();
                    let mut i = 0;
                    while start.elapsed() < RUN {
                        let one = Instant::now();
                        op(c, i);
                        t.push(one.elapsed());
                        i += 1;
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<Duration> = times.into_iter().flatten().collect();
    (all.len() as f64 / start.elapsed().as_secs_f64(), all)
}

fn vault_sets(
    clients: usize,
    backends: &[Arc<dyn Backend>],
    state: &std::path::Path,
) -> (f64, Vec<Duration>) {
    let options = VaultOptions {
        rollback_dir: Some(state.to_path_buf()),
        ..VaultOptions::default()
    };
    let handles: Vec<Vault> = backends
        .iter()
        .take(clients)
        .map(|b| Vault::open(b.clone(), &SecretBytes::from_slice(PASS), options.clone()).unwrap())
        .collect();
    drive(clients, |c, i| {
        handles[c]
            .set(
                &format!("c{c}/s{}", i % 500),
                SecretBytes::from_slice(&VALUE),
                SetOptions::default(),
            )
            .unwrap();
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = match PgServer::start_durable(Some(port)) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("bench postgres: no server: {why}");
            return;
        }
    };
    let kdf = KdfParams::for_key(8, 1, 1).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");

    let at = PostgresLocation::parse(&server.location("bench")).unwrap();
    let pg: Vec<Arc<dyn Backend>> = (0..16)
        .map(|_| Arc::new(PostgresBackend::new(at.clone())) as Arc<dyn Backend>)
        .collect();
    let options = VaultOptions {
        rollback_dir: Some(state.clone()),
        ..VaultOptions::default()
    };
    Vault::create(
        pg[0].clone(),
        &SecretBytes::from_slice(PASS),
        kdf,
        options.clone(),
    )
    .unwrap();
    let dir = tmp.path().join("vault");
    let files: Vec<Arc<dyn Backend>> = (0..16)
        .map(|_| Arc::new(FileBackend::new(&dir)) as Arc<dyn Backend>)
        .collect();
    Vault::create(
        files[0].clone(),
        &SecretBytes::from_slice(PASS),
        kdf,
        options,
    )
    .unwrap();

    // The row a commit appends, by size: the frame of one `set`.
    let row = {
        let before: i64 = server
            .sql("SELECT coalesce(sum(length(body)), 0) FROM vault_bench.frames")
            .trim()
            .parse()
            .unwrap();
        let v = Vault::open(
            pg[0].clone(),
            &SecretBytes::from_slice(PASS),
            VaultOptions {
                rollback_dir: Some(state.clone()),
                ..VaultOptions::default()
            },
        )
        .unwrap();
        v.set(
            "probe",
            SecretBytes::from_slice(&VALUE),
            SetOptions::default(),
        )
        .unwrap();
        let after: i64 = server
            .sql("SELECT coalesce(sum(length(body)), 0) FROM vault_bench.frames")
            .trim()
            .parse()
            .unwrap();
        (after - before).max(1) as usize
    };
    server.sql("CREATE TABLE floor (id bigserial PRIMARY KEY, body bytea NOT NULL)");
    let conn: postgres::Config = server.conninfo().parse().unwrap();

    println!(
        "PostgreSQL on 127.0.0.1 (fsync on), {}-byte values, {row}-byte rows; {} s per line",
        VALUE.len(),
        RUN.as_secs()
    );
    println!();
    println!(
        "| clients | vault on PostgreSQL: commits/s, median, p99 | vault on files: commits/s, median, p99 | plain INSERT: rows/s, median, p99 |"
    );
    println!("| --- | --- | --- | --- |");
    for clients in [1, 4, 16] {
        let (pg_rate, pg_t) = vault_sets(clients, &pg, &state);
        let (file_rate, file_t) = vault_sets(clients, &files, &state);
        let body = vec![9u8; row];
        let conns: Vec<std::sync::Mutex<postgres::Client>> = (0..clients)
            .map(|_| std::sync::Mutex::new(conn.connect(postgres::NoTls).unwrap()))
            .collect();
        let (floor_rate, floor_t) = drive(clients, |c, _| {
            conns[c]
                .lock()
                .unwrap()
                .execute("INSERT INTO floor (body) VALUES ($1)", &[&body])
                .unwrap();
        });
        println!(
            "| {clients} | {pg_rate:.0}/s, {}, {} | {file_rate:.0}/s, {}, {} | {floor_rate:.0}/s, {}, {} |",
            ms(median(pg_t.clone())),
            ms(p99(pg_t)),
            ms(median(file_t.clone())),
            ms(p99(file_t)),
            ms(median(floor_t.clone())),
            ms(p99(floor_t)),
        );
    }
}
