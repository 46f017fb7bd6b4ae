//! The index file (`index.<epoch>`): opened for reading by offset (the descriptor kept, so a
//! reader goes on reading what it opened after a writer replaced it), and written whole through a
//! temp file and a rename.

use std::path::PathBuf;

use super::FileBackend;
use crate::backend::{IndexFile, IndexWriter};
use crate::io::IoFile;
use crate::{Error, Result};

/// How much of an index file is gathered before it is written.
const WRITE_CHUNK: usize = 8 << 20;

/// An open index file.
struct OpenIndex {
    file: Box<dyn IoFile>,
    len: u64,
    path: PathBuf,
}

impl IndexFile for OpenIndex {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let past = || {
            Error::integrity(
                self.path.display().to_string(),
                format!("the index file holds no {len} bytes at offset {offset}"),
            )
        };
        let end = offset.checked_add(len as u64).ok_or_else(past)?;
        if end > self.len {
            return Err(past());
        }
        let mut out = vec![0u8; len];
        self.file
            .read_exact_at(&mut out, offset)
            .map_err(|e| Error::io("reading", &self.path, e))?;
        Ok(out)
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

impl FileBackend {
    /// The index file of `epoch`.
    pub fn index_path(&self, epoch: u32) -> PathBuf {
        self.dir.join(format!("index.{epoch}"))
    }

    pub(super) fn open_index_file(&self, epoch: u32) -> Result<Option<Box<dyn IndexFile>>> {
        let path = self.index_path(epoch);
        let file = match self.io.open_read(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("opening", &path, e)),
        };
        let len = file.stamp().map_err(self.io_err("reading", &path))?.len;
        Ok(Some(Box::new(OpenIndex { file, len, path })))
    }

    pub(super) fn write_index_file(&self, epoch: u32, write: &mut IndexWriter<'_>) -> Result<()> {
        let path = self.index_path(epoch);
        let tmp = self.dir.join(format!("index.{epoch}.tmp"));
        crate::io::replace_atomically_with(&*self.io, &tmp, &path, &self.dir, &mut |f| {
            // Blocks are gathered into writes of about WRITE_CHUNK bytes.
            let mut at = 0u64;
            let mut buf = Vec::new();
            write(&mut |bytes: &[u8]| {
                buf.extend_from_slice(bytes);
                if buf.len() >= WRITE_CHUNK {
                    f.write_all_at(&buf, at)
                        .map_err(|e| Error::io("writing", &tmp, e))?;
                    at += buf.len() as u64;
                    buf.clear();
                }
                Ok(())
            })?;
            if !buf.is_empty() {
                f.write_all_at(&buf, at)
                    .map_err(|e| Error::io("writing", &tmp, e))?;
            }
            Ok(())
        })
    }
}
