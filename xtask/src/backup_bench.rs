//! `cargo xtask bench backup`: `vault backup`, `vault backup verify` and `vault restore` on
//! vaults of 1 000, 100 000 and 1 000 000 secrets of 32 bytes and 1 000 of 1 MiB (a 1 GiB vault):
//! wall time, plaintext throughput and peak RSS, beside `tar | gzip -6` over the same plaintext in
//! the same run, and the compressed size; and a backup of 1 000 secrets at the default Argon2id
//! parameters; and, for the 32-byte vaults, an incremental backup after 1 % of the secrets
//! changed, and the restore of the full backup and that incremental as a chain. Backups use
//! cheap KDF parameters elsewhere, so the engine shows. Prints Markdown rows for
//! docs/BENCHMARKS.md. `VAULT_BACKUP_SIZES=1000,100000` picks the sizes;
//! `VAULT_BACKUP_BIG=0` skips the 1 GiB vault.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Result, bail};

use crate::scale::{TIME, mib, secs, vault_at, write_input};
use crate::{cargo, root, run};

const CHEAP: [&str; 4] = ["--kdf-memory-mib", "8", "--kdf-iterations", "1"];

fn mb_s(bytes: u64, d: std::time::Duration) -> String {
    format!("{:.0} MB/s", bytes as f64 / d.as_secs_f64() / 1e6)
}

fn measure(
    bin: &Path,
    work: &Path,
    n: usize,
    len: usize,
    incremental: &mut Vec<String>,
) -> Result<()> {
    let b = vault_at(bin, work, &format!("b{n}x{len}"), true)?;
    let input = b.dir.join("input.env");
    write_input(&input, n, len)?;
    let plain = fs::metadata(&input)?.len();
    b.run(&["import", "-", "--format", "dotenv"], Some(&input))?;
    // The floor: the same plaintext through tar and gzip -6.
    let t = Instant::now();
    let tar = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -cf - -C {} input.env | gzip -6 | wc -c",
            b.dir.display()
        ))
        .stderr(Stdio::null())
        .output()?;
    let tar_time = t.elapsed();
    let tar_size: u64 = String::from_utf8_lossy(&tar.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    fs::remove_file(&input)?;
    let file = b.dir.join("backup.vbak");
    let f = file.to_string_lossy().into_owned();
    let mut args = vec!["backup", f.as_str()];
    args.extend(CHEAP);
    let backup = b.run(&args, None)?;
    let size = fs::metadata(&file)?.len();
    let verify = b.run(&["backup", "verify", &f], None)?;
    let target = b.dir.join("restored");
    let t_str = target.to_string_lossy().into_owned();
    let mut args = vec!["restore", f.as_str(), "--to", t_str.as_str()];
    args.extend(CHEAP);
    let restore = b.run(&args, None)?;
    println!(
        "| {n} × {len} B | {:.1} MiB | {} ({}, {}) | {} ({}) | {} ({}, {}) | {} ({}) | {:.1} MiB ({:.2} of plaintext) | {:.1} MiB |",
        plain as f64 / (1 << 20) as f64,
        secs(backup.wall),
        mb_s(plain, backup.wall),
        mib(backup.rss_kib),
        secs(verify.wall),
        mib(verify.rss_kib),
        secs(restore.wall),
        mb_s(plain, restore.wall),
        mib(restore.rss_kib),
        secs(tar_time),
        mb_s(plain, tar_time),
        size as f64 / (1 << 20) as f64,
        size as f64 / plain as f64,
        tar_size as f64 / (1 << 20) as f64,
    );
    if len <= 64 {
        // 1 % of the secrets get a new version; the rest is as the full backup saw it.
        let changed = (n / 100).max(1);
        let input = b.dir.join("changed.env");
        write_input(&input, changed, len + 1)?;
        b.run(&["import", "-", "--format", "dotenv"], Some(&input))?;
        fs::remove_file(&input)?;
        let inc = b.dir.join("inc.vbak");
        let inc_s = inc.to_string_lossy().into_owned();
        let mut args = vec!["backup", inc_s.as_str(), "--since", f.as_str()];
        args.extend(CHEAP);
        let made = b.run(&args, None)?;
        let inc_size = fs::metadata(&inc)?.len();
        let target = b.dir.join("restored-chain");
        let t_str = target.to_string_lossy().into_owned();
        let mut args = vec![
            "restore",
            f.as_str(),
            inc_s.as_str(),
            "--to",
            t_str.as_str(),
        ];
        args.extend(CHEAP);
        let chain = b.run(&args, None)?;
        incremental.push(format!(
            "| {n} × {len} B | {changed} | {} ({}) | {:.2} MiB ({:.2} of the full backup) | {} ({}) |",
            secs(made.wall),
            mib(made.rss_kib),
            inc_size as f64 / (1 << 20) as f64,
            inc_size as f64 / size as f64,
            secs(chain.wall),
            mib(chain.rss_kib),
        ));
    }
    fs::remove_dir_all(&b.dir)?;
    Ok(())
}

pub(crate) fn main(_args: &[String]) -> Result<()> {
    if !Path::new(TIME).exists() {
        bail!("bench backup reads peak RSS from GNU time: install it (`apt-get install time`)");
    }
    run(
        "build the release binary",
        cargo().args(["build", "--release", "-p", "vault-cli"]),
    )?;
    let bin = root().join("target").join("release").join("vault");
    let work = root().join("target").join("bench-backup");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load (1/5/15 min) before: {}", load.trim());
    println!(
        "\n| vault | plaintext | backup (throughput, peak RSS) | verify (peak RSS) | restore (throughput, peak RSS) | tar \\| gzip -6 (throughput) | backup size | tar.gz size |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let sizes: Vec<usize> = std::env::var("VAULT_BACKUP_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 100_000, 1_000_000]);
    let mut incremental = Vec::new();
    for n in sizes {
        measure(&bin, &work, n, 32, &mut incremental)?;
    }
    if std::env::var("VAULT_BACKUP_BIG").as_deref() != Ok("0") {
        measure(&bin, &work, 1000, 1 << 20, &mut incremental)?;
    }
    println!(
        "\n| vault | secrets changed since the full backup | incremental backup (peak RSS) | incremental size | restore of full + incremental (peak RSS) |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for row in incremental {
        println!("{row}");
    }
    // One Argon2id run per backup: 1 000 secrets at the default parameters.
    let b = vault_at(&bin, &work, "default-kdf", true)?;
    let input = b.dir.join("input.env");
    write_input(&input, 1000, 32)?;
    b.run(&["import", "-", "--format", "dotenv"], Some(&input))?;
    let f = b.dir.join("d.vbak").to_string_lossy().into_owned();
    let m = b.run(&["backup", &f], None)?;
    println!(
        "\n`vault backup` of 1 000 secrets at the default Argon2id parameters (256 MiB, 3 passes, 4 lanes): {} ({} peak RSS)",
        secs(m.wall),
        mib(m.rss_kib)
    );
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load after: {}", load.trim());
    fs::remove_dir_all(&work)?;
    Ok(())
}
