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
    /// Decompressed body cap: a decompression bomb stops here.
    pub max_decoded: usize,
    /// Events waiting for the writer; past this the server answers 503.
    pub queue_capacity: usize,
    /// Events committed in one transaction at most.
    pub max_batch: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 20 * 1024 * 1024,
            max_decoded: 100 * 1024 * 1024,
            queue_capacity: 4096,
            max_batch: 1024,
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
