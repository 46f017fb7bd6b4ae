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
    /// The member who added them, when recorded.
    pub added_by: Option<String>,
    /// Whether the chain of who added whom leads from them to a founder through members still
    /// in the vault (false: someone on it was removed, and they may be that one's).
    pub vouched: bool,
}

/// What a removal did besides removing the member.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Outstanding invitations withdrawn (their codes may be known to the removed member).
    pub withdrawn: Vec<String>,
    /// Members added, directly or through others, by members no longer in the vault (the
    /// removed one included): still members, and possibly theirs.
    pub unvouched: Vec<String>,
    /// Managed keys given a new primary version: the removed member could read every key's
    /// material (any member can), so new tokens and signatures use material they never saw.
    pub rotated_keys: Vec<String>,
    /// Managed keys that could not be rotated, and why.
    pub unrotated_keys: Vec<String>,
}

impl Vault {
    /// The members, in slot order.
    pub fn members(&self) -> Vec<MemberInfo> {
        let in_use = crate::sync::read(&self.e.state).keys.slot_id;
        let view = crate::sync::read(&self.e.header);
        let unvouched = unvouched(&view.header);
        view.header
            .slots
            .iter()
            .filter_map(|s| {
                s.member_slot().map(|m| MemberInfo {
                    slot: s.id,
                    name: m.name.clone(),
                    state: m.state,
                    in_use: s.id == in_use,
                    added_by: Some(m.added_by.clone()).filter(|a| !a.is_empty()),
                    vouched: !unvouched.contains(&m.name),
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
        // The adder's own passphrase would open the adder's slot too, wherever it is tried.
        if secret.expose_secret() == current.expose_secret() {
            return Err(Error::invalid(
                "member",
                format!(
                    "{name}'s passphrase is the one you opened the vault with: they need their own"
                ),
            ));
        }
        self.audited_around(AuditOp::MemberAdd, On::Nothing, name.to_string(), || {
            let vault_id = self.e.vault_id;
            let event = format!("member {name} added");
            self.modify_header(current, &event, |h, master, opened| {
                taken(h, name)?;
                // Who adds them, kept in their slot: a removal names the members the removed
                // one added, who may be theirs.
                let added_by = h
                    .slot(opened)
                    .and_then(|s| s.member().map(|(n, _)| n.to_string()))
                    .unwrap_or_default();
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
                    added_by: &added_by,
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
                taken(h, name)?;
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
                    added_by: "",
                };
                *slot = KeySlot::create_member(opened, &new, master, &vault_id, epoch)?;
                Ok(())
            })
        })
    }

    /// Removes member `name`, in two steps. First, in one header change, their slot is marked
    /// removed (its wrapped keys zeroed: from then on it opens nothing), every outstanding
    /// invitation is withdrawn the same way (its code may be theirs: they may have issued it),
    /// and, with `drop_other_slots`, the passphrase slots other than the caller's are dropped
    /// (any of them may be theirs). Then the master key is rotated (every record re-encrypted,
    /// as [`Vault::rotate_master_key`]) and the new key wrapped for every other member, so that
    /// what they may have kept of the old key opens nothing written afterwards. What they read
    /// before is theirs to keep. Every managed key then gets a new primary version (the removed
    /// member could read any key's material). If the rotation is interrupted, the removal is
    /// pending ([`Vault::pending_removals`]) until [`Vault::finish_removals`] rotates. Returns
    /// the withdrawn invitations, the members whose adders are no longer in the vault (who may
    /// be theirs: they stay members until removed too), and the keys rotated.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] for `current`; [`Error::NotFound`]; [`Error::Invalid`] for
    /// the caller's own member slot, or when another passphrase slot (not a member's) exists
    /// and `drop_other_slots` is not set.
    pub fn remove_member(
        &self,
        current: &SecretBytes,
        name: &str,
        drop_other_slots: bool,
    ) -> Result<Removal> {
        self.audited_around(AuditOp::MemberRemove, On::Nothing, name.to_string(), || {
            let event = format!("member {name} removed");
            // Marking another removal while one is pending is allowed: it only takes a key away.
            let finishing = crate::engine::commit::Finishing::begin();
            let withdrawn = self.modify_header(current, &event, |h, _, opened| {
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
                            "removing a member rotates the master key, and {stranded} passphrase slot(s) other than yours cannot be carried over without their passphrases (any of them may be the member's own); drop them explicitly, or remove them first (member slots are carried over)"
                        ),
                    ));
                }
                let id = h
                    .slots
                    .iter()
                    .find(|s| s.member().is_some_and(|(n, _)| n == name))
                    .map(|s| s.id)
                    .ok_or_else(|| {
                        let like = h
                            .slots
                            .iter()
                            .filter_map(|s| s.member())
                            .find(|(n, _)| n.eq_ignore_ascii_case(name));
                        Error::NotFound {
                            what: match like {
                                Some((n, _)) => format!("member {name} (names differ in letter case: did you mean {n}?)"),
                                None => format!("member {name}"),
                            },
                        }
                    })?;
                if id == opened {
                    return Err(Error::invalid(
                        "member",
                        format!(
                            "{name} is the member this passphrase opens; another member removes {name}"
                        ),
                    ));
                }
                // Dropped in the same header change as the mark: a slot the member added for
                // themselves must not outlive a rotation that fails and is finished later.
                h.slots.retain(|s| s.id == opened || s.member().is_some());
                let mut withdrawn = Vec::new();
                for slot in &mut h.slots {
                    let Some((n, state)) = slot.member() else { continue };
                    let invitation = state == MemberState::Invited;
                    if invitation {
                        withdrawn.push(n.to_string());
                    }
                    if slot.id == id || invitation {
                        slot.mark_member_removed()?;
                    }
                }
                let unvouched = unvouched(h);
                Ok(Removal {
                    withdrawn,
                    unvouched,
                    ..Removal::default()
                })
            })?;
            self.rotate_master_key_inner(current, false)?;
            drop(finishing);
            let mut removal = withdrawn;
            (removal.rotated_keys, removal.unrotated_keys) = self.rotate_keys_after_removal();
            Ok(removal)
        })
    }

    /// Withdraws member `name`'s invitation before they join (its code was lost, say): the slot
    /// goes. The master key is not rotated: nobody joined with the code, but whoever holds it
    /// and a copy of the header could still unwrap the current key; `remove_member` rotates.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`]; [`Error::NotFound`] if `name` has no outstanding invitation.
    pub fn withdraw_invitation(&self, current: &SecretBytes, name: &str) -> Result<()> {
        self.audited_around(AuditOp::MemberRemove, On::Nothing, name.to_string(), || {
            let event = format!("invitation of {name} withdrawn");
            self.modify_header(current, &event, |h, _, _| {
                let before = h.slots.len();
                h.slots.retain(|s| {
                    !s.member()
                        .is_some_and(|(n, st)| n == name && st == MemberState::Invited)
                });
                if h.slots.len() == before {
                    return Err(Error::NotFound {
                        what: format!("an invitation for {name}"),
                    });
                }
                Ok(())
            })
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
        let pending = self.pending_removals();
        if pending.is_empty() {
            return Ok(());
        }
        // Recorded as the removal it completes (the interrupted one may have left no entry).
        self.audited_around(
            AuditOp::MemberRemove,
            On::Nothing,
            pending.join(", "),
            || self.rotate_master_key_inner(current, drop_other_slots),
        )?;
        let (_, unrotated) = self.rotate_keys_after_removal();
        for k in unrotated {
            tracing::warn!(key = %k, "a managed key was not rotated after a member's removal");
        }
        Ok(())
    }

    /// Gives every managed key a new primary version (the previous one decrypt-only): a
    /// removed member may hold any key's material. Returns those rotated, and those not (with
    /// why: a key whose versions are all destroyed, say).
    fn rotate_keys_after_removal(&self) -> (Vec<String>, Vec<String>) {
        let mut done = Vec::new();
        let mut failed = Vec::new();
        match self.key_names() {
            Ok(names) => {
                for k in names {
                    match self.rotate_key(&k, crate::keys::RotateOptions::default()) {
                        Ok(_) => {}
                        Err(e) => {
                            failed.push(format!("{k} ({e})"));
                            continue;
                        }
                    }
                    // A version staged before the removal is material they may hold too:
                    // decrypt- and verify-only, so it can never be promoted to primary.
                    let staged: Vec<u32> = self
                        .key(&k)
                        .map(|info| {
                            info.versions
                                .iter()
                                .filter(|v| v.state == crate::KeyState::Pending)
                                .map(|v| v.version)
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut ok = true;
                    for v in staged {
                        if let Err(e) =
                            self.set_key_version_state(&k, v, crate::KeyState::Deactivated)
                        {
                            failed.push(format!("{k} version {v} left pending ({e})"));
                            ok = false;
                        }
                    }
                    if ok {
                        done.push(k);
                    }
                }
            }
            Err(e) => failed.push(format!("(the keys could not be listed: {e})")),
        }
        (done, failed)
    }
}

/// Refuses `name` if a member of that name, in any letter case, has a slot (names that differ
/// only in case look alike in a listing, and database role names fold case).
fn taken(h: &vault_format::VaultHeader, name: &str) -> Result<()> {
    match h
        .slots
        .iter()
        .filter_map(|s| s.member())
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some((n, _)) if n == name => Err(Error::invalid(
            "member",
            format!("{name} is already a member"),
        )),
        Some((n, _)) => Err(Error::invalid(
            "member",
            format!("{name} differs from member {n} only in letter case"),
        )),
        // A former member's name that other members' slots still name as their adder: a new
        // member under it would seem to vouch for them.
        None if h
            .slots
            .iter()
            .filter_map(|s| s.member_slot())
            .any(|m| m.added_by.eq_ignore_ascii_case(name)) =>
        {
            Err(Error::invalid(
                "member",
                format!(
                    "{name} is recorded as the adder of members still in the vault (a former member's name): choose another"
                ),
            ))
        }
        None => Ok(()),
    }
}

/// Joined members whose chain of adders does not lead to a founder (a member with no recorded
/// adder) through members still in the vault: someone on it was removed (or never was a
/// member), and the member may be theirs.
fn unvouched(h: &vault_format::VaultHeader) -> Vec<String> {
    let active: std::collections::HashMap<&str, &str> = h
        .slots
        .iter()
        .filter_map(|s| s.member_slot())
        .filter(|m| m.state == MemberState::Joined)
        .map(|m| (m.name.as_str(), m.added_by.as_str()))
        .collect();
    let mut out: Vec<String> = active
        .keys()
        .filter(|name| {
            let mut at = **name;
            let mut seen = std::collections::HashSet::new();
            loop {
                match active.get(at) {
                    Some(&"") => return false,
                    Some(adder) if seen.insert(*adder) => at = adder,
                    _ => return true,
                }
            }
        })
        .map(|n| n.to_string())
        .collect();
    out.sort();
    out
}
