//! Per-project event quotas (events per minute and per hour), counted in fixed windows.
//!
//! Each process counts the events it accepts per project and window in memory, and once a
//! second adds its new counts to the database and reads back the totals of every process
//! (`sync`). A decision uses the last known total plus what this process accepted since, so
//! with one process it is exact, and with several the overshoot is at most what the others
//! accepted within one second. That is the trade Sentry's Relay makes too (its counters live in
//! Redis, checked asynchronously): a quota is a budget, not an exact count, and checking it
//! must cost no database round trip on the request path. Projects without a limit are not
//! counted at all.

use crate::store::quotas::QuotaUsage;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A project's limits: events per minute and per hour; None is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimits {
    pub per_minute: Option<u64>,
    pub per_hour: Option<u64>,
}

impl QuotaLimits {
    fn any(&self) -> bool {
        self.per_minute.is_some() || self.per_hour.is_some()
    }

    fn windows(&self) -> [(i64, Option<u64>); 2] {
        [(60, self.per_minute), (3600, self.per_hour)]
    }
}

/// The answer for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over a limit until the window ends, in `retry_after` seconds (the longest exceeded).
    Exceeded {
        retry_after: u64,
    },
}

/// One window's count: the database total at the last sync and this process's count since.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    start: i64,
    synced: u64,
    local: u64,
}

#[derive(Debug, Default)]
struct ProjectState {
    limits: QuotaLimits,
    /// When `limits` were read (seconds); they are read again after `LIMITS_TTL`.
    limits_at: i64,
    /// The minute's window and the hour's.
    counts: [Count; 2],
}

/// Every project's quota state in this process. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Quotas {
    projects: Arc<Mutex<HashMap<i64, ProjectState>>>,
}

/// How long a project's limits are trusted before they are read again: a change through the
/// CLI or the API applies within this.
const LIMITS_TTL: i64 = 5;

fn window_start(now: i64, secs: i64) -> i64 {
    now - now.rem_euclid(secs)
}

impl Quotas {
    /// The project's limits as cached, or None when they must be read again.
    fn cached_limits(&self, project: i64, now: i64) -> Option<QuotaLimits> {
        let map = self.projects.lock().ok()?;
        let p = map.get(&project)?;
        (now - p.limits_at < LIMITS_TTL).then_some(p.limits)
    }

    /// Remembers limits read from the store.
    pub fn set_limits(&self, project: i64, limits: QuotaLimits, now: i64) {
        if let Ok(mut map) = self.projects.lock() {
            let p = map.entry(project).or_default();
            p.limits = limits;
            p.limits_at = now;
        }
    }

    /// Whether one more event of `project` fits its quota at `now` (unix seconds); the limits
    /// are read through the store at most every few seconds.
    pub async fn check(
        &self,
        store: &Store,
        project: i64,
        now: i64,
    ) -> Result<Verdict, crate::store::StoreError> {
        let limits = match self.cached_limits(project, now) {
            Some(l) => l,
            None => {
                let stored = store.project_limits(project).await?;
                let l = QuotaLimits {
                    per_minute: stored.rate_limit_minute.and_then(|n| u64::try_from(n).ok()),
                    per_hour: stored.rate_limit_hour.and_then(|n| u64::try_from(n).ok()),
                };
                self.set_limits(project, l, now);
                l
            }
        };
        if !limits.any() {
            return Ok(Verdict::Allow);
        }
        Ok(self.verdict(project, now))
    }

    /// The verdict from the counts held now.
    fn verdict(&self, project: i64, now: i64) -> Verdict {
        let Ok(mut map) = self.projects.lock() else {
            return Verdict::Allow;
        };
        let Some(p) = map.get_mut(&project) else {
            return Verdict::Allow;
        };
        let mut retry_after = 0;
        for (i, (secs, limit)) in p.limits.windows().into_iter().enumerate() {
            let Some(limit) = limit else { continue };
            let start = window_start(now, secs);
            let c = &mut p.counts[i];
            if c.start != start {
                *c = Count {
                    start,
                    ..Count::default()
                };
            }
            if c.synced + c.local >= limit {
                retry_after = retry_after.max((start + secs - now).max(1) as u64);
            }
        }
        if retry_after > 0 {
            Verdict::Exceeded { retry_after }
        } else {
            Verdict::Allow
        }
    }

    /// Counts one accepted event of `project` (only projects with limits are counted).
    pub fn count(&self, project: i64, now: i64) {
        let Ok(mut map) = self.projects.lock() else {
            return;
        };
        let Some(p) = map.get_mut(&project) else {
            return;
        };
        if !p.limits.any() {
            return;
        }
        for (i, (secs, _)) in p.limits.windows().into_iter().enumerate() {
            let start = window_start(now, secs);
            let c = &mut p.counts[i];
            if c.start != start {
                *c = Count {
                    start,
                    ..Count::default()
                };
            }
            c.local += 1;
        }
    }

    /// Adds this process's new counts to the database and takes back every process's totals
    /// for the current windows of the projects with limits.
    pub async fn sync(&self, store: &Store, now: i64) -> Result<(), crate::store::StoreError> {
        let pending: Vec<QuotaUsage> = {
            let Ok(map) = self.projects.lock() else {
                return Ok(());
            };
            map.iter()
                .filter(|(_, p)| p.limits.any())
                .flat_map(|(&project, p)| {
                    p.limits
                        .windows()
                        .into_iter()
                        .enumerate()
                        .filter(|(_, (_, limit))| limit.is_some())
                        .map(move |(i, (secs, _))| {
                            let c = p.counts[i];
                            let start = window_start(now, secs);
                            QuotaUsage {
                                project_id: project,
                                window_secs: secs,
                                window_start: start,
                                delta: if c.start == start { c.local as i64 } else { 0 },
                            }
                        })
                })
                .collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let totals = store.add_quota_usage(&pending, now - 2 * 3600).await?;
        let Ok(mut map) = self.projects.lock() else {
            return Ok(());
        };
        for (u, total) in pending.iter().zip(totals) {
            let Some(p) = map.get_mut(&u.project_id) else {
                continue;
            };
            let i = usize::from(u.window_secs != 60);
            let c = &mut p.counts[i];
            if c.start != u.window_start {
                *c = Count {
                    start: u.window_start,
                    ..Count::default()
                };
            }
            // What was counted here while the sync ran stays local for the next one.
            c.local = c.local.saturating_sub(u.delta.max(0) as u64);
            c.synced = total.max(0) as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas_with(limits: QuotaLimits, now: i64) -> Quotas {
        let q = Quotas::default();
        q.set_limits(7, limits, now);
        q
    }

    #[test]
    fn a_minute_limit_refuses_until_the_minute_ends() {
        let now = 1_800_000_020; // 20 s into a minute
        let q = quotas_with(
            QuotaLimits {
                per_minute: Some(2),
                per_hour: None,
            },
            now,
        );
        assert_eq!(q.verdict(7, now), Verdict::Allow);
        q.count(7, now);
        q.count(7, now);
        assert_eq!(q.verdict(7, now), Verdict::Exceeded { retry_after: 40 });
        // The next minute starts from zero.
        assert_eq!(q.verdict(7, now + 40), Verdict::Allow);
    }

    #[test]
    fn the_longest_exceeded_window_wins() {
        let now = 1_800_000_020;
        let q = quotas_with(
            QuotaLimits {
                per_minute: Some(1),
                per_hour: Some(1),
            },
            now,
        );
        q.count(7, now);
        let hour_left = (window_start(now, 3600) + 3600 - now) as u64;
        assert_eq!(
            q.verdict(7, now),
            Verdict::Exceeded {
                retry_after: hour_left
            }
        );
    }

    #[test]
    fn projects_without_limits_are_not_counted() {
        let q = quotas_with(QuotaLimits::default(), 0);
        for _ in 0..10 {
            q.count(7, 0);
        }
        assert_eq!(q.verdict(7, 0), Verdict::Allow);
        assert_eq!(q.projects.lock().unwrap()[&7].counts[0].local, 0);
    }
}
