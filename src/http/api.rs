//! The first read API under `/api/0/`, in Sentry's JSON shapes (string ids and counts,
//! camelCase, `Link` header pagination) so sentry-cli and existing scripts can read it.

use super::error_response;
use super::query_pairs;
use super::AppState;
use crate::issue;
use crate::issue::search::{self, StatsPeriod};
use crate::store::issues::{Issue, IssueFilter, Sort};
use crate::token::{self, Scope, Scopes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

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

/// `{value}:{id}:0` (Sentry's `value:offset:is_prev` shape): a keyset cursor, stable while new
/// events arrive. Anything else is a 400 naming it.
pub fn parse_cursor(c: Option<&str>) -> ApiResult<Option<(i64, i64)>> {
    let Some(c) = c.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let mut parts = c.split(':');
    match (
        parts.next().and_then(|p| p.parse().ok()),
        parts.next().and_then(|p| p.parse().ok()),
        parts.next().map(|p| p == "0" || p == "1"),
        parts.next(),
    ) {
        (Some(a), Some(b), None | Some(true), None) => Ok(Some((a, b))),
        _ => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("bad cursor '{c}': expected {{value}}:{{id}}:0 from a Link header"),
        )),
    }
}

/// Sentry's `Link` header: sentry-cli follows `rel="next"` while `results="true"`.
pub fn link_header(base: &str, next: Option<String>) -> HeaderValue {
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

pub fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(100).clamp(1, 100)
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn all<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn bad_request(detail: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, detail)
}

/// `base` with every parameter of the request but `cursor`, so the `Link` URLs keep the
/// query, sort, environments, projects and stats of the page they follow.
fn link_base(base: &str, pairs: &[(String, String)]) -> String {
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let kept: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// `GET /api/0/projects/{org}/{project}/issues/`: the project's issues (see `list_page`).
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/issues/",
    tag = "issues",
    params(super::openapi::ProjectPath, super::openapi::IssueListQuery),
    responses(
        (status = 200, description = "A page of issues; `Link` has the next", body = Vec<super::openapi::Issue>),
        (status = 400, description = "A bad parameter, named", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or project", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn list_issues(
    State(app): State<AppState>,
    Path((org, project)): Path<(String, String)>,
    uri: Uri,
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
    let base = format!(
        "{}/api/0/projects/{}/{}/issues/",
        app.public_url, app.org, project.slug
    );
    list_page(&app, &[project.id], &query_pairs(&uri), &base).await
}

/// `GET /api/0/organizations/{org}/issues/?project=ID&project=ID`: the issues of those
/// projects (none, or `-1`: every project). An unknown project id is a 400 naming it.
#[utoipa::path(
    get,
    path = "/api/0/organizations/{org}/issues/",
    tag = "issues",
    params(
        ("org" = String, Path, description = "The organization's slug"),
        super::openapi::ProjectsQuery,
        super::openapi::IssueListQuery,
    ),
    responses(
        (status = 200, description = "A page of issues; `Link` has the next", body = Vec<super::openapi::Issue>),
        (status = 400, description = "A bad parameter (or an unknown project), named", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn org_list_issues(
    State(app): State<AppState>,
    Path(org): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::EventRead).await?;
    if org != app.org {
        return Err(not_found("organization"));
    }
    let pairs = query_pairs(&uri);
    let projects = org_projects(&app, &pairs).await?;
    let base = format!("{}/api/0/organizations/{}/issues/", app.public_url, app.org);
    list_page(&app, &projects, &pairs, &base).await
}

/// The ids the `project=` parameters name, checked; every project when there are none or one
/// is `-1` (Sentry's "all projects").
async fn org_projects(app: &AppState, pairs: &[(String, String)]) -> ApiResult<Vec<i64>> {
    let known: Vec<i64> = app
        .store
        .list_projects()
        .await?
        .iter()
        .map(|p| p.id)
        .collect();
    let asked = all(pairs, "project");
    let mut out = Vec::new();
    for v in asked.iter().filter(|v| !v.is_empty()) {
        let id: i64 = v
            .parse()
            .map_err(|_| bad_request(format!("bad project '{v}': expected a project id")))?;
        if id == -1 {
            return Ok(known);
        }
        if !known.contains(&id) {
            return Err(bad_request(format!("unknown project '{v}'")));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(if out.is_empty() { known } else { out })
}

/// One page of issues of `projects`: `query` (Sentry's search, `is:unresolved` when absent),
/// `environment` (repeatable), `sort` (date, new, freq, user), `statsPeriod` (24h, 14d, empty),
/// `limit` (1..100, default 100), `cursor`, `shortIdLookup`. Every bad parameter is a 400
/// naming it.
async fn list_page(
    app: &AppState,
    projects: &[i64],
    pairs: &[(String, String)],
    base: &str,
) -> ApiResult<Response> {
    let query = first(pairs, "query");
    let stats = StatsPeriod::parse(first(pairs, "statsPeriod")).map_err(bad_request)?;
    let environments: Vec<String> = all(pairs, "environment")
        .into_iter()
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    // A query that is a short id answers that issue, whatever its status.
    if matches!(first(pairs, "shortIdLookup"), Some("1" | "true")) {
        if let Some(issue) = short_id_issue(app, projects, query.unwrap_or("")).await? {
            let mut rows = vec![issue];
            let body = page_json(app, &mut rows, stats, &environments).await?;
            let mut resp = Json(body).into_response();
            resp.headers_mut()
                .insert(header::LINK, link_header(&link_base(base, pairs), None));
            return Ok(resp);
        }
    }
    let search = search::parse(query, app.clock.now()).map_err(|e| bad_request(e.to_string()))?;
    let sort = Sort::parse(first(pairs, "sort")).map_err(bad_request)?;
    let limit = match first(pairs, "limit").filter(|l| !l.is_empty()) {
        None => page_limit(None),
        Some(l) => page_limit(Some(l.parse().map_err(|_| {
            bad_request(format!("bad limit '{l}': expected a number from 1 to 100"))
        })?)),
    };
    let filter = IssueFilter {
        search,
        environments: environments.clone(),
        sort,
        after: parse_cursor(first(pairs, "cursor"))?,
        limit: limit + 1,
    };
    let mut rows = app.store.list_issues_in(projects, &filter).await?;
    let next = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        let last = &rows[rows.len() - 1];
        format!("{}:{}:0", sort.value(last), last.id)
    });
    let envs = filter.environments_in_effect().unwrap_or_default();
    let body = page_json(app, &mut rows, stats, &envs).await?;
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::LINK, link_header(&link_base(base, pairs), next));
    Ok(resp)
}

/// The issue whose short id (`DEFAULT-3`) `query` is, if it is one of `projects`.
async fn short_id_issue(app: &AppState, projects: &[i64], query: &str) -> ApiResult<Option<Issue>> {
    let Some((slug, number)) = issue::parse_short_id(query.trim()) else {
        return Ok(None);
    };
    let Some(project) = app.store.project_by_slug(&slug).await? else {
        return Ok(None);
    };
    if !projects.contains(&project.id) {
        return Ok(None);
    }
    match app.store.issue_by_number(project.id, number).await? {
        Some(i) => Ok(app.store.issue_following_merges(i.id).await?),
        None => Ok(None),
    }
}

/// The page's JSON, with `stats` when asked: per issue, `[unix seconds, events]` per bucket
/// from `issue_stats` (one read for the page), over `environments` (all when empty).
async fn page_json(
    app: &AppState,
    rows: &mut [Issue],
    stats: Option<StatsPeriod>,
    environments: &[String],
) -> ApiResult<Vec<Value>> {
    let mut body: Vec<Value> = rows.iter().map(|r| issue_json(app, r)).collect();
    let Some(period) = stats else {
        return Ok(body);
    };
    let (buckets, width) = period.buckets(app.clock.now());
    let since = buckets[0];
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let envs = (!environments.is_empty()).then_some(environments);
    let counts = app.store.issue_stats(&ids, envs, since).await?;
    let mut per_issue: std::collections::HashMap<i64, Vec<i64>> = ids
        .iter()
        .map(|id| (*id, vec![0i64; buckets.len()]))
        .collect();
    for (id, bucket, n) in counts {
        let slot = per_issue
            .get_mut(&id)
            .and_then(|per| per.get_mut(((bucket - since) / width) as usize));
        if let Some(slot) = slot {
            *slot += n;
        }
    }
    for (row, json) in rows.iter().zip(body.iter_mut()) {
        let per = per_issue.remove(&row.id).unwrap_or_default();
        let series: Vec<Value> = buckets
            .iter()
            .zip(per)
            .map(|(b, n)| json!([b / 1_000_000, n]))
            .collect();
        if let Value::Object(m) = json {
            m.insert("stats".into(), json!({ period.key(): series }));
        }
    }
    Ok(body)
}

/// `PUT /api/0/organizations/{org}/issues/?id=..`: the project route's bulk update
/// (`lifecycle::bulk_update`) for the issues named, project by project; without `id`, for
/// every issue of the `project=` projects (all when none) with the `status=` given. Answers as
/// the project route does (the first project's answer; 204 when nothing matched); a merge
/// must name issues of one project.
#[utoipa::path(
    put,
    path = "/api/0/organizations/{org}/issues/",
    tag = "issues",
    params(
        ("org" = String, Path, description = "The organization's slug"),
        ("id" = Option<Vec<i64>>, Query, explode, description = "The issues to change (repeat `id`); none: every issue of the projects (of `status`)"),
        ("status" = Option<String>, Query, description = "Only issues of this status: `unresolved`, `resolved`, `ignored`"),
        super::openapi::ProjectsQuery,
    ),
    request_body = super::openapi::IssueUpdate,
    responses(
        (status = 200, description = "The change applied (or the merge)", body = super::openapi::BulkUpdateAnswer),
        (status = 204, description = "No issue matched"),
        (status = 400, description = "A malformed body or parameter, a change the issues refuse, or a merge across projects", body = super::openapi::Error),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:write"])),
)]
pub async fn org_bulk_update(
    State(app): State<AppState>,
    Path(org): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    authorize(&app, &headers, Scope::EventWrite).await?;
    if org != app.org {
        return Err(not_found("organization"));
    }
    let pairs = query_pairs(&uri);
    let status: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k == "status")
        .cloned()
        .collect();
    // (project, the query string for its bulk update)
    let mut targets: Vec<(i64, Vec<(String, String)>)> = Vec::new();
    let ids = all(&pairs, "id");
    if ids.is_empty() {
        for p in org_projects(&app, &pairs).await? {
            targets.push((p, status.clone()));
        }
    } else {
        for v in ids {
            let id: i64 = v
                .parse()
                .map_err(|_| bad_request(format!("invalid issue id '{v}'")))?;
            // Ids of no issue are left alone, as Sentry does.
            let Some(issue) = app.store.issue_following_merges(id).await? else {
                continue;
            };
            let pair = ("id".to_string(), id.to_string());
            match targets.iter_mut().find(|(p, _)| *p == issue.project_id) {
                Some((_, q)) => q.push(pair),
                None => {
                    let mut q = status.clone();
                    q.push(pair);
                    targets.push((issue.project_id, q));
                }
            }
        }
    }
    if targets.len() > 1 && body_has_merge(&body) {
        return Err(bad_request(
            "a merge must name issues of one project".into(),
        ));
    }
    let mut answer: Option<Response> = None;
    for (project_id, q) in targets {
        let Some(project) = app.store.project_by_id(project_id).await? else {
            continue;
        };
        let path = link_base(
            &format!("/api/0/projects/{}/{}/issues/", app.org, project.slug),
            &q,
        );
        let uri: Uri = path
            .parse()
            .map_err(|_| bad_request("bad query string".into()))?;
        let resp = super::lifecycle::bulk_update(
            State(app.clone()),
            Path((app.org.clone(), project.slug.clone())),
            uri,
            headers.clone(),
            body.clone(),
        )
        .await?;
        if resp.status() == StatusCode::OK && answer.is_none() {
            answer = Some(resp);
        }
    }
    Ok(answer.unwrap_or_else(|| StatusCode::NO_CONTENT.into_response()))
}

fn body_has_merge(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("merge").is_some())
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

/// `GET /api/0/issues/{issue}/`: the issue with its history, releases, tag keys, hashes and
/// responder actions.
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/",
    tag = "issues",
    params(super::openapi::IssuePath),
    responses(
        (status = 200, description = "The issue (a merged issue's id answers the issue it was merged into)", body = super::openapi::IssueDetail),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
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
            ("seenBy", json!([])),
            ("participants", json!([])),
            ("userReportCount", json!(0)),
            ("pluginActions", json!([])),
            // Not in Sentry's detail (it has `/hashes/`): which hashes bring events here.
            ("hashes", super::grouping::hashes_json(&app, row.id).await?),
            // Not in Sentry's: what responders have done and will do (`/actions/` has all).
            ("responderActions", responder_actions(&app, row.id).await?),
        ] {
            m.insert(k.into(), v);
        }
        // `firstRelease`, `lastRelease`, `tags`, `userCountEstimated`: from the aggregates.
        for (k, v) in super::tags::detail_fields(&app, row.id).await? {
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

/// `GET /api/0/organizations/{org}/issues/{issue}/`: as `issue_detail`.
#[utoipa::path(
    get,
    path = "/api/0/organizations/{org}/issues/{issue}/",
    tag = "issues",
    params(("org" = String, Path, description = "The organization's slug"), super::openapi::IssuePath),
    responses(
        (status = 200, description = "The issue (a merged issue's id answers the issue it was merged into)", body = super::openapi::IssueDetail),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization or issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
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

/// `GET /api/0/`: who the token is, like Sentry's index (sentry-cli's `info` reads it).
#[utoipa::path(
    get,
    path = "/api/0/",
    tag = "health",
    responses(
        (status = 200, description = "The calling token and its scopes", body = super::openapi::Index),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = [])),
)]
pub async fn index(State(app): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    // Any valid token may ask who it is and what it may do.
    let caller = identify(&app, &headers).await?;
    Ok(Json(json!({
        "version": "0",
        "auth": {"scopes": caller.scopes.names()},
        "user": {"id": caller.token_id.to_string(), "name": "stackhound", "username": "stackhound"},
    })))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "Alive", body = super::openapi::Healthz)),
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({"ok": true}))
}

/// Readiness: storage reachable, no storage fault, every migration applied.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready, with the ingestion counters", body = super::openapi::Readyz),
        (status = 503, description = "Not ready, and why", body = super::openapi::NotReady),
    ),
)]
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
