//! The issue model: short ids and the Sentry names of an issue's fields; searches in `search`.

pub mod aggregate;
pub mod model;
pub mod pending;
pub mod plan;
pub mod request;
pub mod search;
pub mod state;
pub mod users;
pub mod view;
pub mod volume;

/// `DEFAULT-3` for issue number 3 of project `default`.
pub fn short_id(project_slug: &str, number: i64) -> String {
    format!("{}-{}", project_slug.to_uppercase(), number)
}

/// Splits `DEFAULT-3` into (`default`, 3); the slug part is compared case-insensitively.
pub fn parse_short_id(s: &str) -> Option<(String, i64)> {
    let (slug, n) = s.rsplit_once('-')?;
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    (!slug.is_empty()).then(|| (slug.to_lowercase(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_round_trip() {
        assert_eq!(short_id("my-app", 12), "MY-APP-12");
        assert_eq!(parse_short_id("MY-APP-12"), Some(("my-app".into(), 12)));
        assert_eq!(parse_short_id("12"), None);
        assert_eq!(parse_short_id("X-0"), None);
    }
}
