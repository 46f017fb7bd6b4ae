//! Moving managed keys and secrets between vaults: an export file (vault_format::export) sealed
//! under an export passphrase, read from one consistent view of the vault, and an import that
//! checks everything before it changes anything and commits all of it at once.

use vault_crypto::kdf::KdfParams;
use vault_format::export::{self, ExportContents, ExportedKey, ExportedSecret, OpenError};
use vault_format::keys::{KeyOps, VersionState};
use vault_format::payload::{
    KeyState, KeyVersionPayload, Payload, SecretState, SecretStatePayload,
};

use crate::audit::On;
use crate::engine::index::RecordRef;
use crate::engine::unlock::KdfLimit;
use crate::keys::KeyError;
use crate::vault::Vault;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

/// What an export holds.
#[derive(Clone, Debug, Default)]
pub struct ExportSelection {
    /// Managed keys by name; `None`: every key.
    pub keys: Option<Vec<String>>,
    /// Secrets by name; `None`: every secret.
    pub secrets: Option<Vec<String>>,
}

impl ExportSelection {
    /// These keys, no secrets.
    pub fn keys(names: &[String]) -> Self {
        ExportSelection {
            keys: Some(names.to_vec()),
            secrets: Some(Vec::new()),
        }
    }
}

/// An export file, and the keys `--all` left out because their policy does not allow export.
#[derive(Debug)]
pub struct Exported {
    /// The binary export file.
    pub file: Vec<u8>,
    /// Keys left out: every key was asked for, and these do not allow export.
    pub skipped_keys: Vec<String>,
}

/// How an import treats names the vault already has.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Import the one key of the file under this name instead.
    pub rename: Option<String>,
    /// Replace keys and secrets of the same name (their versions are replaced by the file's).
    pub replace: bool,
    /// The most Argon2id work the file may ask for (checked before any is done).
    pub kdf_limit: KdfLimit,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Keys imported, by the name they have now.
    pub keys: Vec<String>,
    /// Secrets imported.
    pub secrets: Vec<String>,
}

/// Why an export file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportFileError {
    /// The export passphrase is not the file's.
    #[error("wrong export passphrase")]
    WrongPassphrase,
    /// The passphrase is right, but the contents were changed.
    #[error("the export file was changed: its contents do not authenticate")]
    Tampered,
    /// The file asks for more Argon2id work than allowed.
    #[error("the export file asks for too much key-derivation work: {0}")]
    KdfLimit(String),
    /// Not an export file, cut short, malformed, or of a newer version.
    #[error("{0}")]
    Format(vault_format::Error),
}

impl Vault {
    /// Exports the selected keys (every version, state, policy and time) and secrets (their kept
    /// versions) from one consistent view, sealed under `passphrase` with `kdf`: the binary
    /// file ([`vault_format::export::to_json`] gives the JSON encoding).
    ///
    /// # Errors
    /// [`Error::NotFound`] for a name that does not exist; [`KeyError::Forbidden`] for a key
    /// named whose policy does not allow export (asked for every key, such keys are left out and
    /// named in [`Exported::skipped_keys`]); storage errors.
    pub fn export(
        &self,
        selection: &ExportSelection,
        passphrase: &[u8],
        kdf: KdfParams,
    ) -> Result<Exported> {
        self.audited_around(AuditOp::Export, On::Nothing, String::new(), || {
            self.export_inner(selection, passphrase, kdf)
        })
    }

    fn export_inner(
        &self,
        selection: &ExportSelection,
        passphrase: &[u8],
        kdf: KdfParams,
    ) -> Result<Exported> {
        let (records, plan) = self.e.fetch_many(|st| {
            let mut refs: Vec<RecordRef> = Vec::new();
            let mut keys = Vec::new();
            let mut skipped = Vec::new();
            let names: Vec<String> = match &selection.keys {
                Some(n) => n.clone(),
                None => st
                    .index
                    .keys
                    .iter()
                    .filter(|(_, k)| k.settings.is_some())
                    .map(|(n, _)| n.clone())
                    .collect(),
            };
            for name in names {
                let (entry, s) = crate::keys::settings(&st.index.keys, &name)?;
                if !s.allowed.contains(KeyOps::EXPORT) && selection.keys.is_none() {
                    skipped.push(name.clone());
                    continue;
                }
                if !s.allowed.contains(KeyOps::EXPORT) {
                    return Err(KeyError::Forbidden {
                        key: name.clone(),
                        op: "export",
                        allowed: s.allowed,
                    }
                    .into());
                }
                let versions: Vec<RecordRef> = s
                    .versions
                    .iter()
                    .filter_map(|v| entry.versions.get(&v.version).map(|m| m.env))
                    .collect();
                keys.push((s.clone(), versions.len()));
                refs.extend(versions);
            }
            let mut secrets = Vec::new();
            let mut add = |name: &str, e: &crate::engine::index::secrets::SecretEntry| {
                let vs: Vec<RecordRef> = e.versions.values().map(|m| m.env).collect();
                secrets.push((name.to_string(), e.deleted.is_some(), vs.len()));
                refs.extend(vs);
            };
            match &selection.secrets {
                Some(names) => {
                    for n in names {
                        let e = st.index.secrets.get(n)?.ok_or_else(|| Error::NotFound {
                            what: format!("secret {n:?}"),
                        })?;
                        add(n, &e);
                    }
                }
                None => st.index.secrets.for_each(&mut |n, e| {
                    add(n, e);
                    Ok(())
                })?,
            }
            Ok((refs, (keys, secrets, skipped)))
        })?;
        let (keys, secrets, skipped_keys) = plan;
        let mut records = records.into_iter();
        let mut contents = ExportContents {
            exported_ms: self.e.options.clock.now_ms(),
            ..ExportContents::default()
        };
        for (key, n) in keys {
            let mut versions = Vec::with_capacity(n);
            for p in records.by_ref().take(n) {
                let Payload::KeyVersion(v) = p else {
                    return Err(Error::integrity("key version", "not a key version record"));
                };
                versions.push(v);
            }
            // A version whose record holds material the key record says is destroyed: export
            // it without.
            for v in &mut versions {
                if key
                    .versions
                    .iter()
                    .any(|s| s.version == v.version && s.state == KeyState::Destroyed)
                {
                    v.state = KeyState::Destroyed;
                    v.material = vault_crypto::SecretBytes::zeroed(0);
                }
            }
            contents.keys.push(ExportedKey { key, versions });
        }
        for (name, deleted, n) in secrets {
            let mut versions = Vec::with_capacity(n);
            for p in records.by_ref().take(n) {
                let Payload::SecretVersion(v) = p else {
                    return Err(Error::integrity(
                        "secret version",
                        "not a secret version record",
                    ));
                };
                versions.push(v);
            }
            contents.secrets.push(ExportedSecret {
                name,
                deleted,
                versions,
            });
        }
        Ok(Exported {
            file: export::seal(&contents, passphrase, kdf)?,
            skipped_keys,
        })
    }

    /// Reads an export file (binary or JSON) with its passphrase: nothing is changed.
    ///
    /// # Errors
    /// [`ExportFileError`] inside [`Error::Export`].
    pub fn read_export(file: &[u8], passphrase: &[u8], limit: &KdfLimit) -> Result<ExportContents> {
        let binary;
        let bytes = if export::is_binary_export(file) {
            file
        } else {
            let text = std::str::from_utf8(file).map_err(|_| {
                Error::Export(ExportFileError::Format(vault_format::Error::InvalidField {
                    object: "export file",
                    field: "encoding",
                    reason: "neither a binary export nor JSON text".into(),
                }))
            })?;
            binary =
                export::from_json(text).map_err(|e| Error::Export(ExportFileError::Format(e)))?;
            &binary
        };
        export::open(bytes, passphrase, &|p| limit.refusal(p)).map_err(|e| {
            Error::Export(match e {
                OpenError::WrongPassphrase => ExportFileError::WrongPassphrase,
                OpenError::Tampered => ExportFileError::Tampered,
                OpenError::Format(vault_format::Error::InvalidField {
                    field: "Argon2id parameters",
                    reason,
                    ..
                }) => ExportFileError::KdfLimit(reason),
                OpenError::Format(f) => ExportFileError::Format(f),
            })
        })
    }

    /// Imports an export file: everything is read and checked first (passphrase, integrity,
    /// name conflicts), then committed at once, or nothing is.
    ///
    /// # Errors
    /// [`Error::Export`] for the file; [`KeyError::Exists`] (or [`Error::Conflict`] for a
    /// secret) for a name the vault has, unless `replace`; [`Error::Invalid`] for `rename` with
    /// other than one key.
    pub fn import_export(
        &self,
        file: &[u8],
        passphrase: &[u8],
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        self.audited_around(AuditOp::Import, On::Nothing, String::new(), || {
            self.import_export_inner(file, passphrase, options)
        })
    }

    fn import_export_inner(
        &self,
        file: &[u8],
        passphrase: &[u8],
        options: &ImportOptions,
    ) -> Result<ImportReport> {
        let mut contents = Self::read_export(file, passphrase, &options.kdf_limit)?;
        if let Some(new) = &options.rename {
            if contents.keys.len() != 1 || !contents.secrets.is_empty() {
                return Err(Error::invalid(
                    "rename",
                    "only an export of exactly one key (and no secrets) can be imported under another name",
                ));
            }
            crate::batch::check_name(new)?;
            for k in &mut contents.keys {
                k.key.name.clone_from(new);
                for v in &mut k.versions {
                    v.name.clone_from(new);
                }
            }
        }
        let now = self.e.options.clock.now_ms();
        self.e.write_txn(|st| {
            let mut out = Vec::new();
            let mut report = ImportReport::default();
            for k in &contents.keys {
                let name = &k.key.name;
                let mut record = k.key.clone();
                let existing = st.index.keys.get(name);
                // A name new to this vault is held to the current syntax, wherever it comes from.
                if existing.is_none() {
                    crate::batch::check_name(name)?;
                }
                if let Some(existing) = existing {
                    if !options.replace {
                        return Err(KeyError::Exists { key: name.clone() }.into());
                    }
                    // Versions the file does not have are destroyed, not forgotten: their numbers
                    // stay taken (a later rotation goes past them) and their tokens are refused
                    // as destroyed, never opened by a new version of the same number.
                    let mut merged: std::collections::BTreeMap<u32, VersionState> =
                        record.versions.iter().map(|v| (v.version, *v)).collect();
                    for v in existing.versions.keys() {
                        merged.entry(*v).or_insert(VersionState {
                            version: *v,
                            state: KeyState::Destroyed,
                            changed_ms: now,
                        });
                    }
                    if merged.len() > vault_format::keys::MAX_KEY_VERSIONS {
                        return Err(Error::invalid(
                            "import",
                            format!("key {name:?} would have more versions than a key can"),
                        ));
                    }
                    record.versions = merged.into_values().collect();
                    for (v, m) in &existing.versions {
                        if !k.versions.iter().any(|x| x.version == *v) {
                            out.push(Payload::KeyVersion(KeyVersionPayload {
                                name: name.clone(),
                                version: *v,
                                algorithm: m.info.algorithm.clone(),
                                state: KeyState::Destroyed,
                                created_ms: m.info.created_ms,
                                state_changed_ms: now,
                                material: vault_crypto::SecretBytes::zeroed(0),
                            }));
                        }
                    }
                }
                for v in &k.versions {
                    out.push(Payload::KeyVersion(KeyVersionPayload {
                        name: v.name.clone(),
                        version: v.version,
                        algorithm: v.algorithm.clone(),
                        state: v.state,
                        created_ms: v.created_ms,
                        state_changed_ms: v.state_changed_ms,
                        material: v.material.duplicate(),
                    }));
                }
                out.push(Payload::Key(record));
                report.keys.push(name.clone());
            }
            for s in &contents.secrets {
                let existing = st.index.secrets.get(&s.name)?;
                if existing.is_none() {
                    crate::batch::check_name(&s.name)?;
                }
                if let Some(e) = existing {
                    if !options.replace {
                        return Err(Error::Conflict {
                            name: s.name.clone(),
                            expected: 0,
                            actual: e.latest,
                        });
                    }
                    // Replaced: its versions go, as a destroy does, and the file's come in.
                    out.push(Payload::SecretState(SecretStatePayload {
                        name: s.name.clone(),
                        state: SecretState::Destroyed,
                        time_ms: now,
                    }));
                }
                for v in &s.versions {
                    out.push(Payload::SecretVersion(
                        vault_format::payload::SecretVersionPayload {
                            name: v.name.clone(),
                            version: v.version,
                            created_ms: v.created_ms,
                            tags: v.tags.clone(),
                            value: v.value.duplicate(),
                        },
                    ));
                }
                if s.deleted {
                    out.push(Payload::SecretState(SecretStatePayload {
                        name: s.name.clone(),
                        state: SecretState::Deleted,
                        time_ms: now,
                    }));
                }
                report.secrets.push(s.name.clone());
            }
            Ok((out, report))
        })
    }
}
