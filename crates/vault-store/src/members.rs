//! A team vault's members: each unlocks with a member slot of their own (a key pair whose
//! private key only their passphrase opens); adding one is a header change, removing one rotates
//! the master key so that their old slot opens nothing written afterwards.

use vault_crypto::SecretBytes;
use vault_crypto::kdf::KdfParams;
use vault_format::audit::AuditOp;
use vault_format::{KeySlot, MemberState, NewMember, check_member_name};

use crate::audit::On;
use crate::vault::Vault;
use crate::{Error, Result};

/// A member as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Their key slot's id.
    pub slot: u16,
    /// Their name.
    pub name: String,
    /// Joined, invited (their slot opens with the invitation code) or removed (pending the
    /// rotation that drops the slot).
    pub state: MemberState,
    /// Whether this handle was unlocked with their slot.
    pub in_use: bool,
}

impl Vault {
    /// The members, in slot order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.slots()
            .into_iter()
            .filter_map(|s| {
                s.member.map(|(name, state)| MemberInfo {
                    slot: s.id,
                    name,
                    state,
                    in_use: s.in_use,
                })
            })
            .collect()
    }

    /// Adds member `name` with a slot of their own, its private key sealed under `secret`:
    /// their passphrase, or (when `invited`) a one-time invitation code they replace with their
    /// passphrase on joining ([`Vault::change_passphrase`] opened with the code). Returns the
    /// slot id.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] for `current`; [`Error::Invalid`] for a bad or taken name, or
    /// when every slot is used.
    pub fn add_member(
        &self,
        current: &SecretBytes,
        name: &str,
        secret: &SecretBytes,
        kdf: KdfParams,
        invited: bool,
    ) -> Result<u16> {
        check_member_name(name).map_err(|e| Error::invalid("member name", e.to_string()))?;
        self.e.options.kdf_limit.check_new(&kdf)?;
        self.audited_around(AuditOp::MemberAdd, On::Nothing, name.to_string(), || {
            let vault_id = self.e.vault_id;
            let event = format!("member {name} added");
            self.modify_header(current, &event, |h, master, _| {
                if h.slots
                    .iter()
                    .any(|s| s.member().is_some_and(|(n, _)| n == name))
                {
                    return Err(Error::invalid(
                        "member",
                        format!("{name} is already a member"),
                    ));
                }
                let id = h.free_slot_id().ok_or_else(|| {
                    Error::invalid(
                        "key slot",
                        format!("all {} key slots are in use", vault_format::MAX_KEY_SLOTS),
                    )
                })?;
                let new = NewMember {
                    name,
                    state: if invited {
                        MemberState::Invited
                    } else {
                        MemberState::Joined
                    },
                    secret: secret.expose_secret(),
                    kdf,
                };
                h.slots.push(KeySlot::create_member(
                    id,
                    &new,
                    master,
                    &vault_id,
                    h.key_epoch,
                )?);
                Ok(id)
            })
        })
    }

    /// Makes the passphrase slot `current` opens member `name`'s slot (same passphrase, a new
    /// key pair), so that other members can rotate the master key without it being dropped.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`]; [`Error::Invalid`] for a bad or taken name, or if the slot
    /// is a member's already.
    pub fn become_member(&self, current: &SecretBytes, name: &str) -> Result<()> {
        check_member_name(name).map_err(|e| Error::invalid("member name", e.to_string()))?;
        self.audited_around(AuditOp::MemberAdd, On::Nothing, name.to_string(), || {
            let vault_id = self.e.vault_id;
            let event = format!("member {name} added (an existing passphrase slot)");
            self.modify_header(current, &event, |h, master, opened| {
                if h.slots
                    .iter()
                    .any(|s| s.member().is_some_and(|(n, _)| n == name))
                {
                    return Err(Error::invalid(
                        "member",
                        format!("{name} is already a member"),
                    ));
                }
                let epoch = h.key_epoch;
                let slot =
                    h.slots.iter_mut().find(|s| s.id == opened).ok_or_else(|| {
                        Error::integrity("vault header", "unlocked slot vanished")
                    })?;
                if let Some((already, _)) = slot.member() {
                    return Err(Error::invalid(
                        "member",
                        format!("this passphrase opens member {already}'s slot already"),
                    ));
                }
                let kdf = slot.kdf().ok_or_else(|| {
                    Error::integrity(
                        "vault header",
                        "the unlocking slot is not a passphrase slot",
                    )
                })?;
                let new = NewMember {
                    name,
                    state: MemberState::Joined,
                    secret: current.expose_secret(),
                    kdf,
                };
                *slot = KeySlot::create_member(opened, &new, master, &vault_id, epoch)?;
                Ok(())
            })
        })
    }

    /// Removes member `name`, in two steps. First their slot is marked removed in the header
    /// (its wrapped keys zeroed: from then on it opens nothing); then the master key is rotated
    /// (every record re-encrypted, as [`Vault::rotate_master_key`]) and the new key wrapped for
    /// every other member, so that what they may have kept of the old key opens nothing written
    /// afterwards. What they read before is theirs to keep. If the rotation is interrupted, the
    /// removal is pending ([`Vault::pending_removals`]) until [`Vault::finish_removals`] (or
    /// this again) rotates.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] for `current`; [`Error::NotFound`]; [`Error::Invalid`] for
    /// the caller's own member slot, or when another passphrase slot (not a member's) could not
    /// be carried over and `drop_other_slots` is not set.
    pub fn remove_member(
        &self,
        current: &SecretBytes,
        name: &str,
        drop_other_slots: bool,
    ) -> Result<()> {
        self.audited_around(AuditOp::MemberRemove, On::Nothing, name.to_string(), || {
            let event = format!("member {name} removed");
            self.modify_header(current, &event, |h, _, opened| {
                let stranded = h
                    .slots
                    .iter()
                    .filter(|s| s.id != opened && s.member().is_none())
                    .count();
                // Refused before the slot is marked, so that the rotation is not refused after.
                if stranded > 0 && !drop_other_slots {
                    return Err(Error::invalid(
                        "key slots",
                        format!(
                            "removing a member rotates the master key, and {stranded} passphrase slot(s) other than yours cannot be carried over without their passphrases; remove them first or drop them explicitly (member slots are carried over)"
                        ),
                    ));
                }
                let slot = h
                    .slots
                    .iter_mut()
                    .find(|s| s.member().is_some_and(|(n, _)| n == name))
                    .ok_or_else(|| Error::NotFound {
                        what: format!("member {name}"),
                    })?;
                if slot.id == opened {
                    return Err(Error::invalid(
                        "member",
                        format!(
                            "{name} is the member this passphrase opens; another member removes {name}"
                        ),
                    ));
                }
                if slot.member().is_some_and(|(_, s)| s != MemberState::Removed) {
                    slot.mark_member_removed()?;
                }
                Ok(())
            })?;
            self.rotate_master_key_inner(current, drop_other_slots)
        })
    }

    /// Members whose removal has not finished: their slots open nothing, but the master key
    /// they may have kept has not been rotated yet.
    pub fn pending_removals(&self) -> Vec<String> {
        self.members()
            .into_iter()
            .filter(|m| m.state == MemberState::Removed)
            .map(|m| m.name)
            .collect()
    }

    /// Finishes pending removals: rotates the master key, dropping removed members' slots.
    /// Does nothing when none is pending.
    ///
    /// # Errors
    /// As [`Vault::rotate_master_key`].
    pub fn finish_removals(&self, current: &SecretBytes, drop_other_slots: bool) -> Result<()> {
        if self.pending_removals().is_empty() {
            return Ok(());
        }
        self.rotate_master_key(current, drop_other_slots)
    }
}
