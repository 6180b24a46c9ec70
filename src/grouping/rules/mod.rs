//! Per-project grouping rules in Sentry's syntax: fingerprinting rules and stack trace rules.
//!
//! Both languages are line based: one rule per line, `#` comment lines, blank lines. A rule is a
//! list of `name:value` matchers (`!` negates one, `"..."` quotes a value with spaces, `\"`
//! escapes a quote), followed by `-> fingerprint` (fingerprinting) or by actions such as `-app`
//! (stack trace rules). Values are globs (`glob.rs`). Parsing is pure and bounded, so the rules
//! a user saves can be checked when saved and run on every event.

mod enhancements;
mod fingerprinting;
mod glob;

pub use enhancements::{Enhancements, FrameChange};
pub use fingerprinting::{FingerprintMatch, FingerprintRules};

use std::fmt;

/// Rules texts larger than this are refused: rules run on every event of a project, and each
/// wildcard compiles to a matcher of a few KiB that stays cached with the project's settings
/// (16 KiB of hostile wildcards is a few MiB; real rule sets are a few dozen lines).
pub const MAX_RULES_BYTES: usize = 16 * 1024;
/// At most this many rules per text.
pub const MAX_RULES: usize = 250;

/// Why a rules text was refused, on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for RuleError {}

/// Calls `rule` with each rule line (1-based number, text without surrounding spaces), skipping
/// comments and blank lines, after checking the size bounds.
fn for_each_rule(
    text: &str,
    mut rule: impl FnMut(usize, &str) -> Result<(), String>,
) -> Result<(), RuleError> {
    if text.len() > MAX_RULES_BYTES {
        // Name the line where the limit is crossed, so the message points somewhere useful.
        let line = text.as_bytes()[..MAX_RULES_BYTES]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        return Err(RuleError {
            line,
            message: format!("the rules are longer than {MAX_RULES_BYTES} bytes"),
        });
    }
    let mut count = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        count += 1;
        if count > MAX_RULES {
            return Err(RuleError {
                line,
                message: format!("more than {MAX_RULES} rules"),
            });
        }
        rule(line, trimmed).map_err(|message| RuleError { line, message })?;
    }
    Ok(())
}

/// A `name:value` matcher as written, before its name is checked against one language.
struct RawMatcher {
    negated: bool,
    name: String,
    value: String,
}

/// A cursor over one rule line; the small lexer both languages share.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, prefix: &str) -> bool {
        if self.rest().starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
    }

    /// The longest run of characters satisfying `keep`.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// The next whitespace-delimited word, for error messages; does not move.
    fn next_word(&self) -> &'a str {
        let rest = self.rest();
        &rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())]
    }

    /// A `"..."` string at the cursor, unescaped: `\"` is a quote and `\\` a backslash; any
    /// other escape is kept as written so that glob escapes such as `\*` still reach the glob.
    fn quoted(&mut self) -> Result<String, String> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, q @ ('"' | '\\'))) => out.push(q),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(format!(
            "unterminated quote starting at {}",
            shorten(&self.text[start..])
        ))
    }

    /// An optional `!`, a matcher name (bare or quoted), `:` and a value (quoted, or up to the
    /// next space; inside `[ ... ]` also up to `]`).
    fn matcher(&mut self, in_brackets: bool) -> Result<RawMatcher, String> {
        let word = self.next_word();
        let negated = self.eat("!");
        let name = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            self.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                .to_owned()
        };
        if name.is_empty() || !self.eat(":") {
            return Err(format!(
                "expected a matcher such as `name:value`, found {}",
                shorten(word)
            ));
        }
        let quoted = self.peek() == Some('"');
        let value = if quoted {
            self.quoted()?
        } else {
            self.take_while(|c| !(c.is_whitespace() || in_brackets && c == ']'))
                .to_owned()
        };
        // `name:""` is a pattern for the empty value; `name:` followed by nothing is a slip.
        if value.is_empty() && !quoted {
            return Err(format!("matcher \"{name}\" has no value"));
        }
        Ok(RawMatcher {
            negated,
            name,
            value,
        })
    }
}

/// A piece of user input quoted for an error message, cut to a readable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("\"{}...\"", &s[..cut]),
        None => format!("\"{s}\""),
    }
}

/// Sentry's booleans for the `app` matcher.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(format!(
            "\"{value}\" is not a boolean for \"app\" (use yes or no)"
        )),
    }
}

/// The platform families rules can name, as Sentry groups platforms.
const FAMILIES: &[&str] = &["native", "javascript", "other", "all"];

/// The family of a platform: `native`, `javascript` or `other`.
fn family_of(platform: &str) -> &'static str {
    match platform.to_ascii_lowercase().as_str() {
        "native" | "c" | "cocoa" | "objc" | "swift" => "native",
        "javascript" | "node" => "javascript",
        _ => "other",
    }
}

/// A `family:` value: families separated by commas.
fn parse_families(value: &str) -> Result<Vec<String>, String> {
    value
        .split(',')
        .map(|f| {
            let f = f.trim().to_ascii_lowercase();
            if FAMILIES.contains(&f.as_str()) {
                Ok(f)
            } else {
                Err(format!(
                    "unknown family \"{f}\" (expected native, javascript, other or all)"
                ))
            }
        })
        .collect()
}

/// Whether a parsed `family:` list admits `family`.
fn families_admit(families: &[String], family: &str) -> bool {
    families.iter().any(|f| f == "all" || f == family)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_the_line() {
        let e = RuleError {
            line: 3,
            message: "boom".into(),
        };
        assert_eq!(e.to_string(), "line 3: boom");
    }

    #[test]
    fn lines_skip_comments_and_blanks_and_count_from_one() {
        let mut seen = Vec::new();
        for_each_rule("# c\n\n  a  \r\n   # d\nb", |n, l| {
            seen.push((n, l.to_owned()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(3, "a".to_owned()), (5, "b".to_owned())]);
        let err = for_each_rule(
            "a\nb",
            |n, _| if n == 2 { Err("no".into()) } else { Ok(()) },
        );
        assert_eq!(
            err,
            Err(RuleError {
                line: 2,
                message: "no".into()
            })
        );
    }

    #[test]
    fn size_bounds() {
        let many = "a\n".repeat(MAX_RULES + 1);
        let e = for_each_rule(&many, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.line, MAX_RULES + 1);
        assert!(
            e.message.contains(&format!("more than {MAX_RULES} rules")),
            "{e}"
        );
        assert!(for_each_rule(&"a\n".repeat(MAX_RULES), |_, _| Ok(())).is_ok());

        let huge = format!("{}\n{}", "# x".repeat(10), "y".repeat(MAX_RULES_BYTES));
        let e = for_each_rule(&huge, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message
                .contains(&format!("longer than {MAX_RULES_BYTES} bytes")),
            "{e}"
        );

        let comments_only = "#\n".repeat(MAX_RULES * 2);
        assert!(for_each_rule(&comments_only, |_, _| Ok(())).is_ok());
    }

    #[test]
    fn quotes_and_escapes() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (r#""a b" rest"#, Ok("a b")),
            (r#""say \"hi\"""#, Ok(r#"say "hi""#)),
            (r#""back\\slash""#, Ok(r"back\slash")),
            (r#""glob \* kept""#, Ok(r"glob \* kept")),
            (r#""""#, Ok("")),
            (r#""é""#, Ok("é")),
            (r#""open"#, Err("unterminated quote")),
            (r#""ends in escape\""#, Err("unterminated quote")),
        ];
        for (input, want) in cases {
            let mut cursor = Cursor::new(input);
            let got = cursor.quoted();
            match want {
                Ok(v) => {
                    assert_eq!(got.as_deref(), Ok(*v), "{input}");
                    assert!(
                        !cursor.rest().starts_with('"'),
                        "{input}: the quote is consumed"
                    );
                }
                Err(e) => assert!(got.unwrap_err().contains(e), "{input}"),
            }
        }
    }

    #[test]
    fn matchers_lex() {
        let m = Cursor::new(r#"!"tags.a b":"x y""#).matcher(false).unwrap();
        assert!(m.negated);
        assert_eq!((m.name.as_str(), m.value.as_str()), ("tags.a b", "x y"));
        let mut c = Cursor::new("function:foo] |");
        let m = c.matcher(true).unwrap();
        assert_eq!(m.value, "foo");
        assert_eq!(c.rest(), "] |");
        let err = Cursor::new("message:").matcher(false).err().unwrap();
        assert!(err.contains("no value"), "{err}");
        assert!(Cursor::new(r#"message:"""#).matcher(false).is_ok());
        let err = Cursor::new("system-down").matcher(false).err().unwrap();
        assert!(err.contains("expected a matcher"), "{err}");
    }

    #[test]
    fn families_and_bools() {
        assert_eq!(family_of("cocoa"), "native");
        assert_eq!(family_of("Node"), "javascript");
        assert_eq!(family_of("python"), "other");
        let fams = parse_families("native,javascript").unwrap();
        assert!(families_admit(&fams, "native") && !families_admit(&fams, "other"));
        assert!(families_admit(&parse_families("all").unwrap(), "other"));
        assert!(parse_families("rust")
            .unwrap_err()
            .contains("unknown family"));
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }
}
