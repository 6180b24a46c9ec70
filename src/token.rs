//! API tokens: `sntryu_<64 hex>` (the form sentry-cli recognizes), stored only as SHA-256,
//! and the scopes they carry.

use sha2::{Digest, Sha256};
use std::fmt;

/// What a token may do, in Sentry's names. Within a resource, `admin` includes `write` and
/// `write` includes `read`; `org:admin` includes everything (Sentry's owner role). Sentry's
/// other scopes (`member:*`, `team:*`, `alerts:*`) have nothing to guard here: teams and
/// members do not exist, and alert channels and responders are project settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    EventRead,
    EventWrite,
    EventAdmin,
    ProjectRead,
    ProjectWrite,
    ProjectAdmin,
    OrgRead,
    OrgWrite,
    OrgAdmin,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::EventRead,
        Scope::EventWrite,
        Scope::EventAdmin,
        Scope::ProjectRead,
        Scope::ProjectWrite,
        Scope::ProjectAdmin,
        Scope::OrgRead,
        Scope::OrgWrite,
        Scope::OrgAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::EventRead => "event:read",
            Scope::EventWrite => "event:write",
            Scope::EventAdmin => "event:admin",
            Scope::ProjectRead => "project:read",
            Scope::ProjectWrite => "project:write",
            Scope::ProjectAdmin => "project:admin",
            Scope::OrgRead => "org:read",
            Scope::OrgWrite => "org:write",
            Scope::OrgAdmin => "org:admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The resource (`event`, `project`, `org`) and the level within it (0 read, 1 write,
    /// 2 admin).
    fn rank(self) -> (u8, u8) {
        let i = self as u8;
        (i / 3, i % 3)
    }

    /// Whether holding `self` allows what `needed` guards.
    pub fn grants(self, needed: Scope) -> bool {
        let (have, have_level) = self.rank();
        let (want, want_level) = needed.rank();
        self == Scope::OrgAdmin || (have == want && have_level >= want_level)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a token was given, as stored: Sentry's names separated by spaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Every scope (tokens made before scopes existed, and `token create` without `--scope`).
    pub fn all() -> Scopes {
        Scopes(Scope::ALL.to_vec())
    }

    /// Sorted and without repeats.
    pub fn new(mut list: Vec<Scope>) -> Scopes {
        list.sort_unstable();
        list.dedup();
        Scopes(list)
    }

    /// The stored text; unknown names (from a newer version) are skipped, never granted.
    pub fn from_stored(text: &str) -> Scopes {
        Scopes::new(text.split_whitespace().filter_map(Scope::parse).collect())
    }

    pub fn to_stored(&self) -> String {
        self.names().join(" ")
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.as_str()).collect()
    }

    pub fn allows(&self, needed: Scope) -> bool {
        self.0.iter().any(|s| s.grants(needed))
    }
}

/// A new random token.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("sntryu_{}", hex::encode(bytes))
}

/// What the database keeps of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new DSN public key: 32 lowercase hex characters, as Sentry issues them.
pub fn generate_public_key() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::{Scope, Scopes};

    #[test]
    fn scopes_include_lower_levels_of_their_resource_only() {
        use Scope::*;
        let cases = [
            (EventRead, EventRead, true),
            (EventRead, EventWrite, false),
            (EventWrite, EventRead, true),
            (EventAdmin, EventWrite, true),
            (EventAdmin, ProjectRead, false),
            (ProjectAdmin, EventRead, false),
            (ProjectWrite, ProjectRead, true),
            (ProjectWrite, ProjectAdmin, false),
            (OrgWrite, OrgAdmin, false),
            (OrgWrite, ProjectRead, false),
            (OrgAdmin, EventAdmin, true),
            (OrgAdmin, ProjectAdmin, true),
        ];
        for (have, want, ok) in cases {
            assert_eq!(have.grants(want), ok, "{have} grants {want}");
        }
    }

    #[test]
    fn scopes_round_trip_their_stored_text() {
        let s = Scopes::from_stored("project:read  event:read event:read bogus:thing");
        assert_eq!(s.to_stored(), "event:read project:read");
        assert!(s.allows(Scope::EventRead) && !s.allows(Scope::EventWrite));
        assert_eq!(
            Scopes::from_stored(&Scopes::all().to_stored()),
            Scopes::all()
        );
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
    }

    #[test]
    fn tokens_have_the_sentry_user_token_form() {
        let t = super::generate();
        assert!(t.starts_with("sntryu_"));
        assert_eq!(t.len(), 7 + 64);
        assert!(t[7..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(super::hash(&t), t);
        assert_eq!(super::hash(&t).len(), 64);
    }
}
