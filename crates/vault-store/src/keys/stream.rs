//! Encrypting and decrypting inputs of any size with a managed key, chunk by chunk (the STREAM
//! construction, docs/FORMAT.md §8.2): memory is two chunks whatever the input's size. A
//! decryption releases each chunk only after it authenticates, and fails at the end if the
//! stream was cut short, so a caller writing to a file must discard it on error.

use std::io::{Read, Write};

use vault_crypto::stream::{NONCE_PREFIX_LEN, Opener, Sealer};
use vault_format::keys::KeyOps;
use vault_format::token::{
    STREAM_HEADER_LEN, StreamHeader, TAG_LEN, TOKEN_HEADER_LEN, TokenForm, TokenHeader,
};
use zeroize::Zeroizing;

use super::KeyError;
use super::crypto::{Use, UseOptions};
use crate::audit::On;
use crate::vault::Vault;
use crate::{Error, Result};
use vault_format::audit::AuditOp;

/// Plaintext bytes per chunk a stream is written with.
pub const CHUNK_SIZE: u32 = 64 * 1024;

fn io_err(op: &'static str, e: std::io::Error) -> Error {
    Error::storage(op, "the stream", e)
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Vault {
    /// Encrypts everything `input` yields under the primary version of key `name` as a stream
    /// token written to `output`; returns the plaintext bytes read.
    ///
    /// # Errors
    /// As [`Vault::encrypt`]; I/O errors reading or writing.
    pub fn encrypt_stream(
        &self,
        name: &str,
        associated_data: &[u8],
        input: &mut dyn Read,
        output: &mut dyn Write,
    ) -> Result<u64> {
        self.encrypt_stream_with(name, associated_data, input, output, UseOptions::default())
    }

    /// [`Vault::encrypt_stream`] with options (such as using a compromised primary).
    ///
    /// # Errors
    /// As [`Vault::encrypt_stream`].
    pub fn encrypt_stream_with(
        &self,
        name: &str,
        associated_data: &[u8],
        input: &mut dyn Read,
        output: &mut dyn Write,
        options: UseOptions,
    ) -> Result<u64> {
        self.audited_around(AuditOp::KeyEncrypt, On::Key(name), String::new(), || {
            self.encrypt_stream_with_inner(name, associated_data, input, output, options)
        })
    }

    fn encrypt_stream_with_inner(
        &self,
        name: &str,
        associated_data: &[u8],
        input: &mut dyn Read,
        output: &mut dyn Write,
        options: UseOptions,
    ) -> Result<u64> {
        let m = self.material(name, Use::Make(KeyOps::ENCRYPT, "encrypt"), None, options)?;
        let h = m.header(TokenForm::Stream);
        let sh = StreamHeader {
            chunk_size: CHUNK_SIZE,
            nonce_prefix: vault_crypto::rng::bytes::<NONCE_PREFIX_LEN>()?,
        };
        let sh_bytes = sh.encode();
        let aad = h.aad(&sh_bytes, associated_data);
        output
            .write_all(&h.encode())
            .and_then(|()| output.write_all(&sh_bytes))
            .map_err(|e| io_err("writing", e))?;
        let key = vault_crypto::Key256::from_slice(m.bytes.expose_secret())?;
        let mut sealer = Sealer::new(&key, &sh.nonce_prefix);
        let size = CHUNK_SIZE as usize;
        let mut cur = Zeroizing::new(vec![0u8; size + TAG_LEN]);
        let mut next = Zeroizing::new(vec![0u8; size + TAG_LEN]);
        let mut n = read_full(input, cur.get_mut(..size).unwrap_or_default())
            .map_err(|e| io_err("reading", e))?;
        let mut total = n as u64;
        loop {
            let k = if n == size {
                read_full(input, next.get_mut(..size).unwrap_or_default())
                    .map_err(|e| io_err("reading", e))?
            } else {
                0
            };
            cur.truncate(n);
            if k == 0 {
                sealer.seal_last(&aad, &mut cur)?;
                output.write_all(&cur).map_err(|e| io_err("writing", e))?;
                break;
            }
            sealer.seal_next(&aad, &mut cur)?;
            output.write_all(&cur).map_err(|e| io_err("writing", e))?;
            std::mem::swap(&mut cur, &mut next);
            next.resize(size + TAG_LEN, 0);
            n = k;
            total += k as u64;
        }
        output.flush().map_err(|e| io_err("writing", e))?;
        self.report_compromised(name, &m, "encrypt")?;
        Ok(total)
    }

    /// Decrypts a token of key `name` read from `input` (a stream token, or a one-shot token)
    /// and writes the plaintext to `output`; returns the plaintext bytes written. Chunks are
    /// written as they authenticate: on an error, discard what was written.
    ///
    /// # Errors
    /// As [`Vault::decrypt`]; [`KeyError::Decrypt`] for a stream cut short or changed.
    pub fn decrypt_stream(
        &self,
        name: &str,
        associated_data: &[u8],
        input: &mut dyn Read,
        output: &mut dyn Write,
        options: UseOptions,
    ) -> Result<u64> {
        self.audited_around(AuditOp::KeyDecrypt, On::Key(name), String::new(), || {
            self.decrypt_stream_inner(name, associated_data, input, output, options)
        })
    }

    fn decrypt_stream_inner(
        &self,
        name: &str,
        associated_data: &[u8],
        input: &mut dyn Read,
        output: &mut dyn Write,
        options: UseOptions,
    ) -> Result<u64> {
        let bad = |reason: String| -> Error {
            KeyError::BadToken {
                key: name.into(),
                reason,
            }
            .into()
        };
        // A text token that is not base64 (or whose prefix disagrees) fails while it is read:
        // that is a bad token, not an I/O failure.
        let read_err = |e: std::io::Error| -> Error {
            if e.kind() == std::io::ErrorKind::InvalidData {
                KeyError::BadToken {
                    key: name.into(),
                    reason: e.to_string(),
                }
                .into()
            } else {
                io_err("reading", e)
            }
        };
        let mut head = [0u8; TOKEN_HEADER_LEN];
        let got = read_full(input, &mut head).map_err(read_err)?;
        let (h, _) = TokenHeader::decode(head.get(..got).unwrap_or_default())
            .map_err(|e| bad(e.to_string()))?;
        if h.form == TokenForm::Sealed {
            // A one-shot token: small by construction (the CLI makes one only below a chunk).
            let mut token = head.to_vec();
            input
                .take(64 << 20)
                .read_to_end(&mut token)
                .map_err(read_err)?;
            let plain = self.decrypt_inner(name, &token, associated_data, options)?;
            output
                .write_all(plain.expose_secret())
                .and_then(|()| output.flush())
                .map_err(|e| io_err("writing", e))?;
            return Ok(plain.len() as u64);
        }
        if h.form != TokenForm::Stream {
            return Err(bad("a signature, not a ciphertext".into()));
        }
        let m = self.material(
            name,
            Use::Open(KeyOps::DECRYPT, "decrypt"),
            Some(&head),
            options,
        )?;
        let mut sh_bytes = [0u8; STREAM_HEADER_LEN];
        let got = read_full(input, &mut sh_bytes).map_err(read_err)?;
        let (sh, _) = StreamHeader::decode(sh_bytes.get(..got).unwrap_or_default())
            .map_err(|e| bad(e.to_string()))?;
        let aad = h.aad(&sh_bytes, associated_data);
        let key = vault_crypto::Key256::from_slice(m.bytes.expose_secret())?;
        let mut opener = Opener::new(&key, &sh.nonce_prefix);
        let size = sh.chunk_size as usize + TAG_LEN;
        let failed = || -> Error {
            KeyError::Decrypt {
                key: name.into(),
                version: h.version,
            }
            .into()
        };
        let mut cur = Zeroizing::new(vec![0u8; size]);
        let mut next = Zeroizing::new(vec![0u8; size]);
        let mut n = read_full(input, &mut cur).map_err(read_err)?;
        let mut total = 0u64;
        loop {
            let k = if n == size {
                read_full(input, &mut next).map_err(read_err)?
            } else {
                0
            };
            cur.truncate(n);
            if k == 0 {
                opener.open_last(&aad, &mut cur).map_err(|_| failed())?;
                output.write_all(&cur).map_err(|e| io_err("writing", e))?;
                total += cur.len() as u64;
                break;
            }
            opener.open_next(&aad, &mut cur).map_err(|_| failed())?;
            output.write_all(&cur).map_err(|e| io_err("writing", e))?;
            total += cur.len() as u64;
            std::mem::swap(&mut cur, &mut next);
            next.resize(size, 0);
            n = k;
        }
        output.flush().map_err(|e| io_err("writing", e))?;
        self.report_compromised(name, &m, "decrypt")?;
        Ok(total)
    }
}
