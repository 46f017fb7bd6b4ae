//! `vault`: keep secrets and keys in a passphrase-protected, crash-safe vault.
//!
//! Secret values are never taken from the command line (where `ps` and shell history would see
//! them): `set` reads stdin when it is not a terminal, else asks twice at a hidden prompt. `get`
//! writes exactly the stored bytes to stdout.

mod exit;
mod output;
mod passphrase;
mod permissions;
mod terminal;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vault_store::kdf::{self, KdfParams};
use vault_store::{Error, FileBackend, KdfLimit, SetOptions, Tag, Vault, VaultOptions};
use vault_store::{MAX_VALUE_LEN, SecretBytes};

use crate::exit::Exit;
use crate::output::{Stdout, stderr_line, stdout_failure, stdout_line};

const PASSPHRASE_HELP: &str = "\
Passphrase: a hidden prompt on a terminal; for scripts VAULT_PASSPHRASE_FILE (a file holding it),
VAULT_PASSPHRASE_COMMAND (a command printing it) or VAULT_PASSPHRASE (least safe: the environment
leaks to child processes and crash reports). New passphrases (init, change-passphrase) come from
VAULT_NEW_PASSPHRASE_FILE / _COMMAND / VAULT_NEW_PASSPHRASE, or for init the same variables as
above. From each of these, exactly one trailing newline (\\n or \\r\\n) is stripped; anything else,
other whitespace included, is part of the passphrase. A passphrase file that yields nothing for
30 s (a FIFO no one writes to), or a passphrase command that has not finished by then, is an
error; VAULT_PASSPHRASE_TIMEOUT_MS sets that wait (0: no limit). With several sources set, the
first in the order above that is set is used, with a warning.";

/// Keep secrets and keys in a passphrase-protected, crash-safe vault.
#[derive(Parser, Debug)]
#[command(name = "vault", version, after_help = format!("{}\n{PASSPHRASE_HELP}", Exit::help()))]
struct Cli {
    /// Vault location: a directory path or a file:///path URL [default: $VAULT_DIR, else the
    /// XDG data directory's `vault`]. Other URL schemes are refused (exit 2).
    #[arg(long, global = true, env = "VAULT_DIR")]
    vault: Option<PathBuf>,
    /// Directory for rollback records, kept outside the vault directory [default: the XDG
    /// state directory's `vault`].
    #[arg(long, global = true, env = "VAULT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// How long to wait for another process's write lock, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    lock_timeout_ms: u64,
    /// Most Argon2id memory, in MiB, a key slot may ask for before it is tried (a hostile vault
    /// file can ask for hours of work); also the most `init` and `add-passphrase` will use.
    #[arg(
        long,
        global = true,
        env = "VAULT_MAX_KDF_MEMORY_MIB",
        default_value_t = 1024
    )]
    max_kdf_memory_mib: u32,
    /// Most Argon2id work, as memory in MiB × passes, a key slot may ask for before it is tried.
    #[arg(long, global = true, env = "VAULT_MAX_KDF_COST", default_value_t = 32 * 1024)]
    max_kdf_cost: u64,
    /// More log output on stderr (never secret values); repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new vault.
    Init(InitArgs),
    /// Store a new version of a secret, read from stdin or a hidden prompt.
    Set {
        /// Secret name.
        name: String,
        /// Only write if the secret is at this version (0: only if it does not exist).
        #[arg(long)]
        expect_version: Option<u32>,
        /// Metadata, as key=value; repeatable.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<Tag>,
        /// Store an empty value (refused otherwise: an empty or closed stdin is usually a
        /// mistake).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Write a secret's value to stdout.
    Get {
        /// Secret name.
        name: String,
        /// A specific version instead of the latest.
        #[arg(long)]
        version: Option<u32>,
    },
    /// List secret names.
    List {
        /// Include soft-deleted secrets.
        #[arg(long)]
        all: bool,
    },
    /// Soft-delete a secret (history kept; `undelete` restores it).
    Rm {
        /// Secret name.
        name: String,
    },
    /// Restore a soft-deleted secret.
    Undelete {
        /// Secret name.
        name: String,
    },
    /// Destroy a secret and all its versions (removed from disk at the next compaction).
    Destroy {
        /// Secret name.
        name: String,
    },
    /// Show a secret's versions (no values).
    History {
        /// Secret name.
        name: String,
    },
    /// Change the passphrase of the key slot the current passphrase opens.
    ChangePassphrase,
    /// Set how many versions of each secret are kept (older ones are dropped).
    MaxVersions {
        /// 1 to 10000.
        count: u32,
    },
    /// Add a key slot for another passphrase (e.g. a recovery passphrase), read like a new one.
    AddPassphrase,
    /// Remove a key slot (see `slots`); the last one cannot be removed.
    RemovePassphrase {
        /// Slot id.
        slot: u16,
    },
    /// List the key slots and their Argon2id parameters.
    Slots,
    /// Re-encrypt everything under a new master key.
    RotateMasterKey {
        /// Drop key slots other than the one used to unlock (they cannot be carried over).
        #[arg(long)]
        drop_other_slots: bool,
    },
    /// Check every record authenticates, the generation chain is intact and the rollback record
    /// agrees.
    Verify,
    /// Rewrite the log without superseded records.
    Compact,
    /// Accept a vault older than its rollback record, after a deliberate restore (recorded in
    /// the vault as an event).
    AcceptRollback,
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Argon2id memory in MiB [default: 256].
    #[arg(long, conflicts_with = "kdf_target_ms")]
    kdf_memory_mib: Option<u32>,
    /// Argon2id iterations [default: 3].
    #[arg(long, conflicts_with = "kdf_target_ms")]
    kdf_iterations: Option<u32>,
    /// Argon2id lanes [default: 4].
    #[arg(long)]
    kdf_parallelism: Option<u32>,
    /// Calibrate Argon2id to take about this long on this machine.
    #[arg(long)]
    #[arg(value_parser = clap::value_parser!(u64).range(10..))]
    kdf_target_ms: Option<u64>,
}

fn parse_tag(s: &str) -> Result<Tag, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("tag {s:?} is not key=value"))?;
    Ok(Tag {
        key: k.to_string(),
        value: v.to_string(),
    })
}

/// Why a command stopped early: its exit code and one-line message.
struct Failure {
    code: Exit,
    /// `None` only when there is nothing to say: stdout's reader went away.
    message: Option<String>,
}

impl Failure {
    /// Stdout's reader went away (EPIPE): whatever it wanted it has, so stop quietly with
    /// success, as `head` expects of the command feeding it.
    fn reader_gone() -> Self {
        Failure {
            code: Exit::Success,
            message: None,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::WrongPassphrase => Exit::WrongPassphrase,
            Error::NotFound { .. } | Error::NoVault(_) => Exit::NotFound,
            e if e.is_integrity() => Exit::Integrity,
            Error::Busy { .. } => Exit::Busy,
            Error::Conflict { .. } => Exit::Conflict,
            Error::Invalid { .. } => Exit::Usage,
            _ => Exit::Other,
        };
        let mut message = e.to_string();
        match e {
            Error::RollbackDetected { .. } => message.push_str(" with `vault accept-rollback`"),
            Error::NoVault(_) => message.push_str(" (create one with `vault init`)"),
            Error::KdfLimit { .. } => message.push_str(
                "; raise --max-kdf-memory-mib / --max-kdf-cost (or VAULT_MAX_KDF_MEMORY_MIB / VAULT_MAX_KDF_COST)",
            ),
            Error::Invalid {
                what: "KDF parameters",
                ..
            } => message.push_str(" with --max-kdf-memory-mib / --max-kdf-cost"),
            _ => {}
        }
        Failure {
            code,
            message: Some(message),
        }
    }
}

fn fail(code: Exit, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: Some(message.into()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return Exit::Usage.into();
        }
        // --help and --version: their text goes to stdout, under stdout's rule.
        Err(e) => return exit(e.print().map_err(|e| stdout_failure(&e))),
    };
    init_logging(cli.verbose);
    exit(run(cli))
}

fn exit(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if let Some(message) = f.message {
                stderr_line(format!("vault: {}", message.replace('\n', " ")));
            }
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("VAULT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // On a failed write the subscriber would otherwise report it with `eprintln!`, which
        // panics when stderr is what failed.
        .log_internal_errors(false)
        .without_time()
        // Module paths mean nothing to a user; they help a developer asking for more output.
        .with_target(verbose > 0)
        .try_init();
}

fn vault_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(d) = &cli.vault {
        return location_path(d);
    }
    directories::BaseDirs::new()
        .map(|b| b.data_dir().join("vault"))
        .ok_or_else(|| {
            fail(
                Exit::Other,
                "cannot find a home directory; pass --vault DIR or set VAULT_DIR",
            )
        })
}

/// The directory a `--vault` location names: a path, or a `file://` URL. Any other `scheme://`
/// is refused before anything is created (a directory named `postgres:` helps nobody).
fn location_path(location: &Path) -> Result<PathBuf, Failure> {
    let Some(text) = location.to_str() else {
        return Ok(location.to_path_buf());
    };
    match text.split_once("://") {
        None => Ok(location.to_path_buf()),
        Some(("file", path)) if path.starts_with('/') => Ok(PathBuf::from(path)),
        Some(("file", _)) => Err(fail(
            Exit::Usage,
            format!("vault location {text:?}: a file:// URL needs an absolute path (file:///path)"),
        )),
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Err(fail(
                Exit::Usage,
                format!(
                    "vault location {text:?}: the {scheme}:// scheme is not supported by this build; give a directory path (or file:///path)"
                ),
            ))
        }
        Some(_) => Ok(location.to_path_buf()),
    }
}

fn state_dir(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(d) = &cli.state_dir {
        return Ok(d.clone());
    }
    directories::BaseDirs::new()
        .map(|b| {
            b.state_dir()
                .unwrap_or_else(|| b.data_local_dir())
                .join("vault")
        })
        .ok_or_else(|| {
            fail(
                Exit::Other,
                "cannot find a home directory; pass --state-dir DIR",
            )
        })
}

fn options(cli: &Cli, accept_rollback: bool) -> Result<VaultOptions, Failure> {
    Ok(VaultOptions {
        lock_timeout: Duration::from_millis(cli.lock_timeout_ms),
        rollback_dir: Some(state_dir(cli)?.join("rollback")),
        accept_rollback,
        kdf_limit: KdfLimit {
            max_memory_kib: cli.max_kdf_memory_mib.saturating_mul(1024),
            max_cost: cli.max_kdf_cost.saturating_mul(1024),
        },
        ..VaultOptions::default()
    })
}

/// The existing vault's backend, not yet opened: checked before anything is asked of the user.
fn existing_backend(cli: &Cli) -> Result<Arc<FileBackend>, Failure> {
    let dir = vault_dir(cli)?;
    let backend = Arc::new(FileBackend::new(&dir));
    use vault_store::Backend;
    if !backend.exists()? {
        return Err(fail(
            Exit::NotFound,
            format!(
                "no vault at {} (create one with `vault init`)",
                dir.display()
            ),
        ));
    }
    warn_if_shared_dirs(cli, &dir)?;
    Ok(backend)
}

/// Warns about a vault or state directory that already exists and other users can reach.
fn warn_if_shared_dirs(cli: &Cli, vault_dir: &Path) -> Result<(), Failure> {
    permissions::warn_if_shared_dir("vault directory", vault_dir);
    permissions::warn_if_shared_dir("state directory", &state_dir(cli)?);
    Ok(())
}

/// How many times a command starts over when another process rotated the master key between
/// its open and its operation (nothing was written: the operation is refused before any write).
const REKEYED_ATTEMPTS: usize = 10;

/// Opens the vault with `pass` and runs `op` on it, starting over if another process rotated
/// the master key meanwhile.
fn with_vault<R>(
    cli: &Cli,
    pass: &SecretBytes,
    accept_rollback: bool,
    op: impl Fn(&Vault) -> vault_store::Result<R>,
) -> Result<R, Failure> {
    let dir = vault_dir(cli)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let backend = Arc::new(FileBackend::new(&dir));
        let result =
            Vault::open(backend, pass, options(cli, accept_rollback)?).and_then(|v| op(&v));
        match result {
            Err(Error::Rekeyed) if attempt < REKEYED_ATTEMPTS => {
                tracing::info!("the master key was rotated meanwhile; opening again");
            }
            other => return other.map_err(Failure::from),
        }
    }
}

/// The current passphrase of the existing vault, after checking there is one.
fn current_passphrase(cli: &Cli) -> Result<SecretBytes, Failure> {
    existing_backend(cli)?;
    passphrase::current()
}

fn kdf_params(a: &InitArgs) -> Result<KdfParams, Failure> {
    let lanes = a.kdf_parallelism.unwrap_or(KdfParams::DEFAULT.lanes());
    let params = if let Some(ms) = a.kdf_target_ms {
        stderr_line(format!(
            "calibrating Argon2id for {ms} ms on this machine..."
        ));
        kdf::calibrate(
            Duration::from_millis(ms),
            KdfParams::DEFAULT
                .memory_kib()
                .max(KdfParams::RECOMMENDED_MIN_MEMORY_KIB),
            lanes,
        )
        .map_err(|e| fail(Exit::Usage, format!("cannot calibrate: {e}")))?
    } else {
        let mem_kib = match a.kdf_memory_mib {
            Some(m) => m
                .checked_mul(1024)
                .ok_or_else(|| fail(Exit::Usage, "--kdf-memory-mib is too large"))?,
            None => KdfParams::DEFAULT.memory_kib(),
        };
        KdfParams::for_key(
            mem_kib,
            a.kdf_iterations.unwrap_or(KdfParams::DEFAULT.iterations()),
            lanes,
        )
        .map_err(|e| fail(Exit::Usage, format!("invalid KDF parameters: {e}")))?
    };
    if params.is_below_recommended() {
        let mut weak = Vec::new();
        if params.memory_kib() < KdfParams::RECOMMENDED_MIN_MEMORY_KIB {
            weak.push(format!(
                "memory {} is below {} MiB",
                kib_text(params.memory_kib()),
                KdfParams::RECOMMENDED_MIN_MEMORY_KIB / 1024
            ));
        }
        if params.iterations() < KdfParams::RECOMMENDED_MIN_ITERATIONS {
            weak.push(format!(
                "{} pass(es) is below {}",
                params.iterations(),
                KdfParams::RECOMMENDED_MIN_ITERATIONS
            ));
        }
        stderr_line(format!(
            "warning: Argon2id {}: fine for tests, weak for real secrets",
            weak.join(" and ")
        ));
    }
    Ok(params)
}

/// Reads a secret value: all of stdin when it is not a terminal, else a hidden prompt, twice.
/// An empty value is refused unless `allow_empty`: `vault set NAME </dev/null` is a mistake far
/// more often than a wish to store nothing.
fn read_value(name: &str, allow_empty: bool) -> Result<SecretBytes, Failure> {
    let value = read_value_from_user(name)?;
    if value.is_empty() && !allow_empty {
        return Err(fail(
            Exit::Usage,
            format!(
                "refusing to store an empty value for {name} (empty or closed stdin, or nothing typed); pass --allow-empty to store one"
            ),
        ));
    }
    Ok(value)
}

fn read_value_from_user(name: &str) -> Result<SecretBytes, Failure> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        // Full capacity up front: a buffer grown while reading leaves copies of the secret in
        // freed memory.
        let mut buf = Vec::with_capacity(MAX_VALUE_LEN + 1);
        stdin
            .lock()
            .take(MAX_VALUE_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| {
                fail(
                    Exit::Other,
                    format!("cannot read the value from stdin: {e}"),
                )
            })?;
        let value = SecretBytes::new(buf);
        if value.len() > MAX_VALUE_LEN {
            return Err(fail(
                Exit::Usage,
                format!("the value is larger than the limit of {MAX_VALUE_LEN} bytes"),
            ));
        }
        return Ok(value);
    }
    passphrase::prompt_twice(&format!("value for {name}: "), "repeat the value: ")
}

fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Init(a) => {
            let dir = vault_dir(&cli)?;
            warn_if_shared_dirs(&cli, &dir)?;
            let params = kdf_params(a)?;
            let pass = passphrase::new_for_init()?;
            let backend = Arc::new(FileBackend::new(&dir));
            let v = Vault::create(backend, &pass, params, options(&cli, false)?)?;
            stderr_line(format!(
                "created vault {} at {} (Argon2id {}, {} iterations, {} lanes)",
                v.vault_id(),
                dir.display(),
                kib_text(params.memory_kib()),
                params.iterations(),
                params.lanes()
            ));
        }
        Command::Set {
            name,
            expect_version,
            tags,
            allow_empty,
        } => {
            let pass = current_passphrase(&cli)?;
            // The whole value before the vault is opened: a slow producer must not keep an
            // unlocked handle waiting on a master key and log that another process can rotate
            // or compact meanwhile.
            let value = read_value(name, *allow_empty)?;
            let version = with_vault(&cli, &pass, false, |v| {
                v.set(
                    name,
                    value.duplicate(),
                    SetOptions {
                        expected_version: *expect_version,
                        tags: tags.clone(),
                    },
                )
            })?;
            stderr_line(format!("stored {name} version {version}"));
        }
        Command::Get { name, version } => {
            let pass = current_passphrase(&cli)?;
            let s = with_vault(&cli, &pass, false, |v| match version {
                Some(n) => v.get_version(name, *n),
                None => v.get(name),
            })?;
            let mut out = Stdout::lock();
            out.write(s.value.expose_secret())?;
            if std::io::stdout().is_terminal() {
                out.write(b"\n")?;
            }
            out.finish()?;
        }
        Command::List { all } => {
            let pass = current_passphrase(&cli)?;
            let listed = with_vault(&cli, &pass, false, |v| v.list(*all))?;
            let mut out = Stdout::lock();
            for s in listed {
                let line = if s.deleted {
                    format!("{}\t(deleted)\n", s.name)
                } else {
                    format!("{}\n", s.name)
                };
                out.write(line.as_bytes())?;
            }
            out.finish()?;
        }
        Command::Rm { name } => {
            let pass = current_passphrase(&cli)?;
            with_vault(&cli, &pass, false, |v| v.delete(name))?;
            stderr_line(format!(
                "deleted {name} (history kept; `vault undelete {name}` restores it)"
            ));
        }
        Command::Undelete { name } => {
            let pass = current_passphrase(&cli)?;
            with_vault(&cli, &pass, false, |v| v.undelete(name))?;
            stderr_line(format!("restored {name}"));
        }
        Command::Destroy { name } => {
            let pass = current_passphrase(&cli)?;
            with_vault(&cli, &pass, false, |v| v.destroy(name))?;
            stderr_line(format!("destroyed {name} and all its versions"));
        }
        Command::History { name } => {
            let pass = current_passphrase(&cli)?;
            let history = with_vault(&cli, &pass, false, |v| v.history(name))?;
            let mut out = Stdout::lock();
            for h in history {
                let tags: Vec<String> = h
                    .tags
                    .iter()
                    .map(|t| format!("{}={}", t.key, t.value))
                    .collect();
                let line = format!(
                    "{}\t{}\t{} bytes\t{}\n",
                    h.version,
                    format_time(h.created_ms),
                    h.size,
                    tags.join(",")
                );
                out.write(line.as_bytes())?;
            }
            out.finish()?;
        }
        Command::ChangePassphrase => {
            let current = current_passphrase(&cli)?;
            let new = passphrase::new_passphrase()?;
            with_vault(&cli, &current, false, |v| {
                v.change_passphrase(&current, &new, None)
            })?;
            stderr_line("passphrase changed");
        }
        Command::MaxVersions { count } => {
            let pass = current_passphrase(&cli)?;
            with_vault(&cli, &pass, false, |v| v.set_max_versions(*count))?;
            stderr_line(format!("keeping at most {count} versions of each secret"));
        }
        Command::AddPassphrase => {
            let current = current_passphrase(&cli)?;
            let new = passphrase::new_passphrase()?;
            let id = with_vault(&cli, &current, false, |v| {
                let kdf = v
                    .slots()
                    .into_iter()
                    .find(|s| s.in_use)
                    .and_then(|s| s.kdf)
                    .unwrap_or(KdfParams::DEFAULT);
                v.add_passphrase(&current, &new, kdf)
            })?;
            stderr_line(format!("added key slot {id}"));
        }
        Command::RemovePassphrase { slot } => {
            let current = current_passphrase(&cli)?;
            with_vault(&cli, &current, false, |v| v.remove_slot(&current, *slot))?;
            stderr_line(format!("removed key slot {slot}"));
        }
        Command::Slots => {
            let pass = current_passphrase(&cli)?;
            let slots = with_vault(&cli, &pass, false, |v| Ok(v.slots()))?;
            let mut out = Stdout::lock();
            for s in slots {
                let what = match s.kdf {
                    Some(k) => format!(
                        "argon2id m={} t={} p={}",
                        kib_text(k.memory_kib()),
                        k.iterations(),
                        k.lanes()
                    ),
                    None => format!("kind {} (not used by this version)", s.kind),
                };
                let line = format!(
                    "{}\t{what}{}\n",
                    s.id,
                    if s.in_use { "\t(unlocked with)" } else { "" }
                );
                out.write(line.as_bytes())?;
            }
            out.finish()?;
        }
        Command::RotateMasterKey { drop_other_slots } => {
            let current = current_passphrase(&cli)?;
            with_vault(&cli, &current, false, |v| {
                v.rotate_master_key(&current, *drop_other_slots)
            })?;
            stderr_line("master key rotated; every record re-encrypted");
        }
        Command::Verify => {
            let pass = current_passphrase(&cli)?;
            let r = with_vault(&cli, &pass, false, |v| v.verify())?;
            let torn = if r.torn_tail {
                "; the log ends with the torn tail of an interrupted commit (never acknowledged; the next write discards it)"
            } else {
                ""
            };
            let warnings: String = r
                .warnings
                .iter()
                .map(|w| format!("; warning: {w} (the next write rewrites it)"))
                .collect();
            stdout_line(format!(
                "{}: {} frames, {} records authenticated; generation {} (rollback record: {}); {} secrets, {} keys; {} bytes reclaimable by compaction{torn}{warnings}",
                if r.warnings.is_empty() {
                    "ok"
                } else {
                    "ok, with warnings"
                },
                r.frames,
                r.records,
                r.generation,
                r.recorded_generation
                    .map_or_else(|| "none".to_string(), |g| format!("generation {g}")),
                r.secrets,
                r.keys,
                r.superseded_bytes
            ))?;
        }
        Command::Compact => {
            let pass = current_passphrase(&cli)?;
            with_vault(&cli, &pass, false, |v| v.compact())?;
            stderr_line("compacted");
        }
        Command::AcceptRollback => {
            let pass = current_passphrase(&cli)?;
            let (generation, accepted) = with_vault(&cli, &pass, true, |v| {
                Ok((v.generation(), v.accepted_rollback()))
            })?;
            match accepted {
                Some(what) => stderr_line(format!(
                    "{what}; now at generation {generation}, and the acceptance is recorded in the vault"
                )),
                None => stderr_line(format!(
                    "nothing to accept: the vault (generation {generation}) is not behind its rollback record and its log vouches for its header"
                )),
            }
        }
    }
    Ok(())
}

/// Argon2id memory for people: whole MiB when it is, KiB otherwise (a test vault's 32 KiB is not
/// "0 MiB").
fn kib_text(kib: u32) -> String {
    if kib.is_multiple_of(1024) {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

/// UTC time as RFC 3339 to the second, `YYYY-MM-DDTHH:MM:SSZ`; a time outside the calendar's
/// range (a damaged or hostile timestamp) prints as its raw milliseconds.
fn format_time(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after 1970-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_format_as_rfc3339_seconds() {
        assert_eq!(super::format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            super::format_time(1_795_457_178_999),
            "2026-11-23T18:06:18Z"
        );
        assert_eq!(super::format_time(-1), "1969-12-31T23:59:59Z");
        assert!(super::format_time(i64::MAX).contains("ms after"));
    }
}
