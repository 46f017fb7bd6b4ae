//! Sealing, the one place the engine builds the format objects it writes: payloads into record
//! envelopes under the record key, and envelopes into a frame chained by the chain MAC.

use vault_crypto::mac::MAC_LEN;
use vault_format::log::{Frame, FrameType};
use vault_format::payload::Payload;
use vault_format::{RecordEnvelope, VaultId};

use super::subkeys::Keys;
use crate::{Error, Result};

/// Where a frame sits in its log.
pub(crate) enum Chain<'a> {
    /// The first frame of a log, holding every live record (creation, compaction, rotation).
    Snapshot,
    /// A commit appended after the frame whose chain MAC this is.
    After(&'a [u8; MAC_LEN]),
}

/// Seals `payload` as the record numbered `sequence`.
pub(crate) fn record(
    keys: &Keys,
    vault_id: &VaultId,
    payload: &Payload,
    sequence: u64,
) -> Result<RecordEnvelope> {
    // A payload that does not encode was refused by the format's rules: bad input (exit 2 in the
    // CLI), never damage.
    let plain = payload
        .encode()
        .map_err(|e| Error::invalid("record", e.to_string()))?;
    Ok(RecordEnvelope::seal(
        &keys.record,
        vault_id,
        payload.kind(),
        sequence,
        &plain,
    )?)
}

/// Seals `payloads` as records numbered from `first_sequence` on.
pub(crate) fn records<'p>(
    keys: &Keys,
    vault_id: &VaultId,
    payloads: impl IntoIterator<Item = &'p Payload>,
    first_sequence: u64,
) -> Result<Vec<RecordEnvelope>> {
    (first_sequence..)
        .zip(payloads)
        .map(|(seq, p)| record(keys, vault_id, p, seq))
        .collect()
}

/// The frame of `generation` holding `records`, chained as `chain` says, under `keys`' epoch.
pub(crate) fn frame(
    keys: &Keys,
    vault_id: &VaultId,
    chain: Chain<'_>,
    generation: u64,
    records: Vec<RecordEnvelope>,
) -> Frame {
    let (frame_type, prev) = match chain {
        Chain::Snapshot => (FrameType::Snapshot, &[0; MAC_LEN]),
        Chain::After(mac) => (FrameType::Commit, mac),
    };
    Frame::seal(
        &keys.mac, vault_id, keys.epoch, prev, frame_type, generation, records,
    )
}

/// Splits records of the given encoded lengths (in sequence order) into the parts of a
/// snapshot: consecutive runs of at most `part_bytes` each (a larger record alone), and always at
/// least one part. A snapshot of any size is then written as frames within the format's bound on
/// one frame.
pub(crate) fn part_ranges(
    lens: impl IntoIterator<Item = usize>,
    part_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes, mut n) = (0, 0, 0);
    for (i, len) in lens.into_iter().enumerate() {
        if i > start && bytes + len > part_bytes {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += len;
        n = i + 1;
    }
    out.push(start..n);
    out
}

/// Seals the frames of a snapshot one at a time: the first part as a snapshot frame at the first
/// generation, each further part as a commit frame chained to the one before, one generation on.
/// Any reader applies them in order, so the log ends with the state one snapshot frame would
/// give.
pub(crate) struct SnapshotFrames<'a> {
    keys: &'a Keys,
    vault_id: &'a VaultId,
    next_generation: u64,
    last: Option<(u64, [u8; MAC_LEN])>,
}

impl<'a> SnapshotFrames<'a> {
    pub(crate) fn new(keys: &'a Keys, vault_id: &'a VaultId, first_generation: u64) -> Self {
        Self {
            keys,
            vault_id,
            next_generation: first_generation,
            last: None,
        }
    }

    /// The next frame, holding `records`.
    pub(crate) fn seal(&mut self, records: Vec<RecordEnvelope>) -> Frame {
        let chain = match &self.last {
            None => Chain::Snapshot,
            Some((_, mac)) => Chain::After(mac),
        };
        let f = frame(
            self.keys,
            self.vault_id,
            chain,
            self.next_generation,
            records,
        );
        self.last = Some((f.generation, f.mac));
        self.next_generation += 1;
        f
    }

    /// The generation and chain MAC of the last frame sealed.
    pub(crate) fn last(&self) -> Option<(u64, [u8; MAC_LEN])> {
        self.last
    }
}
