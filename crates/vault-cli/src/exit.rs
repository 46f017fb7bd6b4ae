//! The exit codes of `vault`: one enum, used wherever a command ends, and the help text that
//! documents it.

use std::process::ExitCode;

/// How a command ended, as its exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Exit {
    Success = 0,
    Other = 1,
    Usage = 2,
    WrongPassphrase = 3,
    NotFound = 4,
    Integrity = 5,
    Busy = 6,
    Conflict = 7,
    KeyRefused = 8,
    BadToken = 9,
}

impl Exit {
    /// Every code, in order.
    pub(crate) const ALL: [Exit; 10] = [
        Exit::Success,
        Exit::Other,
        Exit::Usage,
        Exit::WrongPassphrase,
        Exit::NotFound,
        Exit::Integrity,
        Exit::Busy,
        Exit::Conflict,
        Exit::KeyRefused,
        Exit::BadToken,
    ];

    /// What the code means, for `--help`.
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Other => "other error",
            Exit::Usage => "usage error (bad arguments, invalid name or value)",
            Exit::WrongPassphrase => "wrong passphrase",
            Exit::NotFound => "not found (no such secret, version or vault)",
            Exit::Integrity => "integrity failure (tampering, corruption or rollback)",
            Exit::Busy => "busy (another process held the write lock past the timeout)",
            Exit::Conflict => {
                "conflict (check-and-set found a different version, or the key exists)"
            }
            Exit::KeyRefused => {
                "refused by the key (version disabled, destroyed or compromised, below a floor, not allowed by its policy, expired)"
            }
            Exit::BadToken => {
                "the ciphertext or signature does not hold (changed, cut short, another key, other associated data)"
            }
        }
    }

    /// The "Exit codes:" section of `--help`.
    pub(crate) fn help() -> String {
        let mut out = String::from("Exit codes:\n");
        for e in Self::ALL {
            out.push_str(&format!("  {}  {}\n", e as u8, e.meaning()));
        }
        out
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}
