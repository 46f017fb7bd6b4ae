//! Keeping the rollback record (FORMAT.md §8) in a state directory outside the vault directory.

use std::path::{Path, PathBuf};

use vault_crypto::derive::RollbackKey;
use vault_format::VaultId;
use vault_format::rollback::{
    ROLLBACK_FILE_LEN, ROLLBACK_SLOT_LEN, ROLLBACK_SLOTS_OFFSET, RollbackSlot,
    decode_rollback_file, encode_rollback_file,
};

use crate::io::{Io, RealIo};
use crate::{Error, Result};

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

/// The record file for one vault, or nothing if rollback checking is off.
#[derive(Clone, Debug)]
pub(crate) struct RollbackFile {
    path: Option<PathBuf>,
}

impl RollbackFile {
    pub(crate) fn new(dir: Option<&Path>, vault_id: &VaultId) -> Self {
        Self {
            path: dir.map(|d| d.join(format!("{}.rollback", vault_id.to_hex()))),
        }
    }

    pub(crate) fn location(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
        let f = match RealIo.open_read(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("opening", path, e)),
        };
        let len = f.stamp().map_err(|e| Error::io("reading", path, e))?.len;
        // One byte more than the format's length is enough to tell the file is too long.
        let mut buf = vec![0u8; len.min(ROLLBACK_FILE_LEN as u64 + 1) as usize];
        f.read_exact_at(&mut buf, 0)
            .map_err(|e| Error::io("reading", path, e))?;
        Ok(Some(buf))
    }

    fn slots(path: &Path, vault_id: &VaultId) -> Result<Option<[Option<RollbackSlot>; 2]>> {
        let Some(bytes) = Self::read_file(path)? else {
            return Ok(None);
        };
        let (id, slots) = decode_rollback_file(&bytes).map_err(|e| {
            Error::integrity(format!("rollback record {}", path.display()), e.to_string())
        })?;
        if &id != vault_id {
            return Err(Error::integrity(
                format!("rollback record {}", path.display()),
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
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        let Some(slots) = Self::slots(path, vault_id)? else {
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
        let Some(path) = &self.path else {
            return Ok(Recorded::Nothing);
        };
        let Some(slots) = Self::slots(path, vault_id)? else {
            return Ok(Recorded::Nothing);
        };
        // A record that exists but has no slot that parses says nothing, and taking that for "no
        // record" would switch rollback detection off: damage.
        if slots.iter().all(Option::is_none) {
            return Err(Error::integrity(
                format!("rollback record {}", path.display()),
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
                format!("rollback record {}", path.display()),
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
        let Some(path) = &self.path else {
            return Ok(());
        };
        let existing = Self::slots(path, vault_id).ok().flatten();
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
            let f = RealIo
                .open_rw(path)
                .map_err(|e| Error::io("opening", path, e))?;
            let offset = ROLLBACK_SLOTS_OFFSET + (counter % 2) as usize * ROLLBACK_SLOT_LEN;
            return f
                .write_all_at(&slot.encode(), offset as u64)
                .map_err(|e| Error::io("writing", path, e));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        RealIo
            .create_dir_all(dir)
            .map_err(|e| Error::io("creating directory", dir, e))?;
        let bytes = encode_rollback_file(vault_id, [&slot, &slot]);
        crate::io::replace_atomically(
            &RealIo,
            &path.with_extension("rollback.tmp"),
            path,
            dir,
            &bytes,
        )
    }
}
