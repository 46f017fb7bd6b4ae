//! Restoring a backup, or a chain of them, into a new vault: everything is verified first
//! (nothing is written if any of it is damaged), the new vault is built in a directory beside
//! the target and put there in one rename only once all of it committed; restores killed
//! midway leave only their own directory, removed by the next restore to the same place.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use vault_store::{LoadItem, Vault};

use crate::chain::{self, ChainFiles, ChainSummary, Merged};
use crate::{Error, Limits};

/// Most value bytes in one commit of a restore: a commit is sealed as one frame, so this bounds
/// the restore's memory (64 MiB batches peaked at 264 MiB for a 1 GiB vault).
pub const BATCH_BYTES: usize = 8 << 20;
/// Most items in one commit of a restore: 100 000 peaked at 101 MiB for a million secrets, 40 000
/// at 60 MiB (25.6 s), 10 000 at 37 MiB but 48 s (each commit past 8192 records checkpoints the
/// index).
pub const BATCH_ITEMS: usize = 40_000;

/// How much one commit of a restore holds at most.
#[derive(Clone, Copy, Debug)]
pub struct Batches {
    /// Value bytes.
    pub bytes: usize,
    /// Items.
    pub items: usize,
}

impl Default for Batches {
    /// [`BATCH_BYTES`] and [`BATCH_ITEMS`].
    fn default() -> Self {
        Batches {
            bytes: BATCH_BYTES,
            items: BATCH_ITEMS,
        }
    }
}

/// Restores the backup at `files[0]`, and the incremental backups after it in order, into a
/// new vault at `target`: the chain is verified first (nothing is written if any file is
/// damaged or the chain is not whole); the vault `make` creates in a directory beside `target`
/// is filled in batches, and renamed to `target` only when all of it committed. An existing
/// `target` is refused unless `force`, and then moved aside until the restore is in place, and
/// removed after.
///
/// # Errors
/// The backups' errors, [`Error::Chain`]; [`Error::Io`] for an existing target without
/// `force`; the vault's.
pub fn restore(
    files: &[PathBuf],
    passphrase: &[u8],
    limits: &Limits,
    target: &Path,
    force: bool,
    make: &dyn Fn(&Path) -> vault_store::Result<Vault>,
) -> Result<ChainSummary, Error> {
    restore_in_batches(
        files,
        passphrase,
        limits,
        target,
        force,
        make,
        Batches::default(),
    )
}

/// [`restore`] with commits of at most `batches` (tests use small ones, to have many commits to
/// interrupt).
///
/// # Errors
/// As [`restore`].
pub fn restore_in_batches(
    files: &[PathBuf],
    passphrase: &[u8],
    limits: &Limits,
    target: &Path,
    force: bool,
    make: &dyn Fn(&Path) -> vault_store::Result<Vault>,
    batches: Batches,
) -> Result<ChainSummary, Error> {
    let chain = ChainFiles::open(files)?;
    restore_chain(&chain, passphrase, limits, target, force, make, batches)
}

/// [`restore_in_batches`] of a chain already opened (and its headers checked): the files
/// verified are the files restored, whatever their names come to point at meanwhile.
///
/// # Errors
/// As [`restore`].
pub fn restore_chain(
    files: &ChainFiles,
    passphrase: &[u8],
    limits: &Limits,
    target: &Path,
    force: bool,
    make: &dyn Fn(&Path) -> vault_store::Result<Vault>,
    batches: Batches,
) -> Result<ChainSummary, Error> {
    let refuse =
        |kind: std::io::ErrorKind, msg: String| Err(Error::Io(std::io::Error::new(kind, msg)));
    // What is at the target now decides the final step: nothing (the restored vault is renamed
    // there, refusing anything that appeared meanwhile), or, with --force, a vault (exchanged
    // atomically with the restored one: at no moment is there no vault at the target).
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
        Ok(_) if !force => {
            return refuse(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists; restore into a new directory, or pass --force to replace the vault there",
                    target.display()
                ),
            );
        }
        Ok(m) if m.file_type().is_symlink() || !m.is_dir() || !target.join("header").is_file() => {
            return refuse(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a vault directory (a symlink, a file, or a directory without a vault header); --force replaces only a vault",
                    target.display()
                ),
            );
        }
        Ok(_) => {}
    }
    let checked = chain::verify(files, passphrase, limits)?;
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return refuse(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no directory to restore into", target.display()),
        );
    };
    let suffix: [u8; 6] =
        vault_crypto::rng::bytes().map_err(|e| std::io::Error::other(e.to_string()))?;
    let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    sweep_abandoned(parent, &name);
    let staging = parent.join(format!(".{name}.restoring-{hex}"));
    // Held while the staging directory exists: a later restore that can take it knows the
    // restore that made the directory is gone (killed), and removes what it left.
    let claim_path = parent.join(format!(".{name}.restoring-{hex}.lock"));
    let claim = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&claim_path)?;
    claim.lock()?;
    let finish = |claim: std::fs::File| {
        let _ = std::fs::remove_dir_all(&staging);
        drop(claim);
        let _ = std::fs::remove_file(&claim_path);
    };
    if let Err(e) = fill(files, passphrase, limits, &staging, &checked, make, batches) {
        finish(claim);
        return Err(e);
    }
    let flags = if force {
        rustix::fs::RenameFlags::EXCHANGE
    } else {
        rustix::fs::RenameFlags::NOREPLACE
    };
    let renamed =
        rustix::fs::renameat_with(rustix::fs::CWD, &staging, rustix::fs::CWD, target, flags);
    if let Err(e) = renamed {
        finish(claim);
        let e = std::io::Error::from(e);
        let msg = if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} appeared while restoring (another restore, or a directory made meanwhile); nothing was replaced",
                target.display()
            )
        } else {
            format!("cannot put the restored vault at {}: {e}", target.display())
        };
        return refuse(e.kind(), msg);
    }
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    // After an exchange the staging path holds the replaced vault: removed with the claim.
    finish(claim);
    // And what a restore that died while this one ran left (its claim was still held when this
    // one started).
    sweep_abandoned(parent, &name);
    Ok(checked)
}

/// Removes what killed restores to `name` in `parent` left: staging directories whose claim no
/// live restore holds (a restore running now holds its own, and is left alone).
fn sweep_abandoned(parent: &Path, name: &str) {
    let prefix = format!(".{name}.restoring-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(dir) = rest.strip_suffix(".lock") {
            // A claim whose directory was never made (killed in between), held by no one.
            let free = std::fs::OpenOptions::new()
                .write(true)
                .open(e.path())
                .is_ok_and(|f| f.try_lock().is_ok());
            if free && !parent.join(format!("{prefix}{dir}")).exists() {
                let _ = std::fs::remove_file(e.path());
            }
            continue;
        }
        if rest.len() != 12 {
            continue;
        }
        let lock = parent.join(format!("{file_name}.lock"));
        let taken = std::fs::OpenOptions::new()
            .write(true)
            .open(&lock)
            .ok()
            .map(|f| matches!(f.try_lock(), Ok(())).then_some(f));
        // No claim file at all (killed before it was made is impossible: it is made first), or
        // one no one holds: abandoned.
        if let Some(Some(_held)) = taken {
            let _ = std::fs::remove_dir_all(e.path());
            let _ = std::fs::remove_file(&lock);
        }
    }
}

fn fill(
    files: &ChainFiles,
    passphrase: &[u8],
    limits: &Limits,
    staging: &Path,
    checked: &ChainSummary,
    make: &dyn Fn(&Path) -> vault_store::Result<Vault>,
    batches: Batches,
) -> Result<(), Error> {
    let vault = make(staging)?;
    let mut batch: Vec<LoadItem> = Vec::new();
    let mut bytes = 0usize;
    // The backed-up vault's audit trail, kept as it was (its links are under that vault's
    // keys, which the restored vault does not have): beside the restored vault's own trail.
    let archive = checked
        .headers
        .last()
        .map(|h| staging.join("audit-archive").join(h.vault_id.to_hex()));
    let mut audit_file: Option<(String, std::fs::File)> = None;
    chain::merge_verified(files, passphrase, limits, &mut |item| {
        let item = match item {
            Merged::Load(item) => item,
            Merged::Audit {
                name,
                offset,
                bytes,
            } => {
                let Some(dir) = &archive else { return Ok(()) };
                if audit_file.as_ref().is_none_or(|(n, _)| *n != name) {
                    if let Some((_, f)) = audit_file.take() {
                        f.sync_all()?;
                    }
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)?;
                    let f = std::fs::OpenOptions::new()
                        .create_new(true)
                        .write(true)
                        .mode(0o600)
                        .open(dir.join(&name))?;
                    audit_file = Some((name.clone(), f));
                }
                if let Some((_, f)) = &audit_file {
                    std::os::unix::fs::FileExt::write_all_at(f, &bytes, offset)?;
                }
                return Ok(());
            }
        };
        if let LoadItem::Version(v) = &item {
            bytes += v.value.len();
        }
        batch.push(item);
        if bytes >= batches.bytes || batch.len() >= batches.items {
            vault.load(std::mem::take(&mut batch), None)?;
            bytes = 0;
        }
        Ok(())
    })?;
    if let Some((_, f)) = audit_file.take() {
        f.sync_all()?;
        if let Some(dir) = &archive
            && let Ok(d) = std::fs::File::open(dir)
        {
            d.sync_all()?;
        }
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (Some(first), Some(last)) = (checked.headers.first(), checked.headers.last()) else {
        return Err(Error::Chain("no backup given".into()));
    };
    let from = if checked.headers.len() == 1 {
        format!("backup {}", hex(&first.backup_id))
    } else {
        format!(
            "backup {} and {} incremental backups after it (the last {})",
            hex(&first.backup_id),
            checked.headers.len() - 1,
            hex(&last.backup_id)
        )
    };
    vault.load(
        batch,
        Some(format!(
            "restored from {from} of vault {} at generation {}",
            last.vault_id.to_hex(),
            last.source_generation
        )),
    )?;
    Ok(())
}
