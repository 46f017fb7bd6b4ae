//! Making, checking and restoring a full backup of a vault: the snapshot streamed through the
//! payload writer, gzip and the container to any `Write`; a verify that reads everything and
//! writes nothing; a restore that verifies first, builds the new vault beside the target, and
//! puts it in place only when everything committed.

use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use vault_crypto::kdf::KdfParams;
use vault_format::backup::{BackupHeader, FLAG_GZIP};
use vault_store::{LoadItem, SnapshotItem, Vault};

use crate::payload::{Counts, Item, PayloadReader, PayloadWriter};
use crate::{Error, Limits, container, create, open};

/// How a backup is made.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// gzip the payload (on by default).
    pub compress: bool,
    /// A note kept in the header (not secret: it is readable without the passphrase).
    pub comment: String,
    /// Argon2id parameters for the backup passphrase.
    pub kdf: KdfParams,
}

/// What a backup holds, as a verify (or the backup itself) counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The header.
    pub header: BackupHeader,
    /// Keys, secrets and secret versions.
    pub counts: Counts,
    /// Sealed chunks.
    pub chunks: u64,
}

fn store_err(e: std::io::Error) -> vault_store::Error {
    vault_store::Error::storage("writing", "the backup", e)
}

/// Writes a full backup of `vault` to `out` under `passphrase`; returns what it holds.
///
/// # Errors
/// The vault's errors (integrity, storage), or `out`'s.
pub fn backup<W: Write>(
    vault: &Vault,
    out: W,
    passphrase: &[u8],
    options: &BackupOptions,
) -> Result<(W, Summary), Error> {
    // The header needs the snapshot's generation, known once the snapshot holds its view.
    enum Stage<W: Write> {
        Before(W),
        Plain(PayloadWriter<container::Sealer<W>>, BackupHeader),
        Gzip(PayloadWriter<GzEncoder<container::Sealer<W>>>, BackupHeader),
        Gone,
    }
    let mut stage = Stage::Before(out);
    let mut setup_error: Option<Error> = None;
    let mut on_item = |item: SnapshotItem| -> vault_store::Result<()> {
        let item = match item {
            SnapshotItem::Start {
                vault_id,
                generation,
            } => {
                let Stage::Before(out) = std::mem::replace(&mut stage, Stage::Gone) else {
                    return Ok(());
                };
                let made = create(
                    passphrase,
                    options.kdf,
                    vault_id,
                    generation,
                    &options.comment,
                )
                .and_then(|(mut header, keys)| {
                    if !options.compress {
                        header.flags &= !FLAG_GZIP;
                    }
                    let sealer = container::Sealer::new(out, &header, &keys)?;
                    Ok((header, sealer))
                });
                let (header, sealer) = match made {
                    Ok(x) => x,
                    Err(e) => {
                        setup_error = Some(e);
                        return Err(vault_store::Error::Invalid {
                            what: "backup",
                            reason: "could not start".into(),
                        });
                    }
                };
                stage = if options.compress {
                    let gz = GzEncoder::new(sealer, Compression::new(6));
                    Stage::Gzip(PayloadWriter::new(gz).map_err(store_err)?, header)
                } else {
                    Stage::Plain(PayloadWriter::new(sealer).map_err(store_err)?, header)
                };
                return Ok(());
            }
            SnapshotItem::Settings { max_versions } => Item::Settings(max_versions),
            SnapshotItem::Key(k, v) => Item::Key(k, v),
            SnapshotItem::Secret {
                name,
                deleted,
                versions,
            } => Item::Secret {
                name,
                deleted,
                versions,
            },
            SnapshotItem::Version(v) => Item::Version(v),
        };
        match &mut stage {
            Stage::Plain(w, _) => w.write(&item).map_err(store_err),
            Stage::Gzip(w, _) => w.write(&item).map_err(store_err),
            _ => Err(vault_store::Error::Invalid {
                what: "backup",
                reason: "an item before the start".into(),
            }),
        }
    };
    let snap = vault.snapshot(&mut on_item);
    if let Some(e) = setup_error {
        return Err(e);
    }
    snap.map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    match stage {
        Stage::Plain(w, header) => {
            let (sealer, counts) = w.finish()?;
            let out = sealer.finish()?;
            Ok((out, summary(header, counts)))
        }
        Stage::Gzip(w, header) => {
            let (gz, counts) = w.finish()?;
            let out = gz.finish()?.finish()?;
            Ok((out, summary(header, counts)))
        }
        _ => Err(Error::Io(std::io::Error::other(
            "the snapshot never started",
        ))),
    }
}

fn summary(header: BackupHeader, counts: Counts) -> Summary {
    Summary {
        header,
        counts,
        chunks: 0,
    }
}

/// Reads every item of the backup `input` yields, handing each to `f`; checks the passphrase,
/// every chunk, the trailer, the decompressed stream and every record. Writes nothing itself.
///
/// # Errors
/// What is wrong, naming the chunk or field.
pub fn read_items<R: Read>(
    input: R,
    passphrase: &[u8],
    limits: &Limits,
    f: &mut dyn FnMut(Item) -> Result<(), Error>,
) -> Result<Summary, Error> {
    let mut opener = open(input, passphrase, limits)?;
    let header = opener.header().clone();
    let counts = if header.flags & FLAG_GZIP != 0 {
        // A buffered reader of our own, so that what follows the gzip stream is seen, not
        // swallowed by the decoder's buffer: nothing may.
        let mut buffered = std::io::BufReader::new(&mut opener);
        let counts = {
            let mut reader = PayloadReader::new(GzDecoder::new(&mut buffered))?;
            while let Some(item) = reader.next_item()? {
                f(item)?;
            }
            reader.counts()
        };
        if !std::io::BufRead::fill_buf(&mut buffered)?.is_empty() {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "backup: data after the compressed payload",
            )));
        }
        counts
    } else {
        let mut reader = PayloadReader::new(&mut opener)?;
        while let Some(item) = reader.next_item()? {
            f(item)?;
        }
        reader.counts()
    };
    // The payload ended: the container must end too, with its trailer checked.
    let mut rest = [0u8; 1];
    if opener.read(&mut rest)? != 0 {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "backup: data after the payload's end",
        )));
    }
    Ok(Summary {
        header,
        counts,
        chunks: opener.chunks(),
    })
}

/// Checks a backup without writing anything: every chunk, the trailer, the decompressed stream
/// and every record; returns what it holds.
///
/// # Errors
/// As [`read_items`].
pub fn verify<R: Read>(input: R, passphrase: &[u8], limits: &Limits) -> Result<Summary, Error> {
    // Every key and secret name, as a 128-bit keyed hash (16 bytes a name: 16 MiB for a million),
    // to find a name given twice without holding the names.
    let (a, b) = (
        std::collections::hash_map::RandomState::new(),
        std::collections::hash_map::RandomState::new(),
    );
    let hash = |kind: u8, name: &str| {
        use std::hash::BuildHasher;
        (u128::from(a.hash_one((kind, name))) << 64) | u128::from(b.hash_one((kind, name)))
    };
    let mut names: Vec<u128> = Vec::new();
    let summary = read_items(input, passphrase, limits, &mut |item| {
        match &item {
            Item::Key(k, _) => names.push(hash(1, &k.name)),
            Item::Secret { name, .. } => names.push(hash(2, name)),
            _ => {}
        }
        Ok(())
    })?;
    names.sort_unstable();
    if names.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "backup payload: a key or secret is given twice",
        )));
    }
    Ok(summary)
}

/// Most value bytes in one commit of a restore: a commit is sealed as one frame, so this bounds
/// the restore's memory (64 MiB batches peaked at 264 MiB for a 1 GiB vault).
const BATCH_BYTES: usize = 8 << 20;
/// Most items in one commit of a restore: 100 000 peaked at 101 MiB for a million secrets, 40 000
/// at 60 MiB (25.6 s), 10 000 at 37 MiB but 48 s (each commit past 8192 records checkpoints the
/// index).
const BATCH_ITEMS: usize = 40_000;

/// Restores the backup at `file` into a new vault at `target`: the file is verified first
/// (nothing is written if it is damaged); the vault `make` creates in a directory beside
/// `target` is filled in batches, and renamed to `target` only when all of it committed. An
/// existing `target` is refused unless `force`, and then moved aside until the restore is in
/// place, and removed after.
///
/// # Errors
/// The backup's errors; [`Error::Io`] for an existing target without `force`; the vault's.
pub fn restore(
    file: &Path,
    passphrase: &[u8],
    limits: &Limits,
    target: &Path,
    force: bool,
    make: &dyn Fn(&Path) -> vault_store::Result<Vault>,
) -> Result<Summary, Error> {
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
    let checked = verify(std::fs::File::open(file)?, passphrase, limits)?;
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
    if let Err(e) = fill(file, passphrase, limits, &staging, &checked, make) {
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
    file: &Path,
    passphrase: &[u8],
    limits: &Limits,
    staging: &Path,
    checked: &Summary,
    make: &dyn Fn(&Path) -> vault_store::Result<Vault>,
) -> Result<(), Error> {
    let to_err = |e: vault_store::Error| Error::Io(std::io::Error::other(e.to_string()));
    let vault = make(staging).map_err(to_err)?;
    let mut batch: Vec<LoadItem> = Vec::new();
    let mut bytes = 0usize;
    let mut deleted: Option<(String, u32)> = None;
    let flush = |batch: &mut Vec<LoadItem>, bytes: &mut usize| -> Result<(), Error> {
        if !batch.is_empty() {
            vault.load(std::mem::take(batch), None).map_err(to_err)?;
            *bytes = 0;
        }
        Ok(())
    };
    let mut batch_names: std::collections::HashSet<String> = std::collections::HashSet::new();
    let twice = |what: &str, name: &str| {
        Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("backup payload: {what} {name:?} is in the backup twice"),
        ))
    };
    read_items(
        std::fs::File::open(file)?,
        passphrase,
        limits,
        &mut |item| {
            match item {
                Item::Settings(max) => batch.push(LoadItem::Settings(max)),
                Item::Key(k, v) => {
                    // A name seen before, in this batch or a committed one: a malformed backup.
                    // (A name given twice is refused by `Vault::load`, under the write lock.)
                    batch.push(LoadItem::Key(k, v));
                }
                Item::Secret {
                    name,
                    deleted: d,
                    versions,
                } => {
                    if !batch_names.insert(name.clone()) {
                        return Err(twice("secret", &name));
                    }
                    deleted = d.then_some((name, versions));
                }
                Item::Version(v) => {
                    bytes += v.value.len();
                    let name = v.name.clone();
                    batch.push(LoadItem::Version(v));
                    if let Some((n, left)) = &mut deleted
                        && *n == name
                    {
                        *left -= 1;
                        if *left == 0 {
                            batch.push(LoadItem::Deleted(name));
                            deleted = None;
                        }
                    }
                }
            }
            if bytes >= BATCH_BYTES || batch.len() >= BATCH_ITEMS {
                flush(&mut batch, &mut bytes)?;
                batch_names.clear();
            }
            Ok(())
        },
    )?;
    flush(&mut batch, &mut bytes)?;
    let h = &checked.header;
    vault
        .load(
            Vec::new(),
            Some(format!(
                "restored from backup {} of vault {} at generation {}",
                h.backup_id
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
                h.vault_id.to_hex(),
                h.source_generation
            )),
        )
        .map_err(to_err)?;
    Ok(())
}
