//! Making and checking a backup of a vault: the snapshot (whole, or what changed since a base
//! backup) streamed through the payload writer, gzip and the container to any `Write`; a reader
//! that pulls items from a backup file and checks everything to its last byte; a verify that
//! reads everything and writes nothing.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use vault_crypto::kdf::KdfParams;
use vault_format::backup::{BackupHeader, FLAG_GZIP, FLAG_INCREMENTAL};
use vault_store::{SnapshotItem, Vault};

use crate::payload::{Counts, Item, PayloadReader, PayloadWriter};
use crate::{Error, Limits, container, create, open};

/// How a backup is made.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// For an incremental backup: the header of its base (a full backup or an incremental one).
    pub base: Option<BackupHeader>,
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

/// Writes a backup of `vault` to `out` under `passphrase` (full, or incremental on
/// `options.base`); returns what it holds.
///
/// # Errors
/// The vault's errors (integrity, storage; an invalid-input error when the base is not in the
/// vault's history), or `out`'s.
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
            SnapshotItem::Start(cursor) => {
                let Stage::Before(out) = std::mem::replace(&mut stage, Stage::Gone) else {
                    return Ok(());
                };
                let made = create(
                    passphrase,
                    options.kdf,
                    &cursor,
                    options.base.as_ref(),
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
                order,
                name,
                deleted,
                versions,
            } => {
                if options.base.is_some() {
                    Item::Changed {
                        order,
                        name,
                        deleted,
                        kept: versions,
                    }
                } else {
                    Item::Secret {
                        order,
                        name,
                        deleted,
                        versions: versions.len() as u32,
                    }
                }
            }
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
    let since = options.base.as_ref().map(crate::cursor_of);
    let snap = vault.snapshot(since.as_ref(), &mut on_item);
    if let Some(e) = setup_error {
        return Err(e);
    }
    snap.map_err(Error::Vault)?;
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

/// A backup's items, pulled one at a time: the passphrase checked on opening, then every chunk
/// as it is read, and at the end the decompressed stream's and the container's ends (nothing
/// after the end item, the trailer checked).
pub struct ItemStream<R: Read> {
    inner: Inner<R>,
    header: BackupHeader,
    counts: Counts,
    chunks: u64,
}

enum Inner<R: Read> {
    Plain(PayloadReader<crate::BackupReader<R>>),
    // A buffered reader of our own, so that what follows the gzip stream is seen, not
    // swallowed by the decoder's buffer: nothing may.
    Gzip(PayloadReader<GzDecoder<std::io::BufReader<crate::BackupReader<R>>>>),
    Done,
}

fn invalid(msg: &str) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        msg.to_string(),
    ))
}

impl<R: Read> ItemStream<R> {
    /// Opens the backup `input` yields (one Argon2id run).
    ///
    /// # Errors
    /// As [`open`](crate::open); a newer payload version.
    pub fn open(input: R, passphrase: &[u8], limits: &Limits) -> Result<Self, Error> {
        let opener = open(input, passphrase, limits)?;
        let header = opener.header().clone();
        let incremental = header.flags & FLAG_INCREMENTAL != 0;
        let inner = if header.flags & FLAG_GZIP != 0 {
            let buffered = std::io::BufReader::new(opener);
            Inner::Gzip(PayloadReader::new(GzDecoder::new(buffered), incremental)?)
        } else {
            Inner::Plain(PayloadReader::new(opener, incremental)?)
        };
        Ok(ItemStream {
            inner,
            header,
            counts: Counts::default(),
            chunks: 0,
        })
    }

    /// The backup's header.
    pub fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// The next item, or `None` once the payload and the container ended as they must.
    ///
    /// # Errors
    /// What is wrong, naming the chunk or field.
    pub fn next_item(&mut self) -> Result<Option<Item>, Error> {
        let item = match &mut self.inner {
            Inner::Plain(r) => r.next_item()?,
            Inner::Gzip(r) => r.next_item()?,
            Inner::Done => return Ok(None),
        };
        if item.is_some() {
            return Ok(item);
        }
        let (mut opener, counts) = match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::Plain(r) => {
                let counts = r.counts();
                (r.into_inner(), counts)
            }
            Inner::Gzip(r) => {
                let counts = r.counts();
                let mut buffered = r.into_inner().into_inner();
                if !std::io::BufRead::fill_buf(&mut buffered)?.is_empty() {
                    return Err(invalid("backup: data after the compressed payload"));
                }
                (buffered.into_inner(), counts)
            }
            Inner::Done => return Ok(None),
        };
        // The payload ended: the container must end too, with its trailer checked.
        let mut rest = [0u8; 1];
        if opener.read(&mut rest)? != 0 {
            return Err(invalid("backup: data after the payload's end"));
        }
        self.counts = counts;
        self.chunks = opener.chunks();
        Ok(None)
    }

    /// What the backup held, once [`ItemStream::next_item`] gave `None`.
    pub fn summary(&self) -> Summary {
        Summary {
            header: self.header.clone(),
            counts: self.counts,
            chunks: self.chunks,
        }
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
    let mut stream = ItemStream::open(input, passphrase, limits)?;
    while let Some(item) = stream.next_item()? {
        f(item)?;
    }
    Ok(stream.summary())
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
            Item::Secret { name, .. } | Item::Changed { name, .. } => names.push(hash(2, name)),
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
