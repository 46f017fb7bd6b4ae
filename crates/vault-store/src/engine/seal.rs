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
