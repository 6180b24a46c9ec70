//! Grouping end to end: a database written with the previous scheme keeps its issues through
//! the upgrade, grouping info explains an event, and per-project rules change grouping.

use crate::backend::Backend;
use crate::helpers::{spawn, spawn_manual, TestServer};
use serde_json::{json, Value};
use stackhound::grouping::Scheme;
use stackhound::payload::StoredPayload;
use stackhound::pipeline::prepare;
use stackhound::project_grouping::ProjectGrouping;
use stackhound::store::grouping::{GroupingConfigText, GroupingSettings};

const PROJECT: &str = "/api/0/projects/stackhound/default/";

/// A native crash as a minidump-derived event carries it: a synthetic signal mechanism, frames
/// with function names and packages, no `in_app` anywhere.
fn crash(id: u32, app: &str, stack: &[&str]) -> Value {
    let frames: Vec<Value> = stack
        .iter()
        .enumerate()
        .map(|(i, f)| {
            json!({
                "function": f,
                "package": format!("/usr/lib/{app}/lib{app}.so"),
                "instruction_addr": format!("0x{:x}", 0x1000 + i * 16),
            })
        })
        .collect();
    json!({
        "event_id": format!("{id:032x}"),
        "platform": "native",
        "level": "fatal",
        "exception": {"values": [{
            "type": "SIGSEGV",
            "value": "Segfault",
            "mechanism": {"type": "signal", "synthetic": true, "handled": false,
                          "meta": {"signal": {"number": 11, "name": "SIGSEGV"}}},
            "stacktrace": {"frames": frames},
        }]},
    })
}

fn python_error(id: u32) -> Value {
    json!({
        "event_id": format!("{id:032x}"),
        "platform": "python",
        "exception": {"values": [{
            "type": "KeyError", "value": "'user_id'",
            "stacktrace": {"frames": [
                {"module": "django.core.handlers.base", "function": "_get_response", "in_app": false},
                {"module": "shop.views", "function": "checkout", "in_app": true,
                 "context_line": "    user = request.session['user_id']"},
            ]},
        }]},
    })
}

fn message(id: u32) -> Value {
    json!({"event_id": format!("{id:032x}"), "message": {"message": "cache miss for %s", "params": ["k"]}})
}

async fn post(server: &TestServer, event: &Value) {
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n").into_bytes();
    let (status, answer) = server.post_envelope(body, &[]).await;
    assert_eq!(status, 200, "{answer}");
}

fn count(issue: &Value) -> u64 {
    issue["count"].as_str().unwrap().parse().unwrap()
}

/// The issue holding `event_id`, found through the API.
async fn issue_of_event(server: &TestServer, event_id: u32) -> String {
    for issue in server.all_issues().await {
        let id = issue["id"].as_str().unwrap().to_owned();
        let (status, _, _) = server
            .api(&format!("/api/0/issues/{id}/events/{event_id:032x}/"))
            .await;
        if status == 200 {
            return id;
        }
    }
    panic!("event {event_id} is in no issue");
}

const STACK_A: [&str; 3] = ["main", "run_loop", "render_frame"];
const STACK_B: [&str; 3] = ["main", "decode_packet", "memcpy"];
const STACK_C: [&str; 3] = ["start", "parse_config", "strlen"];
const STACK_D: [&str; 3] = ["start", "open_socket", "connect"];
/// A stack whose C++ names the latest scheme trims further than the first one did (return
/// types, qualifiers): its system hash differs between the schemes.
const STACK_CPP: [&str; 3] = [
    "main",
    "Renderer::draw(Frame const&) const",
    "std::vector<int>::at(unsigned long)",
];

/// The events the previous scheme grouped (`fixtures/grouping/make-fixture.sh` sends the same).
fn old_events() -> Vec<Value> {
    vec![
        crash(1, "viewer", &STACK_A),
        crash(2, "viewer", &STACK_B),
        python_error(3),
        message(4),
        crash(5, "viewer", &STACK_CPP),
    ]
}

/// The issues of `old_events()`: the first scheme put the three crashes in one (they share
/// `SIGSEGV: Segfault`), the over-grouping the latest scheme fixes and the upgrade must not
/// tear apart. Returns (crashes, python, messages).
async fn old_issues(server: &TestServer) -> (String, String, String) {
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 3, "{issues:#?}");
    let crashes = issue_of_event(server, 1).await;
    assert_eq!(issue_of_event(server, 2).await, crashes);
    assert_eq!(issue_of_event(server, 5).await, crashes);
    (
        crashes,
        issue_of_event(server, 3).await,
        issue_of_event(server, 4).await,
    )
}

/// The upgrade, from the first event after it to the end of the transition and beyond.
async fn upgrade_keeps_issues(server: &TestServer) {
    let (crashes, python, messages) = old_issues(server).await;

    // The next event moves the project to the latest scheme, with a transition in which the
    // first scheme's hashes still find the issues.
    post(server, &crash(11, "viewer", &STACK_A)).await;
    let (_, _, project) = server.api(PROJECT).await;
    assert_eq!(project["groupingConfig"], Scheme::LATEST.id());
    assert_eq!(project["secondaryGroupingConfig"], "sh-2026-11");
    let expiry = project["secondaryGroupingExpiry"].as_i64().unwrap();
    let thirty_days = server.clock.now().timestamp() + 30 * 86_400;
    assert!(
        (expiry - thirty_days).abs() <= 2,
        "{expiry} vs {thirty_days}"
    );

    post(server, &crash(12, "viewer", &STACK_B)).await;
    post(server, &crash(15, "viewer", &STACK_CPP)).await;
    post(server, &python_error(13)).await;
    post(server, &message(14)).await;
    // Events that used to join an issue still join it: no issue split.
    for (event, issue) in [
        (11, &crashes),
        (12, &crashes),
        (15, &crashes),
        (13, &python),
        (14, &messages),
    ] {
        assert_eq!(&issue_of_event(server, event).await, issue, "event {event}");
    }
    // But a stack never seen before is grouped by the latest scheme at once: the old
    // type+value hash every segfault shared is not looked up (the app variant gave way).
    post(server, &crash(16, "viewer", &STACK_C)).await;
    let own = issue_of_event(server, 16).await;
    assert!(![&crashes, &python, &messages].contains(&&own));
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 4, "{issues:#?}");
    let count_of = |id: &str| count(issues.iter().find(|i| i["id"] == id).unwrap());
    assert_eq!(count_of(&crashes), 6);
    assert_eq!(count_of(&python), 2);
    assert_eq!(count_of(&messages), 2);

    // Where both schemes hash a stack alike, the old link did the work; the C++ stack's new
    // system hash (the latest scheme trims its names further) was linked to the old issue.
    let (status, _, hashes) = server
        .api(&format!("/api/0/issues/{crashes}/hashes/"))
        .await;
    assert_eq!(status, 200);
    let links = hashes.as_array().unwrap();
    let system_hash = |event: u32| async move {
        let (_, _, info) = server
            .api(&format!("{PROJECT}events/{event:032x}/grouping-info/"))
            .await;
        assert_eq!(info["app"]["contributes"], false, "{info:#}");
        info["system"]["hash"].as_str().unwrap().to_owned()
    };
    for (event, scheme) in [
        (11, "sh-2026-11"),
        (12, "sh-2026-11"),
        (15, Scheme::LATEST.id()),
    ] {
        let h = system_hash(event).await;
        let link = links.iter().find(|l| l["id"] == h.as_str());
        assert_eq!(
            link.map(|l| &l["groupingConfig"]),
            Some(&json!(scheme)),
            "event {event}: {h} in {hashes:#}"
        );
    }

    // After the transition only the latest scheme runs: linked stacks still find their issue
    // (the C++ one through the link made meanwhile), a new stack gets an issue of its own.
    server.clock.advance(chrono::Duration::days(31));
    post(server, &crash(21, "viewer", &STACK_A)).await;
    post(server, &crash(25, "viewer", &STACK_CPP)).await;
    post(server, &crash(22, "viewer", &STACK_D)).await;
    assert_eq!(issue_of_event(server, 21).await, crashes);
    assert_eq!(issue_of_event(server, 25).await, crashes);
    assert!(![&crashes, &own].contains(&&issue_of_event(server, 22).await));
    assert_eq!(server.all_issues().await.len(), 5);
}

both_backends!(multi_thread: an_upgraded_database_keeps_its_issues);
async fn an_upgraded_database_keeps_its_issues(backend: Backend) {
    let server = spawn_manual(backend).await;
    let store = &server.store;
    let pid = server.project_id;

    // The project as the previous release left it: on the first scheme, with events that
    // scheme grouped, stored by the real writer.
    let first = GroupingSettings {
        primary: GroupingConfigText {
            scheme: "sh-2026-11".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let current = store.grouping_settings(pid).await.unwrap().unwrap();
    assert!(store
        .set_grouping_settings(pid, &first, &current)
        .await
        .unwrap());
    let old = ProjectGrouping::from_settings(pid, &first);
    let now = server.clock.now_secs();
    let batch: Vec<_> = old_events()
        .iter()
        .map(|ev| {
            let json = ev.to_string();
            let bytes = json.as_bytes();
            prepare(
                pid,
                &old,
                None,
                bytes,
                || StoredPayload::compress(bytes),
                now,
                None,
            )
            .unwrap()
            .event
        })
        .collect();
    let mut writer = store.writer(server.clock.clone());
    writer.write_batch(&batch).await.unwrap();
    upgrade_keeps_issues(&server).await;
    server.stop().await;
}

/// The same upgrade on a real file written by the previous release (commit 53b3940, which only
/// knew `sh-2026-11`; `fixtures/grouping/make-fixture.sh` made it from `old_events()`). SQLite
/// only: it is a file. Its stored hashes are the ones this release computes for `sh-2026-11`.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_of_the_previous_release_keeps_its_issues() {
    let dir = tempfile::TempDir::new().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/grouping/sh-2026-11.sqlite");
    std::fs::copy(&fixture, dir.path().join("test.db")).unwrap();
    let db = crate::backend::TestDb::sqlite_in(dir);
    let store = db.open().await;
    let project = store.project_by_slug("default").await.unwrap().unwrap();
    let clock = stackhound::clock::Clock::manual(chrono::Utc::now());
    let token = stackhound::cli::create_token(&store, &clock, "test")
        .await
        .unwrap();
    let server = crate::helpers::serve_on(
        db,
        store,
        project.id,
        token,
        clock,
        std::sync::Arc::new(|s: &mut stackhound::app::Settings| s.background = false),
    )
    .await;
    upgrade_keeps_issues(&server).await;
    server.stop().await;
}

both_backends!(multi_thread: crashes_group_by_their_stack);
async fn crashes_group_by_their_stack(backend: Backend) {
    let server = spawn(backend).await;
    // Different stacks of one signal: two issues; the same crash again joins its issue.
    post(&server, &crash(1, "viewer", &STACK_A)).await;
    post(&server, &crash(2, "viewer", &STACK_B)).await;
    post(&server, &crash(3, "viewer", &STACK_A)).await;
    let a = issue_of_event(&server, 1).await;
    assert_ne!(issue_of_event(&server, 2).await, a);
    assert_eq!(issue_of_event(&server, 3).await, a);
    assert_eq!(server.all_issues().await.len(), 2);

    // Grouping info says why: no in-app frames, so the app variant gives way to the system
    // variant, whose hash is the one linked to the issue.
    let (status, _, info) = server
        .api(&format!("{PROJECT}events/{:032x}/grouping-info/", 1))
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["app"]["contributes"], false, "{info:#}");
    assert!(info["app"]["hash"].is_null());
    assert!(
        info["app"]["hint"]
            .as_str()
            .unwrap_or("")
            .contains("stacktrace"),
        "{info:#}"
    );
    assert_eq!(info["system"]["contributes"], true, "{info:#}");
    let system_hash = info["system"]["hash"].as_str().unwrap();
    let (_, _, hashes) = server.api(&format!("/api/0/issues/{a}/hashes/")).await;
    assert!(
        hashes
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["id"] == system_hash),
        "{hashes:#}"
    );
    // The issue detail lists the same hashes.
    let (_, _, detail) = server.api(&format!("/api/0/issues/{a}/")).await;
    assert_eq!(detail["hashes"], hashes);
    // The tree shows the frames' function names as the values that went into the hash.
    let tree = info["system"]["component"].to_string();
    for f in STACK_A {
        assert!(tree.contains(f), "{f} missing from {tree}");
    }
    let (status, _, _) = server
        .api(&format!("{PROJECT}events/{:032x}/grouping-info/", 999))
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

both_backends!(multi_thread: grouping_info_of_real_sdk_events);
async fn grouping_info_of_real_sdk_events(backend: Backend) {
    let server = spawn(backend).await;
    for sdk in ["python-brotli-2.75.0", "rust-0.49.5"] {
        let answers = crate::captures::replay(&server, sdk, "exception").await;
        let (status, answer) = &answers[0];
        assert_eq!(*status, 200, "{answer}");
        let event_id = answer["id"].as_str().unwrap();
        let (status, _, info) = server
            .api(&format!("{PROJECT}events/{event_id}/grouping-info/"))
            .await;
        assert_eq!(status, 200, "{sdk}: {info}");
        // Every contributing variant's hash is linked to the event's issue: the answer to
        // "why is this event in this issue?".
        let issue = issue_of_python_or_rust(&server, event_id).await;
        let (_, _, hashes) = server.api(&format!("/api/0/issues/{issue}/hashes/")).await;
        let linked: Vec<&str> = hashes
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        let contributing: Vec<&str> = info
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v["contributes"] == true)
            .map(|v| v["hash"].as_str().unwrap())
            .collect();
        assert!(!contributing.is_empty(), "{sdk}: {info:#}");
        for h in contributing {
            assert!(linked.contains(&h), "{sdk}: {h} not in {linked:?}");
        }
    }
    server.stop().await;
}

/// The issue id of a stored event, whichever SDK sent it.
async fn issue_of_python_or_rust(server: &TestServer, event_id: &str) -> String {
    for issue in server.all_issues().await {
        let id = issue["id"].as_str().unwrap().to_owned();
        let (status, _, _) = server
            .api(&format!("/api/0/issues/{id}/events/{event_id}/"))
            .await;
        if status == 200 {
            return id;
        }
    }
    panic!("event {event_id} is in no issue");
}

/// An exception as the Rust SDK sends one, with a stack of app functions (newest last).
fn sdk_exception(ty: &str, value: &str, stack: &[&str]) -> sentry::protocol::Event<'static> {
    use sentry::protocol::{Exception, Frame, Stacktrace};
    let frames = stack
        .iter()
        .map(|f| Frame {
            function: Some(format!("shop::{f}")),
            module: Some("shop".into()),
            in_app: Some(true),
            ..Default::default()
        })
        .collect();
    sentry::protocol::Event {
        exception: vec![Exception {
            ty: ty.into(),
            value: Some(value.into()),
            stacktrace: Some(Stacktrace {
                frames,
                ..Default::default()
            }),
            ..Default::default()
        }]
        .into(),
        ..Default::default()
    }
}

/// Sends events with the official Rust SDK; returns their ids as the API writes them.
async fn send(server: &TestServer, events: Vec<sentry::protocol::Event<'static>>) -> Vec<String> {
    let (client, hub) = crate::sdk::client(&server.dsn);
    tokio::task::spawn_blocking(move || {
        let ids: Vec<String> = events
            .into_iter()
            .map(|e| hub.capture_event(e).simple().to_string())
            .collect();
        assert!(client.flush(Some(std::time::Duration::from_secs(10))));
        ids
    })
    .await
    .unwrap()
}

both_backends!(multi_thread: project_rules_change_grouping);
async fn project_rules_change_grouping(backend: Backend) {
    let server = spawn(backend).await;

    // Invalid rules are refused with the line and the reason; nothing is stored.
    let (status, body) = server
        .put_api(
            PROJECT,
            &json!({"fingerprintingRules": "error.type:Foo -> foo\nerror.type Bar -> bar"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("line 2"),
        "{body}"
    );
    let (status, body) = server
        .put_api(
            PROJECT,
            &json!({"groupingEnhancements": "stack.function:foo +frobnicate"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("line 1"),
        "{body}"
    );
    let (_, _, project) = server.api(PROJECT).await;
    assert_eq!(project["fingerprintingRules"], "");

    // Before any rule: two timeouts whose stacks differ in a retry helper are two issues.
    let ids = send(
        &server,
        vec![
            sdk_exception(
                "Timeout",
                "upstream slow",
                &["checkout", "retry_3", "fetch"],
            ),
            sdk_exception(
                "Timeout",
                "upstream slow",
                &["checkout", "retry_7", "fetch"],
            ),
        ],
    )
    .await;
    let first = issue_of_python_or_rust(&server, &ids[0]).await;
    assert_ne!(issue_of_python_or_rust(&server, &ids[1]).await, first);

    // Rules: every DatabaseUnavailable is one issue; retry helpers do not take part in
    // grouping. The change asks for a transition (it names its end), so existing issues keep
    // their events: events that used to join the first timeout issue still do, and from now
    // on both stacks join it.
    let rules = json!({
        "fingerprintingRules": "# outages\nerror.type:DatabaseUnavailable -> system-down title=\"Database down\"",
        "groupingEnhancements": "stack.function:\"shop::retry_*\" -group",
        "secondaryGroupingExpiry": chrono::Utc::now().timestamp() + 86_400,
    });
    let (status, body) = server.put_api(PROJECT, &rules).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["groupingEnhancements"], rules["groupingEnhancements"]);
    assert!(body["secondaryGroupingExpiry"].is_i64(), "{body}");

    let ids = send(
        &server,
        vec![
            sdk_exception(
                "Timeout",
                "upstream slow",
                &["checkout", "retry_3", "fetch"],
            ),
            sdk_exception(
                "Timeout",
                "upstream slow",
                &["checkout", "retry_9", "fetch"],
            ),
            sdk_exception(
                "DatabaseUnavailable",
                "primary down",
                &["checkout", "query"],
            ),
            sdk_exception(
                "DatabaseUnavailable",
                "replica lag",
                &["report", "export", "query"],
            ),
            sdk_exception("Timeout", "upstream slow", &["search", "fetch"]),
        ],
    )
    .await;
    assert_eq!(issue_of_python_or_rust(&server, &ids[0]).await, first);
    assert_eq!(issue_of_python_or_rust(&server, &ids[1]).await, first);
    let outage = issue_of_python_or_rust(&server, &ids[2]).await;
    assert_eq!(issue_of_python_or_rust(&server, &ids[3]).await, outage);
    let (_, _, detail) = server.api(&format!("/api/0/issues/{outage}/")).await;
    assert_eq!(detail["title"], "Database down");
    let other = issue_of_python_or_rust(&server, &ids[4]).await;
    assert!(other != first && other != outage);

    // Grouping info names the rule that decided.
    let (status, _, info) = server
        .api(&format!("{PROJECT}events/{}/grouping-info/", ids[2]))
        .await;
    assert_eq!(status, 200);
    let text = info.to_string();
    assert!(text.contains("system-down"), "{info:#}");
    assert!(text.contains("DatabaseUnavailable"), "{info:#}");
    let (_, _, info) = server
        .api(&format!("{PROJECT}events/{}/grouping-info/", ids[1]))
        .await;
    assert!(info.to_string().contains("-group"), "{info:#}");

    // Without a transition (the default for rules, and 0 ends the running one), a rule that
    // splits applies to every new event at once.
    let (status, body) = server
        .put_api(
            PROJECT,
            &json!({"fingerprintingRules": "error.type:DatabaseUnavailable -> {{ default }}, {{ error.value }}",
                    "secondaryGroupingExpiry": 0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["secondaryGroupingConfig"].is_null(), "{body}");
    let ids = send(
        &server,
        vec![
            sdk_exception(
                "DatabaseUnavailable",
                "primary down",
                &["checkout", "query"],
            ),
            sdk_exception("DatabaseUnavailable", "replica lag", &["checkout", "query"]),
        ],
    )
    .await;
    let a = issue_of_python_or_rust(&server, &ids[0]).await;
    let b = issue_of_python_or_rust(&server, &ids[1]).await;
    assert!(a != b && a != outage && b != outage);
    server.stop().await;
}
