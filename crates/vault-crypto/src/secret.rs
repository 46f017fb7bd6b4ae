//! Secret-holding types: zeroized on drop, redacted in `Debug`, compared in constant time.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, rng};

/// Length in bytes of a [`Key256`].
pub const KEY_LEN: usize = 32;

/// A variable-length secret byte string (a passphrase, a secret value, a plaintext).
///
/// The buffer is allocated once at its final size, zeroized on drop, never printed, and compared
/// in constant time. It is deliberately not `Clone`: copy it with [`SecretBytes::duplicate`], a name
/// a reviewer will notice.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Box<[u8]>);

impl SecretBytes {
    /// Takes ownership of `bytes`. The vector is shrunk in place first, so no unzeroized spare
    /// capacity is left behind by the conversion.
    pub fn new(mut bytes: Vec<u8>) -> Self {
        if bytes.len() != bytes.capacity() {
            // A reallocation here would leave the old buffer unzeroized; copy explicitly instead.
            let copy = Self::from_slice(&bytes);
            bytes.zeroize();
            return copy;
        }
        Self(bytes.into_boxed_slice())
    }

    /// Copies `bytes` into a new secret buffer of exactly that size.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(Box::from(bytes))
    }

    /// A zero-filled secret of `len` bytes, to be written in place (for example by a KDF).
    pub fn zeroed(len: usize) -> Self {
        Self(vec![0u8; len].into_boxed_slice())
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret bytes, for handing to a primitive or writing to the one place it belongs.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Mutable access to the secret bytes, for filling a buffer in place.
    pub fn expose_secret_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// An explicit copy: a second owner of the same secret, zeroized independently.
    pub fn duplicate(&self) -> Self {
        Self::from_slice(&self.0)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        // Length is not secret; the contents are compared in constant time.
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretBytes {}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

/// A 256-bit symmetric key: a vault master key, a subkey, a key-encryption key.
///
/// Stored on the heap so moves do not leave stack copies behind, zeroized on drop, redacted in
/// `Debug`, compared in constant time, and not `Clone` (use [`Key256::duplicate`]).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Key256(Box<[u8; KEY_LEN]>);

impl Key256 {
    /// A fresh random key from the operating system's RNG.
    ///
    /// # Errors
    /// [`Error::Rng`] if the OS RNG is unavailable.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Self::zeroed();
        rng::fill(&mut key.0[..])?;
        Ok(key)
    }

    /// Builds a key from exactly 32 bytes.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] if `bytes` is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let mut key = Self::zeroed();
        if bytes.len() != KEY_LEN {
            return Err(Error::InvalidLength {
                what: "key",
                expected: KEY_LEN,
                got: bytes.len(),
            });
        }
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    pub(crate) fn zeroed() -> Self {
        Self(Box::new([0u8; KEY_LEN]))
    }

    /// The raw key bytes, for handing to a primitive.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn expose_secret_mut(&mut self) -> &mut [u8; KEY_LEN] {
        &mut self.0
    }

    /// Locks the memory page holding this key against being swapped out, for the rest of the
    /// process's life: what a long-lived holder of keys (the agent) does where it cannot lock
    /// all its memory. The page is never unlocked, as other keys may share it (`munlock` does
    /// not count); the key is still zeroized when dropped. The key's box never moves, so the
    /// lock holds as long as the key lives.
    ///
    /// # Errors
    /// The operating system's, e.g. when `RLIMIT_MEMLOCK` is used up.
    pub fn lock_in_memory(&self) -> std::io::Result<()> {
        match region::lock(self.0.as_ptr(), KEY_LEN) {
            Ok(guard) => {
                // Dropping the guard would unlock the page; it stays locked instead.
                std::mem::forget(guard);
                Ok(())
            }
            Err(region::Error::SystemCall(e)) => Err(e),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// An explicit copy of the key.
    pub fn duplicate(&self) -> Self {
        let mut key = Self::zeroed();
        key.0.copy_from_slice(&self.0[..]);
        key
    }
}

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key256([REDACTED; 32])")
    }
}

impl PartialEq for Key256 {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0[..]).into()
    }
}

impl Eq for Key256 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretBytes::from_slice(b"hunter2-very-secret");
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("REDACTED"));
        assert!(shown.contains("19"), "length is shown: {shown}");

        let k = Key256::from_slice(&[0xAB; 32]).unwrap();
        let shown = format!("{k:?} {k:#?}");
        assert!(
            !shown.to_lowercase().contains("ab, ") && !shown.contains("171"),
            "{shown}"
        );
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn equality_is_by_content() {
        assert_eq!(
            SecretBytes::from_slice(b"abc"),
            SecretBytes::from_slice(b"abc")
        );
        assert_ne!(
            SecretBytes::from_slice(b"abc"),
            SecretBytes::from_slice(b"abd")
        );
        assert_ne!(
            SecretBytes::from_slice(b"abc"),
            SecretBytes::from_slice(b"abcd")
        );
        let k = Key256::generate().unwrap();
        assert_eq!(k, k.duplicate());
        assert_ne!(k, Key256::generate().unwrap());
    }

    #[test]
    fn key_from_wrong_length_is_rejected() {
        assert!(matches!(
            Key256::from_slice(&[0; 31]),
            Err(Error::InvalidLength { got: 31, .. })
        ));
    }

    #[test]
    fn new_from_vec_with_spare_capacity_keeps_contents() {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"xyz");
        let s = SecretBytes::new(v);
        assert_eq!(s.expose_secret(), b"xyz");
    }
}
