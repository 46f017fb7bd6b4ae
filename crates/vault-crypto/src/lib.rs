//! Cryptographic primitives and secret types for `vault`.
//!
//! This crate is the bottom layer: it does no I/O and wraps audited RustCrypto implementations
//! behind a small API that is hard to misuse. It never implements a primitive itself.
//!
//! - [`SecretBytes`] and [`Key256`]: zeroized on drop, redacted in `Debug`, compared in constant time.
//! - [`aead`]: XChaCha20-Poly1305 with random 24-byte nonces.
//! - [`kdf`]: Argon2id with validated [`KdfParams`](kdf::KdfParams) and calibration.
//! - [`derive`](mod@derive): HKDF-SHA256 subkeys, one domain-separation label per [`Purpose`](derive::Purpose).
//! - [`hash`]: SHA-256 checksums for detecting accidental corruption.
//! - [`mac`]: HMAC-SHA256 with constant-time verification.
//! - [`wrap`]: wrapping a data key under a key-encryption key.
//! - [`sign`]: Ed25519 signatures (RFC 8032), strict verification.
//! - [`seal_to`]: wrapping a key to an X25519 public key, which only its private key unwraps.
//! - [`stream`]: the STREAM construction over XChaCha20-Poly1305 for inputs of any size.
//!
//! ```
//! use vault_crypto::{aead, derive, kdf, Key256};
//!
//! # fn main() -> Result<(), vault_crypto::Error> {
//! // A passphrase unlocks a key-encryption key (cheap parameters for the example only).
//! let params = kdf::KdfParams::for_key(64, 1, 1)?;
//! let salt = vault_crypto::rng::bytes::<{ kdf::SALT_LEN }>()?;
//! let kek = kdf::derive_key(b"correct horse battery staple", &salt, &params)?;
//!
//! // The master key is random and stored only wrapped.
//! let master = Key256::generate()?;
//! let wrapped = vault_crypto::wrap::wrap_key(&kek, &master, b"key slot")?;
//! let unwrapped = vault_crypto::wrap::unwrap_key(&kek, &wrapped, b"key slot")?;
//! assert_eq!(master, unwrapped);
//!
//! // Data is sealed under a purpose-specific subkey.
//! let record_key = derive::subkey(&master, derive::Purpose::RecordEncryption, b"vault id");
//! let sealed = aead::seal(&record_key, b"record 1", b"s3cr3t")?;
//! let plain = aead::open(&record_key, &sealed.nonce, b"record 1", &sealed.ciphertext)?;
//! assert_eq!(plain.expose_secret(), b"s3cr3t");
//! # Ok(())
//! # }
//! ```

pub mod aead;
pub mod derive;
mod error;
pub mod hash;
pub mod kdf;
pub mod mac;
pub mod rng;
pub mod seal_to;
mod secret;
pub mod sign;
pub mod stream;
pub mod wrap;

pub use error::Error;
pub use secret::{KEY_LEN, Key256, SecretBytes};
