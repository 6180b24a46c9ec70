//! `/health` (python-panopticon's format), `/readyz` and `/metrics` (parsed as Prometheus text) against a real server, including a real database outage on each backend.

use crate::backend::{Backend, TestDb};
use crate::helpers::{spawn, spawn_manual, spawn_on, TestServer};
use crate::receivers::Receiver;
use prometheus_parse::{Scrape, Value as Prom};
use serde_json::{json, Value};
use sqlx::Connection;

async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    let resp = server
        .http
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Checks the panopticon shape: every required key, with its type.
fn assert_panopticon(body: &Value, components: &[&str]) {
    assert!(body["service_healthy"].is_boolean(), "{body:#}");
    let ts = body["timestamp"].as_str().expect("timestamp is a string");
    assert!(ts.ends_with('Z'), "{ts}");
    chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: {e}"));
    // Milliseconds, as the format's example: 2014-09-03T23:09:38.702Z.
    assert_eq!(ts.len(), "2014-09-03T23:09:38.702Z".len(), "{ts}");
    let comps = body["components"].as_object().expect("components object");
    for name in components {
        let c = &comps[*name];
        assert!(c["healthy"].is_boolean(), "{name}: {c:#}");
        assert!(c["response_time"].is_number(), "{name}: {c:#}");
        assert!(c["response_time"].as_f64().unwrap() >= 0.0);
    }
    let all = comps.values().all(|c| c["healthy"] == json!(true));
    assert_eq!(body["service_healthy"], json!(all), "{body:#}");
}

const COMPONENTS: [&str; 5] = [
    "database",
    "ingest_queue",
    "alert_delivery",
    "action_delivery",
    "scheduler",
];

both_backends!(health_answers_the_panopticon_format);
async fn health_answers_the_panopticon_format(backend: Backend) {
    // Background workers on: the scheduler lists and judges them.
    let server = spawn(backend).await;
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{body:#}");
    assert_panopticon(&body, &COMPONENTS);
    assert_eq!(body["service_healthy"], json!(true));
    let c = &body["components"];
    assert_eq!(c["database"]["backend"], json!(backend.name()));
    assert_eq!(c["database"]["migrations"]["complete"], json!(true));
    assert!(c["database"]["migrations"]["applied"].as_i64().unwrap() >= 8);
    assert_eq!(c["ingest_queue"]["queued"], json!(0));
    assert_eq!(c["ingest_queue"]["capacity"], json!(1024));
    assert_eq!(c["ingest_queue"]["storage"]["fault"], json!(false));
    assert!(c["ingest_queue"]["memory"]["total"].as_u64().unwrap() > 0);
    for queue in ["alert_delivery", "action_delivery"] {
        assert_eq!(c[queue]["backlog"], json!(0), "{queue}");
        assert_eq!(c[queue]["failed_last_hour"], json!(0), "{queue}");
        assert_eq!(c[queue]["oldest_due_seconds"], Value::Null, "{queue}");
    }
    let workers = c["scheduler"]["workers"].as_object().unwrap();
    for w in ["unmute", "retention", "quota", "alerts"] {
        assert_eq!(workers[w]["healthy"], json!(true), "{w}: {body:#}");
    }
    assert!(c["scheduler"].get("note").is_none());
    // With a trailing slash too, and the probes stay as they were.
    assert_eq!(get_json(&server, "/health/").await.0, 200);
    assert_eq!(
        get_json(&server, "/healthz").await,
        (200, json!({"ok": true}))
    );
    let (status, ready) = get_json(&server, "/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], json!(true));
    server.stop().await;
}

/// A server on `backend` whose database URL the test keeps (to take the database away).
async fn spawn_keeping_url(backend: Backend) -> (TestServer, String) {
    let db = TestDb::new(backend).await;
    let url = db.url.clone();
    let store = db.open().await;
    (spawn_on(db, store, |s| s.background = false).await, url)
}

/// Makes the database unreachable for new connections, the way an outage would, and back.
///
/// SQLite: the tests may run as root, for whom `chmod 000` does not stop a read, so the
/// directory holding the file (and its WAL) is renamed away: opening the database at its path
/// fails as it would on a lost volume. PostgreSQL: the test database refuses connections
/// (`ALLOW_CONNECTIONS false`) and its sessions are terminated from an admin connection.
struct Outage {
    backend: Backend,
    url: String,
}

impl Outage {
    fn sqlite_dir(&self) -> std::path::PathBuf {
        let file = std::path::PathBuf::from(self.url.trim_start_matches("sqlite://"));
        file.parent().unwrap().to_path_buf()
    }

    fn pg_name(&self) -> String {
        let tail = self.url.rsplit('/').next().unwrap();
        tail.split('?').next().unwrap().to_string()
    }

    async fn pg_admin(&self, sql: &str, bind_name: bool) {
        let admin = crate::backend::postgres_admin_url().unwrap();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        let q = sqlx::query(sql);
        let q = if bind_name { q.bind(self.pg_name()) } else { q };
        q.execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    async fn start(&self) {
        match self.backend {
            Backend::Sqlite => {
                let dir = self.sqlite_dir();
                std::fs::rename(&dir, dir.with_extension("away")).unwrap();
            }
            Backend::Postgres => {
                let name = self.pg_name();
                self.pg_admin(
                    &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
                    false,
                )
                .await;
                self.pg_admin(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    true,
                )
                .await;
            }
        }
    }

    async fn end(&self) {
        match self.backend {
            Backend::Sqlite => {
                let dir = self.sqlite_dir();
                std::fs::rename(dir.with_extension("away"), &dir).unwrap();
            }
            Backend::Postgres => {
                let name = self.pg_name();
                self.pg_admin(
                    &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"),
                    false,
                )
                .await;
            }
        }
    }
}

both_backends!(multi_thread: an_unreachable_database_makes_health_503_until_it_returns);
async fn an_unreachable_database_makes_health_503_until_it_returns(backend: Backend) {
    let (server, url) = spawn_keeping_url(backend).await;
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{body:#}");
    // Workers off here: the scheduler is healthy and says why it judges nothing.
    assert!(body["components"]["scheduler"]["note"].is_string());

    let outage = Outage { backend, url };
    outage.start().await;
    let started = std::time::Instant::now();
    let (status, body) = get_json(&server, "/health").await;
    let took = started.elapsed();
    outage.end().await;
    assert_eq!(status, 503, "{body:#}");
    assert_panopticon(&body, &COMPONENTS);
    assert_eq!(body["service_healthy"], json!(false));
    let db = &body["components"]["database"];
    assert_eq!(db["healthy"], json!(false), "{body:#}");
    assert!(db["error"].as_str().is_some_and(|e| !e.is_empty()), "{db}");
    // Every check has its own timeout: a database that does not answer cannot hold the
    // answer much past it.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");

    // Back: the pool reconnects by itself (PostgreSQL) and the file opens again (SQLite).
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["components"]["database"]["healthy"], json!(true));
    assert_eq!(get_json(&server, "/readyz").await.0, 200);
    server.stop().await;
}

both_backends!(missing_migrations_make_readyz_and_health_503);
async fn missing_migrations_make_readyz_and_health_503(backend: Backend) {
    let (server, url) = spawn_keeping_url(backend).await;
    assert_eq!(get_json(&server, "/readyz").await.0, 200);
    // As if this binary were newer than the schema: its latest migration is not recorded.
    let sql = "DELETE FROM schema_migrations
               WHERE version = (SELECT MAX(version) FROM schema_migrations)";
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    }
    let (status, body) = get_json(&server, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("migrations not applied"),
        "{body}"
    );
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 503, "{body:#}");
    let db = &body["components"]["database"];
    assert_eq!(db["healthy"], json!(false));
    assert_eq!(db["migrations"]["complete"], json!(false));
    server.stop().await;
}

both_backends!(an_overdue_alert_makes_alert_delivery_unhealthy);
async fn an_overdue_alert_makes_alert_delivery_unhealthy(backend: Backend) {
    let server = spawn_manual(backend).await;
    let hook = Receiver::start(0).await;
    server
        .add_channel(json!({"kind": "webhook", "url": hook.url("/hook")}))
        .await;
    let event = json!({"message": "boom"});
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes();
    assert_eq!(server.post_envelope(body, &[]).await.0, 200);

    // The new-issue alert is due and waits: fine for a while.
    server.clock.advance(chrono::Duration::seconds(60));
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{body:#}");
    let alerts = &body["components"]["alert_delivery"];
    assert_eq!(alerts["backlog"], json!(1));
    assert_eq!(alerts["oldest_due_seconds"], json!(60.0));

    // Eleven minutes and nobody delivered it: unhealthy.
    server.clock.advance(chrono::Duration::seconds(600));
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(
        body["components"]["alert_delivery"]["healthy"],
        json!(false)
    );

    // The worker's round delivers it: healthy again.
    let worker = stackhound::alert::AlertWorker::new(
        server.store.clone(),
        server.clock.clone(),
        stackhound::alert::SmtpSettings::default(),
        server.base.clone(),
        "stackhound".into(),
    )
    .unwrap();
    assert_eq!(worker.run_due().await, 1);
    assert_eq!(hook.successes(), 1);
    let (status, body) = get_json(&server, "/health").await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["components"]["alert_delivery"]["backlog"], json!(0));
    server.stop().await;
}

async fn scrape(server: &TestServer) -> Scrape {
    let resp = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = resp.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// The value of a counter or gauge with the given label, 0 when absent.
fn value(s: &Scrape, metric: &str, label: Option<(&str, &str)>) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == metric)
        .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match x.value {
            Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn histogram_count(s: &Scrape, metric: &str) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric)
        .and_then(|x| match &x.value {
            Prom::Histogram(buckets) => buckets.last().map(|b| b.count),
            _ => None,
        })
}

both_backends!(multi_thread: metrics_count_what_ingestion_did);
async fn metrics_count_what_ingestion_did(backend: Backend) {
    let server = spawn(backend).await;
    let before = scrape(&server).await;
    let accepted = ("category", "error");
    let accepted_before = value(&before, "stackhound_events_accepted_total", Some(accepted));

    // Five events from the official Rust SDK.
    let (client, hub) = crate::sdk::client(&server.dsn);
    tokio::task::spawn_blocking(move || {
        for msg in ["same", "same", "same", "other one", "a third"] {
            hub.capture_message(msg, sentry::Level::Error);
        }
        assert!(client.flush(Some(std::time::Duration::from_secs(10))));
    })
    .await
    .unwrap();
    // Refused: an unknown key, and a body that is no envelope.
    let resp = server
        .http
        .post(server.envelope_url())
        .header(
            "x-sentry-auth",
            "Sentry sentry_key=nosuchkey, sentry_version=7",
        )
        .body("{}\n{\"type\":\"event\"}\n{}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(server.post_envelope(b"not json".to_vec(), &[]).await.0, 400);

    let after = scrape(&server).await;
    assert_eq!(
        value(&after, "stackhound_events_accepted_total", Some(accepted)) - accepted_before,
        5.0
    );
    let rejected = |reason| {
        value(
            &after,
            "stackhound_events_rejected_total",
            Some(("reason", reason)),
        )
    };
    assert_eq!(rejected("unauthorized"), 1.0);
    assert_eq!(rejected("invalid"), 1.0);
    assert_eq!(rejected("rate_limited"), 0.0);
    // Histograms, with every request (five accepted, two refused) in the latency one.
    assert_eq!(
        histogram_count(&after, "stackhound_ingest_latency_seconds"),
        Some(7.0)
    );
    assert!(histogram_count(&after, "stackhound_batch_commit_seconds").unwrap() >= 1.0);
    assert!(histogram_count(&after, "stackhound_batch_size").unwrap() >= 1.0);
    // Every issue counted once, after its commit (the SDK attaches the stack of the call,
    // which groups these messages together); nothing regressed or unmuted.
    let issues = server.all_issues().await.len() as f64;
    assert!(issues >= 1.0);
    assert_eq!(
        value(&after, "stackhound_issues_created_total", None),
        issues
    );
    assert_eq!(
        value(&after, "stackhound_issue_regressions_total", None),
        0.0
    );
    assert_eq!(value(&after, "stackhound_queue_depth", None), 0.0);
    assert_eq!(
        value(&after, "stackhound_ingest_queue_capacity", None),
        1024.0
    );
    assert_eq!(value(&after, "stackhound_storage_fault", None), 0.0);
    // Help lines come along.
    assert!(after.docs.contains_key("stackhound_events_rejected_total"));
    server.stop().await;
}

both_backends!(metrics_count_regressions_and_dropped_items);
async fn metrics_count_regressions_and_dropped_items(backend: Backend) {
    let server = spawn_manual(backend).await;
    let event = |msg: &str| {
        format!(
            "{{}}\n{{\"type\":\"event\"}}\n{}\n",
            json!({"message": msg})
        )
        .into_bytes()
    };
    assert_eq!(server.post_envelope(event("regress me"), &[]).await.0, 200);
    let (status, _) = server
        .put_api("/api/0/issues/1/", &json!({"status": "resolved"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.post_envelope(event("regress me"), &[]).await.0, 200);
    // A transaction rides along and is dropped.
    let body = format!(
        "{{}}\n{{\"type\":\"transaction\"}}\n{}\n",
        json!({"type": "transaction", "transaction": "/x"})
    );
    assert_eq!(server.post_envelope(body.into_bytes(), &[]).await.0, 200);

    let s = scrape(&server).await;
    assert_eq!(value(&s, "stackhound_issues_created_total", None), 1.0);
    assert_eq!(value(&s, "stackhound_issue_regressions_total", None), 1.0);
    assert_eq!(
        value(
            &s,
            "stackhound_items_dropped_total",
            Some(("type", "transaction"))
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "stackhound_events_accepted_total",
            Some(("category", "error"))
        ),
        2.0
    );
    server.stop().await;
}
