//! Pure rendering of one alert into the bodies each channel kind sends.
//!
//! Everything here is a function of its input: the alert's kind and stored payload, and the
//! issue as it was at the transition that raised the alert (its snapshot, written with the
//! alert), so a delivery after a later change still tells what was true then.

use super::AlertKind;
use crate::issue::model::Issue;
use crate::issue::view::{iso, issue_json};
use serde::Deserialize;
use serde_json::{json, Value};

/// Everything one alert is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct AlertInput<'a> {
    /// `new_issue`, `regression` or `unmute` (anything else renders as a generic alert).
    pub kind: &'a str,
    /// The outbox payload as written by the transition:
    /// `{"reason", "environment", "level", "release"}`; unreadable payloads render with defaults.
    pub payload: &'a str,
    pub issue: &'a Issue,
    /// Base URL of the server, without a trailing slash.
    pub public_url: &'a str,
    pub org: &'a str,
    pub idempotency_key: &'a str,
    /// When this attempt is sent (µs).
    pub sent_at_us: i64,
}

/// One alert rendered for every channel kind; `deliver` picks the body its channel needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The alert kind as stored (`X-Stackhound-Event`).
    pub kind: String,
    /// When this attempt is sent (µs); also the email's `Date`.
    pub sent_at_us: i64,
    /// The generic webhook body.
    pub webhook: Value,
    /// The Slack-compatible incoming-webhook body (`text` + `blocks`).
    pub slack: Value,
    pub email: Email,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    /// One line, no control characters.
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The stored payload; every field optional so old or partial payloads still render.
#[derive(Debug, Default, Deserialize)]
struct Payload {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    release: Option<String>,
}

/// Slack rejects section texts over 3,000 characters; titles are cut well before that.
const MAX_TITLE: usize = 300;

pub fn render(input: &AlertInput) -> Rendered {
    let payload: Payload = serde_json::from_str(input.payload).unwrap_or_default();
    let issue = input.issue;
    let link = permalink(input.public_url, input.org, issue.id);
    let short = crate::issue::short_id(&issue.project_slug, issue.short_number);
    let title = truncate(&one_line(&issue.title), MAX_TITLE);
    let level = payload
        .level
        .clone()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| issue.level.clone());
    let environment = payload.environment.clone().filter(|e| !e.is_empty());
    let release = payload.release.clone().filter(|r| !r.is_empty());
    let reason = payload.reason.clone().unwrap_or_default();
    let headline = headline(input.kind);
    let events = match issue.event_count {
        1 => "1 event".to_string(),
        n => format!("{n} events"),
    };
    let facts = Facts {
        environment: environment.as_deref(),
        level: &level,
        release: release.as_deref(),
    };

    let webhook = json!({
        "kind": input.kind,
        "reason": reason,
        "environment": environment,
        "level": level,
        "release": release,
        // The same object `/api/0/` serves for this issue.
        "issue": issue_json(issue, input.public_url, input.org),
        "project": {
            "id": issue.project_id.to_string(),
            "slug": issue.project_slug,
            "name": issue.project_name,
        },
        "link": link,
        "idempotencyKey": input.idempotency_key,
        "sentAt": iso(input.sent_at_us),
    });

    let slack = {
        let label = slack_escape(&format!("{short} {title}"));
        let text = format!(
            "{} {} in *{}* ({}): <{}|{}> — {}",
            emoji(input.kind),
            headline,
            slack_escape(&issue.project_slug),
            slack_escape(&facts.parenthesized()),
            link,
            label,
            events
        );
        let mut section = format!(
            "{} *{}* in *{}*\n*<{}|{}>*",
            emoji(input.kind),
            headline,
            slack_escape(&issue.project_name),
            link,
            label
        );
        if !issue.culprit.is_empty() {
            section.push_str(&format!(
                "\n`{}`",
                slack_escape(&truncate(&one_line(&issue.culprit), MAX_TITLE)).replace('`', "'")
            ));
        }
        let mut context = vec![format!("*Project:* {}", slack_escape(&issue.project_slug))];
        if let Some(env) = facts.environment {
            context.push(format!("*Environment:* {}", slack_escape(env)));
        }
        context.push(format!("*Level:* {}", slack_escape(facts.level)));
        if let Some(release) = facts.release {
            context.push(format!("*Release:* {}", slack_escape(release)));
        }
        context.push(events.clone());
        if !reason.is_empty() {
            context.push(slack_escape(&truncate(&reason, MAX_TITLE)));
        }
        json!({
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": section}},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": context.join(" · ")},
                ]},
            ],
        })
    };

    let email = {
        let subject = truncate(
            &one_line(&format!(
                "[{}] {}: {} {}",
                issue.project_slug, headline, short, title
            )),
            250,
        );
        let mut rows: Vec<(&str, String)> = vec![(
            "Project",
            format!("{} ({})", issue.project_name, issue.project_slug),
        )];
        if let Some(env) = facts.environment {
            rows.push(("Environment", env.to_string()));
        }
        rows.push(("Level", level.clone()));
        if let Some(release) = facts.release {
            rows.push(("Release", release.to_string()));
        }
        rows.push(("Events", issue.event_count.to_string()));
        if !reason.is_empty() {
            rows.push(("Reason", reason.clone()));
        }

        let mut text = format!("{headline}: {short} {title}\n");
        if !issue.culprit.is_empty() {
            text.push_str(&format!("{}\n", one_line(&issue.culprit)));
        }
        text.push('\n');
        for (k, v) in &rows {
            text.push_str(&format!("{k}: {v}\n"));
        }
        text.push_str(&format!("\n{link}\n"));

        let mut html = format!(
            "<!DOCTYPE html>\n<html><body>\n<h2>{}: <a href=\"{}\">{} {}</a></h2>\n",
            html_escape(headline),
            html_escape(&link),
            html_escape(&short),
            html_escape(&title)
        );
        if !issue.culprit.is_empty() {
            html.push_str(&format!(
                "<p><code>{}</code></p>\n",
                html_escape(&issue.culprit)
            ));
        }
        html.push_str("<table>\n");
        for (k, v) in &rows {
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
                html_escape(k),
                html_escape(v)
            ));
        }
        html.push_str(&format!(
            "</table>\n<p><a href=\"{}\">View the issue</a></p>\n</body></html>\n",
            html_escape(&link)
        ));
        Email {
            subject,
            text,
            html,
        }
    };

    Rendered {
        kind: input.kind.to_string(),
        sent_at_us: input.sent_at_us,
        webhook,
        slack,
        email,
    }
}

struct Facts<'a> {
    environment: Option<&'a str>,
    level: &'a str,
    release: Option<&'a str>,
}

impl Facts<'_> {
    /// `production, error` or just `error`.
    fn parenthesized(&self) -> String {
        match self.environment {
            Some(env) => format!("{env}, {}", self.level),
            None => self.level.to_string(),
        }
    }
}

/// The outbox `kind` column back to the kind; None for anything this version does not know.
fn parse_kind(kind: &str) -> Option<AlertKind> {
    [
        AlertKind::NewIssue,
        AlertKind::Regression,
        AlertKind::Unmute,
    ]
    .into_iter()
    .find(|k| k.as_str() == kind)
}

/// How a human reads the kind at the start of a message.
fn headline(kind: &str) -> &'static str {
    if kind == "responder" {
        return "Still unresolved";
    }
    match parse_kind(kind) {
        Some(AlertKind::NewIssue) => "New issue",
        Some(AlertKind::Regression) => "Regression",
        Some(AlertKind::Unmute) => "Unmuted issue",
        None => "Alert",
    }
}

fn emoji(kind: &str) -> &'static str {
    if kind == "responder" {
        return ":alarm_clock:";
    }
    match parse_kind(kind) {
        Some(AlertKind::NewIssue) => ":rotating_light:",
        Some(AlertKind::Regression) => ":repeat:",
        Some(AlertKind::Unmute) => ":loud_sound:",
        None => ":bell:",
    }
}

/// The issue's page in the web UI, Sentry's permalink shape.
pub fn permalink(public_url: &str, org: &str, issue_id: i64) -> String {
    format!("{public_url}/organizations/{org}/issues/{issue_id}/")
}

/// Slack's mrkdwn treats `&`, `<` and `>` as control characters; everything else is literal.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Titles come from events: newlines and other control characters would break a subject
/// line or a Slack link label, so they become spaces.
fn one_line(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.trim().to_string()
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue() -> Issue {
        Issue {
            id: 42,
            project_id: 1,
            project_slug: "default".into(),
            project_name: "Default".into(),
            short_number: 3,
            title: "KeyError: 'x'".into(),
            culprit: "app.views in index".into(),
            level: "error".into(),
            platform: "python".into(),
            event_type: "error".into(),
            metadata: r#"{"type":"KeyError","value":"'x'"}"#.into(),
            status: "unresolved".into(),
            event_count: 1,
            first_seen: 1_767_225_600_000_000,
            last_seen: 1_767_225_600_000_000,
            substatus: None,
            state: "{}".into(),
            user_count: 0,
        }
    }

    fn input<'a>(kind: &'a str, payload: &'a str, issue: &'a Issue) -> AlertInput<'a> {
        AlertInput {
            kind,
            payload,
            issue,
            public_url: "https://errors.example.com",
            org: "acme",
            idempotency_key: "new_issue:42:7",
            sent_at_us: 1_767_225_660_000_000,
        }
    }

    const PAYLOAD: &str =
        r#"{"reason":"first event","environment":"production","level":"error","release":null}"#;

    #[test]
    fn webhook_carries_the_whole_issue() {
        let issue = issue();
        let r = render(&input("new_issue", PAYLOAD, &issue));
        let w = &r.webhook;
        assert_eq!(w["kind"], "new_issue");
        assert_eq!(w["reason"], "first event");
        assert_eq!(w["issue"]["shortId"], "DEFAULT-3");
        assert_eq!(w["issue"]["metadata"]["type"], "KeyError");
        assert_eq!(w["issue"]["count"], "1");
        assert_eq!(w["project"]["slug"], "default");
        assert_eq!(
            w["link"],
            "https://errors.example.com/organizations/acme/issues/42/"
        );
        assert_eq!(w["issue"]["permalink"], w["link"]);
        assert_eq!(w["idempotencyKey"], "new_issue:42:7");
        assert_eq!(w["sentAt"], "2026-01-01T00:01:00.000000Z");
        assert_eq!(r.kind, "new_issue");
    }

    #[test]
    fn slack_text_reads_as_a_sentence() {
        let issue = issue();
        let r = render(&input("new_issue", PAYLOAD, &issue));
        assert_eq!(
            r.slack["text"],
            ":rotating_light: New issue in *default* (production, error): \
             <https://errors.example.com/organizations/acme/issues/42/|DEFAULT-3 KeyError: 'x'> \
             — 1 event"
        );
        assert_eq!(r.slack["blocks"][0]["type"], "section");
        assert_eq!(r.slack["blocks"][1]["type"], "context");
    }

    #[test]
    fn slack_escapes_control_characters_and_counts_plural() {
        let mut issue = issue();
        issue.title = "a <b> & c\nd".into();
        issue.event_count = 5;
        let r = render(&input("regression", "{}", &issue));
        let text = r.slack["text"].as_str().unwrap();
        assert!(text.starts_with(":repeat: Regression in *default* (error): "));
        assert!(text.contains("|DEFAULT-3 a &lt;b&gt; &amp; c d>"), "{text}");
        assert!(text.ends_with("— 5 events"));
    }

    #[test]
    fn email_escapes_html_and_keeps_the_subject_on_one_line() {
        let mut issue = issue();
        issue.title = "<script>alert(1)</script>\r\nBcc: x@y".into();
        let r = render(&input("unmute", PAYLOAD, &issue));
        assert!(!r.email.subject.contains(['\r', '\n']));
        assert!(r
            .email
            .subject
            .starts_with("[default] Unmuted issue: DEFAULT-3 <script>"));
        assert!(!r.email.html.contains("<script>"));
        assert!(r
            .email
            .html
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(r.email.text.contains("Environment: production"));
        assert!(r.email.text.contains("Events: 1"));
        assert!(r
            .email
            .text
            .contains("https://errors.example.com/organizations/acme/issues/42/"));
    }

    #[test]
    fn bad_payload_and_unknown_kind_still_render() {
        let issue = issue();
        let r = render(&input("something", "not json", &issue));
        assert_eq!(r.webhook["reason"], "");
        assert_eq!(r.webhook["level"], "error");
        assert!(r.slack["text"]
            .as_str()
            .unwrap()
            .starts_with(":bell: Alert"));
    }

    #[test]
    fn long_titles_are_cut_on_character_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
