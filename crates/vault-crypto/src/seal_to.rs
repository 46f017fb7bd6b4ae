//! Wrapping a key to an X25519 public key (RFC 7748), so that anyone holding the public key can
//! wrap a key that only the holder of the private key unwraps: a team vault's master key is
//! re-wrapped for every remaining member at a rotation without their passphrases.
//!
//! ```text
//! boxed = ephemeral public key (32) ‖ the key wrapped (wrap::wrap_key) under
//!         KEK = HKDF-SHA256(salt none, ikm = X25519(ephemeral, recipient),
//!                           info = "vault v1 seal-to" ‖ ephemeral public ‖ recipient public)
//! ```
//!
//! A fresh ephemeral key per wrap makes each KEK single-use. A shared secret of all zeroes (a
//! low-order public key) is refused rather than used as a key every attacker knows.

use x25519_dalek::{PublicKey, StaticSecret};

use crate::derive::hkdf_sha256;
use crate::wrap::{self, WRAPPED_KEY_LEN, WrappedKey};
use crate::{Error, KEY_LEN, Key256};

/// Length of an X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of a key wrapped to a public key: the ephemeral public key and the wrapped key.
pub const BOXED_KEY_LEN: usize = PUBLIC_KEY_LEN + WRAPPED_KEY_LEN;

const KEK_LABEL: &[u8] = b"vault v1 seal-to";

/// A new private key (32 random bytes, clamped when used) and its public key.
///
/// # Errors
/// [`Error::Rng`] if the operating system's generator fails.
pub fn generate() -> Result<(Key256, [u8; PUBLIC_KEY_LEN]), Error> {
    let private = Key256::generate()?;
    let public = public_key(&private);
    Ok((private, public))
}

/// The public key of `private`.
pub fn public_key(private: &Key256) -> [u8; PUBLIC_KEY_LEN] {
    let secret = StaticSecret::from(*private.expose_secret());
    PublicKey::from(&secret).to_bytes()
}

fn kek(
    secret: &StaticSecret,
    peer: &[u8; PUBLIC_KEY_LEN],
    ephemeral: &[u8; PUBLIC_KEY_LEN],
    recipient: &[u8; PUBLIC_KEY_LEN],
) -> Result<Key256, Error> {
    let shared = secret.diffie_hellman(&PublicKey::from(*peer));
    if !shared.was_contributory() {
        return Err(Error::Decrypt);
    }
    let okm = hkdf_sha256(
        None,
        shared.as_bytes(),
        &[KEK_LABEL, ephemeral, recipient].concat(),
        KEY_LEN,
    )?;
    Key256::from_slice(okm.expose_secret())
}

/// Wraps `key` to `recipient`. `purpose` is authenticated, as in [`wrap::wrap_key`].
///
/// # Errors
/// [`Error::Rng`]; [`Error::Decrypt`] if `recipient` is a low-order point (no key agreement).
pub fn wrap_to(
    recipient: &[u8; PUBLIC_KEY_LEN],
    key: &Key256,
    purpose: &[u8],
) -> Result<[u8; BOXED_KEY_LEN], Error> {
    let ephemeral = StaticSecret::from(*Key256::generate()?.expose_secret());
    let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
    let kek = kek(&ephemeral, recipient, &ephemeral_public, recipient)?;
    let wrapped = wrap::wrap_key(&kek, key, purpose)?;
    let mut out = [0u8; BOXED_KEY_LEN];
    out[..PUBLIC_KEY_LEN].copy_from_slice(&ephemeral_public);
    out[PUBLIC_KEY_LEN..].copy_from_slice(&wrapped.to_bytes());
    Ok(out)
}

/// Unwraps a key wrapped by [`wrap_to`] to the public key of `private`, with the same
/// `purpose`.
///
/// # Errors
/// [`Error::Decrypt`] if the private key or purpose is wrong or the bytes were modified.
pub fn unwrap_from(
    private: &Key256,
    boxed: &[u8; BOXED_KEY_LEN],
    purpose: &[u8],
) -> Result<Key256, Error> {
    let secret = StaticSecret::from(*private.expose_secret());
    let recipient = PublicKey::from(&secret).to_bytes();
    let (e, w) = boxed.split_at(PUBLIC_KEY_LEN);
    let ephemeral: [u8; PUBLIC_KEY_LEN] = e.try_into().map_err(|_| Error::Decrypt)?;
    let wrapped: [u8; WRAPPED_KEY_LEN] = w.try_into().map_err(|_| Error::Decrypt)?;
    let kek = kek(&secret, &ephemeral, &ephemeral, &recipient)?;
    wrap::unwrap_key(&kek, &WrappedKey::from_bytes(wrapped), purpose)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_private_key_unwraps() {
        let (private, public) = generate().unwrap();
        let key = Key256::generate().unwrap();
        let boxed = wrap_to(&public, &key, b"slot").unwrap();
        assert_eq!(unwrap_from(&private, &boxed, b"slot").unwrap(), key);
        let (other, _) = generate().unwrap();
        assert_eq!(unwrap_from(&other, &boxed, b"slot"), Err(Error::Decrypt));
        assert_eq!(unwrap_from(&private, &boxed, b"other"), Err(Error::Decrypt));
        // Each wrap uses a new ephemeral key.
        assert_ne!(wrap_to(&public, &key, b"slot").unwrap(), boxed);
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let (private, public) = generate().unwrap();
        let key = Key256::generate().unwrap();
        let boxed = wrap_to(&public, &key, b"slot").unwrap();
        for i in 0..BOXED_KEY_LEN * 8 {
            let mut b = boxed;
            b[i / 8] ^= 1 << (i % 8);
            assert!(unwrap_from(&private, &b, b"slot").is_err(), "bit {i}");
        }
    }

    #[test]
    fn a_low_order_public_key_is_refused() {
        let key = Key256::generate().unwrap();
        // The all-zero point has order 1: every shared secret with it is zero.
        assert_eq!(
            wrap_to(&[0u8; PUBLIC_KEY_LEN], &key, b"slot"),
            Err(Error::Decrypt)
        );
    }

    #[test]
    fn rfc7748_public_key() {
        // RFC 7748 §6.1: Alice's private and public keys.
        let private = Key256::from_slice(
            &hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            hex::encode(public_key(&private)),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }
}
