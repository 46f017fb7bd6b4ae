//! `verify`: a strict re-read of the whole log, every frame and record authenticated, the header
//! binding and the rollback record compared.

use crate::audit::On;
use crate::backend::{Cursor, ReadOutcome, ReadSession, Tail, Visit};
use crate::engine::replay::{FrameError, State, damage};
use crate::rollback::Recorded;
use crate::sync;
use crate::vault::Vault;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

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
    /// With an index: how many secrets it holds, every block of it authenticated and the log
    /// found to reach its cursor with the same chain MAC, generation and sequence number; `None`
    /// without one (or with one the log no longer matches, which is not used).
    pub index_secrets: Option<u64>,
    /// Damage the engine tolerates but a user should know of: a slot of the rollback record that
    /// does not parse or authenticate (the other slot still serves; the next write rewrites it).
    pub warnings: Vec<String>,
}

/// What a checked read of the whole log found.
struct Checked {
    /// The view at the end of the log.
    st: State,
    /// The read's outcome (tail).
    out: ReadOutcome,
    /// Frames checked.
    frames: u64,
    /// Records checked.
    records: u64,
    /// The checkpoint given was used (or none was given).
    used: bool,
    /// The frame that did not authenticate, where the read stopped.
    failure: Option<Error>,
}

impl Vault {
    /// Re-reads the whole log from storage and authenticates every frame and record, checks the
    /// generation chain and compares with the rollback record.
    ///
    /// # Errors
    /// The first integrity failure found, or [`Error::RollbackDetected`].
    pub fn verify(&self) -> Result<VerifyReport> {
        self.audited_around(AuditOp::Verify, On::Nothing, String::new(), || {
            self.verify_inner()
        })
    }

    fn verify_inner(&self) -> Result<VerifyReport> {
        self.verify_pass().map(|(_, report)| report)
    }

    /// The verify pass, and the state it read (a view of the log as complete as an open's).
    /// With an index whose cursor the log holds, the log before that cursor is checked in full
    /// but its records are not kept: the view there is the index's (every block of which is
    /// authenticated here), so memory stays bounded by what follows it.
    pub(crate) fn verify_pass(&self) -> Result<(State, VerifyReport)> {
        let session: Box<dyn ReadSession> = self.e.session()?;
        let keys = sync::read(&self.e.state).keys.clone();
        let view = self.e.current_header(&*session, &keys)?;
        let checkpoint = self
            .e
            .start_state(keys.clone(), &*session)
            .map_err(|e| self.e.rekeyed_or(e, keys.epoch, &*session))?;
        let with_index = checkpoint.index.secrets.base().is_some();
        let (pass, index_used) = if with_index {
            let pass = self.read_checked(&*session, &keys, Some(checkpoint))?;
            if pass.used {
                (pass, true)
            } else {
                // The index describes no prefix of this log (a stale one, from before a
                // compaction say): it is not used, and the log is read all.
                (self.read_checked(&*session, &keys, None)?, false)
            }
        } else {
            (self.read_checked(&*session, &keys, None)?, false)
        };
        let Checked {
            mut st,
            out,
            frames,
            records,
            failure,
            ..
        } = pass;
        let index_secrets = if index_used {
            let mut n = 0u64;
            if let Some(b) = st.index.secrets.base() {
                b.for_each(&mut |_, _, _| {
                    n += 1;
                    Ok(())
                })?;
                if n != b.len() {
                    return Err(Error::integrity(
                        "index",
                        format!("the index holds {n} secrets but says {}", b.len()),
                    ));
                }
            }
            Some(n)
        } else {
            None
        };
        st.needs_reload = false;
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
                    newer_epoch: String::new(),
                });
            }
            Recorded::Generation(r) => Some(r),
            Recorded::NewerEpoch { epoch, generation } => {
                return Err(self.e.rollback_error(
                    &st,
                    crate::engine::recovery::Behind {
                        generation,
                        epoch: Some(epoch),
                    },
                ));
            }
            Recorded::Nothing => None,
        };
        let report = VerifyReport {
            frames,
            records,
            index_secrets,
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
        // What was verified is recorded: a copy put back older than it is noticed from now on.
        self.e.record_if_newer(&st);
        Ok((st, report))
    }

    /// Reads the whole log in `session`, checking every frame and record (see [`Checked`]). From `checkpoint`'s
    /// cursor on (if given, and if the log reaches it exactly, with the checkpoint's chain MAC,
    /// generation and sequence number), the view is the checkpoint's and the records after it are
    /// applied to it; before it, records are checked but not kept. Returns the view, the read's
    /// outcome, the frames and records checked, and whether the checkpoint was used.
    fn read_checked(
        &self,
        session: &dyn ReadSession,
        keys: &crate::sync::Arc<crate::engine::subkeys::Keys>,
        checkpoint: Option<State>,
    ) -> Result<Checked> {
        let cursor = checkpoint.as_ref().map(|c| c.pos);
        let mut checkpoint = checkpoint;
        let mut st = State::empty(keys.clone());
        let mut used = false;
        let mut frames = 0u64;
        let mut records = 0u64;
        let mut failure = None;
        let mut mismatch = None;
        let out = session
            .read(keys.epoch, &Cursor::START, &mut |f| {
                let apply = cursor.is_none() || used;
                match self.e.check_frame(&mut st, &f.body, f.end, apply) {
                    Ok(n) => {
                        frames += 1;
                        records += n;
                        // The place and check bytes, not the incarnation hint (a copied vault
                        // has another).
                        let at_cursor = cursor.is_some_and(|c| {
                            c.offset() == f.end.offset() && c.check() == f.end.check()
                        });
                        if !used
                            && at_cursor
                            && let Some(c) = checkpoint.take()
                        {
                            if (c.generation, c.last_mac, c.max_seq)
                                != (st.generation, st.last_mac, st.max_seq)
                            {
                                mismatch = Some(Error::integrity(
                                    "index",
                                    "the index disagrees with the log at its cursor (generation, chain MAC or sequence)",
                                ));
                                return Ok(Visit::Stop);
                            }
                            st = c;
                            used = true;
                        }
                        Ok(Visit::Continue)
                    }
                    Err(FrameError::Unauthentic(e)) => {
                        failure = Some(e);
                        Ok(Visit::Stop)
                    }
                    Err(FrameError::Invalid(e)) => Err(e),
                }
            })
            .map_err(|e| self.e.rekeyed_or(e, keys.epoch, session))?;
        if let Some(e) = mismatch {
            return Err(e);
        }
        Ok(Checked {
            st,
            out,
            frames,
            records,
            used: used || cursor.is_none(),
            failure,
        })
    }
}
