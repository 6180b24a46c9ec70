//! Globs of rule values, compiled to linear-time matchers (Sentry's `glob_match` semantics).
//!
//! `*` matches any run of characters and `?` one character; `[abc]`, `[a-z]` and `[!abc]` are
//! classes; `\x` is a literal `x`. In path mode (Sentry's `doublestar` + `path_normalize`) `\`
//! is a separator like `/`, `*` and `?` stop at `/`, `**` crosses directories, matching is
//! case-insensitive and a relative value also matches as if it began with `/`. Patterns become
//! `regex` programs (no backtracking: matching is linear in the value) under a size limit, and a
//! pattern without wildcards is a plain comparison.

use regex::{Regex, RegexBuilder};
use std::borrow::Cow;

/// How a value is compared with a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Text: `*` matches anything, `/` included.
    Text { ignore_case: bool },
    /// File paths and packages.
    Path,
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub(super) struct Glob {
    matcher: Matcher,
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard: the (unescaped, path-normalized) literal.
    Exact(String),
    Regex(Regex),
}

/// Compiled programs larger than this are refused (a pattern is at most 64 KiB of text, but
/// the program, not the text, is what costs memory).
const PROGRAM_LIMIT: usize = 1 << 20;

impl Glob {
    pub(super) fn new(pattern: &str, mode: Mode) -> Result<Glob, String> {
        let pattern = match mode {
            Mode::Path => pattern.replace('\\', "/"),
            Mode::Text { .. } => pattern.to_owned(),
        };
        let matcher = match literal(&pattern) {
            Some(text) => Matcher::Exact(text),
            None => Matcher::Regex(compile(&pattern, mode)?),
        };
        Ok(Glob { matcher, mode })
    }

    pub(super) fn is_match(&self, value: &str) -> bool {
        match self.mode {
            Mode::Text { ignore_case } => self.test(value, ignore_case),
            Mode::Path => {
                let normalized = if value.contains('\\') {
                    Cow::Owned(value.replace('\\', "/"))
                } else {
                    Cow::Borrowed(value)
                };
                self.test(&normalized, true)
                    || (!normalized.starts_with('/') && self.test(&format!("/{normalized}"), true))
            }
        }
    }

    fn test(&self, value: &str, ignore_case: bool) -> bool {
        match &self.matcher {
            Matcher::Exact(text) if ignore_case => eq_ignore_case(text, value),
            Matcher::Exact(text) => text == value,
            Matcher::Regex(re) => re.is_match(value),
        }
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// The pattern's literal text when it has no wildcard or class, with escapes removed.
fn literal(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' | '[' => return None,
            '\\' => out.push(chars.next().unwrap_or('\\')),
            c => out.push(c),
        }
    }
    Some(out)
}

fn compile(pattern: &str, mode: Mode) -> Result<Regex, String> {
    let path = mode == Mode::Path;
    let ignore_case = match mode {
        Mode::Path => true,
        Mode::Text { ignore_case } => ignore_case,
    };
    // `(?s)`: a message with several lines still matches `*timeout*` (Sentry's allow_newline).
    let mut re = String::from(if ignore_case { r"(?si)\A" } else { r"(?s)\A" });
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => {
                let start = i - 1;
                while chars.get(i) == Some(&'*') {
                    i += 1;
                }
                let double = i - start >= 2;
                if !path {
                    re.push_str(".*");
                } else if !double {
                    re.push_str("[^/]*");
                } else {
                    let after_separator = start == 0 || chars[start - 1] == '/';
                    if after_separator && chars.get(i) == Some(&'/') {
                        // `**/` is zero or more whole directories: `a/**/b` matches `a/b`.
                        re.push_str("(?:.*/)?");
                        i += 1;
                    } else {
                        re.push_str(".*");
                    }
                }
            }
            '?' => re.push_str(if path { "[^/]" } else { "." }),
            '[' => i = class(&chars, i, &mut re)?,
            '\\' => match chars.get(i) {
                Some(&next) => {
                    push_literal(&mut re, next);
                    i += 1;
                }
                None => push_literal(&mut re, '\\'),
            },
            c => push_literal(&mut re, c),
        }
    }
    re.push_str(r"\z");
    RegexBuilder::new(&re)
        .size_limit(PROGRAM_LIMIT)
        .dfa_size_limit(PROGRAM_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => format!("glob too complex: {}", short(pattern)),
            _ => format!("invalid glob {}", short(pattern)),
        })
}

/// Translates the class whose `[` ends before `chars[i]`; returns the index after its `]`.
fn class(chars: &[char], mut i: usize, re: &mut String) -> Result<usize, String> {
    let unclosed = || {
        let pattern: String = chars.iter().collect();
        format!("invalid glob {}: \"[\" is not closed", short(&pattern))
    };
    re.push('[');
    if matches!(chars.get(i), Some('!' | '^')) {
        re.push('^');
        i += 1;
    }
    let first = i;
    loop {
        let c = *chars.get(i).ok_or_else(unclosed)?;
        // A `]` right after the opening is a member, as in fnmatch.
        if c == ']' && i > first {
            re.push(']');
            return Ok(i + 1);
        }
        let is_range =
            chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&e| e != ']');
        if is_range {
            let end = chars[i + 2];
            if end < c {
                let pattern: String = chars.iter().collect();
                return Err(format!(
                    "invalid glob {}: the range {c}-{end} is reversed",
                    short(&pattern)
                ));
            }
            push_literal(re, c);
            re.push('-');
            push_literal(re, end);
            i += 3;
        } else {
            push_literal(re, c);
            i += 1;
        }
    }
}

fn push_literal(re: &mut String, c: char) {
    let mut buf = [0; 4];
    re.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

fn short(pattern: &str) -> String {
    super::shorten(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: Mode = Mode::Text { ignore_case: false };
    const TEXT_CI: Mode = Mode::Text { ignore_case: true };

    #[test]
    fn matches_like_sentry() {
        let cases: &[(&str, Mode, &str, bool)] = &[
            // Literals: exact, case as the mode says.
            ("DatabaseUnavailable", TEXT, "DatabaseUnavailable", true),
            ("DatabaseUnavailable", TEXT, "databaseunavailable", false),
            ("DatabaseUnavailable", TEXT_CI, "databaseUNAVAILABLE", true),
            ("Ärger", TEXT_CI, "äRGER", true),
            ("abc", TEXT, "abcd", false),
            // `*` and `?`.
            ("*timeout*", TEXT_CI, "Connection TIMEOUT after 3s", true),
            ("*timeout*", TEXT_CI, "line one\nread timeout", true),
            ("*timeout*", TEXT, "time out", false),
            ("my.package.*", TEXT, "my.package.sub.mod", true),
            ("my.package.*", TEXT, "my.packages", false),
            ("a/*", TEXT, "a/b/c", true),
            ("f?o", TEXT, "foo", true),
            ("f?o", TEXT, "fo", false),
            ("f?o", TEXT, "f/o", true),
            ("", TEXT, "", true),
            ("", TEXT, "x", false),
            // Classes and escapes.
            ("1.18.[0-4].*", TEXT, "1.18.4.2153-2aa83397b", true),
            ("1.18.[0-4].*", TEXT, "1.18.5.1", false),
            ("[!a]x", TEXT, "bx", true),
            ("[!a]x", TEXT, "ax", false),
            ("[]]", TEXT, "]", true),
            ("a[-]b", TEXT, "a-b", true),
            (r"\*literal", TEXT, "*literal", true),
            (r"\*literal", TEXT, "xliteral", false),
            ("a.b+c(d)", TEXT, "a.b+c(d)", true),
            ("a.b", TEXT, "axb", false),
            // Paths: `*` stays in one directory, `**` crosses them, case and `\` normalized.
            ("*.py", Mode::Path, "foo/hello.py", false),
            ("**/*.py", Mode::Path, "foo/hello.py", true),
            ("**/*.py", Mode::Path, "hello.py", true),
            ("**/*.py", Mode::Path, "FOO/HELLO.PY", true),
            ("foo/**/*.py", Mode::Path, r"foo\hello\bar.PY", true),
            ("foo/**/bar.py", Mode::Path, "foo/bar.py", true),
            (
                "**/node_modules/**",
                Mode::Path,
                "/app/node_modules/react/index.js",
                true,
            ),
            (
                "**/node_modules/**",
                Mode::Path,
                "node_modules/react/index.js",
                true,
            ),
            ("**/node_modules/**", Mode::Path, "/app/src/index.js", false),
            ("/usr/lib/**", Mode::Path, "/usr/lib/libc.so.6", true),
            ("/usr/lib/**", Mode::Path, "/usr/lib64/libc.so.6", false),
            ("/usr/lib/*", Mode::Path, "/usr/lib/x/libc.so", false),
            // A relative value also matches an absolute pattern.
            ("/app/*.js", Mode::Path, "app/main.js", true),
            (
                "C:\\Windows\\**",
                Mode::Path,
                "c:/windows/system32/ntdll.dll",
                true,
            ),
            ("lib?.so", Mode::Path, "lib/.so", false),
            ("libc.so*", Mode::Path, "LIBC.SO.6", true),
        ];
        for &(pattern, mode, value, want) in cases {
            let glob = Glob::new(pattern, mode).unwrap();
            assert_eq!(
                glob.is_match(value),
                want,
                "{pattern:?} vs {value:?} ({mode:?})"
            );
        }
    }

    #[test]
    fn invalid_globs_say_why() {
        for (pattern, want) in [
            ("abc[def", "is not closed"),
            ("[", "is not closed"),
            ("[!", "is not closed"),
            ("[z-a]", "reversed"),
        ] {
            let err = Glob::new(pattern, TEXT).unwrap_err();
            assert!(err.contains(want), "{pattern}: {err}");
        }
        // A trailing backslash is a literal backslash.
        assert!(Glob::new("a\\", TEXT).unwrap().is_match("a\\"));
    }

    #[test]
    fn hostile_patterns_stay_linear_and_bounded() {
        // Many stars would backtrack exponentially in a naive matcher.
        let stars = "a*".repeat(200) + "b";
        let glob = Glob::new(&stars, TEXT).unwrap();
        let value = "a".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(!glob.is_match(&value));
        let path = Glob::new(&"**/".repeat(500), Mode::Path).unwrap();
        assert!(!path.is_match(&("x/".repeat(50_000) + "y")));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Runs of stars collapse: a long run is as cheap as one.
        assert!(Glob::new(&"*".repeat(60_000), TEXT)
            .unwrap()
            .is_match("anything"));
        // A program too large for the limit is refused, not built.
        let classes = "[a-z0-9]?".repeat(7_000);
        let err = Glob::new(&classes, TEXT_CI).unwrap_err();
        assert!(err.contains("too complex"), "{err}");
    }
}
