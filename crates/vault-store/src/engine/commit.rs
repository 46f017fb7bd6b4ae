//! The write transaction: every mutation starts in [`Engine::begin_write`], which takes the locks
//! in the one documented order and checks the header, the log and the rollback record under
//! them; commits are sealed into one frame and appended; compaction rewrites the log.

use vault_format::log::Frame;
use vault_format::payload::{BindingPhase, EventKind, EventPayload, Payload};

use super::checkpoint;
use super::fetch;
use super::index::RecordRef;
use super::replay::State;
use super::seal::{self, Chain};
use super::{Engine, HeaderView, binding, now_ms};
use crate::backend::{Appended, RecordSource, Tail, WriteSession};
use crate::sync::{self, MutexGuard, RwLockWriteGuard};
use crate::{Error, Result};

std::thread_local! {
    /// Set while this thread rotates the master key (or marks a member removed): the writes a
    /// pending member removal allows.
    static FINISHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as finishing (or starting) a member removal until dropped.
pub(crate) struct Finishing(bool);

impl Finishing {
    pub(crate) fn begin() -> Self {
        Finishing(FINISHING.with(|f| f.replace(true)))
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        let before = self.0;
        FINISHING.with(|f| f.set(before));
    }
}

/// [`Error::RemovalPending`] if `header` marks a member removed whose rotation is not done.
pub(crate) fn refuse_while_removal_pending(header: &vault_format::VaultHeader) -> Result<()> {
    let pending = header.removed_members();
    if pending.is_empty() {
        Ok(())
    } else {
        Err(Error::RemovalPending {
            members: pending.join(", "),
        })
    }
}

/// A change prepared by a writer: payloads to seal and commit.
pub(crate) type Prepared = Vec<Payload>;

/// One write: the locks taken in the one documented order (this handle's writer mutex, the
/// backend's write session, the state lock) and released in reverse (fields drop in order). Every
/// write to the backend goes through `session`.
pub(crate) struct WriteTxn<'a> {
    pub(crate) st: RwLockWriteGuard<'a, State>,
    pub(crate) session: Box<dyn WriteSession + 'a>,
    pub(crate) _writer: MutexGuard<'a, ()>,
    /// The header as read under the lock.
    pub(crate) view: HeaderView,
}

impl Engine {
    /// Starts a write: takes the locks, re-reads the header under them, removes leftovers of
    /// interrupted operations (once per handle), catches up with the log (discarding a torn
    /// tail), and refuses to write over a rollback or a replaced header unless `accept`, in
    /// which case the acceptance is committed here. Every mutation starts here.
    pub(crate) fn begin_write(&self, accept: bool) -> Result<WriteTxn<'_>> {
        let writer = sync::lock(&self.writer);
        let mut session: Box<dyn WriteSession> = self.session()?;
        let mut st = sync::write(&self.state);
        if st.poisoned {
            return Err(Error::Rekeyed);
        }
        let view = self.current_header(session.as_ref(), &st.keys)?;
        // A member marked removed may hold the current master key: nothing is written under
        // it but the rotation that replaces it (checked here, under the lock, on the header as
        // it is now: a handle opened before the mark learns of it here).
        if !FINISHING.with(std::cell::Cell::get) {
            refuse_while_removal_pending(&view.header)?;
        }
        self.catch_up(&mut st, session.as_mut())?;
        // Checked before anything is written: a write must never overwrite the evidence.
        let (behind, unreadable_record) = self.rollback_check(&st, accept)?;
        if let (Some(b), false) = (behind, accept) {
            return Err(self.rollback_error(&st, b));
        }
        let digest = view.digest();
        let (confirm, foreign_header) = match st.index.header_binding(&digest) {
            Ok(confirm) => (confirm, false),
            Err(e) if accept => {
                tracing::warn!(error = %e, "accepting the header as it is, as asked");
                (true, true)
            }
            Err(e) => return Err(e),
        };
        let mut txn = WriteTxn {
            st,
            session,
            _writer: writer,
            view,
        };
        let mut payloads = Vec::new();
        if confirm {
            payloads.push(binding(BindingPhase::Confirmed, digest));
        }
        let mut min_generation = 0;
        if behind.is_some() || foreign_header || unreadable_record {
            let mut text = if behind.is_some() || foreign_header {
                format!(
                    "accepted an older state: vault generation {}",
                    txn.st.generation
                )
            } else {
                format!(
                    "accepted the vault at generation {} over an unreadable rollback record, which is rewritten",
                    txn.st.generation
                )
            };
            if let Some(r) = behind.map(|b| b.generation) {
                text.push_str(&format!(", rollback record {r}"));
                // Continue above the recorded generation so the record stays monotonic.
                min_generation = r + 1;
            }
            if foreign_header {
                text.push_str(", and a header the log did not record");
            }
            if unreadable_record && (behind.is_some() || foreign_header) {
                text.push_str(", over an unreadable rollback record");
            }
            tracing::warn!("{text}");
            *sync::lock(&self.accepted) = Some(text.clone());
            payloads.push(Payload::Event(EventPayload {
                kind: EventKind::RollbackAccepted,
                time_ms: now_ms(),
                text,
            }));
        }
        let wrote = !payloads.is_empty();
        if wrote {
            self.append_locked(txn.session.as_mut(), &mut txn.st, payloads, min_generation)?;
        }
        if accept {
            // Rewriting the record is part of what accepting means: a failure is the caller's.
            self.rollback
                .store(
                    &self.vault_id,
                    &txn.st.keys.rollback,
                    txn.st.keys.epoch,
                    txn.st.generation,
                )
                .inspect_err(|_| {
                    tracing::error!(
                        "the acceptance is recorded in the vault, but the rollback record could not be rewritten"
                    );
                })?;
        } else if wrote {
            self.record_generation(&txn.st);
        }
        Ok(txn)
    }

    pub(crate) fn record_generation(&self, st: &State) {
        if let Err(e) = self.rollback.store(
            &self.vault_id,
            &st.keys.rollback,
            st.keys.epoch,
            st.generation,
        ) {
            // The commit itself is durable; only rollback detection is weakened until the next
            // successful update.
            tracing::warn!(error = %e, "could not update the rollback record");
        }
    }

    /// Brings `st` up to date in the write session, discarding a torn tail.
    pub(crate) fn catch_up(&self, st: &mut State, session: &mut dyn WriteSession) -> Result<()> {
        if self.reload(st, &*session)? == Tail::Torn {
            tracing::warn!("discarding a torn log tail left by an interrupted commit");
            session.discard_tail(st.keys.epoch, &st.pos)?;
        }
        Ok(())
    }

    /// Seals `payloads` into one commit frame and appends it. Caller holds the write session and
    /// an up-to-date `st`.
    pub(crate) fn append_locked(
        &self,
        session: &mut dyn WriteSession,
        st: &mut State,
        payloads: Prepared,
        min_generation: u64,
    ) -> Result<()> {
        let keys = st.keys.clone();
        let envs = seal::records(&keys, &self.vault_id, &payloads, st.max_seq + 1)?;
        let seq = st.max_seq + payloads.len() as u64;
        let generation = (st.generation + 1).max(min_generation);
        let frame = seal::frame(
            &keys,
            &self.vault_id,
            Chain::After(&st.last_mac),
            generation,
            envs,
        );
        let body = frame.encode()?;
        let started = std::time::Instant::now();
        let appended = session
            .append(keys.epoch, &st.pos, &body)
            .and_then(|a| match a {
                Appended::Done(pos) => Ok(pos),
                // The log cannot change under the write session: someone broke the lock discipline.
                Appended::Stale => Err(Error::integrity(
                    format!("log in {}", self.backend.location()),
                    "the log changed while the writer lock was held",
                )),
            });
        match appended {
            Ok(pos) => {
                tracing::info!(
                    "committed generation {generation}: {} record(s), {} bytes, written and synced in {} ms",
                    payloads.len(),
                    body.len(),
                    started.elapsed().as_millis()
                );
                let places = RecordRef::in_frame(&frame.records, body.len(), pos.offset());
                st.tail_records += places.len() as u64;
                st.tail_bytes += places.iter().map(RecordRef::len).sum::<u64>();
                for (r, p) in places.into_iter().zip(&payloads) {
                    if let Err(e) = st.index.apply(r, p) {
                        // The commit is durable; only this handle's view is behind it.
                        tracing::warn!(error = %e, "reading the index failed; reading the log again");
                        st.needs_reload = true;
                        break;
                    }
                }
                let Frame { mac, .. } = frame;
                st.max_seq = seq;
                st.generation = generation;
                st.last_mac = mac;
                st.pos = pos;
                Ok(())
            }
            Err(e) => {
                st.needs_reload = true;
                Err(e)
            }
        }
    }

    /// Runs a write: takes the locks, catches up with the log, lets `prepare` validate against
    /// the current state and produce payloads, commits them durably, then applies them.
    pub(crate) fn write_txn<R>(
        &self,
        prepare: impl FnOnce(&State) -> Result<(Prepared, R)>,
    ) -> Result<R> {
        let mut txn = self.begin_write(false)?;
        let st = &mut *txn.st;
        let session = txn.session.as_mut();
        let (payloads, result) = prepare(st)?;
        if payloads.is_empty() {
            return Ok(result);
        }
        self.append_locked(session, st, payloads, 0)?;
        self.record_generation(st);
        let compact = st.index.dead_bytes > self.options.auto_compact_bytes
            && st.index.dead_bytes * 2 > st.index.total_bytes;
        if compact && let Err(e) = self.compact_locked(session, st) {
            // The commit is durable; compaction is an optimisation that will be retried.
            tracing::warn!(error = %e, "automatic compaction failed");
        } else if (st.tail_records >= checkpoint::CHECKPOINT_RECORDS
            || st.tail_bytes >= checkpoint::CHECKPOINT_BYTES)
            && !st.needs_reload
            && let Err(e) = self.checkpoint_locked(session, st, None)
        {
            // The commit is durable; the checkpoint only shortens the next open's replay.
            match e {
                Error::StorageFull { .. } => tracing::warn!(
                    "the disk is full, so the index was not written; the commit itself is durable, and a later write writes the index"
                ),
                e => {
                    tracing::warn!(error = %e, "writing the index failed (the commit itself is durable)")
                }
            }
        }
        Ok(result)
    }

    /// Rewrites the log as a snapshot of the live records, read from the log, checked and
    /// sealed one frame at a time (memory: one frame and the places of the live records). The
    /// snapshot's last frame keeps the vault's generation when there are generations enough
    /// below it for the earlier frames; otherwise the generation moves on (and is recorded).
    pub(crate) fn compact_locked(
        &self,
        session: &mut dyn WriteSession,
        st: &mut State,
    ) -> Result<()> {
        let (before, started) = (st.index.total_bytes, std::time::Instant::now());
        self.compact_log(session, st)?;
        tracing::info!(
            "compacted the log: {before} bytes of records before, {} after, in {} ms",
            st.index.total_bytes,
            started.elapsed().as_millis()
        );
        Ok(())
    }

    fn compact_log(&self, session: &mut dyn WriteSession, st: &mut State) -> Result<()> {
        let mut live = st.index.live()?;
        let keys = st.keys.clone();
        // Sequence numbers are never used twice (FORMAT §5; an incremental backup finds what
        // changed by them): when the highest-numbered record is no longer live, the settings
        // are sealed anew under the next number, so that the new log, and every reader of it,
        // keeps the high-water mark.
        let marker = if live.last().map_or(0, |r| r.sequence) < st.max_seq {
            live.retain(|r| r.kind != vault_format::RecordKind::Settings);
            let p = vault_format::payload::SettingsPayload {
                max_versions: st.index.max_versions(),
            };
            let env = seal::record(
                &keys,
                &self.vault_id,
                &Payload::Settings(p.clone()),
                st.max_seq + 1,
            )?;
            Some((env, p))
        } else {
            None
        };
        let ranges = seal::part_ranges(
            live.iter()
                .map(|r| r.at.len as usize)
                .chain(marker.iter().map(|(env, _)| env.encoded_len())),
            self.options.snapshot_part_bytes,
        );
        let extra = ranges.len() as u64 - 1;
        let first = st.generation.saturating_sub(extra).max(1);
        let mut marker_env = marker.as_ref().map(|(env, _)| env.clone());
        let mut snapshot = seal::SnapshotFrames::new(&keys, &self.vault_id, first);
        // The new places, in sequence order, each with the number of its frame for now.
        let mut moved: Vec<RecordRef> = Vec::with_capacity(live.len());
        let total = live.len() as u64;
        let written = {
            let mut parts = ranges.iter().enumerate();
            let mut frames = |source: &dyn RecordSource| {
                let (k, r) = parts.next()?;
                let part = live.get(r.start.min(live.len())..r.end.min(live.len()));
                let part = part.unwrap_or_default();
                let frame = (|| {
                    let mut records = Vec::with_capacity(r.len());
                    for r in part {
                        let env = fetch::read_envelope(source, keys.epoch, r)?;
                        fetch::check_record(&env, &keys, &self.vault_id)?;
                        records.push(env);
                    }
                    if r.end > live.len() {
                        records.extend(marker_env.take());
                    }
                    let frame = snapshot.seal(records);
                    let body = frame.encode()?;
                    moved.extend(RecordRef::in_frame(&frame.records, body.len(), k as u64));
                    let done = (moved.len() as u64).min(total);
                    self.options.progress.report("compacting", done, total);
                    Ok(body)
                })();
                Some(frame)
            };
            session.replace_log(keys.epoch, &mut frames)
        };
        match (written, snapshot.last()) {
            (Ok(ends), Some((generation, mac))) => {
                let Some(end) = ends.last().copied() else {
                    st.needs_reload = true;
                    return Err(Error::integrity("compaction", "no frame was written"));
                };
                for r in &mut moved {
                    r.at.frame_end = ends.get(r.at.frame_end as usize).map_or(0, |c| c.offset());
                }
                let relocate = |r: &mut RecordRef| {
                    if let Ok(i) = moved.binary_search_by_key(&r.sequence, |m| m.sequence) {
                        r.at = moved.get(i).map_or(r.at, |m| m.at);
                    }
                };
                st.index.relocate(&mut |r| relocate(r));
                if let Some((_, p)) = &marker {
                    // The old settings record was not copied: the index takes the new one.
                    let Some(r) = moved.last().copied() else {
                        st.needs_reload = true;
                        return Err(Error::integrity(
                            "compaction",
                            "the settings were not written",
                        ));
                    };
                    st.index.vault.apply_settings(r, p);
                }
                let moved_generation = generation != st.generation;
                st.pos = end;
                st.generation = generation;
                st.last_mac = mac;
                st.index.total_bytes = moved.iter().map(RecordRef::len).sum();
                st.index.dead_bytes = 0;
                // What a reader of the new log finds, as a handle that reads it whole does (an
                // index must say what the log says).
                st.max_seq = moved.iter().map(|r| r.sequence).max().unwrap_or(0);
                if moved_generation {
                    self.record_generation(st);
                }
                // The checkpoint's records moved with the log: it is rewritten with them. Until
                // it is, this view's places there are stale, so a failure makes it read again
                // (the old index no longer matches the log, which is then read whole).
                if let Err(e) = self.checkpoint_locked(session, st, Some(&relocate)) {
                    tracing::warn!(error = %e, "writing the index after compaction failed");
                    st.needs_reload = true;
                }
                Ok(())
            }
            (Err(e), _) => {
                st.needs_reload = true;
                Err(e)
            }
            (Ok(_), None) => {
                st.needs_reload = true;
                Err(Error::integrity("compaction", "no frame was written"))
            }
        }
    }
}
