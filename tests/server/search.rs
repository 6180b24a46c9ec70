//! Issue search, sorts, keyset pages, filtered counts, stats and the org-wide list, through
//! real envelopes and the HTTP API.

use crate::backend::Backend;
use crate::helpers::{next_cursor, spawn, spawn_manual, TestServer};
use serde_json::{json, Value};

const LIST: &str = "/api/0/projects/stackhound/default/issues/";

fn envelope(event_id: &str, event: &Value) -> Vec<u8> {
    let payload = event.to_string();
    format!(
        "{{\"event_id\":\"{event_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    )
    .into_bytes()
}

/// Sends `event` as event number `n` (its id) to the default project.
async fn send(server: &TestServer, n: u32, event: Value) {
    let (status, body) = server
        .post_envelope(envelope(&format!("{n:032x}"), &event), &[])
        .await;
    assert_eq!(status, 200, "{body}");
}

/// An event of issue `fp` (its fingerprint and message) at `ts` (seconds).
fn ev(fp: &str, ts: f64, extra: Value) -> Value {
    let mut e = json!({"message": fp, "fingerprint": [fp], "timestamp": ts, "platform": "python"});
    if let (Value::Object(m), Value::Object(x)) = (&mut e, extra) {
        m.extend(x);
    }
    e
}

/// GETs a list URL: status and body.
async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let (status, _, body) = server.api(path).await;
    (status, body)
}

/// The titles of the default project's list for `qs`, in list order.
async fn titles(server: &TestServer, qs: &str) -> Vec<String> {
    let (status, body) = get(server, &format!("{LIST}?{qs}")).await;
    assert_eq!(status, 200, "{qs}: {body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn now_secs(server: &TestServer) -> f64 {
    server.clock.now_secs()
}

both_backends!(filters_negation_quotes_and_text);
async fn filters_negation_quotes_and_text(backend: Backend) {
    let server = spawn(backend).await;
    let t = now_secs(&server) - 60.0;
    send(
        &server,
        1,
        ev(
            "alpha",
            t,
            json!({"level": "error", "environment": "prod", "release": "1.0",
                   "tags": {"browser": "Chrome 120", "os": "Linux"}, "transaction": "/checkout/pay"}),
        ),
    )
    .await;
    send(
        &server,
        2,
        ev(
            "beta",
            t,
            json!({"level": "warning", "environment": "staging", "release": "2.0",
                   "tags": {"browser": "Firefox", "os": "Mac OS"}}),
        ),
    )
    .await;
    send(
        &server,
        3,
        ev(
            "gamma_100%",
            t,
            json!({"level": "error", "tags": {"browser": "Firefox"}}),
        ),
    )
    .await;
    // Resolve beta so statuses can be told apart.
    let (status, _) = server
        .put_api("/api/0/issues/2/", &json!({"status": "resolved"}))
        .await;
    assert_eq!(status, 200);

    let cases: &[(&str, &[&str])] = &[
        // Absent query: unresolved only; empty: every status.
        ("", &["alpha", "gamma_100%"]),
        ("query=", &["alpha", "beta", "gamma_100%"]),
        ("query=is:resolved", &["beta"]),
        ("query=!is:resolved", &["alpha", "gamma_100%"]),
        ("query=is:muted", &[]),
        ("query=level:error", &["alpha", "gamma_100%"]),
        ("query=!level:error", &["beta"]),
        (
            "query=level:[warning, error]",
            &["alpha", "beta", "gamma_100%"],
        ),
        ("query=environment:prod", &["alpha"]),
        ("query=!environment:prod", &["beta", "gamma_100%"]),
        ("query=environment:[prod, staging]", &["alpha", "beta"]),
        ("query=release:2.0", &["beta"]),
        ("query=browser:\"Chrome 120\"", &["alpha"]),
        ("query=tags.browser:Firefox", &["beta", "gamma_100%"]),
        ("query=tags[os]:\"Mac OS\"", &["beta"]),
        ("query=os:[Linux, \"Mac OS\"]", &["alpha", "beta"]),
        ("query=!browser:Firefox", &["alpha"]),
        ("query=has:os", &["alpha", "beta"]),
        ("query=!has:os", &["gamma_100%"]),
        ("query=browser:Firefox level:error", &["gamma_100%"]),
        // Free text: title or culprit, case-insensitive, LIKE wildcards taken literally.
        ("query=ALPHA", &["alpha"]),
        ("query=checkout", &["alpha"]),
        ("query=\"out/pa\"", &["alpha"]),
        ("query=100%", &["gamma_100%"]),
        ("query=a_100", &["gamma_100%"]),
        ("query=%", &["gamma_100%"]),
        ("query=_", &["gamma_100%"]),
        ("query=nothing-like-this", &[]),
        ("query=is:unresolved level:error checkout", &["alpha"]),
        // The `environment` parameter, repeatable, and with a query term.
        ("query=&environment=staging", &["beta"]),
        (
            "query=&environment=staging&environment=prod",
            &["alpha", "beta"],
        ),
        (
            "query=environment:prod&environment=prod&environment=staging",
            &["alpha"],
        ),
        ("query=environment:prod&environment=staging", &[]),
    ];
    for (qs, want) in cases {
        // Each value as a client would encode it.
        let qs: Vec<String> = qs
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => format!("{k}={}", enc(v)),
                None => p.to_string(),
            })
            .collect();
        let qs = qs.join("&");
        let got = sorted(titles(&server, &qs).await);
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{qs}");
    }
    // shortIdLookup: a query that is a short id answers that issue, whatever its status.
    let (status, body) = get(&server, &format!("{LIST}?query=DEFAULT-2&shortIdLookup=1")).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body[0]["shortId"], "DEFAULT-2");
    server.stop().await;
}

both_backends!(relative_and_absolute_times_and_times_seen);
async fn relative_and_absolute_times_and_times_seen(backend: Backend) {
    let server = spawn_manual(backend).await;
    let now = now_secs(&server).floor();
    let (h, d) = (3600.0, 86400.0);
    // old: first 3 days ago, last 2 days ago (2 events); mid: 2 h ago (3 events); fresh: 10
    // minutes ago (1 event).
    send(&server, 1, ev("old", now - 3.0 * d, json!({}))).await;
    send(&server, 2, ev("old", now - 2.0 * d, json!({}))).await;
    for n in 3..6 {
        send(&server, n, ev("mid", now - 2.0 * h, json!({}))).await;
    }
    send(&server, 6, ev("fresh", now - 600.0, json!({}))).await;
    let iso = |secs: f64| {
        chrono::DateTime::from_timestamp(secs as i64, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let date = |secs: f64| {
        chrono::DateTime::from_timestamp(secs as i64, 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string()
    };
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("firstSeen:-24h".into(), vec!["fresh", "mid"]),
        ("firstSeen:+24h".into(), vec!["old"]),
        ("lastSeen:-1h".into(), vec!["fresh"]),
        ("lastSeen:-121m".into(), vec!["fresh", "mid"]),
        ("lastSeen:-7199s".into(), vec!["fresh"]),
        ("firstSeen:-1w".into(), vec!["fresh", "mid", "old"]),
        ("age:-4d".into(), vec!["fresh", "mid", "old"]),
        ("age:-3d".into(), vec!["fresh", "mid"]),
        ("lastSeen:+2d".into(), vec!["old"]),
        ("!lastSeen:+2d".into(), vec!["fresh", "mid"]),
        (format!("firstSeen:>{}", iso(now - 2.0 * h)), vec!["fresh"]),
        (
            format!("firstSeen:>={}", iso(now - 2.0 * h)),
            vec!["fresh", "mid"],
        ),
        (format!("lastSeen:<{}", iso(now - 2.0 * h)), vec!["old"]),
        (
            format!("lastSeen:<={}", iso(now - 2.0 * h)),
            vec!["mid", "old"],
        ),
        (format!("firstSeen:{}", iso(now - 2.0 * h)), vec!["mid"]),
        (format!("firstSeen:{}", date(now - 3.0 * d)), vec!["old"]),
        ("times_seen:>1".into(), vec!["mid", "old"]),
        ("timesSeen:<=2".into(), vec!["fresh", "old"]),
        ("times_seen:>=3".into(), vec!["mid"]),
        ("times_seen:<2".into(), vec!["fresh"]),
        ("times_seen:2".into(), vec!["old"]),
        ("times_seen:=3".into(), vec!["mid"]),
        ("!times_seen:3".into(), vec!["fresh", "old"]),
        ("times_seen:>1 firstSeen:-1d".into(), vec!["mid"]),
    ];
    for (q, want) in cases {
        let got = sorted(titles(&server, &format!("query={}", enc(&q))).await);
        assert_eq!(got, want, "{q}");
    }
    // Relative times follow the server's clock.
    server.clock.advance(chrono::Duration::hours(2));
    assert_eq!(
        titles(&server, &format!("query={}", enc("lastSeen:-1h"))).await,
        Vec::<String>::new()
    );
    server.stop().await;
}

/// The ids of a list followed through its pages of `limit`, checking each `Link`.
async fn pages(server: &TestServer, path: &str, qs: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    for _ in 0..100 {
        let (status, headers, body) = server
            .api(&format!("{path}?{qs}&limit={limit}&cursor={cursor}"))
            .await;
        assert_eq!(status, 200, "{qs}: {body}");
        let page = body.as_array().unwrap();
        assert!(page.len() <= limit);
        out.extend(page.iter().cloned());
        let link = headers["link"].to_str().unwrap().to_string();
        // Every other parameter is kept in the next and previous URLs.
        for part in qs.split('&').filter(|p| !p.is_empty()) {
            let (k, _) = part.split_once('=').unwrap_or((part, ""));
            assert!(link.contains(&format!("{k}=")), "{link} lacks {k}");
        }
        match next_cursor(&headers) {
            Some(c) => {
                assert_eq!(page.len(), limit, "a page before the last is full");
                assert!(link.contains(&format!("cursor={c}>")), "{link}");
                cursor = c;
            }
            None => return out,
        }
    }
    panic!("too many pages");
}

both_backends!(sorts_page_by_keyset_without_gaps_or_duplicates);
async fn sorts_page_by_keyset_without_gaps_or_duplicates(backend: Backend) {
    let server = spawn_manual(backend).await;
    let now = now_secs(&server).floor();
    let mut n = 0;
    // Nine issues: counts 1..3 (ties), first and last seen spread with ties, users 0..2.
    for k in 0..9u32 {
        let fp = format!("issue-{k}");
        let events = 1 + k % 3;
        for e in 0..events {
            n += 1;
            let ts = now - 100.0 * f64::from(k % 4) - f64::from(e);
            let user = if e < k % 3 {
                json!({"user": {"id": format!("u{e}")}})
            } else {
                json!({})
            };
            send(&server, n, ev(&fp, ts, user)).await;
        }
    }
    let (_, all) = get(&server, &format!("{LIST}?query=")).await;
    let all = all.as_array().unwrap().clone();
    assert_eq!(all.len(), 9);
    let id = |i: &Value| i["id"].as_str().unwrap().parse::<i64>().unwrap();
    type Key = fn(&Value) -> i64;
    let sorts: [(&str, Key); 5] = [
        ("", |i| {
            chrono::DateTime::parse_from_rfc3339(i["lastSeen"].as_str().unwrap())
                .unwrap()
                .timestamp_micros()
        }),
        ("date", |i| {
            chrono::DateTime::parse_from_rfc3339(i["lastSeen"].as_str().unwrap())
                .unwrap()
                .timestamp_micros()
        }),
        ("new", |i| {
            chrono::DateTime::parse_from_rfc3339(i["firstSeen"].as_str().unwrap())
                .unwrap()
                .timestamp_micros()
        }),
        ("freq", |i| i["count"].as_str().unwrap().parse().unwrap()),
        ("user", |i| i["userCount"].as_i64().unwrap()),
    ];
    for (sort, key) in sorts {
        let mut want = all.clone();
        want.sort_by_key(|i| std::cmp::Reverse((key(i), id(i))));
        let want: Vec<i64> = want.iter().map(id).collect();
        for limit in [1, 2, 4] {
            let got: Vec<i64> = pages(&server, LIST, &format!("query=&sort={sort}"), limit)
                .await
                .iter()
                .map(id)
                .collect();
            assert_eq!(got, want, "sort={sort} limit={limit}");
        }
    }
    // Users were counted: the `user` sort is not all ties.
    assert!(all.iter().any(|i| i["userCount"] == 2));
    server.stop().await;
}

both_backends!(filtered_counts_follow_environment_and_tag);
async fn filtered_counts_follow_environment_and_tag(backend: Backend) {
    let server = spawn_manual(backend).await;
    let now = now_secs(&server).floor();
    let mut n = 0;
    let mut put = |fp: &'static str, env: &'static str, browser: &'static str, ago: f64| {
        n += 1;
        (
            n,
            ev(
                fp,
                now - ago,
                json!({"environment": env, "tags": {"browser": browser}}),
            ),
        )
    };
    // x: prod Chrome 2 (at -50, -40), prod Firefox 1 (-30), staging Chrome 2 (-20, -10).
    // y: prod Chrome 1 (-5), staging Chrome 4 (-60..-57).
    let events = vec![
        put("x", "prod", "Chrome", 50.0),
        put("x", "prod", "Chrome", 40.0),
        put("x", "prod", "Firefox", 30.0),
        put("x", "staging", "Chrome", 20.0),
        put("x", "staging", "Chrome", 10.0),
        put("y", "prod", "Chrome", 5.0),
        put("y", "staging", "Chrome", 60.0),
        put("y", "staging", "Chrome", 59.0),
        put("y", "staging", "Chrome", 58.0),
        put("y", "staging", "Chrome", 57.0),
    ];
    for (n, e) in events {
        send(&server, n, e).await;
    }
    let at = |ago: f64| {
        chrono::DateTime::from_timestamp((now - ago) as i64, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    // (query string, [(title, count, firstSeen, lastSeen)] in list order)
    // (title, count, firstSeen, lastSeen)
    type Row<'a> = (&'a str, &'a str, String, String);
    let cases: Vec<(&str, Vec<Row>)> = vec![
        // A tie (5 and 5): the higher id first.
        (
            "sort=freq",
            vec![
                ("y", "5", at(60.0), at(5.0)),
                ("x", "5", at(50.0), at(10.0)),
            ],
        ),
        (
            "sort=freq&environment=prod",
            vec![("x", "3", at(50.0), at(30.0)), ("y", "1", at(5.0), at(5.0))],
        ),
        (
            "sort=freq&query=environment:prod",
            vec![("x", "3", at(50.0), at(30.0)), ("y", "1", at(5.0), at(5.0))],
        ),
        (
            "sort=freq&environment=staging",
            vec![
                ("y", "4", at(60.0), at(57.0)),
                ("x", "2", at(20.0), at(10.0)),
            ],
        ),
        (
            "sort=date&environment=staging",
            vec![
                ("x", "2", at(20.0), at(10.0)),
                ("y", "4", at(60.0), at(57.0)),
            ],
        ),
        (
            "sort=new&environment=prod",
            vec![("y", "1", at(5.0), at(5.0)), ("x", "3", at(50.0), at(30.0))],
        ),
        (
            "sort=freq&query=browser:Chrome",
            vec![
                ("y", "5", at(60.0), at(5.0)),
                ("x", "4", at(50.0), at(10.0)),
            ],
        ),
        (
            "sort=freq&query=browser:Chrome&environment=prod",
            vec![("x", "2", at(50.0), at(40.0)), ("y", "1", at(5.0), at(5.0))],
        ),
        (
            "query=browser:Firefox",
            vec![("x", "1", at(30.0), at(30.0))],
        ),
        // The first tag term drives the figures; the second only filters.
        (
            "sort=freq&query=browser:Chrome+!browser:Opera",
            vec![
                ("y", "5", at(60.0), at(5.0)),
                ("x", "4", at(50.0), at(10.0)),
            ],
        ),
        // Time and count terms apply to the filtered figures.
        (
            "environment=prod&query=times_seen:>2",
            vec![("x", "3", at(50.0), at(30.0))],
        ),
        (
            "environment=staging&query=lastSeen:-30s",
            vec![("x", "2", at(20.0), at(10.0))],
        ),
        (
            "environment=prod&query=firstSeen:-10s",
            vec![("y", "1", at(5.0), at(5.0))],
        ),
    ];
    for (qs, want) in cases {
        let (status, body) = get(&server, &format!("{LIST}?{qs}")).await;
        assert_eq!(status, 200, "{qs}: {body}");
        let got: Vec<(String, String, String, String)> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let s = |k: &str| i[k].as_str().unwrap().to_string();
                (s("title"), s("count"), s("firstSeen"), s("lastSeen"))
            })
            .collect();
        let want: Vec<(String, String, String, String)> = want
            .into_iter()
            .map(|(t, c, f, l)| (t.to_string(), c.to_string(), f, l))
            .collect();
        assert_eq!(got, want, "{qs}");
    }
    // The cursor of a filtered sort pages over the filtered figures.
    let ids: Vec<String> = pages(&server, LIST, "sort=freq&environment=staging", 1)
        .await
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["y", "x"]);
    server.stop().await;
}

both_backends!(stats_buckets_24h_and_14d);
async fn stats_buckets_24h_and_14d(backend: Backend) {
    let server = spawn_manual(backend).await;
    let now = now_secs(&server).floor() as i64;
    let hour = now - now.rem_euclid(3600);
    let day = now - now.rem_euclid(86400);
    // (seconds, environment)
    let times = [
        (hour, "prod"),
        (hour, "prod"),
        (hour - 5 * 3600 + 1, "staging"),
        (hour - 23 * 3600, "prod"),
        (hour - 24 * 3600, "prod"),
        (day - 3 * 86400 + 7, "staging"),
        (day - 13 * 86400, "prod"),
        (day - 14 * 86400, "prod"),
    ];
    for (k, (t, env)) in times.iter().enumerate() {
        send(
            &server,
            k as u32 + 1,
            ev("stats", *t as f64, json!({"environment": env})),
        )
        .await;
    }
    let series = |body: &Value, key: &str| -> Vec<(i64, i64)> {
        body[0]["stats"][key]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|p| (p[0].as_i64().unwrap(), p[1].as_i64().unwrap()))
            .collect()
    };
    let want_24h = |filter: &dyn Fn(&str) -> bool| -> Vec<(i64, i64)> {
        (0..24)
            .map(|k| {
                let start = hour - (23 - k) * 3600;
                let n = times
                    .iter()
                    .filter(|(t, e)| *t >= start && *t < start + 3600 && filter(e))
                    .count();
                (start, n as i64)
            })
            .collect()
    };
    let want_14d = |filter: &dyn Fn(&str) -> bool| -> Vec<(i64, i64)> {
        (0..14)
            .map(|k| {
                let start = day - (13 - k) * 86400;
                let n = times
                    .iter()
                    .filter(|(t, e)| *t >= start && *t < start + 86400 && filter(e))
                    .count();
                (start, n as i64)
            })
            .collect()
    };
    let (status, body) = get(&server, &format!("{LIST}?statsPeriod=24h")).await;
    assert_eq!(status, 200, "{body}");
    let got = series(&body, "24h");
    assert_eq!(got, want_24h(&|_| true));
    assert_eq!(got[23], (hour, 2));
    assert_eq!(got[18], (hour - 5 * 3600, 1));
    assert_eq!(got[0], (hour - 23 * 3600, 1));
    assert!(body[0]["stats"].get("14d").is_none());
    let (_, body) = get(&server, &format!("{LIST}?statsPeriod=14d")).await;
    let got = series(&body, "14d");
    assert_eq!(got, want_14d(&|_| true));
    assert_eq!(got[0], (day - 13 * 86400, 1));
    assert_eq!(got.iter().map(|p| p.1).sum::<i64>(), 7);
    // Stats follow the environment filter.
    let (_, body) = get(&server, &format!("{LIST}?statsPeriod=24h&environment=prod")).await;
    assert_eq!(series(&body, "24h"), want_24h(&|e| e == "prod"));
    let (_, body) = get(
        &server,
        &format!("{LIST}?statsPeriod=14d&environment=staging"),
    )
    .await;
    assert_eq!(series(&body, "14d"), want_14d(&|e| e == "staging"));
    // None asked: no stats.
    for qs in ["", "statsPeriod="] {
        let (_, body) = get(&server, &format!("{LIST}?{qs}")).await;
        let stats = body[0].get("stats");
        assert!(stats.is_none_or(|s| s == &json!({})), "{qs}: {body}");
    }
    server.stop().await;
}

both_backends!(bad_parameters_are_400_naming_them);
async fn bad_parameters_are_400_naming_them(backend: Backend) {
    let server = spawn(backend).await;
    send(&server, 1, ev("one", now_secs(&server), json!({}))).await;
    let cases = [
        ("query=firstSeen:-24x", "'firstSeen:-24x'"),
        ("query=level:error+times_seen:many", "'times_seen:many'"),
        ("query=is:unassigned", "'is:unassigned'"),
        ("query=assigned:me", "'assigned:me'"),
        ("query=bookmarks:me", "'bookmarks:me'"),
        ("query=is:nothing", "'is:nothing'"),
        ("query=browser:%22unclosed", "unclosed"),
        ("cursor=abc", "'abc'"),
        ("cursor=1:2:3:4", "'1:2:3:4'"),
        ("cursor=12", "'12'"),
        ("sort=trends", "'trends'"),
        ("sort=priority", "'priority'"),
        ("statsPeriod=30d", "'30d'"),
        ("statsPeriod=1h", "'1h'"),
        ("limit=ten", "'ten'"),
    ];
    for (qs, named) in cases {
        let (status, body) = get(&server, &format!("{LIST}?{qs}")).await;
        assert_eq!(status, 400, "{qs}: {body}");
        let detail = body["detail"].as_str().unwrap_or_else(|| panic!("{body}"));
        assert!(detail.contains(named), "{qs}: {detail}");
    }
    let (_, body) = get(&server, &format!("{LIST}?query=firstSeen:-24x")).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .starts_with("bad query: 'firstSeen:-24x': "));
    // Limits out of range are clamped, as Sentry does.
    for qs in ["limit=0", "limit=1000"] {
        let (status, body) = get(&server, &format!("{LIST}?{qs}")).await;
        assert_eq!(status, 200, "{qs}");
        assert_eq!(body.as_array().unwrap().len(), 1);
    }
    server.stop().await;
}

/// Posts `event` (number `n`) to project `project_id` with DSN key `key`.
async fn send_to(server: &TestServer, project_id: i64, key: &str, n: u32, event: Value) {
    let resp = server
        .http
        .post(format!("{}/api/{project_id}/envelope/", server.base))
        .header(
            "x-sentry-auth",
            format!("Sentry sentry_key={key}, sentry_version=7"),
        )
        .body(envelope(&format!("{n:032x}"), &event))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

both_backends!(org_wide_list_and_bulk_update_over_projects);
async fn org_wide_list_and_bulk_update_over_projects(backend: Backend) {
    let server = spawn(backend).await;
    let second = server
        .store
        .create_project("second", "Second", "secondkey", 0)
        .await
        .unwrap();
    let t = now_secs(&server) - 100.0;
    for k in 0..3u32 {
        send(
            &server,
            k + 1,
            ev(&format!("first-{k}"), t + f64::from(k), json!({})),
        )
        .await;
        send_to(
            &server,
            second.id,
            "secondkey",
            k + 100,
            ev(
                &format!("second-{k}"),
                t + 10.0 + f64::from(k),
                json!({"level": "warning"}),
            ),
        )
        .await;
    }
    let org = "/api/0/organizations/stackhound/issues/";
    let titles_of = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|i| i["title"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, body) = get(&server, &format!("{org}?query=")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        titles_of(&body),
        ["second-2", "second-1", "second-0", "first-2", "first-1", "first-0"]
    );
    let both = format!("project={}&project={}", server.project_id, second.id);
    for qs in [both.clone(), "project=-1".into(), "project=".into()] {
        let (_, body) = get(&server, &format!("{org}?query=&{qs}")).await;
        assert_eq!(body.as_array().unwrap().len(), 6, "{qs}");
    }
    let (_, body) = get(&server, &format!("{org}?query=&project={}", second.id)).await;
    assert_eq!(titles_of(&body), ["second-2", "second-1", "second-0"]);
    assert!(body
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["project"]["slug"] == "second"));
    let (_, body) = get(&server, &format!("{org}?query=level:warning&{both}")).await;
    assert_eq!(body.as_array().unwrap().len(), 3);
    // Pages across projects, every parameter kept.
    let paged: Vec<String> = pages(&server, org, &format!("query=&sort=new&{both}"), 4)
        .await
        .iter()
        .map(|i| i["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paged,
        ["second-2", "second-1", "second-0", "first-2", "first-1", "first-0"]
    );
    for bad in ["project=999", "project=abc"] {
        let (status, body) = get(&server, &format!("{org}?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            body["detail"].as_str().unwrap().contains(&bad[8..]),
            "{body}"
        );
    }
    // Short ids of either project.
    let (_, body) = get(&server, &format!("{org}?query=SECOND-2&shortIdLookup=1")).await;
    assert_eq!(titles_of(&body), ["second-1"]);

    // Bulk update on the org route: ids of both projects.
    let ids: Vec<String> = get(&server, &format!("{org}?query="))
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["title"].as_str().unwrap().ends_with("-0"))
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let qs: Vec<String> = ids.iter().map(|id| format!("id={id}")).collect();
    let (status, body) = server
        .put_api(
            &format!("{org}?{}", qs.join("&")),
            &json!({"status": "resolved"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "resolved");
    let (_, body) = get(&server, &format!("{org}?query=is:resolved")).await;
    assert_eq!(sorted(titles_of(&body)), ["first-0", "second-0"]);
    // Without ids: the projects named, with a status filter.
    let (status, _) = server
        .put_api(
            &format!("{org}?project={}&status=unresolved", second.id),
            &json!({"status": "ignored"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = get(&server, &format!("{org}?query=is:ignored")).await;
    assert_eq!(sorted(titles_of(&body)), ["second-1", "second-2"]);
    // Nothing matched: 204.
    let (status, _) = server
        .put_api(&format!("{org}?id=99999"), &json!({"status": "resolved"}))
        .await;
    assert_eq!(status, 204);
    server.stop().await;
}
