//! The audit trail's bytes (docs/designs/audit.md, FORMAT.md §6.13): an entry, the frame it is
//! stored in (readable forwards and backwards), the MAC chain over entries, and the keyless hash
//! chain of entries recorded before an unlock. No I/O: the store appends and reads the files.
//!
//! ```text
//! file    = preamble("VAUD", 1) ‖ vault id (16) ‖ first index (u64) ‖ previous link (32) ‖ frame*
//! frame   = length (u32) ‖ entry ‖ link (32) ‖ length (u32)         (both lengths: the entry's)
//! entry   = index (u64) ‖ time ms (i64) ‖ operation (u8) ‖ outcome (u8) ‖ flags (u8)
//!           ‖ generation (u64) ‖ pid (u32) ‖ uid (u32) ‖ host (u8 length ‖ UTF-8)
//!           ‖ target (u8 0 | u8 1 ‖ hash (32) | u8 2 ‖ nonce (24) ‖ u16 length ‖ sealed name)
//!           ‖ detail (u16 length ‖ UTF-8)
//! link    = HMAC-SHA256(MAC key, "vault v1 audit entry" ‖ vault id ‖ previous link ‖ entry)
//!           (a pending file: SHA-256("vault v1 audit pending" ‖ vault id ‖ previous ‖ entry))
//! ```

use vault_crypto::{Key256, aead, derive, hash, mac};

use crate::preamble::{self, ObjectKind};
use crate::reader::Reader;
use crate::wire::wire_enum;
use crate::{Error, Result, VaultId};

const OBJECT: &str = "audit entry";
/// A main-chain file.
const LOG_KIND: ObjectKind = ObjectKind {
    name: "audit log",
    tag: *b"VAUD",
    current_version: 1,
};
/// A file of entries recorded before an unlock.
const PENDING_KIND: ObjectKind = ObjectKind {
    name: "audit pending file",
    tag: *b"VAUP",
    current_version: 1,
};
/// Length of a link (a MAC, or a hash for pending entries).
pub const LINK_LEN: usize = 32;
/// Bytes of a file's header.
pub const FILE_HEADER_LEN: usize = 16 + 16 + 8 + LINK_LEN;
/// Longest host name kept.
pub const MAX_HOST: usize = 255;
/// Longest detail.
pub const MAX_DETAIL: usize = 1024;
/// Longest sealed name (a name of at most 4 KiB and its tag).
pub const MAX_SEALED: usize = 4096 + 16;
/// Longest entry.
pub const MAX_ENTRY: usize = 64 * 1024;
/// Bytes a frame adds around its entry.
pub const FRAME_OVERHEAD: usize = 4 + LINK_LEN + 4;

const ENTRY_LABEL: &[u8] = b"vault v1 audit entry";
const PENDING_LABEL: &[u8] = b"vault v1 audit pending";
const NAME_LABEL: &[u8] = b"vault v1 audit name";
const HANDOVER_LABEL: &[u8] = b"vault v1 audit handover";

wire_enum! {
    /// What an entry records.
    pub enum AuditOp {
        /// The vault was opened (a passphrase or other input unlocked it).
        Unlock = 1,
        /// An unlock failed (a wrong passphrase): recorded before any key is known.
        FailedUnlock = 2,
        /// A secret's value was read.
        Read = 3,
        /// Names were listed (or a secret's history or metadata read).
        List = 4,
        /// A secret was written (a new version).
        Write = 5,
        /// A secret was soft-deleted.
        Delete = 6,
        /// A soft-deleted secret was restored.
        Undelete = 7,
        /// A secret was destroyed.
        Destroy = 8,
        /// A managed key was created.
        KeyCreate = 9,
        /// A managed key was rotated.
        KeyRotate = 10,
        /// A managed key's version changed state, floors, expiry, rotation period or policy.
        KeyChange = 11,
        /// Data was encrypted with a managed key.
        KeyEncrypt = 12,
        /// Data was decrypted with a managed key.
        KeyDecrypt = 13,
        /// Ciphertexts were moved to a key's primary version.
        KeyRewrap = 14,
        /// A data key was made.
        KeyDataKey = 15,
        /// Data was signed.
        KeySign = 16,
        /// A signature was checked.
        KeyVerify = 17,
        /// Keys or secrets were exported.
        Export = 18,
        /// Keys or secrets were imported.
        Import = 19,
        /// A backup was made.
        Backup = 20,
        /// The vault was restored from a backup.
        Restore = 21,
        /// The vault was verified.
        Verify = 22,
        /// A passphrase was changed, added or removed.
        PassphraseChange = 23,
        /// The master key was rotated.
        MasterKeyRotation = 24,
        /// An older state of the vault was accepted.
        RollbackAccepted = 25,
        /// The log was compacted, the index written, or a setting changed.
        Maintenance = 26,
        /// Entries were removed by retention (the detail names the first index kept:
        /// [`RetentionNote`]).
        Retention = 27,
        /// The trail's policy (names in clear or hashed; retention limits): a change of it, or
        /// the policy in force restated as a file's first entry ([`AuditPolicy`]).
        Policy = 28,
        /// A master-key rotation handed the previous key epoch's name keys over, sealed
        /// ([`AuditKeys::seal_handover`]), so that its names can still be matched.
        KeyHandover = 29,
        /// A member was added to a team vault (the detail names them).
        MemberAdd = 30,
        /// A member was removed, the master key rotated (the detail names them).
        MemberRemove = 31,
    }
}

impl AuditOp {
    /// The operation's name, as `vault audit --op` takes it and prints it.
    pub const fn name(self) -> &'static str {
        match self {
            AuditOp::Unlock => "unlock",
            AuditOp::FailedUnlock => "failed-unlock",
            AuditOp::Read => "read",
            AuditOp::List => "list",
            AuditOp::Write => "write",
            AuditOp::Delete => "delete",
            AuditOp::Undelete => "undelete",
            AuditOp::Destroy => "destroy",
            AuditOp::KeyCreate => "key-create",
            AuditOp::KeyRotate => "key-rotate",
            AuditOp::KeyChange => "key-change",
            AuditOp::KeyEncrypt => "encrypt",
            AuditOp::KeyDecrypt => "decrypt",
            AuditOp::KeyRewrap => "rewrap",
            AuditOp::KeyDataKey => "datakey",
            AuditOp::KeySign => "sign",
            AuditOp::KeyVerify => "verify-signature",
            AuditOp::Export => "export",
            AuditOp::Import => "import",
            AuditOp::Backup => "backup",
            AuditOp::Restore => "restore",
            AuditOp::Verify => "verify",
            AuditOp::PassphraseChange => "passphrase-change",
            AuditOp::MasterKeyRotation => "master-key-rotation",
            AuditOp::RollbackAccepted => "rollback-accepted",
            AuditOp::Maintenance => "maintenance",
            AuditOp::Retention => "retention",
            AuditOp::Policy => "audit-policy",
            AuditOp::KeyHandover => "key-handover",
            AuditOp::MemberAdd => "member-add",
            AuditOp::MemberRemove => "member-remove",
        }
    }

    /// The operation named `name` ([`AuditOp::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// Flag: the entry was recorded before an unlock (folded in from the pending file).
pub const FLAG_BEFORE_UNLOCK: u8 = 1;
/// Flag: the trail wrote the entry itself (a policy restated at a file's start, a retention
/// note, a file that did not verify when it was sealed), not an operation of a caller.
pub const FLAG_TRAIL: u8 = 2;
const KNOWN_FLAGS: u8 = FLAG_BEFORE_UNLOCK | FLAG_TRAIL;

/// What an entry says about the operation's target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// None (an unlock, a verify).
    None,
    /// The name's hash under the name-hash key ([`AuditKeys::name_hash`]).
    Hashed([u8; 32]),
    /// The name, sealed under the name-sealing key (a vault that keeps names in clear).
    Sealed {
        /// XChaCha20-Poly1305 nonce.
        nonce: [u8; 24],
        /// The sealed name and its tag.
        sealed: Vec<u8>,
    },
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the chain, from 1, no gaps.
    pub index: u64,
    /// When, ms since the Unix epoch (UTC).
    pub time_ms: i64,
    /// What was done.
    pub op: AuditOp,
    /// 0: it succeeded; otherwise the error class (the CLI's exit code).
    pub outcome: u8,
    /// [`FLAG_BEFORE_UNLOCK`].
    pub flags: u8,
    /// The vault generation the operation saw, or its commit made.
    pub generation: u64,
    /// The acting process.
    pub pid: u32,
    /// Its user.
    pub uid: u32,
    /// Its host.
    pub host: String,
    /// The target.
    pub target: Target,
    /// A short note: a version number, a key version (never a value).
    pub detail: String,
}

fn too_long(field: &'static str, len: usize, max: usize) -> Error {
    Error::TooLong {
        object: OBJECT,
        field,
        len: len as u64,
        max: max as u64,
    }
}

impl AuditEntry {
    /// The entry's bytes.
    ///
    /// # Errors
    /// A field over its limit, unknown flags.
    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.host.len() > MAX_HOST {
            return Err(too_long("host", self.host.len(), MAX_HOST));
        }
        if self.detail.len() > MAX_DETAIL {
            return Err(too_long("detail", self.detail.len(), MAX_DETAIL));
        }
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(Error::InvalidField {
                object: OBJECT,
                field: "flags",
                reason: "unknown flags".into(),
            });
        }
        let mut out = Vec::with_capacity(64 + self.host.len() + self.detail.len());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        out.push(self.op.to_byte());
        out.push(self.outcome);
        out.push(self.flags);
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.pid.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.push(self.host.len() as u8);
        out.extend_from_slice(self.host.as_bytes());
        match &self.target {
            Target::None => out.push(0),
            Target::Hashed(h) => {
                out.push(1);
                out.extend_from_slice(h);
            }
            Target::Sealed { nonce, sealed } => {
                if sealed.len() > MAX_SEALED {
                    return Err(too_long("sealed name", sealed.len(), MAX_SEALED));
                }
                out.push(2);
                out.extend_from_slice(nonce);
                out.extend_from_slice(&(sealed.len() as u16).to_le_bytes());
                out.extend_from_slice(sealed);
            }
        }
        out.extend_from_slice(&(self.detail.len() as u16).to_le_bytes());
        out.extend_from_slice(self.detail.as_bytes());
        Ok(out)
    }

    /// Reads an entry that is all of `bytes`.
    ///
    /// # Errors
    /// Anything malformed: truncation, an unknown operation, target kind or flag, a text that is
    /// not UTF-8, a field over its limit, bytes after the entry.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(OBJECT, bytes);
        let index = r.u64("index")?;
        let time_ms = i64::from_le_bytes(r.array("time")?);
        let op_byte = r.u8("operation")?;
        let op = AuditOp::from_byte(op_byte)
            .ok_or_else(|| r.invalid("operation", format!("unknown operation {op_byte}")))?;
        let outcome = r.u8("outcome")?;
        let flags = r.u8("flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(r.invalid("flags", "unknown flags"));
        }
        let generation = r.u64("generation")?;
        let pid = r.u32("pid")?;
        let uid = r.u32("uid")?;
        let host_len = usize::from(r.u8("host length")?);
        let host = String::from_utf8(r.bytes("host", host_len)?.to_vec())
            .map_err(|_| r.invalid("host", "not UTF-8"))?;
        let target = match r.u8("target kind")? {
            0 => Target::None,
            1 => Target::Hashed(r.array("target hash")?),
            2 => {
                let nonce = r.array("target nonce")?;
                let len = usize::from(r.u16("sealed name length")?);
                if len > MAX_SEALED {
                    return Err(too_long("sealed name", len, MAX_SEALED));
                }
                Target::Sealed {
                    nonce,
                    sealed: r.bytes("sealed name", len)?.to_vec(),
                }
            }
            other => return Err(r.invalid("target kind", format!("unknown kind {other}"))),
        };
        let detail_len = usize::from(r.u16("detail length")?);
        if detail_len > MAX_DETAIL {
            return Err(too_long("detail", detail_len, MAX_DETAIL));
        }
        let detail = String::from_utf8(r.bytes("detail", detail_len)?.to_vec())
            .map_err(|_| r.invalid("detail", "not UTF-8"))?;
        r.finish()?;
        Ok(AuditEntry {
            index,
            time_ms,
            op,
            outcome,
            flags,
            generation,
            pid,
            uid,
            host,
            target,
            detail,
        })
    }
}

/// The keys the audit key derives: the chain's MAC key, and the keys for names
/// ([`NameKeys`]).
pub struct AuditKeys {
    vault_id: VaultId,
    mac: Key256,
    names: NameKeys,
}

/// The keys for the names an audit entry records: the name-hash key and the name-sealing key.
/// A master-key rotation hands the old epoch's over to the new one, sealed in the new epoch's
/// first file ([`AuditKeys::seal_handover`]), so names of earlier epochs can still be matched.
pub struct NameKeys {
    vault_id: VaultId,
    name: Key256,
    seal: Key256,
}

impl AuditKeys {
    /// Locks the pages holding these keys against swapping ([`Key256::lock_in_memory`]).
    ///
    /// # Errors
    /// The first key that could not be locked.
    pub fn lock_in_memory(&self) -> std::io::Result<usize> {
        for k in [&self.mac, &self.names.name, &self.names.seal] {
            k.lock_in_memory()?;
        }
        Ok(3)
    }

    /// Derives the keys of the vault `vault_id` from its audit key.
    pub fn derive(audit_key: &Key256, vault_id: &VaultId) -> Self {
        let context = |what: &[u8]| [vault_id.as_bytes().as_slice(), what].concat();
        AuditKeys {
            vault_id: *vault_id,
            mac: derive::subkey(audit_key, derive::Purpose::Audit, &context(b"mac")),
            names: NameKeys {
                vault_id: *vault_id,
                name: derive::subkey(audit_key, derive::Purpose::Audit, &context(b"name")),
                seal: derive::subkey(audit_key, derive::Purpose::Audit, &context(b"seal")),
            },
        }
    }

    /// The link of the entry `entry` (its bytes) after `previous`.
    pub fn link(&self, previous: &[u8; LINK_LEN], entry: &[u8]) -> [u8; LINK_LEN] {
        *mac::hmac_sha256(
            self.mac.expose_secret(),
            &[ENTRY_LABEL, self.vault_id.as_bytes(), previous, entry],
        )
        .as_bytes()
    }

    /// An HMAC under the chain's MAC key over `parts` (the anchor kept outside the vault
    /// directory is authenticated with it).
    pub fn mac_of(&self, parts: &[&[u8]]) -> [u8; 32] {
        *mac::hmac_sha256(self.mac.expose_secret(), parts).as_bytes()
    }

    /// Whether `tag` is [`AuditKeys::mac_of`] `parts` (compared in constant time).
    pub fn mac_matches(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.mac_of(parts)[..], tag).into()
    }

    /// The keys for names.
    pub fn name_keys(&self) -> &NameKeys {
        &self.names
    }

    /// What an entry's target says for the name `name` of kind `kind` (1 secret, 2 key).
    pub fn name_hash(&self, kind: u8, name: &str) -> [u8; 32] {
        self.names.name_hash(kind, name)
    }

    /// The key that seals names kept in clear.
    pub fn seal_key(&self) -> &Key256 {
        &self.names.seal
    }

    /// [`NameKeys::seal_name`].
    ///
    /// # Errors
    /// As there.
    pub fn seal_name(&self, kind: u8, name: &str) -> Result<Target> {
        self.names.seal_name(kind, name)
    }

    /// [`NameKeys::open_name`].
    pub fn open_name(&self, target: &Target) -> Option<(u8, String)> {
        self.names.open_name(target)
    }

    /// [`NameKeys::names`].
    pub fn names(&self, target: &Target, kind: u8, name: &str) -> bool {
        self.names.names(target, kind, name)
    }

    /// The previous key epoch's name keys, sealed under this epoch's seal key (associated data
    /// "vault v1 audit handover" ‖ vault id): the target of a key-handover entry.
    ///
    /// # Errors
    /// No randomness for the nonce.
    pub fn seal_handover(&self, older: &NameKeys) -> Result<Target> {
        let plain = [
            older.name.expose_secret().as_slice(),
            older.seal.expose_secret().as_slice(),
        ]
        .concat();
        let plain = vault_crypto::SecretBytes::new(plain);
        let aad = [HANDOVER_LABEL, self.vault_id.as_bytes()].concat();
        let s = aead::seal(&self.names.seal, &aad, plain.expose_secret()).map_err(|source| {
            Error::Crypto {
                object: OBJECT,
                source,
            }
        })?;
        Ok(Target::Sealed {
            nonce: *s.nonce.as_bytes(),
            sealed: s.ciphertext,
        })
    }
}

impl NameKeys {
    /// What an entry's target says for the name `name` of kind `kind` (1 secret, 2 key).
    pub fn name_hash(&self, kind: u8, name: &str) -> [u8; 32] {
        *mac::hmac_sha256(self.name.expose_secret(), &[&[kind], name.as_bytes()]).as_bytes()
    }

    /// The target for the name `name` of kind `kind` (1 secret, 2 key) sealed, for a trail
    /// that keeps names in clear: XChaCha20-Poly1305 under the seal key of `kind ‖ name`, the
    /// associated data "vault v1 audit name" ‖ vault id.
    ///
    /// # Errors
    /// No randomness for the nonce; a name over the sealed limit.
    pub fn seal_name(&self, kind: u8, name: &str) -> Result<Target> {
        if name.len() + 1 + aead::TAG_LEN > MAX_SEALED {
            return Err(too_long("sealed name", name.len(), MAX_SEALED));
        }
        let plain = [&[kind][..], name.as_bytes()].concat();
        let aad = [NAME_LABEL, self.vault_id.as_bytes()].concat();
        let s = aead::seal(&self.seal, &aad, &plain).map_err(|source| Error::Crypto {
            object: OBJECT,
            source,
        })?;
        Ok(Target::Sealed {
            nonce: *s.nonce.as_bytes(),
            sealed: s.ciphertext,
        })
    }

    /// The kind and name a sealed target holds; `None` for another target, or one that does
    /// not open under this key (another key epoch's, or changed).
    pub fn open_name(&self, target: &Target) -> Option<(u8, String)> {
        let Target::Sealed { nonce, sealed } = target else {
            return None;
        };
        let aad = [NAME_LABEL, self.vault_id.as_bytes()].concat();
        let plain = aead::open(&self.seal, &aead::Nonce::from_bytes(*nonce), &aad, sealed).ok()?;
        let (kind, name) = plain.expose_secret().split_first()?;
        Some((*kind, String::from_utf8(name.to_vec()).ok()?))
    }

    /// Whether `target` names `name` of kind `kind`: its hash, or its sealed name.
    pub fn names(&self, target: &Target, kind: u8, name: &str) -> bool {
        match target {
            Target::None => false,
            Target::Hashed(h) => {
                subtle::ConstantTimeEq::ct_eq(&h[..], &self.name_hash(kind, name)[..]).into()
            }
            Target::Sealed { .. } => self
                .open_name(target)
                .is_some_and(|(k, n)| k == kind && n == name),
        }
    }

    /// The previous key epoch's name keys a key-handover entry's target holds, sealed under
    /// these ([`AuditKeys::seal_handover`]); `None` if it does not open.
    pub fn open_handover(&self, target: &Target) -> Option<NameKeys> {
        let Target::Sealed { nonce, sealed } = target else {
            return None;
        };
        let aad = [HANDOVER_LABEL, self.vault_id.as_bytes()].concat();
        let plain = aead::open(&self.seal, &aead::Nonce::from_bytes(*nonce), &aad, sealed).ok()?;
        let bytes = plain.expose_secret();
        Some(NameKeys {
            vault_id: self.vault_id,
            name: Key256::from_slice(bytes.get(..32)?).ok()?,
            seal: Key256::from_slice(bytes.get(32..64).filter(|_| bytes.len() == 64)?).ok()?,
        })
    }
}

/// The trail's policy: whether names are kept in clear (sealed in the entry) or hashed, and
/// the retention limits. A file's policy is its first entry's when that is an
/// [`AuditOp::Policy`] entry, and the default otherwise; it is written as that entry's detail,
/// `names=hashed|clear max-size=BYTES max-age-days=DAYS` (0: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditPolicy {
    /// Names kept in clear, sealed in the entry (otherwise hashed).
    pub names_clear: bool,
    /// Most bytes the trail's files keep (0: no limit).
    pub max_bytes: u64,
    /// Most days an entry is kept (0: no limit).
    pub max_age_days: u32,
}

/// Smallest size limit a policy takes (1 MiB): a limit must leave room for a few files.
pub const MIN_RETAINED_BYTES: u64 = 1 << 20;

impl AuditPolicy {
    /// The policy as an entry's detail.
    pub fn to_detail(&self) -> String {
        format!(
            "names={} max-size={} max-age-days={}",
            if self.names_clear { "clear" } else { "hashed" },
            self.max_bytes,
            self.max_age_days
        )
    }

    /// Reads a policy written by [`AuditPolicy::to_detail`], exactly.
    ///
    /// # Errors
    /// Anything else.
    pub fn from_detail(detail: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidField {
            object: OBJECT,
            field: "policy",
            reason: why.to_string(),
        };
        let mut parts = detail.split(' ');
        let mut field = |key: &str| -> Result<&str> {
            parts
                .next()
                .and_then(|p| p.strip_prefix(key))
                .and_then(|p| p.strip_prefix('='))
                .ok_or_else(|| bad(&format!("no {key}")))
        };
        let names_clear = match field("names")? {
            "clear" => true,
            "hashed" => false,
            _ => return Err(bad("names is neither clear nor hashed")),
        };
        let number = |s: &str| -> Result<u64> {
            (s.len() <= 20
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0')))
            .then(|| s.parse().ok())
            .flatten()
            .ok_or_else(|| bad("a limit is not a decimal number"))
        };
        let max_bytes = number(field("max-size")?)?;
        let max_age_days = u32::try_from(number(field("max-age-days")?)?)
            .map_err(|_| bad("max-age-days is too large"))?;
        if parts.next().is_some() {
            return Err(bad("more than a policy"));
        }
        if max_bytes != 0 && max_bytes < MIN_RETAINED_BYTES {
            return Err(bad("max-size is under 1 MiB"));
        }
        Ok(AuditPolicy {
            names_clear,
            max_bytes,
            max_age_days,
        })
    }
}

/// What a retention entry's detail says: the first entry kept and the link before it (the
/// header of the oldest file kept), and how many files and entries were removed. Written as
/// `first-kept=INDEX link=HEX files=N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionNote {
    /// The index of the first entry kept (the oldest kept file's first).
    pub first_kept: u64,
    /// The link before it (that file's header's previous link).
    pub link: [u8; LINK_LEN],
    /// Files removed.
    pub files: u32,
}

impl RetentionNote {
    /// The note as an entry's detail.
    pub fn to_detail(&self) -> String {
        let hex: String = self.link.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "first-kept={} link={hex} files={}",
            self.first_kept, self.files
        )
    }

    /// Reads a note written by [`RetentionNote::to_detail`], exactly.
    ///
    /// # Errors
    /// Anything else.
    pub fn from_detail(detail: &str) -> Result<Self> {
        let bad = || Error::InvalidField {
            object: OBJECT,
            field: "retention note",
            reason: "not a retention note".into(),
        };
        let mut parts = detail.split(' ');
        let mut field = |key: &str| -> Result<&str> {
            parts
                .next()
                .and_then(|p| p.strip_prefix(key))
                .and_then(|p| p.strip_prefix('='))
                .ok_or_else(bad)
        };
        let first_kept: u64 = field("first-kept")?.parse().map_err(|_| bad())?;
        let hex = field("link")?;
        let files: u32 = field("files")?.parse().map_err(|_| bad())?;
        if hex.len() != 2 * LINK_LEN || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        let mut link = [0u8; LINK_LEN];
        for (i, b) in link.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        let note = RetentionNote {
            first_kept,
            link,
            files,
        };
        (parts.next().is_none() && note.to_detail() == detail)
            .then_some(note)
            .ok_or_else(bad)
    }
}

/// The link of a pending entry (recorded before an unlock, so without a key) after `previous`.
pub fn pending_link(vault_id: &VaultId, previous: &[u8; LINK_LEN], entry: &[u8]) -> [u8; 32] {
    hash::sha256(&[PENDING_LABEL, vault_id.as_bytes(), previous, entry])
}

/// The header of an audit file: its vault, the index of its first entry and the link before it
/// (zero at the start of the chain; a segment after retention starts where the last ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// A pending file (keyless hash chain), or a main-chain file.
    pub pending: bool,
    /// The vault.
    pub vault_id: VaultId,
    /// The first entry's index.
    pub first_index: u64,
    /// The link before the first entry.
    pub previous: [u8; LINK_LEN],
}

impl FileHeader {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FILE_HEADER_LEN);
        preamble::write(&mut out, if self.pending { PENDING_KIND } else { LOG_KIND });
        out.extend_from_slice(self.vault_id.as_bytes());
        out.extend_from_slice(&self.first_index.to_le_bytes());
        out.extend_from_slice(&self.previous);
        out
    }

    /// Reads the header at the start of `bytes`, of a pending file or a main one.
    ///
    /// # Errors
    /// Not an audit file of that kind, a newer version, truncation.
    pub fn decode(bytes: &[u8], pending: bool) -> Result<Self> {
        let kind = if pending { PENDING_KIND } else { LOG_KIND };
        let mut r = Reader::new(kind.name, bytes);
        preamble::read(&mut r, kind)?;
        Ok(FileHeader {
            pending,
            vault_id: VaultId::from_bytes(r.array("vault id")?),
            first_index: r.u64("first index")?,
            previous: r.array("previous link")?,
        })
    }
}

/// The little-endian u32 that starts `b`, as a length.
fn u32_at(b: &[u8]) -> Option<usize> {
    let four: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(four) as usize)
}

/// The bytes of the frame holding `entry` (its bytes) and its link.
///
/// # Errors
/// An entry over [`MAX_ENTRY`].
pub fn frame(entry: &[u8], link: &[u8; LINK_LEN]) -> Result<Vec<u8>> {
    if entry.len() > MAX_ENTRY {
        return Err(too_long("entry", entry.len(), MAX_ENTRY));
    }
    let len = (entry.len() as u32).to_le_bytes();
    let mut out = Vec::with_capacity(entry.len() + FRAME_OVERHEAD);
    out.extend_from_slice(&len);
    out.extend_from_slice(entry);
    out.extend_from_slice(link);
    out.extend_from_slice(&len);
    Ok(out)
}

/// One frame as read: where it starts in the frames' bytes, the entry's bytes, the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFrame<'a> {
    /// Offset of the frame in the bytes after the file header.
    pub offset: usize,
    /// The entry's bytes.
    pub entry: &'a [u8],
    /// The stored link.
    pub link: [u8; LINK_LEN],
}

/// How the frames after a file's header end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// At a frame boundary.
    Clean,
    /// In a frame cut short at this offset (an append a crash interrupted): what a writer cuts.
    Torn(usize),
    /// At this offset, bytes that are not a frame: damage (never cut).
    Damaged(usize),
}

/// Splits the bytes after a file's header into frames, in order, and says how they end. A
/// frame whose two lengths disagree, or that claims more than [`MAX_ENTRY`], is damage unless it
/// runs past the end of the bytes (then it is a torn append).
pub fn frames(bytes: &[u8]) -> (Vec<StoredFrame<'_>>, Tail) {
    let mut out = Vec::new();
    let mut at = 0usize;
    loop {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.is_empty() {
            return (out, Tail::Clean);
        }
        let Some(len) = u32_at(rest) else {
            return (out, Tail::Torn(at));
        };
        if len > MAX_ENTRY {
            return (out, Tail::Damaged(at));
        }
        let total = len + FRAME_OVERHEAD;
        let Some(whole) = rest.get(..total) else {
            return (out, Tail::Torn(at));
        };
        let (Some(entry), Some(link), Some(trailer)) = (
            whole.get(4..4 + len),
            whole.get(4 + len..4 + len + LINK_LEN),
            whole.get(4 + len + LINK_LEN..),
        ) else {
            return (out, Tail::Damaged(at));
        };
        if trailer != (len as u32).to_le_bytes() {
            return (out, Tail::Damaged(at));
        }
        let mut l = [0u8; LINK_LEN];
        l.copy_from_slice(link);
        out.push(StoredFrame {
            offset: at,
            entry,
            link: l,
        });
        at += total;
    }
}

/// Where the last frame of `bytes` (the frames after a file's header, or their end) starts,
/// read backwards from the end by its trailing length; `None` when the bytes do not end in a
/// whole frame.
pub fn last_frame(bytes: &[u8]) -> Option<StoredFrame<'_>> {
    let n = bytes.len();
    let trailer = bytes.get(n.checked_sub(4)?..)?;
    let len = u32_at(trailer)?;
    if len > MAX_ENTRY {
        return None;
    }
    let start = n.checked_sub(len + FRAME_OVERHEAD)?;
    let whole = bytes.get(start..)?;
    if whole.get(..4)? != trailer {
        return None;
    }
    let mut link = [0u8; LINK_LEN];
    link.copy_from_slice(whole.get(4 + len..4 + len + LINK_LEN)?);
    Some(StoredFrame {
        offset: start,
        entry: whole.get(4..4 + len)?,
        link,
    })
}

/// What checking a chain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainCheck {
    /// Entries that verified, from the first.
    pub verified: u64,
    /// The last verified entry's index and link (the header's when none did).
    pub last: (u64, [u8; LINK_LEN]),
    /// The first entry that did not verify, and why.
    pub broken: Option<(u64, String)>,
}

/// Checks the frames after `header` link by link: each entry decodes, has the next index, and
/// its link is the MAC (or, for a pending file, the hash) of it after the one before. Stops at
/// the first that fails, naming it by the index it should have had.
pub fn check_chain(
    header: &FileHeader,
    frames: &[StoredFrame<'_>],
    keys: Option<&AuditKeys>,
) -> ChainCheck {
    let mut previous = header.previous;
    let mut expected = header.first_index;
    let mut verified = 0;
    for f in frames {
        let why = match AuditEntry::decode(f.entry) {
            Err(e) => Some(format!("does not decode: {e}")),
            Ok(e) if e.index != expected => Some(format!(
                "holds index {} where {expected} belongs (entries removed, inserted or moved)",
                e.index
            )),
            Ok(_) => {
                let link = match (header.pending, keys) {
                    (true, _) => pending_link(&header.vault_id, &previous, f.entry),
                    (false, Some(k)) => k.link(&previous, f.entry),
                    (false, None) => [0; LINK_LEN],
                };
                let same: bool = subtle::ConstantTimeEq::ct_eq(&link[..], &f.link[..]).into();
                (!same).then(|| "its link does not verify (changed, or not written after the entry before it)".to_string())
            }
        };
        if let Some(why) = why {
            return ChainCheck {
                verified,
                last: (expected.saturating_sub(1), previous),
                broken: Some((expected, why)),
            };
        }
        previous = f.link;
        expected += 1;
        verified += 1;
    }
    ChainCheck {
        verified,
        last: (expected.saturating_sub(1), previous),
        broken: None,
    }
}

/// What checking a whole audit file found: its header, how many entries verified, and the
/// first problem, if any, by the index of the first entry it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCheck {
    /// The file's header.
    pub header: FileHeader,
    /// The chain as far as it verified.
    pub chain: ChainCheck,
    /// The first problem: a broken link, damage, a torn last append, or an anchor the file no
    /// longer reaches.
    pub problem: Option<(u64, String)>,
}

/// Checks the audit file `bytes` (a pending file or a main one) of vault `vault_id`: its header,
/// every frame and link, how it ends, and, given the `anchor` kept outside the file (the index
/// and link of the last entry appended), that the file still holds that entry with that link.
///
/// # Errors
/// A header that is not an audit file's, or of another vault.
pub fn check_file(
    bytes: &[u8],
    pending: bool,
    vault_id: &VaultId,
    keys: Option<&AuditKeys>,
    anchor: Option<(u64, [u8; LINK_LEN])>,
) -> Result<FileCheck> {
    let header = FileHeader::decode(bytes, pending)?;
    if header.vault_id != *vault_id {
        return Err(Error::InvalidField {
            object: OBJECT,
            field: "vault id",
            reason: "the audit file is another vault's".into(),
        });
    }
    let (frames, tail) = frames(bytes.get(FILE_HEADER_LEN..).unwrap_or_default());
    let chain = check_chain(&header, &frames, keys);
    let next = chain.last.0 + 1;
    let problem = if let Some(b) = &chain.broken {
        Some(b.clone())
    } else if let Tail::Torn(_) = tail {
        Some((
            next,
            "the last append was cut short (a crash while writing it)".to_string(),
        ))
    } else if let Tail::Damaged(_) = tail {
        Some((next, "bytes that are not an entry".to_string()))
    } else {
        match anchor {
            Some((index, _)) if index > chain.last.0 => Some((
                chain.last.0 + 1,
                format!(
                    "the log ends at entry {} but entry {index} was written: entries were removed from its end",
                    chain.last.0
                ),
            )),
            Some((index, link)) => {
                let at = index
                    .checked_sub(header.first_index)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| frames.get(i));
                match at {
                    Some(f) if f.link == link => None,
                    _ => Some((
                        index,
                        "it is not the entry last written there (the log was replaced)".to_string(),
                    )),
                }
            }
            None => None,
        }
    };
    Ok(FileCheck {
        header,
        chain,
        problem,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use super::*;

    fn entry(index: u64) -> AuditEntry {
        AuditEntry {
            index,
            time_ms: 1_700_000_000_000 + index as i64,
            op: AuditOp::Read,
            outcome: 0,
            flags: 0,
            generation: 7,
            pid: 42,
            uid: 1000,
            host: "build-1".into(),
            target: Target::Hashed([index as u8; 32]),
            detail: "v3".into(),
        }
    }

    #[test]
    fn an_entry_round_trips_and_every_cut_is_refused() {
        let e = entry(5);
        let bytes = e.encode().unwrap();
        assert_eq!(AuditEntry::decode(&bytes).unwrap(), e);
        for n in 0..bytes.len() {
            assert!(AuditEntry::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(AuditEntry::decode(&longer).is_err());
    }
}
