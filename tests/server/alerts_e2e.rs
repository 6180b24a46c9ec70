//! Alerts end to end: a spawned Stackhound, a real HTTP receiver and a real SMTP server; the
//! alert worker's step is run after moving the manual clock, so nothing sleeps.

use crate::backend::Backend;
use crate::helpers::{spawn_manual, TestServer};
use crate::receivers::{smtp_sink, Receiver};
use serde_json::{json, Value};
use stackhound::alert::{AlertWorker, SmtpSettings};

async fn send(server: &TestServer, kind: &str) {
    let event = json!({"exception": {"values": [{"type": kind, "value": "boom"}]}, "environment": "staging"});
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes();
    assert_eq!(server.post_envelope(body, &[]).await.0, 200);
}

fn worker(server: &TestServer, smtp: &str) -> AlertWorker {
    AlertWorker::new(
        server.store.clone(),
        server.clock.clone(),
        SmtpSettings::from_url(smtp).unwrap(),
        server.base.clone(),
        "stackhound".into(),
    )
    .unwrap()
}

both_backends!(new_issue_and_regression_alerts_reach_every_channel);
async fn new_issue_and_regression_alerts_reach_every_channel(backend: Backend) {
    let server = spawn_manual(backend).await;
    let hook = Receiver::start(0).await;
    let slack = Receiver::start(0).await;
    let (smtp_addr, mails) = smtp_sink().await;
    server
        .add_channel(json!({"kind": "webhook", "url": hook.url("/hook"), "secret": "k"}))
        .await;
    server
        .add_channel(json!({"kind": "slack", "url": slack.url("/slack")}))
        .await;
    server
        .add_channel(json!({"kind": "email", "to": ["oncall@example.com"]}))
        .await;
    let worker = worker(&server, &format!("smtp://{smtp_addr}"));

    send(&server, "PaymentError").await;
    assert_eq!(worker.run_due().await, 3);
    let hooks = hook.requests();
    assert_eq!(hooks.len(), 1);
    let body: Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(body["kind"], "new_issue");
    assert_eq!(body["issue"]["shortId"], "DEFAULT-1");
    assert!(body["link"].as_str().unwrap().contains("/issues/1/"));
    assert!(hooks[0].headers.get("x-stackhound-signature").is_some());
    let text: Value = serde_json::from_slice(&slack.requests()[0].body).unwrap();
    let text = text["text"].as_str().unwrap();
    assert!(
        text.contains("DEFAULT-1") && text.contains("default") && text.contains("staging"),
        "{text}"
    );
    assert_eq!(mails.lock().unwrap().len(), 1);
    assert!(mails.lock().unwrap()[0].data.contains("PaymentError"));

    // Resolve, then a new event: one regression alert per channel.
    let resp = server
        .http
        .put(format!("{}/api/0/issues/1/", server.base))
        .bearer_auth(&server.token)
        .json(&json!({"status": "resolved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        worker.run_due().await,
        0,
        "a person's resolve sends nothing"
    );
    send(&server, "PaymentError").await;
    send(&server, "PaymentError").await;
    assert_eq!(worker.run_due().await, 3);
    let kinds = hook.kinds();
    assert_eq!(kinds, vec!["new_issue", "regression"]);
    assert_eq!(mails.lock().unwrap().len(), 2);
    server.stop().await;
}

both_backends!(a_receiver_failing_twice_gets_the_alert_once_after_three_attempts);
async fn a_receiver_failing_twice_gets_the_alert_once_after_three_attempts(backend: Backend) {
    let server = spawn_manual(backend).await;
    let hook = Receiver::start(2).await;
    server
        .add_channel(json!({"kind": "webhook", "url": hook.url("/hook")}))
        .await;
    let worker = worker(&server, "smtp://127.0.0.1:9");
    send(&server, "Timeout").await;
    assert_eq!(worker.run_due().await, 1);
    assert_eq!(
        worker.run_due().await,
        0,
        "nothing is due before the backoff passes"
    );
    server.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(worker.run_due().await, 1);
    server.clock.advance(chrono::Duration::minutes(2));
    assert_eq!(worker.run_due().await, 1);
    server.clock.advance(chrono::Duration::hours(2));
    assert_eq!(worker.run_due().await, 0);
    assert_eq!(hook.requests().len(), 3);
    assert_eq!(hook.successes(), 1);
    let (status, _, log) = server
        .api("/api/0/projects/stackhound/default/alert-deliveries/")
        .await;
    assert_eq!(status, 200);
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["attempts"], 3);
    assert_eq!(log[0]["status"], "delivered");
    assert_eq!(log[0]["lastStatus"], 200);
    assert_eq!(log[0]["kind"], "new_issue");
    server.stop().await;
}
