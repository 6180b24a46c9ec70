//! The official Rust `sentry` crate as a real client: errors, chains, messages, fingerprints.

use crate::backend::Backend;
use crate::helpers::spawn;
use sentry::protocol::Level;
use std::sync::Arc;
use std::time::Duration;

/// A hub of its own per test, so tests running in parallel do not share SDK state.
pub(crate) fn client(dsn: &str) -> (Arc<sentry::Client>, sentry::Hub) {
    let mut options = sentry::ClientOptions::new();
    options.dsn = Some(dsn.parse().unwrap());
    options.attach_stacktrace = true;
    // What `sentry::init` does, minus the global hub: transport, integrations, contexts.
    let client = Arc::new(sentry::Client::from(sentry::apply_defaults(options)));
    let hub = sentry::Hub::new(Some(client.clone()), Arc::new(sentry::Scope::default()));
    (client, hub)
}

#[derive(Debug)]
struct Chain(&'static str, Option<Box<Chain>>);

impl std::fmt::Display for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Chain {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|e| e as _)
    }
}

fn parse_error(input: &str) -> std::num::ParseIntError {
    input.parse::<u32>().unwrap_err()
}

both_backends!(multi_thread: rust_sdk_events_group_into_issues);
async fn rust_sdk_events_group_into_issues(backend: Backend) {
    let server = spawn(backend).await;
    let (client, hub) = client(&server.dsn);
    let ids = tokio::task::spawn_blocking(move || {
        let mut ids = Vec::new();
        // The same error twice from one line.
        for input in ["x", "y"] {
            ids.push(hub.capture_error(&parse_error(input)));
        }
        // A chain: outermost last in the payload, and the title's exception.
        let chain = Chain(
            "outer failure",
            Some(Box::new(Chain(
                "middle",
                Some(Box::new(Chain("root cause", None))),
            ))),
        );
        ids.push(hub.capture_error(&chain));
        ids.push(hub.capture_message("disk almost full on db-7", Level::Warning));
        hub.with_scope(
            |scope| scope.set_fingerprint(Some(&["billing-failure"])),
            || ids.push(hub.capture_message("payment declined for order 991", Level::Error)),
        );
        assert!(client.flush(Some(Duration::from_secs(10))));
        ids
    })
    .await
    .unwrap();
    assert_eq!(ids.len(), 5);

    let issues = server.all_issues().await;
    let by_title = |prefix: &str| {
        issues
            .iter()
            .filter(|i| i["title"].as_str().unwrap().starts_with(prefix))
            .collect::<Vec<_>>()
    };
    assert_eq!(issues.len(), 4, "{issues:#?}");
    let parse = by_title("ParseIntError");
    assert_eq!(parse.len(), 1, "{issues:#?}");
    assert_eq!(parse[0]["count"], "2");
    let chained = by_title("Chain: outer failure");
    assert_eq!(chained.len(), 1, "{issues:#?}");
    let message = by_title("disk almost full");
    assert_eq!(message.len(), 1);
    assert_eq!(message[0]["level"], "warning");
    let custom = by_title("payment declined");
    assert_eq!(custom.len(), 1);

    // The event the SDK reported is the one stored, under the id it was answered with.
    let issue_id = parse[0]["id"].as_str().unwrap();
    let (status, _, latest) = server
        .api(&format!("/api/0/issues/{issue_id}/events/latest/"))
        .await;
    assert_eq!(status, 200);
    let latest_id = latest["eventID"].as_str().unwrap();
    assert!(ids.iter().any(|id| id.simple().to_string() == latest_id));
    assert_eq!(latest["exception"]["values"][0]["type"], "ParseIntError");
    server.stop().await;
}

both_backends!(multi_thread: custom_fingerprints_split_and_join);
async fn custom_fingerprints_split_and_join(backend: Backend) {
    let server = spawn(backend).await;
    let (client, hub) = client(&server.dsn);
    tokio::task::spawn_blocking(move || {
        for (fp, msg) in [("a", "same text"), ("b", "same text"), ("a", "other text")] {
            hub.with_scope(
                |scope| scope.set_fingerprint(Some(&[fp])),
                || hub.capture_message(msg, Level::Error),
            );
        }
        assert!(client.flush(Some(Duration::from_secs(10))));
    })
    .await
    .unwrap();
    let issues = server.all_issues().await;
    let mut counts: Vec<String> = issues
        .iter()
        .map(|i| i["count"].as_str().unwrap().to_string())
        .collect();
    counts.sort();
    assert_eq!(counts, vec!["1", "2"], "{issues:#?}");
    server.stop().await;
}
