//! Alert delivery: render an outbox row for its channel, send it, and retry with backoff.
//!
//! The outbox itself lives in `store::alerts`: a transition writes one row per channel in its
//! own transaction. This module is the other half:
//!
//! - `render` (pure) turns the row's kind and payload plus the current issue into the bodies
//!   each channel kind sends (generic webhook JSON, Slack-compatible JSON, an email);
//! - `deliver` sends one rendered alert to one channel (HTTP POST or SMTP), with a timeout;
//! - `worker` claims due rows with a lease, delivers them and records every attempt
//!   (delivered, retry later with exponential backoff, or given up).
//!
//! Ingestion never waits for any of this: a slow or dead receiver only delays its own alerts.

pub mod deliver;
pub mod render;
pub mod worker;

pub use deliver::{deliver, DeliveryError, SmtpConfigError, SmtpSettings, SmtpTls};
pub use render::{render, AlertInput, Email, Rendered};
pub use worker::{AlertWorker, RetryPolicy};

/// The transitions that raise an alert, as stored in the outbox `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    NewIssue,
    Regression,
    Unmute,
}

impl AlertKind {
    pub fn parse(s: &str) -> Option<AlertKind> {
        match s {
            "new_issue" => Some(AlertKind::NewIssue),
            "regression" => Some(AlertKind::Regression),
            "unmute" => Some(AlertKind::Unmute),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NewIssue => "new_issue",
            AlertKind::Regression => "regression",
            AlertKind::Unmute => "unmute",
        }
    }

    /// How a human reads the kind at the start of a message.
    pub fn headline(self) -> &'static str {
        match self {
            AlertKind::NewIssue => "New issue",
            AlertKind::Regression => "Regression",
            AlertKind::Unmute => "Unmuted issue",
        }
    }
}
