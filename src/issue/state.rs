//! The issue state manager: pure transitions between unresolved, resolved and muted ("ignored").

// Ported from Bugsink's `IssueStateManager` (seed `bugsink-issues-models.py.txt`), spoken in
// Sentry's vocabulary (reference 7.2–7.5). Every transition is a pure function from the current
// state to a `Transition` (old state, new state, reason, alert) or a `Refusal` whose Display is
// the client-facing `detail`. Nothing here touches the database, the clock or the alert outbox:
// the caller stores `to`, the history row and the alert in ONE transaction, which is what makes
// "exactly one unmute alert" hold — a second process that sees the same crossing event re-reads
// the state, finds it no longer muted and gets `Refusal::NotMuted` instead of a second alert.
//
// Invariants kept by every transition: `status == Ignored` exactly when `mute` is `Some`;
// resolution fields are set only while resolved (resolved and muted exclude each other, so
// resolving lifts a mute and muting a resolved issue is refused).
//
// Decisions (documented here once, tested below):
// - Re-requesting the resolution an issue already has is `Refusal::NoChange`, not a transition:
//   it writes no history. Sentry answers such a PUT with 200, so the API layer should treat
//   `NoChange` as success. Changing the kind of resolution (plain ↔ in release ↔ next release)
//   is a real transition. Re-muting a muted issue is a transition too: it replaces the mute and
//   restarts "events since the mute".
// - Events WITHOUT a release do not regress an issue resolved in a release or in the next
//   release (a plain resolve still regresses on any event). This is Sentry's rule
//   (`GroupResolution.has_resolution`): a project that tags releases and still sends a
//   release-less event is running a build from before it configured releases, so that build
//   cannot be "R or later".
// - Condition and time unmutes set substatus `escalating` (as Sentry does when a snooze stops
//   being valid); unmutes and reopens by a person set `ongoing`; regressions set `regressed`.
// - `reopen` of a muted issue is an unmute by a person: that is what Sentry's
//   `status: unresolved` means for an ignored issue.

use super::volume::VolumeCondition;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

/// Sentry's substatus strings.
pub mod substatus {
    pub const NEW: &str = "new";
    pub const ONGOING: &str = "ongoing";
    pub const REGRESSED: &str = "regressed";
    pub const ESCALATING: &str = "escalating";
    pub const ARCHIVED_FOREVER: &str = "archived_forever";
    pub const ARCHIVED_UNTIL_CONDITION_MET: &str = "archived_until_condition_met";
}

/// Most volume conditions one mute may carry; each costs the caller a set of in-memory buckets.
pub const MAX_CONDITIONS: usize = 10;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Unresolved,
    Resolved,
    /// Muted; "ignored" is Sentry's word and the one in the API.
    Ignored,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unresolved => "unresolved",
            Status::Resolved => "resolved",
            Status::Ignored => "ignored",
        }
    }
}

/// The persisted state of one issue (stored as JSON by the store).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IssueState {
    pub status: Status,
    /// `new | ongoing | regressed | escalating` while unresolved, `archived_forever |
    /// archived_until_condition_met` while ignored, `None` while resolved.
    pub substatus: Option<String>,
    /// Resolved in release R: events from R or later regress it.
    pub resolved_in_release: Option<String>,
    /// Resolved in the next release the project sees.
    pub resolved_in_next_release: bool,
    /// For next-release resolutions: the latest release the project had seen when resolved.
    pub resolved_at_release: Option<String>,
    pub mute: Option<Mute>,
}

impl IssueState {
    /// The state as the store keeps it: JSON, or `{}` for an issue no transition has touched
    /// since its first event (which is then still new and unresolved).
    pub fn from_stored(json: &str) -> IssueState {
        match serde_json::from_str::<IssueState>(json) {
            Ok(s) if json.trim() != "{}" => s,
            _ => IssueState::new_issue(),
        }
    }

    /// The state of an issue created by its first event.
    pub fn new_issue() -> IssueState {
        IssueState {
            substatus: Some(substatus::NEW.into()),
            ..IssueState::default()
        }
    }

    /// The releases this state names (a resolution's), whose order a plan may need.
    pub fn releases(&self) -> impl Iterator<Item = &str> {
        self.resolved_in_release
            .as_deref()
            .into_iter()
            .chain(self.resolved_at_release.as_deref())
    }

    fn unresolved(sub: &str) -> IssueState {
        IssueState {
            substatus: Some(sub.into()),
            ..IssueState::default()
        }
    }
}

/// What keeps a muted issue muted. Any limit that is reached unmutes it; none at all means
/// muted forever.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Mute {
    /// Time limit (Sentry's `ignoreDuration` / `snoozeDuration`, turned into a moment).
    pub until: Option<DateTime<Utc>>,
    /// Volume conditions (`ignoreCount` + `ignoreWindow`, or our `unmuteOn` list).
    pub conditions: Vec<VolumeCondition>,
    /// `ignoreCount` without a window: unmute after this many events since the mute.
    pub count_since_mute: Option<u64>,
    /// The issue's `event_count` when muted, the base of `count_since_mute`.
    pub event_count_at_mute: u64,
    /// `ignoreUserCount`: unmute when this many distinct users were affected ...
    pub user_count: Option<u64>,
    /// ... in this many minutes (`ignoreUserWindow`), or since the mute when `None`.
    pub user_window_minutes: Option<u32>,
    pub muted_at: DateTime<Utc>,
}

impl Mute {
    fn is_forever(&self) -> bool {
        self.until.is_none()
            && self.conditions.is_empty()
            && self.count_since_mute.is_none()
            && self.user_count.is_none()
    }
}

/// Who made a transition, for the history. JSON `{"type":"token","id":N}` / `{"type":"system"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ActorJson", into = "ActorJson")]
pub enum Actor {
    /// A person, through the API token with this id.
    Token(i64),
    /// Stackhound itself: regressions, condition and time unmutes.
    System,
}

// serde cannot put a tag next to a bare i64 (`Token(i64)`), so the JSON goes through this.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ActorJson {
    Token { id: i64 },
    System,
}

impl From<ActorJson> for Actor {
    fn from(a: ActorJson) -> Actor {
        match a {
            ActorJson::Token { id } => Actor::Token(id),
            ActorJson::System => Actor::System,
        }
    }
}

impl From<Actor> for ActorJson {
    fn from(a: Actor) -> ActorJson {
        match a {
            Actor::Token(id) => ActorJson::Token { id },
            Actor::System => ActorJson::System,
        }
    }
}

/// What a transition did, for the caller to store as history and to alert on — in the same
/// transaction as the new state.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub kind: TransitionKind,
    pub from: IssueState,
    /// The new state.
    pub to: IssueState,
    /// Human sentence for the history ("More than 100 events per 1 day occurred, ...").
    pub reason: String,
    pub alert: Option<AlertKind>,
}

/// JSON `{"kind":"resolved_in_release","release":"2.0"}`, `{"kind":"muted"}`, ...
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "release", rename_all = "snake_case")]
pub enum TransitionKind {
    Resolved,
    ResolvedInRelease(String),
    ResolvedInNextRelease,
    Reopened,
    Muted,
    Unmuted,
    Regressed,
}

impl TransitionKind {
    pub fn name(&self) -> &'static str {
        match self {
            TransitionKind::Resolved => "resolved",
            TransitionKind::ResolvedInRelease(_) => "resolved_in_release",
            TransitionKind::ResolvedInNextRelease => "resolved_in_next_release",
            TransitionKind::Reopened => "reopened",
            TransitionKind::Muted => "muted",
            TransitionKind::Unmuted => "unmuted",
            TransitionKind::Regressed => "regressed",
        }
    }
}

/// The three alerts of product section 4. `NewIssue` is raised by the caller when it creates an
/// issue (state `IssueState::new_issue()`); the transitions here raise the other two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    NewIssue,
    Regression,
    Unmute,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NewIssue => "new_issue",
            AlertKind::Regression => "regression",
            AlertKind::Unmute => "unmute",
        }
    }
}

/// Why a transition was not made; Display is the client-facing `detail`.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// The issue already is in the requested state; nothing to store. Sentry answers such
    /// requests with 200, so the API layer should treat this as success (4xx only if it must).
    #[error("{0}")]
    NoChange(String),
    #[error("Cannot mute a resolved issue; reopen it first")]
    MuteResolved,
    /// A malformed mute request (bad condition, zero counts, too many conditions).
    #[error("{0}")]
    InvalidMute(String),
    #[error("{0}")]
    InvalidRelease(String),
    #[error("Cannot mute until {until}: that moment is not in the future")]
    UntilNotInFuture { until: String },
    /// The seed's rule: a condition that holds already would unmute at once.
    #[error("Cannot mute with condition '{condition}': it already holds ({})", plural(*.count, "event"))]
    ConditionAlreadyHolds { condition: String, count: u64 },
    #[error("Cannot mute until {user_count} users are affected{}: it already holds ({})", in_minutes(*.window_minutes), plural(*.users, "user"))]
    UsersAlreadyHold {
        user_count: u64,
        window_minutes: u32,
        users: u64,
    },
    #[error("The issue is not muted")]
    NotMuted,
    /// An automatic unmute names a limit the current mute does not have (e.g. the mute was
    /// replaced in the meantime; its old conditions must not fire).
    #[error("{0}")]
    NotAMuteLimit(String),
    /// An automatic unmute whose limit is not reached.
    #[error("{0}")]
    LimitNotReached(String),
}

/// The exact figures the caller reads from the database when a mute is requested.
pub trait CurrentVolume {
    /// Events of the issue in `(now - window, now]`.
    fn count_in(&self, window: Duration) -> u64;
    /// Distinct users of the issue's events in `(now - window, now]`.
    fn users_in(&self, window: Duration) -> u64;
    /// The issue's `event_count` now (the base for "events since the mute").
    fn event_count(&self) -> u64;
}

/// A mute as requested through the API (Sentry's `statusDetails` already translated).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MuteRequest {
    pub until: Option<DateTime<Utc>>,
    pub conditions: Vec<VolumeCondition>,
    pub count_since_mute: Option<u64>,
    pub user_count: Option<u64>,
    pub user_window_minutes: Option<u32>,
}

/// What the caller knows about a newly stored event, for `on_event`.
pub struct EventFacts<'a> {
    pub release: Option<&'a str>,
    /// The event's release was first seen by the project with this very event.
    pub is_new_release_for_project: bool,
    /// Release order, normally `compare_releases` with the project's first-seen order.
    pub cmp: &'a dyn Fn(&str, &str) -> Ordering,
}

/// Resolve unconditionally: the next event is a regression.
pub fn resolve(s: &IssueState) -> Result<Transition, Refusal> {
    if s.status == Status::Resolved
        && s.resolved_in_release.is_none()
        && !s.resolved_in_next_release
    {
        return Err(Refusal::NoChange("The issue is already resolved".into()));
    }
    Ok(resolution(
        s,
        TransitionKind::Resolved,
        resolved(None, false, None),
        "Marked as resolved".into(),
    ))
}

/// Resolve in release `release`: events from it or a later release regress the issue.
pub fn resolve_in_release(s: &IssueState, release: &str) -> Result<Transition, Refusal> {
    let release = release.trim();
    if release.is_empty() {
        return Err(Refusal::InvalidRelease(
            "A release name must not be empty".into(),
        ));
    }
    if release.chars().any(char::is_control) {
        return Err(Refusal::InvalidRelease(
            "A release name must not contain control characters".into(),
        ));
    }
    if s.status == Status::Resolved && s.resolved_in_release.as_deref() == Some(release) {
        return Err(Refusal::NoChange(format!(
            "The issue is already resolved in release {release}"
        )));
    }
    Ok(resolution(
        s,
        TransitionKind::ResolvedInRelease(release.into()),
        resolved(Some(release.into()), false, None),
        format!("Marked as resolved in release {release}"),
    ))
}

/// Resolve in whatever release the project sees next. `latest_seen_release` is the newest
/// release the project has seen so far; `None` (no release yet) is accepted: then any event
/// that carries a release regresses the issue. (Sentry refuses that case; accepting it lets a
/// project that is about to start tagging releases use the feature.)
pub fn resolve_in_next_release(
    s: &IssueState,
    latest_seen_release: Option<&str>,
) -> Result<Transition, Refusal> {
    if s.status == Status::Resolved && s.resolved_in_next_release {
        return Err(Refusal::NoChange(
            "The issue is already resolved in the next release".into(),
        ));
    }
    let latest = latest_seen_release.map(str::trim).filter(|r| !r.is_empty());
    let reason = match latest {
        Some(r) => format!("Marked as resolved in the next release after {r}"),
        None => "Marked as resolved in the next release".into(),
    };
    Ok(resolution(
        s,
        TransitionKind::ResolvedInNextRelease,
        resolved(None, true, latest.map(String::from)),
        reason,
    ))
}

/// Back to unresolved, by a person. On a muted issue this is `unmute_by_person`.
pub fn reopen(s: &IssueState) -> Result<Transition, Refusal> {
    match s.status {
        Status::Unresolved => Err(Refusal::NoChange("The issue is already unresolved".into())),
        Status::Ignored => unmute_by_person(s),
        Status::Resolved => Ok(Transition {
            kind: TransitionKind::Reopened,
            from: s.clone(),
            to: IssueState::unresolved(substatus::ONGOING),
            reason: "Reopened".into(),
            alert: None,
        }),
    }
}

/// Mute an unresolved (or re-mute a muted) issue. Refused for resolved issues, malformed
/// requests, an `until` that is not in the future, and conditions that already hold.
pub fn mute(
    s: &IssueState,
    req: MuteRequest,
    now: DateTime<Utc>,
    current: &dyn CurrentVolume,
) -> Result<Transition, Refusal> {
    if s.status == Status::Resolved {
        return Err(Refusal::MuteResolved);
    }
    let mut conditions: Vec<VolumeCondition> = Vec::with_capacity(req.conditions.len());
    for c in req.conditions {
        c.validate().map_err(Refusal::InvalidMute)?;
        // Duplicates add nothing but buckets.
        if !conditions.contains(&c) {
            conditions.push(c);
        }
        // Checked while collecting, so a huge request costs no more than a small one.
        if conditions.len() > MAX_CONDITIONS {
            return Err(Refusal::InvalidMute(format!(
                "A mute takes at most {MAX_CONDITIONS} conditions"
            )));
        }
    }
    if req.count_since_mute == Some(0) {
        return Err(Refusal::InvalidMute(
            "The event count (ignoreCount) must be at least 1".into(),
        ));
    }
    if req.user_count == Some(0) {
        return Err(Refusal::InvalidMute(
            "The user count (ignoreUserCount) must be at least 1".into(),
        ));
    }
    if req.user_window_minutes == Some(0) {
        return Err(Refusal::InvalidMute(
            "The user window (ignoreUserWindow) must be at least 1 minute".into(),
        ));
    }
    if req.user_window_minutes.is_some() && req.user_count.is_none() {
        return Err(Refusal::InvalidMute(
            "A user window (ignoreUserWindow) needs a user count (ignoreUserCount)".into(),
        ));
    }
    if let Some(until) = req.until {
        if until <= now {
            return Err(Refusal::UntilNotInFuture {
                until: human_time(until),
            });
        }
    }
    for c in &conditions {
        let count = current.count_in(c.window());
        if count >= c.volume {
            return Err(Refusal::ConditionAlreadyHolds {
                condition: c.describe(),
                count,
            });
        }
    }
    // Without a window, users are counted since the mute: zero now, so it cannot hold yet.
    if let (Some(user_count), Some(minutes)) = (req.user_count, req.user_window_minutes) {
        let users = current.users_in(Duration::minutes(i64::from(minutes)));
        if users >= user_count {
            return Err(Refusal::UsersAlreadyHold {
                user_count,
                window_minutes: minutes,
                users,
            });
        }
    }

    let m = Mute {
        until: req.until,
        conditions,
        count_since_mute: req.count_since_mute,
        event_count_at_mute: current.event_count(),
        user_count: req.user_count,
        user_window_minutes: req.user_window_minutes,
        muted_at: now,
    };
    let (sub, reason) = if m.is_forever() {
        (substatus::ARCHIVED_FOREVER, "Muted forever".to_string())
    } else {
        (
            substatus::ARCHIVED_UNTIL_CONDITION_MET,
            format!("Muted until {}", mute_limits(&m).join(" or ")),
        )
    };
    Ok(Transition {
        kind: TransitionKind::Muted,
        from: s.clone(),
        to: IssueState {
            status: Status::Ignored,
            substatus: Some(sub.into()),
            mute: Some(m),
            ..IssueState::default()
        },
        reason,
        alert: None,
    })
}

/// Unmute by a person: no alert.
pub fn unmute_by_person(s: &IssueState) -> Result<Transition, Refusal> {
    muted(s)?;
    Ok(unmuted(s, substatus::ONGOING, "Unmuted".into(), None))
}

/// Unmute because volume condition `which` of the mute holds with `count` events (the exact
/// count the caller ran after `Buckets::upper_bound` reached the volume). Alerts.
pub fn unmute_by_condition(
    s: &IssueState,
    which: &VolumeCondition,
    count: u64,
) -> Result<Transition, Refusal> {
    let m = muted(s)?;
    if !m.conditions.contains(which) {
        return Err(Refusal::NotAMuteLimit(format!(
            "Condition '{}' is not one of the issue's mute conditions",
            which.describe()
        )));
    }
    if count < which.volume {
        return Err(Refusal::LimitNotReached(format!(
            "Condition '{}' does not hold ({})",
            which.describe(),
            plural(count, "event")
        )));
    }
    Ok(unmuted(
        s,
        substatus::ESCALATING,
        format!(
            "More than {} occurred, unmuting the issue",
            which.describe()
        ),
        Some(AlertKind::Unmute),
    ))
}

/// Unmute because the mute's time limit passed (at `until` exactly, it has passed). Alerts.
pub fn unmute_by_time(s: &IssueState, now: DateTime<Utc>) -> Result<Transition, Refusal> {
    let m = muted(s)?;
    let Some(until) = m.until else {
        return Err(Refusal::NotAMuteLimit("The mute has no time limit".into()));
    };
    if now < until {
        return Err(Refusal::LimitNotReached(format!(
            "The mute lasts until {}, which has not passed yet",
            human_time(until)
        )));
    }
    Ok(unmuted(
        s,
        substatus::ESCALATING,
        format!(
            "The mute expired at {}, unmuting the issue",
            human_time(until)
        ),
        Some(AlertKind::Unmute),
    ))
}

/// Unmute because the issue's `event_count` reached `count_since_mute` events since the mute
/// (Sentry's `ignoreCount` without a window). Alerts.
pub fn unmute_by_event_count(s: &IssueState, event_count: u64) -> Result<Transition, Refusal> {
    let m = muted(s)?;
    let Some(limit) = m.count_since_mute else {
        return Err(Refusal::NotAMuteLimit(
            "The mute has no event count limit".into(),
        ));
    };
    let since = event_count.saturating_sub(m.event_count_at_mute);
    if since < limit {
        return Err(Refusal::LimitNotReached(format!(
            "Only {} of {limit} since the mute",
            plural(since, "event")
        )));
    }
    Ok(unmuted(
        s,
        substatus::ESCALATING,
        format!(
            "More than {} occurred since the mute, unmuting the issue",
            plural(limit, "event")
        ),
        Some(AlertKind::Unmute),
    ))
}

/// Unmute because `users` distinct users were affected, counted by the caller over the mute's
/// `user_window_minutes` (or since `muted_at` without a window). Alerts.
pub fn unmute_by_user_count(s: &IssueState, users: u64) -> Result<Transition, Refusal> {
    let m = muted(s)?;
    let Some(limit) = m.user_count else {
        return Err(Refusal::NotAMuteLimit(
            "The mute has no user count limit".into(),
        ));
    };
    let scope = match m.user_window_minutes {
        Some(minutes) => format!("in the last {}", plural(u64::from(minutes), "minute")),
        None => "since the mute".into(),
    };
    if users < limit {
        return Err(Refusal::LimitNotReached(format!(
            "Only {} of {limit} affected {scope}",
            plural(users, "user")
        )));
    }
    Ok(unmuted(
        s,
        substatus::ESCALATING,
        format!(
            "More than {} were affected {scope}, unmuting the issue",
            plural(limit, "user")
        ),
        Some(AlertKind::Unmute),
    ))
}

/// What a newly stored event does to the issue's state: only a resolved issue can change (a
/// regression, with its alert). Muted and unresolved issues: `None`; volume and time unmutes are
/// the caller's to decide (`unmute_by_condition`, `unmute_by_time`).
///
/// - plain resolve: every event regresses;
/// - resolved in R: events from R or later (`cmp(release, R) != Less`) regress;
/// - resolved in the next release after A: an event from a release newer than A (`cmp` Greater;
///   on a tie, `is_new_release_for_project` decides) is from the next release or later, so it
///   regresses — the "resolved in that release" reading; events of A and older do not. With no A
///   (no release when resolved) any release is newer.
/// - events without a release never regress a release-based resolution (module comment).
pub fn on_event(s: &IssueState, facts: &EventFacts<'_>) -> Option<Transition> {
    if s.status != Status::Resolved {
        return None;
    }
    let release = facts.release.map(str::trim).filter(|r| !r.is_empty());
    let reason = if let Some(fixed) = &s.resolved_in_release {
        let e = release?;
        if (facts.cmp)(e, fixed) == Ordering::Less {
            return None;
        }
        format!(
            "An event from release {e} arrived for an issue resolved in release {fixed}, \
             marking it as regressed"
        )
    } else if s.resolved_in_next_release {
        let e = release?;
        let newer = match s.resolved_at_release.as_deref() {
            None => true,
            Some(a) if a == e => false,
            Some(a) => match (facts.cmp)(e, a) {
                Ordering::Greater => true,
                Ordering::Equal => facts.is_new_release_for_project,
                Ordering::Less => false,
            },
        };
        if !newer {
            return None;
        }
        match s.resolved_at_release.as_deref() {
            Some(a) => format!(
                "An event from release {e}, newer than release {a}, arrived for an issue \
                 resolved in the next release, marking it as regressed"
            ),
            None => format!(
                "An event from release {e} arrived for an issue resolved in the next release, \
                 marking it as regressed"
            ),
        }
    } else {
        "A new event arrived for the resolved issue, marking it as regressed".into()
    };
    Some(Transition {
        kind: TransitionKind::Regressed,
        from: s.clone(),
        to: IssueState::unresolved(substatus::REGRESSED),
        reason,
        alert: Some(AlertKind::Regression),
    })
}

/// When the project first sees `release`, an issue resolved in the next release becomes
/// resolved in `release` (Sentry's `clear_expired_resolutions`), provided `release` is newer
/// than the one the project had when the issue was resolved (a hotfix of an older branch is
/// not "the next release"). No alert. The caller may apply this to every such issue of the
/// project; `on_event` gives the same regressions without it.
pub fn on_new_release(
    s: &IssueState,
    release: &str,
    cmp: &dyn Fn(&str, &str) -> Ordering,
) -> Option<Transition> {
    let release = release.trim();
    if s.status != Status::Resolved || !s.resolved_in_next_release || release.is_empty() {
        return None;
    }
    if let Some(a) = s.resolved_at_release.as_deref() {
        if a == release || cmp(release, a) == Ordering::Less {
            return None;
        }
    }
    Some(Transition {
        kind: TransitionKind::ResolvedInRelease(release.into()),
        from: s.clone(),
        to: resolved(Some(release.into()), false, None),
        reason: format!(
            "Release {release} is the next release; the issue is now resolved in release {release}"
        ),
        alert: None,
    })
}

/// Release order: semver precedence when both parse as semver (a leading `v` is accepted, and
/// `pkg@1.2.3` forms compare the part after the last `@` when both share the prefix; `1.2`
/// means `1.2.0`; build metadata is ignored), else the order in which the project first saw each
/// release, where a release the project has not seen (`None`) is the newest.
pub fn compare_releases(
    a: &str,
    b: &str,
    first_seen_order: impl Fn(&str) -> Option<u64>,
) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    if let Some(o) = semver_order(a, b) {
        return o;
    }
    match (first_seen_order(a), first_seen_order(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Sentry's `statusDetails` for the issue JSON, plus our `unmuteOn` conditions.
pub fn status_details(s: &IssueState) -> Value {
    let mut d = Map::new();
    match s.status {
        Status::Resolved => {
            if let Some(r) = &s.resolved_in_release {
                d.insert("inRelease".into(), json!(r));
            } else if s.resolved_in_next_release {
                d.insert("inNextRelease".into(), json!(true));
            }
        }
        Status::Ignored => {
            if let Some(m) = &s.mute {
                if let Some(until) = m.until {
                    d.insert(
                        "ignoreUntil".into(),
                        json!(until.to_rfc3339_opts(SecondsFormat::Micros, true)),
                    );
                }
                // Sentry has one count: the count since the mute, else our first condition
                // (every period is a whole number of minutes).
                if let Some(n) = m.count_since_mute {
                    d.insert("ignoreCount".into(), json!(n));
                } else if let Some(c) = m.conditions.first() {
                    d.insert("ignoreCount".into(), json!(c.volume));
                    d.insert("ignoreWindow".into(), json!(c.window().num_minutes()));
                }
                if let Some(n) = m.user_count {
                    d.insert("ignoreUserCount".into(), json!(n));
                }
                if let Some(w) = m.user_window_minutes {
                    d.insert("ignoreUserWindow".into(), json!(w));
                }
                if !m.conditions.is_empty() {
                    d.insert("unmuteOn".into(), json!(m.conditions));
                }
            }
        }
        Status::Unresolved => {}
    }
    Value::Object(d)
}

// ---- helpers ----

fn resolved(in_release: Option<String>, next: bool, at_release: Option<String>) -> IssueState {
    IssueState {
        status: Status::Resolved,
        substatus: None,
        resolved_in_release: in_release,
        resolved_in_next_release: next,
        resolved_at_release: at_release,
        mute: None,
    }
}

/// A resolve transition; resolving lifts a mute, silently (the seed's `implicitly_called`).
fn resolution(s: &IssueState, kind: TransitionKind, to: IssueState, reason: String) -> Transition {
    let reason = if s.status == Status::Ignored {
        format!("{reason}; this lifts the mute")
    } else {
        reason
    };
    Transition {
        kind,
        from: s.clone(),
        to,
        reason,
        alert: None,
    }
}

fn muted(s: &IssueState) -> Result<Mute, Refusal> {
    if s.status != Status::Ignored {
        return Err(Refusal::NotMuted);
    }
    Ok(s.mute.clone().unwrap_or_default())
}

fn unmuted(s: &IssueState, sub: &str, reason: String, alert: Option<AlertKind>) -> Transition {
    Transition {
        kind: TransitionKind::Unmuted,
        from: s.clone(),
        to: IssueState::unresolved(sub),
        reason,
        alert,
    }
}

/// "10 events per 5 minutes occur", "2026-03-01T13:00:00Z", ... for the mute reason.
fn mute_limits(m: &Mute) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(until) = m.until {
        out.push(human_time(until));
    }
    out.extend(
        m.conditions
            .iter()
            .map(|c| format!("{} occur", c.describe())),
    );
    if let Some(n) = m.count_since_mute {
        let events = if n == 1 { "event" } else { "events" };
        out.push(format!("{n} more {events} occur"));
    }
    if let Some(n) = m.user_count {
        out.push(format!(
            "{} are affected{}",
            plural(n, "user"),
            in_minutes(m.user_window_minutes.unwrap_or(0))
        ));
    }
    out
}

fn human_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// " in 60 minutes", or "" for 0 (no window).
fn in_minutes(minutes: u32) -> String {
    if minutes == 0 {
        String::new()
    } else {
        format!(" in {}", plural(u64::from(minutes), "minute"))
    }
}

// ---- release order ----

fn semver_order(a: &str, b: &str) -> Option<Ordering> {
    let (pa, va) = split_package(a);
    let (pb, vb) = split_package(b);
    if pa != pb {
        return None;
    }
    Some(Version::parse(va)?.cmp(&Version::parse(vb)?))
}

/// `pkg@1.2.3` → (Some("pkg"), "1.2.3"); `@scope/pkg@1.0` → (Some("@scope/pkg"), "1.0").
fn split_package(s: &str) -> (Option<&str>, &str) {
    match s.rsplit_once('@') {
        Some((p, v)) => (Some(p), v),
        None => (None, s),
    }
}

/// `major.minor[.patch][-pre][+build]`. Field order gives semver precedence when derived: the
/// numbers, then `Release` above any pre-release; build metadata is not kept.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Version<'a> {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Pre<'a>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Pre<'a> {
    /// Pre-release identifiers; `Vec` order is semver's (shorter prefix first).
    Ids(Vec<Ident<'a>>),
    Release,
}

/// Numeric identifiers sort before alphanumeric ones (variant order), each among themselves
/// numerically or in ASCII order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ident<'a> {
    Num(u64),
    Alpha(&'a str),
}

impl<'a> Version<'a> {
    fn parse(s: &'a str) -> Option<Version<'a>> {
        let s = s
            .strip_prefix('v')
            .or_else(|| s.strip_prefix('V'))
            .unwrap_or(s);
        let (s, build) = match s.split_once('+') {
            Some((s, b)) => (s, Some(b)),
            None => (s, None),
        };
        if let Some(b) = build {
            if !b.split('.').all(is_ident) {
                return None;
            }
        }
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let mut nums = core.split('.');
        let major = number(nums.next()?)?;
        let minor = number(nums.next()?)?;
        let patch = match nums.next() {
            Some(p) => number(p)?,
            None => 0,
        };
        if nums.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Pre::Release,
            Some(p) => Pre::Ids(
                p.split('.')
                    .map(|id| {
                        if !is_ident(id) {
                            None
                        } else if id.bytes().all(|b| b.is_ascii_digit()) {
                            number(id).map(Ident::Num)
                        } else {
                            Some(Ident::Alpha(id))
                        }
                    })
                    .collect::<Option<Vec<_>>>()?,
            ),
        };
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }
}

fn is_ident(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A numeric identifier: digits only, no leading zero (semver), fits in u64.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::volume::Period;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn cond(period: Period, nr_of_periods: u32, volume: u64) -> VolumeCondition {
        VolumeCondition {
            period,
            nr_of_periods,
            volume,
        }
    }

    /// Exact figures as the database would give them: counts per window, users, total.
    struct Vol {
        counts: Vec<(Duration, u64)>,
        users: u64,
        total: u64,
    }

    impl CurrentVolume for Vol {
        fn count_in(&self, window: Duration) -> u64 {
            self.counts
                .iter()
                .find(|(w, _)| *w == window)
                .map_or(0, |(_, n)| *n)
        }
        fn users_in(&self, _window: Duration) -> u64 {
            self.users
        }
        fn event_count(&self) -> u64 {
            self.total
        }
    }

    fn quiet() -> Vol {
        Vol {
            counts: vec![(Duration::minutes(5), 12), (Duration::days(1), 40)],
            users: 3,
            total: 500,
        }
    }

    fn unresolved() -> IssueState {
        IssueState::unresolved(substatus::ONGOING)
    }
    fn resolved_plain() -> IssueState {
        resolved(None, false, None)
    }
    fn resolved_in(r: &str) -> IssueState {
        resolved(Some(r.into()), false, None)
    }
    fn resolved_next(after: Option<&str>) -> IssueState {
        resolved(None, true, after.map(String::from))
    }
    fn muted_with(m: Mute) -> IssueState {
        IssueState {
            status: Status::Ignored,
            substatus: Some(substatus::ARCHIVED_UNTIL_CONDITION_MET.into()),
            mute: Some(m),
            ..IssueState::default()
        }
    }
    fn muted_forever() -> IssueState {
        mute(&unresolved(), MuteRequest::default(), now(), &quiet())
            .unwrap()
            .to
    }
    fn muted_until(h: i64) -> IssueState {
        muted_with(Mute {
            until: Some(now() + Duration::hours(h)),
            muted_at: now() - Duration::hours(1),
            ..Mute::default()
        })
    }
    fn muted_cond() -> IssueState {
        muted_with(Mute {
            conditions: vec![cond(Period::Day, 1, 100), cond(Period::Minute, 5, 10)],
            muted_at: now(),
            ..Mute::default()
        })
    }
    fn muted_counts() -> IssueState {
        muted_with(Mute {
            count_since_mute: Some(50),
            event_count_at_mute: 500,
            user_count: Some(5),
            user_window_minutes: Some(60),
            muted_at: now(),
            ..Mute::default()
        })
    }
    fn req(f: impl FnOnce(&mut MuteRequest)) -> MuteRequest {
        let mut r = MuteRequest::default();
        f(&mut r);
        r
    }

    type Want = Result<
        (
            TransitionKind,
            Status,
            Option<&'static str>,
            Option<AlertKind>,
        ),
        &'static str,
    >;

    #[test]
    fn every_transition_and_refusal() {
        use AlertKind::Unmute;
        use Status::{Ignored, Resolved, Unresolved};
        use TransitionKind as K;
        let ok = |k: K, st: Status, sub: Option<&'static str>, a: Option<AlertKind>| -> Want {
            Ok((k, st, sub, a))
        };
        let later = now() + Duration::hours(2);
        let earlier = now() - Duration::hours(1);
        let rows: Vec<(&str, IssueState, Result<Transition, Refusal>, Want)> = vec![
            // resolve
            ("resolve unresolved", unresolved(), resolve(&unresolved()), ok(K::Resolved, Resolved, None, None)),
            ("resolve muted: silent unmute", muted_cond(), resolve(&muted_cond()), ok(K::Resolved, Resolved, None, None)),
            ("resolve resolved: no change", resolved_plain(), resolve(&resolved_plain()), Err("The issue is already resolved")),
            ("resolve resolved-in-release: plain", resolved_in("2.0"), resolve(&resolved_in("2.0")), ok(K::Resolved, Resolved, None, None)),
            ("resolve resolved-next: plain", resolved_next(Some("1.0")), resolve(&resolved_next(Some("1.0"))), ok(K::Resolved, Resolved, None, None)),
            // resolve in release
            ("in release", unresolved(), resolve_in_release(&unresolved(), "2.0"), ok(K::ResolvedInRelease("2.0".into()), Resolved, None, None)),
            ("in release, muted", muted_forever(), resolve_in_release(&muted_forever(), "2.0"), ok(K::ResolvedInRelease("2.0".into()), Resolved, None, None)),
            ("in release, other release", resolved_in("1.0"), resolve_in_release(&resolved_in("1.0"), "2.0"), ok(K::ResolvedInRelease("2.0".into()), Resolved, None, None)),
            ("in release, same release", resolved_in("2.0"), resolve_in_release(&resolved_in("2.0"), "2.0"), Err("The issue is already resolved in release 2.0")),
            ("in release, empty", unresolved(), resolve_in_release(&unresolved(), " "), Err("A release name must not be empty")),
            ("in release, control", unresolved(), resolve_in_release(&unresolved(), "a\nb"), Err("A release name must not contain control characters")),
            // resolve in next release
            ("next", unresolved(), resolve_in_next_release(&unresolved(), Some("1.4")), ok(K::ResolvedInNextRelease, Resolved, None, None)),
            ("next, no release yet", unresolved(), resolve_in_next_release(&unresolved(), None), ok(K::ResolvedInNextRelease, Resolved, None, None)),
            ("next, muted", muted_until(3), resolve_in_next_release(&muted_until(3), Some("1.4")), ok(K::ResolvedInNextRelease, Resolved, None, None)),
            ("next, plain resolved", resolved_plain(), resolve_in_next_release(&resolved_plain(), Some("1.4")), ok(K::ResolvedInNextRelease, Resolved, None, None)),
            ("next, already", resolved_next(Some("1.0")), resolve_in_next_release(&resolved_next(Some("1.0")), Some("1.4")), Err("The issue is already resolved in the next release")),
            // reopen
            ("reopen resolved", resolved_in("2.0"), reopen(&resolved_in("2.0")), ok(K::Reopened, Unresolved, Some("ongoing"), None)),
            ("reopen muted = unmute by person", muted_cond(), reopen(&muted_cond()), ok(K::Unmuted, Unresolved, Some("ongoing"), None)),
            ("reopen unresolved", unresolved(), reopen(&unresolved()), Err("The issue is already unresolved")),
            // mute
            ("mute forever", unresolved(), mute(&unresolved(), MuteRequest::default(), now(), &quiet()), ok(K::Muted, Ignored, Some("archived_forever"), None)),
            ("mute until", unresolved(), mute(&unresolved(), req(|r| r.until = Some(later)), now(), &quiet()), ok(K::Muted, Ignored, Some("archived_until_condition_met"), None)),
            ("mute on condition", unresolved(), mute(&unresolved(), req(|r| r.conditions = vec![cond(Period::Minute, 5, 13)]), now(), &quiet()), ok(K::Muted, Ignored, Some("archived_until_condition_met"), None)),
            ("mute on count since mute", unresolved(), mute(&unresolved(), req(|r| r.count_since_mute = Some(1)), now(), &quiet()), ok(K::Muted, Ignored, Some("archived_until_condition_met"), None)),
            ("mute on users since mute", unresolved(), mute(&unresolved(), req(|r| r.user_count = Some(1)), now(), &quiet()), ok(K::Muted, Ignored, Some("archived_until_condition_met"), None)),
            ("mute on users in window", unresolved(), mute(&unresolved(), req(|r| { r.user_count = Some(4); r.user_window_minutes = Some(60) }), now(), &quiet()), ok(K::Muted, Ignored, Some("archived_until_condition_met"), None)),
            ("re-mute a muted issue", muted_cond(), mute(&muted_cond(), MuteRequest::default(), now(), &quiet()), ok(K::Muted, Ignored, Some("archived_forever"), None)),
            ("mute a regressed issue", IssueState::unresolved(substatus::REGRESSED), mute(&IssueState::unresolved(substatus::REGRESSED), MuteRequest::default(), now(), &quiet()), ok(K::Muted, Ignored, Some("archived_forever"), None)),
            ("mute resolved", resolved_plain(), mute(&resolved_plain(), MuteRequest::default(), now(), &quiet()), Err("Cannot mute a resolved issue; reopen it first")),
            ("mute resolved in release", resolved_in("1.0"), mute(&resolved_in("1.0"), req(|r| r.until = Some(later)), now(), &quiet()), Err("Cannot mute a resolved issue; reopen it first")),
            ("mute, condition holds", unresolved(), mute(&unresolved(), req(|r| r.conditions = vec![cond(Period::Day, 1, 100), cond(Period::Minute, 5, 10)]), now(), &quiet()), Err("Cannot mute with condition '10 events per 5 minutes': it already holds (12 events)")),
            ("mute, condition holds exactly", unresolved(), mute(&unresolved(), req(|r| r.conditions = vec![cond(Period::Day, 1, 40)]), now(), &quiet()), Err("Cannot mute with condition '40 events per 1 day': it already holds (40 events)")),
            ("mute, 1-event condition", unresolved(), mute(&unresolved(), req(|r| r.conditions = vec![cond(Period::Minute, 5, 1)]), now(), &quiet()), Err("Cannot mute with condition '1 event per 5 minutes': it already holds (12 events)")),
            ("mute, users hold", unresolved(), mute(&unresolved(), req(|r| { r.user_count = Some(3); r.user_window_minutes = Some(60) }), now(), &quiet()), Err("Cannot mute until 3 users are affected in 60 minutes: it already holds (3 users)")),
            ("mute, until in the past", unresolved(), mute(&unresolved(), req(|r| r.until = Some(earlier)), now(), &quiet()), Err("Cannot mute until 2026-03-01T11:00:00Z: that moment is not in the future")),
            ("mute, until now", unresolved(), mute(&unresolved(), req(|r| r.until = Some(now())), now(), &quiet()), Err("Cannot mute until 2026-03-01T12:00:00Z: that moment is not in the future")),
            ("mute, bad condition", unresolved(), mute(&unresolved(), req(|r| r.conditions = vec![cond(Period::Hour, 0, 5)]), now(), &quiet()), Err("Invalid condition '5 events per 0 hours': nr_of_periods must be between 1 and 10000")),
            ("mute, zero volume", unresolved(), mute(&unresolved(), req(|r| r.conditions = vec![cond(Period::Hour, 1, 0)]), now(), &quiet()), Err("Invalid condition '0 events per 1 hour': volume must be at least 1")),
            ("mute, too many conditions", unresolved(), mute(&unresolved(), req(|r| r.conditions = (1..=11).map(|n| cond(Period::Year, n, 1_000)).collect()), now(), &quiet()), Err("A mute takes at most 10 conditions")),
            ("mute, zero count", unresolved(), mute(&unresolved(), req(|r| r.count_since_mute = Some(0)), now(), &quiet()), Err("The event count (ignoreCount) must be at least 1")),
            ("mute, zero users", unresolved(), mute(&unresolved(), req(|r| r.user_count = Some(0)), now(), &quiet()), Err("The user count (ignoreUserCount) must be at least 1")),
            ("mute, zero user window", unresolved(), mute(&unresolved(), req(|r| { r.user_count = Some(2); r.user_window_minutes = Some(0) }), now(), &quiet()), Err("The user window (ignoreUserWindow) must be at least 1 minute")),
            ("mute, user window alone", unresolved(), mute(&unresolved(), req(|r| r.user_window_minutes = Some(10)), now(), &quiet()), Err("A user window (ignoreUserWindow) needs a user count (ignoreUserCount)")),
            // unmute by a person
            ("unmute by person", muted_cond(), unmute_by_person(&muted_cond()), ok(K::Unmuted, Unresolved, Some("ongoing"), None)),
            ("unmute by person, forever", muted_forever(), unmute_by_person(&muted_forever()), ok(K::Unmuted, Unresolved, Some("ongoing"), None)),
            ("unmute by person, not muted", unresolved(), unmute_by_person(&unresolved()), Err("The issue is not muted")),
            ("unmute by person, resolved", resolved_plain(), unmute_by_person(&resolved_plain()), Err("The issue is not muted")),
            // unmute by condition
            ("unmute by condition", muted_cond(), unmute_by_condition(&muted_cond(), &cond(Period::Day, 1, 100), 101), ok(K::Unmuted, Unresolved, Some("escalating"), Some(Unmute))),
            ("unmute by condition, exactly", muted_cond(), unmute_by_condition(&muted_cond(), &cond(Period::Minute, 5, 10), 10), ok(K::Unmuted, Unresolved, Some("escalating"), Some(Unmute))),
            ("unmute by condition, below", muted_cond(), unmute_by_condition(&muted_cond(), &cond(Period::Minute, 5, 10), 9), Err("Condition '10 events per 5 minutes' does not hold (9 events)")),
            ("unmute by stale condition", muted_cond(), unmute_by_condition(&muted_cond(), &cond(Period::Minute, 5, 11), 20), Err("Condition '11 events per 5 minutes' is not one of the issue's mute conditions")),
            ("unmute by condition, not muted", unresolved(), unmute_by_condition(&unresolved(), &cond(Period::Day, 1, 100), 101), Err("The issue is not muted")),
            // unmute by time
            ("unmute by time", muted_until(1), unmute_by_time(&muted_until(1), now() + Duration::hours(2)), ok(K::Unmuted, Unresolved, Some("escalating"), Some(Unmute))),
            ("unmute by time, at until", muted_until(1), unmute_by_time(&muted_until(1), now() + Duration::hours(1)), ok(K::Unmuted, Unresolved, Some("escalating"), Some(Unmute))),
            ("unmute by time, too early", muted_until(1), unmute_by_time(&muted_until(1), now()), Err("The mute lasts until 2026-03-01T13:00:00Z, which has not passed yet")),
            ("unmute by time, no limit", muted_cond(), unmute_by_time(&muted_cond(), now()), Err("The mute has no time limit")),
            ("unmute by time, not muted", resolved_plain(), unmute_by_time(&resolved_plain(), now()), Err("The issue is not muted")),
            // unmute by counts
            ("unmute by event count", muted_counts(), unmute_by_event_count(&muted_counts(), 550), ok(K::Unmuted, Unresolved, Some("escalating"), Some(Unmute))),
            ("unmute by event count, below", muted_counts(), unmute_by_event_count(&muted_counts(), 549), Err("Only 49 events of 50 since the mute")),
            ("unmute by event count, no limit", muted_cond(), unmute_by_event_count(&muted_cond(), 10_000), Err("The mute has no event count limit")),
            ("unmute by event count, not muted", unresolved(), unmute_by_event_count(&unresolved(), 10_000), Err("The issue is not muted")),
            ("unmute by users", muted_counts(), unmute_by_user_count(&muted_counts(), 5), ok(K::Unmuted, Unresolved, Some("escalating"), Some(Unmute))),
            ("unmute by users, below", muted_counts(), unmute_by_user_count(&muted_counts(), 4), Err("Only 4 users of 5 affected in the last 60 minutes")),
            ("unmute by users, no limit", muted_until(1), unmute_by_user_count(&muted_until(1), 4), Err("The mute has no user count limit")),
        ];
        for (name, from, got, want) in rows {
            match (got, want) {
                (Ok(t), Ok((kind, status, sub, alert))) => {
                    assert_eq!(t.kind, kind, "{name}");
                    assert_eq!(t.to.status, status, "{name}");
                    assert_eq!(t.to.substatus.as_deref(), sub, "{name}");
                    assert_eq!(t.alert, alert, "{name}");
                    assert_eq!(t.from, from, "{name}: from is the input state");
                    // Invariants: muted exactly when ignored; resolution fields only while resolved.
                    assert_eq!(t.to.mute.is_some(), status == Ignored, "{name}");
                    if status != Resolved {
                        assert!(t.to.resolved_in_release.is_none(), "{name}");
                        assert!(!t.to.resolved_in_next_release, "{name}");
                        assert!(t.to.resolved_at_release.is_none(), "{name}");
                    }
                    assert!(!t.reason.is_empty(), "{name}");
                }
                (Err(r), Err(msg)) => assert_eq!(r.to_string(), msg, "{name}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn resolved_states_carry_their_release() {
        let t = resolve_in_release(&unresolved(), " 2.0 ").unwrap();
        assert_eq!(t.to, resolved_in("2.0"));
        assert_eq!(t.reason, "Marked as resolved in release 2.0");
        let t = resolve_in_next_release(&unresolved(), Some("1.4")).unwrap();
        assert_eq!(t.to, resolved_next(Some("1.4")));
        assert_eq!(t.reason, "Marked as resolved in the next release after 1.4");
        let t = resolve_in_next_release(&unresolved(), Some("")).unwrap();
        assert_eq!(t.to, resolved_next(None));
        assert_eq!(resolve(&unresolved()).unwrap().to, resolved_plain());
    }

    #[test]
    fn resolving_a_muted_issue_unmutes_it_silently() {
        for s in [
            muted_forever(),
            muted_cond(),
            muted_until(1),
            muted_counts(),
        ] {
            for t in [
                resolve(&s).unwrap(),
                resolve_in_release(&s, "3.0").unwrap(),
                resolve_in_next_release(&s, Some("2.9")).unwrap(),
            ] {
                assert_eq!(t.to.mute, None);
                assert_eq!(t.to.status, Status::Resolved);
                assert_eq!(t.alert, None);
                assert!(t.reason.ends_with("; this lifts the mute"), "{}", t.reason);
            }
        }
    }

    #[test]
    fn mute_records_its_limits() {
        let later = now() + Duration::hours(2);
        let t = mute(
            &unresolved(),
            MuteRequest {
                until: Some(later),
                conditions: vec![
                    cond(Period::Minute, 5, 20),
                    cond(Period::Minute, 5, 20),
                    cond(Period::Day, 1, 100),
                ],
                count_since_mute: Some(30),
                user_count: Some(5),
                user_window_minutes: Some(60),
            },
            now(),
            &quiet(),
        )
        .unwrap();
        let m = t.to.mute.clone().unwrap();
        assert_eq!(
            m,
            Mute {
                until: Some(later),
                conditions: vec![cond(Period::Minute, 5, 20), cond(Period::Day, 1, 100)],
                count_since_mute: Some(30),
                event_count_at_mute: 500,
                user_count: Some(5),
                user_window_minutes: Some(60),
                muted_at: now(),
            }
        );
        assert_eq!(
            t.reason,
            "Muted until 2026-03-01T14:00:00Z or 20 events per 5 minutes occur or \
             100 events per 1 day occur or 30 more events occur or 5 users are affected \
             in 60 minutes"
        );
        let forever = mute(&unresolved(), MuteRequest::default(), now(), &quiet()).unwrap();
        assert_eq!(forever.reason, "Muted forever");
        assert_eq!(forever.to.mute.unwrap().muted_at, now());
    }

    #[test]
    fn unmute_reasons_and_alerts() {
        let t = unmute_by_condition(&muted_cond(), &cond(Period::Day, 1, 100), 100).unwrap();
        assert_eq!(
            t.reason,
            "More than 100 events per 1 day occurred, unmuting the issue"
        );
        assert_eq!(t.alert, Some(AlertKind::Unmute));
        let t = unmute_by_time(&muted_until(1), now() + Duration::hours(1)).unwrap();
        assert_eq!(
            t.reason,
            "The mute expired at 2026-03-01T13:00:00Z, unmuting the issue"
        );
        assert_eq!(t.alert, Some(AlertKind::Unmute));
        let t = unmute_by_event_count(&muted_counts(), 600).unwrap();
        assert_eq!(
            t.reason,
            "More than 50 events occurred since the mute, unmuting the issue"
        );
        let t = unmute_by_user_count(&muted_counts(), 9).unwrap();
        assert_eq!(
            t.reason,
            "More than 5 users were affected in the last 60 minutes, unmuting the issue"
        );
        // A person's unmute and a reopen never alert.
        assert_eq!(unmute_by_person(&muted_cond()).unwrap().alert, None);
        assert_eq!(reopen(&muted_until(1)).unwrap().alert, None);
        assert_eq!(reopen(&resolved_plain()).unwrap().alert, None);
        // Once unmuted, a second process seeing the same crossing gets a refusal, not an alert.
        let after = unmute_by_condition(&muted_cond(), &cond(Period::Minute, 5, 10), 15)
            .unwrap()
            .to;
        assert_eq!(
            unmute_by_condition(&after, &cond(Period::Day, 1, 100), 150),
            Err(Refusal::NotMuted)
        );
        // A user count without window counts since the mute.
        let s = muted_with(Mute {
            user_count: Some(2),
            muted_at: now(),
            ..Mute::default()
        });
        assert_eq!(
            unmute_by_user_count(&s, 1).unwrap_err().to_string(),
            "Only 1 user of 2 affected since the mute"
        );
    }

    /// First-seen order used by the regression table: 1.0, 2.0, 2.1, then the non-semver
    /// names in the order the project saw them.
    fn seen(r: &str) -> Option<u64> {
        ["1.0", "2.0", "2.1", "bravo", "alpha", "charlie"]
            .iter()
            .position(|x| *x == r)
            .map(|p| p as u64)
    }

    #[test]
    fn regressions_per_resolution_kind() {
        let cmp = |a: &str, b: &str| compare_releases(a, b, seen);
        // (state, event release, new for project, regresses)
        let rows: Vec<(&str, IssueState, Option<&str>, bool, bool)> = vec![
            ("plain, no release", resolved_plain(), None, false, true),
            (
                "plain, old release",
                resolved_plain(),
                Some("1.0"),
                false,
                true,
            ),
            (
                "in 2.0, from 1.0",
                resolved_in("2.0"),
                Some("1.0"),
                false,
                false,
            ),
            (
                "in 2.0, from 2.0",
                resolved_in("2.0"),
                Some("2.0"),
                false,
                true,
            ),
            (
                "in 2.0, from 2.1",
                resolved_in("2.0"),
                Some("2.1"),
                false,
                true,
            ),
            (
                "in 2.0, from v2.0.0",
                resolved_in("2.0"),
                Some("v2.0.0"),
                false,
                true,
            ),
            (
                "in 2.0, from 2.0.0-rc.1",
                resolved_in("2.0"),
                Some("2.0.0-rc.1"),
                true,
                false,
            ),
            (
                "in 2.0, from 3.0 (unseen)",
                resolved_in("2.0"),
                Some("3.0"),
                true,
                true,
            ),
            ("in 2.0, no release", resolved_in("2.0"), None, false, false),
            (
                "in 2.0, empty release",
                resolved_in("2.0"),
                Some(""),
                false,
                false,
            ),
            (
                "in alpha, from bravo (seen earlier)",
                resolved_in("alpha"),
                Some("bravo"),
                false,
                false,
            ),
            (
                "in alpha, from charlie (seen later)",
                resolved_in("alpha"),
                Some("charlie"),
                false,
                true,
            ),
            (
                "in alpha, from unseen delta",
                resolved_in("alpha"),
                Some("delta"),
                true,
                true,
            ),
            (
                "next after 2.0, from 2.0",
                resolved_next(Some("2.0")),
                Some("2.0"),
                false,
                false,
            ),
            (
                "next after 2.0, from 1.0",
                resolved_next(Some("2.0")),
                Some("1.0"),
                false,
                false,
            ),
            (
                "next after 2.0, from 2.1",
                resolved_next(Some("2.0")),
                Some("2.1"),
                false,
                true,
            ),
            (
                "next after 2.0, from new 2.2",
                resolved_next(Some("2.0")),
                Some("2.2"),
                true,
                true,
            ),
            (
                "next after 2.0, hotfix 1.0.1 new",
                resolved_next(Some("2.0")),
                Some("1.0.1"),
                true,
                false,
            ),
            (
                "next after 2.0, no release",
                resolved_next(Some("2.0")),
                None,
                false,
                false,
            ),
            (
                "next after alpha, from charlie",
                resolved_next(Some("alpha")),
                Some("charlie"),
                false,
                true,
            ),
            (
                "next after alpha, from bravo",
                resolved_next(Some("alpha")),
                Some("bravo"),
                false,
                false,
            ),
            (
                "next, nothing seen, from 1.0",
                resolved_next(None),
                Some("1.0"),
                false,
                true,
            ),
            (
                "next, nothing seen, no release",
                resolved_next(None),
                None,
                false,
                false,
            ),
            ("unresolved", unresolved(), Some("2.1"), true, false),
            ("muted", muted_cond(), Some("2.1"), true, false),
        ];
        for (name, s, release, is_new, regresses) in rows {
            let facts = EventFacts {
                release,
                is_new_release_for_project: is_new,
                cmp: &cmp,
            };
            let got = on_event(&s, &facts);
            assert_eq!(got.is_some(), regresses, "{name}: {got:?}");
            if let Some(t) = got {
                assert_eq!(t.kind, TransitionKind::Regressed, "{name}");
                assert_eq!(t.alert, Some(AlertKind::Regression), "{name}");
                assert_eq!(t.from, s, "{name}");
                assert_eq!(t.to, IssueState::unresolved(substatus::REGRESSED), "{name}");
            }
        }
        // Ties between two unseen names: only a release new for the project is "next".
        let tie = |_: &str, _: &str| Ordering::Equal;
        let s = resolved_next(Some("x"));
        for (is_new, regresses) in [(false, false), (true, true)] {
            let facts = EventFacts {
                release: Some("y"),
                is_new_release_for_project: is_new,
                cmp: &tie,
            };
            assert_eq!(on_event(&s, &facts).is_some(), regresses);
        }
        let plain = on_event(
            &resolved_plain(),
            &EventFacts {
                release: None,
                is_new_release_for_project: false,
                cmp: &cmp,
            },
        )
        .unwrap();
        assert_eq!(
            plain.reason,
            "A new event arrived for the resolved issue, marking it as regressed"
        );
    }

    #[test]
    fn new_release_settles_next_release_resolutions() {
        let cmp = |a: &str, b: &str| compare_releases(a, b, seen);
        let t = on_new_release(&resolved_next(Some("2.0")), "2.1", &cmp).unwrap();
        assert_eq!(t.kind, TransitionKind::ResolvedInRelease("2.1".into()));
        assert_eq!(t.to, resolved_in("2.1"));
        assert_eq!(t.alert, None);
        assert_eq!(
            on_new_release(&resolved_next(None), "1.0", &cmp)
                .unwrap()
                .to,
            resolved_in("1.0")
        );
        // A hotfix of an older branch, the same release, or a non-next resolution: nothing.
        assert_eq!(
            on_new_release(&resolved_next(Some("2.0")), "1.0.1", &cmp),
            None
        );
        assert_eq!(
            on_new_release(&resolved_next(Some("2.0")), "2.0", &cmp),
            None
        );
        assert_eq!(on_new_release(&resolved_in("2.0"), "2.1", &cmp), None);
        assert_eq!(on_new_release(&unresolved(), "2.1", &cmp), None);
        // After settling, the release rules of "resolved in 2.1" apply.
        let facts = |r| EventFacts {
            release: Some(r),
            is_new_release_for_project: false,
            cmp: &cmp,
        };
        assert!(on_event(&t.to, &facts("2.0")).is_none());
        assert!(on_event(&t.to, &facts("2.1")).is_some());
    }

    #[test]
    fn release_order() {
        use Ordering::{Equal, Greater, Less};
        let rows = [
            ("1.0", "2.0", Less),
            ("2.1", "2.0", Greater),
            ("1.10.0", "1.9.0", Greater),
            ("v1.2.3", "1.2.3", Equal),
            ("V2.0.0", "v1.9.9", Greater),
            ("1.2", "1.2.0", Equal),
            ("1.2.3", "1.2.4", Less),
            ("1.0.0-alpha", "1.0.0", Less),
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-alpha.beta", "1.0.0-beta", Less),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0+build.5", "1.0.0+build.7", Equal),
            ("1.0.0-rc.1+b", "1.0.0", Less),
            ("app@1.2.3", "app@1.10.0", Less),
            ("app@v2.0.0", "app@1.99.0", Greater),
            ("@scope/app@1.0.0", "@scope/app@0.9.0", Greater),
            // Different packages, one with and one without a package, or not semver at all: the
            // first-seen order (see `order` below) decides.
            ("app@2.0.0", "web@1.0.0", Greater),
            ("app@2.0.0", "2.0.0", Less),
            ("bravo", "alpha", Less),
            ("charlie", "alpha", Greater),
            ("2024.01.15", "bravo", Greater),
            ("bravo", "1.0.0.0", Less),
            ("1.0.0.0", "2.0", Greater),
            ("1.02.0", "1.3.0", Greater),
            ("unseen", "bravo", Greater),
            ("bravo", "unseen", Less),
            ("unseen", "also-unseen", Equal),
            ("same", "same", Equal),
            ("18446744073709551616.0", "1.0", Greater),
        ];
        let order = |r: &str| -> Option<u64> {
            [
                "web@1.0.0",
                "app@2.0.0",
                "2.0.0",
                "bravo",
                "alpha",
                "charlie",
                "2024.01.15",
                "1.3.0",
                "2.0",
                "1.0",
                "1.0.0.0",
                "1.02.0",
                "18446744073709551616.0",
            ]
            .iter()
            .position(|x| *x == r)
            .map(|p| p as u64)
        };
        for (a, b, want) in rows {
            assert_eq!(compare_releases(a, b, order), want, "{a} vs {b}");
            assert_eq!(compare_releases(b, a, order), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn status_details_shapes() {
        let until = now() + Duration::hours(1);
        let rows = [
            (unresolved(), json!({})),
            (resolved_plain(), json!({})),
            (resolved_in("2.0"), json!({"inRelease": "2.0"})),
            (resolved_next(Some("1.0")), json!({"inNextRelease": true})),
            (muted_forever(), json!({})),
            (
                muted_until(1),
                json!({"ignoreUntil": until.to_rfc3339_opts(SecondsFormat::Micros, true)}),
            ),
            (
                muted_cond(),
                json!({"ignoreCount": 100, "ignoreWindow": 1440, "unmuteOn": [
                    {"period": "day", "nr_of_periods": 1, "volume": 100},
                    {"period": "minute", "nr_of_periods": 5, "volume": 10},
                ]}),
            ),
            (
                muted_counts(),
                json!({"ignoreCount": 50, "ignoreUserCount": 5, "ignoreUserWindow": 60}),
            ),
        ];
        for (s, want) in rows {
            assert_eq!(status_details(&s), want, "{s:?}");
        }
        assert_eq!(
            status_details(&muted_until(1))["ignoreUntil"],
            "2026-03-01T13:00:00.000000Z"
        );
    }

    #[test]
    fn serde_shapes() {
        let s = muted_cond();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["status"], "ignored");
        assert_eq!(json["substatus"], "archived_until_condition_met");
        assert_eq!(json["mute"]["conditions"][1]["period"], "minute");
        assert_eq!(serde_json::from_value::<IssueState>(json).unwrap(), s);
        // Missing fields take their defaults, so older rows keep parsing.
        assert_eq!(
            serde_json::from_str::<IssueState>(r#"{"status":"resolved"}"#).unwrap(),
            resolved_plain()
        );
        assert_eq!(IssueState::new_issue().substatus.as_deref(), Some("new"));
        assert_eq!(
            serde_json::to_value(Actor::Token(7)).unwrap(),
            json!({"type": "token", "id": 7})
        );
        assert_eq!(
            serde_json::to_value(Actor::System).unwrap(),
            json!({"type": "system"})
        );
        assert_eq!(
            serde_json::from_value::<Actor>(json!({"type": "token", "id": 3})).unwrap(),
            Actor::Token(3)
        );
        assert!(serde_json::from_value::<Actor>(json!({"type": "robot"})).is_err());
        assert_eq!(
            serde_json::to_value(TransitionKind::ResolvedInRelease("2.0".into())).unwrap(),
            json!({"kind": "resolved_in_release", "release": "2.0"})
        );
        assert_eq!(
            serde_json::to_value(TransitionKind::Muted).unwrap(),
            json!({"kind": "muted"})
        );
        assert_eq!(
            serde_json::to_value(AlertKind::NewIssue).unwrap(),
            json!("new_issue")
        );
        for k in [
            AlertKind::NewIssue,
            AlertKind::Regression,
            AlertKind::Unmute,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        }
        for st in [Status::Unresolved, Status::Resolved, Status::Ignored] {
            assert_eq!(serde_json::to_value(st).unwrap(), json!(st.as_str()));
        }
    }
}
