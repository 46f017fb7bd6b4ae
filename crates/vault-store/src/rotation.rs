//! Master-key rotation: every live record re-encrypted under a new master key into the log of a
//! new key epoch, and the header switched to it atomically.

use vault_crypto::{Key256, SecretBytes};
use vault_format::payload::{BindingPhase, EventKind, EventPayload, Payload};
use vault_format::{KeySlot, RecordEnvelope, VaultHeader};

use crate::audit::On;
use crate::backend::{Cursor, RecordSource};
use crate::engine::fetch;
use crate::engine::index::RecordRef;
use crate::engine::replay::State;
use crate::engine::seal;
use crate::engine::subkeys::Keys;
use crate::engine::unlock;
use crate::engine::{HeaderView, binding, now_ms, payload_of};
use crate::sync::{self, Arc};
use crate::vault::Vault;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

impl Vault {
    /// Replaces the master key: re-encrypts every live record under a new one, writes them as
    /// the log of a new key epoch and switches the header to it atomically. The slot that
    /// `passphrase` opens and every member slot (the new key wrapped to each member's public
    /// key) are carried over; another passphrase slot cannot be without its passphrase, and is
    /// refused unless `drop_other_slots`.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`]; [`Error::Invalid`] if other passphrase slots exist; storage
    /// errors (the old key and log then stay current).
    pub fn rotate_master_key(
        &self,
        passphrase: &SecretBytes,
        drop_other_slots: bool,
    ) -> Result<()> {
        self.audited_around(
            AuditOp::MasterKeyRotation,
            On::Nothing,
            String::new(),
            || self.rotate_master_key_inner(passphrase, drop_other_slots),
        )
    }

    pub(crate) fn rotate_master_key_inner(
        &self,
        passphrase: &SecretBytes,
        drop_other_slots: bool,
    ) -> Result<()> {
        // The one write a pending member removal allows: the rotation that finishes it.
        let _finishing = crate::engine::commit::Finishing::begin();
        let mut txn = self.e.begin_write(false)?;
        let header = txn.view.header.clone();
        let st = &mut *txn.st;
        let (_old_master, slot_id) = unlock::unlock_for_change(
            sync::lock(&self.e.opened).as_ref(),
            &header,
            passphrase,
            &self.e.options.kdf_limit,
            unlock::Pick::of(&self.e.options),
        )?;
        let epoch = header
            .key_epoch
            .checked_add(1)
            .ok_or_else(|| Error::invalid("key epoch", "no more key epochs"))?;
        let master = Key256::generate()?;
        let keys = Keys::derive(&master, &self.e.vault_id, epoch, slot_id);
        let slots = carried_slots(
            &header,
            &Carry {
                opened: slot_id,
                passphrase,
                drop_other_slots,
            },
            &master,
            &self.e.vault_id,
            epoch,
        )?;
        let new_header = VaultHeader::new(self.e.vault_id, epoch, slots, &master)?;
        let opened = unlock::OpenedWith::new(&master, &new_header, slot_id, passphrase)?;
        drop(master);
        let view = HeaderView {
            bytes: new_header.encode(),
            header: new_header,
        };
        // One pass, one frame at a time: each live record is read from the old log, decrypted
        // once, sealed under the new key and applied to the new state, which is thus built from
        // what is written without reading the new log back. The new state holds every secret's
        // metadata (not values) in memory: the new index orders secrets by a hash under the new
        // key, so no order of the old one can be streamed into it.
        let live: Vec<_> = st
            .index
            .live()?
            .into_iter()
            // The new log vouches for the new header only.
            .filter(|r| r.kind != vault_format::RecordKind::HeaderBinding)
            .collect();
        let event = Payload::Event(EventPayload {
            kind: EventKind::MasterKeyRotated,
            time_ms: now_ms(),
            text: format!("master key rotated to key epoch {epoch}"),
        });
        let bound = binding(BindingPhase::Confirmed, view.digest());
        let tail = [event, bound];
        let tail_records = seal::records(&keys, &self.e.vault_id, &tail, st.max_seq + 1)?;
        // A re-sealed record is as long as the original: the parts are known before sealing.
        let lens = live
            .iter()
            .map(|r| r.at.len as usize)
            .chain(tail_records.iter().map(RecordEnvelope::encoded_len));
        let ranges = seal::part_ranges(lens, self.e.options.snapshot_part_bytes);
        let keys = Arc::new(keys);
        let mut fresh = State::empty(keys.clone());
        let mut snapshot = seal::SnapshotFrames::new(&keys, &self.e.vault_id, st.generation + 1);
        let old_keys = st.keys.clone();
        let vault_id = self.e.vault_id;
        let mut tail = tail_records.into_iter().zip(tail);
        let total = live.len() as u64;
        let progress = self.e.options.progress.clone();
        let written = {
            let mut parts = ranges.iter().enumerate();
            let mut frames = |source: &dyn RecordSource| {
                let (k, r) = parts.next()?;
                let frame = (|| {
                    let mut records = Vec::with_capacity(r.len());
                    let mut payloads = Vec::with_capacity(r.len());
                    for i in r.clone() {
                        let (env, p) = match live.get(i) {
                            Some(old) => {
                                let old = fetch::read_envelope(source, old_keys.epoch, old)?;
                                let p = payload_of(&old, &old_keys, &vault_id)?;
                                (seal::record(&keys, &vault_id, &p, old.sequence)?, p)
                            }
                            None => tail.next().ok_or_else(|| {
                                Error::integrity("rotation", "a snapshot part past the records")
                            })?,
                        };
                        records.push(env);
                        payloads.push(p);
                    }
                    let frame = snapshot.seal(records);
                    let body = frame.encode()?;
                    // Placed in frame `k` for now; where it ends is known once it is written.
                    let places = RecordRef::in_frame(&frame.records, body.len(), k as u64);
                    for (place, p) in places.into_iter().zip(&payloads) {
                        fresh.max_seq = fresh.max_seq.max(place.sequence);
                        fresh.tail_records += 1;
                        fresh.tail_bytes += place.len();
                        fresh.index.apply(place, p)?;
                    }
                    let done = (r.end as u64).min(total);
                    progress.report("rotating the master key", done, total);
                    Ok(body)
                })();
                Some(frame)
            };
            txn.session.as_mut().rekey(epoch, &mut frames, &view.bytes)
        };
        let (ends, (generation, mac)) = match (written, snapshot.last()) {
            (Ok(ends), Some(last)) if !ends.is_empty() => (ends, last),
            (Err(e), _) => {
                // The header may or may not have switched to the new key: this handle can no
                // longer tell which log is current, so it stops; reopening resolves it from the
                // header.
                st.poisoned = true;
                return Err(e);
            }
            (Ok(_), _) => {
                st.poisoned = true;
                return Err(Error::integrity("rotation", "no frame was written"));
            }
        };
        fresh.index.relocate(&mut |r| {
            r.at.frame_end = ends.get(r.at.frame_end as usize).map_or(0, |c| c.offset());
        });
        let end = ends.last().copied().unwrap_or(Cursor::START);
        *sync::write(&self.e.header) = view;
        *sync::lock(&self.e.opened) = opened;
        fresh.generation = generation;
        fresh.last_mac = mac;
        fresh.pos = end;
        *st = fresh;
        self.e.record_generation(st);
        // The audit trail's next file, started here while both keys are at hand: the old
        // epoch's file is checked under its key before it is sealed by hash, and the trail's
        // policy carried over.
        if let Some(files) = &self.e.audit
            && let Err(e) = files.begin_epoch(
                &old_keys.audit,
                old_keys.epoch,
                &keys.audit,
                epoch,
                self.e.options.clock.now_ms(),
            )
        {
            tracing::warn!(error = %e, "the audit trail's file for the new key epoch could not be started");
        }
        // The new epoch's index; without it the next open reads the new log whole.
        if let Err(e) = self.e.checkpoint_locked(txn.session.as_mut(), st, None) {
            tracing::warn!(error = %e, "writing the index after rotation failed");
        }
        Ok(())
    }
}

/// What a rotation keeps of the old header's slots.
struct Carry<'a> {
    /// The slot the caller opened, with `passphrase`.
    opened: u16,
    passphrase: &'a SecretBytes,
    drop_other_slots: bool,
}

/// The new header's slots: the caller's, re-created (a passphrase slot) or re-wrapped (a member
/// slot); every other member's re-wrapped to their public key; the removed member's dropped.
fn carried_slots(
    header: &VaultHeader,
    carry: &Carry<'_>,
    master: &Key256,
    vault_id: &vault_format::VaultId,
    epoch: u32,
) -> Result<Vec<KeySlot>> {
    let stranded = header
        .slots
        .iter()
        .filter(|s| s.id != carry.opened && s.member().is_none())
        .count();
    if stranded > 0 && !carry.drop_other_slots {
        return Err(Error::invalid(
            "key slots",
            format!(
                "{stranded} other passphrase slot(s) cannot be carried over to a new master key without their passphrases; remove them first or drop them explicitly (member slots are carried over)"
            ),
        ));
    }
    let mut slots = Vec::with_capacity(header.slots.len());
    for old in &header.slots {
        if let Some((_, state)) = old.member() {
            // Removed members' slots, marked by an earlier removal, go now.
            if state == vault_format::MemberState::Removed {
                continue;
            }
            let mut slot = old.clone();
            slot.rewrap_member(master, vault_id, epoch)?;
            slots.push(slot);
        } else if old.id == carry.opened {
            let kdf = old.kdf().ok_or_else(|| {
                Error::integrity(
                    "vault header",
                    "the unlocking slot is not a passphrase slot",
                )
            })?;
            slots.push(KeySlot::create(
                old.id,
                carry.passphrase.expose_secret(),
                kdf,
                master,
                vault_id,
                epoch,
            )?);
        }
    }
    Ok(slots)
}
