//! The keys derived from the master key, one per purpose (HKDF-SHA256, docs/FORMAT.md §2).

use vault_crypto::Key256;
use vault_crypto::derive::{self, Purpose};
use vault_format::VaultId;

pub(crate) struct Keys {
    pub(crate) epoch: u32,
    pub(crate) record: Key256,
    pub(crate) mac: Key256,
    pub(crate) rollback: Key256,
    pub(crate) slot_id: u8,
}

impl Keys {
    pub(crate) fn derive(master: &Key256, vault_id: &VaultId, epoch: u32, slot_id: u8) -> Self {
        let ctx = vault_id.as_bytes();
        Self {
            epoch,
            record: derive::subkey(master, Purpose::RecordEncryption, ctx),
            mac: derive::subkey(master, Purpose::RecordMac, ctx),
            rollback: derive::subkey(master, Purpose::RollbackRecord, ctx),
            slot_id,
        }
    }
}
