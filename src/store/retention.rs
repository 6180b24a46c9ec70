//! Retention: deletes each project's events past its age or count limit, oldest first, in short
//! write transactions, and gives SQLite's freed pages back to the file system.
//!
//! Only event rows go. An issue keeps its `event_count`, `first_seen` and `last_seen` (they
//! say what arrived, not what is kept), its history and its state; an issue whose events are
//! all gone stays listed and simply has no events to show.
//!
//! Age is measured from `received` (the server's clock when the event arrived), not from the
//! event's own `timestamp`, which the client sets: an SDK with a wrong clock must not make its
//! events vanish at once, or stay forever.
//!
//! A project's events are walked in `id` order through `events_by_project (project_id, id)`.
//! Ids grow with arrival (SQLite's rowid is `max + 1`; PostgreSQL's sequence), and `received`
//! follows them up to the few milliseconds a row waits for its writer, so the rows due are the
//! oldest ids: a step reads the first `max_rows` ids of a project and deletes those among them
//! that are due. The walk from the old end never reads more than those rows.
//!
//! Where a count limit starts is found by walking the newest N+1 entries of that index: ~8 ms
//! for 100,000 on SQLite, but on PostgreSQL up to ~0.5 s while the newest rows are not yet
//! all-visible (each entry then costs a heap visit). So the store remembers, per project and
//! N, what the last walk found (`Memo`), and walks again only when that answer may have
//! changed: rows arrived since, and either the remembered cut is used up or the remembered
//! count plus the arrivals could pass N. Counting arrivals walks only them.

use super::{Db, Result, Store};
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The server's retention, for projects without a setting of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionDefaults {
    /// Days an event is kept after it was received; `None`: no age limit.
    pub max_age_days: Option<i64>,
    /// How many of a project's newest events are kept; `None`: no limit.
    pub max_events: Option<i64>,
}

impl Default for RetentionDefaults {
    /// 90 days (Sentry's and GlitchTip's default) and the newest 100,000 events per project
    /// (about 420 MB at ~4.2 KB an event): the age limit is what people expect to see, the
    /// count limit bounds the disk a flood of one project can take (Bugsink keeps 10,000).
    fn default() -> Self {
        RetentionDefaults {
            max_age_days: Some(90),
            max_events: Some(100_000),
        }
    }
}

/// Rows one retention transaction deletes at most, as the background loop calls it. On
/// SQLite the ingest writer waits for the lock meanwhile: 500 rows take a few milliseconds,
/// about what one ingest batch holds it.
pub const STEP_ROWS: usize = 500;

/// Free pages handed back per step at most (8 MiB of 4 KiB pages): `incremental_vacuum`
/// moves pages from the end of the file into free slots under the write lock, so it goes in
/// bounded slices like the deletes.
const VACUUM_PAGES: i64 = 2048;

const DAY_US: i64 = 86_400_000_000;

/// What a walk found about one project's count limit, as of the project's newest id then.
#[derive(Debug, Clone, Copy)]
pub(super) enum Count {
    /// At most `rows` events (an upper bound: retention by age only lowers it).
    Under { rows: i64, max_id: i64 },
    /// Events at or below `cut` are beyond the newest N; arrivals only push more out, so this
    /// stays true (a settings change is a different key).
    Over { cut: i64, max_id: i64 },
}

/// Per (project, N): the last walk's answer. Only an optimization: with it empty (a restart,
/// another process) the answer is the same, found by walking again.
pub(super) type Memo = Arc<Mutex<HashMap<(i64, i64), Count>>>;

/// A project's retention as it applies: its own settings, else the server's defaults.
#[derive(Debug, Clone, Copy)]
struct Policy {
    project_id: i64,
    /// Events received before this (µs) are due; `i64::MIN`: no age limit.
    cutoff_us: i64,
    keep: Option<i64>,
}

impl Store {
    /// One step of retention: deletes at most `max_rows` events that are older than their
    /// project's maximum age or beyond its newest N, oldest first, one short transaction per
    /// project with rows due; then, on SQLite, returns up to 2,048 free pages to the file
    /// system. Returns the number of events deleted: a pass calls it until it returns 0.
    pub async fn retention_step(
        &self,
        now_us: i64,
        defaults: &RetentionDefaults,
        max_rows: usize,
    ) -> Result<usize> {
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id, retention_days, retention_max_events FROM projects ORDER BY id",
        )
        .fetch_all(p)
        .await)?;
        let mut deleted = 0;
        for (project_id, days, keep) in rows {
            if deleted >= max_rows {
                break;
            }
            let days = days.or(defaults.max_age_days);
            let keep = keep.or(defaults.max_events);
            if days.is_none() && keep.is_none() {
                continue;
            }
            let cutoff_us = days.map_or(i64::MIN, |d| {
                now_us.saturating_sub(d.saturating_mul(DAY_US))
            });
            let policy = Policy {
                project_id,
                cutoff_us,
                keep,
            };
            deleted += self.delete_due(&policy, max_rows - deleted).await?;
        }
        if let Db::Sqlite(pool) = &self.write {
            vacuum_step(pool).await?;
        }
        Ok(deleted)
    }

    /// Deletes up to `limit` of the project's due events in one statement (its own
    /// transaction); reads first, off the write lock, whether any is due at all.
    async fn delete_due(&self, policy: &Policy, limit: usize) -> Result<usize> {
        let oldest: Option<(i64, i64)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id, received FROM events WHERE project_id = $1 ORDER BY id LIMIT 1",
        )
        .bind(policy.project_id)
        .fetch_optional(p)
        .await)?;
        let Some((oldest_id, oldest_received)) = oldest else {
            return Ok(0);
        };
        // Everything at or below this id is beyond the newest `keep`.
        let beyond = match policy.keep {
            Some(keep) if oldest_received >= policy.cutoff_us => {
                self.count_cut(policy.project_id, keep, oldest_id).await?
            }
            // Due by age anyway: the count can wait until age has had its turn.
            _ => i64::MIN,
        };
        if oldest_id > beyond && oldest_received >= policy.cutoff_us {
            // The oldest event is kept, so all are: no write transaction at all.
            return Ok(0);
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Several processes may run retention at once: on PostgreSQL each takes the rows no
        // other holds (SKIP LOCKED) instead of waiting for them, and no two wait for each other.
        // Only event rows are locked, and ingestion never locks an existing event.
        let skip_locked = match &self.write {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let delete = format!(
            "DELETE FROM events WHERE id IN (
                 SELECT id FROM events WHERE project_id = $1 ORDER BY id LIMIT $2 {skip_locked})
             AND (id <= $3 OR received < $4)"
        );
        let n = on!(&self.write, p => sqlx::query(&delete)
            .bind(policy.project_id)
            .bind(limit)
            .bind(beyond)
            .bind(policy.cutoff_us)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n as usize)
    }

    /// The highest id beyond the project's newest `keep` events (`i64::MIN`: none is), given
    /// its oldest id: from the memo while that can still be right, else by walking.
    async fn count_cut(&self, project_id: i64, keep: i64, oldest_id: i64) -> Result<i64> {
        let key = (project_id, keep);
        let known = self.memo().get(&key).copied();
        let since = match known {
            // Rows at or below the cut are left to delete.
            Some(Count::Over { cut, .. }) if oldest_id <= cut => return Ok(cut),
            Some(Count::Over { max_id, .. } | Count::Under { max_id, .. }) => Some(max_id),
            None => None,
        };
        let cap = keep.saturating_add(1);
        if let (Some(known), Some(since)) = (known, since) {
            // Only the arrivals since then are walked.
            let (arrived, newest): (i64, Option<i64>) = on!(&self.read, p => sqlx::query_as(
                "SELECT count(*), max(id) FROM (
                     SELECT id FROM events WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3
                 ) t",
            )
            .bind(project_id)
            .bind(since)
            .bind(cap)
            .fetch_one(p)
            .await)?;
            match known {
                // Used up, and nothing arrived: the cut is where it was and nothing is due.
                Count::Over { cut, .. } if arrived == 0 => return Ok(cut),
                Count::Under { rows, .. } if rows.saturating_add(arrived) <= keep => {
                    let under = Count::Under {
                        rows: rows + arrived,
                        max_id: newest.unwrap_or(since),
                    };
                    self.memo().insert(key, under);
                    return Ok(i64::MIN);
                }
                _ => {}
            }
        }
        // The newest keep + 1: if there are that many, the oldest of them is the cut.
        let (rows, lowest, newest): (i64, Option<i64>, Option<i64>) = on!(&self.read, p => sqlx::query_as(
            "SELECT count(*), min(id), max(id) FROM (
                 SELECT id FROM events WHERE project_id = $1 ORDER BY id DESC LIMIT $2
             ) t",
        )
        .bind(project_id)
        .bind(cap)
        .fetch_one(p)
        .await)?;
        let max_id = newest.unwrap_or(i64::MIN);
        let (count, cut) = match lowest {
            Some(cut) if rows > keep => (Count::Over { cut, max_id }, cut),
            _ => (Count::Under { rows, max_id }, i64::MIN),
        };
        self.memo().insert(key, count);
        Ok(cut)
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, i64), Count>> {
        // A panic elsewhere while holding it cannot leave a wrong answer: entries are whole.
        self.retention
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Returns up to `VACUUM_PAGES` free pages to the file system (SQLite with
/// `auto_vacuum=INCREMENTAL`): the pages go into the WAL now, and the file shrinks when the
/// next checkpoint copies them back (the background checkpoint runs twice a second).
async fn vacuum_step(pool: &SqlitePool) -> Result<()> {
    let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count")
        .fetch_one(pool)
        .await?;
    if free > 0 {
        // A pragma takes no bound parameters; the number is ours. Each page freed is a result
        // row, and `execute` steps through all of them.
        sqlx::query(&format!(
            "PRAGMA incremental_vacuum({})",
            free.min(VACUUM_PAGES)
        ))
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Makes sure the SQLite database can shrink. A new database gets `auto_vacuum=INCREMENTAL`
/// from the connection options before its first table; one created without it (auto_vacuum
/// NONE: every database before retention existed) is converted here once, by a `VACUUM` that
/// rewrites the whole file (it needs as much free disk as the file, and time in proportion).
pub(super) async fn ensure_incremental_vacuum(pool: &SqlitePool) -> Result<()> {
    let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum").fetch_one(pool).await?;
    if mode == 0 {
        let started = std::time::Instant::now();
        tracing::info!(
            "converting the SQLite database to auto_vacuum=INCREMENTAL so retention can shrink \
             it: one VACUUM rewrites the file (once)"
        );
        // One connection for both: the mode only takes effect through a VACUUM on the same
        // connection.
        let mut conn = pool.acquire().await?;
        sqlx::raw_sql("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
            .execute(&mut *conn)
            .await?;
        tracing::info!(took = ?started.elapsed(), "converted to auto_vacuum=INCREMENTAL");
    }
    Ok(())
}
