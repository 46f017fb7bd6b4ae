//! Master-key rotation: every live record re-encrypted under a new master key into the log of a
//! new key epoch, and the header switched to it atomically.

use vault_crypto::{Key256, SecretBytes};
use vault_format::log::Frame;
use vault_format::payload::{BindingPhase, EventKind, EventPayload, Payload};
use vault_format::{KeySlot, VaultHeader};

use crate::engine::replay::{State, apply_frame};
use crate::engine::seal;
use crate::engine::subkeys::Keys;
use crate::engine::unlock;
use crate::engine::{HeaderView, binding, now_ms, payload_of};
use crate::sync::{self, Arc};
use crate::vault::Vault;
use crate::{Error, Result};

impl Vault {
    /// Replaces the master key: re-encrypts every live record under a new one, writes them as
    /// the log of a new key epoch and switches the header to it atomically. Only the slot that
    /// `passphrase` opens can be carried over; other slots are refused unless
    /// `drop_other_slots`.
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`]; [`Error::Invalid`] if other slots exist; storage errors (the
    /// old key and log then stay current).
    pub fn rotate_master_key(
        &self,
        passphrase: &SecretBytes,
        drop_other_slots: bool,
    ) -> Result<()> {
        let mut txn = self.e.begin_write(false)?;
        let header = txn.view.header.clone();
        let st = &mut *txn.st;
        let (_old_master, slot_id) = unlock::unlock_for_change(
            sync::lock(&self.e.opened).as_ref(),
            &header,
            passphrase,
            &self.e.options.kdf_limit,
        )?;
        let old_slot = header
            .slot(slot_id)
            .ok_or_else(|| Error::integrity("vault header", "unlocked slot vanished"))?
            .clone();
        let others = header.slots.len() - 1;
        if others > 0 && !drop_other_slots {
            return Err(Error::invalid(
                "key slots",
                format!(
                    "{others} other key slot(s) cannot be carried over to a new master key without their passphrases; remove them first or drop them explicitly"
                ),
            ));
        }
        let epoch = header
            .key_epoch
            .checked_add(1)
            .ok_or_else(|| Error::invalid("key epoch", "no more key epochs"))?;
        let master = Key256::generate()?;
        let keys = Keys::derive(&master, &self.e.vault_id, epoch, slot_id);
        let slot = KeySlot::create(
            slot_id,
            passphrase.expose_secret(),
            old_slot.kdf().ok_or_else(|| {
                Error::integrity(
                    "vault header",
                    "the unlocking slot is not a passphrase slot",
                )
            })?,
            &master,
            &self.e.vault_id,
            epoch,
        )?;
        let new_header = VaultHeader::new(self.e.vault_id, epoch, vec![slot], &master)?;
        let opened = unlock::OpenedWith::new(&master, &new_header, slot_id, passphrase)?;
        drop(master);
        let view = HeaderView {
            bytes: new_header.encode(),
            header: new_header,
        };
        // One pass: each live record is decrypted once, re-sealed, and its payload kept to build
        // the new state from what is written, without reading the new log back.
        let mut records = Vec::new();
        let mut payloads = Vec::new();
        for env in st.index.live() {
            // The new log vouches for the new header only.
            if env.kind == vault_format::RecordKind::HeaderBinding {
                continue;
            }
            let p = payload_of(&env, &st.keys, &self.e.vault_id)?;
            records.push(seal::record(&keys, &self.e.vault_id, &p, env.sequence)?);
            payloads.push(p);
        }
        let event = Payload::Event(EventPayload {
            kind: EventKind::MasterKeyRotated,
            time_ms: now_ms(),
            text: format!("master key rotated to key epoch {epoch}"),
        });
        let bound = binding(BindingPhase::Confirmed, view.digest());
        records.extend(seal::records(
            &keys,
            &self.e.vault_id,
            [&event, &bound],
            st.max_seq + 1,
        )?);
        payloads.extend([event, bound]);
        let parts = seal::snapshot_parts(records, self.e.options.snapshot_part_bytes);
        let mut frames = seal::snapshot_frames(&keys, &self.e.vault_id, st.generation + 1, parts);
        let bodies = frames
            .iter()
            .map(Frame::encode)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let session = txn.session.as_mut();
        let end = match session.rekey(epoch, &bodies, &view.bytes) {
            Ok(end) => end,
            Err(e) => {
                // The header may or may not have switched to the new key: this handle can no
                // longer tell which log is current, so it stops; reopening resolves it from the
                // header.
                st.poisoned = true;
                return Err(e);
            }
        };
        *sync::write(&self.e.header) = view;
        *sync::lock(&self.e.opened) = opened;
        let mut fresh = State::empty(Arc::new(keys));
        let mut payloads = payloads.into_iter();
        for frame in &mut frames {
            let decoded = std::mem::take(&mut frame.records)
                .into_iter()
                .map(Arc::new)
                .zip(payloads.by_ref())
                .collect();
            // Only the last frame's end is known (and needed): the cursor is the log's end.
            apply_frame(&mut fresh, frame, decoded, end);
        }
        *st = fresh;
        self.e.record_generation(st);
        Ok(())
    }
}
