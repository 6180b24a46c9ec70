//! The background worker: claims due outbox rows, delivers them and records every attempt.

use super::deliver::{deliver, SmtpSettings};
use super::render::{render, AlertInput};
use crate::clock::Clock;
use crate::issue::model::Issue;
use crate::store::alerts::{Attempt, OutboxRow};
use crate::store::Store;
use std::future::Future;
use std::time::Duration;

/// When failed deliveries are tried again, and when they are given up.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failure; each further failure doubles it.
    pub base: Duration,
    pub max_delay: Duration,
    /// Attempts in all, the first included; the last failure marks the alert `failed`.
    pub max_attempts: u32,
    /// Adds up to 20% to each wait so that alerts failing together do not retry together.
    /// Off by default so that tests can compute the schedule.
    pub jitter: bool,
    /// How long a claimed row stays hidden from other claimers; longer than any delivery.
    pub lease: Duration,
    /// Rows claimed (and delivered concurrently) per round.
    pub batch: i64,
}

impl Default for RetryPolicy {
    /// 30 s, 1 min, 2 min, ... 32 min: eight attempts span about an hour.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            max_attempts: 8,
            jitter: false,
            lease: Duration::from_secs(120),
            batch: 32,
        }
    }
}

impl RetryPolicy {
    /// After a failed attempt when `previous` attempts had been made before it: when to try
    /// again (µs), or `None` to give up (the attempt limit is reached, or it cannot succeed).
    pub fn retry_at(&self, previous: i64, permanent: bool, now_us: i64) -> Option<i64> {
        if permanent || previous + 1 >= i64::from(self.max_attempts.max(1)) {
            return None;
        }
        let wait = i64::try_from(self.backoff(previous).as_micros()).unwrap_or(i64::MAX);
        Some(now_us.saturating_add(wait))
    }

    /// The wait after a failed attempt when `previous` attempts had failed before it:
    /// `base * 2^previous`, capped at `max_delay`.
    pub fn backoff(&self, previous: i64) -> Duration {
        let exp = previous.clamp(0, 30) as u32;
        let delay = self
            .base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        if self.jitter {
            delay.mul_f64(1.0 + rand::random_range(0.0..0.2))
        } else {
            delay
        }
    }
}

/// Delivers what the outbox holds. Cheap to share: every field is a handle.
#[derive(Debug, Clone)]
pub struct AlertWorker {
    pub store: Store,
    pub clock: Clock,
    pub http: reqwest::Client,
    pub smtp: SmtpSettings,
    /// Base URL for issue links, without a trailing slash.
    pub public_url: String,
    pub org: String,
    pub policy: RetryPolicy,
    /// Names this process in the leases it takes (`host:pid:random`).
    pub instance: String,
    /// Where attempts are counted (`/metrics`); the server sets its own.
    pub metrics: crate::metrics::Metrics,
    /// Where `run` reports each round (`/health`); the server sets its own.
    pub heartbeats: crate::health::Heartbeats,
}

impl AlertWorker {
    /// A worker with its own HTTP client and the default retry policy.
    pub fn new(
        store: Store,
        clock: Clock,
        smtp: SmtpSettings,
        public_url: String,
        org: String,
    ) -> Result<AlertWorker, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(super::deliver::DEFAULT_TIMEOUT)
            .build()?;
        Ok(AlertWorker {
            store,
            clock,
            http,
            smtp,
            public_url: public_url.trim_end_matches('/').to_string(),
            org,
            policy: RetryPolicy::default(),
            instance: instance_id(),
            metrics: crate::metrics::Metrics::default(),
            heartbeats: crate::health::Heartbeats::default(),
        })
    }

    /// Claims the alerts due now, delivers them concurrently and records each attempt.
    /// Returns how many were attempted (delivered or not).
    pub async fn run_due(&self) -> usize {
        let now = self.clock.now().timestamp_micros();
        let lease = i64::try_from(self.policy.lease.as_micros()).unwrap_or(i64::MAX);
        let rows = match self
            .store
            .claim_due_alerts(
                &self.instance,
                now,
                now.saturating_add(lease),
                self.policy.batch.max(1),
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                self.metrics.db_error("claim_alerts");
                tracing::warn!(error = %e, "could not claim due alerts");
                return 0;
            }
        };
        let n = rows.len();
        futures_util::future::join_all(rows.iter().map(|row| self.attempt(row))).await;
        n
    }

    /// Delivers every second until `shutdown` resolves. Shutdown is noticed between rounds
    /// (a round is bounded by the delivery timeouts); an alert whose attempt was not recorded
    /// keeps its lease and is tried again after the next start.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    // A full batch means more may be due: go again at once, still
                    // checking for shutdown between rounds.
                    let attempted = self.run_due().await;
                    self.heartbeats.beat("alerts", self.clock.now().timestamp_micros());
                    if attempted as i64 >= self.policy.batch.max(1) {
                        tick.reset_immediately();
                    }
                }
            }
        }
        tracing::debug!("alert worker stopped");
    }

    async fn attempt(&self, row: &OutboxRow) {
        let attempt = self.try_deliver(row).await;
        let now = self.clock.now().timestamp_micros();
        match &attempt {
            Attempt::Delivered { .. } => {
                self.metrics.alert("delivered");
                tracing::info!(alert = row.id, kind = %row.kind, "alert delivered")
            }
            Attempt::Retry { error, .. } => {
                self.metrics.alert("retry");
                tracing::info!(alert = row.id, attempts = row.attempts + 1, %error, "alert delivery failed; will retry")
            }
            Attempt::GaveUp { error, .. } => {
                self.metrics.alert("failed");
                tracing::warn!(alert = row.id, attempts = row.attempts + 1, %error, "alert delivery given up")
            }
        }
        match self.store.record_attempt(row, &attempt, now).await {
            Ok(true) => {}
            // Our lease ran out and another process took the row over: its attempt counts.
            Ok(false) => tracing::warn!(
                alert = row.id,
                "alert lease lost before its attempt was recorded"
            ),
            // The lease runs out and the row is claimed again: a repeat, never a loss.
            Err(e) => {
                self.metrics.db_error("record_alert");
                tracing::error!(alert = row.id, error = %e, "could not record an alert attempt")
            }
        }
    }

    async fn try_deliver(&self, row: &OutboxRow) -> Attempt {
        let gave_up = |error: String| Attempt::GaveUp {
            status: None,
            error,
        };
        let channel = match self.store.channel(row.channel_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return gave_up(format!("channel {} was deleted", row.channel_id)),
            Err(e) => return self.failed(row, None, format!("database: {e}"), false),
        };
        // The issue as it was at its transition (written with the alert); rows written before
        // snapshots existed fall back to the issue as it is now.
        let issue = match snapshot(&row.payload) {
            Some(i) => i,
            None => match self.store.issue(row.issue_id).await {
                Ok(Some(i)) => i,
                Ok(None) => return gave_up(format!("issue {} no longer exists", row.issue_id)),
                Err(e) => return self.failed(row, None, format!("database: {e}"), false),
            },
        };
        let rendered = render(&AlertInput {
            kind: &row.kind,
            payload: &row.payload,
            issue: &issue,
            public_url: &self.public_url,
            org: &self.org,
            idempotency_key: &row.idempotency_key,
            sent_at_us: self.clock.now().timestamp_micros(),
        });
        match deliver(
            &channel,
            &rendered,
            &row.idempotency_key,
            &self.http,
            &self.smtp,
        )
        .await
        {
            Ok(status) => Attempt::Delivered {
                status: status.map(i64::from),
            },
            Err(e) => {
                let permanent = e.is_permanent();
                self.failed(row, e.status(), e.to_string(), permanent)
            }
        }
    }

    /// Retry later, or give up when this was the last attempt allowed (or cannot succeed).
    fn failed(
        &self,
        row: &OutboxRow,
        status: Option<u16>,
        error: String,
        permanent: bool,
    ) -> Attempt {
        let status = status.map(i64::from);
        let now = self.clock.now().timestamp_micros();
        match self.policy.retry_at(row.attempts, permanent, now) {
            Some(next_at) => Attempt::Retry {
                status,
                error,
                next_at,
            },
            None => Attempt::GaveUp { status, error },
        }
    }
}

/// The issue snapshot an outbox payload carries (`{"issue": {...}}`), if it has one.
fn snapshot(payload: &str) -> Option<Issue> {
    let mut v: serde_json::Value = serde_json::from_str(payload).ok()?;
    serde_json::from_value(v.get_mut("issue")?.take()).ok()
}

/// This process's name in leases: which process holds a claimed row, for operators and tests.
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (0..9).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(p.backoff(-1), p.base);
        assert_eq!(p.backoff(i64::MAX), p.max_delay);
    }

    #[test]
    fn jitter_adds_at_most_a_fifth() {
        let p = RetryPolicy {
            jitter: true,
            ..RetryPolicy::default()
        };
        for _ in 0..100 {
            let d = p.backoff(1);
            assert!(
                d >= Duration::from_secs(60) && d <= Duration::from_secs(72),
                "{d:?}"
            );
        }
    }
}
