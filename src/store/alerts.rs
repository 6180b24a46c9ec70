//! Alert channels per project and the durable outbox alerts are delivered from.
//!
//! An alert is written in the same transaction as the transition that caused it (one outbox
//! row per channel of the project), then a worker claims due rows with a lease, delivers them
//! and records each attempt. A claim is an UPDATE of `next_attempt_at`, so two workers (or two
//! processes later) never deliver the same row at the same time.

use super::{Db, Result, Store, Tx};

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub id: i64,
    pub project_id: i64,
    /// `webhook`, `slack` or `email`.
    pub kind: String,
    /// Kind-specific settings (`{"url", "secret"}`, `{"url"}`, `{"to": [...]}`) as JSON text.
    pub config: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub channel_id: i64,
    pub issue_id: i64,
    pub kind: String,
    pub idempotency_key: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    /// The process holding (or last holding) the row's lease.
    pub claimed_by: Option<String>,
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Delivered {
        status: Option<i64>,
    },
    /// Failed; try again at `next_at` (µs).
    Retry {
        status: Option<i64>,
        error: String,
        next_at: i64,
    },
    /// Failed for the last time.
    GaveUp {
        status: Option<i64>,
        error: String,
    },
}

type ChannelRow = (i64, i64, String, String, i64);
type Row = (
    i64,
    i64,
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
);

const OUTBOX_COLUMNS: &str = "id, channel_id, issue_id, kind, idempotency_key, payload, status,
    attempts, next_attempt_at, last_status, last_error, created_at, delivered_at, claimed_by";

fn channel(r: ChannelRow) -> Channel {
    Channel {
        id: r.0,
        project_id: r.1,
        kind: r.2,
        config: r.3,
        created_at: r.4,
    }
}

fn outbox(r: Row) -> OutboxRow {
    OutboxRow {
        id: r.0,
        channel_id: r.1,
        issue_id: r.2,
        kind: r.3,
        idempotency_key: r.4,
        payload: r.5,
        status: r.6,
        attempts: r.7,
        next_attempt_at: r.8,
        last_status: r.9,
        last_error: r.10,
        created_at: r.11,
        delivered_at: r.12,
        claimed_by: r.13,
    }
}

impl Store {
    pub async fn create_channel(
        &self,
        project_id: i64,
        kind: &str,
        config: &str,
        now_us: i64,
    ) -> Result<Channel> {
        let row: ChannelRow = on!(&self.write, p => sqlx::query_as(
            "INSERT INTO alert_channels (project_id, kind, config, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id, project_id, kind, config, created_at",
        )
        .bind(project_id)
        .bind(kind)
        .bind(config)
        .bind(now_us)
        .fetch_one(p)
        .await)?;
        Ok(channel(row))
    }

    pub async fn channels(&self, project_id: i64) -> Result<Vec<Channel>> {
        let rows: Vec<ChannelRow> = on!(&self.read, p => sqlx::query_as(
            "SELECT id, project_id, kind, config, created_at FROM alert_channels
             WHERE project_id = $1 ORDER BY id",
        )
        .bind(project_id)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(channel).collect())
    }

    pub async fn channel(&self, id: i64) -> Result<Option<Channel>> {
        let row: Option<ChannelRow> = on!(&self.read, p => sqlx::query_as(
            "SELECT id, project_id, kind, config, created_at FROM alert_channels WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(channel))
    }

    /// Removes a channel of a project; false when there was none.
    pub async fn delete_channel(&self, project_id: i64, id: i64) -> Result<bool> {
        let done = on!(&self.write, p => sqlx::query("DELETE FROM alert_channels WHERE id = $1 AND project_id = $2")
            .bind(id)
            .bind(project_id)
            .execute(p)
            .await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Claims up to `limit` due alerts for `claimer` (this process): each claimed row is
    /// hidden from other claimers until `lease_until` (µs), by which time its attempt has been
    /// recorded. A process that dies holding rows loses them when the lease ends, and any
    /// process takes them over. On PostgreSQL the rows are picked with `FOR UPDATE SKIP
    /// LOCKED`, so concurrent claimers never pick the same row; SQLite's write lock serializes
    /// claimers anyway.
    pub async fn claim_due_alerts(
        &self,
        claimer: &str,
        now_us: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxRow>> {
        let lock = match self.write {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE alert_outbox SET next_attempt_at = $1, claimed_by = $4
             WHERE id IN (SELECT id FROM alert_outbox
                          WHERE status = 'pending' AND next_attempt_at <= $2
                          ORDER BY next_attempt_at, id LIMIT $3 {lock})
             RETURNING {OUTBOX_COLUMNS}"
        );
        let rows: Vec<Row> = on!(&self.write, p => sqlx::query_as(&sql)
            .bind(lease_until)
            .bind(now_us)
            .bind(limit)
            .bind(claimer)
            .fetch_all(p)
            .await)?;
        let mut out: Vec<OutboxRow> = rows.into_iter().map(outbox).collect();
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Records one delivery attempt of a claimed outbox row, if the claim still holds (same
    /// claimer, lease not taken over); returns false when another process has the row now.
    pub async fn record_attempt(
        &self,
        claimed: &OutboxRow,
        attempt: &Attempt,
        now_us: i64,
    ) -> Result<bool> {
        let (status, http_status, error, next_at, delivered_at) = match attempt {
            Attempt::Delivered { status } => ("delivered", *status, None, now_us, Some(now_us)),
            Attempt::Retry {
                status,
                error,
                next_at,
            } => ("pending", *status, Some(error.as_str()), *next_at, None),
            Attempt::GaveUp { status, error } => {
                ("failed", *status, Some(error.as_str()), now_us, None)
            }
        };
        let done = on!(&self.write, p => sqlx::query(
            "UPDATE alert_outbox SET status = $1, attempts = attempts + 1, last_status = $2,
                 last_error = $3, next_attempt_at = $4, delivered_at = $5
             WHERE id = $6 AND next_attempt_at = $7 AND claimed_by IS NOT DISTINCT FROM $8",
        )
        .bind(status)
        .bind(http_status)
        .bind(error)
        .bind(next_at)
        .bind(delivered_at)
        .bind(claimed.id)
        .bind(claimed.next_attempt_at)
        .bind(&claimed.claimed_by)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// The delivery log of a project, newest first.
    pub async fn alert_log(&self, project_id: i64, limit: i64) -> Result<Vec<OutboxRow>> {
        let rows: Vec<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM alert_outbox
             WHERE channel_id IN (SELECT id FROM alert_channels WHERE project_id = $1)
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(project_id)
        .bind(limit)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(outbox).collect())
    }

    /// Writes one alert per channel of the project in a transaction of its own (see `enqueue`).
    pub async fn enqueue_alert(
        &self,
        project_id: i64,
        issue_id: i64,
        kind: &str,
        key: &str,
        payload: &str,
        now_us: i64,
    ) -> Result<u64> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let n = enqueue(&mut tx, project_id, issue_id, kind, key, payload, now_us).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The alerts written for one issue, oldest first.
    pub async fn issue_alerts(&self, issue_id: i64) -> Result<Vec<OutboxRow>> {
        let rows: Vec<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM alert_outbox WHERE issue_id = $1 ORDER BY id"
        ))
        .bind(issue_id)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(outbox).collect())
    }
}

/// Writes one alert for every channel of the project, inside the caller's transaction, when
/// the project has this kind of alert switched on. `key` identifies the transition (e.g.
/// `unmute:42:17`); each row's idempotency key adds the channel, and a repeated key is
/// ignored, so writing the same transition twice sends once.
pub async fn enqueue(
    tx: &mut Tx<'_>,
    project_id: i64,
    issue_id: i64,
    kind: &str,
    key: &str,
    payload: &str,
    now_us: i64,
) -> Result<u64> {
    let switch = match kind {
        "new_issue" => "p.alert_on_new_issue",
        "regression" => "p.alert_on_regression",
        "unmute" => "p.alert_on_unmute",
        _ => "TRUE",
    };
    let sql = format!(
        "INSERT INTO alert_outbox (channel_id, issue_id, kind, idempotency_key, payload,
                                   next_attempt_at, created_at)
         SELECT c.id, $1, $2, $3 || ':' || c.id, $4, $5, $5
         FROM alert_channels c JOIN projects p ON p.id = c.project_id
         WHERE c.project_id = $6 AND {switch}
         ON CONFLICT (idempotency_key) DO NOTHING"
    );
    let done = on!(tx, t => sqlx::query(&sql)
        .bind(issue_id)
        .bind(kind)
        .bind(key)
        .bind(payload)
        .bind(now_us)
        .bind(project_id)
        .execute(&mut **t)
        .await.map(|r| r.rows_affected()))?;
    Ok(done)
}
