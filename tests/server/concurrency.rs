//! Many clients at once: every distinct event counted exactly once, and a full queue answers 503 without losing accepted events.

use crate::backend::Backend;
use crate::helpers::{spawn, spawn_with, TestServer};
use stackhound::config::Limits;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
const TYPES: usize = 300;
const EVENTS: usize = 4_200;

/// splitmix64: a small deterministic generator, so a failure replays the same traffic.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// One distinct event: its id (32 lowercase hex) and its exception type index.
#[derive(Clone, Copy)]
struct Ev {
    n: usize,
    ty: usize,
}

impl Ev {
    fn id(&self) -> String {
        format!("c0ffee00{:024x}", self.n)
    }

    /// The same id in the dashed form some SDKs send; it must dedupe with the plain form.
    fn dashed_id(&self) -> String {
        let h = self.id();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    fn json(&self, with_id: bool) -> String {
        let id = if with_id {
            format!(r#""event_id":"{}","#, self.id())
        } else {
            String::new()
        };
        format!(
            r#"{{{id}"exception":{{"values":[{{"type":"Err{}","value":"boom"}}]}},"platform":"python","tags":{{"n":"{}"}}}}"#,
            self.ty, self.n
        )
    }
}

fn envelope(header_id: &str, payload: &str) -> Vec<u8> {
    format!(
        "{{\"event_id\":\"{header_id}\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        payload.len()
    )
    .into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Where a task sends and with which credentials.
#[derive(Clone)]
struct Target {
    base: String,
    project_id: i64,
    auth: String,
}

impl Target {
    fn of(server: &TestServer) -> Target {
        Target {
            base: server.base.clone(),
            project_id: server.project_id,
            auth: server.auth_header(),
        }
    }
}

/// How one send went: the status, the `id` answered, and for refusals the headers we check.
struct Sent {
    status: u16,
    id: Option<String>,
    retry_after: bool,
    sentry_error: bool,
    /// An `X-Sentry-Rate-Limits` entry for every category, 1 s: SDKs hold back.
    holds_back: bool,
}

/// Sends `ev` in one of several shapes chosen by `mode`.
async fn send(client: &reqwest::Client, t: &Target, ev: Ev, mode: usize) -> Sent {
    let envelope_url = format!("{}/api/{}/envelope/", t.base, t.project_id);
    let store_url = format!("{}/api/{}/store/", t.base, t.project_id);
    let (url, body, encoding) = match mode % 6 {
        0 => (envelope_url, envelope(&ev.id(), &ev.json(false)), None),
        1 => (
            envelope_url,
            gzip(&envelope(&ev.id(), &ev.json(false))),
            Some("gzip"),
        ),
        2 => (
            envelope_url,
            envelope(&ev.dashed_id(), &ev.json(false)),
            None,
        ),
        3 => (
            envelope_url,
            zlib(&envelope(&ev.dashed_id(), &ev.json(true))),
            Some("deflate"),
        ),
        4 => (store_url, ev.json(true).into_bytes(), None),
        _ => (store_url, gzip(ev.json(true).as_bytes()), Some("gzip")),
    };
    let mut req = client.post(url).header("x-sentry-auth", &t.auth).body(body);
    if let Some(enc) = encoding {
        req = req.header("content-encoding", enc);
    }
    let resp = tokio::time::timeout(Duration::from_secs(20), req.send())
        .await
        .expect("request hung")
        .expect("request failed");
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key("retry-after");
    let sentry_error = resp.headers().contains_key("x-sentry-error");
    let holds_back = resp
        .headers()
        .get("x-sentry-rate-limits")
        .is_some_and(|v| v == "1::organization:overloaded");
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if status != 200 {
        assert!(body["detail"].is_string(), "{status}: {body}");
    }
    Sent {
        status,
        id: body["id"].as_str().map(str::to_string),
        retry_after,
        sentry_error,
        holds_back,
    }
}

/// Issue id and count for each `Err{k}` type, from the API.
async fn issues_by_type(server: &TestServer) -> HashMap<String, (i64, u64)> {
    let mut out = HashMap::new();
    for issue in server.all_issues().await {
        let ty = issue["metadata"]["type"].as_str().unwrap().to_string();
        let id: i64 = issue["id"].as_str().unwrap().parse().unwrap();
        let count: u64 = issue["count"].as_str().unwrap().parse().unwrap();
        assert!(
            out.insert(ty.clone(), (id, count)).is_none(),
            "two issues for {ty}"
        );
    }
    out
}

both_backends!(multi_thread: concurrent_clients_count_every_distinct_event_once);
async fn concurrent_clients_count_every_distinct_event_once(backend: Backend) {
    let server = spawn(backend).await;
    let target = Target::of(&server);
    let started = Instant::now();

    // Each event has an owner; every 29th is also sent by the next client, so the same id
    // races through two connections, often into the same write batch.
    let mut plans: Vec<Vec<Ev>> = vec![Vec::new(); CLIENTS];
    for n in 0..EVENTS {
        let ev = Ev { n, ty: n % TYPES };
        plans[n % CLIENTS].push(ev);
        if n % 29 == 0 {
            plans[(n + 1) % CLIENTS].push(ev);
        }
    }

    // Type index -> distinct ids answered 200.
    let accepted: Arc<Mutex<HashMap<usize, HashSet<String>>>> = Arc::default();
    let mut tasks = Vec::new();
    for (c, mut plan) in plans.into_iter().enumerate() {
        let target = target.clone();
        let accepted = accepted.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x5eed_0000 + c as u64);
            rng.shuffle(&mut plan);
            let client = reqwest::Client::new();
            let mut sent = Vec::new();
            let mut requests = 0usize;
            for ev in plan {
                let mut batch = vec![ev];
                // Now and then re-send something this client already sent, in another shape.
                if !sent.is_empty() && rng.below(8) == 0 {
                    batch.push(sent[rng.below(sent.len())]);
                }
                for ev in batch {
                    let r = send(&client, &target, ev, rng.below(6)).await;
                    requests += 1;
                    assert_eq!(r.status, 200, "event {} of type {}", ev.n, ev.ty);
                    assert_eq!(r.id.as_deref(), Some(ev.id().as_str()));
                    accepted
                        .lock()
                        .unwrap()
                        .entry(ev.ty)
                        .or_default()
                        .insert(ev.id());
                    sent.push(ev);
                }
            }
            requests
        }));
    }
    let mut requests = 0;
    for t in tasks {
        requests += t.await.unwrap();
    }
    let accepted = std::mem::take(&mut *accepted.lock().unwrap());
    let distinct: usize = accepted.values().map(HashSet::len).sum();
    assert_eq!(distinct, EVENTS);
    assert_eq!(accepted.len(), TYPES);
    assert!(requests > EVENTS + 400, "too few re-sends: {requests}");

    let issues = issues_by_type(&server).await;
    assert_eq!(issues.len(), TYPES);
    for (ty, ids) in &accepted {
        let (_, count) = issues[&format!("Err{ty}")];
        assert_eq!(count, ids.len() as u64, "Err{ty}");
    }
    assert_eq!(server.store.event_total().await.unwrap(), distinct as i64);
    println!(
        "{requests} requests, {distinct} distinct events in {:?}",
        started.elapsed()
    );
    server.stop().await;
}

both_backends!(multi_thread: a_burst_beyond_a_small_queue_is_answered_200_or_503);
async fn a_burst_beyond_a_small_queue_is_answered_200_or_503(backend: Backend) {
    let server = spawn_with(
        backend,
        Limits {
            queue_capacity: 4,
            max_batch: 2,
            ..Default::default()
        },
    )
    .await;
    let target = Target::of(&server);
    const BURST: usize = 64;
    const TYPES: usize = 8;

    // (event, status) of every request; bursts repeat until the queue has overflowed at least once.
    let mut results: Vec<(Ev, u16)> = Vec::new();
    let mut rounds = 0;
    while rounds < 10 && !results.iter().any(|(_, s)| *s == 503) {
        let barrier = Arc::new(tokio::sync::Barrier::new(BURST));
        let mut tasks = Vec::new();
        for i in 0..BURST {
            let n = rounds * BURST + i;
            let ev = Ev { n, ty: n % TYPES };
            let target = target.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                barrier.wait().await;
                // Plain and gzip envelopes only: the store endpoint has no header id.
                let r = send(&client, &target, ev, i % 2).await;
                match r.status {
                    200 => assert_eq!(r.id.as_deref(), Some(ev.id().as_str())),
                    503 => assert!(
                        r.retry_after && r.sentry_error && r.holds_back,
                        "503 without headers"
                    ),
                    s => panic!("event {n}: unexpected status {s}"),
                }
                (ev, r.status)
            }));
        }
        for t in tasks {
            results.push(t.await.unwrap());
        }
        rounds += 1;
    }
    let ok: Vec<Ev> = results
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(e, _)| *e)
        .collect();
    let refused = results.len() - ok.len();
    println!(
        "{rounds} bursts of {BURST}: {} accepted, {refused} refused",
        ok.len()
    );
    assert!(refused > 0, "the queue never overflowed in {rounds} bursts");
    assert!(!ok.is_empty(), "nothing was accepted");

    // The server recovers once the burst is over.
    let after = Ev {
        n: 1_000_000,
        ty: 0,
    };
    let r = send(&reqwest::Client::new(), &target, after, 0).await;
    assert_eq!(r.status, 200);

    // Exactly the accepted events are stored, each in its type's issue.
    let issues = issues_by_type(&server).await;
    let mut per_type = [0u64; TYPES];
    for ev in ok.iter().chain([&after]) {
        per_type[ev.ty] += 1;
    }
    for (ty, want) in per_type.iter().enumerate() {
        let got = issues.get(&format!("Err{ty}")).map_or(0, |(_, c)| *c);
        assert_eq!(got, *want, "Err{ty}");
    }
    assert_eq!(
        server.store.event_total().await.unwrap(),
        ok.len() as i64 + 1
    );
    for (ev, status) in &results {
        let Some((issue, _)) = issues.get(&format!("Err{}", ev.ty)) else {
            assert_eq!(*status, 503);
            continue;
        };
        let id: [u8; 16] = hex::decode(ev.id()).unwrap().try_into().unwrap();
        let row = server.store.issue_event(*issue, id).await.unwrap();
        assert_eq!(
            row.is_some(),
            *status == 200,
            "event {} answered {status}",
            ev.n
        );
    }
    server.stop().await;
}
