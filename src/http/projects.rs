//! Projects, their DSN keys and deletion in Sentry's shapes: the organization's project list
//! and creation, a project's rename (with `lifecycle::update_project`) and deletion, its keys
//! (`ProjectKey`), and `DELETE` of an issue. A deletion answers at once; the rows go in the
//! background (`store::purge`).

use super::api::{authorize, find_issue, not_found, ApiError, ApiResult};
use super::lifecycle::{bad_request, body_json, project_json, project_of};
use super::AppState;
use crate::issue::view::iso;
use crate::store::keys::ProjectKey;
use crate::store::projects::{slugify, valid_slug, Project};
use crate::store::StoreError;
use crate::token::{self, Scope};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The one organization, as Sentry nests it in a project.
pub fn organization_json(app: &AppState) -> Value {
    json!({"id": "1", "slug": app.org, "name": app.org})
}

fn conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
        e => e.into(),
    }
}

/// The body's `name` (a non-empty string) and `slug` (a valid slug), when present.
pub fn rename_fields(body: &Value) -> ApiResult<(Option<String>, Option<String>)> {
    let name = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => {
            Some(s.trim().to_owned())
        }
        Some(_) => return Err(bad_request("'name' must be a non-empty string")),
    };
    let slug = match body.get("slug") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_slug(s) => Some(s.clone()),
        Some(_) => {
            return Err(bad_request(
                "'slug' must be 1-50 lowercase letters, digits, '-' or '_'",
            ))
        }
    };
    Ok((name, slug))
}

/// Renames `p`: 409 when the slug is taken.
pub async fn rename(
    app: &AppState,
    p: &Project,
    name: Option<&str>,
    slug: Option<&str>,
) -> ApiResult<Project> {
    app.store
        .rename_project(p.id, name, slug)
        .await
        .map_err(conflict)?
        .ok_or_else(|| not_found("project"))
}

/// `GET /api/0/organizations/{org}/projects/`: live projects, by id.
#[utoipa::path(
    get,
    path = "/api/0/organizations/{org}/projects/",
    tag = "projects",
    params(("org" = String, Path, description = "The organization's slug")),
    responses(
        (status = 200, description = "Live projects, by id", body = Vec<super::openapi::Project>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn list_projects(
    State(app): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    if org != app.org {
        return Err(not_found("organization"));
    }
    let mut out = Vec::new();
    for p in app.store.list_projects().await? {
        out.push(project_json(&app, &p).await?);
    }
    Ok(Json(Value::Array(out)))
}

/// `POST /api/0/organizations/{org}/projects/` with `{"name", "slug"?}` (the slug made from
/// the name when absent): 201 with the project, which has one active DSN key.
#[utoipa::path(
    post,
    path = "/api/0/organizations/{org}/projects/",
    tag = "projects",
    params(("org" = String, Path, description = "The organization's slug")),
    request_body = super::openapi::ProjectCreate,
    responses(
        (status = 201, description = "The project, with one active DSN key", body = super::openapi::Project),
        (status = 400, description = "A malformed body, no name, or a bad slug", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization", body = super::openapi::Error),
        (status = 409, description = "The slug is taken", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn create_project(
    State(app): State<AppState>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    if org != app.org {
        return Err(not_found("organization"));
    }
    let body = body_json(&body)?;
    let (name, slug) = rename_fields(&body)?;
    let name = name.ok_or_else(|| bad_request("'name' is required"))?;
    let slug = match slug {
        Some(s) => s,
        None => {
            let s = slugify(&name);
            if !valid_slug(&s) {
                return Err(bad_request(
                    "no slug can be made from this name: give 'slug' (1-50 lowercase letters, \
                     digits, '-' or '_')",
                ));
            }
            s
        }
    };
    let now = app.clock.now().timestamp_micros();
    let key = token::generate_public_key();
    let p = app
        .store
        .create_project(&slug, &name, &key, now)
        .await
        .map_err(conflict)?;
    Ok((StatusCode::CREATED, Json(project_json(&app, &p).await?)).into_response())
}

/// `DELETE /api/0/projects/{org}/{project}/`: 204. The project, its keys and its issues are
/// gone at once for reads and ingestion (other processes refuse its keys within a second);
/// its rows are purged in the background.
#[utoipa::path(
    delete,
    path = "/api/0/projects/{org}/{project}/",
    tag = "projects",
    params(super::openapi::ProjectPath),
    responses(
        (status = 204, description = "Deleted: gone from every route and list; its rows are purged in the background"),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:admin"])),
)]
pub async fn delete_project(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::ProjectAdmin).await?;
    let p = project_of(&app, &org, &slug).await?;
    let keys = app.store.project_keys(p.id).await?;
    let now = app.clock.now().timestamp_micros();
    if !app.store.delete_project(p.id, now).await? {
        return Err(not_found("project"));
    }
    for k in keys {
        app.keys.forget(&k.public_key);
    }
    app.grouping.forget(p.id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{scheme}://{key}@{host}{path}/{project_id}` from the public URL.
pub fn dsn(public_url: &str, public_key: &str, project_id: i64) -> String {
    let (scheme, rest) = public_url.split_once("://").unwrap_or(("http", public_url));
    format!("{scheme}://{public_key}@{rest}/{project_id}")
}

/// Sentry's `ProjectKey`. The key's id in URLs is its public key, as in Sentry.
pub fn key_json(app: &AppState, k: &ProjectKey) -> Value {
    let base = app.public_url.trim_end_matches('/');
    let pid = k.project_id;
    let key = &k.public_key;
    json!({
        "id": key,
        "name": k.label,
        "label": k.label,
        "public": key,
        // Secret keys are a thing of the past in Sentry too; none is issued.
        "secret": null,
        "projectId": pid,
        "isActive": k.is_active,
        "dateCreated": iso(k.created_at),
        "dsn": {
            "public": dsn(base, key, pid),
            "secret": dsn(base, key, pid),
            "csp": format!("{base}/api/{pid}/csp-report/?sentry_key={key}"),
            "security": format!("{base}/api/{pid}/security/?sentry_key={key}"),
            "minidump": format!("{base}/api/{pid}/minidump/?sentry_key={key}"),
            "unreal": format!("{base}/api/{pid}/unreal/{key}/"),
            "cdn": format!("{base}/js-sdk-loader/{key}.min.js"),
            "crons": format!("{base}/api/{pid}/cron/___MONITOR_SLUG___/{key}/"),
        },
        "browserSdkVersion": "latest",
        "browserSdk": {"choices": [["latest", "latest"]]},
        "rateLimit": null,
        "dynamicSdkLoaderOptions": {
            "hasReplay": false,
            "hasPerformance": false,
            "hasDebug": false,
        },
    })
}

/// `GET /api/0/projects/{org}/{project}/keys/`.
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/keys/",
    tag = "projects",
    params(super::openapi::ProjectPath),
    responses(
        (status = 200, description = "The project's DSN keys", body = Vec<super::openapi::ProjectKey>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn list_keys(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let p = project_of(&app, &org, &slug).await?;
    let keys = app.store.project_keys(p.id).await?;
    Ok(Json(keys.iter().map(|k| key_json(&app, k)).collect()))
}

/// The body's `name` (Sentry's field; `label` is taken too) and `isActive`.
fn key_fields(body: &Value) -> ApiResult<(Option<String>, Option<bool>)> {
    let name = match body.get("name").or_else(|| body.get("label")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 200 => Some(s.trim().to_owned()),
        Some(_) => return Err(bad_request("'name' must be a string")),
    };
    let active = match body.get("isActive") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad_request("'isActive' must be true or false")),
    };
    Ok((name, active))
}

/// `POST /api/0/projects/{org}/{project}/keys/` with `{"name"?}`: 201 with a new active key.
#[utoipa::path(
    post,
    path = "/api/0/projects/{org}/{project}/keys/",
    tag = "projects",
    params(super::openapi::ProjectPath),
    request_body = super::openapi::KeyUpdate,
    responses(
        (status = 201, description = "A new active key", body = super::openapi::ProjectKey),
        (status = 400, description = "A malformed body or a bad field", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 409, description = "The key exists already", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn create_key(
    State(app): State<AppState>,
    Path((org, slug)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    let p = project_of(&app, &org, &slug).await?;
    let body = body_json(&body)?;
    let (name, _) = key_fields(&body)?;
    let now = app.clock.now().timestamp_micros();
    let key = app
        .store
        .create_key(
            p.id,
            &token::generate_public_key(),
            name.as_deref().unwrap_or(""),
            now,
        )
        .await
        .map_err(conflict)?;
    // An unknown-key answer cached for it (a client trying it early) is dropped here.
    app.keys.forget(&key.public_key);
    Ok((StatusCode::CREATED, Json(key_json(&app, &key))).into_response())
}

/// `GET /api/0/projects/{org}/{project}/keys/{key}/` (`key`: the public key, or its id).
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/keys/{key}/",
    tag = "projects",
    params(super::openapi::ProjectPath, ("key" = String, Path, description = "The key: its public key, or its number")),
    responses(
        (status = 200, description = "The key", body = super::openapi::ProjectKey),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or key", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:read"])),
)]
pub async fn get_key(
    State(app): State<AppState>,
    Path((org, slug, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectRead).await?;
    let p = project_of(&app, &org, &slug).await?;
    let k = app
        .store
        .project_key(p.id, &key)
        .await?
        .ok_or_else(|| not_found("key"))?;
    Ok(Json(key_json(&app, &k)))
}

/// `PUT /api/0/projects/{org}/{project}/keys/{key}/` with `name` and/or `isActive`: a key
/// turned off is refused by ingestion at once here and within a second everywhere.
#[utoipa::path(
    put,
    path = "/api/0/projects/{org}/{project}/keys/{key}/",
    tag = "projects",
    params(super::openapi::ProjectPath, ("key" = String, Path, description = "The key: its public key, or its number")),
    request_body = super::openapi::KeyUpdate,
    responses(
        (status = 200, description = "The key as changed (one turned off is refused by ingestion within a second)", body = super::openapi::ProjectKey),
        (status = 400, description = "A malformed body or a bad field", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or key", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:write"])),
)]
pub async fn update_key(
    State(app): State<AppState>,
    Path((org, slug, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::ProjectWrite).await?;
    let p = project_of(&app, &org, &slug).await?;
    let body = body_json(&body)?;
    let (name, active) = key_fields(&body)?;
    let k = app
        .store
        .update_key(p.id, &key, name.as_deref(), active)
        .await?
        .ok_or_else(|| not_found("key"))?;
    app.keys.forget(&k.public_key);
    Ok(Json(key_json(&app, &k)))
}

/// `DELETE /api/0/projects/{org}/{project}/keys/{key}/`: 204; the key is revoked for good.
#[utoipa::path(
    delete,
    path = "/api/0/projects/{org}/{project}/keys/{key}/",
    tag = "projects",
    params(super::openapi::ProjectPath, ("key" = String, Path, description = "The key: its public key, or its number")),
    responses(
        (status = 204, description = "Revoked for good"),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or key", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["project:admin"])),
)]
pub async fn delete_key(
    State(app): State<AppState>,
    Path((org, slug, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::ProjectAdmin).await?;
    let p = project_of(&app, &org, &slug).await?;
    let k = app
        .store
        .project_key(p.id, &key)
        .await?
        .ok_or_else(|| not_found("key"))?;
    if !app.store.delete_key(p.id, &k.public_key).await? {
        return Err(not_found("key"));
    }
    app.keys.forget(&k.public_key);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /api/0/issues/{issue}/` (numeric or short id): 202, as Sentry answers. The issue is
/// gone from every read at once and a new event of its hashes opens a new issue; its events
/// and other rows are purged in the background.
#[utoipa::path(
    delete,
    path = "/api/0/issues/{issue}/",
    tag = "issues",
    params(super::openapi::IssuePath),
    responses(
        (status = 202, description = "Deleted: gone from every read; its rows are purged in the background"),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:admin"])),
)]
pub async fn delete_issue(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::EventAdmin).await?;
    let issue = find_issue(&app, &id).await?;
    let now = app.clock.now().timestamp_micros();
    if !app.store.delete_issue(issue.id, now).await? {
        return Err(not_found("issue"));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `DELETE /api/0/organizations/{org}/issues/{issue}/`.
#[utoipa::path(
    delete,
    path = "/api/0/organizations/{org}/issues/{issue}/",
    tag = "issues",
    params(("org" = String, Path, description = "The organization's slug"), super::openapi::IssuePath),
    responses(
        (status = 202, description = "Deleted: gone from every read; its rows are purged in the background"),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:admin"])),
)]
pub async fn delete_org_issue(
    State(app): State<AppState>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if org != app.org {
        authorize(&app, &headers, Scope::EventAdmin).await?;
        return Err(not_found("organization"));
    }
    delete_issue(State(app), Path(id), headers).await
}
