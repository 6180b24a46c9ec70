//! Prometheus metrics (`/metrics`): the metric names, a registry per server whose hot-path handles are made once, and a process-wide registry for code that has no server at hand.
//!
//! Why a registry per server rather than one global recorder: tests start many servers in one
//! process, and each must count only its own events (a test asserts exact figures). So
//! `app::start` builds a `Metrics` (a `metrics-exporter-prometheus` recorder that is never
//! installed globally) and hands it to the pipeline, the handlers and the workers. Everything
//! the ingest path counts is a `metrics::Counter`/`Histogram` handle registered up front, so
//! counting an event is one atomic increment (a histogram sample is one lock-free push, drained
//! at scrape or upkeep time): no label string is built and no map is searched per event.
//!
//! Code that has no server state (responder and monitor workers) counts through the free
//! functions `action` and `checkin`, or through the `metrics` facade's macros: both land in one
//! process-wide registry (`process()`), which is also installed as the facade's global
//! recorder once (a `OnceLock`). `/metrics` renders the server's registry and then the
//! process-wide one; the two never hold the same metric name. In a process with one server,
//! which is every real deployment, that is simply everything; in a test binary the
//! process-wide counters add up over every server in it.

use crate::protocol::envelope::ItemType;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics::{SharedString, Unit};
use metrics_exporter_prometheus::PrometheusRecorder;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

/// Events answered 200 with an id, by rate-limit category (`error`).
pub const EVENTS_ACCEPTED: &str = "stackhound_events_accepted_total";
/// Ingestion requests refused, by reason (`REASONS`).
pub const EVENTS_REJECTED: &str = "stackhound_events_rejected_total";
/// Envelope items accepted and dropped unprocessed (transactions, sessions, ...), by type.
pub const ITEMS_DROPPED: &str = "stackhound_items_dropped_total";
/// Seconds from a request's arrival on an ingestion route to its answer, whatever it was.
pub const INGEST_LATENCY: &str = "stackhound_ingest_latency_seconds";
/// Events waiting for a writer (set at scrape time).
pub const QUEUE_DEPTH: &str = "stackhound_queue_depth";
/// Ingestion requests admitted and not yet answered, and how many may be (set at scrape time).
pub const IN_FLIGHT: &str = "stackhound_ingest_in_flight";
pub const QUEUE_CAPACITY: &str = "stackhound_ingest_queue_capacity";
/// Bytes of the memory budget in use and in all (set at scrape time).
pub const MEMORY_IN_USE: &str = "stackhound_memory_budget_in_use_bytes";
pub const MEMORY_TOTAL: &str = "stackhound_memory_budget_bytes";
/// 1 while a storage fault episode lasts (set at scrape time).
pub const STORAGE_FAULT: &str = "stackhound_storage_fault";
/// Events per committed write transaction.
pub const BATCH_SIZE: &str = "stackhound_batch_size";
/// Seconds a batch took to write and commit (retries included).
pub const BATCH_COMMIT: &str = "stackhound_batch_commit_seconds";
/// Lifecycle transitions, counted once their transaction committed.
pub const ISSUES_CREATED: &str = "stackhound_issues_created_total";
pub const REGRESSIONS: &str = "stackhound_issue_regressions_total";
pub const UNMUTES: &str = "stackhound_issue_unmutes_total";
/// Alert delivery attempts by outcome (`delivered`, `retry`, `failed`).
pub const ALERTS: &str = "stackhound_alerts_total";
/// Store errors seen by the writer and the workers, by operation.
pub const DB_ERRORS: &str = "stackhound_db_errors_total";
/// Responder action attempts by outcome (process-wide, `action`).
pub const ACTIONS: &str = "stackhound_actions_total";
/// Monitor check-ins by status (process-wide, `checkin`).
pub const CHECKINS: &str = "stackhound_monitor_checkins_total";

/// Every reason label of `EVENTS_REJECTED`.
pub const REASONS: [&str; 13] = [
    "invalid",
    "unauthorized",
    "not_found",
    "timeout",
    "too_large",
    "unsupported",
    "rate_limited",
    "overloaded",
    "storage_fault",
    "store_failed",
    "database",
    "unavailable",
    "other",
];

/// The `EVENTS_REJECTED` reason of a refusal that only has its status (the specific ones,
/// `overloaded`, `storage_fault`, `store_failed` and `database`, are set where they arise).
pub fn reason_of_status(status: u16) -> &'static str {
    match status {
        400 => "invalid",
        401 | 403 => "unauthorized",
        404 => "not_found",
        408 => "timeout",
        413 => "too_large",
        415 => "unsupported",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "other",
    }
}

/// Item types labelled by name in `ITEMS_DROPPED`; any other type counts as `other`, so a
/// client cannot grow the label set.
const ITEM_TYPES: [&str; 13] = [
    "event",
    "transaction",
    "attachment",
    "session",
    "sessions",
    "client_report",
    "check_in",
    "user_report",
    "feedback",
    "span",
    "log",
    "profile",
    "other",
];

fn item_label(ty: &ItemType) -> &'static str {
    match ty {
        ItemType::Other(_) => "other",
        known => ITEM_TYPES
            .iter()
            .find(|t| **t == known.as_str())
            .copied()
            .unwrap_or("other"),
    }
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

static META: Metadata<'static> = Metadata::new("stackhound", Level::INFO, Some("stackhound"));

fn key(name: &'static str, label: Option<(&'static str, &'static str)>) -> Key {
    match label {
        Some((k, v)) => Key::from_parts(name, vec![Label::from_static_parts(k, v)]),
        None => Key::from_static_name(name),
    }
}

/// A recorder whose histograms render as Prometheus histograms (with buckets), not summaries.
fn build_recorder() -> PrometheusRecorder {
    let builder = PrometheusBuilder::new();
    let with_buckets = [
        (INGEST_LATENCY, &LATENCY_BUCKETS[..]),
        (BATCH_COMMIT, &LATENCY_BUCKETS[..]),
        (BATCH_SIZE, &BATCH_BUCKETS[..]),
    ]
    .into_iter()
    .try_fold(builder, |b, (name, buckets)| {
        b.set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
    });
    // The bucket lists above are never empty, the only error `set_buckets_for_metric` has.
    with_buckets
        .unwrap_or_else(|_| PrometheusBuilder::new())
        .build_recorder()
}

/// One server's metrics. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    accepted_error: Counter,
    rejected: Vec<(&'static str, Counter)>,
    dropped: Vec<(&'static str, Counter)>,
    ingest_latency: Histogram,
    queue_depth: Gauge,
    in_flight: Gauge,
    queue_capacity: Gauge,
    memory_in_use: Gauge,
    memory_total: Gauge,
    storage_fault: Gauge,
    batch_size: Histogram,
    batch_commit: Histogram,
    issues_created: Counter,
    regressions: Counter,
    unmutes: Counter,
    alerts: [Counter; 3],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What the scrape sets the gauges to: read from the pipeline and the budget at that moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub queued: usize,
    pub in_flight: usize,
    pub capacity: usize,
    pub memory_in_use: usize,
    pub memory_total: usize,
    pub storage_fault: bool,
}

impl Metrics {
    /// A fresh registry with every hot-path handle registered (and so rendered from the start,
    /// at zero).
    pub fn new() -> Metrics {
        let recorder = build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let counter = |name, label| recorder.register_counter(&key(name, label), &META);
        let gauge = |name| recorder.register_gauge(&key(name, None), &META);
        let histogram = |name| recorder.register_histogram(&key(name, None), &META);
        let inner = Inner {
            accepted_error: counter(EVENTS_ACCEPTED, Some(("category", "error"))),
            rejected: REASONS
                .iter()
                .map(|r| (*r, counter(EVENTS_REJECTED, Some(("reason", r)))))
                .collect(),
            dropped: ITEM_TYPES
                .iter()
                .map(|t| (*t, counter(ITEMS_DROPPED, Some(("type", t)))))
                .collect(),
            ingest_latency: histogram(INGEST_LATENCY),
            queue_depth: gauge(QUEUE_DEPTH),
            in_flight: gauge(IN_FLIGHT),
            queue_capacity: gauge(QUEUE_CAPACITY),
            memory_in_use: gauge(MEMORY_IN_USE),
            memory_total: gauge(MEMORY_TOTAL),
            storage_fault: gauge(STORAGE_FAULT),
            batch_size: histogram(BATCH_SIZE),
            batch_commit: histogram(BATCH_COMMIT),
            issues_created: counter(ISSUES_CREATED, None),
            regressions: counter(REGRESSIONS, None),
            unmutes: counter(UNMUTES, None),
            alerts: ["delivered", "retry", "failed"].map(|o| counter(ALERTS, Some(("outcome", o)))),
            handle,
            recorder,
        };
        Metrics(Arc::new(inner))
    }

    /// An event was accepted (answered with its id).
    pub fn accepted(&self, category: &'static str) {
        if category == "error" {
            self.0.accepted_error.increment(1);
        } else {
            self.counter(EVENTS_ACCEPTED, "category", category)
                .increment(1);
        }
    }

    /// An ingestion request was refused; `reason` is one of `REASONS`.
    pub fn rejected(&self, reason: &'static str) {
        match self.0.rejected.iter().find(|(r, _)| *r == reason) {
            Some((_, c)) => c.increment(1),
            None => self.counter(EVENTS_REJECTED, "reason", reason).increment(1),
        }
    }

    /// An accepted item was dropped unprocessed.
    pub fn dropped(&self, ty: &ItemType) {
        let label = item_label(ty);
        if let Some((_, c)) = self.0.dropped.iter().find(|(t, _)| *t == label) {
            c.increment(1);
        }
    }

    /// How long an ingestion request took, arrival to answer.
    pub fn ingest_latency(&self, elapsed: std::time::Duration) {
        self.0.ingest_latency.record(elapsed.as_secs_f64());
    }

    /// A batch of `events` was written (committed or not) in `elapsed`.
    pub fn batch(&self, events: usize, elapsed: std::time::Duration) {
        self.0.batch_size.record(events as f64);
        self.0.batch_commit.record(elapsed.as_secs_f64());
    }

    /// Transitions of a committed transaction.
    pub fn transitions(&self, created: u64, regressed: u64, unmuted: u64) {
        if created > 0 {
            self.0.issues_created.increment(created);
        }
        if regressed > 0 {
            self.0.regressions.increment(regressed);
        }
        if unmuted > 0 {
            self.0.unmutes.increment(unmuted);
        }
    }

    /// One alert delivery attempt: `delivered`, `retry` (failed, tried again later) or
    /// `failed` (given up).
    pub fn alert(&self, outcome: &'static str) {
        let i = match outcome {
            "delivered" => 0,
            "retry" => 1,
            _ => 2,
        };
        self.0.alerts[i].increment(1);
    }

    /// A store error in `op` (`write_batch`, `unmute`, `retention`, `quota_sync`, ...).
    /// Errors are rare: the labelled counter is looked up each time.
    pub fn db_error(&self, op: &'static str) {
        self.counter(DB_ERRORS, "op", op).increment(1);
    }

    fn counter(&self, name: &'static str, k: &'static str, v: &'static str) -> Counter {
        self.0
            .recorder
            .register_counter(&key(name, Some((k, v))), &META)
    }

    /// Drains histogram samples into their buckets. Without a scrape they would pile up, so
    /// the server runs this every few seconds (`app::start`).
    pub fn upkeep(&self) {
        self.0.handle.run_upkeep();
        process().handle.run_upkeep();
    }

    /// The Prometheus text of this server's registry and then the process-wide one, with the
    /// gauges set to `gauges` first.
    pub fn render(&self, gauges: Gauges) -> String {
        let i = &self.0;
        i.queue_depth.set(gauges.queued as f64);
        i.in_flight.set(gauges.in_flight as f64);
        i.queue_capacity.set(gauges.capacity as f64);
        i.memory_in_use.set(gauges.memory_in_use as f64);
        i.memory_total.set(gauges.memory_total as f64);
        i.storage_fault
            .set(if gauges.storage_fault { 1.0 } else { 0.0 });
        let mut out = i.handle.render();
        out.push_str(&process().handle.render());
        out
    }
}

/// HELP lines for the server's metrics.
fn describe(r: &PrometheusRecorder) {
    let c = |name: &'static str, help: &'static str| {
        r.describe_counter(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        )
    };
    c(
        EVENTS_ACCEPTED,
        "Events accepted (answered with their id), by category.",
    );
    c(EVENTS_REJECTED, "Ingestion requests refused, by reason.");
    c(
        ITEMS_DROPPED,
        "Envelope items accepted and dropped unprocessed, by type.",
    );
    c(ISSUES_CREATED, "Issues created (counted after commit).");
    c(
        REGRESSIONS,
        "Issues regressed by an event (counted after commit).",
    );
    c(
        UNMUTES,
        "Issues unmuted by an event or a timed mute (counted after commit).",
    );
    c(ALERTS, "Alert delivery attempts, by outcome.");
    c(
        DB_ERRORS,
        "Store errors seen by the writer and the workers, by operation.",
    );
    let g = |name: &'static str, help: &'static str| {
        r.describe_gauge(
            KeyName::from_const_str(name),
            None,
            SharedString::const_str(help),
        )
    };
    g(QUEUE_DEPTH, "Events waiting for a writer.");
    g(
        IN_FLIGHT,
        "Ingestion requests admitted and not yet answered.",
    );
    g(
        QUEUE_CAPACITY,
        "Ingestion requests that may be in flight at once.",
    );
    g(MEMORY_IN_USE, "Bytes of the memory budget in use.");
    g(MEMORY_TOTAL, "Bytes of the memory budget.");
    g(
        STORAGE_FAULT,
        "1 while a storage fault lasts (ingestion answers 503).",
    );
    let h = |name: &'static str, unit: Option<Unit>, help: &'static str| {
        r.describe_histogram(
            KeyName::from_const_str(name),
            unit,
            SharedString::const_str(help),
        )
    };
    h(
        INGEST_LATENCY,
        Some(Unit::Seconds),
        "Ingestion requests, arrival to answer.",
    );
    h(
        BATCH_SIZE,
        Some(Unit::Count),
        "Events per write transaction.",
    );
    h(
        BATCH_COMMIT,
        Some(Unit::Seconds),
        "Time to write and commit one batch.",
    );
}

/// The process-wide registry (see the module doc).
struct Process {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

/// Lends the process-wide registry to the `metrics` facade's macros.
struct Shared(Arc<PrometheusRecorder>);

impl Recorder for Shared {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description)
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description)
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.0.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.0.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, metadata)
    }
}

fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| {
        let recorder = Arc::new(build_recorder());
        let handle = recorder.handle();
        recorder.describe_counter(
            KeyName::from_const_str(ACTIONS),
            None,
            SharedString::const_str("Responder action attempts, by outcome (whole process)."),
        );
        recorder.describe_counter(
            KeyName::from_const_str(CHECKINS),
            None,
            SharedString::const_str("Monitor check-ins received, by status (whole process)."),
        );
        // Someone else may have installed a global recorder first: then the facade's macros
        // report there, and the free functions below still count here.
        if metrics::set_global_recorder(Shared(recorder.clone())).is_err() {
            tracing::debug!("a global metrics recorder was already installed");
        }
        Process { recorder, handle }
    })
}

fn process_counter(name: &'static str, k: &'static str, v: &'static str) -> Counter {
    process()
        .recorder
        .register_counter(&key(name, Some((k, v))), &META)
}

/// A bounded label from caller text: `value` if it is one of `known`, else `other`.
fn known_label(known: &[&'static str], value: &str) -> &'static str {
    known
        .iter()
        .find(|k| **k == value)
        .copied()
        .unwrap_or("other")
}

/// One responder action attempt ended: `delivered`, `retry`, `failed` or `cancelled`
/// (anything else counts as `other`).
pub fn action(outcome: &str) {
    let label = known_label(&["delivered", "retry", "failed", "cancelled"], outcome);
    process_counter(ACTIONS, "outcome", label).increment(1);
}

/// One monitor check-in arrived (or was marked by the worker): `ok`, `error`, `in_progress`,
/// `missed` or `timeout` (anything else counts as `other`).
pub fn checkin(status: &str) {
    let label = known_label(&["ok", "error", "in_progress", "missed", "timeout"], status);
    process_counter(CHECKINS, "status", label).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.accepted("error");
        m.rejected("too_large");
        m.ingest_latency(std::time::Duration::from_millis(3));
        m.batch(5, std::time::Duration::from_millis(2));
        m.db_error("write_batch");
        action("delivered");
        checkin("ok");
        let text = m.render(Gauges::default());
        assert!(text.contains("stackhound_events_accepted_total{category=\"error\"} 1"));
        assert!(text.contains("stackhound_events_rejected_total{reason=\"too_large\"} 1"));
        assert!(text.contains("# TYPE stackhound_ingest_latency_seconds histogram"));
        assert!(text.contains("stackhound_batch_size_bucket{le=\"8\"} 1"));
        assert!(text.contains("stackhound_db_errors_total{op=\"write_batch\"} 1"));
        assert!(text.contains("stackhound_actions_total{outcome=\"delivered\"}"));
        assert!(text.contains("stackhound_monitor_checkins_total{status=\"ok\"}"));
    }

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(item_label(&ItemType::Other("x".repeat(50))), "other");
        assert_eq!(item_label(&ItemType::Transaction), "transaction");
        assert_eq!(known_label(&["ok"], "weird"), "other");
        for s in [400, 401, 403, 413, 429, 503, 418] {
            assert!(REASONS.contains(&reason_of_status(s)));
        }
    }
}
