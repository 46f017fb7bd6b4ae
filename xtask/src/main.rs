//! Project automation, the one entry point for CI and developers (matklad's `cargo xtask`).
//!
//! - `cargo xtask ci`: exactly what CI runs.
//! - `cargo xtask fuzz <target> [--time SECONDS]`: run a cargo-fuzz target.
//! - `cargo xtask bench [crypto|store|micro|scale]`: run the benchmarks and print their figures.
//! - `cargo xtask coverage`: line coverage of the workspace tests (cargo-llvm-cov).
//! - `cargo xtask release`: the release binary with its SHA-256 checksum in `target/dist/`.
//! - `cargo xtask soak concurrency [--short]`: many `vault` processes racing on ext4 and tmpfs.

mod agent_bench;
mod backup_bench;
mod scale;
mod soak;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    match cmd {
        "ci" => ci(),
        "fuzz" => fuzz(rest),
        "bench" => bench(rest),
        "coverage" => coverage(),
        "release" => release(),
        "soak" => soak::main(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown xtask command `{other}`\n\n{USAGE}"),
    }
}

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                              fmt, clippy, tests, doc tests, rustdoc, loom models, fuzz-corpus replay, cargo-deny
  fuzz <target> [--time SECONDS]  run one cargo-fuzz target (nightly if present, else stable -s none)
  fuzz --list                     list fuzz targets
  bench [crypto|store|micro]      run benchmarks and print their figures (micro: criterion)
  bench scale                     the vault binary at 100 to 1M secrets: time and peak RSS of each command
  bench postgres                  commits on a vault in PostgreSQL (1, 4, 16 clients) beside files and a plain INSERT
  coverage                        line coverage of the workspace tests (installs cargo-llvm-cov)
  release                         build the release binary, its checksum, completions and man pages into target/dist/
  soak concurrency [--secs N] [--procs N] [--fs ext4|tmpfs|both|here] [--bin PATH] [--seed N]
                                  vault processes mixing every command on ext4 and tmpfs, checked
                                  against a ledger (120 s per filesystem, 8 processes)
  soak concurrency --short        the CI-sized soak: 25 s on ext4 + 25 s on tmpfs, 6 processes";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\n==> {step}: {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start {step}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn has_cargo_subcommand(name: &str) -> bool {
    cargo()
        .args([name, "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The optional features CI builds, lints and tests with (a superset of the default build,
/// which `check (default features)` also compiles).
const CI_FEATURES: &str = "vault-store/postgres,vault-cli/postgres";

/// Whether `cmd` runs and succeeds (quietly).
fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What CI needs from the distribution, installed where missing (apt, as root): OpenSSL's
/// headers and pkg-config to build the PostgreSQL backend's TLS, the openssl tool and a
/// PostgreSQL server for its tests (which say they were skipped if none can be started).
fn ensure_system_packages() -> Result<()> {
    let has_server = succeeds(Command::new("sh").args([
        "-c",
        "command -v initdb || ls /usr/lib/postgresql/*/bin/initdb",
    ]));
    let has_openssl = succeeds(Command::new("pkg-config").args(["--exists", "openssl"]))
        && succeeds(Command::new("openssl").arg("version"));
    let mut missing = Vec::new();
    if !has_openssl {
        missing.extend(["libssl-dev", "pkg-config", "openssl"]);
    }
    if !has_server {
        missing.push("postgresql");
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("\n==> installing {}", missing.join(" "));
    let installed = succeeds(Command::new("apt-get").args(["update", "-qq"]))
        && succeeds(
            Command::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq"])
                .args(&missing),
        );
    if !installed && !has_openssl {
        bail!(
            "the PostgreSQL backend needs OpenSSL's headers and pkg-config: `apt-get install libssl-dev pkg-config openssl` (as root)"
        );
    }
    if !installed {
        eprintln!("could not install PostgreSQL: its backend's tests will say they were skipped");
    }
    Ok(())
}

fn ci() -> Result<()> {
    ensure_system_packages()?;
    run("format", cargo().args(["fmt", "--all", "--check"]))?;
    run(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            CI_FEATURES,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "check (default features)",
        cargo().args(["check", "--workspace"]),
    )?;
    // The fuzz-corpus replay tests are ordinary tests in vault-format (tests/fuzz_corpus.rs), so
    // they run here on stable with every other test.
    if has_cargo_subcommand("nextest") {
        run(
            "tests (nextest)",
            cargo().args([
                "nextest",
                "run",
                "--workspace",
                "--no-fail-fast",
                "--features",
                CI_FEATURES,
            ]),
        )?;
    } else {
        eprintln!("cargo-nextest not installed: using cargo test");
        run(
            "tests",
            cargo().args([
                "test",
                "--workspace",
                "--lib",
                "--bins",
                "--tests",
                "--features",
                CI_FEATURES,
            ]),
        )?;
    }
    // With the same features as the tests, so that their build is reused.
    run(
        "doc tests",
        cargo().args(["test", "--workspace", "--doc", "--features", CI_FEATURES]),
    )?;
    run(
        "rustdoc (broken links are errors)",
        cargo().env("RUSTDOCFLAGS", "-D warnings").args([
            "doc",
            "--no-deps",
            "--workspace",
            "--features",
            CI_FEATURES,
        ]),
    )?;
    // loom swaps every lock in vault-store for a model-checked one under `--cfg vault_loom`; it
    // needs its own target directory (the whole graph is rebuilt with the cfg) and a bounded
    // preemption count to finish in CI time.
    run(
        "loom models",
        cargo()
            .env("RUSTFLAGS", "--cfg vault_loom")
            .env("LOOM_MAX_PREEMPTIONS", "3")
            .env("CARGO_TARGET_DIR", root().join("target").join("loom"))
            .args(["test", "--release", "-p", "vault-store", "--test", "loom"]),
    )?;
    // The CI-sized concurrency soak: many `vault` processes mixing every command on a
    // loop-mounted ext4 and a tmpfs (the filesystem at hand, said so, where mounting is refused).
    eprintln!("\n==> concurrency soak (short)");
    soak::concurrency(&["--short".to_string()])?;
    // Never skipped: installed when missing (as `.ci/run` does), and a failed install fails the
    // run, naming the command.
    if !has_cargo_subcommand("deny") {
        run(
            "install cargo-deny (missing)",
            cargo().args(["install", "cargo-deny", "--locked"]),
        )
        .context("cargo-deny is needed: `cargo install cargo-deny --locked`")?;
    }
    // cargo-deny reads the metadata of every platform's dependencies (windows-sys included)
    // and runs offline (the advisory database is not checked here), so fetch them first.
    run("fetch dependencies", cargo().args(["fetch"]))?;
    run(
        "cargo deny",
        cargo().args(["deny", "--offline", "check", "licenses", "bans", "sources"]),
    )?;
    eprintln!("\nci: all steps passed");
    Ok(())
}

fn fuzz(args: &[String]) -> Result<()> {
    let fuzz_dir = root().join("fuzz");
    let targets = fuzz_targets(&fuzz_dir)?;
    let Some(target) = args.first() else {
        bail!(
            "usage: cargo xtask fuzz <target> [--time SECONDS]; targets: {}",
            targets.join(", ")
        );
    };
    if target == "--list" {
        for t in &targets {
            println!("{t}");
        }
        return Ok(());
    }
    if !targets.contains(target) {
        bail!(
            "unknown fuzz target `{target}`; targets: {}",
            targets.join(", ")
        );
    }
    let mut time = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                time = Some(
                    it.next()
                        .context("--time needs a value in seconds")?
                        .clone(),
                )
            }
            other => bail!("unknown fuzz option `{other}`"),
        }
    }
    if !has_cargo_subcommand("fuzz") {
        run(
            "install cargo-fuzz",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    // `CARGO` names the toolchain's own cargo, which does not understand `+nightly`; go through
    // rustup to pick the nightly toolchain.
    let mut cmd = if nightly {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "cargo"]);
        c
    } else {
        cargo()
    };
    cmd.args(["fuzz", "run"]);
    if !nightly {
        cmd.args(["-s", "none"]);
    }
    let corpus = fuzz_dir.join("corpus").join(target);
    cmd.arg(target).arg(&corpus).arg("--");
    if let Some(t) = time {
        cmd.arg(format!("-max_total_time={t}"));
    }
    cmd.arg("-print_final_stats=1");
    eprintln!("\n==> fuzz {target}: {cmd:?}");
    let status = cmd
        .current_dir(&fuzz_dir)
        .status()
        .context("could not start cargo fuzz")?;
    if !status.success() {
        bail!("fuzz target {target} failed ({status})");
    }
    Ok(())
}

fn fuzz_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let dir = fuzz_dir.join("fuzz_targets");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            out.push(stem.to_string());
        }
    }
    out.sort();
    Ok(out)
}

fn bench(args: &[String]) -> Result<()> {
    let which = args.first().map(String::as_str).unwrap_or("all");
    match which {
        "crypto" => run(
            "bench crypto",
            cargo().args(["bench", "-p", "vault-crypto", "--bench", "crypto"]),
        ),
        "micro" => {
            // criterion micro-benchmarks; the process-level figures are `crypto` and `store`.
            run(
                "bench micro (vault-crypto)",
                cargo().args(["bench", "-p", "vault-crypto", "--bench", "micro"]),
            )?;
            run(
                "bench micro (vault-store)",
                cargo().args(["bench", "-p", "vault-store", "--bench", "micro"]),
            )
        }
        "all" => {
            bench(&["crypto".to_string()])?;
            bench(&["store".to_string()])?;
            bench(&["keys".to_string()])?;
            bench(&["micro".to_string()])
        }
        "store" => run(
            "bench store",
            cargo().args(["bench", "-p", "vault-store", "--bench", "store"]),
        ),
        "postgres" => run(
            "bench postgres",
            cargo().args([
                "bench",
                "-p",
                "vault-store",
                "--features",
                "postgres",
                "--bench",
                "postgres",
            ]),
        ),
        "keys" => run(
            "bench keys",
            cargo().args(["bench", "-p", "vault-store", "--bench", "keys"]),
        ),
        "audit" => run(
            "bench audit",
            cargo().args(["bench", "-p", "vault-store", "--bench", "audit"]),
        ),
        // Not part of `all`: it builds vaults of a million secrets and takes minutes.
        "scale" => scale::main(args.get(1..).unwrap_or_default()),
        // Not part of `all` either: it builds vaults of a million secrets and of 1 GiB.
        "backup" => backup_bench::main(args.get(1..).unwrap_or_default()),
        // Nor this: a million secrets at the default Argon2id parameters.
        "agent" => agent_bench::main(args.get(1..).unwrap_or_default()),
        other => {
            bail!(
                "unknown bench suite `{other}` (crypto, store, keys, audit, micro, scale, backup, agent, all)"
            )
        }
    }
}

/// The LLVM tools matching rustc's LLVM: rustc 1.95 ships LLVM 22, and Debian's default llvm-cov
/// (14) cannot read its profiles.
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

fn coverage() -> Result<()> {
    if !has_cargo_subcommand("llvm-cov") {
        run(
            "install cargo-llvm-cov",
            cargo().args(["install", "cargo-llvm-cov", "--locked"]),
        )?;
    }
    let llvm = Path::new(LLVM_BIN);
    if !llvm.join("llvm-cov").exists() {
        bail!(
            "coverage needs LLVM 22's llvm-cov and llvm-profdata in {LLVM_BIN}: `apt-get install llvm-22`"
        );
    }
    run(
        "coverage",
        cargo()
            .env("LLVM_COV", llvm.join("llvm-cov"))
            .env("LLVM_PROFDATA", llvm.join("llvm-profdata"))
            .env("CARGO_TARGET_DIR", root().join("target").join("coverage"))
            .args([
                "llvm-cov",
                "--workspace",
                "--exclude",
                "xtask",
                "--summary-only",
            ]),
    )
}

fn release() -> Result<()> {
    run(
        "release build",
        cargo().args(["build", "--release", "--locked", "-p", "vault-cli"]),
    )?;
    let out = Command::new("rustc")
        .args(["-vV"])
        .output()
        .context("running rustc -vV")?;
    let host = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV printed no host")?;
    let dist = root().join("target").join("dist");
    std::fs::create_dir_all(&dist)?;
    let name = format!("vault-{}-{host}", env!("CARGO_PKG_VERSION"));
    let dst = dist.join(&name);
    std::fs::copy(root().join("target/release/vault"), &dst)
        .with_context(|| format!("copying the binary to {}", dst.display()))?;
    let sum = Command::new("sha256sum")
        .arg(&name)
        .current_dir(&dist)
        .output()
        .context("running sha256sum")?;
    if !sum.status.success() {
        bail!("sha256sum failed");
    }
    std::fs::write(dist.join(format!("{name}.sha256")), &sum.stdout)?;
    print!("{}", String::from_utf8_lossy(&sum.stdout));
    // Completions and man pages, from the binary itself (the same clap definitions).
    let completions = dist.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in [
        ("bash", "vault.bash"),
        ("zsh", "_vault"),
        ("fish", "vault.fish"),
    ] {
        let out = Command::new(&dst)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("generating {shell} completions"))?;
        if !out.status.success() {
            bail!("vault completions {shell} failed");
        }
        std::fs::write(completions.join(file), &out.stdout)?;
    }
    let status = Command::new(&dst)
        .arg("man-pages")
        .arg(dist.join("man"))
        .status()
        .context("generating the man pages")?;
    if !status.success() {
        bail!("vault man-pages failed");
    }
    eprintln!(
        "release: completions in {}, man pages in {}",
        completions.display(),
        dist.join("man").display()
    );
    eprintln!("release: {}", dst.display());
    Ok(())
}
