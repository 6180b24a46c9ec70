//! Request body content encodings (gzip, deflate, br, zstd) decoded as a stream under a byte budget.
//!
//! Every decoder is pulled through a chain of `Read` adapters and copied into an output buffer
//! that is never allowed to grow past `limit`, so a decompression bomb stops at the budget
//! instead of at the allocator (product section 8, reference section 3). Intermediate layers of
//! a chained encoding (`Content-Encoding: gzip, br`) are streamed, not materialized, and are
//! budgeted too, so an inner bomb cannot burn CPU behind an outer layer that emits nothing.
//! [`reader`] hands out the same chain without the output buffer, so the envelope reader can
//! keep the items it wants and skip the rest without ever holding the whole decoded body.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};

use base64::Engine as _;

/// One content coding from a `Content-Encoding` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Identity,
    Gzip,
    /// Zlib (RFC 1950) as HTTP specifies; raw deflate (RFC 1951) is accepted when the zlib header
    /// is missing, because some clients send that under the same name.
    Deflate,
    Br,
    Zstd,
}

impl Encoding {
    /// The canonical token, used in error details.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
        }
    }
}

/// Why a body could not be decoded. `Display` is the client-facing `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The header names a coding we do not implement (or too long a chain).
    #[error("unsupported content encoding '{0}'")]
    Unsupported(String),
    /// The decoded body (or an intermediate layer of a chain) would exceed the budget.
    #[error("request body exceeded the size limit of {limit} bytes after decompression")]
    TooLarge { limit: usize },
    /// Truncated or corrupt input; the string is the complete detail ("invalid gzip body: …").
    #[error("{0}")]
    Corrupt(String),
}

impl DecodeError {
    /// HTTP status for this error. 415 would be the textbook answer for an unknown coding, but
    /// SDKs only log non-200s and Relay answers 400, so we do too.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::Unsupported(_) | DecodeError::Corrupt(_) => 400,
            DecodeError::TooLarge { .. } => 413,
        }
    }
}

/// Longest chain we decode. Real clients send one coding; a long chain is only a way to
/// multiply work per request.
const MAX_CHAIN: usize = 4;

/// Longest header value echoed back in an `Unsupported` detail, so a client cannot make us
/// reflect an arbitrarily long string.
const MAX_ECHO: usize = 64;

/// zstd window cap: RFC 9659 limits the `zstd` content coding to an 8 MiB window (log 23);
/// without it a frame header alone could make the decoder allocate up to 128 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Output is copied in chunks of this size; it lives on the stack, not in the output budget.
const CHUNK: usize = 16 * 1024;

/// Parses a `Content-Encoding` header into the list of codings in the order they were applied.
///
/// `None`, an empty value, `identity` and `UTF-8` (sentry-java-android 2.0 sends that) decode to
/// nothing, so an empty `Vec` means "body as is". Matching is case-insensitive and trimmed.
pub fn parse_content_encoding(value: Option<&[u8]>) -> Result<Vec<Encoding>, DecodeError> {
    let Some(raw) = value else {
        return Ok(Vec::new());
    };
    let unsupported = || DecodeError::Unsupported(echo(raw));
    let text = std::str::from_utf8(raw).map_err(|_| unsupported())?;
    let mut out = Vec::new();
    for token in text.split(',') {
        let token = token.trim();
        let enc = if token.is_empty()
            || token.eq_ignore_ascii_case("identity")
            || token.eq_ignore_ascii_case("utf-8")
        {
            continue;
        } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Encoding::Gzip
        } else if token.eq_ignore_ascii_case("deflate") {
            Encoding::Deflate
        } else if token.eq_ignore_ascii_case("br") {
            Encoding::Br
        } else if token.eq_ignore_ascii_case("zstd") {
            Encoding::Zstd
        } else {
            return Err(DecodeError::Unsupported(echo(token.as_bytes())));
        };
        if out.len() == MAX_CHAIN {
            return Err(unsupported());
        }
        out.push(enc);
    }
    Ok(out)
}

/// Decodes `body`, which had `encodings` applied in order, into at most `limit` bytes.
///
/// An empty body decodes to an empty body whatever the coding (the envelope layer reports
/// "empty request body", which is the more useful message).
pub fn decode(body: &[u8], encodings: &[Encoding], limit: usize) -> Result<Vec<u8>, DecodeError> {
    decode_cow(body, encodings, limit).map(Cow::into_owned)
}

/// Like [`decode`], but borrows `body` when nothing needs decoding (no coding, or identity only).
pub fn decode_cow<'a>(
    body: &'a [u8],
    encodings: &[Encoding],
    limit: usize,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    if real_encodings(encodings).is_empty() || body.is_empty() {
        if body.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        return Ok(Cow::Borrowed(body));
    }
    let mut top = reader(body, encodings, limit)?;
    let hint = body.len().saturating_mul(4);
    read_capped(&mut top, limit, hint)
        .map(Cow::Owned)
        .map_err(|e| read_error(e, encodings, limit))
}

/// A decoder over `body`, which had `encodings` applied in order, whose total output is capped
/// at `limit` bytes: reading past it fails with an `io::Error` that [`read_error`] classifies as
/// [`DecodeError::TooLarge`].
///
/// This is [`decode`] without the output buffer, for callers that look at the decoded bytes
/// once and keep only some of them (the envelope reader skips items it drops). Data after the
/// end of a compressed stream is an error once the reader is read to its end. Without a real
/// coding (or with an empty body) the reader reads `body` itself, and a body over `limit` is
/// refused here rather than while reading, as [`decode`] refuses it.
pub fn reader<'a>(
    body: &'a [u8],
    encodings: &[Encoding],
    limit: usize,
) -> Result<Box<dyn BufRead + 'a>, DecodeError> {
    let real = real_encodings(encodings);
    if real.is_empty() || body.is_empty() {
        if body.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        return Ok(Box::new(body));
    }
    if real.len() > MAX_CHAIN {
        return Err(DecodeError::Unsupported(
            real.iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    // Codings were applied left to right, so the last one is the outermost: decode it first.
    // Every layer, the last included, gets the same budget as the final output (so an inner
    // bomb stops behind an outer layer that emits little) and is buffered so the next decoder,
    // or the caller, can read it as `BufRead`.
    let mut layer: Box<dyn BufRead + 'a> = Box::new(body);
    for enc in real.iter().rev() {
        let decoded = Labeled {
            inner: decoder(*enc, layer).map_err(|e| classify(e, *enc, limit))?,
            enc: *enc,
        };
        layer = Box::new(BufReader::with_capacity(
            CHUNK,
            Budget {
                inner: decoded,
                remaining: limit,
            },
        ));
    }
    Ok(layer)
}

/// Classifies an `io::Error` that reading from [`reader`] (over the same `encodings` and
/// `limit`) surfaced, as [`decode`] would have: [`DecodeError::TooLarge`] past the budget,
/// otherwise [`DecodeError::Corrupt`] naming the layer that failed ("invalid gzip body: …").
pub fn read_error(e: io::Error, encodings: &[Encoding], limit: usize) -> DecodeError {
    // An error no layer tagged is attributed to the innermost coding, the one read last.
    let innermost = encodings
        .iter()
        .copied()
        .find(|e| *e != Encoding::Identity)
        .unwrap_or(Encoding::Identity);
    classify(e, innermost, limit)
}

/// The codings that do something, in the order they were applied.
fn real_encodings(encodings: &[Encoding]) -> Vec<Encoding> {
    encodings
        .iter()
        .copied()
        .filter(|e| *e != Encoding::Identity)
        .collect()
}

/// Decodes a legacy `/store/` body that came without `Content-Encoding`.
///
/// Old SDKs (raven-python, raven-js) sent base64 of zlib-compressed JSON with no header saying
/// so (reference section 3.1). JSON (first non-space byte `{`) is returned as is; otherwise we
/// try base64 (whitespace tolerated, padding optional, standard or URL-safe alphabet) and then
/// zlib or raw deflate, and as a last resort inflate the raw bytes themselves.
pub fn decode_store_body(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let trimmed = body.get(start..).unwrap_or_default();
    if trimmed.is_empty() {
        return Err(DecodeError::Corrupt("empty request body".to_owned()));
    }
    if trimmed.first() == Some(&b'{') {
        if body.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        return Ok(body.to_vec());
    }

    if let Some(decoded) = base64_lenient(trimmed) {
        match decode(&decoded, &[Encoding::Deflate], limit) {
            Ok(out) => return Ok(out),
            Err(e @ DecodeError::TooLarge { .. }) => return Err(e),
            Err(_) => {}
        }
        // base64 of plain JSON: not documented, but harmless to accept.
        if decoded.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            if decoded.len() > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            return Ok(decoded);
        }
    }
    match decode(trimmed, &[Encoding::Deflate], limit) {
        Ok(out) => Ok(out),
        Err(e @ DecodeError::TooLarge { .. }) => Err(e),
        Err(_) => Err(DecodeError::Corrupt(
            "invalid store body: expected JSON, or base64 of zlib-compressed JSON".to_owned(),
        )),
    }
}

/// Base64 with ASCII whitespace (line wrapping) removed, either alphabet, padding optional.
fn base64_lenient(input: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);

    // The copy is at most the size of the body, which the HTTP layer has already bounded.
    let compact: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STD.decode(&compact).or_else(|_| URL.decode(&compact)).ok()
}

/// Builds the decoder for one layer. Each decoder is wrapped so that data after the end of the
/// compressed stream is an error instead of being silently dropped.
fn decoder<'a>(enc: Encoding, inner: Box<dyn BufRead + 'a>) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match enc {
        Encoding::Identity => Box::new(inner),
        // Multi-member gzip is legal (and what `cat a.gz b.gz` produces); MultiGzDecoder rejects
        // anything after a member that is not another gzip header.
        Encoding::Gzip => Box::new(StrictEnd::new(
            flate2::bufread::MultiGzDecoder::new(inner),
            |d: &mut flate2::bufread::MultiGzDecoder<_>| inner_exhausted(d.get_mut()),
        )),
        Encoding::Deflate => {
            let (head, rest) = peek2(inner)?;
            let zlib = is_zlib_header(&head);
            let chained: Box<dyn BufRead + 'a> = Box::new(Cursor::new(head).chain(rest));
            if zlib {
                Box::new(StrictEnd::new(
                    flate2::bufread::ZlibDecoder::new(chained),
                    |d: &mut flate2::bufread::ZlibDecoder<_>| inner_exhausted(d.get_mut()),
                ))
            } else {
                Box::new(StrictEnd::new(
                    flate2::bufread::DeflateDecoder::new(chained),
                    |d: &mut flate2::bufread::DeflateDecoder<_>| inner_exhausted(d.get_mut()),
                ))
            }
        }
        Encoding::Br => Box::new(StrictEnd::new(
            brotli_decompressor::Decompressor::new(inner, CHUNK),
            |d: &mut brotli_decompressor::Decompressor<_>| {
                // The decompressor reports bytes left in its own buffer only on the read after
                // the one that returned 0; bytes still in the source are checked below.
                let mut probe = [0u8; 1];
                if d.read(&mut probe)? != 0 {
                    return Err(trailing());
                }
                inner_exhausted(d.get_mut())
            },
        )),
        Encoding::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(inner)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(StrictEnd::new(
                d,
                |d: &mut zstd::stream::read::Decoder<'static, _>| inner_exhausted(d.get_mut()),
            ))
        }
    })
}

/// Reads up to two bytes so the deflate layer can tell zlib from raw deflate, and hands them
/// back to be replayed in front of the rest.
fn peek2<'a>(mut inner: Box<dyn BufRead + 'a>) -> io::Result<(Vec<u8>, Box<dyn BufRead + 'a>)> {
    let mut head = Vec::with_capacity(2);
    while head.len() < 2 {
        let buf = inner.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let take = buf.len().min(2 - head.len());
        head.extend_from_slice(buf.get(..take).unwrap_or_default());
        inner.consume(take);
    }
    Ok((head, inner))
}

/// RFC 1950 header: method 8 (deflate), window at most 32 KiB, check bits make it a multiple of 31.
fn is_zlib_header(head: &[u8]) -> bool {
    match head {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8 && cmf >> 4 <= 7 && ((u16::from(*cmf) << 8) | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

fn inner_exhausted<B: BufRead + ?Sized>(inner: &mut B) -> io::Result<()> {
    if inner.fill_buf()?.is_empty() {
        Ok(())
    } else {
        Err(trailing())
    }
}

fn trailing() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "unexpected data after the end of the compressed stream",
    )
}

/// Runs `check` once when the decoder first reports end of stream.
struct StrictEnd<D> {
    dec: D,
    check: fn(&mut D) -> io::Result<()>,
    done: bool,
}

impl<D> StrictEnd<D> {
    fn new(dec: D, check: fn(&mut D) -> io::Result<()>) -> Self {
        StrictEnd {
            dec,
            check,
            done: false,
        }
    }
}

impl<D: Read> Read for StrictEnd<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.dec.read(buf)?;
        if n == 0 {
            (self.check)(&mut self.dec)?;
            self.done = true;
        }
        Ok(n)
    }
}

/// Marker carried inside `io::Error` when a layer exceeds its budget.
#[derive(Debug)]
struct Overflow;

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("size limit exceeded")
    }
}

impl std::error::Error for Overflow {}

/// A decoder failure attributed to the layer it happened in, so a chain names the right coding.
#[derive(Debug)]
struct LayerFailed {
    enc: Encoding,
    reason: String,
}

impl fmt::Display for LayerFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} body: {}", self.enc.as_str(), self.reason)
    }
}

impl std::error::Error for LayerFailed {}

/// Tags errors from `inner` with `enc`, leaving already-tagged errors and overflows alone.
struct Labeled<R> {
    inner: R,
    enc: Encoding,
}

impl<R: Read> Read for Labeled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if is_marked(&e) {
                e
            } else {
                io::Error::other(LayerFailed {
                    enc: self.enc,
                    reason: describe(&e),
                })
            }
        })
    }
}

/// Fails with `Overflow` once more than `remaining` bytes have passed through.
struct Budget<R> {
    inner: R,
    remaining: usize,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > self.remaining {
            return Err(io::Error::other(Overflow));
        }
        self.remaining -= n;
        Ok(n)
    }
}

fn is_marked(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<Overflow>() || inner.is::<LayerFailed>())
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "unexpected end of data".to_owned(),
        _ => e.to_string(),
    }
}

fn classify(e: io::Error, outer: Encoding, limit: usize) -> DecodeError {
    if let Some(inner) = e.get_ref() {
        if inner.is::<Overflow>() {
            return DecodeError::TooLarge { limit };
        }
        if let Some(failed) = inner.downcast_ref::<LayerFailed>() {
            return DecodeError::Corrupt(failed.to_string());
        }
    }
    DecodeError::Corrupt(format!("invalid {} body: {}", outer.as_str(), describe(&e)))
}

/// Reads `r` to the end into a buffer whose capacity never exceeds `limit`.
///
/// `read_to_end` would double the buffer past the limit before noticing; here capacity grows
/// geometrically but is clamped at `limit`, and the first byte past it is an error.
fn read_capped(r: &mut dyn Read, limit: usize, hint: usize) -> io::Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    // `hint` comes from the input size, so it is clamped by the budget (and a sane maximum)
    // before it drives an allocation.
    let initial = hint.min(limit).min(1 << 20);
    out.try_reserve_exact(initial).map_err(io::Error::other)?;
    let mut chunk = [0u8; CHUNK];
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let data = chunk.get(..n).unwrap_or_default();
        if data.len() > limit - out.len() {
            return Err(io::Error::other(Overflow));
        }
        let needed = out.len() + data.len();
        if needed > out.capacity() {
            let target = needed.max(out.capacity().saturating_mul(2)).min(limit);
            out.try_reserve_exact(target - out.len())
                .map_err(io::Error::other)?;
        }
        out.extend_from_slice(data);
    }
}

/// A printable, bounded rendering of a client-supplied header value for an error detail.
fn echo(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_ECHO)
        .collect();
    if text.trim().chars().count() > MAX_ECHO {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 4, 22);
            w.write_all(data).unwrap();
        }
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    fn encode(enc: Encoding, data: &[u8]) -> Vec<u8> {
        match enc {
            Encoding::Identity => data.to_vec(),
            Encoding::Gzip => gzip(data),
            Encoding::Deflate => zlib(data),
            Encoding::Br => br(data),
            Encoding::Zstd => zstd(data),
        }
    }

    const ALL: [Encoding; 4] = [
        Encoding::Gzip,
        Encoding::Deflate,
        Encoding::Br,
        Encoding::Zstd,
    ];

    #[test]
    fn parses_content_encoding_headers() {
        use Encoding::*;
        let cases: &[(Option<&[u8]>, &[Encoding])] = &[
            (None, &[]),
            (Some(b""), &[]),
            (Some(b"  "), &[]),
            (Some(b"identity"), &[]),
            (Some(b"UTF-8"), &[]),
            (Some(b"utf-8"), &[]),
            (Some(b"gzip"), &[Gzip]),
            (Some(b" GZIP "), &[Gzip]),
            (Some(b"x-gzip"), &[Gzip]),
            (Some(b"deflate"), &[Deflate]),
            (Some(b"br"), &[Br]),
            (Some(b"Br"), &[Br]),
            (Some(b"zstd"), &[Zstd]),
            (Some(b"deflate, gzip"), &[Deflate, Gzip]),
            (Some(b"gzip,identity"), &[Gzip]),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_content_encoding(*value).as_deref(),
                Ok(*want),
                "{value:?}"
            );
        }
    }

    #[test]
    fn rejects_unknown_encodings_with_400() {
        for value in [
            &b"compress"[..],
            b"bzip2",
            b"gzip, lz4",
            b"\xff\xfe",
            b"gzip,gzip,gzip,gzip,gzip",
        ] {
            let err = parse_content_encoding(Some(value)).unwrap_err();
            assert!(matches!(err, DecodeError::Unsupported(_)), "{value:?}");
            assert_eq!(err.status(), 400);
        }
        let err = parse_content_encoding(Some(b"compress")).unwrap_err();
        assert_eq!(err.to_string(), "unsupported content encoding 'compress'");
        let long = vec![b'a'; 10_000];
        let err = parse_content_encoding(Some(&long)).unwrap_err();
        assert!(err.to_string().len() < 200);
    }

    #[test]
    fn round_trips_every_encoding() {
        let data = br#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}"#.repeat(50);
        for enc in ALL {
            let body = encode(enc, &data);
            assert_eq!(decode(&body, &[enc], 1 << 20).unwrap(), data, "{enc:?}");
        }
        assert_eq!(decode(&data, &[], 1 << 20).unwrap(), data);
        assert!(matches!(
            decode_cow(&data, &[Encoding::Identity], 1 << 20),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn deflate_falls_back_to_raw_deflate() {
        let data = b"hello hello hello raw deflate".repeat(10);
        let body = raw_deflate(&data);
        assert_eq!(decode(&body, &[Encoding::Deflate], 1 << 20).unwrap(), data);
    }

    #[test]
    fn decodes_chains_in_reverse() {
        let data = b"chained body ".repeat(100);
        // Applied gzip first, then br: the header says "gzip, br".
        let body = br(&gzip(&data));
        let encs = parse_content_encoding(Some(b"gzip, br")).unwrap();
        assert_eq!(decode(&body, &encs, 1 << 20).unwrap(), data);
        let err = decode(&body, &[Encoding::Br, Encoding::Gzip], 1 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt(_)));
    }

    #[test]
    fn enforces_the_limit_exactly() {
        let data = vec![b'x'; 1000];
        for enc in ALL {
            let body = encode(enc, &data);
            assert_eq!(decode(&body, &[enc], 1000).unwrap().len(), 1000);
            let err = decode(&body, &[enc], 999).unwrap_err();
            assert_eq!(err, DecodeError::TooLarge { limit: 999 }, "{enc:?}");
            assert_eq!(err.status(), 413);
        }
        assert_eq!(
            decode(&data, &[], 999).unwrap_err(),
            DecodeError::TooLarge { limit: 999 }
        );
    }

    #[test]
    fn corrupt_and_truncated_bodies_are_400() {
        let data = b"some payload that compresses ".repeat(40);
        for enc in ALL {
            let body = encode(enc, &data);
            let truncated = &body[..body.len() / 2];
            let err = decode(truncated, &[enc], 1 << 20).unwrap_err();
            assert!(matches!(err, DecodeError::Corrupt(_)), "{enc:?}: {err:?}");
            assert_eq!(err.status(), 400);
            let want = format!("invalid {} body: ", enc.as_str());
            assert!(err.to_string().starts_with(&want), "{err}");

            let mut junk = body.clone();
            junk.extend_from_slice(b"junk after the stream");
            let err = decode(&junk, &[enc], 1 << 20).unwrap_err();
            assert!(matches!(err, DecodeError::Corrupt(_)), "{enc:?}: {err:?}");
        }
        let err = decode(b"not compressed at all", &[Encoding::Gzip], 100).unwrap_err();
        assert!(err.to_string().starts_with("invalid gzip body: "), "{err}");
    }

    #[test]
    fn accepts_multi_member_gzip() {
        let mut body = gzip(b"first ");
        body.extend(gzip(b"second"));
        assert_eq!(
            decode(&body, &[Encoding::Gzip], 100).unwrap(),
            b"first second"
        );
    }

    #[test]
    fn empty_body_decodes_to_empty() {
        for enc in ALL {
            assert_eq!(decode(b"", &[enc], 10).unwrap(), b"");
        }
    }

    /// 1 GiB of zeros, gzipped with a streaming encoder, against a 1 MiB budget.
    #[test]
    fn gzip_bomb_fails_fast() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 2 << 20, "{}", bomb.len());
        let start = std::time::Instant::now();
        let err = decode(&bomb, &[Encoding::Gzip], 1 << 20).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { limit: 1 << 20 });
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn bombs_in_every_encoding_and_in_chains_are_too_large() {
        let zeros = vec![0u8; 32 << 20];
        for enc in ALL {
            let bomb = encode(enc, &zeros);
            let err = decode(&bomb, &[enc], 1 << 20).unwrap_err();
            assert_eq!(err, DecodeError::TooLarge { limit: 1 << 20 }, "{enc:?}");
        }
        // The inner layer is the bomb; the outer one is small. The intermediate budget stops it.
        let bomb = br(&gzip(&zeros));
        let err = decode(&bomb, &[Encoding::Gzip, Encoding::Br], 64 << 10).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { limit: 64 << 10 });
    }

    /// A zstd frame may declare a window of up to 2 GiB; the decoder must refuse windows above
    /// the 8 MiB HTTP cap instead of allocating them.
    #[test]
    fn zstd_frames_with_huge_windows_are_refused() {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.window_log(27).unwrap();
        enc.long_distance_matching(true).unwrap();
        for _ in 0..4 {
            enc.write_all(&[7u8; 64 * 1024]).unwrap();
            enc.flush().unwrap();
        }
        let body = enc.finish().unwrap();
        let err = decode(&body, &[Encoding::Zstd], 100 << 20).unwrap_err();
        assert!(
            matches!(&err, DecodeError::Corrupt(m) if m.starts_with("invalid zstd body: ") && m.contains("memory")),
            "{err:?}"
        );
    }

    /// Reads `reader(..)` to the end the way a caller would, classifying failures.
    fn read_all(body: &[u8], encs: &[Encoding], limit: usize) -> Result<Vec<u8>, DecodeError> {
        let mut r = reader(body, encs, limit)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(|e| read_error(e, encs, limit))?;
        Ok(out)
    }

    #[test]
    fn reader_streams_what_decode_returns() {
        let data = b"streamed body, line by line\n".repeat(200);
        for enc in ALL {
            let body = encode(enc, &data);
            assert_eq!(
                read_all(&body, &[enc], data.len()).unwrap(),
                data,
                "{enc:?}"
            );
            // One byte under: too large, while reading.
            assert_eq!(
                read_all(&body, &[enc], data.len() - 1).unwrap_err(),
                DecodeError::TooLarge {
                    limit: data.len() - 1
                },
                "{enc:?}"
            );
            // Truncated, or followed by junk: the same corrupt error as `decode`.
            let mut junk = body.clone();
            junk.extend_from_slice(b"junk after the stream");
            for bad in [&body[..body.len() / 2], &junk[..]] {
                let err = read_all(bad, &[enc], 1 << 20).unwrap_err();
                assert_eq!(err, decode(bad, &[enc], 1 << 20).unwrap_err(), "{enc:?}");
                let want = format!("invalid {} body: ", enc.as_str());
                assert!(err.to_string().starts_with(&want), "{err}");
            }
        }
        // Without a coding the body is read as is, and one over the limit is refused up front.
        for encs in [&[][..], &[Encoding::Identity]] {
            assert_eq!(read_all(&data, encs, data.len()).unwrap(), data);
            assert!(matches!(
                reader(&data, encs, data.len() - 1),
                Err(DecodeError::TooLarge { .. })
            ));
        }
        for enc in ALL {
            assert_eq!(read_all(b"", &[enc], 0).unwrap(), b"");
        }
        // Too long a chain is refused before reading, as `decode` refuses it.
        let chain = [Encoding::Gzip; 5];
        assert_eq!(
            reader(&gzip(b"x"), &chain, 100).err(),
            decode(&gzip(b"x"), &chain, 100).err()
        );
    }

    #[test]
    fn reader_names_the_layer_that_failed() {
        let data = b"chained body ".repeat(100);
        let encs = [Encoding::Gzip, Encoding::Br];
        assert_eq!(read_all(&br(&gzip(&data)), &encs, 1 << 20).unwrap(), data);
        // The outer br layer is fine; the gzip inside it is cut short.
        let inner = gzip(&data);
        let body = br(&inner[..inner.len() - 4]);
        let err = read_all(&body, &encs, 1 << 20).unwrap_err();
        assert!(err.to_string().starts_with("invalid gzip body: "), "{err}");
        assert_eq!(err, decode(&body, &encs, 1 << 20).unwrap_err());
        // A bomb inside the chain stops at the budget of its layer.
        let bomb = br(&gzip(&vec![0u8; 8 << 20]));
        assert_eq!(
            read_all(&bomb, &encs, 64 << 10).unwrap_err(),
            DecodeError::TooLarge { limit: 64 << 10 }
        );
    }

    #[test]
    fn store_bodies() {
        use base64::engine::general_purpose::STANDARD;
        let json = br#"{"message":"hello","level":"error"}"#;
        assert_eq!(decode_store_body(json, 1000).unwrap(), json);
        let padded = [&b"  \n"[..], json].concat();
        assert_eq!(decode_store_body(&padded, 1000).unwrap(), padded);

        let b64 = STANDARD.encode(zlib(json));
        assert_eq!(decode_store_body(b64.as_bytes(), 1000).unwrap(), json);
        // Line-wrapped base64 and unpadded base64.
        let wrapped: String = b64
            .as_bytes()
            .chunks(16)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        assert_eq!(decode_store_body(wrapped.as_bytes(), 1000).unwrap(), json);
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(decode_store_body(unpadded.as_bytes(), 1000).unwrap(), json);
        // base64 of raw deflate, raw zlib without base64.
        let raw = STANDARD.encode(raw_deflate(json));
        assert_eq!(decode_store_body(raw.as_bytes(), 1000).unwrap(), json);
        assert_eq!(decode_store_body(&zlib(json), 1000).unwrap(), json);

        let err = decode_store_body(b"this is not an event", 1000).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("invalid store body"), "{err}");
        assert_eq!(decode_store_body(b"", 1000).unwrap_err().status(), 400);
        assert_eq!(
            decode_store_body(json, 10).unwrap_err(),
            DecodeError::TooLarge { limit: 10 }
        );
        let bomb = STANDARD.encode(zlib(&vec![b' '; 1 << 20]));
        assert_eq!(
            decode_store_body(bomb.as_bytes(), 1000).unwrap_err(),
            DecodeError::TooLarge { limit: 1000 }
        );
    }

    fn fixture_dirs() -> Vec<PathBuf> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sdk-captures");
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if path.join("meta.json").exists() {
                        out.push(path);
                    } else {
                        stack.push(path);
                    }
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_captured_body_decodes_to_its_recorded_bytes() {
        let dirs = fixture_dirs();
        assert!(dirs.len() >= 20, "fixtures missing: {}", dirs.len());
        for dir in dirs {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
            let header = meta["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| {
                    h[0].as_str()
                        .unwrap()
                        .eq_ignore_ascii_case("content-encoding")
                })
                .map(|h| h[1].as_str().unwrap().to_owned());
            let encs = parse_content_encoding(header.as_deref().map(str::as_bytes)).unwrap();
            let body = std::fs::read(dir.join("body.bin")).unwrap();
            let want = std::fs::read(dir.join("body.decoded")).unwrap();
            let got = decode(&body, &encs, 100 << 20).unwrap();
            assert_eq!(got, want, "{}", dir.display());
        }
    }
}
