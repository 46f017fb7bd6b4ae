//! The vault's own records in the index: settings, events, and the header binding.

use vault_format::payload::{BindingPhase, HeaderBindingPayload, SettingsPayload};

use super::DEFAULT_MAX_VERSIONS;
use super::RecordRef;
use crate::{Error, Result};

/// Settings, events and the header binding.
#[derive(Clone, Default)]
pub(crate) struct VaultRecords {
    settings: Option<(u32, RecordRef)>,
    events: Vec<RecordRef>,
    /// The header the log last confirmed (SHA-256 of the header file).
    header_confirmed: Option<([u8; 32], RecordRef)>,
    /// A header change announced but not yet confirmed.
    header_pending: Option<([u8; 32], RecordRef)>,
}

fn len(env: &RecordRef) -> u64 {
    env.len()
}

impl VaultRecords {
    /// The records as a checkpoint kept them.
    pub(crate) fn restore(
        &mut self,
        settings: Option<(u32, RecordRef)>,
        events: Vec<RecordRef>,
        header_confirmed: Option<([u8; 32], RecordRef)>,
        header_pending: Option<([u8; 32], RecordRef)>,
    ) {
        *self = Self {
            settings,
            events,
            header_confirmed,
            header_pending,
        };
    }

    /// The settings record and its `max_versions`.
    pub(crate) fn settings(&self) -> Option<(u32, RecordRef)> {
        self.settings
    }

    /// The event records.
    pub(crate) fn events(&self) -> &[RecordRef] {
        &self.events
    }

    /// The confirmed header binding.
    pub(crate) fn confirmed(&self) -> Option<([u8; 32], RecordRef)> {
        self.header_confirmed
    }

    /// The pending header binding.
    pub(crate) fn pending(&self) -> Option<([u8; 32], RecordRef)> {
        self.header_pending
    }

    /// How many versions of each secret are kept.
    pub(crate) fn max_versions(&self) -> u32 {
        self.settings.as_ref().map_or(DEFAULT_MAX_VERSIONS, |s| s.0)
    }

    /// Applies settings; returns the bytes it made dead.
    pub(crate) fn apply_settings(&mut self, env: RecordRef, p: &SettingsPayload) -> u64 {
        self.settings
            .replace((p.max_versions, env))
            .map_or(0, |(_, old)| len(&old))
    }

    /// Records an event (events stay live).
    pub(crate) fn apply_event(&mut self, env: RecordRef) -> u64 {
        self.events.push(env);
        0
    }

    /// Applies a header binding; returns the bytes it made dead.
    pub(crate) fn apply_binding(&mut self, env: RecordRef, p: &HeaderBindingPayload) -> u64 {
        match p.phase {
            BindingPhase::Intent => self
                .header_pending
                .replace((p.digest, env))
                .map_or(0, |(_, old)| len(&old)),
            BindingPhase::Confirmed => {
                self.header_pending.take().map_or(0, |(_, old)| len(&old))
                    + self
                        .header_confirmed
                        .replace((p.digest, env))
                        .map_or(0, |(_, old)| len(&old))
            }
        }
    }

    /// Whether the header with `digest` is the one the log vouches for: `Ok(true)` if it is and
    /// a writer should confirm it (it was only announced, a later announcement was abandoned, or
    /// the log predates header binding), `Ok(false)` if it is settled.
    ///
    /// # Errors
    /// An integrity error if the log vouches for another header: an older header was put back.
    pub(crate) fn header_binding(&self, digest: &[u8; 32]) -> Result<bool> {
        let confirmed = self.header_confirmed.as_ref().map(|(d, _)| d);
        let pending = self.header_pending.as_ref().map(|(d, _)| d);
        match (confirmed, pending) {
            (None, None) => Ok(true),
            (_, Some(p)) if p == digest => Ok(true),
            (Some(c), p) if c == digest => Ok(p.is_some()),
            _ => Err(Error::integrity(
                "vault header",
                "the header is not the one the log last recorded: an older or foreign header file was put back (a changed or removed passphrase could open it again); if this was deliberate, accept it with accept-rollback",
            )),
        }
    }

    /// Lets `f` move every live record.
    pub(crate) fn relocate(&mut self, f: &mut dyn FnMut(&mut RecordRef)) {
        self.settings.iter_mut().for_each(|(_, e)| f(e));
        self.events.iter_mut().for_each(&mut *f);
        self.header_confirmed.iter_mut().for_each(|(_, e)| f(e));
        self.header_pending.iter_mut().for_each(|(_, e)| f(e));
    }

    /// Every live record.
    pub(crate) fn live(&self) -> impl Iterator<Item = &RecordRef> {
        self.settings
            .iter()
            .map(|(_, e)| e)
            .chain(self.events.iter())
            .chain(self.header_confirmed.iter().map(|(_, e)| e))
            .chain(self.header_pending.iter().map(|(_, e)| e))
    }
}
