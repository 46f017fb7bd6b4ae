//! The seam every public operation goes through: one audit entry per operation, with its
//! outcome, the acting process and the target's name hashed; with fail-closed auditing, the entry
//! first and the operation refused when it cannot be written. And the trail as a caller reads it.

use vault_format::audit::{AuditEntry, AuditOp, AuditPolicy, Target};

use super::files::{AuditFiles, Later, NewEntry, process};
use super::read::{AuditPieces, AuditRead};

/// What an audited operation acted on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum On<'a> {
    /// Nothing named (an unlock, a verify).
    Nothing,
    /// A secret.
    Secret(&'a str),
    /// A managed key.
    Key(&'a str),
}

impl crate::Error {
    /// The class an audit entry records for this error: the CLI's exit code for it.
    pub(crate) fn audit_class(&self) -> u8 {
        use crate::Error as E;
        match self {
            E::WrongPassphrase => 3,
            E::NotFound { .. } | E::NoVault(_) => 4,
            e if e.is_integrity() => 5,
            E::Busy { .. } => 6,
            E::Conflict { .. } | E::AlreadyExists(_) => 7,
            E::Invalid { .. } => 2,
            E::Key(_) => 8,
            _ => 1,
        }
    }
}

impl crate::engine::Engine {
    /// Appends one entry per `(operation, target, outcome, detail)` to the audit trail, in one
    /// append (a vault without one records nothing). A failure to write is logged, not returned:
    /// the operation it records has happened.
    pub(crate) fn record(&self, entries: &[(AuditOp, On<'_>, u8, String)]) {
        if let Err(e) = self.append_entries(entries, false) {
            // Not the vault's own message for a full disk, which says a commit was not made: the
            // operation this records stands as it ended (done, or failed on its own account).
            let e = format!(
                "{}; this does not change the operation's own result",
                audit_error_text(e)
            );
            // Once per handle: a command's unlock and operation would otherwise say it twice.
            if !self
                .audit_warned
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(error = %e, "the audit trail could not be written");
            } else {
                tracing::debug!(error = %e, "the audit trail could not be written");
            }
        }
    }

    /// Whether operations must be refused when their entry cannot be written durably.
    pub(crate) fn fail_closed(&self) -> bool {
        self.options.audit_fail_closed && self.audit.is_some()
    }

    /// [`Engine::record`] synced, returning the failure as [`crate::Error::AuditUnwritten`].
    pub(crate) fn record_strict(
        &self,
        entries: &[(AuditOp, On<'_>, u8, String)],
    ) -> crate::Result<()> {
        self.append_entries(entries, true)
            .map_err(|e| crate::Error::AuditUnwritten(audit_error_text(e)))
    }

    fn append_entries(
        &self,
        entries: &[(AuditOp, On<'_>, u8, String)],
        sync: bool,
    ) -> crate::Result<()> {
        let Some(files) = &self.audit else {
            return Ok(());
        };
        let (keys, generation) = {
            let st = crate::sync::read(&self.state);
            (st.keys.clone(), st.generation)
        };
        let (pid, uid, host) = process();
        let time_ms = self.options.clock.now_ms();
        let entries: Vec<NewEntry> = entries
            .iter()
            .map(|(op, on, outcome, detail)| NewEntry {
                entry: AuditEntry {
                    index: 0,
                    time_ms,
                    op: *op,
                    outcome: *outcome,
                    flags: 0,
                    generation,
                    pid,
                    uid,
                    host: host.clone(),
                    target: Target::None,
                    detail: detail.chars().take(256).collect(),
                },
                name: match on {
                    On::Nothing => None,
                    On::Secret(n) => Some((1, n.to_string())),
                    On::Key(n) => Some((2, n.to_string())),
                },
            })
            .collect();
        match files.append(
            &keys.audit,
            keys.epoch,
            entries.clone(),
            sync,
            time_ms,
            Later::Rotated,
        ) {
            // A file of a later key epoch: a rotation, unless the header shows none.
            Err(crate::Error::Rekeyed) if self.disk_key_epoch() == Some(keys.epoch) => files
                .append(
                    &keys.audit,
                    keys.epoch,
                    entries,
                    sync,
                    time_ms,
                    Later::Foreign,
                )
                .map(drop),
            r => r.map(drop),
        }
    }

    /// The key epoch of the header on disk now (not this handle's view of it).
    pub(crate) fn disk_key_epoch(&self) -> Option<u32> {
        let session: Box<dyn crate::backend::ReadSession> = self.session().ok()?;
        let bytes = session.header().ok()?;
        vault_format::VaultHeader::decode(&bytes)
            .ok()
            .map(|h| h.key_epoch)
    }

    /// Records a failed unlock (no key: in the pending file).
    pub(crate) fn record_failed_unlock(files: &AuditFiles, outcome: u8, clock: &crate::Clock) {
        let (pid, uid, host) = process();
        let entry = AuditEntry {
            index: 0,
            time_ms: clock.now_ms(),
            op: AuditOp::FailedUnlock,
            outcome,
            flags: 0,
            generation: 0,
            pid,
            uid,
            host,
            target: Target::None,
            detail: String::new(),
        };
        if let Err(e) = files.append_pending(entry, false) {
            tracing::warn!(error = %e, "the failed unlock could not be recorded");
        }
    }
}

/// An error writing the trail, in words (not the vault's own message for a full disk, which
/// says a commit was not made).
fn audit_error_text(e: crate::Error) -> String {
    match e {
        crate::Error::StorageFull { op, location } => format!("storage full while {op} {location}"),
        crate::Error::Rekeyed => {
            "the master key was rotated while this command ran (its key cannot write the new key epoch's file)".into()
        }
        e => e.to_string(),
    }
}

/// Whether an operation of this kind changes the vault (its entry then goes first, with
/// fail-closed auditing).
pub(crate) fn mutates(op: AuditOp) -> bool {
    !matches!(
        op,
        AuditOp::Unlock
            | AuditOp::FailedUnlock
            | AuditOp::Read
            | AuditOp::List
            | AuditOp::KeyEncrypt
            | AuditOp::KeyDecrypt
            | AuditOp::KeyRewrap
            | AuditOp::KeyDataKey
            | AuditOp::KeySign
            | AuditOp::KeyVerify
            | AuditOp::Export
            | AuditOp::Backup
            | AuditOp::Verify
    )
}

impl crate::Vault {
    /// Runs `f`, the operation `op` on `on`, recording it: afterwards, with its outcome; with
    /// fail-closed auditing, a change's entry first (synced; the change is refused if it cannot
    /// be written, and a failure afterwards is recorded as a second entry), a read's entry
    /// synced before its result is handed back.
    pub(crate) fn audited_around<T>(
        &self,
        op: AuditOp,
        on: On<'_>,
        detail: String,
        f: impl FnOnce() -> crate::Result<T>,
    ) -> crate::Result<T> {
        if !self.e.fail_closed() {
            let r = f();
            let outcome = r.as_ref().map_or_else(crate::Error::audit_class, |_| 0);
            self.e.record(&[(op, on, outcome, detail)]);
            return r;
        }
        if mutates(op) {
            self.e.record_strict(&[(op, on, 0, detail)])?;
            let r = f();
            if let Err(e) = &r {
                let why = "the operation recorded just before failed".to_string();
                self.e.record(&[(op, on, e.audit_class(), why)]);
            }
            r
        } else {
            let r = f();
            let outcome = r.as_ref().map_or_else(crate::Error::audit_class, |_| 0);
            self.e.record_strict(&[(op, on, outcome, detail)])?;
            r
        }
    }

    /// The audit trail as read and checked: every entry, and the first problem. The entries
    /// are all held at once; [`crate::Vault::audit_each`] hands them over one at a time.
    ///
    /// # Errors
    /// Storage errors; a file that is not this vault's audit file.
    pub fn audit_trail(&self) -> crate::Result<AuditRead> {
        let mut entries = Vec::new();
        let mut read = self.audit_each(&mut |e, _| {
            entries.push(e);
            Ok(())
        })?;
        read.entries = entries;
        Ok(read)
    }

    /// Reads and checks the audit trail, handing each entry to `f` as it is read, with what
    /// matches the names of its key epoch (a reader holds one of the trail's files at a time,
    /// at most 16 MiB once the trail has several), and returns what the checks found (its
    /// `entries` left empty). The trail's lock is shared meanwhile: appends wait, so `f` should
    /// not take long.
    ///
    /// # Errors
    /// Storage errors; a file that is not this vault's audit file; `f`'s.
    pub fn audit_each(
        &self,
        f: &mut dyn FnMut(AuditEntry, &super::read::AuditNames<'_>) -> crate::Result<()>,
    ) -> crate::Result<AuditRead> {
        let Some(files) = &self.e.audit else {
            return Ok(AuditRead::default());
        };
        let keys = crate::sync::read(&self.e.state).keys.clone();
        let mut read = files.read_each(&keys.audit, keys.epoch, f)?;
        if !read.later.is_empty() && self.e.disk_key_epoch() == Some(keys.epoch) {
            read.problem.get_or_insert((
                read.count + 1,
                format!(
                    "{} of a key epoch the vault has not reached (it is at key epoch {}): put there by something other than vault",
                    read.later.join(", "),
                    keys.epoch
                ),
            ));
        }
        Ok(read)
    }

    /// Whether the audit entry's target is the secret (`key: false`) or managed key named
    /// `name`: its hash, or, in a trail that keeps names in clear, its sealed name. What
    /// `vault audit --name` matches.
    pub fn audit_target_is(&self, target: &Target, name: &str, key: bool) -> bool {
        let keys = crate::sync::read(&self.e.state).keys.clone();
        keys.audit.names(target, if key { 2 } else { 1 }, name)
    }

    /// The name a target holds in a trail that keeps names in clear, with whether it is a
    /// managed key's; `None` for a hashed name, or a sealed one of an earlier key epoch (its
    /// key went with that epoch's master key).
    pub fn audit_target_name(&self, target: &Target) -> Option<(String, bool)> {
        let keys = crate::sync::read(&self.e.state).keys.clone();
        keys.audit.open_name(target).map(|(k, n)| (n, k == 2))
    }

    /// The hash an audit entry records for the secret (`key: false`) or managed key named
    /// `name` in a trail that hashes names.
    pub fn audit_name_hash(&self, name: &str, key: bool) -> [u8; 32] {
        let keys = crate::sync::read(&self.e.state).keys.clone();
        keys.audit.name_hash(if key { 2 } else { 1 }, name)
    }

    /// The audit trail's policy in force: names hashed or in clear, retention limits.
    ///
    /// # Errors
    /// Storage errors.
    pub fn audit_policy(&self) -> crate::Result<AuditPolicy> {
        let Some(files) = &self.e.audit else {
            return Ok(AuditPolicy::default());
        };
        let keys = crate::sync::read(&self.e.state).keys.clone();
        files.policy(&keys.audit, keys.epoch)
    }

    /// Changes the audit trail's policy. The change is an entry of its own, the first of a new
    /// file of the trail (so each file says what policy its entries were written under); a
    /// retention limit applies at once, removing the oldest files it excludes (with an entry
    /// saying which entries are kept).
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] for a size limit under 1 MiB or a vault without a trail;
    /// storage errors (the policy is then unchanged).
    pub fn set_audit_policy(&self, policy: AuditPolicy) -> crate::Result<()> {
        let Some(files) = &self.e.audit else {
            return Err(crate::Error::invalid(
                "audit policy",
                "this vault was opened without its audit trail",
            ));
        };
        vault_format::audit::AuditPolicy::from_detail(&policy.to_detail())
            .map_err(|e| crate::Error::invalid("audit policy", e.to_string()))?;
        let keys = crate::sync::read(&self.e.state).keys.clone();
        let (pid, uid, host) = process();
        let now = self.e.options.clock.now_ms();
        let generation = crate::sync::read(&self.e.state).generation;
        let entry = AuditEntry {
            index: 0,
            time_ms: now,
            op: AuditOp::Policy,
            outcome: 0,
            flags: 0,
            generation,
            pid,
            uid,
            host,
            target: Target::None,
            detail: String::new(),
        };
        let r = files.set_policy(&keys.audit, keys.epoch, &policy, entry, now);
        if let Err(e) = &r {
            let why = format!("the policy was not changed: {e}");
            self.e
                .record(&[(AuditOp::Policy, On::Nothing, e.audit_class(), why)]);
        }
        r
    }
}

impl crate::Vault {
    /// Hands every file of the audit trail to `f` in pieces (file name, offset, bytes), read
    /// under the audit lock: what `vault backup --include-audit` carries. Nothing for a vault
    /// without a trail.
    ///
    /// # Errors
    /// Storage errors; `f`'s.
    pub fn audit_files(&self, f: &mut AuditPieces<'_>) -> crate::Result<()> {
        match &self.e.audit {
            Some(files) => files.copy(f),
            None => Ok(()),
        }
    }
}
