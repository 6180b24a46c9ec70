//! Reading stored events of an issue, newest first.

use super::{Result, Store};
use crate::payload::StoredPayload;

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub id: i64,
    pub project_id: i64,
    pub event_id: [u8; 16],
    pub issue_id: i64,
    pub timestamp: i64,
    pub received: i64,
    pub payload: StoredPayload,
}

type Row = (i64, i64, Vec<u8>, i64, i64, i64, String, Vec<u8>);

fn from_row(r: Row) -> EventRow {
    EventRow {
        id: r.0,
        project_id: r.1,
        event_id: r.2.as_slice().try_into().unwrap_or_default(),
        issue_id: r.3,
        timestamp: r.4,
        received: r.5,
        payload: StoredPayload {
            codec: r.6,
            bytes: r.7,
        },
    }
}

const SELECT: &str = "SELECT id, project_id, event_id, issue_id, timestamp, received,
    payload_codec, payload FROM events";

impl Store {
    /// A page of an issue's events, newest `timestamp` first, strictly after the keyset cursor.
    pub async fn issue_events(
        &self,
        issue_id: i64,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let (lo_ts, lo_id) = after.unwrap_or((i64::MAX, i64::MAX));
        let rows: Vec<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "{SELECT} WHERE issue_id = $1 AND (timestamp, id) < ($2, $3)
             ORDER BY timestamp DESC, id DESC LIMIT $4"
        ))
        .bind(issue_id)
        .bind(lo_ts)
        .bind(lo_id)
        .bind(limit)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// The event ids just before and just after (timestamp, id) in an issue's order (oldest
    /// first): Sentry's `previousEventID` and `nextEventID`.
    pub async fn event_neighbours(
        &self,
        issue_id: i64,
        timestamp: i64,
        id: i64,
    ) -> Result<(Option<[u8; 16]>, Option<[u8; 16]>)> {
        let one = |sql: &'static str| async move {
            let row: Option<(Vec<u8>,)> = on!(&self.read, p => sqlx::query_as(sql)
                .bind(issue_id)
                .bind(timestamp)
                .bind(id)
                .fetch_optional(p)
                .await)?;
            Ok::<_, super::StoreError>(row.and_then(|r| r.0.as_slice().try_into().ok()))
        };
        let previous = one(
            "SELECT event_id FROM events WHERE issue_id = $1 AND (timestamp, id) < ($2, $3)
             ORDER BY timestamp DESC, id DESC LIMIT 1",
        )
        .await?;
        let next = one(
            "SELECT event_id FROM events WHERE issue_id = $1 AND (timestamp, id) > ($2, $3)
             ORDER BY timestamp ASC, id ASC LIMIT 1",
        )
        .await?;
        Ok((previous, next))
    }

    /// The oldest event of an issue.
    pub async fn oldest_event(&self, issue_id: i64) -> Result<Option<EventRow>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "{SELECT} WHERE issue_id = $1 ORDER BY timestamp ASC, id ASC LIMIT 1"
        ))
        .bind(issue_id)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    /// One event of an issue by its event id.
    pub async fn issue_event(&self, issue_id: i64, event_id: [u8; 16]) -> Result<Option<EventRow>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!("{SELECT} WHERE issue_id = $1 AND event_id = $2"))
                .bind(issue_id)
                .bind(&event_id[..])
                .fetch_optional(p)
                .await)?;
        Ok(row.map(from_row))
    }

    /// One event of a project by its event id.
    pub async fn project_event(
        &self,
        project_id: i64,
        event_id: [u8; 16],
    ) -> Result<Option<EventRow>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!("{SELECT} WHERE project_id = $1 AND event_id = $2"))
            .bind(project_id)
            .bind(&event_id[..])
            .fetch_optional(p)
            .await)?;
        Ok(row.map(from_row))
    }

    /// Whether an event id is stored for the project (durability checks).
    pub async fn event_exists(&self, project_id: i64, event_id: [u8; 16]) -> Result<bool> {
        let row: Option<(i64,)> = on!(&self.read, p => sqlx::query_as("SELECT id FROM events WHERE project_id = $1 AND event_id = $2")
                .bind(project_id)
                .bind(&event_id[..])
                .fetch_optional(p)
                .await)?;
        Ok(row.is_some())
    }

    /// How many events are stored in all (benchmarks and tests compare it with counts).
    pub async fn event_total(&self) -> Result<i64> {
        let (n,): (i64,) = on!(&self.read, p => sqlx::query_as("SELECT count(*) FROM events")
            .fetch_one(p)
            .await)?;
        Ok(n)
    }
}
