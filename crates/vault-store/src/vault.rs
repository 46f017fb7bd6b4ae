//! The public handle: create and open a vault, its options, and the accessors every other API
//! module ([`crate::secrets`], [`crate::keys`], [`crate::slots`], [`crate::rotation`],
//! [`crate::verify`]) builds on. The work is done by the engine ([`crate::engine`]).

use vault_crypto::kdf::KdfParams;
use vault_crypto::{Key256, SecretBytes};
use vault_format::payload::{BindingPhase, EventKind, EventPayload, Payload, SettingsPayload};
use vault_format::{KeySlot, VaultHeader, VaultId};

use crate::audit::On;
use crate::backend::Backend;
use crate::engine::index::DEFAULT_MAX_VERSIONS;
use crate::engine::seal::{self, Chain};
use crate::engine::subkeys::Keys;
use crate::engine::unlock;
use crate::engine::{Engine, HeaderView, binding, decode_header, now_ms};
use crate::sync::{self, Arc};
use crate::verify::VerifyReport;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

pub use crate::engine::options::{Clock, Progress, Step, VaultOptions};

/// An open vault. `Send + Sync`: share it between threads behind an `Arc`.
pub struct Vault {
    pub(crate) e: Engine,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("location", &self.e.backend.location())
            .field("vault_id", &self.e.vault_id)
            .finish_non_exhaustive()
    }
}

/// How many times `open` starts over when another process rotates the master key meanwhile.
const OPEN_ATTEMPTS: usize = 3;

impl Vault {
    /// Creates a new vault with one passphrase slot, or (with [`VaultOptions::member`]) one
    /// member slot.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] (also when only part of a vault is there), [`Error::Invalid`]
    /// for KDF parameters over `options.kdf_limit`, or I/O and crypto errors.
    pub fn create(
        backend: Arc<dyn Backend>,
        passphrase: &SecretBytes,
        kdf: KdfParams,
        options: VaultOptions,
    ) -> Result<Self> {
        options.kdf_limit.check_new(&kdf)?;
        if backend.exists()? {
            // A vault that lost its header is reported as that, not as "a vault exists".
            return Err(match backend.read_header() {
                Err(e @ Error::Integrity { .. }) => e,
                _ => Error::AlreadyExists(backend.location()),
            });
        }
        let vault_id = VaultId::random()?;
        let master = Key256::generate()?;
        // A team vault's creator is its first member ([`VaultOptions::member`]).
        let slot = match &options.member {
            Some(name) => {
                vault_format::check_member_name(name)
                    .map_err(|e| Error::invalid("member name", e.to_string()))?;
                let new = vault_format::NewMember {
                    name,
                    state: vault_format::MemberState::Joined,
                    secret: passphrase.expose_secret(),
                    kdf,
                    added_by: "",
                };
                KeySlot::create_member(0, &new, &master, &vault_id, 0)?
            }
            None => KeySlot::create(0, passphrase.expose_secret(), kdf, &master, &vault_id, 0)?,
        };
        let header = VaultHeader::new(vault_id, 0, vec![slot], &master)?;
        let keys = Keys::derive(&master, &vault_id, 0, 0);
        let opened = unlock::OpenedWith::new(&master, &header, 0, passphrase)?;
        drop(master);
        let view = HeaderView {
            bytes: header.encode(),
            header,
        };
        let initial = [
            Payload::Settings(SettingsPayload {
                max_versions: DEFAULT_MAX_VERSIONS,
            }),
            Payload::Event(EventPayload {
                kind: EventKind::Created,
                time_ms: now_ms(),
                text: "vault created".into(),
            }),
            binding(BindingPhase::Confirmed, view.digest()),
        ];
        let records = seal::records(&keys, &vault_id, &initial, 1)?;
        let frame = seal::frame(&keys, &vault_id, Chain::Snapshot, 1, records);
        backend.create(&view.bytes, 0, &frame.encode()?)?;
        let vault = Self {
            e: Engine::new(backend, view, keys, options),
        };
        *sync::lock(&vault.e.opened) = opened;
        {
            let txn = vault.e.begin_write(false)?;
            vault.e.record_generation(&txn.st);
        }
        Ok(vault)
    }

    /// Opens an existing vault with a passphrase. Reads only: nothing in the vault is changed
    /// (a torn tail is discarded, and leftovers removed, by the first write).
    ///
    /// # Errors
    /// [`Error::WrongPassphrase`], [`Error::KdfLimit`], [`Error::RollbackDetected`],
    /// [`Error::Integrity`], [`Error::Format`] (e.g. a newer format version),
    /// [`Error::NoVault`], I/O errors.
    pub fn open(
        backend: Arc<dyn Backend>,
        passphrase: &SecretBytes,
        options: VaultOptions,
    ) -> Result<Self> {
        Self::open_with(backend, unlock::Unlock::Passphrase(passphrase), options)
    }

    /// Opens an existing vault with whatever `input` is (today a passphrase; later a member key
    /// or material from an agent).
    ///
    /// # Errors
    /// As [`Vault::open`].
    pub fn open_with(
        backend: Arc<dyn Backend>,
        input: unlock::Unlock<'_>,
        options: VaultOptions,
    ) -> Result<Self> {
        Self::open_inner(backend, input, options, false).map(|(v, _)| v)
    }

    /// Opens the vault and verifies it in the same pass over the log: what [`Vault::open`]
    /// followed by [`Vault::verify`] does, reading and decrypting the log once instead of twice.
    ///
    /// # Errors
    /// As [`Vault::open`] and [`Vault::verify`].
    pub fn open_and_verify(
        backend: Arc<dyn Backend>,
        passphrase: &SecretBytes,
        options: VaultOptions,
    ) -> Result<(Self, VerifyReport)> {
        if options.accept_rollback {
            // Accepting writes; the verify then reads what was accepted.
            let v = Self::open(backend, passphrase, options)?;
            let report = v.verify()?;
            return Ok((v, report));
        }
        let (v, report) = Self::open_inner(
            backend,
            unlock::Unlock::Passphrase(passphrase),
            options,
            true,
        )?;
        match report {
            Some(report) => Ok((v, report)),
            None => Err(Error::integrity("verify", "the open did not verify")),
        }
    }

    fn open_inner(
        backend: Arc<dyn Backend>,
        input: unlock::Unlock<'_>,
        options: VaultOptions,
        verify: bool,
    ) -> Result<(Self, Option<VerifyReport>)> {
        let mut last = Error::Rekeyed;
        for _ in 0..OPEN_ATTEMPTS {
            // Read and unlock without a lock (Argon2 takes long; writers must not wait on it),
            // then check under the lock that the header is still the one unlocked.
            let bytes = backend.read_header()?;
            let header = decode_header(&bytes, &backend.location())?;
            let (master, slot_id) = match unlock::unlock(
                &header,
                input,
                &options.kdf_limit,
                unlock::Pick::of(&options),
            ) {
                Ok(x) => x,
                Err(e) => {
                    // No key: recorded in the pending file, folded in at the next unlock.
                    if matches!(e, Error::WrongPassphrase)
                        && options.audit
                        && let Some((dir, io)) = backend.audit_place()
                    {
                        let files = crate::audit::AuditFiles::new(
                            &dir,
                            io,
                            header.vault_id,
                            options.lock_timeout,
                        );
                        Engine::record_failed_unlock(&files, e.audit_class(), &options.clock);
                    }
                    return Err(e);
                }
            };
            let keys = Keys::derive(&master, &header.vault_id, header.key_epoch, slot_id);
            let opened = match input {
                unlock::Unlock::Passphrase(p) => {
                    unlock::OpenedWith::new(&master, &header, slot_id, p)?
                }
            };
            drop(master);
            let vault = Self {
                e: Engine::new(
                    backend.clone(),
                    HeaderView { header, bytes },
                    keys,
                    options.clone(),
                ),
            };
            *sync::lock(&vault.e.opened) = opened;
            let started = std::time::Instant::now();
            let read = if verify {
                // The verify pass checks all an open checks, and more; its view becomes the
                // handle's.
                vault.verify_pass().map(|(st, report)| {
                    *sync::write(&vault.e.state) = st;
                    Some(report)
                })
            } else {
                vault.e.open_log().map(|()| None)
            };
            match read {
                // Another process rotated the master key after the header was read.
                Err(Error::Rekeyed) => last = Error::Rekeyed,
                Err(e) => return Err(e),
                Ok(report) => {
                    {
                        let st = sync::read(&vault.e.state);
                        tracing::info!(
                            "opened the vault at {} (key epoch {}, generation {}) in {} ms after unlocking",
                            vault.e.backend.location(),
                            st.keys.epoch,
                            st.generation,
                            started.elapsed().as_millis()
                        );
                    }
                    // A team's trail says which member opened it.
                    let slot = match vault.e.header_slot_member(slot_id) {
                        Some(name) => format!("slot {slot_id} (member {name})"),
                        None => format!("slot {slot_id}"),
                    };
                    let mut entries = vec![(AuditOp::Unlock, On::Nothing, 0, slot)];
                    if report.is_some() {
                        entries.push((AuditOp::Verify, On::Nothing, 0, String::new()));
                    }
                    if let Some(text) = vault.accepted_rollback() {
                        entries.push((AuditOp::RollbackAccepted, On::Nothing, 0, text));
                    }
                    if vault.e.fail_closed() {
                        vault.e.record_strict(&entries)?;
                    } else {
                        vault.e.record(&entries);
                    }
                    return Ok((vault, report));
                }
            }
        }
        Err(last)
    }

    /// Locks the memory pages holding this handle's keys (the master key and every key derived
    /// from it) against being swapped out, for as long as the process lives: for a process that
    /// keeps a vault open (the agent) and cannot lock all its memory. Returns how many keys.
    /// Key material read during one operation (a managed key's, names of earlier key epochs)
    /// is not covered; it is zeroized when the operation ends.
    ///
    /// # Errors
    /// The operating system's, for the first key that could not be locked (a small
    /// `RLIMIT_MEMLOCK` already used up).
    pub fn lock_keys_in_memory(&self) -> std::io::Result<usize> {
        let keys = sync::read(&self.e.state).keys.clone();
        let mut n = keys.lock_in_memory()?;
        if let Some(opened) = sync::lock(&self.e.opened).as_ref() {
            n += opened.lock_in_memory()?;
        }
        Ok(n)
    }

    /// What opening with [`VaultOptions::accept_rollback`] accepted and recorded in the vault (an
    /// older state, a header the log did not record), or `None` if there was nothing to accept.
    pub fn accepted_rollback(&self) -> Option<String> {
        sync::lock(&self.e.accepted).clone()
    }

    /// The vault's id.
    pub fn vault_id(&self) -> VaultId {
        self.e.vault_id
    }

    /// Where the vault is stored.
    pub fn location(&self) -> String {
        self.e.backend.location()
    }

    /// The generation of the last commit seen by this handle.
    pub fn generation(&self) -> u64 {
        sync::read(&self.e.state).generation
    }

    /// Rewrites the log with only the live records (one snapshot frame), dropping superseded,
    /// pruned and destroyed ones. Atomic: a crash leaves the old log or the new one.
    ///
    /// # Errors
    /// Storage errors (the old log then stays in place).
    pub fn compact(&self) -> Result<()> {
        self.audited_around(
            AuditOp::Maintenance,
            On::Nothing,
            "compact".to_string(),
            || self.compact_inner(),
        )
    }

    fn compact_inner(&self) -> Result<()> {
        let mut txn = self.e.begin_write(false)?;
        self.e.compact_locked(txn.session.as_mut(), &mut txn.st)
    }

    /// Writes the index file now: a checkpoint of the log as it is, so that the next open reads
    /// only what follows it. Writers do this on their own (after compaction and rotation, and
    /// once enough was committed since the last one); this is for a vault that only ever reads,
    /// or one upgraded from a build without an index.
    ///
    /// # Errors
    /// Storage errors (the previous index, if any, then stays in place).
    pub fn checkpoint(&self) -> Result<()> {
        self.audited_around(
            AuditOp::Maintenance,
            On::Nothing,
            "checkpoint".to_string(),
            || self.checkpoint_inner(),
        )
    }

    fn checkpoint_inner(&self) -> Result<()> {
        let mut txn = self.e.begin_write(false)?;
        let txn = &mut txn;
        self.e
            .checkpoint_locked(txn.session.as_mut(), &mut txn.st, None)
    }
}
