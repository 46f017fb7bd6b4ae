//! Input that a command can read again from the start: `with_vault` starts an operation over
//! when another process rotated the master key meanwhile, and by then a streaming command may
//! have read the start of its input (a token's header, a one-shot token). What was read is kept
//! (up to a limit, in a buffer zeroized when dropped) and given again on the next attempt.

use std::io::Read;

use zeroize::Zeroizing;

/// A reader that keeps what it gave, up to `limit` bytes, so that it can start over.
pub(crate) struct Rewind<R> {
    inner: R,
    kept: Zeroizing<Vec<u8>>,
    at: usize,
    limit: usize,
    overflowed: bool,
}

impl<R: Read> Rewind<R> {
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        Rewind {
            inner,
            kept: Zeroizing::new(Vec::new()),
            at: 0,
            limit,
            overflowed: false,
        }
    }

    /// Starts again from the first byte; `false` if more than the limit was read, so the start
    /// is no longer kept.
    pub(crate) fn rewind(&mut self) -> bool {
        if self.overflowed {
            return false;
        }
        self.at = 0;
        true
    }
}

impl<R: Read> Read for Rewind<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(kept) = self.kept.get(self.at..).filter(|k| !k.is_empty()) {
            let n = kept.len().min(buf.len());
            buf.get_mut(..n)
                .unwrap_or_default()
                .copy_from_slice(kept.get(..n).unwrap_or_default());
            self.at += n;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if !self.overflowed {
            if self.kept.len() + n <= self.limit {
                self.kept
                    .extend_from_slice(buf.get(..n).unwrap_or_default());
                self.at = self.kept.len();
            } else {
                self.overflowed = true;
                self.kept.clear();
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    #[test]
    fn what_was_read_is_read_again_until_the_limit() {
        let mut r = Rewind::new(&b"hello world"[..], 8);
        let mut five = [0u8; 5];
        r.read_exact(&mut five).unwrap();
        assert!(r.rewind());
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"hello world");
        assert!(!r.rewind(), "11 bytes were read, over the limit of 8");
    }
}
