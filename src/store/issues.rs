//! Reading issues: one by id, and a project's list newest `last_seen` first.

use super::{Result, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct IssueRow {
    pub id: i64,
    pub project_id: i64,
    pub project_slug: String,
    pub project_name: String,
    pub short_number: i64,
    pub title: String,
    pub culprit: String,
    pub level: String,
    pub platform: String,
    pub event_type: String,
    pub metadata: String,
    pub status: String,
    pub event_count: i64,
    pub first_seen: i64,
    pub last_seen: i64,
}

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

const SELECT: &str = "SELECT i.id, i.project_id, p.slug, p.name, i.short_number, i.title,
        i.culprit, i.level, i.platform, i.event_type, i.metadata, i.status, i.event_count,
        i.first_seen, i.last_seen
    FROM issues i JOIN projects p ON p.id = i.project_id";

type Row = (
    i64,
    i64,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
);

fn from_row(r: Row) -> IssueRow {
    IssueRow {
        id: r.0,
        project_id: r.1,
        project_slug: r.2,
        project_name: r.3,
        short_number: r.4,
        title: r.5,
        culprit: r.6,
        level: r.7,
        platform: r.8,
        event_type: r.9,
        metadata: r.10,
        status: r.11,
        event_count: r.12,
        first_seen: r.13,
        last_seen: r.14,
    }
}

impl Store {
    pub async fn issue(&self, id: i64) -> Result<Option<IssueRow>> {
        let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE i.id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(from_row))
    }

    /// An issue by its per-project number (short ids like `DEFAULT-3`).
    pub async fn issue_by_number(&self, project_id: i64, number: i64) -> Result<Option<IssueRow>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "{SELECT} WHERE i.project_id = $1 AND i.short_number = $2"
        ))
        .bind(project_id)
        .bind(number)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(from_row))
    }

    /// A page of a project's issues, newest `last_seen` first (ties: higher id first).
    pub async fn list_issues(&self, project_id: i64, f: &IssueFilter) -> Result<Vec<IssueRow>> {
        let mut sql = format!("{SELECT} WHERE i.project_id = $1");
        let mut n = 2;
        if f.status.is_some() {
            sql.push_str(&format!(" AND i.status = ${n}"));
            n += 1;
        }
        for _ in &f.words {
            sql.push_str(&format!(" AND i.title LIKE ${n} ESCAPE '\\'"));
            n += 1;
        }
        if f.after.is_some() {
            sql.push_str(&format!(" AND (i.last_seen, i.id) < (${}, ${})", n, n + 1));
            n += 2;
        }
        sql.push_str(&format!(" ORDER BY i.last_seen DESC, i.id DESC LIMIT ${n}"));
        let mut q = sqlx::query_as::<_, Row>(&sql).bind(project_id);
        if let Some(status) = &f.status {
            q = q.bind(status);
        }
        for w in &f.words {
            let escaped = w
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            q = q.bind(format!("%{escaped}%"));
        }
        if let Some((last_seen, id)) = f.after {
            q = q.bind(last_seen).bind(id);
        }
        let rows = q.bind(f.limit).fetch_all(&self.read).await?;
        Ok(rows.into_iter().map(from_row).collect())
    }
}
