//! HKDF-SHA256 subkey derivation with explicit domain separation.

use hkdf::Hkdf;
use sha2::Sha256;

use crate::{Error, Key256, SecretBytes};

/// Largest HKDF-SHA256 output: 255 blocks of 32 bytes.
pub const HKDF_MAX_OUTPUT: usize = 255 * 32;

/// What a subkey is for. Each purpose has its own fixed label, so a key derived for one purpose
/// is unrelated to a key derived for any other from the same master key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// Encrypting record payloads in the vault.
    RecordEncryption,
    /// Authenticating vault metadata (the header MAC, the commit chain).
    RecordMac,
    /// Authenticating the rollback record kept outside the vault directory.
    RollbackRecord,
    /// Authenticating audit entries.
    Audit,
    /// Encrypting key exports.
    Export,
    /// Encrypting backups.
    Backup,
    /// Wrapping managed key material.
    KeyWrap,
    /// Sealing the blocks of the index file.
    Index,
    /// Hashing names into the index's order.
    IndexName,
}

impl Purpose {
    /// Every purpose, for tests that check labels are distinct.
    pub const ALL: [Purpose; 9] = [
        Purpose::RecordEncryption,
        Purpose::RecordMac,
        Purpose::RollbackRecord,
        Purpose::Audit,
        Purpose::Export,
        Purpose::Backup,
        Purpose::KeyWrap,
        Purpose::Index,
        Purpose::IndexName,
    ];

    /// The HKDF `info` label for this purpose. These strings are part of the file format
    /// (docs/FORMAT.md): changing one makes existing vaults unreadable.
    pub const fn label(self) -> &'static str {
        match self {
            Purpose::RecordEncryption => "vault v1 record-encryption",
            Purpose::RecordMac => "vault v1 record-mac",
            Purpose::RollbackRecord => "vault v1 rollback-record",
            Purpose::Audit => "vault v1 audit",
            Purpose::Export => "vault v1 export",
            Purpose::Backup => "vault v1 backup",
            Purpose::KeyWrap => "vault v1 key-wrap",
            Purpose::Index => "vault v1 index",
            Purpose::IndexName => "vault v1 index-name",
        }
    }
}

/// Derives the 256-bit subkey for `purpose` from `master`, bound to `context` (for example the
/// vault id).
///
/// HKDF-SHA256 with no salt (the master key is already uniformly random), IKM = the master key,
/// and `info = label ‖ 0x00 ‖ context`. Labels contain no zero byte, so the split is unambiguous.
pub fn subkey(master: &Key256, purpose: Purpose, context: &[u8]) -> Key256 {
    let hk = Hkdf::<Sha256>::new(None, master.expose_secret());
    let label = purpose.label().as_bytes();
    let mut key = Key256::zeroed();
    // 32 bytes is always a valid HKDF-SHA256 output length, so expand cannot fail here.
    let ok = hk
        .expand_multi_info(&[label, &[0u8], context], key.expose_secret_mut())
        .is_ok();
    debug_assert!(ok);
    key
}

/// Declares a key type for one purpose: it can only be derived for that purpose (or wrapped from
/// raw bytes explicitly, for vectors and tests), so passing a key meant for one use to another
/// does not compile.
macro_rules! purpose_key {
    ($(#[$doc:meta])* $name:ident => $purpose:expr) => {
        $(#[$doc])*
        pub struct $name(Key256);

        impl $name {
            /// Derives this key from `master` for `context` (the vault id).
            pub fn derive(master: &Key256, context: &[u8]) -> Self {
                Self(subkey(master, $purpose, context))
            }

            /// Treats `key` as this kind of key: for test vectors and fixed examples.
            pub fn from_key(key: Key256) -> Self {
                Self(key)
            }

            /// The key itself, for the primitive that uses it.
            pub fn key(&self) -> &Key256 {
                &self.0
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

purpose_key!(
    /// Encrypts record payloads ([`Purpose::RecordEncryption`]).
    RecordKey => Purpose::RecordEncryption
);
purpose_key!(
    /// Authenticates the header and chains the log's frames ([`Purpose::RecordMac`]).
    ChainMacKey => Purpose::RecordMac
);
purpose_key!(
    /// Authenticates the rollback record ([`Purpose::RollbackRecord`]).
    RollbackKey => Purpose::RollbackRecord
);
purpose_key!(
    /// Authenticates audit entries ([`Purpose::Audit`]).
    AuditKey => Purpose::Audit
);
purpose_key!(
    /// Wraps managed key material ([`Purpose::KeyWrap`]).
    KeyWrapKey => Purpose::KeyWrap
);
purpose_key!(
    /// Seals the index file's blocks ([`Purpose::Index`]).
    IndexKey => Purpose::Index
);
purpose_key!(
    /// Hashes names into the index's order ([`Purpose::IndexName`]).
    IndexNameKey => Purpose::IndexName
);

/// Plain HKDF-SHA256 (RFC 5869): extract with `salt` (none means a zero-filled salt), then
/// expand `len` bytes with `info`.
///
/// # Errors
/// [`Error::HkdfOutputTooLong`] if `len` exceeds [`HKDF_MAX_OUTPUT`].
pub fn hkdf_sha256(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
    len: usize,
) -> Result<SecretBytes, Error> {
    if len > HKDF_MAX_OUTPUT {
        return Err(Error::HkdfOutputTooLong {
            requested: len,
            max: HKDF_MAX_OUTPUT,
        });
    }
    let hk = Hkdf::<Sha256>::new(salt, ikm);
    let mut out = SecretBytes::zeroed(len);
    hk.expand(info, out.expose_secret_mut())
        .map_err(|_| Error::HkdfOutputTooLong {
            requested: len,
            max: HKDF_MAX_OUTPUT,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_give_distinct_keys_and_labels() {
        let master = Key256::from_slice(&[7; 32]).unwrap();
        let keys: Vec<Key256> = Purpose::ALL
            .iter()
            .map(|p| subkey(&master, *p, b"ctx"))
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
            assert!(!Purpose::ALL[i].label().as_bytes().contains(&0));
        }
        assert_ne!(
            subkey(&master, Purpose::RecordEncryption, b"a"),
            subkey(&master, Purpose::RecordEncryption, b"b")
        );
    }

    #[test]
    fn subkey_matches_plain_hkdf_with_documented_info() {
        let master = Key256::from_slice(&[9; 32]).unwrap();
        let mut info = b"vault v1 record-mac".to_vec();
        info.push(0);
        info.extend_from_slice(b"id");
        let plain = hkdf_sha256(None, &[9; 32], &info, 32).unwrap();
        assert_eq!(
            subkey(&master, Purpose::RecordMac, b"id").expose_secret(),
            plain.expose_secret()
        );
    }
}
