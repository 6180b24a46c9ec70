//! An issue's events: pages newest first, filtered with the search syntax, one event by id or
//! as `latest` / `oldest` / `recommended` with its neighbours, and a project's event by id.

use crate::backend::Backend;
use crate::helpers::{next_cursor, spawn, TestServer};
use serde_json::{json, Value};

/// Posts one event of the fingerprint `group` with a timestamp `ts` (unix seconds), an
/// environment and a tag; returns its id.
async fn send(
    server: &TestServer,
    n: u32,
    ts: i64,
    env: &str,
    browser: &str,
    text: &str,
) -> String {
    let id = format!("{n:032x}");
    let event = json!({
        "message": text, "level": "error", "platform": "python", "timestamp": ts,
        "environment": env, "tags": {"browser": browser}, "fingerprint": ["one-group"],
    });
    let payload = event.to_string();
    let body = format!(
        "{{\"event_id\":\"{id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    );
    let (status, answer) = server.post_envelope(body.into_bytes(), &[]).await;
    assert_eq!(status, 200, "{answer}");
    id
}

/// Every event id of a list, following its Link header from `path`.
async fn all_ids(server: &TestServer, path: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut url = path.to_string();
    loop {
        let (status, headers, page) = server.api(&url).await;
        assert_eq!(status, 200, "{url}: {page}");
        ids.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|e| e["eventID"].as_str().unwrap().to_string()),
        );
        match next_cursor(&headers) {
            Some(c) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                url = format!("{path}{sep}cursor={c}");
            }
            None => return ids,
        }
    }
}

const BASE_TS: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

both_backends!(events_page_filter_and_link_neighbours);
async fn events_page_filter_and_link_neighbours(backend: Backend) {
    let server = spawn(backend).await;
    let mut ids = Vec::new();
    for n in 0..7u32 {
        let env = if n % 2 == 0 { "production" } else { "staging" };
        let browser = if n < 3 { "Chrome" } else { "Firefox" };
        let text = if n == 5 {
            "disk quota exceeded"
        } else {
            "timeout"
        };
        ids.push(send(&server, n + 1, BASE_TS + n as i64, env, browser, text).await);
    }
    let (_, _, issues) = server
        .api("/api/0/projects/stackhound/default/issues/")
        .await;
    let issue = issues[0]["id"].as_str().unwrap().to_string();
    let short = issues[0]["shortId"].as_str().unwrap().to_string();
    let events = format!("/api/0/issues/{issue}/events/");

    // Newest first, across pages of 3, no gaps and no repeats; a short id works as well.
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(
        all_ids(&server, &format!("{events}?limit=3")).await,
        newest_first
    );
    assert_eq!(
        all_ids(&server, &format!("/api/0/issues/{short}/events/?limit=2")).await,
        newest_first
    );

    // Filters: environment (as a term and as the parameter), a tag, negation, free text.
    let pick = |ns: &[usize]| -> Vec<String> { ns.iter().rev().map(|&n| ids[n].clone()).collect() };
    let q = |query: &str| {
        let enc = percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC);
        format!("{events}?limit=2&query={enc}")
    };
    assert_eq!(
        all_ids(&server, &q("environment:production")).await,
        pick(&[0, 2, 4, 6])
    );
    assert_eq!(
        all_ids(&server, &format!("{events}?environment=staging")).await,
        pick(&[1, 3, 5])
    );
    assert_eq!(
        all_ids(&server, &q("browser:Chrome")).await,
        pick(&[0, 1, 2])
    );
    assert_eq!(
        all_ids(&server, &q("!browser:Chrome environment:production")).await,
        pick(&[4, 6])
    );
    assert_eq!(all_ids(&server, &q("\"quota exceeded\"")).await, pick(&[5]));
    assert_eq!(
        all_ids(&server, &q("browser:Safari")).await,
        Vec::<String>::new()
    );

    // A summary by default, the stored body with `full=true`.
    let (_, _, page) = server.api(&format!("{events}?limit=1")).await;
    assert!(page[0].get("fingerprint").is_none(), "{page}");
    assert_eq!(page[0]["groupID"], json!(issue));
    let (_, _, page) = server.api(&format!("{events}?limit=1&full=true")).await;
    assert_eq!(page[0]["fingerprint"], json!(["one-group"]), "{page}");

    // One event with its neighbours (oldest first), at both ends null.
    let detail = |which: String| {
        let server = &server;
        let issue = issue.clone();
        async move {
            let (status, _, body) = server
                .api(&format!("/api/0/issues/{issue}/events/{which}/"))
                .await;
            assert_eq!(status, 200, "{which}: {body}");
            body
        }
    };
    let oldest = detail("oldest".into()).await;
    assert_eq!(oldest["eventID"], json!(ids[0]));
    assert_eq!(oldest["previousEventID"], Value::Null);
    assert_eq!(oldest["nextEventID"], json!(ids[1]));
    for which in ["latest", "recommended"] {
        let latest = detail(which.into()).await;
        assert_eq!(latest["eventID"], json!(ids[6]));
        assert_eq!(latest["previousEventID"], json!(ids[5]));
        assert_eq!(latest["nextEventID"], Value::Null);
    }
    let middle = detail(ids[3].clone()).await;
    assert_eq!(middle["previousEventID"], json!(ids[2]));
    assert_eq!(middle["nextEventID"], json!(ids[4]));
    assert_eq!(middle["environment"], json!("staging"));

    // The project's event by id: the same body and neighbours.
    let (status, _, by_project) = server
        .api(&format!(
            "/api/0/projects/stackhound/default/events/{}/",
            ids[3]
        ))
        .await;
    assert_eq!(status, 200, "{by_project}");
    assert_eq!(by_project["groupID"], json!(issue));
    assert_eq!(by_project["previousEventID"], json!(ids[2]));

    // Refusals, each with a detail.
    for (path, want) in [
        (format!("{events}?query=firstSeen:-3x"), 400),
        (format!("{events}?cursor=nonsense"), 400),
        (
            format!("/api/0/issues/{issue}/events/{}/", "f".repeat(32)),
            404,
        ),
        (format!("/api/0/issues/{issue}/events/not-an-id/"), 404),
        ("/api/0/issues/999999/events/".to_string(), 404),
        (
            format!(
                "/api/0/projects/stackhound/default/events/{}/",
                "e".repeat(32)
            ),
            404,
        ),
        (
            format!("/api/0/projects/stackhound/nope/events/{}/", ids[0]),
            404,
        ),
    ] {
        let (status, _, body) = server.api(&path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["detail"].is_string(), "{path}: {body}");
    }
    server.stop().await;
}
