//! Rate-limit categories of envelope items and the `X-Sentry-Rate-Limits` header (reference 4.2).

use super::envelope::ItemType;

/// The data category SDKs rate-limit an item by (Relay's names), or None for items that have
/// none (client reports).
pub fn category(ty: &ItemType) -> Option<&'static str> {
    Some(match ty {
        ItemType::Event => "error",
        ItemType::Transaction => "transaction",
        ItemType::Span => "span",
        ItemType::Session | ItemType::Sessions => "session",
        ItemType::Attachment => "attachment",
        ItemType::Profile => "profile",
        ItemType::CheckIn => "monitor",
        ItemType::Log => "log_item",
        ItemType::UserReport | ItemType::Feedback => "feedback",
        ItemType::ClientReport => return None,
        ItemType::Other(name) => match name.as_str() {
            "profile_chunk" => "profile_chunk",
            "replay_event" | "replay_recording" | "replay_video" => "replay",
            "statsd" | "metric_buckets" => "metric_bucket",
            "otel_log" => "log_item",
            "security" | "raw_security" => "security",
            _ => return None,
        },
    })
}

/// One `quota_limit` of the header: `retry_after:categories:scope:reason_code`. An empty
/// category list means every category.
pub fn quota_limit(retry_after: u64, categories: &[&str], scope: &str, reason: &str) -> String {
    format!("{retry_after}:{}:{scope}:{reason}", categories.join(";"))
}

/// The categories of `dropped` items, each once, in a stable order.
pub fn categories_of<'a>(dropped: impl IntoIterator<Item = &'a ItemType>) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = dropped.into_iter().filter_map(category).collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_follow_relay() {
        assert_eq!(category(&ItemType::Transaction), Some("transaction"));
        assert_eq!(
            category(&ItemType::from_name("replay_recording")),
            Some("replay")
        );
        assert_eq!(category(&ItemType::ClientReport), None);
        assert_eq!(category(&ItemType::from_name("made_up")), None);
        let dropped = [
            ItemType::Transaction,
            ItemType::Attachment,
            ItemType::Transaction,
            ItemType::ClientReport,
        ];
        assert_eq!(categories_of(&dropped), ["attachment", "transaction"]);
    }

    #[test]
    fn header_grammar() {
        assert_eq!(
            quota_limit(60, &["error", "default"], "project", "project_quota"),
            "60:error;default:project:project_quota"
        );
        assert_eq!(quota_limit(5, &[], "organization", ""), "5::organization:");
    }
}
