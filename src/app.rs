//! The running server: its shared state, and `serve` over an already-bound listener.

use crate::alert::deliver::SmtpSettings;
use crate::alert::worker::AlertWorker;
use crate::budget::MemoryBudget;
use crate::clock::Clock;
use crate::config::Limits;
use crate::http;
use crate::pipeline::{KeyCache, Pipeline};
use crate::project_grouping::GroupingCache;
use crate::quota::Quotas;
use crate::store::retention::{RetentionDefaults, STEP_ROWS};
use crate::store::{Backend, Store};
use std::future::Future;
use tokio::net::TcpListener;

pub use crate::http::AppState;

/// Oversized bodies read and discarded at once after their 413, at most; past this the
/// connection is just closed.
const MAX_DRAINS: usize = 64;

/// Settings of one server instance.
#[derive(Clone, Debug)]
pub struct Settings {
    pub public_url: String,
    pub org: String,
    pub limits: Limits,
    pub clock: Clock,
    /// Run the periodic workers (off in tests that drive them with a manual clock).
    pub background: bool,
    /// Where email alerts go.
    pub smtp: SmtpSettings,
    /// Writer tasks committing ingest batches side by side (PostgreSQL; SQLite has one).
    pub writers: usize,
    /// How long a claimed alert stays hidden from other processes (its lease).
    pub alert_lease: std::time::Duration,
    /// Event retention for projects without their own setting.
    pub retention: RetentionDefaults,
    /// Connection cap and timeouts of the HTTP server.
    pub conn: crate::http::serve::ConnLimits,
    /// How long a project hashes with its previous grouping configuration too, after an
    /// upgrade of the scheme or a change of its rules.
    pub grouping_transition: std::time::Duration,
}

impl Settings {
    /// Defaults for a server at `public_url` on the system clock, workers on.
    pub fn new(public_url: String) -> Settings {
        Settings {
            public_url,
            org: "stackhound".into(),
            limits: Limits::default(),
            clock: Clock::System,
            background: true,
            smtp: SmtpSettings::default(),
            writers: 4,
            alert_lease: std::time::Duration::from_secs(120),
            retention: RetentionDefaults::default(),
            conn: crate::http::serve::ConnLimits::default(),
            grouping_transition: std::time::Duration::from_secs(30 * 86_400),
        }
    }
}

/// A started server: the state handlers share, and the tasks it owns.
pub struct Server {
    pub state: AppState,
    writer: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
    conn: crate::http::serve::ConnLimits,
}

/// Starts the writer and, when `settings.background` is set, the periodic workers (WAL
/// checkpoints, timed unmutes, alert delivery, retention). Tests with a manual clock leave the
/// periodic workers off and call their steps (`run_due`, `retention_step`) themselves after
/// moving the clock.
pub fn start(store: Store, settings: Settings) -> Server {
    let writers = match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => settings.writers.max(1),
    };
    let (pipeline, writer) = Pipeline::start(
        store.clone(),
        settings.clock.clone(),
        settings.limits.queue_capacity,
        settings.limits.max_batch,
        writers,
        crate::metrics::Metrics::new(),
    );
    let state = AppState::new(crate::http::AppShared {
        keys: KeyCache::new(store.clone(), settings.clock.clone()),
        grouping: GroupingCache::new(
            store.clone(),
            settings.clock.clone(),
            settings.grouping_transition,
        ),
        budget: MemoryBudget::new(settings.limits.memory_budget, settings.limits.budget_wait),
        quotas: Quotas::default(),
        drains: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_DRAINS)),
        store: store.clone(),
        pipeline,
        clock: settings.clock,
        limits: settings.limits,
        public_url: settings.public_url,
        org: settings.org,
        heartbeats: crate::health::Heartbeats::new(settings.background),
    });
    let mut background = Vec::new();
    // Histogram samples wait in lock-free buckets until drained: without a scrape they
    // would pile up, so they are drained every few seconds, workers on or off.
    background.push(tokio::spawn(metrics_upkeep(state.pipeline.metrics.clone())));
    let workers = Workers {
        heartbeats: state.heartbeats.clone(),
        metrics: state.pipeline.metrics.clone(),
        clock: state.clock.clone(),
    };
    if store.backend() == Backend::Sqlite {
        workers.expect("checkpoint", 30);
        background.push(tokio::spawn(checkpoint_loop(
            store.clone(),
            workers.clone(),
        )));
    }
    if settings.background {
        workers.expect("unmute", 30);
        background.push(tokio::spawn(unmute_loop(
            store.clone(),
            state.clock.clone(),
            workers.clone(),
        )));
        // A 60 s loop whose round may take a while: three periods.
        workers.expect("retention", 180);
        background.push(tokio::spawn(retention_loop(
            store.clone(),
            state.clock.clone(),
            settings.retention,
            workers.clone(),
        )));
        workers.expect("quota", 30);
        background.push(tokio::spawn(quota_loop(
            state.quotas.clone(),
            store.clone(),
            state.clock.clone(),
            workers.clone(),
        )));
        // Cron monitors: missed deadlines, timeouts, incident events and resolves.
        workers.expect("monitors", 30);
        background.push(tokio::spawn(
            crate::monitor::worker::MonitorWorker::new(
                monitor_server(&state),
                crate::alert::worker::instance_id(),
            )
            .run(std::future::pending()),
        ));
        workers.expect("responders", 30);
        match crate::responder::worker::ResponderWorker::new(
            store.clone(),
            state.clock.clone(),
            settings.smtp.clone(),
            state.public_url.clone(),
            state.org.clone(),
            state.heartbeats.clone(),
        ) {
            Ok(mut worker) => {
                worker.policy.lease = settings.alert_lease;
                background.push(tokio::spawn(worker.run(std::future::pending())))
            }
            Err(e) => tracing::error!(error = %e, "responder actions are off: no HTTP client"),
        }
        match AlertWorker::new(
            store,
            state.clock.clone(),
            settings.smtp,
            state.public_url.clone(),
            state.org.clone(),
        ) {
            Ok(mut worker) => {
                worker.policy.lease = settings.alert_lease;
                worker.metrics = state.pipeline.metrics.clone();
                worker.heartbeats = state.heartbeats.clone();
                workers.expect("alerts", 30);
                background.push(tokio::spawn(worker.run(std::future::pending())))
            }
            Err(e) => tracing::error!(error = %e, "alert delivery is off: no HTTP client"),
        }
    }
    Server {
        state,
        writer,
        background,
        conn: settings.conn,
    }
}

impl Server {
    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// (each waits for its event's commit), drains the writer and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let result =
            http::serve::serve(listener, http::router(self.state), self.conn, shutdown).await;
        for task in &self.background {
            task.abort();
        }
        // Everything queued before this is written; then the writer ends.
        state.pipeline.stop().await;
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "writer task failed");
        }
        state.store.close().await;
        let counters = &state.pipeline.counters;
        use std::sync::atomic::Ordering::Relaxed;
        tracing::info!(
            stored = counters.events_stored.load(Relaxed),
            duplicates = counters.events_duplicate.load(Relaxed),
            batches = counters.batches.load(Relaxed),
            overloaded = counters.overloaded.load(Relaxed),
            dropped_items = ?counters.dropped_items(),
            "ingestion totals"
        );
        result
    }
}

/// What the monitor worker needs of a running server (tests build their workers with it).
pub fn monitor_server(state: &AppState) -> crate::monitor::worker::Server {
    crate::monitor::worker::Server {
        store: state.store.clone(),
        clock: state.clock.clone(),
        grouping: state.grouping.clone(),
        pipeline: state.pipeline.clone(),
        heartbeats: state.heartbeats.clone(),
    }
}

/// Starts and serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    start(store, settings).serve(listener, shutdown).await
}

/// Lifts time-limited mutes when their time has come, even if no event arrives. Every process
/// runs this; the store claims each due issue for one of them.
async fn unmute_loop(store: Store, clock: Clock, workers: Workers) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.unmute_due(clock.now().timestamp_micros()).await {
            Ok(n) => workers.metrics.transitions(0, 0, n as u64),
            Err(e) => {
                workers.metrics.db_error("unmute");
                tracing::warn!(error = %e, "timed unmute failed");
            }
        }
        workers.beat("unmute");
    }
}

/// Shares this process's quota counts with the others through the database, once a second.
async fn quota_loop(quotas: Quotas, store: Store, clock: Clock, workers: Workers) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = quotas.sync(&store, clock.now().timestamp()).await {
            workers.metrics.db_error("quota_sync");
            tracing::warn!(error = %e, "quota sync failed");
        }
        workers.beat("quota");
    }
}

/// Deletes events past their project's retention once a minute (and at start-up), then what
/// deleted issues and projects left (`Store::purge_step`), in steps of
/// `STEP_ROWS` rows until a step finds nothing. Every process may run it: on PostgreSQL each
/// step takes rows no other process holds. Between steps it pauses briefly: on SQLite the
/// ingest writer waits for the lock by polling (up to 100 ms apart), and a step taken again at
/// once could keep it waiting through several steps.
async fn retention_loop(store: Store, clock: Clock, defaults: RetentionDefaults, workers: Workers) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut deleted = 0;
        loop {
            let now = clock.now().timestamp_micros();
            match store.retention_step(now, &defaults, STEP_ROWS).await {
                Ok(0) => break,
                Ok(n) => deleted += n,
                Err(e) => {
                    workers.metrics.db_error("retention");
                    tracing::warn!(error = %e, "retention step failed");
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Then what deleted issues and projects left (`store::purge`), in the same slices; at
        // most 1,000 steps (~500,000 rows, about a minute) a round, so the round still reports
        // to `/health` in time while a big project is purged.
        let mut purged = 0;
        for _ in 0..1_000 {
            match store.purge_step(STEP_ROWS).await {
                Ok(0) => break,
                Ok(n) => purged += n,
                Err(e) => {
                    workers.metrics.db_error("purge");
                    tracing::warn!(error = %e, "purge step failed");
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if purged > 0 {
            tracing::info!(
                rows = purged,
                "purge: deleted rows of deleted issues and projects"
            );
        }
        workers.beat("retention");
        if deleted > 0 {
            tracing::info!(
                deleted,
                "retention: deleted events past their project's limits"
            );
        }
    }
}

/// Keeps the WAL short by checkpointing off the writer's path twice a second (SQLite only).
async fn checkpoint_loop(store: Store, workers: Workers) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = store.checkpoint().await {
            workers.metrics.db_error("checkpoint");
            tracing::warn!(error = %e, "checkpoint failed");
        }
        workers.beat("checkpoint");
    }
}

/// What the periodic loops report to: their heartbeats (`/health`) and metrics.
#[derive(Clone)]
struct Workers {
    heartbeats: crate::health::Heartbeats,
    metrics: crate::metrics::Metrics,
    clock: Clock,
}

impl Workers {
    /// The loop `name` starts now and finishes a round at least every `secs` seconds.
    fn expect(&self, name: &'static str, secs: u64) {
        let now = self.clock.now().timestamp_micros();
        self.heartbeats
            .expect(name, now, std::time::Duration::from_secs(secs));
    }

    fn beat(&self, name: &'static str) {
        self.heartbeats
            .beat(name, self.clock.now().timestamp_micros());
    }
}

/// Drains histogram samples into their buckets every few seconds (see `Metrics::upkeep`).
async fn metrics_upkeep(metrics: crate::metrics::Metrics) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        metrics.upkeep();
    }
}
