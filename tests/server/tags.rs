//! Per-issue aggregates end to end: tag summaries and values (`/api/0/issues/{id}/tags/...`),
//! environment narrowing, first and last release, distinct users exact then estimated, a
//! merge folding them together, and exact counts under concurrent posts.

use crate::backend::Backend;
use crate::helpers::{next_cursor, spawn, TestServer};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn envelope(event: &Value) -> Vec<u8> {
    let payload = event.to_string();
    format!(
        "{{}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    )
    .into_bytes()
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor()
}

async fn post(server: &TestServer, event: Value) {
    let (status, body) = server.post_envelope(envelope(&event), &[]).await;
    assert_eq!(status, 200, "{body}");
}

/// One event of the issue `fingerprint` at `ago` seconds before `now`, with `extra` fields.
fn event(fingerprint: &str, now: f64, ago: f64, extra: Value) -> Value {
    let mut e = json!({
        "message": format!("{fingerprint} failed"),
        "level": "error",
        "platform": "python",
        "fingerprint": [fingerprint],
        "timestamp": now - ago,
    });
    if let (Value::Object(m), Value::Object(x)) = (&mut e, extra) {
        m.extend(x);
    }
    e
}

/// The only issue titled `title`.
async fn issue(server: &TestServer, title: &str) -> Value {
    let found: Vec<Value> = (server.all_issues().await.into_iter())
        .filter(|i| i["title"] == title)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let id = found[0]["id"].as_str().unwrap().to_owned();
    let (status, _, body) = server.api(&format!("/api/0/issues/{id}/")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A key as a test compares it: (key, totalValues, uniqueValues, [(value, count)]).
type KeyRow = (String, i64, i64, Vec<(String, i64)>);

/// The keys of a `/tags/` answer.
fn summary(tags: &Value) -> Vec<KeyRow> {
    (tags.as_array().unwrap().iter())
        .map(|t| {
            let top = (t["topValues"].as_array().unwrap().iter())
                .map(|v| {
                    assert_eq!(v["key"], t["key"]);
                    assert_eq!(v["name"], v["value"]);
                    (
                        v["value"].as_str().unwrap().to_owned(),
                        v["count"].as_i64().unwrap(),
                    )
                })
                .collect();
            (
                t["key"].as_str().unwrap().to_owned(),
                t["totalValues"].as_i64().unwrap(),
                t["uniqueValues"].as_i64().unwrap(),
                top,
            )
        })
        .collect()
}

fn row(
    key: &str,
    total: i64,
    unique: i64,
    top: &[(&str, i64)],
) -> (String, i64, i64, Vec<(String, i64)>) {
    let top = top.iter().map(|(v, c)| (v.to_string(), *c)).collect();
    (key.to_owned(), total, unique, top)
}

fn iso(s: f64) -> String {
    stackhound::issue::view::iso((s * 1e6) as i64)
}

/// A number read straight from the database (what no endpoint of this module shows).
async fn sql_i64(server: &TestServer, backend: Backend, sql: &str) -> i64 {
    let url = server.database_url();
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

both_backends!(tag_summaries_values_and_releases);
async fn tag_summaries_values_and_releases(backend: Backend) {
    let server = spawn(backend).await;
    let now = now_s();
    let sent = [
        // (ago, browser, environment, release, user)
        (
            300.0,
            "firefox",
            Some("prod"),
            "app@1",
            json!({"id": "1", "email": "a@x.io"}),
        ),
        (
            200.0,
            "firefox",
            Some("prod"),
            "app@1",
            json!({"email": "a@x.io", "username": "al"}),
        ),
        (
            100.0,
            "chrome",
            Some("staging"),
            "app@2",
            json!({"username": "bob", "ip_address": "10.0.0.9"}),
        ),
        (
            50.0,
            "safari",
            None,
            "app@2",
            json!({"ip_address": "10.0.0.1"}),
        ),
        (10.0, "firefox", Some("prod"), "app@2", json!({"id": 1})),
    ];
    for (ago, browser, env, release, user) in &sent {
        let mut extra = json!({"tags": {"browser": browser}, "release": release, "user": user});
        if let Some(env) = env {
            extra["environment"] = json!(env);
        }
        post(&server, event("tagged", now, *ago, extra)).await;
    }
    let detail = issue(&server, "tagged failed").await;
    let id = detail["id"].as_str().unwrap().to_owned();
    assert_eq!(detail["count"], "5");
    // id 1 (twice, once as a number), email a@x.io, username bob, ip 10.0.0.1.
    assert_eq!(detail["userCount"], 4);
    assert_eq!(detail["userCountEstimated"], false);
    assert_eq!(
        detail["tags"],
        json!([
            {"key": "browser", "name": "Browser", "totalValues": 5},
            {"key": "environment", "name": "Environment", "totalValues": 4},
            {"key": "level", "name": "Level", "totalValues": 5},
            {"key": "release", "name": "Release", "totalValues": 5},
        ])
    );
    let first = &detail["firstRelease"];
    assert_eq!(first["version"], "app@1");
    assert_eq!(first["shortVersion"], "1");
    assert_eq!(first["firstEvent"], iso(now - 300.0));
    assert_eq!(first["lastEvent"], iso(now - 200.0));
    let last = &detail["lastRelease"];
    assert_eq!(last["version"], "app@2");
    assert_eq!(last["firstEvent"], iso(now - 100.0));
    assert_eq!(last["lastEvent"], iso(now - 10.0));
    assert!(last["dateCreated"].is_string(), "{last}");

    let (status, _, tags) = server.api(&format!("/api/0/issues/{id}/tags/")).await;
    assert_eq!(status, 200, "{tags}");
    assert_eq!(
        summary(&tags),
        vec![
            row(
                "browser",
                5,
                3,
                &[("firefox", 3), ("chrome", 1), ("safari", 1)]
            ),
            row("environment", 4, 2, &[("prod", 3), ("staging", 1)]),
            row("level", 5, 1, &[("error", 5)]),
            row("release", 5, 2, &[("app@2", 3), ("app@1", 2)]),
        ]
    );
    let firefox = &tags[0]["topValues"][0];
    assert_eq!(firefox["firstSeen"], iso(now - 300.0));
    assert_eq!(firefox["lastSeen"], iso(now - 10.0));

    // Environments narrow every count; a short id finds the issue too.
    let short = detail["shortId"].as_str().unwrap();
    let (status, _, prod) = server
        .api(&format!("/api/0/issues/{short}/tags/?environment=prod"))
        .await;
    assert_eq!(status, 200, "{prod}");
    assert_eq!(
        summary(&prod),
        vec![
            row("browser", 3, 1, &[("firefox", 3)]),
            row("environment", 3, 1, &[("prod", 3)]),
            row("level", 3, 1, &[("error", 3)]),
            row("release", 3, 2, &[("app@1", 2), ("app@2", 1)]),
        ]
    );
    let (_, _, two) = server
        .api(&format!(
            "/api/0/issues/{id}/tags/browser/?environment=prod&environment=staging"
        ))
        .await;
    assert_eq!(
        summary(&json!([two])),
        vec![row("browser", 4, 2, &[("firefox", 3), ("chrome", 1)])]
    );
    let (status, _, body) = server.api(&format!("/api/0/issues/{id}/tags/nope/")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].is_string());

    // Every value, in pages that follow the Link header.
    let mut values = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (status, headers, page) = server
            .api(&format!(
                "/api/0/issues/{id}/tags/browser/values/?limit=2&cursor={cursor}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for v in page.as_array().unwrap() {
            values.push((
                v["value"].as_str().unwrap().to_owned(),
                v["count"].as_i64().unwrap(),
            ));
        }
        match next_cursor(&headers) {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(
        values,
        vec![
            ("firefox".into(), 3),
            ("chrome".into(), 1),
            ("safari".into(), 1)
        ]
    );
    let (status, _, _) = server
        .api(&format!("/api/0/issues/{id}/tags/browser/values/?cursor=x"))
        .await;
    assert_eq!(status, 400);

    // Hourly counts: every event once.
    let hours = sql_i64(
        &server,
        backend,
        &format!("SELECT CAST(sum(count) AS BIGINT) FROM issue_stats WHERE issue_id = {id}"),
    )
    .await;
    assert_eq!(hours, 5);

    // A token without event:read is refused.
    let resp = server
        .http
        .get(format!("{}/api/0/issues/{id}/tags/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    server.stop().await;
}

/// Sends events of `fingerprint`, one per user `users`, from several connections at once.
async fn send_users(server: &TestServer, fingerprint: &str, users: std::ops::Range<u32>) {
    let now = now_s();
    let all: Vec<u32> = users.collect();
    let mut tasks = Vec::new();
    for part in all.chunks(all.len().div_ceil(8).max(1)) {
        let part = part.to_vec();
        let fingerprint = fingerprint.to_owned();
        let http = server.http.clone();
        let url = server.envelope_url();
        let auth = server.auth_header();
        tasks.push(tokio::spawn(async move {
            for u in part {
                let e = event(
                    &fingerprint,
                    now,
                    1.0,
                    json!({"user": {"id": format!("u{u}")}}),
                );
                let resp = (http.post(&url))
                    .header("x-sentry-auth", &auth)
                    .body(envelope(&e))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

both_backends!(user_count_is_exact_then_estimated);
async fn user_count_is_exact_then_estimated(backend: Backend) {
    let server = spawn(backend).await;
    send_users(&server, "few", 0..256).await;
    send_users(&server, "few", 0..256).await;
    let few = issue(&server, "few failed").await;
    assert_eq!(few["count"], "512");
    assert_eq!(few["userCount"], 256);
    assert_eq!(few["userCountEstimated"], false);

    send_users(&server, "many", 0..600).await;
    let many = issue(&server, "many failed").await;
    assert_eq!(many["count"], "600");
    let n = many["userCount"].as_i64().unwrap();
    assert!((570..=630).contains(&n), "{n}");
    assert_eq!(many["userCountEstimated"], true);
    // The list shows the same count.
    let listed = (server.all_issues().await.into_iter())
        .find(|i| i["id"] == many["id"])
        .unwrap();
    assert_eq!(listed["userCount"], n);
    server.stop().await;
}

both_backends!(merge_folds_tags_hours_and_users);
async fn merge_folds_tags_hours_and_users(backend: Backend) {
    let server = spawn(backend).await;
    let now = now_s();
    let ev = |fp: &str, ago: f64, browser: &str, user: &str| {
        event(
            fp,
            now,
            ago,
            json!({"tags": {"browser": browser}, "environment": "prod", "user": {"id": user}}),
        )
    };
    for e in [
        ev("a", 7200.0, "firefox", "1"),
        ev("a", 100.0, "firefox", "2"),
        ev("a", 90.0, "chrome", "3"),
        ev("b", 5000.0, "firefox", "2"),
        ev("b", 50.0, "opera", "4"),
    ] {
        post(&server, e).await;
    }
    let a = issue(&server, "a failed").await;
    let b = issue(&server, "b failed").await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    assert_eq!(
        (a["userCount"].as_i64(), b["userCount"].as_i64()),
        (Some(3), Some(2))
    );
    let hours_of = |id: &str| {
        format!("SELECT CAST(count(*) AS BIGINT) FROM issue_stats WHERE issue_id = {id}")
    };
    let hours_before = sql_i64(&server, backend, &hours_of(a_id)).await
        + sql_i64(&server, backend, &hours_of(b_id)).await;

    let (status, body) = server
        .put_api(
            &format!("/api/0/projects/stackhound/default/issues/?id={a_id}&id={b_id}"),
            &json!({"merge": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // `a` has more events: it is the target.
    let merged = issue(&server, "a failed").await;
    assert_eq!(merged["id"], a_id);
    assert_eq!(merged["count"], "5");
    assert_eq!(merged["userCount"], 4);
    let (_, _, tags) = server.api(&format!("/api/0/issues/{a_id}/tags/")).await;
    assert_eq!(
        summary(&tags),
        vec![
            row(
                "browser",
                5,
                3,
                &[("firefox", 3), ("chrome", 1), ("opera", 1)]
            ),
            row("environment", 5, 1, &[("prod", 5)]),
            row("level", 5, 1, &[("error", 5)]),
        ]
    );
    let firefox = &tags[0]["topValues"][0];
    assert_eq!(firefox["firstSeen"], iso(now - 7200.0));
    assert_eq!(firefox["lastSeen"], iso(now - 100.0));
    // The child's rows moved: none left, and the hourly counts still add up to every event.
    for table in ["issue_tags", "issue_stats"] {
        let left = sql_i64(
            &server,
            backend,
            &format!("SELECT CAST(count(*) AS BIGINT) FROM {table} WHERE issue_id = {b_id}"),
        )
        .await;
        assert_eq!(left, 0, "{table}");
    }
    let events = sql_i64(
        &server,
        backend,
        &format!("SELECT CAST(sum(count) AS BIGINT) FROM issue_stats WHERE issue_id = {a_id}"),
    )
    .await;
    assert_eq!(events, 5);
    let hours_after = sql_i64(&server, backend, &hours_of(a_id)).await;
    assert!(
        hours_after <= hours_before && hours_after >= 2,
        "{hours_after}"
    );
    // Later events of the child's fingerprint join the target and its aggregates.
    post(&server, ev("b", 1.0, "opera", "5")).await;
    let merged = issue(&server, "a failed").await;
    assert_eq!(merged["userCount"], 5);
    let (_, _, opera) = server
        .api(&format!("/api/0/issues/{a_id}/tags/browser/values/"))
        .await;
    assert_eq!(opera[1]["value"], "opera");
    assert_eq!(opera[1]["count"], 2);
    server.stop().await;
}

both_backends!(multi_thread: concurrent_posts_count_every_tag_once);
async fn concurrent_posts_count_every_tag_once(backend: Backend) {
    const CLIENTS: u32 = 12;
    const EACH: u32 = 40;
    let server = spawn(backend).await;
    let now = now_s();
    let nth = move |n: u32| {
        event(
            &format!("c{}", n % 4),
            now,
            f64::from(n % 7) * 1000.0,
            json!({
                "tags": {"slot": format!("s{}", n % 3)},
                "environment": if n.is_multiple_of(2) { "prod" } else { "dev" },
                "user": {"id": format!("u{}", n % 10)},
            }),
        )
    };
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let http = server.http.clone();
        let url = server.envelope_url();
        let auth = server.auth_header();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let e = nth(c * EACH + i);
                let resp = (http.post(&url))
                    .header("x-sentry-auth", &auth)
                    .body(envelope(&e))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // With several writers (PostgreSQL) the figures of a burst's last batches may follow its
    // last answer by a few milliseconds; a batch that finds itself alone writes everything
    // held back before its answer (README, "When a saturated writer catches up"), as this
    // last event, sent on its own, does.
    post(&server, nth(CLIENTS * EACH)).await;
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 4);
    for i in &issues {
        let id = i["id"].as_str().unwrap();
        let count: i64 = i["count"].as_str().unwrap().parse().unwrap();
        // What each issue should hold is counted from what was sent to it.
        let fp: u32 = i["title"].as_str().unwrap()[1..2].parse().unwrap();
        let sent: Vec<u32> = (0..=CLIENTS * EACH).filter(|n| n % 4 == fp).collect();
        assert_eq!(count, sent.len() as i64);
        let (_, _, tags) = server.api(&format!("/api/0/issues/{id}/tags/")).await;
        for t in tags.as_array().unwrap() {
            assert_eq!(t["totalValues"].as_i64().unwrap(), count, "{t}");
        }
        let (_, _, slots) = server
            .api(&format!("/api/0/issues/{id}/tags/slot/values/"))
            .await;
        for v in slots.as_array().unwrap() {
            let s: u32 = v["value"].as_str().unwrap()[1..].parse().unwrap();
            let want = sent.iter().filter(|n| *n % 3 == s).count() as i64;
            assert_eq!(v["count"].as_i64().unwrap(), want, "{v}");
        }
        let hours = sql_i64(
            &server,
            backend,
            &format!("SELECT CAST(sum(count) AS BIGINT) FROM issue_stats WHERE issue_id = {id}"),
        )
        .await;
        assert_eq!(hours, count);
        let users: std::collections::HashSet<u32> = sent.iter().map(|n| n % 10).collect();
        assert_eq!(i["userCount"].as_i64().unwrap(), users.len() as i64);
    }
    server.stop().await;
}

/// Events of issue `id` counted under `browser:firefox`.
async fn firefox(server: &TestServer, backend: Backend, id: i64) -> i64 {
    let sql = format!(
        "SELECT COALESCE(CAST(sum(count) AS BIGINT), 0) FROM issue_tags
         WHERE issue_id = {id} AND key = 'browser' AND value = 'firefox'"
    );
    sql_i64(server, backend, &sql).await
}

/// An event of `kind` (its issue) seen with `browser`, prepared as the pipeline does.
async fn prepared(server: &TestServer, kind: &str, browser: &str) -> stackhound::event::NewEvent {
    let pid = server.project_id;
    let settings = server.store.grouping_settings(pid).await.unwrap().unwrap();
    let grouping = stackhound::project_grouping::ProjectGrouping::from_settings(pid, &settings);
    let event = json!({
        "platform": "python",
        "level": "error",
        "environment": "production",
        "tags": {"browser": browser},
        "user": {"id": browser},
        "exception": {"values": [{"type": "KeyError", "value": kind, "stacktrace": {"frames": [
            {"function": kind, "module": "app", "filename": "app.py", "lineno": 1, "in_app": true}
        ]}}]},
    })
    .to_string();
    let bytes = event.as_bytes();
    stackhound::pipeline::prepare(
        pid,
        &grouping,
        None,
        bytes,
        || stackhound::payload::StoredPayload::compress(bytes),
        server.clock.now_secs(),
        None,
    )
    .unwrap()
    .event
}

// A saturated writer journals a batch's aggregates instead of upserting them; what a crash
// leaves in the journal is written by the next writer that flushes (here a restarted one), to
// the issue a merge moved the rows to meanwhile.
both_backends!(multi_thread: held_back_aggregates_survive_a_crash_and_follow_a_merge);
async fn held_back_aggregates_survive_a_crash_and_follow_a_merge(backend: Backend) {
    let server = crate::helpers::spawn_manual(backend).await;
    let store = &server.store;
    let mut writer = store.writer(server.clock.clone());
    // Always saturated: more requests in flight than the batch holds.
    writer.set_in_flight(std::sync::Arc::new(|| usize::MAX));
    // The first batch after a start writes the journal's leftovers, and its own rows.
    let a = writer
        .write_batch(&[prepared(&server, "a", "firefox").await])
        .await
        .unwrap()[0]
        .issue_id;
    assert_eq!(firefox(&server, backend, a).await, 1);
    // Busy from then on: held back.
    writer
        .write_batch(&[prepared(&server, "a", "firefox").await])
        .await
        .unwrap();
    let b = writer
        .write_batch(&[prepared(&server, "b", "firefox").await])
        .await
        .unwrap()[0]
        .issue_id;
    assert_ne!(a, b);
    assert_eq!(firefox(&server, backend, a).await, 1);
    assert_eq!(firefox(&server, backend, b).await, 0);
    // Event counts never wait.
    assert_eq!(store.issue(a).await.unwrap().unwrap().event_count, 2);

    // `b` is merged into `a` (the one with more events), then the writer dies unflushed.
    let merged = store
        .merge_issues(
            server.project_id,
            &[a, b],
            stackhound::issue::state::Actor::System,
            server.clock.now().timestamp_micros(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(merged.parent, a);
    drop(writer);
    let mut restarted = store.writer(server.clock.clone());
    restarted.flush_journal().await.unwrap();
    assert_eq!(firefox(&server, backend, a).await, 3);
    assert_eq!(firefox(&server, backend, b).await, 0);
    let (_, _, values) = server
        .api(&format!("/api/0/issues/{a}/tags/browser/values/"))
        .await;
    assert_eq!(values[0]["count"], 3, "{values}");
    let journal_left = sql_i64(&server, backend, "SELECT count(*) FROM aggregate_journal").await;
    assert_eq!(journal_left, 0);
    server.stop().await;
}
