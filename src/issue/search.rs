//! Sentry's issue search syntax (`is:unresolved level:error browser:[Chrome, Firefox] "x y"`), parsed into terms the store turns into SQL and `matches_event` checks on one event.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::fmt;

/// The three stored statuses, in the order `is:` sets are kept.
pub const STATUSES: [&str; 3] = ["unresolved", "resolved", "ignored"];

/// Substatuses `is:` can ask for (all of unresolved issues).
const SUBSTATUSES: [&str; 4] = ["new", "ongoing", "regressed", "escalating"];

/// Sentry keys we do not support: refused with a 400 naming them rather than read as tags,
/// so a script written for Sentry learns at once that its filter is not applied.
const UNSUPPORTED_KEYS: [&str; 14] = [
    "assigned",
    "assigned_or_suggested",
    "bookmarks",
    "subscribed",
    "owner",
    "firstRelease",
    "first_release",
    "issue.priority",
    "issue.category",
    "issue.type",
    "regressed_in_release",
    "detector",
    "lastAssignedTo",
    "team",
];

/// `is:` values of Sentry we do not support.
const UNSUPPORTED_IS: [&str; 9] = [
    "assigned",
    "unassigned",
    "for_review",
    "linked",
    "unlinked",
    "bookmarked",
    "subscribed",
    "archived_until_escalating",
    "archived_forever",
];

/// A comparison of a number or a time with a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
}

impl Cmp {
    pub fn sql(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "=",
        }
    }

    pub fn holds(self, x: i64, bound: i64) -> bool {
        match self {
            Cmp::Gt => x > bound,
            Cmp::Ge => x >= bound,
            Cmp::Lt => x < bound,
            Cmp::Le => x <= bound,
            Cmp::Eq => x == bound,
        }
    }
}

/// Which issue time a time term compares (for an event: its timestamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenField {
    FirstSeen,
    LastSeen,
}

/// What one `key:value` (or free text) term asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// A tag (`level`, `environment`, `release` or any event tag) with one of `values`; no
    /// values (`has:key`): any value.
    Tag { key: String, values: Vec<String> },
    /// All bounds hold for the time (µs since the epoch).
    Seen {
        field: SeenField,
        bounds: Vec<(Cmp, i64)>,
    },
    /// All bounds hold for the number of events.
    TimesSeen { bounds: Vec<(Cmp, i64)> },
    /// A word or phrase in the title or the culprit (case-insensitive).
    Text(String),
}

/// A term and whether it was negated (`!key:value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub negated: bool,
    pub filter: Filter,
}

/// A parsed search: statuses allowed, substatuses asked for, and terms that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// `None`: every status; otherwise those allowed (possibly none, then nothing matches).
    pub statuses: Option<Vec<&'static str>>,
    /// `is:new|ongoing|regressed|escalating`: one of these substatuses (empty: any).
    pub substatuses: Vec<&'static str>,
    pub terms: Vec<Term>,
}

impl Default for SearchQuery {
    /// Every issue: what `query=` (empty) asks for.
    fn default() -> SearchQuery {
        SearchQuery {
            statuses: None,
            substatuses: vec![],
            terms: vec![],
        }
    }
}

/// A term we cannot read: `bad query: '<term>': <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub term: String,
    pub reason: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad query: '{}': {}", self.term, self.reason)
    }
}

impl std::error::Error for QueryError {}

fn bad(term: &str, reason: impl Into<String>) -> QueryError {
    QueryError {
        term: term.to_string(),
        reason: reason.into(),
    }
}

/// One event as a search sees it, for filtering an issue's events.
#[derive(Debug, Clone, Default)]
pub struct EventFacts<'a> {
    /// The event's tags, with `level`, `environment` and `release` among them.
    pub tags: &'a [(String, String)],
    /// µs since the epoch.
    pub timestamp: i64,
    pub title: &'a str,
    pub message: &'a str,
    pub culprit: &'a str,
}

impl SearchQuery {
    /// The tag terms that select events (not negated), in query order: the first drives the
    /// filtered counts of a list.
    pub fn positive_tags(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.terms.iter().filter_map(|t| match &t.filter {
            Filter::Tag { key, values } if !t.negated && !values.is_empty() => {
                Some((key.as_str(), values.as_slice()))
            }
            _ => None,
        })
    }

    /// Whether an event matches the event-level terms: tags, times (against the event's
    /// timestamp) and text (title, message or culprit). Statuses and `times_seen` are about
    /// issues and are not checked here.
    pub fn matches_event(&self, ev: &EventFacts) -> bool {
        self.terms.iter().all(|t| {
            let hit = match &t.filter {
                Filter::Tag { key, values } => ev
                    .tags
                    .iter()
                    .any(|(k, v)| k == key && (values.is_empty() || values.contains(v))),
                Filter::Seen { bounds, .. } => {
                    bounds.iter().all(|(c, b)| c.holds(ev.timestamp, *b))
                }
                Filter::TimesSeen { .. } => return true,
                Filter::Text(s) => {
                    let s = s.to_lowercase();
                    [ev.title, ev.message, ev.culprit]
                        .iter()
                        .any(|f| f.to_lowercase().contains(&s))
                }
            };
            hit != t.negated
        })
    }
}

/// Parses `query=`: absent means `is:unresolved` (Sentry's default), empty means every
/// status. `now` anchors relative times (`-24h`).
pub fn parse(query: Option<&str>, now: DateTime<Utc>) -> Result<SearchQuery, QueryError> {
    let Some(query) = query else {
        return Ok(SearchQuery {
            statuses: Some(vec!["unresolved"]),
            ..SearchQuery::default()
        });
    };
    let mut q = SearchQuery::default();
    for token in tokenize(query)? {
        match token {
            Token::Text(s) => {
                if s == "OR" || s == "AND" {
                    return Err(bad(
                        &s,
                        "boolean operators are not supported; terms are all required",
                    ));
                }
                q.terms.push(Term {
                    negated: false,
                    filter: Filter::Text(s),
                });
            }
            Token::Pair {
                raw,
                negated,
                key,
                values,
            } => apply_pair(&mut q, &raw, negated, &key, values, now)?,
        }
    }
    Ok(q)
}

fn apply_pair(
    q: &mut SearchQuery,
    raw: &str,
    negated: bool,
    key: &str,
    values: Vec<String>,
    now: DateTime<Utc>,
) -> Result<(), QueryError> {
    if values.iter().any(|v| v.is_empty()) || values.is_empty() {
        return Err(bad(raw, "empty value"));
    }
    if UNSUPPORTED_KEYS.contains(&key) {
        return Err(bad(raw, format!("the key '{key}' is not supported")));
    }
    let single = |what: &str| -> Result<&str, QueryError> {
        match values.as_slice() {
            [v] => Ok(v.as_str()),
            _ => Err(bad(raw, format!("{what} takes one value, not a list"))),
        }
    };
    let term = |filter| Term { negated, filter };
    match key {
        "is" => {
            let mut wanted: Vec<&'static str> = Vec::new();
            let mut subs: Vec<&'static str> = Vec::new();
            for v in &values {
                match v.as_str() {
                    "unresolved" => wanted.push("unresolved"),
                    "resolved" => wanted.push("resolved"),
                    "ignored" | "muted" | "archived" => wanted.push("ignored"),
                    v if SUBSTATUSES.contains(&v) => {
                        subs.extend(SUBSTATUSES.iter().filter(|s| **s == v))
                    }
                    v if UNSUPPORTED_IS.contains(&v) => {
                        return Err(bad(raw, format!("'is:{v}' is not supported")))
                    }
                    v => return Err(bad(raw, format!("unknown status '{v}'"))),
                }
            }
            if !subs.is_empty() {
                if negated || !wanted.is_empty() {
                    return Err(bad(
                        raw,
                        "a substatus (new, ongoing, regressed, escalating) cannot be negated or mixed with statuses",
                    ));
                }
                wanted.push("unresolved");
                q.substatuses.extend(subs);
            }
            let current = q.statuses.take().unwrap_or_else(|| STATUSES.to_vec());
            let next: Vec<&'static str> = current
                .into_iter()
                .filter(|s| wanted.contains(s) != negated)
                .collect();
            q.statuses = Some(next);
        }
        "has" => {
            let name = single("has")?;
            q.terms.push(term(Filter::Tag {
                key: tag_key(name).to_string(),
                values: vec![],
            }));
        }
        "firstSeen" | "first_seen" | "age" | "lastSeen" | "last_seen" => {
            let field = if matches!(key, "lastSeen" | "last_seen") {
                SeenField::LastSeen
            } else {
                SeenField::FirstSeen
            };
            let bounds = parse_time(single(key)?, now).map_err(|r| bad(raw, r))?;
            q.terms.push(term(Filter::Seen { field, bounds }));
        }
        "times_seen" | "timesSeen" => {
            let (cmp, n) = split_cmp(single(key)?);
            let n: i64 = n
                .parse()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad(raw, "expected a count such as >10, <=5 or 3"))?;
            q.terms.push(term(Filter::TimesSeen {
                bounds: vec![(cmp.unwrap_or(Cmp::Eq), n)],
            }));
        }
        "message" | "title" => {
            q.terms.push(term(Filter::Text(single(key)?.to_string())));
        }
        _ => {
            let key = tag_key(key);
            if key.is_empty() {
                return Err(bad(raw, "empty tag name"));
            }
            q.terms.push(term(Filter::Tag {
                key: key.to_string(),
                values,
            }));
        }
    }
    Ok(())
}

/// `tags.browser`, `tags[browser]` and `browser` name the same tag.
fn tag_key(key: &str) -> &str {
    if let Some(k) = key.strip_prefix("tags.") {
        return k;
    }
    if let Some(k) = key.strip_prefix("tags[").and_then(|k| k.strip_suffix(']')) {
        return k;
    }
    key
}

fn split_cmp(v: &str) -> (Option<Cmp>, &str) {
    for (p, c) in [
        (">=", Cmp::Ge),
        ("<=", Cmp::Le),
        (">", Cmp::Gt),
        ("<", Cmp::Lt),
        ("=", Cmp::Eq),
    ] {
        if let Some(rest) = v.strip_prefix(p) {
            return (Some(c), rest);
        }
    }
    (None, v)
}

/// `-24h` (within the last 24 hours), `+7d` (older than 7 days), units s m h d w;
/// `>2026-01-01`, `<=2026-01-01T10:00:00` (UTC unless an offset is given), a bare date (that
/// day), a bare date and time (that second).
fn parse_time(v: &str, now: DateTime<Utc>) -> Result<Vec<(Cmp, i64)>, String> {
    let now_us = now.timestamp_micros();
    if let Some((newer, rest)) = v
        .strip_prefix('-')
        .map(|r| (true, r))
        .or_else(|| v.strip_prefix('+').map(|r| (false, r)))
    {
        let unit = rest
            .chars()
            .last()
            .ok_or("expected a duration such as -24h")?;
        let n: i64 = rest[..rest.len() - unit.len_utf8()]
            .parse()
            .ok()
            .filter(|n| *n >= 0 && *n < 1_000_000)
            .ok_or("expected a duration such as -24h or +7d")?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(format!("unknown unit '{unit}' (use s, m, h, d or w)")),
        };
        let at = now_us - n * secs * 1_000_000;
        return Ok(vec![if newer { (Cmp::Ge, at) } else { (Cmp::Le, at) }]);
    }
    let (cmp, rest) = split_cmp(v);
    let (at, span) = parse_instant(rest).ok_or_else(|| {
        "expected -24h, +7d, or a date such as >=2026-01-01 or <2026-01-01T10:00:00".to_string()
    })?;
    Ok(match cmp {
        Some(Cmp::Eq) | None => vec![(Cmp::Ge, at), (Cmp::Lt, at + span)],
        Some(c) => vec![(c, at)],
    })
}

/// A date (span: a day) or a date and time (span: a second), as µs.
fn parse_instant(s: &str) -> Option<(i64, i64)> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?);
        return Some((t.timestamp_micros(), 86_400_000_000));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some((t.timestamp_micros(), 1_000_000));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), f) {
            return Some((Utc.from_utc_datetime(&t).timestamp_micros(), 1_000_000));
        }
    }
    None
}

#[derive(Debug, PartialEq)]
enum Token {
    Text(String),
    Pair {
        raw: String,
        negated: bool,
        key: String,
        values: Vec<String>,
    },
}

/// Splits a query into words, quoted phrases and `[!]key:value` pairs whose value may be
/// quoted (`"a b"`, `\"` inside) or a list (`[a, "b c"]`).
fn tokenize(s: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if chars[i] == '"' {
            let (text, next) = quoted(&chars, i)
                .ok_or_else(|| bad(&chars[start..].iter().collect::<String>(), "unclosed quote"))?;
            i = next;
            if !text.is_empty() {
                out.push(Token::Text(text));
            }
            continue;
        }
        // A key runs to ':' (a pair) or to whitespace (a plain word).
        let mut j = i;
        while j < chars.len() && !chars[j].is_whitespace() && chars[j] != ':' && chars[j] != '"' {
            j += 1;
        }
        if j >= chars.len() || chars[j] != ':' || j == i || (j == i + 1 && chars[i] == '!') {
            while j < chars.len() && !chars[j].is_whitespace() {
                j += 1;
            }
            out.push(Token::Text(chars[i..j].iter().collect()));
            i = j;
            continue;
        }
        let key: String = chars[i..j].iter().collect();
        let (negated, key) = match key.strip_prefix('!') {
            Some(k) => (true, k.to_string()),
            None => (false, key),
        };
        i = j + 1;
        let raw_of = |end: usize| {
            chars[start..end.min(chars.len())]
                .iter()
                .collect::<String>()
        };
        let values = if i < chars.len() && chars[i] == '"' {
            let (v, next) =
                quoted(&chars, i).ok_or_else(|| bad(&raw_of(chars.len()), "unclosed quote"))?;
            i = next;
            vec![v]
        } else if i < chars.len() && chars[i] == '[' {
            let (vs, next) = list(&chars, i + 1)
                .ok_or_else(|| bad(&raw_of(chars.len()), "unclosed or malformed list"))?;
            i = next;
            vs
        } else {
            let mut k = i;
            while k < chars.len() && !chars[k].is_whitespace() {
                k += 1;
            }
            let v: String = chars[i..k].iter().collect();
            i = k;
            vec![v]
        };
        if i < chars.len() && !chars[i].is_whitespace() {
            let mut k = i;
            while k < chars.len() && !chars[k].is_whitespace() {
                k += 1;
            }
            return Err(bad(&raw_of(k), "unexpected text after the value"));
        }
        out.push(Token::Pair {
            raw: raw_of(i),
            negated,
            key,
            values,
        });
    }
    Ok(out)
}

/// The string in quotes starting at `chars[at] == '"'` and the index after its end.
fn quoted(chars: &[char], at: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut i = at + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                out.push(chars[i + 1]);
                i += 2;
            }
            '"' => return Some((out, i + 1)),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// The items of a list whose `[` is just before `at`, and the index after its `]`.
fn list(chars: &[char], mut i: usize) -> Option<(Vec<String>, usize)> {
    let mut out = Vec::new();
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let item = if *chars.get(i)? == '"' {
            let (v, next) = quoted(chars, i)?;
            i = next;
            v
        } else {
            let start = i;
            while i < chars.len() && chars[i] != ',' && chars[i] != ']' {
                i += 1;
            }
            chars[start..i]
                .iter()
                .collect::<String>()
                .trim()
                .to_string()
        };
        out.push(item);
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        match chars.get(i)? {
            ',' => i += 1,
            ']' => return Some((out, i + 1)),
            _ => return None,
        }
    }
}

/// How far back `stats` go and in which buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsPeriod {
    /// 24 hourly buckets, the last one the current hour.
    Day,
    /// 14 daily buckets (UTC days), the last one today.
    TwoWeeks,
}

impl StatsPeriod {
    /// `statsPeriod`: `24h`, `14d`, or empty / absent (no stats).
    pub fn parse(v: Option<&str>) -> Result<Option<StatsPeriod>, String> {
        match v.unwrap_or("") {
            "" => Ok(None),
            "24h" => Ok(Some(StatsPeriod::Day)),
            "14d" => Ok(Some(StatsPeriod::TwoWeeks)),
            other => Err(format!(
                "bad statsPeriod '{other}': use 24h, 14d or an empty value"
            )),
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            StatsPeriod::Day => "24h",
            StatsPeriod::TwoWeeks => "14d",
        }
    }

    /// The buckets' starts (µs), oldest first, and their width (µs).
    pub fn buckets(self, now: DateTime<Utc>) -> (Vec<i64>, i64) {
        let hour = 3_600_000_000i64;
        let (width, n) = match self {
            StatsPeriod::Day => (hour, 24),
            StatsPeriod::TwoWeeks => (24 * hour, 14),
        };
        let now = now.timestamp_micros();
        let last = now - now.rem_euclid(width);
        ((0..n).rev().map(|k| last - k * width).collect(), width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, 12, 30, 0).unwrap()
    }

    fn us(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, h, mi, s)
            .unwrap()
            .timestamp_micros()
    }

    fn p(s: &str) -> SearchQuery {
        parse(Some(s), now()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn tag(key: &str, values: &[&str], negated: bool) -> Term {
        Term {
            negated,
            filter: Filter::Tag {
                key: key.into(),
                values: values.iter().map(|v| v.to_string()).collect(),
            },
        }
    }

    fn text(s: &str) -> Term {
        Term {
            negated: false,
            filter: Filter::Text(s.into()),
        }
    }

    #[test]
    fn defaults_and_statuses() {
        assert_eq!(
            parse(None, now()).unwrap().statuses,
            Some(vec!["unresolved"])
        );
        assert_eq!(p(""), SearchQuery::default());
        assert_eq!(p("   "), SearchQuery::default());
        let cases: &[(&str, Option<Vec<&str>>)] = &[
            ("is:unresolved", Some(vec!["unresolved"])),
            ("is:resolved", Some(vec!["resolved"])),
            ("is:ignored", Some(vec!["ignored"])),
            ("is:muted", Some(vec!["ignored"])),
            ("is:archived", Some(vec!["ignored"])),
            ("!is:resolved", Some(vec!["unresolved", "ignored"])),
            ("is:[resolved, muted]", Some(vec!["resolved", "ignored"])),
            ("is:resolved is:unresolved", Some(vec![])),
        ];
        for (q, want) in cases {
            assert_eq!(&p(q).statuses, want, "{q}");
        }
        let q = p("is:regressed");
        assert_eq!(q.statuses, Some(vec!["unresolved"]));
        assert_eq!(q.substatuses, vec!["regressed"]);
    }

    #[test]
    fn tags_lists_negation_quotes_text() {
        let q = p(
            r#"level:error !environment:prod tags.browser:"Chrome 1" os:[Linux, "Mac OS"] release:1.0 tags[is]:x KeyError "two words" !nope"#,
        );
        assert_eq!(
            q.terms,
            vec![
                tag("level", &["error"], false),
                tag("environment", &["prod"], true),
                tag("browser", &["Chrome 1"], false),
                tag("os", &["Linux", "Mac OS"], false),
                tag("release", &["1.0"], false),
                tag("is", &["x"], false),
                text("KeyError"),
                text("two words"),
                text("!nope"),
            ]
        );
        assert_eq!(q.statuses, None);
        let q = p(r#"message:"a \"b\"" has:browser !has:os url:http://x/y?a=b"#);
        assert_eq!(q.terms[0], text("a \"b\""));
        assert_eq!(q.terms[1], tag("browser", &[], false));
        assert_eq!(q.terms[2], tag("os", &[], true));
        assert_eq!(q.terms[3], tag("url", &["http://x/y?a=b"], false));
        let first: Vec<_> = p("a:1 b:[2,3]")
            .positive_tags()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        assert_eq!(first[0], ("a".to_string(), vec!["1".to_string()]));
        assert_eq!(first[1].1, vec!["2", "3"]);
    }

    #[test]
    fn times_and_counts() {
        let n = now().timestamp_micros();
        let seen = |q: &str| match &p(q).terms[0].filter {
            Filter::Seen { field, bounds } => (*field, bounds.clone()),
            f => panic!("{q}: {f:?}"),
        };
        let h = 3_600_000_000;
        assert_eq!(
            seen("firstSeen:-24h"),
            (SeenField::FirstSeen, vec![(Cmp::Ge, n - 24 * h)])
        );
        assert_eq!(
            seen("lastSeen:+7d"),
            (SeenField::LastSeen, vec![(Cmp::Le, n - 7 * 24 * h)])
        );
        assert_eq!(seen("age:-30m").1, vec![(Cmp::Ge, n - h / 2)]);
        assert_eq!(seen("firstSeen:-2w").1, vec![(Cmp::Ge, n - 14 * 24 * h)]);
        assert_eq!(seen("firstSeen:-90s").1, vec![(Cmp::Ge, n - 90_000_000)]);
        assert_eq!(
            seen("firstSeen:>2026-01-01").1,
            vec![(Cmp::Gt, us(2026, 1, 1, 0, 0, 0))]
        );
        assert_eq!(
            seen("lastSeen:<=2026-01-01T10:00:00").1,
            vec![(Cmp::Le, us(2026, 1, 1, 10, 0, 0))]
        );
        assert_eq!(
            seen("lastSeen:>=2026-01-01T10:00:00Z").1,
            vec![(Cmp::Ge, us(2026, 1, 1, 10, 0, 0))]
        );
        assert_eq!(
            seen("lastSeen:<2026-01-01T10:00:00+02:00").1,
            vec![(Cmp::Lt, us(2026, 1, 1, 8, 0, 0))]
        );
        assert_eq!(
            seen("firstSeen:2026-01-02").1,
            vec![
                (Cmp::Ge, us(2026, 1, 2, 0, 0, 0)),
                (Cmp::Lt, us(2026, 1, 3, 0, 0, 0))
            ]
        );
        let count = |q: &str| match &p(q).terms[0].filter {
            Filter::TimesSeen { bounds } => bounds[0],
            f => panic!("{q}: {f:?}"),
        };
        assert_eq!(count("times_seen:>10"), (Cmp::Gt, 10));
        assert_eq!(count("timesSeen:<=3"), (Cmp::Le, 3));
        assert_eq!(count("times_seen:>=0"), (Cmp::Ge, 0));
        assert_eq!(count("times_seen:<5"), (Cmp::Lt, 5));
        assert_eq!(count("times_seen:=5"), (Cmp::Eq, 5));
        assert_eq!(count("times_seen:7"), (Cmp::Eq, 7));
        assert!(p("!times_seen:>3").terms[0].negated);
    }

    #[test]
    fn bad_terms_are_named() {
        let cases = [
            ("firstSeen:-24x", "firstSeen:-24x"),
            ("lastSeen:yesterday", "lastSeen:yesterday"),
            ("times_seen:lots", "times_seen:lots"),
            ("times_seen:>-1", "times_seen:>-1"),
            ("is:unassigned", "is:unassigned"),
            ("is:bogus", "is:bogus"),
            ("assigned:me", "assigned:me"),
            ("bookmarks:me", "bookmarks:me"),
            ("level:", "level:"),
            ("level:[a,", "level:[a,"),
            (r#"x "open"#, r#""open"#),
            (r#"browser:"a"b"#, r#"browser:"a"b"#),
            ("a OR b", "OR"),
            ("firstSeen:[-1h, -2h]", "firstSeen:[-1h, -2h]"),
        ];
        for (q, term) in cases {
            let e = parse(Some(q), now()).expect_err(q);
            assert_eq!(e.term, term, "{q}: {e}");
            assert!(e.to_string().starts_with(&format!("bad query: '{term}': ")));
        }
    }

    #[test]
    fn events_match() {
        let tags = vec![
            ("level".to_string(), "error".to_string()),
            ("environment".to_string(), "prod".to_string()),
            ("browser".to_string(), "Chrome".to_string()),
        ];
        let ev = EventFacts {
            tags: &tags,
            timestamp: us(2026, 3, 10, 12, 0, 0),
            title: "KeyError: 'x'",
            message: "",
            culprit: "app.views in index",
        };
        for (q, want) in [
            ("", true),
            ("level:error browser:[Firefox, Chrome]", true),
            ("!environment:prod", false),
            ("has:browser !has:os", true),
            ("keyerror views", true),
            ("missing", false),
            ("lastSeen:-1h", true),
            ("lastSeen:-10m", false),
            ("times_seen:>100", true),
        ] {
            assert_eq!(p(q).matches_event(&ev), want, "{q}");
        }
    }

    #[test]
    fn stats_periods() {
        assert_eq!(StatsPeriod::parse(None), Ok(None));
        assert_eq!(StatsPeriod::parse(Some("")), Ok(None));
        assert_eq!(StatsPeriod::parse(Some("24h")), Ok(Some(StatsPeriod::Day)));
        assert!(StatsPeriod::parse(Some("30d"))
            .unwrap_err()
            .contains("'30d'"));
        let (b, w) = StatsPeriod::Day.buckets(now());
        assert_eq!((b.len(), w), (24, 3_600_000_000));
        assert_eq!(*b.last().unwrap(), us(2026, 3, 10, 12, 0, 0));
        let (b, _) = StatsPeriod::TwoWeeks.buckets(now());
        assert_eq!(b[0], us(2026, 2, 25, 0, 0, 0));
        assert_eq!(b[13], us(2026, 3, 10, 0, 0, 0));
    }
}
