//! The vault header file: vault id, key epoch and a table of key slots, MAC'd under the master
//! key and check-summed so accidental corruption is told apart from a wrong passphrase.
//!
//! ```text
//! offset        size    field
//!      0          16    preamble: magic, "VHDR", version 1, flags 0
//!     16          16    vault id
//!     32           4    key epoch (u32 LE): bumped by every master-key rotation
//!     36           2    slot count N (u16 LE, 1..=MAX_KEY_SLOTS)
//!     38           2    reserved, zero
//!     40           …    N slot entries: id (u16) ‖ kind (u8) ‖ reserved (u8, zero)
//!                       ‖ body length L (u16, 1..=MAX_SLOT_BODY_LEN) ‖ body (L bytes)
//!      …          32    header MAC: HMAC-SHA256(chain-MAC subkey, "vault v1 header" ‖ all before)
//!      …          32    checksum: SHA-256(all before)
//! ```
//!
//! Kind 1 is a passphrase through Argon2id ([`crate::passphrase_slot`]); kind 2 a team member's
//! key pair, its private key under their passphrase ([`crate::member_slot`]). A slot of a kind this
//! build does not know is kept byte for byte (and never tried), so a header a newer version wrote
//! still opens with a passphrase slot and is rewritten without losing the other slot.

use vault_crypto::derive::ChainMacKey;
use vault_crypto::hash::{self, SHA256_LEN};
use vault_crypto::kdf::KdfParams;
use vault_crypto::mac::{self, MAC_LEN};
use vault_crypto::{Key256, SecretBytes};

use crate::member_slot::{KIND_MEMBER, MemberSlot, MemberState, NewMember};
use crate::passphrase_slot::{
    FixedPassphraseSlot, KIND_PASSPHRASE, PASSPHRASE_BODY_LEN, PassphraseSlot,
};
use crate::preamble::{self, ObjectKind, PREAMBLE_LEN};
use crate::reader::Reader;
use crate::{Error, Result, VaultId};

pub(crate) const KIND: ObjectKind = ObjectKind {
    name: "vault header",
    tag: *b"VHDR",
    current_version: 1,
};

/// Most key slots a header may hold (team vaults need one per member).
pub const MAX_KEY_SLOTS: usize = 256;
/// Longest body of one key slot.
pub const MAX_SLOT_BODY_LEN: usize = 1024;
/// Length of a slot entry's header (id, kind, reserved, body length).
pub const SLOT_ENTRY_HEADER_LEN: usize = 6;
/// Encoded size of one passphrase slot entry.
pub const KEY_SLOT_LEN: usize = SLOT_ENTRY_HEADER_LEN + PASSPHRASE_BODY_LEN;
/// Size of the fixed part before the slots.
pub const HEADER_FIXED_LEN: usize = 40;
/// Largest possible header.
pub const MAX_HEADER_LEN: usize = HEADER_FIXED_LEN
    + MAX_KEY_SLOTS * (SLOT_ENTRY_HEADER_LEN + MAX_SLOT_BODY_LEN)
    + MAC_LEN
    + SHA256_LEN;

const HEADER_MAC_LABEL: &[u8] = b"vault v1 header";

/// What a key slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotBody {
    /// A passphrase through Argon2id (kind 1).
    Passphrase(PassphraseSlot),
    /// A team member's key pair (kind 2).
    Member(MemberSlot),
    /// A kind this build does not know: kept as it is, never tried.
    Unknown {
        /// The kind byte.
        kind: u8,
        /// The body, as read.
        body: Vec<u8>,
    },
}

/// One way to unlock the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySlot {
    /// Identifies the slot within its header.
    pub id: u16,
    /// The slot's kind and contents.
    pub body: SlotBody,
}

/// The decoded vault header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultHeader {
    /// Random identifier, bound into every record's associated data.
    pub vault_id: VaultId,
    /// Incremented by each master-key rotation; names the log file written under that key.
    pub key_epoch: u32,
    /// One to eight key slots, ids unique.
    pub slots: Vec<KeySlot>,
    /// HMAC-SHA256 over everything before it, under the master key's header MAC subkey.
    pub mac: [u8; MAC_LEN],
}

impl KeySlot {
    /// Creates a passphrase slot: derives a KEK from `passphrase` with a fresh salt and wraps
    /// `master`.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG or Argon2 fails.
    pub fn create(
        id: u16,
        passphrase: &[u8],
        kdf_params: KdfParams,
        master: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Self> {
        Ok(Self {
            id,
            body: SlotBody::Passphrase(PassphraseSlot::create(
                id, passphrase, kdf_params, master, vault_id, key_epoch,
            )?),
        })
    }

    /// Creates a member slot: a new key pair for the member, its private key sealed under their
    /// passphrase (or an invitation code) and `master` wrapped to it.
    ///
    /// # Errors
    /// [`Error::InvalidField`] for a bad name; [`Error::Crypto`] if the RNG or Argon2 fails.
    pub fn create_member(
        id: u16,
        new: &NewMember<'_>,
        master: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Self> {
        Ok(Self {
            id,
            body: SlotBody::Member(MemberSlot::create(id, new, master, vault_id, key_epoch)?),
        })
    }

    /// A member slot's contents.
    pub fn member_slot(&self) -> Option<&MemberSlot> {
        match &self.body {
            SlotBody::Member(m) => Some(m),
            _ => None,
        }
    }

    /// The member's name and state, for a member slot.
    pub fn member(&self) -> Option<(&str, MemberState)> {
        match &self.body {
            SlotBody::Member(m) => Some((&m.name, m.state)),
            _ => None,
        }
    }

    /// Makes a member slot a removed member's: it opens nothing from now on (the wrapped keys
    /// are zeroed), and the next master-key rotation drops it.
    ///
    /// # Errors
    /// [`Error::InvalidField`] if this is not a member slot.
    pub fn mark_member_removed(&mut self) -> Result<()> {
        let id = self.id;
        match &mut self.body {
            SlotBody::Member(m) => {
                m.mark_removed();
                Ok(())
            }
            _ => Err(Error::InvalidField {
                object: KIND.name,
                field: "slot kind",
                reason: format!("slot {id} is not a member slot"),
            }),
        }
    }

    /// Wraps `master` of `key_epoch` to a member slot's public key, replacing the wrap it held:
    /// a rotation carries each member over this way, without their passphrase.
    ///
    /// # Errors
    /// [`Error::InvalidField`] if this is not a member slot; [`Error::Crypto`] if the RNG fails.
    pub fn rewrap_member(
        &mut self,
        master: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<()> {
        let id = self.id;
        match &mut self.body {
            SlotBody::Member(m) => m.rewrap(id, master, vault_id, key_epoch),
            _ => Err(Error::InvalidField {
                object: KIND.name,
                field: "slot kind",
                reason: format!("slot {id} is not a member slot"),
            }),
        }
    }

    /// Builds a passphrase slot from an already-derived KEK and fixed salt (and optionally a fixed
    /// nonce): for worked examples and tests.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG fails.
    pub fn create_with(fixed: &FixedPassphraseSlot<'_>) -> Result<Self> {
        Ok(Self {
            id: fixed.id,
            body: SlotBody::Passphrase(PassphraseSlot::with_kek(fixed)?),
        })
    }

    /// The Argon2id parameters, for a passphrase slot.
    pub fn kdf(&self) -> Option<KdfParams> {
        match &self.body {
            SlotBody::Passphrase(p) => Some(p.kdf),
            SlotBody::Member(m) => Some(m.kdf),
            SlotBody::Unknown { .. } => None,
        }
    }

    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match &self.body {
            SlotBody::Passphrase(_) => KIND_PASSPHRASE,
            SlotBody::Member(_) => KIND_MEMBER,
            SlotBody::Unknown { kind, .. } => *kind,
        }
    }

    /// Tries to unlock this slot with `passphrase` (runs Argon2id).
    ///
    /// # Errors
    /// [`Error::Authentication`] if the passphrase is wrong, the slot was modified, or it is not
    /// a passphrase slot; [`Error::Crypto`] if Argon2 fails.
    pub fn unlock(&self, passphrase: &[u8], vault_id: &VaultId, key_epoch: u32) -> Result<Key256> {
        match &self.body {
            SlotBody::Passphrase(p) => p.unlock(self.id, passphrase, vault_id, key_epoch),
            SlotBody::Member(m) => m.unlock(self.id, passphrase, vault_id, key_epoch),
            SlotBody::Unknown { .. } => Err(Error::Authentication { object: "key slot" }),
        }
    }

    /// Unwraps the master key with an already-derived KEK (a passphrase slot).
    ///
    /// # Errors
    /// [`Error::Authentication`] if the KEK does not open the slot.
    pub fn unlock_with_kek(
        &self,
        kek: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Key256> {
        match &self.body {
            SlotBody::Passphrase(p) => p.unlock_with_kek(self.id, kek, vault_id, key_epoch),
            SlotBody::Member(m) => m.unlock_with_kek(self.id, kek, vault_id, key_epoch),
            SlotBody::Unknown { .. } => Err(Error::Authentication { object: "key slot" }),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(PASSPHRASE_BODY_LEN);
        match &self.body {
            SlotBody::Passphrase(p) => p.encode_body(&mut body),
            SlotBody::Member(m) => m.encode_body(&mut body),
            SlotBody::Unknown { body: b, .. } => body.extend_from_slice(b),
        }
        encode_entry_header(out, self.id, self.kind(), body.len());
        out.extend_from_slice(&body);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let id = r.u16("slot id")?;
        let kind = r.u8("slot kind")?;
        r.zero("slot reserved", 1)?;
        let len = usize::from(r.u16("slot body length")?);
        if !(1..=MAX_SLOT_BODY_LEN).contains(&len) {
            return Err(r.invalid(
                "slot body length",
                format!("{len} is outside 1..={MAX_SLOT_BODY_LEN}"),
            ));
        }
        let body = r.bytes("slot body", len)?;
        let body = match kind {
            0 => return Err(r.invalid("slot kind", "kind 0 does not exist")),
            KIND_PASSPHRASE if len != PASSPHRASE_BODY_LEN => {
                return Err(r.invalid(
                    "slot body length",
                    format!("a passphrase slot is {PASSPHRASE_BODY_LEN} bytes, not {len}"),
                ));
            }
            KIND_PASSPHRASE => SlotBody::Passphrase(PassphraseSlot::decode_body(body)?),
            KIND_MEMBER => SlotBody::Member(MemberSlot::decode_body(body)?),
            other => SlotBody::Unknown {
                kind: other,
                body: body.to_vec(),
            },
        };
        Ok(Self { id, body })
    }
}

/// Appends a slot entry's header: id, kind, reserved, body length.
pub(crate) fn encode_entry_header(out: &mut Vec<u8>, id: u16, kind: u8, body_len: usize) {
    out.extend_from_slice(&id.to_le_bytes());
    out.push(kind);
    out.push(0);
    // Body lengths are bounded by MAX_SLOT_BODY_LEN, far below u16::MAX.
    out.extend_from_slice(&u16::try_from(body_len).unwrap_or(u16::MAX).to_le_bytes());
}

impl VaultHeader {
    /// A new header for `master` with one slot, MAC computed.
    ///
    /// # Errors
    /// [`Error::InvalidField`] if `slots` is empty, too long, or has duplicate ids.
    pub fn new(
        vault_id: VaultId,
        key_epoch: u32,
        slots: Vec<KeySlot>,
        master: &Key256,
    ) -> Result<Self> {
        let mut h = Self {
            vault_id,
            key_epoch,
            slots,
            mac: [0; MAC_LEN],
        };
        h.check_slots()?;
        h.seal(master);
        Ok(h)
    }

    /// The members whose slots are marked removed: removals whose master-key rotation has not
    /// finished.
    pub fn removed_members(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter_map(KeySlot::member)
            .filter(|(_, state)| *state == MemberState::Removed)
            .map(|(n, _)| n)
            .collect()
    }

    /// Recomputes the MAC after the slots or epoch changed.
    pub fn seal(&mut self, master: &Key256) {
        self.mac = *self.compute_mac(master).as_bytes();
    }

    /// Verifies the header MAC under the (just unwrapped) master key.
    ///
    /// # Errors
    /// [`Error::Authentication`] if any header byte was changed by someone without the key.
    pub fn verify_mac(&self, master: &Key256) -> Result<()> {
        self.compute_mac(master)
            .verify_against(&self.mac)
            .map_err(|_| Error::Authentication { object: KIND.name })
    }

    /// Tries each slot in turn with `passphrase`; returns the master key and the slot id that
    /// opened, after verifying the header MAC.
    ///
    /// # Errors
    /// [`Error::Authentication`] with object "key slot" if no slot opens (a wrong passphrase);
    /// [`Error::Authentication`] with object "vault header" if a slot opens but the MAC fails.
    pub fn unlock(&self, passphrase: &SecretBytes) -> Result<(Key256, u16)> {
        for slot in &self.slots {
            match slot.unlock(passphrase.expose_secret(), &self.vault_id, self.key_epoch) {
                Ok(master) => {
                    self.verify_mac(&master)?;
                    return Ok((master, slot.id));
                }
                Err(Error::Authentication { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Authentication { object: "key slot" })
    }

    /// Encodes the header (docs/FORMAT.md, "Vault header").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_unauthenticated();
        out.extend_from_slice(&self.mac);
        let sum = hash::sha256(&[&out]);
        out.extend_from_slice(&sum);
        out
    }

    /// Decodes and structurally validates a header: magic, version, checksum, bounds, slot ids.
    /// Authenticity is checked later, by [`VaultHeader::unlock`].
    ///
    /// # Errors
    /// A precise [`Error`] for every malformed input.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(KIND.name, bytes);
        preamble::read(&mut r, KIND)?;
        // The checksum is checked before any field is interpreted, so a flipped bit reads as
        // corruption rather than as, say, a wrong passphrase.
        let body_len = bytes
            .len()
            .checked_sub(SHA256_LEN)
            .ok_or(Error::Truncated {
                object: KIND.name,
                field: "checksum",
                needed: HEADER_FIXED_LEN + KEY_SLOT_LEN + MAC_LEN + SHA256_LEN,
                got: bytes.len(),
            })?;
        let (body, sum) = bytes.split_at(body_len);
        if body_len >= PREAMBLE_LEN && hash::sha256(&[body]).as_slice() != sum {
            return Err(Error::ChecksumMismatch { object: KIND.name });
        }
        let vault_id = VaultId::from_bytes(r.array("vault id")?);
        let key_epoch = r.u32("key epoch")?;
        let count = usize::from(r.u16("slot count")?);
        if !(1..=MAX_KEY_SLOTS).contains(&count) {
            return Err(r.invalid(
                "slot count",
                format!("{count} is outside 1..={MAX_KEY_SLOTS}"),
            ));
        }
        r.zero("reserved", 2)?;
        // The slot table is everything between the fixed part and the MAC and checksum: a count
        // larger than the entries present runs out of table (truncated), never into the MAC.
        let table_len =
            r.remaining()
                .checked_sub(MAC_LEN + SHA256_LEN)
                .ok_or(Error::Truncated {
                    object: KIND.name,
                    field: "key slot table",
                    needed: MAC_LEN + SHA256_LEN,
                    got: r.remaining(),
                })?;
        let mut table = Reader::new(KIND.name, r.bytes("key slot table", table_len)?);
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            slots.push(KeySlot::decode(&mut table)?);
        }
        table.finish()?;
        let mac = r.array("header MAC")?;
        let _checksum: [u8; SHA256_LEN] = r.array("checksum")?;
        r.finish()?;
        let header = Self {
            vault_id,
            key_epoch,
            slots,
            mac,
        };
        header.check_slots()?;
        Ok(header)
    }

    /// The slot with id `id`.
    pub fn slot(&self, id: u16) -> Option<&KeySlot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// The lowest slot id not in use, if any slot is free.
    pub fn free_slot_id(&self) -> Option<u16> {
        if self.slots.len() >= MAX_KEY_SLOTS {
            return None;
        }
        (0..=u16::MAX).find(|id| self.slot(*id).is_none())
    }

    fn check_slots(&self) -> Result<()> {
        let invalid = |reason: String| Error::InvalidField {
            object: KIND.name,
            field: "key slots",
            reason,
        };
        if self.slots.is_empty() || self.slots.len() > MAX_KEY_SLOTS {
            return Err(invalid(format!(
                "{} slots; 1..={MAX_KEY_SLOTS} allowed",
                self.slots.len()
            )));
        }
        for (i, s) in self.slots.iter().enumerate() {
            if self.slots.iter().skip(i + 1).any(|o| o.id == s.id) {
                return Err(invalid(format!("slot id {} appears twice", s.id)));
            }
            if let Some((name, _)) = s.member()
                && self
                    .slots
                    .iter()
                    .skip(i + 1)
                    .any(|o| o.member().is_some_and(|(n, _)| n == name))
            {
                return Err(invalid(format!("member {name} has two slots")));
            }
        }
        Ok(())
    }

    fn encode_unauthenticated(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_FIXED_LEN + self.slots.len() * KEY_SLOT_LEN);
        preamble::write(&mut out, KIND);
        out.extend_from_slice(self.vault_id.as_bytes());
        out.extend_from_slice(&self.key_epoch.to_le_bytes());
        // The slot count is bounded by check_slots (at most MAX_KEY_SLOTS), so it fits a u16.
        out.extend_from_slice(
            &u16::try_from(self.slots.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&[0, 0]);
        for s in &self.slots {
            s.encode(&mut out);
        }
        out
    }

    /// Verifies the header MAC with the header-MAC subkey (the record-MAC subkey
    /// `HKDF(master, "record-mac", vault id)`), for a holder of the subkeys who no longer has the
    /// master key, such as an open vault noticing that another process replaced the header.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the header was not written by a holder of the master key.
    pub fn verify_mac_with_subkey(&self, mac_subkey: &ChainMacKey) -> Result<()> {
        self.compute_mac_with(mac_subkey)
            .verify_against(&self.mac)
            .map_err(|_| Error::Authentication { object: KIND.name })
    }

    fn compute_mac(&self, master: &Key256) -> vault_crypto::mac::MacTag {
        self.compute_mac_with(&ChainMacKey::derive(master, self.vault_id.as_bytes()))
    }

    fn compute_mac_with(&self, key: &ChainMacKey) -> vault_crypto::mac::MacTag {
        mac::hmac_sha256(
            key.key().expose_secret(),
            &[HEADER_MAC_LABEL, &self.encode_unauthenticated()],
        )
    }
}
