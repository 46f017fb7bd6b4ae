//! Ed25519 signatures (RFC 8032) from `ed25519-dalek`, over the message itself (not a prehash),
//! so anyone holding the public key can verify with any standard implementation. Verification is
//! strict: weak public keys and non-canonical signatures are refused.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::{Error, SecretBytes};

/// Length of a seed (the private key).
pub const SEED_LEN: usize = 32;
/// Length of a public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;

fn signing_key(seed: &SecretBytes) -> Result<SigningKey, Error> {
    let bytes: &[u8; SEED_LEN] =
        seed.expose_secret()
            .try_into()
            .map_err(|_| Error::InvalidLength {
                what: "Ed25519 seed",
                expected: SEED_LEN,
                got: seed.len(),
            })?;
    Ok(SigningKey::from_bytes(bytes))
}

/// The public key of a seed.
///
/// # Errors
/// [`Error::InvalidLength`] for a seed that is not 32 bytes.
pub fn public_key(seed: &SecretBytes) -> Result<[u8; PUBLIC_KEY_LEN], Error> {
    Ok(signing_key(seed)?.verifying_key().to_bytes())
}

/// Signs `message`.
///
/// # Errors
/// [`Error::InvalidLength`] for a seed that is not 32 bytes.
pub fn sign(seed: &SecretBytes, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], Error> {
    Ok(signing_key(seed)?.sign(message).to_bytes())
}

/// Verifies `signature` of `message` under `public`.
///
/// # Errors
/// [`Error::MacMismatch`] if the signature does not verify or the public key is not a valid
/// (strong) point.
pub fn verify(
    public: &[u8; PUBLIC_KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), Error> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| Error::MacMismatch)?;
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| Error::MacMismatch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    /// RFC 8032 §7.1, test 2 (one-byte message).
    #[test]
    fn rfc_8032_test_2() {
        let seed = SecretBytes::new(
            hex::decode("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
                .unwrap(),
        );
        let public = public_key(&seed).unwrap();
        assert_eq!(
            hex::encode(public),
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
        );
        let sig = sign(&seed, &[0x72]).unwrap();
        assert_eq!(
            hex::encode(sig),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        );
        verify(&public, &[0x72], &sig).unwrap();
        assert!(verify(&public, &[0x73], &sig).is_err());
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(verify(&public, &[0x72], &bad).is_err());
    }
}
