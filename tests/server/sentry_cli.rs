//! The real `sentry-cli` (npm `@sentry/cli`, installed on first use into `target/`) listing,
//! resolving, muting and unresolving issues of a spawned server, and sending an event.

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
