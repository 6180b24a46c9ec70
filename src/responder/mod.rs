//! Responders (django-issue's Responder and ResponderAction): which issues they watch, and the
//! ladder of actions they take, at what delays, while an issue stays open.
//!
//! This module is pure: it reads and checks a responder's JSON document (`parse_spec`), and
//! when an issue's episode starts it picks the responders that match and the actions to
//! schedule (`schedule`). The store writes those runs in the episode's own transaction
//! (`store::responders`); `worker` claims them when due, checks that the issue is still open,
//! delivers through the alert channels' code and records every attempt.

pub mod worker;

use crate::protocol::event::Level;
use serde_json::{json, Map, Value};

/// Longest `watch_pattern` accepted, in bytes.
pub const MAX_PATTERN: usize = 1_000;
/// Most actions one responder may have.
pub const MAX_ACTIONS: usize = 20;
/// Longest delay of an action: 30 days.
pub const MAX_DELAY_SEC: u64 = 30 * 86_400;
/// Compiled size limit of a pattern: a hostile one is refused, not compiled into megabytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Where an action sends its message: the alert channels' kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Webhook,
    Slack,
    Email,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Webhook => "webhook",
            Target::Slack => "slack",
            Target::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        match s {
            "webhook" => Some(Target::Webhook),
            "slack" => Some(Target::Slack),
            "email" => Some(Target::Email),
            _ => None,
        }
    }
}

/// One step of the ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpec {
    pub target: Target,
    /// Seconds after the episode's start; 0 runs at once.
    pub delay_sec: u64,
    /// Normalized parameters (`{"url", "secret"?}`, `{"url"}`, `{"recipients": [...],
    /// "subject"?}`): what the API shows, and what a `PUT` may send back unchanged.
    pub params: Value,
}

/// A checked responder document.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub watch_pattern: String,
    pub min_level: Option<Level>,
    pub environment: Option<String>,
    pub enabled: bool,
    pub actions: Vec<ActionSpec>,
}

/// What is wrong with a document, and where (`actions[1].params.url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Fields of the document a client may send back from a `GET` (ignored on write).
const READ_ONLY: &[&str] = &["id", "project", "dateCreated", "dateUpdated"];

/// Reads and checks a whole responder document, as `build_responder` does: every field is
/// checked before anything is stored, and the first problem is reported with its place.
pub fn parse_spec(body: &Value) -> Result<Spec, SpecError> {
    let obj = body
        .as_object()
        .ok_or_else(|| err("body", "must be a JSON object"))?;
    for key in obj.keys() {
        let known = [
            "name",
            "watch_pattern",
            "min_level",
            "environment",
            "enabled",
            "actions",
        ];
        if !known.contains(&key.as_str()) && !READ_ONLY.contains(&key.as_str()) {
            return Err(err(key.as_str(), "unknown field"));
        }
    }
    let watch_pattern = match obj.get("watch_pattern") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(err("watch_pattern", "must be a string")),
        None => return Err(err("watch_pattern", "is required")),
    };
    check_pattern(&watch_pattern)?;
    let name = optional_string(obj, "name", 200)?.unwrap_or_default();
    let min_level = match optional_string(obj, "min_level", 20)? {
        None => None,
        Some(l) => Some(Level::parse(&l).ok_or_else(|| {
            err(
                "min_level",
                format!("'{l}' is not a level (debug, info, warning, error, fatal)"),
            )
        })?),
    };
    let environment = optional_string(obj, "environment", 64)?.filter(|e| !e.is_empty());
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err("enabled", "must be true or false")),
    };
    let actions = match obj.get("actions") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(err("actions", "must be a list")),
        None => return Err(err("actions", "is required")),
    };
    if actions.is_empty() {
        return Err(err("actions", "needs at least one action"));
    }
    if actions.len() > MAX_ACTIONS {
        return Err(err("actions", format!("at most {MAX_ACTIONS} actions")));
    }
    let actions = actions
        .iter()
        .enumerate()
        .map(|(i, a)| parse_action(&format!("actions[{i}]"), a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Spec {
        name,
        watch_pattern,
        min_level,
        environment,
        enabled,
        actions,
    })
}

fn optional_string(
    obj: &Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<String>, SpecError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(err(key, format!("at most {max} characters"))),
        Some(_) => Err(err(key, "must be a string")),
    }
}

/// Checks a pattern the way it will be compiled. A syntax error names its position (a
/// character offset into the pattern, counting from 0) and what is wrong there.
pub fn check_pattern(pattern: &str) -> Result<(), SpecError> {
    if pattern.len() > MAX_PATTERN {
        return Err(err("watch_pattern", format!("at most {MAX_PATTERN} bytes")));
    }
    if let Err(e) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
        let at = pattern[..e.span().start.offset.min(pattern.len())]
            .chars()
            .count();
        return Err(err(
            "watch_pattern",
            format!("invalid regular expression at position {at}: {}", e.kind()),
        ));
    }
    compile(pattern).map(|_| ()).map_err(|e| {
        let detail = match e {
            regex::Error::CompiledTooBig(_) => "the pattern is too large once compiled".into(),
            other => other
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string(),
        };
        err(
            "watch_pattern",
            format!("invalid regular expression: {detail}"),
        )
    })
}

fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

fn parse_action(at: &str, a: &Value) -> Result<ActionSpec, SpecError> {
    let obj = a.as_object().ok_or_else(|| err(at, "must be an object"))?;
    for key in obj.keys() {
        if !["target", "delay_sec", "params"].contains(&key.as_str()) {
            return Err(err(format!("{at}.{key}"), "unknown field"));
        }
    }
    let target = match obj.get("target") {
        Some(Value::String(t)) => Target::parse(t).ok_or_else(|| {
            err(
                format!("{at}.target"),
                format!("unknown target '{t}' (webhook, slack or email)"),
            )
        })?,
        Some(_) => return Err(err(format!("{at}.target"), "must be a string")),
        None => return Err(err(format!("{at}.target"), "is required")),
    };
    let delay_sec = match obj.get("delay_sec") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(d) if d <= MAX_DELAY_SEC => d,
            _ => {
                return Err(err(
                    format!("{at}.delay_sec"),
                    format!("must be a whole number of seconds from 0 to {MAX_DELAY_SEC}"),
                ))
            }
        },
    };
    let empty = Map::new();
    let params = match obj.get("params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Err(err(format!("{at}.params"), "must be an object")),
    };
    let params = parse_params(&format!("{at}.params"), target, params)?;
    Ok(ActionSpec {
        target,
        delay_sec,
        params,
    })
}

fn parse_params(at: &str, target: Target, p: &Map<String, Value>) -> Result<Value, SpecError> {
    let allowed: &[&str] = match target {
        Target::Webhook => &["url", "secret"],
        Target::Slack => &["url"],
        Target::Email => &["recipients", "subject"],
    };
    for key in p.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(err(
                format!("{at}.{key}"),
                format!(
                    "unknown parameter for {} (allowed: {})",
                    target.as_str(),
                    allowed.join(", ")
                ),
            ));
        }
    }
    let url = || -> Result<String, SpecError> {
        match p.get("url") {
            Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                Ok(u.clone())
            }
            Some(_) => Err(err(format!("{at}.url"), "must be an http(s) URL")),
            None => Err(err(format!("{at}.url"), "is required")),
        }
    };
    match target {
        Target::Webhook => {
            let mut out = json!({"url": url()?});
            match p.get("secret") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => out["secret"] = json!(s),
                Some(_) => return Err(err(format!("{at}.secret"), "must be a string")),
            }
            Ok(out)
        }
        Target::Slack => Ok(json!({"url": url()?})),
        Target::Email => {
            let field = format!("{at}.recipients");
            // The seed writes one address as a string; a comma-separated list is read too.
            let to: Vec<String> = match p.get("recipients") {
                Some(Value::String(s)) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(|s| s.trim().to_string())
                            .ok_or_else(|| err(&field, "must hold strings"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(err(&field, "must be an address or a list of them")),
                None => return Err(err(&field, "is required")),
            };
            if to.is_empty() || to.len() > 50 {
                return Err(err(&field, "must name from 1 to 50 addresses"));
            }
            if let Some(bad) = to.iter().find(|t| !is_address(t)) {
                return Err(err(&field, format!("'{bad}' is not an email address")));
            }
            let mut out = json!({"recipients": to});
            match p.get("subject") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s.len() <= 250 && !s.chars().any(char::is_control) => {
                    out["subject"] = json!(s)
                }
                Some(_) => {
                    return Err(err(
                        format!("{at}.subject"),
                        "must be one line of at most 250 characters",
                    ))
                }
            }
            Ok(out)
        }
    }
}

/// `local@domain`, nothing that would break a mail header.
fn is_address(s: &str) -> bool {
    let mut parts = s.splitn(2, '@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
}

impl Spec {
    /// The actions as stored (`[{"target", "delay_sec", "params"}]`).
    pub fn actions_json(&self) -> Value {
        Value::Array(self.actions.iter().map(ActionSpec::to_json).collect())
    }
}

impl ActionSpec {
    pub fn to_json(&self) -> Value {
        json!({"target": self.target.as_str(), "delay_sec": self.delay_sec, "params": self.params})
    }
}

fn rank(l: Level) -> u8 {
    match l {
        Level::Debug => 0,
        Level::Info => 1,
        Level::Warning => 2,
        Level::Error => 3,
        Level::Fatal => 4,
    }
}

/// A responder as the store reads it for matching.
#[derive(Debug, Clone, PartialEq)]
pub struct Watcher {
    pub id: i64,
    pub watch_pattern: String,
    pub min_level: Option<String>,
    pub environment: Option<String>,
    /// The stored actions JSON.
    pub actions: String,
}

/// The issue whose episode starts, as the responders see it.
#[derive(Debug, Clone, Copy)]
pub struct EpisodeStart<'a> {
    pub title: &'a str,
    /// The level of the event that started it (else the issue's).
    pub level: &'a str,
    /// The environment of the event that started it; `None` for episodes no event started
    /// (a timed unmute, a person reopening), which environment filters then do not match.
    pub environment: Option<&'a str>,
    pub started_us: i64,
}

/// One action to run once in this episode, at `due_us`.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub responder_id: i64,
    pub action_index: i64,
    pub target: &'static str,
    pub params: String,
    pub due_us: i64,
}

/// Whether `w` watches an issue in this episode.
pub fn matches(w: &Watcher, ep: &EpisodeStart<'_>) -> bool {
    if let Some(min) = w.min_level.as_deref().and_then(Level::parse) {
        let level = Level::parse(ep.level).unwrap_or_default();
        if rank(level) < rank(min) {
            return false;
        }
    }
    if let Some(env) = w.environment.as_deref() {
        if ep.environment != Some(env) {
            return false;
        }
    }
    // Stored patterns were checked when written; one that no longer compiles matches nothing.
    compile(&w.watch_pattern).is_ok_and(|r| r.is_match(ep.title))
}

/// The actions an episode schedules: every action of every matching responder, each due at
/// the episode's start plus its delay.
pub fn schedule(watchers: &[Watcher], ep: &EpisodeStart<'_>) -> Vec<Run> {
    let mut out = Vec::new();
    for w in watchers.iter().filter(|w| matches(w, ep)) {
        let Ok(Value::Array(actions)) = serde_json::from_str::<Value>(&w.actions) else {
            continue;
        };
        for (i, a) in actions.iter().enumerate() {
            let Some(target) = a["target"].as_str().and_then(Target::parse) else {
                continue;
            };
            let delay = a["delay_sec"].as_u64().unwrap_or(0).min(MAX_DELAY_SEC) as i64;
            out.push(Run {
                responder_id: w.id,
                action_index: i as i64,
                target: target.as_str(),
                params: a["params"].to_string(),
                due_us: ep.started_us.saturating_add(delay * 1_000_000),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
