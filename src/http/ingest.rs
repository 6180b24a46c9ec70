//! The SDK-facing routes: `/api/{project_id}/envelope/` and the legacy `/store/`.
//!
//! The path of a request, cheapest refusals first: authenticate from headers or query (before
//! spending anything on the body), check the project's quota (429), refuse a declared
//! `Content-Length` over the cap (413, without `100 Continue`), read the body out of the
//! process-wide memory budget (503 when it is spent), take a place among the events in flight
//! (503 when the writers cannot keep up: refused before any decoding), then stream the body
//! through its decoders and the envelope reader, which keeps only the event item (dropped
//! items stream through without being held), check the envelope's own `dsn`, prepare the
//! event and wait for its commit. Every refusal is a 4xx or 503 with `{"detail": ...}`;
//! nothing the client sends can make this panic.

use super::ingest_error_response;
use super::AppState;
use crate::budget::{Exhausted, Reservation};
use crate::payload::{StoredPayload, MAX_RAW_BODY};
use crate::pipeline::{self, IngestError};
use crate::protocol::auth::{self, AuthError, AuthSources};
use crate::protocol::compression::{self, DecodeError, Encoding};
use crate::protocol::envelope::{self, EnvelopeError, ItemType};
use crate::protocol::ratelimit;
use crate::quota::Verdict;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::BytesMut;
use http_body_util::BodyExt;
use std::time::Instant;

/// A refused request: its status, the `detail` the client sees, and for quotas how long the
/// client should hold back.
#[derive(Debug)]
pub struct Reject {
    pub status: StatusCode,
    pub detail: String,
    /// `Retry-After` seconds and the `X-Sentry-Rate-Limits` value of a 429.
    pub rate_limit: Option<(u64, String)>,
    /// The `reason` label of `stackhound_events_rejected_total` (`metrics::REASONS`).
    pub reason: &'static str,
}

impl Reject {
    fn new(status: u16, detail: impl ToString) -> Reject {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        Reject {
            status,
            detail: detail.to_string(),
            rate_limit: None,
            reason: crate::metrics::reason_of_status(status.as_u16()),
        }
    }

    fn with_reason(self, reason: &'static str) -> Reject {
        Reject { reason, ..self }
    }

    fn too_large() -> Reject {
        Reject::new(413, "request body exceeds the size limit")
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
impl Reject {
    /// 503 for load: `Retry-After: 1` and an `X-Sentry-Rate-Limits` entry for every category,
    /// which SDKs honour whatever the status (Python, JavaScript, Rust): they hold back for a
    /// second instead of sending into a server that would refuse them again.
    fn overloaded(detail: impl ToString) -> Reject {
        Reject {
            rate_limit: Some((
                1,
                ratelimit::quota_limit(1, &[], "organization", "overloaded"),
            )),
            ..Reject::new(503, detail).with_reason("overloaded")
        }
    }
}
impl From<Exhausted> for Reject {
    fn from(e: Exhausted) -> Reject {
        Reject::overloaded(e)
    }
}
impl From<IngestError> for Reject {
    fn from(e: IngestError) -> Reject {
        match e {
            IngestError::InvalidEvent(_) => Reject::new(400, e),
            IngestError::Overloaded => Reject::overloaded(e),
            IngestError::StoreFailed => Reject::new(503, e).with_reason("store_failed"),
            IngestError::StorageFault => Reject::new(503, e).with_reason("storage_fault"),
        }
    }
}
impl From<crate::store::StoreError> for Reject {
    fn from(e: crate::store::StoreError) -> Reject {
        tracing::error!(error = %e, "database error while authenticating");
        Reject::new(503, "the server cannot reach its database, retry later")
            .with_reason("database")
    }
}

/// What an accepted request is answered: the event id (none for an envelope without an
/// event) and, when it carried items we drop, the `X-Sentry-Rate-Limits` entry that tells the
/// SDK to stop sending them.
#[derive(Debug, Default)]
struct Answer {
    id: Option<String>,
    dropped_limits: Option<String>,
}

const RATE_LIMITS: HeaderName = HeaderName::from_static("x-sentry-rate-limits");

/// Answers an ingestion request and counts it: accepted or refused (by reason), and its
/// latency from `started` (when the handler got it).
fn respond(app: &AppState, started: Instant, result: Result<Answer, Reject>) -> Response {
    let metrics = &app.pipeline.metrics;
    match &result {
        Ok(Answer { id: Some(_), .. }) => metrics.accepted("error"),
        Ok(_) => {}
        Err(r) => metrics.rejected(r.reason),
    }
    let resp = answer(result);
    metrics.ingest_latency(started.elapsed());
    resp
}

fn answer(result: Result<Answer, Reject>) -> Response {
    match result {
        Ok(answer) => {
            let mut resp = match answer.id {
                Some(id) => Json(serde_json::json!({ "id": id })).into_response(),
                None => Json(serde_json::json!({})).into_response(),
            };
            if let Some(v) = answer
                .dropped_limits
                .and_then(|l| HeaderValue::from_str(&l).ok())
            {
                resp.headers_mut().insert(RATE_LIMITS, v);
            }
            resp
        }
        Err(r) => {
            let mut resp = ingest_error_response(r.status, &r.detail);
            if let Some((retry_after, limits)) = r.rate_limit {
                let h = resp.headers_mut();
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                if let Ok(v) = HeaderValue::from_str(&limits) {
                    h.insert(RATE_LIMITS, v);
                }
            }
            resp
        }
    }
}

/// Ingests an envelope: its event (and any cron check-in) is stored and answered once committed.
///
/// Items we do not keep (transactions, sessions, attachments, ...) are dropped and named in
/// `X-Sentry-Rate-Limits`; an envelope without an event is answered `{}`. The body may be
/// compressed (`Content-Encoding`: gzip, deflate, br, zstd). The key comes from
/// `X-Sentry-Auth`, `Authorization: Sentry ...`, the `sentry_key` query parameter or the
/// envelope header's `dsn`.
#[utoipa::path(
    post,
    path = "/api/{project_id}/envelope/",
    tag = "ingestion",
    params(super::openapi::IngestPath),
    request_body(
        description = "A Sentry envelope: a JSON header line, then items (a JSON header line and a payload each)",
        content(
            (String = "application/x-sentry-envelope"),
            (String = "text/plain"),
        ),
    ),
    responses(
        (status = 200, description = "Stored (or nothing to store)", body = super::openapi::Ingested,
            headers(("X-Sentry-Rate-Limits" = String, description = "Categories the SDK should hold back, and for how long"))),
        (status = 400, description = "Malformed envelope, body or event", body = super::openapi::Error),
        (status = 401, description = "No key, or an unknown one", body = super::openapi::Error),
        (status = 403, description = "The key belongs to another project", body = super::openapi::Error),
        (status = 408, description = "The body did not arrive in time", body = super::openapi::Error),
        (status = 413, description = "The body exceeds the size limit", body = super::openapi::Error),
        (status = 429, description = "The project's quota is spent", body = super::openapi::Error,
            headers(("Retry-After" = String, description = "Seconds to wait"), ("X-Sentry-Rate-Limits" = String, description = "Categories the SDK should hold back, and for how long"))),
        (status = 503, description = "Overloaded or storage unavailable", body = super::openapi::Error,
            headers(("Retry-After" = String, description = "Seconds to wait"), ("X-Sentry-Rate-Limits" = String, description = "Categories the SDK should hold back, and for how long"))),
    ),
    security(("sentry_auth" = []), ("sentry_key" = []), ()),
)]
pub async fn envelope(
    State(app): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = ingest_envelope(&app, &project_id, &headers, uri.query(), body).await;
    respond(&app, started, result)
}

/// Ingests one event as a JSON body: the legacy route of older SDKs.
///
/// Without `Content-Encoding` the body may also be base64 of zlib, as old SDKs send it.
#[utoipa::path(
    post,
    path = "/api/{project_id}/store/",
    tag = "ingestion",
    params(super::openapi::IngestPath),
    request_body(description = "One event (Sentry's event payload)", content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "Stored", body = super::openapi::Ingested),
        (status = 400, description = "Malformed body or event", body = super::openapi::Error),
        (status = 401, description = "No key, or an unknown one", body = super::openapi::Error),
        (status = 403, description = "The key belongs to another project", body = super::openapi::Error),
        (status = 408, description = "The body did not arrive in time", body = super::openapi::Error),
        (status = 413, description = "The body exceeds the event size limit", body = super::openapi::Error),
        (status = 429, description = "The project's quota is spent", body = super::openapi::Error,
            headers(("Retry-After" = String, description = "Seconds to wait"), ("X-Sentry-Rate-Limits" = String, description = "Categories the SDK should hold back, and for how long"))),
        (status = 503, description = "Overloaded or storage unavailable", body = super::openapi::Error,
            headers(("Retry-After" = String, description = "Seconds to wait"), ("X-Sentry-Rate-Limits" = String, description = "Categories the SDK should hold back, and for how long"))),
    ),
    security(("sentry_auth" = []), ("sentry_key" = []), ()),
)]
pub async fn store(
    State(app): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let started = Instant::now();
    let result = ingest_store(&app, &project_id, &headers, uri.query(), body).await;
    respond(&app, started, result)
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

/// The project's quota: 429 with `Retry-After` and `X-Sentry-Rate-Limits` once it is spent.
async fn check_quota(app: &AppState, project_id: i64) -> Result<(), Reject> {
    let now = app.clock.now().timestamp();
    match app.quotas.check(&app.store, project_id, now).await? {
        Verdict::Allow => Ok(()),
        Verdict::Exceeded { retry_after } => {
            app.pipeline.counters.rate_limited();
            Err(Reject {
                rate_limit: Some((
                    retry_after,
                    ratelimit::quota_limit(
                        retry_after,
                        &["default", "error", "security"],
                        "project",
                        "project_quota",
                    ),
                )),
                ..Reject::new(
                    429,
                    "Sentry dropped data due to a quota or internal rate limit being reached. \
                     This will not affect your application.",
                )
            })
        }
    }
}

/// The declared body length, if the request has a valid `Content-Length`.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Refuses a body over `cap` with 413. A client that waits for `100 Continue` never gets it
/// (the body is not touched, so hyper does not send one). Any other client is sending the
/// body right now and many (Python's urllib) read the answer only once it is sent: the rest
/// of the body is read and discarded in the background, up to `drain_limit` bytes, so that
/// they see the 413 rather than a reset connection.
fn refuse_oversized(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    left: Option<usize>,
) -> Reject {
    let drain = !expects_continue(headers) && left.is_none_or(|n| n <= app.limits.drain_limit);
    if drain {
        if let Ok(permit) = app.drains.clone().try_acquire_owned() {
            let limit = app.limits.drain_limit;
            tokio::spawn(async move {
                let _permit = permit;
                let mut body = body;
                let mut seen = 0usize;
                // Each frame waits at most the body timeout (the router's layer): a stalled
                // sender ends the drain.
                while seen <= limit {
                    match body.frame().await {
                        Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                        _ => break,
                    }
                }
            });
        }
    }
    Reject::too_large()
}

/// How reading a body failed.
enum BodyError {
    /// Over the cap; the rest of the body comes back so it can be drained.
    TooLarge(Body),
    Reject(Reject),
}

/// Reads the body, at most `cap` bytes, holding its bytes in `held` as they arrive (503 when
/// the budget has none left). A declared length is reserved at once.
async fn read_body(
    app: &AppState,
    mut body: Body,
    declared: Option<usize>,
    cap: usize,
    held: &mut Reservation,
) -> Result<Bytes, BodyError> {
    if let Some(n) = declared {
        app.budget
            .grow(held, n)
            .await
            .map_err(|e| BodyError::Reject(e.into()))?;
    }
    // Most bodies arrive as one frame: kept as is, without a copy.
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut len = 0usize;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(BodyError::Reject(body_error(&e))),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len();
        if len > cap {
            return Err(BodyError::TooLarge(body));
        }
        if len > held.bytes() {
            // Undeclared length: reserve 64 KiB ahead (up to the cap), not per frame.
            let target = (len + 64 * 1024).min(cap).max(len);
            app.budget
                .grow(held, target - held.bytes())
                .await
                .map_err(|e| BodyError::Reject(e.into()))?;
        }
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            None => rest.extend_from_slice(&data),
            Some(f) => {
                rest.reserve(declared.unwrap_or(0).max(f.len() + data.len()));
                rest.extend_from_slice(&f);
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// A body that could not be read: a stalled sender (the body timeout) gets 408, anything else
/// (a client that went away, broken chunking) 400.
fn body_error(e: &axum::Error) -> Reject {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if text.contains("timed out") || text.contains("timeout") {
            return Reject::new(408, "the request body was not received in time");
        }
        source = err.source();
    }
    Reject::new(400, "failed to read request body")
}

/// Reads the request body under `cap`, refusing a declared or actual excess with 413.
async fn body_under_cap(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    cap: usize,
    held: &mut Reservation,
) -> Result<Bytes, Reject> {
    let declared = content_length(headers);
    if let Some(n) = declared.filter(|n| *n > cap) {
        return Err(refuse_oversized(app, headers, body, Some(n)));
    }
    match read_body(app, body, declared, cap, held).await {
        Ok(raw) if raw.is_empty() => Err(Reject::new(400, "empty request body")),
        Ok(raw) => Ok(raw),
        Err(BodyError::TooLarge(rest)) => Err(refuse_oversized(app, headers, rest, None)),
        Err(BodyError::Reject(r)) => Err(r),
    }
}

/// Bytes the decoded items we keep can take at most: the envelope header, one item header and
/// one event.
fn kept_allowance(limits: &envelope::Limits) -> usize {
    // A cron check-in (`check_in`, at most 100 KiB) is kept too.
    limits.max_for(&ItemType::Event)
        + limits.max_for(&ItemType::CheckIn)
        + 4 * envelope::MAX_HEADER_LEN
}

async fn ingest_envelope(
    app: &AppState,
    project_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
) -> Result<Answer, Reject> {
    let pid = path_project(project_id)?;
    let mut src = sources(headers, query);
    // Authenticate before touching the body when the request itself carries credentials;
    // only a self-authenticated envelope (its `dsn` header) has to be decoded first.
    let early = has_request_credentials(&src);
    if early {
        let auth = auth::resolve(&src, project_id)?;
        check_project(app, &auth.public_key, pid).await?;
        check_quota(app, pid).await?;
    }
    let encodings = compression::parse_content_encoding(
        headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()),
    )?;
    let mut held = app.budget.empty();
    let raw = body_under_cap(app, headers, body, app.limits.max_body, &mut held).await?;
    // From here on the request costs CPU: only as many as the writers can take get in.
    let _admission = app.pipeline.admit()?;
    let limits = envelope::Limits::default();
    app.budget.grow(&mut held, kept_allowance(&limits)).await?;

    let env = read_envelope(&raw, &encodings, app.limits.max_decoded, &limits)?;
    if env.dsn.is_some() || !early {
        src.envelope_dsn = env.dsn.as_deref();
        let auth = auth::resolve(&src, project_id)?;
        check_project(app, &auth.public_key, pid).await?;
        if !early {
            check_quota(app, pid).await?;
        }
    }

    let received = app.clock.now_secs();
    let mut answer = Answer::default();
    for item in &env.dropped {
        app.pipeline.counters.dropped_item(item.ty.as_str());
        app.pipeline.metrics.dropped(&item.ty);
    }
    if app.limits.dropped_retry_secs > 0 {
        let categories = ratelimit::categories_of(env.dropped.iter().map(|d| &d.ty));
        if !categories.is_empty() {
            answer.dropped_limits = Some(ratelimit::quota_limit(
                app.limits.dropped_retry_secs,
                &categories,
                "organization",
                "not_processed",
            ));
        }
    }
    // Cron check-ins (an envelope may hold one and no event) are recorded before the event.
    for item in env.items.iter().filter(|i| i.ty == ItemType::CheckIn) {
        super::monitors::envelope_item(app, pid, &item.payload).await?;
    }
    let Some(event) = env.items.iter().find(|i| i.ty == ItemType::Event) else {
        // An envelope without an event is answered `{}` (Relay does the same).
        return Ok(answer);
    };
    // One compressed event and nothing else: the body as it came is the stored payload.
    let single_compressed = env.items.len() == 1
        && env.dropped.is_empty()
        && encodings.len() == 1
        && encodings[0] != Encoding::Identity
        && raw.len() <= MAX_RAW_BODY;
    let grouping = app.grouping.of(pid).await?;
    let prepared = pipeline::prepare(
        pid,
        &grouping,
        env.event_id.as_deref(),
        &event.payload,
        || {
            if single_compressed {
                StoredPayload::raw_envelope(encodings[0], raw.to_vec())
            } else {
                StoredPayload::compress(&event.payload)
            }
        },
        received,
        env.sent_at,
    )?;
    // The body and the decoded envelope are let go: the row waiting for its commit is all
    // this request holds now.
    drop(env);
    drop(raw);
    held.shrink_to(prepared.event.approx_bytes());
    app.pipeline.submit(prepared.event).await?;
    app.quotas.count(pid, app.clock.now().timestamp());
    answer.id = Some(prepared.event_id_hex);
    Ok(answer)
}

/// Streams `raw` through its decoders and the envelope reader, keeping only the event item.
fn read_envelope(
    raw: &[u8],
    encodings: &[Encoding],
    max_decoded: usize,
    limits: &envelope::Limits,
) -> Result<envelope::StreamedEnvelope, Reject> {
    let mut reader = compression::reader(raw, encodings, max_decoded)?;
    let keep = |ty: &ItemType| matches!(ty, ItemType::Event | ItemType::CheckIn);
    envelope::read(&mut reader, &keep, limits).map_err(|e| match e {
        envelope::ReadError::Envelope(e) => e.into(),
        envelope::ReadError::Source(e) => compression::read_error(e, encodings, max_decoded).into(),
    })
}

async fn ingest_store(
    app: &AppState,
    project_id: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
) -> Result<Answer, Reject> {
    let pid = path_project(project_id)?;
    let auth = auth::resolve(&sources(headers, query), project_id)?;
    check_project(app, &auth.public_key, pid).await?;
    check_quota(app, pid).await?;
    let encodings = compression::parse_content_encoding(
        headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()),
    )?;
    // A store body is one event: its cap is the event's (the docs say 1 MB decompressed).
    let max_event = envelope::Limits::default().max_for(&ItemType::Event);
    let mut held = app.budget.empty();
    let raw = body_under_cap(app, headers, body, max_event, &mut held).await?;
    let _admission = app.pipeline.admit()?;
    app.budget.grow(&mut held, max_event).await?;
    let json = if encodings.iter().all(|e| *e == Encoding::Identity) {
        // Without Content-Encoding a legacy SDK may send base64 of zlib.
        compression::decode_store_body(&raw, max_event)?
    } else {
        compression::decode(&raw, &encodings, max_event)?
    };
    drop(raw);
    let received = app.clock.now_secs();
    let grouping = app.grouping.of(pid).await?;
    let prepared = pipeline::prepare(
        pid,
        &grouping,
        None,
        &json,
        || StoredPayload::compress(&json),
        received,
        None,
    )?;
    drop(json);
    held.shrink_to(prepared.event.approx_bytes());
    app.pipeline.submit(prepared.event).await?;
    app.quotas.count(pid, app.clock.now().timestamp());
    Ok(Answer {
        id: Some(prepared.event_id_hex),
        dropped_limits: None,
    })
}
