//! `vault backup FILE|- [--since BASE]`, `vault backup verify FILE…`, `vault restore FILE…
//! --to DIR`: thin layers over vault-backup.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vault_backup::backup::{BackupOptions, Summary, backup, verify};
use vault_backup::chain::ChainSummary;
use vault_backup::restore::restore_chain;
use vault_backup::{Error as BackupError, Limits};
use vault_store::{FileBackend, SecretBytes, Vault};

use crate::cli::Cli;
use crate::cli_keys::ExportKdf;
use crate::exit::Exit;
use crate::location::{current_passphrase, options, with_vault};
use crate::outfile::OutFile;
use crate::output::stderr_line;
use crate::text::format_time;
use crate::{Failure, fail, passphrase};

fn limits(cli: &Cli) -> Limits {
    Limits {
        max_memory_kib: cli.max_kdf_memory_mib.saturating_mul(1024),
        max_cost: cli.max_kdf_cost.saturating_mul(1024),
    }
}

fn wrong_passphrase() -> Failure {
    // The check value is derived from the header's salt, ids and parameters too, so a damaged
    // header field reads as a wrong passphrase: say both.
    fail(
        Exit::WrongPassphrase,
        "wrong backup passphrase (or the backup's header was changed)",
    )
}

/// A backup error as the user sees it: damage is exit 5, naming what is wrong.
fn failure(e: BackupError) -> Failure {
    match e {
        BackupError::WrongPassphrase => wrong_passphrase(),
        BackupError::KdfLimit(why) => fail(
            Exit::Other,
            format!(
                "the backup asks for too much key-derivation work: {why}; raise --max-kdf-memory-mib / --max-kdf-cost for a backup you trust"
            ),
        ),
        BackupError::Format(vault_store::FormatError::UnsupportedVersion { .. }) => {
            fail(Exit::Other, e.to_string())
        }
        BackupError::Format(f) => fail(Exit::Integrity, format!("damaged backup: {f}")),
        BackupError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            fail(Exit::Integrity, format!("damaged backup: {io}"))
        }
        BackupError::Io(io) if io.kind() == std::io::ErrorKind::AlreadyExists => {
            fail(Exit::Conflict, io.to_string())
        }
        BackupError::Io(io) if io.kind() == std::io::ErrorKind::InvalidInput => {
            fail(Exit::Usage, io.to_string())
        }
        BackupError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => fail(
            Exit::Other,
            format!(
                "storage full: the backup could not be written whole ({io}); no partial file is left at its path"
            ),
        ),
        BackupError::Chain(why) => fail(Exit::Usage, why),
        BackupError::Vault(e) => e.into(),
        other => fail(Exit::Other, other.to_string()),
    }
}

fn the_passphrase(use_vault: bool, twice: bool) -> Result<SecretBytes, Failure> {
    if use_vault {
        passphrase::current()
    } else {
        passphrase::backup_passphrase(twice)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn describe(s: &Summary) -> String {
    let h = &s.header;
    let kind = if h.flags & vault_backup::FLAG_INCREMENTAL != 0 {
        format!(
            "incremental backup {} (on backup {} at generation {}; it holds the changed keys, every secret's kept versions by number, and the versions written since)",
            hex(&h.backup_id),
            hex(&h.base_id),
            h.base_generation
        )
    } else {
        format!("backup {}", hex(&h.backup_id))
    };
    format!(
        "{kind} of vault {} at generation {}, made {}: {} secrets ({} versions), {} keys; {}{}",
        h.vault_id.to_hex(),
        h.source_generation,
        format_time(h.created_ms),
        s.counts.secrets,
        s.counts.versions,
        s.counts.keys,
        if h.flags & vault_backup::FLAG_GZIP != 0 {
            "compressed"
        } else {
            "not compressed"
        },
        if h.comment.is_empty() {
            String::new()
        } else {
            format!("; comment: {}", h.comment.escape_default())
        }
    ) + &if h.flags & vault_backup::FLAG_AUDIT != 0 {
        format!("; with the audit trail ({} bytes)", s.audit_bytes)
    } else {
        String::new()
    }
}

fn describe_chain(s: &ChainSummary) -> String {
    let (Some(first), Some(last)) = (s.headers.first(), s.headers.last()) else {
        return "an empty chain".into();
    };
    let chain = if s.headers.len() == 1 {
        format!("backup {}", hex(&first.backup_id))
    } else {
        format!(
            "backup {} and {} incremental backups (the last {}, made {})",
            hex(&first.backup_id),
            s.headers.len() - 1,
            hex(&last.backup_id),
            format_time(last.created_ms)
        )
    };
    format!(
        "{chain} of vault {} at generation {}: {} secrets ({} versions), {} keys{}",
        last.vault_id.to_hex(),
        last.source_generation,
        s.counts.secrets,
        s.counts.versions,
        s.counts.keys,
        if s.audit_bytes > 0 {
            format!(
                "; the audit trail ({} bytes, kept in audit-archive/{}/)",
                s.audit_bytes,
                last.vault_id.to_hex()
            )
        } else {
            String::new()
        }
    )
}

/// Counts what passes through on a progress line on stderr (only on a terminal, once the
/// backup has taken a second: nothing is printed for scripts but errors).
struct Progress<W: Write> {
    inner: W,
    bar: crate::progress::Bar,
}

impl<W: Write> Progress<W> {
    fn new(inner: W) -> Self {
        let bar = crate::progress::Bar::counted("backing up", crate::progress::Unit::Bytes, None);
        Progress { inner, bar }
    }

    fn done(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Progress<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// How `vault backup` was asked to make a backup.
pub(crate) struct MakeRequest<'a> {
    /// Where to write it (`-`: stdout).
    pub(crate) file: &'a Path,
    /// The base, for an incremental.
    pub(crate) since: Option<&'a Path>,
    /// Carry the audit trail.
    pub(crate) include_audit: bool,
    /// Leave the payload uncompressed.
    pub(crate) no_compress: bool,
    /// The header's note.
    pub(crate) comment: &'a Option<String>,
    /// Protect it with the vault's passphrase.
    pub(crate) use_vault_passphrase: bool,
    /// The backup passphrase's Argon2id parameters.
    pub(crate) kdf: &'a ExportKdf,
}

/// `vault backup FILE|-`.
pub(crate) fn make(cli: &Cli, r: &MakeRequest<'_>) -> Result<(), Failure> {
    let MakeRequest {
        file,
        since,
        include_audit,
        no_compress,
        comment,
        use_vault_passphrase,
        kdf: k,
    } = *r;
    let terminal_named = || {
        use std::io::IsTerminal;
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(file).is_ok_and(|m| m.file_type().is_char_device())
            && std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .is_ok_and(|f| f.is_terminal())
    };
    if (crate::output::is_stdout_path(file) && crate::output::stdout_is_terminal())
        || (!crate::output::is_stdout_path(file) && terminal_named())
    {
        return Err(fail(
            Exit::Usage,
            "a backup is binary: write it to a file, or redirect stdout (`vault backup - > FILE`, or into a pipe)",
        ));
    }
    // The base's header only (not secret): read before anything is asked or written.
    let base = match since {
        None => None,
        Some(b) => {
            if b == Path::new("-") {
                return Err(fail(
                    Exit::Usage,
                    "--since needs the base backup's file (only its header is read), not stdin",
                ));
            }
            let m = std::fs::metadata(b).map_err(|e| {
                fail(
                    Exit::NotFound,
                    format!("cannot read the base backup {}: {e}", b.display()),
                )
            })?;
            if !m.is_file() {
                return Err(fail(
                    Exit::Usage,
                    format!(
                        "--since {}: the base must be a backup file (not stdin, a directory, a FIFO or a device)",
                        b.display()
                    ),
                ));
            }
            // The new backup must not replace its own base: the chain from there would be lost.
            if file != Path::new("-")
                && let Ok(out) = std::fs::metadata(file)
                && std::os::unix::fs::MetadataExt::ino(&out)
                    == std::os::unix::fs::MetadataExt::ino(&m)
                && std::os::unix::fs::MetadataExt::dev(&out)
                    == std::os::unix::fs::MetadataExt::dev(&m)
            {
                return Err(fail(
                    Exit::Usage,
                    format!(
                        "{} is the base backup itself: an incremental written there would replace its own base; write it to a new file",
                        file.display()
                    ),
                ));
            }
            let mut f = std::fs::File::open(b).map_err(|e| {
                fail(
                    Exit::NotFound,
                    format!("cannot read the base backup {}: {e}", b.display()),
                )
            })?;
            let (h, _) = vault_backup::read_header(&mut f).map_err(|e| match e {
                BackupError::Io(io) => fail(
                    Exit::NotFound,
                    format!("cannot read the base backup {}: {io}", b.display()),
                ),
                other => fail(
                    Exit::Usage,
                    format!("{} is not a backup this build reads: {other}", b.display()),
                ),
            })?;
            Some(h)
        }
    };
    let pass = current_passphrase(cli)?;
    let backup_pass = if use_vault_passphrase {
        pass.duplicate()
    } else {
        the_passphrase(false, true)?
    };
    let comment = comment.clone().unwrap_or_default();
    if comment.len() > 1024 || comment.chars().any(char::is_control) {
        return Err(fail(
            Exit::Usage,
            "the comment must be at most 1024 bytes, without control characters",
        ));
    }
    let params = k.params()?;
    let limit = limits(cli);
    if u64::from(params.memory_kib()) > u64::from(limit.max_memory_kib)
        || u64::from(params.memory_kib()) * u64::from(params.iterations()) > limit.max_cost
    {
        return Err(fail(
            Exit::Usage,
            "those Argon2id parameters are over the limit a reader applies (--max-kdf-memory-mib, --max-kdf-cost): the backup could not be verified or restored with the defaults",
        ));
    }
    let opts = BackupOptions {
        base,
        include_audit,
        compress: !no_compress,
        comment,
        kdf: params,
    };
    let out = OutFile::create(file, &super::keys::guarded(cli)?)?;
    let out = std::cell::RefCell::new(Some(out));
    let failed: std::cell::RefCell<Option<BackupError>> = std::cell::RefCell::new(None);
    let summary = with_vault(cli, &pass, false, |v| {
        let Some(o) = out.borrow_mut().take() else {
            return Err(vault_store::Error::Invalid {
                what: "backup",
                reason: "the output was already used (another process rotated the master key during the backup); run it again".into(),
            });
        };
        match backup(v, Progress::new(o), backup_pass.expose_secret(), &opts) {
            Ok((o, s)) => {
                *out.borrow_mut() = Some(o.done());
                Ok(Some(s))
            }
            Err(e) => {
                *failed.borrow_mut() = Some(e);
                Ok(None)
            }
        }
    })?;
    if let Some(e) = failed.into_inner() {
        return Err(failure(e));
    }
    let Some(summary) = summary else {
        return Err(fail(Exit::Other, "the backup did not complete"));
    };
    match out.into_inner() {
        Some(o) => o.finish()?,
        None => return Err(fail(Exit::Other, "the backup did not complete")),
    }
    stderr_line(format!("wrote {}", describe(&summary)));
    Ok(())
}

/// `vault backup verify FILE|-`, or a chain: `vault backup verify FULL INCREMENTAL…`.
pub(crate) fn check(
    cli: &Cli,
    files: &[PathBuf],
    use_vault_passphrase: bool,
) -> Result<(), Failure> {
    if files.len() > 1 {
        readable_files(files, "verify")?;
        let chain = vault_backup::chain::ChainFiles::open(files).map_err(failure)?;
        let pass = the_passphrase(use_vault_passphrase, false)?;
        let bar = crate::progress::Bar::spinner("verifying the backups");
        let s = vault_backup::chain::verify(&chain, pass.expose_secret(), &limits(cli))
            .map_err(failure)?;
        drop(bar);
        let mut out = crate::output::Stdout::lock();
        out.write(
            format!(
                "ok: {} in {} chunks; a restore of these files, in this order, gives that vault\n",
                describe_chain(&s),
                s.chunks
            )
            .as_bytes(),
        )?;
        return out.finish();
    }
    let Some(file) = files.first() else {
        return Err(fail(Exit::Usage, "give the backup file"));
    };
    let pass = the_passphrase(use_vault_passphrase, false)?;
    if file.is_dir() {
        return Err(fail(
            Exit::Usage,
            format!("{} is a directory, not a backup file", file.display()),
        ));
    }
    let input: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).map_err(|e| {
            fail(
                Exit::NotFound,
                format!("cannot read {}: {e}", file.display()),
            )
        })?)
    };
    let bar = crate::progress::Bar::spinner("verifying the backup");
    let s = verify(input, pass.expose_secret(), &limits(cli)).map_err(failure)?;
    drop(bar);
    let mut out = crate::output::Stdout::lock();
    out.write(format!("ok: {} in {} chunks\n", describe(&s), s.chunks).as_bytes())?;
    out.finish()
}

/// Every file must be a regular file (a chain is read twice, and all its files at once).
fn readable_files(files: &[PathBuf], what: &str) -> Result<(), Failure> {
    for file in files {
        if file == Path::new("-") || !file.is_file() {
            let (code, why) = if file == Path::new("-") || file.exists() {
                (
                    Exit::Usage,
                    format!(
                        "{what} needs backup files (it reads them more than once), not stdin, a directory or a device"
                    ),
                )
            } else {
                (Exit::NotFound, "no such file".to_string())
            };
            return Err(fail(code, format!("{}: {why}", file.display())));
        }
    }
    Ok(())
}

/// `vault restore FILE… --to DIR`.
pub(crate) fn restore_into(
    cli: &Cli,
    files: &[PathBuf],
    to: &Path,
    force: bool,
    use_vault_passphrase: bool,
    k: &ExportKdf,
) -> Result<(), Failure> {
    let shown = to.to_string_lossy();
    if shown.contains("://") || shown.starts_with("host=") {
        return Err(fail(
            Exit::Usage,
            "vault restore --to takes a directory: restoring into a database is not built yet; restore into a directory, then `vault export` there and `vault import` into the database vault",
        ));
    }
    readable_files(files, "restore")?;
    let state = crate::location::state_dir(cli)?;
    if crate::location::state_inside_vault(&state, to) {
        return Err(fail(
            Exit::Usage,
            format!(
                "the state directory {} is inside {}: the restored vault's rollback record would be inside it; give --state-dir (or VAULT_STATE_DIR) a directory outside it",
                state.display(),
                to.display()
            ),
        ));
    }
    // The files are opened once (what is verified is what is restored) and the chain's headers
    // checked before any passphrase is asked for.
    let chain = vault_backup::chain::ChainFiles::open(files).map_err(failure)?;
    let backup_pass = the_passphrase(use_vault_passphrase, false)?;
    let new_pass = passphrase::new_for_init()?;
    let params = k.params()?;
    let opts = options(cli, false)?;
    let make = |dir: &Path| {
        Vault::create(
            Arc::new(FileBackend::new(dir)),
            &new_pass,
            params,
            opts.clone(),
        )
    };
    let bar = crate::progress::Bar::spinner("restoring");
    let s = restore_chain(
        &chain,
        backup_pass.expose_secret(),
        &limits(cli),
        to,
        force,
        &make,
        vault_backup::restore::Batches::default(),
    )
    .map_err(failure)?;
    drop(bar);
    let _ = std::io::stderr().flush();
    stderr_line(format!(
        "restored {} into {}",
        describe_chain(&s),
        to.display()
    ));
    Ok(())
}
