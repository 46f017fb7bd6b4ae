//! The 16-byte preamble every vault file starts with (docs/FORMAT.md, "Conventions").
//!
//! ```text
//! offset  size  field
//!      0     8  magic        89 56 4C 54 0D 0A 1A 0A   ("\x89VLT\r\n\x1a\n")
//!      8     4  object tag   ASCII, e.g. "VHDR"
//!     12     2  version      u16 LE, this object's format version
//!     14     2  flags        u16 LE, must be zero in version 1
//! ```

use crate::reader::Reader;
use crate::{Error, Result};

/// The magic number. As PNG's does, it catches text-mode mangling: the high-bit first byte
/// catches 7-bit transfers, CR LF catches line-ending conversion, and 0x1A stops `type` on DOS.
pub const MAGIC: [u8; 8] = [0x89, b'V', b'L', b'T', b'\r', b'\n', 0x1A, b'\n'];

/// Length of the preamble.
pub const PREAMBLE_LEN: usize = 16;

/// The kinds of vault file, each with its own tag and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjectKind {
    pub(crate) name: &'static str,
    pub(crate) tag: [u8; 4],
    pub(crate) current_version: u16,
}

pub(crate) fn write(out: &mut Vec<u8>, kind: ObjectKind) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&kind.tag);
    out.extend_from_slice(&kind.current_version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
}

/// Reads and checks the preamble; returns the object's version (1..=current).
pub(crate) fn read(r: &mut Reader<'_>, kind: ObjectKind) -> Result<u16> {
    if r.array::<8>("magic")? != MAGIC {
        return Err(Error::BadMagic { object: kind.name });
    }
    let tag = r.array::<4>("object tag")?;
    if tag != kind.tag {
        return Err(Error::WrongObject {
            object: kind.name,
            found: tag,
        });
    }
    let version = r.u16("format version")?;
    if version == 0 {
        return Err(r.invalid("format version", "version 0 does not exist"));
    }
    if version > kind.current_version {
        return Err(Error::UnsupportedVersion {
            object: kind.name,
            found: version,
            max: kind.current_version,
        });
    }
    if r.u16("flags")? != 0 {
        return Err(r.invalid("flags", "no flags are defined in this version"));
    }
    Ok(version)
}
