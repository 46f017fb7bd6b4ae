//! Backups of a vault: streamed, encrypted, compressed, verifiable (docs/designs/backup.md).
//!
//! - [`container`]: the sealed container as a stream: [`container::Sealer`] (a `Write`) and
//!   [`container::Opener`] (a `Read`), two chunks in memory whatever the size.
//! - [`backup`](mod@backup): a full backup of a vault to any `Write`, verify (reads everything,
//!   writes nothing), and restore into a new vault put in place only when complete.
//! - [`payload`]: the items inside (keys, secrets, their versions, an end item with counts).
//! - [`open`]: reads a backup's header, checks its KDF parameters against a limit before any
//!   work, derives its keys with one Argon2id run, and tells a wrong passphrase from damage.
//!
//! ```
//! use std::io::{Read, Write};
//! use vault_backup::{Limits, create, open};
//! use vault_crypto::kdf::KdfParams;
//!
//! # fn main() -> Result<(), vault_backup::Error> {
//! let kdf = KdfParams::for_key(64, 1, 1).expect("cheap parameters for the example");
//! let vault = vault_store::SnapshotCursor {
//!     vault_id: [7; 16],
//!     key_epoch: 1,
//!     generation: 3,
//!     sequence: 5,
//!     lineage: [0; 16],
//! };
//! let (header, keys) = create(b"backup pass", kdf, &vault, None, "example")?;
//! let mut w = vault_backup::container::Sealer::new(Vec::new(), &header, &keys)?;
//! w.write_all(b"the payload")?;
//! let file = w.finish()?;
//!
//! let mut r = open(&file[..], b"backup pass", &Limits::default())?;
//! let mut back = Vec::new();
//! r.read_to_end(&mut back)?;
//! assert_eq!(back, b"the payload");
//! # Ok(())
//! # }
//! ```

pub mod backup;
pub mod chain;
pub mod container;
pub mod payload;
pub mod restore;

pub use vault_format::backup::{BackupHeader, FLAG_AUDIT, FLAG_GZIP, FLAG_INCREMENTAL};

use std::io::Read;

use vault_crypto::kdf::KdfParams;
use vault_format::VaultId;
use vault_format::backup::{BackupKeys, CHUNK_SIZE};

/// Why a backup could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backup passphrase is not the one the backup was made with.
    #[error("wrong backup passphrase")]
    WrongPassphrase,
    /// The file asks for more key-derivation work than allowed.
    #[error("the backup asks for too much key-derivation work: {0}")]
    KdfLimit(String),
    /// The file is not a backup, is malformed, or of a newer version.
    #[error("{0}")]
    Format(#[from] vault_format::Error),
    /// Reading or writing failed, or a chunk or the trailer does not authenticate (then the
    /// kind is `InvalidData` and the message names the chunk).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The vault's error: making a backup (a base not in the vault's history is
    /// [`vault_store::Error::Invalid`]), or filling the restored vault.
    #[error("{0}")]
    Vault(#[from] vault_store::Error),
    /// The backups given are not one chain (a full backup, then incrementals each on the one
    /// before it), or do not add up to a whole vault.
    #[error("{0}")]
    Chain(String),
}

/// The most Argon2id work a backup file may ask for before any is done.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most memory, KiB.
    pub max_memory_kib: u32,
    /// Most memory × passes, KiB × passes.
    pub max_cost: u64,
}

impl Default for Limits {
    /// 1 GiB, and 32 GiB-passes: as for a vault's key slots.
    fn default() -> Self {
        Limits {
            max_memory_kib: 1 << 20,
            max_cost: 32 << 20,
        }
    }
}

impl Limits {
    fn refusal(&self, p: &KdfParams) -> Option<String> {
        let cost = u64::from(p.memory_kib()) * u64::from(p.iterations());
        if p.memory_kib() > self.max_memory_kib {
            Some(format!(
                "Argon2id memory {} KiB is over the limit of {} KiB",
                p.memory_kib(),
                self.max_memory_kib
            ))
        } else if cost > self.max_cost {
            Some(format!(
                "Argon2id memory × passes {cost} KiB is over the limit of {} KiB",
                self.max_cost
            ))
        } else {
            None
        }
    }
}

/// A header for a new backup of the vault at `source` (gzip on): a full backup, or, with
/// `base`, an incremental one on the backup whose header that is; and its keys derived from
/// `passphrase` (one Argon2id run).
///
/// # Errors
/// A crypto failure; a comment over the limit.
pub fn create(
    passphrase: &[u8],
    kdf: KdfParams,
    source: &vault_store::SnapshotCursor,
    base: Option<&BackupHeader>,
    comment: &str,
) -> Result<(BackupHeader, BackupKeys), Error> {
    let crypto = |source| vault_format::Error::Crypto {
        object: "backup file",
        source,
    };
    let backup_id = vault_crypto::rng::bytes::<16>().map_err(crypto)?;
    let salt = vault_crypto::rng::bytes::<16>().map_err(crypto)?;
    let nonce_prefix = vault_crypto::rng::bytes::<19>().map_err(crypto)?;
    let (keys, check) = BackupKeys::derive(passphrase, &kdf, &salt, &backup_id)?;
    let created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let header = BackupHeader {
        flags: FLAG_GZIP | base.map_or(0, |_| FLAG_INCREMENTAL),
        vault_id: VaultId::from_bytes(source.vault_id),
        backup_id,
        created_ms,
        key_epoch: source.key_epoch,
        source_generation: source.generation,
        source_sequence: source.sequence,
        lineage: source.lineage,
        base_id: base.map_or([0; 16], |b| b.backup_id),
        base_generation: base.map_or(0, |b| b.source_generation),
        base_sequence: base.map_or(0, |b| b.source_sequence),
        kdf,
        salt,
        check,
        chunk_size: CHUNK_SIZE,
        nonce_prefix,
        comment: comment.to_string(),
    };
    // Refuse a header that could not be read back (comment too long) before anything is sealed.
    header.encode()?;
    Ok((header, keys))
}

/// Where the vault stood when the backup with this header was made: what an incremental
/// backup on it starts from.
pub fn cursor_of(header: &BackupHeader) -> vault_store::SnapshotCursor {
    vault_store::SnapshotCursor {
        vault_id: *header.vault_id.as_bytes(),
        key_epoch: header.key_epoch,
        generation: header.source_generation,
        sequence: header.source_sequence,
        lineage: header.lineage,
    }
}

/// Reads the header at the start of `input` (no passphrase needed: it is not secret); returns
/// it and its bytes.
///
/// # Errors
/// [`Error::Format`] for a header that is not a backup's (or is cut short, or newer),
/// [`Error::Io`].
pub fn read_header<R: Read>(input: &mut R) -> Result<(BackupHeader, Vec<u8>), Error> {
    // Exactly the header is read, never past it: what follows is the first chunk.
    let mut head = vec![0u8; vault_format::backup::HEADER_FIXED_LEN];
    let mut got = 0;
    while got < head.len() {
        let n = input.read(head.get_mut(got..).unwrap_or_default())?;
        if n == 0 {
            // Too short to say its own length: let the decoder name what is missing.
            head.truncate(got);
            BackupHeader::decode(&head)?;
            return Err(vault_format::Error::Truncated {
                object: "backup file",
                field: "header",
                needed: vault_format::backup::HEADER_FIXED_LEN,
                got,
            }
            .into());
        }
        got += n;
    }
    let len = BackupHeader::len_from_prefix(&head).unwrap_or(head.len());
    if head.len() < len {
        let mut rest = vec![0u8; len - head.len()];
        input
            .read_exact(&mut rest)
            .map_err(|_| vault_format::Error::Truncated {
                object: "backup file",
                field: "header",
                needed: len,
                got: head.len(),
            })?;
        head.extend_from_slice(&rest);
    }
    let (header, _) = BackupHeader::decode(&head)?;
    Ok((header, head))
}

/// Reads the header of the backup `input` yields, checks its KDF parameters against `limits`
/// before any work, derives its keys (one Argon2id run) and checks the passphrase; returns the
/// payload's reader.
///
/// # Errors
/// [`Error::KdfLimit`], [`Error::WrongPassphrase`], [`Error::Format`] for a header that is not a
/// backup's (or is cut short, or newer), [`Error::Io`].
pub fn open<R: Read>(
    mut input: R,
    passphrase: &[u8],
    limits: &Limits,
) -> Result<BackupReader<R>, Error> {
    let (header, head) = read_header(&mut input)?;
    if let Some(why) = limits.refusal(&header.kdf) {
        return Err(Error::KdfLimit(why));
    }
    let (keys, check) =
        BackupKeys::derive(passphrase, &header.kdf, &header.salt, &header.backup_id)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&check[..], &header.check[..])) {
        return Err(Error::WrongPassphrase);
    }
    Ok(container::Opener::new(input, &header, &head, &keys))
}

/// The payload reader [`open`] returns: the bytes read past the header, then the rest.
pub type BackupReader<R> = container::Opener<R>;

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/backup.rs`) and their corpus replay.
#[doc(hidden)]
pub mod fuzzing {
    use std::io::Read;

    /// The first byte picks: the header (0: decode, re-encode), the payload reader (1: a full
    /// backup's items to the end; 3: an incremental one's), or a whole container opened with the
    /// passphrase `fuzz` (2). Nothing may panic; a header that decodes re-encodes to the same
    /// bytes.
    pub fn backup(data: &[u8]) {
        let Some((which, rest)) = data.split_first() else {
            return;
        };
        match which % 4 {
            0 => {
                if let Ok((h, used)) = crate::BackupHeader::decode(rest) {
                    assert_eq!(
                        h.encode().ok().as_deref(),
                        rest.get(..used),
                        "backup header re-encoding differs"
                    );
                }
            }
            1 | 3 => {
                if let Ok(mut r) = crate::payload::PayloadReader::new(rest, which % 4 == 3) {
                    while let Ok(Some(_)) = r.next_item() {}
                }
            }
            _ => {
                let limits = crate::Limits {
                    max_memory_kib: 64,
                    max_cost: 64,
                };
                if let Ok(mut r) = crate::open(rest, b"fuzz", &limits) {
                    let mut sink = Vec::new();
                    let _ = r.by_ref().take(1 << 24).read_to_end(&mut sink);
                }
            }
        }
    }
}
