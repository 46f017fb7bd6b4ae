//! The `vault key …` commands as clap defines them, and the parsers of their arguments
//! (algorithms, operation lists, durations, times, states).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::{PathArg, parse_name, parse_new_name};
use vault_store::{Algorithm, KeyOps, KeyState};

pub(crate) const KEY_HELP: &str = "\
Data comes from stdin or --in FILE and results go to stdout or --out FILE (written whole, owner-
only, and only if the command succeeds). Ciphertexts and signatures are tokens: `vault:v<N>:…`
(text, the default) or raw bytes with --binary; decrypt and verify take either. Associated data
(--ad) is not secret, is bound into the ciphertext, and must be given again to decrypt.";

/// Where a command's input comes from and its output goes.
#[derive(Args, Debug, Clone)]
pub(crate) struct Io {
    /// Read the input from this file instead of stdin.
    #[arg(long = "in", value_name = "FILE", value_parser = PathArg)]
    pub(crate) input: Option<PathBuf>,
    /// Write the result to this file (created owner-only; replaced only on success).
    #[arg(long = "out", value_name = "FILE", value_parser = PathArg)]
    pub(crate) output: Option<PathBuf>,
}

/// Associated data: bound into a ciphertext, needed again to decrypt it.
#[derive(Args, Debug, Clone)]
pub(crate) struct Ad {
    /// Associated data, as text (not secret: it is visible in the process list).
    #[arg(long, value_name = "TEXT", conflicts_with = "ad_file")]
    pub(crate) ad: Option<String>,
    /// Associated data from a file.
    #[arg(long, value_name = "FILE", value_parser = PathArg)]
    pub(crate) ad_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCommand {
    /// Create a managed key (version 1, active and primary).
    Create {
        /// Key name.
        #[arg(value_parser = parse_new_name)]
        name: String,
        /// xchacha20poly1305 (encryption), hmac-sha256 (MACs) or ed25519 (signatures).
        #[arg(long, default_value = "xchacha20poly1305", value_parser = parse_algorithm)]
        algorithm: Algorithm,
        /// Rotate the primary once it is this old, on its next use or with `key rotate --due`
        /// (e.g. 30d, 12h, 2w).
        #[arg(long, value_parser = parse_duration_ms)]
        rotate_every: Option<u64>,
        /// Stop encrypting and signing after this time (RFC 3339, or +DURATION from now).
        #[arg(long, value_parser = parse_time_ms)]
        expires: Option<i64>,
        /// The operations the key allows, comma-separated (encrypt, decrypt, rewrap, datakey,
        /// sign, verify, export) [default: all its algorithm can do]. It can later be
        /// tightened freely, loosened only with `set-policy --loosen`.
        #[arg(long, alias = "policy", value_parser = parse_ops)]
        allow: Option<KeyOps>,
    },
    /// List the managed keys.
    List {
        /// One JSON object per line: {"name", "algorithm", "primary", "versions",
        /// "rotation_due"}.
        #[arg(long)]
        json: bool,
    },
    /// Show a key's settings and versions.
    Show {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// One JSON object (docs/OPERATIONS.md, "Machine-readable output").
        #[arg(long)]
        json: bool,
    },
    /// Add a new version: primary at once (the old primary becomes decrypt-only), or staged.
    Rotate {
        /// Key name.
        #[arg(required_unless_present = "due", conflicts_with = "due")]
        name: Option<String>,
        /// Rotate every key whose primary is older than its rotation period.
        #[arg(long)]
        due: bool,
        /// Add the version as pending (it decrypts and verifies at once); `promote` it later.
        #[arg(long, conflicts_with = "due")]
        stage: bool,
        /// Leave the previous primary active instead of decrypt-only.
        #[arg(long, conflicts_with = "due")]
        keep_active: bool,
    },
    /// Make a pending or active version the primary.
    Promote {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Version.
        version: u32,
    },
    /// Set a version's state: active, decrypt-only, disabled or compromised.
    SetState {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Version.
        version: u32,
        /// active, decrypt-only, disabled (refused for everything until re-enabled) or
        /// compromised (refused unless --allow-compromised; every use is recorded).
        #[arg(value_parser = parse_state)]
        state: KeyState,
    },
    /// Set the operations a key allows.
    SetPolicy {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// The operations allowed, comma-separated, or `none`.
        #[arg(long, alias = "policy", value_parser = parse_ops)]
        allow: KeyOps,
        /// Allow operations the key did not allow (recorded in the vault as an event).
        #[arg(long)]
        loosen: bool,
    },
    /// Set the minimum versions that decrypt (and verify) and that may be primary.
    SetFloors {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Versions below this no longer decrypt or verify.
        #[arg(long)]
        min_decrypt: Option<u32>,
        /// Versions below this cannot be primary.
        #[arg(long)]
        min_encrypt: Option<u32>,
    },
    /// Set when a key expires (RFC 3339, +DURATION from now, or `never`).
    SetExpiry {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// The time, or `never`.
        #[arg(value_parser = parse_optional_time_ms)]
        when: OptionalMs,
    },
    /// Set a key's rotation period (e.g. 30d), or `never`.
    SetRotation {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// The period, or `never`.
        #[arg(value_parser = parse_optional_duration_ms)]
        every: OptionalMs,
    },
    /// Destroy a version's material for good (gone from the files after the next compaction);
    /// its metadata stays.
    Destroy {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Version (not the primary).
        version: u32,
    },
    /// Encrypt the input under the key's primary version.
    Encrypt {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        ad: Ad,
        /// Write the raw token instead of its text form.
        #[arg(long)]
        binary: bool,
        /// Use a primary version marked compromised (the use is recorded in the vault).
        #[arg(long)]
        allow_compromised: bool,
    },
    /// Decrypt a token (text or binary) made by the key.
    Decrypt {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        ad: Ad,
        /// Use a version marked compromised (the use is recorded in the vault).
        #[arg(long)]
        allow_compromised: bool,
    },
    /// Re-encrypt tokens (one per line) to the primary version, without revealing them.
    Rewrap {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        ad: Ad,
        /// Use versions marked compromised (each use is recorded in the vault).
        #[arg(long)]
        allow_compromised: bool,
    },
    /// Make a fresh 256-bit data key: prints JSON with it (base64) and its wrapped form.
    Datakey {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        #[command(flatten)]
        ad: Ad,
        /// Print only the wrapped form (decrypt it later with `key decrypt`).
        #[arg(long)]
        wrapped_only: bool,
        /// Use a primary version marked compromised (the use is recorded in the vault).
        #[arg(long)]
        allow_compromised: bool,
    },
    /// Sign (HMAC-SHA256 or Ed25519) the input with the key's primary version.
    Sign {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        #[command(flatten)]
        io: Io,
        /// Write the raw token instead of its text form.
        #[arg(long)]
        binary: bool,
        /// Use a primary version marked compromised (the use is recorded in the vault).
        #[arg(long)]
        allow_compromised: bool,
    },
    /// Verify a signature of the input: exit 0 if it holds, 9 if it does not.
    Verify {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// The signature token (text form).
        #[arg(long, required_unless_present = "signature_file")]
        signature: Option<String>,
        /// A file holding the signature token (text or binary).
        #[arg(long, conflicts_with = "signature", value_parser = PathArg)]
        signature_file: Option<PathBuf>,
        /// The message, from this file instead of stdin.
        #[arg(long = "in", value_name = "FILE", value_parser = PathArg)]
        input: Option<PathBuf>,
        /// Accept a version marked compromised (the use is recorded in the vault).
        #[arg(long)]
        allow_compromised: bool,
    },
    /// Export keys (every version, state, policy and time) to a file sealed under an export
    /// passphrase (VAULT_EXPORT_PASSPHRASE_FILE / _COMMAND / VAULT_EXPORT_PASSPHRASE, or asked
    /// twice); a key whose policy does not allow export is refused.
    Export {
        /// Key names.
        #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = parse_name)]
        names: Vec<String>,
        /// Every key.
        #[arg(long)]
        all: bool,
        /// The file to write (owner-only; written whole, only on success).
        #[arg(long, value_name = "FILE", value_parser = PathArg)]
        out: PathBuf,
        /// The JSON encoding instead of the binary one.
        #[arg(long)]
        json: bool,
        /// Only the public keys of Ed25519 keys, as JSON, not encrypted (any signing key).
        #[arg(long, conflicts_with = "json")]
        public: bool,
        #[command(flatten)]
        kdf: ExportKdf,
    },
    /// Import the keys of an export file (binary or JSON); everything is checked before
    /// anything changes.
    Import {
        /// The export file.
        #[arg(value_parser = PathArg)]
        file: PathBuf,
        /// Import the file's one key under this name.
        #[arg(long, value_parser = parse_new_name)]
        rename: Option<String>,
        /// Replace keys of the same name (their versions become the file's).
        #[arg(long)]
        replace: bool,
    },
    /// Print an Ed25519 key's public key (hex): what anyone verifies its signatures with.
    Public {
        /// Key name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// A specific version instead of the primary.
        #[arg(long)]
        version: Option<u32>,
    },
}

/// Argon2id parameters of a new passphrase: an export's, a backup's, or a restored vault's.
#[derive(Args, Debug, Clone)]
pub(crate) struct ExportKdf {
    /// Argon2id memory in MiB for the new passphrase (the export's, the backup's, or the restored
    /// vault's) [default: 256].
    #[arg(long)]
    pub(crate) kdf_memory_mib: Option<u32>,
    /// Argon2id passes for that passphrase [default: 3].
    #[arg(long)]
    pub(crate) kdf_iterations: Option<u32>,
}

impl ExportKdf {
    /// The parameters these options give (defaults: KdfParams::DEFAULT's).
    pub(crate) fn params(&self) -> Result<vault_store::KdfParams, crate::Failure> {
        use vault_store::KdfParams;
        let usage = |m: String| crate::fail(crate::exit::Exit::Usage, m);
        let memory = self
            .kdf_memory_mib
            .map_or(Ok(KdfParams::DEFAULT.memory_kib()), |m| {
                m.checked_mul(1024)
                    .ok_or_else(|| usage("--kdf-memory-mib is too large".into()))
            })?;
        let iterations = self
            .kdf_iterations
            .unwrap_or(KdfParams::DEFAULT.iterations());
        KdfParams::for_key(memory, iterations, KdfParams::DEFAULT.lanes())
            .map_err(|e| usage(format!("key derivation: {e}")))
    }
}

/// A time or duration in milliseconds, or none (`never`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OptionalMs(pub(crate) Option<i64>);

pub(crate) fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Algorithm::ALL.iter().map(|a| a.name()).collect();
        format!("unknown algorithm {s:?}; one of {}", names.join(", "))
    })
}

pub(crate) fn parse_state(s: &str) -> Result<KeyState, String> {
    vault_store::parse_state(s).ok_or_else(|| {
        format!("unknown state {s:?}; one of active, decrypt-only, disabled, compromised")
    })
}

pub(crate) fn parse_ops(s: &str) -> Result<KeyOps, String> {
    if s == "none" {
        return Ok(KeyOps::NONE);
    }
    s.split(',')
        .map(str::trim)
        .try_fold(KeyOps::NONE, |acc, name| {
            KeyOps::from_name(name).map(|o| acc.with(o)).ok_or_else(|| {
                let names: Vec<_> = KeyOps::NAMED.iter().map(|(_, n)| *n).collect();
                format!("unknown operation {name:?}; one of {}", names.join(", "))
            })
        })
}

/// `30d`, `12h`, `90m`, `45s`, `2w`, `500ms`: a positive duration in milliseconds.
pub(crate) fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit (ms, s, m, h, d or w)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(format!("unknown unit {unit:?} (ms, s, m, h, d or w)")),
    };
    match n.checked_mul(scale) {
        Some(0) => Err("the duration must be positive".into()),
        Some(ms) if ms <= i64::MAX as u64 => Ok(ms),
        _ => Err(format!("{s:?} is too long")),
    }
}

/// 9999-12-31T23:59:59Z: the latest time accepted.
const MAX_TIME_MS: i64 = 253_402_300_799_000;

/// An RFC 3339 time, or `+DURATION` from now, in milliseconds since the Unix epoch.
pub(crate) fn parse_time_ms(s: &str) -> Result<i64, String> {
    if let Some(d) = s.strip_prefix('+') {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let t = now.saturating_add(parse_duration_ms(d)? as i64);
        return if t <= MAX_TIME_MS {
            Ok(t)
        } else {
            Err(format!("{s:?} is after the year 9999"))
        };
    }
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        format!("{s:?} is not an RFC 3339 time (2027-01-31T00:00:00Z) or +30d: {e}")
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{s:?} is out of range"))
}

fn parse_optional_time_ms(s: &str) -> Result<OptionalMs, String> {
    if s == "never" {
        return Ok(OptionalMs(None));
    }
    parse_time_ms(s).map(|t| OptionalMs(Some(t)))
}

fn parse_optional_duration_ms(s: &str) -> Result<OptionalMs, String> {
    if s == "never" {
        return Ok(OptionalMs(None));
    }
    parse_duration_ms(s).map(|t| OptionalMs(Some(t as i64)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    #[test]
    fn durations_times_and_operation_lists() {
        assert_eq!(parse_duration_ms("30d").unwrap(), 30 * 86_400_000);
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        for bad in ["", "30", "d", "0d", "5y", "99999999999999999999w"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_time_ms("1970-01-02T00:00:00Z").unwrap(), 86_400_000);
        assert!(parse_time_ms("tomorrow").is_err());
        assert_eq!(
            parse_ops("encrypt,decrypt").unwrap(),
            KeyOps::ENCRYPT.with(KeyOps::DECRYPT)
        );
        assert_eq!(parse_ops("none").unwrap(), KeyOps::NONE);
        assert!(parse_ops("encrypt,launch").is_err());
    }
}
