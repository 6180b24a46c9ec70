//! Stackhound: a Sentry-compatible error tracker in one binary.
//!
//! The path of an event through the server:
//!
//! 1. `http::serve` accepts the connection (capped, with header, idle and body timeouts) and
//!    `http::ingest` takes `POST /api/{project}/envelope/` (or `/store/`). Credentials in the
//!    request (`X-Sentry-Auth`, `Authorization: Sentry`, `?sentry_key=`) are checked first,
//!    against an in-memory key cache (`pipeline::KeyCache`), then the project's quota
//!    (`quota`, 429), so a bad or over-quota client costs no body work.
//! 2. A `Content-Length` over the cap is refused (413) before the body is read. The body is read
//!    out of the process-wide memory budget (`budget`, 503 when spent); then the request must be
//!    admitted (`Pipeline::admit`: at most as many in flight as the queue holds, else 503), all
//!    before any decoding.
//! 3. The body streams through its decoders (`protocol::compression::reader`) into the envelope
//!    reader (`protocol::envelope::read`), which holds only the `event` item: attachments,
//!    replays and other dropped items pass through a small buffer, are counted, and the answer
//!    tells the SDK (`X-Sentry-Rate-Limits`) to stop sending their categories. An envelope that
//!    authenticates itself (`dsn` header) is checked now.
//! 4. `pipeline::prepare` reads the event leniently (`protocol::event`: only the fields
//!    grouping needs, zero-copy), summarizes it (`normalize`: title, culprit, level, ...) and
//!    computes its grouping hashes (`grouping`). This CPU work runs on the request's own task,
//!    in parallel across requests.
//! 5. The prepared row goes into the queue. A free writer task (SQLite has one; PostgreSQL
//!    several, in any number of processes) takes everything queued into one transaction
//!    (`store::ingest`): hashes -> issue (new issues claim their hashes first, so concurrent
//!    writers meet there), multi-row event insert (a re-sent event id is skipped by the unique
//!    key), then the issues it touched, locked in id order, are planned by the pure lifecycle
//!    planner (`issue::plan`: counts, regressions, unmutes, alerts) and its effects written
//!    (`store::lifecycle`). The payload is stored compressed. A storage fault fails the batch
//!    as a whole (503) and the next one starts on a fresh connection.
//! 6. Only after that transaction commits is each request answered `{"id": ...}`: an
//!    acknowledged event is durable, and counts equal the events that arrived at every commit
//!    (retention later deletes old events, never counts).
//!
//! The read API (`http::api`) serves issues and events in Sentry's `/api/0/` shapes.

pub mod alert;
pub mod app;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod event;
pub mod grouping;
pub mod health;
pub mod http;
pub mod issue;
pub mod metrics;
pub mod monitor;
pub mod normalize;
pub mod payload;
pub mod pipeline;
pub mod project_grouping;
pub mod protocol;
pub mod quota;
pub mod responder;
pub mod store;
pub mod stress;
pub mod token;
