//! Stackhound: a Sentry-compatible error tracker in one binary.
//!
//! The path of an event through the server:
//!
//! 1. `http::ingest` takes `POST /api/{project}/envelope/` (or `/store/`). Credentials in the
//!    request (`X-Sentry-Auth`, `Authorization: Sentry`, `?sentry_key=`) are checked first,
//!    against an in-memory key cache (`pipeline::KeyCache`), so a bad client costs no body work.
//! 2. The body is read under a compressed-size cap and decoded (`protocol::compression`) into
//!    a budgeted buffer: a decompression bomb stops at the cap.
//! 3. `protocol::envelope` splits the envelope exactly per Sentry's grammar; an envelope that
//!    authenticates itself (`dsn` header) is checked now. Items other than `event` are counted
//!    and dropped.
//! 4. `pipeline::prepare` reads the event leniently (`protocol::event`: only the fields
//!    grouping needs, zero-copy), summarizes it (`normalize`: title, culprit, level, ...) and
//!    computes its grouping hashes (`grouping`). This CPU work runs on the request's own task,
//!    in parallel across requests.
//! 5. The prepared row goes into a bounded queue (full: 503 + `Retry-After`). A free writer
//!    task (SQLite has one; PostgreSQL several, in any number of processes) takes everything
//!    queued into one transaction (`store::ingest`): hashes -> issue (new issues claim their
//!    hashes first, so concurrent writers meet there), multi-row event insert (a re-sent event
//!    id is skipped by the unique key), then the issues it touched, locked in id order, are
//!    planned by the pure lifecycle planner (`issue::plan`: counts, regressions, unmutes,
//!    alerts) and its effects written (`store::lifecycle`). The payload is stored compressed.
//! 6. Only after that transaction commits is each request answered `{"id": ...}`: an
//!    acknowledged event is durable, and counts equal stored events at every commit.
//!
//! The read API (`http::api`) serves issues and events in Sentry's `/api/0/` shapes.

pub mod alert;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod event;
pub mod grouping;
pub mod http;
pub mod issue;
pub mod normalize;
pub mod payload;
pub mod pipeline;
pub mod protocol;
pub mod store;
pub mod stress;
pub mod token;
