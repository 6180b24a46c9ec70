//! The one orchestration of an accepted event: prepare it (parse, summarize, group) on the
//! request's own task, then hand it to the single writer and wait for its commit.
//!
//! Group commit: the writer takes everything queued (up to `max_batch`) into one transaction,
//! and answers each waiting request when that transaction has committed. While one batch is
//! being written the next one queues, so the batch size grows with the load by itself and
//! durability costs one fsync per batch, not per event.
//!
//! Overload is refused at the door: a request is admitted (`Pipeline::admit`) before its body is
//! decoded and parsed, and only while fewer events than the queue holds are in flight, so a
//! refusal costs almost nothing and the queue itself never overflows. A batch that fails for
//! the storage's sake (disk full, I/O error, a lock held too long, a lost connection) fails as a
//! whole (503, the client may retry) and the next batch tries again on a fresh connection; the
//! log tells the start and the end of such an episode once, and health shows it.

use crate::clock::Clock;
use crate::event::{IssueSeed, NewEvent, Stored};
use crate::normalize;
use crate::payload::StoredPayload;
use crate::project_grouping::ProjectGrouping;
use crate::protocol::event;
use crate::store::ingest::Writer;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Why an event could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid JSON data: {0}")]
    InvalidEvent(String),
    #[error("the server is overloaded, retry later")]
    Overloaded,
    #[error("the event could not be stored")]
    StoreFailed,
    #[error("the database cannot store events right now, retry later")]
    StorageFault,
}

/// A parsed, grouped event and the id it will be answered with.
pub struct Prepared {
    pub event: NewEvent,
    pub event_id_hex: String,
}

/// Turns an event payload into a row ready to store. Pure but for the clock value passed in.
///
/// `header_event_id` (the envelope's, already normalized) wins over the payload's; when both
/// are missing or invalid a fresh id is generated, as Relay does. `sent_at` corrects clock
/// drift of the client when it is off by more than a minute.
pub fn prepare(
    project_id: i64,
    grouping: &ProjectGrouping,
    header_event_id: Option<&str>,
    json: &[u8],
    payload: impl FnOnce() -> StoredPayload,
    received: f64,
    sent_at: Option<f64>,
) -> Result<Prepared, IngestError> {
    match event::parse(json) {
        Ok(ev) => Ok(prepare_parsed(
            project_id,
            grouping,
            header_event_id,
            &ev,
            payload,
            received,
            sent_at,
        )),
        Err(e) => {
            // Unpaired surrogate escapes (Python SDKs write them) are the one fixable failure:
            // repair, and store the repaired JSON so it reads back too.
            let repaired = event::repair_lone_surrogates(json)
                .ok_or_else(|| IngestError::InvalidEvent(e.to_string()))?;
            let ev =
                event::parse(&repaired).map_err(|e| IngestError::InvalidEvent(e.to_string()))?;
            let stored = || StoredPayload::compress(&repaired);
            Ok(prepare_parsed(
                project_id,
                grouping,
                header_event_id,
                &ev,
                stored,
                received,
                sent_at,
            ))
        }
    }
}

fn prepare_parsed(
    project_id: i64,
    grouping: &ProjectGrouping,
    header_event_id: Option<&str>,
    ev: &event::Event<'_>,
    payload: impl FnOnce() -> StoredPayload,
    received: f64,
    sent_at: Option<f64>,
) -> Prepared {
    let id = header_event_id
        .and_then(parse_event_id)
        .or_else(|| ev.event_id.as_deref().and_then(parse_event_id))
        .unwrap_or_else(|| *uuid::Uuid::new_v4().as_bytes());
    let mut summary = normalize::summarize(ev, received);
    let hashes = grouping.hash(ev, (received * 1e6) as i64);
    if let Some(title) = grouping.rule_title(ev) {
        summary.title = title.to_owned();
    }
    let drift = sent_at.map(|s| received - s).filter(|d| d.abs() > 60.0);
    let timestamp = summary.timestamp + drift.unwrap_or(0.0);
    let seed = IssueSeed {
        title: without_nul(summary.title),
        culprit: without_nul(summary.culprit),
        level: summary.level.as_str(),
        platform: without_nul(summary.platform),
        event_type: summary.event_type,
        metadata: summary.metadata.to_string(),
    };
    Prepared {
        event_id_hex: hex::encode(id),
        event: NewEvent {
            project_id,
            event_id: id,
            hashes: hashes.primary,
            secondary_hashes: hashes.secondary,
            grouping_version: hashes.scheme,
            seed,
            timestamp_us: (timestamp * 1e6) as i64,
            received_us: (received * 1e6) as i64,
            payload: payload(),
            release: summary.release.map(without_nul),
            environment: summary.environment.map(without_nul),
            user_key: summary.user_key.map(without_nul),
            tags: tags_without_nul(summary.tags),
        },
    }
}

/// Text the store keeps in columns loses its NUL characters: PostgreSQL's text type cannot hold
/// them, and both backends must store the same. (The payload keeps them, escaped in its JSON.)
fn without_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s
    }
}

/// The tags as the store keeps them: without NULs, and each key still once (dropping a NUL
/// can make two keys equal; the first wins, as in `normalize`).
fn tags_without_nul(tags: Vec<(String, String)>) -> Vec<(String, String)> {
    if !tags
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return tags;
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(tags.len());
    for (k, v) in tags {
        let (k, v) = (without_nul(k), without_nul(v));
        if !k.is_empty() && !v.is_empty() && !out.iter().any(|(seen, _)| *seen == k) {
            out.push((k, v));
        }
    }
    out
}

/// 32 hex digits or a dashed UUID, any case.
pub fn parse_event_id(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    let ok = matches!(s.len(), 32 | 36) && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    ok.then(|| uuid::Uuid::try_parse(s).ok())
        .flatten()
        .map(|u| *u.as_bytes())
}

/// Counters of what ingestion saw, for logs and health.
#[derive(Debug, Default)]
pub struct Counters {
    pub events_stored: AtomicU64,
    pub events_duplicate: AtomicU64,
    pub batches: AtomicU64,
    pub overloaded: AtomicU64,
    /// Requests refused by a project's quota (429).
    pub rate_limited: AtomicU64,
    dropped: RwLock<HashMap<String, u64>>,
}

impl Counters {
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// An accepted item we do not process (transaction, session, ...): counted, then dropped.
    pub fn dropped_item(&self, ty: &str) {
        tracing::debug!(item_type = ty, "accepted and dropped an item");
        if let Ok(mut m) = self.dropped.write() {
            match m.get_mut(ty) {
                Some(n) => *n += 1,
                None => {
                    m.insert(ty.to_string(), 1);
                }
            }
        }
    }

    pub fn dropped_items(&self) -> HashMap<String, u64> {
        self.dropped.read().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Whether storing works, as the writers last found it: a fault episode starts with the first
/// failed batch and ends with the next committed one.
#[derive(Debug, Default)]
pub struct StorageHealth {
    /// The episode's first error, while one lasts.
    fault: RwLock<Option<Fault>>,
}

/// One storage fault episode.
#[derive(Debug, Clone)]
pub struct Fault {
    pub error: String,
    pub since: Instant,
    pub failed_batches: u64,
}

impl StorageHealth {
    /// The current fault episode, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.fault.read().ok().and_then(|f| f.clone())
    }

    /// A batch failed for the storage's sake: logged once per episode.
    fn failed(&self, error: &str) {
        let Ok(mut f) = self.fault.write() else {
            return;
        };
        match f.as_mut() {
            Some(episode) => episode.failed_batches += 1,
            None => {
                tracing::error!(
                    error,
                    "storage fault: ingestion answers 503 until a batch commits again"
                );
                *f = Some(Fault {
                    error: error.to_string(),
                    since: Instant::now(),
                    failed_batches: 1,
                });
            }
        }
    }

    /// A batch committed: ends an episode, if one was on.
    fn committed(&self) {
        if self.fault.read().map(|f| f.is_none()).unwrap_or(true) {
            return;
        }
        if let Ok(mut f) = self.fault.write() {
            if let Some(episode) = f.take() {
                tracing::warn!(
                    failed_batches = episode.failed_batches,
                    lasted = ?episode.since.elapsed(),
                    "storage recovered: ingestion resumed"
                );
            }
        }
    }
}

/// A request's place among the events in flight; given back when dropped.
pub struct Admission {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Payload bytes committed in one transaction at most (one event more if it alone is larger).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// What a writer answers a request.
enum Outcome {
    Stored(Stored),
    /// The batch failed for the storage's sake; retrying later can succeed.
    Fault,
    /// This event could not be stored (its own data was refused).
    Failed,
}

/// What a writer does, in arrival order: events are batched.
enum Job {
    Event {
        event: Box<NewEvent>,
        reply: oneshot::Sender<Outcome>,
    },
    /// Write what came before, then stop (shutdown).
    Stop,
}

/// The handle request handlers use: submit an event, await its commit.
#[derive(Clone)]
pub struct Pipeline {
    queue: mpsc::Sender<Job>,
    pub counters: Arc<Counters>,
    pub health: Arc<StorageHealth>,
    /// The server's Prometheus metrics (`/metrics`): the writers count batches and
    /// transitions, the handlers count requests.
    pub metrics: crate::metrics::Metrics,
    /// Requests admitted and not yet answered; at most the queue's capacity.
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl Pipeline {
    /// Starts `writers` writer tasks on one queue (SQLite: one, its single writer;
    /// PostgreSQL: several, committing side by side). A free writer takes everything queued
    /// (up to `max_batch`) as its batch, so batches grow with the load. Everything ends once
    /// `stop` is called (or every `Pipeline` clone is dropped) and the queue is drained, which
    /// is how shutdown flushes.
    pub fn start(
        store: Store,
        clock: Clock,
        capacity: usize,
        max_batch: usize,
        writers: usize,
        metrics: crate::metrics::Metrics,
    ) -> (Pipeline, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(rx),
            stop: tokio::sync::Notify::new(),
        });
        let counters = Arc::new(Counters::default());
        let health = Arc::new(StorageHealth::default());
        let crew = Arc::new(crate::store::ingest::Crew::default());
        let in_flight: Arc<AtomicUsize> = Arc::default();
        let tasks: Vec<_> = (0..writers.max(1))
            .map(|_| {
                // Requests in flight beyond the batches being written: the writers are
                // saturated, and may hold aggregates back (`store::ingest`).
                let mut writer = store.writer(clock.clone());
                writer.join(crew.clone());
                let in_flight = in_flight.clone();
                writer.set_in_flight(Arc::new(move || in_flight.load(Ordering::SeqCst)));
                tokio::spawn(run_writer(
                    writer,
                    shared.clone(),
                    max_batch,
                    counters.clone(),
                    health.clone(),
                    metrics.clone(),
                ))
            })
            .collect();
        let all = tokio::spawn(async move {
            for t in tasks {
                if let Err(e) = t.await {
                    tracing::error!(error = %e, "writer task failed");
                }
            }
        });
        (
            Pipeline {
                queue: tx,
                counters,
                health,
                metrics,
                in_flight,
                capacity,
            },
            all,
        )
    }

    /// Admits one more request to decode, prepare and queue an event, or refuses it (503)
    /// when as many are in flight as the queue holds: past that point the writers cannot keep
    /// up, and refusing before any decoding keeps the refusal nearly free.
    pub fn admit(&self) -> Result<Admission, IngestError> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let admission = Admission {
            in_flight: self.in_flight.clone(),
        };
        if before >= self.capacity {
            self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(IngestError::Overloaded);
        }
        Ok(admission)
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Queues the event and waits until it is committed.
    pub async fn submit(&self, event: NewEvent) -> Result<Stored, IngestError> {
        let (reply, done) = oneshot::channel();
        self.queue
            .try_send(Job::Event {
                event: Box::new(event),
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
                    IngestError::Overloaded
                }
                mpsc::error::TrySendError::Closed(_) => IngestError::StoreFailed,
            })?;
        match done.await {
            Ok(Outcome::Stored(s)) => Ok(s),
            Ok(Outcome::Fault) => Err(IngestError::StorageFault),
            Ok(Outcome::Failed) | Err(_) => Err(IngestError::StoreFailed),
        }
    }

    /// Asks the writers to finish what is queued and stop; later submissions fail.
    pub async fn stop(&self) {
        let _ = self.queue.send(Job::Stop).await;
    }

    /// How many events wait for a writer now.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// How often a writer waiting for events looks again whether held-back aggregates are due.
const JOURNAL_RECHECK: std::time::Duration = std::time::Duration::from_millis(10);

/// What the writers share: the queue, taken by one free writer at a time, and the stop signal.
struct Shared {
    queue: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    /// Set (as a stored permit) by the writer that takes `Job::Stop`; whichever writer waits on
    /// the queue then closes it, so every writer drains what is left and ends.
    stop: tokio::sync::Notify,
}

/// One writer: while free, it holds the queue and takes everything queued as its batch (the
/// next free writer then waits for the following one), and commits it.
async fn run_writer(
    mut writer: Writer,
    shared: Arc<Shared>,
    max_batch: usize,
    counters: Arc<Counters>,
    health: Arc<StorageHealth>,
    metrics: crate::metrics::Metrics,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    loop {
        // Held-back aggregates are written once no request is in flight, or when they have
        // waited their longest (after the answers of the batch that found it so); at start,
        // what a crash left in the journal (if that fails, the first batch writes it).
        if writer.journal_due() {
            if let Err(e) = writer.flush_journal().await {
                tracing::warn!(error = %e, "aggregate journal not written; the next batch tries again");
            }
        }
        // While aggregates are held back, the wait for events is cut short now and then to
        // look again: requests in flight may end without an event (refused, or failed).
        let patience = writer.holds_back().then_some(JOURNAL_RECHECK);
        let n = {
            let mut queue = shared.queue.lock().await;
            tokio::select! {
                // Every branch is cancel-safe: nothing taken is lost.
                n = queue.recv_many(&mut jobs, max_batch) => n,
                _ = async {
                    match patience {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                } => continue,
                _ = shared.stop.notified() => {
                    // Later submissions fail; what is queued is still taken.
                    queue.close();
                    shared.stop.notify_one();
                    queue.recv_many(&mut jobs, max_batch).await
                }
            }
        };
        if n == 0 {
            break;
        }
        let mut events = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut stop = false;
        for job in jobs.drain(..) {
            match job {
                Job::Event { event, reply } => {
                    events.push(*event);
                    replies.push(reply);
                }
                Job::Stop => stop = true,
            }
        }
        if stop {
            shared.stop.notify_one();
        }
        // Large events are committed a few MiB at a time: a driver's send buffer grows to the
        // largest batch it ever sent and keeps that size, so the bytes of one batch, not only
        // its count, must stay small (the memory budget does not see those buffers).
        let mut replies = replies.into_iter();
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let mut bytes = 0;
            let mut batch = Vec::new();
            while let Some(e) = events.next_if(|e| {
                bytes += e.payload.bytes.len();
                batch.is_empty() || bytes <= MAX_BATCH_BYTES
            }) {
                batch.push(e);
            }
            let batch_replies: Vec<_> = replies.by_ref().take(batch.len()).collect();
            write_events(
                &mut writer,
                batch,
                batch_replies,
                &counters,
                &health,
                &metrics,
            )
            .await;
        }
    }
    // The last batch saw nothing waiting and wrote the journal unless it failed.
    if let Err(e) = writer.flush_journal().await {
        tracing::error!(error = %e, "aggregate journal not written at stop; the next start will");
    }
    tracing::debug!("writer drained and stopped");
}

/// Commits the collected events in one batch and answers their requests. The events are let
/// go before the answers: an answered request gives its bytes back to the memory budget, so
/// nothing it charged may outlive the answer.
async fn write_events(
    writer: &mut Writer,
    events: Vec<NewEvent>,
    replies: Vec<oneshot::Sender<Outcome>>,
    counters: &Counters,
    health: &StorageHealth,
    metrics: &crate::metrics::Metrics,
) {
    if events.is_empty() {
        return;
    }
    let n = events.len();
    let started = Instant::now();
    let results: Vec<Outcome> = match writer.write_batch(&events).await {
        Ok(results) => {
            health.committed();
            committed(metrics, writer);
            results.into_iter().map(Outcome::Stored).collect()
        }
        Err(e) if e.is_storage_fault() => {
            // Every event would fail the same way: the whole batch is refused (503) and the
            // next one tries again, on a fresh connection.
            metrics.db_error("write_batch");
            health.failed(&e.to_string());
            (0..n).map(|_| Outcome::Fault).collect()
        }
        Err(e) => {
            // One bad row must not fail its neighbours: retry each event on its own.
            tracing::warn!(error = %e, n, "batch failed; retrying one by one");
            metrics.db_error("write_batch");
            let mut out = Vec::with_capacity(n);
            for ev in events.chunks(1) {
                match writer.write_batch(ev).await {
                    Ok(mut r) => {
                        health.committed();
                        committed(metrics, writer);
                        out.push(r.pop().map_or(Outcome::Failed, Outcome::Stored))
                    }
                    Err(e) if e.is_storage_fault() => {
                        metrics.db_error("write_batch");
                        health.failed(&e.to_string());
                        out.push(Outcome::Fault);
                    }
                    Err(e) => {
                        metrics.db_error("write_batch");
                        tracing::error!(error = %e, "event could not be stored");
                        out.push(Outcome::Failed);
                    }
                }
            }
            out
        }
    };
    counters.batches.fetch_add(1, Ordering::Relaxed);
    metrics.batch(n, started.elapsed());
    drop(events);
    for (reply, result) in replies.into_iter().zip(results) {
        if let Outcome::Stored(r) = &result {
            let counter = if r.inserted {
                &counters.events_stored
            } else {
                &counters.events_duplicate
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // The requester may have gone away; the event is stored all the same.
        let _ = reply.send(result);
    }
    let elapsed = started.elapsed();
    if elapsed > Duration::from_secs(1) {
        tracing::warn!(?elapsed, "slow batch commit");
    }
    tracing::debug!(n, ?elapsed, "batch committed");
}

/// Counts what a committed batch did to issues: only after its commit, since a batch that
/// rolled back is written again and would count twice.
fn committed(metrics: &crate::metrics::Metrics, writer: &Writer) {
    let t = writer.last_transitions();
    metrics.transitions(t.created, t.regressed, t.unmuted);
}

/// A cached answer: the key's project (None: no such key) and when it was looked up (µs).
type KeyEntry = (Option<i64>, i64);

/// Public key -> project id, so that authenticating a request rarely touches the database.
/// Unknown keys are remembered briefly too, so a client with a wrong key cannot make every
/// request a query.
///
/// A key can be turned off or revoked, and its project deleted, through any process: a known
/// key is looked up again once its answer is a second old (clock time), so every process
/// refuses it within a second; a key turned back on (or a new one) is taken within a second
/// as well. One indexed read per key per second is nothing, and a flood of made-up keys costs
/// one read per new key whatever the lifetime.
#[derive(Clone)]
pub struct KeyCache {
    store: Store,
    clock: Clock,
    known: Arc<RwLock<HashMap<String, KeyEntry>>>,
}

impl KeyCache {
    /// How long an answer (a project, or none) is trusted.
    const TTL_US: i64 = 1_000_000;
    const MAX_ENTRIES: usize = 10_000;

    pub fn new(store: Store, clock: Clock) -> KeyCache {
        KeyCache {
            store,
            clock,
            known: Arc::default(),
        }
    }

    /// The project id of an active public key of a live project, or None.
    pub async fn project_of(&self, key: &str) -> Result<Option<i64>, crate::store::StoreError> {
        let now = self.clock.now().timestamp_micros();
        if let Some(&(project, at)) = self.known.read().ok().as_ref().and_then(|m| m.get(key)) {
            // `at <= now`: a manual clock moved back does not keep an answer forever.
            if at <= now && now - at < Self::TTL_US {
                return Ok(project);
            }
        }
        let project = self.store.project_by_key(key).await?.map(|p| p.id);
        if let Ok(mut m) = self.known.write() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            m.insert(key.to_string(), (project, now));
        }
        Ok(project)
    }

    /// Forgets what this process knows of `key`, so that a change made here applies to the
    /// next request at once (other processes follow within `TTL_US`).
    pub fn forget(&self, key: &str) {
        if let Ok(mut m) = self.known.write() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_in_both_forms() {
        let a = parse_event_id("9ec79c33ec9942ab8353589fcb2e04dc").unwrap();
        let b = parse_event_id("9EC79C33-EC99-42AB-8353-589FCB2E04DC").unwrap();
        assert_eq!(a, b);
        assert_eq!(parse_event_id("xyz"), None);
        assert_eq!(
            parse_event_id("{9ec79c33-ec99-42ab-8353-589fcb2e04dc}"),
            None
        );
    }

    #[test]
    fn header_id_wins_and_drift_is_corrected() {
        let json =
            br#"{"event_id":"00000000000000000000000000000001","message":"m","timestamp":1000.0}"#;
        let p = prepare(
            1,
            &ProjectGrouping::default(),
            Some("00000000000000000000000000000002"),
            json,
            || StoredPayload::compress(json),
            5000.0,
            Some(4000.0),
        )
        .unwrap();
        assert_eq!(p.event_id_hex, "00000000000000000000000000000002");
        assert_eq!(p.event.timestamp_us, 2_000_000_000);
    }

    #[test]
    fn missing_ids_are_generated() {
        let p = prepare(
            1,
            &ProjectGrouping::default(),
            None,
            b"{}",
            || StoredPayload::compress(b"{}"),
            1.0,
            None,
        )
        .unwrap();
        assert_eq!(p.event_id_hex.len(), 32);
        assert!(!p.event.hashes.is_empty());
    }
}
