//! The issue lifecycle inside the writer's transactions: regressions, automatic unmutes,
//! new-issue alerts, and the transitions people ask for.
//!
//! Every decision is the pure state machine's (`issue::state`); this file loads the states,
//! stores what the machine returns, writes the history row and the outbox alerts, all in the
//! transaction of the batch (or command) that caused them. It keeps the states of the issues
//! it has seen in memory, which is sound because every write to an issue's state goes through
//! the one writer; the cache is dropped whenever a transaction fails.
//!
//! Volume conditions are checked cheaply: each muted issue keeps rolling buckets whose sum is
//! an upper bound of the events in the window; only when that bound reaches the volume is the
//! exact count read from the events index. A muted issue under heavy load therefore costs a
//! few additions per event and an occasional indexed count.

use super::alerts;
use super::Result;
pub use crate::issue::request::Change;
use crate::issue::state::{
    self, Actor, AlertKind, CurrentVolume, IssueState, MuteRequest, Refusal, Status, Transition,
};
use crate::issue::volume::{Buckets, VolumeCondition};
use crate::store::ingest::NewEvent;
use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::{Sqlite, Transaction};
use std::collections::HashMap;

/// One issue as the writer knows it.
#[derive(Debug, Clone)]
struct Cached {
    project_id: i64,
    state: IssueState,
    event_count: i64,
    /// Per volume condition of the current mute.
    buckets: Vec<(VolumeCondition, Buckets)>,
    /// Users seen while muted with a user limit: key -> last seen (µs).
    users: HashMap<String, i64>,
}

/// The writer's lifecycle memory: issue states and each project's releases in first-seen order.
#[derive(Debug, Default)]
pub struct Lifecycle {
    issues: HashMap<i64, Cached>,
    releases: HashMap<i64, HashMap<String, u64>>,
}

type Tx<'t> = Transaction<'t, Sqlite>;

fn to_dt(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

fn actor_text(a: Actor) -> String {
    match a {
        Actor::Token(id) => format!("token:{id}"),
        Actor::System => "system".into(),
    }
}

impl Lifecycle {
    /// Forgets everything (after a failed transaction).
    pub fn clear(&mut self) {
        self.issues.clear();
        self.releases.clear();
    }

    /// The lifecycle part of an ingest batch, after its events and counts were written.
    pub async fn after_batch(
        &mut self,
        tx: &mut Tx<'_>,
        batch: &[NewEvent],
        issues: &[(i64, bool)],
        inserted: &[bool],
        now_us: i64,
    ) -> Result<()> {
        let new_release = self.note_releases(tx, batch, inserted, now_us).await?;
        // New issues: cache their state and raise the new-issue alert once.
        for (ev, &(issue_id, created)) in batch.iter().zip(issues) {
            if created && !self.issues.contains_key(&issue_id) {
                self.issues.insert(
                    issue_id,
                    Cached {
                        project_id: ev.project_id,
                        state: IssueState::new_issue(),
                        event_count: 0,
                        buckets: vec![],
                        users: HashMap::new(),
                    },
                );
                let reason = "A new issue was seen";
                let activity =
                    record(tx, issue_id, "first_seen", Actor::System, reason, now_us).await?;
                let kind = AlertKind::NewIssue;
                enqueue_alert(
                    tx,
                    ev.project_id,
                    issue_id,
                    kind,
                    reason,
                    activity,
                    Some(ev),
                    now_us,
                )
                .await?;
            }
        }
        // Load the states of the other touched issues (their counts include this batch).
        let missing: Vec<i64> = issues
            .iter()
            .map(|i| i.0)
            .filter(|id| !self.issues.contains_key(id))
            .collect();
        let loaded = self.load(tx, &missing, now_us).await?;
        for (&(issue_id, _), &ins) in issues.iter().zip(inserted) {
            if ins && !loaded.contains(&issue_id) {
                if let Some(c) = self.issues.get_mut(&issue_id) {
                    c.event_count += 1;
                }
            }
        }
        // Next-release resolutions turn into "resolved in R" when R is first seen.
        for (project_id, release) in &new_release {
            self.apply_new_release(tx, *project_id, release, now_us)
                .await?;
        }
        // Per event, in order: regressions, and feeding the mute limits.
        let mut muted_touched: Vec<i64> = Vec::new();
        for (ev, (&(issue_id, _), &ins)) in batch.iter().zip(issues.iter().zip(inserted)) {
            if !ins {
                continue;
            }
            let Some(c) = self.issues.get_mut(&issue_id) else {
                continue;
            };
            match c.state.status {
                Status::Unresolved => {}
                Status::Resolved => {
                    // In a block of its own: the comparator is not `Send`.
                    let regression = {
                        let releases = self.releases.get(&ev.project_id);
                        let order = |r: &str| releases.and_then(|m| m.get(r).copied());
                        let cmp = |a: &str, b: &str| state::compare_releases(a, b, order);
                        let is_new = ev
                            .release
                            .as_ref()
                            .is_some_and(|r| new_release.contains(&(ev.project_id, r.clone())));
                        let facts = state::EventFacts {
                            release: ev.release.as_deref(),
                            is_new_release_for_project: is_new,
                            cmp: &cmp,
                        };
                        state::on_event(&c.state, &facts)
                    };
                    if let Some(t) = regression {
                        self.apply(tx, issue_id, &t, Actor::System, now_us, Some(ev))
                            .await?;
                    }
                }
                Status::Ignored => {
                    let at = to_dt(ev.timestamp_us);
                    for (_, b) in &mut c.buckets {
                        b.add(at, 1);
                    }
                    if let (Some(m), Some(user)) = (&c.state.mute, &ev.user_key) {
                        if m.user_count.is_some() {
                            c.users.insert(user.clone(), ev.timestamp_us);
                        }
                    }
                    if !muted_touched.contains(&issue_id) {
                        muted_touched.push(issue_id);
                    }
                }
            }
        }
        for issue_id in muted_touched {
            let last_event = batch
                .iter()
                .zip(issues)
                .filter(|(_, i)| i.0 == issue_id)
                .map(|(e, _)| e)
                .next_back();
            self.check_limits(tx, issue_id, now_us, last_event).await?;
        }
        Ok(())
    }

    /// Records the releases of this batch; returns those the project saw for the first time.
    async fn note_releases(
        &mut self,
        tx: &mut Tx<'_>,
        batch: &[NewEvent],
        inserted: &[bool],
        now_us: i64,
    ) -> Result<Vec<(i64, String)>> {
        let mut new = Vec::new();
        for (ev, _) in batch.iter().zip(inserted).filter(|(_, &i)| i) {
            let Some(release) = &ev.release else { continue };
            if let std::collections::hash_map::Entry::Vacant(slot) =
                self.releases.entry(ev.project_id)
            {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT version, seq FROM releases WHERE project_id = $1")
                        .bind(ev.project_id)
                        .fetch_all(&mut **tx)
                        .await?;
                slot.insert(rows.into_iter().map(|(v, s)| (v, s as u64)).collect());
            }
            let known = self.releases.entry(ev.project_id).or_default();
            if known.contains_key(release) {
                continue;
            }
            let seq = known.len() as u64 + 1;
            sqlx::query(
                "INSERT INTO releases (project_id, version, seq, first_seen) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (project_id, version) DO NOTHING",
            )
            .bind(ev.project_id)
            .bind(release)
            .bind(seq as i64)
            .bind(now_us)
            .execute(&mut **tx)
            .await?;
            known.insert(release.clone(), seq);
            new.push((ev.project_id, release.clone()));
        }
        Ok(new)
    }

    /// Loads issues into the cache; returns the ids loaded.
    async fn load(&mut self, tx: &mut Tx<'_>, ids: &[i64], now_us: i64) -> Result<Vec<i64>> {
        let mut loaded = Vec::new();
        for &id in ids {
            if self.issues.contains_key(&id) || loaded.contains(&id) {
                continue;
            }
            let row: Option<(i64, String, i64)> =
                sqlx::query_as("SELECT project_id, state, event_count FROM issues WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
            let Some((project_id, state_json, event_count)) = row else {
                continue;
            };
            let state = IssueState::from_stored(&state_json);
            let mut c = Cached {
                project_id,
                state,
                event_count,
                buckets: vec![],
                users: HashMap::new(),
            };
            seed_buckets(tx, id, &mut c, now_us).await?;
            self.issues.insert(id, c);
            loaded.push(id);
        }
        Ok(loaded)
    }

    async fn apply_new_release(
        &mut self,
        tx: &mut Tx<'_>,
        project_id: i64,
        release: &str,
        now_us: i64,
    ) -> Result<()> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM issues WHERE project_id = $1 AND status = 'resolved'
             AND state LIKE '%\"resolved_in_next_release\":true%'",
        )
        .bind(project_id)
        .fetch_all(&mut **tx)
        .await?;
        let ids: Vec<i64> = rows.into_iter().map(|r| r.0).collect();
        self.load(tx, &ids, now_us).await?;
        let releases = self.releases.get(&project_id).cloned().unwrap_or_default();
        for id in ids {
            let Some(c) = self.issues.get(&id) else {
                continue;
            };
            let next = {
                let order = |r: &str| releases.get(r).copied();
                let cmp = |a: &str, b: &str| state::compare_releases(a, b, order);
                state::on_new_release(&c.state, release, &cmp)
            };
            if let Some(t) = next {
                self.apply(tx, id, &t, Actor::System, now_us, None).await?;
            }
        }
        Ok(())
    }

    /// Unmutes a muted issue whose count, volume or user limit is reached.
    async fn check_limits(
        &mut self,
        tx: &mut Tx<'_>,
        issue_id: i64,
        now_us: i64,
        last_event: Option<&NewEvent>,
    ) -> Result<()> {
        let Some(c) = self.issues.get(&issue_id) else {
            return Ok(());
        };
        let Some(m) = c.state.mute.clone() else {
            return Ok(());
        };
        let now = to_dt(now_us);
        let mut transition = None;
        if let Some(limit) = m.count_since_mute {
            let since = (c.event_count as u64).saturating_sub(m.event_count_at_mute);
            if since >= limit {
                transition = state::unmute_by_event_count(&c.state, c.event_count as u64).ok();
            }
        }
        if transition.is_none() {
            for (cond, buckets) in &c.buckets {
                if buckets.upper_bound(now) < cond.volume {
                    continue;
                }
                let exact = count_in_window(tx, issue_id, now_us, cond.window()).await?;
                if exact >= cond.volume {
                    transition = state::unmute_by_condition(&c.state, cond, exact).ok();
                    break;
                }
            }
        }
        if transition.is_none() {
            if let Some(limit) = m.user_count {
                let from = match m.user_window_minutes {
                    Some(w) => now_us - i64::from(w) * 60_000_000,
                    None => m.muted_at.timestamp_micros(),
                };
                let users = c.users.values().filter(|&&t| t > from).count() as u64;
                if users >= limit {
                    transition = state::unmute_by_user_count(&c.state, users).ok();
                }
            }
        }
        if let Some(t) = transition {
            self.apply(tx, issue_id, &t, Actor::System, now_us, last_event)
                .await?;
        }
        Ok(())
    }

    /// A person's change to one issue, inside the caller's transaction.
    pub async fn change(
        &mut self,
        tx: &mut Tx<'_>,
        issue_id: i64,
        change: &Change,
        actor: Actor,
        now_us: i64,
    ) -> Result<Option<std::result::Result<Transition, Refusal>>> {
        self.load(tx, &[issue_id], now_us).await?;
        let Some(c) = self.issues.get(&issue_id) else {
            return Ok(None);
        };
        let s = &c.state;
        let outcome = match change {
            Change::Resolve => state::resolve(s),
            Change::ResolveInRelease(r) => state::resolve_in_release(s, r),
            Change::ResolveInNextRelease => {
                let latest: Option<(String,)> = sqlx::query_as(
                    "SELECT version FROM releases WHERE project_id = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(c.project_id)
                .fetch_optional(&mut **tx)
                .await?;
                state::resolve_in_next_release(s, latest.as_ref().map(|l| l.0.as_str()))
            }
            Change::Reopen if s.status == Status::Ignored => state::unmute_by_person(s),
            Change::Reopen => state::reopen(s),
            Change::Unmute => state::unmute_by_person(s),
            Change::Mute(req) => {
                let volume = Volume::read(tx, issue_id, c.event_count, req, now_us).await?;
                state::mute(s, req.clone(), to_dt(now_us), &volume)
            }
        };
        let t = match outcome {
            Ok(t) => t,
            Err(refusal) => return Ok(Some(Err(refusal))),
        };
        self.apply(tx, issue_id, &t, actor, now_us, None).await?;
        Ok(Some(Ok(t)))
    }

    /// Stores a transition of a cached issue (see `persist`) and makes it the cached state;
    /// the mute limits' memory starts over for the new state.
    async fn apply(
        &mut self,
        tx: &mut Tx<'_>,
        issue_id: i64,
        t: &Transition,
        actor: Actor,
        now_us: i64,
        event: Option<&NewEvent>,
    ) -> Result<()> {
        let Some(c) = self.issues.get_mut(&issue_id) else {
            return Ok(());
        };
        persist(tx, issue_id, c.project_id, t, actor, now_us, event).await?;
        c.state = t.to.clone();
        c.users.clear();
        seed_buckets(tx, issue_id, c, now_us).await
    }

    /// Unmutes every muted issue whose time limit has passed.
    pub async fn unmute_due(&mut self, tx: &mut Tx<'_>, now_us: i64) -> Result<usize> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM issues WHERE mute_until IS NOT NULL AND mute_until <= $1 ORDER BY id",
        )
        .bind(now_us)
        .fetch_all(&mut **tx)
        .await?;
        let mut n = 0;
        for (id,) in rows {
            self.load(tx, &[id], now_us).await?;
            let Some(c) = self.issues.get(&id) else {
                continue;
            };
            if let Ok(t) = state::unmute_by_time(&c.state, to_dt(now_us)) {
                self.apply(tx, id, &t, Actor::System, now_us, None).await?;
                n += 1;
            } else {
                // Stale marker (the mute changed): clear it so it is not looked at again.
                sqlx::query("UPDATE issues SET mute_until = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(n)
    }
}

/// Starts a muted issue's buckets with the events already in each window, placed at "now":
/// that over-counts until they age out, which keeps the buckets an upper bound.
async fn seed_buckets(tx: &mut Tx<'_>, issue_id: i64, c: &mut Cached, now_us: i64) -> Result<()> {
    c.buckets.clear();
    let Some(m) = &c.state.mute else {
        return Ok(());
    };
    for cond in &m.conditions {
        let mut b = Buckets::new(cond);
        let n = count_in_window(tx, issue_id, now_us, cond.window()).await?;
        b.add(to_dt(now_us), n);
        c.buckets.push((cond.clone(), b));
    }
    Ok(())
}

async fn count_in_window(
    tx: &mut Tx<'_>,
    issue_id: i64,
    now_us: i64,
    window: Duration,
) -> Result<u64> {
    let from = now_us - window.num_microseconds().unwrap_or(i64::MAX / 2);
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE issue_id = $1 AND timestamp > $2 AND timestamp <= $3",
    )
    .bind(issue_id)
    .bind(from)
    .bind(now_us)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n as u64)
}

/// The exact figures a mute request is checked against, read before the pure check runs.
struct Volume {
    counts: Vec<(Duration, u64)>,
    event_count: u64,
}

impl Volume {
    async fn read(
        tx: &mut Tx<'_>,
        issue_id: i64,
        event_count: i64,
        req: &MuteRequest,
        now_us: i64,
    ) -> Result<Volume> {
        let mut counts = Vec::new();
        for c in &req.conditions {
            let w = c.window();
            counts.push((w, count_in_window(tx, issue_id, now_us, w).await?));
        }
        Ok(Volume {
            counts,
            event_count: event_count as u64,
        })
    }
}

impl CurrentVolume for Volume {
    fn count_in(&self, window: Duration) -> u64 {
        self.counts
            .iter()
            .find(|(w, _)| *w == window)
            .map(|c| c.1)
            .unwrap_or(0)
    }
    /// Users are only tracked while an issue is muted with a user limit (see README), so a
    /// new mute starts from zero users.
    fn users_in(&self, _window: Duration) -> u64 {
        0
    }
    fn event_count(&self) -> u64 {
        self.event_count
    }
}

/// Stores a transition: the issue's state, its history row and, when the transition alerts
/// and the project wants that alert, one outbox row per channel.
async fn persist(
    tx: &mut Tx<'_>,
    issue_id: i64,
    project_id: i64,
    t: &Transition,
    actor: Actor,
    now_us: i64,
    event: Option<&NewEvent>,
) -> Result<()> {
    let s = &t.to;
    let mute_until = s
        .mute
        .as_ref()
        .and_then(|m| m.until)
        .map(|u| u.timestamp_micros());
    sqlx::query(
        "UPDATE issues SET status = $1, substatus = $2, state = $3, mute_until = $4 WHERE id = $5",
    )
    .bind(s.status.as_str())
    .bind(&s.substatus)
    .bind(serde_json::to_string(s).unwrap_or_else(|_| "{}".into()))
    .bind(mute_until)
    .bind(issue_id)
    .execute(&mut **tx)
    .await?;
    let activity = record(tx, issue_id, t.kind.name(), actor, &t.reason, now_us).await?;
    if let Some(kind) = t.alert {
        enqueue_alert(
            tx, project_id, issue_id, kind, &t.reason, activity, event, now_us,
        )
        .await?;
    }
    Ok(())
}

async fn record(
    tx: &mut Tx<'_>,
    issue_id: i64,
    kind: &str,
    actor: Actor,
    reason: &str,
    now_us: i64,
) -> Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO issue_activity (issue_id, kind, actor, reason, created_at)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(issue_id)
    .bind(kind)
    .bind(actor_text(actor))
    .bind(reason)
    .bind(now_us)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn enqueue_alert(
    tx: &mut Tx<'_>,
    project_id: i64,
    issue_id: i64,
    kind: AlertKind,
    reason: &str,
    activity: i64,
    event: Option<&NewEvent>,
    now_us: i64,
) -> Result<()> {
    let column = match kind {
        AlertKind::NewIssue => "alert_on_new_issue",
        AlertKind::Regression => "alert_on_regression",
        AlertKind::Unmute => "alert_on_unmute",
    };
    let (on,): (bool,) = sqlx::query_as(&format!("SELECT {column} FROM projects WHERE id = $1"))
        .bind(project_id)
        .fetch_one(&mut **tx)
        .await?;
    if !on {
        return Ok(());
    }
    let payload = serde_json::json!({
        "reason": reason,
        "environment": event.and_then(|e| e.environment.clone()),
        "release": event.and_then(|e| e.release.clone()),
        "level": event.map(|e| e.seed.level),
    });
    let key = format!("{}:{issue_id}:{activity}", kind.as_str());
    alerts::enqueue(
        tx,
        project_id,
        issue_id,
        kind.as_str(),
        &key,
        &payload.to_string(),
        now_us,
    )
    .await?;
    Ok(())
}
