//! API tokens in Sentry's shapes: `GET/POST /api/0/api-tokens/`, `DELETE
//! /api/0/api-tokens/{id}/`, all under `org:admin`. A token holding `org:admin` holds every
//! scope, so it can never grant one it lacks; a token without it cannot reach these routes.

use super::api::{authorize, not_found, ApiError, ApiResult};
use super::lifecycle::{bad_request, body_json};
use super::AppState;
use crate::issue::view::iso;
use crate::store::tokens::TokenInfo;
use crate::token::{self, Scope, Scopes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Sentry's names read into scopes; an unknown one is named in the error.
pub fn parse_scopes<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
    let mut list = Vec::new();
    for name in names {
        match Scope::parse(name) {
            Some(s) => list.push(s),
            None => {
                let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                return Err(format!(
                    "unknown scope '{name}' (known: {})",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(Scopes::new(list))
}

fn token_json(t: &TokenInfo) -> Value {
    json!({
        "id": t.id.to_string(),
        "name": t.label,
        "scopes": t.scopes.names(),
        "dateCreated": iso(t.created_at),
        "tokenLastCharacters": t.hint,
        "expiresAt": null,
    })
}

/// `GET /api/0/api-tokens/`: every token, oldest first (never the token itself).
#[utoipa::path(
    get,
    path = "/api/0/api-tokens/",
    tag = "tokens",
    responses(
        (status = 200, description = "Every token, oldest first (never the token itself)", body = Vec<super::openapi::Token>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["org:admin"])),
)]
pub async fn list(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::OrgAdmin).await?;
    let tokens = app.store.list_tokens().await?;
    Ok(Json(tokens.iter().map(token_json).collect()))
}

/// `POST /api/0/api-tokens/` with `{"scopes": [...], "name"?}` (all scopes when absent): 201
/// with the token, shown this once.
#[utoipa::path(
    post,
    path = "/api/0/api-tokens/",
    tag = "tokens",
    request_body = super::openapi::TokenCreate,
    responses(
        (status = 201, description = "The token, with `token` shown this once", body = super::openapi::Token),
        (status = 400, description = "A malformed body or an unknown scope, named", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope (or one it would grant)", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["org:admin"])),
)]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let caller = authorize(&app, &headers, Scope::OrgAdmin).await?;
    let body = body_json(&body)?;
    let scopes = match body.get("scopes") {
        None | Some(Value::Null) => Scopes::all(),
        Some(Value::Array(items)) => {
            let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            let names = names.ok_or_else(|| bad_request("'scopes' must be a list of names"))?;
            if names.is_empty() {
                return Err(bad_request("'scopes' must name at least one scope"));
            }
            parse_scopes(names).map_err(bad_request)?
        }
        Some(_) => return Err(bad_request("'scopes' must be a list of names")),
    };
    // Holding org:admin, the caller holds every scope; checked anyway, so that a change of
    // the route's scope can never let a token hand out more than it has.
    if let Some(missing) = scopes
        .names()
        .iter()
        .find_map(|n| Scope::parse(n).filter(|s| !caller.scopes.allows(*s)))
    {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("a token cannot grant the scope '{missing}', which it lacks"),
        ));
    }
    let name = match body.get("name").or_else(|| body.get("label")) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= 200 => s.clone(),
        Some(_) => return Err(bad_request("'name' must be a string")),
    };
    let now = app.clock.now().timestamp_micros();
    let t = token::generate();
    let hint = &t[t.len() - 4..];
    let id = app
        .store
        .insert_token(&token::hash(&t), &name, &scopes, hint, now)
        .await?;
    let info = TokenInfo {
        id,
        label: name,
        scopes,
        hint: hint.to_owned(),
        created_at: now,
    };
    let mut out = token_json(&info);
    out["token"] = json!(t);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `DELETE /api/0/api-tokens/{id}/`: 204; the token is refused (401) from then on.
#[utoipa::path(
    delete,
    path = "/api/0/api-tokens/{id}/",
    tag = "tokens",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked: the token is refused from now on"),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such token", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["org:admin"])),
)]
pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::OrgAdmin).await?;
    let id: i64 = id.parse().map_err(|_| not_found("token"))?;
    if !app.store.delete_token(id).await? {
        return Err(not_found("token"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
