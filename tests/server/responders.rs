//! Responders end to end: the seed's ladder on a manual clock (no sleeps), episodes, muting,
//! retries, restarts, and the API's checks; actions reach a real SMTP server and a real HTTP
//! receiver.

use crate::backend::Backend;
use crate::helpers::{spawn_manual, TestServer};
use crate::receivers::{smtp_sink, Mail, Receiver};
use serde_json::{json, Value};
use stackhound::alert::SmtpSettings;
use stackhound::responder::worker::ResponderWorker;
use std::sync::{Arc, Mutex};

const TITLE: &str = "That 'impossible' edge case finally happened";

async fn post_api(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let resp = server
        .http
        .post(format!("{}{path}", server.base))
        .bearer_auth(&server.token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends one error event whose title is `TypeName: value`.
async fn send(server: &TestServer, ty: &str, value: &str, env: &str) {
    let event = json!({"exception": {"values": [{"type": ty, "value": value}]},
                       "environment": env, "level": "error"});
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes();
    assert_eq!(server.post_envelope(body, &[]).await.0, 200);
}

fn worker(server: &TestServer, smtp: &str) -> ResponderWorker {
    ResponderWorker::new(
        server.store.clone(),
        server.clock.clone(),
        SmtpSettings::from_url(smtp).unwrap(),
        server.base.clone(),
        "stackhound".into(),
        server.state.heartbeats.clone(),
    )
    .unwrap()
}

fn seed_ladder() -> Value {
    json!({
        "name": "edge case",
        "watch_pattern": "impossible. edge case",
        "actions": [
            {"target": "email", "delay_sec": 30,
             "params": {"subject": "Doh!", "recipients": "john.smith@example.com"}},
            {"target": "email", "delay_sec": 1800,
             "params": {"subject": "Doh-2!", "recipients": ["john.smith-boss@example.com"]}},
        ]
    })
}

const RESPONDERS: &str = "/api/0/projects/stackhound/default/responders/";

fn advance(server: &TestServer, secs: i64) {
    server.clock.advance(chrono::Duration::seconds(secs));
}

fn subjects(mails: &Arc<Mutex<Vec<Mail>>>) -> Vec<(String, String)> {
    mails
        .lock()
        .unwrap()
        .iter()
        .map(|m| {
            let subject = m
                .data
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or("")
                .to_string();
            let to: Vec<&str> = m.to.iter().map(|t| t.trim_matches(['<', '>'])).collect();
            (to.join(","), subject)
        })
        .collect()
}

async fn actions(server: &TestServer, issue: &str) -> Vec<Value> {
    let (status, _, body) = server.api(&format!("/api/0/issues/{issue}/actions/")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

both_backends!(the_seeds_ladder_escalates_until_resolved_and_again_after_a_regression);
async fn the_seeds_ladder_escalates_until_resolved_and_again_after_a_regression(backend: Backend) {
    let server = spawn_manual(backend).await;
    let (smtp, mails) = smtp_sink().await;
    let worker = worker(&server, &format!("smtp://{smtp}"));
    let (status, created) = post_api(&server, RESPONDERS, &seed_ladder()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["actions"][1]["delay_sec"], 1800);

    send(&server, "EdgeCase", TITLE, "production").await;
    let issue = server.all_issues().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        worker.run_due().await,
        0,
        "nothing is due at the episode's start"
    );
    advance(&server, 29);
    assert_eq!(worker.run_due().await, 0);
    advance(&server, 1);
    assert_eq!(worker.run_due().await, 1, "the first step at 30 s");
    assert_eq!(
        subjects(&mails),
        [("john.smith@example.com".into(), "Doh!".into())]
    );
    // The detail shows what was taken and what is pending.
    let (_, _, detail) = server.api(&format!("/api/0/issues/{issue}/")).await;
    assert_eq!(
        detail["responderActions"]["taken"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(detail["responderActions"]["pending"][0]["action"], 1);

    // Resolved at 100 s: the boss is never written to.
    advance(&server, 70);
    let (status, _) = server
        .put_api(
            &format!("/api/0/issues/{issue}/"),
            &json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status, 200);
    advance(&server, 1800);
    assert_eq!(worker.run_due().await, 0);
    assert_eq!(mails.lock().unwrap().len(), 1);
    let runs = actions(&server, &issue).await;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["status"], "delivered");
    assert_eq!(runs[0]["attemptLog"][0]["outcome"], "delivered");
    assert_eq!(runs[1]["status"], "cancelled");
    assert_eq!(runs[1]["reason"], "the issue was resolved");

    // A regression starts a new episode: the whole ladder runs again, on its own clock.
    send(&server, "EdgeCase", TITLE, "production").await;
    advance(&server, 30);
    assert_eq!(worker.run_due().await, 1);
    advance(&server, 1769);
    assert_eq!(worker.run_due().await, 0, "1799 s into the episode");
    advance(&server, 1);
    assert_eq!(worker.run_due().await, 1);
    assert_eq!(
        subjects(&mails),
        [
            ("john.smith@example.com".into(), "Doh!".into()),
            ("john.smith@example.com".into(), "Doh!".into()),
            ("john.smith-boss@example.com".into(), "Doh-2!".into()),
        ]
    );
    let runs = actions(&server, &issue).await;
    assert_eq!(runs.len(), 4);
    assert_ne!(runs[0]["episode"], runs[2]["episode"]);
    assert!(runs[2..].iter().all(|r| r["status"] == "delivered"));
    // Nothing more, ever, for this episode.
    advance(&server, 86_400);
    assert_eq!(worker.run_due().await, 0);
    assert_eq!(mails.lock().unwrap().len(), 3);
    server.stop().await;
}

both_backends!(a_muted_issue_gets_no_actions_and_filters_choose_issues);
async fn a_muted_issue_gets_no_actions_and_filters_choose_issues(backend: Backend) {
    let server = spawn_manual(backend).await;
    let hook = Receiver::start(0).await;
    let worker = worker(&server, "smtp://127.0.0.1:9");
    let body = json!({
        "watch_pattern": "^Timeout",
        "environment": "production",
        "min_level": "error",
        "actions": [{"target": "webhook", "delay_sec": 60, "params": {"url": hook.url("/r")}}],
    });
    assert_eq!(post_api(&server, RESPONDERS, &body).await.0, 201);

    send(&server, "Timeout", "db", "production").await; // matches
    send(&server, "Timeout", "cache", "staging").await; // other environment
    send(&server, "KeyError", "Timeout", "production").await; // `^` anchors the title
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 3);
    let id_of = |value: &str| {
        issues
            .iter()
            .find(|i| i["metadata"]["value"] == value)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let db = id_of("db");
    assert_eq!(actions(&server, &db).await.len(), 1);
    assert!(actions(&server, &id_of("cache")).await.is_empty());
    assert!(actions(&server, &id_of("Timeout")).await.is_empty());

    // Muted before the action is due: cancelled, nothing sent, also later.
    advance(&server, 10);
    let (status, _) = server
        .put_api(
            &format!("/api/0/issues/{db}/"),
            &json!({"status": "ignored"}),
        )
        .await;
    assert_eq!(status, 200);
    advance(&server, 3600);
    assert_eq!(worker.run_due().await, 0);
    assert!(hook.requests().is_empty());
    let runs = actions(&server, &db).await;
    assert_eq!(runs[0]["status"], "cancelled");
    assert_eq!(runs[0]["reason"], "the issue was muted");
    // Events of a muted issue start no episode.
    send(&server, "Timeout", "db", "production").await;
    assert_eq!(actions(&server, &db).await.len(), 1);
    server.stop().await;
}

both_backends!(a_failing_action_is_retried_with_backoff_and_every_attempt_recorded);
async fn a_failing_action_is_retried_with_backoff_and_every_attempt_recorded(backend: Backend) {
    let server = spawn_manual(backend).await;
    let hook = Receiver::start(2).await; // answers 500 twice, then 200
    let worker = worker(&server, "smtp://127.0.0.1:9");
    let body = json!({"watch_pattern": "Flaky",
        "actions": [{"target": "webhook", "params": {"url": hook.url("/r"), "secret": "s"}}]});
    assert_eq!(post_api(&server, RESPONDERS, &body).await.0, 201);
    send(&server, "Flaky", "x", "production").await;
    let issue = server.all_issues().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    assert_eq!(worker.run_due().await, 1, "no delay: due at once");
    assert_eq!(worker.run_due().await, 0, "waits for its backoff");
    advance(&server, 30);
    assert_eq!(worker.run_due().await, 1);
    advance(&server, 59);
    assert_eq!(
        worker.run_due().await,
        0,
        "the second wait is twice the first"
    );
    advance(&server, 1);
    assert_eq!(worker.run_due().await, 1);
    assert_eq!(hook.requests().len(), 3);
    assert_eq!(hook.successes(), 1);
    let sent: Value = serde_json::from_slice(&hook.requests()[2].body).unwrap();
    assert_eq!(sent["kind"], "responder");
    assert_eq!(sent["responder"]["action"], 0);
    assert!(hook.requests()[2]
        .headers
        .get("x-stackhound-signature")
        .is_some());

    let runs = actions(&server, &issue).await;
    assert_eq!(runs[0]["status"], "delivered");
    assert_eq!(runs[0]["attempts"], 3);
    let log: Vec<&str> = runs[0]["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(log, ["retry", "retry", "delivered"]);
    assert_eq!(runs[0]["attemptLog"][0]["httpStatus"], 500);
    server.stop().await;
}

both_backends!(a_due_action_runs_exactly_once_after_a_restart_and_with_rival_workers);
async fn a_due_action_runs_exactly_once_after_a_restart_and_with_rival_workers(backend: Backend) {
    let server = spawn_manual(backend).await;
    let hook = Receiver::start(0).await;
    let body = json!({"watch_pattern": "Restart",
        "actions": [{"target": "slack", "delay_sec": 300, "params": {"url": hook.url("/s")}}]});
    assert_eq!(post_api(&server, RESPONDERS, &body).await.0, 201);
    send(&server, "Restart", "a", "production").await;
    send(&server, "Restart", "b", "production").await;
    let server = server.restart().await;
    advance(&server, 300);
    // Three workers (three leases) race for the two due runs.
    let workers: Vec<ResponderWorker> = (0..3)
        .map(|i| {
            let mut w = worker(&server, "smtp://127.0.0.1:9");
            w.instance = format!("rival-{i}");
            w
        })
        .collect();
    let claimed: usize = futures_util::future::join_all(workers.iter().map(|w| w.run_due()))
        .await
        .into_iter()
        .sum();
    assert_eq!(claimed, 2);
    assert_eq!(hook.requests().len(), 2);
    advance(&server, 86_400);
    for w in &workers {
        assert_eq!(w.run_due().await, 0);
    }
    assert_eq!(hook.requests().len(), 2);
    let text: Value = serde_json::from_slice(&hook.requests()[0].body).unwrap();
    assert!(
        text["text"].as_str().unwrap().contains("Still unresolved"),
        "{text}"
    );
    server.stop().await;
}

both_backends!(responders_are_checked_whole_and_managed_through_the_api);
async fn responders_are_checked_whole_and_managed_through_the_api(backend: Backend) {
    let server = spawn_manual(backend).await;
    let (status, body) = post_api(
        &server,
        RESPONDERS,
        &json!({"watch_pattern": "oops (", "actions": [{"target": "email",
                "params": {"recipients": "a@example.com"}}]}),
    )
    .await;
    assert_eq!(status, 400);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("watch_pattern: invalid regular expression at position 5"),
        "{detail}"
    );
    for (bad, want) in [
        (
            json!({"watch_pattern": "x", "actions": [{"target": "sms"}]}),
            "actions[0].target",
        ),
        (
            json!({"watch_pattern": "x", "actions": [
                {"target": "webhook", "params": {"url": "http://h"}},
                {"target": "email", "params": {"recipients": "no-at-sign"}}]}),
            "actions[1].params.recipients",
        ),
    ] {
        let (status, body) = post_api(&server, RESPONDERS, &bad).await;
        assert_eq!(status, 400);
        assert!(body["detail"].as_str().unwrap().starts_with(want), "{body}");
    }
    // Nothing of the refused documents was stored.
    let (_, _, list) = server.api(RESPONDERS).await;
    assert_eq!(list, json!([]));

    let (status, r) = post_api(&server, RESPONDERS, &seed_ladder()).await;
    assert_eq!(status, 201);
    let path = format!("{RESPONDERS}{}/", r["id"].as_str().unwrap());
    let (status, _, got) = server.api(&path).await;
    assert_eq!((status, &got), (200, &r));
    let mut changed = got.clone();
    changed["enabled"] = json!(false);
    let (status, updated) = server.put_api(&path, &changed).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["enabled"], false);
    // A disabled responder schedules nothing.
    send(&server, "EdgeCase", TITLE, "production").await;
    let issue = server.all_issues().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(actions(&server, &issue).await.is_empty());

    let resp = server
        .http
        .delete(format!("{}{path}", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(server.api(&path).await.0, 404);
    server.stop().await;
}

// `stackhound responder create --file` and `responder list`, the real binary on the
// server's database.
both_backends!(the_cli_creates_from_a_file_and_lists);
async fn the_cli_creates_from_a_file_and_lists(backend: Backend) {
    let server = spawn_manual(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("responder.json");
    std::fs::write(&file, seed_ladder().to_string()).unwrap();
    let url = server.database_url();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_stackhound"))
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    let out = run(&["responder", "create", "--file", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&file, r#"{"watch_pattern": "[", "actions": []}"#).unwrap();
    let out = run(&["responder", "create", "--file", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("position 0"));
    let out = run(&["responder", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("email+30s email+1800s"), "{listed}");
    let (_, _, list) = server.api(RESPONDERS).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    server.stop().await;
}
