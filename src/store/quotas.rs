//! Quota counters shared by processes: per project and fixed window, added to and read back.

use super::{Result, Store};

/// What one process adds to one window of one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUsage {
    pub project_id: i64,
    pub window_secs: i64,
    pub window_start: i64,
    pub delta: i64,
}

impl Store {
    /// A project's event limits per minute and per hour (None: no limit).
    pub async fn quota_limits(&self, project_id: i64) -> Result<(Option<i64>, Option<i64>)> {
        let q = "SELECT rate_limit_minute, rate_limit_hour FROM projects WHERE id = $1";
        let row: Option<(Option<i64>, Option<i64>)> = on!(&self.read, p => {
            sqlx::query_as(q).bind(project_id).fetch_optional(p).await?
        });
        Ok(row.unwrap_or((None, None)))
    }

    /// Adds each usage to its window and returns the windows' totals, in order; deletes
    /// windows that started before `forget_before` (unix seconds). One short transaction.
    pub async fn add_quota_usage(
        &self,
        usage: &[QuotaUsage],
        forget_before: i64,
    ) -> Result<Vec<i64>> {
        let add = "INSERT INTO quota_usage (project_id, window_secs, window_start, count) \
                   VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (project_id, window_secs, window_start) \
                   DO UPDATE SET count = quota_usage.count + excluded.count \
                   RETURNING count";
        let forget = "DELETE FROM quota_usage WHERE window_start < $1";
        let mut totals = Vec::with_capacity(usage.len());
        on!(&self.write, p => {
            let mut tx = p.begin().await?;
            for u in usage {
                let (total,): (i64,) = sqlx::query_as(add)
                    .bind(u.project_id)
                    .bind(u.window_secs)
                    .bind(u.window_start)
                    .bind(u.delta)
                    .fetch_one(&mut *tx)
                    .await?;
                totals.push(total);
            }
            sqlx::query(forget).bind(forget_before).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(totals)
    }
}
