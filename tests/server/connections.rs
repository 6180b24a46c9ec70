//! Connection-level limits over real sockets: body, idle and header timeouts, the connection cap's 503, and the graceful stop.

use crate::backend::Backend;
use crate::helpers::{spawn_tuned, TestServer};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No wait in these tests may exceed this (a server that never closes fails, not hangs).
const BOUND: Duration = Duration::from_secs(15);

/// A small valid envelope with one event.
fn envelope(n: u32) -> Vec<u8> {
    let event = format!(r#"{{"event_id":"{n:032x}","message":"connections test {n}"}}"#);
    format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes()
}

async fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Starts posting `body` to the envelope endpoint and stops after `sent` bytes of it. Returns
/// once the handler is reading the body: with `Expect: 100-continue`, hyper answers `100
/// Continue` when the handler first asks for the body, so the request is surely in flight.
async fn start_upload(server: &TestServer, body: &[u8], sent: usize) -> TcpStream {
    let mut stream = connect(server).await;
    let head = format!(
        "POST /api/{}/envelope/ HTTP/1.1\r\nhost: test\r\nx-sentry-auth: {}\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        server.project_id,
        server.auth_header(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = read_response(&mut stream).await.expect("100 Continue");
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    stream.write_all(&body[..sent]).await.unwrap();
    stream
}

/// Reads one response (head and `content-length` body); `None` if the server closed first.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&got[..end + 4 + len]).into_owned());
            }
        }
        match tokio::time::timeout(BOUND, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no response within {BOUND:?}"),
        }
    }
}

/// Waits until the server closes `stream` (end of stream or reset); returns what it sent
/// before, and when it closed.
async fn wait_closed(stream: &mut TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(BOUND, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&got).into_owned(), Instant::now())
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after {BOUND:?}"),
        }
    }
}

/// A kept-alive `GET /healthz` on a raw connection; asserts it is answered 200.
async fn healthz(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let answer = read_response(stream).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

both_backends!(stalled_upload_is_closed_after_the_body_timeout);
async fn stalled_upload_is_closed_after_the_body_timeout(backend: Backend) {
    let timeout = Duration::from_secs(1);
    let server = spawn_tuned(backend, move |s| s.conn.body_timeout = timeout).await;
    let body = envelope(1);
    let mut stalled = start_upload(&server, &body, body.len() / 2).await;
    let stalled_at = Instant::now();

    // Others are served meanwhile.
    for n in 2..6 {
        let (status, answer) = server.post_envelope(envelope(n), &[]).await;
        assert_eq!(status, 200, "{answer}");
    }
    if stalled_at.elapsed() < timeout * 9 / 10 {
        let mut probe = [0u8; 1];
        let still_open = stalled.try_read(&mut probe);
        assert!(
            matches!(&still_open, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the stalled upload was answered or closed early: {still_open:?}"
        );
    }

    let (answer, closed_at) = wait_closed(&mut stalled).await;
    let took = closed_at - stalled_at;
    assert!(took >= timeout * 9 / 10, "closed after {took:?}");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The half-sent event was not stored; the others were.
    let (status, answer) = server.post_envelope(envelope(6), &[]).await;
    assert_eq!(status, 200, "{answer}");
    let count: u64 = server
        .all_issues()
        .await
        .iter()
        .map(|i| i["count"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(count, 5);
    server.stop().await;
}

both_backends!(silent_connection_is_closed_after_the_idle_timeout);
async fn silent_connection_is_closed_after_the_idle_timeout(backend: Backend) {
    let idle = Duration::from_secs(1);
    let server = spawn_tuned(backend, move |s| s.conn.keepalive_timeout = idle).await;

    // A connection that never sends a byte.
    let opened = Instant::now();
    let mut silent = connect(&server).await;
    let (sent, closed_at) = wait_closed(&mut silent).await;
    assert_eq!(sent, "");
    let took = closed_at - opened;
    // Closed by the idle rule, not by hyper's header timer (idle + header = 11 s).
    assert!(
        took >= idle * 9 / 10 && took < idle * 5,
        "closed after {took:?}"
    );

    // A connection in use stays open past the idle timeout; idle after its last answer, it
    // closes one idle timeout later.
    let mut busy = connect(&server).await;
    let started = Instant::now();
    while started.elapsed() < idle * 3 {
        healthz(&mut busy).await;
        tokio::time::sleep(idle / 2).await;
    }
    healthz(&mut busy).await;
    let answered = Instant::now();
    let (sent, closed_at) = wait_closed(&mut busy).await;
    assert_eq!(sent, "");
    let took = closed_at - answered;
    assert!(
        took >= idle * 9 / 10 && took < idle * 5,
        "closed {took:?} after the last answer"
    );
    server.stop().await;
}

both_backends!(slow_request_head_is_closed_by_the_header_timeout);
async fn slow_request_head_is_closed_by_the_header_timeout(backend: Backend) {
    let (idle, header) = (Duration::from_secs(1), Duration::from_secs(1));
    let server = spawn_tuned(backend, move |s| {
        s.conn.keepalive_timeout = idle;
        s.conn.header_timeout = header;
    })
    .await;
    let opened = Instant::now();
    let mut slow = connect(&server).await;
    // An endless head, a byte every 200 ms: never idle, never complete.
    let head = b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-padding: ";
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    let closed_at = loop {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if slow.write_all(&[byte]).await.is_err() {
            break Instant::now();
        }
        sent += 1;
        tokio::select! {
            read = slow.read(&mut buf) => match read {
                Ok(0) | Err(_) => break Instant::now(),
                Ok(n) => panic!("answered: {}", String::from_utf8_lossy(&buf[..n])),
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        assert!(opened.elapsed() < BOUND, "still open after {BOUND:?}");
    };
    // Bytes kept coming, so the idle timeout did not apply; the head got its full time.
    let took = closed_at - opened;
    assert!(took >= idle + header / 2, "closed after {took:?}");
    server.stop().await;
}

both_backends!(connection_cap_answers_503_then_serves_again);
async fn connection_cap_answers_503_then_serves_again(backend: Backend) {
    const CAP: usize = 8;
    let server = spawn_tuned(backend, |s| s.conn.max_connections = CAP).await;
    // CAP connections, each served once so that the server surely holds them.
    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut c = connect(&server).await;
        healthz(&mut c).await;
        held.push(c);
    }

    // One more: a complete 503 answer, then the server closes.
    let mut over = connect(&server).await;
    over.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = wait_closed(&mut over).await;
    let lower = answer.to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(lower.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let detail: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(detail["detail"], "too many open connections, retry later");

    // What an SDK sees: an ordinary 503 it backs off from.
    let client = reqwest::Client::new();
    let resp = client
        .post(server.envelope_url())
        .header("x-sentry-auth", server.auth_header())
        .body(envelope(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let detail: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(detail["detail"], "too many open connections, retry later");

    // Once the held connections close, new ones are served.
    drop(held);
    let started = Instant::now();
    loop {
        let client = reqwest::Client::new();
        let resp = client
            .post(server.envelope_url())
            .header("x-sentry-auth", server.auth_header())
            .body(envelope(2))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => break,
            503 => assert!(started.elapsed() < BOUND, "still refused after {BOUND:?}"),
            other => panic!("status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, answer) = server.post_envelope(envelope(3), &[]).await;
    assert_eq!(status, 200, "{answer}");
    server.stop().await;
}

both_backends!(graceful_stop_answers_the_request_in_flight);
async fn graceful_stop_answers_the_request_in_flight(backend: Backend) {
    let server = spawn_tuned(backend, |_| {}).await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let body = envelope(1);
    let mut in_flight = start_upload(&server, &body, 10).await;
    let mut idle = connect(&server).await;
    healthz(&mut idle).await;

    let stopped = tokio::spawn(server.stop());
    // The server stops accepting...
    let started = Instant::now();
    while TcpStream::connect(&addr).await.is_ok() {
        assert!(started.elapsed() < BOUND, "still accepting after {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...closes idle connections at once...
    let (sent, _) = wait_closed(&mut idle).await;
    assert_eq!(sent, "");
    // ...and answers the request in flight, then closes that connection too.
    in_flight.write_all(&body[10..]).await.unwrap();
    let answer = read_response(&mut in_flight).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    let (rest, _) = wait_closed(&mut in_flight).await;
    assert_eq!(rest, "");
    tokio::time::timeout(BOUND, stopped)
        .await
        .expect("stopped")
        .unwrap();
}

both_backends!(stop_closes_what_is_left_after_the_grace_period);
async fn stop_closes_what_is_left_after_the_grace_period(backend: Backend) {
    let grace = Duration::from_secs(1);
    let server = spawn_tuned(backend, move |s| {
        s.conn.shutdown_grace = grace;
        s.conn.body_timeout = Duration::from_secs(600);
    })
    .await;
    let body = envelope(1);
    let mut stalled = start_upload(&server, &body, 10).await;
    let stopping = Instant::now();
    tokio::time::timeout(BOUND, server.stop())
        .await
        .expect("the stop waits for the grace period, not for the upload");
    let took = stopping.elapsed();
    assert!(took >= grace * 9 / 10, "stopped after {took:?}");
    let (answer, _) = wait_closed(&mut stalled).await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
}
