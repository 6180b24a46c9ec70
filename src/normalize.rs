//! The issue-facing summary of an event: type, title, culprit, tags and metadata (reference 6.7).

use crate::grouping::{crash_frame, main_exception};
use crate::protocol::event::{Event, Exception, Level};
use serde_json::{Map, Value};

/// What the issue row and the event list need of one event, derived without I/O.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// `"error"` when the event has an exception, else `"default"`.
    pub event_type: &'static str,
    pub title: String,
    /// Transaction, else `"<module or filename> in <function>"` of the crash frame, else
    /// `request.url`, else `""`.
    pub culprit: String,
    pub level: Level,
    /// Defaults to `"other"`.
    pub platform: String,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub transaction: Option<String>,
    /// The log entry text, or the main exception's value; `""` if none.
    pub message: String,
    /// The event's timestamp, else the time it was received.
    pub timestamp: f64,
    /// Event tags, then `level`, `environment` and `release`; keys and values at most 200 chars.
    pub tags: Vec<(String, String)>,
    /// Identifies the user for distinct-user counts, in Sentry's `user` tag form: `id:42`, else
    /// `email:...`, else `username:...`, else `ip:...`. The prefix keeps an id `"jane"` and a
    /// username `"jane"` apart.
    pub user_key: Option<String>,
    /// Errors: `{type, value, filename, function}` (absent keys omitted); default events: `{title}`.
    pub metadata: Value,
}

/// Longest title text, in chars, ellipsis included (Sentry's `truncatechars(..., 100)`).
const TITLE_MAX: usize = 100;
/// Longest `metadata.value`, in chars.
const METADATA_VALUE_MAX: usize = 1024;
/// Longest tag key or value, in chars (Sentry rejects longer ones; we truncate instead).
const TAG_MAX: usize = 200;
/// Longest culprit, in chars (Sentry's `MAX_CULPRIT_LENGTH`).
const CULPRIT_MAX: usize = 200;

/// Derives the issue-facing fields of `event`; `received` (unix seconds) stands in for a missing
/// timestamp.
pub fn summarize(event: &Event<'_>, received: f64) -> Summary {
    // The last exception, or the one exception an exception group is about (not its wrapper).
    let main_exc = main_exception(event);
    let frame = crash_frame(event);
    let log_text = event.log_entry().text();
    let main_value = main_exc.and_then(|e| e.value.non_empty());

    let (event_type, title, metadata) = match main_exc {
        Some(exc) => {
            let title = error_title(exc, log_text, frame.and_then(|f| f.function.non_empty()));
            let mut meta = Map::new();
            if let Some(ty) = exc.ty.non_empty().filter(|_| !is_synthetic(exc)) {
                meta.insert("type".into(), Value::from(ty));
            }
            if let Some(v) = main_value {
                meta.insert(
                    "value".into(),
                    Value::from(truncate_chars(v, METADATA_VALUE_MAX)),
                );
            }
            if let Some(f) = frame {
                if let Some(name) = f.filename.non_empty().or(f.abs_path.non_empty()) {
                    meta.insert("filename".into(), Value::from(name));
                }
                if let Some(func) = f.function.non_empty() {
                    meta.insert("function".into(), Value::from(func));
                }
            }
            ("error", title, Value::Object(meta))
        }
        None => {
            let title = log_text
                .and_then(first_line)
                .map(|l| ellipsize(l, TITLE_MAX))
                .unwrap_or_else(|| "<unlabeled event>".to_owned());
            let mut meta = Map::new();
            meta.insert("title".into(), Value::from(title.as_str()));
            ("default", title, Value::Object(meta))
        }
    };

    let culprit = if let Some(t) = event.transaction.non_empty() {
        t.to_owned()
    } else if let Some(c) = frame.and_then(|f| {
        let loc = f.module.non_empty().or(f.filename.non_empty());
        match (loc, f.function.non_empty()) {
            (Some(loc), Some(func)) => Some(format!("{loc} in {func}")),
            (Some(only), None) | (None, Some(only)) => Some(only.to_owned()),
            (None, None) => None,
        }
    }) {
        c
    } else {
        event
            .request
            .as_ref()
            .and_then(|r| r.url.non_empty())
            .unwrap_or("")
            .to_owned()
    };
    let culprit = match truncate_chars(&culprit, CULPRIT_MAX) {
        short if short.len() < culprit.len() => short.to_owned(),
        _ => culprit,
    };

    let owned = |s: Option<&str>| s.map(str::to_owned);
    let release = owned(event.release.non_empty());
    let environment = owned(event.environment.non_empty());

    Summary {
        event_type,
        title,
        culprit,
        level: event.level,
        platform: event.platform.non_empty().unwrap_or("other").to_owned(),
        transaction: owned(event.transaction.non_empty()),
        message: log_text.or(main_value).unwrap_or("").to_owned(),
        timestamp: event.timestamp.0.unwrap_or(received),
        tags: tags(event, release.as_deref(), environment.as_deref()),
        user_key: user_key(event),
        metadata,
        release,
        environment,
    }
}

fn is_synthetic(exc: &Exception<'_>) -> bool {
    exc.mechanism
        .as_ref()
        .and_then(|m| m.synthetic.0)
        .unwrap_or(false)
}

/// Title of an error event: `"{type}: {first line of value}"`, or just the type.
///
/// A synthetic exception (the Node SDK's `captureMessage`) has a meaningless type, and an
/// exception may lack one: then the message or value is the title, else the crash frame's
/// function, else `<unknown>` (Sentry shows `<unknown>` even when a value exists; the value is more
/// useful).
fn error_title(exc: &Exception<'_>, log_text: Option<&str>, function: Option<&str>) -> String {
    let value_line = exc.value.non_empty().and_then(first_line);
    match exc.ty.non_empty().filter(|_| !is_synthetic(exc)) {
        Some(ty) => match value_line {
            Some(line) => format!("{ty}: {}", ellipsize(line, TITLE_MAX)),
            None => ty.to_owned(),
        },
        None => {
            let text = if is_synthetic(exc) {
                log_text.and_then(first_line).or(value_line)
            } else {
                value_line
            };
            text.or(function)
                .map(|t| ellipsize(t, TITLE_MAX))
                .unwrap_or_else(|| "<unknown>".to_owned())
        }
    }
}

/// The first line that is not blank, trimmed.
fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

/// At most `max` chars of `s`, cut on a char boundary.
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// `s` limited to `max` chars, the last three replaced by `...` when cut.
fn ellipsize(s: &str, max: usize) -> String {
    if s.char_indices().nth(max).is_none() {
        return s.to_owned();
    }
    let mut out = truncate_chars(s, max.saturating_sub(3)).to_owned();
    out.push_str("...");
    out
}

/// Event tags (first occurrence of a key wins, empty keys or values dropped), then the
/// attributes Sentry shows as tags. An event tag named like one of those is replaced by the
/// attribute, as Sentry does.
fn tags(
    event: &Event<'_>,
    release: Option<&str>,
    environment: Option<&str>,
) -> Vec<(String, String)> {
    let derived = [
        ("level", Some(event.level.as_str())),
        ("environment", environment),
        ("release", release),
    ];
    let mut out: Vec<(String, String)> = Vec::with_capacity(event.tags.0.len() + derived.len());
    for (k, v) in &event.tags.0 {
        let (k, v) = (
            truncate_chars(k.trim(), TAG_MAX),
            truncate_chars(v, TAG_MAX),
        );
        if k.is_empty() || v.is_empty() {
            continue;
        }
        let overridden = derived
            .iter()
            .any(|(name, val)| *name == k && val.is_some());
        if overridden || out.iter().any(|(seen, _)| seen == k) {
            continue;
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    for (name, val) in derived {
        if let Some(v) = val {
            out.push((name.to_owned(), truncate_chars(v, TAG_MAX).to_owned()));
        }
    }
    out
}

fn user_key(event: &Event<'_>) -> Option<String> {
    let user = event.user.as_ref()?;
    let ip = user.ip_address.non_empty().filter(|ip| {
        // `{{auto}}` asks the server to use the client's address, which is not known here.
        !ip.trim_start_matches("{{")
            .trim_end_matches("}}")
            .trim()
            .eq_ignore_ascii_case("auto")
    });
    [
        ("id", user.id.non_empty()),
        ("email", user.email.non_empty()),
        ("username", user.username.non_empty()),
        ("ip", ip),
    ]
    .into_iter()
    .find_map(|(kind, v)| v.map(|v| format!("{kind}:{v}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::parse;
    use serde_json::json;

    fn sum(event: &Value) -> Summary {
        let bytes = serde_json::to_vec(event).unwrap();
        summarize(&parse(&bytes).unwrap(), 1234.5)
    }

    fn frames() -> Value {
        json!({"frames": [
            {"module": "app.main", "filename": "app/main.py", "function": "main", "in_app": true},
            {"module": "app.views", "filename": "app/views.py", "function": "index", "in_app": true},
            {"module": "lib.x", "filename": "lib/x.py", "function": "helper", "in_app": false}]})
    }

    #[test]
    fn titles() {
        let long = "x".repeat(150);
        let long_title = format!("E: {}...", "x".repeat(97));
        let wide = "é".repeat(150);
        let wide_title = format!("{}...", "é".repeat(97));
        let rows: Vec<(&str, Value, &str)> = vec![
            (
                "type: value",
                json!({"exception": [{"type": "ValueError", "value": "bad 42"}]}),
                "ValueError: bad 42",
            ),
            (
                "type only",
                json!({"exception": [{"type": "ValueError"}]}),
                "ValueError",
            ),
            (
                "type with empty value",
                json!({"exception": [{"type": "ValueError", "value": ""}]}),
                "ValueError",
            ),
            (
                "first line of value",
                json!({"exception": [{"type": "E", "value": "line one\nline two"}]}),
                "E: line one",
            ),
            (
                "value truncated to 100 chars",
                json!({"exception": [{"type": "E", "value": long}]}),
                &long_title,
            ),
            (
                "main exception is the last",
                json!({"exception": [{"type": "Inner", "value": "i"}, {"type": "Outer", "value": "o"}]}),
                "Outer: o",
            ),
            (
                "synthetic: message instead of type",
                json!({"message": "captured msg", "exception": [{"type": "Error", "value": "v", "mechanism": {"type": "generic", "synthetic": true}}]}),
                "captured msg",
            ),
            (
                "synthetic without message: value",
                json!({"exception": [{"value": "the value", "mechanism": {"synthetic": true}}]}),
                "the value",
            ),
            (
                "no type: value",
                json!({"exception": [{"value": "only value"}]}),
                "only value",
            ),
            (
                "no type nor value: function",
                json!({"exception": [{"stacktrace": frames()}]}),
                "index",
            ),
            (
                "nothing at all",
                json!({"exception": [{"module": "m"}]}),
                "<unknown>",
            ),
            (
                "default event: message",
                json!({"message": "hello\nworld"}),
                "hello",
            ),
            (
                "default event: formatted over template",
                json!({"logentry": {"message": "user %s", "formatted": "user bob"}}),
                "user bob",
            ),
            (
                "default event: template",
                json!({"logentry": {"message": "user %s"}}),
                "user %s",
            ),
            (
                "default event: leading blank line",
                json!({"message": "\n  hi  \n"}),
                "hi",
            ),
            (
                "default event: char-safe truncation",
                json!({"message": wide}),
                &wide_title,
            ),
            ("unlabeled", json!({}), "<unlabeled event>"),
            (
                "unlabeled blank message",
                json!({"message": "  "}),
                "<unlabeled event>",
            ),
        ];
        for (name, event, expected) in rows {
            assert_eq!(sum(&event).title, expected, "{name}");
        }
    }

    #[test]
    fn culprits() {
        let rows: Vec<(&str, Value, &str)> = vec![
            (
                "transaction wins",
                json!({"transaction": "/api/x", "exception": [{"type": "E", "stacktrace": frames()}]}),
                "/api/x",
            ),
            (
                "crash frame module in function",
                json!({"exception": [{"type": "E", "stacktrace": frames()}]}),
                "app.views in index",
            ),
            (
                "filename when no module",
                json!({"stacktrace": {"frames": [{"filename": "main.rs", "function": "app::f"}]}}),
                "main.rs in app::f",
            ),
            (
                "function alone",
                json!({"stacktrace": {"frames": [{"function": "f"}]}}),
                "f",
            ),
            (
                "request url",
                json!({"request": {"url": "https://x/y"}, "message": "m"}),
                "https://x/y",
            ),
            ("nothing", json!({"message": "m"}), ""),
        ];
        for (name, event, expected) in rows {
            assert_eq!(sum(&event).culprit, expected, "{name}");
        }
        let long = sum(&json!({"transaction": "t".repeat(300)}));
        assert_eq!(long.culprit.chars().count(), 200);
    }

    #[test]
    fn scalar_fields() {
        let s = sum(
            &json!({"platform": "python", "level": "warning", "release": "app@1", "environment": "prod",
            "transaction": "tx", "timestamp": 1000.5, "message": "m"}),
        );
        assert_eq!(s.event_type, "default");
        assert_eq!(s.level, Level::Warning);
        assert_eq!(s.platform, "python");
        assert_eq!(s.release.as_deref(), Some("app@1"));
        assert_eq!(s.environment.as_deref(), Some("prod"));
        assert_eq!(s.transaction.as_deref(), Some("tx"));
        assert_eq!(s.timestamp, 1000.5);
        assert_eq!(s.message, "m");

        let d = sum(
            &json!({"exception": [{"type": "E", "value": "v"}], "release": "", "platform": ""}),
        );
        assert_eq!(d.event_type, "error");
        assert_eq!(d.level, Level::Error);
        assert_eq!(d.platform, "other");
        assert_eq!(d.release, None);
        assert_eq!(d.environment, None);
        assert_eq!(d.transaction, None);
        assert_eq!(
            d.timestamp, 1234.5,
            "received stands in for a missing timestamp"
        );
        assert_eq!(
            d.message, "v",
            "the main exception's value when there is no log entry"
        );
        assert_eq!(sum(&json!({})).message, "");
        assert_eq!(
            sum(&json!({"message": "log", "exception": [{"value": "v"}]})).message,
            "log"
        );
    }

    #[test]
    fn tags_as_sentry_shows_them() {
        let long_key = "k".repeat(250);
        let s = sum(
            &json!({"tags": [["a", "1"], ["", "x"], ["b", ""], ["a", "dup"], ["level", "bogus"],
            ["release", "tagged"], [long_key, "v".repeat(250)], ["n", 5]],
            "level": "fatal", "environment": "prod"}),
        );
        let want: Vec<(String, String)> = vec![
            ("a".into(), "1".into()),
            ("release".into(), "tagged".into()), // no release attribute: the tag stays
            ("k".repeat(200), "v".repeat(200)),
            ("n".into(), "5".into()),
            ("level".into(), "fatal".into()),
            ("environment".into(), "prod".into()),
        ];
        assert_eq!(s.tags, want);
        let r = sum(&json!({"tags": {"release": "tagged"}, "release": "app@2"}));
        assert_eq!(
            r.tags,
            vec![
                ("level".into(), "error".into()),
                ("release".into(), "app@2".into())
            ]
        );
    }

    #[test]
    fn user_keys() {
        let rows: Vec<(Value, Option<&str>)> = vec![
            (
                json!({"user": {"id": "42", "email": "e@x", "username": "u", "ip_address": "1.2.3.4"}}),
                Some("id:42"),
            ),
            (json!({"user": {"id": 42}}), Some("id:42")),
            (
                json!({"user": {"email": "e@x", "username": "u"}}),
                Some("email:e@x"),
            ),
            (
                json!({"user": {"username": "u", "ip_address": "1.2.3.4"}}),
                Some("username:u"),
            ),
            (
                json!({"user": {"ip_address": "1.2.3.4"}}),
                Some("ip:1.2.3.4"),
            ),
            (json!({"user": {"ip_address": "{{auto}}"}}), None),
            (json!({"user": {"ip_address": "{{ auto }}"}}), None),
            (json!({"user": {"id": ""}}), None),
            (json!({"user": "nope"}), None),
            (json!({}), None),
        ];
        for (event, expected) in rows {
            assert_eq!(sum(&event).user_key.as_deref(), expected, "{event}");
        }
    }

    #[test]
    fn metadata() {
        let rows: Vec<(&str, Value, Value)> = vec![
            (
                "error with crash frame",
                json!({"exception": [{"type": "E", "value": "v", "stacktrace": frames()}]}),
                json!({"type": "E", "value": "v", "filename": "app/views.py", "function": "index"}),
            ),
            (
                "absent keys omitted",
                json!({"exception": [{"type": "E"}]}),
                json!({"type": "E"}),
            ),
            (
                "abs_path when no filename",
                json!({"exception": [{"value": "v", "stacktrace": {"frames": [{"abs_path": "/a/b.py"}]}}]}),
                json!({"value": "v", "filename": "/a/b.py"}),
            ),
            (
                "synthetic type omitted",
                json!({"exception": [{"type": "Error", "value": "v", "mechanism": {"synthetic": true}}]}),
                json!({"value": "v"}),
            ),
            (
                "default event",
                json!({"message": "hello"}),
                json!({"title": "hello"}),
            ),
            (
                "unlabeled",
                json!({}),
                json!({"title": "<unlabeled event>"}),
            ),
        ];
        for (name, event, expected) in rows {
            assert_eq!(sum(&event).metadata, expected, "{name}");
        }
        let long = sum(&json!({"exception": [{"type": "E", "value": "é".repeat(2000)}]}));
        assert_eq!(
            long.metadata["value"].as_str().unwrap().chars().count(),
            1024
        );
    }

    #[test]
    fn truncation_helpers() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hé", 5), "hé");
        assert_eq!(truncate_chars("", 0), "");
        assert_eq!(ellipsize("abcdef", 5), "ab...");
        assert_eq!(ellipsize("abcde", 5), "abcde");
        assert_eq!(ellipsize("abcdef", 2), "...");
    }

    // --- Real payloads ----------------------------------------------------------------------

    fn envelope_event(body: &[u8]) -> &[u8] {
        body.split(|b| *b == b'\n').nth(2).expect("an event line")
    }

    macro_rules! capture {
        ($path:literal) => {
            envelope_event(include_bytes!(concat!(
                "../fixtures/sdk-captures/",
                $path,
                "/body.decoded"
            )))
        };
    }

    #[test]
    fn captured_events() {
        let rows: Vec<(&str, &[u8], &str, &str, Level)> = vec![
            (
                "python chained",
                capture!("python-brotli-2.75.0/chained/0001-POST-api-42-envelope-event"),
                "RuntimeError: outer error while handling lookup",
                "__main__ in chained",
                Level::Error,
            ),
            (
                "python exception",
                capture!("python-nobrotli-2.75.0/exception/0001-POST-api-42-envelope-event"),
                "ValueError: something went wrong in level 2",
                "__main__ in raise_value_error",
                Level::Error,
            ),
            (
                "python message",
                capture!("python-brotli-2.75.0/message/0001-POST-api-42-envelope-event"),
                "harness warning message",
                "",
                Level::Warning,
            ),
            (
                "rust chained",
                capture!("rust-0.49.5/chained/0001-POST-api-42-envelope-event"),
                "OuterError: outer error while handling lookup",
                "",
                Level::Error,
            ),
            (
                "rust panic",
                capture!("rust-0.49.5/exception/0001-POST-api-42-envelope-event"),
                "panic: something went wrong in level 3 (key \"missing\")",
                "main.rs in sentry_rust_client::level3",
                Level::Fatal,
            ),
            (
                "rust message",
                capture!("rust-0.49.5/message/0001-POST-api-42-envelope-event"),
                "harness warning message",
                "",
                Level::Warning,
            ),
        ];
        for (name, bytes, title, culprit, level) in rows {
            let s = summarize(&parse(bytes).unwrap(), 0.0);
            assert_eq!(s.title, title, "{name}");
            assert_eq!(s.culprit, culprit, "{name}");
            assert_eq!(s.level, level, "{name}");
            assert!(s.timestamp > 1.7e9, "{name}: the event's own timestamp");
        }

        let fp = summarize(
            &parse(capture!(
                "python-brotli-2.75.0/fingerprint/0001-POST-api-42-envelope-event"
            ))
            .unwrap(),
            0.0,
        );
        assert_eq!(fp.user_key.as_deref(), Some("id:42"));
        assert_eq!(fp.release.as_deref(), Some("app@1.0.0"));
        for (k, v) in [
            ("tenant", "acme"),
            ("feature", "checkout"),
            ("level", "error"),
            ("environment", "production"),
            ("release", "app@1.0.0"),
        ] {
            assert!(
                fp.tags.contains(&(k.to_owned(), v.to_owned())),
                "{k}: {:?}",
                fp.tags
            );
        }
    }

    #[test]
    fn django_fixture() {
        let event = parse(include_bytes!("../fixtures/django-keyerror-event.json")).unwrap();
        let s = summarize(&event, 0.0);
        assert_eq!(s.title, "KeyError: 'customer_id'");
        assert!(s.title.starts_with("KeyError: "));
        assert_eq!(s.event_type, "error");
        assert_eq!(s.culprit, "/api/v1/orders/");
        assert_eq!(s.platform, "python");
        assert_eq!(s.environment.as_deref(), Some("production"));
        assert_eq!(s.user_key.as_deref(), Some("id:48211"));
        assert_eq!(s.metadata["function"], "resolve_customer");
        assert_eq!(s.metadata["filename"], "billing/profiles.py");
        assert!(s
            .tags
            .contains(&("customer_tier".to_owned(), "pro".to_owned())));
    }
}
