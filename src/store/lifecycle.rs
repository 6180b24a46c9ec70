//! The lifecycle's storage: lock and load the facts the planner (`issue::plan`) needs, apply
//! the effects it returns, in the caller's transaction.
//!
//! Three kinds of transaction use it: an ingest batch (`store::ingest`), a person's change
//! (`Store::change_status`, a transaction of its own) and the timed unmutes
//! (`Store::unmute_due`, claimed with `SKIP LOCKED` on PostgreSQL so that each due issue is
//! unmuted by one process). Each locks the issues it touches in id order, plans from what is
//! stored, and writes the new state, its history row, its episode and its outbox alerts
//! before the one commit: a transition is stored once, with its alert, whoever plans it.

use super::alerts;
use super::issues::{issue_from_row, SELECT_ISSUE};
use super::responders;
use super::{Db, Result, Store, StoreError, Tx};
use crate::issue::plan::{self, BatchEffects, ChangeFacts, IssueFacts, MuteCounters, Query};
use crate::issue::plan::{Step, UserSeen, What};
pub use crate::issue::request::Change;
use crate::issue::state::{Actor, IssueState, Refusal, Status, Transition};

pub(crate) fn actor_text(a: Actor) -> String {
    match a {
        Actor::Token(id) => format!("token:{id}"),
        Actor::System => "system".into(),
    }
}

type FactsRow = (i64, i64, String, i64, Option<String>);

/// A `FactsRow` and the issue's `merged_into`, as `lock_issues` reads it.
type LockedRow = (i64, i64, String, i64, Option<String>, Option<i64>);

/// The columns of a `FactsRow`.
const FACTS: &str = "id, project_id, state, event_count, counters";

fn facts(row: FactsRow, created: bool) -> IssueFacts {
    let (id, project_id, state, event_count, counters) = row;
    IssueFacts {
        id,
        project_id,
        state: IssueState::from_stored(&state),
        event_count: event_count.max(0) as u64,
        counters: MuteCounters::from_stored(counters.as_deref()),
        created,
    }
}

/// Locks the issues `ids` (sorted, unique) in id order and loads the facts the planner needs.
///
/// PostgreSQL takes the row locks here, so it loads every row. SQLite's write transaction is
/// exclusive already; for an ingest batch (`batch`), an unresolved issue that the batch did
/// not create gives the planner nothing to decide, so only the others are read (usually none),
/// in one statement. sqlx hands every result row across threads one by one, which made reading
/// all of a batch's issues cost SQLite's single writer a tenth of its throughput.
///
/// A batch that reached an issue merged into another (`store::merge`) followed a hash link
/// read before the merge committed, from the writer's cache or earlier in this transaction:
/// it fails with `StoreError::StaleLinks`, and the writer runs it again with fresh links.
/// Checked here, under the row lock, because the merge changes links under the same lock: a
/// batch that locked the issue first commits before the merge moves its events. A person's
/// change (`!batch`) simply does not see a merged issue (the API resolves old ids first).
pub async fn lock_issues(
    tx: &mut Tx<'_>,
    ids: &[i64],
    created: &[(i64, i64)],
    batch: bool,
) -> Result<Vec<IssueFacts>> {
    let rows: Vec<LockedRow> = match tx {
        Db::Sqlite(t) => {
            let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
            let only = if batch {
                "AND (status <> 'unresolved' OR merged_into IS NOT NULL)"
            } else {
                ""
            };
            sqlx::query_as(&format!(
                "SELECT {FACTS}, merged_into FROM issues
                 WHERE id IN (SELECT value FROM json_each($1)) {only} ORDER BY id"
            ))
            .bind(list)
            .fetch_all(&mut **t)
            .await?
        }
        Db::Postgres(t) => {
            // Rows are locked as they come out of the sort: in id order, the one order every
            // transaction uses, so two writers never wait for each other in a circle. `NO KEY
            // UPDATE`, the lock an UPDATE of these columns takes anyway: writers still queue on
            // it, but a flush of the aggregate journal (`KEY SHARE`) does not stop them.
            sqlx::query_as(&format!(
                "SELECT {FACTS}, merged_into FROM issues
                 WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE"
            ))
            .bind(ids)
            .fetch_all(&mut **t)
            .await?
        }
    };
    if batch && rows.iter().any(|r| r.5.is_some()) {
        return Err(StoreError::StaleLinks);
    }
    let mut out: Vec<IssueFacts> = rows
        .into_iter()
        .filter(|r| r.5.is_none())
        .map(|(id, project_id, state, count, counters, _)| (id, project_id, state, count, counters))
        .map(|r| {
            let created = created.iter().any(|c| c.0 == r.0);
            facts(r, created)
        })
        .collect();
    // A new issue's facts are known without reading it back.
    for &(id, project_id) in created {
        match out.iter_mut().find(|f| f.id == id) {
            Some(f) => f.created = true,
            None => out.push(IssueFacts {
                id,
                project_id,
                state: IssueState::new_issue(),
                event_count: 0,
                counters: MuteCounters::default(),
                created: true,
            }),
        }
    }
    out.sort_unstable_by_key(|f| f.id);
    Ok(out)
}

/// The project's issues resolved in the next release: a release seen for the first time
/// resolves them in it, so they are locked and planned with the batch.
pub async fn next_release_candidates(tx: &mut Tx<'_>, project_id: i64) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = on!(tx, t => sqlx::query_as(
        "SELECT id FROM issues WHERE project_id = $1 AND status = 'resolved'
         AND merged_into IS NULL AND state LIKE '%\"resolved_in_next_release\":true%'",
    )
    .bind(project_id)
    .fetch_all(&mut **t)
    .await)?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Stores the users seen by issues muted with a user limit (the time of their latest event).
pub async fn store_users(tx: &mut Tx<'_>, users: &[UserSeen]) -> Result<()> {
    let sql = match tx {
        Db::Sqlite(_) => {
            "INSERT INTO issue_users (issue_id, user_key, last_seen) VALUES ($1, $2, $3)
             ON CONFLICT (issue_id, user_key)
             DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
        }
        Db::Postgres(_) => {
            "INSERT INTO issue_users (issue_id, user_key, last_seen) VALUES ($1, $2, $3)
             ON CONFLICT (issue_id, user_key)
             DO UPDATE SET last_seen = GREATEST(issue_users.last_seen, excluded.last_seen)"
        }
    };
    for u in users {
        on!(tx, t => sqlx::query(sql)
            .bind(u.issue_id)
            .bind(&u.user)
            .bind(u.at_us)
            .execute(&mut **t)
            .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Events of an issue with a timestamp in `(now - window, now]`.
async fn count_in_window(
    tx: &mut Tx<'_>,
    issue_id: i64,
    now_us: i64,
    window: chrono::Duration,
) -> Result<u64> {
    let from = now_us.saturating_sub(window.num_microseconds().unwrap_or(i64::MAX / 2));
    let (n,): (i64,) = on!(tx, t => sqlx::query_as(
        "SELECT count(*) FROM events WHERE issue_id = $1 AND timestamp > $2 AND timestamp <= $3",
    )
    .bind(issue_id)
    .bind(from)
    .bind(now_us)
    .fetch_one(&mut **t)
    .await)?;
    Ok(n as u64)
}

/// The exact figures a plan asked for, in its order.
pub async fn answer(tx: &mut Tx<'_>, queries: &[Query], now_us: i64) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        out.push(match q {
            Query::Events { issue_id, window } => {
                count_in_window(tx, *issue_id, now_us, *window).await?
            }
            Query::Users { issue_id, since_us } => {
                let (n,): (i64,) = on!(tx, t => sqlx::query_as(
                    "SELECT count(*) FROM issue_users WHERE issue_id = $1 AND last_seen >= $2",
                )
                .bind(issue_id)
                .bind(since_us)
                .fetch_one(&mut **t)
                .await)?;
                n as u64
            }
        });
    }
    Ok(out)
}

/// Applies a batch's steps and the new counters of the issues that stay muted (its counts
/// and users were written before the exact figures were read).
pub async fn apply(
    tx: &mut Tx<'_>,
    effects: &BatchEffects,
    issues: &[IssueFacts],
    now_us: i64,
) -> Result<()> {
    for step in &effects.steps {
        let project_id = issues
            .iter()
            .find(|i| i.id == step.issue_id)
            .map_or(0, |i| i.project_id);
        apply_step(tx, step, project_id, now_us).await?;
    }
    for (issue_id, counters) in &effects.counters {
        on!(tx, t => sqlx::query("UPDATE issues SET counters = $1 WHERE id = $2")
            .bind(counters.to_stored())
            .bind(issue_id)
            .execute(&mut **t)
            .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Stores one step: the new state (if it is a transition), its history row, its episode and,
/// when it alerts and the project wants that alert, one outbox row per channel carrying the
/// issue as it is now, at its transition.
async fn apply_step(tx: &mut Tx<'_>, step: &Step, project_id: i64, now_us: i64) -> Result<()> {
    if let What::Transition(t) = &step.what {
        let s = &t.to;
        let mute_until = s
            .mute
            .as_ref()
            .and_then(|m| m.until)
            .map(|u| u.timestamp_micros());
        on!(tx, x => sqlx::query(
            "UPDATE issues SET status = $1, substatus = $2, state = $3, mute_until = $4,
                               counters = $5
             WHERE id = $6",
        )
        .bind(s.status.as_str())
        .bind(&s.substatus)
        .bind(serde_json::to_string(s).unwrap_or_else(|_| "{}".into()))
        .bind(mute_until)
        .bind(step.counters.to_stored())
        .bind(step.issue_id)
        .execute(&mut **x)
        .await.map(|r| r.rows_affected()))?;
        // Users count only for the mute they were seen in.
        if t.from.mute.as_ref().is_some_and(|m| m.user_count.is_some()) {
            on!(tx, x => sqlx::query("DELETE FROM issue_users WHERE issue_id = $1")
                .bind(step.issue_id)
                .execute(&mut **x)
                .await.map(|r| r.rows_affected()))?;
        }
    }
    let (kind, reason) = step.history();
    let (activity,): (i64,) = on!(tx, x => sqlx::query_as(
        "INSERT INTO issue_activity (issue_id, kind, actor, reason, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(step.issue_id)
    .bind(kind)
    .bind(actor_text(step.actor))
    .bind(reason)
    .bind(now_us)
    .fetch_one(&mut **x)
    .await)?;
    // Responders: an issue that is no longer open stops its ladder; a new episode cancels
    // what an earlier one left pending and schedules its own.
    if let What::Transition(t) = &step.what {
        if t.to.status != Status::Unresolved {
            let reason = match t.to.status {
                Status::Ignored => "the issue was muted",
                _ => "the issue was resolved",
            };
            responders::cancel_pending(tx, step.issue_id, reason, now_us).await?;
        }
    }
    if let Some(cause) = step.episode {
        let (episode_id,): (i64,) = on!(tx, x => sqlx::query_as(
            "INSERT INTO issue_episodes (issue_id, cause, started_at) VALUES ($1, $2, $3)
             RETURNING id",
        )
        .bind(step.issue_id)
        .bind(cause.as_str())
        .bind(now_us)
        .fetch_one(&mut **x)
        .await)?;
        if !matches!(step.what, What::Created) {
            responders::cancel_pending(tx, step.issue_id, "a new episode began", now_us).await?;
        }
        responders::schedule_episode(
            tx,
            project_id,
            step.issue_id,
            episode_id,
            step.trigger.as_ref(),
            now_us,
        )
        .await?;
    }
    if let Some(alert) = &step.alert {
        let sql = format!("{SELECT_ISSUE} WHERE i.id = $1");
        let issue = on!(tx, x => sqlx::query(&sql)
            .bind(step.issue_id)
            .fetch_optional(&mut **x)
            .await?
            .map(|r| issue_from_row(&r))
            .transpose()?);
        let payload = serde_json::json!({
            "reason": reason,
            "environment": alert.environment,
            "release": alert.release,
            "level": alert.level,
            "issue": issue,
        });
        let key = format!("{}:{}:{activity}", alert.kind.as_str(), step.issue_id);
        alerts::enqueue(
            tx,
            project_id,
            step.issue_id,
            alert.kind.as_str(),
            &key,
            &payload.to_string(),
            now_us,
        )
        .await?;
    }
    Ok(())
}

/// Per issue of a change: `None` when it does not exist, else the transition or the refusal.
pub type ChangeOutcome = Vec<(i64, Option<std::result::Result<Transition, Refusal>>)>;

impl Store {
    /// A person's change to each of `issue_ids`, in one transaction of its own: lock the
    /// issues in id order, read what the rules check, plan, store.
    pub async fn change_status(
        &self,
        issue_ids: &[i64],
        change: &Change,
        actor: Actor,
        now_us: i64,
    ) -> Result<ChangeOutcome> {
        let mut attempt = 0;
        loop {
            match self.try_change(issue_ids, change, actor, now_us).await {
                Err(e) if e.is_retryable() && attempt < 8 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_change(
        &self,
        issue_ids: &[i64],
        change: &Change,
        actor: Actor,
        now_us: i64,
    ) -> Result<ChangeOutcome> {
        let mut ids = issue_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let issues = lock_issues(&mut tx, &ids, &[], false).await?;
        let now = crate::clock::from_micros(now_us);
        let mut out = Vec::with_capacity(issue_ids.len());
        for &id in issue_ids {
            let Some(issue) = issues.iter().find(|i| i.id == id) else {
                out.push((id, None));
                continue;
            };
            // A repeated id in one request changes the issue once.
            if out.iter().any(|(done, _)| *done == id) {
                continue;
            }
            let mut window_counts = Vec::new();
            for w in plan::change_windows(change) {
                window_counts.push(count_in_window(&mut tx, id, now_us, w).await?);
            }
            let latest_release = match change {
                Change::ResolveInNextRelease => {
                    let row: Option<(String,)> = on!(&mut tx, t => sqlx::query_as(
                        "SELECT version FROM releases WHERE project_id = $1
                         ORDER BY seq DESC LIMIT 1",
                    )
                    .bind(issue.project_id)
                    .fetch_optional(&mut **t)
                    .await)?;
                    row.map(|r| r.0)
                }
                _ => None,
            };
            let facts = ChangeFacts {
                now,
                latest_release,
                window_counts,
            };
            match plan::plan_change(issue, change, actor, &facts) {
                Ok(step) => {
                    apply_step(&mut tx, &step, issue.project_id, now_us).await?;
                    let What::Transition(t) = step.what else {
                        continue;
                    };
                    out.push((id, Some(Ok(*t))));
                }
                Err(refusal) => out.push((id, Some(Err(refusal)))),
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Unmutes the muted issues whose time limit has passed; returns how many. On PostgreSQL
    /// each due issue is claimed with `FOR NO KEY UPDATE SKIP LOCKED`: with several processes,
    /// each one is unmuted (and alerted) by one of them, and a process that dies mid-way leaves
    /// its claims to the next round of the others.
    pub async fn unmute_due(&self, now_us: i64) -> Result<usize> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let lock = match &tx {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR NO KEY UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "SELECT {FACTS} FROM issues
             WHERE mute_until IS NOT NULL AND mute_until <= $1 AND merged_into IS NULL
             ORDER BY id LIMIT 500 {lock}"
        );
        let rows: Vec<FactsRow> = on!(&mut tx, t => sqlx::query_as(&sql)
            .bind(now_us)
            .fetch_all(&mut **t)
            .await)?;
        let now = crate::clock::from_micros(now_us);
        let mut n = 0;
        for row in rows {
            let issue = facts(row, false);
            match plan::plan_timed_unmute(&issue, now) {
                Some(step) => {
                    apply_step(&mut tx, &step, issue.project_id, now_us).await?;
                    n += 1;
                }
                None if issue.state.status != Status::Ignored
                    || issue.state.mute.as_ref().and_then(|m| m.until).is_none() =>
                {
                    // Stale marker (the mute changed): clear it so it is not looked at again.
                    on!(&mut tx, t => sqlx::query("UPDATE issues SET mute_until = NULL WHERE id = $1")
                        .bind(issue.id)
                        .execute(&mut **t)
                        .await.map(|r| r.rows_affected()))?;
                }
                None => {}
            }
        }
        tx.commit().await?;
        Ok(n)
    }
}
