//! The only module that knows SQL: one `Store` over embedded SQLite or PostgreSQL.
//!
//! The backend is chosen by the URL (`sqlite://PATH`, `postgres://...`). Queries that read the
//! same in both dialects are written once and run on either through `on!`; where the dialects
//! differ, both versions sit next to each other in the same function. SQLite has one writer:
//! the ingest writer holds one connection of a small write pool, and the rare other writes
//! (people's changes, settings, the outbox) wait for SQLite's lock. PostgreSQL has one pool;
//! several writer tasks, in several processes, commit batches concurrently under row locks.

/// Runs one expression on whichever backend `$db` is (a pool, a connection or a
/// transaction): the same tokens compile once per dialect.
macro_rules! on {
    ($db:expr, $x:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($x) => $body,
            $crate::store::Db::Postgres($x) => $body,
        }
    };
}

pub mod alerts;
pub mod events;
pub mod grouping;
pub mod health;
pub mod ingest;
pub mod issues;
pub mod keys;
pub mod lifecycle;
pub mod merge;
pub mod migrate;
pub mod monitors;
pub mod projects;
pub mod purge;
pub mod quotas;
pub mod responders;
pub mod retention;
pub mod tags;
pub mod tokens;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("unsupported database URL '{0}': use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A batch followed a cached hash link to an issue that has since been merged into
    /// another: the writer forgets its links and runs the batch again.
    #[error("a hash link in the writer's cache names a merged issue")]
    StaleLinks,
}

impl StoreError {
    /// A deadlock or serialization failure: the transaction was rolled back and running it
    /// again can succeed (PostgreSQL's SQLSTATE 40P01 and 40001).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

impl StoreError {
    /// The connection itself is gone (closed by the server, reset, an administrator's
    /// termination): a fresh connection can succeed at once.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Io(_) | sqlx::Error::Protocol(_)) => true,
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code();
                let code = code.as_deref().unwrap_or("");
                // admin_shutdown, crash_shutdown, cannot_connect_now; connection exceptions.
                matches!(code, "57P01" | "57P02" | "57P03") || code.starts_with("08")
            }
            _ => false,
        }
    }

    /// A failure of the storage rather than of the data: disk full, I/O error, a lock held
    /// too long, a lost or refused connection, a server shutting down. Every statement would
    /// fail the same way for now, so a batch is refused as a whole and retried later, instead
    /// of row by row. Only errors about the data itself (SQLite's constraint, size and type
    /// errors; PostgreSQL's classes 22 and 23) are not.
    pub fn is_storage_fault(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code();
                let code = code.as_deref().unwrap_or("");
                match e.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                    // Primary result codes: 18 too big, 19 constraint, 20 mismatch, 25 range.
                    Some(_) => {
                        let primary = code.parse::<i32>().map_or(0, |c| c & 0xff);
                        !matches!(primary, 18 | 19 | 20 | 25)
                    }
                    None => !(code.starts_with("22") || code.starts_with("23")),
                }
            }
            StoreError::Db(sqlx::Error::RowNotFound | sqlx::Error::ColumnNotFound(_)) => false,
            StoreError::Db(sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) => false,
            StoreError::Db(_) => true,
            StoreError::UnsupportedUrl(_)
            | StoreError::Conflict(_)
            | StoreError::Corrupt(_)
            | StoreError::StaleLinks => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One value per backend: pools, connections, transactions.
#[derive(Debug, Clone)]
pub enum Db<S, P> {
    Sqlite(S),
    Postgres(P),
}

pub type Pool = Db<SqlitePool, PgPool>;
pub type Tx<'c> = Db<sqlx::Transaction<'c, Sqlite>, sqlx::Transaction<'c, Postgres>>;
pub type Conn = Db<sqlx::pool::PoolConnection<Sqlite>, sqlx::pool::PoolConnection<Postgres>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// Connection settings; the defaults suit a 2-core machine.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL: connections per process (writers, people's changes, workers and reads).
    pub pg_pool: u32,
    /// How long a statement waits for a lock another session holds before it fails (SQLite's
    /// busy timeout, PostgreSQL's `lock_timeout`); a batch that fails so is answered 503.
    pub lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pg_pool: 10,
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// The database: a read pool and a write pool (one and the same pool on PostgreSQL).
#[derive(Clone, Debug)]
pub struct Store {
    read: Pool,
    write: Pool,
    /// What retention learned about projects' count limits between its steps.
    retention: retention::Memo,
}

impl<'c> Tx<'c> {
    pub async fn commit(self) -> Result<()> {
        on!(self, t => t.commit().await?);
        Ok(())
    }
}

impl Conn {
    /// A write transaction: on SQLite `BEGIN IMMEDIATE` takes the write lock up front, so a
    /// read early in the transaction can never be invalidated by another connection's write
    /// (SQLITE_BUSY_SNAPSHOT); on PostgreSQL, READ COMMITTED plus explicit row locks.
    pub async fn begin_write(&mut self) -> Result<Tx<'_>> {
        Ok(match self {
            Db::Sqlite(c) => {
                Db::Sqlite(sqlx::Connection::begin_with(&mut **c, "BEGIN IMMEDIATE").await?)
            }
            Db::Postgres(c) => Db::Postgres(sqlx::Connection::begin(&mut **c).await?),
        })
    }
}

impl Store {
    /// Opens (creating if missing) the database named by `url` and applies the migrations.
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with(url, &StoreOptions::default()).await
    }

    pub async fn open_with(url: &str, opts: &StoreOptions) -> Result<Store> {
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => Store::open_sqlite(url, opts).await,
            Some(Backend::Postgres) => Store::open_postgres(url, opts).await,
            None => Err(StoreError::UnsupportedUrl(crate::config::redact_url(url))),
        }
    }

    async fn open_postgres(url: &str, opts: &StoreOptions) -> Result<Store> {
        // A lock held too long (another session, a stuck migration) fails the statement after
        // this, as SQLite's busy timeout does, instead of stalling every writer forever.
        let lock_timeout = format!("{}ms", opts.lock_timeout.as_millis().max(1));
        let options =
            PgConnectOptions::from_str(url)?.options([("lock_timeout", lock_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.pg_pool.max(2))
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let pool = Db::Postgres(pool);
        migrate::apply(&pool).await?;
        Ok(Store {
            read: pool.clone(),
            write: pool,
            retention: Default::default(),
        })
    }

    async fn open_sqlite(url: &str, opts: &StoreOptions) -> Result<Store> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // Every event dirties a page of the (random) event-id index and of the issue
            // index: small pages keep those WAL writes small (4 KiB beat 8 and 16 KiB on 60 s
            // runs, while 16 KiB only won on an empty database).
            .page_size(4096)
            // So the file can shrink after retention deletes events (`retention::vacuum_step`).
            // It only applies to a database that has no table yet; older files are converted
            // once below.
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: with group commit one fsync covers a whole batch, so surviving power loss,
            // not just a killed process, costs almost nothing (performance notes).
            .synchronous(
                if std::env::var("STACKHOUND_SQLITE_SYNC").as_deref() == Ok("normal") {
                    SqliteSynchronous::Normal
                } else {
                    SqliteSynchronous::Full
                },
            )
            .busy_timeout(opts.lock_timeout)
            .pragma("cache_size", "-8192")
            // Checkpoints run in the background (`checkpoint`); this large threshold only bounds the
            // WAL should that task fall behind.
            .pragma("wal_autocheckpoint", "50000")
            // After a checkpoint resets the WAL, give its disk space back down to 64 MiB.
            .pragma("journal_size_limit", "67108864")
            .pragma("temp_store", "memory");
        // The ingest writer holds one of these for good; the others serve the writes outside
        // the batch path (people's changes, projects, channels, the alert outbox), which
        // SQLite serializes with the writer through its lock and busy timeout.
        let write = SqlitePoolOptions::new()
            .max_connections(3)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        retention::ensure_incremental_vacuum(&write).await?;
        let write = Db::Sqlite(write);
        migrate::apply(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            // Readers need little cache of their own: the OS page cache holds the file.
            .connect_with(options.pragma("cache_size", "-2048"))
            .await?;
        Ok(Store {
            read: Db::Sqlite(read),
            write,
            retention: Default::default(),
        })
    }

    /// Opens the SQLite database at a file path (created if missing).
    pub async fn open_path(path: &std::path::Path) -> Result<Store> {
        Store::open(&format!("sqlite://{}", path.display())).await
    }

    pub fn backend(&self) -> Backend {
        match self.write {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// A connection for a write transaction.
    pub(crate) async fn write_conn(&self) -> Result<Conn> {
        Ok(match &self.write {
            Db::Sqlite(p) => Db::Sqlite(p.acquire().await?),
            Db::Postgres(p) => Db::Postgres(p.acquire().await?),
        })
    }

    /// Whether the database answers at all (readiness).
    pub async fn ping(&self) -> Result<()> {
        on!(&self.read, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Copies committed WAL frames into the database file without blocking the writer.
    ///
    /// Run from a background task on a read connection, so the writer never pays for
    /// checkpoints itself; its own auto-checkpoint is only a safety net for when this stalls.
    /// PostgreSQL checkpoints by itself: nothing to do there.
    pub async fn checkpoint(&self) -> Result<()> {
        if let Db::Sqlite(p) = &self.read {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(p)
                .await?;
        }
        Ok(())
    }

    /// Flushes the WAL into the main file (SQLite) and closes every connection.
    pub async fn close(&self) {
        if let Db::Sqlite(p) = &self.write {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(p)
                .await;
        }
        on!(&self.read, p => p.close().await);
        on!(&self.write, p => p.close().await);
    }
}

/// Multi-row statements go out in these sizes so that only a handful of distinct SQL strings
/// exist (each is prepared once and cached by sqlx).
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

pub(crate) fn chunk_sizes(mut n: usize) -> Vec<usize> {
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
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(","));
    vec![row; rows].join(",")
}
