//! Property tests: the protocol parsers never panic on any input, and encode/parse round-trips hold.
//!
//! The binary installs a global allocator that counts bytes per thread, so the decompression
//! bomb tests can assert bounded memory, not just the right error.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use stackhound::protocol::auth::{self, AuthSources};
use stackhound::protocol::compression::{self, DecodeError, Encoding};
use stackhound::protocol::envelope::{
    self, DroppedItem, EnvelopeError, ItemType, Limits, ReadError,
};
use stackhound::protocol::event;

// --- per-thread allocation accounting ------------------------------------------------------

struct Counting;

thread_local! {
    // Const-initialized and without destructors, so usable from inside the allocator.
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = CURRENT.try_with(|c| {
        let now = c.get() + delta;
        c.set(now);
        let _ = PEAK.try_with(|p| {
            if now > p.get() {
                p.set(now)
            }
        });
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the peak number of bytes this thread had allocated
/// on top of what it held when `f` started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak.max(0) as usize)
}

// --- fixtures -------------------------------------------------------------------------------

struct Capture {
    encodings: Vec<Encoding>,
    body: Vec<u8>,
    decoded: Vec<u8>,
}

fn captures() -> &'static [Capture] {
    static CAPTURES: OnceLock<Vec<Capture>> = OnceLock::new();
    CAPTURES.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sdk-captures");
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                let meta = path.join("meta.json");
                if !meta.exists() {
                    stack.push(path);
                    continue;
                }
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
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
                out.push(Capture {
                    encodings: compression::parse_content_encoding(
                        header.as_deref().map(str::as_bytes),
                    )
                    .unwrap(),
                    body: std::fs::read(path.join("body.bin")).unwrap(),
                    decoded: std::fs::read(path.join("body.decoded")).unwrap(),
                });
            }
        }
        out.sort_by(|a, b| a.body.cmp(&b.body));
        assert!(out.len() >= 20, "fixtures missing");
        out
    })
}

const ENCODINGS: [Encoding; 5] = [
    Encoding::Identity,
    Encoding::Gzip,
    Encoding::Deflate,
    Encoding::Br,
    Encoding::Zstd,
];

fn encode(enc: Encoding, data: &[u8]) -> Vec<u8> {
    match enc {
        Encoding::Identity => data.to_vec(),
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Encoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Encoding::Br => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).unwrap();
            }
            out
        }
        Encoding::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

/// Applies byte flips and an optional truncation to `input`.
fn mutate(input: &[u8], flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut out = input.to_vec();
    if !out.is_empty() {
        for &(pos, byte) in flips {
            let i = pos % out.len();
            out[i] ^= byte | 1;
        }
    }
    if let Some(cut) = cut {
        let keep = cut % (out.len() + 1);
        out.truncate(keep);
    }
    out
}

/// Exercises the whole pipeline on one body; only panics (test failures) matter here.
fn pipeline(body: &[u8], encodings: &[Encoding], limit: usize) {
    let Ok(decoded) = compression::decode(body, encodings, limit) else {
        return;
    };
    if let Ok(env) = envelope::parse(&decoded) {
        let _ = envelope::check_limits(&env, &envelope::Limits::default());
        for item in &env.items {
            let _ = item.ty.as_str();
            if matches!(item.ty, ItemType::Event | ItemType::Transaction) {
                let _ = event::parse(item.payload);
            }
        }
    }
}

/// Envelope-shaped fragments, so random inputs get past the first header often.
fn envelope_fragments() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just(b"{}".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"{\"type\":\"event\"}".to_vec()),
        Just(b"{\"type\":\"attachment\",\"length\":3}".to_vec()),
        Just(b"{\"type\":\"check_in\",\"length\":0}".to_vec()),
        Just(b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}".to_vec()),
        Just(b"{\"event_id\":\"ed04bad6-e1c2-409c-9f3b-6c5d1d2e3f40\",\"sent_at\":\"2026-11-23T00:11:58Z\"}".to_vec()),
        Just(b"{\"message\":\"hi\",\"exception\":{\"values\":[{\"type\":\"E\"}]}}".to_vec()),
        Just(b"{\"length\":".to_vec()),
        (0u64..100).prop_map(|n| n.to_string().into_bytes()),
        Just(b"}".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\xff".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(fragment, 0..16).prop_map(|v| v.concat())
}

/// Item types to build envelopes from, including unknown ones.
fn item_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("event"),
        Just("transaction"),
        Just("attachment"),
        Just("session"),
        Just("client_report"),
        Just("check_in"),
        Just("span"),
        Just("replay_video"),
        Just("statsd"),
    ]
}

#[derive(Debug, Clone)]
struct GenItem {
    ty: &'static str,
    with_length: bool,
    payload: Vec<u8>,
}

fn gen_item() -> impl Strategy<Value = GenItem> {
    (
        item_type(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(ty, with_length, mut payload)| {
            if !with_length {
                // Without `length` the payload ends at the first newline.
                payload.retain(|&b| b != b'\n');
            }
            GenItem {
                ty,
                with_length,
                payload,
            }
        })
}

// --- streaming envelopes -------------------------------------------------------------------

/// The item types `item_type` draws from, in order, so a keep mask can be indexed by them.
const TYPES: [&str; 9] = [
    "event",
    "transaction",
    "attachment",
    "session",
    "client_report",
    "check_in",
    "span",
    "replay_video",
    "statsd",
];

/// Limits with every size field under `max` or at its default, and a small item count.
fn limits() -> impl Strategy<Value = Limits> {
    let small = (prop::collection::vec(0usize..100, 9), 0usize..10).prop_map(|(v, items)| Limits {
        max_event: v[0],
        max_check_in: v[1],
        max_attachment: v[2],
        max_profile: v[3],
        max_replay: v[4],
        max_sessions: v[5],
        max_client_report: v[6],
        max_log: v[7],
        max_other: v[8],
        max_items: items,
    });
    prop_oneof![Just(Limits::default()), small]
}

/// The same limits with no size limit at all: only framing and the item count are left.
fn unlimited(limits: &Limits) -> Limits {
    Limits {
        max_event: usize::MAX,
        max_check_in: usize::MAX,
        max_attachment: usize::MAX,
        max_profile: usize::MAX,
        max_replay: usize::MAX,
        max_sessions: usize::MAX,
        max_client_report: usize::MAX,
        max_log: usize::MAX,
        max_other: usize::MAX,
        max_items: limits.max_items,
    }
}

/// `envelope::read` over `bytes`, handed out `cap` bytes at a time.
fn stream(
    bytes: &[u8],
    cap: usize,
    keep: &dyn Fn(&ItemType) -> bool,
    limits: &Limits,
) -> Result<envelope::StreamedEnvelope, ReadError> {
    envelope::read(&mut BufReader::with_capacity(cap, bytes), keep, limits)
}

/// `read` agrees with `parse` + `check_limits` on `bytes`: the same kept items (and the others
/// reported as dropped with their sizes), or the same error, except that `read` may report an
/// oversized item before an error `parse` finds further on.
fn check_agreement(
    bytes: &[u8],
    cap: usize,
    keep: &dyn Fn(&ItemType) -> bool,
    limits: &Limits,
) -> Result<(), TestCaseError> {
    let reference =
        envelope::parse(bytes).and_then(|env| envelope::check_limits(&env, limits).map(|()| env));
    match (reference, stream(bytes, cap, keep, limits)) {
        (Ok(env), Ok(got)) => {
            prop_assert_eq!(&got.event_id, &env.event_id);
            prop_assert_eq!(&got.dsn, &env.dsn);
            prop_assert_eq!(got.sent_at, env.sent_at);
            prop_assert_eq!(&got.header[..], env.header);
            let kept: Vec<_> = env.items.iter().filter(|i| keep(&i.ty)).cloned().collect();
            prop_assert_eq!(got.as_envelope().items, kept);
            let dropped: Vec<DroppedItem> = env
                .items
                .iter()
                .filter(|i| !keep(&i.ty))
                .map(|i| DroppedItem {
                    ty: i.ty.clone(),
                    bytes: i.payload.len(),
                })
                .collect();
            prop_assert_eq!(got.dropped, dropped);
        }
        (Err(want), Err(ReadError::Envelope(got))) => {
            if got != want {
                // The allowed difference: an oversized item reported as soon as it is seen.
                let EnvelopeError::TooLarge(ty) = &got else {
                    return Err(TestCaseError::fail(format!("parse {want:?}, read {got:?}")));
                };
                if let EnvelopeError::TooLarge(first) = &want {
                    prop_assert_eq!(first, ty);
                }
            }
        }
        (want, got) => {
            return Err(TestCaseError::fail(format!("parse {want:?}, read {got:?}")));
        }
    }
    Ok(())
}

/// The envelope `items` make, one per line, after a header with an event id.
fn envelope_bytes(items: &[GenItem], header_id: &str, trailing_newline: bool) -> Vec<u8> {
    let mut body =
        format!("{{\"event_id\":\"{header_id}\",\"sdk\":{{\"name\":\"x\"}}}}").into_bytes();
    for item in items {
        body.push(b'\n');
        let header = if item.with_length {
            format!(
                "{{\"type\":\"{}\",\"length\":{}}}",
                item.ty,
                item.payload.len()
            )
        } else {
            format!("{{\"type\":\"{}\"}}", item.ty)
        };
        body.extend_from_slice(header.as_bytes());
        body.push(b'\n');
        body.extend_from_slice(&item.payload);
    }
    if trailing_newline {
        body.push(b'\n');
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn envelope_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = envelope::parse(&bytes);
    }

    #[test]
    fn envelope_parse_never_panics_on_envelope_like_input(bytes in envelope_fragments()) {
        if let Ok(env) = envelope::parse(&bytes) {
            let _ = envelope::check_limits(&env, &envelope::Limits::default());
            for item in &env.items {
                // Payloads are slices of the input.
                let start = bytes.as_ptr() as usize;
                let p = item.payload.as_ptr() as usize;
                prop_assert!(item.payload.is_empty() || (p >= start && p + item.payload.len() <= start + bytes.len()));
                if let Some(len) = item.length {
                    prop_assert_eq!(item.payload.len(), len);
                }
            }
        }
    }

    #[test]
    fn decode_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        enc in 0usize..5,
        limit in 0usize..4096,
    ) {
        let _ = compression::decode(&bytes, &[ENCODINGS[enc]], limit);
        let _ = compression::decode(&bytes, &[ENCODINGS[enc], Encoding::Gzip], limit);
    }

    #[test]
    fn decode_of_corrupted_compressed_data_never_panics(
        data in prop::collection::vec(any::<u8>(), 0..2048),
        enc in 1usize..5,
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        limit in 0usize..4096,
    ) {
        let body = mutate(&encode(ENCODINGS[enc], &data), &flips, cut);
        match compression::decode(&body, &[ENCODINGS[enc]], limit) {
            Ok(out) => prop_assert!(out.len() <= limit),
            Err(e) => prop_assert!(matches!(e.status(), 400 | 413)),
        }
    }

    #[test]
    fn mutated_captures_never_panic(
        idx in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
        mutate_decoded in any::<bool>(),
    ) {
        let caps = captures();
        let cap = &caps[idx.index(caps.len())];
        if mutate_decoded {
            let decoded = mutate(&cap.decoded, &flips, cut);
            pipeline(&decoded, &[], 1 << 20);
            let _ = event::parse(&decoded);
        } else {
            let body = mutate(&cap.body, &flips, cut);
            pipeline(&body, &cap.encodings, 1 << 20);
            pipeline(&body, &cap.encodings, 512);
        }
    }

    #[test]
    fn decode_store_body_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        limit in 0usize..4096,
    ) {
        let _ = compression::decode_store_body(&bytes, limit);
    }

    #[test]
    fn decode_store_body_never_panics_on_base64ish_input(
        text in "[A-Za-z0-9+/=_\\- \n]{0,256}",
        limit in 0usize..4096,
    ) {
        let _ = compression::decode_store_body(text.as_bytes(), limit);
    }

    #[test]
    fn auth_parsers_never_panic(s in any::<String>()) {
        let _ = auth::parse_auth_header(&s);
        let _ = auth::parse_basic(&s);
        let _ = auth::from_query(&s);
        let _ = auth::parse_dsn(&s);
    }

    #[test]
    fn auth_parsers_never_panic_on_auth_like_input(
        s in "(Sentry|sentry|Basic|Bearer)? ?((sentry_(key|version|client|secret)|%73entry_key)[=]?[a-zA-Z0-9.:/%+@_ -]{0,12}[,&]? ?){0,5}",
        dsn in "(https?|HTTP|ftp)://[a-z0-9:@./%-]{0,40}",
        path_project in "[0-9]{0,3}",
    ) {
        let _ = auth::parse_auth_header(&s);
        let _ = auth::parse_basic(&s);
        let _ = auth::from_query(&s);
        let _ = auth::parse_dsn(&dsn);
        let sources = AuthSources {
            x_sentry_auth: Some(s.as_bytes()),
            authorization: None,
            query: Some(&s),
            envelope_dsn: Some(&dsn),
        };
        let _ = auth::resolve(&sources, &path_project);
        let sources = AuthSources {
            x_sentry_auth: None,
            authorization: Some(s.as_bytes()),
            query: None,
            envelope_dsn: Some(&dsn),
        };
        if let Err(e) = auth::resolve(&sources, &path_project) {
            prop_assert!(matches!(e.status(), 400 | 401));
        }
    }

    #[test]
    fn resolve_never_panics_on_raw_bytes(
        xsa in proptest::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        authz in proptest::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        query in proptest::option::of(any::<String>()),
        dsn in proptest::option::of(any::<String>()),
    ) {
        let sources = AuthSources {
            x_sentry_auth: xsa.as_deref(),
            authorization: authz.as_deref(),
            query: query.as_deref(),
            envelope_dsn: dsn.as_deref(),
        };
        let _ = auth::resolve(&sources, "42");
    }

    #[test]
    fn event_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = event::parse(&bytes);
    }

    #[test]
    fn envelopes_round_trip(
        items in prop::collection::vec(gen_item(), 0..8),
        trailing_newline in any::<bool>(),
        dashed_id in any::<bool>(),
        id in "[0-9a-fA-F]{32}",
    ) {
        // At most one event item is allowed; rename extra ones so the envelope stays valid.
        let mut seen_event = false;
        let items: Vec<GenItem> = items
            .into_iter()
            .map(|mut i| {
                if i.ty == "event" {
                    if seen_event {
                        i.ty = "attachment";
                    }
                    seen_event = true;
                }
                i
            })
            .collect();
        let header_id = if dashed_id {
            format!("{}-{}-{}-{}-{}", &id[..8], &id[8..12], &id[12..16], &id[16..20], &id[20..])
        } else {
            id.clone()
        };
        let body = envelope_bytes(&items, &header_id, trailing_newline);

        let env = envelope::parse(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(env.event_id, Some(id.to_ascii_lowercase()));
        prop_assert_eq!(env.items.len(), items.len());
        for (got, want) in env.items.iter().zip(&items) {
            prop_assert_eq!(got.ty.as_str(), want.ty);
            prop_assert_eq!(got.payload, &want.payload[..]);
            prop_assert_eq!(got.length, want.with_length.then_some(want.payload.len()));
        }
    }

    #[test]
    fn compress_then_decode_round_trips(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        enc in 1usize..5,
    ) {
        let enc = ENCODINGS[enc];
        let body = encode(enc, &data);
        prop_assert_eq!(&compression::decode(&body, &[enc], data.len()).unwrap(), &data);
        if !data.is_empty() {
            prop_assert_eq!(
                compression::decode(&body, &[enc], data.len() - 1),
                Err(DecodeError::TooLarge { limit: data.len() - 1 })
            );
        }
    }

    #[test]
    fn chained_encodings_round_trip(
        data in prop::collection::vec(any::<u8>(), 0..1024),
        first in 1usize..5,
        second in 1usize..5,
    ) {
        let (a, b) = (ENCODINGS[first], ENCODINGS[second]);
        let body = encode(b, &encode(a, &data));
        let header = format!("{}, {}", a.as_str(), b.as_str());
        let encs = compression::parse_content_encoding(Some(header.as_bytes())).unwrap();
        prop_assert_eq!(compression::decode(&body, &encs, 1 << 16).unwrap(), data);
    }

    #[test]
    fn read_never_panics_and_agrees_with_parse(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cap in 1usize..32,
        limits in limits(),
    ) {
        check_agreement(&bytes, cap, &|_| true, &limits)?;
        check_agreement(&bytes, cap, &|ty| *ty == ItemType::Event, &limits)?;
    }

    #[test]
    fn read_agrees_with_parse_on_envelope_like_input(
        bytes in envelope_fragments(),
        cap in 1usize..32,
        limits in limits(),
    ) {
        check_agreement(&bytes, cap, &|_| true, &limits)?;
        check_agreement(&bytes, cap, &|ty| *ty == ItemType::Event, &limits)?;
        // Without size limits nothing is reported early, so the errors are the same exactly.
        let open = unlimited(&limits);
        let want = envelope::parse(&bytes).and_then(|env| envelope::check_limits(&env, &open));
        match stream(&bytes, cap, &|_| true, &open) {
            Ok(_) => prop_assert_eq!(want, Ok(())),
            Err(ReadError::Envelope(e)) => prop_assert_eq!(want, Err(e)),
            Err(ReadError::Source(e)) => return Err(TestCaseError::fail(e.to_string())),
        }
    }

    /// Well-formed envelopes (items with and without `length`, maybe a second event), read
    /// through small buffers or a content encoding, under tight limits: the kept items are
    /// `parse`'s, and the error is the first one met in envelope order.
    #[test]
    fn read_keeps_what_parse_finds(
        items in prop::collection::vec(gen_item(), 0..8),
        trailing_newline in any::<bool>(),
        id in "[0-9a-f]{32}",
        limits in limits(),
        keep_mask in prop::collection::vec(any::<bool>(), TYPES.len()),
        cap in 1usize..64,
        enc in 0usize..5,
    ) {
        let body = envelope_bytes(&items, &id, trailing_newline);
        let keep = |ty: &ItemType| {
            TYPES.iter().position(|t| *t == ty.as_str()).is_some_and(|i| keep_mask[i])
        };

        // What `read` must answer: items in order, each refused if over its limit, a second
        // event refused after its payload; then the item count.
        let mut model: Result<(), EnvelopeError> = Ok(());
        let mut events = 0;
        for item in &items {
            let ty = ItemType::from_name(item.ty);
            if item.payload.len() > limits.max_for(&ty) {
                model = Err(EnvelopeError::TooLarge(item.ty.to_owned()));
                break;
            }
            if ty == ItemType::Event {
                events += 1;
                if events > 1 {
                    model = Err(EnvelopeError::DuplicateEvent);
                    break;
                }
            }
        }
        if model.is_ok() && items.len() > limits.max_items {
            model = Err(EnvelopeError::TooManyItems(limits.max_items));
        }

        let encoded = encode(ENCODINGS[enc], &body);
        let budget = 1 << 20;
        let mut decoder = compression::reader(&encoded, &[ENCODINGS[enc]], budget).unwrap();
        for got in [
            stream(&body, cap, &keep, &limits),
            envelope::read(&mut *decoder, &keep, &limits),
        ] {
            match (&model, got) {
                (Ok(()), Ok(got)) => {
                    prop_assert_eq!(got.event_id.as_deref(), Some(&id[..]));
                    let want: Vec<(&str, Option<usize>, &[u8])> = items
                        .iter()
                        .filter(|i| keep(&ItemType::from_name(i.ty)))
                        .map(|i| (i.ty, i.with_length.then_some(i.payload.len()), &i.payload[..]))
                        .collect();
                    let kept: Vec<(&str, Option<usize>, &[u8])> = got
                        .items
                        .iter()
                        .map(|i| (i.ty.as_str(), i.length, &i.payload[..]))
                        .collect();
                    prop_assert_eq!(kept, want);
                    let dropped: Vec<(&str, usize)> = got.dropped.iter().map(|d| (d.ty.as_str(), d.bytes)).collect();
                    let want: Vec<(&str, usize)> = items
                        .iter()
                        .filter(|i| !keep(&ItemType::from_name(i.ty)))
                        .map(|i| (i.ty, i.payload.len()))
                        .collect();
                    prop_assert_eq!(dropped, want);
                    // Each kept item is `parse`'s, header bytes included.
                    let env = envelope::parse(&body).unwrap();
                    let parsed: Vec<_> = env.items.iter().filter(|i| keep(&i.ty)).cloned().collect();
                    prop_assert_eq!(got.as_envelope().items, parsed);
                }
                (Err(want), Err(ReadError::Envelope(got))) => prop_assert_eq!(want, &got),
                (want, got) => {
                    return Err(TestCaseError::fail(format!("model {want:?}, read {got:?}")));
                }
            }
        }
        check_agreement(&body, cap, &keep, &limits)?;
    }

    #[test]
    fn reader_round_trips_every_encoding(
        data in prop::collection::vec(any::<u8>(), 0..4096),
        enc in 1usize..5,
        outer in 0usize..5,
    ) {
        let read_all = |body: &[u8], encs: &[Encoding], limit: usize| -> Result<Vec<u8>, DecodeError> {
            let mut r = compression::reader(body, encs, limit)?;
            let mut out = Vec::new();
            r.read_to_end(&mut out).map_err(|e| compression::read_error(e, encs, limit))?;
            Ok(out)
        };
        let enc = ENCODINGS[enc];
        let body = encode(enc, &data);
        prop_assert_eq!(&read_all(&body, &[enc], data.len()).unwrap(), &data);
        if !data.is_empty() {
            prop_assert_eq!(
                read_all(&body, &[enc], data.len() - 1),
                Err(DecodeError::TooLarge { limit: data.len() - 1 })
            );
        }
        // A second coding on top (identity included).
        let chain = [enc, ENCODINGS[outer]];
        let body = encode(chain[1], &body);
        prop_assert_eq!(read_all(&body, &chain, 1 << 16).unwrap(), data);
    }

    #[test]
    fn reader_over_corrupted_data_never_panics(
        data in prop::collection::vec(any::<u8>(), 0..2048),
        enc in 1usize..5,
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        limit in 0usize..4096,
        cap in 1usize..64,
    ) {
        let encs = [ENCODINGS[enc]];
        let body = mutate(&encode(encs[0], &data), &flips, cut);
        let decoded = compression::decode(&body, &encs, limit);
        match compression::reader(&body, &encs, limit) {
            Ok(r) => {
                // Through a small buffer, as the envelope reader would pull it.
                let mut r = BufReader::with_capacity(cap, r);
                let mut out = Vec::new();
                match r.read_to_end(&mut out) {
                    Ok(_) => {
                        prop_assert!(out.len() <= limit);
                        prop_assert_eq!(decoded, Ok(out));
                    }
                    Err(e) => {
                        let err = compression::read_error(e, &encs, limit);
                        prop_assert!(matches!(err.status(), 400 | 413));
                        prop_assert!(decoded.is_err());
                    }
                }
                let mut r = compression::reader(&body, &encs, limit).unwrap();
                let _ = envelope::read(&mut *r, &|_| true, &Limits::default());
            }
            Err(e) => prop_assert_eq!(decoded, Err(e)),
        };
    }
}

// --- exception groups ----------------------------------------------------------------------

/// One exception of a generated group: its ids (drawn from a small range, so they repeat,
/// dangle and loop) and whether it is marked a group.
#[derive(Debug, Clone)]
struct GenException {
    id: Option<u16>,
    parent: Option<u16>,
    group: bool,
}

/// Up to ~2,000 exceptions: arbitrary ids, or a valid tree (root last) with a few parents
/// rewired, which makes cycles through and beside the root.
fn exception_group() -> impl Strategy<Value = Vec<GenException>> {
    let len = prop_oneof![2usize..300, 2usize..2_000];
    (len, any::<bool>()).prop_flat_map(|(n, tree)| {
        let raw = prop::collection::vec(
            (
                proptest::option::weighted(0.95, 0..n as u16 + 2),
                proptest::option::weighted(0.9, 0..n as u16 + 2),
                any::<bool>(),
            ),
            n,
        );
        let rewired = prop::collection::vec((0..n, 0..n as u16), 0..4);
        (raw, rewired).prop_map(move |(raw, rewired)| {
            let mut excs: Vec<GenException> = raw
                .into_iter()
                .enumerate()
                .map(|(k, (id, parent, group))| {
                    if !tree {
                        return GenException { id, parent, group };
                    }
                    // Listed leaf first: the exception at k has id n-1-k, its parent a smaller id.
                    let own = (n - 1 - k) as u16;
                    GenException {
                        id: Some(own),
                        parent: (own > 0).then(|| parent.unwrap_or(0) % own),
                        group,
                    }
                })
                .collect();
            for (k, parent) in rewired {
                excs[k].parent = Some(parent);
            }
            excs
        })
    })
}

fn group_event_json(excs: &[GenException]) -> Vec<u8> {
    let values: Vec<serde_json::Value> = excs
        .iter()
        .enumerate()
        .map(|(k, e)| {
            serde_json::json!({"type": format!("E{}", k % 3), "value": "v",
                "mechanism": {"type": "chained", "exception_id": e.id, "parent_id": e.parent,
                    "is_exception_group": e.group},
                "stacktrace": {"frames": [{"function": format!("f{}", k % 5), "module": "m"}]}})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"platform": "python", "exception": {"values": values}}))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever ids a client sends, grouping and titling an exception group neither panics nor
    /// loses the event: there is a hash, and the main exception is one of the event's.
    #[test]
    fn exception_groups_never_panic(excs in exception_group()) {
        use stackhound::grouping::{self, Config, Scheme};
        let bytes = group_event_json(&excs);
        let event = event::parse(&bytes).unwrap();
        for scheme in Scheme::all() {
            let config = Config { scheme: *scheme, ..Config::default() };
            prop_assert!(!grouping::hashes(&event, &config).is_empty());
        }
        let main = grouping::main_exception(&event).unwrap();
        prop_assert!(event.exception.0.iter().any(|e| std::ptr::eq(e, main)));
    }
}

// --- decompression bombs ------------------------------------------------------------------

const BOMB_LIMIT: usize = 1 << 20;

/// Peak memory a bomb may cost on top of the 1 MiB output budget: decoder state plus slack.
/// Brotli's ring buffer is the biggest Rust-side cost (4 MiB for these 4 MiB-window bombs).
/// zstd allocates its window with C `malloc`, which this counter does not see; that window is
/// capped at 8 MiB by the decoder (see `compression::decode`).
const BOMB_OVERHEAD: usize = 12 << 20;

fn assert_bomb_defused(name: &str, bomb: &[u8], encodings: &[Encoding]) {
    let start = std::time::Instant::now();
    let (result, peak) = peak_during(|| compression::decode(bomb, encodings, BOMB_LIMIT));
    let elapsed = start.elapsed();
    eprintln!(
        "{name}: {} compressed bytes, peak {peak} bytes, {elapsed:?}",
        bomb.len()
    );
    assert_eq!(
        result,
        Err(DecodeError::TooLarge { limit: BOMB_LIMIT }),
        "{name}"
    );
    assert!(
        peak < BOMB_LIMIT + BOMB_OVERHEAD,
        "{name}: peak allocation {peak} bytes"
    );
    // Generous: the point is that we stop at ~1 MiB of output instead of inflating 1 GiB.
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "{name}: {elapsed:?}"
    );
}

/// Streams `size` zero bytes into `w` without holding them in memory.
fn write_zeros<W: Write + ?Sized>(w: &mut W, size: usize) {
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len());
        w.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
}

#[test]
fn gzip_bomb_of_one_gib_is_too_large_with_bounded_memory() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    write_zeros(&mut enc, 1 << 30);
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    assert_bomb_defused("gzip", &bomb, &[Encoding::Gzip]);
}

#[test]
fn deflate_zstd_and_brotli_bombs_are_too_large_with_bounded_memory() {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    write_zeros(&mut enc, 256 << 20);
    assert_bomb_defused("deflate", &enc.finish().unwrap(), &[Encoding::Deflate]);

    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    write_zeros(&mut enc, 1 << 30);
    assert_bomb_defused("zstd", &enc.finish().unwrap(), &[Encoding::Zstd]);

    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 1 << 16, 1, 22);
        write_zeros(&mut w, 128 << 20);
    }
    assert_bomb_defused("br", &out, &[Encoding::Br]);

    // A bomb inside a chain: the intermediate layer is budgeted too.
    let mut inner = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    write_zeros(&mut inner, 256 << 20);
    let outer = zstd::encode_all(&inner.finish().unwrap()[..], 3).unwrap();
    assert_bomb_defused("gzip, zstd", &outer, &[Encoding::Gzip, Encoding::Zstd]);
}

/// The attack the streaming reader exists for: a small body whose attachment inflates to
/// 95 MiB of zeros. Read item by item under a 100 MiB decode budget, only the event is kept and
/// memory stays at the decoder's own state, where `decode` + `parse` would hold all 95 MiB.
#[test]
fn a_zero_attachment_bomb_is_skipped_with_bounded_memory() {
    const SIZE: usize = 95 << 20;
    let envelope = |w: &mut dyn Write| {
        w.write_all(b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n")
            .unwrap();
        writeln!(w, "{{\"type\":\"attachment\",\"length\":{SIZE}}}").unwrap();
        write_zeros(w, SIZE);
        w.write_all(b"\n{\"type\":\"event\"}\n{\"message\":\"hi\"}\n")
            .unwrap();
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    envelope(&mut gz);
    let mut zs = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    envelope(&mut zs);
    let mut brotli_body = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut brotli_body, 1 << 16, 1, 22);
        envelope(&mut w);
    }
    let bodies = [
        (Encoding::Gzip, gz.finish().unwrap()),
        (Encoding::Zstd, zs.finish().unwrap()),
        (Encoding::Br, brotli_body),
    ];
    for (enc, body) in bodies {
        let name = enc.as_str();
        let start = std::time::Instant::now();
        let (result, peak) = peak_during(|| {
            let mut src = compression::reader(&body, &[enc], 100 << 20).unwrap();
            envelope::read(&mut *src, &|ty| *ty == ItemType::Event, &Limits::default())
        });
        eprintln!(
            "{name}: {} compressed bytes, peak {peak} bytes, {:?}",
            body.len(),
            start.elapsed()
        );
        let env = result.unwrap();
        assert_eq!(env.items.len(), 1, "{name}");
        assert_eq!(env.items[0].payload, br#"{"message":"hi"}"#, "{name}");
        assert_eq!(
            env.dropped,
            [DroppedItem {
                ty: ItemType::Attachment,
                bytes: SIZE
            }],
            "{name}"
        );
        // gzip's state is its 32 KiB window; brotli's ring buffer follows its window (4 MiB
        // here); zstd's window is allocated in C, which this counter does not see.
        let bound = if enc == Encoding::Br {
            8 << 20
        } else {
            1 << 20
        };
        assert!(peak < bound, "{name}: peak allocation {peak} bytes");
    }
}

#[test]
fn every_capture_decodes_and_parses() {
    for cap in captures() {
        let decoded = compression::decode(&cap.body, &cap.encodings, 100 << 20).unwrap();
        assert_eq!(decoded, cap.decoded);
        let env = envelope::parse(&decoded).unwrap();
        assert!(!env.items.is_empty());
        let mut src = compression::reader(&cap.body, &cap.encodings, 100 << 20).unwrap();
        let streamed = envelope::read(&mut *src, &|_| true, &Limits::default()).unwrap();
        assert_eq!(streamed.as_envelope(), env);
        for item in env.items.iter().filter(|i| i.ty == ItemType::Event) {
            event::parse(item.payload).unwrap();
        }
    }
}
