//! Deleting issues and projects: gone from every read at once, their rows removed afterwards
//! in bounded slices by every process's retention loop.
//!
//! `delete_issue` makes the issue a tombstone (`merged_into = 0`, an id no issue has) and drops
//! its hash links and pending deliveries in one short transaction under the issue's row lock.
//! Every read already skips tombstones (merged issues are tombstones too), and an ingest batch
//! that still holds a cached link to it finds the tombstone under the row lock (`StaleLinks`),
//! reads its links again, finds none, and opens a new issue, as Sentry does. `delete_project`
//! (`store::projects`) marks the project deleted and drops its keys.
//!
//! Either leaves a `purges` row. `purge_step` takes the oldest rows and deletes what is left
//! of each target, at most `max_rows` rows per statement, table by table (events first: they
//! are most of it), and finally the issue's row (a project's row stays, marked deleted) and the
//! `purges` row itself. Every
//! statement is its own transaction and every slice only deletes rows that are due anyway, so
//! a crash or several processes at once change nothing: what is left is found again.

use super::{Db, Result, Store};

/// What a `purges` row removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Issue(i64),
    Project(i64),
}

impl Target {
    /// Which rows of an issue-keyed table belong to the target (`$1` is its id).
    fn issues(self) -> &'static str {
        match self {
            Target::Issue(_) => "issue_id = $1",
            Target::Project(_) => "issue_id IN (SELECT id FROM issues WHERE project_id = $1)",
        }
    }

    fn id(self) -> i64 {
        match self {
            Target::Issue(id) | Target::Project(id) => id,
        }
    }
}

impl Store {
    /// Deletes an issue (see the module's doc): false when there is no such issue, or it is a
    /// tombstone already (merged or deleted).
    pub async fn delete_issue(&self, issue_id: i64, now_us: i64) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        // The row lock first (SQLite's write transaction is exclusive already): a batch that
        // locked the issue before commits its events first, and they are purged with the rest.
        let lock = match &tx {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR UPDATE",
        };
        let row: Option<(Option<i64>,)> = on!(&mut tx, t => sqlx::query_as(&format!(
            "SELECT merged_into FROM issues WHERE id = $1 {lock}"
        ))
        .bind(issue_id)
        .fetch_optional(&mut **t)
        .await)?;
        if !matches!(row, Some((None,))) {
            return Ok(false);
        }
        for sql in [
            // No longer due for a timed unmute, and never changes state again.
            "UPDATE issues SET merged_into = 0, mute_until = NULL WHERE id = $1",
            // A new event of the same hashes opens a new issue.
            "DELETE FROM grouping_hashes WHERE issue_id = $1",
            // Nothing more is said about it.
            "DELETE FROM alert_outbox WHERE issue_id = $1 AND status = 'pending'",
            "DELETE FROM responder_runs WHERE issue_id = $1 AND status = 'pending'",
        ] {
            on!(&mut tx, t => sqlx::query(sql).bind(issue_id).execute(&mut **t).await.map(|_| ()))?;
        }
        on!(&mut tx, t => sqlx::query(
            "INSERT INTO purges (kind, target_id, created_at) VALUES ('issue', $1, $2)",
        )
        .bind(issue_id)
        .bind(now_us)
        .execute(&mut **t)
        .await
        .map(|_| ()))?;
        tx.commit().await?;
        Ok(true)
    }

    /// Purges waiting: how many `purges` rows are left.
    pub async fn purges_pending(&self) -> Result<i64> {
        let (n,): (i64,) = on!(&self.read, p => sqlx::query_as("SELECT count(*) FROM purges")
            .fetch_one(p)
            .await)?;
        Ok(n)
    }

    /// One step of purging: deletes up to about `max_rows` rows of deleted issues and projects
    /// (a few statements of at most `max_rows` rows each). Returns how many rows went (a
    /// finished purge counts its own row): a pass calls it until it returns 0.
    pub async fn purge_step(&self, max_rows: usize) -> Result<usize> {
        let rows: Vec<(i64, String, i64)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id, kind, target_id FROM purges ORDER BY id LIMIT 16",
        )
        .fetch_all(p)
        .await)?;
        let limit = i64::try_from(max_rows.max(1)).unwrap_or(i64::MAX);
        let mut deleted = 0;
        for (purge_id, kind, target_id) in rows {
            let target = match kind.as_str() {
                "project" => Target::Project(target_id),
                _ => Target::Issue(target_id),
            };
            let (n, done) = self.purge_slice(target, limit).await?;
            deleted += n;
            if done {
                on!(&self.write, p => sqlx::query("DELETE FROM purges WHERE id = $1")
                    .bind(purge_id)
                    .execute(p)
                    .await
                    .map(|_| ()))?;
                deleted += 1;
            }
            if deleted >= max_rows {
                break;
            }
        }
        Ok(deleted)
    }

    /// Deletes one slice of what is left of `target`: the first table that still has rows
    /// gives up to `limit` of them. Returns the rows deleted and whether the target is gone.
    async fn purge_slice(&self, target: Target, limit: i64) -> Result<(usize, bool)> {
        let id = target.id();
        // The events first, as retention deletes them (SKIP LOCKED: rows another process is
        // deleting are left to it).
        let skip_locked = match &self.write {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let events = match target {
            Target::Issue(_) => "issue_id = $1",
            Target::Project(_) => "project_id = $1",
        };
        let n = self
            .execute(
                &format!(
                    "DELETE FROM events WHERE id IN (
                         SELECT id FROM events WHERE {events} LIMIT $2 {skip_locked})"
                ),
                id,
                limit,
            )
            .await?;
        if n > 0 {
            return Ok((n, false));
        }
        // (table, its key on SQLite, which rows), or ("", a whole statement, "").
        let mut tables: Vec<(&str, &str, String)> = Vec::new();
        if let Target::Project(_) = target {
            // Tombstones first, so the project's issues vanish from reads by id soon.
            tables.push((
                "",
                "UPDATE issues SET merged_into = 0, mute_until = NULL WHERE id IN (
                     SELECT id FROM issues WHERE project_id = $1 AND merged_into IS NULL
                     LIMIT $2)",
                String::new(),
            ));
        }
        let issues = target.issues();
        for (table, key) in [
            (
                "issue_tags",
                "project_id, key, value, environment, issue_id",
            ),
            ("issue_stats", "issue_id, bucket, environment"),
            ("issue_users", "issue_id, user_key"),
            ("issue_activity", "rowid"),
            ("issue_episodes", "rowid"),
            ("alert_outbox", "rowid"),
        ] {
            tables.push((table, key, issues.into()));
        }
        tables.push((
            "responder_attempts",
            "rowid",
            format!("run_id IN (SELECT id FROM responder_runs WHERE {issues})"),
        ));
        tables.push(("responder_runs", "rowid", issues.into()));
        match target {
            Target::Issue(_) => {
                // Left over only if a batch linked a hash meanwhile (it cannot: the tombstone
                // turns it away), kept for safety.
                tables.push((
                    "",
                    "DELETE FROM grouping_hashes WHERE issue_id = $1 AND $2 > 0",
                    String::new(),
                ));
                tables.push((
                    "",
                    "DELETE FROM issues WHERE id = $1 AND merged_into = 0 AND $2 > 0",
                    String::new(),
                ));
            }
            Target::Project(_) => {
                let project = || "project_id = $1".to_string();
                tables.push(("grouping_hashes", "project_id, hash", project()));
                tables.push(("issues", "rowid", project()));
                tables.push(("releases", "project_id, version", project()));
                tables.push((
                    "quota_usage",
                    "project_id, window_secs, window_start",
                    project(),
                ));
                tables.push(("project_keys", "rowid", project()));
                tables.push(("alert_channels", "rowid", project()));
                tables.push((
                    "monitor_checkins",
                    "rowid",
                    "monitor_env_id IN (SELECT e.id FROM monitor_environments e
                         JOIN monitors m ON m.id = e.monitor_id WHERE m.project_id = $1)"
                        .into(),
                ));
                tables.push((
                    "monitor_environments",
                    "rowid",
                    "monitor_id IN (SELECT id FROM monitors WHERE project_id = $1)".into(),
                ));
                tables.push(("monitors", "rowid", project()));
                tables.push((
                    "responder_runs",
                    "rowid",
                    "responder_id IN (SELECT id FROM responders WHERE project_id = $1)".into(),
                ));
                tables.push(("responders", "rowid", project()));
            }
        }
        // An issue's purge ends with its row; a project's row stays, a few bytes marked deleted
        // (`serve` creates a first project only in a database that never had one).
        let last = match target {
            Target::Issue(_) => tables.len() - 1,
            Target::Project(_) => usize::MAX,
        };
        for (i, (table, key, condition)) in tables.iter().enumerate() {
            let sql = if table.is_empty() {
                key.to_string()
            } else {
                self.slice_sql(table, key, condition)
            };
            let n = self.execute(&sql, id, limit).await?;
            if n > 0 {
                // The last statement removes the target itself: then it is done.
                return Ok((n, i == last));
            }
        }
        // Nothing left at all (a purge that had finished but not yet dropped its row).
        Ok((0, true))
    }

    /// Deletes up to `$2` rows of `table` matching `condition`, picked by their physical row
    /// (PostgreSQL's ctid; SQLite's rowid, or the primary key of a table without one).
    fn slice_sql(&self, table: &str, key: &str, condition: &str) -> String {
        match &self.write {
            Db::Sqlite(_) => format!(
                "DELETE FROM {table} WHERE ({key}) IN (
                     SELECT {key} FROM {table} WHERE {condition} LIMIT $2)"
            ),
            Db::Postgres(_) => format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM {table} WHERE {condition} LIMIT $2))"
            ),
        }
    }

    /// Runs one purge statement with the target's id and the slice size.
    async fn execute(&self, sql: &str, id: i64, limit: i64) -> Result<usize> {
        let n = on!(&self.write, p => sqlx::query(sql)
            .bind(id)
            .bind(limit)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n as usize)
    }
}
