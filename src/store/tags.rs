//! Per-issue aggregates (`issue_tags`, `issue_stats`, the user sketch): added by each ingest
//! batch, folded together by a merge, read by the tag endpoints and the issue detail.
//!
//! Like `issues.event_count`, they say what arrived: retention deletes events, never these.
//! Every row belongs to an issue the writing transaction holds locked (an ingest batch locks
//! its issues before adding, a merge before folding), so two transactions never upsert the
//! same rows at once; rows go in sorted by primary key all the same.
//!
//! `issue_tags` is keyed by value (project, key, value, environment, issue) and its one other
//! index, by issue, holds no figure: an upsert rewrites its row in place and no index entry
//! moves (migration 0012 says what the previous layout cost).

use super::{chunk_sizes, placeholders, Db, Result, Store, Tx};
use crate::issue::aggregate::{Aggregates, IssueUsers};
use crate::issue::users::{UserSketch, ESTIMATE_HEADER, ESTIMATE_LEN, EXACT_HEADER};
use sqlx::Row;
use std::collections::HashMap;

/// Adds a batch's aggregates (`issue::aggregate`): per table one statement of arrays on
/// PostgreSQL, a few multi-row ones on SQLite (fixed chunk sizes); then the sketches that the
/// batch's users can change are read and written back (usually none).
pub(crate) async fn add(tx: &mut Tx<'_>, agg: &Aggregates<'_>) -> Result<()> {
    add_tags(tx, agg).await?;
    add_stats(tx, agg).await?;
    add_users(tx, agg).await
}

async fn add_tags(tx: &mut Tx<'_>, agg: &Aggregates<'_>) -> Result<()> {
    if agg.tags.is_empty() {
        return Ok(());
    }
    match tx {
        // Multi-row VALUES in the fixed chunk sizes (few statements to prepare), anonymous
        // placeholders: a JSON array read with `->>` (as `bump_issues` does) spent more time
        // extracting fields than upserting rows, at eight fields a row.
        Db::Sqlite(t) => {
            let mut start = 0;
            for size in chunk_sizes(agg.tags.len()) {
                let sql = format!(
                    "INSERT INTO issue_tags (issue_id, project_id, environment, key, value,
                                             count, first_seen, last_seen)
                     VALUES {}
                     ON CONFLICT (project_id, key, value, environment, issue_id) DO UPDATE SET
                         count = count + excluded.count,
                         first_seen = min(first_seen, excluded.first_seen),
                         last_seen = max(last_seen, excluded.last_seen)",
                    placeholders(size, 8)
                );
                let mut q = sqlx::query(&sql);
                for r in &agg.tags[start..start + size] {
                    q = q
                        .bind(r.issue_id)
                        .bind(r.project_id)
                        .bind(r.environment)
                        .bind(r.key)
                        .bind(r.value)
                        .bind(r.count)
                        .bind(r.first_us)
                        .bind(r.last_us);
                }
                start += size;
                q.execute(&mut **t).await?;
            }
        }
        Db::Postgres(t) => {
            let n = agg.tags.len();
            let (mut issues, mut projects, mut envs) = (vec![0; n], vec![0; n], vec![""; n]);
            let (mut keys, mut values) = (vec![""; n], vec![""; n]);
            let (mut counts, mut firsts, mut lasts) = (vec![0; n], vec![0; n], vec![0; n]);
            for (i, r) in agg.tags.iter().enumerate() {
                issues[i] = r.issue_id;
                projects[i] = r.project_id;
                envs[i] = r.environment;
                keys[i] = r.key;
                values[i] = r.value;
                counts[i] = r.count;
                firsts[i] = r.first_us;
                lasts[i] = r.last_us;
            }
            sqlx::query(
                "INSERT INTO issue_tags (issue_id, project_id, environment, key, value, count,
                                         first_seen, last_seen)
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[],
                                      $5::text[], $6::int8[], $7::int8[], $8::int8[])
                 ON CONFLICT (project_id, key, value, environment, issue_id) DO UPDATE SET
                     count = issue_tags.count + excluded.count,
                     first_seen = LEAST(issue_tags.first_seen, excluded.first_seen),
                     last_seen = GREATEST(issue_tags.last_seen, excluded.last_seen)",
            )
            .bind(&issues)
            .bind(&projects)
            .bind(&envs)
            .bind(&keys)
            .bind(&values)
            .bind(&counts)
            .bind(&firsts)
            .bind(&lasts)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

async fn add_stats(tx: &mut Tx<'_>, agg: &Aggregates<'_>) -> Result<()> {
    if agg.stats.is_empty() {
        return Ok(());
    }
    match tx {
        Db::Sqlite(t) => {
            let mut start = 0;
            for size in chunk_sizes(agg.stats.len()) {
                let sql = format!(
                    "INSERT INTO issue_stats (issue_id, environment, bucket, count) VALUES {}
                     ON CONFLICT (issue_id, bucket, environment) DO UPDATE SET
                         count = count + excluded.count",
                    placeholders(size, 4)
                );
                let mut q = sqlx::query(&sql);
                for r in &agg.stats[start..start + size] {
                    q = q
                        .bind(r.issue_id)
                        .bind(r.environment)
                        .bind(r.bucket_us)
                        .bind(r.count);
                }
                start += size;
                q.execute(&mut **t).await?;
            }
        }
        Db::Postgres(t) => {
            let issues: Vec<i64> = agg.stats.iter().map(|r| r.issue_id).collect();
            let envs: Vec<&str> = agg.stats.iter().map(|r| r.environment).collect();
            let buckets: Vec<i64> = agg.stats.iter().map(|r| r.bucket_us).collect();
            let counts: Vec<i64> = agg.stats.iter().map(|r| r.count).collect();
            sqlx::query(
                "INSERT INTO issue_stats (issue_id, environment, bucket, count)
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[], $4::int8[])
                 ON CONFLICT (issue_id, bucket, environment) DO UPDATE SET
                     count = issue_stats.count + excluded.count",
            )
            .bind(&issues)
            .bind(&envs)
            .bind(&buckets)
            .bind(&counts)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

/// The stored sketches of `ids` (sorted); issues without one are left out.
async fn read_sketches(tx: &mut Tx<'_>, ids: &[i64]) -> Result<Vec<(i64, UserSketch)>> {
    let rows: Vec<(i64, Option<Vec<u8>>)> = match tx {
        Db::Sqlite(t) => {
            let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
            sqlx::query_as(
                "SELECT id, user_sketch FROM issues
                 WHERE id IN (SELECT value FROM json_each($1)) AND user_sketch IS NOT NULL",
            )
            .bind(list)
            .fetch_all(&mut **t)
            .await?
        }
        Db::Postgres(t) => {
            sqlx::query_as(
                "SELECT id, user_sketch FROM issues
                 WHERE id = ANY($1) AND user_sketch IS NOT NULL",
            )
            .bind(ids)
            .fetch_all(&mut **t)
            .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(id, bytes)| (id, UserSketch::from_bytes(bytes.as_deref())))
        .collect())
}

/// Writes sketches and their counts back (the issues are locked by the caller).
async fn write_sketches(tx: &mut Tx<'_>, sketches: &[(i64, UserSketch)]) -> Result<()> {
    if sketches.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = sketches.iter().map(|s| s.0).collect();
    let bytes: Vec<Vec<u8>> = sketches.iter().map(|s| s.1.to_bytes()).collect();
    let counts: Vec<i64> = sketches.iter().map(|s| s.1.count() as i64).collect();
    match tx {
        Db::Sqlite(t) => {
            let mut start = 0;
            for size in chunk_sizes(sketches.len()) {
                let sql = format!(
                    "UPDATE issues SET user_sketch = v.column2, user_count = v.column3
                     FROM (VALUES {}) AS v WHERE issues.id = v.column1",
                    placeholders(size, 3)
                );
                let mut q = sqlx::query(&sql);
                for i in start..start + size {
                    q = q.bind(ids[i]).bind(&bytes[i]).bind(counts[i]);
                }
                start += size;
                q.execute(&mut **t).await?;
            }
        }
        Db::Postgres(t) => {
            sqlx::query(
                "UPDATE issues SET user_sketch = v.s, user_count = v.n
                 FROM UNNEST($1::int8[], $2::bytea[], $3::int8[]) AS v (id, s, n)
                 WHERE issues.id = v.id",
            )
            .bind(&ids)
            .bind(&bytes)
            .bind(&counts)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

/// The stored sketches of the issues that a batch's users could change: the database checks
/// each (issue, user) with `users::probe` and ships back only those sketches (none, once an
/// issue's regular users are all in: reading every touched issue's sketch back cost the
/// single SQLite writer as much as the rest of the aggregates). An exact sketch holds its
/// hashes at 8-byte steps and the needle is searched anywhere, so a false "present" needs 8
/// bytes of two neighbouring hashes to equal a new user's hash: odds of about 2^-61 per check.
async fn sketches_to_update(
    tx: &mut Tx<'_>,
    users: &[IssueUsers],
) -> Result<Vec<(i64, UserSketch)>> {
    let pairs = users
        .iter()
        .flat_map(|u| (u.hashes.iter()).map(move |&h| (u.issue_id, crate::issue::users::probe(h))));
    let rows: Vec<(i64, Option<Vec<u8>>)> = match tx {
        Db::Sqlite(t) => {
            let probes: Vec<(i64, crate::issue::users::Probe)> = pairs.collect();
            let mut rows = Vec::new();
            let mut start = 0;
            for size in chunk_sizes(probes.len()) {
                let sql = format!(
                    "SELECT id, user_sketch FROM issues WHERE id IN (
                         SELECT i.id FROM (VALUES {}) AS v JOIN issues i ON i.id = v.column1
                         WHERE i.user_sketch IS NULL OR NOT (
                             CASE substr(i.user_sketch, 1, 2)
                             WHEN X'{exact}' THEN instr(i.user_sketch, v.column2) > 0
                             WHEN X'{estimate}' THEN length(i.user_sketch) = {len}
                                 AND substr(i.user_sketch, v.column3, 1) >= v.column4
                             ELSE 0 END))",
                    placeholders(size, 4),
                    exact = hex::encode(EXACT_HEADER),
                    estimate = hex::encode(ESTIMATE_HEADER),
                    len = ESTIMATE_LEN,
                );
                let mut q = sqlx::query(&sql);
                for (id, p) in &probes[start..start + size] {
                    q = q
                        .bind(*id)
                        .bind(&p.needle[..])
                        .bind(p.byte as i64 + 1) // substr counts from 1
                        .bind(vec![p.rank]); // compared as a blob: byte against byte
                }
                start += size;
                for r in q.fetch_all(&mut **t).await? {
                    let row: (i64, Option<Vec<u8>>) = (r.try_get(0)?, r.try_get(1)?);
                    // An issue can come back from two chunks.
                    if !rows.iter().any(|(id, _)| *id == row.0) {
                        rows.push(row);
                    }
                }
            }
            rows
        }
        Db::Postgres(t) => {
            let (mut ids, mut needles, mut bytes, mut ranks) = (vec![], vec![], vec![], vec![]);
            for (id, p) in pairs {
                ids.push(id);
                needles.push(p.needle.to_vec());
                bytes.push(p.byte as i32); // get_byte counts from 0
                ranks.push(i32::from(p.rank));
            }
            sqlx::query(&format!(
                "SELECT id, user_sketch FROM issues WHERE id IN (
                     SELECT i.id FROM UNNEST($1::int8[], $2::bytea[], $3::int4[], $4::int4[])
                          AS v (id, needle, byte, rank)
                     JOIN issues i ON i.id = v.id
                     WHERE i.user_sketch IS NULL OR NOT (
                         CASE WHEN substring(i.user_sketch FROM 1 FOR 2) = '\\x{exact}'::bytea
                              THEN position(v.needle IN i.user_sketch) > 0
                              WHEN substring(i.user_sketch FROM 1 FOR 2) = '\\x{estimate}'::bytea
                                   AND length(i.user_sketch) = {len}
                              THEN get_byte(i.user_sketch, v.byte) >= v.rank
                              ELSE false END))",
                exact = hex::encode(EXACT_HEADER),
                estimate = hex::encode(ESTIMATE_HEADER),
                len = ESTIMATE_LEN,
            ))
            .bind(&ids)
            .bind(&needles)
            .bind(&bytes)
            .bind(&ranks)
            .fetch_all(&mut **t)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<_, sqlx::Error>>()?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(id, bytes)| (id, UserSketch::from_bytes(bytes.as_deref())))
        .collect())
}

async fn add_users(tx: &mut Tx<'_>, agg: &Aggregates<'_>) -> Result<()> {
    if agg.users.is_empty() {
        return Ok(());
    }
    // Issues whose sketch cannot change are not read (nor written).
    let mut stored = sketches_to_update(tx, &agg.users).await?;
    if stored.is_empty() {
        return Ok(());
    }
    let mut changed = Vec::new();
    for u in &agg.users {
        let mut sketch = match stored.iter().position(|s| s.0 == u.issue_id) {
            Some(i) => std::mem::take(&mut stored[i].1),
            None => continue,
        };
        // Users the issue has seen already change nothing, and are not written again.
        if sketch.add_sorted(&u.hashes) {
            changed.push((u.issue_id, sketch));
        }
    }
    write_sketches(tx, &changed).await
}

/// Appends a batch's journal entry (`issue::pending`): a saturated writer holds its batch's
/// aggregates back this way.
pub(crate) async fn journal_append(tx: &mut Tx<'_>, entry: &[u8]) -> Result<()> {
    on!(tx, t => sqlx::query("INSERT INTO aggregate_journal (entry) VALUES ($1)")
        .bind(entry)
        .execute(&mut **t)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The journal's entries, removed from it: they are written by the caller's transaction, or
/// stay if it rolls back. Whichever writer takes an entry writes it; on PostgreSQL a second
/// transaction deleting the same rows waits for the first and then finds them gone, so each
/// entry counts once.
pub(crate) async fn journal_take(tx: &mut Tx<'_>) -> Result<Vec<Vec<u8>>> {
    let entries: Vec<(Vec<u8>,)> = on!(tx, t => sqlx::query_as(
        "DELETE FROM aggregate_journal RETURNING entry"
    )
    .fetch_all(&mut **t)
    .await)?;
    Ok(entries.into_iter().map(|e| e.0).collect())
}

/// Where rows summed for `ids` belong now: an issue itself, the issue it was merged into
/// (followed to the end), or nowhere (deleted, or purged already).
pub(crate) async fn live_targets(tx: &mut Tx<'_>, ids: &[i64]) -> Result<HashMap<i64, i64>> {
    let mut target: HashMap<i64, i64> = HashMap::new();
    let mut merged: HashMap<i64, i64> = HashMap::new();
    let mut ask: Vec<i64> = ids.to_vec();
    // Merges chain rarely, and never in a circle: a few rounds reach the end.
    for _ in 0..8 {
        if ask.is_empty() {
            break;
        }
        let rows: Vec<(i64, Option<i64>)> = match tx {
            Db::Sqlite(t) => sqlx::query_as(
                "SELECT id, merged_into FROM issues WHERE id IN (SELECT value FROM json_each($1))",
            )
            .bind(serde_json::to_string(&ask).unwrap_or_else(|_| "[]".into()))
            .fetch_all(&mut **t)
            .await?,
            Db::Postgres(t) => {
                // Key-share locks (in id order, like every issue lock): a merge or deletion of
                // one of these issues (`FOR UPDATE`) waits for this flush, or this flush for
                // it, never between; ingest batches (`FOR NO KEY UPDATE`) go on beside it.
                sqlx::query_as(
                    "SELECT id, merged_into FROM issues WHERE id = ANY($1) ORDER BY id FOR KEY SHARE",
                )
                .bind(&ask)
                .fetch_all(&mut **t)
                .await?
            }
        };
        ask.clear();
        for (id, into) in rows {
            match into {
                None => {
                    target.insert(id, id);
                }
                Some(0) => {}
                Some(parent) => {
                    merged.insert(id, parent);
                    if !target.contains_key(&parent) && !merged.contains_key(&parent) {
                        ask.push(parent);
                    }
                }
            }
        }
    }
    for &id in ids {
        let mut at = id;
        let mut hops = 0;
        while let Some(&next) = merged.get(&at) {
            at = next;
            hops += 1;
            if hops > 8 {
                break;
            }
        }
        if let Some(&live) = target.get(&at) {
            target.insert(id, live);
        }
    }
    Ok(target)
}

/// Folds the children's aggregates into `parent` (a merge, which holds all their locks):
/// counts summed, first seen the earliest, last seen the latest, sketches merged; the
/// children's tag and hour rows are removed, their sketches dropped (a tombstone keeps its
/// `user_count` as it was, like its `event_count`).
pub(crate) async fn fold_into(tx: &mut Tx<'_>, parent: i64, children: &[i64]) -> Result<()> {
    let (tags, stats) = match tx {
        Db::Sqlite(_) => (
            "INSERT INTO issue_tags (issue_id, project_id, environment, key, value, count,
                                     first_seen, last_seen)
             SELECT $1, project_id, environment, key, value, count, first_seen, last_seen
             FROM issue_tags WHERE issue_id = $2
             ON CONFLICT (project_id, key, value, environment, issue_id) DO UPDATE SET
                 count = count + excluded.count,
                 first_seen = min(first_seen, excluded.first_seen),
                 last_seen = max(last_seen, excluded.last_seen)",
            "INSERT INTO issue_stats (issue_id, environment, bucket, count)
             SELECT $1, environment, bucket, count FROM issue_stats WHERE issue_id = $2
             ON CONFLICT (issue_id, bucket, environment) DO UPDATE SET
                 count = count + excluded.count",
        ),
        Db::Postgres(_) => (
            "INSERT INTO issue_tags (issue_id, project_id, environment, key, value, count,
                                     first_seen, last_seen)
             SELECT $1, project_id, environment, key, value, count, first_seen, last_seen
             FROM issue_tags WHERE issue_id = $2
             ORDER BY key, value, environment
             ON CONFLICT (project_id, key, value, environment, issue_id) DO UPDATE SET
                 count = issue_tags.count + excluded.count,
                 first_seen = LEAST(issue_tags.first_seen, excluded.first_seen),
                 last_seen = GREATEST(issue_tags.last_seen, excluded.last_seen)",
            "INSERT INTO issue_stats (issue_id, environment, bucket, count)
             SELECT $1, environment, bucket, count FROM issue_stats WHERE issue_id = $2
             ORDER BY bucket, environment
             ON CONFLICT (issue_id, bucket, environment) DO UPDATE SET
                 count = issue_stats.count + excluded.count",
        ),
    };
    for &child in children {
        for sql in [tags, stats] {
            on!(tx, t => sqlx::query(sql)
                .bind(parent)
                .bind(child)
                .execute(&mut **t)
                .await.map(|r| r.rows_affected()))?;
        }
        for sql in [
            "DELETE FROM issue_tags WHERE issue_id = $1",
            "DELETE FROM issue_stats WHERE issue_id = $1",
        ] {
            on!(tx, t => sqlx::query(sql)
                .bind(child)
                .execute(&mut **t)
                .await.map(|r| r.rows_affected()))?;
        }
    }
    let mut ids: Vec<i64> = children.to_vec();
    ids.push(parent);
    ids.sort_unstable();
    let sketches = read_sketches(tx, &ids).await?;
    if sketches.is_empty() {
        return Ok(());
    }
    let mut union = UserSketch::default();
    for (_, s) in &sketches {
        union.merge(s);
    }
    write_sketches(tx, &[(parent, union)]).await?;
    for &child in children {
        on!(tx, t => sqlx::query("UPDATE issues SET user_sketch = NULL WHERE id = $1")
            .bind(child)
            .execute(&mut **t)
            .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// One value of a tag key in an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagValue {
    pub key: String,
    pub value: String,
    pub count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// A tag key of an issue: events carrying it, distinct values, and its top values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagKey {
    pub key: String,
    pub total: i64,
    pub unique: i64,
    pub top: Vec<TagValue>,
}

/// A release as an issue saw it: its first and last event there, and when the project first
/// saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSeen {
    pub version: String,
    pub created: Option<i64>,
    pub first_event: i64,
    pub last_event: i64,
}

/// What the issue detail shows of the aggregates.
#[derive(Debug, Clone, Default)]
pub struct IssueAggregates {
    /// (key, events with it), by key.
    pub tags: Vec<(String, i64)>,
    pub first_release: Option<ReleaseSeen>,
    pub last_release: Option<ReleaseSeen>,
    pub users_estimated: bool,
}

type ValueRow = (String, String, i64, i64, i64);
type TopRow = (String, String, i64, i64, i64, i64, i64);

/// ` AND environment IN ($from, ...)` for `envs` (empty: no condition).
fn env_filter(envs: &[String], from: usize) -> String {
    if envs.is_empty() {
        return String::new();
    }
    let list: Vec<String> = (0..envs.len()).map(|i| format!("${}", from + i)).collect();
    format!(" AND environment IN ({})", list.join(", "))
}

impl Store {
    /// The issue's tag keys (all, or only `key`), each with its `top` most frequent values
    /// (ties: by value), counted over the environments `envs` (empty: all).
    pub async fn issue_tag_keys(
        &self,
        issue_id: i64,
        key: Option<&str>,
        envs: &[String],
        top: i64,
    ) -> Result<Vec<TagKey>> {
        let key_filter = if key.is_some() { " AND key = $3" } else { "" };
        let first_env = if key.is_some() { 4 } else { 3 };
        // The values summed over environments, then ranked per key; totals ride along as
        // window sums so that one statement answers.
        let sql = format!(
            "SELECT key, value, c, f, l, total, uniq FROM (
                 SELECT key, value, c, f, l,
                        CAST(sum(c) OVER (PARTITION BY key) AS BIGINT) AS total,
                        count(*) OVER (PARTITION BY key) AS uniq,
                        row_number() OVER (PARTITION BY key ORDER BY c DESC, value) AS pos
                 FROM (SELECT key, value, CAST(sum(count) AS BIGINT) AS c,
                              min(first_seen) AS f, max(last_seen) AS l
                       FROM issue_tags WHERE issue_id = $1{key_filter}{envs}
                       GROUP BY key, value) AS g
             ) AS r WHERE pos <= $2 ORDER BY key, pos",
            envs = env_filter(envs, first_env),
        );
        let rows: Vec<TopRow> = on!(&self.read, p => {
            let mut q = sqlx::query_as(&sql).bind(issue_id).bind(top);
            if let Some(k) = key {
                q = q.bind(k);
            }
            for e in envs {
                q = q.bind(e);
            }
            q.fetch_all(p).await
        })?;
        let mut out: Vec<TagKey> = Vec::new();
        for (key, value, count, first_seen, last_seen, total, unique) in rows {
            if out.last().is_none_or(|k| k.key != key) {
                out.push(TagKey {
                    key: key.clone(),
                    total,
                    unique,
                    top: Vec::new(),
                });
            }
            if let Some(k) = out.last_mut() {
                k.top.push(TagValue {
                    key,
                    value,
                    count,
                    first_seen,
                    last_seen,
                });
            }
        }
        Ok(out)
    }

    /// A page of the values of `key` in the issue, most frequent first (ties: by value).
    pub async fn issue_tag_values(
        &self,
        issue_id: i64,
        key: &str,
        envs: &[String],
        offset: i64,
        limit: i64,
    ) -> Result<Vec<TagValue>> {
        let sql = format!(
            "SELECT key, value, CAST(sum(count) AS BIGINT) AS c, min(first_seen), max(last_seen)
             FROM issue_tags WHERE issue_id = $1 AND key = $2{}
             GROUP BY key, value ORDER BY c DESC, value LIMIT $3 OFFSET $4",
            env_filter(envs, 5)
        );
        let rows: Vec<ValueRow> = on!(&self.read, p => {
            let mut q = sqlx::query_as(&sql).bind(issue_id).bind(key).bind(limit).bind(offset);
            for e in envs {
                q = q.bind(e);
            }
            q.fetch_all(p).await
        })?;
        Ok(rows
            .into_iter()
            .map(|(key, value, count, first_seen, last_seen)| TagValue {
                key,
                value,
                count,
                first_seen,
                last_seen,
            })
            .collect())
    }

    /// The tag summary, first and last release and whether the user count is an estimate.
    pub async fn issue_aggregates(&self, issue_id: i64) -> Result<IssueAggregates> {
        let tags: Vec<(String, i64)> = on!(&self.read, p => sqlx::query_as(
            "SELECT key, CAST(sum(count) AS BIGINT) FROM issue_tags WHERE issue_id = $1
             GROUP BY key ORDER BY key",
        )
        .bind(issue_id)
        .fetch_all(p)
        .await)?;
        // Per release: its first and last event in this issue, and the project's first sight.
        let releases: Vec<(String, i64, i64, Option<i64>)> = on!(&self.read, p => sqlx::query_as(
            "SELECT t.value, min(t.first_seen), max(t.last_seen), min(r.first_seen)
             FROM issue_tags t
             LEFT JOIN releases r ON r.project_id = t.project_id AND r.version = t.value
             WHERE t.issue_id = $1 AND t.key = 'release'
             GROUP BY t.value",
        )
        .bind(issue_id)
        .fetch_all(p)
        .await)?;
        let seen = |r: &(String, i64, i64, Option<i64>)| ReleaseSeen {
            version: r.0.clone(),
            created: r.3,
            first_event: r.1,
            last_event: r.2,
        };
        let first_release = (releases.iter())
            .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
            .map(seen);
        let last_release = (releases.iter())
            .max_by(|a, b| a.2.cmp(&b.2).then(b.0.cmp(&a.0)))
            .map(seen);
        let sketch: Option<(Option<Vec<u8>>,)> = on!(&self.read, p => sqlx::query_as(
            "SELECT user_sketch FROM issues WHERE id = $1",
        )
        .bind(issue_id)
        .fetch_optional(p)
        .await)?;
        let users_estimated = sketch
            .and_then(|s| s.0)
            .is_some_and(|b| UserSketch::from_bytes(Some(&b)).is_estimate());
        Ok(IssueAggregates {
            tags,
            first_release,
            last_release,
            users_estimated,
        })
    }
}
