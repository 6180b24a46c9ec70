//! The parts of a Sentry event payload that grouping and the issue row need, read leniently.
//!
//! Only these fields are materialized; everything else (breadcrumbs, contexts, vars, modules,
//! ...) is skipped by the parser and kept as the raw bytes we store. Every field is built from
//! the lenient types, so a payload that is valid JSON never fails to parse: a field of the wrong
//! shape reads as absent (reference section 5).

use super::lenient::{LBool, LList, LNum, LObj, LStr, LStrList};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// An event payload (`event` item or `/store/` body).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Event<'a> {
    #[serde(borrow)]
    pub event_id: LStr<'a>,
    pub timestamp: Timestamp,
    #[serde(borrow)]
    pub platform: LStr<'a>,
    pub level: Level,
    #[serde(borrow)]
    pub logger: LStr<'a>,
    #[serde(borrow)]
    pub transaction: LStr<'a>,
    #[serde(borrow)]
    pub server_name: LStr<'a>,
    #[serde(borrow)]
    pub release: LStr<'a>,
    #[serde(borrow)]
    pub dist: LStr<'a>,
    #[serde(borrow)]
    pub environment: LStr<'a>,
    /// Legacy alias of `logentry`; a bare string is the formatted message.
    #[serde(borrow)]
    pub message: LogEntry<'a>,
    #[serde(borrow)]
    pub logentry: LogEntry<'a>,
    #[serde(borrow, rename = "sentry.interfaces.Message")]
    pub legacy_message: LogEntry<'a>,
    #[serde(borrow)]
    pub exception: LList<Exception<'a>>,
    #[serde(borrow)]
    pub threads: LList<Thread<'a>>,
    #[serde(borrow)]
    pub stacktrace: LObj<Stacktrace<'a>>,
    #[serde(borrow)]
    pub fingerprint: LStrList<'a>,
    #[serde(borrow)]
    pub tags: Tags<'a>,
    #[serde(borrow)]
    pub user: LObj<User<'a>>,
    #[serde(borrow)]
    pub request: LObj<Request<'a>>,
    #[serde(borrow)]
    pub culprit: LStr<'a>,
    #[serde(borrow)]
    pub checksum: LStr<'a>,
    #[serde(borrow, rename = "type")]
    pub ty: LStr<'a>,
    /// The SDK that sent the event (`sdk.name` is matched by fingerprinting rules).
    #[serde(borrow)]
    pub sdk: LObj<ClientSdk<'a>>,
}

/// `sdk`: who sent the event.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ClientSdk<'a> {
    #[serde(borrow)]
    pub name: LStr<'a>,
    #[serde(borrow)]
    pub version: LStr<'a>,
}

impl<'a> Event<'a> {
    /// `logentry`, else the legacy `message` alias, else `sentry.interfaces.Message`.
    pub fn log_entry(&self) -> &LogEntry<'a> {
        [&self.logentry, &self.message, &self.legacy_message]
            .into_iter()
            .find(|l| !l.is_empty())
            .unwrap_or(&self.logentry)
    }
}

/// `logentry` / `message`: `{message, formatted, params}` or a bare string (= formatted).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogEntry<'a> {
    pub message: Option<Cow<'a, str>>,
    pub formatted: Option<Cow<'a, str>>,
    pub params: Vec<Cow<'a, str>>,
}

impl<'a> LogEntry<'a> {
    pub fn is_empty(&self) -> bool {
        self.message.as_deref().is_none_or(str::is_empty)
            && self.formatted.as_deref().is_none_or(str::is_empty)
    }
    /// The final text: `formatted`, else the template.
    pub fn text(&self) -> Option<&str> {
        self.formatted
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.message.as_deref().filter(|s| !s.is_empty()))
    }
    /// The template for grouping: `message`, else `formatted`.
    pub fn template(&self) -> Option<&str> {
        self.message
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.formatted.as_deref().filter(|s| !s.is_empty()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LogEntry<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Obj<'a> {
            #[serde(borrow)]
            message: LStr<'a>,
            #[serde(borrow)]
            formatted: LStr<'a>,
            #[serde(borrow)]
            params: LStrList<'a>,
        }
        let LStrOrObj(s, obj) = LStrOrObj::<Obj<'a>>::deserialize(d)?;
        if let Some(s) = s {
            return Ok(LogEntry {
                formatted: Some(s),
                ..LogEntry::default()
            });
        }
        Ok(obj
            .map(|o| LogEntry {
                message: o.message.0,
                formatted: o.formatted.0,
                params: o.params.0,
            })
            .unwrap_or_default())
    }
}

/// Either a scalar read as a string, or an object read as `T`.
struct LStrOrObj<'a, T>(Option<Cow<'a, str>>, Option<T>);

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for LStrOrObj<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(std::marker::PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = LStrOrObj<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LStrOrObj(Some(Cow::Borrowed(v)), None))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LStrOrObj(Some(Cow::Owned(v.to_owned())), None))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(LStrOrObj(Some(Cow::Owned(v)), None))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LStrOrObj(Some(Cow::Owned(v.to_string())), None))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LStrOrObj(Some(Cow::Owned(v.to_string())), None))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(LStrOrObj(Some(Cow::Owned(v.to_string())), None))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                let s = if v { "True" } else { "False" };
                Ok(LStrOrObj(Some(Cow::Borrowed(s)), None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LStrOrObj(None, None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(LStrOrObj(None, None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LStrOrObj(None, None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let t = T::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(LStrOrObj(None, Some(t)))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// One exception value (reference 5.2).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Exception<'a> {
    #[serde(borrow, rename = "type")]
    pub ty: LStr<'a>,
    #[serde(borrow)]
    pub value: LStr<'a>,
    #[serde(borrow)]
    pub module: LStr<'a>,
    #[serde(borrow)]
    pub mechanism: LObj<Mechanism<'a>>,
    #[serde(borrow)]
    pub stacktrace: LObj<Stacktrace<'a>>,
    /// The `id` of the thread that raised it (native and mobile SDKs), a number or a string.
    #[serde(borrow)]
    pub thread_id: LStr<'a>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Mechanism<'a> {
    #[serde(borrow, rename = "type")]
    pub ty: LStr<'a>,
    pub handled: LBool,
    pub synthetic: LBool,
    pub is_exception_group: LBool,
    pub exception_id: LNum,
    pub parent_id: LNum,
    #[serde(borrow)]
    pub meta: LObj<MechanismMeta<'a>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct MechanismMeta<'a> {
    #[serde(borrow)]
    pub ns_error: LObj<NsError<'a>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct NsError<'a> {
    #[serde(borrow)]
    pub domain: LStr<'a>,
    pub code: LNum,
}

/// A thread of the `threads` interface; only what picks the crashing stack.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Thread<'a> {
    /// A number or a string; an exception's `thread_id` refers to it.
    #[serde(borrow)]
    pub id: LStr<'a>,
    pub crashed: LBool,
    pub current: LBool,
    #[serde(borrow)]
    pub stacktrace: LObj<Stacktrace<'a>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Stacktrace<'a> {
    #[serde(borrow)]
    pub frames: LList<Frame<'a>>,
}

/// One stack frame, oldest first in its list; `vars` and the context lists are skipped.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Frame<'a> {
    #[serde(borrow)]
    pub filename: LStr<'a>,
    #[serde(borrow)]
    pub abs_path: LStr<'a>,
    #[serde(borrow)]
    pub function: LStr<'a>,
    #[serde(borrow)]
    pub raw_function: LStr<'a>,
    /// The mangled symbol of a native frame.
    #[serde(borrow)]
    pub symbol: LStr<'a>,
    #[serde(borrow)]
    pub module: LStr<'a>,
    #[serde(borrow)]
    pub package: LStr<'a>,
    #[serde(borrow)]
    pub platform: LStr<'a>,
    pub lineno: LNum,
    pub colno: LNum,
    #[serde(borrow)]
    pub context_line: LStr<'a>,
    pub in_app: LBool,
    #[serde(borrow)]
    pub instruction_addr: LStr<'a>,
    #[serde(borrow)]
    pub data: LObj<FrameData<'a>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct FrameData<'a> {
    #[serde(borrow)]
    pub sourcemap: LStr<'a>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct User<'a> {
    #[serde(borrow)]
    pub id: LStr<'a>,
    #[serde(borrow)]
    pub email: LStr<'a>,
    #[serde(borrow)]
    pub username: LStr<'a>,
    #[serde(borrow)]
    pub ip_address: LStr<'a>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Request<'a> {
    #[serde(borrow)]
    pub url: LStr<'a>,
}

/// Event tags: an object `{"k": "v"}` or a list of pairs `[["k", "v"], ...]`; values lenient.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tags<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Tags<'a> {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Tags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Tags<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("tags")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((LStr(k), LStr(v))) = map.next_entry::<LStr<'a>, LStr<'a>>()? {
                    if let (Some(k), Some(v)) = (k, v) {
                        out.push((k, v));
                    }
                }
                Ok(Tags(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = seq.next_element::<LStrList<'a>>()? {
                    let mut it = pair.0.into_iter();
                    if let (Some(k), Some(v)) = (it.next(), it.next()) {
                        out.push((k, v));
                    }
                }
                Ok(Tags(out))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Tags::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Tags::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Tags::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Tags::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Tags::default())
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Tags::default())
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Tags::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The event level; `"log"` -> info, `"critical"` -> fatal, Python's 10..50 as numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warning,
    #[default]
    Error,
    Fatal,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "debug" | "trace" => Level::Debug,
            "info" | "log" => Level::Info,
            "warning" | "warn" => Level::Warning,
            "error" | "err" => Level::Error,
            "fatal" | "critical" => Level::Fatal,
            other => return other.parse::<f64>().ok().and_then(Level::from_number),
        })
    }
    pub fn from_number(n: f64) -> Option<Level> {
        Some(match n as i64 {
            ..=10 => Level::Debug,
            11..=20 => Level::Info,
            21..=30 => Level::Warning,
            31..=40 => Level::Error,
            _ => Level::Fatal,
        })
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let LStr(s) = LStr::deserialize(d)?;
        Ok(s.as_deref().and_then(Level::parse).unwrap_or_default())
    }
}

/// A timestamp as unix seconds: RFC 3339 string (no zone = UTC) or a number.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timestamp(pub Option<f64>);

impl Timestamp {
    pub fn parse_str(s: &str) -> Option<f64> {
        let s = s.trim();
        if let Ok(n) = s.parse::<f64>() {
            return Some(n).filter(|n| n.is_finite());
        }
        if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
            return Some(dt.timestamp() as f64 + dt.timestamp_subsec_nanos() as f64 / 1e9);
        }
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()?;
        let dt = naive.and_utc();
        Some(dt.timestamp() as f64 + dt.timestamp_subsec_nanos() as f64 / 1e9)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let LStr(s) = LStr::deserialize(d)?;
        // Years above 9999 are invalid (Relay); negative times are nonsense for an event.
        let valid = |t: &f64| (0.0..253_402_300_800.0).contains(t);
        Ok(Timestamp(
            s.as_deref().and_then(Timestamp::parse_str).filter(valid),
        ))
    }
}

/// Parses an event payload. Fails only when the bytes are not a JSON object.
pub fn parse(bytes: &[u8]) -> Result<Event<'_>, serde_json::Error> {
    // serde would also read a struct from a JSON array; an event must be an object.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(serde::de::Error::custom("an event must be a JSON object"));
    }
    serde_json::from_slice(bytes)
}

/// Replaces `\uXXXX` escapes of unpaired UTF-16 surrogates inside JSON strings with
/// `\ufffd`; `None` when there were none. Python's `json.dumps` writes such escapes for
/// strings holding undecodable bytes (surrogate-escaped file paths), and serde_json refuses
/// the whole document over one of them; Sentry keeps the event, and so do we. Only called
/// after a parse failed, so the hot path never pays for it.
pub fn repair_lone_surrogates(json: &[u8]) -> Option<Vec<u8>> {
    // The UTF-16 unit of a `\uXXXX` escape starting at `i`.
    let unit_at = |i: usize| -> Option<u16> {
        if json.get(i) != Some(&b'\\') || json.get(i + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(json.get(i + 2..i + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut out = Vec::with_capacity(json.len());
    let (mut i, mut in_string, mut changed) = (0, false, false);
    while i < json.len() {
        let c = json[i];
        if in_string && c == b'\\' {
            let step = match unit_at(i) {
                Some(0xD800..=0xDBFF) if matches!(unit_at(i + 6), Some(0xDC00..=0xDFFF)) => 12,
                Some(0xD800..=0xDFFF) => {
                    out.extend_from_slice(b"\\ufffd");
                    changed = true;
                    i += 6;
                    continue;
                }
                // Any other escape is copied whole, so an escaped quote never ends the string.
                _ => 2,
            };
            out.extend_from_slice(&json[i..(i + step).min(json.len())]);
            i += step;
            continue;
        }
        if c == b'"' {
            in_string = !in_string;
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_alternative_shapes() {
        let e = parse(
            br#"{"timestamp":"2011-05-02T17:41:36","level":40,"message":"hi",
                "tags":[["a","b"],["n",1]],"exception":[{"type":"E","value":3}],
                "fingerprint":["x",2,null],"user":"nope","release":1.5}"#,
        )
        .unwrap();
        assert_eq!(e.timestamp.0, Some(1304358096.0));
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.log_entry().text(), Some("hi"));
        assert_eq!(e.tags.get("n"), Some("1"));
        assert_eq!(e.exception.0[0].value.as_deref(), Some("3"));
        assert_eq!(e.fingerprint.0, vec!["x", "2"]);
        assert!(e.user.0.is_none());
        assert_eq!(e.release.as_deref(), Some("1.5"));
    }

    #[test]
    fn reads_wrapped_shapes() {
        let e = parse(
            br#"{"timestamp":1304358096.5,"level":"critical","logentry":{"message":"a %s","params":["b"]},
                "tags":{"k":"v","t":true},"exception":{"values":[{"type":"E"}]}}"#,
        )
        .unwrap();
        assert_eq!(e.timestamp.0, Some(1304358096.5));
        assert_eq!(e.level, Level::Fatal);
        assert_eq!(e.log_entry().template(), Some("a %s"));
        assert_eq!(e.tags.get("t"), Some("True"));
        assert_eq!(e.exception.0.len(), 1);
    }

    #[test]
    fn lone_surrogates_are_repaired_and_pairs_kept() {
        let bad = br#"{"message":"a \ud800 b \udc00 c \"\\ud800 \ud83d\ude00"}"#;
        assert!(parse(bad).is_err());
        let fixed = repair_lone_surrogates(bad).unwrap();
        assert_eq!(
            std::str::from_utf8(&fixed).unwrap(),
            r#"{"message":"a \ufffd b \ufffd c \"\\ud800 \ud83d\ude00"}"#
        );
        let e = parse(&fixed).unwrap();
        assert_eq!(
            e.log_entry().text(),
            Some("a \u{fffd} b \u{fffd} c \"\\ud800 \u{1f600}")
        );
        assert_eq!(repair_lone_surrogates(br#"{"m":"\ud83d\ude00 \n"}"#), None);
        assert_eq!(
            repair_lone_surrogates(b"\\ud800"),
            None,
            "outside strings nothing changes"
        );
    }

    #[test]
    fn rejects_only_non_json() {
        assert!(parse(b"{").is_err());
        assert!(parse(b"[]").is_err());
        assert!(parse(br#"{"exception":5,"threads":"x","stacktrace":[1]}"#).is_ok());
    }
}
