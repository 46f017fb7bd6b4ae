//! Reading live records back from the log by their place ([`RecordRef`]): the index keeps
//! places, not records, so a value is read (and authenticated) only when it is asked for.

use vault_format::RecordEnvelope;

use super::index::RecordRef;
use super::replay::State;
use super::subkeys::Keys;
use super::{Engine, payload_of};
use crate::backend::{ReadSession, RecordSource};
use crate::sync::{self, Arc};
use crate::{Error, Result};

/// Reads the record at `r` from the log of `epoch` in `source`, and checks that it is the record
/// the index placed there (its sequence number and kind). Its authentication is the caller's
/// next step (opening it, or [`check_record`]).
pub(crate) fn read_envelope(
    source: &dyn RecordSource,
    epoch: u32,
    r: &RecordRef,
) -> Result<RecordEnvelope> {
    let bytes = source.read_record(epoch, r.at)?;
    let object = || format!("record {}", r.sequence);
    let env =
        RecordEnvelope::decode(&bytes).map_err(|e| Error::integrity(object(), e.to_string()))?;
    if env.sequence != r.sequence || env.kind != r.kind {
        return Err(Error::integrity(
            object(),
            "the log holds another record where this one was read from: it was modified",
        ));
    }
    Ok(env)
}

/// Checks that `env` authenticates under `keys`, so that a copy of it (compaction) never vouches
/// for bytes that changed on disk since they were first read.
pub(crate) fn check_record(
    env: &RecordEnvelope,
    keys: &Keys,
    vault_id: &vault_format::VaultId,
) -> Result<()> {
    payload_of(env, keys, vault_id).map(drop)
}

impl Engine {
    /// Picks a record from the current view and reads it, in one read session: the view is
    /// brought up to date in the session first, so the place it gives is in the log as it is.
    /// `pick` also returns whatever else the caller needs from the view.
    pub(crate) fn fetch<T>(
        &self,
        pick: impl FnOnce(&State) -> Result<(RecordRef, T)>,
    ) -> Result<(RecordEnvelope, Arc<Keys>, T)> {
        let session: Box<dyn ReadSession> = self.session()?;
        self.refresh_in(&*session)?;
        let (r, keys, t) = {
            let st = sync::read(&self.state);
            let (r, t) = pick(&st)?;
            (r, st.keys.clone(), t)
        };
        let env = read_envelope(&*session, keys.epoch, &r)?;
        Ok((env, keys, t))
    }
}

impl Engine {
    /// [`Engine::fetch`] for many records from one view, in one read session: what a consistent
    /// snapshot (an export) reads. `pick` returns the records and anything else the caller
    /// needs; each record comes back with its payload, authenticated.
    pub(crate) fn fetch_many<T>(
        &self,
        pick: impl FnOnce(&State) -> Result<(Vec<RecordRef>, T)>,
    ) -> Result<(Vec<vault_format::payload::Payload>, T)> {
        let session: Box<dyn ReadSession> = self.session()?;
        self.refresh_in(&*session)?;
        let (refs, keys, t) = {
            let st = sync::read(&self.state);
            let (refs, t) = pick(&st)?;
            (refs, st.keys.clone(), t)
        };
        let mut out = Vec::with_capacity(refs.len());
        for r in &refs {
            let env = read_envelope(&*session, keys.epoch, r)?;
            out.push(payload_of(&env, &keys, &self.vault_id)?);
        }
        Ok((out, t))
    }
}
