//! Embedded schema migrations, applied in order at startup inside one transaction each.
//!
//! A dozen lines instead of sqlx's `migrate!` macro: it keeps the macro feature (and its
//! compile-time database access) out of the build, and the same list will carry the
//! PostgreSQL folder with the same version numbers.

use super::Result;
use sqlx::SqlitePool;

/// (version, name, SQL) in the order they apply.
const SQLITE: &[(i64, &str, &str)] = &[
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
];

pub async fn apply(pool: &SqlitePool) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
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
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_increasing_and_match_file_names() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files.len(),
            super::SQLITE.len(),
            "every migration file is embedded"
        );
        for (file, (version, name, _)) in files.iter().zip(super::SQLITE) {
            assert_eq!(file, &format!("{version:04}_{name}.sql"));
        }
    }
}
