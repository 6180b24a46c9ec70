//! An issue's tags in Sentry's shapes: `/api/0/issues/{id}/tags/`, `/tags/{key}/` and
//! `/tags/{key}/values/`, narrowed by `?environment=` (repeatable), read from `issue_tags`.

use super::api::ApiResult;
use super::api::{authorize, find_issue, iso, link_header, not_found, page_limit, ApiError};
use super::query_values;
use super::AppState;
use crate::store::tags::{IssueAggregates, ReleaseSeen, TagKey, TagValue};
use crate::token::Scope;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Values shown per key in `topValues` (Sentry shows nine).
const TOP_VALUES: i64 = 9;

/// Sentry's label of a tag key: its own for the well-known ones, else the key with
/// underscores as spaces and each word capitalized (`server_name` -> `Server`, `os.name` ->
/// `Os.name`).
pub fn key_label(key: &str) -> String {
    let known = match key {
        "exc_type" => Some("Exception Type"),
        "sentry:user" | "user" => Some("User"),
        "sentry:release" => Some("Release"),
        "sentry:dist" | "dist" => Some("Distribution"),
        "os" => Some("OS"),
        "url" => Some("URL"),
        "server_name" => Some("Server"),
        _ => None,
    };
    if let Some(k) = known {
        return k.to_owned();
    }
    key.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn value_json(v: &TagValue) -> Value {
    json!({
        "key": v.key,
        "name": v.value,
        "value": v.value,
        "count": v.count,
        "firstSeen": iso(v.first_seen),
        "lastSeen": iso(v.last_seen),
    })
}

fn key_json(k: &TagKey) -> Value {
    json!({
        "key": k.key,
        "name": key_label(&k.key),
        "totalValues": k.total,
        "uniqueValues": k.unique,
        "topValues": k.top.iter().map(value_json).collect::<Vec<_>>(),
    })
}

/// A tag value of an issue (OpenAPI schema of `value_json`).
#[allow(dead_code)] // read only by the OpenAPI derive
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagValueDoc {
    key: String,
    /// The value as shown (the value itself).
    name: String,
    value: String,
    /// Events of the issue with this value.
    count: i64,
    first_seen: String,
    last_seen: String,
}

/// A tag key of an issue (OpenAPI schema of `key_json`).
#[allow(dead_code)] // read only by the OpenAPI derive
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagKeyDoc {
    key: String,
    /// The key's label (`browser` -> `Browser`).
    name: String,
    /// Events of the issue with this key.
    total_values: i64,
    /// Distinct values.
    unique_values: i64,
    /// The most frequent values (at most 9), by count then value.
    top_values: Vec<TagValueDoc>,
}

/// `/api/0/issues/{issue}/tags/{key}/...`: the tag key.
#[allow(dead_code)] // read only by the OpenAPI derive
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The tag key (`browser`, `environment`, `release`, `level`, ...).
    key: String,
}

/// `?environment=` (repeatable): counts only events of these environments (empty: events
/// without one).
#[allow(dead_code)] // read only by the OpenAPI derive
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentQuery {
    environment: Option<Vec<String>>,
}

/// The values page's query.
#[allow(dead_code)] // read only by the OpenAPI derive
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValuesQuery {
    environment: Option<Vec<String>>,
    /// At most 100 (the default).
    limit: Option<i64>,
    /// From a `Link` header's `rel="next"`.
    cursor: Option<String>,
}

/// `GET /api/0/issues/{id}/tags/`: every tag key of the issue with its top values.
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/tags/",
    tag = "issues",
    params(super::openapi::IssuePath, EnvironmentQuery),
    responses(
        (status = 200, description = "The issue's tag keys, in key order", body = Vec<TagKeyDoc>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn issue_tags(
    State(app): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    let envs = query_values(&uri, "environment");
    let keys = (app.store)
        .issue_tag_keys(issue.id, None, &envs, TOP_VALUES)
        .await?;
    Ok(Json(Value::Array(keys.iter().map(key_json).collect())))
}

/// `GET /api/0/issues/{id}/tags/{key}/`: one key with its top values (404 when the issue
/// has no event with it).
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/tags/{key}/",
    tag = "issues",
    params(super::openapi::IssuePath, KeyPath, EnvironmentQuery),
    responses(
        (status = 200, description = "The tag key", body = TagKeyDoc),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue, or no event of it has the key", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn issue_tag(
    State(app): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    let envs = query_values(&uri, "environment");
    let keys = (app.store)
        .issue_tag_keys(issue.id, Some(&key), &envs, TOP_VALUES)
        .await?;
    let k = keys.first().ok_or_else(|| not_found("tag key"))?;
    Ok(Json(key_json(k)))
}

/// `GET /api/0/issues/{id}/tags/{key}/values/`: every value, most frequent first, in pages
/// (`?limit=`, at most 100) with Sentry's `Link` header; the cursor is Sentry's
/// `value:offset:is_prev` form with the offset in the middle.
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/tags/{key}/values/",
    tag = "issues",
    params(super::openapi::IssuePath, KeyPath, ValuesQuery),
    responses(
        (status = 200, description = "A page of values, most frequent first; `Link` has the next", body = Vec<TagValueDoc>),
        (status = 400, description = "A bad limit or cursor", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn issue_tag_values(
    State(app): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    let envs = query_values(&uri, "environment");
    let limit = match query_values(&uri, "limit").first() {
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "limit must be a number".into()))?,
        ),
        None => None,
    };
    let limit = page_limit(limit);
    let offset = match query_values(&uri, "cursor").first().map(String::as_str) {
        None | Some("") => 0,
        Some(c) => c
            .split(':')
            .nth(1)
            .and_then(|o| o.parse::<i64>().ok())
            .filter(|o| *o >= 0)
            .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "invalid cursor".into()))?,
    };
    let mut values = (app.store)
        .issue_tag_values(issue.id, &key, &envs, offset, limit + 1)
        .await?;
    let next = (values.len() as i64 > limit).then(|| {
        values.truncate(limit as usize);
        format!("0:{}:0", offset + limit)
    });
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut base = format!(
        "{}/api/0/issues/{}/tags/{}/values/?limit={limit}",
        app.public_url,
        issue.id,
        enc(&key)
    );
    for e in &envs {
        base.push_str(&format!("&environment={}", enc(e)));
    }
    let body: Vec<Value> = values.iter().map(value_json).collect();
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::LINK, link_header(&base, next));
    Ok(resp)
}

/// Sentry's release object, as the issue saw the release.
fn release_json(r: &ReleaseSeen) -> Value {
    json!({
        "version": r.version,
        "shortVersion": short_version(&r.version),
        "dateCreated": iso(r.created.unwrap_or(r.first_event)),
        "dateReleased": null,
        "firstEvent": iso(r.first_event),
        "lastEvent": iso(r.last_event),
    })
}

/// `package@1.2.3+build` shows as `1.2.3+build`, as Sentry shortens versions; others as
/// they are.
fn short_version(v: &str) -> &str {
    match v.split_once('@') {
        Some((package, rest)) if !package.is_empty() && !rest.is_empty() => rest,
        _ => v,
    }
}

/// The fields of the issue detail that come from its aggregates: `firstRelease`,
/// `lastRelease`, `tags` (key, name, totalValues) and `userCountEstimated`.
pub async fn detail_fields(app: &AppState, issue_id: i64) -> ApiResult<Vec<(&'static str, Value)>> {
    let IssueAggregates {
        tags,
        first_release,
        last_release,
        users_estimated,
    } = app.store.issue_aggregates(issue_id).await?;
    let tags: Vec<Value> = tags
        .iter()
        .map(|(key, total)| json!({"key": key, "name": key_label(key), "totalValues": total}))
        .collect();
    Ok(vec![
        (
            "firstRelease",
            first_release.as_ref().map_or(Value::Null, release_json),
        ),
        (
            "lastRelease",
            last_release.as_ref().map_or(Value::Null, release_json),
        ),
        ("tags", Value::Array(tags)),
        ("userCountEstimated", json!(users_estimated)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_short_versions() {
        for (key, label) in [
            ("browser", "Browser"),
            ("server_name", "Server"),
            ("os.name", "Os.name"),
            ("my_tag", "My Tag"),
            ("level", "Level"),
            ("url", "URL"),
        ] {
            assert_eq!(key_label(key), label);
        }
        assert_eq!(short_version("app@1.2.3"), "1.2.3");
        assert_eq!(short_version("1.2.3"), "1.2.3");
        assert_eq!(short_version("@x"), "@x");
    }
}
