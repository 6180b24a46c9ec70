//! Merging issues: one transaction moves the children's events, hash links, users and
//! aggregates (tag values, hourly counts, user sketches) onto the target, which keeps
//! everything, and leaves each child as a tombstone pointing at it.
//!
//! The children keep their rows (Sentry deletes them) with `merged_into` set: their old ids and
//! short ids still answer, with the target (`Store::issue_following_merges`), and an ingest
//! writer whose cached hash link still names a child notices it under the child's row lock
//! (`lifecycle::lock_issues` fails the batch with `StoreError::StaleLinks`; the writer forgets
//! its links and runs the batch again). A tombstone's own state, count and history stay as they
//! were at the merge; it is left out of lists, searches, bulk updates, timed unmutes and
//! next-release resolutions, and gets no new events, so nothing about it changes or alerts
//! again. Alerts it raised before the merge are still delivered, with their snapshot.
//!
//! Lock order (ARCHITECTURE.md invariant 8): the merge locks its issues first, in id order,
//! and only then updates events and hash links: against the global order, yet it cannot
//! deadlock with ingestion. The rows it updates afterwards are committed rows of the locked
//! children, which an ingest transaction never locks (it locks only rows it inserts itself,
//! project counters, releases and issues): ingestion may wait for the merge (a re-sent event
//! id, a hash link being moved), never the other way round once the merge holds its issues,
//! and those it takes in the same id order as everybody else. Should PostgreSQL still report a
//! deadlock or a serialization failure, the merge is run again, as people's changes are.

use super::{Db, Result, Store, Tx};
use crate::issue::state::Actor;

/// The merge that was stored: the target and the issues merged into it (in id order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub parent: i64,
    pub children: Vec<i64>,
}

/// Why a merge was refused (nothing is changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeRefusal {
    #[error("merging needs at least two distinct issue ids")]
    TooFew,
    #[error("issue {0} not found in this project")]
    Unknown(i64),
    #[error("issue {0} was already merged into issue {1}")]
    AlreadyMerged(i64, i64),
}

/// What the merge reads of each issue under its lock.
#[derive(Debug, Clone, Copy)]
struct Row {
    id: i64,
    project_id: i64,
    event_count: i64,
    first_seen: i64,
    last_seen: i64,
    merged_into: Option<i64>,
}

type RowTuple = (i64, i64, i64, i64, i64, Option<i64>);

/// The issue that survives: the most events; ties, the oldest (`first_seen`, then the lowest
/// id), as Sentry picks it.
fn pick_parent(rows: &[Row]) -> Option<Row> {
    rows.iter().copied().max_by(|a, b| {
        a.event_count
            .cmp(&b.event_count)
            .then(b.first_seen.cmp(&a.first_seen))
            .then(b.id.cmp(&a.id))
    })
}

/// How often a merge that hit a deadlock or serialization failure is tried again.
const MAX_RETRIES: u32 = 8;

impl Store {
    /// Merges the issues `ids` of project `project_id` into the one with the most events, in
    /// one transaction; refuses (changing nothing) fewer than two distinct ids, an id that is
    /// not an issue of the project, or one already merged.
    pub async fn merge_issues(
        &self,
        project_id: i64,
        ids: &[i64],
        actor: Actor,
        now_us: i64,
    ) -> Result<std::result::Result<Merged, MergeRefusal>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() < 2 {
            return Ok(Err(MergeRefusal::TooFew));
        }
        let mut attempt = 0;
        loop {
            match self.try_merge(project_id, &ids, actor, now_us).await {
                Err(e) if e.is_retryable() && attempt < MAX_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_merge(
        &self,
        project_id: i64,
        ids: &[i64],
        actor: Actor,
        now_us: i64,
    ) -> Result<std::result::Result<Merged, MergeRefusal>> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let rows = lock(&mut tx, ids).await?;
        for &id in ids {
            match rows.iter().find(|r| r.id == id) {
                Some(r) if r.project_id == project_id => {
                    if let Some(into) = r.merged_into {
                        return Ok(Err(MergeRefusal::AlreadyMerged(id, into)));
                    }
                }
                // Another project's issue is refused like an unknown one: nothing to tell.
                _ => return Ok(Err(MergeRefusal::Unknown(id))),
            }
        }
        let Some(parent) = pick_parent(&rows) else {
            return Ok(Err(MergeRefusal::TooFew));
        };
        let children: Vec<Row> = rows.iter().copied().filter(|r| r.id != parent.id).collect();
        for child in &children {
            move_child(&mut tx, child.id, parent.id).await?;
        }
        let child_ids: Vec<i64> = children.iter().map(|c| c.id).collect();
        super::tags::fold_into(&mut tx, parent.id, &child_ids).await?;
        let count: i64 = rows.iter().map(|r| r.event_count).sum();
        let first = rows
            .iter()
            .map(|r| r.first_seen)
            .min()
            .unwrap_or(parent.first_seen);
        let last = rows
            .iter()
            .map(|r| r.last_seen)
            .max()
            .unwrap_or(parent.last_seen);
        // The parent keeps its own status and lifecycle state: a merge is not a transition.
        // Its rolling mute counters are dropped: the children's events now fall in its
        // windows, and counters that are too low would miss an unmute; without counters the
        // planner counts exactly (`MuteCounters::from_stored`).
        on!(&mut tx, t => sqlx::query(
            "UPDATE issues SET event_count = $1, first_seen = $2, last_seen = $3, counters = NULL
             WHERE id = $4",
        )
        .bind(count)
        .bind(first)
        .bind(last)
        .bind(parent.id)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
        let merged = Merged {
            parent: parent.id,
            children: children.iter().map(|c| c.id).collect(),
        };
        record(&mut tx, &merged, &rows, actor, now_us).await?;
        tx.commit().await?;
        Ok(Ok(merged))
    }
}

/// Locks the issues `ids` (sorted) in id order and reads them.
async fn lock(tx: &mut Tx<'_>, ids: &[i64]) -> Result<Vec<Row>> {
    let rows: Vec<RowTuple> = match tx {
        // The write transaction is exclusive already.
        Db::Sqlite(t) => {
            let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
            sqlx::query_as(
                "SELECT id, project_id, event_count, first_seen, last_seen, merged_into
                 FROM issues WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id",
            )
            .bind(list)
            .fetch_all(&mut **t)
            .await?
        }
        Db::Postgres(t) => {
            sqlx::query_as(
                "SELECT id, project_id, event_count, first_seen, last_seen, merged_into
                 FROM issues WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .bind(ids)
            .fetch_all(&mut **t)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(
            |(id, project_id, event_count, first_seen, last_seen, merged_into)| Row {
                id,
                project_id,
                event_count,
                first_seen,
                last_seen,
                merged_into,
            },
        )
        .collect())
}

/// Moves one child's events, hash links and users to the parent and makes it a tombstone.
async fn move_child(tx: &mut Tx<'_>, child: i64, parent: i64) -> Result<()> {
    for sql in [
        "UPDATE events SET issue_id = $1 WHERE issue_id = $2",
        "UPDATE grouping_hashes SET issue_id = $1 WHERE issue_id = $2",
        // No longer due for a timed unmute: a tombstone never changes state again.
        "UPDATE issues SET merged_into = $1, mute_until = NULL WHERE id = $2",
    ] {
        on!(tx, t => sqlx::query(sql)
            .bind(parent)
            .bind(child)
            .execute(&mut **t)
            .await.map(|r| r.rows_affected()))?;
    }
    // A user both issues saw keeps the later sighting.
    let users = match tx {
        Db::Sqlite(_) => {
            "INSERT INTO issue_users (issue_id, user_key, last_seen)
             SELECT $1, user_key, last_seen FROM issue_users WHERE issue_id = $2
             ON CONFLICT (issue_id, user_key)
             DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
        }
        Db::Postgres(_) => {
            "INSERT INTO issue_users (issue_id, user_key, last_seen)
             SELECT $1, user_key, last_seen FROM issue_users WHERE issue_id = $2
             ON CONFLICT (issue_id, user_key)
             DO UPDATE SET last_seen = GREATEST(issue_users.last_seen, excluded.last_seen)"
        }
    };
    on!(tx, t => sqlx::query(users)
        .bind(parent)
        .bind(child)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
    on!(tx, t => sqlx::query("DELETE FROM issue_users WHERE issue_id = $1")
        .bind(child)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// One `merge` history row on the parent and on each child, with the whole merge as data
/// (and each issue's count at the merge, which the tombstones' rows keep too).
async fn record(
    tx: &mut Tx<'_>,
    merged: &Merged,
    rows: &[Row],
    actor: Actor,
    now_us: i64,
) -> Result<()> {
    let counts: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|r| (r.id.to_string(), r.event_count.into()))
        .collect();
    let data = serde_json::json!({
        "parent": merged.parent.to_string(),
        "children": merged.children.iter().map(i64::to_string).collect::<Vec<_>>(),
        "counts": counts,
    })
    .to_string();
    let children = merged
        .children
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut notes = vec![(
        merged.parent,
        format!("issues {children} were merged into this one"),
    )];
    for &child in &merged.children {
        notes.push((child, format!("merged into issue {}", merged.parent)));
    }
    for (issue_id, reason) in notes {
        on!(tx, t => sqlx::query(
            "INSERT INTO issue_activity (issue_id, kind, actor, reason, data, created_at)
             VALUES ($1, 'merge', $2, $3, $4, $5)",
        )
        .bind(issue_id)
        .bind(super::lifecycle::actor_text(actor))
        .bind(&reason)
        .bind(&data)
        .bind(now_us)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, event_count: i64, first_seen: i64) -> Row {
        Row {
            id,
            project_id: 1,
            event_count,
            first_seen,
            last_seen: first_seen,
            merged_into: None,
        }
    }

    #[test]
    fn the_parent_has_the_most_events_then_is_the_oldest_then_the_lowest_id() {
        let most = [row(1, 2, 10), row(2, 5, 30), row(3, 1, 0)];
        assert_eq!(pick_parent(&most).map(|r| r.id), Some(2));
        let tie = [row(1, 4, 20), row(2, 4, 10), row(3, 1, 0)];
        assert_eq!(pick_parent(&tie).map(|r| r.id), Some(2));
        let same = [row(7, 4, 10), row(5, 4, 10)];
        assert_eq!(pick_parent(&same).map(|r| r.id), Some(5));
        assert!(pick_parent(&[]).is_none());
    }
}
