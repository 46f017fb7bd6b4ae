//! Several changes committed atomically with one fsync ([`Batch`]), and turning a batch into
//! payloads against the current state (check-and-set, existence, name rules).

use std::collections::BTreeMap;

use vault_crypto::SecretBytes;
use vault_format::payload::{
    self, KeyState, KeyVersionPayload, Payload, SecretState, SecretStatePayload,
    SecretVersionPayload, SettingsPayload,
};

use crate::engine::now_ms;
use crate::secrets::SetOptions;
use crate::vault::Vault;
use crate::{Error, Result};

/// One change in a batch.
#[derive(Debug)]
pub(crate) enum Op {
    Set {
        name: String,
        value: SecretBytes,
        options: SetOptions,
    },
    State {
        name: String,
        state: SecretState,
    },
    Settings {
        max_versions: u32,
    },
    KeyVersion {
        name: String,
        algorithm: String,
        material: SecretBytes,
        state: KeyState,
        version: Option<u32>,
    },
}

/// Several changes committed together, atomically and with one fsync.
#[derive(Debug, Default)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a new version of `name`.
    pub fn set(&mut self, name: &str, value: SecretBytes, options: SetOptions) -> &mut Self {
        self.ops.push(Op::Set {
            name: name.to_string(),
            value,
            options,
        });
        self
    }

    /// Soft-deletes `name`.
    pub fn delete(&mut self, name: &str) -> &mut Self {
        self.ops.push(Op::State {
            name: name.to_string(),
            state: SecretState::Deleted,
        });
        self
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    payload::check_new_name(name).map_err(|r| Error::invalid("name", r))
}

impl Vault {
    /// Commits a batch atomically with one fsync; returns, for each `set`, the new version.
    ///
    /// # Errors
    /// As [`Vault::set`]; if any change is refused, nothing is written.
    pub fn commit(&self, batch: Batch) -> Result<Vec<u32>> {
        let ops = batch.ops;
        self.e.write_txn(move |st| {
            // Per-name view of (latest version, deleted) including this batch's earlier changes;
            // `None` = the secret does not exist.
            let mut latest: BTreeMap<&str, Option<(u32, bool)>> = BTreeMap::new();
            let mut payloads = Vec::with_capacity(ops.len());
            let mut versions = Vec::new();
            let time_ms = now_ms();
            for op in &ops {
                let current = |latest: &BTreeMap<&str, Option<(u32, bool)>>, name: &str| {
                    latest.get(name).copied().unwrap_or_else(|| {
                        st.index
                            .secrets
                            .get(name)
                            .map(|e| (e.latest, e.deleted.is_some()))
                    })
                };
                match op {
                    Op::Set {
                        name,
                        value,
                        options,
                    } => {
                        check_name(name)?;
                        let (actual, deleted) = current(&latest, name).unwrap_or((0, false));
                        if let Some(expected) = options.expected_version
                            && expected != actual
                        {
                            return Err(Error::Conflict {
                                name: name.clone(),
                                expected,
                                actual,
                            });
                        }
                        if deleted {
                            payloads.push(Payload::SecretState(SecretStatePayload {
                                name: name.clone(),
                                state: SecretState::Restored,
                                time_ms,
                            }));
                        }
                        let version = actual.checked_add(1).ok_or_else(|| {
                            Error::invalid(
                                "version",
                                "the secret has reached the last version number",
                            )
                        })?;
                        payloads.push(Payload::SecretVersion(SecretVersionPayload {
                            name: name.clone(),
                            version,
                            created_ms: time_ms,
                            tags: options.tags.clone(),
                            value: value.duplicate(),
                        }));
                        latest.insert(name, Some((version, false)));
                        versions.push(version);
                    }
                    Op::State { name, state } => {
                        let (v, deleted) =
                            current(&latest, name).ok_or_else(|| Error::NotFound {
                                what: format!("secret {name:?}"),
                            })?;
                        match state {
                            SecretState::Deleted if deleted => {
                                return Err(Error::NotFound {
                                    what: format!("secret {name:?} (already deleted)"),
                                });
                            }
                            SecretState::Restored if !deleted => {
                                return Err(Error::invalid(
                                    "undelete",
                                    format!("secret {name:?} is not deleted"),
                                ));
                            }
                            _ => {}
                        }
                        payloads.push(Payload::SecretState(SecretStatePayload {
                            name: name.clone(),
                            state: *state,
                            time_ms,
                        }));
                        let after = match state {
                            SecretState::Deleted => Some((v, true)),
                            SecretState::Restored => Some((v, false)),
                            SecretState::Destroyed => None,
                        };
                        latest.insert(name, after);
                    }
                    Op::Settings { max_versions } => {
                        payloads.push(Payload::Settings(SettingsPayload {
                            max_versions: *max_versions,
                        }));
                    }
                    Op::KeyVersion {
                        name,
                        algorithm,
                        material,
                        state,
                        version,
                    } => {
                        check_name(name)?;
                        let existing = st.index.keys.get(name);
                        let (version, created_ms) = match version {
                            Some(v) => {
                                let meta = existing.and_then(|k| k.get(v)).ok_or_else(|| {
                                    Error::NotFound {
                                        what: format!("version {v} of key {name:?}"),
                                    }
                                })?;
                                (*v, meta.info.created_ms)
                            }
                            None => (
                                existing
                                    .and_then(|k| k.keys().next_back().copied())
                                    .unwrap_or(0)
                                    + 1,
                                time_ms,
                            ),
                        };
                        payloads.push(Payload::KeyVersion(KeyVersionPayload {
                            name: name.clone(),
                            version,
                            algorithm: algorithm.clone(),
                            state: *state,
                            created_ms,
                            state_changed_ms: time_ms,
                            material: material.duplicate(),
                        }));
                        versions.push(version);
                    }
                }
            }
            Ok((payloads, versions))
        })
    }
}
