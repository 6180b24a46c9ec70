//! Message parameterization (reference 6.5): variable parts of messages become placeholders.

use regex::{Captures, Regex};
use std::borrow::Cow;
use std::sync::LazyLock;

// ---------------------------------------------------------------------------------------------
// Message parameterization

/// The tokens of reference 6.5, in priority order; each alternative is one capture group, named
/// by the placeholder it becomes. `\b` is ASCII-only (`(?-u:\b)`) so the lazy DFA keeps working on
/// non-ASCII text (a Unicode `\b` makes the regex crate fall back to a much slower engine).
pub(super) static PARAMS: LazyLock<Regex> = LazyLock::new(|| {
    const MONTH: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
    const DAY: &str = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
    const LONG_DAY: &str = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)";
    let hex = "[0-9a-fA-F]";
    let ipv4_octet = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let tokens: [(&str, String); 12] = [
        ("email", r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*\.[a-zA-Z]{2,}".into()),
        ("url", r"\b(?:wss?|https?|ftp)://[^\s/$.?#][^\s]*".into()),
        (
            "hostname",
            r"\b(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?\.)+(?i:com|net|org|edu|gov|mil|io|dev|app|info|biz|uk|de|fr|nl|eu|ru|cn|jp|us|ca|au|br|local|internal|localdomain|cloud)\b".into(),
        ),
        (
            "ip",
            format!(
                r"\b(?:{o}\.){{3}}{o}\b|\b(?:{h}{{1,4}}:){{7}}{h}{{1,4}}\b|\b(?:{h}{{1,4}}:){{1,6}}(?::{h}{{1,4}}){{1,6}}\b|::1\b",
                o = ipv4_octet,
                h = hex
            ),
        ),
        ("uuid", format!(r"\b{h}{{8}}-{h}{{4}}-{h}{{4}}-{h}{{4}}-{h}{{12}}\b", h = hex)),
        ("sha1", format!(r"\b{hex}{{40}}\b")),
        ("md5", format!(r"\b{hex}{{32}}\b")),
        (
            "date",
            [
                // RFC 3339 / ISO 8601, with `T` or a space, optional fraction and zone.
                r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2}\b)?".to_owned(),
                // RFC 822 / RFC 1123
                format!(r"\b{DAY},? [0-9]{{1,2}} {MONTH} [0-9]{{2,4}} [0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}})? (?:[A-Z]{{2,5}}\b|[+-][0-9]{{4}}\b)"),
                // RFC 850
                format!(r"\b{LONG_DAY}, [0-9]{{2}}-{MONTH}-[0-9]{{2}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} [A-Z]{{2,5}}\b"),
                // ANSI C asctime: `Mon Jan  2 15:04:05 2006`
                format!(r"\b{DAY} {MONTH} +[0-9]{{1,2}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} [0-9]{{4}}\b"),
                // Kitchen: `3:04PM`, `3:04:05 pm`
                r"\b[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})? ?[AaPp][Mm]\b".to_owned(),
                r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}\b".to_owned(),
                r"\b[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?\b".to_owned(),
                r"datetime\.datetime\([^)]*\)".to_owned(),
            ]
            .join("|"),
        ),
        ("duration", r"\b[0-9]+(?:\.[0-9]+)?(?:ms|s)\b".into()),
        ("hex", format!(r"\b0[xX]{hex}+\b")),
        ("float", r"-[0-9]+\.[0-9]+\b|\b[0-9]+\.[0-9]+\b".into()),
        ("int", r"-[0-9]+\b|\b[0-9]+\b".into()),
    ];
    let mut pattern = String::new();
    for (name, re) in &tokens {
        if !pattern.is_empty() {
            pattern.push('|');
        }
        pattern.push_str(&format!("(?P<{name}>{re})"));
    }
    // Only right after `=`: the regex crate has no lookbehind, so the `=` is matched and put back.
    pattern.push_str(r#"|=(?P<quoted_str>'[^']*'|"[^"]*")|=(?P<bool>(?i:true|false)\b)"#);
    let pattern = pattern.replace(r"\b", r"(?-u:\b)");
    Regex::new(&pattern).expect("static regex")
});

/// Placeholder names in the order of `PARAMS`' capture groups.
pub(super) const PARAM_NAMES: [&str; 14] = [
    "email",
    "url",
    "hostname",
    "ip",
    "uuid",
    "sha1",
    "md5",
    "date",
    "duration",
    "hex",
    "float",
    "int",
    "quoted_str",
    "bool",
];

/// Parameterizes a message or exception value for grouping (reference 6.5): keeps the first two
/// non-empty lines (appending `...` when more followed), then replaces variable parts such as
/// numbers, ids, addresses and dates by `<name>` placeholders.
pub fn normalize_message(text: &str) -> String {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("");
    let second = lines.next();
    let more = lines.next().is_some();
    let mut joined: Cow<'_, str> = match second {
        Some(second) => Cow::Owned(format!("{first}\n{second}")),
        None => Cow::Borrowed(first),
    };
    if let Cow::Borrowed(s) = joined {
        joined = Cow::Borrowed(s.trim());
    } else if joined.trim().len() != joined.len() {
        joined = Cow::Owned(joined.trim().to_owned());
    }

    let mut out = PARAMS
        .replace_all(&joined, |caps: &Captures<'_>| {
            let all = caps.get(0).map_or("", |m| m.as_str());
            for (i, name) in PARAM_NAMES.iter().enumerate() {
                let Some(m) = caps.get(i + 1) else { continue };
                let literal = match *name {
                    // Sentry's pattern has a `(?![\w.-])` lookahead: `java.io.IOException` names
                    // a package, not a host. Emulated by looking at the next character.
                    "hostname" => joined
                        .get(m.end()..)
                        .and_then(|rest| rest.chars().next())
                        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_')),
                    // An "IPv6 address" without any digit is almost surely a `mod::item` path.
                    "ip" => {
                        m.as_str().contains("::")
                            && !m.as_str().contains(|c: char| c.is_ascii_digit())
                    }
                    _ => false,
                };
                if literal {
                    return all.to_owned();
                }
                // The `=` of `=<quoted_str>` / `=<bool>` was matched too (no lookbehind): keep it.
                let eq = if all.starts_with('=') { "=" } else { "" };
                return format!("{eq}<{name}>");
            }
            all.to_owned()
        })
        .into_owned();
    if more {
        out.push_str("...");
    }
    out
}
