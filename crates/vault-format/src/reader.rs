//! A bounds-checked cursor: every read names its object and field, so a short or malformed input
//! turns into a precise [`Error`] and never a panic.

use crate::{Error, Result};

/// Reads little-endian fields from a byte slice.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    object: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(object: &'static str, buf: &'a [u8]) -> Self {
        Self {
            object,
            buf,
            pos: 0,
        }
    }

    /// How many bytes were read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn bytes(&mut self, field: &'static str, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(Error::Truncated {
                object: self.object,
                field,
                needed: n,
                got: self.remaining(),
            }),
        }
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let s = self.bytes(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A `u32` length followed by that many bytes, with the length checked against `max` before
    /// anything is sliced or allocated.
    pub(crate) fn len_prefixed_u32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8]> {
        let len = self.u32(field)?;
        self.bounded(field, u64::from(len), max)
    }

    fn bounded(&mut self, field: &'static str, len: u64, max: usize) -> Result<&'a [u8]> {
        if len > max as u64 {
            return Err(Error::TooLong {
                object: self.object,
                field,
                len,
                max: max as u64,
            });
        }
        self.bytes(field, len as usize)
    }

    /// Requires a field to be zero (reserved bytes and flags must be zero so they can gain a
    /// meaning later without ambiguity).
    pub(crate) fn zero(&mut self, field: &'static str, n: usize) -> Result<()> {
        if self.bytes(field, n)?.iter().any(|b| *b != 0) {
            return Err(self.invalid(field, "reserved bytes must be zero"));
        }
        Ok(())
    }

    pub(crate) fn invalid(&self, field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidField {
            object: self.object,
            field,
            reason: reason.into(),
        }
    }

    /// Ends the object: anything left over is an error.
    pub(crate) fn finish(self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(Error::TrailingBytes {
                object: self.object,
                count,
            }),
        }
    }
}
