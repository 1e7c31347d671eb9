//! Recognisers for generated values: ids (UUID, ULID, Mongo ObjectId, long
//! hex), RFC 3339 timestamps. Used by the shape matchers, by route-template
//! guessing for unknown paths, and by noise learning.
//!
//! They are byte-level checks rather than regexes: they run for every
//! differing value, so they must cost nanoseconds.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// What a generated value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generated {
    /// A UUID of any version (`8-4-4-4-12` hex).
    Uuid,
    /// A 26-character Crockford base32 ULID.
    Ulid,
    /// A 24-hex MongoDB ObjectId.
    ObjectId,
    /// Another hex id of 16 or more digits.
    HexId,
    /// A prefixed id such as `msg_01HV…` whose tail is one of the above.
    PrefixedId,
    /// An RFC 3339 timestamp.
    Timestamp,
    /// An integer (candidate for a monotonic counter or epoch time).
    Integer,
}

impl Generated {
    pub fn is_id(self) -> bool {
        matches!(
            self,
            Generated::Uuid
                | Generated::Ulid
                | Generated::ObjectId
                | Generated::HexId
                | Generated::PrefixedId
        )
    }
}

pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub fn is_ulid(s: &str) -> bool {
    let b = s.as_bytes();
    // Crockford base32 excludes I, L, O and U; the first char is at most '7'
    // because a ULID is 128 bits.
    b.len() == 26
        && matches!(b[0], b'0'..=b'7')
        && b.iter().all(|c| {
            let c = c.to_ascii_uppercase();
            c.is_ascii_digit()
                || (c.is_ascii_uppercase() && !matches!(c, b'I' | b'L' | b'O' | b'U'))
        })
}

pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// A hex id: at least 16 hex digits and at least one letter and one digit, so
/// that long decimal numbers and words such as `deadbeefcafe…` in prose are
/// not mistaken for ids too often.
pub fn is_hex_id(s: &str) -> bool {
    s.len() >= 16
        && s.len() <= 128
        && s.bytes().all(|c| c.is_ascii_hexdigit())
        && s.bytes().any(|c| c.is_ascii_digit())
}

/// Classifies a string id; `None` when it does not look generated.
pub fn id_kind(s: &str) -> Option<Generated> {
    if is_uuid(s) {
        Some(Generated::Uuid)
    } else if is_object_id(s) {
        Some(Generated::ObjectId)
    } else if is_ulid(s) {
        Some(Generated::Ulid)
    } else if is_hex_id(s) {
        Some(Generated::HexId)
    } else {
        let (prefix, tail) = s.rsplit_once(['_', '-', ':'])?;
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 16
            && prefix
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_');
        (prefix_ok && (is_ulid(tail) || is_object_id(tail) || is_hex_id(tail) || is_uuid(tail)))
            .then_some(Generated::PrefixedId)
    }
}

pub fn is_id_like(s: &str) -> bool {
    id_kind(s).is_some()
}

/// Parses an RFC 3339 timestamp (`T` or space separator, any fraction).
pub fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    // Cheap pre-check before chrono: `YYYY-MM-DD?HH:MM:SS`.
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

/// Classifies any JSON value as generated or not.
pub fn classify(value: &serde_json::Value) -> Option<Generated> {
    match value {
        serde_json::Value::String(s) => {
            id_kind(s).or_else(|| parse_timestamp(s).map(|_| Generated::Timestamp))
        }
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(Generated::Integer),
        _ => None,
    }
}

/// Whether a path segment is an id to be replaced by `{id}` when guessing a
/// route template or normalising a `Location` header: an id-like string or a
/// decimal number.
pub fn is_path_id(segment: &str) -> bool {
    (!segment.is_empty() && segment.len() <= 64 && segment.bytes().all(|c| c.is_ascii_digit()))
        || is_id_like(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_legacy_and_orchestrator_id_formats() {
        assert_eq!(
            id_kind("0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a"),
            Some(Generated::Uuid)
        );
        assert_eq!(
            id_kind("507f1f77bcf86cd799439011"),
            Some(Generated::ObjectId)
        );
        assert_eq!(id_kind("01ARZ3NDEKTSV4RRFFQ69G5FAV"), Some(Generated::Ulid));
        assert_eq!(
            id_kind("msg_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            Some(Generated::PrefixedId)
        );
        assert_eq!(
            id_kind("4bf92f3577b34da6a3ce929d0e0e4736"),
            Some(Generated::HexId)
        );
    }

    #[test]
    fn ordinary_words_are_not_ids() {
        for s in [
            "accepted",
            "Acme",
            "order-8812",
            "GSM-7",
            "",
            "+447700900123",
        ] {
            assert_eq!(id_kind(s), None, "{s}");
        }
    }

    #[test]
    fn timestamps_parse_with_any_fraction() {
        assert!(parse_timestamp("2026-05-01T12:00:00Z").is_some());
        assert!(parse_timestamp("2026-05-01T12:00:00.123456+02:00").is_some());
        assert!(parse_timestamp("2026-05-01").is_none());
        assert!(parse_timestamp("not a time at all, really").is_none());
    }

    #[test]
    fn path_ids_include_numbers() {
        assert!(is_path_id("12345"));
        assert!(is_path_id("507f1f77bcf86cd799439011"));
        assert!(!is_path_id("sms"));
    }
}
