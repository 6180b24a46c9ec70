//! Hostile and malformed requests, table-driven against one server: every one is a JSON 4xx, and the server keeps serving.

use crate::backend::Backend;
use crate::helpers::{spawn, spawn_with, TestServer, KEY};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use stackhound::config::Limits;
use std::io::Write;
use std::time::{Duration, Instant};

/// No single request may take longer than this (bombs included).
const CASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The public key of the second project the cross-project cases use.
const OTHER_KEY: &str = "second456";

/// One request and what the server must answer.
struct Case {
    name: String,
    method: Method,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
}

impl Case {
    /// A POST to the envelope endpoint of `pid` with our valid `X-Sentry-Auth`.
    fn envelope(pid: i64, name: &str, body: impl Into<Vec<u8>>, status: u16) -> Case {
        Case {
            name: name.to_string(),
            method: Method::POST,
            path: format!("/api/{pid}/envelope/"),
            headers: vec![("x-sentry-auth", auth(KEY).into_bytes())],
            body: body.into(),
            status,
        }
    }

    /// A POST to the legacy store endpoint of `pid` with our valid `X-Sentry-Auth`.
    fn store(pid: i64, name: &str, body: impl Into<Vec<u8>>, status: u16) -> Case {
        Case {
            path: format!("/api/{pid}/store/"),
            ..Case::envelope(pid, name, body, status)
        }
    }

    /// A GET of an API path with the given `Authorization` value (or none).
    fn get(name: &str, path: &str, authorization: Option<&str>, status: u16) -> Case {
        Case {
            name: name.to_string(),
            method: Method::GET,
            path: path.to_string(),
            headers: authorization
                .map(|a| vec![("authorization", a.as_bytes().to_vec())])
                .unwrap_or_default(),
            body: Vec::new(),
            status,
        }
    }

    fn path(mut self, path: impl Into<String>) -> Case {
        self.path = path.into();
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Case {
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.into()));
        self
    }

    fn no_auth(mut self) -> Case {
        self.headers.retain(|(k, _)| *k != "x-sentry-auth");
        self
    }

    fn encoding(self, value: &str) -> Case {
        self.header("content-encoding", value)
    }

    /// Envelope and store responses must also carry `X-Sentry-Error`.
    fn is_ingest(&self) -> bool {
        let p = self.path.split('?').next().unwrap_or_default();
        p.ends_with("/envelope/") || p.ends_with("/store/")
    }
}

fn auth(key: &str) -> String {
    format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=stackhound-tests/1.0")
}

fn event_json(ty: &str) -> String {
    format!(
        r#"{{"exception":{{"values":[{{"type":"{ty}","value":"boom"}}]}},"platform":"python"}}"#
    )
}

/// `{"type":"event","length":N}\n<payload>\n`.
fn event_item(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{{\"type\":\"event\",\"length\":{}}}\n", payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
}

/// A well-formed envelope with one exception event of type `ty`.
fn valid_envelope(event_id: &str, ty: &str) -> Vec<u8> {
    let mut out = format!("{{\"event_id\":\"{event_id}\"}}\n").into_bytes();
    out.extend(event_item(event_json(ty).as_bytes()));
    out
}

/// An envelope header line followed by one event item (`ty` as the exception type).
fn with_header(header: &[u8], ty: &str) -> Vec<u8> {
    let mut out = header.to_vec();
    out.push(b'\n');
    out.extend(event_item(event_json(ty).as_bytes()));
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

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

fn br(data: &[u8], quality: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, quality, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// `total` zeros through a streaming encoder, 1 MiB at a time, so the plaintext never exists.
fn zeros_into<W: Write>(w: &mut W, total: usize) {
    let chunk = vec![0u8; 1 << 20];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        w.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

fn gzip_bomb(total: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    zeros_into(&mut e, total);
    e.finish().unwrap()
}

fn zlib_bomb(total: usize) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zeros_into(&mut e, total);
    e.finish().unwrap()
}

fn zstd_bomb(total: usize) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    zeros_into(&mut e, total);
    e.finish().unwrap()
}

fn br_bomb(total: usize) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 1 << 16, 1, 22);
        zeros_into(&mut w, total);
    }
    out
}

#[derive(Clone, Copy)]
enum Codec {
    Gzip,
    Zlib,
    Zstd,
    Br,
}

/// An envelope (one small event, then two attachments of 64 MiB of zeros each, with their
/// lengths) compressed with `codec`: 128 MiB inflated, over the 100 MiB cap.
fn envelope_bomb(codec: Codec) -> Vec<u8> {
    fn write_into<W: Write>(w: &mut W) {
        w.write_all(b"{}\n{\"type\":\"event\"}\n{\"message\":\"bomb\"}\n")
            .unwrap();
        for _ in 0..2 {
            let size = 64usize << 20;
            w.write_all(format!("{{\"type\":\"attachment\",\"length\":{size}}}\n").as_bytes())
                .unwrap();
            zeros_into(w, size);
            w.write_all(b"\n").unwrap();
        }
    }
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            write_into(&mut e);
            e.finish().unwrap()
        }
        Codec::Zlib => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            write_into(&mut e);
            e.finish().unwrap()
        }
        Codec::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            write_into(&mut e);
            e.finish().unwrap()
        }
        Codec::Br => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 1 << 16, 1, 22);
                write_into(&mut w);
            }
            out
        }
    }
}

/// `prefix` + 100,000 nested arrays + `suffix`: deeper than any recursive parser can go.
fn deep(prefix: &str, suffix: &str) -> String {
    format!(
        "{prefix}{}1{}{suffix}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    )
}

/// Deterministic incompressible bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    elapsed: Duration,
}

async fn send(server: &TestServer, case: &Case) -> Result<Answer, String> {
    let mut req = server
        .http
        .request(case.method.clone(), format!("{}{}", server.base, case.path));
    for (k, v) in &case.headers {
        let value = HeaderValue::from_bytes(v).map_err(|e| format!("bad test header: {e}"))?;
        req = req.header(HeaderName::from_static(k), value);
    }
    if case.method == Method::POST {
        req = req.body(case.body.clone());
    }
    let started = Instant::now();
    let fut = async {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("request failed: {e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("body failed: {e}"))?;
        Ok::<_, String>((status, headers, body.to_vec()))
    };
    let (status, headers, body) = tokio::time::timeout(CASE_TIMEOUT, fut)
        .await
        .map_err(|_| format!("no answer within {CASE_TIMEOUT:?}"))??;
    Ok(Answer {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

/// Writes `head` and then `body` on a raw connection (a separate task, so an early answer is
/// read even if the server stops reading), half-closes, and returns status and body.
async fn raw_http(host: &str, head: String, body: Vec<Vec<u8>>) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body {
            wr.write_all(&chunk).await?;
        }
        wr.shutdown().await
    });
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = rd.read(&mut chunk).await.map_err(|e| e.to_string())?;
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>())
                    })
                    .and_then(Result::ok);
                if n == 0 || len.is_some_and(|len| body.len() >= len) {
                    let status = head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    return Ok((status, body.to_string()));
                }
            }
            if n == 0 {
                return Err(format!("connection closed after {} bytes", buf.len()));
            }
        }
    };
    let out = tokio::time::timeout(CASE_TIMEOUT, read)
        .await
        .map_err(|_| "no answer".to_string())?;
    writer.abort();
    out
}

/// Everything wrong with one answer, or nothing.
fn judge(case: &Case, answer: &Answer) -> Vec<String> {
    let mut problems = Vec::new();
    let body = String::from_utf8_lossy(&answer.body);
    if answer.status != case.status {
        problems.push(format!(
            "status {} (want {}), body {body}",
            answer.status, case.status
        ));
    }
    if answer.status >= 500 {
        problems.push(format!("server error {}", answer.status));
    }
    match serde_json::from_slice::<serde_json::Value>(&answer.body) {
        Ok(v) if v["detail"].is_string() => {}
        _ => problems.push(format!("body is not JSON with a string detail: {body}")),
    }
    if case.is_ingest() && !answer.headers.contains_key("x-sentry-error") {
        problems.push("no X-Sentry-Error header".to_string());
    }
    if answer.elapsed > CASE_TIMEOUT {
        problems.push(format!("took {:?}", answer.elapsed));
    }
    problems
}

/// Sends a valid event with a fresh exception type and asserts it is accepted.
async fn send_valid(server: &TestServer, n: u32, ty: &str) {
    let id = format!("{n:032x}");
    let (status, body) = server.post_envelope(valid_envelope(&id, ty), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id);
}

/// Every refused request of the main table, against the default limits.
fn cases(server: &TestServer, other_pid: i64) -> Vec<Case> {
    let pid = server.project_id;
    let host = server.base.trim_start_matches("http://");
    let e = |name: &str, body: Vec<u8>, status: u16| Case::envelope(pid, name, body, status);
    let ev = event_json("ShouldNotBeStored");
    let good = valid_envelope("0123456789abcdef0123456789abcdef", "ShouldNotBeStored");
    let id = "\"event_id\":\"0123456789abcdef0123456789abcdef\"";
    let big_event = format!(
        r#"{{"message":"{}","platform":"python"}}"#,
        "x".repeat((1 << 20) + 10)
    );
    let gz_good = gzip(&good);
    let mut gz_trailing = gz_good.clone();
    gz_trailing.extend_from_slice(b"trailing junk");
    let br_good = br(&good, 5);
    let zstd_good = zstd(&good);
    let huge_header = format!("{{\"pad\":\"{}\"}}", "a".repeat(70 * 1024));
    let many_items: Vec<u8> = cat(&[
        b"{}\n",
        &b"{\"type\":\"client_report\",\"length\":2}\n{}\n".repeat(1001),
    ]);

    vec![
        // --- bodies and framing ---
        e("empty body", vec![], 400),
        e("empty body, gzip", vec![], 400).encoding("gzip"),
        e("empty body, zstd", vec![], 400).encoding("zstd"),
        e("only a newline", b"\n".to_vec(), 400),
        e("header cut mid-JSON, no items", format!("{{{id}").into_bytes(), 400),
        e("header cut mid-string", b"{\"event_id\":\"0123".to_vec(), 400),
        e(
            "payload shorter than length, at EOF",
            cat(&[b"{}\n{\"type\":\"event\",\"length\":100}\n", ev.as_bytes()]),
            400,
        ),
        e(
            "length longer than the rest",
            cat(&[b"{}\n{\"type\":\"event\",\"length\":200}\n", ev.as_bytes(), b"\n"]),
            400,
        ),
        e(
            "length shorter than payload",
            cat(&[b"{}\n{\"type\":\"event\",\"length\":5}\n", ev.as_bytes(), b"\n"]),
            400,
        ),
        e(
            "length negative",
            cat(&[b"{}\n{\"type\":\"event\",\"length\":-5}\n", ev.as_bytes(), b"\n"]),
            400,
        ),
        e(
            "length is a string",
            cat(&[b"{}\n{\"type\":\"event\",\"length\":\"10\"}\n", ev.as_bytes()]),
            400,
        ),
        e(
            "length is a fraction",
            cat(&[b"{}\n{\"type\":\"event\",\"length\":1.5}\n", ev.as_bytes()]),
            400,
        ),
        // A declared length over the item's limit is refused as too large before anything
        // is read (the streaming reader does not wait for bytes it would refuse anyway).
        e(
            "length huge (99999999999)",
            cat(&[b"{}\n{\"type\":\"event\",\"length\":99999999999}\n", ev.as_bytes()]),
            413,
        ),
        e(
            "length above u64",
            cat(&[
                b"{}\n{\"type\":\"event\",\"length\":18446744073709551616}\n",
                ev.as_bytes(),
            ]),
            400,
        ),
        e(
            "length u64::MAX",
            cat(&[
                b"{}\n{\"type\":\"event\",\"length\":18446744073709551615}\n",
                ev.as_bytes(),
            ]),
            413,
        ),
        e(
            "junk after a length-delimited payload",
            cat(&[&good[..good.len() - 1], b"JUNK\n"]),
            400,
        ),
        e(
            "space after a length-delimited payload",
            cat(&[&good[..good.len() - 1], b" \n"]),
            400,
        ),
        e(
            "an extra blank line at the end",
            cat(&[&good, b"\n"]),
            400,
        ),
        e("invalid JSON in envelope header", with_header(b"{\"event_id\":}", "X"), 400),
        e("trailing garbage on the header line", with_header(b"{} x", "X"), 400),
        e(
            "invalid JSON in item header",
            cat(&[b"{}\n{\"type\":\"event\",}\n", ev.as_bytes()]),
            400,
        ),
        e(
            "invalid JSON in event payload",
            cat(&[b"{}\n", &event_item(b"{\"message\":\"unterminated")]),
            400,
        ),
        e("event payload is an array", cat(&[b"{}\n", &event_item(b"[1,2,3]")]), 400),
        e("event payload is a string", cat(&[b"{}\n", &event_item(b"\"hi\"")]), 400),
        e("event payload empty", cat(&[b"{}\n", &event_item(b"")]), 400),
        e("deep nesting (100k) in envelope header", with_header(deep(r#"{"sdk":"#, "}").as_bytes(), "X"), 400),
        e(
            "deep nesting (100k) in item header",
            cat(&[b"{}\n", deep(r#"{"type":"event","x":"#, "}").as_bytes(), b"\n{}\n"]),
            400,
        ),
        e("invalid UTF-8 inside an event string", cat(&[b"{}\n", &event_item(b"{\"message\":\"a\xff\xfeb\"}")]), 400),
        e(
            "number out of f64 range in an event",
            cat(&[b"{}\n", &event_item(br#"{"message":"m","timestamp":1e400}"#)]),
            400,
        ),
        e("envelope header is an array", with_header(b"[]", "X"), 400),
        e("envelope header is a string", with_header(b"\"hello\"", "X"), 400),
        e("envelope header is null", with_header(b"null", "X"), 400),
        e("envelope header is a number", with_header(b"42", "X"), 400),
        e("envelope header line empty", with_header(b"", "X"), 400),
        e(
            "item header is an array",
            cat(&[b"{}\n[\"event\"]\n", ev.as_bytes()]),
            400,
        ),
        e(
            "item header without type",
            cat(&[b"{}\n{\"length\":2}\n{}\n"]),
            400,
        ),
        e("item header with type null", b"{}\n{\"type\":null}\n{}\n".to_vec(), 400),
        e("item header with numeric type", b"{}\n{\"type\":7}\n{}\n".to_vec(), 400),
        e(
            "two event items",
            cat(&[b"{}\n", &event_item(ev.as_bytes()), &event_item(ev.as_bytes())]),
            400,
        ),
        e(
            "duplicate event_id in envelope header",
            with_header(
                br#"{"event_id":"0123456789abcdef0123456789abcdef","event_id":"0123456789abcdef0123456789abcdee"}"#,
                "X",
            ),
            400,
        ),
        e(
            "duplicate sent_at in envelope header",
            with_header(
                br#"{"sent_at":"2024-01-01T00:00:00Z","sent_at":"2024-01-01T00:00:00Z"}"#,
                "X",
            ),
            400,
        ),
        e(
            "duplicate key via escape in envelope header",
            with_header(br#"{"sdk":{},"\u0073dk":{}}"#, "X"),
            400,
        ),
        e(
            "duplicate key in item header",
            cat(&[
                format!("{{}}\n{{\"type\":\"event\",\"length\":{0},\"length\":{0}}}\n", ev.len())
                    .as_bytes(),
                ev.as_bytes(),
            ]),
            400,
        ),
        e("event_id not hex", with_header(br#"{"event_id":"not-a-uuid"}"#, "X"), 400),
        e(
            "event_id 31 hex digits",
            with_header(br#"{"event_id":"0123456789abcdef0123456789abcde"}"#, "X"),
            400,
        ),
        e(
            "event_id dashes misplaced",
            with_header(br#"{"event_id":"0123456-789ab-cdef-0123-456789abcdef"}"#, "X"),
            400,
        ),
        e("event_id a number", with_header(br#"{"event_id":42}"#, "X"), 400),
        e("envelope dsn not a string", with_header(br#"{"dsn":42}"#, "X"), 400),
        e(
            "non-UTF-8 envelope header",
            with_header(b"{\"sdk\":\"\xff\xfe\"}", "X"),
            400,
        ),
        e(
            "non-UTF-8 item header",
            cat(&[b"{}\n{\"type\":\"ev\xc3\x28nt\",\"length\":2}\n{}\n"]),
            400,
        ),
        e(
            "header line longer than 64 KiB",
            with_header(huge_header.as_bytes(), "X"),
            400,
        ),
        e(
            "128 KiB without a newline",
            vec![b'{'; 128 * 1024],
            400,
        ),
        e("more than 1000 items", many_items, 400),
        e(
            "event item over 1 MiB",
            cat(&[format!("{{{id}}}\n").as_bytes(), &event_item(big_event.as_bytes())]),
            413,
        ),
        e(
            "gzipped event item over 1 MiB",
            gzip(&cat(&[b"{}\n", &event_item(big_event.as_bytes())])),
            413,
        )
        .encoding("gzip"),
        // --- content encodings ---
        e("unsupported Content-Encoding compress", good.clone(), 400).encoding("compress"),
        e("unsupported Content-Encoding bzip2", good.clone(), 400).encoding("bzip2"),
        e("Content-Encoding chain too long", good.clone(), 400)
            .encoding("gzip, gzip, gzip, gzip, gzip"),
        e("non-UTF-8 Content-Encoding", good.clone(), 400).header("content-encoding", b"g\xffzip".to_vec()),
        e("corrupt gzip (plain body)", good.clone(), 400).encoding("gzip"),
        e("corrupt gzip (noise)", noise(4096, 1), 400).encoding("gzip"),
        e("gzip truncated", gz_good[..gz_good.len() / 2].to_vec(), 400).encoding("gzip"),
        e("gzip without its trailer", gz_good[..gz_good.len() - 4].to_vec(), 400).encoding("gzip"),
        e("gzip with trailing junk", gz_trailing, 400).encoding("gzip"),
        e("gzip body labelled br", gz_good.clone(), 400).encoding("br"),
        e("corrupt deflate", noise(4096, 2), 400).encoding("deflate"),
        e("deflate truncated", zlib(&good)[..20].to_vec(), 400).encoding("deflate"),
        e("corrupt br", noise(4096, 3), 400).encoding("br"),
        e("br truncated", br_good[..br_good.len() / 2].to_vec(), 400).encoding("br"),
        e("corrupt zstd", noise(4096, 4), 400).encoding("zstd"),
        e("zstd truncated", zstd_good[..zstd_good.len() / 2].to_vec(), 400).encoding("zstd"),
        e("gzip wrapping garbage", gzip(b"\x00\x01 definitely not an envelope"), 400).encoding("gzip"),
        // Zeros are no envelope: the reader stops at the first 64 KiB without a newline,
        // long before the decompression cap.
        e("1 GiB of zeros, gzip", gzip_bomb(1 << 30), 400).encoding("gzip"),
        e("1 GiB of zeros, zstd", zstd_bomb(1 << 30), 400).encoding("zstd"),
        e("128 MiB of zeros, br", br_bomb(128 << 20), 400).encoding("br"),
        // A well-formed envelope whose attachments inflate past the 100 MiB cap: they stream
        // through until the cap, then 413.
        e("decompression bomb: envelope of 2 x 64 MiB attachments, gzip", envelope_bomb(Codec::Gzip), 413)
            .encoding("gzip"),
        e("decompression bomb: envelope of 2 x 64 MiB attachments, zstd", envelope_bomb(Codec::Zstd), 413)
            .encoding("zstd"),
        e("decompression bomb: envelope of 2 x 64 MiB attachments, deflate", envelope_bomb(Codec::Zlib), 413)
            .encoding("deflate"),
        e("decompression bomb: envelope of 2 x 64 MiB attachments, br", envelope_bomb(Codec::Br), 413)
            .encoding("br"),
        e("decompression bomb inside a chain: gzip then br", br(&envelope_bomb(Codec::Gzip), 1), 413)
            .encoding("gzip, br"),
        e("90 MiB of zeros, gzip (under the cap, no newline)", gzip_bomb(90 << 20), 400)
            .encoding("gzip"),
        // --- authentication ---
        e("auth missing entirely", good.clone(), 401).no_auth(),
        e("X-Sentry-Auth empty", good.clone(), 401).header("x-sentry-auth", ""),
        e("X-Sentry-Auth with Bearer scheme", good.clone(), 401)
            .header("x-sentry-auth", "Bearer abc"),
        e("X-Sentry-Auth without pairs", good.clone(), 401).header("x-sentry-auth", "Sentry"),
        e("X-Sentry-Auth garbage", good.clone(), 401).header("x-sentry-auth", "{}{}{}"),
        e("sentry_key empty", good.clone(), 401)
            .header("x-sentry-auth", "Sentry sentry_key=, sentry_version=7"),
        e("sentry_key missing", good.clone(), 401)
            .header("x-sentry-auth", "Sentry sentry_version=7, sentry_client=x/1"),
        e("sentry_key non-ASCII", good.clone(), 400)
            .header("x-sentry-auth", "Sentry sentry_key=pübl1c, sentry_version=7".as_bytes()),
        e("sentry_key too long", good.clone(), 400).header("x-sentry-auth", auth(&"a".repeat(65))),
        e("sentry_key unknown", good.clone(), 403).header("x-sentry-auth", auth("nosuchkey")),
        e("sentry_key of another project", good.clone(), 403)
            .header("x-sentry-auth", auth(OTHER_KEY)),
        e("path project of another key", good.clone(), 403)
            .path(format!("/api/{other_pid}/envelope/")),
        e("path project that does not exist", good.clone(), 403).path("/api/999999/envelope/"),
        e("sentry_version=99", good.clone(), 400)
            .header("x-sentry-auth", format!("Sentry sentry_key={KEY}, sentry_version=99")),
        e("sentry_version not a number", good.clone(), 401)
            .header("x-sentry-auth", format!("Sentry sentry_key={KEY}, sentry_version=seven")),
        e("sentry_version overflows u32", good.clone(), 401)
            .header("x-sentry-auth", format!("Sentry sentry_key={KEY}, sentry_version=99999999999")),
        e("non-UTF-8 X-Sentry-Auth", good.clone(), 401)
            .header("x-sentry-auth", b"Sentry sentry_key=pub\xfflic, sentry_version=7".to_vec()),
        e("non-UTF-8 Authorization", good.clone(), 401)
            .no_auth()
            .header("authorization", b"Sentry sentry_key=\xff".to_vec()),
        e("Authorization Basic with bad base64", good.clone(), 401)
            .no_auth()
            .header("authorization", "Basic !!!notbase64!!!"),
        e("Authorization Basic without a key", good.clone(), 401)
            .no_auth()
            .header("authorization", "Basic OnNlY3JldA=="), // ":secret"
        e("X-Sentry-Auth and query key", good.clone(), 401)
            .path(format!("/api/{pid}/envelope/?sentry_key={KEY}&sentry_version=7")),
        e("X-Sentry-Auth and Authorization: Sentry", good.clone(), 401)
            .header("authorization", auth(KEY)),
        e("query key unknown", good.clone(), 403)
            .no_auth()
            .path(format!("/api/{pid}/envelope/?sentry_key=nosuchkey&sentry_version=7")),
        e("query key with a space", good.clone(), 400)
            .no_auth()
            .path(format!("/api/{pid}/envelope/?sentry_key=pub+lic")),
        e("query key not UTF-8", good.clone(), 401)
            .no_auth()
            .path(format!("/api/{pid}/envelope/?sentry_key=%ff%fe")),
        e("query sentry_version=99", good.clone(), 400)
            .no_auth()
            .path(format!("/api/{pid}/envelope/?sentry_key={KEY}&sentry_version=99")),
        e(
            "envelope dsn names another key than the header",
            with_header(format!(r#"{{"dsn":"http://{OTHER_KEY}@{host}/{pid}"}}"#).as_bytes(), "X"),
            401,
        ),
        e(
            "envelope dsn names another project",
            with_header(format!(r#"{{"dsn":"http://{KEY}@{host}/{other_pid}"}}"#).as_bytes(), "X"),
            401,
        ),
        e("envelope dsn unparsable", with_header(br#"{"dsn":"not a dsn"}"#, "X"), 401),
        e(
            "envelope dsn alone, unknown key",
            with_header(format!(r#"{{"dsn":"http://nosuchkey@{host}/{pid}"}}"#).as_bytes(), "X"),
            403,
        )
        .no_auth(),
        e(
            "envelope dsn alone, key of another project",
            with_header(format!(r#"{{"dsn":"http://{OTHER_KEY}@{host}/{pid}"}}"#).as_bytes(), "X"),
            403,
        )
        .no_auth(),
        e(
            "envelope dsn alone, unparsable",
            with_header(br#"{"dsn":"ftp://x@y/1"}"#, "X"),
            401,
        )
        .no_auth(),
        // --- project paths ---
        e("project path not a number", good.clone(), 400).path("/api/abc/envelope/"),
        e("project path 0", good.clone(), 400).path("/api/0/envelope/"),
        e("project path negative", good.clone(), 400).path("/api/-3/envelope/"),
        e("project path overflows i64", good.clone(), 400)
            .path("/api/99999999999999999999/envelope/"),
        e("project path without trailing slash, bad", good.clone(), 400).path("/api/x1/envelope"),
        // --- the legacy store endpoint ---
        Case::store(pid, "store: invalid JSON", b"{\"message\": ".to_vec(), 400),
        Case::store(pid, "store: neither JSON nor base64+zlib", b"hello, world!".to_vec(), 400),
        Case::store(pid, "store: JSON array", b"[1,2,3]".to_vec(), 400),
        Case::store(pid, "store: empty body", vec![], 400),
        Case::store(pid, "store: whitespace body", b"  \n ".to_vec(), 400),
        Case::store(
            pid,
            "store: base64 of zlib of non-JSON",
            {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .encode(zlib(b"plain text, not an event"))
                    .into_bytes()
            },
            400,
        ),
        Case::store(pid, "store: event over 1 MiB", big_event.clone().into_bytes(), 413),
        Case::store(pid, "store: corrupt gzip", noise(512, 5), 400).encoding("gzip"),
        Case::store(pid, "store: zlib bomb", zlib_bomb(128 << 20), 413).encoding("deflate"),
        Case::store(pid, "store: auth missing", ev.clone().into_bytes(), 401).no_auth(),
        Case::store(pid, "store: key unknown", ev.clone().into_bytes(), 403)
            .header("x-sentry-auth", auth("nosuchkey")),
        Case::store(pid, "store: bad project path", ev.clone().into_bytes(), 400)
            .path("/api/abc/store/"),
        // --- routing and the read API ---
        Case::get("unknown /api/ route", "/api/1/nonsense/", None, 404),
        Case::get("unknown /api/0/ route", "/api/0/nonsense/", Some(&format!("Bearer {}", server.token)), 404),
        Case::get("unknown top-level route", "/nope", None, 404),
        Case::get("API without a token", "/api/0/projects/stackhound/default/issues/", None, 401),
        Case::get(
            "API with a bad token",
            "/api/0/projects/stackhound/default/issues/",
            Some("Bearer sntryu_0000000000000000000000000000000000000000000000000000000000000000"),
            401,
        ),
        Case::get(
            "API with garbage bearer",
            "/api/0/projects/stackhound/default/issues/",
            Some("Bearer x"),
            401,
        ),
        Case::get(
            "API with a non-Bearer scheme",
            "/api/0/issues/1/",
            Some(&format!("Token {}", server.token)),
            401,
        ),
        Case::get("API with an ingest key as token", "/api/0/issues/1/", Some(&auth(KEY)), 401),
    ]
}

/// Requests that are odd but tolerated, each with the status it gets (200 unless noted).
/// `Some(ty)` means an event is stored whose issue is titled or typed `ty`.
fn quirks(server: &TestServer) -> Vec<(Case, Option<&'static str>)> {
    let pid = server.project_id;
    let host = server.base.trim_start_matches("http://");
    let e = |name: &str, body: Vec<u8>| Case::envelope(pid, name, body, 200);
    let item = |payload: &str| cat(&[b"{}\n", &event_item(payload.as_bytes())]);
    vec![
        (e("envelope without items", b"{}".to_vec()), None),
        (e("envelope without items, newline", b"{}\n".to_vec()), None),
        (
            e(
                "unknown item type skipped",
                b"{}\n{\"type\":\"mystery\",\"length\":3}\nabc\n".to_vec(),
            ),
            None,
        ),
        (
            e(
                "unreadable sent_at is ignored",
                with_header(br#"{"sent_at":"yesterday-ish"}"#, "QuirkSentAt"),
            ),
            Some("QuirkSentAt"),
        ),
        (
            e(
                "CRLF after the envelope header",
                cat(&[b"{}\r\n", &event_item(event_json("QuirkCrlf").as_bytes())]),
            ),
            Some("QuirkCrlf"),
        ),
        (
            e(
                "Content-Encoding: UTF-8 means none",
                valid_envelope("00000000000000000000000000000c01", "QuirkUtf8"),
            )
            .encoding("UTF-8"),
            Some("QuirkUtf8"),
        ),
        (
            e(
                "Bearer Authorization next to X-Sentry-Auth is ignored",
                valid_envelope("00000000000000000000000000000c02", "QuirkBearer"),
            )
            .header("authorization", "Bearer whatever"),
            Some("QuirkBearer"),
        ),
        (
            e(
                "envelope dsn alone authenticates",
                with_header(
                    format!(r#"{{"dsn":"http://{KEY}@{host}/{pid}"}}"#).as_bytes(),
                    "QuirkDsnOnly",
                ),
            )
            .no_auth(),
            Some("QuirkDsnOnly"),
        ),
        // Skipped fields are never built, so depth there costs nothing; the API then cannot
        // re-parse the payload past serde_json's depth limit of 128 and shows it empty.
        (
            e(
                "deep nesting (100k) in an ignored event field",
                item(&deep(
                    r#"{"exception":{"values":[{"type":"QuirkDeep"}]},"extra":{"a":"#,
                    "}}",
                )),
            ),
            Some("QuirkDeep"),
        ),
        (
            e(
                "NUL escape in an event string",
                item(r#"{"exception":{"values":[{"type":"QuirkNul","value":"a\u0000b"}]}}"#),
            ),
            Some("QuirkNul"),
        ),
        (
            e(
                "exception.values not an array",
                item(r#"{"message":"QuirkValuesNotArray","exception":{"values":"x"}}"#),
            ),
            Some("QuirkValuesNotArray"),
        ),
        (
            e(
                "absurd numbers in frames",
                item(
                    r#"{"exception":{"values":[{"type":"QuirkNumbers","stacktrace":{"frames":[{"lineno":1e300,"colno":-99999999999999999999}]}}]}}"#,
                ),
            ),
            Some("QuirkNumbers"),
        ),
        // Python's json.dumps writes unpaired surrogate escapes for undecodable paths: the
        // event is kept with U+FFFD in their place.
        (
            e(
                "lone surrogate escape in an event string",
                item(
                    r#"{"exception":{"values":[{"type":"QuirkSurrogate","value":"lone \ud800 surrogate"}]}}"#,
                ),
            ),
            Some("QuirkSurrogate"),
        ),
        // A wrong method: 405 (with a JSON detail, like every refusal).
        (
            Case::get(
                "GET on the envelope endpoint",
                &format!("/api/{pid}/envelope/"),
                None,
                405,
            ),
            None,
        ),
    ]
}

both_backends!(malformed_requests_are_refused_and_the_server_keeps_serving);
async fn malformed_requests_are_refused_and_the_server_keeps_serving(backend: Backend) {
    let server = spawn(backend).await;
    let other = server
        .store
        .create_project("second", "Second", OTHER_KEY, 0)
        .await
        .unwrap();
    send_valid(&server, 1, "BeforeCases").await;

    let table = cases(&server, other.id);
    let mut names = std::collections::HashSet::new();
    for c in &table {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
    }
    assert!(table.len() >= 45, "{}", table.len());
    let mut failures = Vec::new();
    for case in &table {
        match send(&server, case).await {
            Ok(answer) => {
                println!(
                    "{:>3} {:>6.0?} {}",
                    answer.status, answer.elapsed, case.name
                );
                for p in judge(case, &answer) {
                    failures.push(format!("{}: {p}", case.name));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }

    let mut stored_quirks = Vec::new();
    for (case, stored) in quirks(&server) {
        match send(&server, &case).await {
            Ok(a) if a.status == case.status => {
                println!("{:>3} {:>6.0?} quirk: {}", a.status, a.elapsed, case.name);
                stored_quirks.extend(stored);
            }
            Ok(a) => failures.push(format!(
                "quirk {}: status {}, body {}",
                case.name,
                a.status,
                String::from_utf8_lossy(&a.body)
            )),
            Err(e) => failures.push(format!("quirk {}: {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    send_valid(&server, 2, "AfterCases").await;
    let resp = server
        .http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Exactly the valid events and the tolerated quirks were stored, each once.
    let issues = server.all_issues().await;
    let mut types: Vec<String> = issues
        .iter()
        .map(|i| {
            assert_eq!(i["count"], "1", "{i}");
            let ty = i["metadata"]["type"].as_str().or(i["title"].as_str());
            ty.unwrap().to_string()
        })
        .collect();
    types.sort();
    let mut want: Vec<String> = ["BeforeCases", "AfterCases"]
        .iter()
        .chain(stored_quirks.iter())
        .map(|s| s.to_string())
        .collect();
    want.sort();
    assert_eq!(types, want);
    assert_eq!(server.store.event_total().await.unwrap(), want.len() as i64);
    // Every stored event, odd ones included, can be read back through the API.
    for issue in &issues {
        let path = format!(
            "/api/0/issues/{}/events/latest/",
            issue["id"].as_str().unwrap()
        );
        let (status, _, event) = server.api(&path).await;
        assert_eq!(status, 200, "{path}: {event}");
        assert!(event["eventID"].is_string(), "{event}");
    }
    server.stop().await;
}

both_backends!(oversize_bodies_are_413);
/// A body over `max_body` is refused with 413 before it is decoded, whatever its encoding.
async fn oversize_bodies_are_413(backend: Backend) {
    let server = spawn_with(
        backend,
        Limits {
            max_body: 1 << 20,
            ..Default::default()
        },
    )
    .await;
    let pid = server.project_id;
    let table = [
        Case::envelope(pid, "2 MiB of noise, gzip", noise(2 << 20, 7), 413).encoding("gzip"),
        Case::envelope(pid, "1 MiB + 1 byte, plain", vec![b'{'; (1 << 20) + 1], 413),
        Case::envelope(pid, "3 MiB, zstd", noise(3 << 20, 8), 413).encoding("zstd"),
        Case::store(pid, "store: 2 MiB", noise(2 << 20, 9), 413),
    ];
    let mut failures = Vec::new();
    for case in &table {
        match send(&server, case).await {
            Ok(answer) => {
                for p in judge(case, &answer) {
                    failures.push(format!("{}: {p}", case.name));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    // Without Content-Length the cap must hold while streaming: 2 MiB of chunks.
    let host = server.base.trim_start_matches("http://").to_string();
    let auth_line = format!("X-Sentry-Auth: {}\r\n", server.auth_header());
    let path = format!("/api/{pid}/envelope/");
    let chunk = noise(64 << 10, 10);
    let mut chunks = Vec::new();
    for _ in 0..32 {
        chunks.push(format!("{:x}\r\n", chunk.len()).into_bytes());
        chunks.push(chunk.clone());
        chunks.push(b"\r\n".to_vec());
    }
    chunks.push(b"0\r\n\r\n".to_vec());
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth_line}Transfer-Encoding: chunked\r\n\r\n"
    );
    match raw_http(&host, head, chunks).await {
        Ok((413, body)) if body.contains("detail") => {}
        other => failures.push(format!("chunked 2 MiB: {other:?}")),
    }
    // A body shorter than its Content-Length, then end of stream: a read error, not a hang.
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth_line}Content-Length: 1000\r\n\r\n");
    match raw_http(&host, head, vec![b"{}\n".to_vec()]).await {
        Ok((400, body)) if body.contains("detail") => {}
        other => failures.push(format!("truncated Content-Length body: {other:?}")),
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The server still takes ordinary events afterwards.
    send_valid(&server, 1, "AfterOversize").await;
    assert_eq!(server.store.event_total().await.unwrap(), 1);
    server.stop().await;
}
