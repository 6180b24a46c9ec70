//! `/health` (python-panopticon's format: 200 when every component is healthy, 503 if not) and `/metrics` (Prometheus text).

use super::AppState;
use crate::health::{self, Sources};
use crate::metrics::Gauges;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Every component's health: database, ingest queue, alert and action delivery, scheduler.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "Every component is healthy", body = super::openapi::Health),
        (status = 503, description = "A component is not healthy", body = super::openapi::Health),
    ),
)]
pub async fn health(State(app): State<AppState>) -> Response {
    let sources = Sources {
        store: app.store.clone(),
        clock: app.clock.clone(),
        heartbeats: app.heartbeats.clone(),
        pipeline: app.pipeline.clone(),
        budget: app.budget.clone(),
        queue_capacity: app.limits.queue_capacity,
    };
    let report = health::check(&sources).await;
    let status = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (status, Json(report.body)).into_response();
    // A health answer is about this instant: never served from a cache.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The version of the text format Prometheus expects in the content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(app): State<AppState>) -> Response {
    let gauges = Gauges {
        queued: app.pipeline.queued(),
        in_flight: app.pipeline.in_flight(),
        capacity: app.limits.queue_capacity,
        memory_in_use: app.budget.in_use(),
        memory_total: app.budget.total(),
        storage_fault: app.pipeline.health.fault().is_some(),
    };
    let text = app.pipeline.metrics.render(gauges);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROMETHEUS_TEXT),
        )],
        text,
    )
        .into_response()
}
