//! A project's grouping settings (scheme and rules, and the previous ones during a transition)
//! and the hash links of an issue.

use super::{Result, Store};

/// What a project groups with, as stored: a scheme id and the rule texts (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupingConfigText {
    pub scheme: String,
    pub fingerprinting_rules: String,
    pub enhancements: String,
}

/// A project's grouping settings: the configuration new events are grouped with, and, until
/// `secondary_expiry_us`, the one it replaced, whose hashes still find existing issues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupingSettings {
    pub primary: GroupingConfigText,
    pub secondary: Option<GroupingConfigText>,
    /// When the transition ends (µs); meaningful with `secondary`.
    pub secondary_expiry_us: Option<i64>,
}

/// One hash linked to an issue, and the scheme that linked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashLink {
    pub hash: String,
    pub scheme: String,
}

type Row = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<i64>,
);

const COLUMNS: &str = "grouping_config, fingerprinting_rules, grouping_enhancements,
    secondary_grouping_config, secondary_fingerprinting_rules, secondary_grouping_enhancements,
    secondary_grouping_expiry";

fn from_row(r: Row) -> GroupingSettings {
    let (scheme, fingerprinting_rules, enhancements, s_scheme, s_rules, s_enh, expiry) = r;
    GroupingSettings {
        primary: GroupingConfigText {
            scheme,
            fingerprinting_rules,
            enhancements,
        },
        secondary: s_scheme.map(|scheme| GroupingConfigText {
            scheme,
            fingerprinting_rules: s_rules,
            enhancements: s_enh,
        }),
        secondary_expiry_us: expiry,
    }
}

impl Store {
    /// A project's grouping settings; `None` when there is no such project.
    pub async fn grouping_settings(&self, project_id: i64) -> Result<Option<GroupingSettings>> {
        let row: Option<Row> = on!(&self.read, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM projects WHERE id = $1"
        ))
        .bind(project_id)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(from_row))
    }

    /// Replaces a project's grouping settings whole, if they are still `expected` (what the
    /// caller read): false when they changed meanwhile (another process upgraded the scheme,
    /// another person saved) or the project is gone, and nothing is written.
    pub async fn set_grouping_settings(
        &self,
        project_id: i64,
        s: &GroupingSettings,
        expected: &GroupingSettings,
    ) -> Result<bool> {
        let secondary = s.secondary.clone().unwrap_or_default();
        let was = expected.secondary.clone().unwrap_or_default();
        // coalesce: NULL never equals NULL, and no stored value is '' or -1.
        let n = on!(&self.write, p => sqlx::query(
            "UPDATE projects SET grouping_config = $1, fingerprinting_rules = $2,
                 grouping_enhancements = $3, secondary_grouping_config = $4,
                 secondary_fingerprinting_rules = $5, secondary_grouping_enhancements = $6,
                 secondary_grouping_expiry = $7
             WHERE id = $8 AND grouping_config = $9 AND fingerprinting_rules = $10
                 AND grouping_enhancements = $11 AND coalesce(secondary_grouping_config, '') = $12
                 AND secondary_fingerprinting_rules = $13
                 AND secondary_grouping_enhancements = $14
                 AND coalesce(secondary_grouping_expiry, -1) = $15",
        )
        .bind(&s.primary.scheme)
        .bind(&s.primary.fingerprinting_rules)
        .bind(&s.primary.enhancements)
        .bind(s.secondary.as_ref().map(|c| c.scheme.as_str()))
        .bind(&secondary.fingerprinting_rules)
        .bind(&secondary.enhancements)
        .bind(s.secondary.as_ref().and(s.secondary_expiry_us))
        .bind(project_id)
        .bind(&expected.primary.scheme)
        .bind(&expected.primary.fingerprinting_rules)
        .bind(&expected.primary.enhancements)
        .bind(expected.secondary.as_ref().map_or("", |c| c.scheme.as_str()))
        .bind(&was.fingerprinting_rules)
        .bind(&was.enhancements)
        .bind(expected.secondary.as_ref().and(expected.secondary_expiry_us).unwrap_or(-1))
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Moves a project from the scheme `from` to `to`, keeping its configuration as the
    /// secondary one until `until_us`. Only one caller wins when several processes try at once
    /// (the `WHERE` sees the scheme it replaces); returns whether this one did.
    pub async fn upgrade_grouping_scheme(
        &self,
        project_id: i64,
        from: &str,
        to: &str,
        until_us: i64,
    ) -> Result<bool> {
        let n = on!(&self.write, p => sqlx::query(
            "UPDATE projects SET secondary_grouping_config = grouping_config,
                 secondary_fingerprinting_rules = fingerprinting_rules,
                 secondary_grouping_enhancements = grouping_enhancements,
                 secondary_grouping_expiry = $1, grouping_config = $2
             WHERE id = $3 AND grouping_config = $4",
        )
        .bind(until_us)
        .bind(to)
        .bind(project_id)
        .bind(from)
        .execute(p)
        .await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// The hashes linked to an issue, in hash order.
    pub async fn issue_hashes(&self, issue_id: i64) -> Result<Vec<HashLink>> {
        let rows: Vec<(String, String)> = on!(&self.read, p => sqlx::query_as(
            "SELECT hash, grouping_version FROM grouping_hashes WHERE issue_id = $1 ORDER BY hash",
        )
        .bind(issue_id)
        .fetch_all(p)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(hash, scheme)| HashLink { hash, scheme })
            .collect())
    }
}
