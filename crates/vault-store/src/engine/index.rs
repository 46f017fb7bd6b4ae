//! The in-memory index: everything the log says about the vault's contents, rebuilt by applying
//! each record in order. Pure: no I/O, no keys.

use std::collections::BTreeMap;

use vault_format::RecordEnvelope;
use vault_format::payload::{BindingPhase, KeyState, Payload, SecretState, Tag};

use crate::sync::Arc;
use crate::{Error, Result};

/// Default number of versions kept per secret.
pub const DEFAULT_MAX_VERSIONS: u32 = 100;

/// Metadata of a managed key version (no material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersionInfo {
    /// Version.
    pub version: u32,
    /// Algorithm.
    pub algorithm: String,
    /// Lifecycle state.
    pub state: KeyState,
    /// Created, ms.
    pub created_ms: i64,
    /// Last state change, ms.
    pub state_changed_ms: i64,
}

#[derive(Clone)]
pub(crate) struct VersionMeta {
    pub(crate) created_ms: i64,
    pub(crate) tags: Vec<Tag>,
    pub(crate) size: usize,
    pub(crate) env: Arc<RecordEnvelope>,
}

#[derive(Clone, Default)]
pub(crate) struct SecretEntry {
    pub(crate) versions: BTreeMap<u32, VersionMeta>,
    pub(crate) latest: u32,
    pub(crate) deleted: Option<Arc<RecordEnvelope>>,
}

#[derive(Clone)]
pub(crate) struct KeyMeta {
    pub(crate) info: KeyVersionInfo,
    pub(crate) env: Arc<RecordEnvelope>,
}

/// Everything known about the vault's contents, rebuilt from the log.
#[derive(Clone, Default)]
pub(crate) struct Index {
    pub(crate) secrets: BTreeMap<String, SecretEntry>,
    pub(crate) keys: BTreeMap<String, BTreeMap<u32, KeyMeta>>,
    pub(crate) settings: Option<(u32, Arc<RecordEnvelope>)>,
    pub(crate) events: Vec<Arc<RecordEnvelope>>,
    /// The header the log last confirmed (SHA-256 of the header file).
    pub(crate) header_confirmed: Option<([u8; 32], Arc<RecordEnvelope>)>,
    /// A header change announced but not yet confirmed.
    pub(crate) header_pending: Option<([u8; 32], Arc<RecordEnvelope>)>,
    /// Bytes of envelopes appended to the current log.
    pub(crate) total_bytes: u64,
    /// Bytes of envelopes no longer live.
    pub(crate) dead_bytes: u64,
}

impl Index {
    pub(crate) fn max_versions(&self) -> u32 {
        self.settings.as_ref().map_or(DEFAULT_MAX_VERSIONS, |s| s.0)
    }

    pub(crate) fn apply(&mut self, env: Arc<RecordEnvelope>, payload: &Payload) {
        let size = env.encoded_len() as u64;
        self.total_bytes += size;
        match payload {
            Payload::SecretVersion(p) => {
                let max = self.max_versions() as usize;
                let e = self.secrets.entry(p.name.clone()).or_default();
                if let Some(old) = e.versions.insert(
                    p.version,
                    VersionMeta {
                        created_ms: p.created_ms,
                        tags: p.tags.clone(),
                        size: p.value.len(),
                        env,
                    },
                ) {
                    self.dead_bytes += old.env.encoded_len() as u64;
                }
                e.latest = e.latest.max(p.version);
                while e.versions.len() > max {
                    match e.versions.pop_first() {
                        Some((_, old)) => self.dead_bytes += old.env.encoded_len() as u64,
                        None => break,
                    }
                }
            }
            Payload::SecretState(p) => match p.state {
                SecretState::Deleted => {
                    if let Some(e) = self.secrets.get_mut(&p.name) {
                        if let Some(old) = e.deleted.replace(env) {
                            self.dead_bytes += old.encoded_len() as u64;
                        }
                    } else {
                        self.dead_bytes += size;
                    }
                }
                SecretState::Restored => {
                    self.dead_bytes += size;
                    if let Some(old) = self.secrets.get_mut(&p.name).and_then(|e| e.deleted.take())
                    {
                        self.dead_bytes += old.encoded_len() as u64;
                    }
                }
                SecretState::Destroyed => {
                    self.dead_bytes += size;
                    if let Some(e) = self.secrets.remove(&p.name) {
                        self.dead_bytes += e
                            .versions
                            .values()
                            .map(|v| v.env.encoded_len() as u64)
                            .sum::<u64>()
                            + e.deleted.map_or(0, |d| d.encoded_len() as u64);
                    }
                }
            },
            Payload::KeyVersion(p) => {
                let versions = self.keys.entry(p.name.clone()).or_default();
                if let Some(old) = versions.insert(
                    p.version,
                    KeyMeta {
                        info: KeyVersionInfo {
                            version: p.version,
                            algorithm: p.algorithm.clone(),
                            state: p.state,
                            created_ms: p.created_ms,
                            state_changed_ms: p.state_changed_ms,
                        },
                        env,
                    },
                ) {
                    self.dead_bytes += old.env.encoded_len() as u64;
                }
            }
            Payload::Settings(p) => {
                if let Some((_, old)) = self.settings.replace((p.max_versions, env)) {
                    self.dead_bytes += old.encoded_len() as u64;
                }
                let max = p.max_versions as usize;
                for e in self.secrets.values_mut() {
                    while e.versions.len() > max {
                        match e.versions.pop_first() {
                            Some((_, old)) => self.dead_bytes += old.env.encoded_len() as u64,
                            None => break,
                        }
                    }
                }
            }
            Payload::Event(_) => self.events.push(env),
            Payload::HeaderBinding(p) => {
                let dead = match p.phase {
                    BindingPhase::Intent => self.header_pending.replace((p.digest, env)),
                    BindingPhase::Confirmed => {
                        let old_pending = self.header_pending.take();
                        if let Some((_, old)) = &old_pending {
                            self.dead_bytes += old.encoded_len() as u64;
                        }
                        self.header_confirmed.replace((p.digest, env))
                    }
                };
                if let Some((_, old)) = dead {
                    self.dead_bytes += old.encoded_len() as u64;
                }
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

    /// Every live envelope, in sequence order.
    pub(crate) fn live(&self) -> Vec<Arc<RecordEnvelope>> {
        let mut out: Vec<Arc<RecordEnvelope>> = Vec::new();
        if let Some((_, s)) = &self.settings {
            out.push(s.clone());
        }
        for e in self.secrets.values() {
            out.extend(e.versions.values().map(|v| v.env.clone()));
            out.extend(e.deleted.iter().cloned());
        }
        for k in self.keys.values() {
            out.extend(k.values().map(|v| v.env.clone()));
        }
        out.extend(self.events.iter().cloned());
        out.extend(self.header_confirmed.iter().map(|(_, e)| e.clone()));
        out.extend(self.header_pending.iter().map(|(_, e)| e.clone()));
        out.sort_by_key(|e| e.sequence);
        out
    }
}
