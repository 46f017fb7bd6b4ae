//! The rollback record (docs/FORMAT.md §6.5): the highest generation committed, MAC'd, kept
//! outside the vault directory so that putting back an old copy of the directory is noticed.
//!
//! ```text
//! file = preamble("VRBK", 1) ‖ vault id (16) ‖ slot 0 (56) ‖ slot 1 (56)        = 144 bytes
//! slot = counter (u64) ‖ key epoch (u32) ‖ reserved (u32, zero) ‖ generation (u64) ‖ MAC (32)
//! MAC  = HMAC-SHA256(rollback subkey, "vault v1 rollback" ‖ vault id ‖ slot bytes 0..24)
//! ```
//!
//! Writers overwrite the slot with the older counter, so a torn write leaves the other slot
//! intact.

use vault_crypto::derive::RollbackKey;
use vault_crypto::mac::{self, MAC_LEN};

use crate::preamble::{self, ObjectKind};
use crate::reader::Reader;
use crate::{Result, VaultId};

const KIND: ObjectKind = ObjectKind {
    name: "rollback record",
    tag: *b"VRBK",
    current_version: 1,
};
const LABEL: &[u8] = b"vault v1 rollback";

/// Length of one slot.
pub const ROLLBACK_SLOT_LEN: usize = 56;
/// Offset of slot 0 in the file.
pub const ROLLBACK_SLOTS_OFFSET: usize = 32;
/// Length of the whole file.
pub const ROLLBACK_FILE_LEN: usize = ROLLBACK_SLOTS_OFFSET + 2 * ROLLBACK_SLOT_LEN;

/// One slot of the record, as read (its MAC not yet checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackSlot {
    /// Write counter; the slot with the higher valid counter is current.
    pub counter: u64,
    /// Key epoch of the vault when written (selects the MAC key).
    pub key_epoch: u32,
    /// Highest committed generation.
    pub generation: u64,
    /// MAC under the rollback subkey of that epoch's master key.
    pub mac: [u8; MAC_LEN],
}

impl RollbackSlot {
    /// A slot with its MAC computed.
    pub fn seal(
        key: &RollbackKey,
        vault_id: &VaultId,
        counter: u64,
        key_epoch: u32,
        generation: u64,
    ) -> Self {
        let mut s = Self {
            counter,
            key_epoch,
            generation,
            mac: [0; MAC_LEN],
        };
        s.mac = *mac::hmac_sha256(
            key.key().expose_secret(),
            &[LABEL, vault_id.as_bytes(), &s.body()],
        )
        .as_bytes();
        s
    }

    fn body(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.counter.to_le_bytes());
        b[8..12].copy_from_slice(&self.key_epoch.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b
    }

    /// Checks the MAC.
    pub fn verify(&self, key: &RollbackKey, vault_id: &VaultId) -> bool {
        mac::verify(
            key.key().expose_secret(),
            &[LABEL, vault_id.as_bytes(), &self.body()],
            &self.mac,
        )
        .is_ok()
    }

    /// The slot's 56 bytes.
    pub fn encode(&self) -> [u8; ROLLBACK_SLOT_LEN] {
        let mut out = [0u8; ROLLBACK_SLOT_LEN];
        out[..24].copy_from_slice(&self.body());
        out[24..].copy_from_slice(&self.mac);
        out
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let counter = r.u64("counter")?;
        let key_epoch = r.u32("key epoch")?;
        r.zero("reserved", 4)?;
        let generation = r.u64("generation")?;
        let mac = r.array("MAC")?;
        Ok(Self {
            counter,
            key_epoch,
            generation,
            mac,
        })
    }
}

/// Where slot `index` (0 or 1) starts in a record file: a slot is rewritten in place there.
pub fn slot_offset(index: usize) -> u64 {
    (ROLLBACK_SLOTS_OFFSET + index * ROLLBACK_SLOT_LEN) as u64
}

/// Encodes a whole record file.
pub fn encode_rollback_file(vault_id: &VaultId, slots: [&RollbackSlot; 2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ROLLBACK_FILE_LEN);
    preamble::write(&mut out, KIND);
    out.extend_from_slice(vault_id.as_bytes());
    for s in slots {
        out.extend_from_slice(&s.encode());
    }
    out
}

/// Decodes a record file: the vault id and both slots. A slot that does not parse, or that the
/// file was cut short inside, is `None`.
///
/// # Errors
/// A precise [`crate::Error`] if the preamble or vault id is malformed or the file has the wrong length.
pub fn decode_rollback_file(bytes: &[u8]) -> Result<(VaultId, [Option<RollbackSlot>; 2])> {
    let mut r = Reader::new(KIND.name, bytes);
    preamble::read(&mut r, KIND)?;
    let id = VaultId::from_bytes(r.array("vault id")?);
    // A slot cut short (the file truncated after the vault id) is a slot that does not parse:
    // the other one may still serve. A file longer than the format is refused.
    let mut slot = || {
        let n = r.remaining().min(ROLLBACK_SLOT_LEN);
        let bytes = r.bytes("slot", n).ok()?;
        let mut s = Reader::new(KIND.name, bytes);
        let decoded = RollbackSlot::decode(&mut s).ok()?;
        s.finish().ok()?;
        Some(decoded)
    };
    let slots = [slot(), slot()];
    r.finish()?;
    Ok((id, slots))
}
