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

/// The transitions that raise an alert; the outbox `kind` column holds `as_str()`.
pub use crate::issue::state::AlertKind;

/// Checks a channel definition; returns (kind, config JSON).
pub fn channel_config(body: &serde_json::Value) -> Result<(String, serde_json::Value), String> {
    let kind = body
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let url = body.get("url").and_then(serde_json::Value::as_str);
    let http_url = |u: Option<&str>| -> Result<String, String> {
        let u = u.ok_or("'url' is required")?;
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(format!("'url' must be an http(s) URL, not '{u}'"));
        }
        Ok(u.to_string())
    };
    match kind {
        "webhook" => {
            let mut c = serde_json::json!({"url": http_url(url)?});
            if let Some(secret) = body.get("secret").and_then(serde_json::Value::as_str) {
                c["secret"] = serde_json::json!(secret);
            }
            Ok((kind.into(), c))
        }
        "slack" => Ok((kind.into(), serde_json::json!({"url": http_url(url)?}))),
        "email" => {
            let to: Vec<String> = match body.get("to") {
                Some(serde_json::Value::String(s)) => vec![s.clone()],
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => vec![],
            };
            if to.is_empty() || to.iter().any(|t| !t.contains('@')) {
                return Err("'to' must be one or more email addresses".into());
            }
            Ok((kind.into(), serde_json::json!({"to": to})))
        }
        _ => Err("'kind' must be webhook, slack or email".into()),
    }
}
