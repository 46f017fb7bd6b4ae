//! Chunked authenticated encryption of inputs of any size: the STREAM construction (Hoang,
//! Reyhanitabar, Rogaway, Vizár 2015) over XChaCha20-Poly1305, from RustCrypto's `aead-stream`
//! (32-bit big-endian chunk counter and a last-chunk flag in the nonce's final 5 bytes). Each chunk
//! is authenticated before it is released, and truncation, reordering or a dropped chunk fails to
//! open, so memory is one chunk whatever the input's size.

use aead_stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use zeroize::Zeroizing;

use crate::{Error, Key256};

/// Length of the random nonce prefix a stream starts from (24 − 5).
pub const NONCE_PREFIX_LEN: usize = 19;

/// Seals a stream chunk by chunk.
pub struct Sealer(EncryptorBE32<XChaCha20Poly1305>);

impl Sealer {
    /// A sealer for a stream under `key` from `prefix` (random, never reused under `key`).
    pub fn new(key: &Key256, prefix: &[u8; NONCE_PREFIX_LEN]) -> Self {
        let aead = XChaCha20Poly1305::new(key.expose_secret().into());
        Sealer(EncryptorBE32::from_aead(aead, prefix.into()))
    }

    /// Seals a chunk that is not the last, in place (`chunk` gains its 16-byte tag).
    ///
    /// # Errors
    /// [`Error::Encrypt`] past 2³² − 1 chunks.
    pub fn seal_next(&mut self, aad: &[u8], chunk: &mut Vec<u8>) -> Result<(), Error> {
        self.0
            .encrypt_next_in_place(aad, chunk)
            .map_err(|_| Error::Encrypt)
    }

    /// Seals the last chunk (possibly empty), in place.
    ///
    /// # Errors
    /// [`Error::Encrypt`] if the cipher refuses it.
    pub fn seal_last(self, aad: &[u8], chunk: &mut Vec<u8>) -> Result<(), Error> {
        self.0
            .encrypt_last_in_place(aad, chunk)
            .map_err(|_| Error::Encrypt)
    }
}

/// Opens a stream chunk by chunk.
pub struct Opener(DecryptorBE32<XChaCha20Poly1305>);

impl Opener {
    /// An opener for a stream under `key` from `prefix`.
    pub fn new(key: &Key256, prefix: &[u8; NONCE_PREFIX_LEN]) -> Self {
        let aead = XChaCha20Poly1305::new(key.expose_secret().into());
        Opener(DecryptorBE32::from_aead(aead, prefix.into()))
    }

    /// Opens a chunk that is not the last, in place (the tag is removed). The buffer is
    /// zeroized-on-drop so the plaintext does not outlive its use.
    ///
    /// # Errors
    /// [`Error::Decrypt`] if the chunk fails to authenticate (changed, moved, or actually the last).
    pub fn open_next(&mut self, aad: &[u8], chunk: &mut Zeroizing<Vec<u8>>) -> Result<(), Error> {
        self.0
            .decrypt_next_in_place(aad, &mut **chunk)
            .map_err(|_| Error::Decrypt)
    }

    /// Opens the last chunk, in place.
    ///
    /// # Errors
    /// [`Error::Decrypt`] if it fails to authenticate (changed, or not the last: truncation).
    pub fn open_last(self, aad: &[u8], chunk: &mut Zeroizing<Vec<u8>>) -> Result<(), Error> {
        self.0
            .decrypt_last_in_place(aad, &mut **chunk)
            .map_err(|_| Error::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    fn seal(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let key = Key256::from_slice(&[1; 32]).unwrap();
        let mut s = Sealer::new(&key, &[2; NONCE_PREFIX_LEN]);
        let mut out = Vec::new();
        let (last, rest) = chunks.split_last().unwrap();
        for c in rest {
            let mut b = c.to_vec();
            s.seal_next(b"ad", &mut b).unwrap();
            out.push(b);
        }
        let mut b = last.to_vec();
        s.seal_last(b"ad", &mut b).unwrap();
        out.push(b);
        out
    }

    fn open(chunks: &[Vec<u8>]) -> Result<Vec<u8>, Error> {
        let key = Key256::from_slice(&[1; 32]).unwrap();
        let mut o = Opener::new(&key, &[2; NONCE_PREFIX_LEN]);
        let mut out = Vec::new();
        let (last, rest) = chunks.split_last().unwrap();
        for c in rest {
            let mut b = Zeroizing::new(c.clone());
            o.open_next(b"ad", &mut b)?;
            out.extend_from_slice(&b);
        }
        let mut b = Zeroizing::new(last.clone());
        o.open_last(b"ad", &mut b)?;
        out.extend_from_slice(&b);
        Ok(out)
    }

    #[test]
    fn chunks_round_trip_and_refuse_truncation_reordering_and_change() {
        let sealed = seal(&[b"one", b"two", b"three"]);
        assert_eq!(open(&sealed).unwrap(), b"onetwothree");
        assert!(
            open(&sealed[..2]).is_err(),
            "truncated after a middle chunk"
        );
        let swapped = vec![sealed[1].clone(), sealed[0].clone(), sealed[2].clone()];
        assert!(open(&swapped).is_err(), "reordered");
        let mut changed = sealed.clone();
        changed[2][0] ^= 1;
        assert!(open(&changed).is_err(), "changed");
        assert_eq!(
            open(&seal(&[b""])).unwrap(),
            b"",
            "an empty stream is one empty last chunk"
        );
    }
}
