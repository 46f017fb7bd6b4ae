//! Key wrapping: a data key encrypted under a key-encryption key.

use crate::aead::{self, NONCE_LEN, Nonce, TAG_LEN};
use crate::{Error, KEY_LEN, Key256};

/// Encoded length of a [`WrappedKey`]: nonce ‖ encrypted key ‖ tag.
pub const WRAPPED_KEY_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// A 256-bit key sealed with XChaCha20-Poly1305 under a key-encryption key. Safe to store.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WrappedKey([u8; WRAPPED_KEY_LEN]);

impl WrappedKey {
    /// The encoded form: 24-byte nonce, 32-byte ciphertext, 16-byte tag.
    pub const fn to_bytes(&self) -> [u8; WRAPPED_KEY_LEN] {
        self.0
    }

    /// Reads the encoded form. Any 72 bytes are structurally valid; authenticity is checked by
    /// [`unwrap_key`].
    pub const fn from_bytes(bytes: [u8; WRAPPED_KEY_LEN]) -> Self {
        Self(bytes)
    }
}

/// Wraps `key` under `kek`. `purpose` is authenticated as associated data, so a key wrapped for
/// one purpose (say a key slot) cannot be unwrapped as another.
///
/// # Errors
/// [`Error::Rng`] if no nonce could be drawn.
pub fn wrap_key(kek: &Key256, key: &Key256, purpose: &[u8]) -> Result<WrappedKey, Error> {
    wrap_key_with_nonce(kek, key, purpose, &Nonce::random()?)
}

/// [`wrap_key`] with a caller-chosen nonce, for worked examples and test vectors only.
///
/// # Errors
/// [`Error::Encrypt`] never in practice (the input is 32 bytes).
pub fn wrap_key_with_nonce(
    kek: &Key256,
    key: &Key256,
    purpose: &[u8],
    nonce: &Nonce,
) -> Result<WrappedKey, Error> {
    let ct = aead::seal_with_nonce(kek, nonce, purpose, key.expose_secret())?;
    let mut out = [0u8; WRAPPED_KEY_LEN];
    let (n, rest) = out.split_at_mut(NONCE_LEN);
    n.copy_from_slice(nonce.as_bytes());
    if rest.len() != ct.len() {
        return Err(Error::Encrypt);
    }
    rest.copy_from_slice(&ct);
    Ok(WrappedKey(out))
}

/// Unwraps a key wrapped by [`wrap_key`] with the same `kek` and `purpose`.
///
/// # Errors
/// [`Error::Decrypt`] if the KEK or purpose is wrong or the wrapped bytes were modified.
pub fn unwrap_key(kek: &Key256, wrapped: &WrappedKey, purpose: &[u8]) -> Result<Key256, Error> {
    let (n, ct) = wrapped.0.split_at(NONCE_LEN);
    let nonce = Nonce::from_slice(n)?;
    let plain = aead::open(kek, &nonce, purpose, ct)?;
    Key256::from_slice(plain.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_round_trip_and_purpose_binding() {
        let kek = Key256::generate().unwrap();
        let dek = Key256::generate().unwrap();
        let w = wrap_key(&kek, &dek, b"slot").unwrap();
        assert_eq!(unwrap_key(&kek, &w, b"slot").unwrap(), dek);
        assert_eq!(unwrap_key(&kek, &w, b"export"), Err(Error::Decrypt));
        assert_eq!(
            unwrap_key(&Key256::generate().unwrap(), &w, b"slot"),
            Err(Error::Decrypt)
        );
        let mut bytes = w.to_bytes();
        bytes[40] ^= 0x80;
        assert_eq!(
            unwrap_key(&kek, &WrappedKey::from_bytes(bytes), b"slot"),
            Err(Error::Decrypt)
        );
    }
}
