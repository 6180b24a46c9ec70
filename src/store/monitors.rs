//! Cron monitors in the database: check-ins recorded and planned in one transaction, the worker's claims (missed deadlines, timeouts, pending incident events and resolves), and reads.
//!
//! Every transition of a (monitor, environment) is planned by `monitor::plan::step` from its
//! row, read under a lock (PostgreSQL: `FOR UPDATE`; SQLite: the write transaction is
//! exclusive), and stored with the check-in row in the same transaction: whichever process
//! records a check-in or notices a deadline, the transition happens once. Lock order: the
//! monitor row (only a check-in carrying `monitor_config` updates it), then the monitor
//! environment row, then its check-in rows. The worker claims environments with due work with
//! `FOR UPDATE SKIP LOCKED`, so several processes split it instead of repeating it.

use super::{Db, Result, Store, StoreError, Tx};
use crate::monitor::plan::{self, Facts, Input, Thresholds};
use crate::monitor::schedule::MonitorConfig;
use crate::monitor::{event_id_for, CheckIn, Status};

#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub id: i64,
    pub project_id: i64,
    pub slug: String,
    /// The configuration as JSON text (`MonitorConfig::to_json`).
    pub config: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorEnv {
    pub id: i64,
    pub monitor_id: i64,
    pub environment: String,
    pub status: String,
    pub next_expected_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub last_checkin_at: Option<i64>,
    pub failures: i64,
    pub oks: i64,
    pub incident_open: bool,
    pub issue_id: Option<i64>,
    pub resolve_marker: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checkin {
    pub id: i64,
    pub monitor_env_id: i64,
    pub check_in_id: String,
    pub status: String,
    pub duration: Option<f64>,
    pub release: Option<String>,
    pub environment: String,
    pub trace_id: Option<String>,
    pub expected_at: Option<i64>,
    pub timeout_at: Option<i64>,
    pub received_at: i64,
    pub updated_at: i64,
    pub event_id: Option<String>,
    pub event_stored: bool,
}

/// What recording a check-in did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// No such monitor and no `monitor_config` to create it: dropped, as Sentry does.
    UnknownMonitor,
    /// The check-in named one that is already finished (a re-sent envelope): nothing changed.
    Duplicate,
    Stored {
        checkin_id: i64,
        monitor_env_id: i64,
        effects: plan::Effects,
    },
}

/// A failure waiting to become an event of its monitor's issue.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub checkin_id: i64,
    pub monitor_env_id: i64,
    pub project_id: i64,
    pub slug: String,
    pub environment: String,
    /// `missed`, `timeout` or `error`.
    pub reason: String,
    pub event_id: String,
    /// When the failure happened (µs): the event's timestamp.
    pub at: i64,
}

/// What one round of deadlines recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DueCounts {
    pub missed: usize,
    pub timeouts: usize,
}

impl DueCounts {
    pub fn total(&self) -> usize {
        self.missed + self.timeouts
    }
}

/// A recovered incident whose issue is to be resolved, claimed by one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingResolve {
    pub monitor_env_id: i64,
    pub marker: i64,
    pub issue_id: i64,
}

type MonitorRow = (i64, i64, String, String, i64, i64);
const MONITOR_COLUMNS: &str = "id, project_id, slug, config, created_at, updated_at";

fn monitor(r: MonitorRow) -> Monitor {
    Monitor {
        id: r.0,
        project_id: r.1,
        slug: r.2,
        config: r.3,
        created_at: r.4,
        updated_at: r.5,
    }
}

type EnvRow = (
    i64,
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
);
const ENV_COLUMNS: &str = "id, monitor_id, environment, status, next_expected_at, deadline_at,
    last_checkin_at, failures, oks, incident_open, issue_id, resolve_marker, created_at";

fn env(r: EnvRow) -> MonitorEnv {
    MonitorEnv {
        id: r.0,
        monitor_id: r.1,
        environment: r.2,
        status: r.3,
        next_expected_at: r.4,
        deadline_at: r.5,
        last_checkin_at: r.6,
        failures: r.7,
        oks: r.8,
        incident_open: r.9 != 0,
        issue_id: r.10,
        resolve_marker: r.11,
        created_at: r.12,
    }
}

type CheckinRow = (
    i64,
    i64,
    String,
    String,
    Option<f64>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    i64,
);
const CHECKIN_COLUMNS: &str = "id, monitor_env_id, check_in_id, status, duration, release,
    environment, trace_id, expected_at, timeout_at, received_at, updated_at, event_id,
    event_stored";

fn checkin(r: CheckinRow) -> Checkin {
    Checkin {
        id: r.0,
        monitor_env_id: r.1,
        check_in_id: r.2,
        status: r.3,
        duration: r.4,
        release: r.5,
        environment: r.6,
        trace_id: r.7,
        expected_at: r.8,
        timeout_at: r.9,
        received_at: r.10,
        updated_at: r.11,
        event_id: r.12,
        event_stored: r.13 != 0,
    }
}

fn parse_config(text: &str) -> Result<MonitorConfig> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("monitor config: {e}")))?;
    MonitorConfig::from_json(&v).map_err(|e| StoreError::Corrupt(format!("monitor config: {e}")))
}

fn thresholds(cfg: &MonitorConfig) -> Thresholds {
    Thresholds {
        failure_issue_threshold: cfg.failure_issue_threshold,
        recovery_threshold: cfg.recovery_threshold,
    }
}

fn facts(e: &MonitorEnv) -> Facts {
    Facts {
        failures: u32::try_from(e.failures.max(0)).unwrap_or(u32::MAX),
        oks: u32::try_from(e.oks.max(0)).unwrap_or(u32::MAX),
        incident_open: e.incident_open,
    }
}

/// `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose write transaction is exclusive.
fn for_update(tx: &Tx<'_>) -> &'static str {
    match tx {
        Db::Sqlite(_) => "",
        Db::Postgres(_) => "FOR UPDATE",
    }
}

async fn lock_env(tx: &mut Tx<'_>, id: i64) -> Result<MonitorEnv> {
    let sql = format!(
        "SELECT {ENV_COLUMNS} FROM monitor_environments WHERE id = $1 {}",
        for_update(tx)
    );
    let row: EnvRow = on!(tx, t => sqlx::query_as(&sql).bind(id).fetch_one(&mut **t).await)?;
    Ok(env(row))
}

/// Stores one planned input: the environment's new facts and status, the failure's event id,
/// the resolve marker. `next` (expected time, deadline) moves the schedule when given;
/// `arrived_at` is a real check-in's arrival (none for a missed one or a timeout).
#[allow(clippy::too_many_arguments)]
async fn apply(
    tx: &mut Tx<'_>,
    e: &MonitorEnv,
    input: Input,
    effects: &plan::Effects,
    checkin_id: i64,
    project_id: i64,
    next: Option<(Option<i64>, Option<i64>)>,
    arrived_at: Option<i64>,
    now_us: i64,
) -> Result<()> {
    let (next_expected, deadline) = next.unwrap_or((e.next_expected_at, e.deadline_at));
    let resolve_marker = if effects.resolve_incident {
        Some(checkin_id)
    } else {
        e.resolve_marker
    };
    let status = plan::status(&effects.facts, input);
    on!(tx, t => sqlx::query(
        "UPDATE monitor_environments SET status = $1, next_expected_at = $2, deadline_at = $3,
             last_checkin_at = COALESCE($4, last_checkin_at), failures = $5, oks = $6,
             incident_open = $7, resolve_marker = $8
         WHERE id = $9",
    )
    .bind(status)
    .bind(next_expected)
    .bind(deadline)
    .bind(arrived_at)
    .bind(i64::from(effects.facts.failures))
    .bind(i64::from(effects.facts.oks))
    .bind(i64::from(effects.facts.incident_open))
    .bind(resolve_marker)
    .bind(e.id)
    .execute(&mut **t)
    .await.map(|_| ()))?;
    if effects.failure_event {
        let id = event_id_for(project_id, checkin_id).simple().to_string();
        on!(tx, t => sqlx::query(
            "UPDATE monitor_checkins SET event_id = $1, event_stored = 0, updated_at = $2
             WHERE id = $3",
        )
        .bind(id)
        .bind(now_us)
        .bind(checkin_id)
        .execute(&mut **t)
        .await.map(|_| ()))?;
    }
    Ok(())
}

/// The expected time after `t` and its deadline (expected + margin).
fn next_times(cfg: &MonitorConfig, t: i64) -> (Option<i64>, Option<i64>) {
    let next = cfg.next_after(t);
    (next, next.map(|n| n.saturating_add(cfg.margin_us())))
}

#[allow(clippy::too_many_arguments)]
async fn insert_checkin(
    tx: &mut Tx<'_>,
    env_id: i64,
    check_in_id: &str,
    status: &str,
    c: Option<&CheckIn>,
    environment: &str,
    expected_at: Option<i64>,
    timeout_at: Option<i64>,
    now_us: i64,
) -> Result<i64> {
    let (id,): (i64,) = on!(tx, t => sqlx::query_as(
        "INSERT INTO monitor_checkins (monitor_env_id, check_in_id, status, duration, release,
             environment, trace_id, expected_at, timeout_at, received_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
    )
    .bind(env_id)
    .bind(check_in_id)
    .bind(status)
    .bind(c.and_then(|c| c.duration))
    .bind(c.and_then(|c| c.release.clone()))
    .bind(environment)
    .bind(c.and_then(|c| c.trace_id.clone()))
    .bind(expected_at)
    .bind(timeout_at)
    .bind(now_us)
    .fetch_one(&mut **t)
    .await)?;
    Ok(id)
}

impl Store {
    /// Records a check-in of `project_id`: creates or updates the monitor when it carries
    /// `monitor_config`, creates its environment on first use, and stores the check-in with
    /// what it means (counters, incident, next deadline) in one transaction.
    pub async fn record_checkin(
        &self,
        project_id: i64,
        c: &CheckIn,
        now_us: i64,
    ) -> Result<Recorded> {
        let mut attempt = 0;
        loop {
            match self.try_record_checkin(project_id, c, now_us).await {
                Err(e) if e.is_retryable() && attempt < 8 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_record_checkin(
        &self,
        project_id: i64,
        c: &CheckIn,
        now_us: i64,
    ) -> Result<Recorded> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let row: Option<(i64, String)> = match &c.monitor_config {
            Some(cfg) => {
                let text = cfg.to_json().to_string();
                on!(&mut tx, t => sqlx::query_as(
                    "INSERT INTO monitors (project_id, slug, config, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $4)
                     ON CONFLICT (project_id, slug) DO UPDATE
                         SET config = excluded.config, updated_at = excluded.updated_at
                     RETURNING id, config",
                )
                .bind(project_id)
                .bind(&c.monitor_slug)
                .bind(text)
                .bind(now_us)
                .fetch_optional(&mut **t)
                .await)?
            }
            None => on!(&mut tx, t => sqlx::query_as(
                "SELECT id, config FROM monitors WHERE project_id = $1 AND slug = $2",
            )
            .bind(project_id)
            .bind(&c.monitor_slug)
            .fetch_optional(&mut **t)
            .await)?,
        };
        let Some((monitor_id, config)) = row else {
            return Ok(Recorded::UnknownMonitor);
        };
        let cfg = parse_config(&config)?;
        on!(&mut tx, t => sqlx::query(
            "INSERT INTO monitor_environments (monitor_id, environment, created_at)
             VALUES ($1, $2, $3) ON CONFLICT (monitor_id, environment) DO NOTHING",
        )
        .bind(monitor_id)
        .bind(&c.environment)
        .bind(now_us)
        .execute(&mut **t)
        .await.map(|_| ()))?;
        let sql = format!(
            "SELECT {ENV_COLUMNS} FROM monitor_environments
             WHERE monitor_id = $1 AND environment = $2 {}",
            for_update(&tx)
        );
        let e: EnvRow = on!(&mut tx, t => sqlx::query_as(&sql)
            .bind(monitor_id)
            .bind(&c.environment)
            .fetch_one(&mut **t)
            .await)?;
        let e = env(e);

        // The check-in this one continues: the one with its id, or for the nil id the latest
        // still in progress.
        let existing: Option<(i64, String, i64)> = match &c.check_in_id {
            Some(id) => on!(&mut tx, t => sqlx::query_as(
                "SELECT id, status, received_at FROM monitor_checkins
                 WHERE monitor_env_id = $1 AND check_in_id = $2 ORDER BY id DESC LIMIT 1",
            )
            .bind(e.id)
            .bind(id.simple().to_string())
            .fetch_optional(&mut **t)
            .await)?,
            None => on!(&mut tx, t => sqlx::query_as(
                "SELECT id, status, received_at FROM monitor_checkins
                 WHERE monitor_env_id = $1 AND status = 'in_progress' ORDER BY id DESC LIMIT 1",
            )
            .bind(e.id)
            .fetch_optional(&mut **t)
            .await)?,
        };
        let input = c.status.input();
        let effects = plan::step(&facts(&e), input, &thresholds(&cfg));
        let checkin_id = match existing {
            Some((_, status, _)) if status != "in_progress" => {
                // Finished already (or marked timed out): a re-send changes nothing.
                return Ok(Recorded::Duplicate);
            }
            Some((id, _, _)) if c.status == Status::InProgress => {
                on!(&mut tx, t => sqlx::query(
                    "UPDATE monitor_checkins SET updated_at = $1 WHERE id = $2",
                )
                .bind(now_us)
                .bind(id)
                .execute(&mut **t)
                .await.map(|_| ()))?;
                tx.commit().await?;
                return Ok(Recorded::Duplicate);
            }
            Some((id, _, started)) => {
                // The job finished: its duration is what it says, or the time since it began.
                let duration = c
                    .duration
                    .unwrap_or(now_us.saturating_sub(started) as f64 / 1e6);
                on!(&mut tx, t => sqlx::query(
                    "UPDATE monitor_checkins SET status = $1, duration = $2,
                         release = COALESCE($3, release), trace_id = COALESCE($4, trace_id),
                         timeout_at = NULL, updated_at = $5
                     WHERE id = $6",
                )
                .bind(input.status())
                .bind(duration)
                .bind(&c.release)
                .bind(&c.trace_id)
                .bind(now_us)
                .bind(id)
                .execute(&mut **t)
                .await.map(|_| ()))?;
                apply(
                    &mut tx,
                    &e,
                    input,
                    &effects,
                    id,
                    project_id,
                    None,
                    Some(now_us),
                    now_us,
                )
                .await?;
                id
            }
            None => {
                let uuid = c.check_in_id.unwrap_or_else(uuid::Uuid::new_v4);
                let timeout_at = (c.status == Status::InProgress)
                    .then(|| now_us.saturating_add(cfg.max_runtime_us()));
                let id = insert_checkin(
                    &mut tx,
                    e.id,
                    &uuid.simple().to_string(),
                    input.status(),
                    Some(c),
                    &c.environment,
                    e.next_expected_at,
                    timeout_at,
                    now_us,
                )
                .await?;
                // A new check-in is the expected one: the next is due after it.
                let next = next_times(&cfg, now_us);
                apply(
                    &mut tx,
                    &e,
                    input,
                    &effects,
                    id,
                    project_id,
                    Some(next),
                    Some(now_us),
                    now_us,
                )
                .await?;
                id
            }
        };
        tx.commit().await?;
        Ok(Recorded::Stored {
            checkin_id,
            monitor_env_id: e.id,
            effects,
        })
    }

    /// One round of the worker's deadlines: claims up to `limit` monitor environments with a
    /// passed deadline (expected time + margin) or a check-in in progress past its
    /// `max_runtime`, and records each missed check-in and timeout, in time order, in one
    /// transaction. Returns how many transitions were recorded. On PostgreSQL the claim skips
    /// rows another process holds, and re-reads the row under its lock, so each missed
    /// check-in is recorded once whatever the number of processes.
    pub async fn monitor_deadlines(&self, now_us: i64, limit: i64) -> Result<DueCounts> {
        let mut attempt = 0;
        loop {
            match self.try_monitor_deadlines(now_us, limit).await {
                Err(e) if e.is_retryable() && attempt < 8 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn try_monitor_deadlines(&self, now_us: i64, limit: i64) -> Result<DueCounts> {
        // Most rounds find nothing: a read says so without taking SQLite's write lock (the
        // ingest writer's) or opening a transaction.
        let due: Option<(i64,)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id FROM monitor_environments WHERE deadline_at <= $1
             UNION ALL
             SELECT monitor_env_id FROM monitor_checkins
             WHERE status = 'in_progress' AND timeout_at <= $1
             LIMIT 1",
        )
        .bind(now_us)
        .fetch_optional(p)
        .await)?;
        if due.is_none() {
            return Ok(DueCounts::default());
        }
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let lock = match tx {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "SELECT id FROM monitor_environments
             WHERE deadline_at <= $1
                OR id IN (SELECT monitor_env_id FROM monitor_checkins
                          WHERE status = 'in_progress' AND timeout_at <= $1)
             ORDER BY id LIMIT $2 {lock}"
        );
        let ids: Vec<(i64,)> = on!(&mut tx, t => sqlx::query_as(&sql)
            .bind(now_us)
            .bind(limit)
            .fetch_all(&mut **t)
            .await)?;
        let mut done = DueCounts::default();
        for (id,) in ids {
            due_for_env(&mut tx, id, now_us, &mut done).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Failures waiting to become events, oldest first. A failure recorded after a recovery
    /// whose resolve is not applied yet waits for it, so that the new streak reopens the
    /// resolved issue instead of landing in the one being resolved.
    pub async fn pending_monitor_events(&self, limit: i64) -> Result<Vec<PendingEvent>> {
        type Row = (i64, i64, i64, String, String, String, String, i64);
        let rows: Vec<Row> = on!(&self.read, p => sqlx::query_as(
            "SELECT c.id, c.monitor_env_id, m.project_id, m.slug, e.environment, c.status,
                    c.event_id, c.updated_at
             FROM monitor_checkins c
             JOIN monitor_environments e ON e.id = c.monitor_env_id
             JOIN monitors m ON m.id = e.monitor_id
             WHERE c.event_id IS NOT NULL AND c.event_stored = 0
               AND (e.resolve_marker IS NULL OR c.id < e.resolve_marker)
             ORDER BY c.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|r| PendingEvent {
                checkin_id: r.0,
                monitor_env_id: r.1,
                project_id: r.2,
                slug: r.3,
                environment: r.4,
                reason: r.5,
                event_id: r.6,
                at: r.7,
            })
            .collect())
    }

    /// Notes that a failure's event is stored (in `issue_id`). Environment row first, as
    /// every transaction here locks it before its check-ins.
    pub async fn monitor_event_stored(&self, ev: &PendingEvent, issue_id: i64) -> Result<()> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        on!(&mut tx, t => sqlx::query("UPDATE monitor_environments SET issue_id = $1 WHERE id = $2")
            .bind(issue_id)
            .bind(ev.monitor_env_id)
            .execute(&mut **t)
            .await.map(|_| ()))?;
        on!(&mut tx, t => sqlx::query("UPDATE monitor_checkins SET event_stored = 1 WHERE id = $1")
            .bind(ev.checkin_id)
            .execute(&mut **t)
            .await.map(|_| ()))?;
        tx.commit().await?;
        Ok(())
    }

    /// Claims recovered incidents whose issue is to be resolved (every failure before the
    /// recovery stored), for `claimer` until `lease_until`: one process applies each, and
    /// another takes it over when the lease ends (a crash between the resolve and
    /// `monitor_resolved` then resolves an already resolved issue: a no-op).
    pub async fn claim_monitor_resolves(
        &self,
        claimer: &str,
        now_us: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<PendingResolve>> {
        let any: Option<(i64,)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id FROM monitor_environments WHERE resolve_marker IS NOT NULL LIMIT 1",
        )
        .fetch_optional(p)
        .await)?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let lock = match self.write {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE monitor_environments SET resolve_lease = $1, claimed_by = $2
             WHERE id IN (
                 SELECT e.id FROM monitor_environments e
                 WHERE e.resolve_marker IS NOT NULL AND e.issue_id IS NOT NULL
                   AND (e.resolve_lease IS NULL OR e.resolve_lease <= $3)
                   AND NOT EXISTS (SELECT 1 FROM monitor_checkins c
                                   WHERE c.monitor_env_id = e.id AND c.event_id IS NOT NULL
                                     AND c.event_stored = 0 AND c.id < e.resolve_marker)
                 ORDER BY e.id LIMIT $4 {lock})
             RETURNING id, resolve_marker, issue_id"
        );
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = on!(&self.write, p => sqlx::query_as(&sql)
            .bind(lease_until)
            .bind(claimer)
            .bind(now_us)
            .bind(limit)
            .fetch_all(p)
            .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, marker, issue)| {
                Some(PendingResolve {
                    monitor_env_id: id,
                    marker: marker?,
                    issue_id: issue?,
                })
            })
            .collect())
    }

    /// The resolve of `r` is applied: forget it (only if it is still the same recovery).
    pub async fn monitor_resolved(&self, r: &PendingResolve) -> Result<()> {
        on!(&self.write, p => sqlx::query(
            "UPDATE monitor_environments SET resolve_marker = NULL, resolve_lease = NULL
             WHERE id = $1 AND resolve_marker = $2",
        )
        .bind(r.monitor_env_id)
        .bind(r.marker)
        .execute(p)
        .await.map(|_| ()))?;
        Ok(())
    }

    // --- reads ---------------------------------------------------------------------------

    pub async fn monitors(&self, project_id: i64) -> Result<Vec<Monitor>> {
        let rows: Vec<MonitorRow> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {MONITOR_COLUMNS} FROM monitors WHERE project_id = $1 ORDER BY slug"
        ))
        .bind(project_id)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(monitor).collect())
    }

    pub async fn monitor_by_slug(&self, project_id: i64, slug: &str) -> Result<Option<Monitor>> {
        let row: Option<MonitorRow> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {MONITOR_COLUMNS} FROM monitors WHERE project_id = $1 AND slug = $2"
        ))
        .bind(project_id)
        .bind(slug)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(monitor))
    }

    pub async fn monitor_envs(&self, monitor_id: i64) -> Result<Vec<MonitorEnv>> {
        let rows: Vec<EnvRow> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {ENV_COLUMNS} FROM monitor_environments WHERE monitor_id = $1
             ORDER BY environment"
        ))
        .bind(monitor_id)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(env).collect())
    }

    /// A monitor's check-ins in every environment, newest first.
    pub async fn monitor_checkins(&self, monitor_id: i64, limit: i64) -> Result<Vec<Checkin>> {
        let rows: Vec<CheckinRow> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {CHECKIN_COLUMNS} FROM monitor_checkins
             WHERE monitor_env_id IN (SELECT id FROM monitor_environments WHERE monitor_id = $1)
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(monitor_id)
        .bind(limit)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(checkin).collect())
    }
}

/// At most this many transitions per environment and round: a monitor whose deadlines fell
/// far behind (a server down for days) catches up over several rounds.
const MAX_STEPS_PER_ENV: usize = 100;

/// Records the due missed check-ins and timeouts of one claimed environment, in time order.
async fn due_for_env(
    tx: &mut Tx<'_>,
    env_id: i64,
    now_us: i64,
    counts: &mut DueCounts,
) -> Result<()> {
    let mut e = lock_env(tx, env_id).await?;
    let (project_id, config): (i64, String) = on!(tx, t => sqlx::query_as(
        "SELECT project_id, config FROM monitors WHERE id = $1",
    )
    .bind(e.monitor_id)
    .fetch_one(&mut **t)
    .await)?;
    let cfg = parse_config(&config)?;
    let mut done = 0;
    while done < MAX_STEPS_PER_ENV {
        let timeout: Option<(i64, i64)> = on!(tx, t => sqlx::query_as(
            "SELECT id, timeout_at FROM monitor_checkins
             WHERE monitor_env_id = $1 AND status = 'in_progress' AND timeout_at <= $2
             ORDER BY timeout_at, id LIMIT 1",
        )
        .bind(e.id)
        .bind(now_us)
        .fetch_optional(&mut **t)
        .await)?;
        let deadline = e.deadline_at.filter(|d| *d <= now_us);
        let (input, checkin_id, next) = match (timeout, deadline) {
            (Some((id, at)), d) if d.is_none_or(|d| at <= d) => {
                on!(tx, t => sqlx::query(
                    "UPDATE monitor_checkins SET status = 'timeout', updated_at = $1 WHERE id = $2",
                )
                .bind(at)
                .bind(id)
                .execute(&mut **t)
                .await.map(|_| ()))?;
                counts.timeouts += 1;
                (Input::Timeout, id, None)
            }
            (_, Some(d)) => {
                let expected = e.next_expected_at;
                let id = insert_checkin(
                    tx,
                    e.id,
                    &uuid::Uuid::new_v4().simple().to_string(),
                    "missed",
                    None,
                    &e.environment,
                    expected,
                    None,
                    d,
                )
                .await?;
                // The next expected time follows the missed one; without one (a legacy row)
                // it follows the deadline.
                let next = next_times(&cfg, expected.unwrap_or(d));
                // Never stand still: a deadline that does not move would repeat forever.
                let next = match next {
                    (_, Some(nd)) if nd > d => next,
                    _ => (None, None),
                };
                counts.missed += 1;
                (Input::Missed, id, Some(next))
            }
            _ => break,
        };
        let effects = plan::step(&facts(&e), input, &thresholds(&cfg));
        apply(
            tx, &e, input, &effects, checkin_id, project_id, next, None, now_us,
        )
        .await?;
        e = lock_env(tx, env_id).await?;
        done += 1;
    }
    Ok(())
}
