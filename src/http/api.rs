//! The first read API under `/api/0/`, in Sentry's JSON shapes (string ids and counts,
//! camelCase, `Link` header pagination) so sentry-cli and existing scripts can read it.

use super::error_response;
use super::AppState;
use crate::issue;
use crate::normalize;
use crate::protocol::event;
use crate::store::events::EventRow;
use crate::store::issues::{Issue, IssueFilter};
use crate::token::{self, Scope, Scopes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// An API refusal: status and detail.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.0, &self.1)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        tracing::error!(error = %e, "database error in the API");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable".into(),
        )
    }
}

pub fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Who is calling: the token's id and the scopes it carries.
pub struct Caller {
    pub token_id: i64,
    pub scopes: Scopes,
}

/// Every `/api/0/` route needs `Authorization: Bearer <token>` of a stored token that holds
/// `needed` (or a scope that includes it): 401 without a valid token, 403 naming the missing
/// scope.
pub async fn authorize(app: &AppState, headers: &HeaderMap, needed: Scope) -> ApiResult<Caller> {
    let caller = identify(app, headers).await?;
    if !caller.scopes.allows(needed) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("You do not have permission to perform this action: the token lacks the scope '{needed}'."),
        ));
    }
    Ok(caller)
}

/// The caller of a valid token, whatever its scopes (401 otherwise).
pub async fn identify(app: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, m.into());
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("Authentication credentials were not provided."))?;
    let value = value
        .to_str()
        .map_err(|_| unauthorized("Invalid token header."))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Invalid token header. Use 'Bearer <token>'."))?;
    let (token_id, scopes) = app
        .store
        .token_by_hash(&token::hash(token))
        .await?
        .ok_or_else(|| unauthorized("Invalid token."))?;
    Ok(Caller { token_id, scopes })
}

pub use crate::issue::view::iso;

/// The Sentry issue (group) object.
pub fn issue_json(app: &AppState, row: &Issue) -> Value {
    crate::issue::view::issue_json(row, &app.public_url, &app.org)
}

#[derive(Deserialize)]
pub struct ListParams {
    query: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `{last_seen}:{id}:0`: a keyset cursor, stable while new events arrive.
fn parse_cursor(c: Option<&str>) -> ApiResult<Option<(i64, i64)>> {
    let Some(c) = c.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let mut parts = c.split(':');
    match (
        parts.next().and_then(|p| p.parse().ok()),
        parts.next().and_then(|p| p.parse().ok()),
    ) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        _ => Err(ApiError(StatusCode::BAD_REQUEST, "invalid cursor".into())),
    }
}

/// Sentry's `Link` header: sentry-cli follows `rel="next"` while `results="true"`.
fn link_header(base: &str, next: Option<String>) -> HeaderValue {
    let sep = if base.contains('?') { '&' } else { '?' };
    let prev = format!("<{base}{sep}cursor=>; rel=\"previous\"; results=\"false\"; cursor=\"\"");
    let next = match next {
        Some(c) => {
            format!("<{base}{sep}cursor={c}>; rel=\"next\"; results=\"true\"; cursor=\"{c}\"")
        }
        None => format!("<{base}{sep}cursor=>; rel=\"next\"; results=\"false\"; cursor=\"\""),
    };
    HeaderValue::from_str(&format!("{prev}, {next}")).unwrap_or(HeaderValue::from_static(""))
}

fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(100).clamp(1, 100)
}

pub async fn list_issues(
    State(app): State<AppState>,
    Path((org, project)): Path<(String, String)>,
    Query(params): Query<ListParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::EventRead).await?;
    if org != app.org {
        return Err(not_found("organization"));
    }
    let project = app
        .store
        .project_by_slug(&project)
        .await?
        .ok_or_else(|| not_found("project"))?;
    let q = issue::parse_query(params.query.as_deref());
    let limit = page_limit(params.limit);
    let filter = IssueFilter {
        status: q.status.map(str::to_string),
        words: q.words,
        after: parse_cursor(params.cursor.as_deref())?,
        limit: limit + 1,
    };
    let mut rows = app.store.list_issues(project.id, &filter).await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        let last = &rows[rows.len() - 1];
        format!("{}:{}:0", last.last_seen, last.id)
    });
    let mut base = format!(
        "{}/api/0/projects/{}/{}/issues/",
        app.public_url, app.org, project.slug
    );
    if let Some(query) = &params.query {
        let enc = percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC);
        base.push_str(&format!("?query={enc}"));
    }
    let body: Vec<Value> = rows.iter().map(|r| issue_json(&app, r)).collect();
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::LINK, link_header(&base, next));
    Ok(resp)
}

/// A numeric issue id, or a short id like `DEFAULT-3`.
///
/// The id of an issue merged into another (`{"merge": 1}`) finds the issue it was merged into,
/// through any chain of merges: every route under `/api/0/issues/{id}/` (and the org variant)
/// answers the target itself, 200 with its JSON, events and history, never a redirect (a
/// redirected `PUT` turns into a `GET` in many clients). The answer's `id` tells the caller.
pub async fn find_issue(app: &AppState, id: &str) -> ApiResult<Issue> {
    let n = match id.parse::<i64>() {
        Ok(n) => n,
        Err(_) => {
            let (slug, number) = issue::parse_short_id(id).ok_or_else(|| not_found("issue"))?;
            let project = app
                .store
                .project_by_slug(&slug)
                .await?
                .ok_or_else(|| not_found("issue"))?;
            app.store
                .issue_by_number(project.id, number)
                .await?
                .ok_or_else(|| not_found("issue"))?
                .id
        }
    };
    app.store
        .issue_following_merges(n)
        .await?
        .ok_or_else(|| not_found("issue"))
}

pub async fn issue_detail(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let row = find_issue(&app, &id).await?;
    let mut issue = issue_json(&app, &row);
    if let Value::Object(m) = &mut issue {
        let activity: Vec<Value> = app
            .store
            .activities(row.id)
            .await?
            .iter()
            .map(super::lifecycle::activity_json)
            .collect();
        for (k, v) in [
            ("activity", json!(activity)),
            ("firstRelease", Value::Null),
            ("lastRelease", Value::Null),
            ("seenBy", json!([])),
            ("participants", json!([])),
            ("tags", json!([])),
            ("userReportCount", json!(0)),
            ("pluginActions", json!([])),
            // Not in Sentry's detail (it has `/hashes/`): which hashes bring events here.
            ("hashes", super::grouping::hashes_json(&app, row.id).await?),
            // Not in Sentry's: what responders have done and will do (`/actions/` has all).
            ("responderActions", responder_actions(&app, row.id).await?),
        ] {
            m.insert(k.into(), v);
        }
    }
    Ok(Json(issue))
}

/// The issue's responder actions still pending and those taken (delivered or given up).
async fn responder_actions(app: &AppState, issue_id: i64) -> ApiResult<Value> {
    let runs = app.store.issue_actions(issue_id).await?;
    let pick = |want: &[&str]| -> Vec<Value> {
        runs.iter()
            .filter(|(r, _)| want.contains(&r.status.as_str()))
            .map(|(r, a)| super::responders::run_json(r, a))
            .collect()
    };
    Ok(json!({"pending": pick(&["pending"]), "taken": pick(&["delivered", "failed"])}))
}

pub async fn org_issue_detail(
    State(app): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    if org != app.org {
        authorize(&app, &headers, Scope::EventRead).await?;
        return Err(not_found("organization"));
    }
    issue_detail(State(app), Path(id), headers).await
}

/// The stored event JSON plus Sentry's API fields about it.
fn event_json(row: &EventRow, full: bool) -> Value {
    let raw = match row.payload.event_json() {
        Ok(raw) => raw,
        Err(e) => {
            tracing::error!(error = %e, event = row.id, "stored payload unreadable");
            Vec::new()
        }
    };
    // Ingestion skips fields it does not need without a depth limit, so a stored event may
    // nest deeper than a full parse allows: then it is shown as text rather than dropped.
    let mut stored: Map<String, Value> = match serde_json::from_slice(&raw) {
        Ok(map) => map,
        Err(e) if !raw.is_empty() => {
            let mut m = Map::new();
            m.insert("raw".into(), json!(String::from_utf8_lossy(&raw)));
            m.insert(
                "errors".into(),
                json!([{"type": "unparsable_for_display", "reason": e.to_string()}]),
            );
            m
        }
        Err(_) => Map::new(),
    };
    let parsed = event::parse(&raw).unwrap_or_default();
    let s = normalize::summarize(&parsed, row.received as f64 / 1e6);
    let id = hex::encode(row.event_id);
    let tags: Vec<Value> = s
        .tags
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let user = stored.get("user").cloned().unwrap_or(Value::Null);
    let mut out = if full {
        std::mem::take(&mut stored)
    } else {
        Map::new()
    };
    // The envelope header's id wins over the payload's, so show the one we stored.
    if full {
        out.insert("event_id".into(), json!(id));
    }
    for (k, v) in [
        ("id", json!(id)),
        ("eventID", json!(id)),
        ("groupID", json!(row.issue_id.to_string())),
        ("projectID", json!(row.project_id.to_string())),
        ("title", json!(s.title)),
        ("message", json!(s.message)),
        ("culprit", json!(s.culprit)),
        ("platform", json!(s.platform)),
        ("event.type", json!(s.event_type)),
        ("dateCreated", json!(iso(row.timestamp))),
        ("dateReceived", json!(iso(row.received))),
        ("user", user),
        ("tags", json!(tags)),
        ("metadata", s.metadata),
    ] {
        // In a full event the stored fields stay as sent; the API fields fill in around them.
        if !full || !out.contains_key(k) || matches!(k, "id" | "eventID" | "groupID" | "projectID")
        {
            out.insert(k.into(), v);
        }
    }
    Value::Object(out)
}

#[derive(Deserialize)]
pub struct EventParams {
    cursor: Option<String>,
    limit: Option<i64>,
    full: Option<String>,
}

pub async fn issue_events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<EventParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    let limit = page_limit(params.limit);
    let after = parse_cursor(params.cursor.as_deref())?;
    let mut rows = app.store.issue_events(issue.id, after, limit + 1).await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        let last = &rows[rows.len() - 1];
        format!("{}:{}:0", last.timestamp, last.id)
    });
    let full = matches!(params.full.as_deref(), Some("1" | "true"));
    let body: Vec<Value> = rows.iter().map(|r| event_json(r, full)).collect();
    let base = format!("{}/api/0/issues/{}/events/", app.public_url, issue.id);
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::LINK, link_header(&base, next));
    Ok(resp)
}

/// `latest`, `oldest`, `recommended` (= latest) or an event id.
pub async fn issue_event(
    State(app): State<AppState>,
    Path((id, which)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    let row = match which.as_str() {
        "latest" | "recommended" => app.store.issue_events(issue.id, None, 1).await?.pop(),
        "oldest" => app.store.oldest_event(issue.id).await?,
        other => match crate::pipeline::parse_event_id(other) {
            Some(event_id) => app.store.issue_event(issue.id, event_id).await?,
            None => None,
        },
    };
    // Retention deletes events but keeps their issue (and its count): say so rather than
    // leave a listed issue looking broken.
    let row = row.ok_or_else(|| match which.as_str() {
        "latest" | "recommended" | "oldest" if issue.event_count > 0 => ApiError(
            StatusCode::NOT_FOUND,
            "event not found: this issue's events are past the retention limit and were deleted"
                .into(),
        ),
        _ => not_found("event"),
    })?;
    Ok(Json(event_json(&row, true)))
}

/// `GET /api/0/`: who the token is, like Sentry's index (sentry-cli's `info` reads it).
pub async fn index(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    // Any valid token may ask who it is and what it may do.
    let caller = identify(&app, &headers).await?;
    Ok(Json(json!({
        "version": "0",
        "auth": {"scopes": caller.scopes.names()},
        "user": {"id": caller.token_id.to_string(), "name": "stackhound", "username": "stackhound"},
    })))
}

pub async fn readyz(State(app): State<AppState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = &app.pipeline.counters;
    let ingestion = json!({
        "inFlight": app.pipeline.in_flight(),
        "memoryInUse": app.budget.in_use(),
        "memoryPeak": app.budget.peak(),
        "memoryBudget": app.budget.total(),
        "stored": counters.events_stored.load(Relaxed),
        "overloaded": counters.overloaded.load(Relaxed),
        "rateLimited": counters.rate_limited.load(Relaxed),
        "dropped": counters.dropped_items(),
    });
    // A storage fault (disk full, I/O errors, a lock held too long) makes the process not
    // ready: ingestion answers 503 until a batch commits again.
    if let Some(fault) = app.pipeline.health.fault() {
        let body = json!({
            "ready": false,
            "detail": format!("storage fault: {}", fault.error),
            "storage": {"fault": fault.error, "failedBatches": fault.failed_batches,
                        "seconds": fault.since.elapsed().as_secs()},
            "ingestion": ingestion,
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    if let Err(e) = app.store.ping().await {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
    }
    // A process whose schema is behind its code (another process still migrating, a failed
    // migration) must not get traffic.
    match app.store.migrations().await {
        Ok(m) if m.complete() => {
            Json(json!({"ready": true, "storage": "ok", "ingestion": ingestion})).into_response()
        }
        Ok(m) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "migrations not applied: at version {} of {}",
                m.applied, m.known
            ),
        ),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
