//! Reading issues: one by id (an old id of a merged issue answers its target), and a
//! project's list newest `last_seen` first (merged issues left out).

use super::{Db, Result, Store};
pub use crate::issue::model::{Activity, Issue};

/// Which issues a list asks for.
#[derive(Debug, Clone, Default)]
pub struct IssueFilter {
    /// `None`: every status.
    pub status: Option<String>,
    /// Words that must all appear in the title (case-insensitive).
    pub words: Vec<String>,
    /// Keyset cursor: issues strictly after (last_seen, id) in list order.
    pub after: Option<(i64, i64)>,
    pub limit: i64,
}

pub(crate) const SELECT_ISSUE: &str = "SELECT i.id, i.project_id, p.slug, p.name, i.short_number,
        i.title, i.culprit, i.level, i.platform, i.event_type, i.metadata, i.status,
        i.event_count, i.first_seen, i.last_seen, i.substatus, i.state, i.user_count
    FROM issues i JOIN projects p ON p.id = i.project_id";

/// Eighteen columns: more than sqlx's tuple rows take, so the row is read by position, the
/// same way on either backend.
pub(crate) fn issue_from_row<'r, R>(r: &'r R) -> sqlx::Result<Issue>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Issue {
        id: r.try_get(0)?,
        project_id: r.try_get(1)?,
        project_slug: r.try_get(2)?,
        project_name: r.try_get(3)?,
        short_number: r.try_get(4)?,
        title: r.try_get(5)?,
        culprit: r.try_get(6)?,
        level: r.try_get(7)?,
        platform: r.try_get(8)?,
        event_type: r.try_get(9)?,
        metadata: r.try_get(10)?,
        status: r.try_get(11)?,
        event_count: r.try_get(12)?,
        first_seen: r.try_get(13)?,
        last_seen: r.try_get(14)?,
        substatus: r.try_get(15)?,
        state: r.try_get(16)?,
        user_count: r.try_get(17)?,
    })
}

impl Store {
    pub async fn issue(&self, id: i64) -> Result<Option<Issue>> {
        let sql = format!("{SELECT_ISSUE} WHERE i.id = $1");
        let row = on!(&self.read, p => sqlx::query(&sql).bind(id).fetch_optional(p).await?
            .map(|r| issue_from_row(&r)).transpose()?);
        Ok(row)
    }

    /// The issue `id`, or, when it was merged, the issue it was merged into, following chains
    /// (A merged into B, later merged into C, answers C). A merge always names an issue that
    /// was not merged itself at the time, so chains have no cycles; the bound is a safeguard.
    pub async fn issue_following_merges(&self, id: i64) -> Result<Option<Issue>> {
        let sql = format!(
            "WITH RECURSIVE chain (id, next, hops) AS (
                 SELECT id, merged_into, 0 FROM issues WHERE id = $1
                 UNION ALL
                 SELECT i.id, i.merged_into, c.hops + 1
                 FROM issues i JOIN chain c ON i.id = c.next WHERE c.hops < 100
             )
             {SELECT_ISSUE} WHERE i.id = (SELECT id FROM chain WHERE next IS NULL)"
        );
        let row = on!(&self.read, p => sqlx::query(&sql).bind(id).fetch_optional(p).await?
            .map(|r| issue_from_row(&r)).transpose()?);
        Ok(row)
    }

    /// An issue by its per-project number (short ids like `DEFAULT-3`).
    pub async fn issue_by_number(&self, project_id: i64, number: i64) -> Result<Option<Issue>> {
        let sql = format!("{SELECT_ISSUE} WHERE i.project_id = $1 AND i.short_number = $2");
        let row = on!(&self.read, p => sqlx::query(&sql).bind(project_id).bind(number)
            .fetch_optional(p).await?.map(|r| issue_from_row(&r)).transpose()?);
        Ok(row)
    }

    /// A page of a project's issues, newest `last_seen` first (ties: higher id first).
    pub async fn list_issues(&self, project_id: i64, f: &IssueFilter) -> Result<Vec<Issue>> {
        // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE is the same thing there.
        let like = match self.read {
            Db::Sqlite(_) => "LIKE",
            Db::Postgres(_) => "ILIKE",
        };
        let mut sql = format!("{SELECT_ISSUE} WHERE i.project_id = $1 AND i.merged_into IS NULL");
        let mut n = 2;
        if f.status.is_some() {
            sql.push_str(&format!(" AND i.status = ${n}"));
            n += 1;
        }
        for _ in &f.words {
            sql.push_str(&format!(" AND i.title {like} ${n} ESCAPE '\\'"));
            n += 1;
        }
        if f.after.is_some() {
            sql.push_str(&format!(" AND (i.last_seen, i.id) < (${}, ${})", n, n + 1));
            n += 2;
        }
        sql.push_str(&format!(" ORDER BY i.last_seen DESC, i.id DESC LIMIT ${n}"));
        let words: Vec<String> = f
            .words
            .iter()
            .map(|w| {
                let escaped = w
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                format!("%{escaped}%")
            })
            .collect();
        let rows = on!(&self.read, p => {
            let mut q = sqlx::query(&sql).bind(project_id);
            if let Some(status) = &f.status {
                q = q.bind(status);
            }
            for w in &words {
                q = q.bind(w);
            }
            if let Some((last_seen, id)) = f.after {
                q = q.bind(last_seen).bind(id);
            }
            q.bind(f.limit)
                .fetch_all(p)
                .await?
                .iter()
                .map(issue_from_row)
                .collect::<sqlx::Result<Vec<Issue>>>()?
        });
        Ok(rows)
    }

    /// Ids of a project's issues, optionally of one status (bulk updates); merged ones left out.
    pub async fn issue_ids(&self, project_id: i64, status: Option<&str>) -> Result<Vec<i64>> {
        let rows: Vec<(i64,)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id FROM issues WHERE project_id = $1 AND (CAST($2 AS TEXT) IS NULL OR status = $2)
             AND merged_into IS NULL ORDER BY id",
        )
        .bind(project_id)
        .bind(status)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// An issue's history, newest first.
    pub async fn activities(&self, issue_id: i64) -> Result<Vec<Activity>> {
        let rows: Vec<(i64, String, String, String, String, i64)> = on!(&self.read, p => sqlx::query_as(
            "SELECT id, kind, actor, reason, data, created_at FROM issue_activity
             WHERE issue_id = $1 ORDER BY id DESC",
        )
        .bind(issue_id)
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, actor, reason, data, created_at)| Activity {
                id,
                kind,
                actor,
                reason,
                data,
                created_at,
            })
            .collect())
    }

    /// An issue's episodes, newest first: (cause, started at µs).
    pub async fn episodes(&self, issue_id: i64) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = on!(&self.read, p => sqlx::query_as(
            "SELECT cause, started_at FROM issue_episodes WHERE issue_id = $1 ORDER BY id DESC",
        )
        .bind(issue_id)
        .fetch_all(p)
        .await)?;
        Ok(rows)
    }
}
