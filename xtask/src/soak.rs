//! `cargo xtask soak concurrency`: many `vault` processes mixing every command against one vault
//! on a real ext4 (and a tmpfs), checked against a ledger of acknowledged writes. It exists to
//! catch races of compaction, master-key rotation and key-slot changes with other processes,
//! which unit tests and tmpfs-backed tests miss.
//!
//! Each worker thread owns the names `w<i>/k0..k8` and runs one `vault` process at a time, so
//! after an acknowledged write its next read of that name must show exactly that write. The
//! choices are seeded and the seed printed (`--seed` replays each worker's sequence of choices;
//! the interleaving of processes is up to the scheduler).

mod audit;
mod child;
mod ledger;
mod report;
mod rng;
mod scratch;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use child::VaultCmd;
use report::Stats;
use scratch::{FsKind, Scratch};
use worker::{Shared, Worker};

pub const USAGE: &str = "\
usage: cargo xtask soak concurrency [--secs N] [--procs N] [--fs ext4|tmpfs|both|here] [--bin PATH] [--seed N]
       cargo xtask soak concurrency --short      (CI size: 25 s on ext4 + 25 s on tmpfs, 6 processes)
defaults: 120 s per filesystem, 8 processes, --fs both; --bin skips `cargo build --release -p vault-cli`";

/// `cargo xtask soak <what> …`.
pub fn main(args: &[String]) -> Result<()> {
    match args.split_first() {
        Some((what, rest)) if what == "concurrency" => concurrency(rest),
        _ => bail!("{USAGE}"),
    }
}

struct Options {
    secs: u64,
    procs: usize,
    fs: Vec<FsKind>,
    bin: Option<PathBuf>,
    seed: Option<u64>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let short = args.iter().any(|a| a == "--short");
        let mut o = Options {
            secs: if short { 25 } else { 120 },
            procs: if short { 6 } else { 8 },
            fs: vec![FsKind::Ext4, FsKind::Tmpfs],
            bin: None,
            seed: None,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || {
                it.next()
                    .with_context(|| format!("{a} needs a value\n{USAGE}"))
            };
            match a.as_str() {
                "--short" => {}
                "--secs" => o.secs = value()?.parse().context("--secs")?,
                "--procs" => o.procs = value()?.parse().context("--procs")?,
                "--bin" => o.bin = Some(PathBuf::from(value()?)),
                "--seed" => o.seed = Some(parse_seed(value()?)?),
                "--fs" => {
                    o.fs = match value()?.as_str() {
                        "ext4" => vec![FsKind::Ext4],
                        "tmpfs" => vec![FsKind::Tmpfs],
                        "here" => vec![FsKind::Here],
                        "both" => vec![FsKind::Ext4, FsKind::Tmpfs],
                        other => bail!("unknown --fs {other:?}\n{USAGE}"),
                    }
                }
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        if o.secs == 0 || o.procs == 0 {
            bail!("--secs and --procs must be at least 1");
        }
        Ok(o)
    }
}

fn parse_seed(s: &str) -> Result<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .with_context(|| format!("--seed {s:?} is not a number"))
}

/// `cargo xtask soak concurrency [options]`; `&["--short".into()]` is the CI-sized run.
pub fn concurrency(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let bin = match &opts.bin {
        Some(b) => b
            .canonicalize()
            .with_context(|| format!("--bin {}", b.display()))?,
        None => {
            crate::run(
                "release build",
                crate::cargo().args(["build", "--release", "-p", "vault-cli"]),
            )?;
            target_dir().join("release").join("vault")
        }
    };
    let seed = opts.seed.unwrap_or_else(rng::seed_from_clock);
    println!(
        "soak concurrency: {} s per filesystem, {} processes, seed {seed:#x}, binary {}",
        opts.secs,
        opts.procs,
        bin.display()
    );
    let work = target_dir().join("soak");
    let mut bad = Vec::new();
    for &kind in &opts.fs {
        let (stats, fs_line) = soak(kind, &bin, &opts, seed, &work)?;
        if stats.failed() {
            bad.push(format!(
                "{fs_line}: lost = {}, unexpected exit codes = {}",
                stats.lost, stats.unexpected
            ));
        }
    }
    if !bad.is_empty() {
        bail!(
            "soak concurrency failed (replay with --seed {seed:#x}):\n  {}",
            bad.join("\n  ")
        );
    }
    println!("\nsoak concurrency: no lost writes, no unexpected exit codes");
    Ok(())
}

/// One filesystem's run: set up, init, workers until the deadline, audit, summary. Returns the
/// merged stats and the one-line description of the filesystem.
fn soak(
    kind: FsKind,
    bin: &Path,
    opts: &Options,
    seed: u64,
    work: &Path,
) -> Result<(Stats, String)> {
    let scratch = Scratch::new(kind, work)?;
    let fs_line = if kind == FsKind::Here {
        format!("here: {}, on {}", scratch.how, scratch.actual)
    } else if scratch.fallback {
        format!(
            "{} requested, ran on {} ({})",
            kind.name(),
            scratch.actual,
            scratch.how
        )
    } else {
        format!(
            "{} (really {}: {})",
            kind.name(),
            scratch.actual,
            scratch.how
        )
    };
    println!("\nsoak on {fs_line}");
    let vault = VaultCmd::new(bin, &scratch.dir)?;
    vault.init()?;

    let start = Instant::now();
    let shared = Shared {
        vault: &vault,
        procs: opts.procs,
        start,
        deadline: start + Duration::from_secs(opts.secs),
        commands: AtomicU64::new(0),
        failures: AtomicU64::new(0),
    };
    let done = AtomicBool::new(false);
    let results = std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.procs)
            .map(|id| {
                let shared = &shared;
                s.spawn(move || Worker::run(id, shared, seed))
            })
            .collect();
        s.spawn(|| progress(&done, &shared, opts.secs));
        let results: Vec<_> = workers.into_iter().map(|h| h.join()).collect();
        done.store(true, Ordering::Relaxed);
        results
    });
    let elapsed = start.elapsed().as_secs_f64();

    let mut stats = Stats::default();
    let mut ledgers = Vec::new();
    for r in results {
        let Ok((s, ledger)) = r else {
            bail!("a soak worker thread panicked (a bug in xtask, not in vault)");
        };
        stats.merge(s);
        ledgers.push(ledger);
    }
    stats.merge(audit::audit(&vault, &ledgers, start));
    print!("{}", stats.summary(&fs_line, elapsed, opts.procs, seed));

    if stats.failed() {
        // The mount goes away with `scratch`: keep the evidence.
        let keep = work.join(format!("failed-{}-{seed:x}", kind.name()));
        let _ = std::fs::remove_dir_all(&keep);
        match scratch.preserve(&keep) {
            Ok(()) => println!(
                "   the vault and its state directory are kept in {}",
                keep.display()
            ),
            Err(e) => println!("   could not keep the vault for a post-mortem: {e:#}"),
        }
    }
    Ok((stats, fs_line))
}

/// A line every 10 s so a long run shows it is alive (and failing early, if it is).
fn progress(done: &AtomicBool, shared: &Shared<'_>, secs: u64) {
    let mut next = 10;
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let t = shared.start.elapsed().as_secs();
        if t >= next && t < secs {
            eprintln!(
                "soak: {t} s of {secs}: {} commands, {} failures so far",
                shared.commands.load(Ordering::Relaxed),
                shared.failures.load(Ordering::Relaxed)
            );
            next += 10;
        }
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (relative to the workspace root) or `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => crate::root().join(d),
        None => crate::root().join("target"),
    }
}
