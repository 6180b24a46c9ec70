//! Responders over the API: create from one checked document, list, get, replace, delete; and
//! what the system has done (and will do) about an issue (`/api/0/issues/{id}/actions/`).

use super::api::{authorize, find_issue, not_found, ApiResult};
use super::lifecycle::{bad_request, body_json, project_of};
use super::AppState;
use crate::issue::view::iso;
use crate::responder::parse_spec;
use crate::store::responders::{ActionAttempt, ActionRun, Responder};
use crate::token::Scope;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub fn responder_json(r: &Responder) -> Value {
    json!({
        "id": r.id.to_string(),
        "project": r.project_id.to_string(),
        "name": r.name,
        "watch_pattern": r.watch_pattern,
        "min_level": r.min_level,
        "environment": r.environment,
        "enabled": r.enabled,
        "actions": serde_json::from_str::<Value>(&r.actions).unwrap_or(json!([])),
        "dateCreated": iso(r.created_at),
        "dateUpdated": iso(r.updated_at),
    })
}

/// One run of an action with its attempts, as `/actions/` and the issue detail show it.
pub fn run_json(run: &ActionRun, attempts: &[ActionAttempt]) -> Value {
    json!({
        "id": run.id.to_string(),
        "responder": run.responder_id.to_string(),
        "action": run.action_index,
        "episode": run.episode_id.to_string(),
        "target": run.target,
        "status": run.status,
        "dueAt": iso(run.due_at),
        // While pending: when it is tried next (or when its lease ends, if claimed).
        "nextAttemptAt": (run.status == "pending").then(|| iso(run.next_attempt_at)),
        "attempts": run.attempts,
        "lastStatus": run.last_status,
        "lastError": run.last_error,
        "reason": run.reason,
        "claimedBy": run.claimed_by,
        "dateCreated": iso(run.created_at),
        "dateDone": run.done_at.map(iso),
        "attemptLog": attempts.iter().map(|a| json!({
            "date": iso(a.attempted_at),
            "outcome": a.outcome,
            "httpStatus": a.http_status,
            "error": a.error,
            "claimedBy": a.claimed_by,
        })).collect::<Vec<_>>(),
    })
}

fn id_of(raw: &str) -> ApiResult<i64> {
    raw.parse().map_err(|_| not_found("responder"))
}

/// A project's responders.
///
/// `GET /api/0/projects/{org}/{project}/responders/`.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/responders/",
    tag = "responders",
    params(super::openapi::ProjectPath),
    responses(
        (status = 200, description = "The responders", body = Vec<super::openapi::Responder>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn list(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let p = project_of(&app, &org, &slug).await?;
    let rows = app.store.responders(p.id).await?;
    Ok(Json(Value::Array(
        rows.iter().map(responder_json).collect(),
    )))
}

/// `POST /api/0/projects/{org}/{project}/responders/` with the whole document; nothing is
/// stored unless all of it is valid.
#[utoipa::path(
    post,
    path = "/api/0/projects/{org}/{project}/responders/",
    tag = "responders",
    params(super::openapi::ProjectPath),
    request_body = super::openapi::ResponderDocument,
    responses(
        (status = 201, description = "Created", body = super::openapi::Responder),
        (status = 400, description = "An invalid document: the field and what is wrong", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn create(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    let p = project_of(&app, &org, &slug).await?;
    let spec = parse_spec(&body_json(&body)?).map_err(bad_request)?;
    let r = (app.store)
        .create_responder(p.id, &spec, app.clock.now().timestamp_micros())
        .await?;
    Ok((StatusCode::CREATED, Json(responder_json(&r))).into_response())
}

/// One responder.
///
/// `GET /api/0/projects/{org}/{project}/responders/{id}/`.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/responders/{id}/",
    tag = "responders",
    params(super::openapi::ProjectPath, ("id" = String, Path, description = "The responder's id")),
    responses(
        (status = 200, description = "The responder", body = super::openapi::Responder),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or responder", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn get(
    State(app): State<AppState>,
    Path((org, slug, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let p = project_of(&app, &org, &slug).await?;
    let r =
        (app.store.responder(p.id, id_of(&id)?).await?).ok_or_else(|| not_found("responder"))?;
    Ok(Json(responder_json(&r)))
}

/// Replaces a responder with a whole new document.
///
/// `PUT /api/0/projects/{org}/{project}/responders/{id}/`.
#[utoipa::path(
    put,
    path = "/api/0/projects/{org}/{project}/responders/{id}/",
    tag = "responders",
    params(super::openapi::ProjectPath, ("id" = String, Path, description = "The responder's id")),
    request_body = super::openapi::ResponderDocument,
    responses(
        (status = 200, description = "The responder as it is now", body = super::openapi::Responder),
        (status = 400, description = "An invalid document: the field and what is wrong", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or responder", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn update(
    State(app): State<AppState>,
    Path((org, slug, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    let p = project_of(&app, &org, &slug).await?;
    let id = id_of(&id)?;
    let spec = parse_spec(&body_json(&body)?).map_err(bad_request)?;
    let r = (app.store)
        .update_responder(p.id, id, &spec, app.clock.now().timestamp_micros())
        .await?
        .ok_or_else(|| not_found("responder"))?;
    Ok(Json(responder_json(&r)))
}

/// Deletes a responder; its pending runs are cancelled.
///
/// `DELETE /api/0/projects/{org}/{project}/responders/{id}/`.
#[utoipa::path(
    delete,
    path = "/api/0/projects/{org}/{project}/responders/{id}/",
    tag = "responders",
    params(super::openapi::ProjectPath, ("id" = String, Path, description = "The responder's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or responder", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn delete(
    State(app): State<AppState>,
    Path((org, slug, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    let p = project_of(&app, &org, &slug).await?;
    let now = app.clock.now().timestamp_micros();
    if !app.store.delete_responder(p.id, id_of(&id)?, now).await? {
        return Err(not_found("responder"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/0/issues/{issue}/actions/`: every action scheduled for the issue, oldest first,
/// with its attempts.
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/actions/",
    tag = "responders",
    params(super::openapi::IssuePath),
    responses(
        (status = 200, description = "The runs, oldest first", body = Vec<super::openapi::ActionRun>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn issue_actions(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    Ok(Json(actions_json(&app, issue.id).await?))
}

pub async fn actions_json(app: &AppState, issue_id: i64) -> ApiResult<Value> {
    let runs = app.store.issue_actions(issue_id).await?;
    Ok(Value::Array(
        runs.iter()
            .map(|(run, attempts)| run_json(run, attempts))
            .collect(),
    ))
}
