//! Cron monitors on three real `stackhound serve` processes sharing one PostgreSQL database: check-ins sent round-robin open the monitor's issue once and resolve it once.
//!
//! PostgreSQL only (several processes on one database); prints nothing and passes without
//! `TEST_DATABASE_URL`, like `tests/scaleout.rs`, whose process helpers this copies.

#[path = "support/backend.rs"]
#[allow(unused_macros)]
mod backend;

use backend::{Backend, TestDb};
use serde_json::{json, Value};
use stackhound::store::Store;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_stackhound");
const KEY: &str = "scaleoutmonitorkey00000000000000";

struct Process {
    child: Child,
    port: u16,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn(url: &str) -> Process {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", url)
        .env("STACKHOUND_DB_POOL", "6")
        .env("STACKHOUND_WRITERS", "2")
        .env("STACKHOUND_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let process = Process { child, port };
    let http = reqwest::Client::new();
    for _ in 0..500 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return process;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("stackhound serve on port {port} did not become ready");
}

/// Waits (bounded) until `done` holds, checking every 100 ms.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

struct Cluster {
    _db: TestDb,
    store: Store,
    procs: Vec<Process>,
    project_id: i64,
    http: reqwest::Client,
}

impl Cluster {
    async fn check_in(&self, i: usize, body: Value) {
        let port = self.procs[i % self.procs.len()].port;
        let url = format!("http://127.0.0.1:{port}/api/{}/envelope/", self.project_id);
        let env = format!("{{}}\n{{\"type\":\"check_in\"}}\n{body}\n");
        let resp = self
            .http
            .post(url)
            .header(
                "x-sentry-auth",
                format!("Sentry sentry_key={KEY}, sentry_version=7"),
            )
            .body(env)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    /// The monitor's issues: (id, status, event count).
    async fn issues(&self) -> Vec<(i64, String, i64)> {
        let mut out = Vec::new();
        for id in self.store.issue_ids(self.project_id, None).await.unwrap() {
            let issue = self.store.issue(id).await.unwrap().unwrap();
            out.push((id, issue.status.clone(), issue.event_count));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_open_and_resolve_a_monitor_issue_once() {
    if !backend::available(Backend::Postgres) {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.open().await;
    let project = store
        .create_project("default", "Default", KEY, 0)
        .await
        .unwrap();
    let mut procs = Vec::new();
    for _ in 0..3 {
        procs.push(spawn(&db.url).await);
    }
    let c = Cluster {
        _db: db,
        store,
        procs,
        project_id: project.id,
        http: reqwest::Client::new(),
    };
    let id = || uuid::Uuid::new_v4().simple().to_string();
    // Hourly: no deadline passes during the test; only check-ins decide.
    let config = json!({"schedule": {"type": "interval", "value": 1, "unit": "hour"},
                        "failure_issue_threshold": 2, "recovery_threshold": 2});
    let mut n = 0;
    c.check_in(n, json!({"check_in_id": id(), "monitor_slug": "sync", "status": "ok", "monitor_config": config}))
        .await;
    // Three errors through three processes: the second opens the issue, the third adds to it.
    for _ in 0..3 {
        n += 1;
        c.check_in(
            n,
            json!({"check_in_id": id(), "monitor_slug": "sync", "status": "error"}),
        )
        .await;
    }
    eventually(
        "the monitor's issue with two events",
        Duration::from_secs(30),
        || async { matches!(c.issues().await.as_slice(), [(_, s, 2)] if s == "unresolved") },
    )
    .await;
    // Two oks through two other processes: resolved once.
    for _ in 0..2 {
        n += 1;
        c.check_in(
            n,
            json!({"check_in_id": id(), "monitor_slug": "sync", "status": "ok"}),
        )
        .await;
    }
    eventually(
        "the monitor's issue resolved",
        Duration::from_secs(30),
        || async { matches!(c.issues().await.as_slice(), [(_, s, 2)] if s == "resolved") },
    )
    .await;
    // Every process's worker has had a few rounds since; each transition is there once.
    let issue = c.issues().await[0].0;
    eventually("the resolve recorded", Duration::from_secs(30), || async {
        let m = c
            .store
            .monitor_by_slug(c.project_id, "sync")
            .await
            .unwrap()
            .unwrap();
        c.store.monitor_envs(m.id).await.unwrap()[0]
            .resolve_marker
            .is_none()
    })
    .await;
    let m = c
        .store
        .monitor_by_slug(c.project_id, "sync")
        .await
        .unwrap()
        .unwrap();
    let envs = c.store.monitor_envs(m.id).await.unwrap();
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].issue_id, Some(issue));
    assert!(!envs[0].incident_open);
    let kinds: Vec<String> = c
        .store
        .activities(issue)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("first_seen"), 1, "{kinds:?}");
    assert_eq!(count("resolved"), 1, "{kinds:?}");
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert_eq!(c.store.issue(issue).await.unwrap().unwrap().event_count, 2);
}
