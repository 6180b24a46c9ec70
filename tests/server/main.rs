//! End-to-end tests: a real server on port 0 with a fresh database, driven by real clients.

mod api;
mod bad_input;
mod captures;
mod concurrency;
mod helpers;
mod lifecycle;
mod sdk;
