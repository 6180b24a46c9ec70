//! Serde building blocks that never fail on a value of the wrong type: they drop it instead.
//!
//! SDKs disagree on shapes (a level as `"error"` or `40`, tags as an object or as pairs, a
//! `values` wrapper or a bare list). Relay keeps the event and drops what it cannot read; so do
//! we. Each type here consumes whatever JSON value it is handed, so a struct built from them can
//! fail only on JSON that is not JSON at all. Borrowed `Cow`s keep parsing zero-copy where the
//! input has no escapes.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// A string, or the text of a number or bool (`true` -> `"True"` like Relay's `LenientString`);
/// objects, arrays and null read as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LStr<'a>(pub Option<Cow<'a, str>>);

impl<'a> LStr<'a> {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
    /// The string when present and not empty.
    pub fn non_empty(&self) -> Option<&str> {
        self.0.as_deref().filter(|s| !s.is_empty())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Borrowed(if v { "True" } else { "False" }))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(LStr(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LStr(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(LStr(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|_| LStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|_| LStr(None))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A number, or a string holding one; anything else reads as absent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LNum(pub Option<f64>);

impl LNum {
    pub fn as_i64(&self) -> Option<i64> {
        self.0.filter(|v| v.is_finite()).map(|v| v as i64)
    }
}

impl<'de> Deserialize<'de> for LNum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LNum;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_i64<E>(self, v: i64) -> Result<LNum, E> {
                Ok(LNum(Some(v as f64)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LNum, E> {
                Ok(LNum(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<LNum, E> {
                Ok(LNum(Some(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<LNum, E> {
                Ok(LNum(v.trim().parse().ok()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LNum, E> {
                Ok(LNum(None))
            }
            fn visit_unit<E>(self) -> Result<LNum, E> {
                Ok(LNum(None))
            }
            fn visit_none<E>(self) -> Result<LNum, E> {
                Ok(LNum(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<LNum, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LNum, A::Error> {
                skip_seq(seq).map(|_| LNum(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LNum, A::Error> {
                skip_map(map).map(|_| LNum(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A bool, or `"true"`/`"false"`/`1`/`0`; anything else reads as absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LBool(pub Option<bool>);

impl<'de> Deserialize<'de> for LBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LBool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<LBool, E> {
                Ok(LBool(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<LBool, E> {
                Ok(LBool(Some(v != 0)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LBool, E> {
                Ok(LBool(Some(v != 0)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<LBool, E> {
                Ok(LBool(Some(v != 0.0)))
            }
            fn visit_str<E>(self, v: &str) -> Result<LBool, E> {
                Ok(LBool(match v.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => Some(true),
                    "false" | "0" | "no" => Some(false),
                    _ => None,
                }))
            }
            fn visit_unit<E>(self) -> Result<LBool, E> {
                Ok(LBool(None))
            }
            fn visit_none<E>(self) -> Result<LBool, E> {
                Ok(LBool(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<LBool, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LBool, A::Error> {
                skip_seq(seq).map(|_| LBool(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LBool, A::Error> {
                skip_map(map).map(|_| LBool(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object read as `T`; any other JSON value reads as absent.
///
/// `T` must itself be built from lenient fields so that reading the object cannot fail.
#[derive(Debug, Clone, PartialEq)]
pub struct LObj<T>(pub Option<T>);

impl<T> Default for LObj<T> {
    fn default() -> Self {
        LObj(None)
    }
}

impl<T> LObj<T> {
    pub fn as_ref(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LObj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LObj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| LObj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|_| LObj(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LObj(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LObj(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LObj(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LObj(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LObj(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LObj(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(LObj(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A list of objects `T`: a bare array, or Sentry's `{"values": [...]}` wrapper. Elements that
/// are not objects are dropped; anything else reads as empty.
#[derive(Debug, Clone, PartialEq)]
pub struct LList<T>(pub Vec<T>);

impl<T> Default for LList<T> {
    fn default() -> Self {
        LList(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LList<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(LObj(item)) = seq.next_element::<LObj<T>>()? {
                    out.extend(item);
                }
                Ok(LList(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = LList(Vec::new());
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "values" {
                        out = map.next_value::<LList<T>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LList::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LList::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LList::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LList::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LList::default())
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LList::default())
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(LList::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A list of scalars read as strings (`fingerprint`, `params`); non-scalar entries are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LStrList<'a>(pub Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LStrList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = LStrList<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(LStr(s)) = seq.next_element::<LStr<'a>>()? {
                    out.extend(s);
                }
                Ok(LStrList(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|_| LStrList::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LStrList::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LStrList::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LStrList::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LStrList::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LStrList::default())
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(LStrList::default())
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(LStrList::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}
