//! The only module that knows SQL: one `Store` over the embedded SQLite database.
//!
//! Reads go through a small pool; every write of the ingest path goes through one dedicated
//! connection owned by the writer (SQLite has one writer anyway, and one connection lets the
//! writer batch many events into one transaction). PostgreSQL is a later backend: the public
//! methods take and return plain Rust types so a second dialect can sit beside each query.

pub mod alerts;
pub mod events;
pub mod ingest;
pub mod issues;
pub mod lifecycle;
pub mod migrate;
pub mod projects;
pub mod tokens;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("unsupported database URL '{0}': use sqlite://PATH")]
    UnsupportedUrl(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The database: a read pool and the one write connection.
#[derive(Clone, Debug)]
pub struct Store {
    read: SqlitePool,
    write: SqlitePool,
}

impl Store {
    /// Opens (creating if missing) the database named by `url` and applies the migrations.
    pub async fn open(url: &str) -> Result<Store> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.into()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // Every event dirties a page of the (random) event-id index and of the issue
            // index: small pages keep those WAL writes small (4 KiB beat 8 and 16 KiB on 60 s
            // runs, while 16 KiB only won on an empty database).
            .page_size(4096)
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
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-8192")
            // Checkpoints run in the background (`checkpoint`); this large threshold only bounds the
            // WAL should that task fall behind.
            .pragma("wal_autocheckpoint", "50000")
            // After a checkpoint resets the WAL, give its disk space back down to 64 MiB.
            .pragma("journal_size_limit", "67108864")
            .pragma("temp_store", "memory");
        // The ingest writer holds one of these for good; the others serve the rare writes
        // outside the batch path (projects, channels, the alert outbox), which SQLite
        // serializes with the writer through its lock and busy timeout.
        let write = SqlitePoolOptions::new()
            .max_connections(3)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        migrate::apply(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            // Readers need little cache of their own: the OS page cache holds the file.
            .connect_with(options.pragma("cache_size", "-2048"))
            .await?;
        Ok(Store { read, write })
    }

    /// Opens the SQLite database at a file path (created if missing).
    pub async fn open_path(path: &std::path::Path) -> Result<Store> {
        Store::open(&format!("sqlite://{}", path.display())).await
    }

    /// Whether the database answers at all (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Copies committed WAL frames into the database file without blocking the writer.
    ///
    /// Run from a background task on a read connection, so the writer never pays for
    /// checkpoints itself; its own auto-checkpoint is only a safety net for when this stalls.
    pub async fn checkpoint(&self) -> Result<()> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.read)
            .await?;
        Ok(())
    }

    /// Flushes the WAL into the main file and closes every connection.
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.write)
            .await;
        self.read.close().await;
        self.write.close().await;
    }
}
