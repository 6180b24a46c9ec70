//! The reads `/health` and `/readyz` make: a probe of the database, the migrations applied, and the backlog of the delivery queues (alert outbox, responder runs).

use super::{migrate, Db, Result, Store};
use sqlx::Connection;

/// The newest migration applied and the newest this binary knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrations {
    pub applied: i64,
    pub known: i64,
}

impl Migrations {
    /// Migrations apply in order, so the newest applied tells whether all are.
    pub fn complete(&self) -> bool {
        self.applied >= self.known
    }
}

/// A delivery queue whose backlog `/health` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// `alert_outbox`: a given-up row has `status = 'failed'` and its `next_attempt_at` is
    /// when it was given up.
    Alerts,
    /// `responder_runs`: a given-up run has `status = 'failed'` and `done_at`.
    Actions,
}

/// What is due and what failed in one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Pending rows due now (`next_attempt_at <= now`; a claimed row's lease puts it later).
    pub due: i64,
    /// When the oldest of them was due (µs).
    pub oldest_due_us: Option<i64>,
    /// Rows given up since the `since` passed in.
    pub failed_since: i64,
}

const MIGRATIONS: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";

impl Store {
    /// Reaches the database the way a new connection would and reads its migrations.
    ///
    /// On SQLite this opens the file afresh, read-only, each time: a pooled connection keeps
    /// its file descriptor and goes on answering after the file was moved, deleted or made
    /// unreadable, which is exactly what this must notice. On PostgreSQL the pool is the
    /// way in (it tests a connection before lending it and reconnects by itself).
    pub async fn probe(&self) -> Result<Migrations> {
        let applied: i64 = match &self.read {
            Db::Sqlite(pool) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(pool.connect_options().get_filename())
                    .read_only(true)
                    .create_if_missing(false)
                    .busy_timeout(std::time::Duration::from_secs(1));
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
                let applied = sqlx::query_scalar(MIGRATIONS).fetch_one(&mut conn).await;
                let _ = conn.close().await;
                applied?
            }
            Db::Postgres(pool) => sqlx::query_scalar(MIGRATIONS).fetch_one(pool).await?,
        };
        Ok(Migrations {
            applied,
            known: migrate::latest(self.backend()),
        })
    }

    /// The migrations applied, read through the pool (readiness).
    pub async fn migrations(&self) -> Result<Migrations> {
        let applied: i64 = on!(&self.read, p => sqlx::query_scalar(MIGRATIONS).fetch_one(p).await)?;
        Ok(Migrations {
            applied,
            known: migrate::latest(self.backend()),
        })
    }

    /// The backlog of `queue` at `now_us`, with the failures since `since_us`.
    pub async fn backlog(&self, queue: Queue, now_us: i64, since_us: i64) -> Result<Backlog> {
        let sql = match queue {
            Queue::Alerts => {
                "SELECT (SELECT COUNT(*) FROM alert_outbox
                         WHERE status = 'pending' AND next_attempt_at <= $1),
                        (SELECT MIN(next_attempt_at) FROM alert_outbox
                         WHERE status = 'pending' AND next_attempt_at <= $1),
                        (SELECT COUNT(*) FROM alert_outbox
                         WHERE status = 'failed' AND next_attempt_at >= $2)"
            }
            Queue::Actions => {
                "SELECT (SELECT COUNT(*) FROM responder_runs
                         WHERE status = 'pending' AND next_attempt_at <= $1),
                        (SELECT MIN(next_attempt_at) FROM responder_runs
                         WHERE status = 'pending' AND next_attempt_at <= $1),
                        (SELECT COUNT(*) FROM responder_runs
                         WHERE status = 'failed' AND done_at >= $2)"
            }
        };
        let (due, oldest_due_us, failed_since): (i64, Option<i64>, i64) = on!(&self.read, p => sqlx::query_as(sql)
                .bind(now_us)
                .bind(since_us)
                .fetch_one(p)
                .await)?;
        Ok(Backlog {
            due,
            oldest_due_us,
            failed_since,
        })
    }
}
