//! HMAC-SHA256 with constant-time verification.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Error;

/// Full HMAC-SHA256 tag length.
pub const MAC_LEN: usize = 32;
/// Shortest truncated tag [`verify`] accepts (128 bits, as RFC 2104 §5 and NIST SP 800-107 allow).
pub const MIN_MAC_LEN: usize = 16;

/// An HMAC-SHA256 tag. Tags are public once computed (they are stored next to what they
/// authenticate) but are still compared only in constant time, via [`MacTag::verify_against`].
#[derive(Clone, Copy, Debug)]
pub struct MacTag([u8; MAC_LEN]);

impl MacTag {
    /// The tag's bytes, for writing to a file.
    pub const fn as_bytes(&self) -> &[u8; MAC_LEN] {
        &self.0
    }

    /// Constant-time comparison with a tag read from elsewhere; `other` may be a truncated tag of
    /// at least [`MIN_MAC_LEN`] bytes, compared on its own length (leftmost bytes).
    ///
    /// # Errors
    /// [`Error::MacMismatch`] if the tags differ or `other` is shorter than 16 or longer than 32
    /// bytes.
    pub fn verify_against(&self, other: &[u8]) -> Result<(), Error> {
        if !(MIN_MAC_LEN..=MAC_LEN).contains(&other.len()) {
            return Err(Error::MacMismatch);
        }
        let mine = self.0.get(..other.len()).ok_or(Error::MacMismatch)?;
        if bool::from(mine.ct_eq(other)) {
            Ok(())
        } else {
            Err(Error::MacMismatch)
        }
    }
}

/// HMAC-SHA256 computed incrementally, over input that arrives in pieces (a stream).
pub struct Hmac256(Option<Hmac<Sha256>>);

impl Hmac256 {
    /// A MAC under `key`.
    pub fn new(key: &[u8]) -> Self {
        Hmac256(<Hmac<Sha256> as KeyInit>::new_from_slice(key).ok())
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        if let Some(m) = &mut self.0 {
            m.update(data);
        }
    }

    /// The tag of everything added.
    pub fn finish(self) -> MacTag {
        match self.0 {
            Some(m) => MacTag(m.finalize().into_bytes().into()),
            // ok: unreachable for HMAC (any key length is accepted); never verifies anything real
            None => MacTag([0; MAC_LEN]),
        }
    }
}

/// Computes HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> MacTag {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return MacTag([0; MAC_LEN]), // ok: unreachable for HMAC; never verifies anything real
    };
    for part in parts {
        mac.update(part);
    }
    MacTag(mac.finalize().into_bytes().into())
}

/// Verifies `tag` (full, or truncated to at least 16 bytes) over `parts` under `key`, in constant
/// time.
///
/// # Errors
/// [`Error::MacMismatch`] on any mismatch or an unacceptable tag length.
pub fn verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> Result<(), Error> {
    hmac_sha256(key, parts).verify_against(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_own_tag_and_rejects_changes() {
        let tag = hmac_sha256(b"key", &[b"hello ", b"world"]);
        assert!(verify(b"key", &[b"hello world"], tag.as_bytes()).is_ok());
        assert!(verify(b"key", &[b"hello world"], &tag.as_bytes()[..16]).is_ok());
        assert!(verify(b"key", &[b"hello world"], &tag.as_bytes()[..15]).is_err());
        assert!(verify(b"key", &[b"hello world"], &[]).is_err());
        assert!(verify(b"kez", &[b"hello world"], tag.as_bytes()).is_err());
        let mut bad = *tag.as_bytes();
        bad[31] ^= 1;
        assert!(verify(b"key", &[b"hello world"], &bad).is_err());
    }
}
