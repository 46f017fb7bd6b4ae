//! Reading and changing secrets: get, list, history, set, soft delete, undelete, destroy, and how
//! many versions are kept.

use vault_crypto::SecretBytes;
use vault_format::payload::{Payload, SecretState, SecretStatePayload, SecretVersionPayload, Tag};

use crate::audit::On;
use crate::batch::{Batch, Op, Prepare, check_name};
use crate::engine::payload_of;
use crate::sync;
use crate::vault::Vault;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

/// A secret version as read.
#[derive(Debug)]
pub struct Secret {
    /// Name.
    pub name: String,
    /// Version number.
    pub version: u32,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Metadata.
    pub tags: Vec<Tag>,
    /// The value (zeroized on drop; `Debug` is redacted).
    pub value: SecretBytes,
}

/// Metadata of one secret version (no value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version number.
    pub version: u32,
    /// Created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Value length in bytes.
    pub size: usize,
    /// Metadata.
    pub tags: Vec<Tag>,
}

/// A secret as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    /// Name.
    pub name: String,
    /// Latest version.
    pub latest: u32,
    /// Versions kept.
    pub versions: usize,
    /// Soft-deleted.
    pub deleted: bool,
}

/// Options of one `set`.
#[derive(Clone, Debug, Default)]
pub struct SetOptions {
    /// Check-and-set: the version the secret must be at (0 = must not exist) for the write to
    /// happen; otherwise [`Error::Conflict`].
    pub expected_version: Option<u32>,
    /// Metadata for the new version.
    pub tags: Vec<Tag>,
}

impl Vault {
    /// Reads the latest version of `name`.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is no such secret or it is deleted; integrity errors.
    pub fn get(&self, name: &str) -> Result<Secret> {
        self.audited_around(AuditOp::Read, On::Secret(name), String::new(), || {
            self.get_version_opt(name, None)
        })
    }

    /// Reads version `version` of `name`.
    ///
    /// # Errors
    /// As [`Vault::get`].
    pub fn get_version(&self, name: &str, version: u32) -> Result<Secret> {
        self.audited_around(AuditOp::Read, On::Secret(name), String::new(), || {
            self.get_version_opt(name, Some(version))
        })
    }

    fn get_version_opt(&self, name: &str, version: Option<u32>) -> Result<Secret> {
        let (env, keys, ()) = self.e.fetch(|st| {
            let entry = st.index.secrets.get(name)?.ok_or_else(|| Error::NotFound {
                what: format!("secret {name:?}"),
            })?;
            if entry.deleted.is_some() {
                return Err(Error::NotFound {
                    what: format!("secret {name:?} (it is deleted; undelete it to read it)"),
                });
            }
            let v = version.unwrap_or(entry.latest);
            let meta = entry.versions.get(&v).ok_or_else(|| Error::NotFound {
                what: format!("version {v} of secret {name:?}"),
            })?;
            Ok((meta.env, ()))
        })?;
        match payload_of(&env, &keys, &self.e.vault_id)? {
            Payload::SecretVersion(p) if p.name == name => Ok(Secret {
                name: p.name,
                version: p.version,
                created_ms: p.created_ms,
                tags: p.tags,
                value: p.value,
            }),
            _ => Err(Error::integrity(
                format!("record {}", env.sequence),
                format!("expected a version of secret {name:?}"),
            )),
        }
    }

    /// Lists secrets, sorted by name; soft-deleted ones only if `include_deleted`.
    ///
    /// # Errors
    /// If catching up with other writers fails.
    pub fn list(&self, include_deleted: bool) -> Result<Vec<SecretInfo>> {
        self.audited_around(AuditOp::List, On::Nothing, String::new(), || {
            self.list_inner(include_deleted)
        })
    }

    fn list_inner(&self, include_deleted: bool) -> Result<Vec<SecretInfo>> {
        self.e.refresh()?;
        let st = sync::read(&self.e.state);
        let mut out = Vec::new();
        st.index.secrets.for_each(&mut |name, e| {
            if include_deleted || e.deleted.is_none() {
                out.push(SecretInfo {
                    name: name.to_owned(),
                    latest: e.latest,
                    versions: e.versions.len(),
                    deleted: e.deleted.is_some(),
                });
            }
            Ok(())
        })?;
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The versions of `name` that are kept, oldest first (also for a deleted secret).
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn history(&self, name: &str) -> Result<Vec<VersionInfo>> {
        self.audited_around(AuditOp::List, On::Secret(name), String::new(), || {
            self.history_inner(name)
        })
    }

    fn history_inner(&self, name: &str) -> Result<Vec<VersionInfo>> {
        self.e.refresh()?;
        let st = sync::read(&self.e.state);
        let e = st.index.secrets.get(name)?.ok_or_else(|| Error::NotFound {
            what: format!("secret {name:?}"),
        })?;
        Ok(e.versions
            .iter()
            .map(|(v, m)| VersionInfo {
                version: *v,
                created_ms: m.created_ms,
                size: m.size,
                tags: m.tags.clone(),
            })
            .collect())
    }

    /// Stores a new version of `name`; returns its version number. Setting a deleted secret
    /// restores it.
    ///
    /// # Errors
    /// [`Error::Conflict`] if `options.expected_version` does not match; [`Error::Invalid`]
    /// for a bad name, tag or oversized value; storage errors (the vault is then unchanged).
    pub fn set(&self, name: &str, value: SecretBytes, options: SetOptions) -> Result<u32> {
        let mut b = Batch::new();
        b.set(name, value, options);
        let versions = self.commit(b)?;
        versions
            .first()
            .copied()
            .ok_or_else(|| Error::invalid("set", "nothing was written"))
    }

    fn state_change(&self, name: &str, state: SecretState) -> Result<()> {
        let mut b = Batch::new();
        b.ops.push(Op::State {
            name: name.to_string(),
            state,
        });
        self.commit(b).map(|_| ())
    }

    /// Soft-deletes `name`: reads fail with [`Error::NotFound`], history is kept.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist or is already deleted.
    pub fn delete(&self, name: &str) -> Result<()> {
        self.state_change(name, SecretState::Deleted)
    }

    /// Restores a soft-deleted secret.
    ///
    /// # Errors
    /// [`Error::NotFound`], or [`Error::Invalid`] if it is not deleted.
    pub fn undelete(&self, name: &str) -> Result<()> {
        self.state_change(name, SecretState::Restored)
    }

    /// Destroys `name` and all its versions; they leave the disk at the next compaction.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn destroy(&self, name: &str) -> Result<()> {
        self.state_change(name, SecretState::Destroyed)
    }

    /// Sets how many versions of each secret are kept (older ones are dropped).
    ///
    /// # Errors
    /// [`Error::Invalid`] outside `1..=10000`.
    pub fn set_max_versions(&self, max_versions: u32) -> Result<()> {
        if !(1..=vault_format::payload::MAX_MAX_VERSIONS).contains(&max_versions) {
            return Err(Error::invalid(
                "max versions",
                format!("must be 1..={}", vault_format::payload::MAX_MAX_VERSIONS),
            ));
        }
        let mut b = Batch::new();
        b.ops.push(Op::Settings { max_versions });
        self.commit(b).map(|_| ())
    }

    /// How many versions of each secret are kept.
    pub fn max_versions(&self) -> u32 {
        sync::read(&self.e.state).index.max_versions()
    }
}

/// Prepares a new version of `name` (restoring it first if it is deleted), checking the
/// check-and-set expectation against the batch's view.
pub(crate) fn prepare_set(
    p: &mut Prepare<'_>,
    name: &str,
    value: &SecretBytes,
    options: &SetOptions,
) -> Result<()> {
    vault_format::payload::check_name(name).map_err(|r| Error::invalid("name", r))?;
    let known = p.secret(name)?;
    // A secret stored under an older, wider name syntax keeps taking new versions.
    if known.is_none() {
        check_name(name)?;
    }
    vault_format::payload::check_tags(&options.tags).map_err(|r| Error::invalid("tags", r))?;
    let (actual, deleted) = known.unwrap_or((0, false));
    if let Some(expected) = options.expected_version
        && expected != actual
    {
        return Err(Error::Conflict {
            name: name.to_string(),
            expected,
            actual,
        });
    }
    if deleted {
        p.payloads.push(Payload::SecretState(SecretStatePayload {
            name: name.to_string(),
            state: SecretState::Restored,
            time_ms: p.time_ms,
        }));
    }
    let version = actual.checked_add(1).ok_or_else(|| {
        Error::invalid("version", "the secret has reached the last version number")
    })?;
    p.payloads
        .push(Payload::SecretVersion(SecretVersionPayload {
            name: name.to_string(),
            version,
            created_ms: p.time_ms,
            tags: options.tags.clone(),
            value: value.duplicate(),
        }));
    p.latest.insert(name.to_string(), Some((version, false)));
    p.versions.push(version);
    Ok(())
}

/// Prepares a state change of `name`: delete (not twice), undelete (only a deleted one),
/// destroy.
pub(crate) fn prepare_state(p: &mut Prepare<'_>, name: &str, state: SecretState) -> Result<()> {
    let (v, deleted) = p.secret(name)?.ok_or_else(|| Error::NotFound {
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
    p.payloads.push(Payload::SecretState(SecretStatePayload {
        name: name.to_string(),
        state,
        time_ms: p.time_ms,
    }));
    let after = match state {
        SecretState::Deleted => Some((v, true)),
        SecretState::Restored => Some((v, false)),
        SecretState::Destroyed => None,
    };
    p.latest.insert(name.to_string(), after);
    Ok(())
}
