//! SHA-256, for integrity checksums that must be checkable before any key is known (detecting
//! accidental corruption, not forgery: that is what [`crate::mac`] is for).

use sha2::{Digest, Sha256};

/// SHA-256 digest length.
pub const SHA256_LEN: usize = 32;

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_answer() {
        // FIPS 180-2 "abc".
        assert_eq!(
            super::sha256(&[b"a", b"bc"]).to_vec(),
            hex::decode("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .unwrap()
        );
    }
}
