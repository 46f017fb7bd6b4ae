//! The backup container as a stream (docs/designs/backup.md): a [`Sealer`] is a `Write` that
//! takes the payload and writes the header, the payload in STREAM-sealed chunks and the trailing
//! HMAC; an [`Opener`] is a `Read` that gives the payload back, each chunk only once it
//! authenticates, and checks the trailer when the input ends. Each holds two chunks in memory.

use std::io::{self, Read, Write};

use vault_crypto::mac::Hmac256;
use vault_crypto::stream;
use vault_format::backup::{BackupHeader, BackupKeys, TRAILER_LEN};
use zeroize::Zeroizing;

use crate::Error;

/// AEAD tag length.
const TAG_LEN: usize = 16;

/// Writes a backup container: the header at once, then the payload written to it, sealed chunk by
/// chunk; [`Sealer::finish`] seals the final chunk and writes the trailer.
pub struct Sealer<W: Write> {
    out: W,
    aad: Vec<u8>,
    sealer: Option<stream::Sealer>,
    mac: Hmac256,
    chunk: Zeroizing<Vec<u8>>,
    size: usize,
}

impl<W: Write> Sealer<W> {
    /// Starts a container with `header` (whose check and keys are `keys`') on `out`.
    ///
    /// # Errors
    /// A header outside the format's limits; `out`'s error.
    pub fn new(mut out: W, header: &BackupHeader, keys: &BackupKeys) -> Result<Self, Error> {
        let aad = header.encode()?;
        out.write_all(&aad)?;
        let mut mac = Hmac256::new(keys.mac.expose_secret());
        mac.update(&aad);
        let size = header.chunk_size as usize;
        Ok(Sealer {
            out,
            aad,
            sealer: Some(stream::Sealer::new(&keys.encrypt, &header.nonce_prefix)),
            mac,
            chunk: Zeroizing::new(Vec::with_capacity(size + TAG_LEN)),
            size,
        })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let finished = || io::Error::other("the backup is already finished");
        let sealed = if last {
            self.sealer
                .take()
                .ok_or_else(finished)?
                .seal_last(&self.aad, &mut self.chunk)
        } else {
            self.sealer
                .as_mut()
                .ok_or_else(finished)?
                .seal_next(&self.aad, &mut self.chunk)
        };
        sealed.map_err(|_| io::Error::other("a chunk could not be sealed"))?;
        self.mac.update(&self.chunk);
        self.out.write_all(&self.chunk)?;
        self.chunk.clear();
        Ok(())
    }

    /// Seals the final chunk, writes the trailer and flushes; returns the output.
    ///
    /// # Errors
    /// The output's error.
    pub fn finish(mut self) -> Result<W, Error> {
        self.seal(true)?;
        let tag = std::mem::replace(&mut self.mac, Hmac256::new(&[])).finish();
        self.out.write_all(tag.as_bytes())?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            // A full chunk is sealed only once more follows it: the final one is sealed by
            // `finish`, with the last flag.
            if self.chunk.len() == self.size {
                self.seal(false)?;
            }
            let take = (self.size - self.chunk.len()).min(buf.len());
            let (head, rest) = buf.split_at(take);
            self.chunk.extend_from_slice(head);
            buf = rest;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads a backup container's payload back: opens each chunk as it comes (in order, none
/// missing, the final one marked), and checks the trailing HMAC over the header and every chunk
/// when the input ends. Fails with [`io::ErrorKind::InvalidData`] naming the chunk.
pub struct Opener<R: Read> {
    input: R,
    header: BackupHeader,
    aad: Vec<u8>,
    opener: Option<stream::Opener>,
    mac: Option<Hmac256>,
    /// Sealed bytes read ahead (at most one chunk, its tag and the trailer, plus one byte).
    ahead: Vec<u8>,
    eof: bool,
    plain: Zeroizing<Vec<u8>>,
    at: usize,
    size: usize,
    chunk_no: u64,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: Read> Opener<R> {
    /// An opener for the chunks that follow `header` in `input` (which has already given the
    /// header's bytes), under `keys`.
    pub fn new(input: R, header: &BackupHeader, header_bytes: &[u8], keys: &BackupKeys) -> Self {
        let mut mac = Hmac256::new(keys.mac.expose_secret());
        mac.update(header_bytes);
        let size = header.chunk_size as usize;
        Opener {
            input,
            header: header.clone(),
            aad: header_bytes.to_vec(),
            opener: Some(stream::Opener::new(&keys.encrypt, &header.nonce_prefix)),
            mac: Some(mac),
            ahead: Vec::with_capacity(size + TAG_LEN + TRAILER_LEN + 1),
            eof: false,
            plain: Zeroizing::new(Vec::with_capacity(size + TAG_LEN)),
            at: 0,
            size,
            chunk_no: 0,
        }
    }

    /// The backup's header.
    pub fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// How many chunks have been opened.
    pub fn chunks(&self) -> u64 {
        self.chunk_no
    }

    fn fill(&mut self) -> io::Result<()> {
        let want = self.size + TAG_LEN + TRAILER_LEN + 1;
        let mut buf = [0u8; 16 * 1024];
        while !self.eof && self.ahead.len() < want {
            let room = (want - self.ahead.len()).min(buf.len());
            match self.input.read(buf.get_mut(..room).unwrap_or_default()) {
                Ok(0) => self.eof = true,
                Ok(n) => self
                    .ahead
                    .extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Opens the next chunk into `plain`; at the end, checks the trailer.
    fn next_chunk(&mut self) -> io::Result<()> {
        self.fill()?;
        let chunk_no = self.chunk_no + 1;
        let failed = |what: &str| bad(format!("backup chunk {chunk_no}: {what}"));
        if !self.eof {
            // More than a chunk, its tag and the trailer remain: this is not the final chunk.
            let take = self.size + TAG_LEN;
            self.plain.clear();
            self.plain.extend(self.ahead.drain(..take));
            if let Some(m) = self.mac.as_mut() {
                m.update(&self.plain);
            }
            let opener = self
                .opener
                .as_mut()
                .ok_or_else(|| failed("the stream already ended"))?;
            opener.open_next(&self.aad, &mut self.plain).map_err(|_| {
                failed("does not authenticate (changed, moved, or from another backup)")
            })?;
        } else {
            if self.ahead.len() < TAG_LEN + TRAILER_LEN {
                return Err(failed(
                    "the file ends before its final chunk and trailer (cut short)",
                ));
            }
            let body = self.ahead.len() - TRAILER_LEN;
            self.plain.clear();
            self.plain.extend(self.ahead.drain(..body));
            let trailer: Vec<u8> = std::mem::take(&mut self.ahead);
            let mut mac = self
                .mac
                .take()
                .ok_or_else(|| failed("the stream already ended"))?;
            mac.update(&self.plain);
            let opener = self
                .opener
                .take()
                .ok_or_else(|| failed("the stream already ended"))?;
            opener.open_last(&self.aad, &mut self.plain).map_err(|_| {
                failed("does not authenticate as the final chunk (changed, cut short or extended)")
            })?;
            mac.finish()
                .verify_against(&trailer)
                .map_err(|_| bad("backup trailer: the HMAC over the header and chunks does not match (the file was changed)".into()))?;
        }
        self.chunk_no = chunk_no;
        self.at = 0;
        Ok(())
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.plain.len() {
            if self.opener.is_none() {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let avail = self.plain.get(self.at..).unwrap_or_default();
        let n = avail.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(avail.get(..n).unwrap_or_default());
        self.at += n;
        Ok(n)
    }
}
