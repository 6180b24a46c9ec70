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
    /// Grouping hashes in priority order (at least one): an event joins the issue of the first
    /// one linked, and the others are linked to that issue.
    pub hashes: Vec<String>,
    /// During a grouping transition, the hashes of the project's previous configuration: looked
    /// up (when no primary hash is linked) to find the issue, never linked.
    pub secondary_hashes: Vec<String>,
    /// The scheme of `hashes`, stored with their links.
    pub grouping_version: &'static str,
    pub seed: IssueSeed,
    pub timestamp_us: i64,
    pub received_us: i64,
    pub payload: StoredPayload,
    pub release: Option<String>,
    pub environment: Option<String>,
    /// Identifies the user for distinct-user mute limits and the issue's user count.
    pub user_key: Option<String>,
    /// The event's tags, then `level`, `environment` and `release` (`normalize::summarize`):
    /// what the issue's tag summary counts.
    pub tags: Vec<(String, String)>,
}

impl NewEvent {
    /// About how many bytes this row holds in memory while it waits for its commit (what the
    /// ingestion memory budget charges for it).
    pub fn approx_bytes(&self) -> usize {
        let strings = [
            &self.seed.title,
            &self.seed.culprit,
            &self.seed.platform,
            &self.seed.metadata,
        ]
        .iter()
        .map(|s| s.len())
        .sum::<usize>();
        let optional = [&self.release, &self.environment, &self.user_key]
            .iter()
            .map(|s| s.as_ref().map_or(0, |s| s.len()))
            .sum::<usize>();
        let tags = (self.tags.iter())
            .map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<String>())
            .sum::<usize>();
        let hashes = (self.hashes.iter())
            .chain(&self.secondary_hashes)
            .map(|h| h.len() + 24)
            .sum::<usize>();
        std::mem::size_of::<NewEvent>()
            + self.payload.bytes.capacity()
            + strings
            + optional
            + hashes
            + tags
    }
}

/// What became of one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub issue_id: i64,
    /// False when the event id was already stored (a re-send): answered, not counted again.
    pub inserted: bool,
    pub new_issue: bool,
}
