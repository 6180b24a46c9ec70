//! Merging issues end to end (`PUT .../issues/?id=A&id=B` with `{"merge": 1}`), with events
//! sent by the official Rust `sentry` crate: the target choice, counts and times, history,
//! old ids answering the target, and later events of a merged hash joining the target, in the
//! process whose writer cached the old link and after a restart.

use crate::backend::Backend;
use crate::helpers::{spawn, spawn_tuned, TestServer};
use sentry::protocol::{Event, Level};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Sends events through the `sentry` crate, in order, and waits until they are delivered:
/// (fingerprint, message, seconds before now). The message is the issue's title.
async fn send(server: &TestServer, events: &[(&'static str, &'static str, u64)]) {
    let mut options = sentry::ClientOptions::new();
    options.dsn = Some(server.dsn.parse().unwrap());
    let client = Arc::new(sentry::Client::from(sentry::apply_defaults(options)));
    let hub = sentry::Hub::new(Some(client.clone()), Arc::new(sentry::Scope::default()));
    let events = events.to_vec();
    tokio::task::spawn_blocking(move || {
        for (fingerprint, message, ago) in events {
            hub.capture_event(Event {
                message: Some(message.into()),
                level: Level::Error,
                fingerprint: Cow::Owned(vec![Cow::Borrowed(fingerprint)]),
                timestamp: SystemTime::now() - Duration::from_secs(ago),
                ..Default::default()
            });
            // One at a time, so issues are created (and numbered) in the order sent.
            assert!(client.flush(Some(Duration::from_secs(10))));
        }
    })
    .await
    .unwrap();
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

/// A server with one ingest writer (as on SQLite, also on PostgreSQL): every batch goes
/// through the writer whose cache learnt the links before a merge.
async fn spawn_one_writer(backend: Backend) -> TestServer {
    spawn_tuned(backend, |s| s.writers = 1).await
}

/// `{"merge": 1}` for the issues `ids`.
async fn merge(server: &TestServer, ids: &[&str]) -> (u16, Value) {
    let query: Vec<String> = ids.iter().map(|id| format!("id={id}")).collect();
    put(
        server,
        &format!(
            "/api/0/projects/stackhound/default/issues/?{}",
            query.join("&")
        ),
        json!({"merge": 1}),
    )
    .await
}

/// The listed issue titled `title` (exactly one).
async fn issue(server: &TestServer, title: &str) -> Value {
    let found: Vec<Value> = server
        .all_issues()
        .await
        .into_iter()
        .filter(|i| i["title"] == title)
        .collect();
    assert_eq!(found.len(), 1, "issues titled {title}: {found:#?}");
    found.into_iter().next().unwrap()
}

fn id(issue: &Value) -> String {
    issue["id"].as_str().unwrap().to_string()
}

/// Seconds since the epoch of an API timestamp.
fn secs(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Asserts an API timestamp is `ago` seconds before now (give or take the test's duration).
fn assert_ago(v: &Value, ago: i64) {
    let delta = now_secs() - ago - secs(v);
    assert!((0..60).contains(&delta), "{v} is not {ago} s ago");
}

async fn titles(server: &TestServer) -> Vec<String> {
    let mut t: Vec<String> = server
        .all_issues()
        .await
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

both_backends!(multi_thread: merge_moves_everything_and_sticks);
async fn merge_moves_everything_and_sticks(backend: Backend) {
    let server = spawn_one_writer(backend).await;
    send(
        &server,
        &[
            ("alpha", "alpha failed", 300),
            ("alpha", "alpha failed", 200),
            ("alpha", "alpha failed", 250),
            ("beta", "beta failed", 900),
            ("beta", "beta failed", 100),
            ("gamma", "gamma failed", 50),
        ],
    )
    .await;
    let (alpha, beta, gamma) = (
        issue(&server, "alpha failed").await,
        issue(&server, "beta failed").await,
        issue(&server, "gamma failed").await,
    );
    assert_eq!(
        (&alpha["count"], &beta["count"], &gamma["count"]),
        (&json!("3"), &json!("2"), &json!("1"))
    );
    let (a, b) = (id(&alpha), id(&beta));

    // The busiest issue is the target, whatever order the ids come in.
    let (status, body) = merge(&server, &[&b, &a]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"merge": {"parent": a, "children": [b]}}));

    // Counts add up; first seen is the earliest, last seen the latest, of either issue.
    let merged = issue(&server, "alpha failed").await;
    assert_eq!(merged["count"], "5");
    assert_ago(&merged["firstSeen"], 900);
    assert_ago(&merged["lastSeen"], 100);
    assert_eq!(merged["status"], "unresolved");
    // The child is listed (and found by search) no more.
    assert_eq!(titles(&server).await, vec!["alpha failed", "gamma failed"]);
    let (_, _, found) = server
        .api("/api/0/projects/stackhound/default/issues/?query=beta")
        .await;
    assert_eq!(found, json!([]));

    // The child's old id, numeric or short, answers the target: detail, events, history.
    let (status, _, detail) = server.api(&format!("/api/0/issues/{b}/")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["id"], a.as_str());
    assert_eq!(detail["count"], "5");
    let (status, _, detail) = server
        .api(&format!("/api/0/organizations/stackhound/issues/{b}/"))
        .await;
    assert_eq!((status, &detail["id"]), (200, &json!(a)));
    let short = beta["shortId"].as_str().unwrap();
    let (status, _, detail) = server.api(&format!("/api/0/issues/{short}/")).await;
    assert_eq!((status, &detail["id"]), (200, &json!(a)));
    let (status, _, events) = server.api(&format!("/api/0/issues/{b}/events/")).await;
    assert_eq!(status, 200);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert!(
        events.iter().all(|e| e["groupID"] == a.as_str()),
        "{events:#?}"
    );
    let beta_events = events
        .iter()
        .filter(|e| e["title"] == "beta failed")
        .count();
    assert_eq!(beta_events, 2);

    // A `merge` history row on both, naming the parent and the children.
    let (_, _, history) = server.api(&format!("/api/0/issues/{b}/activities/")).await;
    assert_eq!(history[0]["type"], "merge", "{history}");
    assert_eq!(history[0]["data"]["parent"], a.as_str());
    assert_eq!(history[0]["data"]["children"], json!([b]));
    assert!(history[0]["actor"].as_str().unwrap().starts_with("token:"));
    for issue_id in [&a, &b] {
        let rows = server
            .store
            .activities(issue_id.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(rows[0].kind, "merge", "{issue_id}: {rows:?}");
        let data: Value = serde_json::from_str(&rows[0].data).unwrap();
        assert_eq!(data["parent"], a.as_str());
        assert_eq!(data["children"], json!([b]));
    }
    let gamma_rows = server
        .store
        .activities(id(&gamma).parse().unwrap())
        .await
        .unwrap();
    assert!(gamma_rows.iter().all(|r| r.kind != "merge"));

    // The merge sticks: this process's writer cached beta's link to the child, yet the next
    // beta event joins the target.
    send(&server, &[("beta", "beta failed", 10)]).await;
    let merged = issue(&server, "alpha failed").await;
    assert_eq!(merged["count"], "6");
    assert_ago(&merged["lastSeen"], 10);
    assert_eq!(titles(&server).await, vec!["alpha failed", "gamma failed"]);

    // A status change by the child's old id reaches the target, singly or in bulk.
    let (status, body) = put(
        &server,
        &format!("/api/0/issues/{b}/"),
        json!({"status": "resolved"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["id"], &body["status"]),
        (&json!(a), &json!("resolved"))
    );
    let (status, body) = put(
        &server,
        &format!("/api/0/projects/stackhound/default/issues/?id={b}"),
        json!({"status": "unresolved"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(issue(&server, "alpha failed").await["status"], "unresolved");

    // And after a restart, which knows only what the database holds.
    let server = server.restart().await;
    send(
        &server,
        &[("beta", "beta failed", 5), ("alpha", "alpha failed", 5)],
    )
    .await;
    assert_eq!(issue(&server, "alpha failed").await["count"], "8");
    assert_eq!(issue(&server, "gamma failed").await["count"], "1");
    assert_eq!(titles(&server).await, vec!["alpha failed", "gamma failed"]);
    let (_, _, events) = server.api(&format!("/api/0/issues/{a}/events/")).await;
    assert_eq!(events.as_array().unwrap().len(), 8);
    server.stop().await;
}

both_backends!(multi_thread: a_tie_goes_to_the_oldest_issue);
async fn a_tie_goes_to_the_oldest_issue(backend: Backend) {
    let server = spawn(backend).await;
    // The first issue created (the lower id) is the younger one.
    send(
        &server,
        &[
            ("young", "young failure", 100),
            ("young", "young failure", 90),
            ("old", "old failure", 600),
            ("old", "old failure", 80),
        ],
    )
    .await;
    let (young, old) = (
        id(&issue(&server, "young failure").await),
        id(&issue(&server, "old failure").await),
    );
    assert!(young.parse::<i64>().unwrap() < old.parse::<i64>().unwrap());
    let (status, body) = merge(&server, &[&young, &old]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"merge": {"parent": old, "children": [young]}}));
    let merged = issue(&server, "old failure").await;
    assert_eq!(merged["count"], "4");
    assert_ago(&merged["firstSeen"], 600);
    assert_ago(&merged["lastSeen"], 80);
    assert_eq!(titles(&server).await, vec!["old failure"]);
    server.stop().await;
}

both_backends!(multi_thread: merges_chain);
async fn merges_chain(backend: Backend) {
    let server = spawn_one_writer(backend).await;
    send(
        &server,
        &[
            ("p", "p failed", 60),
            ("p", "p failed", 60),
            ("p", "p failed", 60),
            ("q", "q failed", 60),
            ("r", "r failed", 60),
            ("r", "r failed", 60),
            ("r", "r failed", 60),
            ("r", "r failed", 60),
            ("r", "r failed", 60),
        ],
    )
    .await;
    let (p, q, r) = (
        id(&issue(&server, "p failed").await),
        id(&issue(&server, "q failed").await),
        id(&issue(&server, "r failed").await),
    );
    let (status, body) = merge(&server, &[&p, &q]).await;
    assert_eq!(
        (status, &body["merge"]["parent"]),
        (200, &json!(p)),
        "{body}"
    );
    // The target of the first merge is merged in turn into a busier issue.
    let (status, body) = merge(&server, &[&r, &p]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"merge": {"parent": r, "children": [p]}}));
    assert_eq!(issue(&server, "r failed").await["count"], "9");
    assert_eq!(titles(&server).await, vec!["r failed"]);
    // q -> p -> r.
    let (status, _, detail) = server.api(&format!("/api/0/issues/{q}/")).await;
    assert_eq!((status, &detail["id"]), (200, &json!(r)));
    let (_, _, events) = server.api(&format!("/api/0/issues/{q}/events/")).await;
    assert_eq!(events.as_array().unwrap().len(), 9);
    // Both earlier hashes now lead to r.
    send(&server, &[("q", "q failed", 1), ("p", "p failed", 1)]).await;
    assert_eq!(issue(&server, "r failed").await["count"], "11");
    assert_eq!(titles(&server).await, vec!["r failed"]);
    server.stop().await;
}

both_backends!(multi_thread: bad_merges_are_refused_and_change_nothing);
async fn bad_merges_are_refused_and_change_nothing(backend: Backend) {
    let server = spawn(backend).await;
    send(
        &server,
        &[
            ("one", "one failed", 30),
            ("two", "two failed", 30),
            ("three", "three failed", 30),
        ],
    )
    .await;
    let (one, two, three) = (
        id(&issue(&server, "one failed").await),
        id(&issue(&server, "two failed").await),
        id(&issue(&server, "three failed").await),
    );
    let path = "/api/0/projects/stackhound/default/issues/";
    for (query, body) in [
        // One id, the same id twice, no id at all.
        (format!("?id={one}"), json!({"merge": 1})),
        (format!("?id={one}&id={one}"), json!({"merge": true})),
        (String::new(), json!({"merge": 1})),
        // An id that is no issue.
        (format!("?id={one}&id=987654"), json!({"merge": 1})),
        // A merge that also asks for a status change.
        (
            format!("?id={one}&id={two}"),
            json!({"merge": 1, "status": "resolved"}),
        ),
        (format!("?id={one}&id={two}"), json!({"merge": "yes"})),
    ] {
        let (status, answer) = put(&server, &format!("{path}{query}"), body.clone()).await;
        assert_eq!(status, 400, "{query} {body}: {answer}");
        assert!(answer["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(
        titles(&server).await,
        vec!["one failed", "three failed", "two failed"]
    );
    assert!(server.all_issues().await.iter().all(|i| i["count"] == "1"));

    // An issue merged already cannot be merged again by its old id.
    let (status, body) = merge(&server, &[&one, &two]).await;
    assert_eq!(status, 200, "{body}");
    let child = body["merge"]["children"][0].as_str().unwrap().to_string();
    let (status, answer) = merge(&server, &[&child, &three]).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("merged"));
    assert_eq!(titles(&server).await.len(), 2);
    // `merge: 0` is no merge: a plain bulk update.
    let (status, answer) = put(
        &server,
        &format!("{path}?id={three}"),
        json!({"merge": 0, "status": "resolved"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(issue(&server, "three failed").await["status"], "resolved");
    server.stop().await;
}

/// Posts one event with `fingerprint` straight to the envelope endpoint; it must be accepted.
async fn post(server: &TestServer, fingerprint: &str) {
    let event = json!({"message": format!("{fingerprint} failed"), "fingerprint": [fingerprint]});
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes();
    let (status, answer) = server.post_envelope(body, &[]).await;
    assert_eq!(status, 200, "{answer}");
}

both_backends!(multi_thread: merging_under_traffic_loses_and_strands_nothing);
async fn merging_under_traffic_loses_and_strands_nothing(backend: Backend) {
    let server = Arc::new(spawn(backend).await);
    for fingerprint in ["busy", "busy", "quiet"] {
        post(&server, fingerprint).await;
    }
    let (busy, quiet) = (
        id(&issue(&server, "busy failed").await),
        id(&issue(&server, "quiet failed").await),
    );
    // Events of both issues keep arriving, from several clients, while the merge runs.
    let senders: Vec<_> = (0..4)
        .map(|k| {
            let server = server.clone();
            tokio::spawn(async move {
                for n in 0..30 {
                    post(&server, if (n + k) % 2 == 0 { "quiet" } else { "busy" }).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, body) = merge(&server, &[&busy, &quiet]).await;
    assert_eq!(status, 200, "{body}");
    for s in senders {
        s.await.unwrap();
    }
    // Every accepted event is counted once, on the one issue left, and none stays behind on
    // the tombstone.
    let parent = body["merge"]["parent"].as_str().unwrap().to_string();
    let child = body["merge"]["children"][0].as_str().unwrap().to_string();
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0]["id"], parent.as_str());
    assert_eq!(issues[0]["count"], "123");
    let stranded = server
        .store
        .issue_events(child.parse().unwrap(), None, 1000)
        .await
        .unwrap();
    assert!(
        stranded.is_empty(),
        "{} events left on the child",
        stranded.len()
    );
    let kept = server
        .store
        .issue_events(parent.parse().unwrap(), None, 1000)
        .await
        .unwrap();
    assert_eq!(kept.len(), 123);
    // The aggregates followed: every event's `level` tag is counted on the parent.
    let levels = |id: String| {
        let server = server.clone();
        async move {
            let (status, _, tags) = server.api(&format!("/api/0/issues/{id}/tags/level/")).await;
            (status, tags["totalValues"].clone())
        }
    };
    assert_eq!(levels(parent.clone()).await, (200, json!(123)));
    // The child's id answers with its parent (`find_issue` follows merges).
    assert_eq!(levels(child.clone()).await, (200, json!(123)));
    Arc::try_unwrap(server).ok().unwrap().stop().await;
}
