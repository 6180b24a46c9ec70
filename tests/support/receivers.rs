//! Real peers for alert tests: an HTTP receiver that records requests (and can fail the first
//! N), and a minimal SMTP server over TCP that records the mails it accepts.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// A real HTTP receiver

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
pub struct ReceiverState {
    pub requests: Vec<Request>,
    /// Answer 500 to this many requests first (`usize::MAX`: always).
    pub fail_first: usize,
    /// Woken on every request, so a test can wait for one without sleeping.
    pub arrived: Arc<tokio::sync::Notify>,
    /// How long each answer takes (a slow receiver); the request is recorded on arrival.
    pub delay: std::time::Duration,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            requests: Vec::new(),
            fail_first,
            arrived: Arc::default(),
            delay: std::time::Duration::ZERO,
        }));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The `kind` of every webhook body received, in arrival order.
    pub fn kinds(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                body["kind"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    pub fn successes(&self) -> usize {
        self.requests().iter().filter(|r| r.status == 200).count()
    }
}

pub async fn record(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let (status, delay) = {
        let mut s = state.lock().unwrap();
        let fail = s.requests.len() < s.fail_first;
        let status = if fail {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        s.requests.push(Request {
            path: uri.path().to_string(),
            headers,
            body,
            status: status.as_u16(),
        });
        s.arrived.notify_one();
        (status, s.delay)
    };
    // Not under the lock: a slow receiver still takes requests concurrently.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let text = if status.is_success() {
        "ok"
    } else {
        "receiver is down"
    };
    (status, text)
}

// ---------------------------------------------------------------------------------------------
// A real (minimal) SMTP server

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

pub async fn smtp_sink() -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let sink = mails.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(smtp_session(conn, sink.clone()));
        }
    });
    (addr, mails)
}

pub async fn smtp_session(conn: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = conn.into_split();
    let mut lines = BufReader::new(read);
    let mut mail = Mail::default();
    write.write_all(b"220 sink ESMTP ready\r\n").await.unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink greets you\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") {
            b"250 sink\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = line[10..].trim().to_string();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(line[8..].trim().to_string());
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            write
                .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                .await
                .unwrap();
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                // Dot-stuffing (RFC 5321 4.5.2).
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            mail.data = data;
            mails.lock().unwrap().push(std::mem::take(&mut mail));
            b"250 OK queued\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await.unwrap();
            return;
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await.unwrap();
    }
}
