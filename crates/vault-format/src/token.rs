//! What a managed key hands out (docs/FORMAT.md §8): ciphertext tokens (one-shot or streamed),
//! MACs and signatures, each self-describing: it names the key (by id) and the version that made
//! it, so the version is picked directly, and a token shown to another key is told apart from a
//! damaged one. A binary form, and a text form `vault:v<version>:<base64url>` of the same bytes.

use base64ct::{Base64UrlUnpadded, Encoding};

use crate::keys::KEY_ID_LEN;
use crate::reader::Reader;
use crate::{Error, Result};

const OBJECT: &str = "key token";
/// The token layout version this build writes and reads.
pub const TOKEN_VERSION: u8 = 1;
/// Bytes before a token's body: version, form, key id, key version.
pub const TOKEN_HEADER_LEN: usize = 1 + 1 + KEY_ID_LEN + 4;
/// Nonce of a one-shot ciphertext.
pub const NONCE_LEN: usize = 24;
/// AEAD tag.
pub const TAG_LEN: usize = 16;
/// The nonce prefix of a streamed ciphertext (STREAM over XChaCha20-Poly1305: 24 − 5 bytes).
pub const STREAM_NONCE_PREFIX_LEN: usize = 19;
/// Bytes of a streamed ciphertext's header after the token header: chunk size, nonce prefix.
pub const STREAM_HEADER_LEN: usize = 4 + STREAM_NONCE_PREFIX_LEN;
/// Smallest and largest chunk a stream may declare (a crafted stream cannot ask for more memory).
pub const STREAM_CHUNK_RANGE: core::ops::RangeInclusive<u32> = 1024..=(1 << 20);
/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// The text form's prefix.
pub const TEXT_PREFIX: &str = "vault:v";
/// Domain label at the start of every ciphertext's associated data.
pub const AAD_LABEL: &[u8] = b"vault v1 key token";

crate::wire::wire_enum! {
    /// What a token is.
    pub enum TokenForm {
        /// One-shot ciphertext: nonce ‖ ciphertext ‖ tag.
        Sealed = 1,
        /// Streamed ciphertext: chunk size ‖ nonce prefix ‖ chunks.
        Stream = 2,
        /// HMAC-SHA256 tag of the message.
        Mac = 3,
        /// Ed25519 signature of the message.
        Signature = 4,
    }
}

/// The part every token starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenHeader {
    /// What the token is.
    pub form: TokenForm,
    /// The id of the key that made it.
    pub key_id: [u8; KEY_ID_LEN],
    /// The key version that made it.
    pub version: u32,
}

impl TokenHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; TOKEN_HEADER_LEN] {
        let mut out = [0u8; TOKEN_HEADER_LEN];
        let (fixed, rest) = out.split_at_mut(2);
        let (id, version) = rest.split_at_mut(KEY_ID_LEN);
        fixed.copy_from_slice(&[TOKEN_VERSION, self.form.to_byte()]);
        id.copy_from_slice(&self.key_id);
        version.copy_from_slice(&self.version.to_le_bytes());
        out
    }

    /// Reads a header from the start of `bytes`; returns it and the rest.
    ///
    /// # Errors
    /// Truncation, version 0, a newer token version, an unknown form, key version 0.
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8])> {
        let mut r = Reader::new(OBJECT, bytes);
        let v = r.u8("token version")?;
        if v == 0 {
            return Err(r.invalid("token version", "version 0 does not exist"));
        }
        if (0x20..0x7f).contains(&v) {
            // Printable text where a binary token's version byte should be.
            return Err(r.invalid(
                "token",
                "text that is not a token (a token's text form starts with \"vault:v\")",
            ));
        }
        if v > TOKEN_VERSION {
            return Err(Error::UnsupportedVersion {
                object: OBJECT,
                found: u16::from(v),
                max: u16::from(TOKEN_VERSION),
            });
        }
        let form = TokenForm::from_byte(r.u8("token form")?)
            .ok_or_else(|| r.invalid("token form", "unknown form"))?;
        let key_id = r.array("key id")?;
        let version = r.u32("key version")?;
        if version == 0 {
            return Err(r.invalid("key version", "versions start at 1"));
        }
        let rest = r.bytes("token body", r.remaining())?;
        Ok((
            TokenHeader {
                form,
                key_id,
                version,
            },
            rest,
        ))
    }

    /// The associated data a ciphertext of this header is sealed with: the label, the header
    /// (so key, version and form are bound) and the caller's associated data, length-prefixed.
    pub fn aad(&self, extra: &[u8], caller: &[u8]) -> Vec<u8> {
        let mut a =
            Vec::with_capacity(AAD_LABEL.len() + TOKEN_HEADER_LEN + extra.len() + 8 + caller.len());
        a.extend_from_slice(AAD_LABEL);
        a.extend_from_slice(&self.encode());
        a.extend_from_slice(extra);
        a.extend_from_slice(&(caller.len() as u64).to_le_bytes());
        a.extend_from_slice(caller);
        a
    }
}

/// A one-shot ciphertext's parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The nonce.
    pub nonce: &'a [u8; NONCE_LEN],
    /// Ciphertext ‖ tag.
    pub ciphertext: &'a [u8],
}

impl<'a> Sealed<'a> {
    /// Splits a sealed token's body.
    ///
    /// # Errors
    /// A body too short for a nonce and a tag.
    pub fn decode(body: &'a [u8]) -> Result<Self> {
        let mut r = Reader::new(OBJECT, body);
        let nonce = r
            .bytes("nonce", NONCE_LEN)?
            .try_into()
            .map_err(|_| r.invalid("nonce", "wrong length"))?;
        if r.remaining() < TAG_LEN {
            return Err(Error::Truncated {
                object: OBJECT,
                field: "ciphertext",
                needed: TAG_LEN,
                got: r.remaining(),
            });
        }
        let ciphertext = r.bytes("ciphertext", r.remaining())?;
        Ok(Sealed { nonce, ciphertext })
    }
}

/// A streamed ciphertext's header (after the token header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// Plaintext bytes per chunk (every chunk but the last is exactly this long).
    pub chunk_size: u32,
    /// The STREAM nonce prefix.
    pub nonce_prefix: [u8; STREAM_NONCE_PREFIX_LEN],
}

impl StreamHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; STREAM_HEADER_LEN] {
        let mut out = [0u8; STREAM_HEADER_LEN];
        let (size, prefix) = out.split_at_mut(4);
        size.copy_from_slice(&self.chunk_size.to_le_bytes());
        prefix.copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Reads the stream header from the start of a stream token's body; returns it and the rest.
    ///
    /// # Errors
    /// Truncation or a chunk size outside [`STREAM_CHUNK_RANGE`].
    pub fn decode(body: &[u8]) -> Result<(Self, &[u8])> {
        let mut r = Reader::new(OBJECT, body);
        let chunk_size = r.u32("chunk size")?;
        if !STREAM_CHUNK_RANGE.contains(&chunk_size) {
            return Err(r.invalid(
                "chunk size",
                format!(
                    "{chunk_size} is outside {}..={}",
                    STREAM_CHUNK_RANGE.start(),
                    STREAM_CHUNK_RANGE.end()
                ),
            ));
        }
        let nonce_prefix = r.array("nonce prefix")?;
        let rest = r.bytes("chunks", r.remaining())?;
        Ok((
            StreamHeader {
                chunk_size,
                nonce_prefix,
            },
            rest,
        ))
    }
}

/// Seals `plaintext` as a one-shot token of `header` (form [`TokenForm::Sealed`]) under the key
/// version's material `key`, with `nonce` (random, never reused under the key: see [`seal`]).
///
/// # Errors
/// A header of another form; [`Error::Crypto`] if the cipher refuses the input.
pub fn seal_with_nonce(
    key: &vault_crypto::Key256,
    header: &TokenHeader,
    nonce: &[u8; NONCE_LEN],
    associated_data: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    if header.form != TokenForm::Sealed {
        return Err(Error::InvalidField {
            object: OBJECT,
            field: "token form",
            reason: "a one-shot ciphertext is sealed".into(),
        });
    }
    let nonce = vault_crypto::aead::Nonce::from_bytes(*nonce);
    let mut out = Vec::with_capacity(TOKEN_HEADER_LEN + NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(nonce.as_bytes());
    vault_crypto::aead::seal_append(
        key,
        &nonce,
        &header.aad(&[], associated_data),
        plaintext,
        &mut out,
    )
    .map_err(|source| Error::Crypto {
        object: OBJECT,
        source,
    })?;
    Ok(out)
}

/// [`seal_with_nonce`] with a fresh random nonce.
///
/// # Errors
/// As [`seal_with_nonce`]; [`Error::Crypto`] if no nonce could be drawn.
pub fn seal(
    key: &vault_crypto::Key256,
    header: &TokenHeader,
    associated_data: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let nonce = vault_crypto::rng::bytes::<NONCE_LEN>().map_err(|source| Error::Crypto {
        object: OBJECT,
        source,
    })?;
    seal_with_nonce(key, header, &nonce, associated_data, plaintext)
}

/// Opens a one-shot token with the material of the version its header names.
///
/// # Errors
/// A malformed token or one of another form; [`Error::Authentication`] if it does not
/// authenticate (changed, cut short, another key, other associated data).
pub fn open(
    key: &vault_crypto::Key256,
    token: &[u8],
    associated_data: &[u8],
) -> Result<vault_crypto::SecretBytes> {
    let (h, body) = TokenHeader::decode(token)?;
    if h.form != TokenForm::Sealed {
        return Err(Error::InvalidField {
            object: OBJECT,
            field: "token form",
            reason: match h.form {
                TokenForm::Stream => "a streamed ciphertext: decrypt it as a stream".into(),
                _ => "a signature, not a ciphertext".into(),
            },
        });
    }
    let s = Sealed::decode(body)?;
    vault_crypto::aead::open(
        key,
        &vault_crypto::aead::Nonce::from_bytes(*s.nonce),
        &h.aad(&[], associated_data),
        s.ciphertext,
    )
    .map_err(|_| Error::Authentication { object: OBJECT })
}

/// The text form of a token: `vault:v<version>:<base64url, no padding>`.
pub fn to_text(token: &[u8]) -> Result<String> {
    let (h, _) = TokenHeader::decode(token)?;
    Ok(format!(
        "{TEXT_PREFIX}{}:{}",
        h.version,
        Base64UrlUnpadded::encode_string(token)
    ))
}

/// The bytes of a token in text form; surrounding whitespace is ignored. The version in the
/// prefix must be the one the bytes carry.
///
/// # Errors
/// A missing prefix, bad base64, or a prefix that disagrees with the token.
pub fn from_text(text: &str) -> Result<Vec<u8>> {
    let (version, b64) = split_text(text)?;
    let bytes = Base64UrlUnpadded::decode_vec(b64).map_err(|_| Error::InvalidField {
        object: OBJECT,
        field: "text form",
        reason: "not base64url (RFC 4648 §5, no padding)".into(),
    })?;
    let (h, _) = TokenHeader::decode(&bytes)?;
    if h.version != version {
        return Err(Error::InvalidField {
            object: OBJECT,
            field: "text form",
            reason: format!("the prefix says version {version}, the token {}", h.version),
        });
    }
    Ok(bytes)
}

/// Splits a text token into the version its prefix states and the base64 part.
///
/// # Errors
/// A missing or malformed prefix.
pub fn split_text(text: &str) -> Result<(u32, &str)> {
    let bad = |reason: &str| Error::InvalidField {
        object: OBJECT,
        field: "text form",
        reason: reason.into(),
    };
    let rest = text
        .trim()
        .strip_prefix(TEXT_PREFIX)
        .ok_or_else(|| bad("does not start with \"vault:v\""))?;
    let (version, b64) = rest
        .split_once(':')
        .ok_or_else(|| bad("no ':' after the version"))?;
    if version.is_empty()
        || version.len() > 10
        || !version.bytes().all(|b| b.is_ascii_digit())
        || version.starts_with('0')
    {
        return Err(bad(
            "the version is not a number from 1, without leading zeros",
        ));
    }
    let version: u32 = version
        .parse()
        .map_err(|_| bad("the version is not a number"))?;
    Ok((version, b64))
}

/// Whether `bytes` start like a text token rather than a binary one (a binary token starts with
/// its version byte, 1).
pub fn looks_like_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(TEXT_PREFIX.len())
        .eq(TEXT_PREFIX.as_bytes().iter())
}

/// Writes a token in its text form as its bytes are written to it: `vault:v<N>:` once the
/// token's header has passed (it names the version), then base64url in groups of three bytes, so
/// a streamed token of any size becomes text in bounded memory. [`TextWriter::finish`] writes the
/// last group and a newline.
pub struct TextWriter<W: std::io::Write> {
    inner: W,
    pending: Vec<u8>,
    started: bool,
}

impl<W: std::io::Write> TextWriter<W> {
    /// A writer of text into `inner`.
    pub fn new(inner: W) -> Self {
        TextWriter {
            inner,
            pending: Vec::with_capacity(3 * 4096),
            started: false,
        }
    }

    fn emit(&mut self, upto: usize) -> std::io::Result<()> {
        let take = upto - upto % 3;
        if take == 0 {
            return Ok(());
        }
        let rest = self.pending.split_off(take);
        let text = Base64UrlUnpadded::encode_string(&self.pending);
        self.inner.write_all(text.as_bytes())?;
        self.pending = rest;
        Ok(())
    }

    /// Writes what is left and a newline; returns the inner writer.
    ///
    /// # Errors
    /// A token shorter than its header, or the inner writer's error.
    pub fn finish(mut self) -> std::io::Result<W> {
        if !self.started {
            self.start()?;
        }
        let text = Base64UrlUnpadded::encode_string(&self.pending);
        self.inner.write_all(text.as_bytes())?;
        self.inner.write_all(b"\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn start(&mut self) -> std::io::Result<()> {
        let (h, _) = TokenHeader::decode(&self.pending)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        write!(self.inner, "{TEXT_PREFIX}{}:", h.version)?;
        self.started = true;
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for TextWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if !self.started {
            if self.pending.len() < TOKEN_HEADER_LEN {
                return Ok(buf.len());
            }
            self.start()?;
        }
        if self.pending.len() >= 3 * 4096 {
            self.emit(self.pending.len())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.started {
            self.emit(self.pending.len())?;
        }
        self.inner.flush()
    }
}

/// Reads the bytes of a token given in text form, decoding base64url as it goes (bounded
/// memory), and checks that the version in the `vault:v<N>:` prefix is the one the token's
/// header carries. Whitespace after the token (a newline) is ignored; anywhere else it is an
/// error.
pub struct TextReader<R: std::io::Read> {
    inner: R,
    prefix_version: Option<u32>,
    text: Vec<u8>,
    decoded: Vec<u8>,
    at: usize,
    given: u64,
    eof: bool,
}

fn invalid_data(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

impl<R: std::io::Read> TextReader<R> {
    /// A reader of the token whose text `inner` yields.
    pub fn new(inner: R) -> Self {
        TextReader {
            inner,
            prefix_version: None,
            text: Vec::new(),
            decoded: Vec::new(),
            at: 0,
            given: 0,
            eof: false,
        }
    }

    fn fill_text(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        let n = loop {
            match self.inner.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.text
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        Ok(())
    }

    fn read_prefix(&mut self) -> std::io::Result<()> {
        loop {
            let start = self
                .text
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.text.len());
            let t = self.text.get(start..).unwrap_or_default();
            if let Some(colon) = t
                .get(TEXT_PREFIX.len()..)
                .and_then(|r| r.iter().position(|&b| b == b':'))
            {
                let end = TEXT_PREFIX.len() + colon;
                let head = core::str::from_utf8(t.get(..=end).unwrap_or_default())
                    .map_err(|_| invalid_data("the token's prefix is not text"))?;
                let (v, _) = split_text(head).map_err(|e| invalid_data(e.to_string()))?;
                self.prefix_version = Some(v);
                self.text.drain(..start + end + 1);
                return Ok(());
            }
            if self.eof || self.text.len() > 64 {
                return Err(invalid_data("not a token: no \"vault:v<N>:\" prefix"));
            }
            self.fill_text()?;
        }
    }

    fn decode_more(&mut self) -> std::io::Result<()> {
        while self.at >= self.decoded.len() && !(self.eof && self.text.is_empty()) {
            if !self.eof && self.text.len() < 4 * 4096 {
                self.fill_text()?;
                continue;
            }
            let mut end = self.text.len();
            if self.eof {
                while end > 0 && self.text.get(end - 1).is_some_and(u8::is_ascii_whitespace) {
                    end -= 1;
                }
            } else {
                end -= end % 4;
            }
            let chunk: Vec<u8> = self.text.drain(..end).collect();
            if self.eof {
                self.text.clear();
            }
            self.decoded = Base64UrlUnpadded::decode_vec(
                core::str::from_utf8(&chunk).map_err(|_| invalid_data("not base64url"))?,
            )
            .map_err(|_| invalid_data("not base64url (RFC 4648 §5, no padding)"))?;
            self.at = 0;
        }
        Ok(())
    }
}

impl<R: std::io::Read> std::io::Read for TextReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.prefix_version.is_none() {
            self.read_prefix()?;
        }
        self.decode_more()?;
        let avail = self.decoded.get(self.at..).unwrap_or_default();
        let n = avail.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(avail.get(..n).unwrap_or_default());
        // The header's version sits at bytes 10..14 of the token: check it against the prefix
        // as it passes.
        let from = self.given;
        for (i, b) in avail.get(..n).unwrap_or_default().iter().enumerate() {
            let pos = from + i as u64;
            if (10..14).contains(&pos) {
                let want = self.prefix_version.unwrap_or(0).to_le_bytes();
                if want.get((pos - 10) as usize) != Some(b) {
                    return Err(invalid_data(
                        "the prefix names another version than the token",
                    ));
                }
            }
        }
        self.at += n;
        self.given += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    fn header(form: TokenForm) -> TokenHeader {
        TokenHeader {
            form,
            key_id: [7; KEY_ID_LEN],
            version: 3,
        }
    }

    #[test]
    fn text_and_binary_forms_carry_the_same_bytes() {
        let mut t = header(TokenForm::Mac).encode().to_vec();
        t.extend_from_slice(&[0xAB; MAC_LEN]);
        let text = to_text(&t).unwrap();
        assert!(text.starts_with("vault:v3:"), "{text}");
        assert_eq!(from_text(&format!("  {text}\n")).unwrap(), t);
        assert!(looks_like_text(text.as_bytes()));
        assert!(!looks_like_text(&t));
    }

    #[test]
    fn a_prefix_that_disagrees_with_the_token_is_refused() {
        let mut t = header(TokenForm::Mac).encode().to_vec();
        t.extend_from_slice(&[0; MAC_LEN]);
        let text = to_text(&t).unwrap().replacen("vault:v3:", "vault:v4:", 1);
        assert!(from_text(&text).is_err());
        assert!(from_text("vault:v:AAAA").is_err());
        assert!(from_text("vault:v3:not base64!").is_err());
        assert!(from_text("nope").is_err());
    }

    #[test]
    fn headers_refuse_what_they_do_not_know() {
        let good = header(TokenForm::Sealed).encode();
        assert_eq!(
            TokenHeader::decode(&good).unwrap().0,
            header(TokenForm::Sealed)
        );
        let mut newer = good;
        newer[0] = 2;
        assert!(matches!(
            TokenHeader::decode(&newer),
            Err(Error::UnsupportedVersion { .. })
        ));
        let mut form = good;
        form[1] = 9;
        assert!(TokenHeader::decode(&form).is_err());
        for n in 0..good.len() {
            assert!(TokenHeader::decode(&good[..n]).is_err());
        }
    }

    #[test]
    fn text_streams_round_trip_through_the_writer_and_reader() {
        use std::io::{Read, Write};
        for len in [0usize, 1, 2, 3, 100, 3 * 4096 - 1, 3 * 4096 + 1, 100_000] {
            let mut t = header(TokenForm::Stream).encode().to_vec();
            t.extend((0..len).map(|i| (i % 251) as u8));
            let mut w = TextWriter::new(Vec::new());
            for piece in t.chunks(7000) {
                w.write_all(piece).unwrap();
            }
            let text = w.finish().unwrap();
            assert_eq!(text, format!("{}\n", to_text(&t).unwrap()).into_bytes());
            let mut back = Vec::new();
            TextReader::new(&text[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, t, "length {len}");
        }
        let t = header(TokenForm::Mac).encode();
        let text = to_text(&t).unwrap().replacen("vault:v3:", "vault:v9:", 1);
        assert!(
            TextReader::new(text.as_bytes())
                .read_to_end(&mut Vec::new())
                .is_err()
        );
        assert!(
            TextReader::new(&b"nonsense"[..])
                .read_to_end(&mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn a_stream_header_bounds_its_chunk_size() {
        let h = StreamHeader {
            chunk_size: 64 * 1024,
            nonce_prefix: [1; STREAM_NONCE_PREFIX_LEN],
        };
        assert_eq!(StreamHeader::decode(&h.encode()).unwrap().0, h);
        for size in [0u32, 1023, (1 << 20) + 1, u32::MAX] {
            let mut b = h.encode();
            b[..4].copy_from_slice(&size.to_le_bytes());
            assert!(StreamHeader::decode(&b).is_err(), "{size}");
        }
    }
}
