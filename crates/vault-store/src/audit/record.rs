//! The seam every public operation goes through: one audit entry per operation, with its
//! outcome, the acting process and the target's name hashed; with fail-closed auditing, the entry
//! first and the operation refused when it cannot be written. And the trail as a caller reads it.

use vault_format::audit::{AuditEntry, AuditOp, Target};

use super::files::{AuditFiles, AuditPieces, AuditRead, process};

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
            .map_err(|e| crate::Error::AuditUnwritten(e.to_string()))
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
        let entries = entries
            .iter()
            .map(|(op, on, outcome, detail)| AuditEntry {
                index: 0,
                time_ms,
                op: *op,
                outcome: *outcome,
                flags: 0,
                generation,
                pid,
                uid,
                host: host.clone(),
                target: match on {
                    On::Nothing => Target::None,
                    On::Secret(n) => Target::Hashed(keys.audit.name_hash(1, n)),
                    On::Key(n) => Target::Hashed(keys.audit.name_hash(2, n)),
                },
                detail: detail.chars().take(256).collect(),
            })
            .collect();
        files
            .append(&keys.audit, keys.epoch, entries, sync)
            .map(drop)
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

    /// The audit trail as read and checked: every entry, and the first problem.
    ///
    /// # Errors
    /// Storage errors; a file that is not this vault's audit file.
    pub fn audit_trail(&self) -> crate::Result<AuditRead> {
        let Some(files) = &self.e.audit else {
            return Ok(AuditRead::default());
        };
        let keys = crate::sync::read(&self.e.state).keys.clone();
        files.read(&keys.audit, keys.epoch)
    }

    /// The hash an audit entry records for the secret (`key: false`) or managed key named
    /// `name`: what `vault audit --name` matches.
    pub fn audit_name_hash(&self, name: &str, key: bool) -> [u8; 32] {
        let keys = crate::sync::read(&self.e.state).keys.clone();
        keys.audit.name_hash(if key { 2 } else { 1 }, name)
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
