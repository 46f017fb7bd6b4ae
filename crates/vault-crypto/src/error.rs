//! The crate's one error type.

/// Errors from vault-crypto. None of them carries secret material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Authenticated decryption failed: wrong key, wrong associated data, or modified ciphertext.
    /// Deliberately says nothing more.
    #[error("decryption failed")]
    Decrypt,
    /// Encryption refused its input (larger than the cipher allows).
    #[error("encryption failed: input too large")]
    Encrypt,
    /// A MAC did not verify.
    #[error("MAC verification failed")]
    MacMismatch,
    /// A fixed-size input had the wrong length.
    #[error("invalid {what} length: expected {expected} bytes, got {got}")]
    InvalidLength {
        /// What was being read ("key", "nonce", ...).
        what: &'static str,
        /// The required length.
        expected: usize,
        /// The length supplied.
        got: usize,
    },
    /// A KDF parameter was outside its allowed range.
    #[error("invalid KDF parameter {field}: {value} is outside {min}..={max}")]
    InvalidKdfParams {
        /// Which parameter.
        field: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// Argon2 itself failed (for example it could not allocate its memory).
    #[error("key derivation failed: {0}")]
    Kdf(&'static str),
    /// HKDF was asked for more output than it can produce (255 × 32 bytes).
    #[error("HKDF output length {requested} exceeds the maximum of {max}")]
    HkdfOutputTooLong {
        /// Bytes requested.
        requested: usize,
        /// The most HKDF-SHA256 can produce.
        max: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}
