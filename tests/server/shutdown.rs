//! Stopping the real binary under load: after SIGTERM (graceful) and after SIGKILL (no chance
//! to clean up), every event it answered 200 is in the database, and counts match the rows.

use crate::backend::{Backend, TestDb};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stackhound");

both_backends!(multi_thread: sigterm_under_load_loses_no_acknowledged_event);
async fn sigterm_under_load_loses_no_acknowledged_event(backend: Backend) {
    stop_under_load(backend, "TERM").await;
}

both_backends!(multi_thread: sigkill_under_load_loses_no_acknowledged_event);
async fn sigkill_under_load_loses_no_acknowledged_event(backend: Backend) {
    stop_under_load(backend, "KILL").await;
}

async fn stop_under_load(backend: Backend, signal: &str) {
    let db = TestDb::new(backend).await;
    let out = Command::new(BIN)
        .args([
            "project",
            "create",
            "default",
            "--json",
            "--database-url",
            &db.url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "project create on {backend}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let project: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dsn = project["dsn"].as_str().unwrap();
    let key = dsn
        .split("://")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Spawned(
        Command::new(BIN)
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                &db.url,
            ])
            .env("STACKHOUND_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait for the listener (bounded), without sleeping on background work.
    let mut up = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(up, "server did not start");

    let url = format!(
        "http://127.0.0.1:{port}/api/{}/envelope/",
        project["id"].as_str().unwrap()
    );
    let auth = format!("Sentry sentry_key={key}, sentry_version=7");
    let acked = Arc::new(Mutex::new(Vec::<u128>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reached = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for t in 0..16u128 {
        let (url, auth, acked, count, stop, reached) = (
            url.clone(),
            auth.clone(),
            acked.clone(),
            count.clone(),
            stop.clone(),
            reached.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for n in 0..5_000u128 {
                // Requests keep going after the signal: they may be refused, never half-kept.
                let id = (t << 64) | (n + 1);
                let event = format!(
                    r#"{{"message":"shutdown test {}","event_id":"{id:032x}"}}"#,
                    t % 4
                );
                let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n");
                match http
                    .post(&url)
                    .header("x-sentry-auth", &auth)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        acked.lock().unwrap().push(id);
                        if count.fetch_add(1, Ordering::Relaxed) + 1 == 300 {
                            reached.notify_one();
                        }
                    }
                    Ok(_) | Err(_) if stop.load(Ordering::Relaxed) => return,
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), reached.notified())
        .await
        .expect("300 events acknowledged within 60 s");
    stop.store(true, Ordering::Relaxed);
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = server.exited(Duration::from_secs(60)).await;
    // SIGKILL gives no chance to clean up: SQLite recovers the WAL when the database reopens,
    // PostgreSQL ends the killed process's sessions (rolling back what was not committed).
    if signal == "TERM" {
        assert!(status.success(), "server exited with {status}");
    }
    for t in tasks {
        t.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);
    let store = db.open().await;
    let project_id: i64 = project["id"].as_str().unwrap().parse().unwrap();
    for id in &acked {
        assert!(
            store
                .event_exists(project_id, id.to_be_bytes())
                .await
                .unwrap(),
            "acknowledged event {id:032x} is missing"
        );
    }
    // Counts agree with the rows, too: nothing half-written at the stop.
    let total = store.event_total().await.unwrap();
    assert!(total >= acked.len() as i64);
    let filter = stackhound::store::issues::IssueFilter {
        limit: 1000,
        ..Default::default()
    };
    let counted: i64 = store
        .list_issues(project_id, &filter)
        .await
        .unwrap()
        .iter()
        .map(|i| i.event_count)
        .sum();
    assert_eq!(counted, total);
    store.close().await;
}

/// The spawned server; killed if the test ends (or fails) while it still runs.
struct Spawned(std::process::Child);

impl Spawned {
    /// Waits for the server to exit after its signal; fails the test after `within`.
    async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {within:?} of its signal"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
