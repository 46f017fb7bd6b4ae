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
use zeroize::Zeroizing;

use crate::payload::{Counts, Item, Kept, PayloadReader, PayloadWriter, version_check};
use crate::{Error, Limits, container, create, open};

/// How a backup is made.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// For an incremental backup: the header of its base (a full backup or an incremental one).
    pub base: Option<BackupHeader>,
    /// gzip the payload (on by default).
    pub compress: bool,
    /// Carry the vault's audit trail too (its files as they are, read under the audit lock
    /// after the snapshot).
    pub include_audit: bool,
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
    /// Bytes of the vault's audit trail it carries.
    pub audit_bytes: u64,
}

fn store_err(e: std::io::Error) -> vault_store::Error {
    vault_store::Error::storage("writing", "the backup", e)
}

/// The gzip level. Compression runs on its own thread beside the vault's reading, which is the
/// slower of the two: level 6 costs no more time than level 1 there (a million 32-byte secrets:
/// 2.9 s either way on 2 cores) and gives a smaller file (14.8 MiB against 17.4).
pub const GZIP_LEVEL: u32 = 6;

/// What the snapshot's thread hands the thread that compresses, seals and writes.
enum ToSealer<W: Write> {
    /// The container, once the header is known.
    Start(Box<container::Sealer<W>>),
    /// Payload bytes (secret values among them: zeroized when dropped).
    Data(Zeroizing<Vec<u8>>),
    /// The payload is complete: finish the container.
    End,
}

/// The payload writer's output: each write goes to the sealing thread.
struct Channel<W: Write>(std::sync::mpsc::SyncSender<ToSealer<W>>);

/// The other side of the channel is gone: not a cause of its own (the side that stopped has
/// the error that says why), so it is told apart from the output's own errors.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the backup stopped part-way")
    }
}

impl std::error::Error for Stopped {}

fn stopped() -> std::io::Error {
    std::io::Error::other(Stopped)
}

fn is_stopped(e: &Error) -> bool {
    matches!(e, Error::Io(io) if io.get_ref().is_some_and(|r| r.is::<Stopped>()))
}

impl<W: Write> Write for Channel<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(ToSealer::Data(Zeroizing::new(buf.to_vec())))
            .map_err(|_| stopped())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The sealing thread: compresses (or not), seals and writes what it is handed; returns the
/// output once the payload is complete, or an error (the output is dropped unfinished when the
/// snapshot stopped early).
fn seal_all<W: Write>(
    rx: std::sync::mpsc::Receiver<ToSealer<W>>,
    compress: bool,
) -> Result<W, Error> {
    let Ok(ToSealer::Start(sealer)) = rx.recv() else {
        return Err(Error::Io(stopped()));
    };
    let sealer = *sealer;
    let mut gz = None;
    let mut plain = None;
    if compress {
        gz = Some(GzEncoder::new(sealer, Compression::new(GZIP_LEVEL)));
    } else {
        plain = Some(sealer);
    }
    loop {
        match rx.recv() {
            Ok(ToSealer::Data(d)) => match (&mut gz, &mut plain) {
                (Some(g), _) => g.write_all(&d)?,
                (None, Some(p)) => p.write_all(&d)?,
                _ => return Err(Error::Io(stopped())),
            },
            Ok(ToSealer::End) => break,
            Ok(ToSealer::Start(_)) | Err(_) => return Err(Error::Io(stopped())),
        }
    }
    match (gz, plain) {
        (Some(g), _) => Ok(g.finish()?.finish()?),
        (None, Some(p)) => Ok(p.finish()?),
        _ => Err(Error::Io(stopped())),
    }
}

/// Writes a backup of `vault` to `out` under `passphrase` (full, or incremental on
/// `options.base`); returns what it holds. The vault is read on this thread and the payload
/// compressed, sealed and written on another, so the two overlap.
///
/// # Errors
/// The vault's errors (integrity, storage; an invalid-input error when the base is not in the
/// vault's history), or `out`'s.
pub fn backup<W: Write + Send>(
    vault: &Vault,
    out: W,
    passphrase: &[u8],
    options: &BackupOptions,
) -> Result<(W, Summary), Error> {
    // The header needs the snapshot's cursor, known once the snapshot holds its view.
    enum Stage<W: Write> {
        Before(W, std::sync::mpsc::SyncSender<ToSealer<W>>),
        Writing(Box<(PayloadWriter<Channel<W>>, BackupHeader)>),
        Gone,
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(8);
    std::thread::scope(|scope| {
        let sealing = scope.spawn(move || seal_all(rx, options.compress));
        let mut stage = Stage::Before(out, tx);
        let mut setup_error: Option<Error> = None;
        let mut on_item = |item: SnapshotItem| -> vault_store::Result<()> {
            let item = match item {
                SnapshotItem::Start(cursor) => {
                    let Stage::Before(out, tx) = std::mem::replace(&mut stage, Stage::Gone) else {
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
                        if options.include_audit {
                            header.flags |= vault_format::backup::FLAG_AUDIT;
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
                    tx.send(ToSealer::Start(Box::new(sealer)))
                        .map_err(|_| store_err(stopped()))?;
                    let w = PayloadWriter::new(Channel(tx)).map_err(store_err)?;
                    stage = Stage::Writing(Box::new((w, header)));
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
                            kept: versions
                                .iter()
                                .map(|k| Kept {
                                    version: k.version,
                                    check: (!k.carried)
                                        .then(|| version_check(k.created_ms, k.size)),
                                })
                                .collect(),
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
                Stage::Writing(b) => b.0.write(&item).map_err(store_err),
                _ => Err(vault_store::Error::Invalid {
                    what: "backup",
                    reason: "an item before the start".into(),
                }),
            }
        };
        let since = options.base.as_ref().map(crate::cursor_of);
        let snap = vault.snapshot(since.as_ref(), &mut on_item);
        // The payload's end, unless the snapshot failed (then the sealing thread sees the
        // channel close without it, and stops without finishing the container).
        let finished = match (snap, std::mem::replace(&mut stage, Stage::Gone)) {
            (Ok(()), Stage::Writing(b)) => {
                let (mut w, header) = *b;
                let mut audit_bytes = 0u64;
                if options.include_audit
                    && let Err(e) = vault.audit_files(&mut |name, offset, bytes| {
                        audit_bytes += bytes.len() as u64;
                        w.write(&Item::AuditPart {
                            name: name.to_string(),
                            offset,
                            bytes: bytes.to_vec(),
                        })
                        .map_err(store_err)
                    })
                {
                    return Err(Error::Vault(e));
                }
                w.finish()
                    .and_then(|(ch, counts)| {
                        ch.0.send(ToSealer::End).map_err(|_| stopped())?;
                        Ok((header, counts, audit_bytes))
                    })
                    .map_err(Error::Io)
            }
            (Ok(()), _) => Err(Error::Io(std::io::Error::other(
                "the snapshot never started",
            ))),
            (Err(e), _) => Err(setup_error.take().unwrap_or(Error::Vault(e))),
        };
        let sealed = sealing
            .join()
            .map_err(|_| Error::Io(std::io::Error::other("the backup's writer panicked")))?;
        // The writer's own failure is the cause when it has one (the snapshot then only saw it
        // stop); otherwise the snapshot's.
        match (finished, sealed) {
            (Ok((header, counts, audit_bytes)), Ok(out)) => {
                let mut s = summary(header, counts);
                s.audit_bytes = audit_bytes;
                Ok((out, s))
            }
            (_, Err(w)) if !is_stopped(&w) => Err(w),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    })
}

fn summary(header: BackupHeader, counts: Counts) -> Summary {
    Summary {
        header,
        counts,
        chunks: 0,
        audit_bytes: 0,
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
    audit_bytes: u64,
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
    /// As [`crate::open`]; a newer payload version.
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
            audit_bytes: 0,
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
                self.audit_bytes = r.audit_bytes();
                (r.into_inner(), counts)
            }
            Inner::Gzip(r) => {
                let counts = r.counts();
                self.audit_bytes = r.audit_bytes();
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
            audit_bytes: self.audit_bytes,
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
