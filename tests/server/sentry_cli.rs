//! The real `sentry-cli` (npm `@sentry/cli`, installed on first use into `target/`) listing,
//! resolving, muting and unresolving issues of a spawned server (also over more than one page
//! of issues), and sending an event.

use crate::backend::Backend;
use crate::helpers::{spawn, TestServer};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

const VERSION: &str = "3.8.0";

/// The sentry-cli binary: `$SENTRY_CLI` if set, else installed once with npm into target/.
fn sentry_cli() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("SENTRY_CLI") {
            return PathBuf::from(bin);
        }
        let prefix = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/sentry-cli");
        let bin = prefix.join("node_modules/.bin/sentry-cli");
        if !bin.exists() {
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(format!("@sentry/cli@{VERSION}"))
                .status()
                .expect("npm is needed to install sentry-cli for this test");
            assert!(status.success(), "npm install @sentry/cli failed");
        }
        bin
    })
    .clone()
}

/// Runs sentry-cli against the server; returns (success, stdout + stderr).
async fn run(server: &TestServer, args: &[&str]) -> (bool, String) {
    let bin = sentry_cli();
    let mut cmd = Command::new(bin);
    cmd.arg("--url")
        .arg(format!("{}/", server.base))
        .arg("--auth-token")
        .arg(&server.token)
        .args(args)
        .env("SENTRY_DISABLE_UPDATE_CHECK", "1")
        .env("SENTRY_DSN", &server.dsn)
        .env_remove("SENTRY_AUTH_TOKEN")
        .env_remove("SENTRY_ORG")
        .env_remove("SENTRY_PROJECT");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn statuses(server: &TestServer) -> Vec<String> {
    let mut issues: Vec<(String, String)> = server
        .all_issues()
        .await
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    issues.sort();
    issues
        .into_iter()
        .map(|(id, s)| format!("{id}={s}"))
        .collect()
}

both_backends!(multi_thread: sentry_cli_sends_lists_and_changes_issues);
async fn sentry_cli_sends_lists_and_changes_issues(backend: Backend) {
    let server = spawn(backend).await;
    // send-event: the CLI's own envelope through the ingestion endpoint.
    for msg in ["cli message one", "cli message two"] {
        let (ok, out) = run(&server, &["send-event", "-m", msg, "--no-environ"]).await;
        assert!(ok, "{out}");
    }
    let issues = server.all_issues().await;
    assert_eq!(issues.len(), 2, "{issues:#?}");
    let o = ["-o", "stackhound", "-p", "default"];
    let (ok, out) = run(&server, &[&["issues", "list"][..], &o].concat()).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("DEFAULT-1") && out.contains("DEFAULT-2"),
        "{out}"
    );
    assert!(out.contains("cli message one"), "{out}");

    let (ok, out) = run(
        &server,
        &[&["issues", "resolve", "--id", "1"][..], &o].concat(),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(statuses(&server).await, vec!["1=resolved", "2=unresolved"]);
    let (ok, out) = run(
        &server,
        &[&["issues", "mute", "--status", "unresolved"][..], &o].concat(),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(statuses(&server).await, vec!["1=resolved", "2=ignored"]);
    let (ok, out) = run(
        &server,
        &[&["issues", "unresolve", "--all"][..], &o].concat(),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(
        statuses(&server).await,
        vec!["1=unresolved", "2=unresolved"]
    );
    let (ok, out) = run(
        &server,
        &[
            &["issues", "resolve", "-n", "--status", "unresolved"][..],
            &o,
        ]
        .concat(),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(statuses(&server).await, vec!["1=resolved", "2=resolved"]);
    let (_, _, detail) = server.api("/api/0/issues/1/").await;
    assert_eq!(detail["statusDetails"], json!({"inNextRelease": true}));
    server.stop().await;
}

/// Every short id in sentry-cli's output, as numbers.
fn short_numbers(out: &str) -> std::collections::BTreeSet<u32> {
    out.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter_map(|w| w.strip_prefix("DEFAULT-")?.parse().ok())
        .collect()
}

async fn status_of(server: &TestServer, id: u32) -> String {
    let (status, _, issue) = server.api(&format!("/api/0/issues/{id}/")).await;
    assert_eq!(status, 200);
    issue["status"].as_str().unwrap().to_string()
}

both_backends!(multi_thread: sentry_cli_follows_pages_of_issues);
async fn sentry_cli_follows_pages_of_issues(backend: Backend) {
    let server = spawn(backend).await;
    // 130 issues: more than one page of 100.
    for n in 1..=130u32 {
        let event =
            json!({"message": format!("paged failure {n}"), "fingerprint": [n.to_string()]});
        let payload = event.to_string();
        let body = format!(
            "{{\"event_id\":\"{n:032x}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
            payload.len()
        );
        let (status, answer) = server.post_envelope(body.into_bytes(), &[]).await;
        assert_eq!(status, 200, "{answer}");
    }
    let o = ["-o", "stackhound", "-p", "default"];
    let (ok, out) = run(&server, &[&["issues", "list"][..], &o].concat()).await;
    assert!(ok, "{out}");
    assert_eq!(
        short_numbers(&out),
        (1..=130).collect(),
        "sentry-cli followed the Link header over both pages: {out}"
    );

    let (ok, out) = run(
        &server,
        &[&["issues", "resolve", "--id", "7", "--id", "120"][..], &o].concat(),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(status_of(&server, 7).await, "resolved");
    assert_eq!(status_of(&server, 120).await, "resolved");
    assert_eq!(status_of(&server, 8).await, "unresolved");
    let (_, _, resolved) = server
        .api("/api/0/projects/stackhound/default/issues/?query=is:resolved")
        .await;
    assert_eq!(resolved.as_array().unwrap().len(), 2);

    // A resolved issue cannot be muted: unresolve everything first.
    let (ok, out) = run(
        &server,
        &[&["issues", "unresolve", "--all"][..], &o].concat(),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(status_of(&server, 7).await, "unresolved");
    assert_eq!(status_of(&server, 120).await, "unresolved");
    let (ok, out) = run(
        &server,
        &[&["issues", "mute", "--id", "120"][..], &o].concat(),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(status_of(&server, 120).await, "ignored");
    let (_, _, muted) = server
        .api("/api/0/projects/stackhound/default/issues/?query=is:muted")
        .await;
    assert_eq!(muted.as_array().unwrap().len(), 1);
    assert_eq!(muted[0]["id"], "120");
    // The default list (unresolved) no longer has it; all 130 are still listed by the CLI.
    let (_, _, unresolved) = server
        .api("/api/0/projects/stackhound/default/issues/")
        .await;
    assert_eq!(unresolved.as_array().unwrap().len(), 100);
    assert!(unresolved
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["id"] != "120"));
    let (ok, out) = run(&server, &[&["issues", "list"][..], &o].concat()).await;
    assert!(ok, "{out}");
    assert_eq!(short_numbers(&out).len(), 130);
    server.stop().await;
}
