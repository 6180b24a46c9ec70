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
    serde_json::from_str(stackhound::http::openapi::document()).unwrap()
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

/// On every path of the document, each method it does not list is refused with 405 (on both
/// backends).
#[tokio::test]
#[ignore = "until the router is built from the annotations (OpenApiRouter): some served \
            methods (the GETs of api.rs, ...) are not annotated yet"]
async fn methods_the_document_does_not_list_are_405() {
    methods_not_listed_are_405(Backend::Sqlite).await;
    if crate::backend::available(Backend::Postgres) {
        methods_not_listed_are_405(Backend::Postgres).await;
    }
}

async fn methods_not_listed_are_405(backend: Backend) {
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

/// Every path `src/http/mod.rs` registers is in the document.
#[tokio::test]
#[ignore = "until the router is built from the annotations (OpenApiRouter): the handlers of \
            api.rs, projects.rs, tokens.rs, tags.rs and events.rs are not annotated yet"]
async fn every_registered_path_is_documented() {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"))
            .unwrap();
    let doc = document();
    let paths = doc["paths"].as_object().unwrap();
    let mut missing = Vec::new();
    for literal in source.split('"').skip(1).step_by(2) {
        if literal == "/api/"
            || !(literal.starts_with("/api")
                || literal.starts_with("/health")
                || literal == "/readyz"
                || literal == "/metrics")
        {
            continue;
        }
        let canonical = if literal.starts_with("/api/")
            && !literal.ends_with('/')
            && !literal.ends_with(".json")
        {
            format!("{literal}/")
        } else {
            literal.to_string()
        };
        if !paths.contains_key(&canonical) {
            missing.push(canonical);
        }
    }
    assert!(missing.is_empty(), "not in the document: {missing:?}");
}

both_backends!(schemathesis_finds_no_server_error_and_no_schema_violation);
/// A property-based run of `schemathesis` against a server with data (an issue with an event,
/// a monitor, a channel, a responder): every documented operation, a bounded number of
/// examples each, checked for 5xx answers and for answers that violate the document.
async fn schemathesis_finds_no_server_error_and_no_schema_violation(backend: Backend) {
    let bin = python_tools().await;
    let server = spawn(backend).await;
    let event_id = seed(&server).await;
    server
        .add_channel(json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook"}))
        .await;
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
    std::fs::write(&config, toml).unwrap();
    let max_examples = std::env::var("STACKHOUND_SCHEMATHESIS_EXAMPLES").unwrap_or("25".into());
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking({
        let base = server.base.clone();
        let token = server.token.clone();
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
    server.stop().await;
}
