//! A project's grouping as ingestion uses it: parsed rules, the transition between two
//! configurations, the upgrade to the latest scheme, and a short-lived cache per project.
//!
//! Upgrades work as Sentry's grouping-config upgrades do. A project records the scheme it
//! hashes with. When it is not the latest, the first event that finds it so moves the project
//! to the latest scheme and keeps the old configuration as the secondary one for a transition
//! period (30 days by default). Meanwhile every event is hashed with both: its primary hashes
//! decide when one is already linked; otherwise its secondary hashes find the issue the old
//! scheme put such events in, and the primary hashes are linked to it (`store::ingest`). After
//! the period only the primary configuration runs, and the issues are still found through the
//! links made meanwhile. A change of scheme through the API does the same; a change of rules
//! applies at once unless it asks for a transition (`http::grouping::apply_settings`).

use crate::clock::Clock;
use crate::grouping::rules::{Enhancements, FingerprintRules, RuleError};
use crate::grouping::{self, Config, Scheme};
use crate::protocol::event::Event;
use crate::store::grouping::{GroupingConfigText, GroupingSettings};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What is wrong with a stored or submitted grouping configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown grouping config '{0}' (known: {known})", known = known_schemes())]
    UnknownScheme(String),
    #[error("fingerprintingRules, line {}: {}", .0.line, .0.message)]
    Fingerprinting(RuleError),
    #[error("groupingEnhancements, line {}: {}", .0.line, .0.message)]
    Enhancements(RuleError),
}

fn known_schemes() -> String {
    Scheme::all()
        .iter()
        .map(|s| s.id())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a stored or submitted configuration into what grouping runs with.
pub fn parse_config(text: &GroupingConfigText) -> Result<Config, ConfigError> {
    let scheme = Scheme::from_id(&text.scheme)
        .ok_or_else(|| ConfigError::UnknownScheme(text.scheme.clone()))?;
    let fingerprinting = match text.fingerprinting_rules.trim() {
        "" => None,
        rules => Some(Arc::new(
            FingerprintRules::parse(rules).map_err(ConfigError::Fingerprinting)?,
        )),
    };
    let enhancements = match text.enhancements.trim() {
        "" => None,
        rules => Some(Arc::new(
            Enhancements::parse(rules).map_err(ConfigError::Enhancements)?,
        )),
    };
    Ok(Config {
        scheme,
        fingerprinting,
        enhancements,
    })
}

/// A project's parsed grouping: the primary configuration, and the secondary one while its
/// transition lasts.
#[derive(Debug, Clone, Default)]
pub struct ProjectGrouping {
    pub primary: Config,
    pub secondary: Option<(Config, i64)>,
}

/// An event's hashes under a project's grouping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventHashes {
    /// Primary hashes, highest priority first: these are linked.
    pub primary: Vec<String>,
    /// Secondary hashes not among the primary ones (empty outside a transition): only looked up.
    pub secondary: Vec<String>,
    pub scheme: &'static str,
}

impl ProjectGrouping {
    /// Parses stored settings. A configuration that no longer parses (stored by a newer
    /// version, or rules this version refuses) is logged and replaced by the latest scheme
    /// without rules, so ingestion never stops over it.
    pub fn from_settings(project_id: i64, s: &GroupingSettings) -> ProjectGrouping {
        let parse = |text: &GroupingConfigText| {
            parse_config(text)
                .inspect_err(|e| tracing::error!(project_id, error = %e, "grouping config ignored"))
                .ok()
        };
        ProjectGrouping {
            primary: parse(&s.primary).unwrap_or_default(),
            secondary: s
                .secondary
                .as_ref()
                .and_then(parse)
                .zip(s.secondary_expiry_us),
        }
    }

    /// The secondary configuration, if its transition is still on at `now_us`.
    pub fn secondary_at(&self, now_us: i64) -> Option<&Config> {
        self.secondary
            .as_ref()
            .filter(|(_, until)| now_us < *until)
            .map(|(c, _)| c)
    }

    /// The `title="..."` of the fingerprinting rule that matches `event`, if any: a new issue
    /// is titled with it, as in Sentry (taken literally; variables are not expanded).
    pub fn rule_title<'r>(&'r self, event: &Event<'_>) -> Option<&'r str> {
        self.primary
            .fingerprinting
            .as_deref()?
            .matching(event)?
            .title
    }

    /// Hashes `event` with the primary configuration and, during a transition, the secondary.
    ///
    /// A secondary hash of a variant the primary configuration switched off on purpose is left
    /// out. `sh-2026-12` drops the `app` variant of a crash without in-app frames (it gives way
    /// to the system variant's stack); the old `app` hash of such a crash is its type+value,
    /// shared by every crash of that kind, and looking it up would glue every new stack to the
    /// issue the old scheme over-grouped. Stacks seen before still find that issue through their
    /// system hashes, which both schemes compute alike.
    pub fn hash(&self, event: &Event<'_>, now_us: i64) -> EventHashes {
        let Some(previous) = self.secondary_at(now_us) else {
            return EventHashes {
                primary: grouping::hashes(event, &self.primary),
                secondary: Vec::new(),
                scheme: self.primary.scheme.id(),
            };
        };
        let variants = grouping::variant_hashes(event, &self.primary);
        let custom = variants
            .iter()
            .any(|(k, h)| matches!(*k, "custom_fingerprint" | "checksum") && h.is_some());
        let silenced =
            |key: &str| !custom && variants.iter().any(|(k, h)| *k == key && h.is_none());
        let primary: Vec<String> = variants.iter().filter_map(|(_, h)| h.clone()).collect();
        let secondary = grouping::variant_hashes(event, previous)
            .into_iter()
            .filter(|(k, _)| !silenced(k))
            .filter_map(|(_, h)| h)
            .filter(|h| !primary.contains(h))
            .collect();
        EventHashes {
            primary,
            secondary,
            scheme: self.primary.scheme.id(),
        }
    }
}

/// A cached project grouping, the settings it was parsed from, and when they were read (µs).
type Entry = (Arc<ProjectGrouping>, Arc<GroupingSettings>, i64);

/// Project id -> parsed grouping, read again after a few seconds so that a change made by
/// another process applies soon; a change made through this process applies at once
/// (`forget`). The first read of a project still on an old scheme upgrades it.
#[derive(Clone)]
pub struct GroupingCache {
    store: Store,
    clock: Clock,
    /// How long a transition after an automatic upgrade lasts (µs).
    transition_us: i64,
    known: Arc<RwLock<HashMap<i64, Entry>>>,
}

impl GroupingCache {
    const TTL_US: i64 = 5_000_000;
    const MAX_ENTRIES: usize = 10_000;

    pub fn new(store: Store, clock: Clock, transition: std::time::Duration) -> GroupingCache {
        GroupingCache {
            store,
            clock,
            transition_us: i64::try_from(transition.as_micros()).unwrap_or(i64::MAX),
            known: Arc::default(),
        }
    }

    /// How long a transition lasts after an upgrade or a change of rules.
    pub fn transition_us(&self) -> i64 {
        self.transition_us
    }

    /// The grouping of a project (the default one for a project that does not exist: its
    /// events are refused before they are grouped anyway).
    pub async fn of(&self, project_id: i64) -> Result<Arc<ProjectGrouping>, StoreError> {
        let now = self.clock.now().timestamp_micros();
        let cached = (self.known.read().ok()).and_then(|m| m.get(&project_id).cloned());
        if let Some((g, _, at)) = &cached {
            if now - at < Self::TTL_US {
                return Ok(g.clone());
            }
        }
        let settings = match self.load(project_id, now).await {
            Ok(Some(settings)) => settings,
            Ok(None) => return Ok(Arc::default()),
            // A refresh that fails (a storage fault) keeps what was read last: the event
            // need not fail for settings that rarely change.
            Err(e) => match cached {
                Some((g, _, _)) => {
                    tracing::debug!(project_id, error = %e, "grouping settings kept");
                    return Ok(g);
                }
                None => return Err(e),
            },
        };
        // Rules compile to matchers: parse them again only when the stored texts changed.
        let g = match cached {
            Some((g, was, _)) if *was == settings => g,
            _ => Arc::new(ProjectGrouping::from_settings(project_id, &settings)),
        };
        if let Ok(mut m) = self.known.write() {
            if m.len() >= Self::MAX_ENTRIES {
                m.clear();
            }
            m.insert(project_id, (g.clone(), Arc::new(settings), now));
        }
        Ok(g)
    }

    /// A project's stored settings, after upgrading an outdated scheme.
    async fn load(
        &self,
        project_id: i64,
        now: i64,
    ) -> Result<Option<GroupingSettings>, StoreError> {
        let Some(settings) = self.store.grouping_settings(project_id).await? else {
            return Ok(None);
        };
        // Only a known older scheme is upgraded: one this version does not know was written by
        // a newer version, and is left alone.
        let outdated =
            Scheme::from_id(&settings.primary.scheme).is_some_and(|s| s != Scheme::LATEST);
        if !outdated {
            return Ok(Some(settings));
        }
        let until = now.saturating_add(self.transition_us);
        let from = settings.primary.scheme.clone();
        if self
            .store
            .upgrade_grouping_scheme(project_id, &from, Scheme::LATEST.id(), until)
            .await?
        {
            tracing::info!(
                project_id,
                from,
                to = Scheme::LATEST.id(),
                "grouping scheme upgraded"
            );
        }
        // Whoever upgraded it, read what is stored now.
        Ok(Some(
            self.store
                .grouping_settings(project_id)
                .await?
                .unwrap_or(settings),
        ))
    }

    /// Drops a project's cached grouping after its settings changed.
    pub fn forget(&self, project_id: i64) {
        if let Ok(mut m) = self.known.write() {
            m.remove(&project_id);
        }
    }
}
