//! Quota counters shared by processes: per project and fixed window, added to and read back.
//! (A project's limits themselves are read with its other limits: `Store::project_limits`.)

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
