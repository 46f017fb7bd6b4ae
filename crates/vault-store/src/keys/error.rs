//! Why a managed key refused: one variant per reason, each naming the key (and the version where
//! there is one), so a caller can act on it and the CLI can say it in words.

use vault_format::keys::{Algorithm, KeyOps};

/// A managed key refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key of that name already exists.
    #[error("key {key:?} already exists")]
    Exists {
        /// The key.
        key: String,
    },
    /// The key has no such version.
    #[error("key {key:?} has no version {version}")]
    UnknownVersion {
        /// The key.
        key: String,
        /// The version asked for.
        version: u32,
    },
    /// The version is disabled: refused for everything until enabled again.
    #[error("version {version} of key {key:?} is disabled")]
    Disabled {
        /// The key.
        key: String,
        /// The version.
        version: u32,
    },
    /// The version's material was destroyed.
    #[error("version {version} of key {key:?} was destroyed on {when}")]
    Destroyed {
        /// The key.
        key: String,
        /// The version.
        version: u32,
        /// When, as an RFC 3339 time (UTC).
        when: String,
    },
    /// The version is marked compromised; using it needs an explicit override.
    #[error(
        "version {version} of key {key:?} is marked compromised; refused without an explicit override"
    )]
    Compromised {
        /// The key.
        key: String,
        /// The version.
        version: u32,
    },
    /// The version is below the key's floor for the operation.
    #[error("version {version} of key {key:?} is below the key's minimum {what} version {floor}")]
    BelowFloor {
        /// The key.
        key: String,
        /// The version.
        version: u32,
        /// `decrypt` or `encrypt`.
        what: &'static str,
        /// The floor.
        floor: u32,
    },
    /// The version is in a state that cannot do this (a pending version cannot encrypt, a
    /// decrypt-only one cannot be promoted).
    #[error("version {version} of key {key:?} is {state}: {reason}")]
    State {
        /// The key.
        key: String,
        /// The version.
        version: u32,
        /// Its state (CLI spelling).
        state: &'static str,
        /// What it cannot do.
        reason: &'static str,
    },
    /// The key's policy does not allow the operation.
    #[error("key {key:?} does not allow {op} (its policy allows: {allowed})")]
    Forbidden {
        /// The key.
        key: String,
        /// The operation.
        op: &'static str,
        /// What the policy allows.
        allowed: KeyOps,
    },
    /// The key's algorithm cannot do the operation at all.
    #[error("key {key:?} is an {algorithm} key, which cannot {op}")]
    NotCapable {
        /// The key.
        key: String,
        /// Its algorithm.
        algorithm: Algorithm,
        /// The operation.
        op: &'static str,
    },
    /// The key expired: it no longer encrypts, signs or makes data keys.
    #[error("key {key:?} expired on {when}: it no longer encrypts, signs or makes data keys")]
    Expired {
        /// The key.
        key: String,
        /// When, as an RFC 3339 time (UTC).
        when: String,
    },
    /// The token was made by another key.
    #[error("the token was made by another key (key id {token_key_id}), not by key {key:?}")]
    WrongKey {
        /// The key asked to open it.
        key: String,
        /// The key id in the token, hex.
        token_key_id: String,
    },
    /// The token is not well formed (or is a kind this operation does not take).
    #[error("not a valid token for key {key:?}: {reason}")]
    BadToken {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The ciphertext does not authenticate: it was changed, cut short, or the associated data
    /// differs from what it was made with.
    #[error(
        "the ciphertext does not authenticate under version {version} of key {key:?}: it was changed or cut short, or the associated data differs"
    )]
    Decrypt {
        /// The key.
        key: String,
        /// The version the token names.
        version: u32,
    },
    /// The signature (or MAC) does not verify.
    #[error("the signature does not verify under version {version} of key {key:?}")]
    BadSignature {
        /// The key.
        key: String,
        /// The version the signature names.
        version: u32,
    },
    /// A change that would loosen the key's policy was asked for without saying so.
    #[error(
        "that would loosen the policy of key {key:?} (allowing {added}); loosening must be asked for explicitly"
    )]
    Loosen {
        /// The key.
        key: String,
        /// The operations it would add.
        added: KeyOps,
    },
}
