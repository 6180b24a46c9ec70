//! Table tests of the `sh-2026-12` scheme, project rules and grouping info, written from reference section 6.

use super::frames::trim_native_function_v2;
use super::rules::{Enhancements, FingerprintRules};
use super::*;
use crate::protocol::event::parse;
use serde_json::{json, Value};
use std::sync::Arc;

fn config(scheme: Scheme) -> Config {
    Config {
        scheme,
        ..Config::default()
    }
}

fn hs(event: &Value, config: &Config) -> Vec<String> {
    let bytes = serde_json::to_vec(event).unwrap();
    hashes(&parse(&bytes).unwrap(), config)
}

fn new(event: &Value) -> Vec<String> {
    hs(event, &config(Scheme::V2026_12))
}

fn old(event: &Value) -> Vec<String> {
    hs(event, &config(Scheme::V2026_11))
}

fn disjoint(a: &[String], b: &[String]) -> bool {
    a.iter().all(|x| !b.contains(x))
}

/// A native crash without any `in_app` flag, with a synthetic mechanism.
fn native_crash(ty: &str, value: &str, functions: &[&str], package: &str) -> Value {
    let frames: Vec<Value> = functions
        .iter()
        .map(|f| json!({"function": f, "package": package, "instruction_addr": "0x1000"}))
        .collect();
    json!({"platform": "native", "exception": [{"type": ty, "value": value,
        "mechanism": {"type": "signalhandler", "synthetic": true, "handled": false},
        "stacktrace": {"frames": frames}}]})
}

/// A minidump frame nobody symbolicated: only a package and an address.
fn minidump(packages: &[&str], addr: &str) -> Value {
    let frames: Vec<Value> = packages
        .iter()
        .map(|p| json!({"package": p, "instruction_addr": addr}))
        .collect();
    json!({"platform": "native", "exception": [{"type": "Fatal Error", "value": "0x00000000 / 0x00000000",
        "mechanism": {"type": "minidump", "synthetic": true}, "stacktrace": {"frames": frames}}]})
}

#[test]
fn native_crashes_group_by_their_stack() {
    let segv = |fs: &[&str], pkg: &str| native_crash("SIGSEGV", "Segfault", fs, pkg);
    let a = segv(&["main", "run(int)", "crash_here()"], "/usr/bin/app");
    let b = segv(
        &["main", "serve", "other_crash(char const*)"],
        "/usr/bin/server",
    );
    let (na, nb) = (new(&a), new(&b));
    assert_eq!(na.len(), 1, "only the system hash: {na:?}");
    assert!(disjoint(&na, &nb), "different stacks share a hash");
    assert_eq!(na, new(&a.clone()), "the same crash twice");
    // The old scheme's `app` variant was type+value, shared by every segfault: why 2026-12 exists.
    assert!(!disjoint(&old(&a), &old(&b)));

    let m1 = minidump(&["kernel32.dll", "C:\\app\\game.exe"], "0x1");
    let m2 = minidump(&["kernel32.dll", "C:\\tools\\editor.exe"], "0x2");
    assert!(disjoint(&new(&m1), &new(&m2)));
    assert_eq!(
        new(&m1),
        new(&minidump(&["kernel32.dll", "D:\\other\\game.exe"], "0x9"))
    );
    assert!(!disjoint(&old(&m1), &old(&m2)));
}

#[test]
fn variant_rule_rows() {
    let py = |f: &str, in_app: bool| json!({"function": f, "module": "m", "in_app": in_app});
    let exc = |frames: Value, value: &str| json!({"platform": "python", "exception": [{"type": "E", "value": value, "stacktrace": {"frames": frames}}]});
    // Frames but no in-app frames: only the system hash, and the value does not count.
    let lib = exc(json!([py("a", false)]), "v1");
    assert_eq!(new(&lib).len(), 1);
    assert_eq!(new(&lib), new(&exc(json!([py("a", false)]), "v2")));
    assert_eq!(old(&lib).len(), 2);
    assert_eq!(
        old(&lib)[1],
        new(&lib)[0],
        "same system component, same hash"
    );
    // No frames at all: type+value.
    let bare = |v: &str| json!({"exception": [{"type": "ConnectionError", "value": v}]});
    assert_eq!(new(&bare("refused 1")), new(&bare("refused 2")));
    assert!(disjoint(&new(&bare("refused")), &new(&bare("timeout"))));
    assert_eq!(new(&bare("x")), old(&bare("x")));
    // A chain where one exception has in-app frames: the app variant keeps its other parts.
    let chain = json!({"exception": [{"type": "A", "value": "a"},
        {"type": "B", "stacktrace": {"frames": [py("f", true), py("g", false)]}}]});
    assert_eq!(new(&chain), old(&chain));
    // Threads and the top-level stacktrace follow the same rule.
    let thread =
        json!({"threads": [{"crashed": true, "stacktrace": {"frames": [{"function": "f"}]}}]});
    assert_eq!(new(&thread), old(&thread));
}

#[test]
fn same_components_hash_alike_in_both_schemes() {
    // Events whose components the new scheme does not change keep their hashes.
    for (name, event) in super::golden::events() {
        let unchanged = !name.contains("native")
            && !name.contains("minidump")
            && !name.contains("cocoa")
            && !name.contains("no in-app")
            && !name.contains("site-packages")
            && !name.contains("node modules")
            && !name.contains("java")
            && !name.contains("group");
        if unchanged {
            assert_eq!(new(&event), old(&event), "{name}");
        }
    }
}

#[test]
fn cocoa_exception_takes_its_threads_stack() {
    let cocoa = |crashed: &str, thread_id: Value| {
        json!({"platform": "cocoa", "exception": [{"type": "EXC_BAD_ACCESS", "value": "KERN_INVALID_ADDRESS",
            "thread_id": thread_id, "mechanism": {"type": "mach"}}],
            "threads": [
                {"id": 0, "current": true, "stacktrace": {"frames": [{"function": "main", "package": "App"}]}},
                {"id": 7, "crashed": true, "stacktrace": {"frames": [
                    {"function": "main", "package": "App"}, {"function": crashed, "package": "App"}]}}]})
    };
    let a = cocoa("-[ViewController crash:]", json!(7));
    let b = cocoa("-[Other boom]", json!(7));
    assert!(disjoint(&new(&a), &new(&b)));
    assert_eq!(old(&a), old(&b), "the old scheme grouped by type+value");
    // Without thread_id the main exception takes the crashed thread's stack.
    assert_eq!(
        new(&cocoa("-[A b]", Value::Null)),
        new(&cocoa("-[A b]", json!(7)))
    );
    // A thread_id naming another thread takes that one's stack.
    assert_ne!(
        new(&cocoa("-[A b]", json!(0))),
        new(&cocoa("-[A b]", json!(7)))
    );
    let info = info_of(&a, &config(Scheme::V2026_12));
    let text = serde_json::to_string(&info).unwrap();
    assert!(text.contains("ViewController crash:"), "{text}");
}

fn group_event(leaves: &[(&str, &str)]) -> Value {
    let mut values: Vec<Value> = leaves
        .iter()
        .enumerate()
        .map(|(k, (ty, f))| {
            json!({"type": ty, "value": format!("{ty} {k}"), "mechanism": {"type": "chained",
                "exception_id": k + 1, "parent_id": 0},
                "stacktrace": {"frames": [{"function": f, "module": "m", "in_app": true}]}})
        })
        .collect();
    values.push(
        json!({"type": "ExceptionGroup", "value": "many", "mechanism":
        {"type": "exceptiongroup", "is_exception_group": true, "exception_id": 0},
        "stacktrace": {"frames": [{"function": "gather", "module": "m", "in_app": true}]}}),
    );
    json!({"platform": "python", "exception": {"values": values}})
}

#[test]
fn exception_groups_reduce_to_distinct_leaves() {
    let single = json!({"platform": "python", "exception": [{"type": "ValueError", "value": "x",
        "stacktrace": {"frames": [{"function": "a", "module": "m", "in_app": true}]}}]});
    let dup = group_event(&[
        ("ValueError", "a"),
        ("ValueError", "a"),
        ("ValueError", "a"),
    ]);
    assert_eq!(new(&dup), new(&single), "Group[E, E, E] is E");
    let one = group_event(&[("ValueError", "a")]);
    assert_eq!(new(&one), new(&single));
    let two = group_event(&[("ValueError", "a"), ("TypeError", "b")]);
    assert!(disjoint(&new(&two), &new(&single)));
    let two_swapped = group_event(&[("TypeError", "b"), ("ValueError", "a")]);
    assert_eq!(new(&two), new(&two_swapped), "sorted by type");
    assert_eq!(
        new(&group_event(&[
            ("ValueError", "a"),
            ("TypeError", "b"),
            ("TypeError", "b")
        ])),
        new(&two),
        "duplicates count once"
    );
    // The old scheme hashes the whole list.
    assert_ne!(old(&dup), old(&single));
    // Broken trees are left alone: a repeated id.
    let mut broken = dup.clone();
    broken["exception"]["values"][1]["mechanism"]["exception_id"] = json!(1);
    assert_eq!(
        new(&broken),
        old(&broken)
            .iter()
            .map(|_| new(&broken)[0].clone())
            .collect::<Vec<_>>()
    );

    // Titles name the one distinct exception, not the wrapper; several keep the last.
    let title = |e: &Value| {
        let bytes = serde_json::to_vec(e).unwrap();
        crate::normalize::summarize(&parse(&bytes).unwrap(), 0.0).title
    };
    // Sentry visits children newest first: the main exception is the last leaf listed.
    assert_eq!(title(&dup), "ValueError: ValueError 2");
    assert_eq!(title(&two), "ExceptionGroup: many");
}

#[test]
fn native_names_v2() {
    let rows = [
        ("void app::run<int>(int) const", "app::run"),
        ("unsigned long const& Foo::size() const noexcept", "Foo::size"),
        ("char* strdup(char const*)", "strdup"),
        ("app::(anonymous namespace)::helper(int)", "app::`anonymous namespace'::helper"),
        ("app::main()::{lambda(int)#1}::operator()(int) const", "app::main::{lambda}::operator()"),
        ("-[ViewController crash:]", "-[ViewController crash:]"),
        ("+[NSObject(Foo) bar]", "+[NSObject(Foo) bar]"),
        ("closure #1 (Swift.String) -> () in App.ViewController.load() -> ()", "closure in App.ViewController.load"),
        ("static App.Model.parse(Swift.String) throws -> App.Model", "App.Model.parse"),
        ("my_app::level3::h0123456789abcdef", "my_app::level3"),
        ("std::vector<int, std::allocator<int> >::at(unsigned long)", "std::vector::at"),
        ("Foo::operator new(unsigned long)", "Foo::operator new"),
        ("app::run::{{closure}}", "app::run::{{closure}}"),
        ("main", "main"),
        (
            "<sentry_panic::PanicIntegration as sentry_core::integration::Integration>::setup::{{closure}}",
            "<sentry_panic::PanicIntegration as sentry_core::integration::Integration>::setup::{{closure}}",
        ),
        (
            "<alloc::boxed::Box<dyn Fn(u8) -> u8> as core::ops::function::Fn<(u8,)>>::call",
            "<alloc::boxed::Box as core::ops::function::Fn>::call",
        ),
    ];
    for (input, expected) in rows {
        assert_eq!(trim_native_function_v2(input), expected, "{input}");
    }
    // The same crash built by two compilers' demanglers groups together in the new scheme.
    let a = native_crash(
        "SIGABRT",
        "Abort",
        &["main", "void app::run<int>(int) const"],
        "app",
    );
    let b = native_crash("SIGABRT", "Abort", &["main", "app::run<int>(int)"], "app");
    assert_eq!(new(&a), new(&b));
    assert_ne!(old(&a), old(&b));
}

#[test]
fn frames_without_names_contribute_their_package() {
    let items = |frame: Value, scheme| super::tests::frame_items(&frame, "native", scheme);
    let bare = json!({"package": "/usr/lib/libc.so.6", "instruction_addr": "0x1"});
    assert_eq!(
        items(bare.clone(), Scheme::V2026_12),
        [("package", "libc.so.6".to_owned())]
    );
    assert!(items(bare, Scheme::V2026_11).is_empty());
    let named = json!({"function": "f", "package": "/usr/lib/libc.so.6"});
    assert_eq!(
        items(named, Scheme::V2026_12),
        [("function", "f".to_owned())]
    );
    let symbol = json!({"symbol": "_ZN3app3runEv", "package": "app"});
    assert_eq!(
        items(symbol, Scheme::V2026_12),
        [("function", "_ZN3app3runEv".to_owned())]
    );
}

fn info_of(event: &Value, config: &Config) -> Info {
    let bytes = serde_json::to_vec(event).unwrap();
    info(&parse(&bytes).unwrap(), config)
}

fn with_rules(scheme: Scheme, fingerprinting: &str, enhancements: &str) -> Config {
    Config {
        scheme,
        fingerprinting: Some(Arc::new(FingerprintRules::parse(fingerprinting).unwrap())),
        enhancements: Some(Arc::new(Enhancements::parse(enhancements).unwrap())),
    }
}

#[test]
fn info_agrees_with_hashes() {
    let mut configs = vec![config(Scheme::V2026_11), config(Scheme::V2026_12)];
    for scheme in Scheme::all() {
        configs.push(with_rules(
            *scheme,
            "error.type:KeyError -> keys, {{ default }}\nmessage:\"*failed*\" -> failures",
            "stack.function:main -app\nstack.module:lib +app\nstack.function:sys -group",
        ));
    }
    let mut events = super::golden::events();
    events.push((
        "segv",
        native_crash("SIGSEGV", "Segfault", &["main", "f"], "app"),
    ));
    events.push(("group", group_event(&[("A", "a"), ("B", "b")])));
    for config in &configs {
        for (name, event) in &events {
            let info = info_of(event, config);
            let expected = hs(event, config);
            assert_eq!(info.hashes(), expected, "{name} {:?}", config.scheme);
            let json = serde_json::to_value(&info).unwrap();
            for v in &info.variants {
                assert_eq!(json[v.key]["hash"].as_str(), v.hash.as_deref(), "{name}");
                assert_eq!(json[v.key]["config"]["id"], config.scheme.id());
            }
        }
    }
}

#[test]
fn info_explains_why() {
    let cfg = config(Scheme::V2026_12);
    let lib = json!({"platform": "python", "exception": [{"type": "E", "value": "v",
        "stacktrace": {"frames": [{"function": "a", "module": "m", "in_app": false}]}}]});
    let info = info_of(&lib, &cfg);
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["app"]["contributes"], false);
    assert_eq!(json["app"]["hash"], Value::Null);
    assert_eq!(
        json["app"]["hint"],
        "ignored because this variant does not have a contributing stacktrace, but the system variant does"
    );
    assert_eq!(json["system"]["contributes"], true);
    assert_eq!(json["system"]["type"], "component");
    let exc = &json["system"]["component"];
    assert_eq!(exc["id"], "exception");
    let ids: Vec<&str> = exc["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["stacktrace", "type", "value"]);
    assert_eq!(
        exc["values"][2]["hint"],
        "ignored because stacktrace takes precedence"
    );
    let frame = &exc["values"][0]["values"][0];
    assert_eq!(frame["id"], "frame");
    assert_eq!(
        json["app"]["component"]["values"][0]["values"][0]["hint"],
        "non app frame"
    );
    let frame_ids: Vec<&str> = frame["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(frame_ids, ["module", "function"]);
    assert_eq!(json["system"]["fingerprint"], json!(["{{ default }}"]));

    // Recursion and the app/system duplicate.
    let rec = json!({"stacktrace": {"frames": [{"function": "r", "in_app": true}, {"function": "r", "in_app": true}]}});
    let json = serde_json::to_value(info_of(&rec, &cfg)).unwrap();
    assert_eq!(
        json["app"]["component"]["values"][1]["hint"],
        "ignored due to recursion"
    );
    assert_eq!(
        json["system"]["hint"],
        "ignored because hash matches app variant"
    );

    // Custom fingerprint and the fallback.
    let json = serde_json::to_value(info_of(
        &json!({"fingerprint": ["a", "{{ level }}"], "message": "m"}),
        &cfg,
    ))
    .unwrap();
    assert_eq!(json["custom_fingerprint"]["values"], json!(["a", "error"]));
    assert_eq!(
        json["default"]["hint"],
        "custom fingerprint takes precedence"
    );
    let json = serde_json::to_value(info_of(&json!({}), &cfg)).unwrap();
    assert_eq!(json["fallback"]["contributes"], true);
}

#[test]
fn fingerprinting_rules_replace_the_fingerprint() {
    let rules = with_rules(
        Scheme::V2026_12,
        "error.type:DatabaseUnavailable -> system-down title=\"Database down\"\nerror.type:KeyError -> keys, {{ default }}",
        "",
    );
    let db = |v: &str| json!({"exception": [{"type": "DatabaseUnavailable", "value": v}], "fingerprint": ["mine"]});
    assert_eq!(hs(&db("a"), &rules), hs(&db("b"), &rules));
    assert_eq!(
        hs(&db("a"), &rules),
        new(&json!({"fingerprint": ["system-down"]})),
        "server rules win"
    );
    let info = serde_json::to_value(info_of(&db("a"), &rules)).unwrap();
    assert_eq!(
        info["custom_fingerprint"]["matched_rule"],
        "error.type:DatabaseUnavailable -> system-down title=\"Database down\""
    );
    assert_eq!(info["custom_fingerprint"]["title"], "Database down");
    // Hybrid: `{{ default }}` keeps the default grouping, salted.
    let key = |f: &str| json!({"exception": [{"type": "KeyError", "stacktrace": {"frames": [{"function": f, "in_app": true}]}}]});
    let (a, b) = (hs(&key("a"), &rules), hs(&key("b"), &rules));
    assert!(disjoint(&a, &b));
    assert!(disjoint(&a, &new(&key("a"))));
    assert_eq!(a, new(&with_fp(key("a"), json!(["keys", "{{ default }}"]))));
    // No match: the event's own fingerprint.
    let other = json!({"message": "m", "fingerprint": ["x"]});
    assert_eq!(hs(&other, &rules), new(&other));
}

fn with_fp(mut event: Value, fp: Value) -> Value {
    event["fingerprint"] = fp;
    event
}

#[test]
fn stack_trace_rules_change_grouping() {
    let ev = |lib_fn: &str| {
        json!({"platform": "python", "exception": [{"type": "E", "stacktrace": {"frames": [
            {"function": "main", "module": "app", "in_app": true},
            {"function": lib_fn, "module": "vendor.lib", "in_app": false},
            {"function": "handler", "module": "app", "in_app": true}]}}]})
    };
    let plain = config(Scheme::V2026_12);
    // -group: the vendor frame no longer splits the system variant.
    let ignore = with_rules(Scheme::V2026_12, "", "stack.module:vendor.* -group");
    assert_ne!(hs(&ev("x"), &plain), hs(&ev("y"), &plain));
    assert_eq!(hs(&ev("x"), &ignore), hs(&ev("y"), &ignore));
    // +app: the vendor frame now shapes the app variant.
    let in_app = with_rules(Scheme::V2026_12, "", "stack.module:vendor.* +app");
    assert_eq!(hs(&ev("x"), &plain)[0], hs(&ev("y"), &plain)[0]);
    assert_ne!(hs(&ev("x"), &in_app)[0], hs(&ev("y"), &in_app)[0]);
    // -app on every frame: only the system hash is left.
    let none = with_rules(Scheme::V2026_12, "", "stack.module:* -app");
    assert_eq!(hs(&ev("x"), &none).len(), 1);
    let json = serde_json::to_value(info_of(&ev("x"), &none)).unwrap();
    let hint = json["app"]["component"]["values"][0]["values"][0]["hint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        hint.starts_with("marked out of app by stack trace rule"),
        "{hint}"
    );
    // +group brings back a frame our built-in rules ignore (a JS eval frame).
    let js = |f: &str| {
        json!({"platform": "javascript", "exception": [{"type": "E", "stacktrace": {"frames": [
        {"function": "eval", "abs_path": f, "in_app": true}, {"function": "run", "in_app": true}]}}]})
    };
    assert_eq!(hs(&js("a.js"), &plain), hs(&js("b.js"), &plain));
    let keep = with_rules(Scheme::V2026_12, "", "stack.function:eval +group");
    assert_ne!(hs(&js("a.js"), &keep), hs(&js("b.js"), &keep));
}

#[test]
fn schemes_round_trip() {
    for s in Scheme::all() {
        assert_eq!(Scheme::from_id(s.id()), Some(*s));
    }
    assert_eq!(Scheme::from_id("sh-1999"), None);
    assert_eq!(Config::default().scheme, Scheme::LATEST);
    assert_eq!(Scheme::LATEST.id(), "sh-2026-12");
}

#[test]
fn chains_with_ids_but_no_group_keep_their_order() {
    let chain = json!({"platform": "python", "exception": [
        {"type": "KeyError", "value": "k", "mechanism": {"type": "chained", "exception_id": 1, "parent_id": 0},
         "stacktrace": {"frames": [{"function": "inner", "module": "m", "in_app": true}]}},
        {"type": "RuntimeError", "value": "r", "mechanism": {"type": "generic", "exception_id": 0},
         "stacktrace": {"frames": [{"function": "outer", "module": "m", "in_app": true}]}}]});
    assert_eq!(new(&chain), old(&chain));
    let bytes = serde_json::to_vec(&chain).unwrap();
    assert_eq!(
        crate::normalize::summarize(&parse(&bytes).unwrap(), 0.0).title,
        "RuntimeError: r"
    );
}

/// `event` with every `is_exception_group` mark removed: hashed as a plain chain.
fn unflagged(event: &Value) -> Value {
    let mut plain = event.clone();
    for exc in plain["exception"]["values"].as_array_mut().unwrap() {
        exc["mechanism"]["is_exception_group"] = json!(false);
    }
    plain
}

fn title_of(event: &Value) -> String {
    let bytes = serde_json::to_vec(event).unwrap();
    crate::normalize::summarize(&parse(&bytes).unwrap(), 0.0).title
}

#[test]
fn malformed_exception_groups_are_not_reduced() {
    let valid = group_event(&[("ValueError", "a"), ("ValueError", "a")]);
    assert_ne!(
        new(&valid),
        new(&unflagged(&valid)),
        "a valid group reduces"
    );
    let with = |path: &[(usize, &str, Value)]| {
        let mut e = valid.clone();
        for (k, field, v) in path {
            e["exception"]["values"][*k]["mechanism"][*field] = v.clone();
        }
        e
    };
    let rows = [
        // The root (index 2, id 0) and a group below it are each other's parent.
        (
            "cycle through the root",
            with(&[
                (2, "parent_id", json!(1)),
                (0, "is_exception_group", json!(true)),
            ]),
        ),
        // Ids 1 and 2 are each other's parent: they never reach the root.
        (
            "cycle beside the root",
            with(&[
                (0, "parent_id", json!(2)),
                (0, "is_exception_group", json!(true)),
                (1, "parent_id", json!(1)),
            ]),
        ),
        ("self parent", with(&[(0, "parent_id", json!(1))])),
        ("unknown parent", with(&[(1, "parent_id", json!(9))])),
        ("no parent", with(&[(1, "parent_id", Value::Null)])),
        ("no root", with(&[(2, "exception_id", json!(7))])),
    ];
    for (name, event) in &rows {
        assert_eq!(new(event), new(&unflagged(event)), "{name}");
        assert_eq!(title_of(event), "ExceptionGroup: many", "{name}");
    }
}

/// Groups nested `depth` deep (root first in the tree, last in the list), one leaf at the bottom.
fn nested_groups(depth: usize) -> Value {
    let mut values = vec![json!({"type": "ValueError", "value": "leaf", "mechanism":
        {"type": "chained", "exception_id": depth, "parent_id": depth - 1},
        "stacktrace": {"frames": [{"function": "a", "module": "m", "in_app": true}]}})];
    for id in (0..depth).rev() {
        let parent = if id == 0 { Value::Null } else { json!(id - 1) };
        values.push(
            json!({"type": "ExceptionGroup", "value": format!("level {id}"),
            "mechanism": {"type": "exceptiongroup", "is_exception_group": true,
                "exception_id": id, "parent_id": parent}}),
        );
    }
    json!({"platform": "python", "exception": {"values": values}})
}

#[test]
fn deep_exception_groups_reduce_to_their_leaf_up_to_a_bound() {
    let single = json!({"platform": "python", "exception": [{"type": "ValueError", "value": "x",
        "stacktrace": {"frames": [{"function": "a", "module": "m", "in_app": true}]}}]});
    // 200 nested groups (201 exceptions) are a valid tree: hashed and titled as the leaf.
    let deep = nested_groups(200);
    assert_eq!(new(&deep), new(&single));
    assert_eq!(title_of(&deep), "ValueError: leaf");
    // Past the bound the list is hashed and titled as a plain chain.
    let deeper = nested_groups(2_000);
    assert_eq!(new(&deeper), new(&unflagged(&deeper)));
    assert_ne!(new(&deeper), new(&single));
    assert_eq!(title_of(&deeper), "ExceptionGroup: level 0");
}

#[test]
fn recursion_compares_symbols_and_raw_functions_in_the_new_scheme() {
    let native = |frames: &[Value]| {
        json!({"platform": "native", "exception": [{"type": "SIGSEGV", "value": "Segfault",
            "mechanism": {"type": "signalhandler", "synthetic": true},
            "stacktrace": {"frames": frames}}]})
    };
    let sym = |s: &str| json!({"symbol": s, "package": "/usr/bin/app", "instruction_addr": "0x1"});
    let raw = |s: &str| {
        json!({"raw_function": s, "symbol": "_Zs", "package": "/usr/bin/app",
        "instruction_addr": "0x1"})
    };
    // (name, stack a, stack b, same hashes in the new scheme)
    let rows = [
        (
            "different symbols are no recursion",
            vec![sym("_Z4mainv"), sym("_Z7crash_av")],
            vec![sym("_Z4mainv"), sym("_Z7crash_bv")],
            false,
        ),
        (
            "a repeated symbol is recursion",
            vec![sym("_Z4mainv"), sym("_Z7crash_av"), sym("_Z7crash_av")],
            vec![sym("_Z4mainv"), sym("_Z7crash_av")],
            true,
        ),
        (
            "different raw functions are no recursion",
            vec![raw("main"), raw("crash_a()")],
            vec![raw("main"), raw("crash_b()")],
            false,
        ),
        (
            "a repeated raw function is recursion",
            vec![raw("main"), raw("crash_a()"), raw("crash_a()")],
            vec![raw("main"), raw("crash_a()")],
            true,
        ),
    ];
    for (name, a, b, same) in rows {
        let (a, b) = (native(&a), native(&b));
        assert_eq!(new(&a) == new(&b), same, "{name}");
    }
    // The old scheme knows no symbol fallback: switching the frame off changed nothing there.
    let (a, b) = (
        native(&[sym("_Z4mainv"), sym("_Z7crash_av")]),
        native(&[sym("_Z4mainv"), sym("_Z7crash_bv")]),
    );
    assert_eq!(old(&a), old(&b));
}
