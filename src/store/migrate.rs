//! Embedded schema migrations, one folder per dialect with the same versions, applied in
//! order at startup.
//!
//! A few dozen lines instead of sqlx's `migrate!` macro: it keeps the macro feature (and its
//! compile-time database access) out of the build. On PostgreSQL several processes may start
//! at once: the whole run holds an advisory lock, so one applies and the others find it done.

use super::{Db, Pool, Result};

type Migration = (i64, &'static str, &'static str);

/// (version, name, SQL) in the order they apply.
const SQLITE: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "lifecycle",
        include_str!("../../migrations/sqlite/0002_lifecycle.sql"),
    ),
    (
        3,
        "engine",
        include_str!("../../migrations/sqlite/0003_engine.sql"),
    ),
];

const POSTGRES: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "lifecycle",
        include_str!("../../migrations/postgres/0002_lifecycle.sql"),
    ),
    (
        3,
        "engine",
        include_str!("../../migrations/postgres/0003_engine.sql"),
    ),
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

pub async fn apply(pool: &Pool) -> Result<()> {
    match pool {
        Db::Sqlite(pool) => {
            sqlx::raw_sql(CREATE_TABLE).execute(pool).await?;
            for (version, name, sql) in SQLITE {
                let mut tx = pool.begin().await?;
                let done: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?;
                if done.is_none() {
                    sqlx::raw_sql(sql).execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO schema_migrations (version, name, applied_at)
                         VALUES ($1, $2, datetime('now'))",
                    )
                    .bind(version)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                    tracing::info!(version, name, "applied migration");
                }
                tx.commit().await?;
            }
        }
        Db::Postgres(pool) => {
            // DDL is transactional on PostgreSQL: everything commits together, under a lock
            // that makes concurrent starts wait for the first.
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(7355608001)")
                .execute(&mut *tx)
                .await?;
            sqlx::raw_sql(CREATE_TABLE).execute(&mut *tx).await?;
            for (version, name, sql) in POSTGRES {
                let done: Option<(i64,)> =
                    sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?;
                if done.is_none() {
                    sqlx::raw_sql(sql).execute(&mut *tx).await?;
                    sqlx::query(
                        "INSERT INTO schema_migrations (version, name, applied_at)
                         VALUES ($1, $2, now()::text)",
                    )
                    .bind(version)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                    tracing::info!(version, name, "applied migration");
                }
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn files(dialect: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dialect);
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn versions_match_file_names_in_both_dialects() {
        for (dialect, list) in [("sqlite", super::SQLITE), ("postgres", super::POSTGRES)] {
            let files = files(dialect);
            assert_eq!(
                files.len(),
                list.len(),
                "every {dialect} migration is embedded"
            );
            for (file, (version, name, _)) in files.iter().zip(list) {
                assert_eq!(file, &format!("{version:04}_{name}.sql"));
            }
        }
        assert_eq!(
            files("sqlite"),
            files("postgres"),
            "same versions in both folders"
        );
    }
}
