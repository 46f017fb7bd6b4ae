//! The log (docs/FORMAT.md §6): a file header followed by length-prefixed commit frames, each
//! holding record envelopes and a MAC that chains it to the frame before.
//!
//! ```text
//! log file  = preamble("VLOG", 1) ‖ key epoch (u32) ‖ reserved (u32, zero) ‖ frame*
//! frame     = body length B (u32) ‖ body
//! body      = frame type (u8: 1 commit, 2 snapshot) ‖ reserved (3, zero) ‖ generation (u64)
//!             ‖ record count N (u32) ‖ N × envelope ‖ chain MAC (32)
//! chain MAC = HMAC-SHA256(record-MAC subkey, "vault v1 commit" ‖ vault id ‖ key epoch (u32)
//!             ‖ previous frame's chain MAC (32 zero bytes for a snapshot) ‖ body without the MAC)
//! ```

use vault_crypto::derive::ChainMacKey;
use vault_crypto::mac::{self, MAC_LEN};

use crate::preamble::{self, ObjectKind};
use crate::reader::Reader;
use crate::wire::wire_enum;
use crate::{Error, RecordEnvelope, Result, VaultId};

const KIND: ObjectKind = ObjectKind {
    name: "vault log",
    tag: *b"VLOG",
    current_version: 1,
};
const FRAME: &str = "log frame";
const CHAIN_LABEL: &[u8] = b"vault v1 commit";

/// Length of the log file header.
pub const LOG_HEADER_LEN: usize = 24;
/// Length of a frame's length prefix.
pub const FRAME_PREFIX_LEN: usize = 4;
/// Largest frame body: 256 MiB (a batch of many records, or a snapshot of a large vault).
pub const MAX_FRAME_LEN: usize = 256 << 20;
/// Fixed part of a frame body before the records.
pub const FRAME_FIXED_LEN: usize = 16;

/// Encodes the log file header for `key_epoch`.
pub fn encode_log_header(key_epoch: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_HEADER_LEN);
    preamble::write(&mut out, KIND);
    out.extend_from_slice(&key_epoch.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out
}

/// Decodes a log file header; returns the key epoch.
///
/// # Errors
/// A precise [`Error`] for a malformed header or a newer version.
pub fn decode_log_header(bytes: &[u8]) -> Result<u32> {
    let mut r = Reader::new(KIND.name, bytes);
    preamble::read(&mut r, KIND)?;
    let epoch = r.u32("key epoch")?;
    r.zero("reserved", 4)?;
    r.finish()?;
    Ok(epoch)
}

wire_enum! {
    /// Whether a frame starts a log (a snapshot, written by creation and compaction) or adds to it.
    pub enum FrameType {
        /// Records appended by one commit.
        Commit = 1,
        /// The whole live state; only as the first frame of a log.
        Snapshot = 2,
    }
}

/// A decoded frame body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Commit or snapshot.
    pub frame_type: FrameType,
    /// Strictly increasing across the vault's life (snapshots keep the generation they compact).
    pub generation: u64,
    /// The records.
    pub records: Vec<RecordEnvelope>,
    /// The chain MAC.
    pub mac: [u8; MAC_LEN],
}

impl Frame {
    /// Builds a frame and computes its chain MAC.
    pub fn seal(
        mac_key: &ChainMacKey,
        vault_id: &VaultId,
        key_epoch: u32,
        prev_mac: &[u8; MAC_LEN],
        frame_type: FrameType,
        generation: u64,
        records: Vec<RecordEnvelope>,
    ) -> Self {
        let mut f = Self {
            frame_type,
            generation,
            records,
            mac: [0; MAC_LEN],
        };
        let body = f.encode_unauthenticated();
        f.mac = chain_mac(mac_key, vault_id, key_epoch, prev_mac, frame_type, &body);
        f
    }

    /// The body without the MAC.
    fn encode_unauthenticated(&self) -> Vec<u8> {
        let len = FRAME_FIXED_LEN
            + self
                .records
                .iter()
                .map(RecordEnvelope::encoded_len)
                .sum::<usize>()
            + MAC_LEN;
        let mut out = Vec::with_capacity(len);
        out.push(self.frame_type.to_byte());
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        for r in &self.records {
            r.encode_into(&mut out);
        }
        out
    }

    /// Encodes the frame body (without the length prefix).
    ///
    /// # Errors
    /// [`Error::TooLong`] if the body exceeds [`MAX_FRAME_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = self.encode_unauthenticated();
        out.extend_from_slice(&self.mac);
        if out.len() > MAX_FRAME_LEN {
            return Err(Error::TooLong {
                object: FRAME,
                field: "frame",
                len: out.len() as u64,
                max: MAX_FRAME_LEN as u64,
            });
        }
        Ok(out)
    }

    /// Decodes a frame body (structure only; see [`Frame::verify`]).
    ///
    /// # Errors
    /// A precise [`Error`] for anything malformed.
    pub fn decode(body: &[u8]) -> Result<Self> {
        // One parser for both: a whole decode is a frame read in place, every record collected.
        let view = FrameView::parse(body)?;
        let records = view
            .records()
            .map(|r| r.map(|(_, env)| env))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            frame_type: view.frame_type,
            generation: view.generation,
            records,
            mac: view.mac,
        })
    }

    /// Verifies the chain MAC of the raw `body` this frame was decoded from.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the frame was modified, reordered, moved between vaults or
    /// does not follow `prev_mac`.
    pub fn verify(
        &self,
        body: &[u8],
        mac_key: &ChainMacKey,
        vault_id: &VaultId,
        key_epoch: u32,
        prev_mac: &[u8; MAC_LEN],
    ) -> Result<()> {
        verify_chain(
            body,
            self.frame_type,
            &self.mac,
            mac_key,
            vault_id,
            key_epoch,
            prev_mac,
        )
    }
}

fn verify_chain(
    body: &[u8],
    frame_type: FrameType,
    mac: &[u8; MAC_LEN],
    mac_key: &ChainMacKey,
    vault_id: &VaultId,
    key_epoch: u32,
    prev_mac: &[u8; MAC_LEN],
) -> Result<()> {
    let unauth = body
        .get(..body.len().saturating_sub(MAC_LEN))
        .unwrap_or_default();
    let zero = [0u8; MAC_LEN];
    let prev = if frame_type == FrameType::Snapshot {
        &zero
    } else {
        prev_mac
    };
    mac::verify(
        mac_key.key().expose_secret(),
        &[
            CHAIN_LABEL,
            vault_id.as_bytes(),
            &key_epoch.to_le_bytes(),
            prev,
            unauth,
        ],
        mac,
    )
    .map_err(|_| Error::Authentication { object: FRAME })
}

/// A frame body read in place: its fixed part and chain MAC decoded, its records decoded one at
/// a time by [`FrameView::records`], so that a reader of a large frame holds one record at a time
/// rather than a copy of every record. [`Frame::decode`] is this, with every record collected.
#[derive(Clone, Copy, Debug)]
pub struct FrameView<'a> {
    /// Commit or snapshot.
    pub frame_type: FrameType,
    /// The frame's generation.
    pub generation: u64,
    /// The chain MAC.
    pub mac: [u8; MAC_LEN],
    count: u32,
    body: &'a [u8],
}

impl<'a> FrameView<'a> {
    /// Decodes the fixed part and the MAC of `body`; the records are checked as they are read.
    ///
    /// # Errors
    /// A precise [`Error`] for a malformed fixed part.
    pub fn parse(body: &'a [u8]) -> Result<Self> {
        if body.len() > MAX_FRAME_LEN {
            return Err(Error::TooLong {
                object: FRAME,
                field: "frame",
                len: body.len() as u64,
                max: MAX_FRAME_LEN as u64,
            });
        }
        let mut r = Reader::new(FRAME, body);
        let frame_type = FrameType::from_byte(r.u8("frame type")?)
            .ok_or_else(|| r.invalid("frame type", "unknown frame type"))?;
        r.zero("reserved", 3)?;
        let generation = r.u64("generation")?;
        if generation == 0 {
            return Err(r.invalid("generation", "generations start at 1"));
        }
        let count = r.u32("record count")?;
        if r.remaining() < MAC_LEN {
            return Err(r.invalid("chain MAC", "the frame ends before its chain MAC"));
        }
        let max_records = (r.remaining() - MAC_LEN) / (crate::ENVELOPE_FIXED_LEN + 16);
        if count as usize > max_records {
            return Err(r.invalid(
                "record count",
                format!("{count} records cannot fit in {} bytes", r.remaining()),
            ));
        }
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(body.get(body.len() - MAC_LEN..).unwrap_or(&[0; MAC_LEN]));
        Ok(Self {
            frame_type,
            generation,
            mac,
            count,
            body,
        })
    }

    /// How many records the frame says it holds.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Verifies the chain MAC, as [`Frame::verify`].
    ///
    /// # Errors
    /// [`Error::Authentication`].
    pub fn verify(
        &self,
        mac_key: &ChainMacKey,
        vault_id: &VaultId,
        key_epoch: u32,
        prev_mac: &[u8; MAC_LEN],
    ) -> Result<()> {
        verify_chain(
            self.body,
            self.frame_type,
            &self.mac,
            mac_key,
            vault_id,
            key_epoch,
            prev_mac,
        )
    }

    /// The records, each with the offset in the body where it starts; after the last, an error
    /// if the records do not fill the space before the MAC exactly.
    pub fn records(&self) -> FrameRecords<'a> {
        let end = self.body.len().saturating_sub(MAC_LEN);
        FrameRecords {
            reader: Reader::new(
                FRAME,
                self.body.get(FRAME_FIXED_LEN..end).unwrap_or_default(),
            ),
            left: self.count,
            done: false,
        }
    }
}

/// The records of a [`FrameView`], decoded one at a time.
pub struct FrameRecords<'a> {
    reader: Reader<'a>,
    left: u32,
    done: bool,
}

impl Iterator for FrameRecords<'_> {
    /// The record and the offset of its first byte in the frame body.
    type Item = Result<(usize, RecordEnvelope)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.left == 0 {
            self.done = true;
            return (self.reader.remaining() != 0).then(|| {
                Err(self.reader.invalid(
                    "chain MAC",
                    "bytes between the last record and the chain MAC",
                ))
            });
        }
        self.left -= 1;
        let start = FRAME_FIXED_LEN + self.reader.position();
        let r = RecordEnvelope::decode_from(&mut self.reader).map(|env| (start, env));
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

fn chain_mac(
    mac_key: &ChainMacKey,
    vault_id: &VaultId,
    key_epoch: u32,
    prev_mac: &[u8; MAC_LEN],
    frame_type: FrameType,
    body_without_mac: &[u8],
) -> [u8; MAC_LEN] {
    let zero = [0u8; MAC_LEN];
    let prev = if frame_type == FrameType::Snapshot {
        &zero
    } else {
        prev_mac
    };
    *mac::hmac_sha256(
        mac_key.key().expose_secret(),
        &[
            CHAIN_LABEL,
            vault_id.as_bytes(),
            &key_epoch.to_le_bytes(),
            prev,
            body_without_mac,
        ],
    )
    .as_bytes()
}

/// The unit in which a file system writes a file's data back to the device: after a crash, each
/// such page of an interrupted append is either on disk or reads as zeros.
pub const PAGE_LEN: u64 = 4096;

/// The longest tail an interrupted append can leave: one frame with its length prefix.
pub const MAX_TORN_TAIL_LEN: u64 = (FRAME_PREFIX_LEN + MAX_FRAME_LEN) as u64;

/// What the bytes after the last authenticated frame of a log are (docs/FORMAT.md, "Torn tail
/// or damage").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Nothing follows the last authenticated frame.
    Clean,
    /// What an interrupted append leaves: discarded by the next writer.
    Torn,
    /// Anything else: a complete frame that does not authenticate, or more than one frame's worth
    /// of bytes. Tampering or corruption; never discarded.
    Damaged,
}

/// The body length a frame's length prefix announces, if it is a possible one (1..=
/// [`MAX_FRAME_LEN`]).
pub fn frame_len_from_prefix(prefix: [u8; FRAME_PREFIX_LEN]) -> Option<usize> {
    let len = u32::from_le_bytes(prefix) as usize;
    (1..=MAX_FRAME_LEN).contains(&len).then_some(len)
}

/// Classifies `tail`, the bytes from the end of the last authenticated frame (at file offset
/// `offset`) to the end of the file.
///
/// An append is one write of a length-prefixed frame at the end of the file, synced before it is
/// acknowledged, and only one is ever in flight. A crash can therefore leave, after the last
/// good frame, at most one frame that is either cut short (the file size covers part of it) or
/// whose pages were not all written back (they read as zeros). So the tail is [`Tail::Torn`]
/// when it is at most one frame long and either announces more bytes than it holds or has a
/// page-aligned stretch that is all zeros; it is [`Tail::Damaged`] otherwise. A complete frame
/// that fails authentication is therefore damage, not a torn write. (Cutting the file short is
/// indistinguishable from a crash; only the rollback record can tell that committed data is
/// missing.)
pub fn classify_tail(tail: &[u8], offset: u64) -> Tail {
    if tail.is_empty() {
        return Tail::Clean;
    }
    if tail.len() as u64 > MAX_TORN_TAIL_LEN {
        return Tail::Damaged;
    }
    let incomplete = match tail.first_chunk::<FRAME_PREFIX_LEN>() {
        None => true,
        Some(prefix) => {
            let announced = u32::from_le_bytes(*prefix) as usize;
            announced == 0 || FRAME_PREFIX_LEN + announced > tail.len()
        }
    };
    if incomplete || has_zero_page(tail, offset) {
        Tail::Torn
    } else {
        Tail::Damaged
    }
}

/// Whether some page of the file (cut to the part of it inside `bytes`, which start at file
/// offset `offset`) is all zeros.
fn has_zero_page(bytes: &[u8], offset: u64) -> bool {
    let mut rest = bytes;
    let mut at = offset;
    while !rest.is_empty() {
        let to_boundary = (PAGE_LEN - at % PAGE_LEN) as usize;
        let (page, next) = rest.split_at(to_boundary.min(rest.len()));
        if page.iter().all(|b| *b == 0) {
            return true;
        }
        at += page.len() as u64;
        rest = next;
    }
    false
}

#[cfg(test)]
mod tail_tests {
    use super::*;

    #[test]
    fn tails() {
        assert_eq!(classify_tail(&[], 100), Tail::Clean);
        // Shorter than a prefix, zero prefix, a prefix announcing more than is there: torn.
        assert_eq!(classify_tail(&[7, 0], 100), Tail::Torn);
        assert_eq!(classify_tail(&[0, 0, 0, 0, 1, 2], 100), Tail::Torn);
        assert_eq!(classify_tail(&[9, 0, 0, 0, 1, 2], 100), Tail::Torn);
        // A complete frame with no zero page: damage.
        let mut frame = vec![4, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(classify_tail(&frame, 100), Tail::Damaged);
        // A complete frame followed by more: damage.
        frame.extend_from_slice(&[5, 6]);
        assert_eq!(classify_tail(&frame, 100), Tail::Damaged);
        // A complete frame whose second page never reached the disk: torn.
        let mut big = vec![1u8; 6000];
        big[..4].copy_from_slice(&5996u32.to_le_bytes());
        assert_eq!(classify_tail(&big, 0), Tail::Damaged);
        for b in &mut big[4096..] {
            *b = 0;
        }
        assert_eq!(classify_tail(&big, 0), Tail::Torn);
        // The same zeros not aligned to a page: damage.
        assert_eq!(classify_tail(&big, 1000), Tail::Damaged);
    }
}
