//! The lifecycle as a pure planner: stored facts and new events in, effects out.

// The store locks the issues a transaction touches (in id order), loads what is here called
// facts (each issue's stored state, count and mute counters, the project's release order, the
// new events, `now`), asks the planner, and applies the effects in the same transaction. So
// every decision is made from the database's state under a lock, never from one process's
// memory: a restarted process, or a second one, decides the same, and a crossing that several
// processes see at once is planned by whichever locks the issue first; the others load the
// unmuted state and plan nothing.
//
// Volume conditions need exact counts only rarely: the mute's rolling counters (stored with the
// issue) give an upper bound, and only when it reaches a volume does the planner ask for an
// exact count. Planning a batch is therefore two pure steps, `plan_batch` then
// `BatchDraft::finish`, with the store answering the draft's `queries` in between.

use super::request::Change;
use super::state::{self, Actor, AlertKind, CurrentVolume, IssueState, Refusal, Status};
use super::state::{Transition, TransitionKind};
use super::volume::{Buckets, VolumeCondition};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;

/// A muted issue's rolling counters, one per volume condition of its mute. Stored with the
/// issue and updated in the transaction of every batch that adds events to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteCounters {
    #[serde(default)]
    pub volume: Vec<(VolumeCondition, Buckets)>,
}

impl MuteCounters {
    /// The stored JSON; anything unreadable is no counters (the planner then counts exactly).
    pub fn from_stored(json: Option<&str>) -> MuteCounters {
        json.and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    }

    /// The JSON to store; `None` when there is nothing to keep.
    pub fn to_stored(&self) -> Option<String> {
        if self.volume.is_empty() {
            return None;
        }
        serde_json::to_string(self).ok()
    }

    /// Whether these counters belong to exactly these conditions (else they cannot be trusted).
    fn matches(&self, conditions: &[VolumeCondition]) -> bool {
        self.volume.len() == conditions.len()
            && self.volume.iter().zip(conditions).all(|((c, _), d)| c == d)
    }

    /// Counters for a new mute: each window's current count, placed at `now`. That over-counts
    /// until those events age out, which keeps the counters an upper bound.
    pub fn seeded(conditions: &[VolumeCondition], counts: &[u64], now: DateTime<Utc>) -> Self {
        let volume = conditions
            .iter()
            .zip(counts)
            .map(|(c, &n)| {
                let mut b = Buckets::new(c);
                b.add(now, n);
                (c.clone(), b)
            })
            .collect();
        MuteCounters { volume }
    }
}

/// One issue as the transaction loaded it, under its lock.
#[derive(Clone, Debug, PartialEq)]
pub struct IssueFacts {
    pub id: i64,
    pub project_id: i64,
    pub state: IssueState,
    /// The stored count before this batch's events (for a change: the count now).
    pub event_count: u64,
    pub counters: MuteCounters,
    /// Created by this batch.
    pub created: bool,
}

/// One newly stored event (re-sends excluded), in batch order.
#[derive(Clone, Debug, PartialEq)]
pub struct EventFact<'a> {
    pub issue_id: i64,
    pub timestamp_us: i64,
    pub release: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub level: &'a str,
    pub user: Option<&'a str>,
}

/// Releases in each project's first-seen order: project -> version -> position.
pub type ReleaseOrder = HashMap<i64, HashMap<String, u64>>;

/// Everything a batch's plan depends on.
#[derive(Debug)]
pub struct BatchFacts<'a> {
    pub now: DateTime<Utc>,
    /// Every issue the batch touches, plus the project's issues resolved in the next release
    /// when the batch brings a release the project had not seen.
    pub issues: Vec<IssueFacts>,
    pub events: Vec<EventFact<'a>>,
    /// At least every release of `events` and every release named by a loaded state.
    pub releases: &'a ReleaseOrder,
    /// Releases first seen by their project in this batch, in order.
    pub new_releases: Vec<(i64, String)>,
}

/// Why an issue became open again (or for the first time): a new episode, which responders
/// will escalate along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpisodeCause {
    Created,
    Regressed,
    Unmuted,
    Reopened,
}

impl EpisodeCause {
    pub fn as_str(self) -> &'static str {
        match self {
            EpisodeCause::Created => "created",
            EpisodeCause::Regressed => "regressed",
            EpisodeCause::Unmuted => "unmuted",
            EpisodeCause::Reopened => "reopened",
        }
    }
}

/// An alert to write to the outbox, with what the event that caused it said. The store adds
/// the issue as it is at this step (its snapshot), so a later delivery tells what was true then.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertPlan {
    pub kind: AlertKind,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub level: Option<String>,
}

/// What a step does to the issue.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// The issue was created by this batch (its row already holds the new-issue state).
    Created,
    /// A transition; the store writes `to` and the step's counters.
    Transition(Box<Transition>),
}

/// One history row and what comes with it. Steps are applied in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub issue_id: i64,
    pub actor: Actor,
    pub what: What,
    /// The counters that go with the new state (empty unless it is a mute with conditions).
    pub counters: MuteCounters,
    pub alert: Option<AlertPlan>,
    pub episode: Option<EpisodeCause>,
    /// The event that caused this step, if one did: responders filter a new episode by it.
    pub trigger: Option<Trigger>,
}

/// What the event behind a step said (its environment and level).
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    pub environment: Option<String>,
    pub level: String,
}

impl Step {
    /// The history row's kind and reason.
    pub fn history(&self) -> (&'static str, &str) {
        match &self.what {
            What::Created => ("first_seen", "A new issue was seen"),
            What::Transition(t) => (t.kind.name(), &t.reason),
        }
    }

    fn transition(issue_id: i64, actor: Actor, t: Transition, counters: MuteCounters) -> Step {
        let episode = match (&t.kind, t.to.status) {
            (_, s) if s != Status::Unresolved => None,
            (TransitionKind::Regressed, _) => Some(EpisodeCause::Regressed),
            (TransitionKind::Unmuted, _) => Some(EpisodeCause::Unmuted),
            _ => Some(EpisodeCause::Reopened),
        };
        Step {
            issue_id,
            actor,
            alert: t.alert.map(|kind| AlertPlan {
                kind,
                environment: None,
                release: None,
                level: None,
            }),
            episode,
            trigger: None,
            what: What::Transition(Box::new(t)),
            counters,
        }
    }

    fn with_event(mut self, ev: Option<&EventFact<'_>>) -> Step {
        if let Some(ev) = ev {
            self.trigger = Some(Trigger {
                environment: ev.environment.map(str::to_owned),
                level: ev.level.to_owned(),
            });
        }
        if let (Some(a), Some(ev)) = (&mut self.alert, ev) {
            a.environment = ev.environment.map(str::to_owned);
            a.release = ev.release.map(str::to_owned);
            a.level = Some(ev.level.to_owned());
        }
        self
    }
}

/// Added to an issue's denormalized figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountUpdate {
    pub issue_id: i64,
    pub events: i64,
    pub first_us: i64,
    pub last_us: i64,
}

/// A user seen by an issue muted with a user limit: stored (or its time moved) so that the
/// distinct users survive restarts and are shared by every process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSeen {
    pub issue_id: i64,
    pub user: String,
    pub at_us: i64,
}

/// An exact figure the planner needs from the database, after this batch's writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Events of the issue with a timestamp in `(now - window, now]`.
    Events { issue_id: i64, window: Duration },
    /// Distinct users stored for the issue with a time at or after `since_us`.
    Users { issue_id: i64, since_us: i64 },
}

/// Everything a batch changes, in the order the store applies it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchEffects {
    pub counts: Vec<CountUpdate>,
    pub users: Vec<UserSeen>,
    pub steps: Vec<Step>,
    /// New counters of muted issues that stay muted.
    pub counters: Vec<(i64, MuteCounters)>,
}

/// A muted issue that received events: whether a limit is reached is decided in `finish`.
#[derive(Debug)]
struct LimitCheck {
    issue_id: i64,
    state: IssueState,
    event_count: u64,
    counters: MuteCounters,
    /// The counters did not match the mute: they are rebuilt from the exact counts.
    rebuild: bool,
    /// Index of the issue's last event in the batch (the unmute alert's context).
    last_event: usize,
    /// Indexes into `BatchDraft::queries`: per condition (None: the bound is below the
    /// volume), then the user count.
    condition_queries: Vec<Option<usize>>,
    user_query: Option<usize>,
}

/// A batch's plan before the exact counts are known.
#[derive(Debug)]
pub struct BatchDraft {
    effects: BatchEffects,
    checks: Vec<LimitCheck>,
    /// The exact figures `finish` needs, in the order of its `answers`.
    pub queries: Vec<Query>,
}

fn to_dt(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// Plans a batch: counts, new issues, next-release resolutions, regressions and the feeding of
/// mute limits. The automatic unmutes follow in `BatchDraft::finish`.
pub fn plan_batch(f: &BatchFacts<'_>) -> BatchDraft {
    let mut effects = BatchEffects::default();
    // Working states: later events of the batch see the transitions of earlier ones.
    let mut states: HashMap<i64, (IssueState, &IssueFacts)> = f
        .issues
        .iter()
        .map(|i| (i.id, (i.state.clone(), i)))
        .collect();

    // Counts, in issue id order (the order the rows were locked in).
    let mut counts: HashMap<i64, CountUpdate> = HashMap::new();
    for ev in &f.events {
        let c = counts.entry(ev.issue_id).or_insert(CountUpdate {
            issue_id: ev.issue_id,
            events: 0,
            first_us: ev.timestamp_us,
            last_us: ev.timestamp_us,
        });
        c.events += 1;
        c.first_us = c.first_us.min(ev.timestamp_us);
        c.last_us = c.last_us.max(ev.timestamp_us);
    }
    effects.counts = counts.values().copied().collect();
    effects.counts.sort_by_key(|c| c.issue_id);

    // New issues: one history row, one new-issue alert, one episode each.
    for issue in f.issues.iter().filter(|i| i.created) {
        let first = f.events.iter().find(|e| e.issue_id == issue.id);
        effects.steps.push(
            Step {
                issue_id: issue.id,
                actor: Actor::System,
                what: What::Created,
                counters: MuteCounters::default(),
                alert: Some(AlertPlan {
                    kind: AlertKind::NewIssue,
                    environment: None,
                    release: None,
                    level: None,
                }),
                episode: Some(EpisodeCause::Created),
                trigger: None,
            }
            .with_event(first),
        );
    }

    let order = |project: i64| {
        let releases = f.releases.get(&project);
        move |a: &str, b: &str| -> Ordering {
            state::compare_releases(a, b, |r| releases.and_then(|m| m.get(r).copied()))
        }
    };

    // A release seen for the first time turns "resolved in the next release" into "resolved
    // in that release".
    for (project, release) in &f.new_releases {
        let cmp = order(*project);
        for issue in f.issues.iter().filter(|i| i.project_id == *project) {
            let Some((s, _)) = states.get_mut(&issue.id) else {
                continue;
            };
            if let Some(t) = state::on_new_release(s, release, &cmp) {
                *s = t.to.clone();
                effects.steps.push(Step::transition(
                    issue.id,
                    Actor::System,
                    t,
                    MuteCounters::default(),
                ));
            }
        }
    }

    // Per event, in order: regressions, and feeding the mute limits.
    let mut fed: Vec<i64> = Vec::new();
    let mut working: HashMap<i64, MuteCounters> = HashMap::new();
    for ev in &f.events {
        let Some((s, issue)) = states.get_mut(&ev.issue_id) else {
            continue;
        };
        match s.status {
            Status::Unresolved => {}
            Status::Resolved => {
                let cmp = order(issue.project_id);
                let is_new = ev.release.is_some_and(|r| {
                    f.new_releases
                        .iter()
                        .any(|(p, v)| *p == issue.project_id && v == r)
                });
                let facts = state::EventFacts {
                    release: ev.release,
                    is_new_release_for_project: is_new,
                    cmp: &cmp,
                };
                if let Some(t) = state::on_event(s, &facts) {
                    *s = t.to.clone();
                    effects.steps.push(
                        Step::transition(ev.issue_id, Actor::System, t, MuteCounters::default())
                            .with_event(Some(ev)),
                    );
                }
            }
            Status::Ignored => {
                let counters = working
                    .entry(ev.issue_id)
                    .or_insert_with(|| issue.counters.clone());
                let at = to_dt(ev.timestamp_us);
                for (_, b) in &mut counters.volume {
                    b.add(at, 1);
                }
                if let (Some(m), Some(user)) = (&s.mute, ev.user) {
                    if m.user_count.is_some() {
                        effects.users.push(UserSeen {
                            issue_id: ev.issue_id,
                            user: user.to_owned(),
                            at_us: ev.timestamp_us,
                        });
                    }
                }
                if !fed.contains(&ev.issue_id) {
                    fed.push(ev.issue_id);
                }
            }
        }
    }

    // The muted issues that received events: what must be counted exactly.
    let mut queries = Vec::new();
    let mut checks = Vec::new();
    let now_us = f.now.timestamp_micros();
    for issue_id in fed {
        let Some((s, issue)) = states.get(&issue_id) else {
            continue;
        };
        let Some(m) = &s.mute else { continue };
        let counters = working.remove(&issue_id).unwrap_or_default();
        let last_event = f
            .events
            .iter()
            .rposition(|e| e.issue_id == issue_id)
            .unwrap_or(0);
        let added = counts.get(&issue_id).map_or(0, |c| c.events as u64);
        let event_count = issue.event_count + added;
        let rebuild = !counters.matches(&m.conditions);
        let count_limit_reached = m
            .count_since_mute
            .is_some_and(|limit| event_count.saturating_sub(m.event_count_at_mute) >= limit);
        let mut check = LimitCheck {
            issue_id,
            state: s.clone(),
            event_count,
            counters,
            rebuild,
            last_event,
            condition_queries: Vec::new(),
            user_query: None,
        };
        if !count_limit_reached {
            for (k, cond) in m.conditions.iter().enumerate() {
                let bound = check
                    .counters
                    .volume
                    .get(k)
                    .map_or(u64::MAX, |(_, b)| b.upper_bound(f.now));
                if rebuild || bound >= cond.volume {
                    check.condition_queries.push(Some(queries.len()));
                    queries.push(Query::Events {
                        issue_id,
                        window: cond.window(),
                    });
                } else {
                    check.condition_queries.push(None);
                }
            }
            if m.user_count.is_some() {
                // Users seen in the window `(now - w, now]`, or from the mute on.
                let since_us = match m.user_window_minutes {
                    Some(w) => now_us - i64::from(w) * 60_000_000 + 1,
                    None => m.muted_at.timestamp_micros(),
                };
                check.user_query = Some(queries.len());
                queries.push(Query::Users { issue_id, since_us });
            }
        }
        checks.push(check);
    }
    BatchDraft {
        effects,
        checks,
        queries,
    }
}

impl BatchDraft {
    /// The counts to add, known before the exact figures (they are written first).
    pub fn counts(&self) -> &[CountUpdate] {
        &self.effects.counts
    }

    /// The users to store before `queries` are answered.
    pub fn users(&self) -> &[UserSeen] {
        &self.effects.users
    }

    /// Completes the plan with the exact figures, aligned with `queries`: each muted issue
    /// whose event count, volume condition or user limit is reached unmutes (once: the state
    /// it was planned from is the locked, stored one); the others keep their new counters.
    pub fn finish(self, facts: &BatchFacts<'_>, answers: &[u64]) -> BatchEffects {
        let mut effects = self.effects;
        let answer = |q: Option<usize>| q.and_then(|i| answers.get(i).copied());
        for mut check in self.checks {
            let Some(m) = check.state.mute.clone() else {
                continue;
            };
            let mut transition = None;
            if m.count_since_mute.is_some() {
                transition = state::unmute_by_event_count(&check.state, check.event_count).ok();
            }
            if transition.is_none() {
                for (cond, q) in m.conditions.iter().zip(&check.condition_queries) {
                    if let Some(exact) = answer(*q) {
                        if exact >= cond.volume {
                            transition = state::unmute_by_condition(&check.state, cond, exact).ok();
                            break;
                        }
                    }
                }
            }
            if transition.is_none() {
                if let Some(users) = answer(check.user_query) {
                    transition = state::unmute_by_user_count(&check.state, users).ok();
                }
            }
            let event = facts.events.get(check.last_event);
            match transition {
                Some(t) => effects.steps.push(
                    Step::transition(check.issue_id, Actor::System, t, MuteCounters::default())
                        .with_event(event),
                ),
                None => {
                    if check.rebuild {
                        let counts: Vec<u64> = check
                            .condition_queries
                            .iter()
                            .map(|q| answer(*q).unwrap_or(0))
                            .collect();
                        check.counters = MuteCounters::seeded(&m.conditions, &counts, facts.now);
                    }
                    effects.counters.push((check.issue_id, check.counters));
                }
            }
        }
        effects
    }
}

/// What a person's change is checked against, read under the issue's lock.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeFacts {
    pub now: DateTime<Utc>,
    /// The project's newest release (for "resolved in the next release").
    pub latest_release: Option<String>,
    /// Events of the issue in each window of `change_windows`, in that order.
    pub window_counts: Vec<u64>,
}

/// The windows a change needs exact counts for (a mute's conditions, checked not to hold yet).
pub fn change_windows(change: &Change) -> Vec<Duration> {
    match change {
        Change::Mute(req) => req.conditions.iter().map(|c| c.window()).collect(),
        _ => Vec::new(),
    }
}

struct Counted<'a> {
    windows: Vec<Duration>,
    counts: &'a [u64],
    event_count: u64,
}

impl CurrentVolume for Counted<'_> {
    fn count_in(&self, window: Duration) -> u64 {
        self.windows
            .iter()
            .position(|w| *w == window)
            .and_then(|i| self.counts.get(i).copied())
            .unwrap_or(0)
    }
    /// Users are only stored while an issue is muted with a user limit (see the README), so a
    /// new mute starts from zero users.
    fn users_in(&self, _window: Duration) -> u64 {
        0
    }
    fn event_count(&self) -> u64 {
        self.event_count
    }
}

/// A person's change of one issue: the step to apply, or why it is refused.
pub fn plan_change(
    issue: &IssueFacts,
    change: &Change,
    actor: Actor,
    f: &ChangeFacts,
) -> Result<Step, Refusal> {
    let s = &issue.state;
    let volume = Counted {
        windows: change_windows(change),
        counts: &f.window_counts,
        event_count: issue.event_count,
    };
    let t = match change {
        Change::Resolve => state::resolve(s),
        Change::ResolveInRelease(r) => state::resolve_in_release(s, r),
        Change::ResolveInNextRelease => {
            state::resolve_in_next_release(s, f.latest_release.as_deref())
        }
        Change::Reopen if s.status == Status::Ignored => state::unmute_by_person(s),
        Change::Reopen => state::reopen(s),
        Change::Unmute => state::unmute_by_person(s),
        Change::Mute(req) => state::mute(s, req.clone(), f.now, &volume),
    }?;
    // A new mute's counters start from the same exact counts its conditions were checked on.
    let counters = match &t.to.mute {
        Some(m) => {
            let counts: Vec<u64> = m
                .conditions
                .iter()
                .map(|c| volume.count_in(c.window()))
                .collect();
            MuteCounters::seeded(&m.conditions, &counts, f.now)
        }
        None => MuteCounters::default(),
    };
    Ok(Step::transition(issue.id, actor, t, counters))
}

/// A muted issue whose time limit has passed: the unmute step, or `None` when the mute
/// changed since the issue was found due (the caller then clears the stale marker).
pub fn plan_timed_unmute(issue: &IssueFacts, now: DateTime<Utc>) -> Option<Step> {
    let t = state::unmute_by_time(&issue.state, now).ok()?;
    Some(Step::transition(
        issue.id,
        Actor::System,
        t,
        MuteCounters::default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::state::MuteRequest;
    use crate::issue::volume::Period;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
    }

    fn issue(id: i64, state: IssueState, event_count: u64) -> IssueFacts {
        IssueFacts {
            id,
            project_id: 1,
            state,
            event_count,
            counters: MuteCounters::default(),
            created: false,
        }
    }

    fn ev(issue_id: i64, release: Option<&str>) -> EventFact<'_> {
        EventFact {
            issue_id,
            timestamp_us: now().timestamp_micros(),
            release,
            environment: Some("prod"),
            level: "error",
            user: Some("u1"),
        }
    }

    fn facts<'a>(issues: Vec<IssueFacts>, events: Vec<EventFact<'a>>) -> BatchFacts<'a> {
        BatchFacts {
            now: now(),
            issues,
            events,
            releases: Box::leak(Box::default()),
            new_releases: vec![],
        }
    }

    fn muted_with(req: MuteRequest, event_count: u64) -> IssueFacts {
        let base = issue(7, IssueState::new_issue(), event_count);
        let windows: Vec<u64> = req.conditions.iter().map(|_| 0).collect();
        let step = plan_change(
            &base,
            &Change::Mute(req),
            Actor::Token(1),
            &ChangeFacts {
                now: now(),
                latest_release: None,
                window_counts: windows,
            },
        )
        .unwrap();
        let What::Transition(t) = step.what else {
            panic!("a mute is a transition")
        };
        IssueFacts {
            state: t.to,
            counters: step.counters,
            ..base
        }
    }

    #[test]
    fn counts_add_up_per_issue_in_id_order() {
        let f = facts(
            vec![
                issue(2, IssueState::new_issue(), 0),
                issue(1, IssueState::new_issue(), 5),
            ],
            vec![ev(2, None), ev(1, None), ev(2, None)],
        );
        let e = plan_batch(&f).finish(&f, &[]);
        let n: Vec<(i64, i64)> = e.counts.iter().map(|c| (c.issue_id, c.events)).collect();
        assert_eq!(n, [(1, 1), (2, 2)]);
        assert!(e.steps.is_empty());
    }

    #[test]
    fn a_new_issue_alerts_once_with_its_first_event_and_starts_an_episode() {
        let mut created = issue(3, IssueState::new_issue(), 0);
        created.created = true;
        let f = facts(vec![created], vec![ev(3, Some("1.0")), ev(3, Some("1.1"))]);
        let e = plan_batch(&f).finish(&f, &[]);
        assert_eq!(e.steps.len(), 1);
        let step = &e.steps[0];
        assert_eq!(step.history().0, "first_seen");
        assert_eq!(step.episode, Some(EpisodeCause::Created));
        let alert = step.alert.as_ref().unwrap();
        assert_eq!(alert.kind, AlertKind::NewIssue);
        assert_eq!(alert.release.as_deref(), Some("1.0"));
    }

    #[test]
    fn a_resolved_issue_regresses_once_per_batch() {
        let resolved = state::resolve(&IssueState::new_issue()).unwrap().to;
        let f = facts(vec![issue(1, resolved, 3)], vec![ev(1, None), ev(1, None)]);
        let e = plan_batch(&f).finish(&f, &[]);
        assert_eq!(e.steps.len(), 1);
        assert_eq!(e.steps[0].history().0, "regressed");
        assert_eq!(e.steps[0].episode, Some(EpisodeCause::Regressed));
        assert_eq!(
            e.steps[0].alert.as_ref().unwrap().kind,
            AlertKind::Regression
        );
    }

    #[test]
    fn a_new_release_resolves_next_release_issues_in_it_before_events_regress() {
        let next = state::resolve_in_next_release(&IssueState::new_issue(), Some("1.0"))
            .unwrap()
            .to;
        let mut f = facts(vec![issue(1, next, 3)], vec![ev(1, Some("1.0"))]);
        f.new_releases = vec![(1, "1.1".into())];
        let order = HashMap::from([(1, HashMap::from([("1.0".into(), 1), ("1.1".into(), 2)]))]);
        f.releases = &order;
        let e = plan_batch(&f).finish(&f, &[]);
        assert_eq!(e.steps.len(), 1, "{e:?}");
        assert_eq!(e.steps[0].history().0, "resolved_in_release");
    }

    #[test]
    fn a_volume_condition_asks_for_an_exact_count_only_when_the_bound_reaches_it() {
        let cond = VolumeCondition {
            period: Period::Hour,
            nr_of_periods: 1,
            volume: 3,
        };
        let muted = muted_with(
            MuteRequest {
                conditions: vec![cond.clone()],
                ..MuteRequest::default()
            },
            10,
        );
        // Two events: the bound (2) is below 3, nothing to count, the counters move on.
        let f = facts(vec![muted.clone()], vec![ev(7, None), ev(7, None)]);
        let draft = plan_batch(&f);
        assert!(draft.queries.is_empty());
        let e = draft.finish(&f, &[]);
        assert!(e.steps.is_empty());
        let (_, counters) = &e.counters[0];
        assert_eq!(counters.volume[0].1.upper_bound(now()), 2);

        // Three: counted exactly; 3 >= 3 unmutes with one alert.
        let f = facts(
            vec![muted.clone()],
            vec![ev(7, None), ev(7, None), ev(7, None)],
        );
        let draft = plan_batch(&f);
        assert_eq!(
            draft.queries,
            [Query::Events {
                issue_id: 7,
                window: cond.window()
            }]
        );
        let e = draft.finish(&f, &[3]);
        assert_eq!(e.steps.len(), 1);
        assert_eq!(e.steps[0].alert.as_ref().unwrap().kind, AlertKind::Unmute);
        assert_eq!(e.steps[0].episode, Some(EpisodeCause::Unmuted));
        assert!(e.counters.is_empty());

        // The exact count says 2 (events outside the window): stays muted.
        let draft = plan_batch(&f);
        let e = draft.finish(&f, &[2]);
        assert!(e.steps.is_empty());
    }

    #[test]
    fn counters_that_do_not_match_the_mute_are_rebuilt_from_exact_counts() {
        let cond = VolumeCondition {
            period: Period::Day,
            nr_of_periods: 1,
            volume: 100,
        };
        let mut muted = muted_with(
            MuteRequest {
                conditions: vec![cond],
                ..MuteRequest::default()
            },
            0,
        );
        muted.counters = MuteCounters::default();
        let f = facts(vec![muted], vec![ev(7, None)]);
        let draft = plan_batch(&f);
        assert_eq!(draft.queries.len(), 1);
        let e = draft.finish(&f, &[40]);
        assert_eq!(e.counters[0].1.volume[0].1.upper_bound(now()), 40);
    }

    #[test]
    fn an_event_count_limit_needs_no_query() {
        let muted = muted_with(
            MuteRequest {
                count_since_mute: Some(2),
                ..MuteRequest::default()
            },
            10,
        );
        let f = facts(vec![muted], vec![ev(7, None), ev(7, None)]);
        let draft = plan_batch(&f);
        assert!(draft.queries.is_empty());
        let e = draft.finish(&f, &[]);
        assert_eq!(e.steps.len(), 1);
        assert_eq!(e.steps[0].alert.as_ref().unwrap().kind, AlertKind::Unmute);
    }

    #[test]
    fn users_are_stored_and_counted_for_user_limits() {
        let muted = muted_with(
            MuteRequest {
                user_count: Some(2),
                ..MuteRequest::default()
            },
            0,
        );
        let f = facts(vec![muted], vec![ev(7, None)]);
        let draft = plan_batch(&f);
        assert!(matches!(
            draft.queries[..],
            [Query::Users { issue_id: 7, .. }]
        ));
        let e = draft.finish(&f, &[1]);
        assert_eq!(e.users.len(), 1);
        assert!(e.steps.is_empty());
        let draft = plan_batch(&f);
        let e = draft.finish(&f, &[2]);
        assert_eq!(e.steps.len(), 1);
    }

    #[test]
    fn a_mute_seeds_its_counters_and_a_timed_unmute_fires_after_its_time() {
        let until = now() + Duration::minutes(5);
        let muted = muted_with(
            MuteRequest {
                until: Some(until),
                ..MuteRequest::default()
            },
            0,
        );
        assert!(plan_timed_unmute(&muted, now()).is_none());
        let step = plan_timed_unmute(&muted, until).unwrap();
        assert_eq!(step.alert.unwrap().kind, AlertKind::Unmute);
    }
}
