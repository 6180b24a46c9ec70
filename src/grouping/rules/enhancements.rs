//! Stack trace rules (`groupingEnhancements`): `matchers actions`, e.g. `module:io.sentry.* -app`.
//!
//! Each rule tests every frame of a stack trace; on a frame where all its matchers hold, its
//! actions set that frame's in-app flag (`+app`/`-app`) or whether it counts for grouping
//! (`+group`/`-group`). `^` before an action applies it to the frames above the matched one
//! (newer, towards the crash), `v` to those below (older); `[ m ] |` before the matchers tests
//! the caller (the frame below) and `| [ m ]` after them the callee (the frame above). As in
//! Sentry, in-app actions run first, rule by rule, each rule seeing the flags earlier rules
//! left; group actions then run with the final flags. Per frame and action, the last rule wins.

use super::glob::{Glob, Mode};
use super::{families_admit, family_of, for_each_rule, parse_bool, parse_families, Cursor};
use crate::protocol::event::Frame;

/// A project's stack trace rules, in order.
#[derive(Debug, Clone, Default)]
pub struct Enhancements {
    rules: Vec<Rule>,
}

/// What the rules change on one frame, and which rule made each change (its source line). A
/// flag is `Some` whenever an action covered the frame, even when it already had that value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameChange {
    pub in_app: Option<bool>,
    pub in_app_rule: Option<String>,
    pub group: Option<bool>,
    pub group_rule: Option<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    text: String,
    caller: Option<Matcher>,
    matchers: Vec<Matcher>,
    callee: Option<Matcher>,
    actions: Vec<Action>,
}

#[derive(Debug, Clone)]
struct Matcher {
    negated: bool,
    field: Field,
}

#[derive(Debug, Clone)]
enum Field {
    Module(Glob),
    Function(Glob),
    /// The frame's `abs_path`, else its `filename`.
    Path(Glob),
    Package(Glob),
    Family(Vec<String>),
    App(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    App,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    /// The matched frame.
    Frame,
    /// `^`: the frames after it in the list (newer, towards the crash).
    Up,
    /// `v`: the frames before it (older).
    Down,
}

#[derive(Debug, Clone, Copy)]
struct Action {
    kind: Kind,
    on: bool,
    range: Range,
}

/// The values of one frame the matchers read, computed once per `apply`.
struct Facts<'f> {
    module: Option<&'f str>,
    function: &'f str,
    path: Option<&'f str>,
    package: Option<&'f str>,
    family: &'static str,
}

impl Field {
    fn parse(name: &str, value: &str) -> Result<Field, String> {
        // Functions and modules are compared with their case, paths and packages without
        // (Sentry's enhancer).
        let text = || Glob::new(value, Mode::Text { ignore_case: false });
        let path = || Glob::new(value, Mode::Path);
        Ok(match name {
            "stack.module" | "module" => Field::Module(text()?),
            "stack.function" | "function" => Field::Function(text()?),
            "stack.abs_path" | "path" => Field::Path(path()?),
            "stack.package" | "package" => Field::Package(path()?),
            "family" => Field::Family(parse_families(value)?),
            "app" => Field::App(parse_bool(value)?),
            "error.type" | "error.value" | "error.mechanism" | "category" | "type" | "value"
            | "mechanism" => {
                return Err(format!(
                    "the matcher \"{name}\" is not supported in stack trace rules"
                ))
            }
            _ => return Err(format!("unknown matcher \"{name}\"")),
        })
    }
}

impl Matcher {
    fn matches(&self, facts: &Facts<'_>, in_app: bool) -> bool {
        let opt = |glob: &Glob, value: Option<&str>| value.is_some_and(|v| glob.is_match(v));
        let positive = match &self.field {
            Field::Module(g) => opt(g, facts.module),
            Field::Function(g) => g.is_match(facts.function),
            Field::Path(g) => opt(g, facts.path),
            Field::Package(g) => opt(g, facts.package),
            Field::Family(families) => families_admit(families, facts.family),
            Field::App(want) => in_app == *want,
        };
        positive != self.negated
    }
}

impl Rule {
    fn matches_at(&self, facts: &[Facts<'_>], in_app: &[bool], i: usize) -> bool {
        let at = |m: &Matcher, j: usize| m.matches(&facts[j], in_app[j]);
        self.matchers.iter().all(|m| at(m, i))
            && self.caller.as_ref().is_none_or(|m| i > 0 && at(m, i - 1))
            && self
                .callee
                .as_ref()
                .is_none_or(|m| i + 1 < facts.len() && at(m, i + 1))
    }

    fn has(&self, kind: Kind) -> bool {
        self.actions.iter().any(|a| a.kind == kind)
    }

    /// For each frame, the value this rule's `kind` actions leave on it, if any touch it.
    ///
    /// Sentry applies the actions hit by hit (oldest frame first), each hit's actions in rule
    /// order, so a frame keeps the value of the last (hit, action) pair that covers it. That
    /// pair is found per frame without walking every range of every hit: an action covers frame
    /// `j` from the hit `j` itself (no range), from the last hit before `j` (`^`), or from the
    /// last hit of all when it lies after `j` (`v`).
    fn outcome(&self, kind: Kind, hits: &[bool]) -> Vec<Option<bool>> {
        let last_hit = hits.iter().rposition(|&h| h);
        let mut previous_hit = None;
        let mut out = Vec::with_capacity(hits.len());
        for (j, &hit) in hits.iter().enumerate() {
            let mut best: Option<(usize, usize, bool)> = None;
            for (order, action) in self.actions.iter().enumerate() {
                if action.kind != kind {
                    continue;
                }
                let from = match action.range {
                    Range::Frame => hit.then_some(j),
                    Range::Up => previous_hit,
                    Range::Down => last_hit.filter(|&h| h > j),
                };
                if let Some(h) = from {
                    if best.is_none_or(|(bh, bo, _)| (h, order) > (bh, bo)) {
                        best = Some((h, order, action.on));
                    }
                }
            }
            out.push(best.map(|(_, _, on)| on));
            if hit {
                previous_hit = Some(j);
            }
        }
        out
    }

    fn parse(text: &str) -> Result<Rule, String> {
        let mut cursor = Cursor::new(text);
        cursor.skip_spaces();
        let caller = if cursor.eat("[") {
            let m = bracketed(&mut cursor)?;
            cursor.skip_spaces();
            if !cursor.eat("|") {
                return Err("expected \"|\" after the caller matcher `[ ... ]`".into());
            }
            Some(m)
        } else {
            None
        };
        let mut matchers = Vec::new();
        let mut callee = None;
        let mut actions = Vec::new();
        loop {
            cursor.skip_spaces();
            if cursor.at_end() {
                break;
            }
            if let Some(action) = action(&mut cursor)? {
                actions.push(action);
                continue;
            }
            if !actions.is_empty() {
                return Err(format!(
                    "expected an action, found {} (matchers come before actions)",
                    super::shorten(cursor.next_word())
                ));
            }
            if callee.is_some() {
                return Err("only actions may follow the callee matcher `| [ ... ]`".into());
            }
            if cursor.eat("|") {
                cursor.skip_spaces();
                if !cursor.eat("[") {
                    return Err("expected \"[\" after \"|\" (callee matcher `| [ ... ]`)".into());
                }
                callee = Some(bracketed(&mut cursor)?);
                continue;
            }
            let raw = cursor.matcher(false)?;
            matchers.push(Matcher {
                negated: raw.negated,
                field: Field::parse(&raw.name, &raw.value)?,
            });
        }
        if matchers.is_empty() {
            return Err("a rule needs at least one frame matcher".into());
        }
        if actions.is_empty() {
            return Err("no action: end the rule with +app, -app, +group or -group".into());
        }
        Ok(Rule {
            text: text.to_owned(),
            caller,
            matchers,
            callee,
            actions,
        })
    }
}

/// The matcher of a `[ ... ]` whose `[` was just read, and its `]`.
fn bracketed(cursor: &mut Cursor<'_>) -> Result<Matcher, String> {
    cursor.skip_spaces();
    let raw = cursor.matcher(true)?;
    cursor.skip_spaces();
    if !cursor.eat("]") {
        return Err("expected \"]\" after the matcher inside `[ ... ]`".into());
    }
    Ok(Matcher {
        negated: raw.negated,
        field: Field::parse(&raw.name, &raw.value)?,
    })
}

/// An action at the cursor (`[^v]?[+-](app|group)`), `None` when the word is not one. Sentry's
/// other actions are recognized so that the error says they are not supported.
fn action(cursor: &mut Cursor<'_>) -> Result<Option<Action>, String> {
    let word = cursor.next_word();
    let (range, rest) = match word.as_bytes() {
        [b'^', b'+' | b'-', ..] => (Range::Up, &word[1..]),
        [b'v', b'+' | b'-', ..] => (Range::Down, &word[1..]),
        [b'+' | b'-', ..] => (Range::Frame, word),
        _ => {
            let name = word.split('=').next().unwrap_or("");
            if word.contains('=') && !word[..name.len()].contains(':') {
                return Err(format!(
                    "the action \"{name}\" is not supported (only +app, -app, +group, -group)"
                ));
            }
            return Ok(None);
        }
    };
    let on = rest.starts_with('+');
    let kind = match &rest[1..] {
        "app" => Kind::App,
        "group" => Kind::Group,
        "prefix" | "sentinel" => {
            return Err(format!(
                "the action \"{}\" is not supported (only +app, -app, +group, -group)",
                &rest[1..]
            ))
        }
        _ => return Err(format!("unknown action {}", super::shorten(word))),
    };
    cursor.pos += word.len();
    Ok(Some(Action { kind, on, range }))
}

impl Enhancements {
    pub fn parse(text: &str) -> Result<Self, super::RuleError> {
        let mut rules = Vec::new();
        for_each_rule(text, |_, line| {
            rules.push(Rule::parse(line)?);
            Ok(())
        })?;
        Ok(Enhancements { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Runs the rules over one stacktrace's frames (oldest first). `in_app` is each frame's
    /// in-app flag after the SDK and the built-in defaults; returns, per frame, what the rules
    /// change (the last matching rule wins per action).
    pub fn apply(
        &self,
        frames: &[Frame<'_>],
        event_platform: &str,
        in_app: &[bool],
    ) -> Vec<FrameChange> {
        let mut changes = vec![FrameChange::default(); frames.len()];
        if self.rules.is_empty() {
            return changes;
        }
        let facts: Vec<Facts<'_>> = frames
            .iter()
            .map(|f| Facts {
                module: f.module.non_empty(),
                function: f
                    .function
                    .non_empty()
                    .or(f.raw_function.non_empty())
                    .unwrap_or("<unknown>"),
                path: f.abs_path.non_empty().or(f.filename.non_empty()),
                package: f.package.non_empty(),
                family: family_of(f.platform.non_empty().unwrap_or(event_platform)),
            })
            .collect();
        // A flag the caller did not give counts as not in-app.
        let mut current: Vec<bool> = (0..frames.len())
            .map(|i| in_app.get(i).copied().unwrap_or(false))
            .collect();
        for kind in [Kind::App, Kind::Group] {
            for rule in self.rules.iter().filter(|r| r.has(kind)) {
                // All of a rule's hits are found before any of its actions apply.
                let hits: Vec<bool> = (0..frames.len())
                    .map(|i| rule.matches_at(&facts, &current, i))
                    .collect();
                for (j, value) in rule.outcome(kind, &hits).into_iter().enumerate() {
                    let Some(on) = value else { continue };
                    let change = &mut changes[j];
                    if kind == Kind::App {
                        current[j] = on;
                        change.in_app = Some(on);
                        change.in_app_rule = Some(rule.text.clone());
                    } else {
                        change.group = Some(on);
                        change.group_rule = Some(rule.text.clone());
                    }
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::Stacktrace;
    use serde_json::json;

    fn rules(text: &str) -> Enhancements {
        Enhancements::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn stack(frames: serde_json::Value) -> Stacktrace<'static> {
        let text: &'static str =
            Box::leak(json!({ "frames": frames }).to_string().into_boxed_str());
        serde_json::from_str(text).unwrap()
    }

    /// `(in_app, group)` of one frame after the rules, `None` where nothing changed.
    type Outcome = (Option<bool>, Option<bool>);

    /// The outcome per frame.
    fn run(text: &str, frames: serde_json::Value, platform: &str, in_app: &[bool]) -> Vec<Outcome> {
        let stack = stack(frames);
        rules(text)
            .apply(&stack.frames.0, platform, in_app)
            .into_iter()
            .map(|c| (c.in_app, c.group))
            .collect()
    }

    #[test]
    fn parses_each_form() {
        let text = r#"
# stack trace rules
stack.function:panic_handler -group
stack.module:"io.sentry.*" -app
family:native stack.package:/usr/lib/** -app
stack.abs_path:**/node_modules/** -group
app:no -group
function:"my func" !module:x +app ^-group v+group
[ function:caller ] | function:me | [ function:callee ] +group
[function:caller]| function:me -app
"#;
        let r = rules(text);
        assert_eq!(r.rules.len(), 8);
        let six = &r.rules[5];
        assert_eq!(six.matchers.len(), 2);
        assert!(six.matchers[1].negated);
        let ranges: Vec<_> = six
            .actions
            .iter()
            .map(|a| (a.kind, a.on, a.range))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (Kind::App, true, Range::Frame),
                (Kind::Group, false, Range::Up),
                (Kind::Group, true, Range::Down)
            ]
        );
        assert!(r.rules[6].caller.is_some() && r.rules[6].callee.is_some());
        assert!(r.rules[7].caller.is_some());
        assert_eq!(r.rules[0].text, "stack.function:panic_handler -group");
        assert!(Enhancements::parse("\n# x\n").unwrap().is_empty());
    }

    #[test]
    fn documented_examples_parse() {
        let text = r#"
stack.function:std::* -app
stack.module:"__main__" +app
family:javascript stack.abs_path:**/generated/**.js -group
stack.function:panic_handler ^-group -group
family:native stack.function:*::panic ^-group
stack.package:/usr/lib/** -group
family:javascript stack.module:@sentry/* -app
stack.function:"GuardedFunction*" -app -group
"#;
        assert_eq!(rules(text).rules.len(), 8);
    }

    #[test]
    fn errors_name_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("foo:bar -app", 1, "unknown matcher \"foo\""),
            ("# c\nfunction:x", 2, "no action"),
            ("-app", 1, "at least one frame matcher"),
            (
                "function:x +frobnicate",
                1,
                "unknown action \"+frobnicate\"",
            ),
            (
                "function:x -app module:y",
                1,
                "matchers come before actions",
            ),
            (
                "function:x max-frames=3",
                1,
                "\"max-frames\" is not supported",
            ),
            (
                "function:x category=std",
                1,
                "\"category\" is not supported",
            ),
            ("function:x +prefix", 1, "\"prefix\" is not supported"),
            (
                "error.type:Foo -group",
                1,
                "not supported in stack trace rules",
            ),
            (
                "category:std -group",
                1,
                "not supported in stack trace rules",
            ),
            ("function:\"x -app", 1, "unterminated quote"),
            ("function:x[ -app", 1, "is not closed"),
            ("app:sometimes -group", 1, "not a boolean"),
            ("family:rust -group", 1, "unknown family"),
            ("[ function:a ] function:b -app", 1, "expected \"|\""),
            ("[ function:a function:b -app", 1, "expected \"]\""),
            ("function:b | function:c -app", 1, "expected \"[\""),
            (
                "function:b | [ function:c ] module:d -app",
                1,
                "only actions may follow",
            ),
            ("function: -app", 1, "has no value"),
            ("function:a -app\nfunction:b\n", 2, "no action"),
        ];
        for &(text, line, reason) in cases {
            let err = Enhancements::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text}: {err}");
            assert!(err.message.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn each_matcher_matches() {
        let frames = json!([
            {"function": "main", "module": "app.main", "abs_path": "/App/Main.py", "in_app": true},
            {"raw_function": "io::read", "module": "io.sentry.Client", "filename": "client.rs",
             "package": "C:\\Windows\\System32\\ntdll.dll", "platform": "native"},
            {"abs_path": "/app/node_modules/react/index.js", "platform": "javascript"},
        ]);
        let in_app = [true, false, false];
        let cases: &[(&str, [bool; 3])] = &[
            ("stack.function:main", [true, false, false]),
            ("function:io::*", [false, true, false]),
            ("function:<unknown>", [false, false, true]),
            ("function:MAIN", [false, false, false]),
            ("stack.module:io.sentry.*", [false, true, false]),
            ("module:IO.sentry.*", [false, false, false]),
            ("!module:app.*", [false, true, true]),
            ("stack.abs_path:/app/*.py", [true, false, false]),
            ("path:client.rs", [false, true, false]),
            ("path:**/node_modules/**", [false, false, true]),
            ("stack.package:c:/windows/**", [false, true, false]),
            ("package:*ntdll.dll", [false, false, false]),
            ("package:**/ntdll.dll", [false, true, false]),
            ("family:native", [false, true, false]),
            ("family:javascript,other", [true, false, true]),
            ("family:all", [true, true, true]),
            ("app:yes", [true, false, false]),
            ("app:no", [false, true, true]),
            ("!app:no function:main", [true, false, false]),
        ];
        for (matchers, want) in cases {
            let got = run(
                &format!("{matchers} -group"),
                frames.clone(),
                "python",
                &in_app,
            );
            let got: Vec<bool> = got.iter().map(|&(_, g)| g == Some(false)).collect();
            assert_eq!(got, want, "{matchers}");
        }
    }

    #[test]
    fn actions_and_last_rule_wins() {
        let frames =
            json!([{"function": "a"}, {"function": "b"}, {"function": "c"}, {"function": "d"}]);
        let no = [false; 4];
        let cases: &[(&str, &[bool], Vec<Outcome>)] = &[
            (
                "function:b +app",
                &no,
                vec![(None, None), (Some(true), None), (None, None), (None, None)],
            ),
            (
                "function:* -group\nfunction:c +group",
                &no,
                vec![
                    (None, Some(false)),
                    (None, Some(false)),
                    (None, Some(true)),
                    (None, Some(false)),
                ],
            ),
            (
                "function:c +group\nfunction:* -group",
                &no,
                vec![(None, Some(false)); 4],
            ),
            // Ranges: `^` is the newer frames after the match, `v` the older ones.
            (
                "function:b ^-group",
                &no,
                vec![
                    (None, None),
                    (None, None),
                    (None, Some(false)),
                    (None, Some(false)),
                ],
            ),
            (
                "function:c v+app",
                &no,
                vec![
                    (Some(true), None),
                    (Some(true), None),
                    (None, None),
                    (None, None),
                ],
            ),
            (
                "function:b -group ^+group",
                &no,
                vec![
                    (None, None),
                    (None, Some(false)),
                    (None, Some(true)),
                    (None, Some(true)),
                ],
            ),
            // Hit by hit: b's `^-group` covers c, then c's own `+group` comes later and wins.
            (
                "function:[bc] +group ^-group",
                &no,
                vec![
                    (None, None),
                    (None, Some(true)),
                    (None, Some(true)),
                    (None, Some(false)),
                ],
            ),
            // `app:` sees the flags earlier rules left; group rules see the final flags.
            (
                "function:[ab] +app\napp:yes -group\nfunction:a -app",
                &no,
                vec![
                    (Some(false), None),
                    (Some(true), Some(false)),
                    (None, None),
                    (None, None),
                ],
            ),
            (
                "app:no -app",
                &[true, false, true, false],
                vec![
                    (None, None),
                    (Some(false), None),
                    (None, None),
                    (Some(false), None),
                ],
            ),
            // Missing flags count as not in-app.
            (
                "app:no +group",
                &[true],
                vec![
                    (None, None),
                    (None, Some(true)),
                    (None, Some(true)),
                    (None, Some(true)),
                ],
            ),
            // Caller is the older neighbour, callee the newer one.
            (
                "[ function:a ] | function:* -group",
                &no,
                vec![
                    (None, None),
                    (None, Some(false)),
                    (None, None),
                    (None, None),
                ],
            ),
            (
                "function:* | [ function:d ] -group",
                &no,
                vec![
                    (None, None),
                    (None, None),
                    (None, Some(false)),
                    (None, None),
                ],
            ),
            (
                "[ !function:a ] | function:* -group",
                &no,
                vec![
                    (None, None),
                    (None, None),
                    (None, Some(false)),
                    (None, Some(false)),
                ],
            ),
        ];
        for (text, in_app, want) in cases {
            assert_eq!(&run(text, frames.clone(), "python", in_app), want, "{text}");
        }
    }

    #[test]
    fn app_rules_chain_and_group_rules_see_final_flags() {
        let frames = json!([{"function": "a"}, {"function": "b"}]);
        // Rule 2 sees rule 1's +app on `a`; rule 3 (group) sees rule 4's -app on `a` although
        // it is written before it, because in-app actions all run first.
        let text = "function:a +app\napp:yes function:a ^+app\napp:yes -group\nfunction:a -app";
        let got = run(text, frames, "python", &[false, false]);
        assert_eq!(got, vec![(Some(false), None), (Some(true), Some(false))]);
    }

    #[test]
    fn reports_the_deciding_rule() {
        let s = stack(json!([{"function": "panic_handler", "module": "io.sentry.x"}]));
        let r = rules("stack.function:panic_handler -group\nstack.module:\"io.sentry.*\" -app\nfunction:nope +group");
        let changes = r.apply(&s.frames.0, "java", &[true]);
        assert_eq!(
            changes,
            vec![FrameChange {
                in_app: Some(false),
                in_app_rule: Some("stack.module:\"io.sentry.*\" -app".into()),
                group: Some(false),
                group_rule: Some("stack.function:panic_handler -group".into()),
            }]
        );
        assert_eq!(
            Enhancements::default().apply(&s.frames.0, "java", &[]),
            vec![FrameChange::default()]
        );
        assert!(r.apply(&[], "java", &[]).is_empty());
    }

    #[test]
    fn many_rules_over_a_long_stack() {
        let text: String = (0..super::super::MAX_RULES)
            .map(|i| format!("function:f{i}* ^-group v+app\n"))
            .collect();
        let r = rules(&text);
        let frames: Vec<_> = (0..2_000)
            .map(|i| json!({"function": format!("f{}", i % 7)}))
            .collect();
        let s = stack(json!(frames));
        let changes = r.apply(&s.frames.0, "python", &[]);
        assert_eq!(changes[0].in_app, Some(true));
        assert_eq!(changes[1999].group, Some(false));
        assert_eq!(changes[0].group, None, "no hit before the first frame");
    }
}
