//! The issue model: short ids and the Sentry names of an issue's fields.

pub mod model;
pub mod plan;
pub mod request;
pub mod state;
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

/// What an issue search string asks for: Sentry's `is:` statuses plus free words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `None`: every status.
    pub status: Option<&'static str>,
    pub words: Vec<String>,
}

/// Parses `query=`: an absent query means `is:unresolved` (Sentry's default); an empty one
/// means every status. `is:muted` and `is:archived` are aliases of `is:ignored`. Other
/// `key:value` filters are not supported yet and are ignored rather than refused, so scripts
/// written for Sentry still get an answer.
pub fn parse_query(query: Option<&str>) -> Query {
    let Some(query) = query else {
        return Query {
            status: Some("unresolved"),
            words: vec![],
        };
    };
    let mut q = Query::default();
    for token in query.split_whitespace() {
        match token.split_once(':') {
            Some(("is", v)) => {
                q.status = match v {
                    "unresolved" => Some("unresolved"),
                    "resolved" => Some("resolved"),
                    "ignored" | "muted" | "archived" => Some("ignored"),
                    _ => q.status,
                }
            }
            Some(_) => {}
            None => q.words.push(token.to_string()),
        }
    }
    q
}

#[cfg(test)]
mod query_tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(parse_query(None).status, Some("unresolved"));
        assert_eq!(parse_query(Some("")), Query::default());
        let q = parse_query(Some("is:muted KeyError level:error"));
        assert_eq!(q.status, Some("ignored"));
        assert_eq!(q.words, vec!["KeyError"]);
    }
}
