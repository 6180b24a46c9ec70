//! The ingest write path: a whole batch of accepted events in one transaction.
//!
//! Per batch, taking locks in one global order so that concurrent writers (PostgreSQL, any
//! number of processes) cannot deadlock: (1) claim the hash links of new issues, sorted by
//! (project, hash), each insert `ON CONFLICT DO NOTHING` so that two writers creating the same
//! issue meet on the hash and the loser joins the winner; (2) the projects' short-id counters,
//! by project id; (3) the events, sorted by (project, event id), a re-sent id skipped by the
//! unique key; (4) the releases seen first; (5) the touched issues `FOR NO KEY UPDATE` in id
//! order, loaded for the lifecycle planner (`store::lifecycle`), whose effects (counts,
//! transitions, history, outbox alerts, episodes) are applied before the one commit, with the
//! issues' aggregates (tag values, hourly counts, user sketches: `store::tags`), or their
//! journal entry, appended before the locks by a saturated writer. Counts therefore equal
//! stored events at every commit, and each decision is made from the locked, stored state.

use super::lifecycle;
use super::{chunk_sizes, placeholders, Conn, Db, Result, Store, StoreError, Tx};
use crate::clock::Clock;
use crate::event::{NewEvent, Stored};
use crate::issue::aggregate::{self, Sample};
use crate::issue::pending;
use crate::issue::plan::{self, BatchFacts, EventFact, ReleaseOrder};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

/// hash -> issue links already known to be committed; entries of a failed batch are never
/// added. A link changes only when a merge moves it to the merge's target: a batch that
/// reaches a merged issue finds out under the issue's row lock (`StaleLinks`), and its writer
/// clears this cache and runs the batch again.
#[derive(Debug, Default)]
pub struct HashCache {
    /// project id -> hash -> issue id (nested so a lookup by `&str` needs no allocation).
    links: HashMap<i64, HashMap<String, i64>>,
    len: usize,
}

impl HashCache {
    const MAX_ENTRIES: usize = 1_000_000;

    fn get(&self, project_id: i64, hash: &str) -> Option<i64> {
        self.links.get(&project_id)?.get(hash).copied()
    }

    fn insert(&mut self, project_id: i64, hash: &str, issue_id: i64) {
        let links = self.links.entry(project_id).or_default();
        if links.insert(hash.to_owned(), issue_id).is_none() {
            self.len += 1;
        }
    }

    /// Takes the links of a committed batch.
    fn merge(&mut self, batch: HashCache) {
        // A crude bound on memory: start over rather than track recency.
        if self.len + batch.len > Self::MAX_ENTRIES {
            self.links.clear();
            self.len = 0;
        }
        for (project_id, links) in batch.links {
            for (hash, issue_id) in links {
                self.insert(project_id, &hash, issue_id);
            }
        }
    }
}

/// How often a batch that hit a deadlock or serialization failure is tried again.
const MAX_RETRIES: u32 = 8;

/// One writer of the ingest path: its connection, held between batches (SQLite's one writer
/// keeps it for good), and caches of committed facts (hash links, which only a merge changes,
/// and release positions). On PostgreSQL several writers run side by side.
pub struct Writer {
    store: Store,
    clock: Clock,
    conn: Option<Conn>,
    cache: HashCache,
    releases: ReleaseOrder,
    /// What the last committed batch did to issues (for metrics, counted after the commit).
    last: Transitions,
    /// Requests admitted and not yet answered (the pipeline's count); without it the writer
    /// is never saturated and writes every batch's aggregates before its answers.
    in_flight: Option<InFlight>,
    /// The writers of this process, this one among them.
    crew: Arc<Crew>,
    /// Whether `crew` knows what `aggregate_journal` holds: not after a start (a crash may
    /// have left entries) or a failed flush, until this writer's next flush.
    journal_known: bool,
    /// Until when (µs) a writer between batches leaves a failed flush alone: during a storage
    /// fault the next batch tries it (and fails with a reason), not a loop every recheck.
    flush_retry_at_us: i64,
}

/// Counts requests admitted and not yet answered.
pub type InFlight = Arc<dyn Fn() -> usize + Send + Sync>;

/// What the writers of one process share: what they are writing, and what they held back in
/// `aggregate_journal` since its last flush. Saturation is judged against requests in flight
/// and peers, not the queue: with several writers (PostgreSQL) the queue is often empty for an
/// instant while every writer is busy and every connection waits on one.
#[derive(Debug, Default)]
pub struct Crew {
    /// Events in the batches being written now.
    writing: AtomicUsize,
    /// Writers writing a batch now.
    writers: AtomicUsize,
    /// Events whose aggregates were journaled since the last flush began.
    journaled: AtomicUsize,
    /// When the first of them was (µs; 0: none).
    since_us: AtomicI64,
}

/// Counts a batch's events in `Crew::writing` while it is written.
struct Writing(Arc<Crew>, usize);

impl Writing {
    fn new(crew: &Arc<Crew>, events: usize) -> Self {
        crew.writing.fetch_add(events, Ordering::SeqCst);
        crew.writers.fetch_add(1, Ordering::SeqCst);
        Writing(crew.clone(), events)
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(self.1, Ordering::SeqCst);
        self.0.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long aggregates may wait in the journal, and how many events' worth: bounds on how far
/// tag summaries, filtered lists and user counts lag the events under saturation.
const JOURNAL_MAX_US: i64 = 1_000_000;
const JOURNAL_MAX_EVENTS: usize = 50_000;

/// How long a writer between batches waits before it tries a failed flush again.
const FLUSH_RETRY_US: i64 = 1_000_000;

/// Where a batch's aggregates go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregation {
    /// Upserted with the batch (the journal is empty, nothing else waits).
    Direct,
    /// Appended to the journal: other requests wait for the writers.
    Journal,
    /// Appended to the journal, which is then flushed (after the commit, before the answers):
    /// nothing else waits, so the batch's answers come with every figure written.
    Flush,
}

/// Whether a crew's writers are saturated, and what the journal holds: everything a batch
/// needs to decide where its aggregates go, taken out of the writer so the batch can ask late.
#[derive(Clone)]
struct Saturation {
    in_flight: Option<InFlight>,
    crew: Arc<Crew>,
    journal_known: bool,
}

impl Saturation {
    /// Requests wait beyond the events being written, or peers write beside this writer.
    /// The second matters with several writers (PostgreSQL): clients that send again as soon
    /// as they are answered keep every request inside some batch at times, and a flush each
    /// time cost PostgreSQL about an eighth of its events/s. So with peers still writing, the
    /// flush is left to the last writer to finish a burst (`journal_due`).
    fn busy(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|f| {
            f() > self.crew.writing.load(Ordering::SeqCst)
                || self.crew.writers.load(Ordering::SeqCst) > 1
        })
    }

    /// See `Writer::journal_due`.
    fn journal_due(&self, now_us: i64) -> bool {
        if !self.journal_known {
            return true;
        }
        let events = self.crew.journaled.load(Ordering::SeqCst);
        if events == 0 {
            return false;
        }
        let since = self.crew.since_us.load(Ordering::SeqCst);
        let idle = self.in_flight.as_ref().is_none_or(|f| f() == 0);
        idle || events >= JOURNAL_MAX_EVENTS || now_us - since >= JOURNAL_MAX_US
    }

    /// Where the batch's aggregates go: the first batch after a start (or a failed flush)
    /// writes what the journal may hold; a saturated writer journals; others write directly,
    /// or flush what is held back along with theirs.
    fn aggregation(&self) -> Aggregation {
        if !self.journal_known {
            Aggregation::Flush
        } else if self.busy() {
            Aggregation::Journal
        } else if self.crew.journaled.load(Ordering::SeqCst) == 0 {
            Aggregation::Direct
        } else {
            Aggregation::Flush
        }
    }
}

/// Lifecycle transitions of one committed batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transitions {
    pub created: u64,
    pub regressed: u64,
    pub unmuted: u64,
}

impl Store {
    pub fn writer(&self, clock: Clock) -> Writer {
        Writer {
            store: self.clone(),
            clock,
            conn: None,
            cache: HashCache::default(),
            releases: ReleaseOrder::new(),
            last: Transitions::default(),
            in_flight: None,
            crew: Arc::default(),
            journal_known: false,
            flush_retry_at_us: 0,
        }
    }
}

impl Writer {
    /// The transitions of the batch `write_batch` last committed (zero after a failure).
    pub fn last_transitions(&self) -> Transitions {
        self.last
    }

    /// Lets the writer see how many requests wait for the writers (see `Saturation`).
    pub fn set_in_flight(&mut self, in_flight: InFlight) {
        self.in_flight = Some(in_flight);
    }

    /// Makes this writer one of `crew`, the writers of its process (see `Crew`).
    pub fn join(&mut self, crew: Arc<Crew>) {
        self.crew = crew;
    }

    fn saturation(&self) -> Saturation {
        Saturation {
            in_flight: self.in_flight.clone(),
            crew: self.crew.clone(),
            journal_known: self.journal_known,
        }
    }

    /// Whether the journal should be written now, between batches: the crew held aggregates
    /// back and no request is in flight any more, or they have waited their longest; or what
    /// the journal holds is not known (a start, a failed flush).
    pub fn journal_due(&self) -> bool {
        let now_us = self.clock.now().timestamp_micros();
        now_us >= self.flush_retry_at_us && self.saturation().journal_due(now_us)
    }

    /// Whether this process's writers hold aggregates back (`journal_due` will say when).
    pub fn holds_back(&self) -> bool {
        self.crew.journaled.load(Ordering::SeqCst) > 0
    }

    /// Writes what the journal holds (at start, what a crash left there; after a batch that
    /// found nothing waiting, what the batches before it held back; at a stop, the rest), in a
    /// transaction of its own that takes no lock but the shared ones on the issues it writes
    /// to: it may wait for a batch, never a batch for it in a circle. On PostgreSQL the
    /// flushes of all writers and processes take turns (an advisory lock).
    pub async fn flush_journal(&mut self) -> Result<()> {
        if self.journal_known && self.crew.journaled.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        // Cleared before the entries are taken: a batch journaled after this point counts
        // again, so its entries are flushed next time even if this snapshot misses them.
        let held = self.crew.journaled.swap(0, Ordering::SeqCst);
        self.crew.since_us.store(0, Ordering::SeqCst);
        // A writer that has not written yet holds no connection: it borrows one and hands it
        // back (a second writer of one SQLite file would wait for it otherwise).
        let borrowed = self.conn.is_none();
        if borrowed {
            self.conn = Some(self.store.write_conn().await?);
        }
        let result = match self.conn.as_mut() {
            Some(conn) => flush_journal(conn).await,
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                self.journal_known = true;
                if borrowed {
                    self.conn = None;
                }
                Ok(())
            }
            Err(e) => {
                if let Some(mut conn) = self.conn.take() {
                    on!(&mut conn, c => c.close_on_drop());
                }
                self.note_journaled(held.max(1));
                self.journal_known = false;
                self.flush_retry_at_us = self.clock.now().timestamp_micros() + FLUSH_RETRY_US;
                Err(e)
            }
        }
    }

    /// Counts events held back in the journal, and when the first was.
    fn note_journaled(&self, events: usize) {
        let now_us = self.clock.now().timestamp_micros();
        let _ = self
            .crew
            .since_us
            .compare_exchange(0, now_us, Ordering::SeqCst, Ordering::SeqCst);
        self.crew.journaled.fetch_add(events, Ordering::SeqCst);
    }

    /// Stores a batch in one transaction; the result is aligned with `batch`. A deadlock or
    /// serialization failure rolls the transaction back and runs it again.
    pub async fn write_batch(&mut self, batch: &[NewEvent]) -> Result<Vec<Stored>> {
        let _writing = Writing::new(&self.crew, batch.len());
        let mut attempt = 0;
        let mut reconnected = false;
        self.last = Transitions::default();
        loop {
            let now_us = self.clock.now().timestamp_micros();
            if self.conn.is_none() {
                self.conn = Some(self.store.write_conn().await?);
            }
            let saturation = self.saturation();
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let result = write_batch(conn, batch, &self.cache, &mut self.releases, now_us, || {
                saturation.aggregation()
            })
            .await;
            if result.is_err() {
                // Positions learnt in a rolled-back transaction may name releases that were
                // never stored: start over from the database (rare; no copy per batch).
                self.releases.clear();
            }
            match result {
                Ok((stored, fresh, transitions, aggregation)) => {
                    self.cache.merge(fresh);
                    self.last = transitions;
                    if aggregation != Aggregation::Direct {
                        self.note_journaled(batch.len());
                    }
                    // A batch that journaled while others waited flushes all the same if none
                    // waits any more: it may be the last of a burst (with several writers,
                    // a peer's flush could have missed its uncommitted entry).
                    let flush = match aggregation {
                        Aggregation::Direct => false,
                        Aggregation::Journal => !saturation.busy(),
                        Aggregation::Flush => true,
                    };
                    if flush {
                        // The events are committed, whatever becomes of the flush.
                        if let Err(e) = self.flush_journal().await {
                            tracing::warn!(error = %e, "aggregate journal not written; the next batch tries again");
                        }
                    }
                    return Ok(stored);
                }
                // A connection held between batches may have died meanwhile (a restarted or
                // failed-over server, `pg_terminate_backend`): once, the batch runs again on a
                // fresh one. Safe even if the lost commit had gone through: event ids are
                // unique, so a re-run stores and counts nothing twice.
                Err(e) if e.is_connection_lost() && !reconnected => {
                    reconnected = true;
                    tracing::debug!(error = %e, "writer connection lost; retrying on a fresh one");
                    if let Some(mut conn) = self.conn.take() {
                        on!(&mut conn, c => c.close_on_drop());
                    }
                }
                // A cached link named an issue merged since (`store::merge`): merges are rare,
                // so forget every link and run the batch again; it reads them afresh.
                Err(StoreError::StaleLinks) if attempt < MAX_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, "batch followed a link to a merged issue; retrying");
                    self.cache = HashCache::default();
                }
                Err(e) if e.is_retryable() && attempt < MAX_RETRIES => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "batch rolled back; retrying");
                    // A little spread so that the two sides of a deadlock do not meet again.
                    let ms = rand::random_range(1..=5u64) << attempt.min(5);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                Err(e) => {
                    // The connection may be broken, or left inside a transaction that failed
                    // to commit (a full disk): closed, never handed back to the pool, and a
                    // fresh one next time.
                    if let Some(mut conn) = self.conn.take() {
                        on!(&mut conn, c => c.close_on_drop());
                    }
                    return Err(e);
                }
            }
        }
    }
}

async fn write_batch(
    conn: &mut Conn,
    batch: &[NewEvent],
    cache: &HashCache,
    releases: &mut ReleaseOrder,
    now_us: i64,
    aggregation: impl FnOnce() -> Aggregation,
) -> Result<(Vec<Stored>, HashCache, Transitions, Aggregation)> {
    let started = std::time::Instant::now();
    let mut tx = conn.begin_write().await?;
    let resolved = resolve_issues(&mut tx, batch, cache).await?;
    let inserted = insert_events(&mut tx, batch, &resolved.issue_of).await?;
    let events_written = started.elapsed();
    // Journaled aggregates need no issue lock (their flush follows merges and deletions), so
    // they are appended before the issues are locked, outside the section writers queue on.
    let aggregation = aggregation();
    if aggregation != Aggregation::Direct {
        add_aggregates(&mut tx, batch, &resolved.issue_of, &inserted, aggregation).await?;
    }

    // The lifecycle: releases, locked issues, the plan, its effects.
    let new_releases = note_releases(&mut tx, batch, &inserted, releases, now_us).await?;
    let mut ids: Vec<i64> = resolved.issue_of.clone();
    for (project_id, _) in &new_releases {
        ids.extend(lifecycle::next_release_candidates(&mut tx, *project_id).await?);
    }
    ids.sort_unstable();
    ids.dedup();
    let issues = lifecycle::lock_issues(&mut tx, &ids, &resolved.created, true).await?;
    for issue in &issues {
        for r in issue.state.releases() {
            known_release(&mut tx, releases, issue.project_id, r).await?;
        }
    }
    let events: Vec<EventFact<'_>> = batch
        .iter()
        .zip(&resolved.issue_of)
        .zip(&inserted)
        .filter(|(_, &ins)| ins)
        .map(|((ev, &issue_id), _)| EventFact {
            issue_id,
            timestamp_us: ev.timestamp_us,
            release: ev.release.as_deref(),
            environment: ev.environment.as_deref(),
            level: ev.seed.level,
            user: ev.user_key.as_deref(),
        })
        .collect();
    let facts = BatchFacts {
        now: crate::clock::from_micros(now_us),
        issues,
        events,
        releases,
        new_releases,
    };
    let draft = plan::plan_batch(&facts);
    bump_issues(&mut tx, draft.counts()).await?;
    if aggregation == Aggregation::Direct {
        add_aggregates(&mut tx, batch, &resolved.issue_of, &inserted, aggregation).await?;
    }
    lifecycle::store_users(&mut tx, draft.users()).await?;
    let answers = lifecycle::answer(&mut tx, &draft.queries, now_us).await?;
    let effects = draft.finish(&facts, &answers);
    lifecycle::apply(&mut tx, &effects, &facts.issues, now_us).await?;
    let planned = started.elapsed();
    let mut transitions = Transitions {
        created: resolved.created.len() as u64,
        ..Transitions::default()
    };
    for step in &effects.steps {
        if let plan::What::Transition(t) = &step.what {
            match t.kind {
                crate::issue::state::TransitionKind::Regressed => transitions.regressed += 1,
                crate::issue::state::TransitionKind::Unmuted => transitions.unmuted += 1,
                _ => {}
            }
        }
    }
    tx.commit().await?;
    tracing::trace!(n = batch.len(), ?events_written, ?planned, committed = ?started.elapsed(), "batch phases");
    let created: HashSet<i64> = resolved.created.iter().map(|c| c.0).collect();
    let stored = resolved
        .issue_of
        .iter()
        .zip(&inserted)
        .map(|(&issue_id, &inserted)| Stored {
            issue_id,
            inserted,
            new_issue: created.contains(&issue_id),
        })
        .collect();
    Ok((stored, resolved.fresh, transitions, aggregation))
}

/// Where each event of a batch goes.
struct Resolution {
    /// Per event, its issue.
    issue_of: Vec<i64>,
    /// Issues this batch created, with their projects.
    created: Vec<(i64, i64)>,
    /// Links this batch found or wrote, trusted once it commits.
    fresh: HashCache,
}

/// An event's issue before new issues have ids: a known issue, or the n-th new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Issue(i64),
    New(usize),
}

/// Unlinked primary hashes, by (project, hash) -> the issue they will be linked to, and the
/// scheme that made them.
type Planned<'b> = HashMap<(i64, &'b str), (Target, &'b str)>;

/// Finds or creates the issue of every event.
async fn resolve_issues(
    tx: &mut Tx<'_>,
    batch: &[NewEvent],
    cache: &HashCache,
) -> Result<Resolution> {
    let mut fresh = HashCache::default();
    // Hashes nobody in this process knows yet: one look-up each (rare after warm-up).
    let mut asked: HashSet<(i64, &str)> = HashSet::new();
    for ev in batch {
        for h in &ev.hashes {
            if cache.get(ev.project_id, h).is_none() && asked.insert((ev.project_id, h)) {
                if let Some(id) = lookup_hash(tx, ev.project_id, h).await? {
                    fresh.insert(ev.project_id, h, id);
                }
            }
        }
    }
    let known = |p: i64, h: &str, fresh: &HashCache| cache.get(p, h).or_else(|| fresh.get(p, h));
    // During a grouping transition, an event none of whose primary hashes is linked looks for
    // the issue of its previous configuration's hashes (`project_grouping`).
    for ev in batch {
        if ev.secondary_hashes.is_empty()
            || ev
                .hashes
                .iter()
                .any(|h| known(ev.project_id, h, &fresh).is_some())
        {
            continue;
        }
        for h in &ev.secondary_hashes {
            if cache.get(ev.project_id, h).is_none() && asked.insert((ev.project_id, h)) {
                if let Some(id) = lookup_hash(tx, ev.project_id, h).await? {
                    fresh.insert(ev.project_id, h, id);
                }
            }
        }
    }

    // Each event joins the issue of its first linked hash, else (in a transition) the issue
    // of its first linked secondary hash, else an issue this batch creates (shared by later
    // events of the batch through their hashes).
    let mut new_issues: Vec<usize> = Vec::new(); // the event each new issue is seeded from
    let mut planned: Planned<'_> = HashMap::new();
    let mut targets: Vec<Target> = Vec::with_capacity(batch.len());
    for (i, ev) in batch.iter().enumerate() {
        let found = ev
            .hashes
            .iter()
            .find_map(|h| {
                known(ev.project_id, h, &fresh)
                    .map(Target::Issue)
                    .or_else(|| planned.get(&(ev.project_id, h.as_str())).map(|p| p.0))
            })
            .or_else(|| {
                (ev.secondary_hashes.iter())
                    .find_map(|h| known(ev.project_id, h, &fresh).map(Target::Issue))
            });
        let target = found.unwrap_or_else(|| {
            new_issues.push(i);
            Target::New(new_issues.len() - 1)
        });
        for h in &ev.hashes {
            if known(ev.project_id, h, &fresh).is_none() {
                planned
                    .entry((ev.project_id, h))
                    .or_insert((target, ev.grouping_version));
            }
        }
        targets.push(target);
    }
    if planned.is_empty() {
        let issue_of = targets
            .iter()
            .map(|t| match t {
                Target::Issue(id) => *id,
                Target::New(_) => 0,
            })
            .collect();
        return Ok(Resolution {
            issue_of,
            created: Vec::new(),
            fresh,
        });
    }

    // Claim the new links in one global order; a writer elsewhere may win some of them.
    if let Db::Sqlite(t) = tx {
        // New issues get their hash links before their rows (the order PostgreSQL needs to
        // claim hashes before taking other locks): check references at commit. (PostgreSQL's
        // reference is declared deferrable.)
        sqlx::query("PRAGMA defer_foreign_keys = ON")
            .execute(&mut **t)
            .await?;
    }
    let new_ids = allocate_issue_ids(tx, new_issues.len()).await?;
    let id_of = |t: Target| match t {
        Target::Issue(id) => id,
        Target::New(n) => new_ids[n],
    };
    let mut links: Vec<_> = planned.into_iter().collect();
    links.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut merged: HashMap<usize, i64> = HashMap::new();
    let mut claimed: Vec<(i64, &str, Target)> = Vec::new();
    for ((project_id, hash), (target, version)) in links {
        if claim_hash(tx, project_id, hash, id_of(target), version).await? {
            claimed.push((project_id, hash, target));
            continue;
        }
        // Another writer linked it first (and has committed, or we would still wait): a new
        // issue of ours that shares a hash with theirs is theirs.
        let winner = lookup_hash(tx, project_id, hash)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("hash {hash} lost and not found")))?;
        fresh.insert(project_id, hash, winner);
        if let Target::New(n) = target {
            merged.entry(n).or_insert(winner);
        }
    }
    for &(project_id, hash, target) in &claimed {
        if let Some(&winner) = match target {
            Target::New(n) => merged.get(&n),
            Target::Issue(_) => None,
        } {
            repoint_link(tx, project_id, hash, winner).await?;
        }
    }
    let final_id = |t: Target| match t {
        Target::New(n) => merged.get(&n).copied().unwrap_or(new_ids[n]),
        Target::Issue(id) => id,
    };
    for (project_id, hash, target) in claimed {
        fresh.insert(project_id, hash, final_id(target));
    }

    // Rows for the new issues that survived, with short numbers per project.
    let mut created = Vec::new();
    let mut per_project: Vec<(i64, Vec<usize>)> = Vec::new();
    for n in (0..new_issues.len()).filter(|n| !merged.contains_key(n)) {
        let project_id = batch[new_issues[n]].project_id;
        match per_project.iter_mut().find(|(p, _)| *p == project_id) {
            Some((_, list)) => list.push(n),
            None => per_project.push((project_id, vec![n])),
        }
    }
    per_project.sort_unstable_by_key(|(p, _)| *p);
    for (project_id, list) in per_project {
        let first_number = allocate_short_numbers(tx, project_id, list.len() as i64).await?;
        for (k, n) in list.into_iter().enumerate() {
            create_issue(
                tx,
                new_ids[n],
                first_number + k as i64,
                &batch[new_issues[n]],
            )
            .await?;
            created.push((new_ids[n], project_id));
        }
    }
    let issue_of = targets.into_iter().map(final_id).collect();
    Ok(Resolution {
        issue_of,
        created,
        fresh,
    })
}

async fn lookup_hash(tx: &mut Tx<'_>, project_id: i64, hash: &str) -> Result<Option<i64>> {
    let row: Option<(i64,)> = on!(tx, t => sqlx::query_as(
        "SELECT issue_id FROM grouping_hashes WHERE project_id = $1 AND hash = $2",
    )
    .bind(project_id)
    .bind(hash)
    .fetch_optional(&mut **t)
    .await)?;
    Ok(row.map(|r| r.0))
}

/// Links a hash to an issue unless it is linked already; true when this call linked it. On
/// PostgreSQL a concurrent, uncommitted link of the same hash makes this wait for its
/// transaction, then do nothing.
async fn claim_hash(
    tx: &mut Tx<'_>,
    project_id: i64,
    hash: &str,
    issue_id: i64,
    version: &str,
) -> Result<bool> {
    let done = on!(tx, t => sqlx::query(
        "INSERT INTO grouping_hashes (project_id, hash, issue_id, grouping_version)
         VALUES ($1, $2, $3, $4) ON CONFLICT (project_id, hash) DO NOTHING",
    )
    .bind(project_id)
    .bind(hash)
    .bind(issue_id)
    .bind(version)
    .execute(&mut **t)
    .await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// A link this transaction wrote for an issue it will not create goes to the winner.
async fn repoint_link(tx: &mut Tx<'_>, project_id: i64, hash: &str, to: i64) -> Result<()> {
    on!(tx, t => sqlx::query(
        "UPDATE grouping_hashes SET issue_id = $1 WHERE project_id = $2 AND hash = $3",
    )
    .bind(to)
    .bind(project_id)
    .bind(hash)
    .execute(&mut **t)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Ids for `n` new issues, before their rows exist (their hashes are claimed first).
async fn allocate_issue_ids(tx: &mut Tx<'_>, n: usize) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    match tx {
        // The write lock is ours until commit: nobody else can take these.
        Db::Sqlite(t) => {
            let (max,): (i64,) = sqlx::query_as("SELECT coalesce(max(id), 0) FROM issues")
                .fetch_one(&mut **t)
                .await?;
            Ok((1..=n as i64).map(|k| max + k).collect())
        }
        // Sequences never hand out a value twice, and never wait.
        Db::Postgres(t) => {
            let rows: Vec<(i64,)> = sqlx::query_as(
                "SELECT nextval(pg_get_serial_sequence('issues', 'id'))
                 FROM generate_series(1, $1)",
            )
            .bind(n as i64)
            .fetch_all(&mut **t)
            .await?;
            Ok(rows.into_iter().map(|r| r.0).collect())
        }
    }
}

/// Takes `n` consecutive short numbers of a project; returns the first.
async fn allocate_short_numbers(tx: &mut Tx<'_>, project_id: i64, n: i64) -> Result<i64> {
    let (first,): (i64,) = on!(tx, t => sqlx::query_as(
        "UPDATE projects SET next_short_id = next_short_id + $2 WHERE id = $1
         RETURNING next_short_id - $2",
    )
    .bind(project_id)
    .bind(n)
    .fetch_one(&mut **t)
    .await)?;
    Ok(first)
}

async fn create_issue(tx: &mut Tx<'_>, id: i64, number: i64, ev: &NewEvent) -> Result<()> {
    let s = &ev.seed;
    on!(tx, t => sqlx::query(
        "INSERT INTO issues (id, project_id, short_number, title, culprit, level, platform,
                             event_type, metadata, event_count, first_seen, last_seen, substatus)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $10, 'new')",
    )
    .bind(id)
    .bind(ev.project_id)
    .bind(number)
    .bind(&s.title)
    .bind(&s.culprit)
    .bind(s.level)
    .bind(&s.platform)
    .bind(s.event_type)
    .bind(&s.metadata)
    .bind(ev.timestamp_us)
    .execute(&mut **t)
    .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Inserts the events, sorted by (project, event id); returns for each whether it was new. An
/// id seen twice in one batch is inserted (and counted) at its first position only, like a
/// re-send in a later batch.
async fn insert_events(tx: &mut Tx<'_>, batch: &[NewEvent], issues: &[i64]) -> Result<Vec<bool>> {
    let mut first: HashMap<(i64, [u8; 16]), usize> = HashMap::with_capacity(batch.len());
    let mut todo = Vec::with_capacity(batch.len());
    for (i, ev) in batch.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) =
            first.entry((ev.project_id, ev.event_id))
        {
            e.insert(i);
            todo.push(i);
        }
    }
    todo.sort_unstable_by_key(|&i| (batch[i].project_id, batch[i].event_id));
    let mut inserted = vec![false; batch.len()];
    match tx {
        Db::Sqlite(t) => {
            // `INSERT OR IGNORE` skips re-sent ids; when a chunk inserts fewer rows than it
            // had, the rows it did insert are read back by rowid (this transaction is the only
            // writer, so they are the rows above the previous maximum). No `RETURNING` and no
            // pre-check: sqlx hands every result row across threads one by one, which cost
            // more than the insert itself.
            let mut start = 0;
            for size in chunk_sizes(todo.len()) {
                let chunk = &todo[start..start + size];
                start += size;
                let sql = format!(
                    "INSERT OR IGNORE INTO events (project_id, event_id, issue_id, timestamp,
                                                   received, payload_codec, payload)
                     VALUES {}",
                    placeholders(size, 7)
                );
                let mut q = sqlx::query(&sql);
                for &i in chunk {
                    let ev = &batch[i];
                    q = q
                        .bind(ev.project_id)
                        .bind(&ev.event_id[..])
                        .bind(issues[i])
                        .bind(ev.timestamp_us)
                        .bind(ev.received_us)
                        .bind(&ev.payload.codec)
                        .bind(&ev.payload.bytes);
                }
                let done = q.execute(&mut **t).await?;
                if done.rows_affected() as usize == size {
                    for &i in chunk {
                        inserted[i] = true;
                    }
                    continue;
                }
                let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT project_id, event_id FROM events WHERE id > $1 - $2 AND id <= $1",
                )
                .bind(done.last_insert_rowid())
                .bind(done.rows_affected() as i64)
                .fetch_all(&mut **t)
                .await?;
                mark_inserted(&first, rows, &mut inserted);
            }
        }
        Db::Postgres(t) => {
            // One statement of arrays for the whole batch. Another writer inserting the same
            // id makes this wait for it, then skip the row; RETURNING names the rows written.
            let mut projects = Vec::with_capacity(todo.len());
            let mut ids: Vec<&[u8]> = Vec::with_capacity(todo.len());
            let mut issue_ids = Vec::with_capacity(todo.len());
            let mut timestamps = Vec::with_capacity(todo.len());
            let mut received = Vec::with_capacity(todo.len());
            let mut codecs: Vec<&str> = Vec::with_capacity(todo.len());
            let mut payloads: Vec<&[u8]> = Vec::with_capacity(todo.len());
            for &i in &todo {
                let ev = &batch[i];
                projects.push(ev.project_id);
                ids.push(&ev.event_id[..]);
                issue_ids.push(issues[i]);
                timestamps.push(ev.timestamp_us);
                received.push(ev.received_us);
                codecs.push(&ev.payload.codec);
                payloads.push(&ev.payload.bytes);
            }
            let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "INSERT INTO events (project_id, event_id, issue_id, timestamp, received,
                                     payload_codec, payload)
                 SELECT * FROM UNNEST($1::int8[], $2::bytea[], $3::int8[], $4::int8[],
                                      $5::int8[], $6::text[], $7::bytea[])
                 ON CONFLICT (project_id, event_id) DO NOTHING
                 RETURNING project_id, event_id",
            )
            .bind(&projects)
            .bind(&ids)
            .bind(&issue_ids)
            .bind(&timestamps)
            .bind(&received)
            .bind(&codecs)
            .bind(&payloads)
            .fetch_all(&mut **t)
            .await?;
            mark_inserted(&first, rows, &mut inserted);
        }
    }
    Ok(inserted)
}

fn mark_inserted(
    first: &HashMap<(i64, [u8; 16]), usize>,
    rows: Vec<(i64, Vec<u8>)>,
    inserted: &mut [bool],
) {
    for (project_id, event_id) in rows {
        if let Ok(key) = <[u8; 16]>::try_from(event_id.as_slice()) {
            if let Some(&i) = first.get(&(project_id, key)) {
                inserted[i] = true;
            }
        }
    }
}

/// Records the releases of the stored events; returns those this batch saw first, in order.
async fn note_releases(
    tx: &mut Tx<'_>,
    batch: &[NewEvent],
    inserted: &[bool],
    releases: &mut ReleaseOrder,
    now_us: i64,
) -> Result<Vec<(i64, String)>> {
    // In first-seen order within the batch, each once.
    let mut order: Vec<(i64, &str)> = Vec::new();
    for (ev, _) in batch.iter().zip(inserted).filter(|(_, &ins)| ins) {
        let Some(release) = ev.release.as_deref() else {
            continue;
        };
        let key = (ev.project_id, release);
        let known = releases
            .get(&ev.project_id)
            .is_some_and(|m| m.contains_key(release));
        if !known && !order.contains(&key) {
            order.push(key);
        }
    }
    if order.is_empty() {
        return Ok(Vec::new());
    }
    // SQLite's one writer numbers them in first-seen order; concurrent PostgreSQL writers
    // insert in one global order (the lock order), and any order among releases first seen in
    // the same instant is a first-seen order.
    let mut seen = order.clone();
    if let Db::Postgres(_) = tx {
        seen.sort_unstable();
    }
    let mut new = HashSet::new();
    for &(project_id, release) in &seen {
        let sql = match tx {
            // One writer at a time: the next position is the largest plus one.
            Db::Sqlite(_) => {
                "INSERT INTO releases (project_id, version, seq, first_seen)
                 VALUES ($1, $2, (SELECT coalesce(max(seq), 0) + 1 FROM releases
                                  WHERE project_id = $1), $3)
                 ON CONFLICT (project_id, version) DO NOTHING"
            }
            // `seq` comes from a sequence (the column default).
            Db::Postgres(_) => {
                "INSERT INTO releases (project_id, version, first_seen) VALUES ($1, $2, $3)
                 ON CONFLICT (project_id, version) DO NOTHING"
            }
        };
        let done = on!(tx, t => sqlx::query(sql)
            .bind(project_id)
            .bind(release)
            .bind(now_us)
            .execute(&mut **t)
            .await.map(|r| r.rows_affected()))?;
        if done == 1 {
            new.insert((project_id, release));
        }
        known_release(tx, releases, project_id, release).await?;
    }
    Ok(order
        .into_iter()
        .filter(|s| new.contains(s))
        .map(|(p, r)| (p, r.to_owned()))
        .collect())
}

/// Makes sure the release order knows `release`'s position, if the project has seen it.
async fn known_release(
    tx: &mut Tx<'_>,
    releases: &mut ReleaseOrder,
    project_id: i64,
    release: &str,
) -> Result<()> {
    if releases
        .get(&project_id)
        .is_some_and(|m| m.contains_key(release))
    {
        return Ok(());
    }
    let row: Option<(i64,)> = on!(tx, t => sqlx::query_as(
        "SELECT seq FROM releases WHERE project_id = $1 AND version = $2",
    )
    .bind(project_id)
    .bind(release)
    .fetch_optional(&mut **t)
    .await)?;
    if let Some((seq,)) = row {
        releases
            .entry(project_id)
            .or_default()
            .insert(release.to_owned(), seq as u64);
    }
    Ok(())
}

/// Adds the inserted events' tags, hours and users to their (locked) issues' aggregates
/// (`store::tags`), or to the journal (see `Writer::aggregation`).
async fn add_aggregates(
    tx: &mut Tx<'_>,
    batch: &[NewEvent],
    issue_of: &[i64],
    inserted: &[bool],
    aggregation: Aggregation,
) -> Result<()> {
    let samples: Vec<Sample<'_>> = batch
        .iter()
        .zip(issue_of)
        .zip(inserted)
        .filter(|(_, &ins)| ins)
        .map(|((ev, &issue_id), _)| Sample {
            issue_id,
            project_id: ev.project_id,
            timestamp_us: ev.timestamp_us,
            environment: ev.environment.as_deref(),
            tags: &ev.tags,
            user: ev.user_key.as_deref(),
        })
        .collect();
    match aggregation {
        Aggregation::Direct => super::tags::add(tx, &aggregate::aggregate(&samples)).await,
        _ if samples.is_empty() => Ok(()),
        // A flush follows the batch, in its own transaction (`Writer::flush_journal`).
        Aggregation::Journal | Aggregation::Flush => {
            super::tags::journal_append(tx, &pending::journal(&samples)).await
        }
    }
}

/// One flush of the journal (see `Writer::flush_journal`).
async fn flush_journal(conn: &mut Conn) -> Result<()> {
    let mut tx = conn.begin_write().await?;
    // Flushes wait for each other rather than skip: one skipped while another's snapshot
    // missed its entries would leave them unwritten until some later batch. This transaction
    // holds no other lock yet, so the wait cannot close a circle.
    if let Db::Postgres(t) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(JOURNAL_LOCK)
            .execute(&mut **t)
            .await?;
    }
    let started = std::time::Instant::now();
    let entries = flush_aggregates(&mut tx).await?;
    tx.commit().await?;
    tracing::debug!(entries, took = ?started.elapsed(), "aggregate journal flushed");
    Ok(())
}

/// The advisory lock PostgreSQL flushes of the journal take in turn ("SHJR").
const JOURNAL_LOCK: i64 = 0x5348_4A52;

/// Writes the journal's sums and empties it; returns how many entries it took. Rows summed
/// for an issue merged or deleted since go to the issue it was merged into, or nowhere.
async fn flush_aggregates(tx: &mut Tx<'_>) -> Result<usize> {
    let entries = super::tags::journal_take(tx).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let Some(sums) = pending::replay(entries.iter().map(Vec::as_slice)) else {
        // Only a foreign hand could write an entry this build cannot read: the sums it
        // stood for are lost, which is said, and the rest goes on.
        tracing::error!("aggregate journal entry unreadable; its tag and user figures are lost");
        return Ok(entries.len());
    };
    let live = super::tags::live_targets(tx, &sums.issues()).await?;
    let sums = sums.remap(|id| live.get(&id).copied());
    super::tags::add(tx, &sums.view()).await?;
    Ok(entries.len())
}

/// Adds the inserted events to their (locked) issues: count, first and last seen.
async fn bump_issues(tx: &mut Tx<'_>, counts: &[plan::CountUpdate]) -> Result<()> {
    match tx {
        // One statement for the whole batch: the rows as one JSON array of [id, n, first, last].
        Db::Sqlite(t) => {
            if counts.is_empty() {
                return Ok(());
            }
            let rows: Vec<[i64; 4]> = counts
                .iter()
                .map(|c| [c.issue_id, c.events, c.first_us, c.last_us])
                .collect();
            let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "UPDATE issues SET event_count = event_count + v.n,
                                   first_seen = min(first_seen, v.first),
                                   last_seen = max(last_seen, v.last)
                 FROM (SELECT value ->> 0 AS id, value ->> 1 AS n, value ->> 2 AS first,
                              value ->> 3 AS last FROM json_each($1)) AS v
                 WHERE issues.id = v.id",
            )
            .bind(json)
            .execute(&mut **t)
            .await?;
        }
        Db::Postgres(t) => {
            if counts.is_empty() {
                return Ok(());
            }
            let ids: Vec<i64> = counts.iter().map(|c| c.issue_id).collect();
            let ns: Vec<i64> = counts.iter().map(|c| c.events).collect();
            let firsts: Vec<i64> = counts.iter().map(|c| c.first_us).collect();
            let lasts: Vec<i64> = counts.iter().map(|c| c.last_us).collect();
            sqlx::query(
                "UPDATE issues SET event_count = event_count + v.n,
                                   first_seen = LEAST(first_seen, v.first),
                                   last_seen = GREATEST(last_seen, v.last)
                 FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[])
                      AS v (id, n, first, last)
                 WHERE issues.id = v.id",
            )
            .bind(&ids)
            .bind(&ns)
            .bind(&firsts)
            .bind(&lasts)
            .execute(&mut **t)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saturation(in_flight: Option<usize>, writing: usize, journaled: usize) -> Saturation {
        let crew = Arc::new(Crew::default());
        crew.writing.store(writing, Ordering::SeqCst);
        crew.journaled.store(journaled, Ordering::SeqCst);
        Saturation {
            in_flight: in_flight.map(|n| Arc::new(move || n) as InFlight),
            crew,
            journal_known: true,
        }
    }

    #[test]
    fn a_batch_journals_only_while_other_requests_wait() {
        // (requests in flight, events being written, events journaled) -> where they go.
        for (in_flight, writing, journaled, want) in [
            // Alone, or with every request in flight being written (the last batches of a
            // burst, one per writer): written before the answers.
            (40, 40, 0, Aggregation::Direct),
            (40, 40, 900, Aggregation::Flush),
            // Requests beyond the batches being written: journaled.
            (41, 40, 0, Aggregation::Journal),
            (256, 64, 900, Aggregation::Journal),
        ] {
            let s = saturation(Some(in_flight), writing, journaled);
            assert_eq!(s.aggregation(), want, "{in_flight} {writing} {journaled}");
        }
        // Or peers still writing beside this one (the last to finish flushes).
        let beside_a_peer = saturation(Some(40), 40, 0);
        beside_a_peer.crew.writers.store(2, Ordering::SeqCst);
        assert_eq!(beside_a_peer.aggregation(), Aggregation::Journal);
        // A writer outside the pipeline is never saturated.
        assert_eq!(saturation(None, 1, 0).aggregation(), Aggregation::Direct);
        // After a start the journal may hold a crash's leftovers: the first batch flushes.
        let mut fresh = saturation(Some(256), 64, 0);
        fresh.journal_known = false;
        assert_eq!(fresh.aggregation(), Aggregation::Flush);
    }

    #[test]
    fn held_back_aggregates_are_due_when_idle_or_old_or_many() {
        let held = |in_flight, journaled, since_us| {
            let s = saturation(Some(in_flight), 0, journaled);
            s.crew.since_us.store(since_us, Ordering::SeqCst);
            s
        };
        let now = 10_000_000;
        assert!(!held(256, 0, 0).journal_due(now), "nothing held back");
        assert!(
            !held(256, 900, now - 999_999).journal_due(now),
            "young, under load"
        );
        assert!(
            held(256, 900, now - JOURNAL_MAX_US).journal_due(now),
            "a second old"
        );
        assert!(
            held(256, JOURNAL_MAX_EVENTS, now).journal_due(now),
            "too many"
        );
        assert!(held(0, 1, now).journal_due(now), "no request in flight");
        let mut restarted = held(256, 0, 0);
        restarted.journal_known = false;
        assert!(restarted.journal_due(now), "what a crash left");
    }

    #[test]
    fn a_counted_batch_stops_counting_when_written() {
        let crew = Arc::new(Crew::default());
        {
            let _a = Writing::new(&crew, 64);
            let _b = Writing::new(&crew, 10);
            assert_eq!(crew.writing.load(Ordering::SeqCst), 74);
        }
        assert_eq!(crew.writing.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn chunks_cover_any_batch_with_few_sizes() {
        for n in 0..1000 {
            let sizes = chunk_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| crate::store::CHUNKS.contains(s)));
        }
    }

    #[test]
    fn placeholders_number_every_cell() {
        assert_eq!(placeholders(2, 2), "(?,?),(?,?)");
    }
}
