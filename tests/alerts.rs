//! Alert delivery end to end: outbox rows in a real database, delivered to a real HTTP
//! receiver and a real SMTP server on 127.0.0.1, on a manual clock.

use chrono::{Duration, TimeZone, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use stackhound::alert::{AlertWorker, SmtpSettings};
use stackhound::clock::Clock;
use stackhound::event::Stored;
use stackhound::payload::StoredPayload;
use stackhound::store::alerts::{Channel, OutboxRow};
use stackhound::store::Store;
use tokio::net::TcpListener;

// First, so that `both_backends!` is in scope below.
#[path = "support/backend.rs"]
#[macro_use]
mod backend;
use backend::{Backend, TestDb};

const PAYLOAD: &str =
    r#"{"reason":"first event","environment":"production","level":"error","release":"1.0.0"}"#;
const SECRET: &str = "s3cret-signing-key";

#[path = "support/receivers.rs"]
#[allow(dead_code)]
mod receivers;
use receivers::{smtp_sink, Receiver, Request};

// ---------------------------------------------------------------------------------------------
// A database (SQLite or PostgreSQL) with a project and one issue, and a worker on a manual clock

struct Fixture {
    store: Store,
    clock: Clock,
    project_id: i64,
    issue_id: i64,
    worker: AlertWorker,
    /// Last, so it is dropped after the store and the worker.
    _db: TestDb,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        Fixture::with_smtp(backend, SmtpSettings::default()).await
    }

    async fn with_smtp(backend: Backend, smtp: SmtpSettings) -> Fixture {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        let clock = Clock::manual(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let now = clock.now().timestamp_micros();
        let project = store
            .create_project("default", "Default", "alertkey", now)
            .await
            .unwrap();
        // The issue comes from a real event through the ingest path.
        let stored = ingest(
            &store,
            &clock,
            project.id,
            "ValueError",
            "bad <input> & more",
        )
        .await;
        assert!(stored.new_issue);
        let mut worker = AlertWorker::new(
            store.clone(),
            clock.clone(),
            smtp,
            "https://errors.example.com/".into(),
            "acme".into(),
        )
        .unwrap();
        // Straight to 127.0.0.1, whatever proxy the machine running the tests has.
        worker.http = reqwest::Client::builder().no_proxy().build().unwrap();
        Fixture {
            store,
            clock,
            project_id: project.id,
            issue_id: stored.issue_id,
            worker,
            _db: db,
        }
    }

    async fn channel(&self, kind: &str, config: Value) -> Channel {
        let now = self.clock.now().timestamp_micros();
        self.store
            .create_channel(self.project_id, kind, &config.to_string(), now)
            .await
            .unwrap()
    }

    async fn enqueue(&self, kind: &str, key: &str) -> u64 {
        let now = self.clock.now().timestamp_micros();
        self.store
            .enqueue_alert(self.project_id, self.issue_id, kind, key, PAYLOAD, now)
            .await
            .unwrap()
    }

    async fn alerts(&self) -> Vec<OutboxRow> {
        self.store.issue_alerts(self.issue_id).await.unwrap()
    }

    async fn alert_of(&self, channel: &Channel) -> OutboxRow {
        self.alerts()
            .await
            .into_iter()
            .find(|a| a.channel_id == channel.id)
            .unwrap()
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(Duration::seconds(secs));
    }

    fn link(&self) -> String {
        format!(
            "https://errors.example.com/organizations/acme/issues/{}/",
            self.issue_id
        )
    }
}

/// Stores one event the way the ingest writer does (new issues raise their own alerts there).
async fn ingest(store: &Store, clock: &Clock, project_id: i64, ty: &str, value: &str) -> Stored {
    let event = json!({
        "platform": "python",
        "level": "error",
        "environment": "production",
        "exception": {"values": [{
            "type": ty,
            "value": value,
            "stacktrace": {"frames": [{
                "function": "index", "module": "app.views",
                "filename": "app/views.py", "lineno": 10, "in_app": true,
            }]},
        }]},
    })
    .to_string();
    let bytes = event.as_bytes();
    let prepared = stackhound::pipeline::prepare(
        project_id,
        &Default::default(),
        None,
        bytes,
        || StoredPayload::compress(bytes),
        clock.now_secs(),
        None,
    )
    .unwrap();
    let mut writer = store.writer(clock.clone());
    writer.write_batch(&[prepared.event]).await.unwrap()[0]
}

fn header<'a>(r: &'a Request, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

// ---------------------------------------------------------------------------------------------

both_backends!(webhook_gets_the_whole_issue_signed);
async fn webhook_gets_the_whole_issue_signed(backend: Backend) {
    let f = Fixture::new(backend).await;
    let rx = Receiver::start(0).await;
    let signed = f
        .channel(
            "webhook",
            json!({"url": rx.url("/signed"), "secret": SECRET}),
        )
        .await;
    let unsigned = f
        .channel("webhook", json!({"url": rx.url("/unsigned")}))
        .await;
    let key = format!("new_issue:{}", f.issue_id);
    assert_eq!(f.enqueue("new_issue", &key).await, 2);

    assert_eq!(f.worker.run_due().await, 2);

    let requests = rx.requests();
    assert_eq!(requests.len(), 2);
    let req = requests.iter().find(|r| r.path == "/signed").unwrap();
    assert_eq!(header(req, "content-type"), Some("application/json"));
    assert_eq!(header(req, "x-stackhound-event"), Some("new_issue"));
    let row = f.alert_of(&signed).await;
    assert_eq!(row.idempotency_key, format!("{key}:{}", signed.id));
    assert_eq!(header(req, "idempotency-key"), Some(&*row.idempotency_key));

    // The signature is checked the way a receiver would: HMAC over the raw body.
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&req.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header(req, "x-stackhound-signature"), Some(&*expected));

    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["kind"], "new_issue");
    assert_eq!(body["reason"], "first event");
    assert_eq!(body["link"], f.link());
    assert_eq!(body["idempotencyKey"], row.idempotency_key);
    assert_eq!(body["sentAt"], "2026-01-01T00:00:00.000000Z");
    assert_eq!(body["project"]["slug"], "default");
    assert_eq!(body["project"]["name"], "Default");
    let issue = &body["issue"];
    assert_eq!(issue["id"], f.issue_id.to_string());
    assert_eq!(issue["shortId"], "DEFAULT-1");
    assert_eq!(issue["title"], "ValueError: bad <input> & more");
    assert_eq!(issue["permalink"], f.link());
    assert_eq!(issue["count"], "1");
    assert_eq!(issue["level"], "error");
    assert_eq!(issue["status"], "unresolved");
    assert_eq!(issue["metadata"]["type"], "ValueError");

    let other = requests.iter().find(|r| r.path == "/unsigned").unwrap();
    assert_eq!(header(other, "x-stackhound-signature"), None);
    assert_eq!(
        header(other, "idempotency-key"),
        Some(&*f.alert_of(&unsigned).await.idempotency_key)
    );

    for row in f.alerts().await {
        assert_eq!(row.status, "delivered");
        assert_eq!(row.attempts, 1);
        assert_eq!(row.last_status, Some(200));
        assert_eq!(row.last_error, None);
        assert_eq!(row.delivered_at, Some(f.clock.now().timestamp_micros()));
    }
    // Delivered alerts are never claimed again.
    f.advance(86_400);
    assert_eq!(f.worker.run_due().await, 0);
    assert_eq!(rx.requests().len(), 2);
}

both_backends!(slack_gets_readable_text_and_blocks);
async fn slack_gets_readable_text_and_blocks(backend: Backend) {
    let f = Fixture::new(backend).await;
    let rx = Receiver::start(0).await;
    f.channel("slack", json!({"url": rx.url("/services/T0/B0/X")}))
        .await;
    f.enqueue("new_issue", "new_issue:slack").await;

    assert_eq!(f.worker.run_due().await, 1);

    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let text = body["text"].as_str().unwrap();
    assert_eq!(
        text,
        format!(
            ":rotating_light: New issue in *default* (production, error): \
             <{}|DEFAULT-1 ValueError: bad &lt;input&gt; &amp; more> — 1 event",
            f.link()
        )
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    assert!(blocks[0]["text"]["text"]
        .as_str()
        .unwrap()
        .contains(&f.link()));
    assert_eq!(blocks[1]["type"], "context");
    let context = blocks[1]["elements"][0]["text"].as_str().unwrap();
    for part in ["production", "error", "1.0.0", "1 event", "first event"] {
        assert!(context.contains(part), "{part} in {context}");
    }
    assert_eq!(f.alerts().await[0].status, "delivered");
}

both_backends!(email_arrives_with_plain_and_html_parts);
async fn email_arrives_with_plain_and_html_parts(backend: Backend) {
    let (addr, mails) = smtp_sink().await;
    let smtp = SmtpSettings::from_url(&format!(
        "smtp://{addr}?from=Stackhound%20%3Calerts%40example.com%3E"
    ))
    .unwrap();
    let f = Fixture::with_smtp(backend, smtp).await;
    let channel = f
        .channel(
            "email",
            json!({"to": ["ops@example.com", "dev@example.com"]}),
        )
        .await;
    f.enqueue("regression", "regression:mail").await;

    assert_eq!(f.worker.run_due().await, 1);

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "<alerts@example.com>");
    assert_eq!(mail.to, ["<ops@example.com>", "<dev@example.com>"]);
    let data = &mail.data;
    // Soft line breaks of quoted-printable would split the strings looked for below.
    let unfolded = data.replace("=\r\n", "");
    for part in [
        "Subject: [default] Regression: DEFAULT-1 ValueError: bad <input> & more",
        "From: Stackhound <alerts@example.com>",
        &format!("Message-ID: <regression-mail-{}@stackhound>", channel.id),
        &format!(
            "X-Stackhound-Idempotency-Key: regression:mail:{}",
            channel.id
        ),
        "X-Stackhound-Event: regression",
        "multipart/alternative",
        "Content-Type: text/plain",
        "Content-Type: text/html",
        "Environment: production",
        "Release: 1.0.0",
        "bad &lt;input&gt; &amp; more",
    ] {
        assert!(unfolded.contains(part), "{part} missing in:\n{data}");
    }
    assert!(unfolded.contains(&f.link()));
    // No raw markup from the event in the HTML part.
    let html = unfolded.split("Content-Type: text/html").nth(1).unwrap();
    assert!(!html.contains("<input>"), "{html}");

    let row = &f.alerts().await[0];
    assert_eq!(row.status, "delivered");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, None);
}

both_backends!(failing_receiver_gets_the_alert_once_after_backoff);
async fn failing_receiver_gets_the_alert_once_after_backoff(backend: Backend) {
    let f = Fixture::new(backend).await;
    let rx = Receiver::start(2).await;
    let channel = f
        .channel(
            "webhook",
            json!({"url": rx.url("/flaky"), "secret": SECRET}),
        )
        .await;
    f.enqueue("unmute", "unmute:flaky").await;

    // Attempt 1 fails: the next one is due after the base delay (30 s).
    assert_eq!(f.worker.run_due().await, 1);
    let row = f.alert_of(&channel).await;
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 1));
    assert_eq!(row.last_status, Some(500));
    assert!(
        row.last_error.as_deref().unwrap().contains("500"),
        "{row:?}"
    );
    assert!(row
        .last_error
        .as_deref()
        .unwrap()
        .contains("receiver is down"));
    assert_eq!(
        row.next_attempt_at,
        f.clock.now().timestamp_micros() + 30_000_000
    );

    // Not yet due: nothing is sent.
    assert_eq!(f.worker.run_due().await, 0);
    f.advance(29);
    assert_eq!(f.worker.run_due().await, 0);
    assert_eq!(rx.requests().len(), 1);

    // Attempt 2 fails too: now the wait doubles to 60 s.
    f.advance(1);
    assert_eq!(f.worker.run_due().await, 1);
    assert_eq!(f.alert_of(&channel).await.attempts, 2);
    f.advance(59);
    assert_eq!(f.worker.run_due().await, 0);
    assert_eq!(rx.requests().len(), 2);

    // Attempt 3 gets through.
    f.advance(1);
    assert_eq!(f.worker.run_due().await, 1);
    f.advance(3600);
    assert_eq!(f.worker.run_due().await, 0);

    let requests = rx.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(rx.successes(), 1);
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    // Every attempt carries the same key, so a receiver can drop repeats.
    for r in &requests {
        assert_eq!(
            header(r, "idempotency-key"),
            Some(&*format!("unmute:flaky:{}", channel.id))
        );
        assert_eq!(header(r, "x-stackhound-event"), Some("unmute"));
    }
    let row = f.alert_of(&channel).await;
    assert_eq!(row.status, "delivered");
    assert_eq!(row.attempts, 3);
    assert_eq!(row.last_status, Some(200));
    assert_eq!(row.last_error, None);
    assert!(row.delivered_at.is_some());
}

both_backends!(dead_receiver_fails_after_max_attempts);
async fn dead_receiver_fails_after_max_attempts(backend: Backend) {
    let f = Fixture::new(backend).await;
    let rx = Receiver::start(usize::MAX).await;
    let channel = f.channel("webhook", json!({"url": rx.url("/dead")})).await;
    f.enqueue("new_issue", "new_issue:dead").await;
    let max = f.worker.policy.max_attempts as usize;
    assert_eq!(max, 8);

    for attempt in 1..=max {
        assert_eq!(f.worker.run_due().await, 1, "attempt {attempt}");
        // The longest wait is capped at max_delay.
        f.advance(f.worker.policy.max_delay.as_secs() as i64);
    }
    assert_eq!(f.worker.run_due().await, 0);

    assert_eq!(rx.requests().len(), max);
    assert_eq!(rx.successes(), 0);
    let row = f.alert_of(&channel).await;
    assert_eq!(row.status, "failed");
    assert_eq!(row.attempts, max as i64);
    assert_eq!(row.last_status, Some(500));
    assert!(row.last_error.unwrap().contains("HTTP 500"));
    assert_eq!(row.delivered_at, None);
    // The project's delivery log shows it too.
    let log = f.store.alert_log(f.project_id, 10).await.unwrap();
    assert_eq!(log[0].status, "failed");
}

both_backends!(unreachable_receiver_is_retried_with_the_error_logged);
async fn unreachable_receiver_is_retried_with_the_error_logged(backend: Backend) {
    let f = Fixture::new(backend).await;
    // A port nobody listens on: bound, then released.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    f.channel(
        "webhook",
        json!({"url": format!("http://127.0.0.1:{port}/hook")}),
    )
    .await;
    f.enqueue("new_issue", "new_issue:unreachable").await;

    assert_eq!(f.worker.run_due().await, 1);
    let row = &f.alerts().await[0];
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 1));
    assert_eq!(row.last_status, None);
    assert!(row
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("request failed"));
}

both_backends!(the_same_key_twice_is_one_alert);
async fn the_same_key_twice_is_one_alert(backend: Backend) {
    let f = Fixture::new(backend).await;
    let rx = Receiver::start(0).await;
    f.channel("webhook", json!({"url": rx.url("/once")})).await;

    assert_eq!(f.enqueue("new_issue", "new_issue:twice").await, 1);
    assert_eq!(f.enqueue("new_issue", "new_issue:twice").await, 0);
    assert_eq!(f.alerts().await.len(), 1);

    assert_eq!(f.worker.run_due().await, 1);
    assert_eq!(f.enqueue("new_issue", "new_issue:twice").await, 0);
    assert_eq!(f.worker.run_due().await, 0);
    assert_eq!(rx.requests().len(), 1);
}

both_backends!(deleted_channel_and_bad_config_give_up_at_once);
async fn deleted_channel_and_bad_config_give_up_at_once(backend: Backend) {
    let f = Fixture::new(backend).await;
    let gone = f
        .channel("webhook", json!({"url": "http://127.0.0.1:9/"}))
        .await;
    let bad = f.channel("webhook", json!({"url": "ftp://x/"})).await;
    let unknown = f.channel("pager", json!({})).await;
    f.enqueue("new_issue", "new_issue:broken").await;
    assert!(f.store.delete_channel(f.project_id, gone.id).await.unwrap());

    assert_eq!(f.worker.run_due().await, 3);

    for (channel, error) in [
        (&gone, "was deleted"),
        (&bad, "not http(s)"),
        (&unknown, "unknown channel kind"),
    ] {
        let row = f.alert_of(channel).await;
        assert_eq!(row.status, "failed", "{row:?}");
        assert_eq!(row.attempts, 1);
        assert!(
            row.last_error.as_deref().unwrap().contains(error),
            "{row:?}"
        );
    }
    f.advance(86_400);
    assert_eq!(f.worker.run_due().await, 0);
}

both_backends!(a_new_issue_from_ingest_is_alerted);
async fn a_new_issue_from_ingest_is_alerted(backend: Backend) {
    let f = Fixture::new(backend).await;
    let rx = Receiver::start(0).await;
    f.channel("webhook", json!({"url": rx.url("/hook"), "secret": SECRET}))
        .await;
    // The writer raises the alert in the transaction that creates the issue.
    let stored = ingest(&f.store, &f.clock, f.project_id, "KeyError", "'x'").await;
    assert!(stored.new_issue);
    let alerts = f.store.issue_alerts(stored.issue_id).await.unwrap();
    assert_eq!(alerts.len(), 1);

    assert_eq!(f.worker.run_due().await, 1);
    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["kind"], "new_issue");
    assert_eq!(body["issue"]["shortId"], "DEFAULT-2");
    assert_eq!(body["issue"]["title"], "KeyError: 'x'");
    assert_eq!(body["environment"], "production");
    assert_eq!(body["level"], "error");
    assert_eq!(
        header(&requests[0], "idempotency-key"),
        Some(&*alerts[0].idempotency_key)
    );
    let row = &f.store.issue_alerts(stored.issue_id).await.unwrap()[0];
    assert_eq!(row.status, "delivered");
}

both_backends!(the_production_loop_delivers_and_stops_on_shutdown);
async fn the_production_loop_delivers_and_stops_on_shutdown(backend: Backend) {
    let f = Fixture::new(backend).await;
    let rx = Receiver::start(0).await;
    f.channel("webhook", json!({"url": rx.url("/loop")})).await;
    f.enqueue("new_issue", "new_issue:loop").await;
    let arrived = rx.state.lock().unwrap().arrived.clone();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(f.worker.clone().run(async {
        let _ = stopped.await;
    }));
    // The first tick is immediate.
    tokio::time::timeout(std::time::Duration::from_secs(10), arrived.notified())
        .await
        .expect("the loop delivers what is due");
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), worker)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
    assert_eq!(rx.successes(), 1);
    assert_eq!(f.alerts().await[0].status, "delivered");
}

both_backends!(missing_issue_gives_up);
async fn missing_issue_gives_up(backend: Backend) {
    let f = Fixture::new(backend).await;
    let rx = Receiver::start(0).await;
    f.channel("webhook", json!({"url": rx.url("/x")})).await;
    let now = f.clock.now().timestamp_micros();
    f.store
        .enqueue_alert(
            f.project_id,
            999_999,
            "new_issue",
            "new_issue:ghost",
            "{}",
            now,
        )
        .await
        .unwrap();

    assert_eq!(f.worker.run_due().await, 1);
    let row = &f.store.issue_alerts(999_999).await.unwrap()[0];
    assert_eq!(row.status, "failed");
    assert!(row
        .last_error
        .as_deref()
        .unwrap()
        .contains("no longer exists"));
    assert!(rx.requests().is_empty());
}
