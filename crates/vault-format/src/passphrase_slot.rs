//! The passphrase key slot (kind 1): a passphrase run through Argon2id gives a key-encryption key
//! (KEK) that unwraps the master key.
//!
//! ```text
//! body   = Argon2id memory KiB (u32) ‖ iterations (u32) ‖ lanes (u32) ‖ salt (16)
//!          ‖ master key wrapped under the KEK: nonce (24) ‖ ciphertext (32) ‖ tag (16)   = 100 bytes
//! AAD    = "vault v1 key-slot" ‖ vault id ‖ key epoch (u32) ‖ the slot's entry header (6 bytes:
//!          id, kind, reserved, body length) ‖ the body up to the wrapped key (28 bytes)
//! ```

use vault_crypto::Key256;
use vault_crypto::aead::Nonce;
use vault_crypto::kdf::{self, KdfParams, SALT_LEN};
use vault_crypto::wrap::{self, WRAPPED_KEY_LEN, WrappedKey};

use crate::reader::Reader;
use crate::{Error, Result, VaultId};

/// The slot kind byte of a passphrase slot.
pub const KIND_PASSPHRASE: u8 = 1;
/// Length of a passphrase slot's body.
pub const PASSPHRASE_BODY_LEN: usize = 12 + SALT_LEN + WRAPPED_KEY_LEN;
const SLOT_WRAP_LABEL: &[u8] = b"vault v1 key-slot";
const OBJECT: &str = "vault header";

/// A passphrase slot's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassphraseSlot {
    /// Argon2id parameters for this slot's passphrase.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// The master key, wrapped under this slot's KEK.
    pub wrapped_key: WrappedKey,
}

/// Everything that fixes a passphrase slot's bytes, for building one from an already-derived KEK
/// (worked examples and tests; [`crate::KeySlot::create`] derives the KEK and picks salt and
/// nonce at random).
pub struct FixedPassphraseSlot<'a> {
    /// Slot id.
    pub id: u16,
    /// The key-encryption key the passphrase derives.
    pub kek: &'a Key256,
    /// Argon2id parameters recorded in the slot.
    pub kdf: KdfParams,
    /// Argon2id salt recorded in the slot.
    pub salt: [u8; SALT_LEN],
    /// The master key to wrap.
    pub master: &'a Key256,
    /// The vault it belongs to.
    pub vault_id: &'a VaultId,
    /// The key epoch it belongs to.
    pub key_epoch: u32,
    /// A fixed nonce for the wrap, or `None` for a random one.
    pub nonce: Option<Nonce>,
}

impl PassphraseSlot {
    /// Builds the slot with a fresh salt, deriving the KEK from `passphrase`.
    pub(crate) fn create(
        id: u16,
        passphrase: &[u8],
        kdf_params: KdfParams,
        master: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Self> {
        let salt = vault_crypto::rng::bytes::<SALT_LEN>().map_err(crypto)?;
        let kek = kdf::derive_key(passphrase, &salt, &kdf_params).map_err(crypto)?;
        Self::with_kek(&FixedPassphraseSlot {
            id,
            kek: &kek,
            kdf: kdf_params,
            salt,
            master,
            vault_id,
            key_epoch,
            nonce: None,
        })
    }

    /// Builds the slot from an already-derived KEK.
    pub(crate) fn with_kek(fixed: &FixedPassphraseSlot<'_>) -> Result<Self> {
        let mut slot = Self {
            kdf: fixed.kdf,
            salt: fixed.salt,
            wrapped_key: WrappedKey::from_bytes([0; WRAPPED_KEY_LEN]),
        };
        let aad = slot.wrap_aad(fixed.id, fixed.vault_id, fixed.key_epoch);
        slot.wrapped_key = match &fixed.nonce {
            Some(n) => wrap::wrap_key_with_nonce(fixed.kek, fixed.master, &aad, n),
            None => wrap::wrap_key(fixed.kek, fixed.master, &aad),
        }
        .map_err(crypto)?;
        Ok(slot)
    }

    /// Runs Argon2id on `passphrase` and unwraps the master key.
    pub(crate) fn unlock(
        &self,
        id: u16,
        passphrase: &[u8],
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Key256> {
        let kek = kdf::derive_key(passphrase, &self.salt, &self.kdf).map_err(crypto)?;
        self.unlock_with_kek(id, &kek, vault_id, key_epoch)
    }

    /// Unwraps the master key with an already-derived KEK.
    pub(crate) fn unlock_with_kek(
        &self,
        id: u16,
        kek: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Key256> {
        wrap::unwrap_key(
            kek,
            &self.wrapped_key,
            &self.wrap_aad(id, vault_id, key_epoch),
        )
        .map_err(|e| match e {
            vault_crypto::Error::Decrypt => Error::Authentication { object: "key slot" },
            other => crypto(other),
        })
    }

    /// The AAD of the wrapped key: every cleartext byte of the slot is bound, so no field can be
    /// swapped or moved to another slot, vault or epoch.
    fn wrap_aad(&self, id: u16, vault_id: &VaultId, key_epoch: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SLOT_WRAP_LABEL.len() + 16 + 4 + 6 + 28);
        aad.extend_from_slice(SLOT_WRAP_LABEL);
        aad.extend_from_slice(vault_id.as_bytes());
        aad.extend_from_slice(&key_epoch.to_le_bytes());
        crate::header::encode_entry_header(&mut aad, id, KIND_PASSPHRASE, PASSPHRASE_BODY_LEN);
        self.encode_params(&mut aad);
        aad
    }

    fn encode_params(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.kdf.memory_kib().to_le_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_le_bytes());
        out.extend_from_slice(&self.kdf.lanes().to_le_bytes());
        out.extend_from_slice(&self.salt);
    }

    /// Appends the body.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        self.encode_params(out);
        out.extend_from_slice(&self.wrapped_key.to_bytes());
    }

    /// Decodes a body of exactly [`PASSPHRASE_BODY_LEN`] bytes.
    pub(crate) fn decode_body(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(OBJECT, body);
        let (m, t, p) = (
            r.u32("kdf memory")?,
            r.u32("kdf iterations")?,
            r.u32("kdf lanes")?,
        );
        let kdf =
            KdfParams::for_key(m, t, p).map_err(|e| r.invalid("kdf parameters", e.to_string()))?;
        let salt = r.array("kdf salt")?;
        let wrapped_key = WrappedKey::from_bytes(r.array("wrapped key")?);
        r.finish()?;
        Ok(Self {
            kdf,
            salt,
            wrapped_key,
        })
    }
}

fn crypto(source: vault_crypto::Error) -> Error {
    Error::Crypto {
        object: OBJECT,
        source,
    }
}
