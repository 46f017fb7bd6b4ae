//! `cargo xtask bench agent`: `vault get` end to end with the agent unlocked and without it,
//! at the default Argon2id parameters, on vaults of 10 000 and 1 000 000 secrets (32-byte
//! values), in one run. `VAULT_AGENT_SIZES=10000` picks the sizes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::scale::{secs, write_input};
use crate::{cargo, root, run};

/// `vault ARGS` on the vault in `dir`, its agent directory `dir/run`; `direct` keeps the agent
/// out of it.
fn vault(
    bin: &Path,
    dir: &Path,
    args: &[&str],
    input: Option<&Path>,
    direct: bool,
) -> Result<Duration> {
    let mut c = Command::new(bin);
    c.args(args)
        .env("VAULT_DIR", dir.join("vault"))
        .env("VAULT_STATE_DIR", dir.join("state"))
        .env("VAULT_PASSPHRASE_FILE", dir.join("pass"))
        .env("VAULT_NEW_PASSPHRASE_FILE", dir.join("pass"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if direct {
        c.env("VAULT_NO_AGENT", "1");
    }
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
    Ok(wall)
}

fn median(mut all: Vec<Duration>) -> Duration {
    all.sort();
    all.get(all.len() / 2).copied().unwrap_or_default()
}

fn measure(bin: &Path, work: &Path, n: usize) -> Result<()> {
    let dir: PathBuf = work.join(format!("v{n}"));
    fs::create_dir_all(dir.join("run"))?;
    fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o700))?;
    fs::write(dir.join("pass"), "bench passphrase\n")?;
    vault(bin, &dir, &["init"], None, true)?;
    let input = dir.join("input.env");
    write_input(&input, n, 32)?;
    vault(
        bin,
        &dir,
        &["import", "-", "--format", "dotenv"],
        Some(&input),
        true,
    )?;
    fs::remove_file(&input)?;
    let name = format!("s/{}", n / 2);
    let direct = (0..5)
        .map(|_| vault(bin, &dir, &["get", &name], None, true))
        .collect::<Result<Vec<_>>>()?;
    let unlock = vault(bin, &dir, &["unlock", "--timeout", "10m"], None, false)?;
    let agent = (0..50)
        .map(|_| vault(bin, &dir, &["get", &name], None, false))
        .collect::<Result<Vec<_>>>();
    vault(bin, &dir, &["lock"], None, false)?;
    let agent = agent?;
    println!(
        "| {n} secrets | {} | {:.1} ms | {} |",
        secs(median(direct)),
        median(agent).as_secs_f64() * 1e3,
        secs(unlock),
    );
    fs::remove_dir_all(&dir)?;
    Ok(())
}

pub(crate) fn main(_args: &[String]) -> Result<()> {
    run(
        "build the release binary",
        cargo().args(["build", "--release", "-p", "vault-cli"]),
    )?;
    let bin = root().join("target").join("release").join("vault");
    let work = root().join("target").join("bench-agent");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(&work)?;
    let sizes: Vec<usize> = std::env::var("VAULT_AGENT_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 1_000_000]);
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("machine load (1/5/15 min) before: {}", load.trim());
    println!(
        "\n| vault | `get` without the agent (median of 5) | `get` with it (median of 50) | `unlock` |"
    );
    println!("| --- | --- | --- | --- |");
    for n in sizes {
        measure(&bin, &work, n)?;
    }
    fs::remove_dir_all(&work)?;
    Ok(())
}
