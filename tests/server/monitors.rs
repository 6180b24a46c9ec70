//! Cron monitors end to end on a manual clock: check-ins (envelopes, the HTTP endpoint, the `sentry` crate), missed deadlines, timeouts, the monitor's issue opened, resolved and reopened, and several workers at once.

use crate::backend::Backend;
use crate::helpers::{spawn_manual, TestServer, KEY};
use crate::receivers::Receiver;
use serde_json::{json, Value};
use stackhound::alert::{AlertWorker, SmtpSettings};
use stackhound::monitor::worker::MonitorWorker;

fn worker(server: &TestServer, name: &str) -> MonitorWorker {
    MonitorWorker::new(
        stackhound::app::monitor_server(&server.state),
        name.to_string(),
    )
}

async fn check_in(server: &TestServer, body: Value) {
    let env = format!("{{}}\n{{\"type\":\"check_in\"}}\n{body}\n").into_bytes();
    let (status, answer) = server.post_envelope(env, &[]).await;
    assert_eq!(status, 200, "{answer}");
}

fn id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

fn interval_config(every: u64, failures: u64, recovery: u64) -> Value {
    json!({"schedule": {"type": "interval", "value": every, "unit": "minute"},
           "checkin_margin": 1, "max_runtime": 5,
           "failure_issue_threshold": failures, "recovery_threshold": recovery})
}

async fn monitor_issues(server: &TestServer) -> Vec<Value> {
    server
        .all_issues()
        .await
        .into_iter()
        .filter(|i| {
            i["title"]
                .as_str()
                .unwrap_or("")
                .starts_with("Monitor failure")
        })
        .collect()
}

async fn checkins(server: &TestServer, slug: &str) -> Vec<Value> {
    let (status, _, body) = server
        .api(&format!(
            "/api/0/projects/stackhound/default/monitors/{slug}/checkins/"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

fn statuses(list: &[Value]) -> Vec<String> {
    // Oldest first, easier to read in assertions.
    list.iter()
        .rev()
        .map(|c| c["status"].as_str().unwrap().to_string())
        .collect()
}

both_backends!(interval_monitor_opens_resolves_and_reopens_one_issue);
async fn interval_monitor_opens_resolves_and_reopens_one_issue(backend: Backend) {
    let server = spawn_manual(backend).await;
    let w = worker(&server, "w1");
    check_in(
        &server,
        json!({"check_in_id": id(), "monitor_slug": "nightly", "status": "ok",
               "monitor_config": interval_config(10, 2, 2)}),
    )
    .await;
    assert_eq!(w.run_due().await, 0, "nothing is due yet");

    // The first deadline (10 min + 1 min margin) passes: one missed check-in, no issue yet.
    server.clock.advance(minutes(11));
    assert_eq!(w.run_due().await, 1);
    assert!(monitor_issues(&server).await.is_empty());
    assert_eq!(
        statuses(&checkins(&server, "nightly").await),
        ["ok", "missed"]
    );

    // The second one: the threshold (2) is reached and the issue appears, unresolved.
    server.clock.advance(minutes(9));
    assert_eq!(w.run_due().await, 0, "the next deadline is at 21 min");
    server.clock.advance(minutes(1));
    assert!(w.run_due().await >= 2, "a missed check-in and its event");
    let issues = monitor_issues(&server).await;
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0]["title"], "Monitor failure: nightly (missed)");
    assert_eq!(issues[0]["status"], "unresolved");
    assert_eq!(issues[0]["count"], "1");
    let issue_id = issues[0]["id"].as_str().unwrap().to_string();

    let (status, _, monitor) = server
        .api("/api/0/projects/stackhound/default/monitors/nightly/")
        .await;
    assert_eq!(status, 200);
    assert_eq!(monitor["status"], "error");
    assert_eq!(monitor["config"]["schedule"]["value"], 10);
    let env = &monitor["environments"][0];
    assert_eq!(env["name"], "production");
    assert_eq!(env["issueId"], issue_id.as_str());
    let expected: Vec<Value> = checkins(&server, "nightly")
        .await
        .iter()
        .map(|c| c["expectedTime"].clone())
        .collect();
    assert!(
        expected[0].is_string(),
        "a missed check-in has its expected time"
    );

    // Two ok check-ins (the recovery threshold) resolve it; one is not enough.
    check_in(
        &server,
        json!({"check_in_id": id(), "monitor_slug": "nightly", "status": "ok"}),
    )
    .await;
    w.run_due().await;
    assert_eq!(monitor_issues(&server).await[0]["status"], "unresolved");
    check_in(
        &server,
        json!({"check_in_id": id(), "monitor_slug": "nightly", "status": "ok"}),
    )
    .await;
    assert_eq!(w.run_due().await, 1, "one resolve");
    let issues = monitor_issues(&server).await;
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["status"], "resolved");
    assert_eq!(w.run_due().await, 0, "resolved once");

    // A later failing streak (two errors) reopens the same issue: a regression.
    check_in(
        &server,
        json!({"check_in_id": id(), "monitor_slug": "nightly", "status": "error"}),
    )
    .await;
    w.run_due().await;
    assert_eq!(monitor_issues(&server).await[0]["status"], "resolved");
    check_in(
        &server,
        json!({"check_in_id": id(), "monitor_slug": "nightly", "status": "error"}),
    )
    .await;
    w.run_due().await;
    let issues = monitor_issues(&server).await;
    assert_eq!(issues.len(), 1, "one issue per monitor environment");
    assert_eq!(issues[0]["id"], issue_id.as_str());
    assert_eq!(issues[0]["status"], "unresolved");
    assert_eq!(issues[0]["count"], "2");
    let (_, _, detail) = server.api(&format!("/api/0/issues/{issue_id}/")).await;
    let kinds: Vec<String> = detail["activity"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["type"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        kinds.iter().any(|k| k.contains("regress")),
        "a regression in the history: {kinds:?}"
    );
    assert_eq!(
        statuses(&checkins(&server, "nightly").await),
        ["ok", "missed", "missed", "ok", "ok", "error", "error"]
    );
}

both_backends!(a_run_past_max_runtime_times_out);
async fn a_run_past_max_runtime_times_out(backend: Backend) {
    let server = spawn_manual(backend).await;
    let w = worker(&server, "w1");
    let run = id();
    // Hourly, so only the timeout (5 min) can be due in this test.
    let mut config = interval_config(60, 1, 1);
    config["max_runtime"] = json!(5);
    check_in(
        &server,
        json!({"check_in_id": run, "monitor_slug": "backup", "status": "in_progress",
               "monitor_config": config}),
    )
    .await;
    server.clock.advance(minutes(4));
    assert_eq!(w.run_due().await, 0, "still within max_runtime");
    server.clock.advance(minutes(2));
    assert!(w.run_due().await >= 1);
    assert_eq!(statuses(&checkins(&server, "backup").await), ["timeout"]);
    let issues = monitor_issues(&server).await;
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["title"], "Monitor failure: backup (timeout)");
    // The job's late finish does not undo the timeout.
    check_in(
        &server,
        json!({"check_in_id": run, "monitor_slug": "backup", "status": "ok"}),
    )
    .await;
    assert_eq!(statuses(&checkins(&server, "backup").await), ["timeout"]);
    assert_eq!(monitor_issues(&server).await[0]["status"], "unresolved");
}

both_backends!(error_check_ins_open_an_issue_that_alerts);
async fn error_check_ins_open_an_issue_that_alerts(backend: Backend) {
    let server = spawn_manual(backend).await;
    let hook = Receiver::start(0).await;
    server
        .add_channel(json!({"kind": "webhook", "url": hook.url("/hook")}))
        .await;
    let w = worker(&server, "w1");
    let alerts = AlertWorker::new(
        server.store.clone(),
        server.clock.clone(),
        SmtpSettings::default(),
        server.base.clone(),
        "stackhound".into(),
    )
    .unwrap();
    let run = id();
    check_in(
        &server,
        json!({"check_in_id": run, "monitor_slug": "etl", "status": "in_progress",
               "environment": "staging",
               "monitor_config": {"schedule": {"type": "crontab", "value": "0 * * * *"},
                                  "timezone": "Europe/Berlin", "failure_issue_threshold": 1}}),
    )
    .await;
    check_in(
        &server,
        json!({"check_in_id": run, "monitor_slug": "etl", "status": "error", "environment": "staging", "duration": 12.5}),
    )
    .await;
    w.run_due().await;
    let issues = monitor_issues(&server).await;
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["title"], "Monitor failure: etl (error)");
    assert_eq!(alerts.run_due().await, 1);
    let body: Value = serde_json::from_slice(&hook.requests()[0].body).unwrap();
    assert_eq!(body["kind"], "new_issue");
    assert!(
        body["issue"]["title"].as_str().unwrap().contains("etl"),
        "{body}"
    );
    let list = checkins(&server, "etl").await;
    assert_eq!(list.len(), 1, "the finish updated the run: {list:#?}");
    assert_eq!(list[0]["duration"], 12500);
    assert_eq!(list[0]["environment"], "staging");
    // The crontab's next expected time is on the hour.
    let (_, _, monitor) = server
        .api("/api/0/projects/stackhound/default/monitors/etl/")
        .await;
    let next = monitor["environments"][0]["nextCheckIn"].as_str().unwrap();
    assert!(next.contains(":00:00"), "{next}");
}

both_backends!(multi_thread: the_sentry_crate_creates_and_feeds_a_monitor);
async fn the_sentry_crate_creates_and_feeds_a_monitor(backend: Backend) {
    use sentry::protocol::{
        Envelope, MonitorCheckIn, MonitorCheckInStatus, MonitorConfig, MonitorSchedule,
    };
    let server = spawn_manual(backend).await;
    let (client, _hub) = crate::sdk::client(&server.dsn);
    let send = move |status: MonitorCheckInStatus, config: Option<MonitorConfig>| {
        let check_in = MonitorCheckIn {
            check_in_id: uuid::Uuid::new_v4(),
            monitor_slug: "sdk-job".into(),
            status,
            environment: Some("production".into()),
            duration: Some(1.0),
            monitor_config: config,
        };
        let envelope: Envelope = check_in.into();
        client.send_envelope(envelope);
        assert!(client.flush(Some(std::time::Duration::from_secs(10))));
    };
    let config = MonitorConfig {
        schedule: MonitorSchedule::from_crontab("*/5 * * * *").unwrap(),
        checkin_margin: Some(2),
        max_runtime: Some(10),
        timezone: Some("UTC".into()),
        failure_issue_threshold: Some(1),
        recovery_threshold: Some(1),
    };
    tokio::task::spawn_blocking(move || {
        send(MonitorCheckInStatus::Ok, Some(config));
        send(MonitorCheckInStatus::Error, None);
    })
    .await
    .unwrap();
    let (status, _, list) = server
        .api("/api/0/projects/stackhound/default/monitors/")
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["slug"], "sdk-job");
    assert_eq!(list[0]["config"]["schedule"]["value"], "*/5 * * * *");
    assert_eq!(list[0]["config"]["checkin_margin"], 2);
    assert_eq!(
        statuses(&checkins(&server, "sdk-job").await),
        ["ok", "error"]
    );
    worker(&server, "w1").run_due().await;
    assert_eq!(monitor_issues(&server).await.len(), 1);
}

both_backends!(the_http_cron_endpoint_records_check_ins);
async fn the_http_cron_endpoint_records_check_ins(backend: Backend) {
    let server = spawn_manual(backend).await;
    let pid = server.project_id;
    let base = &server.base;
    // POST JSON with the key in the header creates the monitor (the path slug wins).
    let resp = server
        .http
        .post(format!("{base}/api/{pid}/cron/http-job/"))
        .header("x-sentry-auth", server.auth_header())
        .json(&json!({"monitor_slug": "ignored", "status": "ok",
                      "monitor_config": interval_config(30, 1, 1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // GET with the key in the path: start, then finish the latest run (no check_in_id).
    for status in ["in_progress", "ok"] {
        let resp = server
            .http
            .get(format!(
                "{base}/api/{pid}/cron/http-job/{KEY}/?status={status}&duration=3"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{status}");
    }
    // The key in the query, without the trailing slash.
    let resp = server
        .http
        .get(format!(
            "{base}/api/{pid}/cron/http-job?sentry_key={KEY}&status=error&environment=dev"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let list = checkins(&server, "http-job").await;
    assert_eq!(statuses(&list), ["ok", "ok", "error"]);
    assert_eq!(list[0]["environment"], "dev");
    assert_eq!(list[1]["duration"], 3000);

    // Bad input: 4xx with a detail.
    let bad = [
        (
            format!("{base}/api/{pid}/cron/%20/{KEY}/?status=ok"),
            400,
            "monitor_slug",
        ),
        (
            format!("{base}/api/{pid}/cron/http-job/{KEY}/"),
            400,
            "status",
        ),
        (
            format!("{base}/api/{pid}/cron/http-job/{KEY}/?status=ok&check_in_id=zz"),
            400,
            "check_in_id",
        ),
        (
            format!("{base}/api/{pid}/cron/http-job/{KEY}/?status=ok&duration=-2"),
            400,
            "duration",
        ),
        (
            format!("{base}/api/{pid}/cron/http-job/wrongkey123/?status=ok"),
            403,
            "",
        ),
        (
            format!("{base}/api/{pid}/cron/http-job/?status=ok"),
            401,
            "",
        ),
        (
            format!("{base}/api/x/cron/http-job/{KEY}/?status=ok"),
            400,
            "project",
        ),
    ];
    for (url, want, words) in bad {
        let resp = server.http.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{url}");
        let body: Value = resp.json().await.unwrap();
        let detail = body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("{url}: {body}"));
        assert!(detail.contains(words), "{url}: {detail}");
    }
    let resp = server
        .http
        .post(format!("{base}/api/{pid}/cron/http-job/{KEY}/"))
        .header("content-type", "application/json")
        .body(r#"{"status": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("status"),
        "{body}"
    );
    // An invalid check_in item in an envelope is dropped; the envelope is still accepted.
    check_in(&server, json!({"monitor_slug": "", "status": "ok"})).await;
    // Unknown monitors and the read API's 404s.
    let (status, _, body) = server
        .api("/api/0/projects/stackhound/default/monitors/nope/")
        .await;
    assert_eq!((status, body["detail"].as_str().is_some()), (404, true));
    let (status, _, _) = server
        .api("/api/0/projects/stackhound/default/monitors/nope/checkins/")
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = server
        .api("/api/0/projects/stackhound/nope/monitors/")
        .await;
    assert_eq!(status, 404);
}

both_backends!(multi_thread: concurrent_workers_record_each_missed_check_in_once);
async fn concurrent_workers_record_each_missed_check_in_once(backend: Backend) {
    let server = spawn_manual(backend).await;
    const MONITORS: usize = 12;
    for i in 0..MONITORS {
        check_in(
            &server,
            json!({"check_in_id": id(), "monitor_slug": format!("job-{i}"), "status": "ok",
                   "monitor_config": interval_config(10, 1, 1)}),
        )
        .await;
    }
    let workers = [
        worker(&server, "a"),
        worker(&server, "b"),
        worker(&server, "c"),
    ];
    for round in 1..=2 {
        server
            .clock
            .advance(minutes(if round == 1 { 11 } else { 10 }));
        let [a, b, c] = &workers;
        tokio::join!(a.run_due(), b.run_due(), c.run_due());
        for i in 0..MONITORS {
            let list = checkins(&server, &format!("job-{i}")).await;
            let missed = list.iter().filter(|c| c["status"] == "missed").count();
            assert_eq!(missed, round, "job-{i} after round {round}: {list:#?}");
        }
        let issues = monitor_issues(&server).await;
        assert_eq!(issues.len(), MONITORS);
        for issue in &issues {
            assert_eq!(issue["count"], round.to_string(), "{issue:#?}");
        }
    }
}

both_backends!(a_crontab_in_new_york_expects_runs_across_dst);
async fn a_crontab_in_new_york_expects_runs_across_dst(backend: Backend) {
    use stackhound::monitor::CheckIn;
    let server = spawn_manual(backend).await;
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    };
    let body = json!({"check_in_id": id(), "monitor_slug": "ny", "status": "ok",
        "monitor_config": {"schedule": {"type": "crontab", "value": "30 2 * * *"},
                           "timezone": "America/New_York", "checkin_margin": 5}});
    let c = CheckIn::from_json(body.to_string().as_bytes(), None).unwrap();
    // The store takes "now" as an argument: the run of 2026-03-07, 02:30 EST.
    let store = &server.store;
    store
        .record_checkin(server.project_id, &c, at("2026-03-07T07:30:10Z"))
        .await
        .unwrap();
    let m = store
        .monitor_by_slug(server.project_id, "ny")
        .await
        .unwrap()
        .unwrap();
    let env = || async { store.monitor_envs(m.id).await.unwrap().remove(0) };
    // 02:30 does not exist on 2026-03-08 (02:00 EST jumps to 03:00 EDT): expected at 03:00 EDT.
    let e = env().await;
    assert_eq!(e.next_expected_at, Some(at("2026-03-08T07:00:00Z")));
    assert_eq!(e.deadline_at, Some(at("2026-03-08T07:05:00Z")));
    assert_eq!(
        store
            .monitor_deadlines(at("2026-03-08T07:04:59Z"), 10)
            .await
            .unwrap()
            .total(),
        0
    );
    assert_eq!(
        store
            .monitor_deadlines(at("2026-03-08T07:05:00Z"), 10)
            .await
            .unwrap()
            .missed,
        1
    );
    // Missed; the next run is 02:30 EDT (06:30 UTC) the day after.
    let e = env().await;
    assert_eq!(e.next_expected_at, Some(at("2026-03-09T06:30:00Z")));
    let list = store.monitor_checkins(m.id, 10).await.unwrap();
    assert_eq!(list[0].status, "missed");
    assert_eq!(list[0].expected_at, Some(at("2026-03-08T07:00:00Z")));
    // Across the November change: 02:30 happens once, in EST (07:30 UTC).
    let body = json!({"check_in_id": id(), "monitor_slug": "ny", "status": "ok"});
    let c = CheckIn::from_json(body.to_string().as_bytes(), None).unwrap();
    store
        .record_checkin(server.project_id, &c, at("2026-10-31T06:30:05Z"))
        .await
        .unwrap();
    assert_eq!(
        env().await.next_expected_at,
        Some(at("2026-11-01T07:30:00Z"))
    );
}

both_backends!(a_resolve_claimed_by_a_dead_process_is_taken_over_once);
async fn a_resolve_claimed_by_a_dead_process_is_taken_over_once(backend: Backend) {
    let server = spawn_manual(backend).await;
    let w = worker(&server, "alive");
    let send = |status: &'static str| {
        let server = &server;
        async move {
            check_in(
                server,
                json!({"check_in_id": id(), "monitor_slug": "flaky", "status": status,
                       "monitor_config": interval_config(60, 1, 1)}),
            )
            .await
        }
    };
    send("error").await;
    w.run_due().await;
    let issue = monitor_issues(&server).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Recovery: another process claims the resolve and dies before applying it.
    send("ok").await;
    let now = server.clock.now().timestamp_micros();
    let claimed = server
        .store
        .claim_monitor_resolves("dead", now, now + 60_000_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // A new failing streak meanwhile waits for that resolve: it must reopen the issue, not
    // land in the one being resolved.
    send("error").await;
    w.run_due().await;
    let issues = monitor_issues(&server).await;
    assert_eq!(
        (issues[0]["status"].as_str(), issues[0]["count"].as_str()),
        (Some("unresolved"), Some("1")),
        "the lease holds: nothing moves"
    );
    // The lease ends: this process resolves, then the new failure regresses the issue.
    server.clock.advance(chrono::Duration::seconds(61));
    w.run_due().await;
    let issues = monitor_issues(&server).await;
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["id"], issue.as_str());
    assert_eq!(issues[0]["status"], "unresolved");
    assert_eq!(issues[0]["count"], "2");
    let kinds: Vec<String> = server
        .store
        .activities(issue.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(
        kinds,
        ["regressed", "resolved", "first_seen"],
        "newest first"
    );
    assert_eq!(w.run_due().await, 0);
}
