//! Sentry ingest authentication: DSNs, `X-Sentry-Auth`/`Authorization` headers, query auth, and
//! the rules for combining them (reference section 1.3, modelled on Relay's `auth_from_parts`).
//!
//! Only the syntax is checked here. Whether a key exists, is enabled and belongs to the project
//! in the path (403) is for the caller, which has the database.

use base64::Engine as _;
use percent_encoding::percent_decode_str;

/// Newest protocol version we speak; Relay rejects anything above ("only handle <= v8").
pub const MAX_VERSION: u32 = 8;

/// Longest public key we accept. Sentry issues 32 hex characters; other servers and tests use
/// shorter free-form keys (`public123`), so we only bound the shape.
pub const MAX_KEY_LEN: usize = 64;

/// Credentials from one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The public key, with any `.flag` suffix removed.
    pub public_key: String,
    /// `sentry_version`, `None` when absent (meaning "latest").
    pub version: Option<u32>,
    /// `sentry_client`, e.g. `sentry.python/2.75.0`; the caller falls back to `User-Agent`.
    pub client: Option<String>,
}

/// A parsed DSN: `{scheme}://{key}[:{secret}]@{host}[:{port}]{path}/{project_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub public_key: String,
    pub project_id: String,
    /// Base URI: scheme, host, port and path prefix, without a trailing slash
    /// (`https://sentry.example.com/sub/path`).
    pub host: String,
}

/// Why a request's credentials were rejected. `Display` is the client-facing `detail` (Relay's
/// wording); [`AuthError::cause`] gives extra context for the `causes` array where we have it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing authorization information")]
    Missing,
    #[error("multiple authorization payloads detected")]
    Multiple,
    /// Unparsable `X-Sentry-Auth`/`Authorization`/query auth; the field says what was wrong.
    #[error("bad x-sentry-auth header")]
    BadAuthHeader(&'static str),
    /// The envelope's `dsn` header is malformed or disagrees with the other credentials.
    #[error("bad envelope authentication header")]
    BadEnvelopeAuth(&'static str),
    #[error("bad sentry DSN public key")]
    BadPublicKey,
    #[error("unsupported protocol version ({0})")]
    UnsupportedVersion(u32),
    /// A DSN given to [`parse_dsn`] directly (configuration, tests) is malformed.
    #[error("invalid DSN: {0}")]
    InvalidDsn(&'static str),
}

impl AuthError {
    /// HTTP status, as Relay maps these: unusable credentials are 401, well-formed but
    /// unacceptable ones 400.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing
            | AuthError::Multiple
            | AuthError::BadAuthHeader(_)
            | AuthError::BadEnvelopeAuth(_) => 401,
            AuthError::BadPublicKey
            | AuthError::UnsupportedVersion(_)
            | AuthError::InvalidDsn(_) => 400,
        }
    }

    /// A short explanation for the error body's `causes`, when there is one.
    pub fn cause(&self) -> Option<&'static str> {
        match self {
            AuthError::BadAuthHeader(c)
            | AuthError::BadEnvelopeAuth(c)
            | AuthError::InvalidDsn(c) => Some(c),
            _ => None,
        }
    }
}

/// Parses a DSN. The secret is optional and ignored; `key:@host` (empty secret) is accepted.
pub fn parse_dsn(dsn: &str) -> Result<Dsn, AuthError> {
    let dsn = dsn.trim();
    let (scheme, rest) = dsn
        .split_once("://")
        .ok_or(AuthError::InvalidDsn("missing scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(AuthError::InvalidDsn("scheme must be http or https"));
    }
    // Query and fragment are not part of a DSN's identity (old SDKs put options there).
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = authority
        .split_once('@')
        .ok_or(AuthError::InvalidDsn("missing public key"))?;
    if host.is_empty() || host.contains('@') || !is_printable(host) {
        return Err(AuthError::InvalidDsn("invalid host"));
    }
    let key = userinfo.split(':').next().unwrap_or_default();
    if key.is_empty() {
        return Err(AuthError::InvalidDsn("missing public key"));
    }
    let public_key = clean_key(key)?;

    let path = path.trim_end_matches('/');
    let (prefix, project_id) = match path.rsplit_once('/') {
        Some((prefix, id)) => (prefix, id),
        None => ("", ""),
    };
    if project_id.is_empty() || !is_printable(project_id) {
        return Err(AuthError::InvalidDsn("missing project id"));
    }
    if !is_printable(prefix) {
        return Err(AuthError::InvalidDsn("invalid path"));
    }
    Ok(Dsn {
        public_key,
        project_id: project_id.to_owned(),
        host: format!("{scheme}://{host}{prefix}"),
    })
}

/// Parses `Sentry sentry_key=…, sentry_version=7, sentry_client=…` (prefix case-insensitive).
/// Unknown keys (`sentry_secret`, the deprecated `sentry_timestamp`, …) are ignored.
pub fn parse_auth_header(value: &str) -> Result<Auth, AuthError> {
    let value = value.trim();
    let (scheme, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("sentry") {
        return Err(AuthError::BadAuthHeader("expected the Sentry scheme"));
    }
    let pairs = rest.split(',').filter_map(|item| {
        let (k, v) = item.split_once('=')?;
        Some((k.trim(), v.trim()))
    });
    from_pairs(pairs.map(|(k, v)| (k, v.to_owned())))
}

/// Parses `Basic base64(public_key:anything)`; only the part before `:` is used.
pub fn parse_basic(value: &str) -> Result<Auth, AuthError> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    const B64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );

    let value = value.trim();
    let (scheme, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::BadAuthHeader("expected the Basic scheme"));
    }
    let decoded = B64
        .decode(rest.trim())
        .map_err(|_| AuthError::BadAuthHeader("invalid base64 in basic auth"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| AuthError::BadAuthHeader("invalid UTF-8 in basic auth"))?;
    let key = decoded.split(':').next().unwrap_or_default();
    if key.is_empty() {
        return Err(AuthError::BadAuthHeader("missing sentry_key"));
    }
    Ok(Auth {
        public_key: clean_key(key)?,
        version: None,
        client: None,
    })
}

/// Reads auth from a query string (`sentry_key=…&sentry_version=7&sentry_client=…`), as browser
/// and Node SDKs send it. `Ok(None)` when no key starts with `sentry_`: the query is then not an
/// auth source at all.
pub fn from_query(query: &str) -> Result<Option<Auth>, AuthError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    if !has_sentry_param(query) {
        return Ok(None);
    }
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = form_decode(k)?;
        if matches!(
            key.as_str(),
            "sentry_key" | "sentry_version" | "sentry_client"
        ) {
            pairs.push((key, form_decode(v)?));
        }
    }
    from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.clone()))).map(Some)
}

/// The places a request can carry credentials, as raw as the HTTP layer has them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthSources<'a> {
    pub x_sentry_auth: Option<&'a [u8]>,
    pub authorization: Option<&'a [u8]>,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
    /// The envelope header's `dsn`, on the envelope endpoint.
    pub envelope_dsn: Option<&'a str>,
}

/// Combines the sources into one `Auth` (reference section 1.3).
///
/// At most one of `X-Sentry-Auth`, `Authorization: Sentry|Basic` and query auth may be present.
/// The envelope `dsn` may come on top but must name the same key and the project in the path;
/// alone, it authenticates the envelope. `Authorization: Bearer …` (or any other scheme) is not
/// Sentry auth on an ingest route and is ignored.
pub fn resolve(sources: &AuthSources, path_project_id: &str) -> Result<Auth, AuthError> {
    let header = match sources.x_sentry_auth {
        Some(raw) => {
            let text = std::str::from_utf8(raw)
                .map_err(|_| AuthError::BadAuthHeader("header is not valid UTF-8"))?;
            // Some proxies forward an empty header; that is no credential, not a bad one.
            Some(text).filter(|t| !t.trim().is_empty())
        }
        None => None,
    };
    let authorization = match sources.authorization {
        Some(raw) => {
            let text = std::str::from_utf8(raw)
                .map_err(|_| AuthError::BadAuthHeader("header is not valid UTF-8"))?;
            let scheme = text.split_whitespace().next().unwrap_or_default();
            if scheme.eq_ignore_ascii_case("sentry") || scheme.eq_ignore_ascii_case("basic") {
                Some((text, scheme.eq_ignore_ascii_case("basic")))
            } else {
                None
            }
        }
        None => None,
    };
    let query = sources.query.filter(|q| has_sentry_param(q));

    let present = usize::from(header.is_some())
        + usize::from(authorization.is_some())
        + usize::from(query.is_some());
    if present > 1 {
        return Err(AuthError::Multiple);
    }
    let primary = if let Some(h) = header {
        Some(parse_auth_header(h)?)
    } else if let Some((a, basic)) = authorization {
        Some(if basic {
            parse_basic(a)?
        } else {
            parse_auth_header(a)?
        })
    } else if let Some(q) = query {
        from_query(q)?
    } else {
        None
    };

    let dsn = match sources.envelope_dsn.filter(|d| !d.trim().is_empty()) {
        Some(d) => Some(
            parse_dsn(d)
                .map_err(|_| AuthError::BadEnvelopeAuth("invalid dsn in envelope header"))?,
        ),
        None => None,
    };
    match (primary, dsn) {
        (None, None) => Err(AuthError::Missing),
        (Some(auth), None) => Ok(auth),
        (primary, Some(dsn)) => {
            if dsn.project_id != path_project_id {
                return Err(AuthError::BadEnvelopeAuth(
                    "envelope dsn names a different project",
                ));
            }
            match primary {
                Some(auth) if auth.public_key != dsn.public_key => Err(AuthError::BadEnvelopeAuth(
                    "envelope dsn names a different key",
                )),
                Some(auth) => Ok(auth),
                None => Ok(Auth {
                    public_key: dsn.public_key,
                    version: None,
                    client: None,
                }),
            }
        }
    }
}

/// Shared by header and query parsing: picks the three keys we use, validates them.
fn from_pairs<'k>(pairs: impl Iterator<Item = (&'k str, String)>) -> Result<Auth, AuthError> {
    let mut key: Option<String> = None;
    let mut version: Option<u32> = None;
    let mut client: Option<String> = None;
    for (k, v) in pairs {
        match k {
            "sentry_key" => key = Some(v),
            "sentry_version" => version = Some(parse_version(&v)?),
            "sentry_client" => client = Some(v).filter(|c| !c.is_empty()),
            _ => {}
        }
    }
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or(AuthError::BadAuthHeader("missing sentry_key"))?;
    if let Some(v) = version {
        if v > MAX_VERSION {
            return Err(AuthError::UnsupportedVersion(v));
        }
    }
    Ok(Auth {
        public_key: clean_key(&key)?,
        version,
        client,
    })
}

/// `7` and `7.0` are both 7: Relay takes the integer before any `.`.
fn parse_version(v: &str) -> Result<u32, AuthError> {
    let major = v.split('.').next().unwrap_or_default().trim();
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::BadAuthHeader("invalid value for version"));
    }
    major
        .parse()
        .map_err(|_| AuthError::BadAuthHeader("invalid value for version"))
}

/// Strips a `.flag` suffix (`<key>.no-cache`, Relay's `parse_with_flags`) and checks the shape:
/// non-empty, at most [`MAX_KEY_LEN`] printable ASCII characters, no spaces.
fn clean_key(raw: &str) -> Result<String, AuthError> {
    let key = raw.split('.').next().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::BadPublicKey);
    }
    Ok(key.to_owned())
}

fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// True when some query parameter name starts with `sentry_` (after decoding), which is what
/// makes the query an auth source.
fn has_sentry_param(query: &str) -> bool {
    let query = query.strip_prefix('?').unwrap_or(query);
    query.split('&').any(|part| {
        let k = part.split('=').next().unwrap_or_default();
        form_decode(k).is_ok_and(|k| k.starts_with("sentry_"))
    })
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, then percent-decoding.
fn form_decode(s: &str) -> Result<String, AuthError> {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| AuthError::BadAuthHeader("invalid UTF-8 in query string"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn auth(key: &str, version: Option<u32>, client: Option<&str>) -> Auth {
        Auth {
            public_key: key.to_owned(),
            version,
            client: client.map(str::to_owned),
        }
    }

    #[test]
    fn auth_headers_from_real_sdks() {
        let cases = [
            (
                "Sentry sentry_key=public123, sentry_version=7, sentry_client=sentry.python/2.75.0",
                auth("public123", Some(7), Some("sentry.python/2.75.0")),
            ),
            (
                "Sentry sentry_key=public123, sentry_version=7, sentry_timestamp=1795392739.8493655, sentry_client=sentry.rust/0.49.5",
                auth("public123", Some(7), Some("sentry.rust/0.49.5")),
            ),
            (
                "Sentry sentry_key=public123, sentry_version=7, sentry_timestamp=1795392739.8, sentry_client=sentry-cli/x86_64",
                auth("public123", Some(7), Some("sentry-cli/x86_64")),
            ),
            (
                "Sentry sentry_key=public123, sentry_version=7, sentry_client=sentry.python/2.75.0, sentry_secret=s3cr3t",
                auth("public123", Some(7), Some("sentry.python/2.75.0")),
            ),
            (
                "sentry sentry_version=7.0,sentry_key=e12d836b15bb49d7bbf99e64295d995b",
                auth("e12d836b15bb49d7bbf99e64295d995b", Some(7), None),
            ),
            (
                "SENTRY  sentry_key = abc.no-cache ,, junk, sentry_unknown=1",
                auth("abc", None, None),
            ),
            ("Sentry sentry_key=k, sentry_version=8", auth("k", Some(8), None)),
        ];
        for (header, want) in cases {
            assert_eq!(parse_auth_header(header), Ok(want), "{header}");
        }
    }

    #[test]
    fn bad_auth_headers() {
        let cases = [
            (
                "Bearer abc",
                AuthError::BadAuthHeader("expected the Sentry scheme"),
            ),
            (
                "sentry_key=abc",
                AuthError::BadAuthHeader("expected the Sentry scheme"),
            ),
            ("Sentry", AuthError::BadAuthHeader("missing sentry_key")),
            (
                "Sentry sentry_key=",
                AuthError::BadAuthHeader("missing sentry_key"),
            ),
            (
                "Sentry sentry_key=k, sentry_version=seven",
                AuthError::BadAuthHeader("invalid value for version"),
            ),
            (
                "Sentry sentry_key=k, sentry_version=99999999999",
                AuthError::BadAuthHeader("invalid value for version"),
            ),
            (
                "Sentry sentry_key=k, sentry_version=9",
                AuthError::UnsupportedVersion(9),
            ),
            ("Sentry sentry_key=has space", AuthError::BadPublicKey),
            ("Sentry sentry_key=.flag", AuthError::BadPublicKey),
            ("Sentry sentry_key=k\u{e9}y", AuthError::BadPublicKey),
        ];
        for (header, want) in cases {
            assert_eq!(parse_auth_header(header), Err(want.clone()), "{header}");
        }
        let long = format!("Sentry sentry_key={}", "a".repeat(65));
        assert_eq!(parse_auth_header(&long), Err(AuthError::BadPublicKey));
        let ok = format!("Sentry sentry_key={}", "a".repeat(64));
        assert!(parse_auth_header(&ok).is_ok());
        assert_eq!(
            AuthError::UnsupportedVersion(9).to_string(),
            "unsupported protocol version (9)"
        );
    }

    #[test]
    fn basic_auth() {
        // base64("public123:whatever"), base64("public123") and an unpadded variant.
        assert_eq!(
            parse_basic("Basic cHVibGljMTIzOndoYXRldmVy"),
            Ok(auth("public123", None, None))
        );
        assert_eq!(
            parse_basic("basic cHVibGljMTIz"),
            Ok(auth("public123", None, None))
        );
        assert_eq!(
            parse_basic("Basic cHVibGljMTIzOg"),
            Ok(auth("public123", None, None))
        );
        assert!(matches!(
            parse_basic("Basic !!!"),
            Err(AuthError::BadAuthHeader(_))
        ));
        assert!(matches!(
            parse_basic("Basic Og=="),
            Err(AuthError::BadAuthHeader(_))
        ));
        assert!(matches!(
            parse_basic("Sentry x"),
            Err(AuthError::BadAuthHeader(_))
        ));
    }

    #[test]
    fn query_auth() {
        assert_eq!(
            from_query(
                "sentry_version=7&sentry_key=public123&sentry_client=sentry.javascript.node%2F11.12.0"
            ),
            Ok(Some(auth("public123", Some(7), Some("sentry.javascript.node/11.12.0"))))
        );
        assert_eq!(
            from_query("?sentry_key=public123&sentry_client=a+b&sentry_release=1.0"),
            Ok(Some(auth("public123", None, Some("a b"))))
        );
        assert_eq!(from_query(""), Ok(None));
        assert_eq!(from_query("foo=bar&x=sentry_key"), Ok(None));
        assert_eq!(
            from_query("sentry_version=7"),
            Err(AuthError::BadAuthHeader("missing sentry_key"))
        );
        assert_eq!(
            from_query("sentry_key=k&sentry_version=10"),
            Err(AuthError::UnsupportedVersion(10))
        );
        assert!(from_query("sentry_key=%ff").is_err());
        assert_eq!(
            from_query("%73entry_key=k"),
            Ok(Some(auth("k", None, None)))
        );
    }

    #[test]
    fn dsns() {
        let cases = [
            (
                "https://public@sentry.example.com/1",
                "public",
                "1",
                "https://sentry.example.com",
            ),
            (
                "https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42",
                "e12d836b15bb49d7bbf99e64295d995b",
                "42",
                "https://sentry.io",
            ),
            (
                "http://public123@127.0.0.1:9000/42",
                "public123",
                "42",
                "http://127.0.0.1:9000",
            ),
            (
                "http://k@host/sub/path/42",
                "k",
                "42",
                "http://host/sub/path",
            ),
            ("http://k:secret@host/sub/42/", "k", "42", "http://host/sub"),
            ("HTTPS://k@Host:1/7?timeout=3", "k", "7", "https://Host:1"),
        ];
        for (dsn, key, project, host) in cases {
            let got = parse_dsn(dsn).unwrap_or_else(|e| panic!("{dsn}: {e}"));
            assert_eq!(
                (
                    got.public_key.as_str(),
                    got.project_id.as_str(),
                    got.host.as_str()
                ),
                (key, project, host),
                "{dsn}"
            );
        }
        for bad in [
            "",
            "sentry.io/42",
            "ftp://k@host/1",
            "https://host/1",
            "https://@host/1",
            "https://:secret@host/1",
            "https://k@/1",
            "https://k@host",
            "https://k@host/",
            "https://bad key@host/1",
        ] {
            let err = parse_dsn(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
    }

    #[test]
    fn resolve_rules() {
        let xsa = b"Sentry sentry_key=public123, sentry_version=7".as_slice();
        let q = "sentry_key=public123&sentry_version=7";
        let dsn = "http://public123@127.0.0.1:9000/42";
        let none = AuthSources::default();
        let want = auth("public123", Some(7), None);

        let ok = |s: AuthSources| resolve(&s, "42");
        assert_eq!(
            ok(AuthSources {
                x_sentry_auth: Some(xsa),
                ..none
            }),
            Ok(want.clone())
        );
        assert_eq!(
            ok(AuthSources {
                authorization: Some(xsa),
                ..none
            }),
            Ok(want.clone())
        );
        assert_eq!(
            ok(AuthSources {
                query: Some(q),
                ..none
            }),
            Ok(want.clone())
        );
        assert_eq!(
            ok(AuthSources {
                authorization: Some(b"Basic cHVibGljMTIzOg=="),
                ..none
            }),
            Ok(auth("public123", None, None))
        );
        assert_eq!(
            ok(AuthSources {
                envelope_dsn: Some(dsn),
                ..none
            }),
            Ok(auth("public123", None, None))
        );
        // Agreeing envelope dsn on top of a header is fine; the header's details win.
        assert_eq!(
            ok(AuthSources {
                x_sentry_auth: Some(xsa),
                envelope_dsn: Some(dsn),
                ..none
            }),
            Ok(want.clone())
        );
        // Bearer is not Sentry auth: ignored, and does not count as a second payload.
        assert_eq!(
            ok(AuthSources {
                authorization: Some(b"Bearer sntrys_abc"),
                query: Some(q),
                ..none
            }),
            Ok(want.clone())
        );
        // A query without sentry_ parameters is not a source either.
        assert_eq!(
            ok(AuthSources {
                x_sentry_auth: Some(xsa),
                query: Some("a=1"),
                ..none
            }),
            Ok(want.clone())
        );

        let errs: Vec<(AuthSources, AuthError, u16)> = vec![
            (none, AuthError::Missing, 401),
            (
                AuthSources {
                    authorization: Some(b"Bearer x"),
                    ..none
                },
                AuthError::Missing,
                401,
            ),
            (
                AuthSources {
                    x_sentry_auth: Some(b"  "),
                    ..none
                },
                AuthError::Missing,
                401,
            ),
            (
                AuthSources {
                    x_sentry_auth: Some(xsa),
                    query: Some(q),
                    ..none
                },
                AuthError::Multiple,
                401,
            ),
            (
                AuthSources {
                    x_sentry_auth: Some(xsa),
                    authorization: Some(xsa),
                    ..none
                },
                AuthError::Multiple,
                401,
            ),
            (
                AuthSources {
                    x_sentry_auth: Some(b"Sentry sentry_key=\xff"),
                    ..none
                },
                AuthError::BadAuthHeader("header is not valid UTF-8"),
                401,
            ),
            (
                AuthSources {
                    authorization: Some(b"Basic \xff"),
                    ..none
                },
                AuthError::BadAuthHeader("header is not valid UTF-8"),
                401,
            ),
            (
                AuthSources {
                    x_sentry_auth: Some(b"Sentry nothing"),
                    ..none
                },
                AuthError::BadAuthHeader("missing sentry_key"),
                401,
            ),
            (
                AuthSources {
                    x_sentry_auth: Some(b"Sentry sentry_key=a b"),
                    ..none
                },
                AuthError::BadPublicKey,
                400,
            ),
            (
                AuthSources {
                    query: Some("sentry_key=k&sentry_version=9"),
                    ..none
                },
                AuthError::UnsupportedVersion(9),
                400,
            ),
            (
                AuthSources {
                    envelope_dsn: Some("not a dsn"),
                    ..none
                },
                AuthError::BadEnvelopeAuth("invalid dsn in envelope header"),
                401,
            ),
            (
                AuthSources {
                    envelope_dsn: Some("http://public123@h/43"),
                    ..none
                },
                AuthError::BadEnvelopeAuth("envelope dsn names a different project"),
                401,
            ),
            (
                AuthSources {
                    x_sentry_auth: Some(xsa),
                    envelope_dsn: Some("http://other@h/42"),
                    ..none
                },
                AuthError::BadEnvelopeAuth("envelope dsn names a different key"),
                401,
            ),
        ];
        for (sources, want, status) in errs {
            let got = resolve(&sources, "42").unwrap_err();
            assert_eq!(got, want, "{sources:?}");
            assert_eq!(got.status(), status, "{sources:?}");
        }
        assert_eq!(
            AuthError::Missing.to_string(),
            "missing authorization information"
        );
        assert_eq!(
            AuthError::Multiple.to_string(),
            "multiple authorization payloads detected"
        );
        assert_eq!(
            AuthError::BadAuthHeader("x").to_string(),
            "bad x-sentry-auth header"
        );
        assert_eq!(
            AuthError::BadEnvelopeAuth("x").to_string(),
            "bad envelope authentication header"
        );
        assert_eq!(
            AuthError::BadPublicKey.to_string(),
            "bad sentry DSN public key"
        );
    }

    /// Every captured request authenticates as `public123`.
    #[test]
    fn captured_requests_authenticate() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sdk-captures");
        let mut checked = 0;
        for sdk in std::fs::read_dir(root).unwrap() {
            for case in std::fs::read_dir(sdk.unwrap().path()).unwrap() {
                for req in std::fs::read_dir(case.unwrap().path()).unwrap() {
                    let meta = req.unwrap().path().join("meta.json");
                    if !meta.exists() {
                        continue;
                    }
                    let meta: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
                    let header = |name: &str| {
                        meta["headers"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
                            .map(|h| h[1].as_str().unwrap().to_owned())
                    };
                    let xsa = header("x-sentry-auth");
                    let authz = header("authorization");
                    let sources = AuthSources {
                        x_sentry_auth: xsa.as_deref().map(str::as_bytes),
                        authorization: authz.as_deref().map(str::as_bytes),
                        query: meta["query_string"].as_str(),
                        envelope_dsn: None,
                    };
                    let got = resolve(&sources, "42").unwrap();
                    assert_eq!(got.public_key, "public123");
                    assert_eq!(got.version, Some(7));
                    assert!(got.client.is_some());
                    checked += 1;
                }
            }
        }
        assert!(checked >= 20);
    }
}
