//! Projects, their DSN public keys, alert switches and limits (quotas, retention).

use super::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub slug: String,
    pub name: String,
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

const COLUMNS: &str = "id, slug, name, public_key, created_at";

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
    /// Creates a project on the latest grouping scheme; the slug must be new.
    pub async fn create_project(
        &self,
        slug: &str,
        name: &str,
        public_key: &str,
        now_us: i64,
    ) -> Result<Project> {
        let row: Option<Row> = on!(&self.write, p => sqlx::query_as(&format!(
            "INSERT INTO projects (slug, name, public_key, created_at, grouping_config)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (slug) DO NOTHING RETURNING {COLUMNS}"
        ))
        .bind(slug)
        .bind(name)
        .bind(public_key)
        .bind(now_us)
        // A new project starts on the latest scheme: it has no issues to keep together.
        .bind(crate::grouping::Scheme::LATEST.id())
        .fetch_optional(p)
        .await)?;
        row.map(from_row)
            .ok_or_else(|| StoreError::Conflict(format!("project '{slug}' already exists")))
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows: Vec<Row> = on!(&self.read, p => sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects ORDER BY id"))
            .fetch_all(p)
            .await)?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    pub async fn project_by_key(&self, public_key: &str) -> Result<Option<Project>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM projects WHERE public_key = $1"
        ))
        .bind(public_key)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    pub async fn project_by_slug(&self, slug: &str) -> Result<Option<Project>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects WHERE slug = $1"))
                .bind(slug)
                .fetch_optional(p)
                .await)?;
        Ok(row.map(from_row))
    }

    pub async fn project_by_id(&self, id: i64) -> Result<Option<Project>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects WHERE id = $1"))
                .bind(id)
                .fetch_optional(p)
                .await)?;
        Ok(row.map(from_row))
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
