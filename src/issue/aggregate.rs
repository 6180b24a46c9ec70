//! A batch's per-issue aggregates (pure): the tag rows, hourly counts and users its stored
//! events add, ready for one upsert per table.
//!
//! The rows come out sorted by their table's primary key, each key once: a PostgreSQL
//! `INSERT ... ON CONFLICT DO UPDATE` may not meet one row twice, and writers that upsert in
//! one order cannot wait for each other in a circle.

use std::collections::BTreeMap;

/// What one stored event contributes.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub issue_id: i64,
    pub project_id: i64,
    pub timestamp_us: i64,
    pub environment: Option<&'a str>,
    /// The event's tags, `level`, `environment` and `release` included.
    pub tags: &'a [(String, String)],
    pub user: Option<&'a str>,
}

/// One `issue_tags` row to add: `count` events, first and last seen (µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow<'a> {
    pub issue_id: i64,
    pub project_id: i64,
    /// `""` for events without one.
    pub environment: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub count: i64,
    pub first_us: i64,
    pub last_us: i64,
}

/// One `issue_stats` row to add: `count` events in the hour starting at `bucket_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow<'a> {
    pub issue_id: i64,
    pub bucket_us: i64,
    pub environment: &'a str,
    pub count: i64,
}

/// The users an issue saw in the batch, as sorted, distinct hashes (`users::hash_user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueUsers {
    pub issue_id: i64,
    pub hashes: Vec<u64>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Aggregates<'a> {
    /// By (project, key, value, environment, issue): the table's key, so that a batch's
    /// upserts walk its B-tree in order.
    pub tags: Vec<TagRow<'a>>,
    /// By (issue, bucket, environment).
    pub stats: Vec<StatRow<'a>>,
    /// By issue; only issues with users.
    pub users: Vec<IssueUsers>,
}

const HOUR_US: i64 = 3_600_000_000;

/// The start of the hour `us` falls in (µs; times before 1970 round down too).
pub fn hour_bucket(us: i64) -> i64 {
    us.div_euclid(HOUR_US) * HOUR_US
}

/// Sums the samples into rows.
pub fn aggregate<'a>(samples: &[Sample<'a>]) -> Aggregates<'a> {
    type TagKey<'a> = (i64, &'a str, &'a str, &'a str, i64);
    let mut tags: BTreeMap<TagKey<'a>, TagRow<'a>> = BTreeMap::new();
    let mut stats: BTreeMap<(i64, i64, &'a str), i64> = BTreeMap::new();
    let mut users: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for s in samples {
        let env = s.environment.unwrap_or("");
        for (k, v) in s.tags {
            tags.entry((s.project_id, k, v, env, s.issue_id))
                .and_modify(|r| {
                    r.count += 1;
                    r.first_us = r.first_us.min(s.timestamp_us);
                    r.last_us = r.last_us.max(s.timestamp_us);
                })
                .or_insert(TagRow {
                    issue_id: s.issue_id,
                    project_id: s.project_id,
                    environment: env,
                    key: k,
                    value: v,
                    count: 1,
                    first_us: s.timestamp_us,
                    last_us: s.timestamp_us,
                });
        }
        *stats
            .entry((s.issue_id, hour_bucket(s.timestamp_us), env))
            .or_default() += 1;
        if let Some(u) = s.user {
            users
                .entry(s.issue_id)
                .or_default()
                .push(super::users::hash_user(u));
        }
    }
    Aggregates {
        tags: tags.into_values().collect(),
        stats: stats
            .into_iter()
            .map(|((issue_id, bucket_us, environment), count)| StatRow {
                issue_id,
                bucket_us,
                environment,
                count,
            })
            .collect(),
        users: users
            .into_iter()
            .map(|(issue_id, mut hashes)| {
                hashes.sort_unstable();
                hashes.dedup();
                IssueUsers { issue_id, hashes }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::users::hash_user;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const H: i64 = HOUR_US;

    #[test]
    fn rows_per_issue_environment_and_value() {
        let prod_a = tags(&[("browser", "firefox"), ("environment", "prod")]);
        let prod_b = tags(&[("browser", "chrome"), ("environment", "prod")]);
        let none = tags(&[("browser", "firefox")]);
        let s = |issue_id, ts, environment, tags, user| Sample {
            issue_id,
            project_id: 7,
            timestamp_us: ts,
            environment,
            tags,
            user,
        };
        let samples = [
            s(2, 5 * H + 9, Some("prod"), &prod_a[..], Some("id:1")),
            s(1, 3 * H, None, &none[..], None),
            s(2, 5 * H + 1, Some("prod"), &prod_a[..], Some("id:2")),
            s(2, 7 * H, Some("prod"), &prod_b[..], Some("id:1")),
            s(1, 3 * H - 1, None, &none[..], Some("ip:10.0.0.1")),
        ];
        let a = aggregate(&samples);
        let row = |issue_id, environment, key, value, count, first_us, last_us| TagRow {
            issue_id,
            project_id: 7,
            environment,
            key,
            value,
            count,
            first_us,
            last_us,
        };
        assert_eq!(
            a.tags,
            vec![
                row(2, "prod", "browser", "chrome", 1, 7 * H, 7 * H),
                row(1, "", "browser", "firefox", 2, 3 * H - 1, 3 * H),
                row(2, "prod", "browser", "firefox", 2, 5 * H + 1, 5 * H + 9),
                row(2, "prod", "environment", "prod", 3, 5 * H + 1, 7 * H),
            ]
        );
        let stat = |issue_id, bucket_us, environment, count| StatRow {
            issue_id,
            bucket_us,
            environment,
            count,
        };
        assert_eq!(
            a.stats,
            vec![
                stat(1, 2 * H, "", 1),
                stat(1, 3 * H, "", 1),
                stat(2, 5 * H, "prod", 2),
                stat(2, 7 * H, "prod", 1),
            ]
        );
        let mut two = vec![hash_user("id:1"), hash_user("id:2")];
        two.sort_unstable();
        assert_eq!(
            a.users,
            vec![
                IssueUsers {
                    issue_id: 1,
                    hashes: vec![hash_user("ip:10.0.0.1")]
                },
                IssueUsers {
                    issue_id: 2,
                    hashes: two
                },
            ]
        );
    }

    #[test]
    fn empty_batches_and_hours() {
        assert_eq!(aggregate(&[]), Aggregates::default());
        for (us, bucket) in [
            (0, 0),
            (H - 1, 0),
            (H, H),
            (-1, -H),
            (-H, -H),
            (-H - 1, -2 * H),
        ] {
            assert_eq!(hour_bucket(us), bucket, "{us}");
        }
    }
}
