//! A borrowed JSON tree for comparison.
//!
//! Parsing both bodies dominates the cost of a diff. `serde_json::Value`
//! allocates every key and string and, with the workspace's
//! `preserve_order`, hashes every key into an `IndexMap`. This tree borrows
//! strings from the body whenever they contain no escapes and keeps object
//! members in a `Vec`, which roughly halves the cost of a diff. It is still
//! parsed by `serde_json` (same grammar, same recursion limit); only the
//! differing values are converted to `serde_json::Value` for the record.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Objects with more members than this get a sorted index for lookups;
/// smaller ones are scanned, which is faster at that size.
const SCAN_LIMIT: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// Object members in document order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object<'a> {
    members: Vec<(Cow<'a, str>, Json<'a>)>,
    /// Member indices sorted by key, for objects larger than `SCAN_LIMIT`.
    sorted: Option<Vec<usize>>,
}

impl<'a> Object<'a> {
    fn new(members: Vec<(Cow<'a, str>, Json<'a>)>) -> Self {
        let sorted = (members.len() > SCAN_LIMIT).then(|| {
            let mut idx: Vec<usize> = (0..members.len()).collect();
            idx.sort_by(|a, b| members[*a].0.cmp(&members[*b].0));
            idx
        });
        Self { members, sorted }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The member at position `i`, if it has key `key`: the fast path when
    /// both sides serialise members in the same order.
    pub fn at_if(&self, i: usize, key: &str) -> Option<&Json<'a>> {
        self.members
            .get(i)
            .filter(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v)
    }

    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match &self.sorted {
            None => self
                .members
                .iter()
                .find(|(k, _)| k.as_ref() == key)
                .map(|(_, v)| v),
            Some(sorted) => sorted
                .binary_search_by(|i| {
                    self.members
                        .get(*i)
                        .map_or(std::cmp::Ordering::Less, |(k, _)| k.as_ref().cmp(key))
                })
                .ok()
                .and_then(|pos| sorted.get(pos))
                .and_then(|i| self.members.get(*i))
                .map(|(_, v)| v),
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl<'a> Json<'a> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// RFC 6901 lookup.
    pub fn pointer(&self, pointer: &str) -> Option<&Json<'a>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |node, raw| {
            let key: Cow<'_, str> = if raw.contains('~') {
                Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
            } else {
                Cow::Borrowed(raw)
            };
            match node {
                Json::Object(map) => map.get(&key),
                Json::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            }
        })
    }

    /// The owned `serde_json::Value`, for diff records.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.as_ref().to_owned()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map.iter() {
                    out.insert(k.to_owned(), v.to_value());
                }
                Value::Object(out)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(Key(key)) = map.next_key()? {
            let value = map.next_value()?;
            members.push((key, value));
        }
        Ok(Json::Object(Object::new(members)))
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Parses a body; `None` when it is not JSON.
pub(crate) fn parse(bytes: &[u8]) -> Option<Json<'_>> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_to_serde_values() {
        let text = r#"{"a":[1,2.5,"x\"y",null,true],"b":{"c":"d"},"e":-3}"#;
        let parsed = parse(text.as_bytes()).expect("valid JSON");
        assert_eq!(
            parsed.to_value(),
            serde_json::from_str::<Value>(text).expect("valid")
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let text = br#"{"key":"plain","esc":"a\nb"}"#;
        let Some(Json::Object(map)) = parse(text) else {
            panic!("object expected");
        };
        assert!(matches!(
            map.get("key"),
            Some(Json::String(Cow::Borrowed("plain")))
        ));
        assert!(matches!(map.get("esc"), Some(Json::String(Cow::Owned(_)))));
    }

    #[test]
    fn large_objects_use_the_sorted_index() {
        let value: Value = (0..40)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect::<Map<_, _>>()
            .into();
        let text = value.to_string();
        let parsed = parse(text.as_bytes()).expect("valid");
        for i in 0..40 {
            assert_eq!(
                parsed.pointer(&format!("/k{i}")).and_then(Json::as_u64),
                Some(i)
            );
        }
        assert!(parsed.pointer("/missing").is_none());
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let parsed = parse(br#"{"a/b":{"c~d":[10,20]}}"#).expect("valid");
        assert_eq!(
            parsed.pointer("/a~1b/c~0d/1").and_then(Json::as_u64),
            Some(20)
        );
        assert!(parsed.pointer("a").is_none());
        assert_eq!(parsed.pointer(""), Some(&parsed));
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_stack_overflow() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse(deep.as_bytes()).is_none());
    }
}
