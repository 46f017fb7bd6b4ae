//! `cargo xtask bench scale`: the `vault` binary at 100, 100 000 and 1 000 000 secrets (32-byte
//! values) and at 1 000 values of 1 MiB, with cheap KDF parameters so that the engine and not
//! Argon2id shows: wall time and peak RSS of `get`, `set`, `list`, `verify` and `import`, beside
//! the fsync floor and a raw sequential read of the log. Prints Markdown rows for
//! docs/BENCHMARKS.md. Peak RSS comes from GNU time (`/usr/bin/time -f %M`).
//!
//! `VAULT_SCALE_SIZES=100,100000` picks the sizes; `VAULT_SCALE_BIG=0` skips the 1 MiB values.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

pub(crate) const TIME: &str = "/usr/bin/time";

/// One measured run of `vault`: wall time and peak RSS.
pub(crate) struct Measured {
    pub(crate) wall: Duration,
    pub(crate) rss_kib: u64,
}

/// A vault under test and how to run the binary on it.
pub(crate) struct Bench {
    pub(crate) bin: PathBuf,
    pub(crate) dir: PathBuf,
}

impl Bench {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(TIME);
        c.args(["-f", "%M", "-o"])
            .arg(self.dir.join("rss"))
            .arg(&self.bin)
            .args(args)
            .env("VAULT_DIR", self.dir.join("vault"))
            .env("VAULT_STATE_DIR", self.dir.join("state"))
            .env("VAULT_PASSPHRASE_FILE", self.dir.join("pass"))
            .env("VAULT_NEW_PASSPHRASE_FILE", self.dir.join("pass"))
            .env("VAULT_BACKUP_PASSPHRASE_FILE", self.dir.join("pass"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Runs `vault ARGS` with `input` on stdin; fails unless it succeeds.
    pub(crate) fn run(&self, args: &[&str], input: Option<&Path>) -> Result<Measured> {
        let mut c = self.command(args);
        match input {
            Some(p) => c.stdin(fs::File::open(p)?),
            None => c.stdin(Stdio::null()),
        };
        let start = Instant::now();
        let status = c
            .status()
            .with_context(|| format!("running vault {args:?}"))?;
        let wall = start.elapsed();
        if !status.success() {
            bail!("vault {args:?} failed ({status})");
        }
        let rss = fs::read_to_string(self.dir.join("rss"))?;
        let rss_kib = rss
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .context("GNU time printed no RSS")?;
        Ok(Measured { wall, rss_kib })
    }

    /// The median wall time and the largest RSS of `runs` runs.
    fn median(&self, runs: usize, args: &[&str], input: Option<&Path>) -> Result<Measured> {
        let mut all = Vec::new();
        for _ in 0..runs {
            all.push(self.run(args, input)?);
        }
        all.sort_by_key(|m| m.wall);
        let rss_kib = all.iter().map(|m| m.rss_kib).max().unwrap_or(0);
        let wall = all.get(all.len() / 2).map_or(Duration::ZERO, |m| m.wall);
        Ok(Measured { wall, rss_kib })
    }

    fn log_path(&self) -> Result<PathBuf> {
        for entry in fs::read_dir(self.dir.join("vault"))? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("log.") && !name.ends_with(".tmp") {
                return Ok(self.dir.join("vault").join(&*name));
            }
        }
        bail!("no log file in {}", self.dir.display())
    }
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Reads `path` start to end, the floor any full pass over the log has.
fn raw_read(path: &Path) -> Result<Duration> {
    let start = Instant::now();
    let mut f = fs::File::open(path)?;
    std::io::copy(&mut f, &mut std::io::sink())?;
    Ok(start.elapsed())
}

/// p50 of a 4 KiB write + fdatasync in `dir`.
fn fsync_floor(dir: &Path) -> Result<Duration> {
    let path = dir.join("fsync-probe");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)?;
    let block = [7u8; 4096];
    let mut samples = Vec::new();
    for i in 0..50u64 {
        use std::os::unix::fs::FileExt;
        let start = Instant::now();
        f.write_all_at(&block, i * 4096)?;
        f.sync_data()?;
        samples.push(start.elapsed());
    }
    fs::remove_file(&path)?;
    samples.sort();
    Ok(samples.get(samples.len() / 2).copied().unwrap_or_default())
}

/// A dotenv file of `n` secrets `s/<i>` with `len`-byte values.
pub(crate) fn write_input(path: &Path, n: usize, len: usize) -> Result<()> {
    let mut out = std::io::BufWriter::new(fs::File::create(path)?);
    let mut value = vec![b'x'; len];
    for i in 0..n {
        let tag = format!("{i:016x}");
        for (v, t) in value.iter_mut().zip(tag.bytes().cycle()) {
            *v = t;
        }
        out.write_all(format!("s/{i}=").as_bytes())?;
        out.write_all(&value)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn vault_at(bin: &Path, work: &Path, name: &str, cheap: bool) -> Result<Bench> {
    let dir = work.join(name);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("pass"), "bench passphrase\n")?;
    let b = Bench {
        bin: bin.to_path_buf(),
        dir,
    };
    let mut init = vec!["init"];
    if cheap {
        init.extend([
            "--kdf-memory-mib",
            "8",
            "--kdf-iterations",
            "1",
            "--kdf-parallelism",
            "1",
        ]);
    }
    b.run(&init, None)?;
    Ok(b)
}

/// Imports `n` values of `len` bytes, then measures the commands; one Markdown row.
fn measure(bin: &Path, work: &Path, n: usize, len: usize) -> Result<()> {
    let b = vault_at(bin, work, &format!("v{n}x{len}"), true)?;
    let input = b.dir.join("input.env");
    write_input(&input, n, len)?;
    let import = b.run(&["import", "-", "--format", "dotenv"], Some(&input))?;
    fs::remove_file(&input)?;
    let name = format!("s/{}", n / 2);
    let value = b.dir.join("value");
    fs::write(&value, vec![b'y'; len])?;
    let get = b.median(5, &["get", &name], None)?;
    let set = b.median(5, &["set", &name], Some(&value))?;
    let list = b.median(3, &["list"], None)?;
    let verify = b.median(3, &["verify"], None)?;
    let log = b.log_path()?;
    let log_len = fs::metadata(&log)?.len();
    let raw = raw_read(&log)?;
    println!(
        "| {n} × {len} B | {} | {} ({}) | {} ({}) | {} ({}) | {} ({}) | {} | {:.1} MiB, read in {} |",
        secs(import.wall),
        secs(get.wall),
        mib(get.rss_kib),
        secs(set.wall),
        mib(set.rss_kib),
        secs(list.wall),
        mib(list.rss_kib),
        secs(verify.wall),
        mib(verify.rss_kib),
        mib(import.rss_kib),
        log_len as f64 / (1 << 20) as f64,
        secs(raw),
    );
    if len >= 1 << 20 {
        // Over the old bound on one frame: compaction and rotation must still work.
        let compact = b.run(&["compact"], None)?;
        let rotate = b.run(&["rotate-master-key"], None)?;
        b.run(&["verify"], None)?;
        println!(
            "\n{n} × {len} B: `compact` {} ({} peak RSS), `rotate-master-key` {} ({} peak RSS); verified after",
            secs(compact.wall),
            mib(compact.rss_kib),
            secs(rotate.wall),
            mib(rotate.rss_kib)
        );
    }
    fs::remove_dir_all(&b.dir)?;
    Ok(())
}

pub(crate) fn main(_args: &[String]) -> Result<()> {
    if !Path::new(TIME).exists() {
        bail!("bench scale reads peak RSS from GNU time: install it (`apt-get install time`)");
    }
    run(
        "build the release binary",
        cargo().args(["build", "--release", "-p", "vault-cli"]),
    )?;
    let bin = root().join("target").join("release").join("vault");
    let work = root().join("target").join("bench-scale");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let sizes: Vec<usize> = std::env::var("VAULT_SCALE_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 100_000, 1_000_000]);
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load (1/5/15 min) before: {}", load.trim());
    println!(
        "fsync floor (4 KiB + fdatasync, p50): {:.0} µs",
        fsync_floor(&work)?.as_secs_f64() * 1e6
    );
    println!(
        "\n| vault | import | get (peak RSS) | set (peak RSS) | list (peak RSS) | verify (peak RSS) | import peak RSS | log, raw read |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for n in sizes {
        measure(&bin, &work, n, 32)?;
    }
    if std::env::var("VAULT_SCALE_BIG").as_deref() != Ok("0") {
        measure(&bin, &work, 1000, 1 << 20)?;
    }
    // What the KDF adds: `get` on a small vault at the default Argon2id parameters.
    let b = vault_at(&bin, &work, "default-kdf", false)?;
    let value = b.dir.join("value");
    fs::write(&value, b"v")?;
    b.run(&["set", "a"], Some(&value))?;
    let get = b.median(3, &["get", "a"], None)?;
    println!(
        "\n`get` on a vault at the default Argon2id parameters (256 MiB, 3 passes, 4 lanes): {} ({} peak RSS)",
        secs(get.wall),
        mib(get.rss_kib)
    );
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load after: {}", load.trim());
    fs::remove_dir_all(&work)?;
    Ok(())
}
