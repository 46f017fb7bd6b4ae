//! Several changes committed atomically with one fsync ([`Batch`]), and turning a batch into
//! payloads against the current state (check-and-set, existence, name rules).

use std::collections::BTreeMap;

use vault_crypto::SecretBytes;
use vault_format::payload::{self, Payload, SecretState, SettingsPayload};

use crate::audit::On;
use crate::engine::replay::State;
use crate::secrets;
use crate::secrets::SetOptions;
use crate::vault::Vault;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

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

/// Checks a name about to be given to a new secret or key against the current syntax.
pub(crate) fn check_name(name: &str) -> Result<()> {
    payload::check_new_name(name).map_err(|r| Error::invalid("name", format!("{name:?}: {r}")))
}

/// The state a batch is prepared against: the index as committed, the secrets this batch has
/// already changed, and what it has produced so far. Each record domain turns its requests into
/// payloads here (`secrets::prepare_*`).
pub(crate) struct Prepare<'a> {
    pub(crate) st: &'a State,
    /// Per-name (latest version, deleted) after this batch's earlier changes; `None` = the secret
    /// does not exist.
    pub(crate) latest: BTreeMap<String, Option<(u32, bool)>>,
    pub(crate) time_ms: i64,
    pub(crate) payloads: Vec<Payload>,
    /// The version each `set` (and key version) got, in order.
    pub(crate) versions: Vec<u32>,
}

impl Prepare<'_> {
    /// A secret's (latest version, deleted) as this batch sees it.
    pub(crate) fn secret(&self, name: &str) -> Result<Option<(u32, bool)>> {
        match self.latest.get(name) {
            Some(known) => Ok(*known),
            None => Ok(self
                .st
                .index
                .secrets
                .get(name)?
                .map(|e| (e.latest, e.deleted.is_some()))),
        }
    }
}

impl Vault {
    /// Commits a batch atomically with one fsync; returns, for each `set`, the new version.
    ///
    /// # Errors
    /// As [`Vault::set`]; if any change is refused, nothing is written.
    pub fn commit(&self, batch: Batch) -> Result<Vec<u32>> {
        let ops = batch.ops;
        // One audit entry per operation of the batch, with the commit's outcome.
        let audit: Vec<(AuditOp, Option<String>)> = ops
            .iter()
            .map(|op| match op {
                Op::Set { name, .. } => (AuditOp::Write, Some(name.clone())),
                Op::State { name, state } => (
                    match state {
                        SecretState::Deleted => AuditOp::Delete,
                        SecretState::Restored => AuditOp::Undelete,
                        SecretState::Destroyed => AuditOp::Destroy,
                    },
                    Some(name.clone()),
                ),
                Op::Settings { .. } => (AuditOp::Maintenance, None),
            })
            .collect();
        if self.e.fail_closed() {
            // The entries first, synced: a change that cannot be recorded is not made.
            let before: Vec<_> = audit
                .iter()
                .map(|(op, name)| {
                    (
                        *op,
                        name.as_deref().map_or(On::Nothing, On::Secret),
                        0,
                        String::new(),
                    )
                })
                .collect();
            self.e.record_strict(&before)?;
            let r = self.commit_ops(ops);
            if let Err(e) = &r {
                let after: Vec<_> = audit
                    .iter()
                    .map(|(op, name)| {
                        let on = name.as_deref().map_or(On::Nothing, On::Secret);
                        let why = "the operation recorded just before failed".to_string();
                        (*op, on, e.audit_class(), why)
                    })
                    .collect();
                self.e.record(&after);
            }
            return r;
        }
        let r = self.commit_ops(ops);
        let outcome = r.as_ref().map_or_else(Error::audit_class, |_| 0);
        let versions = r.as_ref().map(Vec::as_slice).unwrap_or_default();
        let mut written = versions.iter();
        let entries: Vec<_> = audit
            .iter()
            .map(|(op, name)| {
                let detail = match op {
                    AuditOp::Write => written.next().map(|v| format!("v{v}")).unwrap_or_default(),
                    AuditOp::Maintenance => "settings".to_string(),
                    _ => String::new(),
                };
                let on = name.as_deref().map_or(On::Nothing, On::Secret);
                (*op, on, outcome, detail)
            })
            .collect();
        self.e.record(&entries);
        r
    }

    fn commit_ops(&self, ops: Vec<Op>) -> Result<Vec<u32>> {
        self.e.write_txn(move |st| {
            let mut p = Prepare {
                st,
                latest: BTreeMap::new(),
                time_ms: self.e.options.clock.now_ms(),
                payloads: Vec::with_capacity(ops.len()),
                versions: Vec::new(),
            };
            // A large batch looks its secrets up first, in the order that reads each block of
            // the checkpoint once, rather than one block path per name.
            if ops.len() > 64 {
                let mut names: Vec<&str> = ops
                    .iter()
                    .filter_map(|op| match op {
                        Op::Set { name, .. } | Op::State { name, .. } => Some(name.as_str()),
                        _ => None,
                    })
                    .collect();
                st.index.secrets.sort_for_lookup(&mut names);
                for name in names {
                    if !p.latest.contains_key(name) {
                        let known = p.secret(name)?;
                        p.latest.insert(name.to_owned(), known);
                    }
                }
            }
            for op in &ops {
                match op {
                    Op::Set {
                        name,
                        value,
                        options,
                    } => secrets::prepare_set(&mut p, name, value, options)?,
                    Op::State { name, state } => secrets::prepare_state(&mut p, name, *state)?,
                    Op::Settings { max_versions } => {
                        p.payloads.push(Payload::Settings(SettingsPayload {
                            max_versions: *max_versions,
                        }))
                    }
                }
            }
            Ok((p.payloads, p.versions))
        })
    }
}
