//! The OpenAPI document (`/api/0/openapi.json`): it validates (`openapi-spec-validator`), every operation it lists is served and other methods are 405, and `schemathesis` finds no 5xx and no answer that violates it.

use crate::backend::Backend;
use crate::helpers::{spawn, TestServer, KEY};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The venv's `bin` directory with the Python tools of `tests/requirements.txt`: the one of
/// `STACKHOUND_TEST_PYTHON`, or `target/py-venv` (made and filled here when the tools are
/// missing, once per test binary).
async fn python_tools() -> PathBuf {
    static VENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = match std::env::var("STACKHOUND_TEST_PYTHON") {
        Ok(p) => PathBuf::from(p),
        Err(_) => root.join("target/py-venv/bin/python"),
    };
    let _once = VENV.lock().await;
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import schemathesis, openapi_spec_validator"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        if !python.exists() {
            let venv = python.parent().and_then(Path::parent).unwrap();
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(venv)
                .status()
                .unwrap();
            assert!(made.success(), "python3 -m venv failed");
        }
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(root.join("tests/requirements.txt"))
            .status()
            .unwrap();
        assert!(
            pip.success(),
            "pip install of tests/requirements.txt failed"
        );
    }
    python.parent().unwrap().to_path_buf()
}

fn shown(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The document as the server builds it.
fn document() -> Value {
    serde_json::from_str(&stackhound::http::openapi::document()).unwrap()
}

/// The document is valid OpenAPI (the validator of the OpenAPI Initiative's schemas).
#[tokio::test]
async fn the_document_validates() {
    let bin = python_tools().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, stackhound::http::openapi::document()).unwrap();
    let out = Command::new(bin.join("openapi-spec-validator"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", shown(&out));
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    // Canonical paths: with the slash under /api/ (but the document's own name), none else.
    for path in doc["paths"].as_object().unwrap().keys() {
        if path.starts_with("/api/") && path != "/api/0/openapi.json" {
            assert!(path.ends_with('/'), "{path}");
        } else {
            assert!(!path.ends_with('/'), "{path}");
        }
    }
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// A value for each path parameter that names something the server has (or a plausible
/// one): the answer must come from the handler, not the router's fallback.
fn fill(path: &str, server: &TestServer, event_id: &str) -> String {
    let pid = server.project_id.to_string();
    [
        ("{org}", "stackhound"),
        ("{project}", "default"),
        ("{project_id}", pid.as_str()),
        ("{issue}", "1"),
        ("{event}", event_id),
        ("{id}", "1"),
        ("{slug}", "nightly"),
        ("{monitor_slug}", "nightly"),
        ("{sentry_key}", KEY),
        ("{key}", "level"),
    ]
    .iter()
    .fold(path.to_string(), |p, (name, value)| p.replace(name, value))
}

async fn request(server: &TestServer, method: &str, path: &str) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let resp = server
        .http
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(&server.token)
        .header("x-sentry-auth", server.auth_header())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// An event, so that issue 1 and its event exist; returns the event id.
async fn seed(server: &TestServer) -> String {
    let event_id = "0123456789abcdef0123456789abcdef";
    let envelope = format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\"}}\n{{\"message\":\"seeded\",\"level\":\"error\"}}\n"
    );
    let (status, body) = server.post_envelope(envelope.into_bytes(), &[]).await;
    assert_eq!(status, 200, "{body}");
    let checkin = server
        .http
        .post(format!(
            "{}/api/{}/cron/nightly/{KEY}/",
            server.base, server.project_id
        ))
        .json(&json!({"status": "ok", "monitor_config": {"schedule": {"type": "crontab", "value": "0 3 * * *"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(checkin.status(), 202);
    event_id.to_string()
}

both_backends!(every_documented_operation_is_served);
/// Every operation of the document reaches its handler: whatever it answers, it is not the
/// router's fallback (`{"detail": "not found"}`) nor a 405; and the server serves the same
/// document.
async fn every_documented_operation_is_served(backend: Backend) {
    let server = spawn(backend).await;
    let event_id = seed(&server).await;
    let doc = document();
    let resp = server
        .http
        .get(format!("{}/api/0/openapi.json", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), doc);
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = fill(path, &server, &event_id);
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let (status, body) = request(&server, method, &url).await;
            assert_ne!(status, 405, "{method} {url}: {body}");
            assert!(
                !(status == 404 && body == json!({"detail": "not found"})),
                "{method} {url} fell through to the router's fallback"
            );
        }
    }
    server.stop().await;
}

both_backends!(requests_are_routed_by_their_canonical_path);
/// Each route is registered once: a path under `/api/` without its slash, or a probe with
/// one, is rewritten before routing, and the query string survives.
async fn requests_are_routed_by_their_canonical_path(backend: Backend) {
    let server = spawn(backend).await;
    seed(&server).await;
    let (status, _, body) = server
        .api("/api/0/projects/stackhound/default/monitors")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["slug"], "nightly");
    // The query reaches the handler: `limit` is read (and refused in `{"detail"}`).
    let (status, _, body) = server
        .api("/api/0/projects/stackhound/default/monitors/nightly/checkins?limit=x")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    let (status, _, body) = server
        .api("/api/0/projects/stackhound/default/monitors/nightly/checkins?limit=1")
        .await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)));
    for probe in [
        "/healthz/",
        "/readyz/",
        "/health/",
        "/metrics/",
        "/api/0/openapi.json/",
    ] {
        let resp = server
            .http
            .get(format!("{}{probe}", server.base))
            .send()
            .await
            .unwrap();
        // Routed: answered by the probe (`/health` may say 503), not the fallback.
        assert!(![404, 405].contains(&resp.status().as_u16()), "{probe}");
    }
    // Ingestion without the slash, key in the query.
    let resp = server
        .http
        .post(format!(
            "{}/api/{}/store?sentry_key={KEY}&sentry_version=7",
            server.base, server.project_id
        ))
        .json(&json!({"message": "no slash"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

both_backends!(methods_the_document_does_not_list_are_405);
/// On every path of the document, each method it does not list is refused with 405.
async fn methods_the_document_does_not_list_are_405(backend: Backend) {
    let server = spawn(backend).await;
    let event_id = seed(&server).await;
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = fill(path, &server, &event_id);
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let (status, body) = request(&server, method, &url).await;
            assert_eq!(status, 405, "{method} {url} is not documented: {body}");
        }
    }
    server.stop().await;
}

/// Every route the server serves, as (method, canonical path): what `http::routes` registers.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/{project_id}/envelope/"),
    ("post", "/api/{project_id}/store/"),
    ("get", "/api/{project_id}/cron/{monitor_slug}/{sentry_key}/"),
    (
        "post",
        "/api/{project_id}/cron/{monitor_slug}/{sentry_key}/",
    ),
    ("get", "/api/{project_id}/cron/{monitor_slug}/"),
    ("post", "/api/{project_id}/cron/{monitor_slug}/"),
    ("get", "/api/0/"),
    ("get", "/api/0/openapi.json"),
    ("get", "/api/0/projects/{org}/{project}/issues/"),
    ("put", "/api/0/projects/{org}/{project}/issues/"),
    ("get", "/api/0/organizations/{org}/issues/"),
    ("put", "/api/0/organizations/{org}/issues/"),
    ("get", "/api/0/issues/{issue}/"),
    ("put", "/api/0/issues/{issue}/"),
    ("delete", "/api/0/issues/{issue}/"),
    ("get", "/api/0/organizations/{org}/issues/{issue}/"),
    ("put", "/api/0/organizations/{org}/issues/{issue}/"),
    ("delete", "/api/0/organizations/{org}/issues/{issue}/"),
    ("get", "/api/0/issues/{issue}/activities/"),
    ("get", "/api/0/issues/{issue}/events/"),
    ("get", "/api/0/issues/{issue}/events/{event}/"),
    ("get", "/api/0/issues/{issue}/tags/"),
    ("get", "/api/0/issues/{issue}/tags/{key}/"),
    ("get", "/api/0/issues/{issue}/tags/{key}/values/"),
    ("get", "/api/0/issues/{issue}/hashes/"),
    ("get", "/api/0/issues/{issue}/actions/"),
    ("get", "/api/0/organizations/{org}/projects/"),
    ("post", "/api/0/organizations/{org}/projects/"),
    ("get", "/api/0/projects/{org}/{project}/"),
    ("put", "/api/0/projects/{org}/{project}/"),
    ("delete", "/api/0/projects/{org}/{project}/"),
    ("get", "/api/0/projects/{org}/{project}/keys/"),
    ("post", "/api/0/projects/{org}/{project}/keys/"),
    ("get", "/api/0/projects/{org}/{project}/keys/{key}/"),
    ("put", "/api/0/projects/{org}/{project}/keys/{key}/"),
    ("delete", "/api/0/projects/{org}/{project}/keys/{key}/"),
    ("get", "/api/0/api-tokens/"),
    ("post", "/api/0/api-tokens/"),
    ("delete", "/api/0/api-tokens/{id}/"),
    ("get", "/api/0/projects/{org}/{project}/events/{event}/"),
    (
        "get",
        "/api/0/projects/{org}/{project}/events/{event}/grouping-info/",
    ),
    ("get", "/api/0/projects/{org}/{project}/alert-channels/"),
    ("post", "/api/0/projects/{org}/{project}/alert-channels/"),
    (
        "delete",
        "/api/0/projects/{org}/{project}/alert-channels/{id}/",
    ),
    ("get", "/api/0/projects/{org}/{project}/alert-deliveries/"),
    ("get", "/api/0/projects/{org}/{project}/responders/"),
    ("post", "/api/0/projects/{org}/{project}/responders/"),
    ("get", "/api/0/projects/{org}/{project}/responders/{id}/"),
    ("put", "/api/0/projects/{org}/{project}/responders/{id}/"),
    ("delete", "/api/0/projects/{org}/{project}/responders/{id}/"),
    ("get", "/api/0/projects/{org}/{project}/monitors/"),
    ("get", "/api/0/projects/{org}/{project}/monitors/{slug}/"),
    (
        "get",
        "/api/0/projects/{org}/{project}/monitors/{slug}/checkins/",
    ),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/health"),
    ("get", "/metrics"),
];

/// The document lists exactly the routes above, each once, and nothing else. The router is
/// built from the same annotations (`http::routes`, `OpenApiRouter`), so this is also the
/// router's table; the tests above check it against the running server.
#[test]
fn the_document_lists_every_route_and_nothing_else() {
    let doc = document();
    let mut listed = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            listed.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    let mut expected: Vec<String> = ROUTES
        .iter()
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    listed.sort();
    expected.sort();
    let missing: Vec<&String> = expected.iter().filter(|r| !listed.contains(r)).collect();
    let extra: Vec<&String> = listed.iter().filter(|r| !expected.contains(r)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not in the document: {missing:?}; in the document only: {extra:?}"
    );
    // The router registers routes only through the annotations.
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"))
            .unwrap();
    for bypass in [".route(", ".route_service(", ".nest(", ".nest_service("] {
        assert!(!source.contains(bypass), "src/http/mod.rs calls {bypass}");
    }
}

/// POSTs `body` to an `/api/0/` path with the server's token; the answer must be 201.
async fn create(server: &TestServer, path: &str, body: Value) -> Value {
    let resp = server
        .http
        .post(format!("{}{path}", server.base))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "POST {path}");
    resp.json().await.unwrap()
}

/// A new issue with one event; returns its id.
async fn throwaway_issue(server: &TestServer, title: &str) -> String {
    let envelope =
        format!("{{}}\n{{\"type\":\"event\"}}\n{{\"message\":\"{title}\",\"level\":\"error\"}}\n");
    let (status, body) = server.post_envelope(envelope.into_bytes(), &[]).await;
    assert_eq!(status, 200, "{body}");
    let issues = server.all_issues().await;
    let issue = issues.iter().find(|i| i["title"] == title).unwrap();
    issue["id"].as_str().unwrap().to_string()
}

both_backends!(schemathesis_finds_no_server_error_and_no_schema_violation);
/// A property-based run of `schemathesis` against a server with data (issues with events, a
/// monitor, channels, keys, tokens, projects): every documented operation, a bounded number
/// of examples each, checked for 5xx answers and for answers that violate the document.
/// Schemathesis has a token of its own, and every destructive operation (the `DELETE`s, and
/// the `PUT`s of a project or a key, which can rename it or turn it off) is pointed at
/// throwaway objects made for it, so the run never takes away what the others need.
async fn schemathesis_finds_no_server_error_and_no_schema_violation(backend: Backend) {
    let bin = python_tools().await;
    let server = spawn(backend).await;
    let event_id = seed(&server).await;
    server
        .add_channel(json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}))
        .await;
    let own = create(
        &server,
        "/api/0/api-tokens/",
        json!({"name": "schemathesis"}),
    )
    .await;
    let own_token = own["token"].as_str().unwrap().to_string();
    let spare_token = create(&server, "/api/0/api-tokens/", json!({"name": "spare"})).await;
    let spare_channel = create(
        &server,
        "/api/0/projects/stackhound/default/alert-channels/",
        json!({"kind": "slack", "url": "http://127.0.0.1:9/slack"}),
    )
    .await;
    let spare_key = create(
        &server,
        "/api/0/projects/stackhound/default/keys/",
        json!({"name": "spare"}),
    )
    .await;
    for slug in ["spare-put", "spare-delete"] {
        create(
            &server,
            "/api/0/organizations/stackhound/projects/",
            json!({"name": slug, "slug": slug}),
        )
        .await;
    }
    let spare_issue = throwaway_issue(&server, "spare issue").await;
    let spare_org_issue = throwaway_issue(&server, "spare org issue").await;
    let dir = tempfile::tempdir().unwrap();
    // Values that name existing things, drawn half of the time (generated ones the other
    // half), so that requests get past the lookups and still probe them.
    let config = dir.path().join("schemathesis.toml");
    let pid = server.project_id;
    let named = [
        ("org", "stackhound".to_string()),
        ("project", "default".to_string()),
        ("project_id", pid.to_string()),
        ("issue", "1".to_string()),
        ("event", event_id.clone()),
        ("id", "1".to_string()),
        ("slug", "nightly".to_string()),
        ("monitor_slug", "nightly".to_string()),
        ("sentry_key", KEY.to_string()),
        ("key", "level".to_string()),
    ];
    let mut toml = String::from("[dictionaries]\n");
    for (name, value) in &named {
        toml.push_str(&format!("{name} = {{ values = [\"{value}\"] }}\n"));
    }
    toml.push_str("\n[parameters]\n");
    for (name, _) in &named {
        toml.push_str(&format!(
            "\"path.{name}\" = {{ dictionary = \"{name}\", probability = 0.5 }}\n"
        ));
    }
    // The destructive operations, each on its throwaway object.
    let fixed: [(&str, &[(&str, &str)]); 8] = [
        (
            "DELETE /api/0/api-tokens/{id}/",
            &[("id", spare_token["id"].as_str().unwrap())],
        ),
        (
            "DELETE /api/0/projects/{org}/{project}/alert-channels/{id}/",
            &[("id", spare_channel["id"].as_str().unwrap())],
        ),
        (
            "PUT /api/0/projects/{org}/{project}/keys/{key}/",
            &[("key", spare_key["id"].as_str().unwrap())],
        ),
        (
            "DELETE /api/0/projects/{org}/{project}/keys/{key}/",
            &[("key", spare_key["id"].as_str().unwrap())],
        ),
        (
            "PUT /api/0/projects/{org}/{project}/",
            &[("project", "spare-put")],
        ),
        (
            "DELETE /api/0/projects/{org}/{project}/",
            &[("project", "spare-delete")],
        ),
        (
            "DELETE /api/0/issues/{issue}/",
            &[("issue", spare_issue.as_str())],
        ),
        (
            "DELETE /api/0/organizations/{org}/issues/{issue}/",
            &[("issue", spare_org_issue.as_str())],
        ),
    ];
    for (name, params) in fixed {
        toml.push_str(&format!("\n[[operations]]\ninclude-name = \"{name}\"\n"));
        toml.push_str("parameters = { ");
        let list: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("\"path.{k}\" = \"{v}\""))
            .collect();
        toml.push_str(&list.join(", "));
        toml.push_str(" }\n");
    }
    std::fs::write(&config, toml).unwrap();
    let max_examples = std::env::var("STACKHOUND_SCHEMATHESIS_EXAMPLES").unwrap_or("25".into());
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking({
        let base = server.base.clone();
        let token = own_token.clone();
        let auth = server.auth_header();
        let dir = dir.path().to_path_buf();
        move || {
            Command::new(bin.join("schemathesis"))
                .arg("--config-file")
                .arg(&config)
                .arg("--no-color")
                .args(["run", &format!("{base}/api/0/openapi.json")])
                .args(["--checks", "not_a_server_error,response_schema_conformance"])
                .args(["--max-examples", &max_examples])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .args(["--header", &format!("X-Sentry-Auth: {auth}")])
                .args(["--request-timeout", "10"])
                // Hypothesis keeps its example database in the working directory.
                .current_dir(&dir)
                .env("NO_COLOR", "1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    eprintln!("schemathesis ran for {:?}", started.elapsed());
    assert!(out.status.success(), "{}", shown(&out));
    // The destructive operations ran, on their throwaway objects only: the spare project and
    // issue are gone, the server's project, issue and schemathesis's token are still there.
    let (status, _, _) = server.api("/api/0/projects/stackhound/spare-delete/").await;
    assert_eq!(status, 404);
    let (status, _, _) = server.api(&format!("/api/0/issues/{spare_issue}/")).await;
    assert_eq!(status, 404);
    let (status, _, _) = server.api("/api/0/projects/stackhound/default/").await;
    assert_eq!(status, 200);
    let (status, _, _) = server.api("/api/0/issues/1/").await;
    assert_eq!(status, 200);
    let resp = server
        .http
        .get(format!("{}/api/0/", server.base))
        .bearer_auth(&own_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop().await;
}
