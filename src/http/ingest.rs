//! The SDK-facing routes: `/api/{project_id}/envelope/` and the legacy `/store/`.
//!
//! The path of a request: authenticate from headers or query (before spending CPU on the body),
//! read the body under the compressed cap, decode it under the decompressed cap, parse the
//! envelope, check the envelope's own `dsn` against the other credentials, then prepare the
//! event item and wait for the writer to commit it. Every refusal is a 4xx with
//! `{"detail": ...}`; nothing the client sends can make this panic.

use super::ingest_error_response;
use super::AppState;
use crate::payload::{StoredPayload, MAX_RAW_BODY};
use crate::pipeline::IngestError;
use crate::protocol::auth::{self, AuthError, AuthSources};
use crate::protocol::compression::{self, DecodeError, Encoding};
use crate::protocol::envelope::{self, EnvelopeError, ItemType};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// A refused request: its status and the `detail` the client sees.
#[derive(Debug)]
pub struct Reject {
    pub status: StatusCode,
    pub detail: String,
}

impl Reject {
    fn new(status: u16, detail: impl ToString) -> Reject {
        Reject {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            detail: detail.to_string(),
        }
    }
}

impl From<AuthError> for Reject {
    fn from(e: AuthError) -> Reject {
        Reject::new(e.status(), e)
    }
}
impl From<DecodeError> for Reject {
    fn from(e: DecodeError) -> Reject {
        Reject::new(e.status(), e)
    }
}
impl From<EnvelopeError> for Reject {
    fn from(e: EnvelopeError) -> Reject {
        Reject::new(e.status(), e)
    }
}
impl From<IngestError> for Reject {
    fn from(e: IngestError) -> Reject {
        let status = match e {
            IngestError::InvalidEvent(_) => 400,
            IngestError::Overloaded | IngestError::StoreFailed => 503,
        };
        Reject::new(status, e)
    }
}
impl From<crate::store::StoreError> for Reject {
    fn from(e: crate::store::StoreError) -> Reject {
        tracing::error!(error = %e, "database error while authenticating");
        Reject::new(503, "the server cannot reach its database, retry later")
    }
}

fn respond(result: Result<Option<String>, Reject>) -> Response {
    match result {
        Ok(Some(id)) => Json(serde_json::json!({ "id": id })).into_response(),
        Ok(None) => Json(serde_json::json!({})).into_response(),
        Err(r) => ingest_error_response(r.status, &r.detail),
    }
}

pub async fn envelope(
    State(app): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    respond(ingest_envelope(&app, &project_id, &headers, uri.query(), body).await)
}

pub async fn store(
    State(app): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    respond(ingest_store(&app, &project_id, &headers, uri.query(), body).await)
}

fn path_project(project_id: &str) -> Result<i64, Reject> {
    project_id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Reject::new(400, "bad project path parameter"))
}

fn sources<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> AuthSources<'a> {
    AuthSources {
        x_sentry_auth: headers.get("x-sentry-auth").map(|v| v.as_bytes()),
        authorization: headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        query,
        envelope_dsn: None,
    }
}

fn has_request_credentials(s: &AuthSources) -> bool {
    s.x_sentry_auth.is_some()
        || s.authorization
            .is_some_and(|v| !v.to_ascii_lowercase().starts_with(b"bearer "))
        || s.query.is_some_and(|q| q.contains("sentry_"))
}

/// The key must belong to the project named in the path.
async fn check_project(app: &AppState, key: &str, project_id: i64) -> Result<(), Reject> {
    match app.keys.project_of(key).await? {
        Some(id) if id == project_id => Ok(()),
        _ => Err(Reject::new(
            403,
            "event submission rejected with_reason: ProjectId",
        )),
    }
}

async fn read_body(app: &AppState, body: Body) -> Result<Bytes, Reject> {
    axum::body::to_bytes(body, app.limits.max_body)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Reject::new(413, "request body exceeds the size limit")
            } else {
                Reject::new(400, "failed to read request body")
            }
        })
}

async fn ingest_envelope(
    app: &AppState,
    project_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
) -> Result<Option<String>, Reject> {
    let pid = path_project(project_id)?;
    let mut src = sources(headers, query);
    // Authenticate before touching the body when the request itself carries credentials;
    // only a self-authenticated envelope (its `dsn` header) has to be decoded first.
    let early = has_request_credentials(&src);
    if early {
        let auth = auth::resolve(&src, project_id)?;
        check_project(app, &auth.public_key, pid).await?;
    }
    let encodings = compression::parse_content_encoding(
        headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()),
    )?;
    let raw = read_body(app, body).await?;
    if raw.is_empty() {
        return Err(Reject::new(400, "empty request body"));
    }
    let decoded = compression::decode(&raw, &encodings, app.limits.max_decoded)?;
    let env = envelope::parse(&decoded)?;
    if env.dsn.is_some() || !early {
        src.envelope_dsn = env.dsn.as_deref();
        let auth = auth::resolve(&src, project_id)?;
        check_project(app, &auth.public_key, pid).await?;
    }
    envelope::check_limits(&env, &envelope::Limits::default())?;

    let received = app.clock.now_secs();
    let mut answer = None;
    for item in &env.items {
        match &item.ty {
            ItemType::Event => {
                let single_compressed = env.items.len() == 1
                    && encodings.len() == 1
                    && encodings[0] != Encoding::Identity
                    && raw.len() <= MAX_RAW_BODY;
                let payload = || {
                    if single_compressed {
                        StoredPayload::raw_envelope(encodings[0], raw.to_vec())
                    } else {
                        StoredPayload::compress(item.payload)
                    }
                };
                let id = app
                    .pipeline
                    .ingest(
                        pid,
                        env.event_id.as_deref(),
                        item.payload,
                        payload,
                        received,
                        env.sent_at,
                    )
                    .await?;
                answer = Some(id);
            }
            other => app.pipeline.counters.dropped_item(other.as_str()),
        }
    }
    // An envelope without an event is answered `{}` (Relay does the same).
    Ok(answer)
}

async fn ingest_store(
    app: &AppState,
    project_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
) -> Result<Option<String>, Reject> {
    let pid = path_project(project_id)?;
    let auth = auth::resolve(&sources(headers, query), project_id)?;
    check_project(app, &auth.public_key, pid).await?;
    let encodings = compression::parse_content_encoding(
        headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()),
    )?;
    let raw = read_body(app, body).await?;
    if raw.is_empty() {
        return Err(Reject::new(400, "empty request body"));
    }
    let json = if encodings.iter().all(|e| *e == Encoding::Identity) {
        // Without Content-Encoding a legacy SDK may send base64 of zlib.
        compression::decode_store_body(&raw, app.limits.max_decoded)?
    } else {
        compression::decode(&raw, &encodings, app.limits.max_decoded)?
    };
    if json.len() > envelope::Limits::default().max_event {
        return Err(Reject::new(413, "event exceeds the size limit"));
    }
    let received = app.clock.now_secs();
    let id = app
        .pipeline
        .ingest(
            pid,
            None,
            &json,
            || StoredPayload::compress(&json),
            received,
            None,
        )
        .await?;
    Ok(Some(id))
}
