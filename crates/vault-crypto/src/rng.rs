//! The one source of randomness: the operating system's RNG.

use crate::Error;

/// Fills `buf` with bytes from the OS RNG.
///
/// # Errors
/// [`Error::Rng`] if the OS RNG fails.
pub fn fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|_| Error::Rng)
}

/// Returns `N` random bytes (salts, ids; not for keys, which use [`crate::Key256::generate`]).
///
/// # Errors
/// [`Error::Rng`] if the OS RNG fails.
pub fn bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}
