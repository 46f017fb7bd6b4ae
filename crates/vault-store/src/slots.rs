//! Key slots: listing them, and header changes (passphrase changed, slot added or removed), each
//! logged as an intent, written, then confirmed (docs/FORMAT.md, "Header binding").

use vault_crypto::kdf::KdfParams;
use vault_crypto::{Key256, SecretBytes};
use vault_format::payload::{BindingPhase, EventKind, EventPayload, Payload};
use vault_format::{KeySlot, MemberState, NewMember, VaultHeader};

use crate::audit::On;
use crate::engine::unlock;
use crate::engine::{HeaderView, binding, now_ms};
use crate::sync;
use crate::vault::Vault;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

/// A key slot as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotInfo {
    /// Slot id.
    pub id: u16,
    /// The slot kind (1: passphrase through Argon2id; others are kept but not used by this
    /// build).
    pub kind: u8,
    /// Its Argon2id parameters (a passphrase slot).
    pub kdf: Option<KdfParams>,
    /// Whether this handle was unlocked with it.
    pub in_use: bool,
    /// The member it belongs to and their state (a member slot).
    pub member: Option<(String, MemberState)>,
}

impl Vault {
    /// The key slots.
    pub fn slots(&self) -> Vec<SlotInfo> {
        let in_use = sync::read(&self.e.state).keys.slot_id;
        sync::read(&self.e.header)
            .header
            .slots
            .iter()
            .map(|s| SlotInfo {
                id: s.id,
                kind: s.kind(),
                kdf: s.kdf(),
                in_use: s.id == in_use,
                member: s.member().map(|(n, state)| (n.to_string(), state)),
            })
            .collect()
    }

    /// Runs `change` on the header as read under the writer lock, with the master key unlocked
    /// by `current`, then replaces the header: the log first records the intent to switch to the
    /// new header (so a crash leaves a header the log vouches for either way), then the header is
    /// written, then the log confirms it and records the event.
    pub(crate) fn modify_header<R>(
        &self,
        current: &SecretBytes,
        event: &str,
        change: impl FnOnce(&mut VaultHeader, &Key256, u16) -> Result<R>,
    ) -> Result<R> {
        let mut txn = self.e.begin_write(false)?;
        let mut header = txn.view.header.clone();
        let (master, slot_id) = unlock::unlock_for_change(
            sync::lock(&self.e.opened).as_ref(),
            &header,
            current,
            &self.e.options.kdf_limit,
            unlock::Pick::of(&self.e.options),
        )?;
        let result = change(&mut header, &master, slot_id)?;
        header.seal(&master);
        drop(master);
        let view = HeaderView {
            bytes: header.encode(),
            header,
        };
        let digest = view.digest();
        let st = &mut *txn.st;
        let session = txn.session.as_mut();
        self.e
            .append_locked(session, st, vec![binding(BindingPhase::Intent, digest)], 0)?;
        self.e.record_generation(st);
        session.write_header(&view.bytes)?;
        *sync::write(&self.e.header) = view;
        let e = Payload::Event(EventPayload {
            kind: EventKind::KeySlotChanged,
            time_ms: now_ms(),
            text: event.to_string(),
        });
        // The header change is durable and is what the caller asked for; the confirmation (the
        // next writer confirms it otherwise) and the audit event are best effort after it.
        match self.e.append_locked(
            session,
            st,
            vec![binding(BindingPhase::Confirmed, digest), e],
            0,
        ) {
            Ok(()) => self.e.record_generation(st),
            Err(err) => tracing::warn!(error = %err, "could not record the key-slot event"),
        }
        Ok(result)
    }

    /// Changes the passphrase of the slot that `current` opens (no data is re-encrypted).
    /// `kdf` defaults to the slot's current parameters.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`]; storage errors (the old header then stays in place).
    pub fn change_passphrase(
        &self,
        current: &SecretBytes,
        new: &SecretBytes,
        kdf: Option<KdfParams>,
    ) -> Result<()> {
        self.audited_around(
            AuditOp::PassphraseChange,
            On::Nothing,
            String::new(),
            || self.change_passphrase_inner(current, new, kdf),
        )
    }

    fn change_passphrase_inner(
        &self,
        current: &SecretBytes,
        new: &SecretBytes,
        kdf: Option<KdfParams>,
    ) -> Result<()> {
        let vault_id = self.e.vault_id;
        if let Some(k) = &kdf {
            self.e.options.kdf_limit.check_new(k)?;
        }
        self.modify_header(current, "passphrase changed", |h, master, slot_id| {
            let epoch = h.key_epoch;
            let slot = h
                .slots
                .iter_mut()
                .find(|s| s.id == slot_id)
                .ok_or_else(|| Error::integrity("vault header", "unlocked slot vanished"))?;
            let kdf = match kdf.or(slot.kdf()) {
                Some(k) => k,
                None => {
                    return Err(Error::integrity(
                        "vault header",
                        "the unlocking slot is not a passphrase slot",
                    ));
                }
            };
            *slot = match slot.member_slot() {
                // A member's new passphrase seals a new key pair: the old private key, which an
                // old header and the old passphrase (or the invitation code) would give, opens
                // nothing wrapped from now on.
                Some(m) => KeySlot::create_member(
                    slot_id,
                    &NewMember {
                        name: &m.name,
                        state: MemberState::Joined,
                        secret: new.expose_secret(),
                        kdf,
                        added_by: &m.added_by,
                    },
                    master,
                    &vault_id,
                    epoch,
                )?,
                None => {
                    KeySlot::create(slot_id, new.expose_secret(), kdf, master, &vault_id, epoch)?
                }
            };
            Ok(())
        })
    }

    /// Adds a key slot for another passphrase (e.g. a recovery passphrase); returns its id.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] for `current`; [`Error::Invalid`] if every slot id is used.
    pub fn add_passphrase(
        &self,
        current: &SecretBytes,
        new: &SecretBytes,
        kdf: KdfParams,
    ) -> Result<u16> {
        self.audited_around(
            AuditOp::PassphraseChange,
            On::Nothing,
            String::new(),
            || self.add_passphrase_inner(current, new, kdf),
        )
    }

    fn add_passphrase_inner(
        &self,
        current: &SecretBytes,
        new: &SecretBytes,
        kdf: KdfParams,
    ) -> Result<u16> {
        let vault_id = self.e.vault_id;
        self.e.options.kdf_limit.check_new(&kdf)?;
        self.modify_header(current, "key slot added", |h, master, _| {
            // In a team vault every slot added is a member's, whose adder is recorded: a plain
            // slot a member gave themselves would outlive their removal unnamed (made a member
            // of its own, or kept without --drop-other-slots).
            if h.slots.iter().any(|s| {
                s.member()
                    .is_some_and(|(_, state)| state != MemberState::Removed)
            }) {
                return Err(Error::invalid(
                    "key slot",
                    "this vault has members: add one (`vault member add NAME`) rather than a passphrase slot",
                ));
            }
            let id = h.free_slot_id().ok_or_else(|| {
                Error::invalid(
                    "key slot",
                    format!("all {} key slots are in use", vault_format::MAX_KEY_SLOTS),
                )
            })?;
            let slot =
                KeySlot::create(id, new.expose_secret(), kdf, master, &vault_id, h.key_epoch)?;
            h.slots.push(slot);
            Ok(id)
        })
    }

    /// Removes key slot `id`. The slot `current` opens cannot be removed (nor, so, the last
    /// one): whoever removes a slot keeps one they have shown they hold.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`] for `current`; [`Error::NotFound`]; [`Error::Invalid`] for the
    /// slot `current` opens.
    pub fn remove_slot(&self, current: &SecretBytes, id: u16) -> Result<()> {
        self.audited_around(
            AuditOp::PassphraseChange,
            On::Nothing,
            String::new(),
            || self.remove_slot_inner(current, id),
        )
    }

    fn remove_slot_inner(&self, current: &SecretBytes, id: u16) -> Result<()> {
        self.modify_header(current, &format!("key slot {id} removed"), |h, _, opened| {
            let Some(slot) = h.slot(id) else {
                return Err(Error::NotFound {
                    what: format!("key slot {id}"),
                });
            };
            // Dropping a member's slot without rotating would leave them the master key they
            // may have kept: a member is removed by `remove_member`, which rotates.
            if let Some((name, state)) = slot.member()
                && state != MemberState::Removed
            {
                return Err(Error::invalid(
                    "key slot",
                    format!(
                        "slot {id} is member {name}'s: remove the member instead (`vault member remove {name}`, which rotates the master key)"
                    ),
                ));
            }
            // The caller has proved they hold this slot's passphrase and no other: removing it
            // could leave them locked out. Whoever holds another slot removes this one.
            if id == opened {
                return Err(Error::invalid(
                    "key slot",
                    format!(
                        "slot {id} is the one this passphrase opens, the only one you have shown you hold; open the vault with another slot's passphrase to remove it"
                    ),
                ));
            }
            if h.slots.len() == 1 {
                return Err(Error::invalid(
                    "key slot",
                    "the last key slot cannot be removed",
                ));
            }
            h.slots.retain(|s| s.id != id);
            Ok(())
        })
    }
}
