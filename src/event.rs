//! An accepted event as the core hands it to the store: grouped, summarized, payload ready.

use crate::payload::StoredPayload;

/// What a new issue starts with, taken from its first event.
#[derive(Debug, Clone)]
pub struct IssueSeed {
    pub title: String,
    pub culprit: String,
    pub level: &'static str,
    pub platform: String,
    pub event_type: &'static str,
    pub metadata: String,
}

/// One accepted event, ready to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub project_id: i64,
    pub event_id: [u8; 16],
    /// Grouping hashes in priority order (at least one).
    pub hashes: Vec<String>,
    pub grouping_version: &'static str,
    pub seed: IssueSeed,
    pub timestamp_us: i64,
    pub received_us: i64,
    pub payload: StoredPayload,
    pub release: Option<String>,
    pub environment: Option<String>,
    /// Identifies the user for distinct-user mute limits.
    pub user_key: Option<String>,
}

/// What became of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub issue_id: i64,
    /// False when the event id was already stored (a re-send): answered, not counted again.
    pub inserted: bool,
    pub new_issue: bool,
}
