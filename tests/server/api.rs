//! The `/api/0/` read API: Sentry's shapes, token auth, filters and Link pagination.

use crate::backend::Backend;
use crate::helpers::{spawn, TestServer};
use serde_json::json;

fn envelope(event_id: &str, event: serde_json::Value) -> Vec<u8> {
    let payload = event.to_string();
    format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    )
    .into_bytes()
}

async fn send_message(server: &TestServer, n: u32, text: &str) -> String {
    let id = format!("{n:032x}");
    let (status, body) = server
        .post_envelope(
            envelope(&id, json!({"message": text, "level": "info", "platform": "python", "tags": {"n": n.to_string()}})),
            &[],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id);
    id
}

both_backends!(issue_shapes_and_auth);
async fn issue_shapes_and_auth(backend: Backend) {
    let server = spawn(backend).await;
    let id = send_message(&server, 1, "cache miss storm").await;

    let resp = server
        .http
        .get(format!(
            "{}/api/0/projects/stackhound/default/issues/",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["detail"].is_string());
    let resp = server
        .http
        .get(format!("{}/api/0/issues/1/", server.base))
        .bearer_auth("sntryu_0000000000000000000000000000000000000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let (status, headers, list) = server
        .api("/api/0/projects/stackhound/default/issues/")
        .await;
    assert_eq!(status, 200);
    assert!(headers.get("link").is_some());
    let issue = &list[0];
    assert_eq!(issue["id"], "1");
    assert_eq!(issue["shortId"], "DEFAULT-1");
    assert_eq!(issue["title"], "cache miss storm");
    assert_eq!(issue["count"], "1");
    assert_eq!(issue["status"], "unresolved");
    assert_eq!(issue["level"], "info");
    assert_eq!(
        issue["project"],
        json!({"id": server.project_id.to_string(), "name": "Default", "slug": "default"})
    );
    assert_eq!(issue["metadata"]["title"], "cache miss storm");
    assert!(issue["firstSeen"].as_str().unwrap().ends_with('Z'));
    assert!(issue["lastSeen"].is_string());
    assert!(issue["culprit"].is_string());

    let (status, _, detail) = server.api("/api/0/issues/1/").await;
    assert_eq!(status, 200);
    assert_eq!(detail["shortId"], "DEFAULT-1");
    assert!(detail["activity"].is_array());
    let (status, _, by_short) = server.api("/api/0/issues/DEFAULT-1/").await;
    assert_eq!(status, 200);
    assert_eq!(by_short["id"], "1");
    let (status, _, missing) = server.api("/api/0/issues/999/").await;
    assert_eq!(status, 404);
    assert!(missing["detail"].is_string());

    let (status, _, events) = server.api("/api/0/issues/1/events/").await;
    assert_eq!(status, 200);
    assert_eq!(events[0]["eventID"], id);
    assert_eq!(events[0]["groupID"], "1");
    assert!(events[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "n" && t["value"] == "1"));
    let (status, _, latest) = server.api("/api/0/issues/1/events/latest/").await;
    assert_eq!(status, 200);
    assert_eq!(latest["message"], "cache miss storm");
    assert_eq!(latest["platform"], "python");
    assert_eq!(latest["id"], id);
    let (status, _, by_id) = server.api(&format!("/api/0/issues/1/events/{id}/")).await;
    assert_eq!(status, 200);
    assert_eq!(by_id["eventID"], id);

    // An absent query means is:unresolved; is:resolved has nothing yet; an unknown org is 404.
    let (_, _, resolved) = server
        .api("/api/0/projects/stackhound/default/issues/?query=is:resolved")
        .await;
    assert_eq!(resolved, json!([]));
    let (status, _, _) = server.api("/api/0/projects/nope/default/issues/").await;
    assert_eq!(status, 404);
    let (status, _, _) = server.api("/api/0/projects/stackhound/nope/issues/").await;
    assert_eq!(status, 404);
    server.stop().await;
}

both_backends!(pagination_follows_link_headers_newest_first);
async fn pagination_follows_link_headers_newest_first(backend: Backend) {
    let server = spawn(backend).await;
    for n in 0..7 {
        send_message(
            &server,
            n + 1,
            &format!(
                "distinct failure number {}",
                ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"][n as usize]
            ),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let (status, headers, page) = server
            .api(&format!(
                "/api/0/projects/stackhound/default/issues/?query=&limit=3&cursor={cursor}"
            ))
            .await;
        assert_eq!(status, 200);
        seen.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|i| i["lastSeen"].as_str().unwrap().to_string()),
        );
        assert!(headers.contains_key("link"));
        match crate::helpers::next_cursor(&headers) {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest lastSeen first");
    // Free words filter titles.
    let (_, _, hits) = server
        .api("/api/0/projects/stackhound/default/issues/?query=gamma")
        .await;
    assert_eq!(hits.as_array().unwrap().len(), 1);
    server.stop().await;
}

both_backends!(resent_event_ids_count_once);
async fn resent_event_ids_count_once(backend: Backend) {
    let server = spawn(backend).await;
    for _ in 0..3 {
        send_message(&server, 42, "retry storm").await;
    }
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["count"], "1");
    assert_eq!(server.store.event_total().await.unwrap(), 1);
    server.stop().await;
}

both_backends!(store_endpoint_accepts_json_and_base64_zlib);
async fn store_endpoint_accepts_json_and_base64_zlib(backend: Backend) {
    use base64::Engine;
    use std::io::Write;
    let server = spawn(backend).await;
    let url = format!("{}/api/{}/store/", server.base, server.project_id);
    let event = json!({"message": "legacy store event", "timestamp": "2011-05-02T17:41:36"});
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(event.to_string().as_bytes()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
    for body in [event.to_string().into_bytes(), b64.into_bytes()] {
        let resp = server
            .http
            .post(&url)
            .header("x-sentry-auth", server.auth_header())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(answer["id"].as_str().unwrap().len(), 32);
    }
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["count"], "2");
    // A timestamp without a zone is UTC.
    assert_eq!(issues[0]["firstSeen"], "2011-05-02T17:41:36.000000Z");
    server.stop().await;
}
