//! `verify`: a strict re-read of the whole log, every frame and record authenticated, the header
//! binding and the rollback record compared.

use crate::backend::{Cursor, ReadSession, Tail, Visit};
use crate::engine::replay::{FrameError, State, damage};
use crate::rollback::Recorded;
use crate::sync;
use crate::vault::Vault;
use crate::{Error, Result};

/// What [`Vault::verify`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Frames read and authenticated.
    pub frames: u64,
    /// Records decrypted and authenticated.
    pub records: u64,
    /// Generation at the head of the log.
    pub generation: u64,
    /// What the rollback record says (`None` if there is none or checking is off).
    pub recorded_generation: Option<u64>,
    /// Secrets (including soft-deleted ones).
    pub secrets: usize,
    /// Managed keys.
    pub keys: usize,
    /// Bytes in the log that a compaction would drop.
    pub superseded_bytes: u64,
    /// The log ends with the torn tail of an interrupted commit (never acknowledged); the next
    /// write discards it.
    pub torn_tail: bool,
    /// Damage the engine tolerates but a user should know of: a slot of the rollback record that
    /// does not parse or authenticate (the other slot still serves; the next write rewrites it).
    pub warnings: Vec<String>,
}

impl Vault {
    /// Re-reads the whole log from storage and authenticates every frame and record, checks the
    /// generation chain and compares with the rollback record.
    ///
    /// # Errors
    /// The first integrity failure found, or [`Error::RollbackDetected`].
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_pass().map(|(_, report)| report)
    }

    /// The verify pass, and the state it read (a view of the log as complete as an open's).
    pub(crate) fn verify_pass(&self) -> Result<(State, VerifyReport)> {
        let session: Box<dyn ReadSession> = self.e.session()?;
        let keys = sync::read(&self.e.state).keys.clone();
        let view = self.e.current_header(&*session, &keys)?;
        let mut st = State::empty(keys.clone());
        let mut frames = 0u64;
        let mut records = 0u64;
        let mut failure = None;
        let out = session
            .read(keys.epoch, &Cursor::START, &mut |f| match self
                .e
                .apply_frame(&mut st, &f.body, f.end)
            {
                Ok(n) => {
                    frames += 1;
                    records += n;
                    Ok(Visit::Continue)
                }
                Err(FrameError::Unauthentic(e)) => {
                    failure = Some(e);
                    Ok(Visit::Stop)
                }
                Err(FrameError::Invalid(e)) => Err(e),
            })
            .map_err(|e| self.e.rekeyed_or(e, keys.epoch, &*session))?;
        let location = self.e.backend.location();
        // A torn tail is what a crash leaves, not damage: reported, not an error.
        if out.tail == Tail::Damaged {
            return Err(damage(failure, &location));
        }
        if st.generation == 0 {
            return Err(Error::integrity(
                format!("log in {location}"),
                "the log holds no snapshot frame",
            ));
        }
        st.index.header_binding(&view.digest())?;
        let recorded = match self
            .e
            .rollback
            .load(&self.e.vault_id, &keys.rollback, keys.epoch)?
        {
            Recorded::Generation(r) if r > st.generation => {
                return Err(Error::RollbackDetected {
                    vault_generation: st.generation,
                    recorded_generation: r,
                    record: self.e.rollback.location(),
                });
            }
            Recorded::Generation(r) => Some(r),
            Recorded::NewerEpoch { generation, .. } => {
                return Err(Error::RollbackDetected {
                    vault_generation: st.generation,
                    recorded_generation: generation,
                    record: self.e.rollback.location(),
                });
            }
            Recorded::Nothing => None,
        };
        let report = VerifyReport {
            frames,
            records,
            generation: st.generation,
            recorded_generation: recorded,
            secrets: st.index.secrets.len() as usize,
            keys: st.index.keys.len(),
            superseded_bytes: st.index.dead_bytes,
            torn_tail: out.tail == Tail::Torn,
            warnings: self.e.rollback.damaged_slots(
                &self.e.vault_id,
                &keys.rollback,
                keys.epoch,
            )?,
        };
        Ok((st, report))
    }
}
