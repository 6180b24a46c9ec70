//! A project's DSN keys: the truth ingestion authenticates against (`Store::project_by_key`
//! reads active keys of live projects only).

use super::{Result, Store, StoreError, Tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectKey {
    pub id: i64,
    pub project_id: i64,
    pub public_key: String,
    pub label: String,
    pub is_active: bool,
    pub created_at: i64,
}

type Row = (i64, i64, String, String, bool, i64);

const COLUMNS: &str = "id, project_id, public_key, label, is_active, created_at";

fn from_row((id, project_id, public_key, label, is_active, created_at): Row) -> ProjectKey {
    ProjectKey {
        id,
        project_id,
        public_key,
        label,
        is_active,
        created_at,
    }
}

/// Adds an active key inside `tx` (a new project's first key, or another one).
pub(super) async fn insert_key(
    tx: &mut Tx<'_>,
    project_id: i64,
    public_key: &str,
    label: &str,
    now_us: i64,
) -> Result<ProjectKey> {
    let row: Row = on!(tx, t => sqlx::query_as(&format!(
        "INSERT INTO project_keys (project_id, public_key, label, is_active, created_at)
         VALUES ($1, $2, $3, TRUE, $4) RETURNING {COLUMNS}"
    ))
    .bind(project_id)
    .bind(public_key)
    .bind(label)
    .bind(now_us)
    .fetch_one(&mut **t)
    .await)?;
    Ok(from_row(row))
}

/// How the API names a key: by its public key (Sentry's way), or by its numeric id.
fn id_of(key: &str) -> i64 {
    // A public key is 32 hex characters; a shorter all-digit name is an id.
    match key.len() < 32 {
        true => key.parse().unwrap_or(-1),
        false => -1,
    }
}

impl Store {
    /// A project's keys, oldest first (active or not).
    pub async fn project_keys(&self, project_id: i64) -> Result<Vec<ProjectKey>> {
        let rows: Vec<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM project_keys WHERE project_id = $1 ORDER BY id"
        ))
        .bind(project_id)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// One of the project's keys, named by its public key or its id.
    pub async fn project_key(&self, project_id: i64, key: &str) -> Result<Option<ProjectKey>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM project_keys
             WHERE project_id = $1 AND (public_key = $2 OR id = $3)"
        ))
        .bind(project_id)
        .bind(key)
        .bind(id_of(key))
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    /// A new active key for a project.
    pub async fn create_key(
        &self,
        project_id: i64,
        public_key: &str,
        label: &str,
        now_us: i64,
    ) -> Result<ProjectKey> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let key = insert_key(&mut tx, project_id, public_key, label, now_us)
            .await
            .map_err(|e| match e {
                StoreError::Db(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                    StoreError::Conflict("that public key exists already".into())
                }
                e => e,
            })?;
        tx.commit().await?;
        Ok(key)
    }

    /// Renames a key and/or turns it on or off (`None` keeps a field); `None` when the
    /// project has no such key. A key turned off is refused by ingestion within a second
    /// (`pipeline::KeyCache`).
    pub async fn update_key(
        &self,
        project_id: i64,
        key: &str,
        label: Option<&str>,
        is_active: Option<bool>,
    ) -> Result<Option<ProjectKey>> {
        let row: Option<Row> = on!(&self.write, p => sqlx::query_as(&format!(
            "UPDATE project_keys SET label = coalesce($1, label),
                 is_active = coalesce($2, is_active)
             WHERE project_id = $3 AND (public_key = $4 OR id = $5) RETURNING {COLUMNS}"
        ))
        .bind(label)
        .bind(is_active)
        .bind(project_id)
        .bind(key)
        .bind(id_of(key))
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    /// Revokes a key for good; false when the project has no such key.
    pub async fn delete_key(&self, project_id: i64, key: &str) -> Result<bool> {
        let n = on!(&self.write, p => sqlx::query(
            "DELETE FROM project_keys WHERE project_id = $1 AND (public_key = $2 OR id = $3)",
        )
        .bind(project_id)
        .bind(key)
        .bind(id_of(key))
        .execute(p)
        .await?
        .rows_affected());
        Ok(n > 0)
    }
}
