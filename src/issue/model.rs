//! The issue as the core knows it: the denormalized row the API shows and alerts carry.

use serde::{Deserialize, Serialize};

/// One issue with its project's names: what the API serializes and an alert snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub id: i64,
    pub project_id: i64,
    pub project_slug: String,
    pub project_name: String,
    pub short_number: i64,
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub platform: String,
    pub event_type: String,
    pub metadata: String,
    pub status: String,
    pub event_count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub substatus: Option<String>,
    /// The lifecycle state as JSON (`issue::state::IssueState`); `{}` for a new issue.
    pub state: String,
    /// Distinct users (see `issue::users`); absent from alert snapshots older than it.
    #[serde(default)]
    pub user_count: i64,
}

/// One transition in an issue's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub id: i64,
    pub kind: String,
    /// `system` or `token:<id>`.
    pub actor: String,
    pub reason: String,
    pub data: String,
    pub created_at: i64,
}
