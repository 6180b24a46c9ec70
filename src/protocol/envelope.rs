//! Sentry envelope parsing (reference section 2): header line, items, zero-copy payload slices.
//!
//! The parser follows Relay's `Item::parse`: each header is one JSON object on one line, ended
//! by `\n` or EOF; a payload is either exactly `length` bytes (then `\n` or EOF) or runs to the
//! next `\n`. Payloads and raw headers are borrowed from the input. Nothing here allocates in
//! proportion to a number read from the input.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::io::{self, BufRead};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// A header line longer than this is malformed. Real headers are a few hundred bytes (the
/// envelope header with a DSC `trace` is the biggest); this keeps a newline-free body from
/// being handed to the JSON parser as one giant header.
pub const MAX_HEADER_LEN: usize = 64 * 1024;

/// Hard cap on items per envelope, enforced while parsing so the item list stays small whatever
/// the body size. [`Limits::max_items`] is the (lower) policy cap checked afterwards.
pub const MAX_ITEMS: usize = 10_000;

/// A parsed envelope. Unknown header attributes (`sdk`, `trace`, …) stay in `header`.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<'a> {
    /// Normalized to 32 lowercase hex characters (SDKs such as Rust send the dashed form).
    pub event_id: Option<String>,
    pub dsn: Option<String>,
    /// `sent_at` as unix seconds, for clock-drift correction; `None` when absent or unreadable.
    pub sent_at: Option<f64>,
    pub items: Vec<Item<'a>>,
    /// The raw envelope header JSON (without the newline).
    pub header: &'a [u8],
}

/// One envelope item, borrowing from the request body.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    pub ty: ItemType,
    /// The `length` the header declared, if any.
    pub length: Option<usize>,
    pub payload: &'a [u8],
    /// The raw item header JSON (without the newline); other attributes such as `filename`
    /// and `content_type` are read from here by whoever needs them.
    pub header: &'a [u8],
}

/// Item types we distinguish; everything else is kept by name so the caller can skip it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ItemType {
    Event,
    Transaction,
    Attachment,
    Session,
    Sessions,
    ClientReport,
    CheckIn,
    UserReport,
    Feedback,
    Span,
    Log,
    Profile,
    /// Any other type string (`replay_event`, `statsd`, `profile_chunk`, …), verbatim.
    Other(String),
}

impl ItemType {
    pub fn from_name(name: &str) -> ItemType {
        match name {
            "event" => ItemType::Event,
            "transaction" => ItemType::Transaction,
            "attachment" => ItemType::Attachment,
            "session" => ItemType::Session,
            "sessions" => ItemType::Sessions,
            "client_report" => ItemType::ClientReport,
            "check_in" => ItemType::CheckIn,
            "user_report" => ItemType::UserReport,
            "feedback" => ItemType::Feedback,
            "span" => ItemType::Span,
            "log" => ItemType::Log,
            "profile" => ItemType::Profile,
            other => ItemType::Other(other.to_owned()),
        }
    }

    /// The wire name, as used in the `type` header and in error details.
    pub fn as_str(&self) -> &str {
        match self {
            ItemType::Event => "event",
            ItemType::Transaction => "transaction",
            ItemType::Attachment => "attachment",
            ItemType::Session => "session",
            ItemType::Sessions => "sessions",
            ItemType::ClientReport => "client_report",
            ItemType::CheckIn => "check_in",
            ItemType::UserReport => "user_report",
            ItemType::Feedback => "feedback",
            ItemType::Span => "span",
            ItemType::Log => "log",
            ItemType::Profile => "profile",
            ItemType::Other(name) => name,
        }
    }
}

impl fmt::Display for ItemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an envelope was rejected. `Display` is the client-facing `detail`; the
/// "invalid event envelope" prefix is Relay's wording for every framing error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("empty request body")]
    Empty,
    #[error("invalid event envelope: header line longer than {MAX_HEADER_LEN} bytes")]
    HeaderTooLong,
    #[error("invalid event envelope: header is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid event envelope: invalid envelope header: {0}")]
    InvalidHeader(String),
    #[error("invalid event envelope: duplicate key '{0}' in header")]
    DuplicateKey(String),
    #[error("invalid event envelope: invalid event_id")]
    InvalidEventId,
    #[error("invalid event envelope: invalid item header: {0}")]
    InvalidItemHeader(String),
    #[error("invalid event envelope: item header has no type")]
    MissingItemType,
    #[error("invalid event envelope: item length is not a non-negative integer")]
    InvalidLength,
    #[error("invalid event envelope: unexpected end of input: item declares {declared} bytes, {available} available")]
    UnexpectedEof { declared: usize, available: usize },
    #[error("invalid event envelope: expected a newline after the item payload")]
    MissingNewline,
    #[error("invalid event envelope: more than one event item")]
    DuplicateEvent,
    #[error("invalid event envelope: more than {0} items")]
    TooManyItems(usize),
    /// An item is larger than [`Limits`] allows (Relay's `Overflow`, answered with 413).
    #[error("envelope exceeded size limits for type '{0}'")]
    TooLarge(String),
}

impl EnvelopeError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            EnvelopeError::TooLarge(_) => 413,
            _ => 400,
        }
    }
}

/// Parses an envelope. Errors are framing errors; item payloads are not looked at.
pub fn parse(bytes: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    if bytes.is_empty() {
        return Err(EnvelopeError::Empty);
    }
    let (header, mut pos) = header_line(bytes, 0)?;
    let fields = parse_envelope_header(header)?;
    let mut env = Envelope {
        event_id: fields.event_id,
        dsn: fields.dsn,
        sent_at: fields.sent_at,
        items: Vec::new(),
        header,
    };

    let mut events = 0usize;
    while pos < bytes.len() {
        if env.items.len() == MAX_ITEMS {
            return Err(EnvelopeError::TooManyItems(MAX_ITEMS));
        }
        let (item, next) = parse_item(bytes, pos)?;
        if item.ty == ItemType::Event {
            events += 1;
            if events > 1 {
                return Err(EnvelopeError::DuplicateEvent);
            }
        }
        env.items.push(item);
        pos = next;
    }
    Ok(env)
}

/// Returns the header line starting at `start` (without its `\n`) and the offset after the
/// `\n` (or the input length at EOF).
fn header_line(bytes: &[u8], start: usize) -> Result<(&[u8], usize), EnvelopeError> {
    let rest = bytes.get(start..).unwrap_or_default();
    let window = rest.get(..MAX_HEADER_LEN + 1).unwrap_or(rest);
    match window.iter().position(|&b| b == b'\n') {
        Some(nl) => Ok((
            rest.get(..nl).unwrap_or_default(),
            start.saturating_add(nl).saturating_add(1),
        )),
        None if rest.len() > MAX_HEADER_LEN => Err(EnvelopeError::HeaderTooLong),
        None => Ok((rest, bytes.len())),
    }
}

/// Parses the item whose header starts at `start`; returns it and where the next one starts.
fn parse_item(bytes: &[u8], start: usize) -> Result<(Item<'_>, usize), EnvelopeError> {
    let (header, payload_start) = header_line(bytes, start)?;
    let fields = parse_item_header(header)?;
    let rest = bytes.get(payload_start..).unwrap_or_default();
    let (payload, next) = match fields.length {
        Some(len) => {
            let payload = rest.get(..len).ok_or(EnvelopeError::UnexpectedEof {
                declared: len,
                available: rest.len(),
            })?;
            match rest.get(len) {
                None | Some(b'\n') => (payload, payload_start + len + 1),
                Some(_) => return Err(EnvelopeError::MissingNewline),
            }
        }
        None => match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (rest.get(..nl).unwrap_or_default(), payload_start + nl + 1),
            None => (rest, bytes.len()),
        },
    };
    Ok((
        Item {
            ty: fields.ty,
            length: fields.length,
            payload,
            header,
        },
        next,
    ))
}

/// Accepts 32 hex digits or a 36-character dashed UUID (any case) and returns 32 lowercase hex.
pub fn normalize_event_id(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let hex: Vec<u8> = match b.len() {
        32 => b.to_vec(),
        36 => {
            let dashes_ok = [8, 13, 18, 23].iter().all(|&i| b.get(i) == Some(&b'-'));
            if !dashes_ok {
                return None;
            }
            b.iter().copied().filter(|&c| c != b'-').collect()
        }
        _ => return None,
    };
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(hex.iter().map(|c| c.to_ascii_lowercase() as char).collect())
}

/// Per-item size policy: the largest payload each item type may have, and the item count.
/// Defaults follow the Sentry docs and Relay's `Limits` (reference section 3.2); an item is
/// measured as sent, so compressed replay recordings are measured compressed. [`Limits::max_for`]
/// maps a type to its limit, and both [`check_limits`] and [`read`] ask it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `event`, `transaction`, `span`, `feedback`, `user_report`, `replay_event`, `statsd`,
    /// `metric_buckets`: 1 MiB.
    pub max_event: usize,
    /// `check_in`: 100 KiB.
    pub max_check_in: usize,
    /// Each `attachment`: 100 MiB (the documented limit; Relay's newest default is 200 MiB).
    pub max_attachment: usize,
    /// `profile`, `profile_chunk`: 50 MiB.
    pub max_profile: usize,
    /// `replay_recording`, `replay_video`: 10 MiB (Relay's `max_replay_compressed_size`).
    pub max_replay: usize,
    /// `session`, `sessions`: 10 MiB (Relay's `max_sessions_size`).
    pub max_sessions: usize,
    /// `client_report`: 100 KiB.
    pub max_client_report: usize,
    /// `log`: 2 MiB.
    pub max_log: usize,
    /// Every other type, unknown ones included: 50 MiB, the largest documented per-item limit
    /// after attachments.
    pub max_other: usize,
    /// Items per envelope.
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const KIB: usize = 1024;
        const MIB: usize = 1024 * 1024;
        Limits {
            max_event: MIB,
            max_check_in: 100 * KIB,
            max_attachment: 100 * MIB,
            max_profile: 50 * MIB,
            max_replay: 10 * MIB,
            max_sessions: 10 * MIB,
            max_client_report: 100 * KIB,
            max_log: 2 * MIB,
            max_other: 50 * MIB,
            max_items: 1000,
        }
    }
}

impl Limits {
    /// The largest payload, in bytes, an item of type `ty` may have.
    pub fn max_for(&self, ty: &ItemType) -> usize {
        match ty {
            ItemType::Event
            | ItemType::Transaction
            | ItemType::Span
            | ItemType::Feedback
            | ItemType::UserReport => self.max_event,
            ItemType::CheckIn => self.max_check_in,
            ItemType::Attachment => self.max_attachment,
            ItemType::Profile => self.max_profile,
            ItemType::Session | ItemType::Sessions => self.max_sessions,
            ItemType::ClientReport => self.max_client_report,
            ItemType::Log => self.max_log,
            ItemType::Other(name) => match name.as_str() {
                // Relay counts replay events against the event size, and statsd and metric
                // buckets have limits of the same 1 MiB.
                "replay_event" | "statsd" | "metric_buckets" => self.max_event,
                "profile_chunk" => self.max_profile,
                "replay_recording" | "replay_video" => self.max_replay,
                _ => self.max_other,
            },
        }
    }
}

/// Checks item count and per-item payload sizes. An oversized item fails the whole request with
/// 413, as Relay does: dropping it silently would lose an event the SDK believes was sent.
pub fn check_limits(env: &Envelope, limits: &Limits) -> Result<(), EnvelopeError> {
    if env.items.len() > limits.max_items {
        return Err(EnvelopeError::TooManyItems(limits.max_items));
    }
    for item in &env.items {
        if item.payload.len() > limits.max_for(&item.ty) {
            return Err(EnvelopeError::TooLarge(item.ty.as_str().to_owned()));
        }
    }
    Ok(())
}

// --- streaming -------------------------------------------------------------------------------

/// An envelope read from a stream by [`read`]: only the items `keep` accepted are held.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedEnvelope {
    /// Normalized as in [`Envelope::event_id`].
    pub event_id: Option<String>,
    pub dsn: Option<String>,
    pub sent_at: Option<f64>,
    /// The raw envelope header JSON (without the newline).
    pub header: Vec<u8>,
    /// The kept items, in envelope order.
    pub items: Vec<OwnedItem>,
    /// The skipped items, in envelope order.
    pub dropped: Vec<DroppedItem>,
}

impl StreamedEnvelope {
    /// A borrowed view with the kept items only, for code written against [`Envelope`].
    pub fn as_envelope(&self) -> Envelope<'_> {
        Envelope {
            event_id: self.event_id.clone(),
            dsn: self.dsn.clone(),
            sent_at: self.sent_at,
            items: self.items.iter().map(OwnedItem::as_item).collect(),
            header: &self.header,
        }
    }
}

/// A kept item, copied out of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedItem {
    pub ty: ItemType,
    /// The `length` the header declared, if any.
    pub length: Option<usize>,
    /// The raw item header JSON (without the newline).
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
}

impl OwnedItem {
    /// The same item as [`parse`] returns it, borrowing from this one.
    pub fn as_item(&self) -> Item<'_> {
        Item {
            ty: self.ty.clone(),
            length: self.length,
            payload: &self.payload,
            header: &self.header,
        }
    }
}

/// An item that was skipped: its type and payload size (for counters and rate-limit categories).
/// The name of an unknown type is cut to [`MAX_DROPPED_NAME`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedItem {
    pub ty: ItemType,
    pub bytes: usize,
}

/// Why [`read`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The envelope itself is malformed or over a limit.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The source failed (a decoder found corrupt data, or its output passed its budget); the
    /// caller classifies it, with `compression::read_error` for a `compression::reader`.
    #[error(transparent)]
    Source(io::Error),
}

/// Longest unknown type name a [`DroppedItem`] keeps. Real names are short; without a cap a
/// client could make the dropped list hold up to a header line per item.
pub const MAX_DROPPED_NAME: usize = 64;

/// Reads an envelope from `src` item by item, holding only the items `keep` accepts.
///
/// The grammar and the errors are those of [`parse`] followed by [`check_limits`], with one
/// difference: an item over its type's limit is refused as soon as that is known (a declared
/// `length` over the limit before any of the payload is read, a payload without `length` once
/// it passes the limit), so `TooLarge` can come where `parse` would have reported an error
/// further on, or `UnexpectedEof` for a `length` the body cannot hold. Memory is bounded by
/// what is kept: a kept payload grows as its bytes arrive, never past its type's limit; a
/// dropped one is consumed from `src`'s own buffer and never copied; header lines are read up
/// to [`MAX_HEADER_LEN`] bytes. Items past `limits.max_items` are still framed (the envelope
/// may have an earlier-reported error further on) but not held, then refused as a whole.
///
/// On success `src` has been read to its end, so a decoder's check for data after its stream
/// has run.
pub fn read(
    src: &mut dyn BufRead,
    keep: &dyn Fn(&ItemType) -> bool,
    limits: &Limits,
) -> Result<StreamedEnvelope, ReadError> {
    if fill(src)?.is_empty() {
        return Err(EnvelopeError::Empty.into());
    }
    // One line buffer serves every header; kept items get an exact-size copy.
    let mut line = Vec::new();
    read_header_line(src, &mut line)?;
    let fields = parse_envelope_header(&line)?;
    let mut env = StreamedEnvelope {
        event_id: fields.event_id,
        dsn: fields.dsn,
        sent_at: fields.sent_at,
        header: line.clone(),
        items: Vec::new(),
        dropped: Vec::new(),
    };

    let mut count = 0usize;
    let mut events = 0usize;
    while !fill(src)?.is_empty() {
        if count == MAX_ITEMS {
            return Err(EnvelopeError::TooManyItems(MAX_ITEMS).into());
        }
        read_header_line(src, &mut line)?;
        let ItemHeader { ty, length } = parse_item_header(&line)?;
        count += 1;
        let max = limits.max_for(&ty);
        // Past the policy count the envelope will be refused, so nothing more is held.
        let counted = count <= limits.max_items;
        let hold = counted && keep(&ty);
        let mut payload = Vec::new();
        let sink = hold.then_some(&mut payload);
        let bytes = match length {
            Some(len) => {
                if len > max {
                    return Err(too_large(&ty));
                }
                copy_exact(src, len, sink)?;
                end_of_payload(src)?;
                len
            }
            None => copy_line(src, max, &ty, sink)?,
        };
        if ty == ItemType::Event {
            events += 1;
            if events > 1 {
                return Err(EnvelopeError::DuplicateEvent.into());
            }
        }
        if hold {
            env.items.push(OwnedItem {
                ty,
                length,
                header: line.clone(),
                payload,
            });
        } else if counted {
            env.dropped.push(DroppedItem {
                ty: short_name(ty),
                bytes,
            });
        }
    }
    if count > limits.max_items {
        return Err(EnvelopeError::TooManyItems(limits.max_items).into());
    }
    Ok(env)
}

/// `fill_buf`, retrying interruptions; a failing source is a [`ReadError::Source`].
fn fill(src: &mut dyn BufRead) -> Result<&[u8], ReadError> {
    // Returning the buffer from inside the retry loop is a borrow the checker cannot follow,
    // so the loop only waits for a successful fill; asking again returns the same buffer.
    loop {
        match src.fill_buf() {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Source(e)),
        }
    }
    src.fill_buf().map_err(ReadError::Source)
}

/// Reads one header line into `line` (without its `\n`; at EOF, what is left). Like
/// [`header_line`], a line longer than [`MAX_HEADER_LEN`] is an error, found without copying
/// more than that; `line` never grows past that either.
fn read_header_line(src: &mut dyn BufRead, line: &mut Vec<u8>) -> Result<(), ReadError> {
    line.clear();
    loop {
        let buf = fill(src)?;
        if buf.is_empty() {
            return Ok(());
        }
        let room = MAX_HEADER_LEN.saturating_sub(line.len());
        let window = buf.get(..=room).unwrap_or(buf);
        if let Some(nl) = window.iter().position(|&b| b == b'\n') {
            append(line, buf.get(..nl).unwrap_or_default(), MAX_HEADER_LEN);
            src.consume(nl + 1);
            return Ok(());
        }
        if buf.len() > room {
            return Err(EnvelopeError::HeaderTooLong.into());
        }
        let n = buf.len();
        append(line, buf, MAX_HEADER_LEN);
        src.consume(n);
    }
}

/// Consumes exactly `len` payload bytes, copying them into `sink` when there is one.
fn copy_exact(
    src: &mut dyn BufRead,
    len: usize,
    mut sink: Option<&mut Vec<u8>>,
) -> Result<(), ReadError> {
    let mut got = 0usize;
    while got < len {
        let buf = fill(src)?;
        if buf.is_empty() {
            return Err(EnvelopeError::UnexpectedEof {
                declared: len,
                available: got,
            }
            .into());
        }
        let take = buf.len().min(len - got);
        if let Some(out) = sink.as_deref_mut() {
            append(out, buf.get(..take).unwrap_or_default(), len);
        }
        src.consume(take);
        got += take;
    }
    Ok(())
}

/// After a payload with `length`: a newline (consumed) or the end of the body.
fn end_of_payload(src: &mut dyn BufRead) -> Result<(), ReadError> {
    match fill(src)?.first() {
        None => Ok(()),
        Some(b'\n') => {
            src.consume(1);
            Ok(())
        }
        Some(_) => Err(EnvelopeError::MissingNewline.into()),
    }
}

/// Consumes a payload without `length` (up to the next `\n`, which is consumed, or the end),
/// copying it into `sink` when there is one; returns its size. Past `max` bytes it is `ty`'s
/// `TooLarge`, found without scanning further than that.
fn copy_line(
    src: &mut dyn BufRead,
    max: usize,
    ty: &ItemType,
    mut sink: Option<&mut Vec<u8>>,
) -> Result<usize, ReadError> {
    let mut n = 0usize;
    loop {
        let buf = fill(src)?;
        if buf.is_empty() {
            return Ok(n);
        }
        let room = max.saturating_sub(n);
        let window = buf.get(..=room).unwrap_or(buf);
        let (data, used, done) = match window.iter().position(|&b| b == b'\n') {
            Some(nl) => (nl, nl + 1, true),
            None if buf.len() > room => return Err(too_large(ty)),
            None => (buf.len(), buf.len(), false),
        };
        if let Some(out) = sink.as_deref_mut() {
            append(out, buf.get(..data).unwrap_or_default(), max);
        }
        src.consume(used);
        n += data;
        if done {
            return Ok(n);
        }
    }
}

/// Appends `data`, growing `out` geometrically but never past `cap` (which the caller knows
/// `out` will not outgrow), so a kept payload never reserves more than its limit, nor a header
/// line more than [`MAX_HEADER_LEN`].
fn append(out: &mut Vec<u8>, data: &[u8], cap: usize) {
    let needed = out.len().saturating_add(data.len());
    if needed > out.capacity() {
        let target = out.capacity().saturating_mul(2).min(cap).max(needed);
        out.reserve_exact(target - out.len());
    }
    out.extend_from_slice(data);
}

fn too_large(ty: &ItemType) -> ReadError {
    EnvelopeError::TooLarge(ty.as_str().to_owned()).into()
}

/// Cuts an unknown type's name to [`MAX_DROPPED_NAME`] bytes (on a character boundary).
fn short_name(ty: ItemType) -> ItemType {
    match ty {
        ItemType::Other(mut name) if name.len() > MAX_DROPPED_NAME => {
            let mut end = MAX_DROPPED_NAME;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
            name.shrink_to_fit();
            ItemType::Other(name)
        }
        ty => ty,
    }
}

// --- header parsing --------------------------------------------------------------------------

#[derive(Default)]
struct EnvelopeHeader {
    event_id: Option<String>,
    dsn: Option<String>,
    sent_at: Option<f64>,
}

struct ItemHeader {
    ty: ItemType,
    length: Option<usize>,
}

/// Error raised inside serde visitors; carried out through `serde_json::Error`'s message would
/// lose the variant, so the visitors stash it here and return a generic serde error.
type Slot = Option<EnvelopeError>;

fn parse_envelope_header(line: &[u8]) -> Result<EnvelopeHeader, EnvelopeError> {
    let text = std::str::from_utf8(line).map_err(|_| EnvelopeError::InvalidUtf8)?;
    let mut slot: Slot = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let result = de
        .deserialize_any(HeaderVisitor {
            slot: &mut slot,
            kind: HeaderKind::Envelope,
        })
        .and_then(|h| de.end().map(|()| h));
    match result {
        Ok(Parsed::Envelope(h)) => Ok(h),
        Ok(Parsed::Item(_)) => Err(EnvelopeError::InvalidHeader("internal".to_owned())),
        Err(e) => Err(slot.unwrap_or_else(|| EnvelopeError::InvalidHeader(json_reason(&e)))),
    }
}

fn parse_item_header(line: &[u8]) -> Result<ItemHeader, EnvelopeError> {
    let text = std::str::from_utf8(line).map_err(|_| EnvelopeError::InvalidUtf8)?;
    let mut slot: Slot = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let result = de
        .deserialize_any(HeaderVisitor {
            slot: &mut slot,
            kind: HeaderKind::Item,
        })
        .and_then(|h| de.end().map(|()| h));
    match result {
        Ok(Parsed::Item(h)) => Ok(h),
        Ok(Parsed::Envelope(_)) => Err(EnvelopeError::InvalidItemHeader("internal".to_owned())),
        Err(e) => Err(slot.unwrap_or_else(|| EnvelopeError::InvalidItemHeader(json_reason(&e)))),
    }
}

/// serde_json's message without the position suffix when the line is empty, which reads oddly.
fn json_reason(e: &serde_json::Error) -> String {
    if e.is_eof() && e.line() == 1 && e.column() == 0 {
        "empty header line".to_owned()
    } else {
        e.to_string()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum HeaderKind {
    Envelope,
    Item,
}

enum Parsed {
    Envelope(EnvelopeHeader),
    Item(ItemHeader),
}

/// Visits one header object: rejects non-objects and duplicate keys, reads the few keys we
/// need and skips the rest without building them.
struct HeaderVisitor<'s> {
    slot: &'s mut Slot,
    kind: HeaderKind,
}

impl HeaderVisitor<'_> {
    fn fail<E: de::Error>(&mut self, err: EnvelopeError) -> E {
        let msg = err.to_string();
        *self.slot = Some(err);
        E::custom(msg)
    }

    fn not_object<E: de::Error>(&mut self) -> E {
        let err = match self.kind {
            HeaderKind::Envelope => EnvelopeError::InvalidHeader("not a JSON object".to_owned()),
            HeaderKind::Item => EnvelopeError::InvalidItemHeader("not a JSON object".to_owned()),
        };
        self.fail(err)
    }
}

macro_rules! reject_non_object {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name<E: de::Error>(mut self, _v: $ty) -> Result<Parsed, E> {
            Err(self.not_object())
        })*
    };
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    reject_non_object!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
        visit_str: &str, visit_bytes: &[u8]);

    fn visit_unit<E: de::Error>(mut self) -> Result<Parsed, E> {
        Err(self.not_object())
    }

    fn visit_none<E: de::Error>(mut self) -> Result<Parsed, E> {
        Err(self.not_object())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(mut self, _seq: A) -> Result<Parsed, A::Error> {
        Err(self.not_object())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Parsed, A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        let mut env = EnvelopeHeader::default();
        let mut ty: Option<ItemType> = None;
        let mut length: Option<usize> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if seen.contains(&key) {
                return Err(self.fail(EnvelopeError::DuplicateKey(printable(&key))));
            }
            match (self.kind, key.as_ref()) {
                (HeaderKind::Envelope, "event_id") => match map.next_value::<Option<String>>() {
                    Ok(None) => {}
                    Ok(Some(s)) => match normalize_event_id(&s) {
                        Some(id) => env.event_id = Some(id),
                        None => return Err(self.fail(EnvelopeError::InvalidEventId)),
                    },
                    Err(_) => return Err(self.fail(EnvelopeError::InvalidEventId)),
                },
                (HeaderKind::Envelope, "dsn") => match map.next_value::<Option<String>>() {
                    Ok(dsn) => env.dsn = dsn.filter(|d| !d.trim().is_empty()),
                    Err(_) => {
                        return Err(self.fail(EnvelopeError::InvalidHeader(
                            "dsn must be a string".to_owned(),
                        )))
                    }
                },
                (HeaderKind::Envelope, "sent_at") => {
                    // Only used to correct clock drift, so an unreadable value is dropped
                    // rather than failing the envelope.
                    env.sent_at = map.next_value::<SentAt>()?.0;
                }
                (HeaderKind::Item, "type") => match map.next_value::<Option<String>>() {
                    Ok(Some(name)) => ty = Some(ItemType::from_name(&name)),
                    Ok(None) => return Err(self.fail(EnvelopeError::MissingItemType)),
                    Err(_) => {
                        return Err(self.fail(EnvelopeError::InvalidItemHeader(
                            "type must be a string".to_owned(),
                        )))
                    }
                },
                (HeaderKind::Item, "length") => match map.next_value::<Option<u64>>() {
                    Ok(n) => match n.map(usize::try_from).transpose() {
                        Ok(n) => length = n,
                        Err(_) => return Err(self.fail(EnvelopeError::InvalidLength)),
                    },
                    Err(_) => return Err(self.fail(EnvelopeError::InvalidLength)),
                },
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen.insert(key);
        }
        match self.kind {
            HeaderKind::Envelope => Ok(Parsed::Envelope(env)),
            HeaderKind::Item => match ty {
                Some(ty) => Ok(Parsed::Item(ItemHeader { ty, length })),
                None => Err(self.fail(EnvelopeError::MissingItemType)),
            },
        }
    }
}

/// A map key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// `sent_at`: RFC 3339 string or number of seconds; anything else reads as `None`.
struct SentAt(Option<f64>);

impl<'de> Deserialize<'de> for SentAt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ts = super::event::Timestamp::deserialize(d)?;
        Ok(SentAt(ts.0))
    }
}

/// Renders a client-supplied key for an error detail: bounded and without control characters.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::compression;
    use std::io::BufReader;
    use std::path::PathBuf;

    const SPEC_EXAMPLE: &[u8] = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42\"}\n\
{\"type\":\"attachment\",\"length\":10,\"content_type\":\"text/plain\",\"filename\":\"hello.txt\"}\n\
\xef\xbb\xbfHello\r\n\n\
{\"type\":\"event\",\"length\":41,\"content_type\":\"application/json\",\"filename\":\"application.log\"}\n\
{\"message\":\"hello world\",\"level\":\"error\"}\n";

    #[test]
    fn parses_the_reference_example() {
        let env = parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(
            env.event_id.as_deref(),
            Some("9ec79c33ec9942ab8353589fcb2e04dc")
        );
        assert_eq!(
            env.dsn.as_deref(),
            Some("https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42")
        );
        assert_eq!(env.items.len(), 2);
        assert_eq!(env.items[0].ty, ItemType::Attachment);
        assert_eq!(env.items[0].length, Some(10));
        assert_eq!(env.items[0].payload, b"\xef\xbb\xbfHello\r\n");
        assert!(env.items[0].header.starts_with(b"{\"type\":\"attachment\""));
        assert_eq!(env.items[1].ty, ItemType::Event);
        assert_eq!(
            env.items[1].payload,
            br#"{"message":"hello world","level":"error"}"#
        );
        // Without the final newline it is the same envelope.
        let trimmed = &SPEC_EXAMPLE[..SPEC_EXAMPLE.len() - 1];
        assert_eq!(parse(trimmed).unwrap().items, env.items);
        // Payloads borrow from the input.
        let start = SPEC_EXAMPLE.as_ptr() as usize;
        let p = env.items[0].payload.as_ptr() as usize;
        assert!(p > start && p < start + SPEC_EXAMPLE.len());
    }

    struct Case {
        input: &'static [u8],
        items: &'static [(&'static str, &'static [u8])],
    }

    /// Well-formed framings and the items they hold.
    fn valid_cases() -> Vec<Case> {
        vec![
            Case { input: b"{}", items: &[] },
            Case { input: b"{}\n", items: &[] },
            Case { input: b"{\"unknown\":{\"x\":[1,2]}}\n", items: &[] },
            // Without length: payload runs to the newline; a trailing \r stays in the payload.
            Case {
                input: b"{}\n{\"type\":\"event\"}\n{\"a\":1}\r\n",
                items: &[("event", b"{\"a\":1}\r")],
            },
            // Without length, no final newline (what Node sends).
            Case {
                input: b"{}\n{\"type\":\"event\"}\n{}\n{\"type\":\"client_report\"}\n{\"b\":2}",
                items: &[("event", b"{}"), ("client_report", b"{\"b\":2}")],
            },
            // length 0, then another item.
            Case {
                input: b"{}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"session\",\"length\":2}\n{}",
                items: &[("attachment", b""), ("session", b"{}")],
            },
            // Item header at EOF: empty payload.
            Case {
                input: b"{}\n{\"type\":\"attachment\"}",
                items: &[("attachment", b"")],
            },
            Case {
                input: b"{}\n{\"type\":\"attachment\",\"length\":0}",
                items: &[("attachment", b"")],
            },
            // length payloads may contain newlines.
            Case {
                input: b"{}\n{\"type\":\"attachment\",\"length\":3}\n\n\n\n",
                items: &[("attachment", b"\n\n\n")],
            },
            // Unknown types and unknown header attributes are kept; null length means absent.
            Case {
                input: b"{}\n{\"type\":\"replay_video\",\"length\":null,\"x\":[]}\nabc\n",
                items: &[("replay_video", b"abc")],
            },
            // CRLF after a header line is tolerated (the \r is JSON whitespace).
            Case {
                input: b"{}\r\n{\"type\":\"event\"}\r\n{}\n",
                items: &[("event", b"{}")],
            },
        ]
    }

    #[test]
    fn valid_framings() {
        for case in valid_cases() {
            let env = parse(case.input)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(case.input)));
            let got: Vec<(&str, &[u8])> = env
                .items
                .iter()
                .map(|i| (i.ty.as_str(), i.payload))
                .collect();
            assert_eq!(got, case.items, "{:?}", String::from_utf8_lossy(case.input));
        }
    }

    #[test]
    fn header_fields() {
        let env = parse(
            br#"{"event_id":"ED04BAD6-E1C2-409C-9F3B-6C5D1D2E3F40","sent_at":"2026-11-23T00:11:58.355283Z","dsn":"http://public123@127.0.0.1:9000/42"}"#,
        )
        .unwrap();
        assert_eq!(
            env.event_id.as_deref(),
            Some("ed04bad6e1c2409c9f3b6c5d1d2e3f40")
        );
        let sent_at = env.sent_at.unwrap();
        assert!((sent_at - 1_795_392_718.355_283).abs() < 1e-3, "{sent_at}");
        assert_eq!(
            env.dsn.as_deref(),
            Some("http://public123@127.0.0.1:9000/42")
        );

        let env = parse(br#"{"event_id":null,"sent_at":"yesterday","dsn":""}"#).unwrap();
        assert_eq!((env.event_id, env.sent_at, env.dsn), (None, None, None));
        assert_eq!(parse(br#"{"sent_at":12.5}"#).unwrap().sent_at, Some(12.5));
    }

    /// Junk after the optional trailing newline, and trailing garbage in a header line.
    const JUNK: &[&[u8]] = &[
        b"{}\n{\"type\":\"event\",\"length\":2}\n{}\n\n",
        b"{}\n{\"type\":\"event\"}\n{}\n\n",
        b"{}\n\n",
        b"{} x\n",
        b"{}{}\n",
        b"{\"a\":1\n}",
    ];

    /// Malformed envelopes and the error `parse` gives for each.
    fn error_table() -> Vec<(Vec<u8>, EnvelopeError)> {
        use EnvelopeError as E;
        let long_header = [b"{\"a\":\"".as_slice(), &vec![b'x'; MAX_HEADER_LEN], b"\"}"].concat();
        let too_many: Vec<u8> = std::iter::once(&b"{}\n"[..])
            .chain(std::iter::repeat_n(
                &b"{\"type\":\"x\"}\n\n"[..],
                MAX_ITEMS + 1,
            ))
            .flatten()
            .copied()
            .collect();
        let cases: Vec<(&[u8], E)> = vec![
            (b"", E::Empty),
            (b"[]", E::InvalidHeader("not a JSON object".into())),
            (b"\"str\"", E::InvalidHeader("not a JSON object".into())),
            (b"null\n", E::InvalidHeader("not a JSON object".into())),
            (b"{\"a\":\"\xff\"}", E::InvalidUtf8),
            (b"{}\n{\"type\":\"\xc3\"}\n", E::InvalidUtf8),
            (
                b"{\"sent_at\":1,\"sent_at\":2}",
                E::DuplicateKey("sent_at".into()),
            ),
            (b"{\"event_id\":\"nope\"}", E::InvalidEventId),
            (b"{\"event_id\":42}", E::InvalidEventId),
            (
                b"{\"dsn\":42}",
                E::InvalidHeader("dsn must be a string".into()),
            ),
            (b"{}\n{}\n", E::MissingItemType),
            (b"{}\n{\"type\":null}\n", E::MissingItemType),
            (
                b"{}\n{\"type\":1}\n",
                E::InvalidItemHeader("type must be a string".into()),
            ),
            (
                b"{}\n[1]\n",
                E::InvalidItemHeader("not a JSON object".into()),
            ),
            (
                b"{}\n{\"type\":\"event\",\"type\":\"event\"}\n",
                E::DuplicateKey("type".into()),
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":-1}\n{}",
                E::InvalidLength,
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":1.5}\n{}",
                E::InvalidLength,
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":\"2\"}\n{}",
                E::InvalidLength,
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":10}\n{}",
                E::UnexpectedEof {
                    declared: 10,
                    available: 2,
                },
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":18446744073709551615}\n{}",
                E::UnexpectedEof {
                    declared: usize::MAX,
                    available: 2,
                },
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":2}\n{} \n",
                E::MissingNewline,
            ),
            (
                b"{}\n{\"type\":\"event\",\"length\":2}\n{}x",
                E::MissingNewline,
            ),
            (
                b"{}\n{\"type\":\"event\"}\n{}\n{\"type\":\"event\"}\n{}\n",
                E::DuplicateEvent,
            ),
            (&long_header, E::HeaderTooLong),
            (&too_many, E::TooManyItems(MAX_ITEMS)),
        ];
        cases
            .into_iter()
            .map(|(input, want)| (input.to_vec(), want))
            .collect()
    }

    #[test]
    fn error_cases() {
        use EnvelopeError as E;
        for (input, want) in error_table() {
            let input = &input[..];
            let got = parse(input).unwrap_err();
            assert_eq!(
                got,
                want,
                "{:?}",
                String::from_utf8_lossy(&input[..input.len().min(80)])
            );
            assert_eq!(got.status(), 400);
        }
        for input in JUNK {
            let err = parse(input).unwrap_err();
            assert_eq!(err.status(), 400, "{:?}", String::from_utf8_lossy(input));
            assert!(
                err.to_string().starts_with("invalid event envelope: "),
                "{err}"
            );
        }
        assert_eq!(E::Empty.to_string(), "empty request body");
    }

    #[test]
    fn normalizes_event_ids() {
        let cases = [
            (
                "9ec79c33ec9942ab8353589fcb2e04dc",
                Some("9ec79c33ec9942ab8353589fcb2e04dc"),
            ),
            (
                "9EC79C33EC9942AB8353589FCB2E04DC",
                Some("9ec79c33ec9942ab8353589fcb2e04dc"),
            ),
            (
                "ed04bad6-e1c2-409c-9f3b-6c5d1d2e3f40",
                Some("ed04bad6e1c2409c9f3b6c5d1d2e3f40"),
            ),
            ("ed04bad6e1c2-409c-9f3b-6c5d1d2e3f40-", None),
            ("ed04bad6-e1c2-409c-9f3b-6c5d1d2e3f4g", None),
            ("{ed04bad6-e1c2-409c-9f3b-6c5d1d2e3f40}", None),
            ("9ec79c33ec9942ab8353589fcb2e04d", None),
            ("", None),
            ("9ec79c33ec9942ab8353589fcb2e04dé", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_event_id(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn limits_give_413() {
        let big = vec![b'x'; 2 << 20];
        let mut input = b"{}\n{\"type\":\"event\",\"length\":2097152}\n".to_vec();
        input.extend_from_slice(&big);
        let env = parse(&input).unwrap();
        let err = check_limits(&env, &Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "envelope exceeded size limits for type 'event'"
        );
        assert_eq!(err.status(), 413);

        let check_in = [
            b"{}\n{\"type\":\"check_in\"}\n".as_slice(),
            &vec![b'x'; 200 * 1024],
        ]
        .concat();
        let err = check_limits(&parse(&check_in).unwrap(), &Limits::default()).unwrap_err();
        assert_eq!(err, EnvelopeError::TooLarge("check_in".into()));

        let ok = parse(SPEC_EXAMPLE).unwrap();
        check_limits(&ok, &Limits::default()).unwrap();
        let tight = Limits {
            max_items: 1,
            ..Limits::default()
        };
        assert_eq!(
            check_limits(&ok, &tight).unwrap_err(),
            EnvelopeError::TooManyItems(1)
        );
        let tiny = Limits {
            max_attachment: 5,
            ..Limits::default()
        };
        assert_eq!(
            check_limits(&ok, &tiny).unwrap_err().to_string(),
            "envelope exceeded size limits for type 'attachment'"
        );
    }

    #[test]
    fn limits_per_type() {
        const KIB: usize = 1024;
        const MIB: usize = 1024 * 1024;
        // Type, default limit, and the limit under `small` (a distinct value per field, so the
        // table also says which field a type is counted against).
        let table: &[(&str, usize, usize)] = &[
            ("event", MIB, 1),
            ("transaction", MIB, 1),
            ("span", MIB, 1),
            ("feedback", MIB, 1),
            ("user_report", MIB, 1),
            ("replay_event", MIB, 1),
            ("statsd", MIB, 1),
            ("metric_buckets", MIB, 1),
            ("check_in", 100 * KIB, 2),
            ("attachment", 100 * MIB, 3),
            ("profile", 50 * MIB, 4),
            ("profile_chunk", 50 * MIB, 4),
            ("replay_recording", 10 * MIB, 5),
            ("replay_video", 10 * MIB, 5),
            ("session", 10 * MIB, 6),
            ("sessions", 10 * MIB, 6),
            ("client_report", 100 * KIB, 7),
            ("log", 2 * MIB, 8),
            ("otel_log", 50 * MIB, 9),
            ("something_new", 50 * MIB, 9),
        ];
        let small = Limits {
            max_event: 1,
            max_check_in: 2,
            max_attachment: 3,
            max_profile: 4,
            max_replay: 5,
            max_sessions: 6,
            max_client_report: 7,
            max_log: 8,
            max_other: 9,
            max_items: 10,
        };
        for &(name, default, tight) in table {
            let ty = ItemType::from_name(name);
            assert_eq!(Limits::default().max_for(&ty), default, "{name}");
            assert_eq!(small.max_for(&ty), tight, "{name}");
            // `check_limits` and `read` draw the line at the same byte, with and without length.
            for size in [tight, tight + 1] {
                for with_length in [false, true] {
                    let header = if with_length {
                        format!("{{}}\n{{\"type\":\"{name}\",\"length\":{size}}}\n")
                    } else {
                        format!("{{}}\n{{\"type\":\"{name}\"}}\n")
                    };
                    let input = [header.as_bytes(), &vec![b'x'; size]].concat();
                    let want = if size > tight {
                        Err(EnvelopeError::TooLarge(name.to_owned()))
                    } else {
                        Ok(())
                    };
                    assert_eq!(check_limits(&parse(&input).unwrap(), &small), want);
                    assert_agrees(&input, &small);
                }
            }
        }
    }

    /// Every captured SDK request decodes with its Content-Encoding and parses to the item
    /// types the capture harness recorded in `index.jsonl`.
    #[test]
    fn captured_sdk_envelopes_parse() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sdk-captures");
        let mut checked = 0;
        for sdk in std::fs::read_dir(&root).unwrap() {
            for case in std::fs::read_dir(sdk.unwrap().path()).unwrap() {
                let case = case.unwrap().path();
                let index = std::fs::read_to_string(case.join("index.jsonl")).unwrap();
                for line in index.lines().filter(|l| !l.trim().is_empty()) {
                    let entry: serde_json::Value = serde_json::from_str(line).unwrap();
                    let dir = case.join(entry["dir"].as_str().unwrap());
                    let meta: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap())
                            .unwrap();
                    let encoding = meta["headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|h| {
                            h[0].as_str()
                                .unwrap()
                                .eq_ignore_ascii_case("content-encoding")
                        })
                        .map(|h| h[1].as_str().unwrap().to_owned());
                    let encs =
                        compression::parse_content_encoding(encoding.as_deref().map(str::as_bytes))
                            .unwrap();
                    let body = std::fs::read(dir.join("body.bin")).unwrap();
                    let decoded = compression::decode(&body, &encs, 100 << 20).unwrap();
                    let env = parse(&decoded).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                    let want: Vec<&str> = entry["item_types"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap())
                        .collect();
                    let got: Vec<&str> = env.items.iter().map(|i| i.ty.as_str()).collect();
                    assert_eq!(got, want, "{}", dir.display());
                    // The Rust SDK sends check-ins under a bare `{}` header.
                    if let Some(id) = &env.event_id {
                        assert_eq!(id.len(), 32);
                    }
                    check_limits(&env, &Limits::default()).unwrap();
                    // Streamed straight from the request body, the same envelope.
                    let mut src = compression::reader(&body, &encs, 100 << 20).unwrap();
                    let streamed = read(&mut *src, &everything, &Limits::default()).unwrap();
                    assert_eq!(streamed.as_envelope(), env, "{}", dir.display());
                    for item in &env.items {
                        if let Some(len) = item.length {
                            assert_eq!(item.payload.len(), len);
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20, "only {checked} captures found");
    }

    // --- streaming ---------------------------------------------------------------------------

    fn everything(_: &ItemType) -> bool {
        true
    }

    fn is_event(ty: &ItemType) -> bool {
        *ty == ItemType::Event
    }

    /// What `parse` and then `check_limits` make of `input`.
    fn reference<'a>(input: &'a [u8], limits: &Limits) -> Result<Envelope<'a>, EnvelopeError> {
        parse(input).and_then(|env| check_limits(&env, limits).map(|()| env))
    }

    /// Buffer sizes to read through: tiny ones make every header, payload and newline straddle
    /// fills.
    const CAPS: [usize; 5] = [1, 2, 7, 4096, 1 << 20];

    fn stream(
        input: &[u8],
        cap: usize,
        keep: &dyn Fn(&ItemType) -> bool,
        limits: &Limits,
    ) -> Result<StreamedEnvelope, ReadError> {
        read(&mut BufReader::with_capacity(cap, input), keep, limits)
    }

    /// `read` agrees exactly with `parse` + `check_limits` on `input`, keeping everything or
    /// only the event, through every buffer size.
    fn assert_agrees(input: &[u8], limits: &Limits) {
        let want = reference(input, limits);
        let show = String::from_utf8_lossy(input.get(..80).unwrap_or(input)).into_owned();
        let keeps: [&dyn Fn(&ItemType) -> bool; 2] = [&everything, &is_event];
        for cap in CAPS {
            for keep in keeps {
                match (&want, stream(input, cap, keep, limits)) {
                    (Ok(env), Ok(got)) => {
                        assert_eq!(got.event_id, env.event_id, "{show}");
                        assert_eq!(got.dsn, env.dsn, "{show}");
                        assert_eq!(got.sent_at, env.sent_at, "{show}");
                        assert_eq!(got.header, env.header, "{show}");
                        let kept: Vec<Item> =
                            env.items.iter().filter(|i| keep(&i.ty)).cloned().collect();
                        assert_eq!(got.as_envelope().items, kept, "{show} (cap {cap})");
                        let dropped: Vec<DroppedItem> = env
                            .items
                            .iter()
                            .filter(|i| !keep(&i.ty))
                            .map(|i| DroppedItem {
                                ty: i.ty.clone(),
                                bytes: i.payload.len(),
                            })
                            .collect();
                        assert_eq!(got.dropped, dropped, "{show} (cap {cap})");
                    }
                    (Err(e), Err(ReadError::Envelope(got))) => {
                        assert_eq!(&got, e, "{show} (cap {cap})")
                    }
                    (want, got) => panic!("{show} (cap {cap}): parse {want:?}, read {got:?}"),
                }
            }
        }
    }

    #[test]
    fn streaming_agrees_with_parse() {
        let defaults = Limits::default();
        assert_agrees(SPEC_EXAMPLE, &defaults);
        assert_agrees(&SPEC_EXAMPLE[..SPEC_EXAMPLE.len() - 1], &defaults);
        for case in valid_cases() {
            assert_agrees(case.input, &defaults);
        }
        for input in JUNK {
            assert_agrees(input, &defaults);
        }
        for (input, want) in error_table() {
            if let EnvelopeError::UnexpectedEof { declared, .. } = want {
                if declared > defaults.max_event {
                    // The one allowed difference: a declared length over the limit is refused
                    // before the reader looks for the bytes.
                    let got = stream(&input, 7, &everything, &defaults).unwrap_err();
                    assert!(
                        matches!(&got, ReadError::Envelope(EnvelopeError::TooLarge(t)) if t == "event"),
                        "{got:?}"
                    );
                    continue;
                }
            }
            assert_agrees(&input, &defaults);
        }
        // An item header over the cap, with and without a newline after it.
        let long_item = [b"{}\n{\"type\":\"".as_slice(), &vec![b'x'; MAX_HEADER_LEN]].concat();
        assert_agrees(&long_item, &defaults);
        assert_agrees(&[&long_item[..], b"\"}\n{}"].concat(), &defaults);
        // A header of exactly the cap is fine, at EOF and before a newline.
        let exact = [
            b"{\"a\":\"".as_slice(),
            &vec![b'x'; MAX_HEADER_LEN - 8],
            b"\"}",
        ]
        .concat();
        assert_eq!(exact.len(), MAX_HEADER_LEN);
        assert_agrees(&exact, &defaults);
        assert_agrees(
            &[&exact[..], b"\n{\"type\":\"event\"}\n{}"].concat(),
            &defaults,
        );

        // The policy count: refused when the framing is fine, the framing error when it is not.
        let tight = Limits {
            max_items: 1,
            ..Limits::default()
        };
        assert_agrees(SPEC_EXAMPLE, &tight);
        assert_agrees(
            b"{}\n{\"type\":\"a\"}\n\n{\"type\":\"b\"}\n\n{\"type\":\"c\",\"length\":9}\n",
            &tight,
        );
        let tiny = Limits {
            max_attachment: 5,
            ..Limits::default()
        };
        assert_agrees(SPEC_EXAMPLE, &tiny);
    }

    #[test]
    fn dropped_items_are_reported_with_their_sizes() {
        let env = read(&mut &SPEC_EXAMPLE[..], &is_event, &Limits::default()).unwrap();
        assert_eq!(env.items.len(), 1);
        assert_eq!(env.items[0].ty, ItemType::Event);
        assert_eq!(
            env.items[0].payload,
            br#"{"message":"hello world","level":"error"}"#
        );
        assert_eq!(
            env.dropped,
            [DroppedItem {
                ty: ItemType::Attachment,
                bytes: 10
            }]
        );

        let input = b"{}\n{\"type\":\"session\"}\n{\"s\":1}\n{\"type\":\"event\",\"length\":2}\n{}\n{\"type\":\"replay_video\",\"length\":3}\nabc";
        let env = read(&mut &input[..], &is_event, &Limits::default()).unwrap();
        assert_eq!(env.items.len(), 1);
        let sizes: Vec<(&str, usize)> = env
            .dropped
            .iter()
            .map(|d| (d.ty.as_str(), d.bytes))
            .collect();
        assert_eq!(sizes, [("session", 7), ("replay_video", 3)]);

        // An unknown type's name is kept to a few bytes, on a character boundary.
        let name = format!("{}é{}", "a".repeat(MAX_DROPPED_NAME - 1), "b".repeat(1000));
        let input = format!("{{}}\n{{\"type\":\"{name}\"}}\nxyz\n");
        let env = read(&mut input.as_bytes(), &is_event, &Limits::default()).unwrap();
        assert_eq!(
            env.dropped,
            [DroppedItem {
                ty: ItemType::Other("a".repeat(MAX_DROPPED_NAME - 1)),
                bytes: 3
            }]
        );
    }

    #[test]
    fn an_event_over_one_mib_is_too_large() {
        const MIB: usize = 1 << 20;
        let defaults = Limits::default();
        let too_large = |r: Result<StreamedEnvelope, ReadError>| matches!(r, Err(ReadError::Envelope(EnvelopeError::TooLarge(t))) if t == "event");
        // A declared length over the limit is refused before the payload is looked for.
        let declared = format!("{{}}\n{{\"type\":\"event\",\"length\":{}}}\n{{}}", MIB + 1);
        for keep in [
            &everything as &dyn Fn(&ItemType) -> bool,
            &|_: &ItemType| false,
        ] {
            assert!(too_large(read(&mut declared.as_bytes(), keep, &defaults)));
        }
        for with_length in [true, false] {
            let header = if with_length {
                format!("{{}}\n{{\"type\":\"event\",\"length\":{MIB}}}\n")
            } else {
                "{}\n{\"type\":\"event\"}\n".to_owned()
            };
            let exact = [header.as_bytes(), &vec![b'x'; MIB]].concat();
            for cap in [4096, 1 << 21] {
                let env = stream(&exact, cap, &everything, &defaults).unwrap();
                assert_eq!(env.items[0].payload.len(), MIB);
                // Grown as the bytes came, never reserved past the limit.
                assert!(env.items[0].payload.capacity() <= MIB);
            }
            if !with_length {
                // Without length the line is measured as it is read, kept or not.
                let over = [&exact[..], b"x\n"].concat();
                assert!(too_large(stream(&over, 4096, &everything, &defaults)));
                assert!(too_large(stream(
                    &over,
                    4096,
                    &|_: &ItemType| false,
                    &defaults
                )));
            }
        }
    }

    /// Streams `size` zero bytes into `w` without holding them.
    fn write_zeros(w: &mut impl std::io::Write, size: usize) {
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(zeros.len());
            w.write_all(&zeros[..n]).unwrap();
            left -= n;
        }
    }

    /// The attack: a small gzip body whose attachment inflates to 95 MiB of zeros. Streamed
    /// with a 100 MiB decode budget, the attachment passes through and only the event is kept
    /// (the peak memory of this read is measured in `tests/parser_props.rs`).
    #[test]
    fn a_zero_attachment_bomb_is_skipped() {
        use std::io::Write;
        const SIZE: usize = 95 << 20;
        for with_length in [true, false] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n")
                .unwrap();
            if with_length {
                writeln!(gz, "{{\"type\":\"attachment\",\"length\":{SIZE}}}").unwrap();
            } else {
                gz.write_all(b"{\"type\":\"attachment\"}\n").unwrap();
            }
            write_zeros(&mut gz, SIZE);
            gz.write_all(b"\n{\"type\":\"event\"}\n{\"message\":\"hi\"}\n")
                .unwrap();
            let body = gz.finish().unwrap();
            assert!(body.len() < 200 << 10, "{}", body.len());

            let encs = [compression::Encoding::Gzip];
            let mut src = compression::reader(&body, &encs, 100 << 20).unwrap();
            let env = read(&mut *src, &is_event, &Limits::default()).unwrap();
            assert_eq!(env.items.len(), 1);
            assert_eq!(env.items[0].ty, ItemType::Event);
            assert_eq!(env.items[0].payload, br#"{"message":"hi"}"#);
            assert_eq!(
                env.dropped,
                [DroppedItem {
                    ty: ItemType::Attachment,
                    bytes: SIZE
                }]
            );
        }
    }

    #[test]
    fn source_errors_surface_and_are_classified() {
        use compression::{DecodeError, Encoding};
        use std::io::Write;
        let gzip = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let encs = [Encoding::Gzip];
        let limit = 1 << 20;
        let through = |body: &[u8], limit: usize| -> Result<StreamedEnvelope, DecodeError> {
            let mut src = compression::reader(body, &encs, limit)?;
            read(&mut *src, &everything, &Limits::default()).map_err(|e| match e {
                ReadError::Source(e) => compression::read_error(e, &encs, limit),
                ReadError::Envelope(e) => panic!("not a source error: {e}"),
            })
        };
        let body = gzip(SPEC_EXAMPLE);
        assert_eq!(
            through(&body, limit).unwrap().as_envelope(),
            parse(SPEC_EXAMPLE).unwrap()
        );

        // Truncated, and with data after the end of the stream: both corrupt, named gzip.
        let truncated = &body[..body.len() / 2];
        let mut junk = body.clone();
        junk.extend_from_slice(b"junk");
        for bad in [truncated, &junk[..]] {
            let err = through(bad, limit).unwrap_err();
            assert!(
                matches!(&err, DecodeError::Corrupt(m) if m.starts_with("invalid gzip body: ")),
                "{err:?}"
            );
            assert_eq!(err, compression::decode(bad, &encs, limit).unwrap_err());
        }
        // Past the decode budget: too large, as `decode` says.
        assert_eq!(
            through(&body, 100).unwrap_err(),
            DecodeError::TooLarge { limit: 100 }
        );

        // Any other failing source is passed through untouched.
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let mut src = BufReader::new(std::io::Read::chain(
            &b"{}\n{\"type\":\"event\"}\n{"[..],
            Broken,
        ));
        match read(&mut src, &everything, &Limits::default()) {
            Err(ReadError::Source(e)) => assert_eq!(e.to_string(), "disk on fire"),
            other => panic!("{other:?}"),
        }
    }
}
