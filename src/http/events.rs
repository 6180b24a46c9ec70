//! An issue's events and a project's event in Sentry's shapes: pages of an issue's events
//! (optionally full), one event by id or as `latest` / `oldest` / `recommended`, with the ids
//! of its neighbours.

use super::api::{
    authorize, find_issue, iso, link_header, not_found, page_limit, parse_cursor, ApiError,
    ApiResult,
};
use super::AppState;
use crate::issue::search;
use crate::normalize;
use crate::protocol::event;
use crate::store::events::EventRow;
use crate::token::Scope;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A stored event read back: its JSON object and the summary ingestion derived from it.
pub struct Decoded<'r> {
    pub row: &'r EventRow,
    stored: Map<String, Value>,
    pub summary: normalize::Summary,
}

/// Decompresses and parses a stored event.
pub fn decode(row: &EventRow) -> Decoded<'_> {
    let raw = match row.payload.event_json() {
        Ok(raw) => raw,
        Err(e) => {
            tracing::error!(error = %e, event = row.id, "stored payload unreadable");
            Vec::new()
        }
    };
    // Ingestion skips fields it does not need without a depth limit, so a stored event may
    // nest deeper than a full parse allows: then it is shown as text rather than dropped.
    let stored: Map<String, Value> = match serde_json::from_slice(&raw) {
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
    let summary = normalize::summarize(&parsed, row.received as f64 / 1e6);
    Decoded {
        row,
        stored,
        summary,
    }
}

/// The stored event JSON plus Sentry's API fields about it.
pub fn event_json(row: &EventRow, full: bool) -> Value {
    render(decode(row), full)
}

fn render(d: Decoded<'_>, full: bool) -> Value {
    let Decoded {
        row,
        mut stored,
        summary: s,
    } = d;
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
    query: Option<String>,
    environment: Option<String>,
}

/// Events read (and decoded) at most per page of a filtered list: a rare match ends a page
/// early, with a cursor where the scan stopped, rather than read a whole issue per request.
const SCAN_BUDGET: usize = 2_000;

/// Rows fetched per round of a filtered scan.
const SCAN_CHUNK: i64 = 200;

/// `GET /api/0/issues/{id}/events/`: newest first, `limit` (1..100) per page, `full=true` for
/// the whole bodies, and `query` in the issue search syntax (tags, `environment`, `release`,
/// `level`, times against the event's timestamp, free text on title, message or culprit).
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/events/",
    tag = "issues",
    params(super::openapi::IssuePath, super::openapi::EventsQuery),
    responses(
        (status = 200, description = "A page of events, newest first; `Link` has the next", body = Vec<super::openapi::Event>),
        (status = 400, description = "A bad query or cursor", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn issue_events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<EventParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    let limit = page_limit(params.limit);
    let full = matches!(params.full.as_deref(), Some("1" | "true"));
    let mut after = parse_cursor(params.cursor.as_deref())?;
    let mut text = params.query.clone().unwrap_or_default();
    if let Some(env) = &params.environment {
        text.push_str(&format!(" environment:\"{}\"", env.replace('"', "\\\"")));
    }
    // An event search has no status: `is:` terms are about issues and are not applied.
    let query = search::parse(Some(&text), app.clock.now())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut body = Vec::new();
    let mut next = None;
    if query.terms.is_empty() {
        let mut rows = app.store.issue_events(issue.id, after, limit + 1).await?;
        if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            next = rows.last().map(|r| (r.timestamp, r.id));
        }
        body.extend(rows.iter().map(|r| event_json(r, full)));
    } else {
        let mut scanned = 0;
        'scan: loop {
            let rows = app.store.issue_events(issue.id, after, SCAN_CHUNK).await?;
            let exhausted = (rows.len() as i64) < SCAN_CHUNK;
            for (i, row) in rows.iter().enumerate() {
                scanned += 1;
                after = Some((row.timestamp, row.id));
                let d = decode(row);
                let s = &d.summary;
                let facts = search::EventFacts {
                    tags: &s.tags,
                    timestamp: row.timestamp,
                    title: &s.title,
                    message: &s.message,
                    culprit: &s.culprit,
                };
                if query.matches_event(&facts) {
                    body.push(render(d, full));
                }
                let more_here = i + 1 < rows.len() || !exhausted;
                if (body.len() as i64 >= limit || scanned >= SCAN_BUDGET) && more_here {
                    next = after;
                    break 'scan;
                }
            }
            if exhausted {
                break;
            }
        }
    }
    let next = next.map(|(ts, id)| format!("{ts}:{id}:0"));
    let mut base = format!("{}/api/0/issues/{}/events/", app.public_url, issue.id);
    let mut sep = '?';
    for (k, v) in [
        ("query", &params.query),
        ("environment", &params.environment),
        ("full", &params.full),
    ] {
        if let Some(v) = v {
            let enc = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
            base.push_str(&format!("{sep}{k}={enc}"));
            sep = '&';
        }
    }
    if let Some(l) = params.limit {
        base.push_str(&format!("{sep}limit={l}"));
    }
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::LINK, link_header(&base, next));
    Ok(resp)
}

/// `latest`, `oldest`, `recommended` (= latest) or an event id.
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/events/{event}/",
    tag = "issues",
    params(
        super::openapi::IssuePath,
        ("event" = String, Path, description = "`latest`, `oldest`, `recommended` (the latest) or an event id (32 hex digits)"),
    ),
    responses(
        (status = 200, description = "The whole event with its neighbours' ids", body = super::openapi::EventDetail),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue or event (or its events are past retention)", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
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
    Ok(Json(detail_json(&app, &row).await?))
}

/// The full event with the ids of its neighbours in its issue, oldest first (Sentry's
/// `previousEventID` / `nextEventID`, null at either end).
async fn detail_json(app: &AppState, row: &EventRow) -> ApiResult<Value> {
    let (previous, next) = app
        .store
        .event_neighbours(row.issue_id, row.timestamp, row.id)
        .await?;
    let mut body = event_json(row, true);
    if let Value::Object(m) = &mut body {
        m.insert("previousEventID".into(), json!(previous.map(hex::encode)));
        m.insert("nextEventID".into(), json!(next.map(hex::encode)));
    }
    Ok(body)
}

/// `GET /api/0/projects/{org}/{project}/events/{event_id}/`: one event of a project by id.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/events/{event}/",
    tag = "issues",
    params(
        super::openapi::ProjectPath,
        ("event" = String, Path, description = "The event id (32 hex digits)"),
    ),
    responses(
        (status = 200, description = "The whole event with its neighbours' ids in its issue", body = super::openapi::EventDetail),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or event", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn project_event(
    State(app): State<AppState>,
    Path((org, project, event_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let project = super::lifecycle::project_of(&app, &org, &project).await?;
    let event_id = crate::pipeline::parse_event_id(&event_id).ok_or_else(|| not_found("event"))?;
    let row = app
        .store
        .project_event(project.id, event_id)
        .await?
        .ok_or_else(|| not_found("event"))?;
    Ok(Json(detail_json(&app, &row).await?))
}
