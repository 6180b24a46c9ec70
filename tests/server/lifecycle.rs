//! The issue lifecycle end to end: state changes through the API in Sentry's shapes,
//! regressions and release rules in the ingest path, volume and time unmutes, the history,
//! and the alerts written to the outbox (exactly once).

use crate::backend::Backend;
use crate::helpers::{spawn, spawn_manual, TestServer};
use serde_json::{json, Value};

/// Sends one event of "issue" `kind` (its exception type) with an optional release.
async fn send(server: &TestServer, kind: &str, release: Option<&str>) {
    let mut event = json!({
        "exception": {"values": [{"type": kind, "value": "boom"}]},
        "platform": "python",
        "environment": "production",
    });
    if let Some(r) = release {
        event["release"] = json!(r);
    }
    post_event(server, &event).await;
}

/// Posts one event in an envelope; it must be accepted.
async fn post_event(server: &TestServer, event: &Value) {
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes();
    let (status, answer) = server.post_envelope(body, &[]).await;
    assert_eq!(status, 200, "{answer}");
}

async fn issue_of(server: &TestServer, kind: &str) -> Value {
    server
        .all_issues()
        .await
        .into_iter()
        .find(|i| i["title"].as_str().unwrap().starts_with(kind))
        .unwrap_or_else(|| panic!("no issue titled {kind}"))
}

async fn put(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let resp = server
        .http
        .put(format!("{}{path}", server.base))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn add_webhook(server: &TestServer) {
    // Nothing listens there; these tests look at the outbox, not at deliveries.
    server
        .add_channel(json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}))
        .await;
}

/// The alerts written for an issue, by kind.
async fn alerts(server: &TestServer, issue_id: &str) -> Vec<String> {
    server
        .store
        .issue_alerts(issue_id.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect()
}

both_backends!(resolve_then_event_regresses_and_alerts);
async fn resolve_then_event_regresses_and_alerts(backend: Backend) {
    let server = spawn(backend).await;
    add_webhook(&server).await;
    send(&server, "Flaky", None).await;
    let issue = issue_of(&server, "Flaky").await;
    let id = issue["id"].as_str().unwrap().to_string();
    assert_eq!(issue["substatus"], "new");
    assert_eq!(alerts(&server, &id).await, vec!["new_issue"]);

    let (status, body) = put(
        &server,
        &format!("/api/0/issues/{id}/"),
        json!({"status": "resolved"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "resolved");
    send(&server, "Flaky", None).await;
    let issue = issue_of(&server, "Flaky").await;
    assert_eq!(issue["status"], "unresolved");
    assert_eq!(issue["substatus"], "regressed");
    assert_eq!(alerts(&server, &id).await, vec!["new_issue", "regression"]);

    // The history, newest first, with who and why.
    let (_, _, history) = server.api(&format!("/api/0/issues/{id}/activities/")).await;
    let kinds: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["regressed", "resolved", "first_seen"]);
    assert_eq!(history[0]["actor"], "system");
    assert!(history[1]["actor"].as_str().unwrap().starts_with("token:"));
    assert!(history[0]["reason"].as_str().unwrap().contains("regressed"));
    let (_, _, detail) = server.api(&format!("/api/0/issues/{id}/")).await;
    assert_eq!(detail["activity"].as_array().unwrap().len(), 3);
    server.stop().await;
}

both_backends!(resolve_in_release_excuses_older_releases);
async fn resolve_in_release_excuses_older_releases(backend: Backend) {
    let server = spawn(backend).await;
    add_webhook(&server).await;
    send(&server, "Versioned", Some("1.0")).await;
    let id = issue_of(&server, "Versioned").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = put(
        &server,
        &format!("/api/0/issues/{id}/"),
        json!({"status": "resolved", "statusDetails": {"inRelease": "2.0"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["statusDetails"]["inRelease"], "2.0");
    send(&server, "Versioned", Some("1.0")).await;
    assert_eq!(issue_of(&server, "Versioned").await["status"], "resolved");
    assert_eq!(alerts(&server, &id).await, vec!["new_issue"]);
    send(&server, "Versioned", Some("2.1")).await;
    assert_eq!(issue_of(&server, "Versioned").await["status"], "unresolved");
    assert_eq!(alerts(&server, &id).await, vec!["new_issue", "regression"]);
    server.stop().await;
}

both_backends!(resolve_in_next_release_waits_for_a_new_release);
async fn resolve_in_next_release_waits_for_a_new_release(backend: Backend) {
    let server = spawn(backend).await;
    send(&server, "NextRel", Some("app@1.4.0")).await;
    let id = issue_of(&server, "NextRel").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = put(
        &server,
        &format!("/api/0/issues/{id}/"),
        json!({"status": "resolvedInNextRelease"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["statusDetails"]["inNextRelease"], true);
    send(&server, "NextRel", Some("app@1.4.0")).await;
    assert_eq!(issue_of(&server, "NextRel").await["status"], "resolved");
    send(&server, "NextRel", Some("app@1.5.0")).await;
    assert_eq!(issue_of(&server, "NextRel").await["status"], "unresolved");
    server.stop().await;
}

both_backends!(volume_mute_unmutes_on_the_tenth_event_with_one_alert);
async fn volume_mute_unmutes_on_the_tenth_event_with_one_alert(backend: Backend) {
    // Manual clock, background workers off: this test runs the alert worker itself.
    let server = spawn_manual(backend).await;
    let hook = crate::receivers::Receiver::start(0).await;
    server
        .add_channel(json!({"kind": "webhook", "url": hook.url("/hook")}))
        .await;
    send(&server, "Noisy", None).await;
    let id = issue_of(&server, "Noisy").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = put(
        &server,
        &format!("/api/0/issues/{id}/"),
        json!({"status": "ignored", "statusDetails": {"unmuteOn": [{"period": "minute", "nr_of_periods": 5, "volume": 10}]}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ignored");
    assert_eq!(body["substatus"], "archived_until_condition_met");
    // The event before the mute counts: 8 more make 9 in the window.
    for _ in 0..8 {
        send(&server, "Noisy", None).await;
    }
    assert_eq!(issue_of(&server, "Noisy").await["status"], "ignored");
    assert_eq!(alerts(&server, &id).await, vec!["new_issue"]);
    send(&server, "Noisy", None).await;
    let issue = issue_of(&server, "Noisy").await;
    assert_eq!(issue["status"], "unresolved");
    assert_eq!(issue["count"], "10");
    for _ in 0..5 {
        send(&server, "Noisy", None).await;
    }
    assert_eq!(alerts(&server, &id).await, vec!["new_issue", "unmute"]);
    // Delivered: the receiver sees the unmute exactly once.
    let worker = stackhound::alert::AlertWorker::new(
        server.store.clone(),
        server.clock.clone(),
        Default::default(),
        server.base.clone(),
        "stackhound".into(),
    )
    .unwrap();
    assert_eq!(worker.run_due().await, 2);
    let mut kinds = hook.kinds();
    // One round delivers both concurrently, so they may arrive in either order.
    kinds.sort();
    assert_eq!(kinds, vec!["new_issue", "unmute"]);
    let (_, _, history) = server.api(&format!("/api/0/issues/{id}/activities/")).await;
    assert_eq!(history[0]["type"], "unmuted");
    assert!(
        history[0]["reason"]
            .as_str()
            .unwrap()
            .contains("10 events per 5 minutes"),
        "{}",
        history[0]
    );
    server.stop().await;
}

both_backends!(a_mute_whose_condition_holds_is_refused_and_people_unmute_silently);
async fn a_mute_whose_condition_holds_is_refused_and_people_unmute_silently(backend: Backend) {
    let server = spawn(backend).await;
    add_webhook(&server).await;
    for _ in 0..3 {
        send(&server, "Busy", None).await;
    }
    let id = issue_of(&server, "Busy").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/0/issues/{id}/");
    let (status, body) = put(
        &server,
        &path,
        json!({"status": "ignored", "statusDetails": {"ignoreCount": 2, "ignoreWindow": 60}}),
    )
    .await;
    assert_eq!(status, 400);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("already holds") && detail.contains('3'),
        "{detail}"
    );
    // Muting a resolved issue is refused too.
    assert_eq!(
        put(&server, &path, json!({"status": "resolved"})).await.0,
        200
    );
    let (status, body) = put(&server, &path, json!({"status": "muted"})).await;
    assert_eq!(status, 400, "{body}");
    // A person's unmute sends no alert.
    assert_eq!(
        put(&server, &path, json!({"status": "unresolved"})).await.0,
        200
    );
    assert_eq!(
        put(
            &server,
            &path,
            json!({"status": "muted", "snoozeDuration": null})
        )
        .await
        .0,
        200
    );
    let (status, body) = put(
        &server,
        &path,
        json!({"status": "unresolved", "snoozeDuration": null}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "unresolved");
    assert_eq!(alerts(&server, &id).await, vec!["new_issue"]);
    server.stop().await;
}

both_backends!(sentry_cli_bulk_bodies_and_selectors);
async fn sentry_cli_bulk_bodies_and_selectors(backend: Backend) {
    let server = spawn(backend).await;
    for kind in ["BulkA", "BulkB", "BulkC"] {
        send(&server, kind, None).await;
    }
    let a = issue_of(&server, "BulkA").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = issue_of(&server, "BulkB").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let list = "/api/0/projects/stackhound/default/issues/";
    let (status, body) = put(
        &server,
        &format!("{list}?id={a}&id={b}"),
        json!({"status": "resolved", "snoozeDuration": null}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "resolved");
    let statuses = |issues: Vec<Value>| {
        let mut s: Vec<String> = issues
            .iter()
            .map(|i| {
                format!(
                    "{}={}",
                    &i["title"].as_str().unwrap()[..5],
                    i["status"].as_str().unwrap()
                )
            })
            .collect();
        s.sort();
        s
    };
    assert_eq!(
        statuses(server.all_issues().await),
        vec!["BulkA=resolved", "BulkB=resolved", "BulkC=unresolved"]
    );
    let (status, _) = put(
        &server,
        &format!("{list}?status=resolved"),
        json!({"status": "unresolved", "snoozeDuration": null}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        statuses(server.all_issues().await),
        vec!["BulkA=unresolved", "BulkB=unresolved", "BulkC=unresolved"]
    );
    let (status, _) = put(
        &server,
        &format!("{list}?"),
        json!({"status": "muted", "snoozeDuration": null}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        statuses(server.all_issues().await),
        vec!["BulkA=ignored", "BulkB=ignored", "BulkC=ignored"]
    );
    // is:muted lists them; a selector matching nothing is 204.
    let (_, _, muted) = server.api(&format!("{list}?query=is:muted")).await;
    assert_eq!(muted.as_array().unwrap().len(), 3);
    let (status, _) = put(
        &server,
        &format!("{list}?status=resolved"),
        json!({"status": "unresolved"}),
    )
    .await;
    assert_eq!(status, 204);
    server.stop().await;
}

both_backends!(a_time_limited_mute_lifts_without_events_and_alerts);
async fn a_time_limited_mute_lifts_without_events_and_alerts(backend: Backend) {
    let server = spawn_manual(backend).await;
    add_webhook(&server).await;
    send(&server, "Snoozed", None).await;
    let id = issue_of(&server, "Snoozed").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = put(
        &server,
        &format!("/api/0/issues/{id}/"),
        json!({"status": "ignored", "statusDetails": {"ignoreDuration": 30}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["statusDetails"]["ignoreUntil"].is_string());
    server.clock.advance(chrono::Duration::minutes(29));
    assert_eq!(
        server
            .store
            .unmute_due(server.clock.now().timestamp_micros())
            .await
            .unwrap(),
        0
    );
    assert_eq!(issue_of(&server, "Snoozed").await["status"], "ignored");
    server.clock.advance(chrono::Duration::minutes(2));
    assert_eq!(
        server
            .store
            .unmute_due(server.clock.now().timestamp_micros())
            .await
            .unwrap(),
        1
    );
    assert_eq!(issue_of(&server, "Snoozed").await["status"], "unresolved");
    assert_eq!(alerts(&server, &id).await, vec!["new_issue", "unmute"]);
    server.stop().await;
}

both_backends!(concurrent_clients_crossing_a_threshold_write_one_unmute_alert);
async fn concurrent_clients_crossing_a_threshold_write_one_unmute_alert(backend: Backend) {
    let server = spawn(backend).await;
    add_webhook(&server).await;
    send(&server, "Stampede", None).await;
    let id = issue_of(&server, "Stampede").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = put(
        &server,
        &format!("/api/0/issues/{id}/"),
        json!({"status": "ignored", "statusDetails": {"unmuteOn": [
            {"period": "hour", "nr_of_periods": 1, "volume": 50},
            {"period": "minute", "nr_of_periods": 10, "volume": 40}]}}),
    )
    .await;
    assert_eq!(status, 200);
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = server.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                send(&s, "Stampede", None).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let issue = issue_of(&server, "Stampede").await;
    assert_eq!(issue["status"], "unresolved");
    assert_eq!(issue["count"], "161");
    assert_eq!(alerts(&server, &id).await, vec!["new_issue", "unmute"]);
    let Ok(server) = std::sync::Arc::try_unwrap(server) else {
        panic!("server still shared")
    };
    server.stop().await;
}

both_backends!(alert_switches_and_refused_bodies);
async fn alert_switches_and_refused_bodies(backend: Backend) {
    let server = spawn(backend).await;
    add_webhook(&server).await;
    let (status, body) = put(
        &server,
        "/api/0/projects/stackhound/default/",
        json!({"alertOnNewIssue": false}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alertOnNewIssue"], false);
    assert_eq!(body["alertOnRegression"], true);
    send(&server, "Quiet", None).await;
    let id = issue_of(&server, "Quiet").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(alerts(&server, &id).await.is_empty());
    let path = format!("/api/0/issues/{id}/");
    for bad in [
        json!({"status": "sleeping"}),
        json!({"status": "ignored", "statusDetails": {"ignoreCount": "many"}}),
        json!([1]),
    ] {
        let (status, body) = put(&server, &path, bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["detail"].is_string());
    }
    let resp = server
        .http
        .put(format!("{}{path}", server.base))
        .json(&json!({"status": "resolved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    server.stop().await;
}

/// Sends one event of `kind` from user `user`.
async fn send_as(server: &TestServer, kind: &str, user: &str) {
    let event = json!({
        "exception": {"values": [{"type": kind, "value": "boom"}]},
        "platform": "python",
        "user": {"id": user},
    });
    post_event(server, &event).await;
}

async fn status_of(server: &TestServer, kind: &str) -> String {
    issue_of(server, kind).await["status"]
        .as_str()
        .unwrap()
        .to_string()
}

both_backends!(mute_limits_survive_a_restart_and_unmute_once_at_the_right_event);
async fn mute_limits_survive_a_restart_and_unmute_once_at_the_right_event(backend: Backend) {
    let server = spawn_manual(backend).await;
    add_webhook(&server).await;
    // Volume: 10 events in 60 minutes. Users: 3 distinct users since the mute.
    send(&server, "Windowed", None).await;
    send_as(&server, "Users", "u1").await;
    let windowed = issue_of(&server, "Windowed").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let users = issue_of(&server, "Users").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mute = |details: Value| json!({"status": "ignored", "statusDetails": details});
    let (status, body) = put(
        &server,
        &format!("/api/0/issues/{windowed}/"),
        mute(json!({"ignoreCount": 10, "ignoreWindow": 60})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put(
        &server,
        &format!("/api/0/issues/{users}/"),
        mute(json!({"ignoreUserCount": 3})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Part of the volume before the restart: 7 of 10 events, 2 of 3 users.
    for _ in 0..6 {
        send(&server, "Windowed", None).await;
    }
    send_as(&server, "Users", "u1").await;
    send_as(&server, "Users", "u2").await;

    let server = server.restart().await;
    // The rest after it: 2 more events and a user seen before stay muted ...
    for _ in 0..2 {
        send(&server, "Windowed", None).await;
    }
    send_as(&server, "Users", "u2").await;
    send_as(&server, "Users", "u1").await;
    assert_eq!(status_of(&server, "Windowed").await, "ignored");
    assert_eq!(status_of(&server, "Users").await, "ignored");
    // ... and the 10th event and the 3rd user unmute, once each.
    send(&server, "Windowed", None).await;
    send_as(&server, "Users", "u3").await;
    assert_eq!(status_of(&server, "Windowed").await, "unresolved");
    assert_eq!(status_of(&server, "Users").await, "unresolved");
    assert_eq!(issue_of(&server, "Windowed").await["count"], "10");
    for _ in 0..3 {
        send(&server, "Windowed", None).await;
        send_as(&server, "Users", "u4").await;
    }
    for id in [&windowed, &users] {
        assert_eq!(alerts(&server, id).await, vec!["new_issue", "unmute"]);
        let (_, _, history) = server.api(&format!("/api/0/issues/{id}/activities/")).await;
        let kinds: Vec<&str> = history
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["unmuted", "muted", "first_seen"], "{history}");
    }
    let episodes = server.store.episodes(users.parse().unwrap()).await.unwrap();
    let causes: Vec<&str> = episodes.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(causes, ["unmuted", "created"]);
    server.stop().await;
}
