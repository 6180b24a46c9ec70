//! State changes in Sentry's shapes (`PUT` on an issue or a project's issue list, so
//! `sentry-cli issues resolve|mute|unresolve` works), the issue history, and the project
//! settings and alert channels of the lifecycle.

use super::api::{authorize, find_issue, issue_json, not_found, ApiError, ApiResult};
use super::query_values;
use super::AppState;
use crate::issue::request::{parse_update, Change, Update};
use crate::issue::state::{Actor, Refusal};
use crate::issue::view::iso;
use crate::store::projects::{Project, ProjectLimits};
use crate::token::Scope;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub fn bad_request(detail: impl ToString) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, detail.to_string())
}

pub fn body_json(body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
    // No stored text holds a NUL (PostgreSQL's text cannot): refused here, not a 503 later.
    if has_nul(&value) {
        return Err(bad_request(
            "invalid JSON body: NUL characters (\\u0000) are not allowed",
        ));
    }
    Ok(value)
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

async fn change(
    app: &AppState,
    ids: Vec<i64>,
    change: Change,
    actor: Actor,
) -> ApiResult<
    Vec<(
        i64,
        Option<Result<crate::issue::state::Transition, Refusal>>,
    )>,
> {
    let now = app.clock.now().timestamp_micros();
    Ok(app.store.change_status(&ids, &change, actor, now).await?)
}

/// Changes an issue's status: resolve (also in a release), mute, unmute, reopen.
///
/// `PUT /api/0/issues/{id}/`: answers the issue as it is afterwards.
#[utoipa::path(
    put,
    path = "/api/0/issues/{issue}/",
    tag = "issues",
    params(super::openapi::IssuePath),
    request_body = super::openapi::IssueUpdate,
    responses(
        (status = 200, description = "The issue as it is afterwards", body = super::openapi::Issue),
        (status = 400, description = "A malformed body, or a change the issue refuses", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:write"])),
)]
pub async fn update_issue(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let token = authorize(&app, &headers, Scope::EventWrite).await?.token_id;
    let issue = find_issue(&app, &id).await?;
    let update = parse_update(&body_json(&body)?, app.clock.now()).map_err(bad_request)?;
    if let Update::Change(c) = update {
        let outcome = change(&app, vec![issue.id], c, Actor::Token(token)).await?;
        match outcome.into_iter().next().and_then(|(_, r)| r) {
            None => return Err(not_found("issue")),
            Some(Err(Refusal::NoChange(_))) | Some(Ok(_)) => {}
            Some(Err(refusal)) => return Err(bad_request(refusal)),
        }
    }
    let fresh = find_issue(&app, &issue.id.to_string()).await?;
    Ok(Json(issue_json(&app, &fresh)))
}

/// Changes an issue's status, named under its organization.
///
/// `PUT /api/0/organizations/{org}/issues/{id}/`: the same as `update_issue`.
#[utoipa::path(
    put,
    path = "/api/0/organizations/{org}/issues/{issue}/",
    tag = "issues",
    params(("org" = String, Path, description = "The organization's slug"), super::openapi::IssuePath),
    request_body = super::openapi::IssueUpdate,
    responses(
        (status = 200, description = "The issue as it is afterwards", body = super::openapi::Issue),
        (status = 400, description = "A malformed body, or a change the issue refuses", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:write"])),
)]
pub async fn update_org_issue(
    State(app): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    if org != app.org {
        authorize(&app, &headers, Scope::EventWrite).await?;
        return Err(not_found("organization"));
    }
    update_issue(State(app), Path(id), headers, body).await
}

pub async fn project_of(app: &AppState, org: &str, slug: &str) -> ApiResult<Project> {
    if org != app.org {
        return Err(not_found("organization"));
    }
    app.store
        .project_by_slug(slug)
        .await?
        .ok_or_else(|| not_found("project"))
}

/// Whether the body asks for a merge: `"merge"` true, or a number or string other than 0.
fn merge_requested(body: &Value) -> ApiResult<bool> {
    match body.get("merge") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::Number(n)) => Ok(n.as_f64() != Some(0.0)),
        Some(Value::String(s)) => match s.as_str() {
            "1" | "true" => Ok(true),
            "0" | "false" | "" => Ok(false),
            _ => Err(bad_request("'merge' must be 1 or true")),
        },
        Some(_) => Err(bad_request("'merge' must be 1 or true")),
    }
}

/// The `?id=` values as issue ids.
fn issue_ids_of(uri: &Uri) -> ApiResult<Vec<i64>> {
    query_values(uri, "id")
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| bad_request(format!("invalid issue id '{v}'")))
        })
        .collect()
}

/// `{"merge": 1}` on the bulk route: the `?id=` issues (at least two, of this project, none
/// merged already; `?status=` plays no part) become one, the one with the most events
/// (`store::merge`). Answers Sentry's `{"merge": {"parent": "<id>", "children": [...]}}`.
/// Sentry ignores the other fields of a merge request; we refuse a merge sent with a status
/// change instead (400), since it is unclear which issues the change should reach, and
/// ignore the rest.
async fn merge(
    app: &AppState,
    project: &Project,
    uri: &Uri,
    body: &Value,
    token: i64,
) -> ApiResult<Response> {
    if ["status", "statusDetails"]
        .iter()
        .any(|k| body.get(*k).is_some_and(|v| !v.is_null()))
    {
        return Err(bad_request(
            "a merge cannot carry a status change: send the merge and the change as two requests",
        ));
    }
    let ids = issue_ids_of(uri)?;
    let now = app.clock.now().timestamp_micros();
    let merged = app
        .store
        .merge_issues(project.id, &ids, Actor::Token(token), now)
        .await?
        .map_err(bad_request)?;
    let children: Vec<String> = merged.children.iter().map(i64::to_string).collect();
    Ok(
        Json(json!({"merge": {"parent": merged.parent.to_string(), "children": children}}))
            .into_response(),
    )
}

/// `PUT /api/0/projects/{org}/{project}/issues/?id=..&id=..` (or `?status=`, or nothing for
/// all): answers the applied change like Sentry, 204 when no issue matched, 400 when every
/// matched issue refused. A merged issue's id stands for the issue it was merged into. With
/// `{"merge": 1}` in the body, merges the issues instead (`merge`).
#[utoipa::path(
    put,
    path = "/api/0/projects/{org}/{project}/issues/",
    tag = "issues",
    params(
        super::openapi::ProjectPath,
        ("id" = Option<Vec<i64>>, Query, explode, description = "The issues to change (repeat `id`); none: every issue (of `status`)"),
        ("status" = Option<String>, Query, description = "Only issues of this status: `unresolved`, `resolved`, `ignored`"),
    ),
    request_body = super::openapi::IssueUpdate,
    responses(
        (status = 200, description = "The change applied (or the merge)", body = super::openapi::BulkUpdateAnswer),
        (status = 204, description = "No issue matched"),
        (status = 400, description = "A malformed body, or a change the issue refuses", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:write"])),
)]
pub async fn bulk_update(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let token = authorize(&app, &headers, Scope::EventWrite).await?.token_id;
    let project = project_of(&app, &org, &slug).await?;
    let body = body_json(&body)?;
    if merge_requested(&body)? {
        return merge(&app, &project, &uri, &body, token).await;
    }
    let update = parse_update(&body, app.clock.now()).map_err(bad_request)?;
    let ids = issue_ids_of(&uri)?;
    let status = query_values(&uri, "status")
        .into_iter()
        .next()
        .filter(|s| !s.is_empty());
    let status = match status.as_deref() {
        None => None,
        Some("unresolved") => Some("unresolved"),
        Some("resolved") => Some("resolved"),
        Some("ignored" | "muted" | "archived") => Some("ignored"),
        Some(other) => return Err(bad_request(format!("unknown status '{other}'"))),
    };
    let targets = if ids.is_empty() {
        app.store.issue_ids(project.id, status).await?
    } else {
        // Ids outside the project are left alone, as Sentry does.
        let in_project = app.store.issue_ids(project.id, status).await?;
        let mut targets = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(issue) = app.store.issue_following_merges(id).await? else {
                continue;
            };
            if in_project.contains(&issue.id) && !targets.contains(&issue.id) {
                targets.push(issue.id);
            }
        }
        targets
    };
    if targets.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let Update::Change(c) = update else {
        return Ok(Json(json!({})).into_response());
    };
    let outcome = change(&app, targets, c, Actor::Token(token)).await?;
    let refusals: Vec<String> = outcome
        .iter()
        .filter_map(|(id, r)| match r {
            Some(Err(Refusal::NoChange(_))) | Some(Ok(_)) | None => None,
            Some(Err(refusal)) => Some(format!("issue {id}: {refusal}")),
        })
        .collect();
    if refusals.len() == outcome.len() {
        return Err(bad_request(refusals.join("; ")));
    }
    let applied = outcome.iter().find_map(|(_, r)| match r {
        Some(Ok(t)) => Some(t.to.clone()),
        _ => None,
    });
    let mut answer = json!({
        "status": body.get("status").cloned().unwrap_or(Value::Null),
        "statusDetails": applied.as_ref().map(crate::issue::state::status_details).unwrap_or(json!({})),
    });
    if !refusals.is_empty() {
        answer["refused"] = json!(refusals);
    }
    Ok(Json(answer).into_response())
}

/// One history row in the API's shape: `data` holds the reason and what the row stored (a
/// merge's `parent` and `children`).
pub fn activity_json(a: &crate::issue::model::Activity) -> Value {
    let user = a
        .actor
        .strip_prefix("token:")
        .map(|id| json!({"id": id, "type": "token"}))
        .unwrap_or(Value::Null);
    let mut data = match serde_json::from_str::<Value>(&a.data) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    data.insert("reason".into(), json!(a.reason));
    json!({
        "id": a.id.to_string(),
        "type": a.kind,
        "data": data,
        "reason": a.reason,
        "actor": a.actor,
        "user": user,
        "dateCreated": iso(a.created_at),
    })
}

/// An issue's history, newest first.
///
/// `GET /api/0/issues/{id}/activities/`.
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/activities/",
    tag = "issues",
    params(super::openapi::IssuePath),
    responses(
        (status = 200, description = "The history", body = Vec<super::openapi::Activity>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn activities(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    let rows = app.store.activities(issue.id).await?;
    Ok(Json(Value::Array(rows.iter().map(activity_json).collect())))
}

/// Sentry's project object plus our settings (alerts, limits, grouping).
pub(crate) async fn project_json(app: &AppState, p: &Project) -> ApiResult<Value> {
    let (new_issue, regression, unmute) = app.store.project_alerts(p.id).await?;
    let limits = app.store.project_limits(p.id).await?;
    let grouping = app.store.grouping_settings(p.id).await?.unwrap_or_default();
    let mut project = json!({
        "id": p.id.to_string(),
        "slug": p.slug,
        "name": p.name,
        "platform": null,
        "dateCreated": iso(p.created_at),
        "status": "active",
        "isBookmarked": false,
        "isMember": true,
        "hasAccess": true,
        "features": [],
        "organization": super::projects::organization_json(app),
        "alertOnNewIssue": new_issue,
        "alertOnRegression": regression,
        "alertOnUnmute": unmute,
        // null: no quota; for retention, the server's default.
        "rateLimitPerMinute": limits.rate_limit_minute,
        "rateLimitPerHour": limits.rate_limit_hour,
        "retentionDays": limits.retention_days,
        "retentionMaxEvents": limits.retention_max_events,
    });
    if let Value::Object(m) = &mut project {
        m.extend(super::grouping::settings_json(&grouping));
    }
    Ok(project)
}

/// `GET /api/0/projects/{org}/{project}/`.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/",
    tag = "projects",
    params(super::openapi::ProjectPath),
    responses(
        (status = 200, description = "The project with its settings", body = super::openapi::Project),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn get_project(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let p = project_of(&app, &org, &slug).await?;
    Ok(Json(project_json(&app, &p).await?))
}

/// Applies the body's limit fields to `limits`: a non-negative integer sets one (0 clears it,
/// as on the command line), null clears it, an absent one stays; anything else is refused.
/// Returns whether the body named any.
fn apply_limits(body: &Value, limits: &mut ProjectLimits) -> ApiResult<bool> {
    let mut named = false;
    for (name, field) in [
        ("rateLimitPerMinute", &mut limits.rate_limit_minute),
        ("rateLimitPerHour", &mut limits.rate_limit_hour),
        ("retentionDays", &mut limits.retention_days),
        ("retentionMaxEvents", &mut limits.retention_max_events),
    ] {
        let value = match body.get(name) {
            None => continue,
            Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(n) if n >= 0 => (n > 0).then_some(n),
                _ => {
                    return Err(bad_request(format!(
                        "'{name}' must be a non-negative integer or null"
                    )))
                }
            },
        };
        *field = value;
        named = true;
    }
    Ok(named)
}

/// `PUT /api/0/projects/{org}/{project}/` with `name` and `slug` (a rename: 409 when the
/// slug is taken), `alertOnNewIssue`, `alertOnRegression`,
/// `alertOnUnmute` (booleans), the limits `rateLimitPerMinute`, `rateLimitPerHour`,
/// `retentionDays`, `retentionMaxEvents` (integers, null clears) and the grouping settings
/// `groupingConfig`, `fingerprintingRules`, `groupingEnhancements`, `secondaryGroupingConfig`,
/// `secondaryGroupingExpiry` (see `http::grouping::apply_settings`); absent ones stay as they
/// are. The body is checked whole before anything is stored.
#[utoipa::path(
    put,
    path = "/api/0/projects/{org}/{project}/",
    tag = "projects",
    params(super::openapi::ProjectPath),
    request_body = super::openapi::ProjectUpdate,
    responses(
        (status = 200, description = "The project as changed", body = super::openapi::Project),
        (status = 400, description = "A malformed body or a bad field, named (a rule with its line)", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 409, description = "The slug is taken, or the grouping settings changed meanwhile", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn update_project(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    let mut p = project_of(&app, &org, &slug).await?;
    let body = body_json(&body)?;
    let (name, new_slug) = super::projects::rename_fields(&body)?;
    let switch = |name: &str| -> ApiResult<Option<bool>> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(bad_request(format!("'{name}' must be true or false"))),
        }
    };
    let (a, b, c) = (
        switch("alertOnNewIssue")?,
        switch("alertOnRegression")?,
        switch("alertOnUnmute")?,
    );
    let mut limits = app.store.project_limits(p.id).await?;
    let named_limits = apply_limits(&body, &mut limits)?;
    let current = app.store.grouping_settings(p.id).await?.unwrap_or_default();
    let now = app.clock.now().timestamp_micros();
    let grouping =
        super::grouping::apply_settings(&body, &current, now, app.grouping.transition_us())?;
    // The rename first: the only part that can still be refused (a slug taken), before
    // anything else is stored.
    if name.is_some() || new_slug.is_some() {
        p = super::projects::rename(&app, &p, name.as_deref(), new_slug.as_deref()).await?;
    }
    if let Some(grouping) = grouping {
        let saved = app
            .store
            .set_grouping_settings(p.id, &grouping, &current)
            .await?;
        app.grouping.forget(p.id);
        if !saved {
            return Err(ApiError(
                StatusCode::CONFLICT,
                "the project's grouping settings changed meanwhile (another person, or a \
                 scheme upgrade); read them again and retry"
                    .into(),
            ));
        }
    }
    if named_limits {
        app.store.set_project_limits(p.id, &limits).await?;
    }
    app.store.set_project_alerts(p.id, a, b, c).await?;
    Ok(Json(project_json(&app, &p).await?))
}

fn channel_json(c: &crate::store::alerts::Channel) -> Value {
    let mut config: Value = serde_json::from_str(&c.config).unwrap_or(json!({}));
    // A webhook secret is write-only.
    if let Some(secret) = config.get_mut("secret") {
        *secret = json!("********");
    }
    json!({"id": c.id.to_string(), "kind": c.kind, "config": config, "dateCreated": iso(c.created_at)})
}

/// A project's alert channels.
///
/// `GET /api/0/projects/{org}/{project}/alert-channels/`.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/alert-channels/",
    tag = "alerts",
    params(super::openapi::ProjectPath),
    responses(
        (status = 200, description = "The channels", body = Vec<super::openapi::Channel>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn list_channels(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let p = project_of(&app, &org, &slug).await?;
    let rows = app.store.channels(p.id).await?;
    Ok(Json(Value::Array(rows.iter().map(channel_json).collect())))
}

/// `POST /api/0/projects/{org}/{project}/alert-channels/` with `{"kind", "url", "secret"?}` or
/// `{"kind": "email", "to": [...]}`.
#[utoipa::path(
    post,
    path = "/api/0/projects/{org}/{project}/alert-channels/",
    tag = "alerts",
    params(super::openapi::ProjectPath),
    request_body = super::openapi::ChannelCreate,
    responses(
        (status = 201, description = "Created", body = super::openapi::Channel),
        (status = 400, description = "A malformed body, or an invalid channel", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn create_channel(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    let p = project_of(&app, &org, &slug).await?;
    let (kind, config) = crate::alert::channel_config(&body_json(&body)?).map_err(bad_request)?;
    let c = app
        .store
        .create_channel(
            p.id,
            &kind,
            &config.to_string(),
            app.clock.now().timestamp_micros(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(channel_json(&c))).into_response())
}

/// Deletes an alert channel.
///
/// `DELETE /api/0/projects/{org}/{project}/alert-channels/{id}/`.
#[utoipa::path(
    delete,
    path = "/api/0/projects/{org}/{project}/alert-channels/{id}/",
    tag = "alerts",
    params(super::openapi::ProjectPath, ("id" = String, Path, description = "The channel's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or channel", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn delete_channel(
    State(app): State<AppState>,
    Path((org, slug, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    let p = project_of(&app, &org, &slug).await?;
    // A malformed id names no channel: 404 in `{"detail"}`, not axum's plain-text 400.
    let id: i64 = id.parse().map_err(|_| not_found("channel"))?;
    if app.store.delete_channel(p.id, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found("channel"))
    }
}

/// A project's alert delivery log, newest first (the last 200).
///
/// `GET /api/0/projects/{org}/{project}/alert-deliveries/`.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/alert-deliveries/",
    tag = "alerts",
    params(super::openapi::ProjectPath),
    responses(
        (status = 200, description = "The deliveries", body = Vec<super::openapi::Delivery>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn deliveries(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let p = project_of(&app, &org, &slug).await?;
    let rows = app.store.alert_log(p.id, 200).await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.id.to_string(),
                    "channel": r.channel_id.to_string(),
                    "issue": r.issue_id.to_string(),
                    "kind": r.kind,
                    "idempotencyKey": r.idempotency_key,
                    "status": r.status,
                    "attempts": r.attempts,
                    "lastStatus": r.last_status,
                    "lastError": r.last_error,
                    "nextAttemptAt": (r.status == "pending").then(|| iso(r.next_attempt_at)),
                    "dateCreated": iso(r.created_at),
                    "dateDelivered": r.delivered_at.map(iso),
                    // The process holding (or last holding) the row's lease.
                    "claimedBy": r.claimed_by,
                })
            })
            .collect(),
    )))
}
