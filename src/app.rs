//! The running server: its shared state, and `serve` over an already-bound listener.

use crate::clock::Clock;
use crate::config::Limits;
use crate::http;
use crate::pipeline::{KeyCache, Pipeline};
use crate::store::Store;
use std::future::Future;
use tokio::net::TcpListener;

/// What every handler can reach. Cheap to clone (handles and `Arc`s only).
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub pipeline: Pipeline,
    pub keys: KeyCache,
    pub clock: Clock,
    pub limits: Limits,
    /// Base URL clients use, without a trailing slash (DSNs, permalinks, Link headers).
    pub public_url: String,
    pub org: String,
}

/// Settings of one server instance.
#[derive(Clone, Debug)]
pub struct Settings {
    pub public_url: String,
    pub org: String,
    pub limits: Limits,
    pub clock: Clock,
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
/// (each waits for its event's commit), drains the writer and closes the database.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (pipeline, writer) = Pipeline::start(
        store.clone(),
        settings.clock.clone(),
        settings.limits.queue_capacity,
        settings.limits.max_batch,
    );
    let state = AppState {
        keys: KeyCache::new(store.clone(), settings.clock.clone()),
        store: store.clone(),
        pipeline,
        clock: settings.clock,
        limits: settings.limits,
        public_url: settings.public_url,
        org: settings.org,
    };
    let checkpointer = tokio::spawn(checkpoint_loop(store.clone()));
    let counters = state.pipeline.counters.clone();
    let app = http::router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    // The router (and with it every Pipeline handle) is gone: the writer drains and ends.
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "writer task failed");
    }
    checkpointer.abort();
    store.close().await;
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

/// Keeps the WAL short by checkpointing off the writer's path twice a second.
async fn checkpoint_loop(store: Store) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = store.checkpoint().await {
            tracing::warn!(error = %e, "checkpoint failed");
        }
    }
}
