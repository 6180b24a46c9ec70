//! Health of the running server: the heartbeats of its background workers, and `check`, which runs the components `/health` reports in python-panopticon's format.
//!
//! Each component is checked concurrently under its own timeout, and a check that times out
//! is an unhealthy component that says so: a database that does not answer must not make
//! `/health` itself hang. The format: `{"service_healthy": bool, "timestamp": RFC 3339 UTC
//! with milliseconds, "components": {name: {"healthy": bool, "response_time": seconds, ...}}}`.

use crate::budget::MemoryBudget;
use crate::clock::Clock;
use crate::pipeline::Pipeline;
use crate::store::health::{Backlog, Queue};
use crate::store::{Backend, Store};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one component's check may take before it is reported unhealthy.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A worker that has not finished a round for this long is stuck (unless it said otherwise
/// with `Heartbeats::expect`).
pub const DEFAULT_ALLOWED_GAP: Duration = Duration::from_secs(30);
/// A due alert or action waiting longer than this means delivery is not keeping up.
pub const MAX_OVERDUE: Duration = Duration::from_secs(600);

/// When each background worker last finished a round (µs since the epoch, from the clock):
/// `/health` reports a worker whose last tick is too old as unhealthy. Workers beat about once
/// a second, so a mutex is cheap here; nothing on the ingest path touches it.
#[derive(Clone, Debug, Default)]
pub struct Heartbeats(Arc<Mutex<Beats>>);

#[derive(Debug, Default, Clone)]
struct Beats {
    last: BTreeMap<&'static str, i64>,
    /// Workers started in this process: (started at, longest allowed gap), both µs.
    expected: BTreeMap<&'static str, (i64, i64)>,
    /// Whether the periodic workers run at all (off in tests on a manual clock, where nothing
    /// ticks by itself and ages mean nothing).
    judged: bool,
}

impl Heartbeats {
    /// Heartbeats of a process whose periodic workers run (`workers_on`) or not.
    pub fn new(workers_on: bool) -> Heartbeats {
        Heartbeats(Arc::new(Mutex::new(Beats {
            judged: workers_on,
            ..Beats::default()
        })))
    }

    /// Records that the worker `name` finished a round at `now_us`.
    pub fn beat(&self, name: &'static str, now_us: i64) {
        if let Ok(mut m) = self.0.lock() {
            m.last.insert(name, now_us);
        }
    }

    /// Every worker's last round, by name.
    pub fn last(&self) -> BTreeMap<&'static str, i64> {
        self.0.lock().map(|m| m.last.clone()).unwrap_or_default()
    }

    /// Declares a worker started at `since_us` that finishes a round at least every `allowed`:
    /// it is reported (and judged) before its first beat too, and with its own allowance (a
    /// loop with a long period, like retention's, needs more than the default).
    pub fn expect(&self, name: &'static str, since_us: i64, allowed: Duration) {
        if let Ok(mut m) = self.0.lock() {
            m.expected.insert(name, (since_us, micros(allowed)));
        }
    }

    fn snapshot(&self) -> Beats {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// What the checks look at: handles of the running server.
#[derive(Clone)]
pub struct Sources {
    pub store: Store,
    pub clock: Clock,
    pub heartbeats: Heartbeats,
    pub pipeline: Pipeline,
    pub budget: MemoryBudget,
    /// Ingestion requests that may be in flight at once (`Limits::queue_capacity`).
    pub queue_capacity: usize,
}

/// The outcome: the status to answer (healthy or not) and the JSON.
#[derive(Debug, Clone)]
pub struct Report {
    pub healthy: bool,
    pub body: Value,
}

/// One component's verdict and details (besides `healthy` and `response_time`).
type Verdict = (bool, Map<String, Value>);

/// Runs every check concurrently, each under `CHECK_TIMEOUT`.
pub async fn check(src: &Sources) -> Report {
    let now_us = src.clock.now().timestamp_micros();
    let (database, ingest_queue, alert_delivery, action_delivery, scheduler) = tokio::join!(
        timed(database(&src.store)),
        timed(async { ingest_queue(src) }),
        timed(delivery(&src.store, Queue::Alerts, now_us)),
        timed(delivery(&src.store, Queue::Actions, now_us)),
        timed(async { scheduler(&src.heartbeats, now_us) }),
    );
    let components = [
        ("database", database),
        ("ingest_queue", ingest_queue),
        ("alert_delivery", alert_delivery),
        ("action_delivery", action_delivery),
        ("scheduler", scheduler),
    ];
    let healthy = components.iter().all(|(_, (ok, _))| *ok);
    let components: Map<String, Value> = components
        .into_iter()
        .map(|(name, (_, body))| (name.to_string(), body))
        .collect();
    let timestamp = src.clock.now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    Report {
        healthy,
        body: json!({
            "service_healthy": healthy,
            "timestamp": timestamp,
            "components": components,
        }),
    }
}

/// Runs one check under the timeout and renders it: `healthy`, `response_time` (seconds),
/// then its details.
async fn timed(check: impl Future<Output = Verdict>) -> (bool, Value) {
    let started = Instant::now();
    let (healthy, details) = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(v) => v,
        Err(_) => {
            let mut details = Map::new();
            details.insert(
                "error".into(),
                json!(format!("timed out after {}s", CHECK_TIMEOUT.as_secs())),
            );
            (false, details)
        }
    };
    let mut body = Map::new();
    body.insert("healthy".into(), json!(healthy));
    body.insert(
        "response_time".into(),
        json!(started.elapsed().as_secs_f64()),
    );
    body.extend(details);
    (healthy, Value::Object(body))
}

/// Reachable (a probe the way a new connection gets in) and every migration applied.
async fn database(store: &Store) -> Verdict {
    let mut d = Map::new();
    let backend = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    d.insert("backend".into(), json!(backend));
    match store.probe().await {
        Ok(m) => {
            d.insert(
                "migrations".into(),
                json!({"applied": m.applied, "latest": m.known, "complete": m.complete()}),
            );
            if !m.complete() {
                d.insert(
                    "error".into(),
                    json!(format!(
                        "migrations not applied: at version {} of {}",
                        m.applied, m.known
                    )),
                );
            }
            (m.complete(), d)
        }
        Err(e) => {
            d.insert("error".into(), json!(e.to_string()));
            (false, d)
        }
    }
}

/// Depth and capacity of the ingest queue, the memory budget, and the storage-fault state:
/// unhealthy while a fault lasts (ingestion answers 503 then). A full queue is load, not a
/// fault: it is reported (`saturated`) but stays healthy.
fn ingest_queue(src: &Sources) -> Verdict {
    let in_flight = src.pipeline.in_flight();
    let fault = src.pipeline.health.fault();
    let mut d = Map::new();
    d.insert("queued".into(), json!(src.pipeline.queued()));
    d.insert("in_flight".into(), json!(in_flight));
    d.insert("capacity".into(), json!(src.queue_capacity));
    d.insert("saturated".into(), json!(in_flight >= src.queue_capacity));
    d.insert(
        "memory".into(),
        json!({"in_use": src.budget.in_use(), "total": src.budget.total()}),
    );
    let storage = match &fault {
        None => json!({"fault": false}),
        Some(f) => json!({
            "fault": true,
            "error": f.error,
            "failed_batches": f.failed_batches,
            "seconds": f.since.elapsed().as_secs_f64(),
        }),
    };
    d.insert("storage".into(), storage);
    (fault.is_none(), d)
}

/// Backlog of a delivery queue: unhealthy when the oldest due row is more than `MAX_OVERDUE`
/// late (the worker is not keeping up, or not running).
async fn delivery(store: &Store, queue: Queue, now_us: i64) -> Verdict {
    let hour_ago = now_us - 3_600_000_000;
    let mut d = Map::new();
    match store.backlog(queue, now_us, hour_ago).await {
        Ok(Backlog {
            due,
            oldest_due_us,
            failed_since,
        }) => {
            let overdue = oldest_due_us.map(|t| (now_us - t).max(0) as f64 / 1e6);
            d.insert("backlog".into(), json!(due));
            d.insert("oldest_due_seconds".into(), json!(overdue));
            d.insert("failed_last_hour".into(), json!(failed_since));
            let healthy = overdue.is_none_or(|s| s <= MAX_OVERDUE.as_secs_f64());
            if !healthy {
                d.insert(
                    "error".into(),
                    json!(format!(
                        "the oldest due delivery is more than {}s overdue",
                        MAX_OVERDUE.as_secs()
                    )),
                );
            }
            (healthy, d)
        }
        Err(e) => {
            d.insert("error".into(), json!(e.to_string()));
            (false, d)
        }
    }
}

/// Each worker's last round, in seconds ago: unhealthy when one is older than its allowance.
/// A process without periodic workers (a manual clock in tests) reports the ticks it has and
/// judges none.
fn scheduler(heartbeats: &Heartbeats, now_us: i64) -> Verdict {
    let beats = heartbeats.snapshot();
    let mut names: Vec<&'static str> = beats.last.keys().copied().collect();
    names.extend(beats.expected.keys().copied());
    names.sort_unstable();
    names.dedup();
    let mut workers = Map::new();
    let mut stale = Vec::new();
    for name in names {
        let expected = beats.expected.get(name);
        let allowed = expected.map_or(micros(DEFAULT_ALLOWED_GAP), |e| e.1);
        let last = beats.last.get(name).copied();
        // Before its first round a worker is as old as its start.
        let since = last.or(expected.map(|e| e.0)).unwrap_or(now_us);
        let age = (now_us - since).max(0);
        let ok = !beats.judged || age <= allowed;
        if !ok {
            stale.push(name);
        }
        workers.insert(
            name.to_string(),
            json!({
                "healthy": ok,
                "last_tick_seconds_ago": last.map(|l| (now_us - l).max(0) as f64 / 1e6),
                "allowed_seconds": allowed as f64 / 1e6,
            }),
        );
    }
    let mut d = Map::new();
    d.insert("workers".into(), Value::Object(workers));
    if !beats.judged {
        d.insert(
            "note".into(),
            json!("periodic workers are off in this process: their ticks are not judged"),
        );
    }
    if !stale.is_empty() {
        d.insert(
            "error".into(),
            json!(format!("no recent round from: {}", stale.join(", "))),
        );
    }
    (stale.is_empty(), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_worker_is_unhealthy_only_when_workers_run() {
        let on = Heartbeats::new(true);
        on.expect("retention", 0, Duration::from_secs(180));
        on.beat("unmute", 0);
        let (ok, d) = scheduler(&on, 60_000_000);
        assert!(!ok, "{d:?}");
        assert_eq!(d["workers"]["retention"]["healthy"], json!(true));
        assert_eq!(d["workers"]["unmute"]["healthy"], json!(false));
        assert_eq!(d["workers"]["unmute"]["last_tick_seconds_ago"], json!(60.0));
        on.beat("unmute", 59_000_000);
        assert!(scheduler(&on, 60_000_000).0);

        let off = Heartbeats::new(false);
        off.beat("checkpoint", 0);
        let (ok, d) = scheduler(&off, 3_600_000_000);
        assert!(ok);
        assert!(d.contains_key("note"));
    }

    #[test]
    fn last_keeps_its_shape() {
        let h = Heartbeats::default();
        h.beat("alerts", 5);
        assert_eq!(h.last().get("alerts"), Some(&5));
    }
}
