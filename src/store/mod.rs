//! The only module that knows SQL: one `Store` over the embedded SQLite database.
//!
//! Reads go through a small pool; every write of the ingest path goes through one dedicated
//! connection owned by the writer (SQLite has one writer anyway, and one connection lets the
//! writer batch many events into one transaction). PostgreSQL is a later backend: the public
//! methods take and return plain Rust types so a second dialect can sit beside each query.

pub mod events;
pub mod ingest;
pub mod issues;
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
            // Events rows carry a few KB of payload: 16 KiB pages hold several per page,
            // which means fewer page allocations, splits and WAL frames per batch.
            .page_size(16384)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: with group commit one fsync covers a whole batch, so surviving power loss,
            // not just a killed process, costs almost nothing (performance notes).
            .synchronous(if std::env::var("STACKHOUND_SQLITE_SYNC").as_deref() == Ok("normal") { SqliteSynchronous::Normal } else { SqliteSynchronous::Full })
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-8192")
            .pragma("temp_store", "memory");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
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
            .connect_with(options.read_only(false))
            .await?;
        Ok(Store { read, write })
    }

    /// A fresh in-memory-like database in a temporary file path, for tests and tools.
    pub async fn open_path(path: &std::path::Path) -> Result<Store> {
        Store::open(&format!("sqlite://{}", path.display())).await
    }

    /// Whether the database answers at all (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
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
