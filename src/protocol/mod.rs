//! Sentry wire formats: envelopes, auth headers, content encodings, event payloads, rate-limit
//! headers. No I/O.

pub mod auth;
pub mod compression;
pub mod envelope;
pub mod event;
pub mod lenient;
pub mod ratelimit;
