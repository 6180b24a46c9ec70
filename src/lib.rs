//! Stackhound: a Sentry-compatible error tracker in one binary.

pub mod clock;
pub mod grouping;
pub mod normalize;
pub mod protocol;
pub mod stress;
