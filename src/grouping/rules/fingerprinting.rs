//! Fingerprinting rules (`fingerprintingRules`): `matchers -> fingerprint [title="..."]`.
//!
//! The first rule whose matchers all hold gives the event's fingerprint, as Sentry does. Its
//! matchers fall into groups by what they look at (the message, one exception, one frame, the
//! tags, ...); all matchers of one group must hold for the *same* item (one frame, one
//! exception), while different groups are independent. `!` negates one matcher for that item, so
//! `!function:foo` holds when some frame's function is not `foo`; a group with no items (no
//! frames, no exceptions) never holds, negated or not.

use super::glob::{Glob, Mode};
use super::{families_admit, family_of, for_each_rule, parse_bool, parse_families, Cursor};
use crate::protocol::event::{Event, Exception, Frame};

/// A project's fingerprinting rules, in order.
#[derive(Debug, Clone, Default)]
pub struct FingerprintRules {
    rules: Vec<Rule>,
}

/// The rule that decided an event's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FingerprintMatch<'r> {
    /// The fingerprint entries as written; `{{ ... }}` variables are left for the caller.
    pub entries: &'r [String],
    /// The `title="..."` attribute, as written.
    pub title: Option<&'r str>,
    /// The rule's source line, for grouping hints.
    pub rule: &'r str,
}

#[derive(Debug, Clone)]
struct Rule {
    text: String,
    /// Matchers by group, each group once, in the order first written.
    groups: Vec<(Group, Vec<Matcher>)>,
    entries: Vec<String>,
    title: Option<String>,
}

/// What a matcher looks at; the matchers of one group are tested on one item together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// The message and every exception's value (`message` looks at both, as Sentry does).
    TopLevel,
    /// `logger` and `level`.
    LogInfo,
    /// Each exception: `error.type`, `error.value`.
    Exceptions,
    Tags,
    Sdk,
    Family,
    Release,
    /// Each frame of every stack trace of the event.
    Frames,
}

#[derive(Debug, Clone)]
struct Matcher {
    negated: bool,
    field: Field,
}

#[derive(Debug, Clone)]
enum Field {
    Message(Glob),
    Logger(Glob),
    Level(Glob),
    Type(Glob),
    Value(Glob),
    Tag(String, Glob),
    /// `sdk:` names, comma-separated globs; `all` admits any SDK, even none.
    Sdk {
        all: bool,
        names: Vec<Glob>,
    },
    Family(Vec<String>),
    Release(Glob),
    /// `path:` tests the frame's `abs_path` and its `filename`.
    Path(Glob),
    Module(Glob),
    Function(Glob),
    Package(Glob),
    App(bool),
}

impl Field {
    fn group(&self) -> Group {
        match self {
            Field::Message(_) => Group::TopLevel,
            Field::Logger(_) | Field::Level(_) => Group::LogInfo,
            Field::Type(_) | Field::Value(_) => Group::Exceptions,
            Field::Tag(..) => Group::Tags,
            Field::Sdk { .. } => Group::Sdk,
            Field::Family(_) => Group::Family,
            Field::Release(_) => Group::Release,
            Field::Path(_)
            | Field::Module(_)
            | Field::Function(_)
            | Field::Package(_)
            | Field::App(_) => Group::Frames,
        }
    }

    /// Reads `name:value`; the case rules are Sentry's (messages, values and levels ignore
    /// case; types, functions, modules, loggers and tags do not; paths are paths).
    fn parse(name: &str, value: &str) -> Result<Field, String> {
        let text = |ignore_case| Glob::new(value, Mode::Text { ignore_case });
        let path = || Glob::new(value, Mode::Path);
        Ok(match name {
            "message" => Field::Message(text(true)?),
            "logger" => Field::Logger(text(false)?),
            "level" => Field::Level(text(true)?),
            "error.type" | "type" => Field::Type(text(false)?),
            "error.value" | "value" => Field::Value(text(true)?),
            "sdk" => Field::Sdk {
                all: value.split(',').any(|s| s.trim() == "all"),
                names: value
                    .split(',')
                    .map(|s| Glob::new(s.trim(), Mode::Text { ignore_case: false }))
                    .collect::<Result<_, _>>()?,
            },
            "family" => Field::Family(parse_families(value)?),
            "release" => Field::Release(path()?),
            "stack.abs_path" | "path" => Field::Path(path()?),
            "stack.module" | "module" => Field::Module(text(false)?),
            "stack.function" | "function" => Field::Function(text(false)?),
            "stack.package" | "package" => Field::Package(path()?),
            "app" => Field::App(parse_bool(value)?),
            _ => match name.strip_prefix("tags.") {
                Some(tag) if !tag.is_empty() => Field::Tag(tag.to_owned(), text(false)?),
                _ if name.starts_with("thread.") => {
                    return Err(format!("the matcher \"{name}\" is not supported"))
                }
                _ => return Err(format!("unknown matcher \"{name}\"")),
            },
        })
    }
}

/// One item a group's matchers are tested on.
#[derive(Clone, Copy)]
enum Item<'e, 'a> {
    Event,
    Message(&'e str),
    Exception(&'e Exception<'a>),
    Frame(&'e Frame<'a>),
}

impl Matcher {
    fn matches(&self, item: Item<'_, '_>, event: &Event<'_>) -> bool {
        self.positive(item, event) != self.negated
    }

    fn positive(&self, item: Item<'_, '_>, event: &Event<'_>) -> bool {
        let opt = |glob: &Glob, value: Option<&str>| value.is_some_and(|v| glob.is_match(v));
        match (&self.field, item) {
            (Field::Message(g), Item::Message(m)) => g.is_match(m),
            (Field::Message(g), Item::Exception(e)) => opt(g, exception_value(e)),
            (Field::Logger(g), _) => opt(g, event.logger.non_empty()),
            (Field::Level(g), _) => g.is_match(event.level.as_str()),
            (Field::Type(g), Item::Exception(e)) => opt(g, e.ty.non_empty()),
            (Field::Value(g), Item::Exception(e)) => opt(g, exception_value(e)),
            (Field::Tag(name, g), _) => opt(g, event.tags.get(name)),
            (Field::Sdk { all, names }, _) => {
                let name = event.sdk.as_ref().and_then(|s| s.name.non_empty());
                *all || name.is_some_and(|n| names.iter().any(|g| g.is_match(n)))
            }
            (Field::Family(families), _) => {
                families_admit(families, family_of(event.platform.as_deref().unwrap_or("")))
            }
            (Field::Release(g), _) => opt(g, event.release.non_empty().map(str::trim)),
            (Field::Path(g), Item::Frame(f)) => {
                let abs_path = f.abs_path.non_empty().or(f.filename.non_empty());
                opt(g, abs_path) || opt(g, f.filename.non_empty())
            }
            (Field::Module(g), Item::Frame(f)) => opt(g, f.module.non_empty()),
            (Field::Function(g), Item::Frame(f)) => g.is_match(function_of(f)),
            (Field::Package(g), Item::Frame(f)) => opt(g, f.package.non_empty()),
            // An absent `in_app` counts as false, as in the grouping core.
            (Field::App(want), Item::Frame(f)) => f.in_app.0.unwrap_or(false) == *want,
            // Groups only hand their own items to their matchers.
            _ => false,
        }
    }
}

fn exception_value<'e>(e: &'e Exception<'_>) -> Option<&'e str> {
    e.value.non_empty().map(str::trim).filter(|v| !v.is_empty())
}

/// The frame's function as Sentry's matchers see it: `<unknown>` when it has none.
fn function_of<'e>(f: &'e Frame<'_>) -> &'e str {
    f.function
        .non_empty()
        .or(f.raw_function.non_empty())
        .unwrap_or("<unknown>")
}

/// The items of each group for one event, gathered once per `matching` call.
struct Items<'e, 'a> {
    top_level: Vec<Item<'e, 'a>>,
    exceptions: Vec<Item<'e, 'a>>,
    frames: Vec<Item<'e, 'a>>,
}

impl<'e, 'a> Items<'e, 'a> {
    fn of(event: &'e Event<'a>) -> Self {
        let exceptions: Vec<_> = event.exception.0.iter().map(Item::Exception).collect();
        let message = event
            .log_entry()
            .text()
            .map(str::trim)
            .filter(|m| !m.is_empty());
        let top_level = message
            .map(Item::Message)
            .into_iter()
            .chain(exceptions.iter().copied())
            .collect();
        let stacks = event
            .exception
            .0
            .iter()
            .filter_map(|e| e.stacktrace.as_ref())
            .chain(event.stacktrace.as_ref())
            .chain(event.threads.0.iter().filter_map(|t| t.stacktrace.as_ref()));
        let frames = stacks
            .flat_map(|s| s.frames.0.iter().map(Item::Frame))
            .collect();
        Items {
            top_level,
            exceptions,
            frames,
        }
    }

    fn of_group(&self, group: Group) -> &[Item<'e, 'a>] {
        const EVENT: &[Item<'static, 'static>] = &[Item::Event];
        match group {
            Group::TopLevel => &self.top_level,
            Group::Exceptions => &self.exceptions,
            Group::Frames => &self.frames,
            Group::LogInfo | Group::Tags | Group::Sdk | Group::Family | Group::Release => EVENT,
        }
    }
}

impl Rule {
    fn matches(&self, items: &Items<'_, '_>, event: &Event<'_>) -> bool {
        self.groups.iter().all(|(group, matchers)| {
            items
                .of_group(*group)
                .iter()
                .any(|&item| matchers.iter().all(|m| m.matches(item, event)))
        })
    }

    fn parse(text: &str) -> Result<Rule, String> {
        let mut cursor = Cursor::new(text);
        let mut groups: Vec<(Group, Vec<Matcher>)> = Vec::new();
        loop {
            cursor.skip_spaces();
            if cursor.at_end() {
                return Err("missing \"->\" between the matchers and the fingerprint".into());
            }
            if cursor.eat("->") {
                break;
            }
            if cursor.peek() == Some('[') || cursor.peek() == Some('|') {
                return Err("caller and callee matchers (`[ ... ] |`) are not supported".into());
            }
            let raw = cursor.matcher(false)?;
            let field = Field::parse(&raw.name, &raw.value)?;
            let group = field.group();
            let matcher = Matcher {
                negated: raw.negated,
                field,
            };
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, list)) => list.push(matcher),
                None => groups.push((group, vec![matcher])),
            }
        }
        if groups.is_empty() {
            return Err("a rule needs at least one matcher before \"->\"".into());
        }
        let (entries, title) = fingerprint(&mut cursor)?;
        Ok(Rule {
            text: text.to_owned(),
            groups,
            entries,
            title,
        })
    }
}

/// The right side: entries separated by commas or spaces (bare words, `"quoted"` strings,
/// `{{ variables }}`) and an optional `title="..."`.
fn fingerprint(cursor: &mut Cursor<'_>) -> Result<(Vec<String>, Option<String>), String> {
    let mut entries = Vec::new();
    let mut title = None;
    loop {
        cursor.skip_spaces();
        if cursor.at_end() {
            break;
        }
        if cursor.eat(",") {
            continue;
        }
        if cursor.rest().starts_with("{{") {
            entries.push(variable(cursor)?);
            continue;
        }
        if cursor.peek() == Some('"') {
            entries.push(cursor.quoted()?);
            continue;
        }
        let word = cursor.take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '{'));
        if word.is_empty() {
            // A `{` that does not open a `{{ variable }}`.
            return Err(format!(
                "unexpected {} in the fingerprint",
                super::shorten(cursor.next_word())
            ));
        }
        // `name="..."` is an attribute; any other word with `=` is a plain entry (Sentry's).
        if let Some((name, after)) = word.split_once('=') {
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if is_name && after.starts_with('"') {
                if name != "title" {
                    return Err(format!(
                        "unknown attribute \"{name}\" (only title=\"...\" is supported)"
                    ));
                }
                cursor.pos -= after.len();
                if title.replace(cursor.quoted()?).is_some() {
                    return Err("the title is given twice".into());
                }
                continue;
            }
            if name == "title" {
                return Err("the title must be quoted: title=\"...\"".into());
            }
        }
        entries.push(word.to_owned());
    }
    if entries.is_empty() {
        return Err("empty fingerprint after \"->\"".into());
    }
    Ok((entries, title))
}

/// A `{{ name }}` entry, kept as written except that every spelling of `{{ default }}` becomes
/// exactly that, so the caller can recognize it by comparison.
fn variable(cursor: &mut Cursor<'_>) -> Result<String, String> {
    let rest = cursor.rest();
    let Some(end) = rest.find("}}") else {
        return Err(format!(
            "unterminated variable {}",
            super::shorten(cursor.next_word())
        ));
    };
    let written = &rest[..end + 2];
    let name = written[2..end].trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("invalid variable {}", super::shorten(written)));
    }
    cursor.pos += written.len();
    Ok(if name == "default" {
        "{{ default }}".to_owned()
    } else {
        written.to_owned()
    })
}

impl FingerprintRules {
    pub fn parse(text: &str) -> Result<Self, super::RuleError> {
        let mut rules = Vec::new();
        for_each_rule(text, |_, line| {
            rules.push(Rule::parse(line)?);
            Ok(())
        })?;
        Ok(FingerprintRules { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule that matches `event`: its fingerprint entries as written (variables such
    /// as `{{ default }}` or `{{ tags.x }}` left unresolved; the caller resolves them) and its
    /// optional `title` attribute.
    pub fn matching(&self, event: &Event<'_>) -> Option<FingerprintMatch<'_>> {
        if self.rules.is_empty() {
            return None;
        }
        let items = Items::of(event);
        self.rules
            .iter()
            .find(|rule| rule.matches(&items, event))
            .map(|rule| FingerprintMatch {
                entries: &rule.entries,
                title: rule.title.as_deref(),
                rule: &rule.text,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::parse;
    use serde_json::{json, Value};

    fn rules(text: &str) -> FingerprintRules {
        FingerprintRules::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The entries of the first matching rule, or `None`.
    fn fingerprint_of(rules_text: &str, event: &Value) -> Option<Vec<String>> {
        let bytes = serde_json::to_vec(event).unwrap();
        let event = parse(&bytes).unwrap();
        rules(rules_text)
            .matching(&event)
            .map(|m| m.entries.to_vec())
    }

    #[test]
    fn parses_each_form() {
        let text = r#"
# a comment, then a blank line

error.type:DatabaseUnavailable -> system-down
message:"*timeout*" -> timeouts
family:native function:malloc -> memory-allocation-error
logger:"my.package.*" level:error -> {{ logger }}, {{ message }}
  !tags.server:"web 1" -> "two words", {{default}} title="Server \"trouble\""
"#;
        let r = rules(text);
        assert_eq!(r.rules.len(), 5);
        let entries: Vec<_> = r.rules.iter().map(|r| r.entries.clone()).collect();
        assert_eq!(
            entries,
            vec![
                vec!["system-down".to_owned()],
                vec!["timeouts".into()],
                vec!["memory-allocation-error".into()],
                vec!["{{ logger }}".into(), "{{ message }}".into()],
                vec!["two words".into(), "{{ default }}".into()],
            ]
        );
        let last = &r.rules[4];
        assert_eq!(last.title.as_deref(), Some(r#"Server "trouble""#));
        assert_eq!(
            last.text,
            r#"!tags.server:"web 1" -> "two words", {{default}} title="Server \"trouble\"""#
        );
        assert!(last.groups[0].1[0].negated);
        // Matchers of one kind share a group; other kinds get their own.
        let third = &r.rules[2];
        let groups: Vec<_> = third.groups.iter().map(|(g, m)| (*g, m.len())).collect();
        assert_eq!(groups, vec![(Group::Family, 1), (Group::Frames, 1)]);
        let fourth = &r.rules[3];
        assert_eq!(fourth.groups.len(), 1, "logger and level are one group");
        assert!(FingerprintRules::parse("").unwrap().is_empty());
        assert!(FingerprintRules::parse("# only\n\n").unwrap().is_empty());
        assert!(!r.is_empty());
    }

    #[test]
    fn documented_examples_parse() {
        let text = r#"
error.type:DatabaseUnavailable -> system-down
error.type:ConnectionError -> connection-error
error.value:"connection refused" -> connection-refused
message:"database unavailable" -> database-unavailable
logger:"com.myapp.mypackage.*" level:"error" -> {{ logger }}-{{ level }}
family:native !stack.module:"myproject::*" -> native-crash
sdk:sentry.cocoa function:"-[SentryClient crash]" -> crash-test
tags.server_name:"canary-*.mycompany.internal" -> canary-environment-error title="Error on canary"
stack.function:"ApiHandler::*" type:ExceptionWrapper -> {{ error.type }}, {{ stack.function }}
release:"backend@1.*" app:yes path:"**/billing/*.py" -> billing
"#;
        let r = rules(text);
        assert_eq!(r.rules.len(), 10);
        assert_eq!(r.rules[4].entries, ["{{ logger }}", "-", "{{ level }}"]);
        assert_eq!(r.rules[7].title.as_deref(), Some("Error on canary"));
    }

    #[test]
    fn right_side_forms() {
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("a:b -> x", &["x"], None),
            ("a:b -> x,y , z", &["x", "y", "z"], None),
            ("a:b -> x y", &["x", "y"], None),
            ("a:b -> {{ tags.server }}", &["{{ tags.server }}"], None),
            ("a:b -> {{tags.server}}", &["{{tags.server}}"], None),
            ("a:b -> {{ default }} x", &["{{ default }}", "x"], None),
            ("a:b -> {{  default}}", &["{{ default }}"], None),
            ("a:b -> pre{{ type }}", &["pre", "{{ type }}"], None),
            ("a:b -> \"a, b\"", &["a, b"], None),
            ("a:b -> k=v, =", &["k=v", "="], None),
            (
                "a:b -> x title=\"T {{ type }}\"",
                &["x"],
                Some("T {{ type }}"),
            ),
            ("a:b -> title=\"T\" x", &["x"], Some("T")),
        ];
        for &(text, entries, title) in cases {
            let text = text.replace("a:b", "message:m");
            let r = rules(&text);
            assert_eq!(r.rules[0].entries, entries, "{text}");
            assert_eq!(r.rules[0].title.as_deref(), title, "{text}");
        }
    }

    #[test]
    fn errors_name_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("foo:bar -> x", 1, "unknown matcher \"foo\""),
            ("# c\nmessage:x system-down", 2, "expected a matcher"),
            ("\n\nmessage:x", 3, "missing \"->\""),
            ("message:x ->", 1, "empty fingerprint"),
            ("message:x -> title=\"t\"", 1, "empty fingerprint"),
            ("-> x", 1, "at least one matcher"),
            ("message:\"open -> x", 1, "unterminated quote"),
            ("message:x -> \"open", 1, "unterminated quote"),
            ("message:x -> {{ default", 1, "unterminated variable"),
            ("message:x -> {{ a b }}", 1, "invalid variable"),
            ("message:x -> {{ }}", 1, "invalid variable"),
            (
                "message:x -> a color=\"red\"",
                1,
                "unknown attribute \"color\"",
            ),
            ("message:x -> a title=red", 1, "title must be quoted"),
            ("message:x -> a title=\"1\" title=\"2\"", 1, "given twice"),
            ("message:x -> a {b}", 1, "unexpected \"{b}\""),
            ("message: -> x", 1, "has no value"),
            ("ok:x -> y\nmessage:\"[a\" -> x", 1, "unknown matcher"),
            ("message:y -> y\nmessage:\"[a\" -> x", 2, "is not closed"),
            ("app:maybe -> x", 1, "not a boolean"),
            ("family:rust -> x", 1, "unknown family"),
            ("tags.:x -> y", 1, "unknown matcher \"tags.\""),
            ("thread.crashed:yes -> y", 1, "not supported"),
            ("[ function:a ] | function:b -> y", 1, "not supported"),
        ];
        for &(text, line, reason) in cases {
            let err = FingerprintRules::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text}: {err}");
            assert!(err.message.contains(reason), "{text}: {err}");
        }
    }

    fn exception_event(ty: &str, value: &str, frames: Value) -> Value {
        json!({"platform": "python", "exception": {"values": [
            {"type": ty, "value": value, "stacktrace": {"frames": frames}}]}})
    }

    #[test]
    fn each_matcher_matches() {
        let frames = json!([
            {"function": "main", "abs_path": "/app/src/main.py", "filename": "src/main.py",
             "module": "app.main", "in_app": true},
            {"function": "connect", "abs_path": "C:\\Lib\\socket.py", "module": "socket",
             "package": "/usr/lib/libpython3.so", "in_app": false},
        ]);
        let mut event = exception_event("DatabaseUnavailable", " Connection TIMEOUT ", frames);
        event["logger"] = json!("my.package.db");
        event["level"] = json!("warning");
        event["tags"] = json!({"server": "web-1", "region": "eu"});
        event["sdk"] = json!({"name": "sentry.python", "version": "2.0"});
        event["release"] = json!("backend@1.2.3");
        let cases: &[(&str, bool)] = &[
            ("error.type:DatabaseUnavailable", true),
            ("type:Database*", true),
            ("type:databaseunavailable", false),
            ("error.value:\"connection timeout\"", true),
            ("value:*refused*", false),
            ("message:*timeout*", true),
            ("logger:my.package.*", true),
            ("logger:My.package.*", false),
            ("level:WARNING", true),
            ("level:error", false),
            ("tags.server:web-?", true),
            ("tags.region:us", false),
            ("tags.missing:*", false),
            ("!tags.missing:*", true),
            ("sdk:sentry.python", true),
            ("sdk:sentry.javascript.*,sentry.python", true),
            ("sdk:sentry.java", false),
            ("sdk:all", true),
            ("family:other", true),
            ("family:native,javascript", false),
            ("release:backend@1.*", true),
            ("release:frontend@*", false),
            ("path:**/src/*.py", true),
            // `path` tests the filename too, as Sentry does.
            ("stack.abs_path:src/main.py", true),
            ("path:main.py", false),
            ("path:c:/lib/*.py", true),
            ("module:app.*", true),
            ("stack.module:App.*", false),
            ("function:connect", true),
            ("stack.function:conn", false),
            ("package:**/libpython*", true),
            ("app:yes", true),
            ("app:no", true),
            ("function:main app:no", false),
            ("function:connect app:0", true),
            ("function:main !module:socket", true),
            ("function:connect !module:socket", false),
        ];
        for &(matchers, want) in cases {
            let got = fingerprint_of(&format!("{matchers} -> hit"), &event);
            assert_eq!(got.is_some(), want, "{matchers}");
        }
    }

    #[test]
    fn message_looks_at_the_log_message_too() {
        let event = json!({"logentry": {"message": "request %s timed out", "formatted": "request 7 timed out"},
                           "logger": "http"});
        assert!(fingerprint_of("message:\"*7 timed out\" -> t", &event).is_some());
        assert!(fingerprint_of("message:\"*%s*\" -> t", &event).is_none());
        // No exception: exception groups have no item and never match, even negated.
        assert!(fingerprint_of("!error.type:Foo -> t", &event).is_none());
        assert!(fingerprint_of("!function:foo -> t", &event).is_none());
    }

    #[test]
    fn one_group_one_item() {
        // Two exceptions and two frames in different stacks: matchers of one group must hold on
        // the same exception or the same frame.
        let event = json!({"exception": {"values": [
            {"type": "KeyError", "value": "a", "stacktrace": {"frames": [{"function": "f", "module": "x"}]}},
            {"type": "ValueError", "value": "b", "stacktrace": {"frames": [{"function": "g", "module": "y"}]}}
        ]}, "threads": {"values": [{"stacktrace": {"frames": [{"function": "h", "module": "z"}]}}]}});
        let cases: &[(&str, bool)] = &[
            ("type:KeyError value:a", true),
            ("type:KeyError value:b", false),
            ("type:ValueError value:b", true),
            ("function:f module:x", true),
            ("function:f module:y", false),
            ("function:g module:y", true),
            ("function:h module:z", true),
            // Different groups are independent: any exception, any frame.
            ("type:KeyError function:g", true),
            ("!type:KeyError value:b", true),
            ("!type:KeyError value:a", false),
        ];
        for &(matchers, want) in cases {
            let got = fingerprint_of(&format!("{matchers} -> hit"), &event);
            assert_eq!(got.is_some(), want, "{matchers}");
        }
    }

    #[test]
    fn first_matching_rule_wins_and_reports_itself() {
        let text = "type:Nope -> a\ntype:E* -> b\ntype:Err -> c title=\"T\"";
        let r = rules(text);
        let bytes = serde_json::to_vec(&exception_event("Err", "v", json!([]))).unwrap();
        let event = parse(&bytes).unwrap();
        let m = r.matching(&event).unwrap();
        assert_eq!(m.entries, ["b"]);
        assert_eq!(m.title, None);
        assert_eq!(m.rule, "type:E* -> b");
        assert_eq!(rules("type:Nope -> a").matching(&event), None);
        assert_eq!(FingerprintRules::default().matching(&event), None);
    }

    #[test]
    fn family_reads_the_event_platform() {
        let native = json!({"platform": "cocoa", "exception": {"values": [{"type": "EXC_BAD_ACCESS",
            "stacktrace": {"frames": [{"function": "malloc"}, {"function": "main"}]}}]}});
        let rule = "family:native function:malloc -> memory-allocation-error";
        assert_eq!(
            fingerprint_of(rule, &native),
            Some(vec!["memory-allocation-error".to_owned()])
        );
        let mut js = native.clone();
        js["platform"] = json!("node");
        assert_eq!(fingerprint_of(rule, &js), None);
        assert!(fingerprint_of("family:javascript -> j", &js).is_some());
        assert!(fingerprint_of(
            "function:<unknown> -> u",
            &json!({"stacktrace": {"frames": [{"lineno": 1}]}})
        )
        .is_some());
    }
}
