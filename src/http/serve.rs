//! The accept loop: a connection cap, idle/header/body timeouts, bounded buffers, a graceful stop.
//!
//! `axum::serve` has none of these, and a hostile client needs nothing else to take a server
//! down: silent connections use up the descriptor limit, stalled uploads stay open forever. So
//! every connection is served here by hyper's HTTP/1 machinery with these rules:
//!
//! - **At most `max_connections` at once.** One more is accepted, answered a canned
//!   `503 Service Unavailable` with `Retry-After: 1` and closed (see `refuse`); at most
//!   [`REFUSALS`] such answers are in progress at once, past that the answer is written
//!   only if the socket takes it at once, and the connection closed. The cap is lowered to
//!   fit the open-files limit, which is first raised to its hard limit.
//! - **Keep-alive idle timeout.** A connection with no request in flight that received no byte
//!   since its last response (or since it was accepted) for `keepalive_timeout` is closed.
//! - **Header timeout.** A request head must arrive within `header_timeout` once it started.
//!   hyper's own `header_read_timeout` starts when hyper *starts waiting* for a head, that is
//!   also while a kept-alive connection idles, so it is set to `keepalive_timeout +
//!   header_timeout`: the idle rule closes silent connections, hyper's timer closes heads that
//!   started and never ended.
//! - **Body timeout.** A request body that sends no bytes for `body_timeout` fails the read
//!   (tower-http's `RequestBodyTimeoutLayer`); the handler answers and hyper closes the
//!   connection, whose body it never finished.
//! - **64 KiB read buffer** per connection at most (hyper's default is ~400 KB).
//!
//! Our per-request bookkeeping is a few relaxed atomics on a per-connection struct that only
//! the connection's own task touches, and the idle timer is one per connection (it is reset
//! only when it fires). Per request remain hyper's head timer and the body timer.

use crate::config::ConnArgs;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::ToSocketAddrs;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::{Layer, Service};
use tower_http::timeout::{RequestBodyTimeout, RequestBodyTimeoutLayer};

/// How many connections the server keeps and how long each may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections served at once; one more is answered 503 and closed. Lowered at startup
    /// so that these plus [`FD_RESERVE`] fit the open-files limit.
    pub max_connections: usize,
    /// How long a request head may take to arrive once its first byte came.
    pub header_timeout: Duration,
    /// How long a connection may sit with no request in flight and no byte received.
    pub keepalive_timeout: Duration,
    /// Longest gap between two pieces of a request body.
    pub body_timeout: Duration,
    /// Connections the kernel queues before they are accepted (`listen(2)`; the kernel caps
    /// it at `net.core.somaxconn`).
    pub backlog: u32,
    /// How long a stopping server waits for in-flight requests before it closes their
    /// connections.
    pub shutdown_grace: Duration,
}

/// Suited to a server on the internet on a small machine. 4096 connections cost ~100 MB at
/// worst (64 KiB buffer, a task and socket buffers each) and are far more than SDKs need:
/// they post one request at a time and each request takes milliseconds. 10 s for a head
/// covers a slow mobile link; 15 s idle is longer than the keep-alive of the usual clients
/// (Python urllib3 and hyper keep pools open, but a 15 s gap makes them reconnect, which costs
/// one handshake); 15 s between two body pieces is already a dead upload; 30 s of grace lets
/// every in-flight request commit and answer (each waits milliseconds for its batch).
impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(15),
            body_timeout: Duration::from_secs(15),
            backlog: 4096,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

// Here rather than in `config`, which `http` imports: `config` must not import `http` back.
impl From<&ConnArgs> for ConnLimits {
    fn from(a: &ConnArgs) -> Self {
        ConnLimits {
            max_connections: a.max_connections as usize,
            header_timeout: Duration::from_secs(a.header_timeout_secs),
            keepalive_timeout: Duration::from_secs(a.keepalive_timeout_secs),
            body_timeout: Duration::from_secs(a.body_timeout_secs),
            backlog: a.listen_backlog,
            shutdown_grace: Duration::from_secs(a.shutdown_grace_secs),
        }
    }
}

/// Descriptors kept free of connections: the database (a pool, SQLite's WAL and shm files),
/// alert deliveries, log files, the listener, and the refusals in progress.
pub const FD_RESERVE: u64 = 256;

/// Canned 503 answers in progress at once (each holds a descriptor for 3 s at most).
pub const REFUSALS: usize = 64;

/// hyper's read buffer per connection at most: a request head must fit (431 otherwise), body
/// bytes are handed on as they come.
const MAX_BUF: usize = 64 * 1024;

/// How long a refusal waits for the request head, and then for the client to close.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// What a connection over the cap reads: an ordinary HTTP answer, so that SDKs back off as
/// they do for a full queue, instead of a reset they would report as a network error.
const REFUSAL: &str = "HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 51\r\n\
\r\n\
{\"detail\":\"too many open connections, retry later\"}";

/// Binds `addr` (`host:port`; a host name is resolved, the first address that binds wins) with
/// `SO_REUSEADDR`, so a restart does not wait for the old sockets' `TIME_WAIT`, and the given
/// accept backlog. Must be called inside the tokio runtime.
pub fn bind(addr: &str, backlog: u32) -> io::Result<TcpListener> {
    let mut last = None;
    for sa in addr.to_socket_addrs()? {
        let socket = if sa.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // On Windows SO_REUSEADDR would let another process take the port.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(sa).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{addr}: no address"),
        )
    }))
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves; then stops
/// accepting, asks every connection to close after its current request, waits for them up to
/// `shutdown_grace` and closes the ones left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max = effective_max(limits.max_connections, raise_fd_limit());
    let permits = Arc::new(Semaphore::new(max));
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    let registry = Arc::new(Registry::default());
    let app = RequestBodyTimeoutLayer::new(limits.body_timeout).layer(router);
    let keepalive = sane(limits.keepalive_timeout);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(keepalive + sane(limits.header_timeout))
        .max_buf_size(MAX_BUF);
    tracing::debug!(?limits, max_connections = max, "accepting");

    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused = Refused::default();
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            // The peer gave up before we took it: nothing wrong with us.
            Err(e) if is_connection_error(&e) => continue,
            // Out of descriptors (EMFILE/ENFILE) or memory: accepting again at once would fail
            // again at once. Connections waiting in the backlog are taken once some close.
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        // Answers are small and written whole; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let answered = match refusals.clone().try_acquire_owned() {
                Ok(slot) => {
                    tokio::spawn(refuse(stream, slot));
                    true
                }
                // Too many answers in progress: write the answer if the socket takes it at
                // once (a fresh socket's buffer does) and close. A client that has not sent
                // its request yet still reads it; one whose request we leave unread gets a
                // reset, as with a plain close.
                Err(_) => {
                    let _ = stream.try_write(REFUSAL.as_bytes());
                    false
                }
            };
            refused.note(answered, max);
            continue;
        };
        let activity = Arc::new(Activity::new());
        let registration = registry.add(activity.clone());
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let service = Tracked {
            app: app.clone(),
            activity: activity.clone(),
        };
        let conn = builder.serve_connection(io, service);
        tokio::spawn(async move {
            match drive(&activity, conn, keepalive).await {
                End::Closed(Ok(())) | End::Aborted => {}
                // Resets, timeouts, malformed heads: the peer's business, not an operator's.
                End::Closed(Err(e)) => tracing::debug!(error = %e, "connection ended"),
                End::Stalled => tracing::debug!("closed a connection that stopped reading"),
            }
            drop(registration);
            drop(permit);
        });
    }
    drop(listener);

    // Every connection answers what it is doing and closes; idle ones close now.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    registry.signal(DRAIN);
    let stopping = Instant::now();
    if tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = registry.len(),
            grace = ?limits.shutdown_grace,
            "closing connections still open after the grace period"
        );
        registry.signal(ABORT);
        // They drop their connection on their next poll, which the signal causes.
        let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(all)).await;
    }
    tracing::debug!(took = ?stopping.elapsed(), "connections closed");
    Ok(())
}

/// A timeout the timers can use: at least 10 ms (a zero keep-alive would make the idle check
/// spin while a request is in flight) and at most a year (`Instant + Duration` must not
/// overflow).
fn sane(d: Duration) -> Duration {
    d.clamp(Duration::from_millis(10), Duration::from_secs(365 * 86_400))
}

/// Accept errors that concern one connection only (the peer reset it while it waited).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Connections over the cap, logged at most every 10 s (a flood would flood the log too).
#[derive(Default)]
struct Refused {
    answered: u64,
    dropped: u64,
    logged: Option<Instant>,
}

impl Refused {
    fn note(&mut self, answered: bool, max: usize) {
        if answered {
            self.answered += 1;
        } else {
            self.dropped += 1;
        }
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                max_connections = max,
                answered_503 = self.answered,
                closed_at_once = self.dropped,
                "connection limit reached; refusing new connections"
            );
            self.logged = Some(Instant::now());
            self.answered = 0;
            self.dropped = 0;
        }
    }
}

/// The cap that fits the open-files limit (`None`: unknown or unlimited): `FD_RESERVE`
/// descriptors stay for everything else; under a tiny limit half of it goes to connections.
fn effective_max(configured: usize, fd_limit: Option<u64>) -> usize {
    // The semaphore counts in u32 when the stop waits for every permit.
    let wanted = configured.clamp(1, u32::MAX as usize);
    let Some(limit) = fd_limit else {
        return wanted;
    };
    let room = if limit > 2 * FD_RESERVE {
        limit - FD_RESERVE
    } else {
        limit / 2
    };
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if room < wanted {
        tracing::warn!(
            configured,
            max_connections = room,
            open_files_limit = limit,
            reserve = FD_RESERVE,
            "max_connections lowered to fit the open-files limit"
        );
    }
    wanted.min(room)
}

/// Raises the soft open-files limit to the hard one (a soft limit of 1024 is a common default
/// while the hard one is far higher) and returns the soft limit now in force.
#[cfg(unix)]
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and keeps no reference to it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct. It fails (and changes nothing) where the
        // hard limit is above what the system allows (an unlimited hard limit on Linux or
        // macOS); the current soft limit then stays.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(
                from = lim.rlim_cur,
                to = lim.rlim_max,
                "raised open-files limit"
            );
            lim.rlim_cur = lim.rlim_max;
        }
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
    Some(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<u64> {
    None
}

/// Answers a connection over the cap: waits (bounded) for its request head, writes the canned
/// 503, closes our side and reads until the client closes (bounded), so that our close does
/// not reset the connection under the answer before the client read it. 3 s at most, one
/// second for each step.
async fn refuse(mut stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(REFUSAL_WAIT, read_head(&mut stream, &mut buf)).await;
    let answered = tokio::time::timeout(REFUSAL_WAIT, async {
        stream.write_all(REFUSAL.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(answered, Ok(Ok(()))) {
        let _ = tokio::time::timeout(REFUSAL_WAIT, async {
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// Reads until the end of a request head (`\r\n\r\n`), the end of the stream or 64 KiB.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) {
    let mut tail = [0u8; 3];
    let mut total = 0;
    while total < MAX_BUF {
        let n = match stream.read(buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        total += n;
        // The terminator may straddle two reads: look at the last 3 bytes before this one too.
        let mut window = Vec::with_capacity(3 + n);
        window.extend_from_slice(&tail);
        window.extend_from_slice(&buf[..n]);
        if window.windows(4).any(|w| w == b"\r\n\r\n") {
            return;
        }
        tail.copy_from_slice(&window[window.len() - 3..]);
    }
}

// Stop phases the accept loop sets on every connection.
const RUN: u8 = 0;
/// Finish the request in progress, then close (hyper's graceful shutdown).
const DRAIN: u8 = 1;
/// Close now: the grace period is over.
const ABORT: u8 = 2;

/// What one connection's IO, service and driver share. Only the connection's own task writes
/// the activity fields (hyper polls the IO and the request futures inside it), so the relaxed
/// atomics never contend; they are atomics only because the struct must be `Sync`. `stop` and
/// `waker` are how the accept loop reaches the connection at shutdown.
struct Activity {
    born: Instant,
    /// Requests whose response future has not finished.
    in_flight: AtomicU32,
    /// Nanoseconds from `born` to the end of the last request (0 before the first).
    idle_since: AtomicU64,
    /// A byte arrived since the last request ended (or since the accept).
    read_since_idle: AtomicBool,
    stop: AtomicU8,
    waker: AtomicWaker,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            read_since_idle: AtomicBool::new(false),
            stop: AtomicU8::new(RUN),
            waker: AtomicWaker::new(),
        }
    }

    fn check(&self, now: Instant, keepalive: Duration) -> Idle {
        let since = self.born + Duration::from_nanos(self.idle_since.load(Relaxed));
        idle_check(
            self.in_flight.load(Relaxed),
            self.read_since_idle.load(Relaxed),
            since,
            now,
            keepalive,
        )
    }
}

/// Whether a connection has idled long enough to be closed, or when to look again.
#[derive(Debug, PartialEq, Eq)]
enum Idle {
    Close,
    CheckAt(Instant),
}

fn idle_check(
    in_flight: u32,
    read_since_idle: bool,
    idle_since: Instant,
    now: Instant,
    keepalive: Duration,
) -> Idle {
    // A request in progress is bounded by the body timeout and its handler; bytes since the
    // last response are the start of a head, which hyper's header timer bounds.
    if in_flight > 0 || read_since_idle {
        return Idle::CheckAt(now + keepalive);
    }
    let due = idle_since + keepalive;
    if now >= due {
        Idle::Close
    } else {
        Idle::CheckAt(due)
    }
}

/// The live connections, so that a stop can reach each of them.
#[derive(Default)]
struct Registry {
    inner: Mutex<(u64, HashMap<u64, Arc<Activity>>)>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<u64, Arc<Activity>>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(self: &Arc<Self>, activity: Arc<Activity>) -> Registration {
        let mut inner = self.lock();
        let id = inner.0;
        inner.0 += 1;
        inner.1.insert(id, activity);
        Registration {
            registry: self.clone(),
            id,
        }
    }

    fn signal(&self, phase: u8) {
        for activity in self.lock().1.values() {
            activity.stop.store(phase, Release);
            activity.waker.wake();
        }
    }

    fn len(&self) -> usize {
        self.lock().1.len()
    }
}

/// A connection's place in the registry, given up when its task ends (or is dropped).
struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().1.remove(&self.id);
    }
}

/// Why a connection ended (for debug logs).
enum End {
    Closed(Result<(), hyper::Error>),
    /// Idle, asked to close, and still not closed a keep-alive period later: the peer does
    /// not read the response hyper is writing.
    Stalled,
    Aborted,
}

type Conn = http1::Connection<TokioIo<Watched>, Tracked>;

/// Polls the connection, and between its wake-ups applies the idle rule and the stop phases.
/// The connection is polled first, the one timer only registers a waker in steady state.
async fn drive(activity: &Activity, conn: Conn, keepalive: Duration) -> End {
    let mut conn = std::pin::pin!(conn);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(activity.born + keepalive));
    // Graceful shutdown asked (idle, or the server stops).
    let mut closing = false;
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(End::Closed(result));
        }
        // Register before reading the phase: a signal after the read wakes us.
        activity.waker.register(cx.waker());
        match activity.stop.load(Acquire) {
            RUN => {}
            DRAIN if closing => {}
            DRAIN => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                continue;
            }
            _ => return Poll::Ready(End::Aborted),
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let now = Instant::now();
        match activity.check(now, keepalive) {
            Idle::CheckAt(at) => timer.as_mut().reset(at),
            Idle::Close if closing => return Poll::Ready(End::Stalled),
            Idle::Close => {
                closing = true;
                conn.as_mut().graceful_shutdown();
                timer.as_mut().reset(now + keepalive);
            }
        }
    })
    .await
}

/// The socket, noting that bytes arrived (one relaxed store per read).
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_since_idle.store(true, Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

type App = RequestBodyTimeout<Router>;

/// The router as hyper's service, counting requests in flight.
struct Tracked {
    app: App,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = InFlight<<App as Service<Request<Incoming>>>::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Relaxed);
        // Each route is registered once, in its canonical form: the path is rewritten before
        // routing (`/api/0/issues/1` is routed as `/api/0/issues/1/`, `/healthz/` as
        // `/healthz`).
        if let Some(canonical) = req
            .uri()
            .path_and_query()
            .and_then(|pq| super::canonical_path(pq.as_str()))
        {
            if let Ok(pq) = canonical.parse() {
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = Some(pq);
                if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        // A clone per request is what `axum::serve` does too (the router is an `Arc`); the
        // router is always ready, so there is no `poll_ready` to wait for.
        let future = self.app.clone().call(req);
        InFlight {
            future,
            activity: self.activity.clone(),
        }
    }
}

/// A request's response future; its end (or its drop, if the connection dies first) starts
/// the connection's idle time.
struct InFlight<F> {
    future: F,
    activity: Arc<Activity>,
}

impl<F: Future + Unpin> Future for InFlight<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.future).poll(cx)
    }
}

impl<F> Drop for InFlight<F> {
    fn drop(&mut self) {
        let a = &self.activity;
        let since = a.born.elapsed().as_nanos();
        a.idle_since
            .store(u64::try_from(since).unwrap_or(u64::MAX), Relaxed);
        a.read_since_idle.store(false, Relaxed);
        a.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_a_complete_http_answer() {
        let (head, body) = REFUSAL.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["detail"], "too many open connections, retry later");
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        assert_eq!(effective_max(4096, None), 4096);
        assert_eq!(effective_max(4096, Some(20_000)), 4096);
        assert_eq!(effective_max(4096, Some(1024)), 1024 - FD_RESERVE as usize);
        assert_eq!(effective_max(4096, Some(256)), 128);
        assert_eq!(effective_max(0, None), 1);
        assert_eq!(effective_max(4096, Some(1)), 1);
    }

    #[test]
    fn idle_rule() {
        let t0 = Instant::now();
        let ka = Duration::from_secs(15);
        let s = Duration::from_secs;
        // Nothing in flight, nothing read: close once the keep-alive period has passed.
        assert_eq!(
            idle_check(0, false, t0, t0 + s(3), ka),
            Idle::CheckAt(t0 + ka)
        );
        assert_eq!(idle_check(0, false, t0, t0 + ka, ka), Idle::Close);
        // A request in flight, or a head arriving: look again a full period later.
        assert_eq!(
            idle_check(1, false, t0, t0 + ka, ka),
            Idle::CheckAt(t0 + ka + ka)
        );
        assert_eq!(
            idle_check(0, true, t0, t0 + s(20), ka),
            Idle::CheckAt(t0 + s(35))
        );
    }

    #[test]
    fn flag_defaults_are_the_default_limits() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            conn: ConnArgs,
        }
        // Variables set in the environment of the test run would change the answer.
        if std::env::vars().any(|(k, _)| k.starts_with("STACKHOUND_")) {
            return;
        }
        let cli = Cli::parse_from(["stackhound"]);
        assert_eq!(ConnLimits::from(&cli.conn), ConnLimits::default());
    }
}
