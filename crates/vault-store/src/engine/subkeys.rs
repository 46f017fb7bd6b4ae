//! The keys derived from the master key, one per purpose (HKDF-SHA256, docs/FORMAT.md §2), each
//! of its own type so that one cannot be passed where another is meant.

use vault_crypto::Key256;
use vault_crypto::derive::{ChainMacKey, IndexKey, IndexNameKey, RecordKey, RollbackKey};
use vault_format::VaultId;

pub(crate) struct Keys {
    pub(crate) epoch: u32,
    pub(crate) record: RecordKey,
    pub(crate) mac: ChainMacKey,
    pub(crate) rollback: RollbackKey,
    pub(crate) index: IndexKey,
    pub(crate) index_name: IndexNameKey,
    /// The audit trail's keys (from the master key's audit subkey).
    pub(crate) audit: vault_format::audit::AuditKeys,
    pub(crate) slot_id: u16,
}

impl Keys {
    /// Locks the pages of every key here against swapping; returns how many keys.
    pub(crate) fn lock_in_memory(&self) -> std::io::Result<usize> {
        for k in [
            self.record.key(),
            self.mac.key(),
            self.rollback.key(),
            self.index.key(),
            self.index_name.key(),
        ] {
            k.lock_in_memory()?;
        }
        Ok(5 + self.audit.lock_in_memory()?)
    }

    pub(crate) fn derive(master: &Key256, vault_id: &VaultId, epoch: u32, slot_id: u16) -> Self {
        let ctx = vault_id.as_bytes();
        Self {
            epoch,
            record: RecordKey::derive(master, ctx),
            mac: ChainMacKey::derive(master, ctx),
            rollback: RollbackKey::derive(master, ctx),
            index: IndexKey::derive(master, ctx),
            index_name: IndexNameKey::derive(master, ctx),
            audit: vault_format::audit::AuditKeys::derive(
                &vault_crypto::derive::subkey(master, vault_crypto::derive::Purpose::Audit, ctx),
                vault_id,
            ),
            slot_id,
        }
    }
}
