//! Hostile load and faults: the memory budget, early 413s, storage faults, quotas, and telling
//! SDKs which categories we drop.

use crate::backend::{Backend, TestDb};
use crate::helpers::{spawn, spawn_on, spawn_tuned, TestServer, KEY};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_stackhound");

fn event_envelope(id: u128, message: &str) -> Vec<u8> {
    format!(
        "{{\"event_id\":\"{id:032x}\"}}\n{{\"type\":\"event\"}}\n{{\"message\":\"{message}\",\"event_id\":\"{id:032x}\"}}\n"
    )
    .into_bytes()
}

/// An envelope of one small event and an attachment of `zeros` zero bytes, gzip-compressed:
/// ~97 KB on the wire for 95 MiB inflated.
fn inflation_envelope(id: u128, zeros: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&event_envelope(id, "inflation attack"))
        .unwrap();
    gz.write_all(
        format!("{{\"type\":\"attachment\",\"length\":{zeros},\"filename\":\"z.bin\"}}\n")
            .as_bytes(),
    )
    .unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len());
        gz.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    gz.write_all(b"\n").unwrap();
    gz.finish().unwrap()
}

/// A real `stackhound serve` process on a free port; killed when dropped.
struct RealServer {
    child: std::process::Child,
    base: String,
    project_id: String,
    key: String,
}

impl RealServer {
    async fn start(db: &TestDb, env: &[(&str, &str)]) -> RealServer {
        let out = Command::new(BIN)
            .args(["project", "create", "default", "--json", "--database-url"])
            .arg(&db.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let project: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let dsn = project["dsn"].as_str().unwrap();
        let key = dsn.split("://").nth(1).unwrap().split('@').next().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(BIN)
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--database-url",
            ])
            .arg(&db.url)
            .envs(env.iter().copied())
            .env("STACKHOUND_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = RealServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
            project_id: project["id"].as_str().unwrap().to_string(),
            key: key.to_string(),
        };
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server did not start");
    }

    /// Peak resident memory of the process so far, in bytes (Linux `VmHWM`).
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

both_backends!(multi_thread: concurrent_inflation_and_large_events_stay_within_the_budget);
async fn concurrent_inflation_and_large_events_stay_within_the_budget(backend: Backend) {
    const BUDGET_MIB: u64 = 32;
    let db = TestDb::new(backend).await;
    let server = RealServer::start(&db, &[("STACKHOUND_INGEST_MEMORY_MIB", "32")]).await;
    let url = format!("{}/api/{}/envelope/", server.base, server.project_id);
    let auth = format!("Sentry sentry_key={}, sentry_version=7", server.key);
    let http = reqwest::Client::new();
    eprintln!("RSS at start: {} MiB", server.peak_rss() >> 20);

    // 16 at once, each ~97 KB of gzip whose attachment inflates to 95 MiB.
    let tasks: Vec<_> = (0..16u128)
        .map(|i| {
            let body = inflation_envelope(0xa77ac4 << 32 | i, 95 << 20);
            assert!(body.len() < 200_000, "{}", body.len());
            let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .header("x-sentry-auth", auth)
                    .header("content-encoding", "gzip")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        // The attachment streams through and is dropped; the event is stored.
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"id\""), "{body}");
    }

    eprintln!(
        "peak RSS after the inflation attack: {} MiB",
        server.peak_rss() >> 20
    );
    // 200 at once, each a ~900 KB event: more than the budget together, so some wait and
    // some are refused with 503, and none pushes the process past it.
    let filler: String = (0..900_000u32)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
        .collect();
    let tasks: Vec<_> = (0..200u128)
        .map(|i| {
            let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
            let body = format!(
                "{{}}\n{{\"type\":\"event\"}}\n{{\"message\":\"large {i}\",\"extra\":{{\"f\":\"{filler}\"}}}}\n"
            );
            tokio::spawn(async move {
                match http.post(url).header("x-sentry-auth", auth).body(body).send().await {
                    Ok(r) => {
                        let retry = r.headers().contains_key("retry-after");
                        (r.status().as_u16(), retry)
                    }
                    Err(_) => (0, false),
                }
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, retry_after) = t.await.unwrap();
        match status {
            200 => ok += 1,
            503 => assert!(retry_after, "a 503 without Retry-After"),
            other => panic!("unexpected answer {other} to a large event (0: no answer)"),
        }
    }
    assert!(ok > 0, "no large event was accepted");

    let peak = server.peak_rss();
    eprintln!(
        "peak RSS after the large events: {} MiB ({ok} accepted)",
        peak >> 20
    );
    let limit = (BUDGET_MIB + 96) << 20;
    assert!(
        peak < limit,
        "peak RSS {} MiB is over the budget ({BUDGET_MIB} MiB) plus 96 MiB",
        peak >> 20
    );
    drop(server);
}

/// Sends `head` on a fresh connection and returns everything the server writes back until
/// it closes or 5 s pass.
async fn raw_exchange(base: &str, head: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

both_backends!(an_over_cap_content_length_gets_413_without_100_continue);
async fn an_over_cap_content_length_gets_413_without_100_continue(backend: Backend) {
    let server = spawn(backend).await;
    let head = format!(
        "POST /api/{}/envelope/ HTTP/1.1\r\nHost: x\r\nX-Sentry-Auth: {}\r\n\
         Content-Length: 30000000\r\nExpect: 100-continue\r\n\r\n",
        server.project_id,
        server.auth_header()
    );
    let answer = raw_exchange(&server.base, &head).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(answer.contains("\"detail\""), "{answer}");
    server.stop().await;
}

/// Python's urllib sends the whole body before it reads the answer: it must read our 413, not
/// a broken pipe, whether the body declares its length or comes chunked.
const URLLIB_CLIENT: &str = r#"
import sys, urllib.request, urllib.error
url, auth, mode = sys.argv[1], sys.argv[2], sys.argv[3]
size = 26 * 1024 * 1024
if mode == "length":
    data = b"x" * size
else:
    data = iter([b"x" * (1024 * 1024)] * 26)
req = urllib.request.Request(url, data=data, method="POST", headers={"X-Sentry-Auth": auth})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(r.status)
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"#;

both_backends!(multi_thread: urllib_reads_a_413_for_an_oversized_body);
async fn urllib_reads_a_413_for_an_oversized_body(backend: Backend) {
    let server = spawn(backend).await;
    for mode in ["length", "chunked"] {
        let (url, auth) = (server.envelope_url(), server.auth_header());
        let out = tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .args(["-c", URLLIB_CLIENT, &url, &auth, mode])
                .output()
                .expect("python3 runs")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("413"),
            "{mode}: stdout {stdout} stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("detail"), "{mode}: {stdout}");
    }
    // The server goes on answering.
    let (status, _) = server.post_envelope(event_envelope(1, "after"), &[]).await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// Posts `n` events with ids from `first`; returns the acknowledged ids and whether any was
/// answered 503 with `Retry-After`.
async fn post_events(server: &TestServer, first: u128, n: u128) -> (Vec<u128>, bool) {
    let mut acked = Vec::new();
    let mut refused = false;
    for id in first..first + n {
        let resp = server
            .http
            .post(server.envelope_url())
            .header("x-sentry-auth", server.auth_header())
            .body(event_envelope(id, "storage fault"))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => acked.push(id),
            503 => {
                assert!(resp.headers().contains_key("retry-after"));
                let body: serde_json::Value = resp.json().await.unwrap();
                assert!(body["detail"].is_string());
                refused = true;
            }
            other => panic!("unexpected answer {other}"),
        }
    }
    (acked, refused)
}

async fn assert_stored(server: &TestServer, acked: &[u128]) {
    for id in acked {
        assert!(
            server
                .store
                .event_exists(server.project_id, id.to_be_bytes())
                .await
                .unwrap(),
            "acknowledged event {id:032x} is missing"
        );
    }
    let counted: i64 = server
        .all_issues()
        .await
        .iter()
        .map(|i| i["count"].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(counted, acked.len() as i64);
}

async fn readyz(server: &TestServer) -> (u16, serde_json::Value) {
    let r = server
        .http
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

// Another session holds the write lock longer than the lock timeout: the batch fails with
// 503, health says so, and once the lock is gone ingestion resumes by itself.
both_backends!(multi_thread: a_lock_held_too_long_is_a_503_and_ingestion_resumes);
async fn a_lock_held_too_long_is_a_503_and_ingestion_resumes(backend: Backend) {
    use sqlx::Connection;
    let db = TestDb::new(backend).await;
    let url = db.url.clone();
    let opts = stackhound::store::StoreOptions {
        lock_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let store = db.open_with(&opts).await;
    let server = spawn_on(db, store, |_| {}).await;
    let (mut acked, refused) = post_events(&server, 1, 5).await;
    assert!(!refused);
    assert_eq!(acked.len(), 5);

    enum Holder {
        Sqlite(sqlx::SqliteConnection),
        Postgres(sqlx::PgConnection),
    }
    let mut holder = match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            Holder::Sqlite(c)
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            Holder::Postgres(c)
        }
    };
    let (during, refused) = post_events(&server, 100, 3).await;
    assert!(refused, "no 503 while the lock was held");
    assert!(
        during.is_empty(),
        "{during:?} acknowledged while the lock was held"
    );
    let (status, health) = readyz(&server).await;
    assert_eq!(status, 503, "{health}");
    assert!(health["detail"].as_str().unwrap().contains("storage fault"));

    match &mut holder {
        Holder::Sqlite(c) => sqlx::raw_sql("ROLLBACK").execute(c).await.map(|_| ()),
        Holder::Postgres(c) => sqlx::raw_sql("ROLLBACK").execute(c).await.map(|_| ()),
    }
    .unwrap();
    let (after, refused) = post_events(&server, 200, 5).await;
    assert!(!refused, "still refusing after the lock was released");
    acked.extend(after);
    let (status, health) = readyz(&server).await;
    assert_eq!(status, 200, "{health}");
    assert_stored(&server, &acked).await;
    server.stop().await;
}

/// A small tmpfs for the database; unmounted when dropped (after the server that uses it).
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// SQLite on a file system that fills up: 503 while it is full, then ingestion resumes
/// without a restart once space is freed, and every acknowledged event is there. (The
/// PostgreSQL server's disk is not ours to fill; its fault path is the lock test above.)
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_a_503_and_ingestion_resumes_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            println!(
                "skipped: cannot mount a small tmpfs here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("skipped: cannot run mount here ({e})");
            return;
        }
    }
    let disk = SmallDisk(dir.path().to_path_buf());
    let filler_path = dir.path().join("filler");
    let db = TestDb::sqlite_in(dir);
    let store = db.open().await;
    let server = spawn_on(db, store, |_| {}).await;
    let (mut acked, refused) = post_events(&server, 1, 20).await;
    assert!(!refused);

    // Fill the disk but for a few KB.
    {
        let mut f = std::fs::File::create(&filler_path).unwrap();
        let block = vec![7u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [7u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused_any = false;
    let mut next = 1000u128;
    for _ in 0..200 {
        let (ok, refused) = post_events(&server, next, 10).await;
        next += 10;
        acked.extend(ok);
        if refused {
            refused_any = true;
            break;
        }
    }
    assert!(refused_any, "the full disk never showed as a 503");
    let (status, _) = readyz(&server).await;
    assert_eq!(status, 503);

    std::fs::remove_file(&filler_path).unwrap();
    let mut resumed = false;
    for _ in 0..50 {
        let (ok, _) = post_events(&server, next, 1).await;
        next += 1;
        if !ok.is_empty() {
            acked.extend(ok);
            resumed = true;
            break;
        }
    }
    assert!(resumed, "ingestion did not resume after space was freed");
    let (ok, refused) = post_events(&server, next, 10).await;
    assert!(!refused);
    acked.extend(ok);
    assert_stored(&server, &acked).await;
    server.stop().await;
    drop(disk);
}

both_backends!(a_spent_quota_is_a_429_with_rate_limit_headers);
async fn a_spent_quota_is_a_429_with_rate_limit_headers(backend: Backend) {
    let server = spawn(backend).await;
    let resp = server
        .http
        .put(format!(
            "{}/api/0/projects/stackhound/default/",
            server.base
        ))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({"rateLimitPerMinute": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let mut statuses = Vec::new();
    let mut limited = None;
    for id in 1..=5u128 {
        let resp = server
            .http
            .post(server.envelope_url())
            .header("x-sentry-auth", server.auth_header())
            .body(event_envelope(id, "quota"))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 && limited.is_none() {
            let h = resp.headers();
            let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
            let limits = h["x-sentry-rate-limits"].to_str().unwrap().to_string();
            let body: serde_json::Value = resp.json().await.unwrap();
            limited = Some((retry, limits, body));
        }
    }
    // A minute boundary may fall between two posts: then the count starts again.
    assert!(
        statuses == [200, 200, 200, 429, 429]
            || statuses.iter().filter(|s| **s == 200).count() >= 3,
        "{statuses:?}"
    );
    let (retry, limits, body) = limited.expect("no 429");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        limits,
        format!("{retry}:default;error;security:project:project_quota")
    );
    assert!(body["detail"].as_str().unwrap().contains("quota"));
    // The refused events were not stored.
    let counted: i64 = server
        .all_issues()
        .await
        .iter()
        .map(|i| i["count"].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(
        counted,
        statuses.iter().filter(|s| **s == 200).count() as i64
    );
    server.stop().await;
}

// Two processes' counts meet in the database: each sees the other's after a sync.
both_backends!(quota_counts_are_shared_through_the_database);
async fn quota_counts_are_shared_through_the_database(backend: Backend) {
    use stackhound::quota::{QuotaLimits, Quotas, Verdict};
    let server = spawn(backend).await;
    let (a, b) = (Quotas::default(), Quotas::default());
    let pid = server.project_id;
    let now = 1_800_000_000 - 30; // mid-minute
    let limits = QuotaLimits {
        per_minute: Some(4),
        per_hour: None,
    };
    a.set_limits(pid, limits, now);
    b.set_limits(pid, limits, now);
    for _ in 0..2 {
        a.count(pid, now);
        b.count(pid, now);
    }
    // Each process alone is under the limit...
    assert_eq!(
        a.check(&server.store, pid, now).await.unwrap(),
        Verdict::Allow
    );
    a.sync(&server.store, now).await.unwrap();
    b.sync(&server.store, now).await.unwrap();
    a.sync(&server.store, now).await.unwrap();
    // ...together they spent it.
    assert!(matches!(
        a.check(&server.store, pid, now).await.unwrap(),
        Verdict::Exceeded { .. }
    ));
    assert!(matches!(
        b.check(&server.store, pid, now).await.unwrap(),
        Verdict::Exceeded { .. }
    ));
    server.stop().await;
}

/// The Python interpreter with `sentry-sdk` installed: `STACKHOUND_TEST_PYTHON`, or the venv
/// `.ci/run` makes (created here when missing, once per test binary).
async fn python_with_sdk() -> String {
    static VENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    if let Ok(p) = std::env::var("STACKHOUND_TEST_PYTHON") {
        return p;
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-venv");
    let python = venv.join("bin/python");
    let _once = VENV.lock().await;
    let ready = |python: &std::path::Path| {
        Command::new(python)
            .args(["-c", "import sentry_sdk"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv failed");
        let req = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/requirements.txt");
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(req)
            .status()
            .unwrap();
        assert!(pip.success(), "pip install of the Python SDK failed");
    }
    python.display().to_string()
}

// The real Python SDK, told on a 200 that we drop transactions, stops sending them; its
// errors still arrive.
const PYTHON_SDK_CLIENT: &str = r#"
import sys, sentry_sdk
sentry_sdk.init(dsn=sys.argv[1], traces_sample_rate=1.0, default_integrations=False)
for i in range(3):
    with sentry_sdk.start_transaction(name=f"txn-{i}", op="test"):
        pass
    sentry_sdk.flush(timeout=5)
sentry_sdk.capture_message("after the transactions")
sentry_sdk.flush(timeout=5)
"#;

both_backends!(multi_thread: the_python_sdk_stops_sending_a_category_we_drop);
async fn the_python_sdk_stops_sending_a_category_we_drop(backend: Backend) {
    let python = python_with_sdk().await;
    let server = spawn_tuned(backend, |_| {}).await;
    let dsn = server.dsn.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-c", PYTHON_SDK_CLIENT, &dsn])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, health) = readyz(&server).await;
    assert_eq!(status, 200);
    // Only the first transaction reached us: the SDK honoured the header of its 200.
    let dropped = &health["ingestion"]["dropped"];
    assert_eq!(dropped["transaction"], 1, "{health}");
    // The error event still came.
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0]["title"], "after the transactions");
    let _ = KEY;
    server.stop().await;
}

/// PostgreSQL ends the server's sessions (an administrator's `pg_terminate_backend`, a
/// failover): a writer that meets its dead connection runs the batch again on a fresh one, so
/// nothing is refused and nothing restarts. (SQLite has no sessions to lose.)
#[tokio::test(flavor = "multi_thread")]
async fn lost_postgres_connections_are_replaced_without_a_restart() {
    use sqlx::Connection;
    if !crate::backend::available(Backend::Postgres) {
        return; // `available` printed why
    }
    let db = TestDb::new(Backend::Postgres).await;
    let url = db.url.clone();
    let store = db.open().await;
    let server = spawn_on(db, store, |_| {}).await;
    let (mut acked, refused) = post_events(&server, 1, 5).await;
    assert!(!refused);

    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the server held no session to end");
    let _ = admin.close().await;

    let (during, refused) = post_events(&server, 100, 10).await;
    assert!(!refused, "refused while dead connections were replaced");
    assert_eq!(during.len(), 10);
    acked.extend(during);
    let (after, refused) = post_events(&server, 200, 10).await;
    assert!(
        !refused,
        "still refusing after the connections were replaced"
    );
    assert_eq!(after.len(), 10);
    acked.extend(after);
    let (status, health) = readyz(&server).await;
    assert_eq!(status, 200, "{health}");
    assert_stored(&server, &acked).await;
    server.stop().await;
}
