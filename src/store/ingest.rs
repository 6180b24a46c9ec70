//! The ingest write path: a whole batch of accepted events in one transaction.
//!
//! Per batch: resolve every event's grouping hashes to an issue (creating issues for new
//! hashes), insert the events with multi-row statements (a re-sent event id is skipped by the
//! unique key), then add the inserted events to their issues' denormalized figures with one
//! statement. Everything commits together, so counts equal stored events at every commit.

use super::lifecycle::{Change, Lifecycle};
use super::{Result, Store};
use crate::clock::Clock;
use crate::issue::state::{Actor, Refusal, Transition};
use crate::payload::StoredPayload;
use sqlx::pool::PoolConnection;
use sqlx::Connection;
use sqlx::{Sqlite, Transaction};
use std::collections::HashMap;

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

/// hash -> issue links already known to be committed. Links never change once written, so the
/// writer can trust them across batches; entries of a failed batch are never added.
#[derive(Debug, Default)]
pub struct HashCache {
    /// project id -> hash -> issue id (nested so a lookup by `&str` needs no allocation).
    links: HashMap<i64, HashMap<String, i64>>,
    len: usize,
}

impl HashCache {
    const MAX_ENTRIES: usize = 1_000_000;

    fn get(&self, project_id: i64, hash: &str) -> Option<i64> {
        self.links.get(&project_id)?.get(hash).copied()
    }

    fn insert(&mut self, project_id: i64, hash: &str, issue_id: i64) {
        let links = self.links.entry(project_id).or_default();
        if links.insert(hash.to_owned(), issue_id).is_none() {
            self.len += 1;
        }
    }

    /// Takes the links of a committed batch.
    fn merge(&mut self, batch: HashCache) {
        // A crude bound on memory: start over rather than track recency.
        if self.len + batch.len > Self::MAX_ENTRIES {
            self.links.clear();
            self.len = 0;
        }
        for (project_id, links) in batch.links {
            for (hash, issue_id) in links {
                self.insert(project_id, &hash, issue_id);
            }
        }
    }
}

/// Multi-row statements go out in these sizes so that only a handful of distinct SQL strings
/// exist (each is prepared once and cached by sqlx).
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

fn chunk_sizes(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// `(?,?),(?,?)`: anonymous placeholders, in SQLite's dialect. Numbered ones (`$1`) cost
/// `sqlite3_bind_parameter_name` a linear scan per parameter, which sqlx calls for every bind:
/// quadratic in a 1,792-parameter insert, and a tenth of the writer's time when measured.
fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
}

/// The single writer of the ingest path: the write connection, held for good, plus the hash
/// cache. Holding the connection spares every batch a pool round trip.
pub struct Writer {
    store: Store,
    clock: Clock,
    conn: Option<PoolConnection<Sqlite>>,
    cache: HashCache,
    lifecycle: Lifecycle,
}

impl Store {
    pub fn writer(&self, clock: Clock) -> Writer {
        Writer {
            store: self.clone(),
            clock,
            conn: None,
            cache: HashCache::default(),
            lifecycle: Lifecycle::default(),
        }
    }
}

impl Writer {
    /// Stores a batch in one transaction; the result is aligned with `batch`.
    pub async fn write_batch(&mut self, batch: &[NewEvent]) -> Result<Vec<Stored>> {
        let now_us = self.clock.now().timestamp_micros();
        let conn = connection(&mut self.conn, &self.store).await?;
        let result = write_batch(conn, batch, &mut self.cache, &mut self.lifecycle, now_us).await;
        self.after(result)
    }

    /// A person's change to each of `issue_ids`, in one transaction. Per issue: `None` when it
    /// does not exist, else the transition made or the refusal.
    pub async fn change_status(
        &mut self,
        issue_ids: &[i64],
        change: &Change,
        actor: Actor,
    ) -> Result<Vec<(i64, Option<std::result::Result<Transition, Refusal>>)>> {
        let now_us = self.clock.now().timestamp_micros();
        let conn = connection(&mut self.conn, &self.store).await?;
        let lifecycle = &mut self.lifecycle;
        let result = async {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            let mut out = Vec::with_capacity(issue_ids.len());
            for &id in issue_ids {
                out.push((
                    id,
                    lifecycle.change(&mut tx, id, change, actor, now_us).await?,
                ));
            }
            tx.commit().await?;
            Ok(out)
        }
        .await;
        self.after(result)
    }

    /// Unmutes the muted issues whose time limit has passed; returns how many.
    pub async fn unmute_due(&mut self) -> Result<usize> {
        let now_us = self.clock.now().timestamp_micros();
        let conn = connection(&mut self.conn, &self.store).await?;
        let lifecycle = &mut self.lifecycle;
        let result = async {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            let n = lifecycle.unmute_due(&mut tx, now_us).await?;
            tx.commit().await?;
            Ok(n)
        }
        .await;
        self.after(result)
    }

    /// After a failed transaction nothing remembered can be trusted: drop the connection
    /// (replaced on the next call) and the lifecycle cache.
    fn after<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.conn = None;
            self.lifecycle.clear();
        }
        result
    }
}

/// The writer's connection, acquired on first use and again after a failure dropped it.
async fn connection<'c>(
    slot: &'c mut Option<PoolConnection<Sqlite>>,
    store: &Store,
) -> Result<&'c mut PoolConnection<Sqlite>> {
    match slot {
        Some(c) => Ok(c),
        None => Ok(slot.insert(store.write.acquire().await?)),
    }
}

async fn write_batch(
    conn: &mut PoolConnection<Sqlite>,
    batch: &[NewEvent],
    cache: &mut HashCache,
    lifecycle: &mut Lifecycle,
    now_us: i64,
) -> Result<Vec<Stored>> {
    let started = std::time::Instant::now();
    // IMMEDIATE: take the write lock up front, so a read early in the batch can never be
    // invalidated by another connection's write (SQLITE_BUSY_SNAPSHOT) before ours.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    // Links written or found in this batch; trusted by later batches only once committed.
    let mut fresh = HashCache::default();
    let issues = resolve_issues(&mut tx, batch, cache, &mut fresh).await?;
    let resolved = started.elapsed();
    let inserted = insert_events(&mut tx, batch, &issues).await?;
    let events_written = started.elapsed();
    bump_issues(&mut tx, batch, &issues, &inserted).await?;
    lifecycle
        .after_batch(&mut tx, batch, &issues, &inserted, now_us)
        .await?;
    let issues_written = started.elapsed();
    tx.commit().await?;
    tracing::trace!(n = batch.len(), ?resolved, ?events_written, ?issues_written, committed = ?started.elapsed(), "batch phases");
    cache.merge(fresh);
    Ok(issues
        .iter()
        .zip(&inserted)
        .map(|(&(issue_id, new_issue), &inserted)| Stored {
            issue_id,
            inserted,
            new_issue,
        })
        .collect())
}

/// Finds or creates the issue of every event: (issue id, created by this batch).
async fn resolve_issues(
    tx: &mut Transaction<'_, Sqlite>,
    batch: &[NewEvent],
    cache: &HashCache,
    fresh: &mut HashCache,
) -> Result<Vec<(i64, bool)>> {
    let mut out = Vec::with_capacity(batch.len());
    for ev in batch {
        let mut links: Vec<Option<i64>> = Vec::with_capacity(ev.hashes.len());
        for h in &ev.hashes {
            // Committed links first (the common hit, no allocation), then this batch's.
            let mut link = cache
                .get(ev.project_id, h)
                .or_else(|| fresh.get(ev.project_id, h));
            if link.is_none() {
                link = lookup_hash(tx, ev.project_id, h).await?;
                if let Some(id) = link {
                    fresh.insert(ev.project_id, h, id);
                }
            }
            links.push(link);
        }
        let (issue_id, new_issue) = match links.iter().flatten().next() {
            Some(&id) => (id, false),
            None => (create_issue(tx, ev).await?, true),
        };
        // Link the hashes nobody has yet (flat hashes: any one of them joins later events).
        for (h, _) in ev.hashes.iter().zip(&links).filter(|(_, l)| l.is_none()) {
            sqlx::query(
                "INSERT INTO grouping_hashes (project_id, hash, issue_id, grouping_version)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(ev.project_id)
            .bind(h)
            .bind(issue_id)
            .bind(ev.grouping_version)
            .execute(&mut **tx)
            .await?;
            fresh.insert(ev.project_id, h, issue_id);
        }
        out.push((issue_id, new_issue));
    }
    Ok(out)
}

async fn lookup_hash(
    tx: &mut Transaction<'_, Sqlite>,
    project_id: i64,
    hash: &str,
) -> Result<Option<i64>> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT issue_id FROM grouping_hashes WHERE project_id = $1 AND hash = $2")
            .bind(project_id)
            .bind(hash)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|r| r.0))
}

async fn create_issue(tx: &mut Transaction<'_, Sqlite>, ev: &NewEvent) -> Result<i64> {
    let (number,): (i64,) = sqlx::query_as(
        "UPDATE projects SET next_short_id = next_short_id + 1 WHERE id = $1
         RETURNING next_short_id - 1",
    )
    .bind(ev.project_id)
    .fetch_one(&mut **tx)
    .await?;
    let s = &ev.seed;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO issues (project_id, short_number, title, culprit, level, platform,
                             event_type, metadata, event_count, first_seen, last_seen, substatus)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9, 'new') RETURNING id",
    )
    .bind(ev.project_id)
    .bind(number)
    .bind(&s.title)
    .bind(&s.culprit)
    .bind(s.level)
    .bind(&s.platform)
    .bind(s.event_type)
    .bind(&s.metadata)
    .bind(ev.timestamp_us)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Inserts the events; returns for each whether it was new. An id seen twice in one batch is
/// inserted (and counted) at its first position only, like a re-send in a later batch.
///
/// `INSERT OR IGNORE` skips re-sent ids; when a chunk inserts fewer rows than it had, the rows
/// it did insert are read back by rowid (this transaction is the only writer, so they are the
/// rows above the previous maximum). No `RETURNING` and no pre-check: sqlx hands every result
/// row across threads one by one, which cost more than the insert itself.
async fn insert_events(
    tx: &mut Transaction<'_, Sqlite>,
    batch: &[NewEvent],
    issues: &[(i64, bool)],
) -> Result<Vec<bool>> {
    let mut first: HashMap<(i64, [u8; 16]), usize> = HashMap::with_capacity(batch.len());
    let mut todo = Vec::with_capacity(batch.len());
    for (i, ev) in batch.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) =
            first.entry((ev.project_id, ev.event_id))
        {
            e.insert(i);
            todo.push(i);
        }
    }
    let mut inserted = vec![false; batch.len()];
    let mut start = 0;
    for size in chunk_sizes(todo.len()) {
        let chunk = &todo[start..start + size];
        start += size;
        let sql = format!(
            "INSERT OR IGNORE INTO events (project_id, event_id, issue_id, timestamp, received,
                                           payload_codec, payload)
             VALUES {}",
            placeholders(size, 7)
        );
        let mut q = sqlx::query(&sql);
        for &i in chunk {
            let ev = &batch[i];
            q = q
                .bind(ev.project_id)
                .bind(&ev.event_id[..])
                .bind(issues[i].0)
                .bind(ev.timestamp_us)
                .bind(ev.received_us)
                .bind(&ev.payload.codec)
                .bind(&ev.payload.bytes);
        }
        let done = q.execute(&mut **tx).await?;
        if done.rows_affected() as usize == size {
            for &i in chunk {
                inserted[i] = true;
            }
            continue;
        }
        // Some were re-sends: the chunk's new rows are the last `rows_affected` rowids.
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT project_id, event_id FROM events WHERE id > $1 - $2 AND id <= $1",
        )
        .bind(done.last_insert_rowid())
        .bind(done.rows_affected() as i64)
        .fetch_all(&mut **tx)
        .await?;
        for (project_id, event_id) in rows {
            if let Ok(key) = <[u8; 16]>::try_from(event_id.as_slice()) {
                if let Some(&i) = first.get(&(project_id, key)) {
                    inserted[i] = true;
                }
            }
        }
    }
    Ok(inserted)
}

/// Adds the inserted events to their issues: count, first and last seen, in one statement.
async fn bump_issues(
    tx: &mut Transaction<'_, Sqlite>,
    batch: &[NewEvent],
    issues: &[(i64, bool)],
    inserted: &[bool],
) -> Result<()> {
    let mut per_issue: HashMap<i64, (i64, i64, i64)> = HashMap::new();
    for ((ev, &(issue_id, _)), _) in batch
        .iter()
        .zip(issues)
        .zip(inserted)
        .filter(|(_, &ins)| ins)
    {
        let e = per_issue
            .entry(issue_id)
            .or_insert((0, ev.timestamp_us, ev.timestamp_us));
        e.0 += 1;
        e.1 = e.1.min(ev.timestamp_us);
        e.2 = e.2.max(ev.timestamp_us);
    }
    let rows: Vec<(i64, (i64, i64, i64))> = per_issue.into_iter().collect();
    let mut start = 0;
    for size in chunk_sizes(rows.len()) {
        let sql = format!(
            "WITH v (id, n, first, last) AS (VALUES {})
             UPDATE issues SET event_count = event_count + v.n,
                               first_seen = min(first_seen, v.first),
                               last_seen = max(last_seen, v.last)
             FROM v WHERE issues.id = v.id",
            placeholders(size, 4)
        );
        let mut q = sqlx::query(&sql);
        for (id, (n, first, last)) in &rows[start..start + size] {
            q = q.bind(id).bind(n).bind(first).bind(last);
        }
        q.execute(&mut **tx).await?;
        start += size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_any_batch_with_few_sizes() {
        for n in 0..1000 {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| CHUNKS.contains(s)));
        }
    }

    #[test]
    fn placeholders_number_every_cell() {
        assert_eq!(placeholders(2, 2), "(?,?),(?,?)");
    }
}
