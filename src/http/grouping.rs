//! Grouping in the API: why an event grouped as it did (`grouping-info`), an issue's hashes,
//! and a project's grouping settings (scheme, rules, transition) in Sentry's field names.

use super::api::{authorize, find_issue, not_found, ApiError, ApiResult};
use super::lifecycle::{bad_request, project_of};
use super::AppState;
use crate::grouping::{self, Scheme};
use crate::project_grouping::parse_config;
use crate::protocol::event;
use crate::store::grouping::{GroupingConfigText, GroupingSettings};
use crate::token::Scope;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};

/// `GET /api/0/projects/{org}/{project}/events/{event_id}/grouping-info/`: per variant, whether
/// it contributes and why not, its hash and the component tree whose values made it, computed
/// from the stored event with the project's current configuration (Sentry's shape: an object
/// keyed by variant).
#[utoipa::path(
    get,
    path = "/api/0/projects/{org}/{project}/events/{event}/grouping-info/",
    tag = "grouping",
    params(super::openapi::ProjectPath, ("event" = String, Path, description = "The event id, 32 hex digits (dashes allowed)")),
    responses(
        (status = 200, description = "One entry per variant", body = super::openapi::GroupingInfo),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such organization, project or event", body = super::openapi::Error),
        (status = 500, description = "The stored event is unreadable", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn grouping_info(
    State(app): State<AppState>,
    Path((org, slug, event_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let project = project_of(&app, &org, &slug).await?;
    let id = crate::pipeline::parse_event_id(&event_id).ok_or_else(|| not_found("event"))?;
    let row = app
        .store
        .project_event(project.id, id)
        .await?
        .ok_or_else(|| not_found("event"))?;
    let json = row.payload.event_json().map_err(|e| {
        tracing::error!(error = %e, "stored payload unreadable");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stored event unreadable".into(),
        )
    })?;
    let unreadable = || {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stored event unreadable".into(),
        )
    };
    // Stored payloads parsed when they arrived; only lone surrogates needed repairing then.
    let repaired;
    let ev = match event::parse(&json) {
        Ok(ev) => ev,
        Err(_) => {
            repaired = event::repair_lone_surrogates(&json).ok_or_else(unreadable)?;
            event::parse(&repaired).map_err(|_| unreadable())?
        }
    };
    let config = app.grouping.of(project.id).await?;
    let info = grouping::info(&ev, &config.primary);
    Ok(Json(serde_json::to_value(info).unwrap_or(Value::Null)))
}

/// `GET /api/0/issues/{id}/hashes/`: the hashes linked to an issue, each with the scheme that
/// linked it. An event joins the issue when any of its hashes is among these.
#[utoipa::path(
    get,
    path = "/api/0/issues/{issue}/hashes/",
    tag = "grouping",
    params(super::openapi::IssuePath),
    responses(
        (status = 200, description = "The hashes", body = Vec<super::openapi::Hash>),
        (status = 401, description = "No valid token", body = super::openapi::Error),
        (status = 403, description = "The token lacks the scope", body = super::openapi::Error),
        (status = 404, description = "No such issue", body = super::openapi::Error),
        (status = 503, description = "Database unavailable", body = super::openapi::Error),
    ),
    security(("bearer" = ["event:read"])),
)]
pub async fn issue_hashes(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    authorize(&app, &headers, Scope::EventRead).await?;
    let issue = find_issue(&app, &id).await?;
    Ok(Json(hashes_json(&app, issue.id).await?))
}

/// An issue's hashes as the API lists them (also in the issue detail).
pub async fn hashes_json(app: &AppState, issue_id: i64) -> ApiResult<Value> {
    let links = app.store.issue_hashes(issue_id).await?;
    Ok(Value::Array(
        links
            .into_iter()
            .map(|l| json!({"id": l.hash, "groupingConfig": l.scheme}))
            .collect(),
    ))
}

/// A project's grouping fields, named as Sentry's project details name them
/// (`secondaryGroupingExpiry` in Unix seconds, null outside a transition).
pub fn settings_json(s: &GroupingSettings) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("groupingConfig".into(), json!(s.primary.scheme));
    m.insert(
        "fingerprintingRules".into(),
        json!(s.primary.fingerprinting_rules),
    );
    m.insert("groupingEnhancements".into(), json!(s.primary.enhancements));
    m.insert(
        "secondaryGroupingConfig".into(),
        json!(s.secondary.as_ref().map(|c| &c.scheme)),
    );
    m.insert(
        "secondaryGroupingExpiry".into(),
        json!(s
            .secondary
            .as_ref()
            .and(s.secondary_expiry_us)
            .map(|us| us.div_euclid(1_000_000))),
    );
    m
}

/// The body's grouping fields applied to `current`; `None` when it names none. Every value is
/// checked (an unknown scheme, or a rule that does not parse, is a 400 saying which line and
/// why). A change of scheme keeps the replaced configuration as the secondary one for
/// `transition_us`, so events keep finding the issues it made; a change of rules applies at
/// once unless the body names the end of a transition in `secondaryGroupingExpiry` (Unix
/// seconds). `secondaryGroupingExpiry` 0 or null ends any transition.
pub fn apply_settings(
    body: &Value,
    current: &GroupingSettings,
    now_us: i64,
    transition_us: i64,
) -> ApiResult<Option<GroupingSettings>> {
    const FIELDS: [&str; 5] = [
        "groupingConfig",
        "fingerprintingRules",
        "groupingEnhancements",
        "secondaryGroupingConfig",
        "secondaryGroupingExpiry",
    ];
    if !FIELDS.iter().any(|f| body.get(f).is_some()) {
        return Ok(None);
    }
    let text = |name: &str| -> ApiResult<Option<String>> {
        match body.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(String::new())),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad_request(format!("'{name}' must be a string"))),
        }
    };
    let mut primary = current.primary.clone();
    if let Some(scheme) = text("groupingConfig")? {
        primary.scheme = scheme;
    }
    if let Some(rules) = text("fingerprintingRules")? {
        primary.fingerprinting_rules = rules;
    }
    if let Some(rules) = text("groupingEnhancements")? {
        primary.enhancements = rules;
    }
    parse_config(&primary).map_err(bad_request)?;

    let mut next = GroupingSettings {
        primary: primary.clone(),
        ..current.clone()
    };
    let opted_in = body
        .get("secondaryGroupingExpiry")
        .and_then(Value::as_i64)
        .is_some_and(|secs| secs > 0);
    if primary.scheme != current.primary.scheme {
        // A new scheme keeps the issues of the old one together, as an upgrade does.
        next.secondary = Some(current.primary.clone());
        next.secondary_expiry_us = Some(now_us.saturating_add(transition_us));
    } else if primary != current.primary && opted_in {
        // Changed rules apply to new events at once (a rule that splits must split), unless
        // the change asks for a transition by naming its end: then the previous rules keep
        // finding the issues they made until then. Without that, a transition already running
        // (an upgrade's) goes on untouched.
        next.secondary = Some(current.primary.clone());
    }
    if let Some(scheme) = text("secondaryGroupingConfig")? {
        next.secondary = match scheme.as_str() {
            "" => None,
            id if Scheme::from_id(id).is_some() => Some(GroupingConfigText {
                scheme: scheme.clone(),
                ..next.secondary.clone().unwrap_or_default()
            }),
            _ => {
                return Err(bad_request(format!(
                    "unknown secondaryGroupingConfig '{scheme}'"
                )))
            }
        };
        if next.secondary.is_some() && next.secondary_expiry_us.is_none() {
            next.secondary_expiry_us = Some(now_us.saturating_add(transition_us));
        }
    }
    match body.get("secondaryGroupingExpiry") {
        None => {}
        Some(Value::Null) => next.secondary = None,
        Some(v) => match v.as_i64() {
            Some(0) => next.secondary = None,
            Some(secs) if secs > 0 => {
                if next.secondary.is_none() {
                    return Err(bad_request(
                        "'secondaryGroupingExpiry' needs a secondary grouping config",
                    ));
                }
                next.secondary_expiry_us = Some(secs.saturating_mul(1_000_000));
            }
            _ => {
                return Err(bad_request(
                    "'secondaryGroupingExpiry' must be Unix seconds, 0 or null",
                ))
            }
        },
    }
    if next.secondary.is_none() {
        next.secondary_expiry_us = None;
    }
    // Never store a secondary configuration that would not parse: ingestion would ignore it.
    if let Some(s) = &next.secondary {
        parse_config(s).map_err(bad_request)?;
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(scheme: &str) -> GroupingSettings {
        GroupingSettings {
            primary: GroupingConfigText {
                scheme: scheme.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn untouched_body_changes_nothing() {
        let s = settings(Scheme::LATEST.id());
        assert_eq!(
            apply_settings(&json!({"name": "x"}), &s, 0, 10)
                .ok()
                .flatten(),
            None
        );
    }

    #[test]
    fn transitions_for_schemes_and_on_request_for_rules() {
        let apply = |body: Value, s: &GroupingSettings, now: i64| {
            apply_settings(&body, s, now, 500).ok().flatten().unwrap()
        };
        let s = settings("sh-2026-11");
        // A scheme change keeps the old configuration for the transition period.
        let next = apply(json!({"groupingConfig": Scheme::LATEST.id()}), &s, 1_000);
        assert_eq!(next.secondary, Some(s.primary.clone()));
        assert_eq!(next.secondary_expiry_us, Some(1_500));
        // A rule change applies at once, and leaves a running transition alone.
        let after = apply(
            json!({"fingerprintingRules": "error.type:Foo -> foo"}),
            &next,
            1_200,
        );
        assert_eq!(after.primary.fingerprinting_rules, "error.type:Foo -> foo");
        assert_eq!(after.secondary, next.secondary);
        assert_eq!(after.secondary_expiry_us, Some(1_500));
        // Naming the end of a transition keeps the previous rules until then.
        let body =
            json!({"fingerprintingRules": "error.type:Bar -> bar", "secondaryGroupingExpiry": 9});
        let opted = apply(body, &after, 1_300);
        assert_eq!(opted.secondary, Some(after.primary.clone()));
        assert_eq!(opted.secondary_expiry_us, Some(9_000_000));
        // 0 ends any transition at once.
        let ended = apply(json!({"secondaryGroupingExpiry": 0}), &opted, 1_400);
        assert_eq!((ended.secondary, ended.secondary_expiry_us), (None, None));
    }

    #[test]
    fn bad_values_are_refused() {
        let s = settings(Scheme::LATEST.id());
        for body in [
            json!({"groupingConfig": "newstyle:2023-01-11"}),
            json!({"groupingConfig": 3}),
            json!({"secondaryGroupingExpiry": 100}),
            json!({"secondaryGroupingExpiry": "soon"}),
            json!({"secondaryGroupingConfig": "nope"}),
        ] {
            let err = apply_settings(&body, &s, 0, 10).err().map(|e| e.0);
            assert_eq!(err, Some(StatusCode::BAD_REQUEST), "{body}");
        }
    }

    #[test]
    fn settings_read_back_in_sentry_names() {
        let mut s = settings("sh-2026-11");
        s.secondary = Some(GroupingConfigText::default());
        s.secondary_expiry_us = Some(2_500_000);
        let m = settings_json(&s);
        assert_eq!(m["groupingConfig"], "sh-2026-11");
        assert_eq!(m["secondaryGroupingExpiry"], 2);
    }
}
