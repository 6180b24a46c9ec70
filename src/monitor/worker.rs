//! The monitors' periodic work: missed deadlines and timeouts, the incident events they cause (through the normal ingestion pipeline), and the resolves recoveries cause.

use super::failure_event;
use crate::clock::Clock;
use crate::health::Heartbeats;
use crate::issue::request::Change;
use crate::issue::state::Actor;
use crate::payload::StoredPayload;
use crate::pipeline::Pipeline;
use crate::project_grouping::GroupingCache;
use crate::store::monitors::PendingEvent;
use crate::store::Store;
use std::future::Future;
use std::time::Duration;

/// Environments claimed, events submitted and resolves applied per round, at most.
const BATCH: i64 = 64;
/// How long a claimed resolve stays hidden from other processes.
const RESOLVE_LEASE: Duration = Duration::from_secs(60);

/// What a round needs from the running server. Handles only; the HTTP layer's `AppState`
/// is not used here, so that `monitor` does not import `http` (which imports `monitor`).
#[derive(Clone)]
pub struct Server {
    pub store: Store,
    pub clock: Clock,
    /// Each project's grouping, to group the failure events as ingestion does.
    pub grouping: GroupingCache,
    /// Where failure events are submitted, as if an SDK had sent them.
    pub pipeline: Pipeline,
    pub heartbeats: Heartbeats,
}

/// Runs the monitors' rounds. Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct MonitorWorker {
    state: Server,
    /// Names this process in the leases it takes.
    pub instance: String,
}

impl MonitorWorker {
    pub fn new(state: Server, instance: String) -> MonitorWorker {
        MonitorWorker { state, instance }
    }

    /// One round: record missed check-ins and timeouts, submit the incident events still
    /// pending, apply the resolves whose events are all stored. Returns how many things it
    /// did. Every step is safe to repeat and to run in several processes at once.
    pub async fn run_due(&self) -> usize {
        let now = self.state.clock.now().timestamp_micros();
        let mut done = 0;
        // Deadlines first, until a round finds none, so that a batch limit never delays
        // them to the next second.
        loop {
            match self.state.store.monitor_deadlines(now, BATCH).await {
                Ok(n) if n.total() == 0 => break,
                Ok(n) => {
                    for _ in 0..n.missed {
                        crate::metrics::checkin("missed");
                    }
                    for _ in 0..n.timeouts {
                        crate::metrics::checkin("timeout");
                    }
                    done += n.total();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "monitor deadlines failed");
                    break;
                }
            }
        }
        done += self.submit_pending().await;
        done += self.apply_resolves(now).await;
        // A resolve unblocks the failures recorded after its recovery.
        done += self.submit_pending().await;
        done
    }

    /// Submits the pending failure events (their ids are derived from their check-in rows,
    /// so a repeat, from this process or another, is stored once).
    pub async fn submit_pending(&self) -> usize {
        let pending = match self.state.store.pending_monitor_events(BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not read pending monitor events");
                return 0;
            }
        };
        let mut n = 0;
        for ev in &pending {
            match self.submit(ev).await {
                Ok(()) => n += 1,
                Err(e) => {
                    tracing::warn!(error = %e, checkin = ev.checkin_id, "monitor event not stored yet");
                    break;
                }
            }
        }
        n
    }

    async fn submit(&self, ev: &PendingEvent) -> Result<(), String> {
        let id = uuid::Uuid::parse_str(&ev.event_id).map_err(|e| e.to_string())?;
        let at = ev.at as f64 / 1e6;
        let json = failure_event(&id, &ev.slug, &ev.environment, &ev.reason, at);
        let grouping = self
            .state
            .grouping
            .of(ev.project_id)
            .await
            .map_err(|e| e.to_string())?;
        let prepared = crate::pipeline::prepare(
            ev.project_id,
            &grouping,
            Some(&ev.event_id),
            &json,
            || StoredPayload::compress(&json),
            self.state.clock.now_secs(),
            None,
        )
        .map_err(|e| e.to_string())?;
        let stored = self
            .state
            .pipeline
            .submit(prepared.event)
            .await
            .map_err(|e| e.to_string())?;
        self.state
            .store
            .monitor_event_stored(ev, stored.issue_id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn apply_resolves(&self, now: i64) -> usize {
        let lease = i64::try_from(RESOLVE_LEASE.as_micros()).unwrap_or(i64::MAX);
        let claimed = match self
            .state
            .store
            .claim_monitor_resolves(&self.instance, now, now.saturating_add(lease), BATCH)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim monitor resolves");
                return 0;
            }
        };
        let mut n = 0;
        for r in &claimed {
            // Already resolved (a repeat after a crash, or a person did it) is a refusal:
            // nothing changes, and the recovery is done either way.
            let resolved = self
                .state
                .store
                .change_status(&[r.issue_id], &Change::Resolve, Actor::System, now)
                .await;
            if let Err(e) = resolved {
                tracing::warn!(error = %e, issue = r.issue_id, "monitor resolve failed");
                continue;
            }
            match self.state.store.monitor_resolved(r).await {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(error = %e, "monitor resolve not recorded"),
            }
        }
        n
    }

    /// Runs a round every second until `shutdown` resolves, beating `monitors` after each.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    self.run_due().await;
                    let now = self.state.clock.now().timestamp_micros();
                    self.state.heartbeats.beat("monitors", now);
                }
            }
        }
    }
}
