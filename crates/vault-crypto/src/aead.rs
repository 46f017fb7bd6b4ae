//! XChaCha20-Poly1305 authenticated encryption with associated data.
//!
//! The 24-byte nonce is large enough to be chosen at random for every message, which is what
//! [`seal`] does. [`seal_with_nonce`] exists for test vectors and deterministic worked examples.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::{Error, Key256, SecretBytes, rng};

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;

/// A 24-byte XChaCha20-Poly1305 nonce. Public, but must never repeat under one key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    /// A fresh random nonce from the OS RNG.
    ///
    /// # Errors
    /// [`Error::Rng`] if the OS RNG fails.
    pub fn random() -> Result<Self, Error> {
        rng::bytes().map(Self)
    }

    /// A nonce from its bytes.
    pub const fn from_bytes(bytes: [u8; NONCE_LEN]) -> Self {
        Self(bytes)
    }

    /// A nonce from a slice that must be exactly 24 bytes.
    ///
    /// # Errors
    /// [`Error::InvalidLength`] for any other length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        <[u8; NONCE_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| Error::InvalidLength {
                what: "nonce",
                expected: NONCE_LEN,
                got: bytes.len(),
            })
    }

    /// The nonce's bytes.
    pub const fn as_bytes(&self) -> &[u8; NONCE_LEN] {
        &self.0
    }
}

/// A sealed message: the random nonce it was sealed under and `ciphertext ‖ tag`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Sealed {
    /// The nonce.
    pub nonce: Nonce,
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// Encrypts `plaintext` under `key` with a fresh random nonce, authenticating `aad` too.
///
/// # Errors
/// [`Error::Rng`] if no nonce could be drawn; [`Error::Encrypt`] if the input is too large.
pub fn seal(key: &Key256, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, Error> {
    let nonce = Nonce::random()?;
    let ciphertext = seal_with_nonce(key, &nonce, aad, plaintext)?;
    Ok(Sealed { nonce, ciphertext })
}

/// Encrypts with a caller-chosen nonce and returns `ciphertext ‖ tag`.
///
/// The caller must guarantee the nonce is never reused under `key`; prefer [`seal`].
///
/// # Errors
/// [`Error::Encrypt`] if the input is too large for the cipher.
pub fn seal_with_nonce(
    key: &Key256,
    nonce: &Nonce,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    seal_append(key, nonce, aad, plaintext, &mut out)?;
    Ok(out)
}

/// [`seal_with_nonce`], appending `ciphertext ‖ tag` to `out` (one copy of the plaintext, for
/// callers that put a header before it).
///
/// # Errors
/// [`Error::Encrypt`] if the input is too large for the cipher (`out` is then as it was).
pub fn seal_append(
    key: &Key256,
    nonce: &Nonce,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let cipher = XChaCha20Poly1305::new(key.expose_secret().into());
    let start = out.len();
    out.reserve(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    let body = out.get_mut(start..).unwrap_or_default();
    match cipher.encrypt_inout_detached(&XNonce::from(nonce.0), aad, body.into()) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(_) => {
            out.truncate(start);
            Err(Error::Encrypt)
        }
    }
}

/// Decrypts `ciphertext ‖ tag` and verifies it together with `aad`.
///
/// The plaintext is written straight into a [`SecretBytes`] of its final size.
///
/// # Errors
/// [`Error::Decrypt`] if the input is shorter than a tag, or authentication fails for any reason.
pub fn open(
    key: &Key256,
    nonce: &Nonce,
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<SecretBytes, Error> {
    let body_len = ciphertext
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(Error::Decrypt)?;
    let (body, tag) = ciphertext.split_at(body_len);
    let tag = Tag::try_from(tag).map_err(|_| Error::Decrypt)?;
    let cipher = XChaCha20Poly1305::new(key.expose_secret().into());
    let mut plain = SecretBytes::from_slice(body);
    cipher
        .decrypt_inout_detached(
            &XNonce::from(nonce.0),
            aad,
            plain.expose_secret_mut().into(),
            &tag,
        )
        .map_err(|_| Error::Decrypt)?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let key = Key256::generate().unwrap();
        let sealed = seal(&key, b"ad", b"secret message").unwrap();
        let opened = open(&key, &sealed.nonce, b"ad", &sealed.ciphertext).unwrap();
        assert_eq!(opened.expose_secret(), b"secret message");

        assert_eq!(
            open(&key, &sealed.nonce, b"other ad", &sealed.ciphertext),
            Err(Error::Decrypt)
        );
        let other = Key256::generate().unwrap();
        assert_eq!(
            open(&other, &sealed.nonce, b"ad", &sealed.ciphertext),
            Err(Error::Decrypt)
        );
        for i in 0..sealed.ciphertext.len() {
            let mut bad = sealed.ciphertext.clone();
            bad[i] ^= 0x01;
            assert_eq!(open(&key, &sealed.nonce, b"ad", &bad), Err(Error::Decrypt));
        }
        for len in 0..sealed.ciphertext.len() {
            assert_eq!(
                open(&key, &sealed.nonce, b"ad", &sealed.ciphertext[..len]),
                Err(Error::Decrypt)
            );
        }
    }

    #[test]
    fn random_nonces_differ() {
        let key = Key256::generate().unwrap();
        let a = seal(&key, b"", b"x").unwrap();
        let b = seal(&key, b"", b"x").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }
}
