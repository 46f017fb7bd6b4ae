//! Sealing, the one place the engine builds the format objects it writes: payloads into record
//! envelopes under the record key, and envelopes into a frame chained by the chain MAC.

use vault_crypto::mac::MAC_LEN;
use vault_format::log::{Frame, FrameType};
use vault_format::payload::Payload;
use vault_format::{RecordEnvelope, VaultId};

use super::subkeys::Keys;
use crate::Result;

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
    Ok(RecordEnvelope::seal(
        &keys.record,
        vault_id,
        payload.kind(),
        sequence,
        &payload.encode()?,
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

/// Splits `records` (in sequence order) into the parts of a snapshot: consecutive runs of at most
/// `part_bytes` encoded bytes each (a larger record alone), and always at least one part. A
/// snapshot of any size is then written as frames within the format's bound on one frame.
pub(crate) fn snapshot_parts(
    records: Vec<RecordEnvelope>,
    part_bytes: usize,
) -> Vec<Vec<RecordEnvelope>> {
    let mut parts = vec![Vec::new()];
    let mut bytes = 0;
    for r in records {
        let len = r.encoded_len();
        if bytes + len > part_bytes && parts.last().is_some_and(|p| !p.is_empty()) {
            parts.push(Vec::new());
            bytes = 0;
        }
        bytes += len;
        if let Some(p) = parts.last_mut() {
            p.push(r);
        }
    }
    parts
}

/// The frames of a snapshot: the first part as a snapshot frame at `first_generation`, each
/// further part as a commit frame chained to the one before, one generation on. Any reader
/// applies them in order, so the log ends with the same state as one snapshot frame would give.
pub(crate) fn snapshot_frames(
    keys: &Keys,
    vault_id: &VaultId,
    first_generation: u64,
    parts: Vec<Vec<RecordEnvelope>>,
) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::with_capacity(parts.len());
    for (generation, part) in (first_generation..).zip(parts) {
        let chain = match frames.last() {
            None => Chain::Snapshot,
            Some(prev) => Chain::After(&prev.mac),
        };
        let f = frame(keys, vault_id, chain, generation, part);
        frames.push(f);
    }
    frames
}
