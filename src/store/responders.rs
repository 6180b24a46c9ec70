//! Responders and their runs: the definitions per project, the actions an episode schedules
//! (written in the episode's transaction), their claims with a lease, and every attempt.
//!
//! A run is claimed like an outbox alert (`store::alerts`): an UPDATE moves `next_attempt_at`
//! to the end of the lease and names the claimer, so two processes never hold one run; an
//! attempt is recorded only while the claim still holds. Resolving or muting an issue cancels
//! its pending runs in the same transaction as the transition (`cancel_pending`).

use super::{Db, Result, Store, Tx};
use crate::responder::{self, EpisodeStart, Spec, Watcher};

/// A responder as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Responder {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub watch_pattern: String,
    pub min_level: Option<String>,
    pub environment: Option<String>,
    pub enabled: bool,
    /// `[{"target", "delay_sec", "params"}]` as JSON text.
    pub actions: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One scheduled action of one episode.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRun {
    pub id: i64,
    pub responder_id: i64,
    pub action_index: i64,
    pub issue_id: i64,
    pub episode_id: i64,
    pub target: String,
    pub params: String,
    /// `pending`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    pub due_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i64,
    pub claimed_by: Option<String>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// Why it was cancelled.
    pub reason: Option<String>,
    pub created_at: i64,
    pub done_at: Option<i64>,
}

/// One recorded attempt of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionAttempt {
    pub run_id: i64,
    pub attempted_at: i64,
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub claimed_by: Option<String>,
}

type ResponderRow = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    bool,
    String,
    i64,
    i64,
);

const RESPONDER_COLUMNS: &str = "id, project_id, name, watch_pattern, min_level, environment,
    enabled, actions, created_at, updated_at";

fn responder_of(r: ResponderRow) -> Responder {
    Responder {
        id: r.0,
        project_id: r.1,
        name: r.2,
        watch_pattern: r.3,
        min_level: r.4,
        environment: r.5,
        enabled: r.6,
        actions: r.7,
        created_at: r.8,
        updated_at: r.9,
    }
}

const RUN_COLUMNS: &str = "id, responder_id, action_index, issue_id, episode_id, target, params,
    status, due_at, next_attempt_at, attempts, claimed_by, last_status, last_error, reason,
    created_at, done_at";

// sqlx reads tuples of at most 16 columns: a run's 17 are read in two halves.
type RunHead = (i64, i64, i64, i64, i64, String, String, String, i64);
type RunTail = (
    i64,
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
);

fn run_from(head: RunHead, tail: RunTail) -> ActionRun {
    ActionRun {
        id: head.0,
        responder_id: head.1,
        action_index: head.2,
        issue_id: head.3,
        episode_id: head.4,
        target: head.5,
        params: head.6,
        status: head.7,
        due_at: head.8,
        next_attempt_at: tail.0,
        attempts: tail.1,
        claimed_by: tail.2,
        last_status: tail.3,
        last_error: tail.4,
        reason: tail.5,
        created_at: tail.6,
        done_at: tail.7,
    }
}

macro_rules! runs_from_rows {
    ($rows:expr) => {{
        use sqlx::Row;
        let mut out = Vec::new();
        for r in $rows {
            let head: RunHead = (
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
                r.try_get(8)?,
            );
            let tail: RunTail = (
                r.try_get(9)?,
                r.try_get(10)?,
                r.try_get(11)?,
                r.try_get(12)?,
                r.try_get(13)?,
                r.try_get(14)?,
                r.try_get(15)?,
                r.try_get(16)?,
            );
            out.push(run_from(head, tail));
        }
        out
    }};
}

impl Store {
    pub async fn create_responder(
        &self,
        project_id: i64,
        spec: &Spec,
        now_us: i64,
    ) -> Result<Responder> {
        let row: ResponderRow = on!(&self.write, p => sqlx::query_as(&format!(
            "INSERT INTO responders (project_id, name, watch_pattern, min_level, environment,
                                     enabled, actions, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {RESPONDER_COLUMNS}"
        ))
        .bind(project_id)
        .bind(&spec.name)
        .bind(&spec.watch_pattern)
        .bind(spec.min_level.map(|l| l.as_str()))
        .bind(&spec.environment)
        .bind(spec.enabled)
        .bind(spec.actions_json().to_string())
        .bind(now_us)
        .fetch_one(p)
        .await)?;
        Ok(responder_of(row))
    }

    /// The project's responders, oldest first.
    pub async fn responders(&self, project_id: i64) -> Result<Vec<Responder>> {
        let rows: Vec<ResponderRow> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {RESPONDER_COLUMNS} FROM responders WHERE project_id = $1 ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(responder_of).collect())
    }

    pub async fn responder(&self, project_id: i64, id: i64) -> Result<Option<Responder>> {
        let row: Option<ResponderRow> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {RESPONDER_COLUMNS} FROM responders WHERE project_id = $1 AND id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(responder_of))
    }

    /// Replaces a responder's definition. Its pending runs were scheduled from the old one
    /// (their action numbers may mean other actions now), so they are cancelled with it; the
    /// new definition applies from the next episode.
    pub async fn update_responder(
        &self,
        project_id: i64,
        id: i64,
        spec: &Spec,
        now_us: i64,
    ) -> Result<Option<Responder>> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let row: Option<ResponderRow> = on!(&mut tx, t => sqlx::query_as(&format!(
            "UPDATE responders SET name = $1, watch_pattern = $2, min_level = $3,
                 environment = $4, enabled = $5, actions = $6, updated_at = $7
             WHERE project_id = $8 AND id = $9 RETURNING {RESPONDER_COLUMNS}"
        ))
        .bind(&spec.name)
        .bind(&spec.watch_pattern)
        .bind(spec.min_level.map(|l| l.as_str()))
        .bind(&spec.environment)
        .bind(spec.enabled)
        .bind(spec.actions_json().to_string())
        .bind(now_us)
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut **t)
        .await)?;
        if row.is_some() {
            cancel_runs_of(&mut tx, id, "the responder was changed", now_us).await?;
        }
        tx.commit().await?;
        Ok(row.map(responder_of))
    }

    /// Deletes a responder and cancels its pending runs; false when there was none. The runs
    /// already taken stay, for the issues' history.
    pub async fn delete_responder(&self, project_id: i64, id: i64, now_us: i64) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let n = on!(&mut tx, t => sqlx::query(
            "DELETE FROM responders WHERE project_id = $1 AND id = $2",
        )
        .bind(project_id)
        .bind(id)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
        if n > 0 {
            cancel_runs_of(&mut tx, id, "the responder was deleted", now_us).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Claims up to `limit` due runs for `claimer` until `lease_until` (see
    /// `claim_due_alerts`: the same lease, `SKIP LOCKED` on PostgreSQL).
    pub async fn claim_due_actions(
        &self,
        claimer: &str,
        now_us: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<ActionRun>> {
        let lock = match self.write {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE responder_runs SET next_attempt_at = $1, claimed_by = $4
             WHERE id IN (SELECT id FROM responder_runs
                          WHERE status = 'pending' AND next_attempt_at <= $2
                          ORDER BY next_attempt_at, id LIMIT $3 {lock})
             RETURNING {RUN_COLUMNS}"
        );
        let mut out = on!(&self.write, p => {
            let rows = sqlx::query(&sql)
                .bind(lease_until)
                .bind(now_us)
                .bind(limit)
                .bind(claimer)
                .fetch_all(p)
                .await?;
            runs_from_rows!(rows)
        });
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// The issue's status and whether it was merged away, as a due run checks it.
    pub async fn issue_gate(&self, issue_id: i64) -> Result<Option<(String, bool)>> {
        let row: Option<(String, Option<i64>)> = on!(&self.write, p => sqlx::query_as(
            "SELECT status, merged_into FROM issues WHERE id = $1",
        )
        .bind(issue_id)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(|(s, m)| (s, m.is_some())))
    }

    /// Records one attempt of a claimed run, if the claim still holds: the run's new state
    /// and the attempt row, in one transaction. `next_at` is the retry time for `retry`.
    pub async fn record_action_attempt(
        &self,
        claimed: &ActionRun,
        outcome: &str,
        http_status: Option<i64>,
        error: Option<&str>,
        next_at: i64,
        now_us: i64,
    ) -> Result<bool> {
        let (status, done_at) = match outcome {
            "delivered" => ("delivered", Some(now_us)),
            "failed" => ("failed", Some(now_us)),
            _ => ("pending", None),
        };
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let n = on!(&mut tx, t => sqlx::query(
            "UPDATE responder_runs SET status = $1, attempts = attempts + 1, last_status = $2,
                 last_error = $3, next_attempt_at = $4, done_at = $5
             WHERE id = $6 AND status = 'pending' AND next_attempt_at = $7
               AND claimed_by IS NOT DISTINCT FROM $8",
        )
        .bind(status)
        .bind(http_status)
        .bind(error)
        .bind(if status == "pending" { next_at } else { now_us })
        .bind(done_at)
        .bind(claimed.id)
        .bind(claimed.next_attempt_at)
        .bind(&claimed.claimed_by)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
        if n > 0 {
            on!(&mut tx, t => sqlx::query(
                "INSERT INTO responder_attempts (run_id, attempted_at, outcome, http_status,
                                                 error, claimed_by)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(claimed.id)
            .bind(now_us)
            .bind(outcome)
            .bind(http_status)
            .bind(error)
            .bind(&claimed.claimed_by)
            .execute(&mut **t)
            .await.map(|r| r.rows_affected()))?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Cancels a claimed run whose issue is no longer open (if the claim still holds).
    pub async fn cancel_claimed_action(
        &self,
        claimed: &ActionRun,
        reason: &str,
        now_us: i64,
    ) -> Result<bool> {
        let n = on!(&self.write, p => sqlx::query(
            "UPDATE responder_runs SET status = 'cancelled', reason = $1, done_at = $2
             WHERE id = $3 AND status = 'pending' AND next_attempt_at = $4
               AND claimed_by IS NOT DISTINCT FROM $5",
        )
        .bind(reason)
        .bind(now_us)
        .bind(claimed.id)
        .bind(claimed.next_attempt_at)
        .bind(&claimed.claimed_by)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// An issue's runs, oldest first, each with its attempts: what the system has done (and
    /// will do) about it.
    pub async fn issue_actions(
        &self,
        issue_id: i64,
    ) -> Result<Vec<(ActionRun, Vec<ActionAttempt>)>> {
        let runs = on!(&self.read, p => {
            let rows = sqlx::query(&format!(
                "SELECT {RUN_COLUMNS} FROM responder_runs WHERE issue_id = $1 ORDER BY id"
            ))
            .bind(issue_id)
            .fetch_all(p)
            .await?;
            runs_from_rows!(rows)
        });
        type AttemptRow = (
            i64,
            i64,
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let attempts: Vec<AttemptRow> = on!(&self.read, p => sqlx::query_as(
            "SELECT a.run_id, a.attempted_at, a.outcome, a.http_status, a.error, a.claimed_by
             FROM responder_attempts a JOIN responder_runs r ON r.id = a.run_id
             WHERE r.issue_id = $1 ORDER BY a.id",
        )
        .bind(issue_id)
        .fetch_all(p)
        .await)?;
        Ok(runs
            .into_iter()
            .map(|run| {
                let mine = attempts
                    .iter()
                    .filter(|a| a.0 == run.id)
                    .map(|a| ActionAttempt {
                        run_id: a.0,
                        attempted_at: a.1,
                        outcome: a.2.clone(),
                        http_status: a.3,
                        error: a.4.clone(),
                        claimed_by: a.5.clone(),
                    })
                    .collect();
                (run, mine)
            })
            .collect())
    }
}

/// Schedules the actions of the project's matching responders for an episode that starts
/// now, in the episode's transaction. A project without enabled responders costs one indexed
/// read.
pub async fn schedule_episode(
    tx: &mut Tx<'_>,
    project_id: i64,
    issue_id: i64,
    episode_id: i64,
    trigger: Option<&crate::issue::plan::Trigger>,
    now_us: i64,
) -> Result<usize> {
    type WatcherRow = (i64, String, Option<String>, Option<String>, String);
    let watchers: Vec<WatcherRow> = on!(tx, t => sqlx::query_as(
        "SELECT id, watch_pattern, min_level, environment, actions FROM responders
         WHERE project_id = $1 AND enabled ORDER BY id",
    )
    .bind(project_id)
    .fetch_all(&mut **t)
    .await)?;
    if watchers.is_empty() {
        return Ok(0);
    }
    let (title, level): (String, String) = on!(tx, t => sqlx::query_as(
        "SELECT title, level FROM issues WHERE id = $1",
    )
    .bind(issue_id)
    .fetch_one(&mut **t)
    .await)?;
    let watchers: Vec<Watcher> = watchers
        .into_iter()
        .map(|w| Watcher {
            id: w.0,
            watch_pattern: w.1,
            min_level: w.2,
            environment: w.3,
            actions: w.4,
        })
        .collect();
    let start = EpisodeStart {
        title: &title,
        level: trigger.map_or(level.as_str(), |t| t.level.as_str()),
        environment: trigger.and_then(|t| t.environment.as_deref()),
        started_us: now_us,
    };
    let runs = responder::schedule(&watchers, &start);
    for run in &runs {
        on!(tx, t => sqlx::query(
            "INSERT INTO responder_runs (responder_id, action_index, issue_id, episode_id,
                 target, params, due_at, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
             ON CONFLICT (episode_id, responder_id, action_index) DO NOTHING",
        )
        .bind(run.responder_id)
        .bind(run.action_index)
        .bind(issue_id)
        .bind(episode_id)
        .bind(run.target)
        .bind(&run.params)
        .bind(run.due_us)
        .bind(now_us)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
    }
    Ok(runs.len())
}

/// Which pending runs a cancel reaches.
#[derive(Clone, Copy)]
enum Of {
    Issue(i64),
    Responder(i64),
}

/// Cancels what is still pending for an issue (it was resolved or muted, or a new episode
/// began), in the caller's transaction. A run claimed right now is cancelled too: its attempt
/// then finds the claim gone and is not recorded as taken.
pub async fn cancel_pending(
    tx: &mut Tx<'_>,
    issue_id: i64,
    reason: &str,
    now_us: i64,
) -> Result<u64> {
    cancel(tx, Of::Issue(issue_id), reason, now_us).await
}

async fn cancel_runs_of(
    tx: &mut Tx<'_>,
    responder_id: i64,
    reason: &str,
    now_us: i64,
) -> Result<u64> {
    cancel(tx, Of::Responder(responder_id), reason, now_us).await
}

async fn cancel(tx: &mut Tx<'_>, of: Of, reason: &str, now_us: i64) -> Result<u64> {
    let (column, id) = match of {
        Of::Issue(id) => ("issue_id", id),
        Of::Responder(id) => ("responder_id", id),
    };
    let sql = format!(
        "UPDATE responder_runs SET status = 'cancelled', reason = $1, done_at = $2
         WHERE {column} = $3 AND status = 'pending'"
    );
    let n = on!(tx, t => sqlx::query(&sql)
        .bind(reason)
        .bind(now_us)
        .bind(id)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
    Ok(n)
}
