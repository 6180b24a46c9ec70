//! Aggregates held back while the writer is saturated (pure): a batch's compact journal
//! entry, and the sums a flush replays from many entries, so that a hot issue's tag rows are
//! written once per flush instead of once per batch (a crash's leftovers included).

use super::aggregate::{aggregate, Aggregates, IssueUsers, Sample, StatRow, TagRow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// (project, key, value, environment, issue): `issue_tags`' key order.
type TagKey = (i64, String, String, String, i64);

/// The sum of batches' aggregates not written yet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Count, first and last seen (µs).
    tags: BTreeMap<TagKey, (i64, i64, i64)>,
    /// By (issue, bucket, environment).
    stats: BTreeMap<(i64, i64, String), i64>,
    /// Sorted, distinct user hashes per issue.
    users: BTreeMap<i64, Vec<u64>>,
}

impl Pending {
    /// Every stored event adds an hour row, so no rows means no events.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.stats.is_empty() && self.users.is_empty()
    }

    pub fn absorb(&mut self, a: &Aggregates<'_>) {
        for r in &a.tags {
            let key = (
                r.project_id,
                r.key.to_string(),
                r.value.to_string(),
                r.environment.to_string(),
                r.issue_id,
            );
            self.tags
                .entry(key)
                .and_modify(|(count, first, last)| {
                    *count += r.count;
                    *first = (*first).min(r.first_us);
                    *last = (*last).max(r.last_us);
                })
                .or_insert((r.count, r.first_us, r.last_us));
        }
        for r in &a.stats {
            *self
                .stats
                .entry((r.issue_id, r.bucket_us, r.environment.to_string()))
                .or_default() += r.count;
        }
        for u in &a.users {
            let hashes = self.users.entry(u.issue_id).or_default();
            hashes.extend_from_slice(&u.hashes);
            hashes.sort_unstable();
            hashes.dedup();
        }
    }

    /// The issues the rows belong to, sorted.
    pub fn issues(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = (self.tags.keys().map(|k| k.4))
            .chain(self.stats.keys().map(|k| k.0))
            .chain(self.users.keys().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The rows moved to the issue `to` names (an issue merged since the rows were summed
    /// goes to the one it was merged into), or dropped where it names none (deleted).
    pub fn remap(self, to: impl Fn(i64) -> Option<i64>) -> Pending {
        let mut out = Pending::default();
        let mut view = self.view();
        view.tags
            .retain_mut(|r| to(r.issue_id).map(|id| r.issue_id = id).is_some());
        view.stats
            .retain_mut(|r| to(r.issue_id).map(|id| r.issue_id = id).is_some());
        view.users
            .retain_mut(|u| to(u.issue_id).map(|id| u.issue_id = id).is_some());
        out.absorb(&view);
        out
    }

    /// The rows as one batch's aggregates (each table's key order, as `aggregate` gives).
    pub fn view(&self) -> Aggregates<'_> {
        Aggregates {
            tags: (self.tags.iter())
                .map(|((project_id, key, value, env, issue_id), f)| TagRow {
                    issue_id: *issue_id,
                    project_id: *project_id,
                    environment: env,
                    key,
                    value,
                    count: f.0,
                    first_us: f.1,
                    last_us: f.2,
                })
                .collect(),
            stats: (self.stats.iter())
                .map(|((issue_id, bucket_us, env), count)| StatRow {
                    issue_id: *issue_id,
                    bucket_us: *bucket_us,
                    environment: env,
                    count: *count,
                })
                .collect(),
            users: (self.users.iter())
                .map(|(issue_id, hashes)| IssueUsers {
                    issue_id: *issue_id,
                    hashes: hashes.clone(),
                })
                .collect(),
        }
    }
}

/// A batch's samples as stored in the journal: each string once (tags repeat from event to
/// event), then per event its issue, project, time, environment, tag pairs and user as
/// indexes into the strings (environment and user: 0 for none, else index + 1). About 50
/// bytes an event, against the ~1 KB of the rows it stands for.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Entry {
    strings: Vec<String>,
    events: Vec<(i64, i64, i64, u32, Vec<u32>, u32)>,
}

/// The journal entry of a batch's samples.
pub fn journal(samples: &[Sample<'_>]) -> Vec<u8> {
    let mut entry = Entry::default();
    let mut index = std::collections::HashMap::new();
    for s in samples {
        let env = s
            .environment
            .map_or(0, |e| intern(&mut index, &mut entry, e) + 1);
        let mut pairs = Vec::with_capacity(s.tags.len() * 2);
        for (k, v) in s.tags {
            pairs.push(intern(&mut index, &mut entry, k));
            pairs.push(intern(&mut index, &mut entry, v));
        }
        let user = s.user.map_or(0, |u| intern(&mut index, &mut entry, u) + 1);
        entry
            .events
            .push((s.issue_id, s.project_id, s.timestamp_us, env, pairs, user));
    }
    serde_json::to_vec(&entry).unwrap_or_default()
}

/// The index of `s` in the entry's strings, added if new.
fn intern<'a>(
    index: &mut std::collections::HashMap<&'a str, u32>,
    entry: &mut Entry,
    s: &'a str,
) -> u32 {
    *index.entry(s).or_insert_with(|| {
        entry.strings.push(s.to_string());
        (entry.strings.len() - 1) as u32
    })
}

/// What journal entries add up to; `None` if one cannot be read (a torn or foreign entry).
pub fn replay<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Option<Pending> {
    let mut pending = Pending::default();
    for bytes in entries {
        let entry: Entry = serde_json::from_slice(bytes).ok()?;
        let string = |i: u32| entry.strings.get(i as usize).map(String::as_str);
        let mut tags: Vec<Vec<(String, String)>> = Vec::with_capacity(entry.events.len());
        for (_, _, _, _, pairs, _) in &entry.events {
            let mut t = Vec::with_capacity(pairs.len() / 2);
            for kv in pairs.chunks(2) {
                let [k, v] = kv else { return None };
                t.push((string(*k)?.to_string(), string(*v)?.to_string()));
            }
            tags.push(t);
        }
        let optional = |i: u32| match i {
            0 => Some(None),
            i => string(i - 1).map(Some),
        };
        let mut samples = Vec::with_capacity(entry.events.len());
        for (e, t) in entry.events.iter().zip(&tags) {
            samples.push(Sample {
                issue_id: e.0,
                project_id: e.1,
                timestamp_us: e.2,
                environment: optional(e.3)?,
                tags: t,
                user: optional(e.5)?,
            });
        }
        pending.absorb(&aggregate(&samples));
    }
    Some(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        (pairs.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sample<'a>(
        issue_id: i64,
        ts: i64,
        environment: Option<&'a str>,
        tags: &'a [(String, String)],
        user: Option<&'a str>,
    ) -> Sample<'a> {
        Sample {
            issue_id,
            project_id: 3,
            timestamp_us: ts,
            environment,
            tags,
            user,
        }
    }

    #[test]
    fn batches_summed_equal_one_batch_of_all_their_events() {
        let a = tags(&[("browser", "firefox"), ("environment", "prod")]);
        let b = tags(&[("browser", "chrome")]);
        let first = [
            sample(1, 10, Some("prod"), &a, Some("id:1")),
            sample(2, 20, None, &b, None),
        ];
        let second = [
            sample(1, 5, Some("prod"), &a, Some("id:2")),
            sample(1, 30, Some("prod"), &a, Some("id:1")),
            sample(2, 40, None, &b, Some("ip:10.0.0.1")),
        ];
        let mut pending = Pending::default();
        assert!(pending.is_empty());
        pending.absorb(&aggregate(&first));
        pending.absorb(&aggregate(&second));
        let all: Vec<Sample<'_>> = first.iter().chain(&second).copied().collect();
        assert_eq!(pending.view(), aggregate(&all));
        assert_eq!(pending.issues(), vec![1, 2]);
        assert!(!pending.is_empty());
    }

    #[test]
    fn the_journal_replays_to_the_same_sums() {
        let a = tags(&[("browser", "firefox"), ("release", "1.0")]);
        let none: Vec<(String, String)> = vec![];
        let first = [
            sample(7, 1, Some("prod"), &a, Some("id:1")),
            sample(8, 2, None, &none, None),
        ];
        let second = [sample(7, 3, Some("staging"), &a, Some("email:a@b.c"))];
        let entries = [journal(&first), journal(&second)];
        let replayed = replay(entries.iter().map(Vec::as_slice)).unwrap();
        let mut summed = Pending::default();
        summed.absorb(&aggregate(&first));
        summed.absorb(&aggregate(&second));
        assert_eq!(replayed, summed);
        // Strings repeated across events are stored once.
        let text = String::from_utf8(journal(&[first[0], first[0], first[0]])).unwrap();
        assert_eq!(text.matches("firefox").count(), 1);
        assert_eq!(replay([&b"{not json"[..]]), None);
        assert_eq!(
            replay([&br#"{"strings":[],"events":[[1,1,1,0,[0,1],0]]}"#[..]]),
            None
        );
    }

    #[test]
    fn rows_of_merged_issues_move_and_of_deleted_ones_go() {
        let a = tags(&[("browser", "firefox")]);
        let batch = [
            sample(1, 10, None, &a, Some("id:1")),
            sample(2, 20, None, &a, Some("id:2")),
            sample(3, 30, None, &a, Some("id:3")),
        ];
        let mut pending = Pending::default();
        pending.absorb(&aggregate(&batch));
        // 2 was merged into 1, 3 deleted.
        let moved = pending.remap(|id| match id {
            1 | 2 => Some(1),
            _ => None,
        });
        let mut expected = Pending::default();
        expected.absorb(&aggregate(&[
            sample(1, 10, None, &a, Some("id:1")),
            sample(1, 20, None, &a, Some("id:2")),
        ]));
        assert_eq!(moved, expected);
        assert_eq!(moved.issues(), vec![1]);
    }
}
