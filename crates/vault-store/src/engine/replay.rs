//! The replicated view of the log ([`State`]) and bringing it up to date: streaming the frames
//! after a proven position, checking each against the chain, and judging the tail (torn or
//! damaged, by `vault_format::log::classify_tail`).

use vault_crypto::mac::MAC_LEN;
use vault_format::VaultHeader;
use vault_format::log::{FrameType, FrameView};

use super::index::{Index, RecordRef};
use super::subkeys::Keys;
use super::{Engine, payload_of};
use crate::backend::{Cursor, ReadSession, RecordAt, Tail, Visit};
use crate::sync::{self, Arc};
use crate::{Error, Result};

/// The replicated view of the log.
pub(crate) struct State {
    pub(crate) keys: Arc<Keys>,
    pub(crate) index: Index,
    pub(crate) pos: Cursor,
    pub(crate) generation: u64,
    pub(crate) last_mac: [u8; MAC_LEN],
    /// Highest record sequence seen.
    pub(crate) max_seq: u64,
    /// Set after a failed commit: the next operation re-reads the log from the start.
    pub(crate) needs_reload: bool,
    /// Records applied since the checkpoint the view started from (all of them without one):
    /// what the next open would replay, and so what decides when a writer checkpoints.
    pub(crate) tail_records: u64,
    /// Bytes of those records.
    pub(crate) tail_bytes: u64,
    /// Set after a master-key rotation failed midway: only reopening can tell which key is
    /// current, so every operation fails with [`Error::Rekeyed`].
    pub(crate) poisoned: bool,
}

impl State {
    pub(crate) fn empty(keys: Arc<Keys>) -> Self {
        Self {
            keys,
            index: Index::default(),
            pos: Cursor::START,
            generation: 0,
            last_mac: [0; MAC_LEN],
            max_seq: 0,
            needs_reload: false,
            tail_records: 0,
            tail_bytes: 0,
            poisoned: false,
        }
    }
}

/// Why a frame was not accepted.
pub(crate) enum FrameError {
    /// It does not parse or does not authenticate: damage, or part of a torn tail.
    Unauthentic(Error),
    /// It authenticates but breaks a rule of the log: written by a holder of the key, never torn.
    Invalid(Error),
}

/// The error for a damaged log tail: the frame that failed, or the bytes that no interrupted
/// commit can leave.
pub(crate) fn damage(failure: Option<Error>, location: &str) -> Error {
    failure.unwrap_or_else(|| {
        Error::integrity(
            format!("log in {location}"),
            "the log continues after its last frame with more bytes than an interrupted commit can leave",
        )
    })
}

impl Engine {
    /// `e`, or [`Error::Rekeyed`] if the header shows that the master key was rotated past
    /// `epoch` (which explains a missing or replaced log).
    pub(crate) fn rekeyed_or(&self, e: Error, epoch: u32, session: &dyn ReadSession) -> Error {
        if matches!(e, Error::Rekeyed) {
            return e;
        }
        match session
            .header()
            .ok()
            .and_then(|b| VaultHeader::decode(&b).ok())
        {
            Some(h) if h.key_epoch > epoch => Error::Rekeyed,
            _ => e,
        }
    }

    /// Brings `st` up to date with the log, read in `session`. Returns [`Tail::Torn`] if an
    /// interrupted commit left a torn tail after `st.pos` (a writer discards it; a reader leaves
    /// it: a read-only command never modifies the vault), [`Tail::Clean`] otherwise. A view that
    /// starts over (a new handle, or one whose last commit failed) starts from the checkpoint if
    /// there is one, and reads only the log after it.
    pub(crate) fn reload(&self, st: &mut State, session: &dyn ReadSession) -> Result<Tail> {
        if st.poisoned {
            return Err(Error::Rekeyed);
        }
        if !st.needs_reload && st.generation != 0 {
            // Catching up; a log replaced since (compaction, rotation) is read from its index
            // rather than from its start, if it has one.
            if let Some(tail) = self.read_after(st, session, true)? {
                return Ok(tail);
            }
        }
        let epoch = st.keys.epoch;
        let mut start = self
            .start_state(st.keys.clone(), session)
            .map_err(|e| self.rekeyed_or(e, epoch, session))?;
        let tail = self.read_after(&mut start, session, false)?;
        *st = start;
        Ok(tail.unwrap_or(Tail::Clean))
    }

    /// Applies the frames after `st.pos` (all of them, into a view built aside, if the log no
    /// longer holds that cursor; or, with `abandon_if_replaced`, none: `None` then says so).
    fn read_after(
        &self,
        st: &mut State,
        session: &dyn ReadSession,
        abandon_if_replaced: bool,
    ) -> Result<Option<Tail>> {
        let since = st.pos;
        let from_generation = st.generation;
        let keys = st.keys.clone();
        let mut frames = 0u64;
        // A read from the start builds the new view aside, so a failure leaves the old one.
        let mut fresh: Option<State> = None;
        let mut failure: Option<Error> = None;
        let mut abandoned = false;
        let out = session.read(keys.epoch, &since, &mut |f| {
            if f.from_start && abandon_if_replaced {
                abandoned = true;
                return Ok(Visit::Abandon);
            }
            let target: &mut State = if f.from_start {
                fresh.get_or_insert_with(|| State::empty(keys.clone()))
            } else {
                &mut *st
            };
            frames += 1;
            match self.apply_frame(target, &f.body, f.end) {
                Ok(_) => Ok(Visit::Continue),
                Err(FrameError::Unauthentic(e)) => {
                    failure = Some(e);
                    Ok(Visit::Stop)
                }
                Err(FrameError::Invalid(e)) => Err(e),
            }
        });
        let out = out.map_err(|e| self.rekeyed_or(e, keys.epoch, session))?;
        if abandoned {
            tracing::debug!("the log was replaced (compaction or rotation): reading it afresh");
            return Ok(None);
        }
        if frames > 0 {
            tracing::debug!(
                "read {frames} log frame(s) {}",
                if out.reset {
                    "from the start of the log".to_string()
                } else {
                    format!("after generation {from_generation}")
                }
            );
        }
        let location = self.backend.location();
        if out.reset {
            let f = fresh.unwrap_or_else(|| State::empty(keys.clone()));
            if f.generation == 0 {
                let why = failure.map_or_else(String::new, |e| format!(" ({e})"));
                return Err(Error::integrity(
                    format!("log in {location}"),
                    format!("the log holds no snapshot frame{why}"),
                ));
            }
            if out.tail == Tail::Damaged {
                return Err(damage(failure, &location));
            }
            *st = f;
        } else if out.tail == Tail::Damaged {
            return Err(damage(failure, &location));
        }
        if out.tail == Tail::Torn {
            return Ok(Some(Tail::Torn));
        }
        Ok(Some(Tail::Clean))
    }

    /// Checks one frame, which ends at `end`, against the chain so far and applies it to `st`,
    /// decrypting and applying its records one at a time (memory: the frame body and one
    /// record). Returns how many records it held. A frame that does not parse or authenticate
    /// changes nothing; one that authenticates but breaks a rule of the log may have been applied
    /// in part, so `st` is then marked to be read again from the start.
    pub(crate) fn apply_frame(
        &self,
        st: &mut State,
        body: &[u8],
        end: Cursor,
    ) -> std::result::Result<u64, FrameError> {
        self.check_frame(st, body, end, true)
    }

    /// As [`Engine::apply_frame`]; with `apply` false, every check is made (chain, order,
    /// every record decrypted and decoded) but the records are not added to `st`'s index: for a
    /// verify that checks the part of the log a checkpoint already describes.
    pub(crate) fn check_frame(
        &self,
        st: &mut State,
        body: &[u8],
        end: Cursor,
        apply: bool,
    ) -> std::result::Result<u64, FrameError> {
        let keys = st.keys.clone();
        let frame = FrameView::parse(body)
            .map_err(|e| FrameError::Unauthentic(Error::integrity("log frame", e.to_string())))?;
        frame
            .verify(&keys.mac, &self.vault_id, keys.epoch, &st.last_mac)
            .map_err(|_| {
                FrameError::Unauthentic(Error::integrity(
                    format!("log frame at generation {}", frame.generation),
                    "the frame does not authenticate: the log was modified, reordered or truncated in the middle",
                ))
            })?;
        let invalid =
            |object: String, detail: String| FrameError::Invalid(Error::integrity(object, detail));
        let first = st.generation == 0;
        match (first, frame.frame_type) {
            (true, FrameType::Snapshot) | (false, FrameType::Commit) => {}
            (true, FrameType::Commit) => {
                return Err(invalid(
                    "log".into(),
                    "the log does not start with a snapshot".into(),
                ));
            }
            (false, FrameType::Snapshot) => {
                return Err(invalid(
                    "log".into(),
                    "a snapshot frame in the middle of the log".into(),
                ));
            }
        }
        if frame.generation <= st.generation {
            return Err(invalid(
                "log".into(),
                format!(
                    "generation {} does not follow generation {}",
                    frame.generation, st.generation
                ),
            ));
        }
        // Until the last record is applied, `st` is part-way through the frame.
        st.needs_reload = true;
        let mut count = 0u64;
        let mut bytes = 0u64;
        for record in frame.records() {
            let (start, env) = record.map_err(|e| {
                FrameError::Invalid(match e {
                    vault_format::Error::UnsupportedVersion { .. } => Error::Format(e),
                    other => Error::integrity(
                        format!("log frame at generation {}", frame.generation),
                        other.to_string(),
                    ),
                })
            })?;
            if env.sequence <= st.max_seq {
                return Err(invalid(
                    format!("record {}", env.sequence),
                    "record sequence numbers are not increasing".into(),
                ));
            }
            let p = payload_of(&env, &keys, &self.vault_id).map_err(FrameError::Invalid)?;
            let place = RecordRef {
                sequence: env.sequence,
                kind: env.kind,
                at: RecordAt {
                    frame_end: end.offset(),
                    // A frame body is at most MAX_FRAME_LEN (256 MiB) long.
                    back: (body.len() - start) as u32,
                    len: env.encoded_len() as u32,
                },
            };
            st.max_seq = env.sequence;
            if apply {
                st.index.apply(place, &p).map_err(FrameError::Invalid)?;
            }
            count += 1;
            bytes += place.len();
        }
        st.needs_reload = false;
        st.tail_records += count;
        st.tail_bytes += bytes;
        st.generation = frame.generation;
        st.last_mac = frame.mac;
        st.pos = end;
        Ok(count)
    }

    /// Notices commits by other handles or processes before a read.
    pub(crate) fn refresh(&self) -> Result<()> {
        if !self.may_have_changed()? {
            return Ok(());
        }
        // Backend session before the state lock, always: a writer holds them in that order.
        let session: Box<dyn ReadSession> = self.session()?;
        self.refresh_in(&*session)
    }

    /// Brings the view up to date in `session`, whose log no writer changes meanwhile: what is
    /// read in it afterwards is where the view says.
    pub(crate) fn refresh_in(&self, session: &dyn ReadSession) -> Result<()> {
        if !self.may_have_changed()? {
            return Ok(());
        }
        let mut st = sync::write(&self.state);
        if self.reload(&mut st, session)? == Tail::Torn {
            tracing::debug!("log has a torn tail; the next writer will discard it");
        }
        Ok(())
    }

    /// Whether the log may differ from this handle's view (the cheap check; `true` when unsure).
    fn may_have_changed(&self) -> Result<bool> {
        let (epoch, pos, needs) = {
            let st = sync::read(&self.state);
            if st.poisoned {
                return Err(Error::Rekeyed);
            }
            (st.keys.epoch, st.pos, st.needs_reload)
        };
        Ok(needs || self.backend.changed(epoch, &pos)?)
    }
}
