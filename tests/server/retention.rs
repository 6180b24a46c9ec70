//! Retention end to end: events past their project's age or count limit are deleted, oldest
//! first, while issues keep their counts and stay listed; the disk space comes back (SQLite's
//! file shrinks, PostgreSQL reuses it); project limits through the API and the command line.

use crate::backend::{Backend, TestDb};
use crate::helpers::{spawn_manual, TestServer, KEY};
use serde_json::{json, Value};
use stackhound::app::{self, Settings};
use stackhound::clock::Clock;
use stackhound::store::projects::ProjectLimits;
use stackhound::store::retention::RetentionDefaults;
use stackhound::store::Store;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_stackhound");

/// Runs retention steps of 500 rows until one deletes nothing; returns how many went.
async fn run_retention(store: &Store, clock: &Clock, defaults: &RetentionDefaults) -> usize {
    let mut total = 0;
    for _ in 0..10_000 {
        let now = clock.now().timestamp_micros();
        match store.retention_step(now, defaults, 500).await.unwrap() {
            0 => return total,
            n => total += n,
        }
    }
    panic!("retention did not finish");
}

/// The envelope of one event of "issue" `kind` with `event_id` and optional padding.
fn envelope(kind: &str, event_id: &str, pad: &str) -> Vec<u8> {
    let event = json!({
        "exception": {"values": [{"type": kind, "value": "boom"}]},
        "platform": "python",
        "extra": {"pad": pad},
    });
    format!("{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes()
}

/// Event id number `n` (never the nil id, which SDKs use for "none").
fn event_id(n: u64) -> String {
    format!("{:032x}", 0xe000_0000_u64 + n)
}

/// Posts one event to the default project; it must be accepted. Returns its id.
async fn post(server: &TestServer, kind: &str, n: u64) -> String {
    let id = event_id(n);
    let (status, answer) = server.post_envelope(envelope(kind, &id, ""), &[]).await;
    assert_eq!(status, 200, "{answer}");
    id
}

async fn issue_of(server: &TestServer, kind: &str) -> Value {
    server
        .all_issues()
        .await
        .into_iter()
        .find(|i| i["title"].as_str().unwrap().starts_with(kind))
        .unwrap_or_else(|| panic!("no issue titled {kind}"))
}

/// The event ids the API lists for an issue, newest first (one page holds them all here).
async fn event_ids(server: &TestServer, issue_id: &str) -> Vec<String> {
    let (status, _, body) = server
        .api(&format!("/api/0/issues/{issue_id}/events/"))
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventID"].as_str().unwrap().to_string())
        .collect()
}

async fn put_project(server: &TestServer, body: Value) -> (u16, Value) {
    let resp = server
        .http
        .put(format!(
            "{}/api/0/projects/stackhound/default/",
            server.base
        ))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

both_backends!(old_events_go_issues_and_counts_stay);
async fn old_events_go_issues_and_counts_stay(backend: Backend) {
    let server = spawn_manual(backend).await;
    let defaults = RetentionDefaults::default();
    for n in 0..5 {
        post(&server, "OldOnly", n).await;
    }
    for n in 5..8 {
        post(&server, "Mixed", n).await;
    }
    server.clock.advance(chrono::Duration::days(10));
    let mut kept = Vec::new();
    for n in 8..10 {
        kept.push(post(&server, "Mixed", n).await);
    }
    let fresh = vec![
        post(&server, "Fresh", 10).await,
        post(&server, "Fresh", 11).await,
    ];
    let before = server.all_issues().await;
    assert_eq!(before.len(), 3);

    // Within the server's 90 days nothing is due.
    assert_eq!(
        run_retention(&server.store, &server.clock, &defaults).await,
        0
    );
    // The project keeps 7 days: the 8 events of ten days ago go.
    let (status, body) = put_project(&server, json!({"retentionDays": 7})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retentionDays"], 7);
    assert_eq!(
        run_retention(&server.store, &server.clock, &defaults).await,
        8
    );
    assert_eq!(server.store.event_total().await.unwrap(), 4);

    // Every issue is still listed with what arrived: count, first and last seen unchanged.
    let after = server.all_issues().await;
    let fields = |issues: &[Value]| -> Vec<(String, String, String, String)> {
        let mut v: Vec<_> = issues
            .iter()
            .map(|i| {
                let s = |k: &str| i[k].as_str().unwrap().to_string();
                (s("id"), s("count"), s("firstSeen"), s("lastSeen"))
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(fields(&after), fields(&before));
    let old = issue_of(&server, "OldOnly").await;
    assert_eq!(old["count"], "5");
    let old_id = old["id"].as_str().unwrap();
    assert!(event_ids(&server, old_id).await.is_empty());
    assert!(server
        .store
        .issue_events(old_id.parse().unwrap(), None, 10)
        .await
        .unwrap()
        .is_empty());
    // An issue without events still answers, and says why its latest event is missing.
    let (status, _, detail) = server.api(&format!("/api/0/issues/{old_id}/")).await;
    assert_eq!(status, 200, "{detail}");
    let (status, _, latest) = server
        .api(&format!("/api/0/issues/{old_id}/events/latest/"))
        .await;
    assert_eq!(status, 404);
    assert!(
        latest["detail"].as_str().unwrap().contains("retention"),
        "{latest}"
    );

    // The newer events are kept, newest first.
    let mixed = issue_of(&server, "Mixed").await;
    assert_eq!(mixed["count"], "5");
    kept.reverse();
    assert_eq!(
        event_ids(&server, mixed["id"].as_str().unwrap()).await,
        kept
    );
    let fresh_issue = issue_of(&server, "Fresh").await;
    let mut fresh = fresh;
    fresh.reverse();
    assert_eq!(
        event_ids(&server, fresh_issue["id"].as_str().unwrap()).await,
        fresh
    );
    let (status, _, latest) = server
        .api(&format!(
            "/api/0/issues/{}/events/latest/",
            mixed["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(latest["eventID"], kept[0]);

    // A new event of the emptied issue counts on from what arrived.
    post(&server, "OldOnly", 12).await;
    assert_eq!(issue_of(&server, "OldOnly").await["count"], "6");
    assert_eq!(event_ids(&server, old_id).await.len(), 1);
    server.stop().await;
}

both_backends!(max_events_keeps_exactly_the_newest_n_per_project);
async fn max_events_keeps_exactly_the_newest_n_per_project(backend: Backend) {
    let server = spawn_manual(backend).await;
    // A second project that follows the server's default (4 here); the first keeps its 5.
    let other = server
        .store
        .create_project("other", "Other", "otherkey", 0)
        .await
        .unwrap();
    let limits = ProjectLimits {
        retention_max_events: Some(5),
        ..ProjectLimits::default()
    };
    assert!(server
        .store
        .set_project_limits(server.project_id, &limits)
        .await
        .unwrap());
    let defaults = RetentionDefaults {
        max_age_days: Some(90),
        max_events: Some(4),
    };
    // Sent one after another, so arrival order is known; two issues interleaved, so "newest"
    // is per project, not per issue.
    let mut sent = Vec::new();
    let kind = |n: u64| {
        if n.is_multiple_of(3) {
            "Rare"
        } else {
            "Common"
        }
    };
    // Under the limit: nothing goes (and the store remembers the project is under it).
    for n in 0..3 {
        sent.push(post(&server, kind(n), n).await);
    }
    assert_eq!(
        run_retention(&server.store, &server.clock, &defaults).await,
        0
    );
    for n in 3..12 {
        sent.push(post(&server, kind(n), n).await);
    }
    let other_url = format!("{}/api/{}/envelope/", server.base, other.id);
    let mut other_sent = Vec::new();
    for n in 100..106 {
        let id = event_id(n);
        let resp = server
            .http
            .post(&other_url)
            .header(
                "x-sentry-auth",
                "Sentry sentry_key=otherkey, sentry_version=7",
            )
            .body(envelope("Elsewhere", &id, ""))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        other_sent.push(id);
    }
    assert_eq!(
        run_retention(&server.store, &server.clock, &defaults).await,
        7 + 2
    );
    assert_eq!(kept(&server).await, sorted(&sent[7..]), "the newest 5");
    let counts: u64 = server
        .all_issues()
        .await
        .iter()
        .map(|i| i["count"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counts, 12, "counts say what arrived");
    for (n, id) in other_sent.iter().enumerate() {
        let stored = server
            .store
            .event_exists(other.id, hex_id(id))
            .await
            .unwrap();
        assert_eq!(stored, n >= 2, "other project: event {n}");
    }
    // Nothing more is due: a second pass deletes nothing; after more arrivals, exactly they
    // push as many out.
    assert_eq!(
        run_retention(&server.store, &server.clock, &defaults).await,
        0
    );
    for n in 12..15 {
        sent.push(post(&server, kind(n), n).await);
    }
    assert_eq!(
        run_retention(&server.store, &server.clock, &defaults).await,
        3
    );
    assert_eq!(kept(&server).await, sorted(&sent[10..]), "the newest 5");
    server.stop().await;
}

/// The stored event ids of the Rare and Common issues, sorted.
async fn kept(server: &TestServer) -> Vec<String> {
    let mut kept = Vec::new();
    for kind in ["Rare", "Common"] {
        let issue = issue_of(server, kind).await;
        kept.extend(event_ids(server, issue["id"].as_str().unwrap()).await);
    }
    kept.sort();
    kept
}

fn sorted(ids: &[String]) -> Vec<String> {
    let mut v = ids.to_vec();
    v.sort();
    v
}

fn hex_id(id: &str) -> [u8; 16] {
    hex::decode(id).unwrap().try_into().unwrap()
}

both_backends!(project_limits_through_the_api);
async fn project_limits_through_the_api(backend: Backend) {
    let server = spawn_manual(backend).await;
    let (status, _, p) = server.api("/api/0/projects/stackhound/default/").await;
    assert_eq!(status, 200);
    for k in [
        "rateLimitPerMinute",
        "rateLimitPerHour",
        "retentionDays",
        "retentionMaxEvents",
    ] {
        assert_eq!(p[k], Value::Null, "{k} unset at first");
    }
    let (status, p) = put_project(
        &server,
        json!({"rateLimitPerMinute": 600, "rateLimitPerHour": 10000, "retentionDays": 30,
               "retentionMaxEvents": 5000}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        (
            &p["rateLimitPerMinute"],
            &p["rateLimitPerHour"],
            &p["retentionDays"],
            &p["retentionMaxEvents"]
        ),
        (&json!(600), &json!(10000), &json!(30), &json!(5000))
    );
    assert_eq!(
        server
            .store
            .project_limits(server.project_id)
            .await
            .unwrap(),
        ProjectLimits {
            rate_limit_minute: Some(600),
            rate_limit_hour: Some(10000),
            retention_days: Some(30),
            retention_max_events: Some(5000),
        }
    );
    // Absent fields stay, null and 0 clear.
    let (status, p) = put_project(
        &server,
        json!({"rateLimitPerHour": null, "retentionMaxEvents": 0, "alertOnUnmute": false}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["rateLimitPerMinute"], 600);
    assert_eq!(p["rateLimitPerHour"], Value::Null);
    assert_eq!(p["retentionDays"], 30);
    assert_eq!(p["retentionMaxEvents"], Value::Null);
    assert_eq!(p["alertOnUnmute"], false);
    // Refused whole: nothing of a bad body is stored.
    for bad in [
        json!({"retentionDays": -1}),
        json!({"rateLimitPerMinute": 1.5}),
        json!({"retentionMaxEvents": "10"}),
        json!({"rateLimitPerHour": true}),
        json!({"retentionDays": 18446744073709551615u64}),
        json!({"alertOnUnmute": true, "retentionDays": -5}),
    ] {
        let (status, body) = put_project(&server, bad.clone()).await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert!(body["detail"].as_str().is_some(), "{body}");
    }
    let (_, _, p) = server.api("/api/0/projects/stackhound/default/").await;
    assert_eq!(p["retentionDays"], 30);
    assert_eq!(p["rateLimitPerMinute"], 600);
    assert_eq!(p["alertOnUnmute"], false);
    server.stop().await;
}

both_backends!(project_limits_on_the_command_line);
async fn project_limits_on_the_command_line(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--database-url", &db.url])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = cli(&["project", "create", "web"]);
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&["project", "limits", "web"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "rate-limit-minute none\nrate-limit-hour none\nretention-days default\n\
         retention-max-events default\n"
    );
    let (ok, out, err) = cli(&[
        "project",
        "limits",
        "web",
        "--rate-limit-minute",
        "100",
        "--retention-days",
        "14",
        "--json",
    ]);
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown,
        json!({"rateLimitPerMinute": 100, "rateLimitPerHour": null, "retentionDays": 14,
               "retentionMaxEvents": null})
    );
    // 0 clears one; the others stay.
    let (ok, out, err) = cli(&["project", "limits", "web", "--retention-days", "0"]);
    assert!(ok, "{err}");
    assert!(out.contains("rate-limit-minute 100\n"), "{out}");
    assert!(out.contains("retention-days default\n"), "{out}");
    let (ok, _, err) = cli(&["project", "limits", "web", "--retention-days=-3"]);
    assert!(!ok, "a negative value is refused");
    assert!(err.contains("retention-days"), "{err}");
    let (ok, _, err) = cli(&["project", "limits", "nope"]);
    assert!(!ok);
    assert!(err.contains("no project 'nope'"), "{err}");
    let store = db.open().await;
    let p = store.project_by_slug("web").await.unwrap().unwrap();
    assert_eq!(
        store.project_limits(p.id).await.unwrap(),
        ProjectLimits {
            rate_limit_minute: Some(100),
            ..ProjectLimits::default()
        }
    );
    store.close().await;
}

/// A server on a manual clock, workers off, over a database the test also reaches directly
/// (the SQLite file's size, PostgreSQL's VACUUM): `spawn_manual`, keeping the `TestDb`.
struct Direct {
    db: TestDb,
    store: Store,
    clock: Clock,
    envelope_url: String,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Direct {
    async fn start(backend: Backend) -> Direct {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let project = store
            .create_project("default", "Default", KEY, 0)
            .await
            .unwrap();
        let clock = Clock::manual(chrono::Utc::now());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let settings = Settings {
            clock: clock.clone(),
            background: false,
            ..Settings::new(base.clone())
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app::start(store.clone(), settings).serve(listener, async {
            let _ = stopped.await;
        }));
        Direct {
            db,
            store,
            clock,
            envelope_url: format!("{base}/api/{}/envelope/", project.id),
            http: reqwest::Client::new(),
            stop,
            handle,
        }
    }

    /// Posts `count` events with ids from `first`, each with 4 KB of random hex (about 2 KB
    /// stored after compression), 16 at a time.
    async fn post_padded(&self, first: u64, count: u64) {
        let mut tasks = tokio::task::JoinSet::new();
        for n in first..first + count {
            if tasks.len() >= 16 {
                tasks.join_next().await.unwrap().unwrap();
            }
            let pad: String = (0..2048)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            let body = envelope(&format!("Bulk{}", n % 10), &event_id(n), &pad);
            let req = self
                .http
                .post(&self.envelope_url)
                .header("x-sentry-auth", format!("Sentry sentry_key={KEY}"))
                .body(body);
            tasks.spawn(async move {
                let resp = req.send().await.unwrap();
                assert_eq!(resp.status(), 200);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.unwrap().unwrap();
        drop(self.db);
    }
}

/// Bytes of the SQLite file itself (not its WAL) after a checkpoint.
async fn sqlite_file_bytes(d: &Direct) -> u64 {
    d.store.checkpoint().await.unwrap();
    let path = d.db.url.strip_prefix("sqlite://").unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// The events table with its indexes and TOAST, in bytes (PostgreSQL).
async fn pg_events_bytes(url: &str, vacuum: bool) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    if vacuum {
        sqlx::raw_sql("VACUUM events")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (bytes,): (i64,) = sqlx::query_as("SELECT pg_total_relation_size('events')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    bytes
}

const BULK: u64 = 3_000;

both_backends!(multi_thread: deleted_space_comes_back);
async fn deleted_space_comes_back(backend: Backend) {
    let d = Direct::start(backend).await;
    let defaults = RetentionDefaults::default();
    d.post_padded(0, BULK).await;
    let sqlite_before = match backend {
        Backend::Sqlite => sqlite_file_bytes(&d).await,
        Backend::Postgres => 0,
    };
    let pg_before = match backend {
        Backend::Sqlite => 0,
        Backend::Postgres => pg_events_bytes(&d.db.url, false).await,
    };
    // Newer events, kept: they sit at the end of the file or table, so what shrinks is not
    // just an empty tail.
    d.clock.advance(chrono::Duration::days(91));
    d.post_padded(BULK, 100).await;
    assert_eq!(
        run_retention(&d.store, &d.clock, &defaults).await,
        BULK as usize
    );
    match backend {
        // The file shrinks: freed pages are handed back by incremental vacuum steps and the
        // checkpoint truncates the file.
        Backend::Sqlite => {
            let before = sqlite_before;
            assert!(before > 6_000_000, "enough data to see: {before} bytes");
            let after = sqlite_file_bytes(&d).await;
            println!("sqlite file: {before} bytes before, {after} after retention");
            assert!(
                after < before / 5,
                "the file shrinks to what is kept: {before} -> {after} bytes"
            );
        }
        // The files do not shrink, but once (auto)vacuum has run the deleted rows' space is
        // reused: as many events again take almost no new space.
        Backend::Postgres => {
            let before = pg_before;
            let vacuumed = pg_events_bytes(&d.db.url, true).await;
            d.post_padded(BULK + 100, BULK).await;
            let refilled = pg_events_bytes(&d.db.url, false).await;
            println!(
                "postgres events: {before} bytes, {vacuumed} after retention and VACUUM, \
                 {refilled} with as many events again"
            );
            assert!(
                refilled < before + before / 4,
                "the space of the deleted rows is reused: {before} -> {refilled} bytes"
            );
        }
    }
    assert_eq!(
        d.store.event_total().await.unwrap(),
        if backend == Backend::Sqlite {
            100
        } else {
            100 + BULK as i64
        }
    );
    d.stop().await;
}

/// A database made before retention (auto_vacuum NONE) is converted once when opened, and
/// keeps its data; a new one is incremental from the start.
#[tokio::test]
async fn sqlite_databases_become_incremental() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let mode = |url: String| async move {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let (m,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
            .fetch_one(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
        m
    };
    {
        let mut c = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        sqlx::raw_sql("PRAGMA journal_mode=WAL; CREATE TABLE keep (x TEXT); INSERT INTO keep VALUES ('still here')")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    assert_eq!(mode(url.clone()).await, 0, "made without auto_vacuum");
    let store = Store::open(&url).await.unwrap();
    store.close().await;
    assert_eq!(
        mode(url.clone()).await,
        2,
        "INCREMENTAL after the conversion"
    );
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (x,): (String,) = sqlx::query_as("SELECT x FROM keep")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(x, "still here");
    c.close().await.unwrap();

    let fresh = format!("sqlite://{}", dir.path().join("new.db").display());
    let store = Store::open(&fresh).await.unwrap();
    store.close().await;
    assert_eq!(
        mode(fresh).await,
        2,
        "a new database is incremental at once"
    );
}
