//! API tokens: `stackhound token create --scope ... / list / revoke` (the real binary on the
//! server's database) and `/api/0/api-tokens/`; a read-only token refused writes with 403
//! naming the scope it lacks; a revoked token refused with 401.

use crate::backend::Backend;
use crate::helpers::{spawn, spawn_manual, TestServer};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_stackhound");

/// Runs the binary on the server's database: (success, stdout, stderr).
fn cli(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", server.database_url())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A request with `token` (None: no Authorization header): status and JSON body.
async fn call(
    server: &TestServer,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .http
        .request(method, format!("{}{path}", server.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn send_event(server: &TestServer) {
    let payload = json!({"message": "token test", "level": "error"}).to_string();
    let body = format!(
        "{{\"event_id\":\"{:032x}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        7,
        payload.len()
    );
    let (status, _) = server.post_envelope(body.into_bytes(), &[]).await;
    assert_eq!(status, 200);
}

both_backends!(cli_tokens_carry_their_scopes_and_can_be_revoked);
async fn cli_tokens_carry_their_scopes_and_can_be_revoked(backend: Backend) {
    // Periodic workers off, as in the other tests that run the binary on a live database.
    let server = spawn_manual(backend).await;
    send_event(&server).await;
    let issues = server.all_issues().await;
    let issue = issues[0]["id"].as_str().unwrap().to_owned();

    let (ok, out, err) = cli(
        &server,
        &[
            "token",
            "create",
            "--scope",
            "event:read",
            "--scope",
            "project:read",
            "--label",
            "readonly",
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let ro = created["token"].as_str().unwrap().to_owned();
    assert!(ro.starts_with("sntryu_"));
    assert_eq!(created["scopes"], json!(["event:read", "project:read"]));
    assert_eq!(created["label"], "readonly");
    let ro_id = created["id"].as_str().unwrap().to_owned();

    // Without --json: the token alone on stdout, the scopes on stderr.
    let (ok, out, err) = cli(&server, &["token", "create"]);
    assert!(ok, "{err}");
    assert!(
        out.trim().starts_with("sntryu_") && out.trim().lines().count() == 1,
        "{out}"
    );
    assert!(err.contains("org:admin"), "{err}");
    let (ok, _, err) = cli(&server, &["token", "create", "--scope", "event:destroy"]);
    assert!(!ok);
    assert!(err.contains("event:destroy"), "{err}");

    let (ok, out, err) = cli(&server, &["token", "list", "--json"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ro_id.as_str())
        .unwrap();
    assert_eq!(mine["label"], "readonly");
    assert_eq!(mine["hint"], &ro[ro.len() - 4..]);
    assert_eq!(mine["scopes"], json!(["event:read", "project:read"]));
    assert!(!out.contains(&ro), "a list never shows a token");
    let (ok, out, _) = cli(&server, &["token", "list"]);
    assert!(
        ok && out.contains("readonly\tevent:read project:read"),
        "{out}"
    );

    // Reads work; writes are refused naming the scope they need.
    let ro = Some(ro.as_str());
    let (status, _) = call(
        &server,
        ro,
        reqwest::Method::GET,
        &format!("/api/0/issues/{issue}/"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &server,
        ro,
        reqwest::Method::PUT,
        &format!("/api/0/issues/{issue}/"),
        Some(json!({"status": "resolved"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("event:write"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        ro,
        reqwest::Method::POST,
        "/api/0/organizations/stackhound/projects/",
        Some(json!({"name": "nope"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("project:write"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        ro,
        reqwest::Method::DELETE,
        &format!("/api/0/issues/{issue}/"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("event:admin"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        ro,
        reqwest::Method::GET,
        "/api/0/api-tokens/",
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("org:admin"),
        "{body}"
    );

    // Revoked: 401 from the next request on.
    let (ok, _, err) = cli(&server, &["token", "revoke", &ro_id]);
    assert!(ok, "{err}");
    let (status, _) = call(
        &server,
        ro,
        reqwest::Method::GET,
        &format!("/api/0/issues/{issue}/"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (ok, _, _) = cli(&server, &["token", "revoke", &ro_id]);
    assert!(!ok);
    server.stop().await;
}

both_backends!(api_tokens_are_made_listed_and_deleted_in_sentry_shapes);
async fn api_tokens_are_made_listed_and_deleted_in_sentry_shapes(backend: Backend) {
    let server = spawn(backend).await;
    let admin = Some(server.token.as_str());
    let (status, t) = call(
        &server,
        admin,
        reqwest::Method::POST,
        "/api/0/api-tokens/",
        Some(json!({"name": "ci", "scopes": ["project:read", "event:read", "event:read"]})),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    let token = t["token"].as_str().unwrap().to_owned();
    assert_eq!(t["name"], "ci");
    assert_eq!(t["scopes"], json!(["event:read", "project:read"]));
    assert_eq!(t["tokenLastCharacters"], &token[token.len() - 4..]);
    assert!(t["dateCreated"].is_string());
    let id = t["id"].as_str().unwrap().to_owned();

    let (status, body) = call(
        &server,
        admin,
        reqwest::Method::POST,
        "/api/0/api-tokens/",
        Some(json!({"scopes": ["event:read", "member:read"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("member:read"),
        "{body}"
    );
    let (status, _) = call(
        &server,
        admin,
        reqwest::Method::POST,
        "/api/0/api-tokens/",
        Some(json!({"scopes": "event:read"})),
    )
    .await;
    assert_eq!(status, 400);

    let (status, list) = call(
        &server,
        admin,
        reqwest::Method::GET,
        "/api/0/api-tokens/",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let ci = list.iter().find(|x| x["id"] == id.as_str()).unwrap();
    assert_eq!(ci["scopes"], json!(["event:read", "project:read"]));
    assert!(ci.get("token").is_none());

    let new = Some(token.as_str());
    let (status, _) = call(
        &server,
        new,
        reqwest::Method::GET,
        "/api/0/organizations/stackhound/projects/",
        None,
    )
    .await;
    assert_eq!(status, 200);
    // It cannot make tokens (org:admin), so it can grant nothing.
    let (status, _) = call(
        &server,
        new,
        reqwest::Method::POST,
        "/api/0/api-tokens/",
        Some(json!({"scopes": ["event:read"]})),
    )
    .await;
    assert_eq!(status, 403);

    let path = format!("/api/0/api-tokens/{id}/");
    let (status, _) = call(&server, admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&server, admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &server,
        new,
        reqwest::Method::GET,
        "/api/0/organizations/stackhound/projects/",
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &server,
        None,
        reqwest::Method::GET,
        "/api/0/api-tokens/",
        None,
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await;
}
