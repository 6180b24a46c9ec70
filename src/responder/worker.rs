//! The responder worker: claims due action runs, checks the issue is still open, delivers
//! through the alert channels' code and records every attempt.

use crate::alert::deliver::{deliver, SmtpSettings};
use crate::alert::render::{render, AlertInput};
use crate::alert::worker::{instance_id, RetryPolicy};
use crate::clock::Clock;
use crate::health::Heartbeats;
use crate::store::alerts::Channel;
use crate::store::responders::ActionRun;
use crate::store::Store;
use std::future::Future;
use std::time::Duration;

/// The outbox `kind` of a responder's message, as receivers see it (`X-Stackhound-Event`).
pub const KIND: &str = "responder";

/// Runs due responder actions. Cheap to share: every field is a handle.
#[derive(Debug, Clone)]
pub struct ResponderWorker {
    pub store: Store,
    pub clock: Clock,
    pub http: reqwest::Client,
    pub smtp: SmtpSettings,
    pub public_url: String,
    pub org: String,
    /// Backoff, attempt limit, lease and batch, as for alerts.
    pub policy: RetryPolicy,
    /// Names this process in the leases it takes.
    pub instance: String,
    pub heartbeats: Heartbeats,
}

/// How one attempt of a run ended.
enum Outcome {
    Delivered(Option<i64>),
    Retry(Option<i64>, String, i64),
    Failed(Option<i64>, String),
    /// The issue is no longer open (or no longer exists): the run is cancelled, not taken.
    Cancelled(&'static str),
}

impl ResponderWorker {
    pub fn new(
        store: Store,
        clock: Clock,
        smtp: SmtpSettings,
        public_url: String,
        org: String,
        heartbeats: Heartbeats,
    ) -> Result<ResponderWorker, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(crate::alert::deliver::DEFAULT_TIMEOUT)
            .build()?;
        Ok(ResponderWorker {
            store,
            clock,
            http,
            smtp,
            public_url: public_url.trim_end_matches('/').to_string(),
            org,
            policy: RetryPolicy::default(),
            instance: instance_id(),
            heartbeats,
        })
    }

    /// Claims the runs due now, runs them concurrently and records each attempt. Returns how
    /// many runs were claimed (taken, failed or cancelled).
    pub async fn run_due(&self) -> usize {
        let now = self.clock.now().timestamp_micros();
        let lease = i64::try_from(self.policy.lease.as_micros()).unwrap_or(i64::MAX);
        let runs = match self
            .store
            .claim_due_actions(
                &self.instance,
                now,
                now.saturating_add(lease),
                self.policy.batch.max(1),
            )
            .await
        {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due responder actions");
                return 0;
            }
        };
        let n = runs.len();
        futures_util::future::join_all(runs.iter().map(|run| self.attempt(run))).await;
        self.heartbeats.beat("responders", now);
        n
    }

    /// Runs due actions every second until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    if self.run_due().await as i64 >= self.policy.batch.max(1) {
                        tick.reset_immediately();
                    }
                }
            }
        }
    }

    async fn attempt(&self, run: &ActionRun) {
        let outcome = self.try_run(run).await;
        let now = self.clock.now().timestamp_micros();
        crate::metrics::action(match &outcome {
            Outcome::Delivered(_) => "delivered",
            Outcome::Retry(..) => "retry",
            Outcome::Failed(..) => "failed",
            Outcome::Cancelled(_) => "cancelled",
        });
        let recorded = match &outcome {
            Outcome::Cancelled(reason) => self.store.cancel_claimed_action(run, reason, now).await,
            Outcome::Delivered(status) => {
                tracing::info!(run = run.id, issue = run.issue_id, "responder action taken");
                (self.store)
                    .record_action_attempt(run, "delivered", *status, None, now, now)
                    .await
            }
            Outcome::Retry(status, error, next_at) => {
                tracing::info!(run = run.id, attempts = run.attempts + 1, %error, "responder action failed; will retry");
                (self.store)
                    .record_action_attempt(run, "retry", *status, Some(error), *next_at, now)
                    .await
            }
            Outcome::Failed(status, error) => {
                tracing::warn!(run = run.id, attempts = run.attempts + 1, %error, "responder action given up");
                (self.store)
                    .record_action_attempt(run, "failed", *status, Some(error), now, now)
                    .await
            }
        };
        match recorded {
            Ok(true) => {}
            // The issue was resolved or muted meanwhile, or the lease passed to another process.
            Ok(false) => tracing::info!(
                run = run.id,
                "responder run changed hands before its attempt was recorded"
            ),
            Err(e) => {
                tracing::error!(run = run.id, error = %e, "could not record a responder attempt")
            }
        }
    }

    async fn try_run(&self, run: &ActionRun) -> Outcome {
        match self.store.issue_gate(run.issue_id).await {
            Ok(Some((status, merged))) => {
                if merged {
                    return Outcome::Cancelled("the issue was merged into another");
                }
                match status.as_str() {
                    "resolved" => return Outcome::Cancelled("the issue was resolved"),
                    "ignored" => return Outcome::Cancelled("the issue was muted"),
                    _ => {}
                }
            }
            Ok(None) => return Outcome::Cancelled("the issue no longer exists"),
            Err(e) => return self.failed(run, None, format!("database: {e}"), false),
        }
        let issue = match self.store.issue(run.issue_id).await {
            Ok(Some(i)) => i,
            Ok(None) => return Outcome::Cancelled("the issue no longer exists"),
            Err(e) => return self.failed(run, None, format!("database: {e}"), false),
        };
        let params: serde_json::Value = serde_json::from_str(&run.params).unwrap_or_default();
        // A run is written in the transaction that starts its episode: `created_at` is the
        // episode's start.
        let waited = (run.due_at - run.created_at).max(0) / 1_000_000;
        let payload = serde_json::json!({
            "reason": format!("still unresolved {} after its episode began", human(waited)),
            "level": issue.level,
        });
        let key = format!("responder:{}", run.id);
        let mut rendered = render(&AlertInput {
            kind: KIND,
            payload: &payload.to_string(),
            issue: &issue,
            public_url: &self.public_url,
            org: &self.org,
            idempotency_key: &key,
            sent_at_us: self.clock.now().timestamp_micros(),
        });
        if let Some(subject) = params["subject"].as_str() {
            rendered.email.subject = subject.to_string();
        }
        rendered.webhook["responder"] = serde_json::json!({
            "id": run.responder_id.to_string(),
            "action": run.action_index,
            "episode": run.episode_id.to_string(),
            "dueAt": crate::issue::view::iso(run.due_at),
        });
        // The alert channel of the same kind delivers it; an email channel names its
        // recipients `to`.
        let config = match run.target.as_str() {
            "email" => serde_json::json!({"to": params["recipients"]}).to_string(),
            _ => run.params.clone(),
        };
        let channel = Channel {
            id: 0,
            project_id: issue.project_id,
            kind: run.target.clone(),
            config,
            created_at: run.created_at,
        };
        match deliver(&channel, &rendered, &key, &self.http, &self.smtp).await {
            Ok(status) => Outcome::Delivered(status.map(i64::from)),
            Err(e) => {
                let permanent = e.is_permanent();
                self.failed(run, e.status(), e.to_string(), permanent)
            }
        }
    }

    fn failed(
        &self,
        run: &ActionRun,
        status: Option<u16>,
        error: String,
        permanent: bool,
    ) -> Outcome {
        let status = status.map(i64::from);
        let now = self.clock.now().timestamp_micros();
        match self.policy.retry_at(run.attempts, permanent, now) {
            Some(next_at) => Outcome::Retry(status, error, next_at),
            None => Outcome::Failed(status, error),
        }
    }
}

/// `30 s`, `30 min`, `2 h`: how long an issue has stayed open, for the message.
fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    }
}
