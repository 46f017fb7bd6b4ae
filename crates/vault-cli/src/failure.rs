//! Why a command stopped early: an exit code and a one-line message, mapped from the store's
//! typed errors (with the hint a user needs) or made by the binary itself.

use vault_store::{Error, ExportFileError, KeyError};

use crate::exit::Exit;

/// Why a command stopped early: its exit code and one-line message.
pub(crate) struct Failure {
    pub(crate) code: Exit,
    /// `None` only when there is nothing to say: stdout's reader went away.
    pub(crate) message: Option<String>,
}

impl Failure {
    /// Stdout's reader went away (EPIPE): whatever it wanted it has, so stop quietly with
    /// success, as `head` expects of the command feeding it.
    pub(crate) fn reader_gone() -> Self {
        Failure {
            code: Exit::Success,
            message: None,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::WrongPassphrase => Exit::WrongPassphrase,
            Error::NotFound { .. } | Error::NoVault(_) => Exit::NotFound,
            e if e.is_integrity() => Exit::Integrity,
            Error::Busy { .. } => Exit::Busy,
            Error::Conflict { .. } => Exit::Conflict,
            Error::Invalid { .. } => Exit::Usage,
            Error::Key(k) => match k {
                KeyError::Exists { .. } => Exit::Conflict,
                KeyError::UnknownVersion { .. } => Exit::NotFound,
                KeyError::WrongKey { .. }
                | KeyError::BadToken { .. }
                | KeyError::Decrypt { .. }
                | KeyError::BadSignature { .. } => Exit::BadToken,
                _ => Exit::KeyRefused,
            },
            Error::Export(x) => match x {
                ExportFileError::WrongPassphrase => Exit::WrongPassphrase,
                ExportFileError::KdfLimit(_) => Exit::Other,
                ExportFileError::Format(vault_store::FormatError::UnsupportedVersion {
                    ..
                }) => Exit::Other,
                ExportFileError::Tampered | ExportFileError::Format(_) => Exit::Integrity,
            },
            _ => Exit::Other,
        };
        let mut message = e.to_string();
        match e {
            Error::RollbackDetected { .. } => message.push_str(" with `vault accept-rollback`"),
            Error::NoVault(_) => message.push_str(" (create one with `vault init`)"),
            Error::KdfLimit { .. } => message.push_str(
                "; raise --max-kdf-memory-mib / --max-kdf-cost (or VAULT_MAX_KDF_MEMORY_MIB / VAULT_MAX_KDF_COST)",
            ),
            Error::Invalid {
                what: "KDF parameters",
                ..
            } => message.push_str(" with --max-kdf-memory-mib / --max-kdf-cost"),
            Error::Key(KeyError::Compromised { .. }) => {
                message.push_str(" (--allow-compromised uses it anyway; the use is recorded)")
            }
            Error::Key(KeyError::Loosen { .. }) => message.push_str(" with --loosen"),
            _ => {}
        }
        Failure {
            code,
            message: Some(message),
        }
    }
}

pub(crate) fn fail(code: Exit, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: Some(message.into()),
    }
}
