//! Property tests: the protocol parsers never panic on any input, and encode/parse round-trips hold.
//!
//! The binary installs a global allocator that counts bytes per thread, so the decompression
//! bomb tests can assert bounded memory, not just the right error.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use stackhound::protocol::auth::{self, AuthSources};
use stackhound::protocol::compression::{self, DecodeError, Encoding};
use stackhound::protocol::envelope::{self, ItemType};
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
        let mut body = format!("{{\"event_id\":\"{header_id}\",\"sdk\":{{\"name\":\"x\"}}}}").into_bytes();
        for item in &items {
            body.push(b'\n');
            let header = if item.with_length {
                format!("{{\"type\":\"{}\",\"length\":{}}}", item.ty, item.payload.len())
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
fn write_zeros<W: Write>(w: &mut W, size: usize) {
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

#[test]
fn every_capture_decodes_and_parses() {
    for cap in captures() {
        let decoded = compression::decode(&cap.body, &cap.encodings, 100 << 20).unwrap();
        assert_eq!(decoded, cap.decoded);
        let env = envelope::parse(&decoded).unwrap();
        assert!(!env.items.is_empty());
        for item in env.items.iter().filter(|i| i.ty == ItemType::Event) {
            event::parse(item.payload).unwrap();
        }
    }
}
