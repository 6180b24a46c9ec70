//! Responder documents, their errors, matching and the ladder's schedule.

use super::*;

fn seed_ladder() -> Value {
    json!({
        "watch_pattern": "That 'impossible' edge case finally happened",
        "actions": [
            {"target": "email", "delay_sec": 30,
             "params": {"subject": "Doh!", "recipients": "john.smith@example.com"}},
            {"target": "email", "delay_sec": 1800,
             "params": {"subject": "Doh-2!", "recipients": ["john.smith-boss@example.com"]}},
        ]
    })
}

#[test]
fn the_seeds_ladder_reads_whole() {
    let spec = parse_spec(&seed_ladder()).unwrap();
    assert!(spec.enabled);
    assert_eq!(spec.actions.len(), 2);
    assert_eq!(spec.actions[0].delay_sec, 30);
    assert_eq!(
        spec.actions[0].params,
        json!({"recipients": ["john.smith@example.com"], "subject": "Doh!"})
    );
    assert_eq!(spec.actions[1].delay_sec, 1800);
}

#[test]
fn errors_say_what_and_where() {
    let cases = [
        (
            json!({"watch_pattern": "a(b", "actions": []}),
            "watch_pattern: invalid regular expression at position 1",
        ),
        (
            json!({"watch_pattern": "ab[", "actions": []}),
            "watch_pattern: invalid regular expression at position 2",
        ),
        (
            json!({"watch_pattern": "x", "actions": [{"target": "pager"}]}),
            "actions[0].target: unknown target 'pager'",
        ),
        (
            json!({"watch_pattern": "x", "actions": [{"target": "webhook", "params": {"url": "ftp://x"}}]}),
            "actions[0].params.url: must be an http(s) URL",
        ),
        (
            json!({"watch_pattern": "x", "actions": [{"target": "slack", "params": {"url": "http://h", "channel": "#x"}}]}),
            "actions[0].params.channel: unknown parameter for slack",
        ),
        (
            json!({"watch_pattern": "x", "actions": [{"target": "email", "params": {"recipients": "nobody"}}]}),
            "actions[0].params.recipients: 'nobody' is not an email address",
        ),
        (
            json!({"watch_pattern": "x", "actions": [{"target": "email", "delay_sec": -1, "params": {"recipients": "a@b"}}]}),
            "actions[0].delay_sec: must be a whole number",
        ),
        (
            json!({"watch_pattern": "x", "actions": []}),
            "actions: needs at least one action",
        ),
        (json!({"actions": []}), "watch_pattern: is required"),
        (
            json!({"watch_pattern": "x", "min_level": "loud", "actions": []}),
            "min_level: 'loud' is not a level",
        ),
        (
            json!({"watch_pattern": "x", "colour": 1, "actions": []}),
            "colour: unknown field",
        ),
        (json!([1]), "body: must be a JSON object"),
    ];
    for (body, want) in cases {
        let got = parse_spec(&body).unwrap_err().to_string();
        assert!(got.starts_with(want), "{body}: {got}");
    }
}

#[test]
fn a_position_counts_characters_not_bytes() {
    let e = check_pattern("é(").unwrap_err();
    assert!(e.message.contains("position 1"), "{}", e.message);
}

#[test]
fn a_pattern_too_large_once_compiled_is_refused() {
    let e = check_pattern("(\\w{100}){100}").unwrap_err();
    assert!(e.message.contains("too large"), "{}", e.message);
}

fn watcher(pattern: &str) -> Watcher {
    Watcher {
        id: 7,
        watch_pattern: pattern.into(),
        min_level: None,
        environment: None,
        actions: parse_spec(&seed_ladder())
            .unwrap()
            .actions_json()
            .to_string(),
    }
}

fn ep<'a>(title: &'a str, level: &'a str, environment: Option<&'a str>) -> EpisodeStart<'a> {
    EpisodeStart {
        title,
        level,
        environment,
        started_us: 1_000_000,
    }
}

#[test]
fn a_pattern_is_searched_anywhere_and_caret_anchors_it() {
    let title = "ValueError: the edge case happened";
    assert!(matches(&watcher("edge case"), &ep(title, "error", None)));
    assert!(!matches(&watcher("^edge case"), &ep(title, "error", None)));
    assert!(matches(&watcher("^ValueError"), &ep(title, "error", None)));
}

#[test]
fn level_and_environment_filter() {
    let mut w = watcher("");
    w.min_level = Some("error".into());
    assert!(matches(&w, &ep("t", "fatal", None)));
    assert!(matches(&w, &ep("t", "error", None)));
    assert!(!matches(&w, &ep("t", "warning", None)));
    w.environment = Some("production".into());
    assert!(matches(&w, &ep("t", "error", Some("production"))));
    assert!(!matches(&w, &ep("t", "error", Some("staging"))));
    assert!(!matches(&w, &ep("t", "error", None)));
}

#[test]
fn the_ladder_is_scheduled_from_the_episodes_start() {
    let runs = schedule(
        &[watcher("edge"), watcher("nothing")],
        &ep("edge", "error", None),
    );
    let due: Vec<(i64, i64)> = runs.iter().map(|r| (r.action_index, r.due_us)).collect();
    assert_eq!(due, [(0, 31_000_000), (1, 1_801_000_000)]);
    assert_eq!(runs[0].target, "email");
    assert!(runs[1].params.contains("john.smith-boss@example.com"));
}
