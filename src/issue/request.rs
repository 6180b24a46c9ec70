//! Sentry's issue update body (`PUT /api/0/issues/{id}/` and the bulk form) read into a
//! change of state: `status`, `statusDetails` and `snoozeDuration`, plus our `unmuteOn` list.

use super::state::MuteRequest;
use super::volume::{Period, VolumeCondition};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// A change of state a person (or script) asks for through the API.
#[derive(Debug, Clone)]
pub enum Change {
    Resolve,
    ResolveInRelease(String),
    ResolveInNextRelease,
    /// Back to unresolved; for a muted issue that is an unmute by a person.
    Reopen,
    Mute(MuteRequest),
    Unmute,
}

/// What an update asks for: a change of state, or nothing we act on (bookmarks, ...).
#[derive(Debug, Clone)]
pub enum Update {
    Change(Change),
    Nothing,
}

fn minutes(v: Option<&Value>, name: &str) -> Result<Option<u64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Some)
            .ok_or_else(|| format!("'{name}' must be a non-negative number")),
    }
}

/// Reads an update body. `now` turns durations into moments.
pub fn parse_update(body: &Value, now: DateTime<Utc>) -> Result<Update, String> {
    let Some(obj) = body.as_object() else {
        return Err("the body must be a JSON object".into());
    };
    let details = match obj.get("statusDetails") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("'statusDetails' must be an object".into()),
    };
    let status = match obj.get("status") {
        None | Some(Value::Null) => return Ok(Update::Nothing),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("'status' must be a string".into()),
    };
    let change = match status {
        "resolved" => {
            if let Some(r) = details.get("inRelease").and_then(Value::as_str) {
                Change::ResolveInRelease(r.to_string())
            } else if details.get("inNextRelease").and_then(Value::as_bool) == Some(true) {
                Change::ResolveInNextRelease
            } else {
                Change::Resolve
            }
        }
        "resolvedInNextRelease" => Change::ResolveInNextRelease,
        "unresolved" => Change::Reopen,
        "ignored" | "muted" => Change::Mute(mute_request(obj, &details, now)?),
        other => {
            return Err(format!(
                "unknown status '{other}': use resolved, resolvedInNextRelease, unresolved, ignored or muted"
            ))
        }
    };
    Ok(Update::Change(change))
}

fn mute_request(
    obj: &serde_json::Map<String, Value>,
    details: &serde_json::Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<MuteRequest, String> {
    let field = |name: &str| details.get(name).or_else(|| obj.get(name));
    let duration = match minutes(field("ignoreDuration"), "ignoreDuration")? {
        Some(d) => Some(d),
        None => minutes(field("snoozeDuration"), "snoozeDuration")?,
    };
    // `ignoreUntil` is what Sentry answers in `statusDetails`; accepting it back (an RFC 3339
    // moment) lets a client send an issue's details round trip, and mute to the second.
    let until = match field("ignoreUntil") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or("'ignoreUntil' must be an RFC 3339 time such as 2026-12-01T12:00:00Z")?,
        ),
    };
    let mut req = MuteRequest {
        until: until.or_else(|| {
            duration
                .filter(|d| *d > 0)
                .map(|d| now + Duration::minutes(d.min(10_000_000) as i64))
        }),
        ..MuteRequest::default()
    };
    let count = minutes(field("ignoreCount"), "ignoreCount")?.filter(|c| *c > 0);
    let window = minutes(field("ignoreWindow"), "ignoreWindow")?.filter(|w| *w > 0);
    match (count, window) {
        (Some(volume), Some(window)) => req.conditions.push(VolumeCondition {
            period: Period::Minute,
            nr_of_periods: u32::try_from(window).map_err(|_| "'ignoreWindow' is too large")?,
            volume,
        }),
        (Some(count), None) => req.count_since_mute = Some(count),
        _ => {}
    }
    req.user_count = minutes(field("ignoreUserCount"), "ignoreUserCount")?.filter(|c| *c > 0);
    req.user_window_minutes = minutes(field("ignoreUserWindow"), "ignoreUserWindow")?
        .filter(|w| *w > 0)
        .map(|w| u32::try_from(w).unwrap_or(u32::MAX));
    if let Some(list) = field("unmuteOn") {
        let conditions: Vec<VolumeCondition> =
            serde_json::from_value(list.clone()).map_err(|e| {
                format!(
                "'unmuteOn' must be a list of {{\"period\", \"nr_of_periods\", \"volume\"}}: {e}"
            )
            })?;
        req.conditions.extend(conditions);
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn ignore_until_is_a_moment() {
        let Change::Mute(m) = change(json!({
            "status": "ignored",
            "statusDetails": {"ignoreUntil": "2026-01-01T12:00:05Z", "ignoreDuration": 30}
        })) else {
            panic!("a mute")
        };
        assert_eq!(m.until, Some(now() + Duration::seconds(5)));
        let bad = json!({"status": "ignored", "statusDetails": {"ignoreUntil": "soon"}});
        assert!(parse_update(&bad, now()).unwrap_err().contains("RFC 3339"));
    }

    fn change(body: Value) -> Change {
        match parse_update(&body, now()).unwrap() {
            Update::Change(c) => c,
            Update::Nothing => panic!("no change for {body}"),
        }
    }

    #[test]
    fn sentry_cli_bodies() {
        assert!(matches!(
            change(json!({"status":"resolved","snoozeDuration":null})),
            Change::Resolve
        ));
        assert!(matches!(
            change(json!({"status":"resolvedInNextRelease","snoozeDuration":null})),
            Change::ResolveInNextRelease
        ));
        assert!(matches!(
            change(json!({"status":"unresolved","snoozeDuration":null})),
            Change::Reopen
        ));
        let Change::Mute(m) = change(json!({"status":"muted","snoozeDuration":null})) else {
            panic!()
        };
        assert_eq!(m, MuteRequest::default());
    }

    #[test]
    fn status_details_map_onto_mute_limits() {
        let Change::Mute(m) = change(json!({"status":"ignored","statusDetails":{
            "ignoreCount": 10, "ignoreWindow": 5, "ignoreDuration": 30,
            "ignoreUserCount": 3, "ignoreUserWindow": 60}}))
        else {
            panic!()
        };
        assert_eq!(m.until, Some(now() + Duration::minutes(30)));
        assert_eq!(
            m.conditions,
            vec![VolumeCondition {
                period: Period::Minute,
                nr_of_periods: 5,
                volume: 10
            }]
        );
        assert_eq!(m.user_count, Some(3));
        assert_eq!(m.user_window_minutes, Some(60));
        let Change::Mute(m) =
            change(json!({"status":"ignored","statusDetails":{"ignoreCount": 100}}))
        else {
            panic!()
        };
        assert_eq!(m.count_since_mute, Some(100));
        let Change::Mute(m) = change(json!({"status":"ignored","snoozeDuration": 10})) else {
            panic!()
        };
        assert_eq!(m.until, Some(now() + Duration::minutes(10)));
        let Change::Mute(m) = change(json!({"status":"muted","statusDetails":{"unmuteOn":[
            {"period":"day","nr_of_periods":1,"volume":100}]}}))
        else {
            panic!()
        };
        assert_eq!(m.conditions[0].period, Period::Day);
    }

    #[test]
    fn releases_and_refusals() {
        assert!(matches!(
            change(json!({"status":"resolved","statusDetails":{"inRelease":"2.0"}})),
            Change::ResolveInRelease(r) if r == "2.0"
        ));
        assert!(matches!(
            change(json!({"status":"resolved","statusDetails":{"inNextRelease":true}})),
            Change::ResolveInNextRelease
        ));
        assert!(matches!(
            parse_update(&json!({"isBookmarked": true}), now()),
            Ok(Update::Nothing)
        ));
        assert!(parse_update(&json!({"status":"gone"}), now()).is_err());
        assert!(parse_update(&json!([]), now()).is_err());
        assert!(parse_update(
            &json!({"status":"ignored","statusDetails":{"ignoreCount":"x"}}),
            now()
        )
        .is_err());
        assert!(parse_update(
            &json!({"status":"ignored","statusDetails":{"unmuteOn":[{"period":"fortnight"}]}}),
            now()
        )
        .is_err());
    }
}
