//! The OpenAPI document (`GET /api/0/openapi.json`): generated from the handlers' `#[utoipa::path]` annotations and the shapes below.
//!
//! The handlers answer `serde_json::Value`s built where they are served, so the types here
//! are descriptions only (nothing constructs them): each mirrors one JSON shape of the API
//! and names the code that renders it. Schemas are exact about what a client may rely on
//! (types, string ids and counts, nullable fields) and open to what Sentry's objects may
//! carry besides: no object forbids additional properties.

#![allow(dead_code)] // the shapes are read by the derives only

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// The document's frame: info, security schemes, tags and shared shapes. The operations are
/// added by `http::routes`, from the same annotations the router is built from.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stackhound",
        description = "A Sentry-compatible error tracker. The `/api/0/` routes answer in \
            Sentry's JSON shapes (string ids and counts, camelCase, `Link` headers for pages) \
            and need `Authorization: Bearer <token>` of a token holding the scope each \
            operation names; the SDK-facing ingestion routes authenticate with the project's \
            DSN key. Paths under `/api/` are canonical with their trailing slash (the server \
            adds a missing one); the probes have none.",
        license(name = "MIT", identifier = "MIT"),
    ),
    modifiers(&SecuritySchemes),
    components(schemas(
        Error, Issue, IssueDetail, Event, Activity, Project, ProjectUpdate, ProjectCreate,
        ProjectKey, KeyUpdate, Token, TokenCreate, TagKey, TagValue, Release,
    )),
    tags(
        (name = "ingestion", description = "What SDKs send: envelopes, legacy store bodies, cron check-ins"),
        (name = "issues", description = "Issues (groups), their events, history and state changes"),
        (name = "projects", description = "Projects and their settings"),
        (name = "tokens", description = "API tokens and their scopes"),
        (name = "alerts", description = "Alert channels and the delivery log"),
        (name = "responders", description = "Responders and the actions they take on issues"),
        (name = "monitors", description = "Cron monitors and their check-ins"),
        (name = "grouping", description = "Why events group as they do"),
        (name = "health", description = "Probes, health and metrics"),
    )
)]
pub struct ApiDoc;

/// The schemes operations name in `security(...)`.
struct SecuritySchemes;

/// Name of the bearer token scheme; its requirement lists the token scope an operation needs.
pub const BEARER: &str = "bearer";

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer sntryu_...`: an API token (`stackhound token \
                         create`). An operation's requirement names the scope it needs; \
                         `org:admin` includes every scope, and within a resource admin \
                         includes write includes read.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "sentry_auth",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Sentry-Auth",
                "`X-Sentry-Auth: Sentry sentry_key=<public key>, sentry_version=7, ...` (or \
                 `Authorization: Sentry ...`): the DSN's public key, as SDKs send it.",
            ))),
        );
        components.add_security_scheme(
            "sentry_key",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "sentry_key",
                "`?sentry_key=<public key>`: the DSN's public key in the query (browser SDKs).",
            ))),
        );
    }
}

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/0/openapi.json";

/// The server's document as JSON: the operations of `http::routes` (the router itself) and
/// `ApiDoc`'s info, schemes and shapes.
pub fn document() -> String {
    let (_, doc) = super::routes().split_for_parts();
    String::from_utf8(Document::new(doc).0.to_vec()).expect("JSON is UTF-8")
}

/// The document a router serves, serialized once when the router is built.
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    pub fn new(mut doc: utoipa::openapi::OpenApi) -> Document {
        unique_operation_ids(&mut doc);
        Document(Bytes::from(
            doc.to_json().expect("the OpenAPI document serializes"),
        ))
    }
}

/// A handler that serves several methods (`method(get, post)`) gives each the same
/// operationId, which OpenAPI wants unique: the later ones get `_<method>` appended.
fn unique_operation_ids(doc: &mut utoipa::openapi::OpenApi) {
    let mut seen = HashSet::new();
    for item in doc.paths.paths.values_mut() {
        for (method, op) in [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ] {
            let Some(id) = op.as_mut().and_then(|op| op.operation_id.as_mut()) else {
                continue;
            };
            if !seen.insert(id.clone()) {
                *id = format!("{id}_{method}");
                seen.insert(id.clone());
            }
        }
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/0/openapi.json",
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", body = Object)),
)]
pub async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0).into_response()
}

// --- path parameters -------------------------------------------------------------------------

/// `/api/0/projects/{org}/{project}/...`
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// The organization's slug (the server's one organization).
    #[param(example = "stackhound")]
    org: String,
    /// The project's slug.
    #[param(example = "default")]
    project: String,
}

/// `/api/0/issues/{issue}/...`
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IssuePath {
    /// The issue's numeric id, or its short id (`PROJECT-3`). A merged issue's id finds the
    /// issue it was merged into.
    #[param(example = "1")]
    issue: String,
}

/// `/api/{project_id}/...`: the SDK-facing routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IngestPath {
    /// The project's numeric id, as in its DSN.
    #[param(example = "1")]
    project_id: String,
}

// --- shared shapes ---------------------------------------------------------------------------

/// `{"detail": "..."}`: every refusal, on every surface (`http::error_response`).
#[derive(ToSchema)]
pub struct Error {
    detail: String,
}

/// An empty object: what a check-in, or an envelope without an event, is answered.
#[derive(ToSchema)]
pub struct Empty {}

/// What an ingestion route answers once the event's transaction has committed: its id (none
/// for an envelope without an event).
#[derive(ToSchema)]
pub struct Ingested {
    /// The event id, 32 hex digits.
    #[serde(default)]
    id: String,
}

/// A project as an issue names it.
#[derive(ToSchema)]
pub struct IssueProject {
    id: String,
    name: String,
    slug: String,
}

/// The Sentry issue (group) object (`issue::view::issue_json`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    /// The numeric id, as a string.
    id: String,
    /// `PROJECT-3`.
    short_id: String,
    title: String,
    culprit: String,
    permalink: String,
    logger: Option<String>,
    level: String,
    /// `unresolved`, `resolved` or `ignored`.
    status: String,
    /// What the status depends on (`inRelease`, `ignoreUntil`, `ignoreCount`, ...).
    #[schema(value_type = Object)]
    status_details: Value,
    substatus: Option<String>,
    is_public: bool,
    platform: String,
    project: IssueProject,
    #[serde(rename = "type")]
    kind: String,
    issue_type: String,
    issue_category: String,
    /// Title parts: `type`, `value`, `filename`, `function`, ...
    #[schema(value_type = Object)]
    metadata: Value,
    num_comments: i64,
    #[schema(value_type = Option<Object>)]
    assigned_to: Option<Value>,
    is_bookmarked: bool,
    is_subscribed: bool,
    #[schema(value_type = Option<Object>)]
    subscription_details: Option<Value>,
    has_seen: bool,
    annotations: Vec<Value>,
    share_id: Option<String>,
    /// Events that arrived, as a string.
    count: String,
    /// Distinct users, as a number.
    user_count: i64,
    #[schema(format = DateTime)]
    first_seen: String,
    #[schema(format = DateTime)]
    last_seen: String,
    #[schema(value_type = Object)]
    stats: Value,
}

/// Pending and taken responder actions of an issue.
#[derive(ToSchema)]
pub struct ResponderActions {
    pending: Vec<ActionRun>,
    taken: Vec<ActionRun>,
}

/// An issue with its history, hashes and responder actions (`GET /api/0/issues/{id}/`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueDetail {
    #[serde(flatten)]
    issue: Issue,
    activity: Vec<Activity>,
    /// The first release an event of the issue named (null: none did).
    first_release: Option<Release>,
    last_release: Option<Release>,
    seen_by: Vec<Value>,
    participants: Vec<Value>,
    /// The issue's tag keys and how many of its events carry each.
    tags: Vec<IssueTag>,
    /// Whether `userCount` is an estimate (a sketch past its exact range).
    user_count_estimated: bool,
    user_report_count: i64,
    plugin_actions: Vec<Value>,
    /// Not in Sentry's detail: which hashes bring events here.
    hashes: Vec<Hash>,
    /// Not in Sentry's detail: what responders have done and will do.
    responder_actions: ResponderActions,
}

/// An event in Sentry's shape. A full event also carries every field the SDK sent.
#[derive(ToSchema)]
pub struct Event {
    /// The event id, 32 hex digits.
    id: String,
    #[serde(rename = "eventID")]
    event_id: String,
    /// The issue's id.
    #[serde(rename = "groupID")]
    group_id: String,
    #[serde(rename = "projectID")]
    project_id: String,
    /// What the event's title is made of, and how it reads (as sent, in a full event).
    #[schema(value_type = Value)]
    title: Value,
    #[schema(value_type = Value)]
    message: Value,
    #[schema(value_type = Value)]
    culprit: Value,
    #[schema(value_type = Value)]
    platform: Value,
    /// `error`, `default`, ...
    #[serde(rename = "event.type")]
    #[schema(value_type = Value)]
    event_type: Value,
    /// The event's timestamp (ISO 8601).
    #[serde(rename = "dateCreated")]
    #[schema(value_type = Value)]
    date_created: Value,
    /// When the server received it.
    #[serde(rename = "dateReceived")]
    #[schema(value_type = Value)]
    date_received: Value,
    /// The user the SDK sent, or null.
    #[schema(value_type = Value)]
    user: Value,
    /// `[{"key", "value"}]` (in a full event, the tags as sent).
    #[schema(value_type = Value)]
    tags: Value,
    #[schema(value_type = Value)]
    metadata: Value,
}

/// A tag key of an issue as its detail lists it.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueTag {
    key: String,
    name: String,
    total_values: i64,
}

/// An event with the ids of its neighbours in its issue, oldest first (null at either end);
/// the whole event as the SDK sent it besides.
#[derive(ToSchema)]
pub struct EventDetail {
    #[serde(flatten)]
    event: Event,
    #[serde(rename = "previousEventID")]
    previous_event_id: Option<String>,
    #[serde(rename = "nextEventID")]
    next_event_id: Option<String>,
}

/// `GET /api/0/`: who the token is.
#[derive(ToSchema)]
pub struct Index {
    version: String,
    auth: IndexAuth,
    user: IndexUser,
}

/// The calling token's scopes.
#[derive(ToSchema)]
pub struct IndexAuth {
    scopes: Vec<String>,
}

/// The calling token as a user: its id.
#[derive(ToSchema)]
pub struct IndexUser {
    id: String,
    name: String,
    username: String,
}

/// The query of an issue list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct IssueListQuery {
    /// Sentry's search syntax (`is:unresolved` when absent): `is:`, `level:`, `release:`,
    /// `environment:`, tags, `firstSeen:`/`lastSeen:`/`timesSeen:`, free text; 400 naming a
    /// bad term.
    query: Option<String>,
    /// `date` (the default: last seen), `new`, `freq` or `user`.
    sort: Option<String>,
    /// `24h`, `14d` or empty: each issue's `stats` over that period.
    stats_period: Option<String>,
    /// Only events of these environments (repeat it).
    environment: Option<Vec<String>>,
    /// `1`: a query that is a short id (`PROJECT-3`) answers that issue, whatever its status.
    short_id_lookup: Option<String>,
    /// From a `Link` header's `rel="next"`.
    cursor: Option<String>,
    /// 1 to 100 (the default).
    limit: Option<i64>,
}

/// The projects of an organization-wide list or update.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectsQuery {
    /// Project ids (repeat it); none, or `-1`: every project. An unknown one is a 400.
    project: Option<Vec<i64>>,
}

/// The query of an issue's event list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The issue search syntax, applied to each event (tags, `environment`, `release`,
    /// `level`, times, free text on title, message or culprit); `is:` terms are ignored.
    query: Option<String>,
    /// Only events of this environment.
    environment: Option<String>,
    /// `true` or `1`: whole events, as sent.
    full: Option<String>,
    /// From a `Link` header's `rel="next"`.
    cursor: Option<String>,
    /// 1 to 100 (the default).
    limit: Option<i64>,
}

/// Who acted in a history row: a token, or nobody (the system).
#[derive(ToSchema)]
pub struct ActivityUser {
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// One row of an issue's history (`lifecycle::activity_json`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    id: String,
    /// `set_resolved`, `set_regression`, `set_ignored`, `set_unresolved`, `merge`, ...
    #[serde(rename = "type")]
    kind: String,
    /// The reason, and what the row stored (a merge's `parent` and `children`).
    #[schema(value_type = Object)]
    data: Value,
    reason: String,
    /// `system` or `token:<id>`.
    actor: String,
    user: Option<ActivityUser>,
    #[schema(format = DateTime)]
    date_created: String,
}

/// One hash linked to an issue, and the grouping scheme that linked it.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hash {
    id: String,
    grouping_config: String,
}

/// The scheme a grouping variant was computed with.
#[derive(ToSchema)]
pub struct GroupingConfigRef {
    id: String,
}

/// One variant of an event's grouping (`grouping::info`).
#[derive(ToSchema)]
pub struct GroupingVariant {
    key: String,
    /// `component`, `salted_component`, `custom_fingerprint`, `checksum` or `fallback`.
    #[serde(rename = "type")]
    kind: String,
    description: String,
    contributes: bool,
    hint: Option<String>,
    /// null when the variant does not contribute.
    hash: Option<String>,
    config: GroupingConfigRef,
    /// The component tree whose values made the hash: `{id, name, contributes, hint,
    /// values}`, values being strings or components.
    #[serde(default)]
    #[schema(value_type = Object)]
    component: Value,
    #[serde(default)]
    values: Vec<String>,
    fingerprint: Vec<String>,
    matched_rule: Option<String>,
    #[serde(default)]
    title: String,
}

/// Why an event grouped as it did: one entry per variant key (`app`, `system`, `default`, ...).
#[derive(ToSchema)]
pub struct GroupingInfo(BTreeMap<String, GroupingVariant>);

/// The server's one organization.
#[derive(ToSchema)]
pub struct Organization {
    id: String,
    slug: String,
    name: String,
}

/// A project (`lifecycle::project_json`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    id: String,
    slug: String,
    name: String,
    platform: Option<String>,
    #[schema(format = DateTime)]
    date_created: String,
    /// `active`: a deleted project is gone from every route.
    status: String,
    is_bookmarked: bool,
    is_member: bool,
    has_access: bool,
    features: Vec<String>,
    organization: Organization,
    alert_on_new_issue: bool,
    alert_on_regression: bool,
    alert_on_unmute: bool,
    /// null: no quota.
    rate_limit_per_minute: Option<i64>,
    rate_limit_per_hour: Option<i64>,
    /// null: the server's default.
    retention_days: Option<i64>,
    retention_max_events: Option<i64>,
    grouping_config: String,
    fingerprinting_rules: String,
    grouping_enhancements: String,
    secondary_grouping_config: Option<String>,
    /// Unix seconds; null outside a transition.
    secondary_grouping_expiry: Option<i64>,
}

/// `PUT /api/0/projects/{org}/{project}/`: absent fields stay as they are; for the limits,
/// null or 0 clears one.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectUpdate {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    /// A new slug; 409 when another project has it.
    slug: Option<String>,
    alert_on_new_issue: Option<bool>,
    alert_on_regression: Option<bool>,
    alert_on_unmute: Option<bool>,
    #[schema(minimum = 0)]
    rate_limit_per_minute: Option<i64>,
    #[schema(minimum = 0)]
    rate_limit_per_hour: Option<i64>,
    #[schema(minimum = 0)]
    retention_days: Option<i64>,
    #[schema(minimum = 0)]
    retention_max_events: Option<i64>,
    /// A known grouping scheme id; changing it starts a transition.
    grouping_config: Option<String>,
    /// Sentry's fingerprinting rules, one per line.
    fingerprinting_rules: Option<String>,
    /// Sentry's stack trace rules, one per line.
    grouping_enhancements: Option<String>,
    secondary_grouping_config: Option<String>,
    /// Unix seconds; 0 or null ends a transition.
    secondary_grouping_expiry: Option<i64>,
}

/// The status an update asks for.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum IssueStatus {
    Resolved,
    ResolvedInNextRelease,
    Unresolved,
    Ignored,
    Muted,
}

/// A volume condition that ends a mute: more than `volume` events in `nr_of_periods`
/// periods.
#[derive(ToSchema)]
pub struct UnmuteCondition {
    /// `minute`, `hour`, `day` or `week`.
    period: String,
    #[schema(minimum = 1)]
    nr_of_periods: u32,
    #[schema(minimum = 1)]
    volume: u64,
}

/// What a status depends on. Durations and windows are in minutes.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    /// Resolve in this release: a later release's event is a regression.
    in_release: Option<String>,
    in_next_release: Option<bool>,
    ignore_duration: Option<u64>,
    /// RFC 3339: muted until then.
    #[schema(format = DateTime)]
    ignore_until: Option<String>,
    ignore_count: Option<u64>,
    ignore_window: Option<u64>,
    ignore_user_count: Option<u64>,
    ignore_user_window: Option<u64>,
    /// Ours: volume conditions that unmute.
    unmute_on: Option<Vec<UnmuteCondition>>,
}

/// Sentry's issue update (`issue::request::parse_update`): a body without `status` changes
/// nothing.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueUpdate {
    status: Option<IssueStatus>,
    status_details: Option<StatusDetails>,
    /// Minutes: mute for this long.
    snooze_duration: Option<u64>,
    /// Bulk route only: merge the `?id=` issues into one.
    merge: Option<bool>,
}

/// What the bulk update answers: the applied status and details, the issues that refused,
/// or the merge (`{"merge": {"parent", "children"}}`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkUpdateAnswer {
    status: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    status_details: Value,
    #[serde(default)]
    refused: Vec<String>,
    /// `{"parent": "<id>", "children": ["<id>", ...]}`
    #[serde(default)]
    #[schema(value_type = Object)]
    merge: Value,
}

/// An alert channel; a webhook's secret reads as `********`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    id: String,
    /// `webhook`, `slack` or `email`.
    kind: String,
    /// `{"url", "secret"?}`, `{"url"}` or `{"to": [...]}`.
    #[schema(value_type = Object)]
    config: Value,
    #[schema(format = DateTime)]
    date_created: String,
}

/// The kind of an alert channel.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Webhook,
    Slack,
    Email,
}

/// A new alert channel: a webhook (`url`, `secret` signs the body), a Slack incoming webhook
/// (`url`), or email (`to`: one address or a list).
#[derive(ToSchema)]
pub struct ChannelCreate {
    kind: ChannelKind,
    url: Option<String>,
    secret: Option<String>,
    #[schema(value_type = Option<Vec<String>>)]
    to: Option<Value>,
}

/// One alert of the delivery log.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    id: String,
    channel: String,
    issue: String,
    /// `new_issue`, `regression`, `unmute`, ...
    kind: String,
    idempotency_key: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    attempts: i64,
    /// The receiver's HTTP status of the last attempt.
    last_status: Option<i64>,
    last_error: Option<String>,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(format = DateTime)]
    date_created: String,
    #[schema(format = DateTime)]
    date_delivered: Option<String>,
    /// The process holding (or last holding) the row's lease.
    claimed_by: Option<String>,
}

/// A responder (`responders::responder_json`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Responder {
    id: String,
    project: String,
    name: String,
    #[serde(rename = "watch_pattern")]
    watch_pattern: String,
    #[serde(rename = "min_level")]
    min_level: Option<String>,
    environment: Option<String>,
    enabled: bool,
    /// The actions as stored: `{"target", "delay_sec", "params"}`.
    actions: Vec<Value>,
    #[schema(format = DateTime)]
    date_created: String,
    #[schema(format = DateTime)]
    date_updated: String,
}

/// One action of a responder document.
#[derive(ToSchema)]
pub struct ResponderActionSpec {
    /// `webhook`, `slack` or `email`.
    target: String,
    /// Seconds after the episode starts.
    #[schema(minimum = 0)]
    delay_sec: Option<u64>,
    /// `{"url", "secret"?}`, `{"url"}` or `{"recipients": [...]}`.
    #[schema(value_type = Object)]
    params: Value,
}

/// A whole responder document (`responder::parse_spec`): every field is checked before
/// anything is stored; `id`, `project`, `dateCreated` and `dateUpdated` are ignored.
#[derive(ToSchema)]
pub struct ResponderDocument {
    #[schema(max_length = 200)]
    name: Option<String>,
    /// A regular expression matched against issue titles.
    watch_pattern: String,
    /// `debug`, `info`, `warning`, `error` or `fatal`.
    min_level: Option<String>,
    #[schema(max_length = 64)]
    environment: Option<String>,
    enabled: Option<bool>,
    #[schema(min_items = 1)]
    actions: Vec<ResponderActionSpec>,
}

/// One attempt of an action.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionAttempt {
    #[schema(format = DateTime)]
    date: String,
    outcome: String,
    http_status: Option<i64>,
    error: Option<String>,
    claimed_by: Option<String>,
}

/// One run of a responder action on an issue, with its attempts (`responders::run_json`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionRun {
    id: String,
    responder: String,
    /// The action's index in its responder.
    action: i64,
    episode: String,
    target: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    status: String,
    #[schema(format = DateTime)]
    due_at: String,
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    reason: Option<String>,
    claimed_by: Option<String>,
    #[schema(format = DateTime)]
    date_created: String,
    #[schema(format = DateTime)]
    date_done: Option<String>,
    attempt_log: Vec<ActionAttempt>,
}

/// A monitor's state in one environment.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorEnvironment {
    name: String,
    /// `active`, `ok` or `error`.
    status: String,
    #[schema(format = DateTime)]
    last_check_in: Option<String>,
    #[schema(format = DateTime)]
    next_check_in: Option<String>,
    #[schema(format = DateTime)]
    next_check_in_latest: Option<String>,
    #[schema(format = DateTime)]
    date_created: String,
    failures: i64,
    incident_open: bool,
    issue_id: Option<String>,
}

/// A monitor as an API client sees its project.
#[derive(ToSchema)]
pub struct MonitorProject {
    slug: String,
}

/// A cron monitor (`monitors::monitor_json`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitor {
    id: String,
    slug: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    /// The worst of its environments: `error`, `ok` or `active`.
    status: String,
    /// The `monitor_config` the SDK sent (`schedule`, `checkin_margin`, ...).
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    environments: Vec<MonitorEnvironment>,
    project: MonitorProject,
    #[schema(format = DateTime)]
    date_created: String,
}

/// A check-in (`monitors::checkin_json`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckIn {
    id: String,
    /// `in_progress`, `ok`, `error`, `missed` or `timeout`.
    status: String,
    /// Milliseconds.
    duration: Option<i64>,
    environment: String,
    release: Option<String>,
    #[schema(format = DateTime)]
    date_created: String,
    #[schema(format = DateTime)]
    date_updated: String,
    #[schema(format = DateTime)]
    expected_time: Option<String>,
    trace_id: Option<String>,
}

/// A check-in sent as JSON to the cron endpoint (Sentry's `check_in` payload).
#[derive(ToSchema)]
pub struct CheckInPayload {
    /// `in_progress`, `ok` or `error`.
    status: String,
    /// A UUID; a second check-in with the same id updates the first.
    check_in_id: Option<String>,
    /// Seconds.
    duration: Option<f64>,
    environment: Option<String>,
    release: Option<String>,
    /// Creates or updates the monitor: `schedule`, `checkin_margin`, `max_runtime`,
    /// `timezone`, ...
    #[schema(value_type = Option<Object>)]
    monitor_config: Option<Value>,
}

/// One component of `/health`: `healthy`, `response_time` (seconds), and its details.
#[derive(ToSchema)]
pub struct HealthComponent {
    healthy: bool,
    response_time: f64,
}

/// `/health` (python-panopticon's format).
#[derive(ToSchema)]
pub struct Health {
    service_healthy: bool,
    timestamp: String,
    /// `database`, `ingest_queue`, `alert_delivery`, `action_delivery`, `scheduler`.
    components: BTreeMap<String, HealthComponent>,
}

/// `/healthz`: the process answers.
#[derive(ToSchema)]
pub struct Healthz {
    ok: bool,
}

/// `/readyz`: whether this process should get traffic, and its ingestion counters.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readyz {
    ready: bool,
    /// `"ok"`, or the storage fault.
    storage: Value,
    #[schema(value_type = Object)]
    ingestion: Value,
}

/// `/readyz` when not ready: the reason in `detail`, and with a storage fault the same fields
/// as when ready.
#[derive(ToSchema)]
pub struct NotReady {
    detail: String,
    ready: Option<bool>,
    storage: Option<Value>,
    #[schema(value_type = Option<Object>)]
    ingestion: Option<Value>,
}

/// `POST /api/0/organizations/{org}/projects/`: the slug is made from the name when absent.
#[derive(ToSchema)]
pub struct ProjectCreate {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    slug: Option<String>,
}

/// A key's DSNs, as Sentry lists them.
#[derive(ToSchema)]
pub struct KeyDsn {
    public: String,
    secret: String,
    csp: String,
    security: String,
    minidump: String,
    unreal: String,
    cdn: String,
    crons: String,
}

/// A project's DSN key (Sentry's `ProjectKey`); its id in URLs is the public key.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectKey {
    id: String,
    name: String,
    label: String,
    public: String,
    secret: Option<String>,
    project_id: i64,
    is_active: bool,
    #[schema(format = DateTime)]
    date_created: String,
    dsn: KeyDsn,
    #[schema(value_type = Option<Object>)]
    rate_limit: Option<Value>,
}

/// A new key, or a change to one (`label` is taken for `name` too).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyUpdate {
    #[schema(max_length = 200)]
    name: Option<String>,
    is_active: Option<bool>,
}

/// An API token; the token itself only in the answer to its creation.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    id: String,
    name: String,
    /// Sentry's scope names: `event:read`, `project:write`, `org:admin`, ...
    scopes: Vec<String>,
    #[schema(format = DateTime)]
    date_created: String,
    token_last_characters: String,
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// `sntryu_...`: shown once, when created.
    #[serde(default)]
    token: String,
}

/// `POST /api/0/api-tokens/`: every scope when `scopes` is absent.
#[derive(ToSchema)]
pub struct TokenCreate {
    #[schema(min_items = 1)]
    scopes: Option<Vec<String>>,
    #[schema(max_length = 200)]
    name: Option<String>,
}

/// One value of a tag and how often the issue's events carry it.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagValue {
    key: String,
    name: String,
    value: String,
    count: i64,
    #[schema(format = DateTime)]
    first_seen: String,
    #[schema(format = DateTime)]
    last_seen: String,
}

/// A tag key of an issue: its counts and most frequent values.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagKey {
    key: String,
    name: String,
    total_values: i64,
    #[serde(default)]
    unique_values: i64,
    #[serde(default)]
    top_values: Vec<TagValue>,
}

/// A release as an issue names it (`firstRelease`, `lastRelease`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    version: String,
    short_version: String,
    #[schema(format = DateTime)]
    date_created: String,
    #[schema(format = DateTime)]
    date_released: Option<String>,
    #[schema(format = DateTime)]
    first_event: String,
    #[schema(format = DateTime)]
    last_event: String,
}

#[cfg(test)]
mod tests {
    use super::super::canonical_path;
    use serde_json::Value;

    #[test]
    fn canonical_paths() {
        let c = |p: &str| canonical_path(p);
        assert_eq!(c("/api/0/issues/1"), Some("/api/0/issues/1/".into()));
        assert_eq!(c("/api/0/issues/1/"), None);
        assert_eq!(
            c("/api/0/projects/o/p/issues?id=1&id=2"),
            Some("/api/0/projects/o/p/issues/?id=1&id=2".into())
        );
        assert_eq!(
            c("/api/1/envelope?sentry_key=k"),
            Some("/api/1/envelope/?sentry_key=k".into())
        );
        assert_eq!(c("/api/0/openapi.json"), None);
        assert_eq!(
            c("/api/0/openapi.json/"),
            Some("/api/0/openapi.json".into())
        );
        assert_eq!(c("/healthz/"), Some("/healthz".into()));
        assert_eq!(c("/health//?x=1"), Some("/health?x=1".into()));
        assert_eq!(c("/metrics"), None);
        assert_eq!(c("/"), None);
        assert_eq!(c("//"), None);
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc: Value = serde_json::from_str(&super::document()).unwrap();
        let mut ids = Vec::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.push(op["operationId"].as_str().unwrap().to_string());
            }
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "{ids:?}");
        assert!(ids.contains(&"cron_with_key_post".to_string()));
    }
}
