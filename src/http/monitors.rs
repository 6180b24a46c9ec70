//! Cron monitors over HTTP: the SDK-facing check-in endpoint (`/api/{project_id}/cron/{slug}/[{key}/]`), check-in envelope items, and the `/api/0/` monitor reads.

use super::api::{authorize, iso, not_found, ApiError, ApiResult};
use super::{ingest_error_response, AppState};
use crate::monitor::schedule::MonitorConfig;
use crate::monitor::CheckIn;
use crate::protocol::auth::{self, AuthSources};
use crate::store::monitors::{Checkin, Monitor, MonitorEnv, Recorded};
use crate::store::StoreError;
use crate::token::Scope;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// The largest check-in Relay accepts (`check_in` items have the same cap).
const MAX_CHECKIN_BYTES: usize = 100 * 1024;

/// Records one check-in of project `project_id`. Unknown monitors without `monitor_config`
/// are dropped, as Sentry does; the answer does not change (the SDK cannot act on it).
pub async fn record(app: &AppState, project_id: i64, c: &CheckIn) -> Result<(), StoreError> {
    let now = app.clock.now().timestamp_micros();
    match app.store.record_checkin(project_id, c, now).await? {
        Recorded::UnknownMonitor => {
            tracing::info!(slug = %c.monitor_slug, project_id, "check-in for an unknown monitor without monitor_config dropped");
        }
        Recorded::Stored { .. } => crate::metrics::checkin(c.status.input().status()),
        Recorded::Duplicate => {}
    }
    Ok(())
}

/// A `check_in` envelope item: recorded when valid; an invalid one is dropped and logged
/// (Relay drops bad items without failing the envelope). Only a storage failure fails it.
pub async fn envelope_item(
    app: &AppState,
    project_id: i64,
    payload: &[u8],
) -> Result<(), StoreError> {
    match CheckIn::from_json(payload, None) {
        Ok(c) => record(app, project_id, &c).await,
        Err(e) => {
            tracing::info!(error = %e, project_id, "invalid check_in item dropped");
            Ok(())
        }
    }
}

fn refuse(status: u16, detail: &str) -> Response {
    ingest_error_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        detail,
    )
}

/// A cron check-in with the DSN key in the path.
///
/// `GET|POST /api/{project_id}/cron/{monitor_slug}/{sentry_key}/`.
#[utoipa::path(
    method(get, post),
    path = "/api/{project_id}/cron/{monitor_slug}/{sentry_key}/",
    params(
        super::openapi::IngestPath,
        ("monitor_slug" = String, Path, description = "The monitor's slug"),
        ("sentry_key" = String, Path, description = "The DSN's public key"),
        ("status" = Option<String>, Query, description = "`in_progress`, `ok` or `error` (query form)"),
        ("check_in_id" = Option<String>, Query, description = "A UUID (query form)"),
        ("duration" = Option<f64>, Query, description = "Seconds (query form)"),
        ("environment" = Option<String>, Query, description = "The environment (query form)"),
    ),
    tag = "ingestion",
    request_body(
        description = "A check-in as JSON (`Content-Type: application/json`); without a JSON body the check-in is read from the query",
        content = Option<super::openapi::CheckInPayload>,
        content_type = "application/json",
    ),
    responses(
        (status = 202, description = "Recorded (a check-in for an unknown monitor without `monitor_config` is dropped)", body = super::openapi::Empty),
        (status = 400, description = "A malformed check-in, project id or query", body = super::openapi::Error),
        (status = 401, description = "No key, or an unusable one", body = super::openapi::Error),
        (status = 403, description = "The key belongs to another project", body = super::openapi::Error),
        (status = 413, description = "The body exceeds 100 KiB", body = super::openapi::Error),
        (status = 503, description = "Storage unavailable; retry later", body = super::openapi::Error),
    ),
)]
pub async fn cron_with_key(
    State(app): State<AppState>,
    Path((project_id, slug, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    cron(&app, &project_id, &slug, Some(&key), &headers, &uri, body).await
}

/// A cron check-in with the DSN key in a header or the query.
///
/// `GET|POST /api/{project_id}/cron/{monitor_slug}/`.
#[utoipa::path(
    method(get, post),
    path = "/api/{project_id}/cron/{monitor_slug}/",
    params(
        super::openapi::IngestPath,
        ("monitor_slug" = String, Path, description = "The monitor's slug"),
        ("status" = Option<String>, Query, description = "`in_progress`, `ok` or `error` (query form)"),
        ("check_in_id" = Option<String>, Query, description = "A UUID (query form)"),
        ("duration" = Option<f64>, Query, description = "Seconds (query form)"),
        ("environment" = Option<String>, Query, description = "The environment (query form)"),
    ),
    tag = "ingestion",
    request_body(
        description = "A check-in as JSON (`Content-Type: application/json`); without a JSON body the check-in is read from the query",
        content = Option<super::openapi::CheckInPayload>,
        content_type = "application/json",
    ),
    responses(
        (status = 202, description = "Recorded (a check-in for an unknown monitor without `monitor_config` is dropped)", body = super::openapi::Empty),
        (status = 400, description = "A malformed check-in, project id or query", body = super::openapi::Error),
        (status = 401, description = "No key, or an unusable one", body = super::openapi::Error),
        (status = 403, description = "The key belongs to another project", body = super::openapi::Error),
        (status = 413, description = "The body exceeds 100 KiB", body = super::openapi::Error),
        (status = 503, description = "Storage unavailable; retry later", body = super::openapi::Error),
    ),
    security(("sentry_auth" = []), ("sentry_key" = [])),
)]
pub async fn cron_without_key(
    State(app): State<AppState>,
    Path((project_id, slug)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    cron(&app, &project_id, &slug, None, &headers, &uri, body).await
}

async fn cron(
    app: &AppState,
    project_id: &str,
    slug: &str,
    path_key: Option<&str>,
    headers: &HeaderMap,
    uri: &Uri,
    body: Body,
) -> Response {
    let query = uri.query();
    let Some(pid) = project_id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return refuse(400, "bad project path parameter");
    };
    let key = match path_key {
        Some(k) => k.trim().to_string(),
        None => {
            let sources = AuthSources {
                x_sentry_auth: headers.get("x-sentry-auth").map(|v| v.as_bytes()),
                authorization: headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
                query,
                envelope_dsn: None,
            };
            match auth::resolve(&sources, project_id) {
                Ok(a) => a.public_key,
                Err(e) => return refuse(e.status(), &e.to_string()),
            }
        }
    };
    match app.keys.project_of(&key).await {
        Ok(Some(id)) if id == pid => {}
        Ok(_) => return refuse(403, "event submission rejected with_reason: ProjectId"),
        Err(e) => {
            tracing::error!(error = %e, "database error while authenticating");
            return refuse(503, "the server cannot reach its database, retry later");
        }
    }
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let checkin = if json_body {
        let bytes = match axum::body::to_bytes(body, MAX_CHECKIN_BYTES).await {
            Ok(b) => b,
            Err(_) => return refuse(413, "check-in body exceeds 100 KiB or could not be read"),
        };
        CheckIn::from_json(&bytes, Some(slug))
    } else {
        let pairs: Vec<(String, String)> = match Query::try_from_uri(uri) {
            Ok(Query(p)) => p,
            Err(_) => return refuse(400, "malformed query string"),
        };
        CheckIn::from_query(slug, &pairs)
    };
    let checkin = match checkin {
        Ok(c) => c,
        Err(e) => return refuse(400, &e),
    };
    match record(app, pid, &checkin).await {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({}))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "check-in not recorded");
            refuse(503, "the check-in could not be stored, retry later")
        }
    }
}

// --- /api/0/ ----------------------------------------------------------------------------------

fn opt_iso(us: Option<i64>) -> Value {
    us.map_or(Value::Null, |t| Value::String(iso(t)))
}

fn env_json(e: &MonitorEnv, margin_us: i64) -> Value {
    json!({
        "name": e.environment,
        "status": e.status,
        "lastCheckIn": opt_iso(e.last_checkin_at),
        "nextCheckIn": opt_iso(e.next_expected_at),
        "nextCheckInLatest": opt_iso(e.next_expected_at.map(|t| t.saturating_add(margin_us))),
        "dateCreated": iso(e.created_at),
        "failures": e.failures,
        "incidentOpen": e.incident_open,
        "issueId": e.issue_id.map(|i| i.to_string()),
    })
}

/// The worst status of the environments: `error` beats `ok` beats `active`.
fn overall(envs: &[MonitorEnv]) -> &'static str {
    if envs.iter().any(|e| e.status == "error") {
        "error"
    } else if envs.iter().any(|e| e.status == "ok") {
        "ok"
    } else {
        "active"
    }
}

fn monitor_json(m: &Monitor, project_slug: &str, envs: &[MonitorEnv]) -> Value {
    let config: Value = serde_json::from_str(&m.config).unwrap_or(Value::Null);
    let margin = MonitorConfig::from_json(&config)
        .map(|c| c.margin_us())
        .unwrap_or(0);
    json!({
        "id": m.id.to_string(),
        "slug": m.slug,
        "name": m.slug,
        "type": "cron_job",
        "status": overall(envs),
        "config": config,
        "environments": envs.iter().map(|e| env_json(e, margin)).collect::<Vec<_>>(),
        "project": {"slug": project_slug},
        "dateCreated": iso(m.created_at),
    })
}

fn checkin_json(c: &Checkin) -> Value {
    let id = uuid::Uuid::parse_str(&c.check_in_id)
        .map(|u| u.hyphenated().to_string())
        .unwrap_or_else(|_| c.check_in_id.clone());
    json!({
        "id": id,
        "status": c.status,
        // Sentry's API reports milliseconds.
        "duration": c.duration.map(|s| (s * 1000.0).round() as i64),
        "environment": c.environment,
        "release": c.release,
        "dateCreated": iso(c.received_at),
        "dateUpdated": iso(c.updated_at),
        "expectedTime": opt_iso(c.expected_at),
        "traceId": c.trace_id,
    })
}

async fn find_monitor(
    app: &AppState,
    org: &str,
    project: &str,
    slug: Option<&str>,
) -> ApiResult<(crate::store::projects::Project, Option<Monitor>)> {
    if org != app.org {
        return Err(not_found("organization"));
    }
    let project = app
        .store
        .project_by_slug(project)
        .await?
        .ok_or_else(|| not_found("project"))?;
    let monitor = match slug {
        Some(s) => Some(
            app.store
                .monitor_by_slug(project.id, s)
                .await?
                .ok_or_else(|| not_found("monitor"))?,
        ),
        None => None,
    };
    Ok((project, monitor))
}

/// A project's cron monitors.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/monitors/",
    tag = "monitors",
    params(super::openapi::ProjectPath),
    responses(
        (status = 200, description = "The monitors", body = Vec<super::openapi::Monitor>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or monitor", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn list_monitors(
    State(app): State<AppState>,
    Path((org, project)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let (project, _) = find_monitor(&app, &org, &project, None).await?;
    let mut out = Vec::new();
    for m in app.store.monitors(project.id).await? {
        let envs = app.store.monitor_envs(m.id).await?;
        out.push(monitor_json(&m, &project.slug, &envs));
    }
    Ok(Json(Value::Array(out)))
}

/// One cron monitor.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/monitors/{slug}/",
    tag = "monitors",
    params(super::openapi::ProjectPath, ("slug" = String, Path, description = "The monitor's slug")),
    responses(
        (status = 200, description = "The monitor", body = super::openapi::Monitor),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or monitor", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn monitor_detail(
    State(app): State<AppState>,
    Path((org, project, slug)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let (project, m) = find_monitor(&app, &org, &project, Some(&slug)).await?;
    let m = m.ok_or_else(|| not_found("monitor"))?;
    let envs = app.store.monitor_envs(m.id).await?;
    Ok(Json(monitor_json(&m, &project.slug, &envs)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckinParams {
    /// At most this many (1 to 1000, default 100), newest first.
    limit: Option<i64>,
    /// Only this environment's.
    environment: Option<String>,
}

/// A monitor's check-ins, newest first.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/monitors/{slug}/checkins/",
    tag = "monitors",
    params(
        super::openapi::ProjectPath,
        ("slug" = String, Path, description = "The monitor's slug"),
        CheckinParams,
    ),
    responses(
        (status = 200, description = "The check-ins", body = Vec<super::openapi::CheckIn>),
        (status = 400, description = "A malformed query", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or monitor", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn monitor_checkins(
    State(app): State<AppState>,
    Path((org, project, slug)): Path<(String, String, String)>,
    params: Result<Query<CheckinParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    // axum's own refusal is plain text; ours is `{"detail"}` like every other.
    let Query(params) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let (_, m) = find_monitor(&app, &org, &project, Some(&slug)).await?;
    let m = m.ok_or_else(|| not_found("monitor"))?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let rows = app.store.monitor_checkins(m.id, limit).await?;
    let out: Vec<Value> = rows
        .iter()
        .filter(|c| {
            params
                .environment
                .as_deref()
                .is_none_or(|e| e == c.environment)
        })
        .map(checkin_json)
        .collect();
    Ok(Json(Value::Array(out)))
}
