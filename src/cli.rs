//! The command line: `serve`, `project`, `token`, `stress`, `bench-sink`.

use crate::alert::deliver::SmtpSettings;
use crate::app::{self, Settings};
use crate::clock::Clock;
use crate::config::{Common, ConnArgs, IngestArgs};
use crate::store::projects::{Project, ProjectLimits};
use crate::store::{Store, StoreOptions};
use crate::{stress, token};
use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "stackhound",
    version,
    about = "A Sentry-compatible error tracker"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (creates the database and a first project and token when empty).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "STACKHOUND_BIND", default_value = "127.0.0.1:8000")]
        bind: String,
        #[command(flatten)]
        ingest: IngestArgs,
        #[command(flatten)]
        conn: ConnArgs,
        #[command(flatten)]
        retention: crate::config::RetentionArgs,
        /// Days a project keeps hashing with its previous grouping configuration too, after
        /// the grouping scheme was upgraded or its rules changed, so events keep finding the
        /// issues they used to join (see README, Grouping).
        #[arg(
            long,
            env = "STACKHOUND_GROUPING_TRANSITION_DAYS",
            default_value_t = 30
        )]
        grouping_transition_days: u32,
    },
    /// Manage projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage a project's alert channels (webhook, Slack-compatible, email).
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Manage responders: ladders of actions taken while a matching issue stays open.
    #[command(subcommand)]
    Responder(ResponderCommand),
    /// Cron monitors (created by check-ins that carry `monitor_config`).
    #[command(subcommand)]
    Monitor(MonitorCommand),
    /// Send realistic error envelopes to a DSN and report throughput and latency.
    Stress(stress::StressArgs),
    /// A server that only reads request bodies: the HTTP ceiling for benchmarks.
    BenchSink {
        #[arg(long, default_value = "127.0.0.1:8001")]
        bind: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Create a project and print its DSN.
    Create {
        slug: String,
        #[arg(long)]
        name: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List projects with their DSNs.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show or switch a project's alerts (new issue, regression, unmute).
    Alerts {
        slug: String,
        #[arg(long, value_parser = on_off)]
        new_issue: Option<bool>,
        #[arg(long, value_parser = on_off)]
        regression: Option<bool>,
        #[arg(long, value_parser = on_off)]
        unmute: Option<bool>,
    },
    /// Show or set a project's limits; 0 clears one (no quota, the server's retention).
    Limits {
        slug: String,
        /// Events accepted per minute.
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
        rate_limit_minute: Option<i64>,
        /// Events accepted per hour.
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
        rate_limit_hour: Option<i64>,
        /// Days an event is kept (default: the server's --retention-days).
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
        retention_days: Option<i64>,
        /// How many of the project's newest events are kept (default: the server's
        /// --retention-max-events).
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..))]
        retention_max_events: Option<i64>,
        /// Print one JSON object (the API's field names).
        #[arg(long)]
        json: bool,
    },
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("'{s}': use on or off")),
    }
}

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Add a channel: `--kind webhook --url U [--secret S]`, `--kind slack --url U`,
    /// `--kind email --to a@example.com [--to ...]`.
    Add {
        project: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        to: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List a project's channels.
    List { project: String },
    /// Remove a channel.
    Remove { project: String, id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum MonitorCommand {
    /// List monitors with each environment's status and next expected check-in.
    List {
        /// Only this project's monitors.
        #[arg(long)]
        project: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ResponderCommand {
    /// Create a responder from one JSON document (`{"watch_pattern": ..., "actions": [...]}`,
    /// as `POST .../responders/` takes it); nothing is stored unless all of it is valid.
    Create {
        /// The document; `-` reads standard input.
        #[arg(long)]
        file: std::path::PathBuf,
        #[arg(long, default_value = "default")]
        project: String,
        /// Print the stored responder as JSON (the API's shape).
        #[arg(long)]
        json: bool,
    },
    /// List a project's responders.
    List {
        #[arg(long, default_value = "default")]
        project: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token; it is printed once and stored only hashed.
    Create {
        /// A scope in Sentry's names (`event:read`, `project:write`, `org:admin`...); repeat
        /// for more. None: every scope.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// What lists show to tell tokens apart.
        #[arg(long, default_value = "cli")]
        label: String,
        /// Print one JSON object (`id`, `token`, `label`, `scopes`).
        #[arg(long)]
        json: bool,
    },
    /// List tokens: id, label, scopes, last four characters, creation time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token (by the id `list` shows): refused from its next request on.
    Revoke { id: i64 },
}

/// `{scheme}://{key}@{host}{path}/{project_id}` from the public URL.
/// Opens the database the settings name, with their pool size.
async fn open_store(common: &Common) -> crate::store::Result<Store> {
    let opts = StoreOptions {
        pg_pool: common.db_pool,
        lock_timeout: std::time::Duration::from_secs(common.db_lock_timeout_secs.max(1)),
    };
    Store::open_with(&common.database_url, &opts).await
}

pub fn dsn(public_url: &str, project: &Project) -> String {
    crate::http::projects::dsn(public_url, &project.public_key, project.id)
}

fn project_json(public_url: &str, p: &Project) -> serde_json::Value {
    serde_json::json!({"id": p.id.to_string(), "slug": p.slug, "name": p.name, "dsn": dsn(public_url, p)})
}

/// A project's limits under the API's field names (null: not set).
fn limits_json(l: &ProjectLimits) -> serde_json::Value {
    serde_json::json!({
        "rateLimitPerMinute": l.rate_limit_minute,
        "rateLimitPerHour": l.rate_limit_hour,
        "retentionDays": l.retention_days,
        "retentionMaxEvents": l.retention_max_events,
    })
}

/// One `name value` line per limit; an unset quota is `none`, an unset retention `default`.
fn limits_text(l: &ProjectLimits) -> String {
    let show = |v: Option<i64>, unset: &str| v.map_or(unset.to_string(), |v| v.to_string());
    format!(
        "rate-limit-minute {}\nrate-limit-hour {}\nretention-days {}\nretention-max-events {}\n",
        show(l.rate_limit_minute, "none"),
        show(l.rate_limit_hour, "none"),
        show(l.retention_days, "default"),
        show(l.retention_max_events, "default"),
    )
}

use crate::store::projects::valid_slug;

pub async fn create_project(
    store: &Store,
    clock: &Clock,
    slug: &str,
    name: &str,
) -> anyhow::Result<Project> {
    anyhow::ensure!(
        valid_slug(slug),
        "a project slug is 1-50 lowercase letters, digits, '-' or '_'"
    );
    let key = token::generate_public_key();
    Ok(store
        .create_project(slug, name, &key, clock.now().timestamp_micros())
        .await?)
}

/// A new token with every scope.
pub async fn create_token(store: &Store, clock: &Clock, label: &str) -> anyhow::Result<String> {
    Ok(
        create_scoped_token(store, clock, label, &token::Scopes::all())
            .await?
            .1,
    )
}

/// A new token with `scopes`: its id and the token (shown once).
pub async fn create_scoped_token(
    store: &Store,
    clock: &Clock,
    label: &str,
    scopes: &token::Scopes,
) -> anyhow::Result<(i64, String)> {
    let t = token::generate();
    let id = store
        .insert_token(
            &token::hash(&t),
            label,
            scopes,
            &t[t.len() - 4..],
            clock.now().timestamp_micros(),
        )
        .await?;
    Ok((id, t))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock = Clock::System;
    let common = cli.common;
    match cli.command {
        Command::Serve {
            bind,
            ingest,
            conn,
            retention,
            grouping_transition_days,
        } => {
            let store = open_store(&common).await.with_context(|| {
                format!(
                    "opening {}",
                    crate::config::redact_url(&common.database_url)
                )
            })?;
            let public_url = common.public_url_or(&bind);
            // A first start; a database whose projects were all deleted gets no new one.
            if !store.ever_had_projects().await? {
                let p = create_project(&store, &clock, "default", "Default").await?;
                let t = create_token(&store, &clock, "admin").await?;
                println!("Created project 'default'.");
                println!("  DSN:       {}", dsn(&public_url, &p));
                println!("  API token: {t}");
                println!(
                    "The token is shown only this once; `stackhound token create` makes more."
                );
            }
            let listener = crate::http::serve::bind(&bind, conn.listen_backlog)
                .with_context(|| format!("binding {bind}"))?;
            tracing::info!(addr = %listener.local_addr()?, "listening");
            let smtp = match &common.smtp_url {
                Some(url) => SmtpSettings::from_url(url).context("STACKHOUND_SMTP_URL")?,
                None => SmtpSettings::default(),
            };
            let settings = Settings {
                public_url,
                org: common.org,
                limits: ingest.limits(),
                clock,
                background: true,
                smtp,
                writers: common.writers,
                alert_lease: std::time::Duration::from_secs(common.alert_lease_secs),
                retention: retention.defaults(),
                conn: (&conn).into(),
                grouping_transition: std::time::Duration::from_secs(
                    u64::from(grouping_transition_days) * 86_400,
                ),
            };
            app::serve(listener, store, settings, shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::Project(cmd) => {
            let store = open_store(&common).await?;
            let public_url = common.public_url_or("127.0.0.1:8000");
            match cmd {
                ProjectCommand::Create { slug, name, json } => {
                    let name = name.unwrap_or_else(|| slug.clone());
                    let p = create_project(&store, &clock, &slug, &name).await?;
                    if json {
                        println!("{}", project_json(&public_url, &p));
                    } else {
                        println!("{}\t{}\t{}", p.id, p.slug, dsn(&public_url, &p));
                    }
                }
                ProjectCommand::Alerts {
                    slug,
                    new_issue,
                    regression,
                    unmute,
                } => {
                    let p = store
                        .project_by_slug(&slug)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no project '{slug}'"))?;
                    store
                        .set_project_alerts(p.id, new_issue, regression, unmute)
                        .await?;
                    let (n, r, u) = store.project_alerts(p.id).await?;
                    let word = |b: bool| if b { "on" } else { "off" };
                    println!(
                        "new-issue {}\nregression {}\nunmute {}",
                        word(n),
                        word(r),
                        word(u)
                    );
                }
                ProjectCommand::Limits {
                    slug,
                    rate_limit_minute,
                    rate_limit_hour,
                    retention_days,
                    retention_max_events,
                    json,
                } => {
                    let p = store
                        .project_by_slug(&slug)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no project '{slug}'"))?;
                    let mut limits = store.project_limits(p.id).await?;
                    let changes = [
                        (&mut limits.rate_limit_minute, rate_limit_minute),
                        (&mut limits.rate_limit_hour, rate_limit_hour),
                        (&mut limits.retention_days, retention_days),
                        (&mut limits.retention_max_events, retention_max_events),
                    ];
                    let mut changed = false;
                    for (field, given) in changes {
                        if let Some(v) = given {
                            *field = (v > 0).then_some(v);
                            changed = true;
                        }
                    }
                    if changed {
                        store.set_project_limits(p.id, &limits).await?;
                    }
                    if json {
                        println!("{}", limits_json(&limits));
                    } else {
                        print!("{}", limits_text(&limits));
                    }
                }
                ProjectCommand::List { json } => {
                    for p in store.list_projects().await? {
                        if json {
                            println!("{}", project_json(&public_url, &p));
                        } else {
                            println!("{}\t{}\t{}", p.id, p.slug, dsn(&public_url, &p));
                        }
                    }
                }
            }
            store.close().await;
        }
        Command::Channel(cmd) => {
            let store = open_store(&common).await?;
            let project = |slug: String| {
                let store = store.clone();
                async move {
                    store
                        .project_by_slug(&slug)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no project '{slug}'"))
                }
            };
            match cmd {
                ChannelCommand::Add {
                    project: slug,
                    kind,
                    url,
                    secret,
                    to,
                    json,
                } => {
                    let p = project(slug).await?;
                    let body =
                        serde_json::json!({"kind": kind, "url": url, "secret": secret, "to": to});
                    let (kind, config) =
                        crate::alert::channel_config(&body).map_err(anyhow::Error::msg)?;
                    let c = store
                        .create_channel(
                            p.id,
                            &kind,
                            &config.to_string(),
                            clock.now().timestamp_micros(),
                        )
                        .await?;
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"id": c.id.to_string(), "kind": c.kind})
                        );
                    } else {
                        println!("{}\t{}", c.id, c.kind);
                    }
                }
                ChannelCommand::List { project: slug } => {
                    let p = project(slug).await?;
                    for c in store.channels(p.id).await? {
                        let mut config: serde_json::Value =
                            serde_json::from_str(&c.config).unwrap_or_default();
                        if let Some(secret) = config.get_mut("secret") {
                            *secret = serde_json::json!("********");
                        }
                        println!("{}\t{}\t{}", c.id, c.kind, config);
                    }
                }
                ChannelCommand::Remove { project: slug, id } => {
                    let p = project(slug).await?;
                    anyhow::ensure!(store.delete_channel(p.id, id).await?, "no channel {id}");
                }
            }
            store.close().await;
        }
        Command::Token(cmd) => {
            let store = open_store(&common).await?;
            token_command(&store, &clock, cmd).await?;
            store.close().await;
        }
        Command::Monitor(MonitorCommand::List { project }) => {
            let store = open_store(&common).await?;
            let projects = match project {
                Some(slug) => vec![store
                    .project_by_slug(&slug)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no project '{slug}'"))?],
                None => store.list_projects().await?,
            };
            for p in projects {
                for m in store.monitors(p.id).await? {
                    let envs = store.monitor_envs(m.id).await?;
                    if envs.is_empty() {
                        println!("{}\t{}\t-\tactive\t-", p.slug, m.slug);
                    }
                    for e in envs {
                        let next = e
                            .next_expected_at
                            .map_or_else(|| "-".to_string(), crate::issue::view::iso);
                        println!(
                            "{}\t{}\t{}\t{}\t{}",
                            p.slug, m.slug, e.environment, e.status, next
                        );
                    }
                }
            }
            store.close().await;
        }
        Command::Responder(cmd) => {
            let store = open_store(&common).await?;
            responder_command(&store, &clock, cmd).await?;
            store.close().await;
        }
        Command::Stress(args) => {
            stress::run(args).await?;
        }
        Command::BenchSink { bind } => {
            let listener = tokio::net::TcpListener::bind(&bind).await?;
            crate::http::sink::serve(listener).await?;
        }
    }
    Ok(())
}

async fn token_command(store: &Store, clock: &Clock, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            scopes,
            label,
            json,
        } => {
            let scopes = if scopes.is_empty() {
                token::Scopes::all()
            } else {
                crate::http::tokens::parse_scopes(
                    scopes
                        .iter()
                        .flat_map(|s| s.split([',', ' ']))
                        .filter(|s| !s.is_empty()),
                )
                .map_err(anyhow::Error::msg)?
            };
            let (id, t) = create_scoped_token(store, clock, &label, &scopes).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": id.to_string(),
                        "token": t,
                        "label": label,
                        "scopes": scopes.names(),
                    })
                );
            } else {
                // The token alone on standard output, so `$(stackhound token create)` is it.
                println!("{t}");
                eprintln!("token {id} ({label}): scopes {}", scopes.to_stored());
            }
        }
        TokenCommand::List { json } => {
            let tokens = store.list_tokens().await?;
            if json {
                let list: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id.to_string(),
                            "label": t.label,
                            "scopes": t.scopes.names(),
                            "hint": t.hint,
                            "dateCreated": crate::issue::view::iso(t.created_at),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for t in tokens {
                    println!(
                        "{}\t{}\t{}\t…{}\t{}",
                        t.id,
                        t.label,
                        t.scopes.to_stored(),
                        t.hint,
                        crate::issue::view::iso(t.created_at)
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            anyhow::ensure!(store.delete_token(id).await?, "no token {id}");
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn responder_command(
    store: &Store,
    clock: &Clock,
    cmd: ResponderCommand,
) -> anyhow::Result<()> {
    let project = |slug: String| async move {
        store
            .project_by_slug(&slug)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no project '{slug}'"))
    };
    match cmd {
        ResponderCommand::Create {
            file,
            project: slug,
            json,
        } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let body: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let spec = crate::responder::parse_spec(&body).map_err(anyhow::Error::msg)?;
            let p = project(slug).await?;
            let r = store
                .create_responder(p.id, &spec, clock.now().timestamp_micros())
                .await?;
            if json {
                println!("{}", crate::http::responders::responder_json(&r));
            } else {
                println!("{}\t{}", r.id, r.watch_pattern);
            }
        }
        ResponderCommand::List {
            project: slug,
            json,
        } => {
            let p = project(slug).await?;
            for r in store.responders(p.id).await? {
                if json {
                    println!("{}", crate::http::responders::responder_json(&r));
                } else {
                    let actions: Vec<serde_json::Value> =
                        serde_json::from_str(&r.actions).unwrap_or_default();
                    let ladder: Vec<String> = actions
                        .iter()
                        .map(|a| {
                            format!(
                                "{}+{}s",
                                a["target"].as_str().unwrap_or("?"),
                                a["delay_sec"]
                            )
                        })
                        .collect();
                    let state = if r.enabled { "enabled" } else { "disabled" };
                    println!(
                        "{}\t{}\t{}\t{}",
                        r.id,
                        state,
                        r.watch_pattern,
                        ladder.join(" ")
                    );
                }
            }
        }
    }
    Ok(())
}
