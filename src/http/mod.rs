//! The only module that knows axum: routes, extractors, and error-to-response mapping.

pub mod api;
pub mod events;
pub mod grouping;
pub mod health;
pub mod ingest;
pub mod lifecycle;
pub mod monitors;
pub mod openapi;
pub mod projects;
pub mod responders;
pub mod serve;
pub mod sink;
pub mod tags;
pub mod tokens;

use crate::budget::MemoryBudget;
use crate::clock::Clock;
use crate::config::Limits;
use crate::pipeline::{KeyCache, Pipeline};
use crate::project_grouping::GroupingCache;
use crate::quota::Quotas;
use crate::store::Store;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::cors::{Any, CorsLayer};

/// What every handler can reach. Cheap to clone (handles and `Arc`s only).
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub pipeline: Pipeline,
    pub keys: KeyCache,
    /// Each project's grouping configuration (and transition), parsed.
    pub grouping: GroupingCache,
    /// Bytes all in-flight ingestion requests hold together.
    pub budget: MemoryBudget,
    pub quotas: Quotas,
    /// Background drains of oversized bodies (see `ingest::refuse_oversized`), bounded.
    pub drains: Arc<Semaphore>,
    pub clock: Clock,
    pub limits: Limits,
    /// Base URL clients use, without a trailing slash (DSNs, permalinks, Link headers).
    pub public_url: String,
    pub org: String,
    /// The background workers' last rounds, for `/health`.
    pub heartbeats: crate::health::Heartbeats,
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    let ingest = with_slash(
        Router::new(),
        "/api/{project_id}/envelope",
        post(ingest::envelope),
    );
    let ingest =
        with_slash(ingest, "/api/{project_id}/store", post(ingest::store)).layer(ingest_cors());
    let api = Router::new();
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/issues",
        get(api::list_issues).put(lifecycle::bulk_update),
    );
    let api = with_slash(
        api,
        "/api/0/issues/{issue}",
        get(api::issue_detail)
            .put(lifecycle::update_issue)
            .delete(projects::delete_issue),
    );
    let api = with_slash(
        api,
        "/api/0/issues/{issue}/activities",
        get(lifecycle::activities),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}",
        get(lifecycle::get_project)
            .put(lifecycle::update_project)
            .delete(projects::delete_project),
    );
    let api = with_slash(
        api,
        "/api/0/organizations/{org}/projects",
        get(projects::list_projects).post(projects::create_project),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/keys",
        get(projects::list_keys).post(projects::create_key),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/keys/{key}",
        get(projects::get_key)
            .put(projects::update_key)
            .delete(projects::delete_key),
    );
    let api = with_slash(
        api,
        "/api/0/api-tokens",
        get(tokens::list).post(tokens::create),
    );
    let api = with_slash(
        api,
        "/api/0/api-tokens/{id}",
        axum::routing::delete(tokens::delete),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/alert-channels",
        get(lifecycle::list_channels).post(lifecycle::create_channel),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/alert-channels/{id}",
        axum::routing::delete(lifecycle::delete_channel),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/alert-deliveries",
        get(lifecycle::deliveries),
    );
    let api = with_slash(
        api,
        "/api/0/organizations/{org}/issues/{issue}",
        get(api::org_issue_detail)
            .put(lifecycle::update_org_issue)
            .delete(projects::delete_org_issue),
    );
    let api = with_slash(
        api,
        "/api/0/organizations/{org}/issues",
        get(api::org_list_issues).put(api::org_bulk_update),
    );
    let api = with_slash(
        api,
        "/api/0/issues/{issue}/events",
        get(events::issue_events),
    );
    let api = with_slash(api, "/api/0/issues/{issue}/tags", get(tags::issue_tags));
    let api = with_slash(
        api,
        "/api/0/issues/{issue}/tags/{key}",
        get(tags::issue_tag),
    );
    let api = with_slash(
        api,
        "/api/0/issues/{issue}/tags/{key}/values",
        get(tags::issue_tag_values),
    );
    let api = with_slash(
        api,
        "/api/0/issues/{issue}/hashes",
        get(grouping::issue_hashes),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/events/{event}/grouping-info",
        get(grouping::grouping_info),
    );
    let api = with_slash(
        api,
        "/api/0/issues/{issue}/events/{event}",
        get(events::issue_event),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/events/{event}",
        get(events::project_event),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/responders",
        get(responders::list).post(responders::create),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/responders/{id}",
        get(responders::get)
            .put(responders::update)
            .delete(responders::delete),
    );
    let api = with_slash(
        api,
        "/api/0/issues/{issue}/actions",
        get(responders::issue_actions),
    );
    // Cron monitors: the SDK-facing check-in endpoint (key in the path, or in a header or
    // the query) and the monitor reads.
    let api = with_slash(
        api,
        "/api/{project_id}/cron/{monitor_slug}/{sentry_key}",
        get(monitors::cron_with_key).post(monitors::cron_with_key),
    );
    let api = with_slash(
        api,
        "/api/{project_id}/cron/{monitor_slug}",
        get(monitors::cron_without_key).post(monitors::cron_without_key),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/monitors",
        get(monitors::list_monitors),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/monitors/{slug}",
        get(monitors::monitor_detail),
    );
    let api = with_slash(
        api,
        "/api/0/projects/{org}/{project}/monitors/{slug}/checkins",
        get(monitors::monitor_checkins),
    );
    let api = with_slash(api, "/api/0", get(api::index));
    let api = api.route("/api/0/openapi.json", get(openapi::openapi_json));
    let probes = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        )
        .route("/readyz", get(api::readyz));
    let probes = with_slash(probes, "/health", get(health::health));
    let probes = with_slash(probes, "/metrics", get(health::metrics));
    ingest
        .merge(api)
        .merge(probes)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The path a request is routed by: paths under `/api/` end with a slash (Sentry's canonical
/// form, what SDKs and sentry-cli send), other paths (the probes) and the OpenAPI document
/// without one, so each route is registered once. The query string is kept. `None` when the
/// path is canonical already.
pub fn canonical_path(path_and_query: &str) -> Option<String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let slash = path.starts_with("/api/") && path.trim_end_matches('/') != openapi::DOCUMENT_PATH;
    let canonical = match (slash, path.ends_with('/')) {
        (true, false) => format!("{path}/"),
        (false, true) if !path.trim_end_matches('/').is_empty() => {
            path.trim_end_matches('/').to_string()
        }
        _ => return None,
    };
    Some(match query {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical,
    })
}

/// Registers `path` and `path/`: SDKs always send the slash, people and scripts often don't.
fn with_slash(
    router: Router<AppState>,
    path: &str,
    handler: MethodRouter<AppState>,
) -> Router<AppState> {
    router
        .route(path, handler.clone())
        .route(&format!("{path}/"), handler)
}

/// Browser SDKs post cross-origin and must be able to read the rate-limit headers.
fn ingest_cors() -> CorsLayer {
    let allowed = [
        "x-sentry-auth",
        "x-requested-with",
        "x-forwarded-for",
        "origin",
        "referer",
        "accept",
        "content-type",
        "authentication",
        "authorization",
        "content-encoding",
        "transfer-encoding",
    ]
    .map(HeaderName::from_static);
    let exposed =
        ["x-sentry-error", "x-sentry-rate-limits", "retry-after"].map(HeaderName::from_static);
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(allowed)
        .expose_headers(exposed)
        .max_age(Duration::from_secs(3600))
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not found")
}

async fn method_not_allowed() -> Response {
    ingest_error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// `{"detail": ...}` with the given status: the error shape of every surface.
pub fn error_response(status: StatusCode, detail: &str) -> Response {
    (status, Json(serde_json::json!({ "detail": detail }))).into_response()
}

/// Like `error_response`, plus the `X-Sentry-Error` header SDKs log.
pub fn ingest_error_response(status: StatusCode, detail: &str) -> Response {
    let mut resp = error_response(status, detail);
    let clean: String = detail
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .take(200)
        .collect();
    if let Ok(v) = HeaderValue::from_str(&clean) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-sentry-error"), v);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}
