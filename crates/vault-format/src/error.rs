//! The crate's one error type: every variant names the object and, where it applies, the field.

/// An error decoding (or, rarely, encoding) a vault object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the object did.
    #[error("{object} is truncated: {field} needs {needed} more bytes, {got} left")]
    Truncated {
        /// Which object was being read.
        object: &'static str,
        /// Which field.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        got: usize,
    },
    /// The first bytes are not vault's magic number: not a vault file, or mangled in transfer.
    #[error("{object}: not a vault file (bad magic number)")]
    BadMagic {
        /// Which object was expected.
        object: &'static str,
    },
    /// A vault file of a different kind (say a log where a header was expected).
    #[error("{object}: wrong kind of vault file (found object tag {found:?})")]
    WrongObject {
        /// Which object was expected.
        object: &'static str,
        /// The four-byte tag found.
        found: [u8; 4],
    },
    /// Written by a newer version of vault than this one.
    #[error(
        "{object} is format version {found}, written by a newer version of vault; this version reads up to {max}"
    )]
    UnsupportedVersion {
        /// Which object.
        object: &'static str,
        /// Version found.
        found: u16,
        /// Highest version this build reads.
        max: u16,
    },
    /// A field holds a value the format does not allow.
    #[error("{object}: invalid {field}: {reason}")]
    InvalidField {
        /// Which object.
        object: &'static str,
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A length field exceeds its documented limit.
    #[error("{object}: {field} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Which object.
        object: &'static str,
        /// Which field.
        field: &'static str,
        /// Length found.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Bytes remain after a complete object.
    #[error("{object}: {count} unexpected trailing bytes")]
    TrailingBytes {
        /// Which object.
        object: &'static str,
        /// How many bytes follow it.
        count: usize,
    },
    /// The object's integrity checksum does not match: it was corrupted on disk or in transfer.
    #[error("{object} is corrupted (checksum mismatch)")]
    ChecksumMismatch {
        /// Which object.
        object: &'static str,
    },
    /// Decryption or authentication failed (wrong key, or the bytes were modified).
    #[error("{object}: authentication failed (wrong key, or the data was modified)")]
    Authentication {
        /// Which object.
        object: &'static str,
    },
    /// A cryptographic operation failed for a reason other than authentication.
    #[error("{object}: {source}")]
    Crypto {
        /// Which object.
        object: &'static str,
        /// The underlying error.
        #[source]
        source: vault_crypto::Error,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;
