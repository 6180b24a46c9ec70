//! Typed settings shared by every subcommand: flags, `STACKHOUND_*` variables and defaults.

use clap::Args;

/// Settings every subcommand reads.
#[derive(Args, Clone)]
pub struct Common {
    /// Database URL; the default is an embedded SQLite file in the working directory.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://stackhound.db",
        global = true
    )]
    pub database_url: String,
    /// Base URL that clients reach this server at, used to build DSNs (default: http://<bind>).
    #[arg(long, env = "STACKHOUND_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// SMTP server for email alerts: smtp://[user:pass@]host[:port][?from=..&tls=starttls].
    #[arg(long, env = "STACKHOUND_SMTP_URL", global = true)]
    pub smtp_url: Option<String>,
    /// Organization slug of the `/api/0/` routes.
    #[arg(
        long,
        env = "STACKHOUND_ORG",
        default_value = "stackhound",
        global = true
    )]
    pub org: String,
    /// PostgreSQL: connections per process (writers, people's changes, workers, reads).
    #[arg(long, env = "STACKHOUND_DB_POOL", default_value_t = 10, global = true)]
    pub db_pool: u32,
    /// PostgreSQL: writer tasks committing ingest batches side by side (SQLite has one).
    #[arg(long, env = "STACKHOUND_WRITERS", default_value_t = 4, global = true)]
    pub writers: usize,
    /// Seconds a claimed alert stays hidden from other processes; a process that dies
    /// holding alerts leaves them to the others after this.
    #[arg(
        long,
        env = "STACKHOUND_ALERT_LEASE_SECS",
        default_value_t = 120,
        global = true
    )]
    pub alert_lease_secs: u64,
    /// Seconds a statement waits for a lock held elsewhere (SQLite's busy timeout,
    /// PostgreSQL's lock_timeout) before its batch fails with 503.
    #[arg(
        long,
        env = "STACKHOUND_DB_LOCK_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    pub db_lock_timeout_secs: u64,
}

// Hand-written so a password in the database URL never reaches a log line.
impl std::fmt::Debug for Common {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Common")
            .field("database_url", &redact_url(&self.database_url))
            .field("public_url", &self.public_url)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("org", &self.org)
            .field("db_pool", &self.db_pool)
            .field("writers", &self.writers)
            .field("alert_lease_secs", &self.alert_lease_secs)
            .field("db_lock_timeout_secs", &self.db_lock_timeout_secs)
            .finish()
    }
}

/// `scheme://user:secret@host` -> `scheme://user:***@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

impl Common {
    /// The public base URL without a trailing slash.
    pub fn public_url_or(&self, bind: &str) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bind}"))
            .trim_end_matches('/')
            .to_string()
    }
}

/// Server tuning with defaults that suit a 2-core machine.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Compressed request body cap (Sentry documents 20 MB).
    pub max_body: usize,
    /// Decompressed envelope cap: a decompression bomb stops here. Only the items we keep are
    /// held in memory; dropped ones (attachments, replays, ...) stream through.
    pub max_decoded: usize,
    /// Events in flight (admitted, queued or being written); past this the server answers 503
    /// before decoding anything.
    pub queue_capacity: usize,
    /// Events committed in one transaction at most.
    pub max_batch: usize,
    /// Bytes all in-flight ingestion requests may hold together (bodies, decoded events,
    /// prepared rows waiting for their commit).
    pub memory_budget: usize,
    /// How long a request waits for budget bytes before it is answered 503.
    pub budget_wait: std::time::Duration,
    /// How much of an oversized body is read and discarded after its 413, so that clients that
    /// send the whole body before reading the answer see the 413 instead of a broken pipe.
    pub drain_limit: usize,
    /// Seconds in the `X-Sentry-Rate-Limits` entry that tells SDKs which item categories this
    /// server drops (transactions, sessions, replays, ...); 0 sends none.
    pub dropped_retry_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 20 * 1024 * 1024,
            max_decoded: 100 * 1024 * 1024,
            queue_capacity: 1024,
            max_batch: 1024,
            memory_budget: 256 * 1024 * 1024,
            budget_wait: std::time::Duration::from_millis(500),
            drain_limit: 64 * 1024 * 1024,
            dropped_retry_secs: 3600,
        }
    }
}

/// Ingestion limits of `serve` as flags and `STACKHOUND_*` variables.
#[derive(Args, Clone, Debug)]
pub struct IngestArgs {
    /// MiB that all in-flight ingestion requests may hold together; past it requests wait
    /// briefly, then get 503 with Retry-After.
    #[arg(long, env = "STACKHOUND_INGEST_MEMORY_MIB", default_value_t = 256)]
    pub ingest_memory_mib: usize,
    /// Compressed request body cap in MiB (413 above it).
    #[arg(long, env = "STACKHOUND_MAX_BODY_MIB", default_value_t = 20)]
    pub max_body_mib: usize,
    /// Events in flight before the server answers 503 (the intake queue): about 0.1 s of
    /// work at full speed, so an admitted request waits little and the excess is refused early.
    #[arg(long, env = "STACKHOUND_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,
    /// Seconds SDKs are told to hold back item categories this server drops (transactions,
    /// spans, sessions, replays, profiles, attachments, ...); 0 tells them nothing.
    #[arg(long, env = "STACKHOUND_DROPPED_RETRY_SECS", default_value_t = 3600)]
    pub dropped_retry_secs: u64,
}

impl IngestArgs {
    /// The limits these flags set; the budget always holds at least one largest body and
    /// event.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        let max_body = self.max_body_mib.max(1) * 1024 * 1024;
        let memory_budget = (self.ingest_memory_mib * 1024 * 1024).max(max_body + 4 * 1024 * 1024);
        Limits {
            max_body,
            queue_capacity: self.queue_capacity.max(1),
            memory_budget,
            dropped_retry_secs: self.dropped_retry_secs,
            ..d
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            super::redact_url("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}

/// Connection limits of `serve` as flags and `STACKHOUND_*` variables; `http::serve` turns
/// them into its `ConnLimits` (the defaults here are those of `ConnLimits::default`).
#[derive(Args, Clone, Debug)]
pub struct ConnArgs {
    /// Connections served at once; one more is answered 503 with Retry-After and closed.
    /// Lowered at startup to fit the open-files limit (with 256 descriptors to spare).
    #[arg(long, env = "STACKHOUND_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a request head may take once it started arriving.
    #[arg(long, env = "STACKHOUND_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a connection may idle (no request in flight, nothing received) before it is
    /// closed.
    #[arg(long, env = "STACKHOUND_KEEPALIVE_TIMEOUT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive_timeout_secs: u64,
    /// Longest gap in seconds between two pieces of a request body.
    #[arg(long, env = "STACKHOUND_BODY_TIMEOUT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Connections the kernel queues before they are accepted (capped by net.core.somaxconn).
    #[arg(long, env = "STACKHOUND_LISTEN_BACKLOG", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub listen_backlog: u32,
    /// Seconds a stopping server waits for in-flight requests before closing their
    /// connections.
    #[arg(long, env = "STACKHOUND_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

/// The server's event retention (`serve`): what projects without their own setting keep.
#[derive(clap::Args, Clone, Debug)]
pub struct RetentionArgs {
    /// Days an event is kept after it arrived; 0: no age limit. A project's own
    /// `retention_days` overrides it.
    #[arg(long, env = "STACKHOUND_RETENTION_DAYS", default_value_t = 90)]
    pub retention_days: u32,
    /// How many of each project's newest events are kept; 0: no limit. A project's own
    /// `retention_max_events` overrides it.
    #[arg(
        long,
        env = "STACKHOUND_RETENTION_MAX_EVENTS",
        default_value_t = 100_000
    )]
    pub retention_max_events: u64,
}

impl RetentionArgs {
    /// The defaults these flags set (0 is no limit).
    pub fn defaults(&self) -> crate::store::retention::RetentionDefaults {
        crate::store::retention::RetentionDefaults {
            max_age_days: (self.retention_days > 0).then_some(i64::from(self.retention_days)),
            max_events: (self.retention_max_events > 0)
                .then(|| i64::try_from(self.retention_max_events).unwrap_or(i64::MAX)),
        }
    }
}
