//! Table tests of grouping, written from reference section 6.

use super::fingerprint::fingerprint_var;
use super::frames::{
    add_stacktrace, is_in_app, is_third_party_path, strip_erb_suffix, trim_native_function,
    NOT_APP_FUNCTION_PREFIXES,
};
use super::message::{PARAMS, PARAM_NAMES};
use super::*;
use crate::protocol::event::{parse, Frame};
use serde_json::{json, Value};

const OLD: Config = Config {
    scheme: Scheme::V2026_11,
    fingerprinting: None,
    enhancements: None,
};

/// Hashes under the old scheme: these tables were written for it and still hold for it.
fn h(event: &Value) -> Vec<String> {
    let bytes = serde_json::to_vec(event).unwrap();
    hashes(&parse(&bytes).unwrap(), &OLD)
}

/// The contributing `(label, value)` leaves of one frame alone in a stack, system variant.
pub(super) fn frame_items(
    frame: &Value,
    platform: &str,
    scheme: Scheme,
) -> Vec<(&'static str, String)> {
    let json = serde_json::to_string(&json!({"frames": [frame]})).unwrap();
    let st: Stacktrace<'_> = serde_json::from_str(&json).unwrap();
    let mut tree = Tree::new(false, 8);
    let s = add_stacktrace(
        &mut tree,
        Some(&st),
        None,
        "",
        platform,
        None,
        scheme.flags(),
    );
    let mut out = Vec::new();
    for i in s..tree.nodes.len() {
        let n = &tree.nodes[i];
        let frame_on = tree.nodes[s + 1].on[SYSTEM];
        if n.leaf && n.on[SYSTEM] && frame_on {
            out.push((n.label.unwrap_or(""), n.value.to_string()));
        }
    }
    out
}

fn with(mut event: Value, key: &str, value: Value) -> Value {
    event[key] = value;
    event
}

fn exc(ty: &str, value: &str, frames: Value) -> Value {
    json!({"type": ty, "value": value, "stacktrace": {"frames": frames}})
}

fn py_frame(function: &str, line: &str, in_app: bool) -> Value {
    json!({"module": "app.mod", "filename": "app/mod.py", "function": function,
           "context_line": line, "in_app": in_app})
}

fn py_event(frames: Value, ty: &str, value: &str) -> Value {
    json!({"platform": "python", "exception": {"values": [exc(ty, value, frames)]}})
}

/// A Python error with two in-app frames and one library frame.
fn mixed(lib_line: &str, value: &str) -> Value {
    py_event(
        json!([
            py_frame("main", "main()", true),
            py_frame("handler", "handle(x)", true),
            py_frame("lib_call", lib_line, false)
        ]),
        "ValueError",
        value,
    )
}

fn thread(crashed: bool, current: bool, function: &str) -> Value {
    json!({"crashed": crashed, "current": current,
           "stacktrace": {"frames": [{"function": function, "filename": "t.c", "in_app": true}]}})
}

fn rust_panic(sdk_function: &str, line: i64) -> Value {
    json!({"platform": "native", "exception": {"values": [{"type": "panic", "value": "boom",
    "mechanism": {"type": "panic", "handled": false},
    "stacktrace": {"frames": [
        {"function": "main", "in_app": true},
        {"function": "std::rt::lang_start", "package": "std", "filename": "rt.rs", "in_app": false},
        {"function": "my_app::level3", "filename": "main.rs", "lineno": line, "in_app": true},
        {"function": "core::panicking::panic_fmt", "in_app": true},
        {"function": "__rustc::rust_begin_unwind", "in_app": true},
        {"function": "<sentry_panic::PanicIntegration as sentry_core::integration::Integration>::setup::{{closure}}", "in_app": true},
        {"function": sdk_function, "filename": "lib.rs", "in_app": true},
        {"function": "sentry_backtrace::current_stacktrace", "in_app": false}
    ]}}]}})
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rel {
    /// Identical hash lists.
    Same,
    /// No hash in common.
    Disjoint,
    /// The first (app) hash is shared, the last (system) differs.
    SameAppDiffSystem,
    /// The first (app) hash differs, the last (system) is shared.
    DiffAppSameSystem,
}

#[test]
fn hash_relations() {
    let frames = || {
        json!([
            py_frame("main", "main()", true),
            py_frame("f", "f(1)", true)
        ])
    };
    let base = py_event(frames(), "ValueError", "bad 42");
    let f = |x: &str| json!({"function": x, "module": "m", "in_app": true});
    let msg = |m: &str| json!({"message": m});
    let rows: Vec<(&str, Value, Value, Rel)> = vec![
        (
            "identical event twice",
            base.clone(),
            base.clone(),
            Rel::Same,
        ),
        (
            "checksum overrides everything",
            with(base.clone(), "checksum", json!("abc")),
            json!({"checksum": "abc"}),
            Rel::Same,
        ),
        (
            "different checksums",
            json!({"checksum": "abc"}),
            json!({"checksum": "abd"}),
            Rel::Disjoint,
        ),
        (
            "checksum beats a custom fingerprint",
            json!({"checksum": "c", "fingerprint": ["x"]}),
            json!({"checksum": "c"}),
            Rel::Same,
        ),
        (
            "custom fingerprint ignores the payload",
            with(base.clone(), "fingerprint", json!(["a", "b"])),
            with(msg("other"), "fingerprint", json!(["a", "b"])),
            Rel::Same,
        ),
        (
            "custom fingerprint entries are separated",
            json!({"fingerprint": ["ab", "c"]}),
            json!({"fingerprint": ["a", "bc"]}),
            Rel::Disjoint,
        ),
        (
            "custom fingerprint entry order matters",
            json!({"fingerprint": ["a", "b"]}),
            json!({"fingerprint": ["b", "a"]}),
            Rel::Disjoint,
        ),
        (
            "custom fingerprint differs from default",
            with(base.clone(), "fingerprint", json!(["x"])),
            base.clone(),
            Rel::Disjoint,
        ),
        (
            "{{ default }} alone is the default",
            with(base.clone(), "fingerprint", json!(["{{ default }}"])),
            base.clone(),
            Rel::Same,
        ),
        (
            "{{default}} without spaces",
            with(base.clone(), "fingerprint", json!(["{{default}}"])),
            base.clone(),
            Rel::Same,
        ),
        (
            "empty fingerprint is the default",
            with(base.clone(), "fingerprint", json!([])),
            base.clone(),
            Rel::Same,
        ),
        (
            "hybrid differs from default",
            with(base.clone(), "fingerprint", json!(["x", "{{ default }}"])),
            base.clone(),
            Rel::Disjoint,
        ),
        (
            "hybrid salts differ",
            with(base.clone(), "fingerprint", json!(["x", "{{ default }}"])),
            with(base.clone(), "fingerprint", json!(["y", "{{ default }}"])),
            Rel::Disjoint,
        ),
        (
            "hybrid keeps the default's grouping",
            with(
                py_event(frames(), "ValueError", "bad 1"),
                "fingerprint",
                json!(["x", "{{ default }}"]),
            ),
            with(
                py_event(frames(), "ValueError", "bad 2"),
                "fingerprint",
                json!(["x", "{{ default }}"]),
            ),
            Rel::Same,
        ),
        (
            "hybrid keeps app/system variants",
            with(
                mixed("a()", "v"),
                "fingerprint",
                json!(["x", "{{ default }}"]),
            ),
            with(
                mixed("b()", "v"),
                "fingerprint",
                json!(["x", "{{ default }}"]),
            ),
            Rel::SameAppDiffSystem,
        ),
        (
            "value ignored when the stack contributes",
            py_event(frames(), "ValueError", "one"),
            py_event(frames(), "ValueError", "two"),
            Rel::Same,
        ),
        (
            "type always counts",
            py_event(frames(), "ValueError", "v"),
            py_event(frames(), "KeyError", "v"),
            Rel::Disjoint,
        ),
        (
            "synthetic type does not count",
            with(
                py_event(frames(), "Error", "v"),
                "exception",
                json!([{"type": "Error", "value": "v", "mechanism": {"synthetic": true}, "stacktrace": {"frames": frames()}}]),
            ),
            with(
                py_event(frames(), "Other", "v"),
                "exception",
                json!([{"type": "Other", "value": "v", "mechanism": {"synthetic": true}, "stacktrace": {"frames": frames()}}]),
            ),
            Rel::Same,
        ),
        (
            "no stack: value is normalized",
            json!({"exception": [{"type": "E", "value": "bad 42"}]}),
            json!({"exception": [{"type": "E", "value": "bad 43"}]}),
            Rel::Same,
        ),
        (
            "no stack: value counts",
            json!({"exception": [{"type": "E", "value": "bad"}]}),
            json!({"exception": [{"type": "E", "value": "worse"}]}),
            Rel::Disjoint,
        ),
        (
            "no in-app frames: app is type+value",
            py_event(json!([py_frame("a", "a()", false)]), "E", "v"),
            py_event(json!([py_frame("b", "b()", false)]), "E", "v"),
            Rel::SameAppDiffSystem,
        ),
        (
            "no in-app frames: value splits app",
            py_event(json!([py_frame("a", "a()", false)]), "E", "v"),
            py_event(json!([py_frame("a", "a()", false)]), "E", "w"),
            Rel::DiffAppSameSystem,
        ),
        (
            "absent in_app is not in-app",
            py_event(json!([{"function": "a", "module": "m"}]), "E", "v"),
            py_event(json!([{"function": "b", "module": "m"}]), "E", "v"),
            Rel::SameAppDiffSystem,
        ),
        (
            "library frame only changes system",
            mixed("a()", "v"),
            mixed("b()", "v"),
            Rel::SameAppDiffSystem,
        ),
        (
            "different line (context) changes the hash",
            py_event(json!([py_frame("f", "x = 1", true)]), "E", "v"),
            py_event(json!([py_frame("f", "x = 2", true)]), "E", "v"),
            Rel::Disjoint,
        ),
        (
            "line number alone does not",
            py_event(
                json!([{"function": "f", "module": "m", "lineno": 1, "in_app": true}]),
                "E",
                "v",
            ),
            py_event(
                json!([{"function": "f", "module": "m", "lineno": 2, "in_app": true}]),
                "E",
                "v",
            ),
            Rel::Same,
        ),
        (
            "chained order matters",
            json!({"exception": [{"type": "A"}, {"type": "B"}]}),
            json!({"exception": [{"type": "B"}, {"type": "A"}]}),
            Rel::Disjoint,
        ),
        (
            "chain length matters",
            json!({"exception": [{"type": "A"}, {"type": "B"}]}),
            json!({"exception": [{"type": "B"}]}),
            Rel::Disjoint,
        ),
        (
            "chain boundaries are unambiguous",
            json!({"exception": [{"type": "A", "stacktrace": {"frames": [f("x")]}}, {"type": "B"}]}),
            json!({"exception": [{"type": "A"}, {"type": "B", "stacktrace": {"frames": [f("x")]}}]}),
            Rel::Disjoint,
        ),
        (
            "frame boundaries are unambiguous",
            py_event(
                json!([{"module": "m", "in_app": true}, {"function": "f", "in_app": true}]),
                "E",
                "",
            ),
            py_event(
                json!([{"module": "m", "function": "f", "in_app": true}]),
                "E",
                "",
            ),
            Rel::Disjoint,
        ),
        (
            "recursion collapses",
            py_event(json!([f("a"), f("r"), f("r"), f("r")]), "E", ""),
            py_event(json!([f("a"), f("r")]), "E", ""),
            Rel::Same,
        ),
        (
            "non-adjacent repeats are no recursion",
            py_event(json!([f("r"), f("a"), f("r")]), "E", ""),
            py_event(json!([f("r"), f("a")]), "E", ""),
            Rel::Disjoint,
        ),
        (
            "same function on other lines is no recursion",
            py_event(
                json!([{"function": "r", "lineno": 1, "in_app": true}, {"function": "r", "lineno": 2, "in_app": true}]),
                "E",
                "",
            ),
            py_event(
                json!([{"function": "r", "lineno": 1, "in_app": true}]),
                "E",
                "",
            ),
            Rel::Disjoint,
        ),
        (
            "exception beats threads",
            json!({"exception": [{"type": "E"}], "threads": [thread(true, false, "x")]}),
            json!({"exception": [{"type": "E"}]}),
            Rel::Same,
        ),
        (
            "crashed thread is chosen",
            json!({"threads": [thread(true, false, "a"), thread(false, true, "b")]}),
            json!({"threads": [thread(false, false, "c"), thread(true, false, "a")]}),
            Rel::Same,
        ),
        (
            "else the current thread",
            json!({"threads": [thread(false, false, "z"), thread(false, true, "a")]}),
            json!({"threads": {"values": [thread(false, false, "a")]}}),
            Rel::Same,
        ),
        (
            "crashed thread's stack counts",
            json!({"threads": [thread(true, false, "a")]}),
            json!({"threads": [thread(true, false, "b")]}),
            Rel::Disjoint,
        ),
        (
            "ambiguous threads fall through to message",
            with(
                msg("m"),
                "threads",
                json!([thread(false, false, "a"), thread(false, false, "b")]),
            ),
            msg("m"),
            Rel::Same,
        ),
        (
            "threads beat the top-level stacktrace",
            json!({"threads": [thread(true, false, "a")], "stacktrace": {"frames": [f("zzz")]}}),
            json!({"threads": [thread(true, false, "a")]}),
            Rel::Same,
        ),
        (
            "top-level stacktrace groups",
            json!({"stacktrace": {"frames": [f("a")]}}),
            json!({"stacktrace": {"frames": [f("b")]}}),
            Rel::Disjoint,
        ),
        (
            "top-level stacktrace beats message",
            with(msg("one"), "stacktrace", json!({"frames": [f("a")]})),
            with(msg("two"), "stacktrace", json!({"frames": [f("a")]})),
            Rel::Same,
        ),
        (
            "message is parameterized",
            msg("order 42 failed for bob@example.com"),
            msg("order 7 failed for al@example.org"),
            Rel::Same,
        ),
        (
            "message text counts",
            msg("order failed"),
            msg("order succeeded"),
            Rel::Disjoint,
        ),
        (
            "message template wins over formatted",
            json!({"logentry": {"message": "user %s", "formatted": "user a"}}),
            json!({"logentry": {"message": "user %s", "formatted": "user b"}}),
            Rel::Same,
        ),
        (
            "message strategy is labelled",
            msg("E"),
            json!({"exception": [{"type": "E"}]}),
            Rel::Disjoint,
        ),
        (
            "fallback for empty events",
            json!({}),
            json!({"level": "info", "exception": [{}], "message": "  "}),
            Rel::Same,
        ),
        (
            "Rust SDK frames do not count for app",
            rust_panic("sentry_panic::panic_handler", 40),
            rust_panic("sentry_panic::other_handler", 40),
            Rel::SameAppDiffSystem,
        ),
        (
            "Rust panic on another line",
            rust_panic("sentry_panic::panic_handler", 40),
            rust_panic("sentry_panic::panic_handler", 41),
            Rel::Same,
        ),
    ];
    for (name, a, b, rel) in rows {
        let (ha, hb) = (h(&a), h(&b));
        let shared = ha.iter().filter(|x| hb.contains(x)).count();
        let ok = match rel {
            Rel::Same => ha == hb,
            Rel::Disjoint => shared == 0,
            Rel::SameAppDiffSystem => {
                ha.len() == 2 && hb.len() == 2 && ha[0] == hb[0] && ha[1] != hb[1]
            }
            Rel::DiffAppSameSystem => {
                ha.len() == 2 && hb.len() == 2 && ha[0] != hb[0] && ha[1] == hb[1]
            }
        };
        assert!(ok, "{name}: expected {rel:?}\n a={ha:?}\n b={hb:?}");
    }
}

#[test]
fn hash_counts_and_format() {
    let rows: Vec<(&str, Value, usize)> = vec![
        ("empty event: fallback", json!({}), 1),
        (
            "checksum",
            json!({"checksum": "abc", "exception": [{"type": "E"}]}),
            1,
        ),
        (
            "custom fingerprint",
            json!({"fingerprint": ["a"], "message": "m"}),
            1,
        ),
        ("message: app == system", json!({"message": "m"}), 1),
        (
            "all frames in-app: system dropped",
            py_event(json!([py_frame("f", "f()", true)]), "E", "v"),
            1,
        ),
        ("mixed frames: app and system", mixed("x()", "v"), 2),
        (
            "no stack: one hash",
            json!({"exception": [{"type": "E", "value": "v"}]}),
            1,
        ),
        (
            "no in-app frames: type+value and stack+type",
            py_event(json!([py_frame("f", "f()", false)]), "E", "v"),
            2,
        ),
        (
            "thread without in-app frames: system only",
            json!({"threads": [{"crashed": true, "stacktrace": {"frames": [{"function": "f"}]}}]}),
            1,
        ),
        (
            "hybrid without app variant: one hash",
            json!({"fingerprint": ["x", "{{ default }}"], "threads": [{"crashed": true, "stacktrace": {"frames": [{"function": "f"}]}}]}),
            1,
        ),
        (
            "hybrid on empty event: fallback",
            json!({"fingerprint": ["x", "{{ default }}"]}),
            1,
        ),
        (
            "Rust panic: app and system",
            rust_panic("sentry_panic::panic_handler", 1),
            2,
        ),
    ];
    for (name, event, n) in rows {
        let hs = h(&event);
        assert_eq!(hs.len(), n, "{name}: {hs:?}");
        for x in &hs {
            assert!(
                x.len() == 32 && x.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{name}: {x}"
            );
        }
    }
    // The thread-only event's one hash is its system variant, so hybrid salting keeps it.
    let hybrid = json!({"fingerprint": ["x", "{{ default }}"], "threads": [{"crashed": true, "stacktrace": {"frames": [{"function": "f"}]}}]});
    assert_ne!(h(&hybrid), h(&json!({"fingerprint": ["x"]})));
    // Nothing to salt: a hybrid fingerprint on an empty event falls back like no fingerprint.
    assert_eq!(
        h(&json!({})),
        h(&json!({"fingerprint": ["x", "{{ default }}"]}))
    );
}

#[test]
fn fingerprint_variables() {
    let full = json!({
        "transaction": "/api/x", "logger": "mylog", "level": "warning", "message": "hello",
        "tags": {"t": "v"},
        "exception": {"values": [
            {"type": "Inner", "value": "in"},
            {"type": "KeyError", "value": "'k'", "stacktrace": {"frames": [
                {"function": "outer", "module": "app.a", "abs_path": "/srv/app/a.py",
                 "filename": "app/a.py", "package": "/usr/lib/libfoo.so", "in_app": true},
                {"function": "lib", "in_app": false}]}}]}});
    let exc_only = json!({"exception": [{"type": "T", "value": "v",
        "stacktrace": {"frames": [{"filename": "only/name.py"}]}}]});
    let empty = json!({});
    let rows: Vec<(&str, &Value, &str)> = vec![
        ("{{ transaction }}", &full, "/api/x"),
        ("{{ transaction }}", &empty, "<no-transaction>"),
        ("{{ message }}", &full, "hello"),
        ("{{ message }}", &exc_only, "v"),
        ("{{ message }}", &empty, "<no-message>"),
        ("{{ type }}", &full, "KeyError"),
        ("{{ error.type }}", &full, "KeyError"),
        ("{{ type }}", &empty, "<no-type>"),
        ("{{ error.type }}", &empty, "<no-type>"),
        ("{{ value }}", &full, "'k'"),
        ("{{ error.value }}", &full, "'k'"),
        ("{{ value }}", &empty, "<no-value>"),
        ("{{ error.value }}", &empty, "<no-value>"),
        ("{{ function }}", &full, "outer"),
        ("{{ stack.function }}", &full, "outer"),
        ("{{ function }}", &exc_only, "<no-function>"),
        ("{{ stack.function }}", &empty, "<no-function>"),
        ("{{ path }}", &full, "/srv/app/a.py"),
        ("{{ stack.abs_path }}", &full, "/srv/app/a.py"),
        ("{{ path }}", &exc_only, "only/name.py"),
        ("{{ stack.abs_path }}", &empty, "<no-abs-path>"),
        ("{{ stack.filename }}", &full, "app/a.py"),
        ("{{ stack.filename }}", &empty, "<no-filename>"),
        ("{{ module }}", &full, "app.a"),
        ("{{ stack.module }}", &full, "app.a"),
        ("{{ module }}", &exc_only, "<no-module>"),
        ("{{ package }}", &full, "libfoo.so"),
        ("{{ stack.package }}", &full, "libfoo.so"),
        ("{{ package }}", &empty, "<no-package>"),
        ("{{ level }}", &full, "warning"),
        // An absent level reads as `error` in the event model, so `<no-level>` never shows.
        ("{{ level }}", &empty, "error"),
        ("{{ logger }}", &full, "mylog"),
        ("{{ logger }}", &empty, "<no-logger>"),
        ("{{ tags.t }}", &full, "v"),
        ("{{ tags.missing }}", &full, "<no-value-for-tag-missing>"),
        ("{{type}}", &full, "KeyError"),
        ("{{  type\t}}", &full, "KeyError"),
        ("{{ nope }}", &full, "{{ nope }}"),
        ("{{ type }}!", &full, "{{ type }}!"),
        ("x {{ type }}", &full, "x {{ type }}"),
        ("{{ a b }}", &full, "{{ a b }}"),
        ("{{}}", &full, "{{}}"),
    ];
    for (entry, event, expected) in rows {
        assert_eq!(
            h(&with(event.clone(), "fingerprint", json!([entry]))),
            h(&json!({"fingerprint": [expected]})),
            "{entry} should resolve to {expected}"
        );
    }
    // A literal that happens to look like a fallback is just that literal.
    assert_ne!(
        h(&json!({"fingerprint": ["{{ type }}"]})),
        h(&json!({"fingerprint": ["KeyError"]}))
    );
}

#[test]
fn fingerprint_var_parsing() {
    let rows = [
        ("{{ default }}", Some("default")),
        ("{{default}}", Some("default")),
        ("{{ tags.x }}", Some("tags.x")),
        ("{{}}}", Some("}")),
        ("{{}}", None),
        ("{{ }}", None),
        ("{{ a b }}", None),
        ("{ default }", None),
        ("x{{ default }}", None),
        ("{{", None),
        ("", None),
    ];
    for (entry, expected) in rows {
        assert_eq!(fingerprint_var(entry), expected, "{entry:?}");
    }
}

#[test]
fn frame_components() {
    type Items = &'static [(&'static str, &'static str)];
    let long_line = "x".repeat(121);
    let max_line = "y".repeat(120);
    let wide_line = "é".repeat(120); // 240 bytes but 120 chars
    let rows: Vec<(&str, &str, Value, Items)> = vec![
        (
            "module over filename",
            "python",
            json!({"module": "app.views", "filename": "app/views.py", "function": "index"}),
            &[("module", "app.views"), ("function", "index")],
        ),
        (
            "filename basename, lowercased",
            "python",
            json!({"filename": "App/Views.PY", "function": "f"}),
            &[("filename", "views.py"), ("function", "f")],
        ),
        (
            "windows basename",
            "other",
            json!({"filename": "C:\\App\\Main.cs"}),
            &[("filename", "main.cs")],
        ),
        (
            "abs_path when no filename",
            "other",
            json!({"abs_path": "/srv/x/Y.rb"}),
            &[("filename", "y.rb")],
        ),
        (
            "URL abs_path drops the filename",
            "javascript",
            json!({"filename": "app.js", "abs_path": "https://example.com/app.js", "function": "foo"}),
            &[("function", "foo")],
        ),
        (
            "http URL too",
            "other",
            json!({"filename": "app.js", "abs_path": "HTTP://example.com/app.js"}),
            &[],
        ),
        (
            "<anonymous> filename",
            "javascript",
            json!({"filename": "<anonymous>", "function": "foo"}),
            &[("function", "foo")],
        ),
        (
            "[native code] filename",
            "other",
            json!({"filename": "[native code]", "function": "foo"}),
            &[("function", "foo")],
        ),
        (
            "context line, whitespace collapsed",
            "python",
            json!({"function": "f", "context_line": "   x  =\t1  "}),
            &[("function", "f"), ("context_line", "x = 1")],
        ),
        (
            "context line over 120 chars",
            "python",
            json!({"function": "f", "context_line": long_line}),
            &[("function", "f")],
        ),
        (
            "context line of whitespace only",
            "python",
            json!({"function": "f", "context_line": " \t "}),
            &[("function", "f")],
        ),
        (
            "context line for node",
            "node",
            json!({"function": "f", "context_line": "a()"}),
            &[("function", "f"), ("context_line", "a()")],
        ),
        (
            "context line for php",
            "php",
            json!({"function": "f", "context_line": "a()"}),
            &[("function", "f"), ("context_line", "a()")],
        ),
        (
            "context line for ruby",
            "ruby",
            json!({"function": "f", "context_line": "a()"}),
            &[("function", "f"), ("context_line", "a()")],
        ),
        (
            "no context line for java",
            "java",
            json!({"function": "f", "context_line": "a()"}),
            &[("function", "f")],
        ),
        (
            "no context line for native",
            "native",
            json!({"function": "f", "context_line": "a()"}),
            &[("function", "f")],
        ),
        (
            "frame platform overrides event platform",
            "native",
            json!({"function": "f", "context_line": "a()", "platform": "python"}),
            &[("function", "f"), ("context_line", "a()")],
        ),
        (
            "JS: part after the last dot",
            "javascript",
            json!({"function": "Foo.prototype.bar"}),
            &[("function", "bar")],
        ),
        (
            "JS: Object.<anonymous>",
            "node",
            json!({"function": "Object.<anonymous>", "module": "m"}),
            &[("module", "m")],
        ),
        (
            "JS: Object.?",
            "node",
            json!({"function": "Object.?", "module": "m"}),
            &[("module", "m")],
        ),
        (
            "JS: <anonymous function>",
            "javascript",
            json!({"function": "<anonymous function>", "module": "m"}),
            &[("module", "m")],
        ),
        (
            "JS: Anonymous function",
            "javascript",
            json!({"function": "Anonymous function", "module": "m"}),
            &[("module", "m")],
        ),
        (
            "JS: Firefox foo/<",
            "javascript",
            json!({"function": "foo/<", "module": "m"}),
            &[("module", "m")],
        ),
        (
            "JS: eval frame ignored",
            "javascript",
            json!({"function": "eval", "filename": "x.js"}),
            &[],
        ),
        (
            "JS: native code frame ignored",
            "javascript",
            json!({"function": "f", "abs_path": "[native code]"}),
            &[],
        ),
        (
            "JS: eval code frame ignored",
            "node",
            json!({"function": "f", "abs_path": "eval code"}),
            &[],
        ),
        (
            "JS: module that is the abs_path tail",
            "javascript",
            json!({"module": "a/b", "abs_path": "/x/a/b", "filename": "b.js"}),
            &[("filename", "b.js")],
        ),
        (
            "JS: no context without function on a URL",
            "javascript",
            json!({"abs_path": "https://x/a.js", "context_line": "a()"}),
            &[],
        ),
        (
            "JS: sourcemapped function dropped for context",
            "javascript",
            json!({"function": "xY", "context_line": "a()", "data": {"sourcemap": "https://x/a.map"}}),
            &[("context_line", "a()")],
        ),
        (
            "Ruby: block",
            "ruby",
            json!({"function": "block (2 levels) in foo"}),
            &[("function", "block")],
        ),
        (
            "Ruby: erb suffix",
            "ruby",
            json!({"function": "_app_views_index_html_erb__1234567_89012345"}),
            &[("function", "_app_views_index_html_erb")],
        ),
        (
            "Ruby: short digits kept",
            "ruby",
            json!({"function": "foo__12_34"}),
            &[("function", "foo__12_34")],
        ),
        (
            "PHP: [Anonymous class]",
            "php",
            json!({"function": "[Anonymous class]", "module": "m"}),
            &[("module", "m")],
        ),
        (
            "PHP: class@anonymous method",
            "php",
            json!({"function": "class@anonymous\u{0}/in/x.php:3$0::handle"}),
            &[("function", "handle")],
        ),
        (
            "Java: lambda$",
            "java",
            json!({"function": "lambda$main$0", "module": "com.Foo"}),
            &[("module", "com.Foo")],
        ),
        (
            "Java: $$Lambda$ module",
            "java",
            json!({"module": "com.Foo$$Lambda$12/0x1234", "filename": "Foo.java"}),
            &[("filename", "foo.java")],
        ),
        (
            "Java: generated accessor",
            "java",
            json!({"module": "sun.reflect.GeneratedMethodAccessor42"}),
            &[("module", "sun.reflect.GeneratedMethodAccessor")],
        ),
        (
            "Java: CGLIB proxy",
            "java",
            json!({"module": "com.Foo$$EnhancerByCGLIB$$abc123"}),
            &[("module", "com.Foo$$EnhancerByCGLIB$$<auto>")],
        ),
        (
            "native: <unknown>",
            "native",
            json!({"function": "<unknown>"}),
            &[],
        ),
        (
            "native: <redacted>",
            "cocoa",
            json!({"function": "<redacted>", "filename": "a.m"}),
            &[("filename", "a.m")],
        ),
        (
            "native: Rust turbofish",
            "native",
            json!({"function": "std::panic::catch_unwind::<std::rt::lang_start_internal::{closure#0}, isize>"}),
            &[("function", "std::panic::catch_unwind")],
        ),
        (
            "native: Rust closure kept",
            "native",
            json!({"function": "app::run::{{closure}}"}),
            &[("function", "app::run::{{closure}}")],
        ),
        (
            "native: C++ arguments",
            "native",
            json!({"function": "foo::bar(int, char const*) const"}),
            &[("function", "foo::bar const")],
        ),
        (
            "native: C++ generics",
            "c",
            json!({"function": "std::vector<int, std::allocator<int> >::at(unsigned long)"}),
            &[("function", "std::vector::at")],
        ),
        (
            "native: Rust qualified path",
            "native",
            json!({"function": "<alloc::boxed::Box<dyn Fn(u8) -> u8> as core::ops::function::Fn<(u8,)>>::call"}),
            &[(
                "function",
                "<alloc::boxed::Box as core::ops::function::Fn>::call",
            )],
        ),
        (
            "native: C++ operator<<",
            "native",
            json!({"function": "Foo::operator<<(int)"}),
            &[("function", "Foo::operator<<")],
        ),
        (
            "C#: raw_function preferred",
            "csharp",
            json!({"function": "Short", "raw_function": "Ns.Type.Method(int)"}),
            &[("function", "Ns.Type.Method")],
        ),
        (
            "other: function untouched",
            "go",
            json!({"function": "main.(*T).Run"}),
            &[("function", "main.(*T).Run")],
        ),
        (
            "raw_function fallback",
            "python",
            json!({"raw_function": "raw"}),
            &[("function", "raw")],
        ),
        (
            "empty frame",
            "python",
            json!({"lineno": 3, "instruction_addr": "0x1"}),
            &[],
        ),
    ];
    let check = |name: &str, platform: &str, frame: &Value, expected: &[(&str, &str)]| {
        let got = frame_items(frame, platform, Scheme::V2026_11);
        let want: Vec<(&str, String)> = expected.iter().map(|(l, v)| (*l, v.to_string())).collect();
        assert_eq!(got, want, "{name}");
    };
    for (name, platform, frame, expected) in &rows {
        check(name, platform, frame, expected);
    }
    check(
        "120-char line kept",
        "python",
        &json!({"context_line": max_line}),
        &[("context_line", max_line.as_str())],
    );
    check(
        "120 wide chars kept",
        "python",
        &json!({"context_line": wide_line}),
        &[("context_line", wide_line.as_str())],
    );
}

#[test]
fn js_single_url_frame_is_ignored() {
    let lone = json!({"platform": "javascript", "exception": [{"type": "E", "value": "v",
        "stacktrace": {"frames": [{"abs_path": "https://x/a.js", "context_line": "a()", "lineno": 1}]}}]});
    assert_eq!(
        h(&lone),
        h(&json!({"exception": [{"type": "E", "value": "v"}]}))
    );
}

#[test]
fn in_app_rules() {
    let rows: Vec<(Value, bool)> = vec![
        (json!({"function": "app::f", "in_app": true}), true),
        (json!({"function": "app::f", "in_app": false}), false),
        (json!({"function": "app::f"}), false),
        (
            json!({"function": "f", "filename": "/venv/lib/site-packages/x.py"}),
            false,
        ),
        (
            json!({"function": "f", "abs_path": "/app/node_modules/x.js"}),
            false,
        ),
        (
            json!({"function": "f", "filename": "/usr/lib/python3/dist-packages/x.py"}),
            false,
        ),
    ];
    let mut rows = rows;
    for prefix in NOT_APP_FUNCTION_PREFIXES {
        rows.push((
            json!({"function": format!("{prefix}x"), "in_app": true}),
            false,
        ));
    }
    rows.push((
        json!({"raw_function": "sentry_core::x", "in_app": true}),
        false,
    ));
    for (frame, expected) in rows {
        let text = serde_json::to_string(&frame).unwrap();
        let parsed: Frame<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(is_in_app(&parsed), expected, "{frame}");
    }
    assert!(!is_third_party_path(
        &serde_json::from_str::<Frame<'_>>(r#"{"filename":"app/x.py"}"#).unwrap()
    ));
    assert!(is_third_party_path(
        &serde_json::from_str::<Frame<'_>>(r#"{"filename":"/site-packages/x.py"}"#).unwrap()
    ));
}

#[test]
fn crash_frame_rules() {
    let fr = |name: &str, in_app: Option<bool>| match in_app {
        Some(b) => json!({"function": name, "in_app": b}),
        None => json!({"function": name}),
    };
    let rows: Vec<(&str, Value, Option<&str>)> = vec![
        (
            "last in-app frame",
            json!({"exception": [{"stacktrace": {"frames": [fr("a", Some(true)), fr("b", Some(true)), fr("c", Some(false))]}}]}),
            Some("b"),
        ),
        (
            "else the last frame",
            json!({"exception": [{"stacktrace": {"frames": [fr("a", Some(false)), fr("b", None)]}}]}),
            Some("b"),
        ),
        (
            "main exception is the last",
            json!({"exception": [{"stacktrace": {"frames": [fr("inner", Some(true))]}}, {"stacktrace": {"frames": [fr("outer", Some(true))]}}]}),
            Some("outer"),
        ),
        (
            "top-level stacktrace",
            json!({"exception": [{"type": "E"}], "stacktrace": {"frames": [fr("s", None)]}}),
            Some("s"),
        ),
        (
            "crashed thread",
            json!({"threads": [thread(false, false, "x"), thread(true, false, "t")]}),
            Some("t"),
        ),
        (
            "SDK frames skipped",
            rust_panic("sentry_panic::panic_handler", 1),
            Some("my_app::level3"),
        ),
        ("nothing", json!({"exception": [{"type": "E"}]}), None),
        ("empty frames", json!({"stacktrace": {"frames": []}}), None),
    ];
    for (name, event, expected) in rows {
        let bytes = serde_json::to_vec(&event).unwrap();
        let event = parse(&bytes).unwrap();
        assert_eq!(
            crash_frame(&event).and_then(|f| f.function.as_deref()),
            expected,
            "{name}"
        );
    }
}

#[test]
fn message_normalization() {
    let rows = [
        ("plain text", "plain text"),
        ("bad 42", "bad <int>"),
        ("x -7 y", "x <int> y"),
        ("abc123 v2", "abc123 v2"),
        ("pi 3.14 and -2.5", "pi <float> and <float>"),
        ("mail jane.doe+x@example.com now", "mail <email> now"),
        ("GET https://x.example.com/a?b=1 failed", "GET <url> failed"),
        ("ws://host:80/x", "<url>"),
        (
            "connect db.example.com refused",
            "connect <hostname> refused",
        ),
        ("host API.Example.ORG", "host <hostname>"),
        ("java.io.IOException: x", "java.io.IOException: x"),
        ("from 10.0.0.1 ok", "from <ip> ok"),
        ("v6 fe80::1ff:fe23:4567:890a", "v6 <ip>"),
        ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "v6 <ip>"),
        ("path abc::add", "path abc::add"),
        ("id 123e4567-e89b-12d3-a456-426614174000", "id <uuid>"),
        (
            "commit da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "commit <sha1>",
        ),
        ("md5 d41d8cd98f00b204e9800998ecf8427e", "md5 <md5>"),
        ("at 2024-01-02T03:04:05Z", "at <date>"),
        ("at 2024-01-02T03:04:05.123456+02:00!", "at <date>!"),
        ("at 2024-01-02 03:04:05.123", "at <date>"),
        ("Mon, 02 Jan 2006 15:04:05 MST", "<date>"),
        ("Mon, 02 Jan 2006 15:04:05 -0700", "<date>"),
        ("Monday, 02-Jan-06 15:04:05 MST", "<date>"),
        ("Mon Jan  2 15:04:05 2006", "<date>"),
        ("at 3:04PM", "at <date>"),
        ("at 3:04:05 pm", "at <date>"),
        ("on 2024-01-02", "on <date>"),
        ("at 12:34:56", "at <date>"),
        ("datetime.datetime(2024, 1, 2, 3, 4)", "<date>"),
        ("took 150ms", "took <duration>"),
        ("took 1.5s", "took <duration>"),
        ("addr 0xdeadBEEF", "addr <hex>"),
        ("id='abc' name=\"x y\"", "id=<quoted_str> name=<quoted_str>"),
        ("flag=true other=False", "flag=<bool> other=<bool>"),
        ("x=5", "x=<int>"),
        ("true story", "true story"),
        ("a\n\nb\nc", "a\nb..."),
        ("  \n a \n", "a"),
        ("a\r\nb", "a\nb"),
        ("a\nb\n\n", "a\nb"),
        ("", ""),
        ("é 42 ü", "é <int> ü"),
        ("用户 42 未找到", "用户 <int> 未找到"),
    ];
    for (input, expected) in rows {
        assert_eq!(normalize_message(input), expected, "{input:?}");
    }
}

#[test]
fn param_groups_match_names() {
    let names: Vec<&str> = PARAMS.capture_names().flatten().collect();
    assert_eq!(names, PARAM_NAMES);
    assert_eq!(PARAMS.captures_len(), PARAM_NAMES.len() + 1);
}

#[test]
fn hostile_input_does_not_panic() {
    let weird = [
        r#"{"exception":5,"threads":"x","stacktrace":[1],"fingerprint":{"a":1}}"#,
        r#"{"exception":[{"stacktrace":{"frames":[{"function":"<<<(((","filename":"/"},{"function":">>>)))<","abs_path":"\\"}]}}]}"#,
        r#"{"fingerprint":["{{ tags.é }}","{{}}}","{{ default }}"],"tags":[["é","ü"]]}"#,
        r#"{"exception":[{"mechanism":{"meta":{"ns_error":{"code":"x","domain":7}}},"value":"\u0000\u0000"}]}"#,
        r#"{"platform":"javascript","stacktrace":{"frames":[{"function":".","context_line":"é"},{"function":"","abs_path":"h"}]}}"#,
        r#"{"platform":"ruby","stacktrace":{"frames":[{"function":"__","in_app":true},{"function":"x__é_1234","in_app":true}]}}"#,
        r#"{"message":"é\n\n\n😀 0x 1.s =' =\" =tru","checksum":""}"#,
    ];
    for w in weird {
        let e = parse(w.as_bytes()).unwrap();
        assert!(!hashes(&e, &OLD).is_empty(), "{w}");
        let _ = crash_frame(&e);
    }
    for s in [
        "<",
        "(",
        ">",
        ")",
        "<>()",
        "operator",
        "::<",
        "é<ü>(ö)",
        "-> >",
        "<a<b>>::c",
    ] {
        let _ = trim_native_function(s);
        let _ = normalize_message(s);
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_strings_never_panic(a in "\\PC*", b in "[<>()=:.\\- 0-9a-fé{}]*") {
        let _ = normalize_message(&a);
        let _ = normalize_message(&b);
        let _ = trim_native_function(&b);
        let _ = strip_erb_suffix(&b);
        let _ = fingerprint_var(&b);
        for platform in ["javascript", "native", "ruby", "php", "java", "python", "csharp"] {
            let event = json!({"platform": platform, "fingerprint": [&a, "{{ default }}", format!("{{{{ {b} }}}}")],
                "exception": [{"type": &a, "value": &b, "stacktrace": {"frames": [
                    {"function": &b, "module": &a, "filename": &b, "abs_path": &a, "context_line": &b, "in_app": true},
                    {"function": &a, "raw_function": &b, "filename": &a}]}}]});
            proptest::prop_assert!(!h(&event).is_empty());
        }
    }
}

#[test]
fn ns_error_groups_instead_of_value() {
    let ns = |code: i64, value: &str| {
        json!({"platform": "cocoa", "exception": [{"type": "NSError", "value": value,
        "mechanism": {"type": "ns", "meta": {"ns_error": {"domain": "D", "code": code}}}}]})
    };
    assert_eq!(h(&ns(1, "a")), h(&ns(1, "b")));
    assert_ne!(h(&ns(1, "a")), h(&ns(2, "a")));
}

// --- Real SDK captures ------------------------------------------------------------------

/// The event item of a captured envelope: its third line.
fn envelope_event(body: &[u8]) -> &[u8] {
    body.split(|b| *b == b'\n').nth(2).expect("an event line")
}

macro_rules! capture {
    ($path:literal) => {
        envelope_event(include_bytes!(concat!(
            "../../fixtures/sdk-captures/",
            $path,
            "/body.decoded"
        )))
    };
}

fn captures() -> Vec<(&'static str, &'static [u8])> {
    vec![
        (
            "py-br exception",
            capture!("python-brotli-2.75.0/exception/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-br chained",
            capture!("python-brotli-2.75.0/chained/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-br message",
            capture!("python-brotli-2.75.0/message/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-br fingerprint",
            capture!("python-brotli-2.75.0/fingerprint/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-br large",
            capture!("python-brotli-2.75.0/large/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-br twice 1",
            capture!("python-brotli-2.75.0/twice/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-br twice 2",
            capture!("python-brotli-2.75.0/twice/0002-POST-api-42-envelope-event"),
        ),
        (
            "py-gz exception",
            capture!("python-nobrotli-2.75.0/exception/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-gz chained",
            capture!("python-nobrotli-2.75.0/chained/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-gz message",
            capture!("python-nobrotli-2.75.0/message/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-gz fingerprint",
            capture!("python-nobrotli-2.75.0/fingerprint/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-gz twice 1",
            capture!("python-nobrotli-2.75.0/twice/0001-POST-api-42-envelope-event"),
        ),
        (
            "py-gz twice 2",
            capture!("python-nobrotli-2.75.0/twice/0002-POST-api-42-envelope-event"),
        ),
        (
            "rust exception",
            capture!("rust-0.49.5/exception/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust chained",
            capture!("rust-0.49.5/chained/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust message",
            capture!("rust-0.49.5/message/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust fingerprint",
            capture!("rust-0.49.5/fingerprint/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust large",
            capture!("rust-0.49.5/large/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust twice 1",
            capture!("rust-0.49.5/twice/0001-POST-api-42-envelope-event"),
        ),
        (
            "rust twice 2",
            capture!("rust-0.49.5/twice/0002-POST-api-42-envelope-event"),
        ),
    ]
}

fn hashes_of(name: &str) -> Vec<String> {
    let all = captures();
    let (_, bytes) = all.iter().find(|(n, _)| *n == name).expect(name);
    hashes(&parse(bytes).expect(name), &OLD)
}

#[test]
fn captured_events_group() {
    let expected_counts = [
        ("py-br exception", 1), // all frames in-app: app == system
        ("py-br chained", 1),
        ("py-br message", 1),
        ("py-br fingerprint", 1),
        ("rust exception", 2), // SDK and std frames make system differ from app
        ("rust chained", 1),   // no stack traces: types and values
        ("rust fingerprint", 2),
    ];
    for (name, bytes) in captures() {
        let event = parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let hs = hashes(&event, &OLD);
        assert!(!hs.is_empty(), "{name}");
        let mut dedup = hs.clone();
        dedup.dedup();
        assert_eq!(dedup, hs, "{name}");
        if let Some((_, n)) = expected_counts.iter().find(|(n, _)| *n == name) {
            assert_eq!(hs.len(), *n, "{name}: {hs:?}");
        }
    }
    for (a, b) in [
        ("py-br twice 1", "py-br twice 2"),
        ("py-gz twice 1", "py-gz twice 2"),
        ("rust twice 1", "rust twice 2"),
        ("py-br exception", "py-gz exception"),
        ("py-br message", "rust message"),
    ] {
        assert_eq!(hashes_of(a), hashes_of(b), "{a} vs {b}");
    }
    for (a, b) in [
        ("py-br exception", "py-br twice 1"),
        ("py-br exception", "py-br chained"),
        ("py-br exception", "py-br fingerprint"),
        ("rust exception", "rust twice 1"),
        ("rust exception", "rust fingerprint"),
        ("py-br message", "py-br large"),
    ] {
        let (ha, hb) = (hashes_of(a), hashes_of(b));
        assert!(ha.iter().all(|x| !hb.contains(x)), "{a} vs {b}");
    }
    let msg = hashes(
        &parse(br#"{"message":"harness warning message"}"#).unwrap(),
        &OLD,
    );
    assert_eq!(hashes_of("py-br message"), msg);
}

#[test]
fn captured_rust_panic_points_at_app_code() {
    let all = captures();
    let (_, bytes) = all.iter().find(|(n, _)| *n == "rust exception").unwrap();
    let event = parse(bytes).unwrap();
    let frame = crash_frame(&event).unwrap();
    assert_eq!(
        frame.function.as_deref(),
        Some("sentry_rust_client::level3")
    );
}
