//! Scale-out on PostgreSQL: three real `stackhound serve` processes on one fresh database,
//! concurrent load through all three, and one of them killed with SIGKILL under load; each
//! responder action and each monitor transition happens once.
//!
//! Several processes on one database is what PostgreSQL is for (SQLite is one machine, one
//! process), so these tests run on PostgreSQL only, and print `skipped` without
//! `TEST_DATABASE_URL`. They send traffic to loopback only and are bounded in count and time.

#[path = "support/backend.rs"]
#[allow(unused_macros)]
mod backend;
#[path = "support/receivers.rs"]
#[allow(dead_code)]
mod receivers;

use backend::{Backend, TestDb};
use receivers::Receiver;
use serde_json::{json, Value};
use stackhound::store::Store;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_stackhound");
const KEY: &str = "scaleoutkey0000000000000000000000";
/// Seconds a claimed alert stays with its process: short, so that the fault test sees the
/// dead process's alerts taken over within the test's time.
const LEASE_SECS: &str = "3";

struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    db: TestDb,
    store: Store,
    procs: Vec<Process>,
    project_id: i64,
    token: String,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// `n` processes on a fresh PostgreSQL database with a project and a token.
    async fn start(n: usize) -> Cluster {
        let db = TestDb::new(Backend::Postgres).await;
        let store = db.open().await;
        let project = store
            .create_project("default", "Default", KEY, 0)
            .await
            .unwrap();
        let token = stackhound::cli::create_token(&store, &stackhound::clock::Clock::System, "t")
            .await
            .unwrap();
        let mut procs = Vec::new();
        for _ in 0..n {
            procs.push(spawn(&db.url).await);
        }
        Cluster {
            db,
            store,
            procs,
            project_id: project.id,
            token,
            http: reqwest::Client::new(),
        }
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.procs[i % self.procs.len()].port)
    }

    /// Sends one event to process `i`; the HTTP status, or 0 when the connection failed.
    async fn send(&self, i: usize, event: &Value) -> u16 {
        let url = format!("{}/api/{}/store/", self.base(i), self.project_id);
        match self
            .http
            .post(url)
            .header(
                "x-sentry-auth",
                format!("Sentry sentry_key={KEY}, sentry_version=7"),
            )
            .json(event)
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    async fn api(&self, i: usize, method: reqwest::Method, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base(i)))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn put_issue(&self, i: usize, issue_id: i64, body: Value) {
        self.api(
            i,
            reqwest::Method::PUT,
            &format!("/api/0/issues/{issue_id}/"),
            body,
        )
        .await;
    }

    /// The issue id of a fingerprint's issue (after at least one of its events was stored).
    async fn issue_of(&self, fingerprint: &str) -> i64 {
        let list = self
            .api(
                0,
                reqwest::Method::GET,
                &format!(
                    "/api/0/projects/stackhound/default/issues/?query={fingerprint}&limit=100"
                ),
                Value::Null,
            )
            .await;
        let hits: Vec<i64> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["title"].as_str() == Some(fingerprint))
            .map(|i| i["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(hits.len(), 1, "one issue titled {fingerprint}: {list}");
        hits[0]
    }

    async fn activity_kinds(&self, issue_id: i64) -> Vec<String> {
        self.store
            .activities(issue_id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.kind)
            .collect()
    }

    /// Sum of issue counts, number of stored events, number of issues.
    async fn totals(&self) -> (i64, i64, usize) {
        let issues = self.store.issue_ids(self.project_id, None).await.unwrap();
        let mut sum = 0;
        for id in &issues {
            sum += self.store.issue(*id).await.unwrap().unwrap().event_count;
        }
        (sum, self.store.event_total().await.unwrap(), issues.len())
    }
}

async fn spawn(url: &str) -> Process {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", url)
        .env("STACKHOUND_ALERT_LEASE_SECS", LEASE_SECS)
        .env("STACKHOUND_DB_POOL", "6")
        .env("STACKHOUND_WRITERS", "3")
        .env("STACKHOUND_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Owned from here on: dropping it (also on the panic below) kills and reaps the child.
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

/// A message event grouped by its fingerprint, titled by it.
fn event(fingerprint: &str, id: &str, release: Option<&str>, user: Option<&str>) -> Value {
    let mut e = json!({
        "event_id": id,
        "message": fingerprint,
        "fingerprint": [fingerprint],
        "level": "error",
        "platform": "python",
        "timestamp": chrono::Utc::now().timestamp_micros() as f64 / 1e6,
    });
    if let Some(r) = release {
        e["release"] = json!(r);
    }
    if let Some(u) = user {
        e["user"] = json!({"id": u});
    }
    e
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Sends `events` concurrently (`parallel` at a time), spread round-robin over the processes;
/// returns the ids answered 200.
async fn blast(c: &Cluster, events: Vec<Value>, parallel: usize) -> Vec<String> {
    use futures_util::StreamExt;
    let results: Vec<(String, u16)> = futures_util::stream::iter(events.into_iter().enumerate())
        .map(|(i, e)| async move {
            let id = e["event_id"].as_str().unwrap().to_string();
            (id, c.send(i, &e).await)
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    results
        .into_iter()
        .filter(|(_, s)| *s == 200)
        .map(|(id, _)| id)
        .collect()
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

/// The idempotency keys the receiver got, with how often.
fn keys(rx: &Receiver) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in rx.requests() {
        let key = r.headers["idempotency-key"].to_str().unwrap().to_string();
        *out.entry(key).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_database_exactly() {
    if !backend::available(Backend::Postgres) {
        return;
    }
    let c = Cluster::start(3).await;
    let rx = Receiver::start(0).await;
    c.api(
        0,
        reqwest::Method::POST,
        "/api/0/projects/stackhound/default/alert-channels/",
        json!({"kind": "webhook", "url": rx.url("/hook")}),
    )
    .await;

    // 1. New issues whose first events reach all three processes at once, and re-sent ids.
    let mut events = Vec::new();
    let mut resent = Vec::new();
    for i in 0..900 {
        let e = event(&format!("load-{}", i % 30), &new_id(), None, None);
        if i % 10 == 0 {
            resent.push(e.clone());
        }
        events.push(e);
    }
    // Each re-send goes to another process than (most likely) the original.
    events.extend(resent.iter().cloned());
    let ok = blast(&c, events, 48).await;
    let distinct: HashSet<&String> = ok.iter().collect();
    assert_eq!(ok.len(), 990, "every request answered 200");
    assert_eq!(distinct.len(), 900);
    let (sum, stored, issues) = c.totals().await;
    assert_eq!(
        (sum, stored, issues),
        (900, 900, 30),
        "counts exact, one issue per hash"
    );
    let mut shorts = HashSet::new();
    for id in c.store.issue_ids(c.project_id, None).await.unwrap() {
        let issue = c.store.issue(id).await.unwrap().unwrap();
        assert!(shorts.insert(issue.short_number), "short ids unique");
        assert_eq!(c.activity_kinds(id).await, ["first_seen"]);
    }

    // 2. A muted issue pushed over its threshold through all three: one unmute, one alert.
    assert_eq!(c.send(0, &event("muted", &new_id(), None, None)).await, 200);
    let muted = c.issue_of("muted").await;
    c.put_issue(
        1,
        muted,
        json!({"status": "ignored", "statusDetails": {"ignoreCount": 40, "ignoreWindow": 60}}),
    )
    .await;
    let burst = (0..120)
        .map(|_| event("muted", &new_id(), None, None))
        .collect();
    assert_eq!(blast(&c, burst, 24).await.len(), 120);

    // 3. A resolved issue regressed through all three: one regression.
    assert_eq!(
        c.send(0, &event("resolved", &new_id(), None, None)).await,
        200
    );
    let resolved = c.issue_of("resolved").await;
    c.put_issue(2, resolved, json!({"status": "resolved"}))
        .await;
    let burst = (0..60)
        .map(|_| event("resolved", &new_id(), None, None))
        .collect();
    assert_eq!(blast(&c, burst, 24).await.len(), 60);

    // 4. A timed mute lifted by whichever process's clock loop gets it first: once.
    assert_eq!(c.send(0, &event("timed", &new_id(), None, None)).await, 200);
    let timed = c.issue_of("timed").await;
    let until = chrono::Utc::now() + chrono::Duration::seconds(2);
    c.put_issue(
        0,
        timed,
        json!({"status": "ignored", "statusDetails": {"ignoreUntil": until.to_rfc3339()}}),
    )
    .await;
    eventually(
        "the timed mute to lift",
        Duration::from_secs(20),
        || async { c.store.issue(timed).await.unwrap().unwrap().status == "unresolved" },
    )
    .await;

    let kinds = |id| c.activity_kinds(id);
    let count = |v: Vec<String>, k: &str| v.iter().filter(|x| *x == k).count();
    assert_eq!(count(kinds(muted).await, "unmuted"), 1);
    assert_eq!(count(kinds(resolved).await, "regressed"), 1);
    assert_eq!(count(kinds(timed).await, "unmuted"), 1);
    let (sum, stored, _) = c.totals().await;
    assert_eq!(sum, stored);
    assert_eq!(stored, 900 + 1 + 120 + 1 + 60 + 1);

    // 5. Every alert in the outbox is delivered once: 33 new issues, 1 unmute, 1 regression,
    // 1 timed unmute, each received exactly once.
    eventually("every alert delivered", Duration::from_secs(60), || async {
        keys(&rx).len() >= 36
    })
    .await;
    // A moment more, in which a double delivery would show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = keys(&rx);
    assert_eq!(got.len(), 36, "{got:?}");
    assert!(got.values().all(|&n| n == 1), "each alert once: {got:?}");
    let mut per_kind: HashMap<String, usize> = HashMap::new();
    for k in rx.kinds() {
        *per_kind.entry(k).or_default() += 1;
    }
    assert_eq!(per_kind["new_issue"], 33);
    assert_eq!(per_kind["unmute"], 2);
    assert_eq!(per_kind["regression"], 1);
    for id in [muted, resolved, timed] {
        for row in c.store.issue_alerts(id).await.unwrap() {
            assert_eq!(row.status, "delivered", "{row:?}");
        }
    }
    drop(c.procs);
    drop(c.db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_no_acknowledged_event_and_its_alerts_are_taken_over() {
    if !backend::available(Backend::Postgres) {
        return;
    }
    let mut c = Cluster::start(3).await;
    // A slow receiver: every process holds claimed alerts while delivering.
    let rx = Receiver::start(0).await;
    rx.state.lock().unwrap().delay = Duration::from_millis(1500);
    c.api(
        0,
        reqwest::Method::POST,
        "/api/0/projects/stackhound/default/alert-channels/",
        json!({"kind": "webhook", "url": rx.url("/hook")}),
    )
    .await;

    // Load: 3,000 events over 149 fingerprints (not a multiple of 3, so each reaches every
    // process), while the third process is killed as soon as it holds claimed, undelivered
    // alerts.
    let events: Vec<Value> = (0..3000)
        .map(|i| event(&format!("fault-{}", i % 149), &new_id(), None, None))
        .collect();
    let fingerprint_of: HashMap<String, String> = events
        .iter()
        .map(|e| {
            let id = e["event_id"].as_str().unwrap().to_string();
            (id, e["message"].as_str().unwrap().to_string())
        })
        .collect();
    let victim = c.procs[2].pid();
    let mark = format!(":{victim}:");
    let load = blast(&c, events, 48);
    let kill = async {
        let start = std::time::Instant::now();
        let held: Vec<i64> = loop {
            let held: Vec<i64> = c
                .store
                .alert_log(c.project_id, 100_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.status == "pending")
                .filter(|r| r.claimed_by.as_deref().is_some_and(|b| b.contains(&mark)))
                .map(|r| r.id)
                .collect();
            if !held.is_empty() {
                break held;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the victim never held alerts"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let status = Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        held
    };
    let (ok, held) = tokio::join!(load, kill);
    println!(
        "killed pid {victim} holding {} claimed alerts; {} events answered 200",
        held.len(),
        ok.len()
    );
    let _ = c.procs[2].child.wait();

    // Every event any process answered 200 is stored, and counts equal the rows.
    assert!(ok.len() >= 1500, "most events answered: {}", ok.len());
    for id in &ok {
        let bytes = *uuid::Uuid::parse_str(id).unwrap().as_bytes();
        assert!(
            c.store.event_exists(c.project_id, bytes).await.unwrap(),
            "{id} stored"
        );
    }
    let (sum, stored, issues) = c.totals().await;
    assert_eq!(sum, stored, "counts equal stored events");
    assert!(stored as usize >= ok.len());
    // One issue per fingerprint: every acknowledged event's fingerprint has one, and none has
    // two (the victim may have stored events it died before answering).
    let mut titles = HashSet::new();
    for id in c.store.issue_ids(c.project_id, None).await.unwrap() {
        let title = c.store.issue(id).await.unwrap().unwrap().title;
        assert!(titles.insert(title.clone()), "two issues titled {title}");
    }
    for id in &ok {
        assert!(titles.contains(&fingerprint_of[id]), "an issue for {id}");
    }
    assert_eq!(issues, titles.len());

    // The survivors keep serving.
    for i in 0..2 {
        assert_eq!(c.send(i, &event("after", &new_id(), None, None)).await, 200);
    }

    // The alerts the dead process had claimed are delivered by the others after its lease.
    eventually("every alert delivered", Duration::from_secs(90), || async {
        c.store
            .alert_log(c.project_id, 100_000)
            .await
            .unwrap()
            .iter()
            .all(|r| r.status == "delivered")
    })
    .await;
    let rows = c.store.alert_log(c.project_id, 100_000).await.unwrap();
    // One new-issue alert per issue: the load's and 'after'.
    assert_eq!(rows.len(), issues + 1);
    for row in rows.iter().filter(|r| held.contains(&r.id)) {
        assert!(
            !row.claimed_by.as_deref().unwrap_or("").contains(&mark),
            "taken over: {row:?}"
        );
    }
    let got = keys(&rx);
    assert_eq!(got.len(), issues + 1, "every alert reached the receiver");
    for row in &rows {
        let n = got.get(&row.idempotency_key).copied().unwrap_or(0);
        // A request the victim had in flight may have reached the receiver before it died.
        let most = if held.contains(&row.id) { 2 } else { 1 };
        assert!(
            (1..=most).contains(&n),
            "{} received {n} times",
            row.idempotency_key
        );
    }
    drop(std::mem::take(&mut c.procs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_take_each_responder_action_exactly_once() {
    if !backend::available(Backend::Postgres) {
        return;
    }
    let c = Cluster::start(3).await;
    let rx = Receiver::start(0).await;
    let responders = "/api/0/projects/stackhound/default/responders/";
    c.api(
        0,
        reqwest::Method::POST,
        responders,
        json!({"watch_pattern": "^ladder-", "actions": [
            {"target": "webhook", "params": {"url": rx.url("/now")}},
            {"target": "webhook", "delay_sec": 2, "params": {"url": rx.url("/later")}},
        ]}),
    )
    .await;
    c.api(
        1,
        reqwest::Method::POST,
        responders,
        json!({"watch_pattern": "^halt-", "actions": [
            {"target": "webhook", "delay_sec": 4, "params": {"url": rx.url("/never")}},
        ]}),
    )
    .await;

    // 20 matching issues whose first events reach all three processes at once; 5 more that
    // are resolved before their action is due.
    let mut events = Vec::new();
    for i in 0..120 {
        events.push(event(&format!("ladder-{}", i % 20), &new_id(), None, None));
    }
    for i in 0..5 {
        events.push(event(&format!("halt-{i}"), &new_id(), None, None));
    }
    assert_eq!(blast(&c, events, 24).await.len(), 125);
    for i in 0..5 {
        let id = c.issue_of(&format!("halt-{i}")).await;
        c.put_issue(i, id, json!({"status": "resolved"})).await;
    }

    eventually(
        "both steps of 20 ladders",
        Duration::from_secs(30),
        || async { rx.requests().len() >= 40 },
    )
    .await;
    // Past every due time and a lease more: nothing else arrives.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let keys = keys(&rx);
    assert_eq!(keys.len(), 40, "one delivery per (issue, action)");
    assert!(keys.values().all(|&n| n == 1), "{keys:?}");
    let paths: Vec<String> = rx.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.iter().filter(|p| *p == "/now").count(), 20);
    assert_eq!(paths.iter().filter(|p| *p == "/later").count(), 20);
    for i in 0..5 {
        let id = c.issue_of(&format!("halt-{i}")).await;
        let runs = c.store.issue_actions(id).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].0.status, "cancelled");
    }
    // Every taken action was attempted once and names the process that took it.
    let mut takers = HashSet::new();
    for i in 0..20 {
        let id = c.issue_of(&format!("ladder-{i}")).await;
        for (run, attempts) in c.store.issue_actions(id).await.unwrap() {
            assert_eq!(run.status, "delivered");
            assert_eq!(attempts.len(), 1);
            takers.insert(run.claimed_by.unwrap());
        }
    }
    assert!(!takers.is_empty());
}

impl Cluster {
    /// Sends one `check_in` envelope item to process `i`.
    async fn check_in(&self, i: usize, body: Value) {
        let url = format!("{}/api/{}/envelope/", self.base(i), self.project_id);
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

    /// Every issue of the project: (id, status, event count).
    async fn monitor_issues(&self) -> Vec<(i64, String, i64)> {
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
    let c = Cluster::start(3).await;
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
        || async {
            matches!(c.monitor_issues().await.as_slice(), [(_, s, 2)] if s == "unresolved")
        },
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
        || async { matches!(c.monitor_issues().await.as_slice(), [(_, s, 2)] if s == "resolved") },
    )
    .await;
    // Every process's worker has had a few rounds since; each transition is there once.
    let issue = c.monitor_issues().await[0].0;
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

/// One event sent to each of the three processes: their answers.
async fn statuses(c: &Cluster) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(c.send(i, &event("keys", &new_id(), None, None)).await);
    }
    out
}

/// A DSN key disabled, enabled or revoked through one process is obeyed by every process
/// within a second (each caches a key for at most one second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_key_is_refused_by_every_process_within_a_second() {
    if !backend::available(Backend::Postgres) {
        return;
    }
    let c = Cluster::start(3).await;
    let key_path = format!("/api/0/projects/stackhound/default/keys/{KEY}/");
    // Every process has the key cached (accepted) before it changes.
    assert_eq!(statuses(&c).await, vec![200, 200, 200]);
    // Past the cache's one second, every process has read the change.
    let settle = Duration::from_millis(1100);
    c.api(
        0,
        reqwest::Method::PUT,
        &key_path,
        json!({"isActive": false}),
    )
    .await;
    tokio::time::sleep(settle).await;
    assert_eq!(statuses(&c).await, vec![403, 403, 403], "disabled");
    c.api(
        1,
        reqwest::Method::PUT,
        &key_path,
        json!({"isActive": true}),
    )
    .await;
    tokio::time::sleep(settle).await;
    assert_eq!(statuses(&c).await, vec![200, 200, 200], "enabled again");
    let resp = c
        .http
        .delete(format!("{}{key_path}", c.base(2)))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "revoke: {}", resp.status());
    tokio::time::sleep(settle).await;
    assert_eq!(statuses(&c).await, vec![403, 403, 403], "revoked");
    let (_, issues_events, _) = c.totals().await;
    assert_eq!(
        issues_events, 6,
        "only the events sent while the key was active are stored"
    );
}
