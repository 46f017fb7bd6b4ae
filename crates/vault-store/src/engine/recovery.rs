//! Opening read-only: the header re-read under a reader lock, the log caught up, the header
//! binding and the rollback record checked. Nothing in the vault is changed here.

use super::replay::State;
use super::subkeys::Keys;
use super::{Engine, HeaderView, decode_header};
use crate::backend::ReadSession;
use crate::rollback::Recorded;
use crate::sync;
use crate::{Error, Result};

impl Engine {
    /// Reads the log under a reader lock and checks the header binding and the rollback record.
    pub(crate) fn open_log(&self) -> Result<()> {
        if self.options.accept_rollback {
            return self.begin_write(true).map(drop);
        }
        let _w = sync::lock(&self.writer);
        let session: Box<dyn ReadSession> = self.session()?;
        let mut st = sync::write(&self.state);
        let view = self.current_header(&*session, &st.keys)?;
        self.reload(&mut st, &*session)?;
        st.index.header_binding(&view.digest())?;
        match self.rollback_check(&st, false)?.0 {
            Some(behind) => Err(self.rollback_error(&st, behind)),
            None => {
                self.record_if_newer(&st);
                Ok(())
            }
        }
    }

    /// Records the generation this handle has read if the rollback record is behind it: a
    /// client that only reads also notices the vault put back to a state older than one it
    /// saw (the record is this client's, outside the vault, which is not changed).
    pub(crate) fn record_if_newer(&self, st: &State) {
        let behind = match self
            .rollback
            .load(&self.vault_id, &st.keys.rollback, st.keys.epoch)
        {
            Ok(Recorded::Generation(r)) => r < st.generation,
            Ok(Recorded::Nothing) => true,
            Ok(Recorded::NewerEpoch { .. }) | Err(_) => false,
        };
        // A damaged record is left for `verify` to report (a write repairs it, as before).
        let damaged = self
            .rollback
            .damaged_slots(&self.vault_id, &st.keys.rollback, st.keys.epoch)
            .map_or(true, |d| !d.is_empty());
        if behind && !damaged {
            self.record_generation(st);
        }
    }

    /// Reads the header in `session` and checks it against this handle's keys, adopting it if
    /// another process changed a key slot.
    pub(crate) fn current_header(
        &self,
        session: &dyn ReadSession,
        keys: &Keys,
    ) -> Result<HeaderView> {
        let bytes = session.header()?;
        {
            let known = sync::read(&self.header);
            if known.bytes == bytes {
                return Ok(known.clone());
            }
        }
        let header = decode_header(&bytes, &self.backend.location())?;
        if header.vault_id != self.vault_id {
            return Err(Error::integrity(
                "vault header",
                format!(
                    "the header is of vault {}, not {}",
                    header.vault_id, self.vault_id
                ),
            ));
        }
        if header.key_epoch > keys.epoch {
            return Err(Error::Rekeyed);
        }
        if header.key_epoch < keys.epoch {
            return Err(Error::integrity(
                "vault header",
                format!(
                    "the header is of key epoch {}, older than epoch {} this vault was opened at: an older header was put back",
                    header.key_epoch, keys.epoch
                ),
            ));
        }
        header.verify_mac_with_subkey(&keys.mac).map_err(|_| {
            Error::integrity(
                "vault header",
                "the header MAC does not verify: the header was modified",
            )
        })?;
        let view = HeaderView { header, bytes };
        *sync::write(&self.header) = view.clone();
        Ok(view)
    }

    /// The rollback error for a vault `behind` the record.
    pub(crate) fn rollback_error(&self, st: &State, behind: Behind) -> Error {
        Error::RollbackDetected {
            vault_generation: st.generation,
            recorded_generation: behind.generation,
            record: self.rollback.location(),
            newer_epoch: behind.epoch.map_or_else(String::new, |e| {
                format!(
                    ", under key epoch {e} where the vault is at key epoch {}: it was put back to before a master-key rotation, which undoes what that rotation did (a member's removal with it)",
                    st.keys.epoch
                )
            }),
        }
    }

    /// What the rollback record shows the vault is behind: the generation recorded, and the
    /// record's key epoch when it is later than the vault's. `lenient`: an unreadable record is
    /// ignored (when accepting a rollback); the second value says one was.
    pub(crate) fn rollback_check(
        &self,
        st: &State,
        lenient: bool,
    ) -> Result<(Option<Behind>, bool)> {
        let (recorded, unreadable) =
            match self
                .rollback
                .load(&self.vault_id, &st.keys.rollback, st.keys.epoch)
            {
                Ok(r) => (r, false),
                Err(e) if lenient => {
                    tracing::warn!(error = %e, "ignoring an unreadable rollback record, as asked");
                    (Recorded::Nothing, true)
                }
                Err(e) => return Err(e),
            };
        let behind = match recorded {
            Recorded::Generation(r) if r > st.generation => Some(Behind {
                generation: r,
                epoch: None,
            }),
            Recorded::NewerEpoch { epoch, generation } => Some(Behind {
                generation,
                epoch: Some(epoch),
            }),
            _ => None,
        };
        Ok((behind, unreadable))
    }
}

/// How far the vault is behind its rollback record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Behind {
    /// The generation recorded.
    pub(crate) generation: u64,
    /// The record's key epoch, when later than the vault's.
    pub(crate) epoch: Option<u32>,
}
