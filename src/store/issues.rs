//! Reading issues: one by id (an old id of a merged issue answers its target), and lists
//! searched, sorted and paged by keyset (merged issues left out), with their `stats`.

use super::{Db, Result, Store};
pub use crate::issue::model::{Activity, Issue};
use crate::issue::search::{Cmp, Filter, SearchQuery, SeenField};
use sqlx::Row;

/// How a list is ordered (always newest / largest first, ties by higher id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// `date`: last seen.
    #[default]
    Date,
    /// `new`: first seen.
    New,
    /// `freq`: events.
    Freq,
    /// `user`: distinct users.
    User,
}

impl Sort {
    /// Sentry's `sort=` names; absent or empty is `date`.
    pub fn parse(v: Option<&str>) -> std::result::Result<Sort, String> {
        match v.unwrap_or("") {
            "" | "date" => Ok(Sort::Date),
            "new" => Ok(Sort::New),
            "freq" => Ok(Sort::Freq),
            "user" => Ok(Sort::User),
            other => Err(format!("bad sort '{other}': use date, new, freq or user")),
        }
    }

    /// The value of `issue` (with its filtered figures) this sort orders by: the cursor's first
    /// part.
    pub fn value(self, issue: &Issue) -> i64 {
        match self {
            Sort::Date => issue.last_seen,
            Sort::New => issue.first_seen,
            Sort::Freq => issue.event_count,
            Sort::User => issue.user_count,
        }
    }
}

/// Which issues a list asks for.
#[derive(Debug, Clone, Default)]
pub struct IssueFilter {
    /// The parsed search (`SearchQuery::default()`: every issue).
    pub search: SearchQuery,
    /// `environment=` parameters (any of them); empty: no restriction.
    pub environments: Vec<String>,
    pub sort: Sort,
    /// Keyset cursor: issues strictly after (sort value, id) in list order.
    pub after: Option<(i64, i64)>,
    pub limit: i64,
}

/// The `issue_tags` rows whose sums replace an issue's count, first and last seen when the
/// list is filtered by environment or tag.
struct Driver {
    /// Index of the search term that drives (it need not be checked again), if a tag does.
    term: Option<usize>,
    key: String,
    values: Vec<String>,
    environments: Option<Vec<String>>,
}

impl IssueFilter {
    /// The environments the list is restricted to: the `environment=` parameters, narrowed by
    /// each `environment:` term. `None`: no restriction; `Some(empty)`: nothing can match.
    pub fn environments_in_effect(&self) -> Option<Vec<String>> {
        let mut envs = (!self.environments.is_empty()).then(|| self.environments.clone());
        for t in &self.search.terms {
            if let Filter::Tag { key, values } = &t.filter {
                if key == "environment" && !t.negated && !values.is_empty() {
                    envs = Some(match envs {
                        None => values.clone(),
                        Some(e) => e.into_iter().filter(|v| values.contains(v)).collect(),
                    });
                }
            }
        }
        envs
    }

    /// The figures' source: with environments E and a first tag term K in V, the rows
    /// (E, K, V); with E alone, the rows (E, 'environment', E); with a tag alone, (any, K, V).
    fn driver(&self) -> Option<Driver> {
        let environments = self.environments_in_effect();
        let tag = self
            .search
            .terms
            .iter()
            .enumerate()
            .find_map(|(i, t)| match &t.filter {
                Filter::Tag { key, values }
                    if !t.negated && !values.is_empty() && key != "environment" =>
                {
                    Some((i, key.clone(), values.clone()))
                }
                _ => None,
            });
        match (tag, environments) {
            (Some((i, key, values)), environments) => Some(Driver {
                term: Some(i),
                key,
                values,
                environments,
            }),
            (None, Some(envs)) => Some(Driver {
                term: None,
                key: "environment".into(),
                values: envs.clone(),
                environments: Some(envs),
            }),
            (None, None) => None,
        }
    }
}

/// A bound value of a built query.
enum Bind {
    I(i64),
    S(String),
}

/// Builds a query's text and its values together, numbering placeholders as it goes.
#[derive(Default)]
struct Sql {
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn int(&mut self, v: i64) -> &mut Self {
        self.binds.push(Bind::I(v));
        self.text.push_str(&format!("${}", self.binds.len()));
        self
    }

    fn str(&mut self, v: &str) -> &mut Self {
        self.binds.push(Bind::S(v.to_string()));
        self.text.push_str(&format!("${}", self.binds.len()));
        self
    }

    /// `(a, b, c)` of placeholders.
    fn ints(&mut self, vs: &[i64]) -> &mut Self {
        self.push("(");
        for (k, v) in vs.iter().enumerate() {
            if k > 0 {
                self.push(", ");
            }
            self.int(*v);
        }
        self.push(")")
    }

    fn strs(&mut self, vs: &[String]) -> &mut Self {
        self.push("(");
        for (k, v) in vs.iter().enumerate() {
            if k > 0 {
                self.push(", ");
            }
            self.str(v);
        }
        self.push(")")
    }
}

/// `%word%` for LIKE with its wildcards escaped (`ESCAPE '\'`).
fn like_pattern(w: &str) -> String {
    let escaped = w
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// `bounds` all holding for `col` (`col >= $1 AND col < $2`).
fn bounds_sql(q: &mut Sql, col: &str, bounds: &[(Cmp, i64)]) {
    for (k, (cmp, v)) in bounds.iter().enumerate() {
        if k > 0 {
            q.push(" AND ");
        }
        q.push(&format!("{col} {} ", cmp.sql())).int(*v);
    }
}

/// `SELECT_ISSUE`'s columns without its `FROM`: the list adds its figures and its own
/// `FROM`. The project's names come from subqueries, not a join: with a join SQLite may plan
/// the projects first and then sort every issue instead of reading the sort's index in order.
const LIST_COLUMNS: &str = "SELECT i.id, i.project_id,
        (SELECT p.slug FROM projects p WHERE p.id = i.project_id),
        (SELECT p.name FROM projects p WHERE p.id = i.project_id), i.short_number,
        i.title, i.culprit, i.level, i.platform, i.event_type, i.metadata, i.status,
        i.event_count, i.first_seen, i.last_seen, i.substatus, i.state, i.user_count";

pub(crate) const SELECT_ISSUE: &str = "SELECT i.id, i.project_id, p.slug, p.name, i.short_number,
        i.title, i.culprit, i.level, i.platform, i.event_type, i.metadata, i.status,
        i.event_count, i.first_seen, i.last_seen, i.substatus, i.state, i.user_count
    FROM issues i JOIN projects p ON p.id = i.project_id AND p.deleted_at IS NULL";

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

    /// A page of a project's issues (see `list_issues_in`).
    pub async fn list_issues(&self, project_id: i64, f: &IssueFilter) -> Result<Vec<Issue>> {
        self.list_issues_in(&[project_id], f).await
    }

    /// A page of the issues of `projects` that match `f`, in `f.sort` order (ties: higher id
    /// first), merged issues left out. With an environment or tag filter, each issue's
    /// `event_count`, `first_seen` and `last_seen` are those of the matching `issue_tags` rows
    /// (see `IssueFilter::driver`), and the sort, the cursor, time and `times_seen` terms follow
    /// them; `user_count` stays the issue's.
    pub async fn list_issues_in(&self, projects: &[i64], f: &IssueFilter) -> Result<Vec<Issue>> {
        if projects.is_empty() || f.environments_in_effect().is_some_and(|e| e.is_empty()) {
            return Ok(vec![]);
        }
        // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE is the same thing there.
        let like = match self.read {
            Db::Sqlite(_) => "LIKE",
            Db::Postgres(_) => "ILIKE",
        };
        let driver = f.driver();
        let mut q = Sql::default();
        // One project: `=`, so the sort's index (project, key..., id) is read in order.
        let in_projects = |q: &mut Sql, col: &str| {
            match projects {
                [one] => q.push(&format!(" {col} = ")).int(*one),
                _ => q.push(&format!(" {col} IN ")).ints(projects),
            };
        };
        let (cnt, fs, ls, id) = match &driver {
            // One value in one environment: at most one row per issue, so no sums; the
            // matches are one contiguous range of `issue_tags` (its key), figures included.
            Some(d)
                if d.values.len() == 1 && d.environments.as_ref().is_some_and(|e| e.len() == 1) =>
            {
                q.push(
                    " FROM issue_tags f
                     JOIN issues i ON i.id = f.issue_id WHERE",
                );
                in_projects(&mut q, "f.project_id");
                q.push(" AND f.key = ")
                    .str(&d.key)
                    .push(" AND f.value = ")
                    .str(&d.values[0])
                    .push(" AND f.environment IN ")
                    .strs(d.environments.as_deref().unwrap_or_default())
                    .push(" AND i.merged_into IS NULL");
                ("f.count", "f.first_seen", "f.last_seen", "f.issue_id")
            }
            Some(d) => {
                // One pass over the key range (project, key, value, environment), summed per
                // issue.
                q.push(
                    " FROM (SELECT issue_id, CAST(SUM(count) AS BIGINT) AS cnt,
                        MIN(first_seen) AS fs, MAX(last_seen) AS ls FROM issue_tags",
                );
                // SQLite might otherwise walk the whole issue index to group by issue (the
                // key of a WITHOUT ROWID table stays usable under NOT INDEXED).
                if matches!(self.read, Db::Sqlite(_)) {
                    q.push(" NOT INDEXED");
                }
                q.push(" WHERE");
                in_projects(&mut q, "project_id");
                q.push(" AND key = ")
                    .str(&d.key)
                    .push(" AND value IN ")
                    .strs(&d.values);
                if let Some(envs) = &d.environments {
                    q.push(" AND environment IN ").strs(envs);
                }
                q.push(
                    " GROUP BY issue_id) f JOIN issues i ON i.id = f.issue_id
                     WHERE i.merged_into IS NULL",
                );
                ("f.cnt", "f.fs", "f.ls", "i.id")
            }
            None => {
                q.push(" FROM issues i WHERE");
                in_projects(&mut q, "i.project_id");
                q.push(" AND i.merged_into IS NULL");
                ("i.event_count", "i.first_seen", "i.last_seen", "i.id")
            }
        };
        let envs = driver.as_ref().and_then(|d| d.environments.clone());
        match &f.search.statuses {
            None => {}
            Some(s) if s.is_empty() => {
                q.push(" AND 1 = 0");
            }
            Some(s) => {
                let s: Vec<String> = s.iter().map(|s| s.to_string()).collect();
                q.push(" AND i.status IN ").strs(&s);
            }
        }
        if !f.search.substatuses.is_empty() {
            let s: Vec<String> = f.search.substatuses.iter().map(|s| s.to_string()).collect();
            q.push(" AND i.substatus IN ").strs(&s);
        }
        let key = match f.sort {
            Sort::Date => ls,
            Sort::New => fs,
            Sort::Freq => cnt,
            Sort::User => "i.user_count",
        };
        // A bound on another figure than the sort's is written `+col`, which keeps SQLite
        // from picking that figure's index for the range and then sorting every issue (it
        // has no statistics to know the bound selects nearly all): the sort's index is read
        // in order and the bound checked per row up to the limit.
        let unindexed = |col: &str| {
            if col == key {
                col.to_string()
            } else {
                format!("+{col}")
            }
        };
        let drives = driver.as_ref().and_then(|d| d.term);
        for (k, t) in f.search.terms.iter().enumerate() {
            // The driver's rows already select its term and every positive environment term.
            let in_driver = match &t.filter {
                Filter::Tag { key, values } => {
                    key == "environment" && !t.negated && !values.is_empty()
                }
                _ => false,
            };
            if Some(k) == drives || in_driver {
                continue;
            }
            q.push(if t.negated { " AND NOT (" } else { " AND (" });
            match &t.filter {
                Filter::Text(w) => {
                    let w = like_pattern(w);
                    q.push(&format!("i.title {like} "))
                        .str(&w)
                        .push(&format!(" ESCAPE '\\' OR i.culprit {like} "))
                        .str(&w)
                        .push(" ESCAPE '\\'");
                }
                Filter::Tag { key, values } => {
                    q.push("EXISTS (SELECT 1 FROM issue_tags t WHERE t.issue_id = i.id")
                        .push(" AND t.key = ")
                        .str(key);
                    if !values.is_empty() {
                        q.push(" AND t.value IN ").strs(values);
                    }
                    if let Some(envs) = &envs {
                        q.push(" AND t.environment IN ").strs(envs);
                    }
                    q.push(")");
                }
                Filter::Seen { field, bounds } => {
                    let col = match field {
                        SeenField::FirstSeen => fs,
                        SeenField::LastSeen => ls,
                    };
                    bounds_sql(&mut q, &unindexed(col), bounds);
                }
                Filter::TimesSeen { bounds } => bounds_sql(&mut q, &unindexed(cnt), bounds),
            }
            q.push(")");
        }
        if let Some((after_value, after_id)) = f.after {
            q.push(&format!(" AND ({key}, {id}) < ("))
                .int(after_value)
                .push(", ")
                .int(after_id)
                .push(")");
        }
        q.push(&format!(" ORDER BY {key} DESC, {id} DESC LIMIT "))
            .int(f.limit);
        // A filtered list, or several projects, sorts every match: the page is then chosen
        // over narrow rows (id, figures, sort key) and only its rows are read whole. One
        // project unfiltered reads its sort's index in order and stops at the limit.
        if driver.is_some() || projects.len() > 1 {
            let alias = match f.sort {
                Sort::Date => "ls",
                Sort::New => "fs",
                Sort::Freq => "cnt",
                Sort::User => "users",
            };
            // PostgreSQL would hash-join the page with a scan of every issue; LATERAL makes
            // it look each one up by id. SQLite looks rows up by rowid anyway.
            let join = match self.read {
                Db::Sqlite(_) => "JOIN issues i ON i.id = pg.id",
                Db::Postgres(_) => {
                    "CROSS JOIN LATERAL (SELECT * FROM issues WHERE issues.id = pg.id) i"
                }
            };
            q.text = format!(
                "{LIST_COLUMNS}, pg.cnt, pg.fs, pg.ls FROM (SELECT {id} AS id, {cnt} AS cnt,
                        {fs} AS fs, {ls} AS ls, i.user_count AS users{}) pg
                 {join} ORDER BY pg.{alias} DESC, pg.id DESC",
                q.text
            );
        } else {
            q.text = format!("{LIST_COLUMNS}, {cnt}, {fs}, {ls}{}", q.text);
        }
        let rows = on!(&self.read, p => {
            let mut query = sqlx::query(&q.text);
            for b in &q.binds {
                query = match b {
                    Bind::I(v) => query.bind(*v),
                    Bind::S(v) => query.bind(v.as_str()),
                };
            }
            query
                .fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    let mut issue = issue_from_row(r)?;
                    issue.event_count = r.try_get(18)?;
                    issue.first_seen = r.try_get(19)?;
                    issue.last_seen = r.try_get(20)?;
                    Ok(issue)
                })
                .collect::<sqlx::Result<Vec<Issue>>>()?
        });
        Ok(rows)
    }

    /// Events per (issue, hour bucket) from `issue_stats` for buckets at or after `since`
    /// (µs), summed over `environments` (all when `None`): one indexed read for a page.
    pub async fn issue_stats(
        &self,
        issues: &[i64],
        environments: Option<&[String]>,
        since: i64,
    ) -> Result<Vec<(i64, i64, i64)>> {
        if issues.is_empty() {
            return Ok(vec![]);
        }
        let mut q = Sql::default();
        q.push(
            "SELECT issue_id, bucket, CAST(SUM(count) AS BIGINT) FROM issue_stats WHERE issue_id IN ",
        )
        .ints(issues)
        .push(" AND bucket >= ")
        .int(since);
        if let Some(envs) = environments {
            q.push(" AND environment IN ").strs(envs);
        }
        q.push(" GROUP BY issue_id, bucket");
        let rows: Vec<(i64, i64, i64)> = on!(&self.read, p => {
            let mut query = sqlx::query_as(&q.text);
            for b in &q.binds {
                query = match b {
                    Bind::I(v) => query.bind(*v),
                    Bind::S(v) => query.bind(v.as_str()),
                };
            }
            query.fetch_all(p).await?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::search;

    fn filter(query: &str, environments: &[&str]) -> IssueFilter {
        IssueFilter {
            search: search::parse(Some(query), chrono::Utc::now()).unwrap(),
            environments: environments.iter().map(|e| e.to_string()).collect(),
            ..IssueFilter::default()
        }
    }

    #[test]
    fn sorts() {
        assert_eq!(Sort::parse(None), Ok(Sort::Date));
        assert_eq!(Sort::parse(Some("")), Ok(Sort::Date));
        assert_eq!(Sort::parse(Some("freq")), Ok(Sort::Freq));
        assert!(Sort::parse(Some("trends"))
            .unwrap_err()
            .contains("'trends'"));
    }

    #[test]
    fn what_drives_the_figures() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(filter("level:error is:resolved", &[]).driver().is_some());
        assert!(filter("KeyError !browser:x has:os", &[]).driver().is_none());
        // Environments: the parameters narrowed by each `environment:` term.
        let f = filter("environment:[a, b]", &["b", "c"]);
        assert_eq!(f.environments_in_effect(), Some(s(&["b"])));
        let d = f.driver().unwrap();
        assert_eq!(
            (d.key.as_str(), d.values, d.term),
            ("environment", s(&["b"]), None)
        );
        assert_eq!(
            filter("environment:a", &["b"]).environments_in_effect(),
            Some(vec![])
        );
        // The first positive tag term drives, within the environments.
        let d = filter("!os:x browser:[c, f] level:error", &["prod"])
            .driver()
            .unwrap();
        assert_eq!(
            (d.key.as_str(), d.values, d.term),
            ("browser", s(&["c", "f"]), Some(1))
        );
        assert_eq!(d.environments, Some(s(&["prod"])));
    }
}
