//! The vault header file: vault id, key epoch and key slots, MAC'd under the master key and
//! check-summed so accidental corruption is told apart from a wrong passphrase.
//!
//! ```text
//! offset        size    field
//!      0          16    preamble: magic, "VHDR", version 1, flags 0
//!     16          16    vault id
//!     32           4    key epoch (u32 LE): bumped by every master-key rotation
//!     36           1    slot count N (1..=8)
//!     37           3    reserved, zero
//!     40     N × 104    key slots (below)
//!  40+104N        32    header MAC: HMAC-SHA256(header MAC key, "vault v1 header" ‖ bytes 0..40+104N)
//!  72+104N        32    checksum: SHA-256(bytes 0..72+104N)
//! ```
//!
//! A key slot:
//!
//! ```text
//! offset  size  field
//!      0     1  slot id (unique within the header)
//!      1     1  slot kind: 1 = passphrase through Argon2id
//!      2     2  reserved, zero
//!      4     4  Argon2id memory (KiB, u32 LE)
//!      8     4  Argon2id iterations (u32 LE)
//!     12     4  Argon2id lanes (u32 LE)
//!     16    16  Argon2id salt
//!     32    72  master key wrapped under the slot's KEK: nonce(24) ‖ ciphertext(32) ‖ tag(16)
//! ```

use vault_crypto::derive::ChainMacKey;
use vault_crypto::hash::{self, SHA256_LEN};
use vault_crypto::kdf::{KdfParams, SALT_LEN};
use vault_crypto::mac::{self, MAC_LEN};
use vault_crypto::wrap::{self, WRAPPED_KEY_LEN, WrappedKey};
use vault_crypto::{Key256, SecretBytes, kdf};

use crate::preamble::{self, ObjectKind, PREAMBLE_LEN};
use crate::reader::Reader;
use crate::{Error, Result, VaultId};

pub(crate) const KIND: ObjectKind = ObjectKind {
    name: "vault header",
    tag: *b"VHDR",
    current_version: 1,
};

/// Encoded size of one key slot.
pub const KEY_SLOT_LEN: usize = 104;
/// Most key slots a header may hold.
pub const MAX_KEY_SLOTS: usize = 8;
/// Size of the fixed part before the slots.
pub const HEADER_FIXED_LEN: usize = 40;
/// Largest possible header.
pub const MAX_HEADER_LEN: usize =
    HEADER_FIXED_LEN + MAX_KEY_SLOTS * KEY_SLOT_LEN + MAC_LEN + SHA256_LEN;

const SLOT_KIND_PASSPHRASE: u8 = 1;
const HEADER_MAC_LABEL: &[u8] = b"vault v1 header";
const SLOT_WRAP_LABEL: &[u8] = b"vault v1 key-slot";

/// One way to unlock the master key: a passphrase run through Argon2id gives a key-encryption
/// key (KEK) that unwraps the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySlot {
    /// Identifies the slot within its header.
    pub id: u8,
    /// Argon2id parameters for this slot's passphrase.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// The master key, wrapped under this slot's KEK.
    pub wrapped_key: WrappedKey,
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
    /// Creates a slot: derives a KEK from `passphrase` with a fresh salt and wraps `master`.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG or Argon2 fails.
    pub fn create(
        id: u8,
        passphrase: &[u8],
        kdf_params: KdfParams,
        master: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Self> {
        let salt = vault_crypto::rng::bytes::<SALT_LEN>().map_err(crypto)?;
        let kek = kdf::derive_key(passphrase, &salt, &kdf_params).map_err(crypto)?;
        Self::create_with(
            id, &kek, kdf_params, salt, master, vault_id, key_epoch, None,
        )
    }

    /// Builds a slot from an already-derived KEK and fixed salt (and optionally a fixed nonce):
    /// for worked examples and tests.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG fails.
    #[allow(clippy::too_many_arguments)]
    pub fn create_with(
        id: u8,
        kek: &Key256,
        kdf: KdfParams,
        salt: [u8; SALT_LEN],
        master: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
        nonce: Option<vault_crypto::aead::Nonce>,
    ) -> Result<Self> {
        let mut slot = Self {
            id,
            kdf,
            salt,
            wrapped_key: WrappedKey::from_bytes([0; WRAPPED_KEY_LEN]),
        };
        let aad = slot.wrap_aad(vault_id, key_epoch);
        slot.wrapped_key = match nonce {
            Some(n) => wrap::wrap_key_with_nonce(kek, master, &aad, &n),
            None => wrap::wrap_key(kek, master, &aad),
        }
        .map_err(crypto)?;
        Ok(slot)
    }

    /// Tries to unlock this slot with `passphrase` (runs Argon2id).
    ///
    /// # Errors
    /// [`Error::Authentication`] if the passphrase is wrong (or the slot was modified);
    /// [`Error::Crypto`] if Argon2 fails.
    pub fn unlock(&self, passphrase: &[u8], vault_id: &VaultId, key_epoch: u32) -> Result<Key256> {
        let kek = kdf::derive_key(passphrase, &self.salt, &self.kdf).map_err(crypto)?;
        self.unlock_with_kek(&kek, vault_id, key_epoch)
    }

    /// Unwraps the master key with an already-derived KEK.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the KEK does not open the slot.
    pub fn unlock_with_kek(
        &self,
        kek: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Key256> {
        wrap::unwrap_key(kek, &self.wrapped_key, &self.wrap_aad(vault_id, key_epoch)).map_err(|e| {
            match e {
                vault_crypto::Error::Decrypt => Error::Authentication { object: "key slot" },
                other => crypto(other),
            }
        })
    }

    /// Associated data for the wrapped key: label ‖ vault id ‖ key epoch ‖ the slot's first 32
    /// bytes (id, kind, KDF parameters, salt), so no cleartext slot field can be swapped.
    fn wrap_aad(&self, vault_id: &VaultId, key_epoch: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SLOT_WRAP_LABEL.len() + 16 + 4 + 32);
        aad.extend_from_slice(SLOT_WRAP_LABEL);
        aad.extend_from_slice(vault_id.as_bytes());
        aad.extend_from_slice(&key_epoch.to_le_bytes());
        self.encode_params(&mut aad);
        aad
    }

    fn encode_params(&self, out: &mut Vec<u8>) {
        out.push(self.id);
        out.push(SLOT_KIND_PASSPHRASE);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.kdf.memory_kib().to_le_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_le_bytes());
        out.extend_from_slice(&self.kdf.lanes().to_le_bytes());
        out.extend_from_slice(&self.salt);
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_params(out);
        out.extend_from_slice(&self.wrapped_key.to_bytes());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let id = r.u8("slot id")?;
        let kind = r.u8("slot kind")?;
        if kind != SLOT_KIND_PASSPHRASE {
            return Err(r.invalid("slot kind", format!("unknown slot kind {kind}")));
        }
        r.zero("slot reserved", 2)?;
        let (m, t, p) = (
            r.u32("kdf memory")?,
            r.u32("kdf iterations")?,
            r.u32("kdf lanes")?,
        );
        let kdf =
            KdfParams::for_key(m, t, p).map_err(|e| r.invalid("kdf parameters", e.to_string()))?;
        let salt = r.array("kdf salt")?;
        let wrapped_key = WrappedKey::from_bytes(r.array("wrapped key")?);
        Ok(Self {
            id,
            kdf,
            salt,
            wrapped_key,
        })
    }
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
    pub fn unlock(&self, passphrase: &SecretBytes) -> Result<(Key256, u8)> {
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
        let count = r.u8("slot count")? as usize;
        if !(1..=MAX_KEY_SLOTS).contains(&count) {
            return Err(r.invalid(
                "slot count",
                format!("{count} is outside 1..={MAX_KEY_SLOTS}"),
            ));
        }
        r.zero("reserved", 3)?;
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            slots.push(KeySlot::decode(&mut r)?);
        }
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
    pub fn slot(&self, id: u8) -> Option<&KeySlot> {
        self.slots.iter().find(|s| s.id == id)
    }

    /// The lowest slot id not in use, if any slot is free.
    pub fn free_slot_id(&self) -> Option<u8> {
        if self.slots.len() >= MAX_KEY_SLOTS {
            return None;
        }
        (0..=u8::MAX).find(|id| self.slot(*id).is_none())
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
        }
        Ok(())
    }

    fn encode_unauthenticated(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_HEADER_LEN);
        preamble::write(&mut out, KIND);
        out.extend_from_slice(self.vault_id.as_bytes());
        out.extend_from_slice(&self.key_epoch.to_le_bytes());
        // Slot count is bounded by check_slots (at most 8), so it fits a byte.
        out.push(u8::try_from(self.slots.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&[0, 0, 0]);
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

fn crypto(source: vault_crypto::Error) -> Error {
    Error::Crypto {
        object: KIND.name,
        source,
    }
}
