//! End-to-end tests: a real server on port 0 with a fresh database, driven by real clients.
//! Every test runs on SQLite and on PostgreSQL (`both_backends!`): `<module>::<test>::sqlite`
//! and `<module>::<test>::postgres`.

// First, so that `both_backends!` is in scope in the modules below.
#[path = "../support/backend.rs"]
#[macro_use]
mod backend;

mod alerts_e2e;
mod api;
mod bad_input;
mod captures;
mod concurrency;
mod connections;
mod events;
mod grouping;
mod health;
mod helpers;
mod hostile;
mod lifecycle;
mod merge;
mod monitors;
mod openapi;
mod projects;
#[path = "../support/receivers.rs"]
#[allow(dead_code)]
mod receivers;
mod responders;
mod retention;
mod sdk;
mod search;
mod sentry_cli;
mod shutdown;
mod tags;
mod tokens;
