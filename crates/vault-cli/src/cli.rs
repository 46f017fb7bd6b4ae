//! The command line: clap's definitions of the global options and every command, and the help
//! text that is not generated from them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vault_store::Tag;

use crate::exit::Exit;

pub(crate) const PASSPHRASE_HELP: &str = "\
Passphrase: a hidden prompt on a terminal; for scripts VAULT_PASSPHRASE_FILE (a file holding it),
VAULT_PASSPHRASE_COMMAND (a command printing it) or VAULT_PASSPHRASE (least safe: the environment
leaks to child processes and crash reports). New passphrases (init, change-passphrase) come from
VAULT_NEW_PASSPHRASE_FILE / _COMMAND / VAULT_NEW_PASSPHRASE, or for init the same variables as
above. From each of these, exactly one trailing newline (\\n or \\r\\n) is stripped; anything else,
other whitespace included, is part of the passphrase. A passphrase file that yields nothing for
30 s (a FIFO no one writes to), or a passphrase command that has not finished by then, is an
error; VAULT_PASSPHRASE_TIMEOUT_MS sets that wait (0: no limit). With several sources set, the
first in the order above that is set is used, with a warning. Export files have their own
passphrase: VAULT_EXPORT_PASSPHRASE_FILE / _COMMAND / VAULT_EXPORT_PASSPHRASE, or a prompt (twice
for a new export).";

/// Keep secrets and keys in a passphrase-protected, crash-safe vault.
#[derive(Parser, Debug)]
#[command(name = "vault", version, after_help = format!("{}\n{PASSPHRASE_HELP}", Exit::help()))]
pub(crate) struct Cli {
    /// Vault location: a directory path, a file:///path URL, or (in a build with the postgres
    /// feature) postgres://USER@HOST/DB?vault=NAME [default: $VAULT_DIR, else the XDG data
    /// directory's `vault`]. Other URL schemes are refused (exit 2).
    // The variable's value is not shown in help: a database URL may hold a password.
    #[arg(
        long,
        global = true,
        env = "VAULT_DIR",
        hide_env_values = true,
        value_parser = PathArg
    )]
    pub(crate) vault: Option<PathBuf>,
    /// Directory for rollback records and audit anchors; must be outside the vault directory
    /// [default: $XDG_STATE_HOME/vault; on macOS ~/Library/Application Support/vault-state].
    #[arg(long, global = true, env = "VAULT_STATE_DIR", value_parser = PathArg)]
    pub(crate) state_dir: Option<PathBuf>,
    /// How long to wait for another process's write lock, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub(crate) lock_timeout_ms: u64,
    /// Most Argon2id memory, in MiB, a key slot may ask for before it is tried (a hostile vault
    /// file can ask for hours of work); also the most `init` and `add-passphrase` will use.
    #[arg(
        long,
        global = true,
        env = "VAULT_MAX_KDF_MEMORY_MIB",
        default_value_t = 1024
    )]
    pub(crate) max_kdf_memory_mib: u32,
    /// Most Argon2id work, as memory in MiB × passes, a key slot may ask for before it is tried.
    #[arg(long, global = true, env = "VAULT_MAX_KDF_COST", default_value_t = 32 * 1024)]
    pub(crate) max_kdf_cost: u64,
    /// Refuse any operation whose audit entry cannot be written durably (a change's entry is
    /// synced before the change, a read's before its result is shown). The variable takes
    /// 1/0, true/false, yes/no or on/off.
    #[arg(
        long,
        global = true,
        env = "VAULT_AUDIT_FAIL_CLOSED",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) audit_fail_closed: bool,
    /// Log on stderr what a command does: -v the vault's path, where the passphrase came from,
    /// unlock, open and commit times, lock waits and generations; -vv each step (locks,
    /// Argon2id per slot, log frames read, the index). Never values, passphrases or secrets'
    /// names. VAULT_LOG (a filter such as `debug` or `vault_store=debug`) overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// In a team vault, unlock as this member: only their key slot is tried (one key
    /// derivation, not one per member). With `init`, the vault's first slot is this member's.
    #[arg(long, global = true, env = "VAULT_MEMBER", value_parser = parse_member_or_none)]
    pub(crate) member: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a new vault.
    Init(InitArgs),
    /// Store a new version of a secret, read from stdin or a hidden prompt. A value from stdin
    /// is stored byte for byte: `echo tok | vault set NAME` stores "tok" and a newline (use
    /// --trim, or `printf %s tok`); a value typed at the prompt never includes the newline.
    Set {
        /// Secret name.
        #[arg(value_parser = parse_name)]
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
        /// Drop one trailing newline (\n or \r\n) from a value read from stdin.
        #[arg(long)]
        trim: bool,
    },
    /// Write a secret's value to stdout.
    Get {
        /// Secret name.
        #[arg(value_parser = parse_name)]
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
        /// One JSON object per line: {"name", "latest", "versions", "deleted"}.
        #[arg(long)]
        json: bool,
    },
    /// Soft-delete a secret (history kept; `undelete` restores it).
    Rm {
        /// Secret name.
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Restore a soft-deleted secret.
    Undelete {
        /// Secret name.
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Destroy a secret and all its versions (removed from disk at the next compaction).
    Destroy {
        /// Secret name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// Do not ask (needed when there is no terminal to ask on).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Import many secrets with one unlock, from a dotenv or JSON file or stdin. Every entry is
    /// checked first (errors give line numbers, never values); then all changes are committed
    /// at once, or none. Values equal to the current version are left alone.
    Import {
        /// The file to read, or `-` for stdin.
        #[arg(value_parser = PathArg)]
        file: PathBuf,
        /// dotenv: NAME=value lines (# comments, optional `export`, values unquoted, 'literal'
        /// or "with \n \t \" \\ escapes", no $VAR expansion); json: one object of name to
        /// string value; jsonl: one {"name": …, "value": …} object per line. Without --format,
        /// the file is a vault export (`vault export`, binary or JSON): its secrets (with
        /// history) and keys are imported, under the export passphrase.
        #[arg(long, value_enum)]
        format: Option<crate::import::Format>,
        /// For a vault export: replace secrets and keys of the same name.
        #[arg(long)]
        replace: bool,
        /// Show what would be added, changed or restored (names only) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Import empty values (refused otherwise).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Export secrets (with their kept versions) to a file sealed under an export passphrase,
    /// for `vault import` into another vault (VAULT_EXPORT_PASSPHRASE_FILE / _COMMAND /
    /// VAULT_EXPORT_PASSPHRASE, or asked twice).
    Export {
        /// Secret names.
        #[arg(required_unless_present = "all", conflicts_with = "all", value_parser = parse_name)]
        names: Vec<String>,
        /// Every secret (deleted ones included).
        #[arg(long)]
        all: bool,
        /// Also every managed key whose policy allows export.
        #[arg(long)]
        keys: bool,
        /// The file to write (owner-only; written whole, only on success).
        #[arg(long, value_name = "FILE", value_parser = PathArg)]
        out: PathBuf,
        /// The JSON encoding instead of the binary one.
        #[arg(long)]
        json: bool,
        /// Write the latest values in plaintext, as JSON lines for `vault import --format
        /// jsonl` (no history, no keys): anyone who can read the file reads the secrets.
        #[arg(long, conflicts_with_all = ["json", "keys"])]
        plaintext: bool,
        /// Write the latest values in plaintext in this format, what `vault import --format`
        /// reads back: dotenv (NAME="value" lines), json (one object) or jsonl. `--out -` is
        /// stdout.
        #[arg(long, value_enum, conflicts_with_all = ["json", "keys", "plaintext"])]
        format: Option<crate::import::Format>,
        #[command(flatten)]
        kdf: crate::cli_keys::ExportKdf,
    },
    /// Show a secret's versions (no values).
    History {
        /// Secret name.
        #[arg(value_parser = parse_name)]
        name: String,
        /// One JSON object per line: {"version", "created", "created_ms", "size", "tags"}.
        #[arg(long)]
        json: bool,
    },
    /// Change the passphrase of the key slot the current passphrase opens.
    ChangePassphrase,
    /// Set how many versions of each secret are kept (older ones are dropped).
    MaxVersions {
        /// 1 to 10000.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=10_000))]
        count: u32,
    },
    /// Add a key slot for another passphrase (e.g. a recovery passphrase), read like a new one.
    AddPassphrase,
    /// Remove a key slot (see `slots`). Not the one your passphrase opens: open the vault with
    /// another slot's passphrase to remove that one, so you always keep a slot you have shown
    /// you hold.
    RemovePassphrase {
        /// Slot id.
        slot: u16,
        /// Do not ask (needed when there is no terminal to ask on).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List the key slots and their Argon2id parameters.
    Slots {
        /// One JSON object per line: {"id", "kind", "member" (a member slot's name, or null),
        /// "kdf": {"memory_kib", "iterations", "lanes"} or null, "in_use"}.
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt everything under a new master key.
    RotateMasterKey {
        /// Drop key slots other than the one used to unlock (they cannot be carried over).
        #[arg(long)]
        drop_other_slots: bool,
    },
    /// Check every record authenticates, the generation chain is intact and the rollback record
    /// agrees.
    Verify {
        /// One JSON object: {"ok" (true: a failed check exits 5), "frames", "records",
        /// "generation", "recorded_generation", "secrets", "keys", "reclaimable_bytes",
        /// "index_secrets", "torn_tail", "warnings"}.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite the log without superseded records (and the index with it).
    Compact,
    /// Bring a vault made by an older build up to this build: write its index file, so that
    /// commands read only the log written since (the vault's own files are not changed).
    Upgrade,
    /// Accept a vault older than its rollback record, after a deliberate restore (recorded in
    /// the vault as an event).
    AcceptRollback,
    /// Back up the vault to FILE (or `-` for stdout): encrypted under a backup passphrase
    /// (VAULT_BACKUP_PASSPHRASE_FILE / _COMMAND / VAULT_BACKUP_PASSPHRASE, or asked twice),
    /// gzip-compressed, streamed; `vault backup verify FILE` checks one without restoring it.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Backup {
        #[command(subcommand)]
        action: Option<BackupAction>,
        /// Where to write the backup (written whole, owner-only, only on success), or `-`.
        #[arg(required = true, value_parser = PathArg)]
        file: Option<PathBuf>,
        /// Do not compress.
        #[arg(long)]
        no_compress: bool,
        /// A note kept in the backup's header (readable without the passphrase).
        #[arg(long)]
        comment: Option<String>,
        /// Protect the backup with the vault's passphrase instead of a backup passphrase.
        #[arg(long)]
        use_vault_passphrase: bool,
        /// Carry the vault's audit trail too (restored beside the new vault, in
        /// `audit-archive/<old vault id>/`).
        #[arg(long)]
        include_audit: bool,
        /// An incremental backup: only what changed since the backup BASE (a full backup or an
        /// incremental one; only its header is read, so no passphrase is needed for it).
        #[arg(long, value_name = "BASE", value_parser = PathArg)]
        since: Option<PathBuf>,
        #[command(flatten)]
        kdf: crate::cli_keys::ExportKdf,
    },
    /// Restore a backup into a new vault directory (the new vault's passphrase as for `init`):
    /// a full backup, optionally followed by its incremental backups in the order they were
    /// made. Everything is verified first, and the vault appears only when complete.
    Restore {
        /// The full backup, then any incremental backups, oldest first.
        #[arg(required = true, num_args = 1.., value_parser = PathArg)]
        files: Vec<PathBuf>,
        /// The new vault's directory.
        #[arg(long, value_parser = PathArg)]
        to: PathBuf,
        /// Replace a vault already there (it is set aside until the restore is complete).
        #[arg(long)]
        force: bool,
        /// The backup was made with --use-vault-passphrase: use VAULT_PASSPHRASE… for it.
        #[arg(long)]
        use_vault_passphrase: bool,
        #[command(flatten)]
        kdf: crate::cli_keys::ExportKdf,
    },
    /// The audit trail: one entry per operation on the vault (who, when, what, on which name,
    /// with what outcome; names hashed unless the policy keeps them, never a value), oldest
    /// first; `vault audit verify` checks its chain; `vault audit policy` shows or sets names
    /// and retention.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        action: Option<AuditAction>,
        #[command(flatten)]
        query: AuditQuery,
    },
    /// Start an agent that keeps this vault unlocked, so that commands need no passphrase
    /// until it locks: after --timeout without a command, on `vault lock`, or when signalled.
    /// It serves only your own user, on a socket in a directory only you can enter.
    Unlock {
        /// Lock after this long without a command: 90s, 15m, 2h.
        #[arg(long, default_value = "15m")]
        timeout: String,
    },
    /// Lock the agent of this vault: it forgets the keys and exits.
    Lock,
    /// Render a template, replacing each {{ vault:NAME }} with the secret's value (byte for
    /// byte); every reference is read before anything is written, so a missing secret leaves no
    /// output. The output file is owner-only and appears only when complete.
    #[command(after_help = "Example: vault inject -i config.tmpl -o config.yml")]
    Inject {
        /// The template (default: stdin).
        #[arg(short = 'i', long = "in", value_name = "TEMPLATE", value_parser = PathArg)]
        input: Option<std::path::PathBuf>,
        /// Where to write the result (default: stdout).
        #[arg(short = 'o', long = "out", value_name = "FILE", value_parser = PathArg)]
        out: Option<std::path::PathBuf>,
    },
    /// Run COMMAND with secrets in its environment, and nowhere else: each secret's name
    /// becomes a variable (db/password → DB_PASSWORD: letters upper-cased, / - . @ + made _; a tag
    /// env-var=NAME picks another name). All secrets, or those --only names, or those under
    /// --prefix (dropped from the variable name). vault is replaced by COMMAND, whose exit code
    /// and signals are its own. With an agent unlocked, no passphrase is asked for.
    #[command(after_help = "Example: vault run --prefix app/ -- ./server --port 8080")]
    Run {
        /// Only these secrets (comma-separated, or the option repeated).
        #[arg(long, value_delimiter = ',', value_name = "NAME", value_parser = parse_name)]
        only: Vec<String>,
        /// Only secrets whose names start with P; P is left out of the variable name.
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// The values `vault run` puts in the environment (for `vault run` through the agent).
    #[command(hide = true)]
    EnvValues {
        #[arg(long, value_delimiter = ',', value_parser = parse_name)]
        only: Vec<String>,
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Check this vault's setup: directory and file permissions, format, key derivation
    /// strength, the write lock, the rollback record, the agent, memory locking and the last
    /// backup, each finding with a fix. Asks for no passphrase; exit 1 if something fails.
    Doctor {
        /// One JSON object per line: {"check", "status" (ok, warn, fail, info), "detail",
        /// "fix" (or null)}.
        #[arg(long)]
        json: bool,
    },
    /// Print a completion script for SHELL: `vault completions bash > /etc/bash_completion.d/vault`,
    /// `vault completions zsh > "${fpath[1]}/_vault"`, `vault completions fish >
    /// ~/.config/fish/completions/vault.fish`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (vault.1 and one per command) into DIR.
    #[command(hide = true)]
    ManPages { dir: std::path::PathBuf },
    /// The agent process itself (started by `vault unlock`).
    #[command(hide = true)]
    AgentServe {
        #[arg(long)]
        timeout_secs: u64,
    },
    /// Managed keys: create, rotate, set states and policies; encrypt, decrypt, rewrap, make
    /// data keys, sign and verify without the key leaving the vault.
    #[command(after_help = crate::cli_keys::KEY_HELP)]
    Key {
        #[command(subcommand)]
        command: crate::cli_keys::KeyCommand,
    },
    /// A team vault's members: each unlocks with a key slot of their own (`--member NAME` or
    /// VAULT_MEMBER picks it); removing one rotates the master key.
    #[command(after_help = MEMBER_HELP)]
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

const MEMBER_HELP: &str = "\
Adding: run by an existing member. Either the new member types their passphrase here (twice;
VAULT_NEW_PASSPHRASE_FILE / _COMMAND / VAULT_NEW_PASSPHRASE for scripts), or with --invite a
one-time invitation code is printed, given to them by a channel you trust, and they run
`vault member join NAME`: they enter the code and choose their passphrase, which nobody else
sees. Removing rotates the master key and re-encrypts every record, so the removed member's
passphrase, or a copy of their old key slot, opens nothing written afterwards; what they read
before is theirs. An interrupted removal is finished by the next command that writes.";

#[derive(Subcommand, Debug)]
pub(crate) enum MemberCommand {
    /// Add a member with a key slot of their own.
    Add {
        /// Their name: letters, digits and _ - . @ +, at most 64.
        #[arg(value_parser = parse_member)]
        name: String,
        /// Print a one-time invitation code instead of asking for their passphrase here.
        #[arg(long)]
        invite: bool,
        /// Make the passphrase slot you opened with this member's (your passphrase stays):
        /// a passphrase slot that is not a member's cannot be carried over when another member
        /// removes someone.
        #[arg(long, conflicts_with = "invite")]
        me: bool,
    },
    /// Join as an invited member: enter the invitation code, then choose your passphrase.
    Join {
        /// Your name, as invited.
        #[arg(value_parser = parse_member)]
        name: String,
    },
    /// List the members.
    List {
        /// One JSON object per line: {"name", "state" ("joined", "invited" or "removed"),
        /// "slot", "you", "added_by" (the member who added them, or null), "vouched" (false:
        /// the chain of who added whom passes through a member no longer in the vault)}.
        #[arg(long)]
        json: bool,
    },
    /// Remove a member: their key slot goes and the master key is rotated.
    Remove {
        /// The member's name.
        #[arg(value_parser = parse_member)]
        name: String,
        /// Do not ask (needed when there is no terminal to ask on).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Drop passphrase slots (not members') other than yours: they cannot be carried over
        /// to the new master key.
        #[arg(long)]
        drop_other_slots: bool,
    },
}

impl Command {
    /// Whether the command changes the vault: such a command first finishes a member removal
    /// an interrupted rotation left pending; a read-only one only warns of it.
    pub(crate) fn writes(&self) -> bool {
        use crate::cli_keys::KeyCommand as K;
        match self {
            Command::Set { .. }
            | Command::Rm { .. }
            | Command::Undelete { .. }
            | Command::Destroy { .. }
            | Command::Import { .. }
            | Command::ChangePassphrase
            | Command::MaxVersions { .. }
            | Command::AddPassphrase
            | Command::RemovePassphrase { .. }
            | Command::Compact
            | Command::Upgrade
            | Command::Audit {
                action: Some(AuditAction::Policy(_)),
                ..
            } => true,
            Command::Member { command } => !matches!(command, MemberCommand::List { .. }),
            Command::Key { command } => matches!(
                command,
                K::Create { .. }
                    | K::Rotate { .. }
                    | K::Promote { .. }
                    | K::SetState { .. }
                    | K::SetPolicy { .. }
                    | K::SetFloors { .. }
                    | K::SetExpiry { .. }
                    | K::SetRotation { .. }
                    | K::Destroy { .. }
                    | K::Import { .. }
            ),
            _ => false,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum AuditAction {
    /// Check the whole chain: every entry, every link, every earlier key epoch's file; prints
    /// the count of entries and the first broken link if any (exit 5).
    Verify,
    /// Show or change the trail's policy: names hashed (the default: the log can be shared
    /// without revealing which secrets exist) or kept in clear (sealed in each entry, readable
    /// with the vault's passphrase), and retention limits (the oldest files go, whole, with an
    /// entry saying from which entry the trail is kept).
    Policy(AuditPolicyArgs),
}

/// `vault audit policy`: with no option, prints the policy in force.
#[derive(Args, Debug, Default)]
pub(crate) struct AuditPolicyArgs {
    /// How target names are recorded from now on.
    #[arg(long, value_parser = ["hashed", "clear"])]
    pub(crate) names: Option<String>,
    /// Keep at most this much of the trail: a size such as 64MiB or 1GiB (KiB, MiB, GiB, TiB
    /// and K, M, G, T are powers of 1024; KB, MB, GB, TB of 1000; at least 1MiB), or "none".
    #[arg(long, value_name = "SIZE")]
    pub(crate) max_size: Option<String>,
    /// Keep entries for at most this many days, or "none".
    #[arg(long, value_name = "DAYS")]
    pub(crate) max_age: Option<String>,
    /// Print the policy as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which entries `vault audit` prints.
#[derive(Args, Debug, Default)]
pub(crate) struct AuditQuery {
    /// Only entries at or after T: an RFC 3339 time, a date (YYYY-MM-DD, UTC), or a time ago
    /// (30m, 12h, 7d).
    #[arg(long, value_name = "T")]
    pub(crate) since: Option<String>,
    /// Only entries before T (as for --since).
    #[arg(long, value_name = "T")]
    pub(crate) until: Option<String>,
    /// Only these operations (repeatable): unlock, failed-unlock, read, list, write, delete,
    /// undelete, destroy, key-create, key-rotate, key-change, encrypt, decrypt, rewrap,
    /// datakey, sign, verify-signature, export, import, backup, restore, verify,
    /// passphrase-change, master-key-rotation, rollback-accepted, maintenance, retention,
    /// audit-policy.
    #[arg(long, value_name = "OP")]
    pub(crate) op: Vec<String>,
    /// Only entries on this secret or key (its name is hashed and matched, or, where the
    /// trail keeps names in clear, compared with the sealed name).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: Option<String>,
    /// Only entries with this outcome.
    #[arg(long, value_parser = ["ok", "error"])]
    pub(crate) outcome: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum BackupAction {
    /// Check a backup without restoring it: every chunk, the trailer, the decompressed stream
    /// and every record; prints what it holds. Exit 5 on any damage, naming the first.
    Verify {
        /// The backup file, or `-` for stdin; or a full backup followed by its incremental
        /// backups, oldest first, to check the chain as a restore would.
        #[arg(required = true, num_args = 1.., value_parser = PathArg)]
        files: Vec<PathBuf>,
        /// The backup was made with --use-vault-passphrase.
        #[arg(long)]
        use_vault_passphrase: bool,
    },
}

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// Argon2id memory in MiB [default: 256].
    #[arg(long, conflicts_with = "kdf_target_ms")]
    pub(crate) kdf_memory_mib: Option<u32>,
    /// Argon2id iterations [default: 3].
    #[arg(long, conflicts_with = "kdf_target_ms")]
    pub(crate) kdf_iterations: Option<u32>,
    /// Argon2id lanes [default: 4].
    #[arg(long)]
    pub(crate) kdf_parallelism: Option<u32>,
    /// Calibrate Argon2id to take about this long on this machine.
    #[arg(long)]
    #[arg(value_parser = clap::value_parser!(u64).range(10..))]
    pub(crate) kdf_target_ms: Option<u64>,
}

pub(crate) fn parse_tag(s: &str) -> Result<Tag, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("tag {s:?} is not key=value"))?;
    Ok(Tag {
        key: k.to_string(),
        value: v.to_string(),
    })
}

/// A name to look up: anything a vault may hold, under the syntax of any version (so a secret
/// named by an older release stays reachable). Checked before any passphrase is asked for.
pub(crate) fn parse_name(s: &str) -> Result<String, String> {
    vault_format::payload::check_name(s).map_err(|why| format!("invalid name {s:?}: {why}"))?;
    Ok(s.to_string())
}

/// `--member`/VAULT_MEMBER: a member's name, or empty for none (an exported empty variable).
pub(crate) fn parse_member_or_none(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    parse_member(s)
}

/// A member's name (`vault_format::check_member_name`).
pub(crate) fn parse_member(s: &str) -> Result<String, String> {
    vault_format::check_member_name(s)
        .map_err(|why| format!("invalid member name {s:?}: {why}"))?;
    Ok(s.to_string())
}

/// A name for something new (a key): the current name syntax, see `vault_store::check_new_name`.
pub(crate) fn parse_new_name(s: &str) -> Result<String, String> {
    vault_store::check_new_name(s).map_err(|why| format!("invalid name {s:?}: {why}"))?;
    Ok(s.to_string())
}

/// A path argument, as given; made absolute against the client's directory when the agent runs
/// the command (its threads serve several clients and share one working directory).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PathArg;

impl clap::builder::TypedValueParser for PathArg {
    type Value = PathBuf;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PathBuf, clap::Error> {
        let path = clap::builder::PathBufValueParser::new().parse_ref(cmd, arg, value)?;
        Ok(crate::agent::served::absolute(path))
    }
}
