//! Embedded schema migrations, one folder per dialect with the same versions, applied in
//! order at startup.
//!
//! A few dozen lines instead of sqlx's `migrate!` macro: it keeps the macro feature (and its
//! compile-time database access) out of the build. On PostgreSQL several processes may start
//! at once: the whole run holds an advisory lock, so one applies and the others find it done.

use super::{Db, Pool, Result, Tx};

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
    (
        4,
        "limits",
        include_str!("../../migrations/sqlite/0004_limits.sql"),
    ),
    (
        5,
        "quotas",
        include_str!("../../migrations/sqlite/0005_quotas.sql"),
    ),
    (
        6,
        "grouping",
        include_str!("../../migrations/sqlite/0006_grouping.sql"),
    ),
    (
        7,
        "responders",
        include_str!("../../migrations/sqlite/0007_responders.sql"),
    ),
    (
        8,
        "monitors",
        include_str!("../../migrations/sqlite/0008_monitors.sql"),
    ),
    (
        9,
        "tokens",
        include_str!("../../migrations/sqlite/0009_tokens.sql"),
    ),
    (
        10,
        "keys",
        include_str!("../../migrations/sqlite/0010_keys.sql"),
    ),
    (
        11,
        "aggregates",
        include_str!("../../migrations/sqlite/0011_aggregates.sql"),
    ),
    (
        12,
        "tag_rows_by_value",
        include_str!("../../migrations/sqlite/0012_tag_rows_by_value.sql"),
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
    (
        4,
        "limits",
        include_str!("../../migrations/postgres/0004_limits.sql"),
    ),
    (
        5,
        "quotas",
        include_str!("../../migrations/postgres/0005_quotas.sql"),
    ),
    (
        6,
        "grouping",
        include_str!("../../migrations/postgres/0006_grouping.sql"),
    ),
    (
        7,
        "responders",
        include_str!("../../migrations/postgres/0007_responders.sql"),
    ),
    (
        8,
        "monitors",
        include_str!("../../migrations/postgres/0008_monitors.sql"),
    ),
    (
        9,
        "tokens",
        include_str!("../../migrations/postgres/0009_tokens.sql"),
    ),
    (
        10,
        "keys",
        include_str!("../../migrations/postgres/0010_keys.sql"),
    ),
    (
        11,
        "aggregates",
        include_str!("../../migrations/postgres/0011_aggregates.sql"),
    ),
    (
        12,
        "tag_rows_by_value",
        include_str!("../../migrations/postgres/0012_tag_rows_by_value.sql"),
    ),
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

/// The newest version this binary knows for `backend` (`/health` and `/readyz` compare it
/// with the newest applied).
pub fn latest(backend: super::Backend) -> i64 {
    let list = match backend {
        super::Backend::Sqlite => SQLITE,
        super::Backend::Postgres => POSTGRES,
    };
    list.iter().map(|m| m.0).max().unwrap_or(0)
}

pub async fn apply(pool: &Pool) -> Result<()> {
    match pool {
        Db::Sqlite(pool) => {
            sqlx::raw_sql(CREATE_TABLE).execute(pool).await?;
            for m in SQLITE {
                // IMMEDIATE: the write lock up front. A deferred transaction reads first and
                // fails at once (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out) when
                // another connection of a starting pool wrote in between.
                let mut tx = Db::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?);
                apply_one(&mut tx, m, "datetime('now')").await?;
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
            let mut tx = Db::Postgres(tx);
            for m in POSTGRES {
                apply_one(&mut tx, m, "now()::text").await?;
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

/// Applies one migration in the caller's transaction unless it is recorded as applied.
async fn apply_one(tx: &mut Tx<'_>, (version, name, sql): &Migration, now: &str) -> Result<()> {
    let done: Option<(i64,)> = on!(tx, t => sqlx::query_as(
        "SELECT version FROM schema_migrations WHERE version = $1",
    )
    .bind(version)
    .fetch_optional(&mut **t)
    .await)?;
    if done.is_some() {
        return Ok(());
    }
    on!(tx, t => sqlx::raw_sql(sql).execute(&mut **t).await.map(|_| ()))?;
    let record =
        format!("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, {now})");
    on!(tx, t => sqlx::query(&record)
        .bind(version)
        .bind(name)
        .execute(&mut **t)
        .await
        .map(|_| ()))?;
    tracing::info!(version, name, "applied migration");
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
