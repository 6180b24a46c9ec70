//! Replays every captured real-SDK request (Python brotli and gzip, Rust) byte for byte, as
//! sent, and checks the grouping outcome of each case through the API.

use crate::backend::Backend;
use crate::helpers::{spawn, TestServer};
use std::path::{Path, PathBuf};

const SDKS: [&str; 3] = [
    "python-brotli-2.75.0",
    "python-nobrotli-2.75.0",
    "rust-0.49.5",
];

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sdk-captures")
}

/// Sends each request of one case (in order) with its captured headers and body.bin.
pub(crate) async fn replay(
    server: &TestServer,
    sdk: &str,
    case: &str,
) -> Vec<(u16, serde_json::Value)> {
    let dir = captures_dir().join(sdk).join(case);
    let mut requests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    requests.sort();
    assert!(!requests.is_empty(), "no captures in {}", dir.display());
    let mut answers = Vec::new();
    for req in requests {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(req.join("meta.json")).unwrap()).unwrap();
        let body = std::fs::read(req.join("body.bin")).unwrap();
        // The capture went to project 42; ours has another id but the same key.
        let path = meta["path"]
            .as_str()
            .unwrap()
            .replace("/api/42/", &format!("/api/{}/", server.project_id));
        let mut url = format!("{}{path}", server.base);
        if let Some(q) = meta["query_string"].as_str().filter(|q| !q.is_empty()) {
            url = format!("{url}?{q}");
        }
        let mut builder = server.http.post(url).body(body);
        for pair in meta["headers"].as_array().unwrap() {
            let (name, value) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
            if !["host", "content-length", "transfer-encoding", "connection"]
                .contains(&name.to_ascii_lowercase().as_str())
            {
                builder = builder.header(name, value);
            }
        }
        let resp = builder.send().await.unwrap();
        let status = resp.status().as_u16();
        answers.push((status, resp.json().await.unwrap_or_default()));
    }
    answers
}

/// One case of one SDK on a server of its own: the answers, and the issues afterwards.
async fn case(
    backend: Backend,
    sdk: &str,
    case: &str,
) -> (Vec<(u16, serde_json::Value)>, Vec<serde_json::Value>) {
    let server = spawn(backend).await;
    let answers = replay(&server, sdk, case).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{sdk}/{case}: {body}");
    }
    let issues = server.all_issues().await;
    server.stop().await;
    (answers, issues)
}

fn title(issue: &serde_json::Value) -> &str {
    issue["title"].as_str().unwrap()
}

both_backends!(exception_makes_one_issue_per_sdk);
async fn exception_makes_one_issue_per_sdk(backend: Backend) {
    for sdk in SDKS {
        let (answers, issues) = case(backend, sdk, "exception").await;
        assert_eq!(answers[0].1["id"].as_str().unwrap().len(), 32);
        assert_eq!(issues.len(), 1, "{sdk}");
        assert_eq!(issues[0]["count"], "1");
        let expected = if sdk.starts_with("python") {
            "ValueError: something went wrong in level 2"
        } else {
            "panic: "
        };
        assert!(
            title(&issues[0]).starts_with(expected),
            "{sdk}: {}",
            title(&issues[0])
        );
    }
}

both_backends!(the_same_error_twice_is_one_issue_with_count_two);
async fn the_same_error_twice_is_one_issue_with_count_two(backend: Backend) {
    for sdk in SDKS {
        let (answers, issues) = case(backend, sdk, "twice").await;
        assert_eq!(answers.len(), 2);
        assert_ne!(answers[0].1["id"], answers[1].1["id"]);
        assert_eq!(issues.len(), 1, "{sdk}: {issues:#?}");
        assert_eq!(issues[0]["count"], "2", "{sdk}");
    }
}

both_backends!(chained_exception_is_titled_after_the_outermost);
async fn chained_exception_is_titled_after_the_outermost(backend: Backend) {
    for sdk in SDKS {
        let (_, issues) = case(backend, sdk, "chained").await;
        assert_eq!(issues.len(), 1, "{sdk}");
        let expected = if sdk.starts_with("python") {
            "RuntimeError"
        } else {
            "OuterError"
        };
        assert!(
            title(&issues[0]).starts_with(expected),
            "{sdk}: {}",
            title(&issues[0])
        );
    }
}

both_backends!(messages_and_fingerprints_and_large_events);
async fn messages_and_fingerprints_and_large_events(backend: Backend) {
    for sdk in SDKS {
        let (_, issues) = case(backend, sdk, "message").await;
        assert_eq!(issues.len(), 1, "{sdk}");
        assert_eq!(issues[0]["level"], "warning", "{sdk}");
        assert!(
            title(&issues[0]).contains("message"),
            "{sdk}: {}",
            title(&issues[0])
        );
        let (_, issues) = case(backend, sdk, "fingerprint").await;
        assert_eq!(issues.len(), 1, "{sdk}");
        let (_, issues) = case(backend, sdk, "large").await;
        assert_eq!(issues.len(), 1, "{sdk}");
    }
}

both_backends!(cron_and_transaction_envelopes_are_accepted_without_issues);
async fn cron_and_transaction_envelopes_are_accepted_without_issues(backend: Backend) {
    for sdk in SDKS {
        for c in ["cron", "transaction"] {
            let (answers, issues) = case(backend, sdk, c).await;
            for (_, body) in answers {
                assert_eq!(body, serde_json::json!({}), "{sdk}/{c}");
            }
            assert!(issues.is_empty(), "{sdk}/{c}");
        }
    }
}

both_backends!(all_cases_in_one_project_group_apart);
async fn all_cases_in_one_project_group_apart(backend: Backend) {
    // Every event case of one SDK into one project: exception, chained, message, fingerprint
    // and large are five different issues; twice adds two events to one more.
    for sdk in SDKS {
        let server = spawn(backend).await;
        for c in [
            "exception",
            "chained",
            "message",
            "fingerprint",
            "large",
            "twice",
        ] {
            for (status, body) in replay(&server, sdk, c).await {
                assert_eq!(status, 200, "{sdk}/{c}: {body}");
            }
        }
        let issues = server.all_issues().await;
        let total: u64 = issues
            .iter()
            .map(|i| i["count"].as_str().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 7, "{sdk}");
        // The Rust panics of `exception` and `twice` come from the same panic site in the
        // harness, so they may share an issue; Python's come from different lines.
        let expected = if sdk.starts_with("python") { 6 } else { 5 };
        assert!(
            issues.len() >= expected,
            "{sdk}: {} issues: {:#?}",
            issues.len(),
            issues.iter().map(title).collect::<Vec<_>>()
        );
        server.stop().await;
    }
}
