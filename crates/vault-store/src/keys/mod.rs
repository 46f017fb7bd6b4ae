//! Managed keys: named keys with versions, lifecycle states, floors, expiry, rotation periods
//! and a usage policy, and the operations they do without their material leaving the vault.
//!
//! - [`lifecycle`]: create, rotate (staged or not), promote, set a version's state, destroy,
//!   floors, expiry, rotation period, policy; [`KeyInfo`] describes a key.
//! - [`crypto`]: encrypt, decrypt, rewrap, data keys, sign and verify with self-describing tokens
//!   (`vault_format::token`), each use checked against the key's state and policy.
//! - [`stream`]: encrypt and decrypt inputs of any size in chunks (STREAM), memory bounded.
//! - [`KeyError`]: one typed refusal per reason.
//!
//! A key's settings and its versions' states are one record (kind 7); each version's material
//! is a record of its own (kind 3), written once and replaced by one without material when the
//! version is destroyed, so compaction removes the material from disk.
//!
//! ```
//! use std::sync::Arc;
//! use vault_store::{Algorithm, KeySpec, MemoryBackend, RotateOptions, UseOptions, Vault, VaultOptions};
//! # use vault_store::{KdfParams, SecretBytes};
//! # fn main() -> Result<(), vault_store::Error> {
//! # let pass = SecretBytes::from_slice(b"pass");
//! # let v = Vault::create(Arc::new(MemoryBackend::new()), &pass, KdfParams::for_key(64, 1, 1)?, VaultOptions::default())?;
//! v.create_key("payments", KeySpec::new(Algorithm::XChaCha20Poly1305))?;
//! let token = v.encrypt("payments", b"card 4242", b"customer 7")?;
//! v.rotate_key("payments", RotateOptions::default())?;
//! // The token names version 1, which still decrypts (it is decrypt-only now).
//! let plain = v.decrypt("payments", &token, b"customer 7", UseOptions::default())?;
//! assert_eq!(plain.expose_secret(), b"card 4242");
//! // Rewrap moves it to the primary version without the plaintext leaving the vault.
//! let newer = v.rewrap("payments", &token, b"customer 7", UseOptions::default())?;
//! assert!(vault_format::token::to_text(&newer)?.starts_with("vault:v2:"));
//! # Ok(())
//! # }
//! ```

pub mod crypto;
mod error;
pub mod lifecycle;
pub mod stream;

pub use crypto::UseOptions;
pub use error::KeyError;
pub use lifecycle::{KeyInfo, KeySpec, RotateOptions};
pub use vault_format::keys::{Algorithm, KeyOps};

pub use crate::engine::index::KeyVersionInfo;
use crate::engine::index::keys::KeyEntry;
use crate::{Error, Result};
use vault_format::payload::{KeyPayload, KeyState};

/// The CLI's spelling of a state.
pub fn state_name(s: KeyState) -> &'static str {
    match s {
        KeyState::Pending => "pending",
        KeyState::Active => "active",
        KeyState::Deactivated => "decrypt-only",
        KeyState::Disabled => "disabled",
        KeyState::Compromised => "compromised",
        KeyState::Destroyed => "destroyed",
    }
}

/// The state the CLI spells `name`.
pub fn parse_state(name: &str) -> Option<KeyState> {
    KeyState::ALL.into_iter().find(|s| state_name(*s) == name)
}

/// UTC time as RFC 3339 to the second; a time outside the calendar prints as milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after 1970-01-01T00:00:00Z"))
}

/// A key's entry and settings, or the typed error for a key that does not exist.
pub(crate) fn settings<'a>(
    keys: &'a crate::engine::index::keys::Keys,
    name: &str,
) -> Result<(&'a KeyEntry, &'a KeyPayload)> {
    keys.get(name)
        .and_then(|k| k.settings.as_ref().map(|(s, _)| (k, s)))
        .ok_or_else(|| Error::NotFound {
            what: format!("key {name:?}"),
        })
}

/// The key's algorithm, refusing one this build does not know.
pub(crate) fn algorithm_of(s: &KeyPayload) -> Result<Algorithm> {
    Algorithm::from_name(&s.algorithm).ok_or_else(|| {
        Error::invalid(
            "key",
            format!(
                "key {:?} uses algorithm {:?}, which this version of vault does not know",
                s.name, s.algorithm
            ),
        )
    })
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::Key(e)
    }
}
