//! Projects (live ones: a deleted project is invisible here), alert switches and limits
//! (quotas, retention). Their DSN keys are in `store::keys`, their deletion in `store::purge`.

use super::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub slug: String,
    pub name: String,
    /// The project's first active DSN key (for printing a DSN); the legacy
    /// `projects.public_key` when it has none active.
    pub public_key: String,
    pub created_at: i64,
}

type Row = (i64, String, String, String, i64);

fn from_row((id, slug, name, public_key, created_at): Row) -> Project {
    Project {
        id,
        slug,
        name,
        public_key,
        created_at,
    }
}

/// The columns of a `Row`, read from `projects p`.
const COLUMNS: &str = "p.id, p.slug, p.name, coalesce((SELECT k.public_key FROM project_keys k
        WHERE k.project_id = p.id AND k.is_active ORDER BY k.id LIMIT 1), p.public_key),
    p.created_at";

/// Whether `slug` is a project slug: 1-50 lowercase letters, digits, `-` or `_`.
pub fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 50
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A slug made from a name: lowercase letters and digits kept, runs of anything else one `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.chars().take(50).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

type LimitsRow = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// A project's own limits; `None` is "no limit" for the quotas and "the server's default" for
/// retention. Stored values are positive (the schema checks it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectLimits {
    /// Events accepted per minute.
    pub rate_limit_minute: Option<i64>,
    /// Events accepted per hour.
    pub rate_limit_hour: Option<i64>,
    /// Days an event is kept after it was received.
    pub retention_days: Option<i64>,
    /// How many of the project's newest events are kept.
    pub retention_max_events: Option<i64>,
}

impl Store {
    /// Creates a project on the latest grouping scheme with one DSN key, `public_key`,
    /// labelled "Default"; the slug must be new (`Conflict` otherwise).
    pub async fn create_project(
        &self,
        slug: &str,
        name: &str,
        public_key: &str,
        now_us: i64,
    ) -> Result<Project> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        // The legacy column keeps the first key: it is still NOT NULL UNIQUE.
        let row: Option<(i64,)> = on!(&mut tx, t => sqlx::query_as(
            "INSERT INTO projects (slug, name, public_key, created_at, grouping_config)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (slug) DO NOTHING RETURNING id",
        )
        .bind(slug)
        .bind(name)
        .bind(public_key)
        .bind(now_us)
        // A new project starts on the latest scheme: it has no issues to keep together.
        .bind(crate::grouping::Scheme::LATEST.id())
        .fetch_optional(&mut **t)
        .await)?;
        let Some((id,)) = row else {
            return Err(StoreError::Conflict(format!(
                "project '{slug}' already exists"
            )));
        };
        super::keys::insert_key(&mut tx, id, public_key, "Default", now_us).await?;
        tx.commit().await?;
        Ok(Project {
            id,
            slug: slug.to_owned(),
            name: name.to_owned(),
            public_key: public_key.to_owned(),
            created_at: now_us,
        })
    }

    /// Live projects, by id.
    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows: Vec<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM projects p WHERE p.deleted_at IS NULL ORDER BY p.id"
        ))
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Whether the database ever had a project (deleted ones leave their row behind).
    pub async fn ever_had_projects(&self) -> Result<bool> {
        let row: Option<(i64,)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id FROM projects LIMIT 1"
        )
        .fetch_optional(p)
        .await)?;
        Ok(row.is_some())
    }

    /// The live project of an active DSN key: what ingestion accepts.
    pub async fn project_by_key(&self, public_key: &str) -> Result<Option<Project>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM project_keys k0 JOIN projects p ON p.id = k0.project_id
             WHERE k0.public_key = $1 AND k0.is_active AND p.deleted_at IS NULL"
        ))
        .bind(public_key)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    pub async fn project_by_slug(&self, slug: &str) -> Result<Option<Project>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM projects p WHERE p.slug = $1 AND p.deleted_at IS NULL"
        ))
        .bind(slug)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    pub async fn project_by_id(&self, id: i64) -> Result<Option<Project>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM projects p WHERE p.id = $1 AND p.deleted_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    /// Renames a live project (`None` keeps a field). `Conflict` when the slug is taken;
    /// `None` when the project does not exist.
    pub async fn rename_project(
        &self,
        id: i64,
        name: Option<&str>,
        slug: Option<&str>,
    ) -> Result<Option<Project>> {
        if let Some(slug) = slug {
            let taken: Option<(i64,)> = on!(&self.read, p => sqlx::query_as(
                "SELECT id FROM projects WHERE slug = $1 AND id <> $2",
            )
            .bind(slug)
            .bind(id)
            .fetch_optional(p)
            .await)?;
            if taken.is_some() {
                return Err(StoreError::Conflict(format!(
                    "project '{slug}' already exists"
                )));
            }
        }
        let result = on!(&self.write, p => sqlx::query(
            "UPDATE projects SET name = coalesce($1, name), slug = coalesce($2, slug)
             WHERE id = $3 AND deleted_at IS NULL",
        )
        .bind(name)
        .bind(slug)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()));
        match result {
            Ok(_) => {}
            // Taken meanwhile: the unique index decides.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict(format!(
                    "project '{}' already exists",
                    slug.unwrap_or_default()
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.project_by_id(id).await
    }

    /// Deletes a live project at once as far as every read and ingestion can tell, and queues
    /// the removal of its rows (`store::purge`). In one transaction: the project is marked
    /// deleted and its slug freed (renamed `{slug}~deleted-{id}`, which no valid slug
    /// matches); its DSN keys go (caches refuse them within a second); its alert channels go
    /// with their pending deliveries; its responders are switched off and their pending runs
    /// dropped; its monitors stop expecting check-ins (no missed or timed-out check-in makes an
    /// event). Returns false when there was no such project.
    pub async fn delete_project(&self, id: i64, now_us: i64) -> Result<bool> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin_write().await?;
        let marked = on!(&mut tx, t => sqlx::query(
            "UPDATE projects SET deleted_at = $1, slug = slug || '~deleted-' || CAST(id AS TEXT)
             WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now_us)
        .bind(id)
        .execute(&mut **t)
        .await?
        .rows_affected());
        if marked == 0 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM project_keys WHERE project_id = $1",
            "DELETE FROM alert_outbox WHERE status = 'pending'
                 AND channel_id IN (SELECT id FROM alert_channels WHERE project_id = $1)",
            "DELETE FROM alert_channels WHERE project_id = $1",
            "DELETE FROM responder_runs WHERE status = 'pending'
                 AND responder_id IN (SELECT id FROM responders WHERE project_id = $1)",
            "UPDATE responders SET enabled = FALSE WHERE project_id = $1",
            "UPDATE monitor_environments SET deadline_at = NULL
                 WHERE monitor_id IN (SELECT id FROM monitors WHERE project_id = $1)",
            "UPDATE monitor_checkins SET timeout_at = NULL WHERE status = 'in_progress'
                 AND monitor_env_id IN (SELECT e.id FROM monitor_environments e
                     JOIN monitors m ON m.id = e.monitor_id WHERE m.project_id = $1)",
        ] {
            on!(&mut tx, t => sqlx::query(sql).bind(id).execute(&mut **t).await.map(|_| ()))?;
        }
        on!(&mut tx, t => sqlx::query(
            "INSERT INTO purges (kind, target_id, created_at) VALUES ('project', $1, $2)",
        )
        .bind(id)
        .bind(now_us)
        .execute(&mut **t)
        .await
        .map(|_| ()))?;
        tx.commit().await?;
        Ok(true)
    }

    /// The project's alert switches: (new issue, regression, unmute).
    pub async fn project_alerts(&self, project_id: i64) -> Result<(bool, bool, bool)> {
        let row: (bool, bool, bool) = on!(&self.read, p => sqlx::query_as(
            "SELECT alert_on_new_issue, alert_on_regression, alert_on_unmute FROM projects
             WHERE id = $1",
        )
        .bind(project_id)
        .fetch_one(p)
        .await)?;
        Ok(row)
    }

    /// Switches alerts on or off; `None` leaves a switch as it is.
    pub async fn set_project_alerts(
        &self,
        project_id: i64,
        new_issue: Option<bool>,
        regression: Option<bool>,
        unmute: Option<bool>,
    ) -> Result<()> {
        on!(&self.write, p => sqlx::query(
            "UPDATE projects SET alert_on_new_issue = coalesce($1, alert_on_new_issue),
                 alert_on_regression = coalesce($2, alert_on_regression),
                 alert_on_unmute = coalesce($3, alert_on_unmute)
             WHERE id = $4",
        )
        .bind(new_issue)
        .bind(regression)
        .bind(unmute)
        .bind(project_id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A project's limits: one primary-key read, cheap enough for every check. A project that
    /// does not exist has none.
    pub async fn project_limits(&self, project_id: i64) -> Result<ProjectLimits> {
        let row: Option<LimitsRow> = on!(&self.read, p => sqlx::query_as(
            "SELECT rate_limit_minute, rate_limit_hour, retention_days, retention_max_events
             FROM projects WHERE id = $1",
        )
        .bind(project_id)
        .fetch_optional(p)
        .await)?;
        Ok(row
            .map(|(m, h, d, n)| ProjectLimits {
                rate_limit_minute: m,
                rate_limit_hour: h,
                retention_days: d,
                retention_max_events: n,
            })
            .unwrap_or_default())
    }

    /// Replaces all four limits of a project (`None` clears one); `Conflict` when a value is
    /// not positive. Returns whether the project exists.
    pub async fn set_project_limits(
        &self,
        project_id: i64,
        limits: &ProjectLimits,
    ) -> Result<bool> {
        let l = limits;
        let values = [
            l.rate_limit_minute,
            l.rate_limit_hour,
            l.retention_days,
            l.retention_max_events,
        ];
        if values.iter().flatten().any(|v| *v <= 0) {
            return Err(StoreError::Conflict(
                "a limit is a positive number (none: no value)".into(),
            ));
        }
        let n = on!(&self.write, p => sqlx::query(
            "UPDATE projects SET rate_limit_minute = $1, rate_limit_hour = $2,
                 retention_days = $3, retention_max_events = $4
             WHERE id = $5",
        )
        .bind(l.rate_limit_minute)
        .bind(l.rate_limit_hour)
        .bind(l.retention_days)
        .bind(l.retention_max_events)
        .bind(project_id)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
