//! The rollback record (FORMAT.md §8): reading what it says about a vault and recording a new
//! generation, kept in a [`RollbackStore`] outside the vault's storage.

mod store;

use vault_crypto::derive::RollbackKey;
use vault_format::VaultId;
use vault_format::rollback::{
    RollbackSlot, decode_rollback_file, encode_rollback_file, slot_offset,
};

use crate::sync::Arc;
use crate::{Error, Result};

pub(crate) use store::from_options;
pub use store::{DirRollbackStore, MemoryRollbackStore, RollbackStore};

/// What the rollback record says about a vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// No record (first open on this machine, or checking disabled).
    Nothing,
    /// The highest generation committed under the current key epoch.
    Generation(u64),
    /// The record was written under a newer key epoch than the vault has: the vault is an older
    /// copy from before a master-key rotation.
    NewerEpoch {
        /// The record's epoch.
        epoch: u32,
        /// The record's generation.
        generation: u64,
    },
}

/// The record of one vault, or nothing if rollback checking is off.
#[derive(Clone, Debug)]
pub(crate) struct RollbackFile {
    store: Option<Arc<dyn RollbackStore>>,
    vault_id: VaultId,
}

impl RollbackFile {
    pub(crate) fn new(store: Option<Arc<dyn RollbackStore>>, vault_id: &VaultId) -> Self {
        Self {
            store,
            vault_id: *vault_id,
        }
    }

    pub(crate) fn location(&self) -> String {
        self.store
            .as_ref()
            .map(|s| s.location(&self.vault_id))
            .unwrap_or_default()
    }

    fn slots(
        store: &dyn RollbackStore,
        vault_id: &VaultId,
    ) -> Result<Option<[Option<RollbackSlot>; 2]>> {
        let Some(bytes) = store.read(vault_id)? else {
            return Ok(None);
        };
        let object = || format!("rollback record {}", store.location(vault_id));
        let (id, slots) =
            decode_rollback_file(&bytes).map_err(|e| Error::integrity(object(), e.to_string()))?;
        if &id != vault_id {
            return Err(Error::integrity(
                object(),
                format!("record is for vault {id}, not {vault_id}"),
            ));
        }
        Ok(Some(slots))
    }

    /// What is wrong with the record's slots, short of making it unusable: a slot that does not
    /// parse or does not authenticate under this epoch's key (a torn write or tampering; the
    /// other slot still serves, and the next write rewrites the file), or a slot of another
    /// epoch. Empty when both slots are valid, or when there is no record.
    pub(crate) fn damaged_slots(
        &self,
        vault_id: &VaultId,
        key: &RollbackKey,
        epoch: u32,
    ) -> Result<Vec<String>> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let Some(slots) = Self::slots(&**store, vault_id)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            match slot {
                None => out.push(format!("rollback record slot {i} does not parse")),
                Some(s) if s.key_epoch != epoch => out.push(format!(
                    "rollback record slot {i} is of key epoch {}, not {epoch}",
                    s.key_epoch
                )),
                Some(s) if !s.verify(key, vault_id) => {
                    out.push(format!("rollback record slot {i} does not authenticate"))
                }
                Some(_) => {}
            }
        }
        Ok(out)
    }

    /// Reads the record, checking its MAC under `key` (the current epoch's rollback subkey).
    pub(crate) fn load(
        &self,
        vault_id: &VaultId,
        key: &RollbackKey,
        epoch: u32,
    ) -> Result<Recorded> {
        let Some(store) = &self.store else {
            return Ok(Recorded::Nothing);
        };
        let Some(slots) = Self::slots(&**store, vault_id)? else {
            return Ok(Recorded::Nothing);
        };
        // A record that exists but has no slot that parses says nothing, and taking that for "no
        // record" would switch rollback detection off: damage.
        if slots.iter().all(Option::is_none) {
            return Err(Error::integrity(
                format!("rollback record {}", self.location()),
                "neither slot of the record can be read",
            ));
        }
        // A slot from a newer epoch cannot be authenticated with this (older) key, but an older
        // copy of the vault cannot have a record from its own future: a rollback. The newest such
        // slot is reported whichever slot it sits in.
        if let Some(s) = slots
            .iter()
            .flatten()
            .filter(|s| s.key_epoch > epoch)
            .max_by_key(|s| (s.key_epoch, s.generation))
        {
            return Ok(Recorded::NewerEpoch {
                epoch: s.key_epoch,
                generation: s.generation,
            });
        }
        let mut best: Option<&RollbackSlot> = None;
        let mut unauthenticated = false;
        for s in slots.iter().flatten().filter(|s| s.key_epoch == epoch) {
            if !s.verify(key, vault_id) {
                unauthenticated = true;
                continue;
            }
            if best.is_none_or(|b| s.counter > b.counter) {
                best = Some(s);
            }
        }
        match best {
            Some(s) => Ok(Recorded::Generation(s.generation)),
            None if unauthenticated => Err(Error::integrity(
                format!("rollback record {}", self.location()),
                "the record does not authenticate under this vault's key",
            )),
            None => Ok(Recorded::Nothing),
        }
    }

    /// Records `generation` as committed. Called holding the vault's writer lock. Not fsynced: the
    /// commit itself is durable, and a record that lags by a commit after a power cut only
    /// narrows what rollback checking can see.
    pub(crate) fn store(
        &self,
        vault_id: &VaultId,
        key: &RollbackKey,
        epoch: u32,
        generation: u64,
    ) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let existing = Self::slots(&**store, vault_id).ok().flatten();
        let counter = existing
            .as_ref()
            .map(|s| s.iter().flatten().map(|s| s.counter).max().unwrap_or(0))
            .unwrap_or(0)
            + 1;
        let slot = RollbackSlot::seal(key, vault_id, counter, epoch, generation);
        // Overwriting the older slot in place is safe only when the other one is a valid record
        // of this epoch; otherwise (no file, a damaged or foreign slot, a slot of another epoch
        // after an accepted rollback or a rotation) both slots are rewritten, atomically, so no
        // stale slot outlives this write.
        let both_current = existing.as_ref().is_some_and(|slots| {
            slots.iter().all(|s| {
                s.as_ref()
                    .is_some_and(|s| s.key_epoch == epoch && s.verify(key, vault_id))
            })
        });
        if both_current {
            let index = (counter % 2) as usize;
            return store.write_at(vault_id, slot_offset(index), &slot.encode());
        }
        let bytes = encode_rollback_file(vault_id, [&slot, &slot]);
        store.replace(vault_id, &bytes)
    }
}
