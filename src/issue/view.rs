//! How an issue looks in Sentry's API JSON: shared by the API and the alert bodies.

use super::short_id;
use super::state::{self, IssueState};
use crate::issue::model::Issue;
use chrono::{SecondsFormat, TimeZone, Utc};
use serde_json::{json, Value};

/// ISO 8601 UTC with microseconds, as Sentry writes times.
pub fn iso(us: i64) -> String {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The Sentry issue (group) object.
pub fn issue_json(row: &Issue, public_url: &str, org: &str) -> Value {
    let metadata: Value = serde_json::from_str(&row.metadata).unwrap_or_else(|_| json!({}));
    let s = IssueState::from_stored(&row.state);
    let substatus = match (&row.substatus, row.status.as_str()) {
        (Some(sub), _) => json!(sub),
        (None, "unresolved") => json!("ongoing"),
        _ => Value::Null,
    };
    json!({
        "id": row.id.to_string(),
        "shortId": short_id(&row.project_slug, row.short_number),
        "title": row.title,
        "culprit": row.culprit,
        "permalink": format!("{public_url}/organizations/{org}/issues/{}/", row.id),
        "logger": null,
        "level": row.level,
        "status": row.status,
        "statusDetails": state::status_details(&s),
        "substatus": substatus,
        "isPublic": false,
        "platform": row.platform,
        "project": {
            "id": row.project_id.to_string(),
            "name": row.project_name,
            "slug": row.project_slug,
        },
        "type": row.event_type,
        "issueType": "error",
        "issueCategory": "error",
        "metadata": metadata,
        "numComments": 0,
        "assignedTo": null,
        "isBookmarked": false,
        "isSubscribed": false,
        "subscriptionDetails": null,
        "hasSeen": false,
        "annotations": [],
        "shareId": null,
        "count": row.event_count.to_string(),
        "userCount": row.user_count,
        "firstSeen": iso(row.first_seen),
        "lastSeen": iso(row.last_seen),
        "stats": {},
    })
}
