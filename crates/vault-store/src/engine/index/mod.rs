//! The in-memory index: everything the log says about the vault's contents, rebuilt by applying
//! each record in order. Pure: no I/O, no keys. It keeps where each live record is
//! ([`RecordRef`]), never the record itself, so its size does not grow with the values stored.
//! Each record domain keeps its own part ([`secrets`], [`keys`], [`vault_records`]); a new record
//! kind adds its part and one line of dispatch in [`Index::apply`].

pub(crate) mod keys;
pub(crate) mod record_ref;
pub(crate) mod secrets;
pub(crate) mod vault_records;

use vault_format::payload::Payload;

pub use keys::KeyVersionInfo;
pub(crate) use record_ref::RecordRef;

use crate::Result;

/// Default number of versions kept per secret.
pub const DEFAULT_MAX_VERSIONS: u32 = 100;

/// Everything known about the vault's contents, rebuilt from the log.
#[derive(Clone, Default)]
pub(crate) struct Index {
    pub(crate) secrets: secrets::Secrets,
    pub(crate) keys: keys::Keys,
    pub(crate) vault: vault_records::VaultRecords,
    /// Bytes of envelopes appended to the current log.
    pub(crate) total_bytes: u64,
    /// Bytes of envelopes no longer live.
    pub(crate) dead_bytes: u64,
}

impl Index {
    /// How many versions of each secret are kept.
    pub(crate) fn max_versions(&self) -> u32 {
        self.vault.max_versions()
    }

    /// Applies one record: the dispatch to its domain. Fails only if a checkpoint the index
    /// reads from cannot be read (the index is then part-way through the record).
    pub(crate) fn apply(&mut self, env: RecordRef, payload: &Payload) -> Result<()> {
        self.total_bytes += env.len();
        let max = self.max_versions() as usize;
        self.dead_bytes += match payload {
            Payload::SecretVersion(p) => self.secrets.apply_version(env, p, max)?,
            Payload::SecretState(p) => self.secrets.apply_state(env, p)?,
            Payload::KeyVersion(p) => self.keys.apply(env, p),
            Payload::Settings(p) => {
                self.vault.apply_settings(env, p) + self.secrets.prune(p.max_versions as usize)?
            }
            Payload::Event(_) => self.vault.apply_event(env),
            Payload::HeaderBinding(p) => self.vault.apply_binding(env, p),
            Payload::Key(p) => self.keys.apply_settings(env, p),
        };
        Ok(())
    }

    /// See [`vault_records::VaultRecords::header_binding`].
    pub(crate) fn header_binding(&self, digest: &[u8; 32]) -> Result<bool> {
        self.vault.header_binding(digest)
    }

    /// Every live record, in sequence order.
    pub(crate) fn live(&self) -> Result<Vec<RecordRef>> {
        let mut out: Vec<RecordRef> = self.vault.live().chain(self.keys.live()).copied().collect();
        self.secrets.live(&mut out)?;
        out.sort_unstable_by_key(|e| e.sequence);
        Ok(out)
    }

    /// Lets `f` move every live record held in memory (after the log was rewritten; a
    /// checkpoint's records move when it is rewritten).
    pub(crate) fn relocate(&mut self, f: &mut dyn FnMut(&mut RecordRef)) {
        self.vault.relocate(f);
        self.secrets.relocate(f);
        self.keys.relocate(f);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use vault_crypto::SecretBytes;
    use vault_format::RecordKind;
    use vault_format::payload::{
        BindingPhase, HeaderBindingPayload, SecretState, SecretStatePayload, SecretVersionPayload,
        SettingsPayload,
    };

    use super::*;

    /// A record of `len` bytes: the index never reads records, it counts and places them.
    fn env(kind: RecordKind, sequence: u64, len: u32) -> RecordRef {
        RecordRef {
            sequence,
            kind,
            at: crate::backend::RecordAt {
                frame_end: sequence,
                back: len,
                len,
            },
        }
    }

    fn version(name: &str, version: u32) -> Payload {
        Payload::SecretVersion(SecretVersionPayload {
            name: name.into(),
            version,
            created_ms: 0,
            tags: Vec::new(),
            value: SecretBytes::from_slice(b"v"),
        })
    }

    fn state(name: &str, state: SecretState) -> Payload {
        Payload::SecretState(SecretStatePayload {
            name: name.into(),
            state,
            time_ms: 0,
        })
    }

    #[test]
    fn versions_beyond_the_limit_are_pruned_and_counted_dead() {
        let mut ix = Index::default();
        ix.apply(
            env(RecordKind::Settings, 1, 10),
            &Payload::Settings(SettingsPayload { max_versions: 2 }),
        )
        .unwrap();
        for v in 1..=3 {
            ix.apply(
                env(RecordKind::SecretVersion, 1 + u64::from(v), 100),
                &version("a", v),
            )
            .unwrap();
        }
        let a = ix.secrets.get("a").unwrap().unwrap();
        assert_eq!(a.versions.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(a.latest, 3);
        assert_eq!(ix.dead_bytes, 100);
        // Lowering the limit prunes what is already there.
        ix.apply(
            env(RecordKind::Settings, 5, 10),
            &Payload::Settings(SettingsPayload { max_versions: 1 }),
        )
        .unwrap();
        assert_eq!(ix.secrets.get("a").unwrap().unwrap().versions.len(), 1);
        let live: Vec<u64> = ix.live().unwrap().iter().map(|e| e.sequence).collect();
        assert_eq!(live, [4, 5], "live records, in sequence order");
    }

    #[test]
    fn delete_restore_and_destroy() {
        let mut ix = Index::default();
        ix.apply(env(RecordKind::SecretVersion, 1, 50), &version("a", 1))
            .unwrap();
        ix.apply(
            env(RecordKind::SecretState, 2, 20),
            &state("a", SecretState::Deleted),
        )
        .unwrap();
        assert!(ix.secrets.get("a").unwrap().unwrap().deleted.is_some());
        ix.apply(
            env(RecordKind::SecretState, 3, 20),
            &state("a", SecretState::Restored),
        )
        .unwrap();
        assert!(ix.secrets.get("a").unwrap().unwrap().deleted.is_none());
        ix.apply(
            env(RecordKind::SecretState, 4, 20),
            &state("a", SecretState::Destroyed),
        )
        .unwrap();
        assert!(ix.secrets.get("a").unwrap().is_none());
        assert!(ix.live().unwrap().is_empty());
        assert_eq!(ix.dead_bytes, ix.total_bytes, "everything applied is dead");
    }

    #[test]
    fn the_header_binding_vouches_for_one_header() {
        let mut ix = Index::default();
        let bind = |phase, d: u8| {
            Payload::HeaderBinding(HeaderBindingPayload {
                phase,
                digest: [d; 32],
            })
        };
        assert!(
            ix.header_binding(&[1; 32]).unwrap(),
            "no binding yet: confirm"
        );
        ix.apply(
            env(RecordKind::HeaderBinding, 1, 40),
            &bind(BindingPhase::Confirmed, 1),
        )
        .unwrap();
        assert!(!ix.header_binding(&[1; 32]).unwrap());
        assert!(ix.header_binding(&[2; 32]).is_err());
        ix.apply(
            env(RecordKind::HeaderBinding, 2, 40),
            &bind(BindingPhase::Intent, 2),
        )
        .unwrap();
        assert!(
            ix.header_binding(&[1; 32]).unwrap(),
            "the old header, intent pending"
        );
        assert!(
            ix.header_binding(&[2; 32]).unwrap(),
            "the new header, intent pending"
        );
        ix.apply(
            env(RecordKind::HeaderBinding, 3, 40),
            &bind(BindingPhase::Confirmed, 2),
        )
        .unwrap();
        assert!(ix.header_binding(&[1; 32]).is_err());
        assert_eq!(ix.live().unwrap().len(), 1);
    }
}
