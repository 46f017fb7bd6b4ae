//! The member key slot (kind 2) of a team vault: a member's own X25519 key pair, the private key
//! sealed under their passphrase (Argon2id) and the master key wrapped to the public key, so that
//! any member can re-wrap a new master key for every other member at a rotation without knowing
//! their passphrases (docs/FORMAT.md §6.1, docs/designs/postgres.md "Members").
//!
//! ```text
//! body = name length n (u8, 1..=64) ‖ name (n bytes) ‖ state (u8: 1 joined, 2 invited,
//!        3 removed) ‖ adder's name length a (u8, 0..=64) ‖ the name of the member who added
//!        this one (a bytes; none for a vault's creator or a passphrase slot made a member)
//!        ‖ public key (32)
//!        ‖ Argon2id memory KiB (u32) ‖ iterations (u32) ‖ lanes (u32) ‖ salt (16)
//!        ‖ private key wrapped under the Argon2id KEK: nonce (24) ‖ ciphertext (32) ‖ tag (16)
//!        ‖ master key wrapped to the public key (seal_to): ephemeral public (32) ‖ nonce (24)
//!          ‖ ciphertext (32) ‖ tag (16)
//! AAD of the private key = "vault v1 member-key" ‖ vault id ‖ slot id (u16) ‖ the body up to
//!        the wrapped private key (a rotation keeps it byte for byte, so no key epoch)
//! AAD of the master key  = "vault v1 member-slot" ‖ vault id ‖ key epoch (u32) ‖ slot id (u16)
//!        ‖ public key
//! ```
//!
//! A removed member's slot (state 3) keeps only the name and public key, its wrapped keys zeroed:
//! it opens nothing, and marks a removal whose master-key rotation has not finished (the next
//! rotation drops it).
//!
//! The member's name is in the clear, as the database role a member logs in with is: a label,
//! never a secret. An invited member's private key is sealed under a one-time invitation code
//! instead of a passphrase; joining replaces the key pair with a new one only the member has seen.

use vault_crypto::Key256;
use vault_crypto::kdf::{self, KdfParams, SALT_LEN};
use vault_crypto::seal_to::{self, BOXED_KEY_LEN, PUBLIC_KEY_LEN};
use vault_crypto::wrap::{self, WRAPPED_KEY_LEN, WrappedKey};

use crate::reader::Reader;
use crate::{Error, Result, VaultId};

/// The slot kind byte of a member slot.
pub const KIND_MEMBER: u8 = 2;
/// Longest member name.
pub const MAX_MEMBER_NAME_LEN: usize = 64;
const KEY_LABEL: &[u8] = b"vault v1 member-key";
const SLOT_LABEL: &[u8] = b"vault v1 member-slot";
const OBJECT: &str = "vault header";

/// Whether the member has set their own passphrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// The member chose the passphrase and the key pair is theirs alone.
    Joined,
    /// The private key is sealed under an invitation code the inviting member saw.
    Invited,
    /// Removed: the slot opens nothing and waits for the master-key rotation that drops it.
    Removed,
}

impl MemberState {
    fn byte(self) -> u8 {
        match self {
            Self::Joined => 1,
            Self::Invited => 2,
            Self::Removed => 3,
        }
    }
}

/// What a new member slot is made from.
pub struct NewMember<'a> {
    /// The member's name.
    pub name: &'a str,
    /// Joined (sealed under their passphrase) or invited (under an invitation code).
    pub state: MemberState,
    /// The passphrase or invitation code.
    pub secret: &'a [u8],
    /// Argon2id parameters for it.
    pub kdf: KdfParams,
    /// The member who adds them ("" when none: a vault's creator, a passphrase slot made a
    /// member by its holder).
    pub added_by: &'a str,
}

/// A member slot's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSlot {
    /// The member's name ([`check_member_name`]).
    pub name: String,
    /// Joined or invited.
    pub state: MemberState,
    /// The member who added them, or "" ([`NewMember::added_by`]).
    pub added_by: String,
    /// The member's X25519 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Argon2id parameters for the passphrase (or invitation code).
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// The private key, wrapped under the passphrase's KEK.
    pub wrapped_private: WrappedKey,
    /// The master key, wrapped to the public key.
    pub boxed_master: [u8; BOXED_KEY_LEN],
}

/// Refuses a member name that is not 1 to 64 ASCII letters, digits and `_ - . @ +`, or starts
/// with `-`.
///
/// # Errors
/// [`Error::InvalidField`] saying why.
pub fn check_member_name(name: &str) -> Result<()> {
    let why = if name.is_empty() || name.len() > MAX_MEMBER_NAME_LEN {
        Some(format!(
            "a member name is 1 to {MAX_MEMBER_NAME_LEN} characters"
        ))
    } else if name.starts_with('-') {
        Some("a member name does not start with '-'".to_string())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-.@+".contains(*c)))
            .map(|c| {
                format!("{c:?} is not allowed in a member name (letters, digits and _ - . @ +)")
            })
    };
    match why {
        Some(reason) => Err(Error::InvalidField {
            object: "member",
            field: "name",
            reason,
        }),
        None => Ok(()),
    }
}

impl MemberSlot {
    /// A new key pair for the member, its private key sealed under their secret (a passphrase,
    /// or an invitation code when invited) and `master` wrapped to it.
    pub(crate) fn create(
        id: u16,
        new: &NewMember<'_>,
        master: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Self> {
        let NewMember {
            name,
            state,
            secret,
            kdf: kdf_params,
            added_by,
        } = *new;
        check_member_name(name)?;
        if !added_by.is_empty() {
            check_member_name(added_by)?;
        }
        let (private, public_key) = seal_to::generate().map_err(crypto)?;
        let salt = vault_crypto::rng::bytes::<SALT_LEN>().map_err(crypto)?;
        let kek = kdf::derive_key(secret, &salt, &kdf_params).map_err(crypto)?;
        let mut slot = Self {
            name: name.to_string(),
            state,
            added_by: added_by.to_string(),
            public_key,
            kdf: kdf_params,
            salt,
            wrapped_private: WrappedKey::from_bytes([0; WRAPPED_KEY_LEN]),
            boxed_master: [0; BOXED_KEY_LEN],
        };
        slot.wrapped_private =
            wrap::wrap_key(&kek, &private, &slot.key_aad(id, vault_id)).map_err(crypto)?;
        slot.rewrap(id, master, vault_id, key_epoch)?;
        Ok(slot)
    }

    /// Wraps `master` (of `key_epoch`) to the member's public key, in place of the one held:
    /// what a rotation does for each member, without their passphrase.
    pub(crate) fn rewrap(
        &mut self,
        id: u16,
        master: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<()> {
        self.boxed_master = seal_to::wrap_to(
            &self.public_key,
            master,
            &self.master_aad(id, vault_id, key_epoch),
        )
        .map_err(crypto)?;
        Ok(())
    }

    /// Makes this a removed member's slot: its wrapped keys are zeroed, so it opens nothing.
    pub(crate) fn mark_removed(&mut self) {
        self.state = MemberState::Removed;
        self.wrapped_private = WrappedKey::from_bytes([0; WRAPPED_KEY_LEN]);
        self.boxed_master = [0; BOXED_KEY_LEN];
    }

    /// Runs Argon2id on `secret` and unwraps the master key through the private key.
    pub(crate) fn unlock(
        &self,
        id: u16,
        secret: &[u8],
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Key256> {
        if self.state == MemberState::Removed {
            return Err(Error::Authentication { object: "key slot" });
        }
        let kek = kdf::derive_key(secret, &self.salt, &self.kdf).map_err(crypto)?;
        self.unlock_with_kek(id, &kek, vault_id, key_epoch)
    }

    /// Unwraps the private key with an already-derived KEK, then the master key.
    pub(crate) fn unlock_with_kek(
        &self,
        id: u16,
        kek: &Key256,
        vault_id: &VaultId,
        key_epoch: u32,
    ) -> Result<Key256> {
        let private = wrap::unwrap_key(kek, &self.wrapped_private, &self.key_aad(id, vault_id))
            .map_err(auth)?;
        seal_to::unwrap_from(
            &private,
            &self.boxed_master,
            &self.master_aad(id, vault_id, key_epoch),
        )
        .map_err(auth)
    }

    fn key_aad(&self, id: u16, vault_id: &VaultId) -> Vec<u8> {
        let mut aad = Vec::with_capacity(KEY_LABEL.len() + 16 + 2 + 128);
        aad.extend_from_slice(KEY_LABEL);
        aad.extend_from_slice(vault_id.as_bytes());
        aad.extend_from_slice(&id.to_le_bytes());
        self.encode_params(&mut aad);
        aad
    }

    fn master_aad(&self, id: u16, vault_id: &VaultId, key_epoch: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(SLOT_LABEL.len() + 16 + 4 + 2 + PUBLIC_KEY_LEN);
        aad.extend_from_slice(SLOT_LABEL);
        aad.extend_from_slice(vault_id.as_bytes());
        aad.extend_from_slice(&key_epoch.to_le_bytes());
        aad.extend_from_slice(&id.to_le_bytes());
        aad.extend_from_slice(&self.public_key);
        aad
    }

    fn encode_params(&self, out: &mut Vec<u8>) {
        // Names are at most 64 bytes, checked on creation and decoding.
        out.push(u8::try_from(self.name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.name.as_bytes());
        out.push(self.state.byte());
        out.push(u8::try_from(self.added_by.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.added_by.as_bytes());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.kdf.memory_kib().to_le_bytes());
        out.extend_from_slice(&self.kdf.iterations().to_le_bytes());
        out.extend_from_slice(&self.kdf.lanes().to_le_bytes());
        out.extend_from_slice(&self.salt);
    }

    /// Appends the body.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        self.encode_params(out);
        out.extend_from_slice(&self.wrapped_private.to_bytes());
        out.extend_from_slice(&self.boxed_master);
    }

    /// Decodes a whole body.
    pub(crate) fn decode_body(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(OBJECT, body);
        let n = usize::from(r.u8("member name length")?);
        let name = std::str::from_utf8(r.bytes("member name", n)?)
            .map_err(|_| r.invalid("member name", "not UTF-8"))?
            .to_string();
        check_member_name(&name).map_err(|e| r.invalid("member name", e.to_string()))?;
        let state = match r.u8("member state")? {
            1 => MemberState::Joined,
            2 => MemberState::Invited,
            3 => MemberState::Removed,
            other => {
                return Err(r.invalid("member state", format!("{other} is not 1, 2 or 3")));
            }
        };
        let a = usize::from(r.u8("adder name length")?);
        let added_by = std::str::from_utf8(r.bytes("adder name", a)?)
            .map_err(|_| r.invalid("adder name", "not UTF-8"))?
            .to_string();
        if !added_by.is_empty() {
            check_member_name(&added_by).map_err(|e| r.invalid("adder name", e.to_string()))?;
        }
        let public_key = r.array("member public key")?;
        let (m, t, p) = (
            r.u32("kdf memory")?,
            r.u32("kdf iterations")?,
            r.u32("kdf lanes")?,
        );
        let kdf =
            KdfParams::for_key(m, t, p).map_err(|e| r.invalid("kdf parameters", e.to_string()))?;
        let salt = r.array("kdf salt")?;
        let wrapped_private = WrappedKey::from_bytes(r.array("wrapped private key")?);
        let boxed_master = r.array("wrapped master key")?;
        r.finish()?;
        Ok(Self {
            name,
            state,
            added_by,
            public_key,
            kdf,
            salt,
            wrapped_private,
            boxed_master,
        })
    }
}

fn auth(e: vault_crypto::Error) -> Error {
    match e {
        vault_crypto::Error::Decrypt => Error::Authentication { object: "key slot" },
        other => crypto(other),
    }
}

fn crypto(source: vault_crypto::Error) -> Error {
    Error::Crypto {
        object: OBJECT,
        source,
    }
}
