//! Cron monitors (Sentry's check-ins): the check-in payload, read and checked, and the failure event a monitor's incident is made of; `schedule` and `plan` are the pure core, `worker` the periodic I/O.
//!
//! A check-in (a `check_in` envelope item or the HTTP cron endpoint) is recorded by
//! `store::monitors` in one transaction that also plans, with `plan::step`, what it means for
//! its (monitor, environment). The worker marks missed deadlines and timeouts the same way.
//! Failures that reach the monitor's threshold become ordinary events (`failure_event`) in
//! the project's issue list, through the normal ingestion pipeline, so grouping, the
//! lifecycle engine, alerts and responders all apply to them.

pub mod plan;
pub mod schedule;
pub mod worker;

use schedule::MonitorConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Relay cuts monitor slugs to this many characters.
pub const MAX_SLUG_CHARS: usize = 50;
/// Environments are cut to Sentry's limit on them.
pub const MAX_ENVIRONMENT_CHARS: usize = 64;
/// `release` is cut to Sentry's limit on it.
pub const MAX_RELEASE_CHARS: usize = 200;

/// The status a client reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Ok,
    Error,
    /// Anything else, `missed` included: clients may not report a missed check-in.
    Unknown,
}

impl Status {
    pub fn parse(s: &str) -> Status {
        match s {
            "in_progress" => Status::InProgress,
            "ok" => Status::Ok,
            "error" => Status::Error,
            _ => Status::Unknown,
        }
    }

    pub fn input(self) -> plan::Input {
        match self {
            Status::InProgress => plan::Input::InProgress,
            Status::Ok => plan::Input::Ok,
            Status::Error => plan::Input::Error,
            Status::Unknown => plan::Input::Unknown,
        }
    }
}

/// A check-in as received, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckIn {
    /// `None` for the all-zero UUID (or none given on the HTTP endpoint): "the latest
    /// check-in still in progress", or a new one when none is.
    pub check_in_id: Option<Uuid>,
    pub monitor_slug: String,
    pub status: Status,
    /// Seconds.
    pub duration: Option<f64>,
    pub release: Option<String>,
    pub environment: String,
    pub trace_id: Option<String>,
    /// Creates or updates the monitor.
    pub monitor_config: Option<MonitorConfig>,
}

#[derive(Deserialize)]
struct RawCheckIn {
    check_in_id: Option<Value>,
    monitor_slug: Option<Value>,
    status: Option<Value>,
    duration: Option<Value>,
    release: Option<Value>,
    environment: Option<Value>,
    contexts: Option<Value>,
    monitor_config: Option<Value>,
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The slug as Relay takes it: trimmed, cut to 50 characters, never empty.
pub fn clean_slug(s: &str) -> Result<String, String> {
    let s = cut(s.trim(), MAX_SLUG_CHARS);
    if s.is_empty() {
        return Err("monitor_slug: must not be empty".into());
    }
    if s.chars().any(|c| c.is_control() || c == '/') {
        return Err("monitor_slug: must not contain control characters or '/'".into());
    }
    Ok(s)
}

fn parse_uuid(s: &str, field: &str) -> Result<Option<Uuid>, String> {
    let id = Uuid::parse_str(s.trim()).map_err(|_| format!("{field}: '{s}' is not a UUID"))?;
    Ok((!id.is_nil()).then_some(id))
}

fn opt_string(v: Option<Value>, field: &str, max: usize) -> Result<Option<String>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(cut(&s, max))),
        Some(_) => Err(format!("{field}: expected a string")),
    }
}

fn duration(v: Option<Value>) -> Result<Option<f64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map(Some)
            .ok_or_else(|| "duration: expected a non-negative number of seconds".into()),
    }
}

impl CheckIn {
    /// Reads a check-in JSON document (a `check_in` item, or the body of the HTTP endpoint,
    /// whose path slug then wins over the body's and whose `check_in_id` may be absent).
    pub fn from_json(json: &[u8], path_slug: Option<&str>) -> Result<CheckIn, String> {
        let raw: RawCheckIn =
            serde_json::from_slice(json).map_err(|e| format!("invalid check-in JSON: {e}"))?;
        let check_in_id = match raw.check_in_id {
            Some(Value::String(s)) => parse_uuid(&s, "check_in_id")?,
            None | Some(Value::Null) if path_slug.is_some() => None,
            None | Some(Value::Null) => return Err("check_in_id: required".into()),
            Some(_) => return Err("check_in_id: expected a UUID string".into()),
        };
        let monitor_slug = match (path_slug, raw.monitor_slug) {
            (Some(p), _) => clean_slug(p)?,
            (None, Some(Value::String(s))) => clean_slug(&s)?,
            (None, None | Some(Value::Null)) => return Err("monitor_slug: required".into()),
            (None, Some(_)) => return Err("monitor_slug: expected a string".into()),
        };
        let status = match raw.status {
            Some(Value::String(s)) => Status::parse(&s),
            None | Some(Value::Null) => return Err("status: required".into()),
            Some(_) => return Err("status: expected a string".into()),
        };
        let trace_id = match raw
            .contexts
            .as_ref()
            .and_then(|c| c.get("trace"))
            .and_then(|t| t.get("trace_id"))
        {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= 64 => Some(s.clone()),
            Some(_) => return Err("contexts.trace.trace_id: expected a trace id string".into()),
        };
        let monitor_config = match raw.monitor_config {
            None | Some(Value::Null) => None,
            Some(v) => Some(MonitorConfig::from_json(&v)?),
        };
        Ok(CheckIn {
            check_in_id,
            monitor_slug,
            status,
            duration: duration(raw.duration)?,
            release: opt_string(raw.release, "release", MAX_RELEASE_CHARS)?,
            environment: opt_string(raw.environment, "environment", MAX_ENVIRONMENT_CHARS)?
                .unwrap_or_else(|| "production".into()),
            trace_id,
            monitor_config,
        })
    }

    /// Reads the query form of the HTTP endpoint: `status` (required), `check_in_id`,
    /// `environment`, `duration`, `release`; auth parameters are ignored here.
    pub fn from_query(slug: &str, query: &[(String, String)]) -> Result<CheckIn, String> {
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let status = get("status").ok_or("status: required")?;
        let check_in_id = match get("check_in_id") {
            None | Some("") => None,
            Some(s) => parse_uuid(s, "check_in_id")?,
        };
        let duration = match get("duration") {
            None | Some("") => None,
            Some(s) => Some(
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .ok_or("duration: expected a non-negative number of seconds")?,
            ),
        };
        let text = |k: &str, max: usize| {
            get(k)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| cut(s, max))
        };
        Ok(CheckIn {
            check_in_id,
            monitor_slug: clean_slug(slug)?,
            status: Status::parse(status),
            duration,
            release: text("release", MAX_RELEASE_CHARS),
            environment: text("environment", MAX_ENVIRONMENT_CHARS)
                .unwrap_or_else(|| "production".into()),
            trace_id: None,
            monitor_config: None,
        })
    }
}

/// The id of the event a failing check-in row becomes: derived from the row, so whoever
/// submits it (the process that recorded it, or another after a crash) submits the same id and
/// the store keeps it once.
pub fn event_id_for(project_id: i64, checkin_row_id: i64) -> Uuid {
    let digest = Sha256::digest(format!("stackhound-monitor:{project_id}:{checkin_row_id}"));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The event JSON of one failure of a monitor: an error-level message grouped by the
/// monitor and environment alone (its fingerprint), so each monitor environment has one issue
/// whatever the reason of each failure.
pub fn failure_event(
    event_id: &Uuid,
    slug: &str,
    environment: &str,
    reason: &str,
    timestamp_secs: f64,
) -> Vec<u8> {
    json!({
        "event_id": event_id.simple().to_string(),
        "timestamp": timestamp_secs,
        "platform": "other",
        "level": "error",
        "logger": "stackhound.monitors",
        "message": format!("Monitor failure: {slug} ({reason})"),
        "fingerprint": ["stackhound-monitor", slug, environment],
        "environment": environment,
        "tags": {"monitor.slug": slug, "monitor.environment": environment},
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_reference_example() {
        let body = br#"{"check_in_id":"83a7c03ed0a04e1b97e2e3b18d38f244","monitor_slug":"my-monitor","status":"in_progress",
 "duration":10.0,"release":"1.0.0","environment":"production",
 "contexts":{"trace":{"trace_id":"8f431b7aa08441bbbd5a0100fd91f9fe"}},
 "monitor_config":{"schedule":{"type":"crontab","value":"0 * * * *"},
   "checkin_margin":5,"max_runtime":30,"failure_issue_threshold":2,"recovery_threshold":2,
   "timezone":"America/Los_Angeles","owner":"user:john@example.com"}}"#;
        let c = CheckIn::from_json(body, None).unwrap();
        assert_eq!(c.monitor_slug, "my-monitor");
        assert_eq!(c.status, Status::InProgress);
        assert_eq!(c.duration, Some(10.0));
        assert_eq!(c.release.as_deref(), Some("1.0.0"));
        assert_eq!(
            c.trace_id.as_deref(),
            Some("8f431b7aa08441bbbd5a0100fd91f9fe")
        );
        let cfg = c.monitor_config.unwrap();
        assert_eq!(cfg.checkin_margin, 5);
        assert_eq!(cfg.timezone.name(), "America/Los_Angeles");
        assert_eq!(
            c.check_in_id.unwrap().simple().to_string(),
            "83a7c03ed0a04e1b97e2e3b18d38f244"
        );
    }

    #[test]
    fn fields_and_errors() {
        let ok = |s: &str| CheckIn::from_json(s.as_bytes(), None);
        let c = ok(r#"{"check_in_id":"00000000-0000-0000-0000-000000000000","monitor_slug":"a","status":"missed"}"#).unwrap();
        assert_eq!(c.check_in_id, None);
        assert_eq!(c.status, Status::Unknown);
        assert_eq!(c.environment, "production");
        let long = "x".repeat(80);
        let c = ok(&format!(r#"{{"check_in_id":"83a7c03ed0a04e1b97e2e3b18d38f244","monitor_slug":"{long}","status":"ok"}}"#)).unwrap();
        assert_eq!(c.monitor_slug.len(), 50);
        for (body, field) in [
            (r#"{"monitor_slug":"a","status":"ok"}"#, "check_in_id"),
            (
                r#"{"check_in_id":"nope","monitor_slug":"a","status":"ok"}"#,
                "check_in_id",
            ),
            (
                r#"{"check_in_id":"83a7c03ed0a04e1b97e2e3b18d38f244","monitor_slug":"  ","status":"ok"}"#,
                "monitor_slug",
            ),
            (
                r#"{"check_in_id":"83a7c03ed0a04e1b97e2e3b18d38f244","status":"ok"}"#,
                "monitor_slug",
            ),
            (
                r#"{"check_in_id":"83a7c03ed0a04e1b97e2e3b18d38f244","monitor_slug":"a","status":3}"#,
                "status",
            ),
            (
                r#"{"check_in_id":"83a7c03ed0a04e1b97e2e3b18d38f244","monitor_slug":"a","status":"ok","duration":-1}"#,
                "duration",
            ),
            (
                r#"{"check_in_id":"83a7c03ed0a04e1b97e2e3b18d38f244","monitor_slug":"a","status":"ok","monitor_config":{"schedule":{"type":"interval","value":1,"unit":"eon"}}}"#,
                "monitor_config.schedule.unit",
            ),
            ("[1]", "invalid check-in JSON"),
        ] {
            let e = ok(body).unwrap_err();
            assert!(e.starts_with(field), "{body}: {e}");
        }
        // The HTTP form: the path slug wins and the id may be absent.
        let c = CheckIn::from_json(br#"{"monitor_slug":"other","status":"error"}"#, Some("job"))
            .unwrap();
        assert_eq!((c.monitor_slug.as_str(), c.check_in_id), ("job", None));
    }

    #[test]
    fn query_form() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let c = CheckIn::from_query(
            "job",
            &q(&[
                ("status", "ok"),
                ("duration", "1.5"),
                ("environment", "staging"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.status, c.duration, c.environment.as_str()),
            (Status::Ok, Some(1.5), "staging")
        );
        assert!(CheckIn::from_query("job", &q(&[]))
            .unwrap_err()
            .starts_with("status"));
        assert!(
            CheckIn::from_query("job", &q(&[("status", "ok"), ("duration", "x")]))
                .unwrap_err()
                .starts_with("duration")
        );
        assert!(CheckIn::from_query("", &q(&[("status", "ok")]))
            .unwrap_err()
            .starts_with("monitor_slug"));
    }

    #[test]
    fn failure_events_are_deterministic() {
        assert_eq!(event_id_for(1, 7), event_id_for(1, 7));
        assert_ne!(event_id_for(1, 7), event_id_for(1, 8));
        let id = event_id_for(1, 7);
        let ev: Value =
            serde_json::from_slice(&failure_event(&id, "nightly", "prod", "missed", 1.0e9))
                .unwrap();
        assert_eq!(ev["message"], "Monitor failure: nightly (missed)");
        assert_eq!(
            ev["fingerprint"],
            json!(["stackhound-monitor", "nightly", "prod"])
        );
        assert_eq!(ev["event_id"], id.simple().to_string());
    }
}
