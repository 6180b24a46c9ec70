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
use axum::{Extension, Json, Router};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::cors::{Any, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// What every handler can reach: one `Arc`, since axum clones the state for every request
/// (cloning each handle inside it cost more than a percent of ingestion's CPU).
#[derive(Clone)]
pub struct AppState(Arc<AppShared>);

impl AppState {
    pub fn new(shared: AppShared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppShared;
    fn deref(&self) -> &AppShared {
        &self.0
    }
}

pub struct AppShared {
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

/// Every route of the server, each with its OpenAPI operation: the router and the document
/// come from the same `#[utoipa::path]` annotations, so neither can list what the other
/// lacks. Each path is registered once, in its canonical form (`canonical_path`); the
/// document's info, security schemes and shared shapes are `openapi::ApiDoc`'s.
pub fn routes() -> OpenApiRouter<AppState> {
    let ingest = OpenApiRouter::new()
        .routes(routes!(ingest::envelope))
        .routes(routes!(ingest::store))
        .layer(ingest_cors());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(ingest)
        // Cron monitors: the SDK-facing check-in endpoint (key in the path, or in a header
        // or the query).
        .routes(routes!(monitors::cron_with_key))
        .routes(routes!(monitors::cron_without_key))
        .routes(routes!(api::index))
        .routes(routes!(openapi::openapi_json))
        // Issues.
        .routes(routes!(api::list_issues, lifecycle::bulk_update))
        .routes(routes!(api::org_list_issues, api::org_bulk_update))
        .routes(routes!(
            api::issue_detail,
            lifecycle::update_issue,
            projects::delete_issue
        ))
        .routes(routes!(
            api::org_issue_detail,
            lifecycle::update_org_issue,
            projects::delete_org_issue
        ))
        .routes(routes!(lifecycle::activities))
        .routes(routes!(events::issue_events))
        .routes(routes!(events::issue_event))
        .routes(routes!(tags::issue_tags))
        .routes(routes!(tags::issue_tag))
        .routes(routes!(tags::issue_tag_values))
        .routes(routes!(grouping::issue_hashes))
        .routes(routes!(responders::issue_actions))
        // Projects, keys, tokens.
        .routes(routes!(projects::list_projects, projects::create_project))
        .routes(routes!(
            lifecycle::get_project,
            lifecycle::update_project,
            projects::delete_project
        ))
        .routes(routes!(projects::list_keys, projects::create_key))
        .routes(routes!(
            projects::get_key,
            projects::update_key,
            projects::delete_key
        ))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::delete))
        .routes(routes!(events::project_event))
        .routes(routes!(grouping::grouping_info))
        // Alerts, responders, monitors.
        .routes(routes!(lifecycle::list_channels, lifecycle::create_channel))
        .routes(routes!(lifecycle::delete_channel))
        .routes(routes!(lifecycle::deliveries))
        .routes(routes!(responders::list, responders::create))
        .routes(routes!(
            responders::get,
            responders::update,
            responders::delete
        ))
        .routes(routes!(monitors::list_monitors))
        .routes(routes!(monitors::monitor_detail))
        .routes(routes!(monitors::monitor_checkins))
        // Probes.
        .routes(routes!(api::healthz))
        .routes(routes!(api::readyz))
        .routes(routes!(health::health))
        .routes(routes!(health::metrics))
}

/// The server's router: `routes()`, the fallbacks (`{"detail"}` 404 and 405), and the
/// document it serves. Requests reach it with their path canonical (`serve::Tracked`).
pub fn router(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    router
        .layer(Extension(openapi::Document::new(doc)))
        .layer(axum::middleware::from_fn(refuse_nul))
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

/// A URL with a NUL character (`%00`) in its path or query names nothing: nothing stored holds
/// one (ingestion drops them, and PostgreSQL's text cannot hold one), so it is refused with a
/// 400 before a lookup would send it to the database.
async fn refuse_nul(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let nul = req
        .uri()
        .path_and_query()
        .is_some_and(|pq| pq.as_str().contains("%00"));
    if nul {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the URL holds a NUL character (%00)",
        );
    }
    next.run(req).await
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

/// A query string's pairs, decoded (`+` is a space), in order; keys repeat (`environment`,
/// `project`, `id`).
pub(crate) fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The query string's values of `name`, in order (`?id=1&id=2`, `?environment=a&environment=b`).
pub(crate) fn query_values(uri: &axum::http::Uri, name: &str) -> Vec<String> {
    query_pairs(uri)
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect()
}
