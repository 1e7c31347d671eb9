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

/// The format of a generated id, as precisely as a client could notice it:
/// the kind, the UUID version, the length of a hex id, the prefix of a
/// prefixed id, and the letter case. Two ids of the same format differ
/// only in value (two runs of the same system); two ids of different
/// formats (an ObjectId and a UUIDv7, a UUIDv4 and a UUIDv7) are a change
/// a client storing or validating ids would see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdFormat {
    Uuid { version: u8, upper: bool },
    ObjectId { upper: bool },
    Ulid { upper: bool },
    Hex { len: usize, upper: bool },
    Prefixed { prefix: String, tail: Box<IdFormat> },
}

impl std::fmt::Display for IdFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let case = |upper: bool| if upper { " (uppercase)" } else { "" };
        match self {
            IdFormat::Uuid { version, upper } => write!(f, "UUIDv{version}{}", case(*upper)),
            IdFormat::ObjectId { upper } => write!(f, "ObjectId{}", case(*upper)),
            IdFormat::Ulid { upper } => {
                write!(f, "ULID{}", if *upper { "" } else { " (lowercase)" })
            }
            IdFormat::Hex { len, upper } => write!(f, "{len}-hex{}", case(*upper)),
            IdFormat::Prefixed { prefix, tail } => write!(f, "{prefix}+{tail}"),
        }
    }
}

fn has_upper(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_uppercase())
}

/// The format of an id; `None` when the value does not look generated
/// (the same values [`id_kind`] recognises).
pub fn id_format(s: &str) -> Option<IdFormat> {
    if is_uuid(s) {
        let version = s
            .as_bytes()
            .get(14)
            .and_then(|c| (*c as char).to_digit(16))
            .and_then(|v| u8::try_from(v).ok())
            .unwrap_or(0);
        Some(IdFormat::Uuid {
            version,
            upper: has_upper(s),
        })
    } else if is_object_id(s) {
        Some(IdFormat::ObjectId {
            upper: has_upper(s),
        })
    } else if is_ulid(s) {
        Some(IdFormat::Ulid {
            upper: !has_lower(s),
        })
    } else if is_hex_id(s) {
        Some(IdFormat::Hex {
            len: s.len(),
            upper: has_upper(s),
        })
    } else {
        let i = s.rfind(['_', '-', ':'])?;
        let (prefix, tail) = (&s[..=i], &s[i + 1..]);
        if id_kind(s) != Some(Generated::PrefixedId) {
            return None;
        }
        let tail = id_format(tail)?;
        Some(IdFormat::Prefixed {
            prefix: prefix.to_owned(),
            tail: Box::new(tail),
        })
    }
}

fn has_lower(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_lowercase())
}

/// The layout of an RFC 3339 timestamp: the date/time separator, the
/// number of fraction digits and how the offset is written. Two timestamps
/// of the same layout differ only in value; `…00.123Z` against
/// `…00.123456Z` or `…Z` against `…+00:00` is a format change a strict
/// client parser would see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampFormat {
    separator: u8,
    fraction_digits: usize,
    /// `Z` (or `z`) rather than a numeric offset.
    zulu: bool,
}

impl std::fmt::Display for TimestampFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "YYYY-MM-DD{}hh:mm:ss", self.separator as char)?;
        if self.fraction_digits > 0 {
            write!(f, ".{}", "f".repeat(self.fraction_digits))?;
        }
        f.write_str(if self.zulu { "Z" } else { "+hh:mm" })
    }
}

/// The layout of a timestamp [`parse_timestamp`] accepts; `None` otherwise.
pub fn timestamp_format(s: &str) -> Option<TimestampFormat> {
    parse_timestamp(s)?;
    let b = s.as_bytes();
    let separator = *b.get(10)?;
    let fraction_digits = if b.get(19) == Some(&b'.') {
        b[20..].iter().take_while(|c| c.is_ascii_digit()).count()
    } else {
        0
    };
    let zulu = matches!(b.last(), Some(b'Z' | b'z'));
    Some(TimestampFormat {
        separator,
        fraction_digits,
        zulu,
    })
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
    fn id_formats_tell_kinds_versions_and_case_apart() {
        let v7 = id_format("0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a").expect("uuid");
        let other_v7 = id_format("0196b3f2-8000-7000-8000-000000000001").expect("uuid");
        let v4 = id_format("9b2c1f3e-4d5a-4b6c-8d7e-0f1a2b3c4d5e").expect("uuid");
        assert_eq!(v7, other_v7);
        assert_ne!(v7, v4, "a UUIDv4 and a UUIDv7 are different formats");
        assert_eq!(v7.to_string(), "UUIDv7");
        let oid = id_format("507f1f77bcf86cd799439011").expect("object id");
        assert_eq!(
            oid,
            id_format("65f000000000000000000001").expect("object id")
        );
        assert_ne!(oid, v7);
        assert_ne!(
            oid,
            id_format("507F1F77BCF86CD799439011").expect("object id")
        );
        assert_eq!(
            id_format("msg_01ARZ3NDEKTSV4RRFFQ69G5FAV").map(|f| f.to_string()),
            Some("msg_+ULID".to_owned())
        );
        assert_ne!(
            id_format("msg_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            id_format("sms_01ARZ3NDEKTSV4RRFFQ69G5FAV")
        );
        assert_eq!(id_format("accepted"), None);
    }

    #[test]
    fn timestamp_formats_tell_precision_and_offset_apart() {
        let ms = timestamp_format("2026-05-01T12:00:00.123Z").expect("ts");
        assert_eq!(
            ms,
            timestamp_format("2027-01-31T23:59:59.999Z").expect("ts")
        );
        assert_ne!(
            ms,
            timestamp_format("2026-05-01T12:00:00.123456Z").expect("ts")
        );
        assert_ne!(
            ms,
            timestamp_format("2026-05-01T12:00:00.123+00:00").expect("ts")
        );
        assert_ne!(ms, timestamp_format("2026-05-01T12:00:00Z").expect("ts"));
        assert_eq!(ms.to_string(), "YYYY-MM-DDThh:mm:ss.fffZ");
        assert_eq!(timestamp_format("yesterday"), None);
    }

    #[test]
    fn path_ids_include_numbers() {
        assert!(is_path_id("12345"));
        assert!(is_path_id("507f1f77bcf86cd799439011"));
        assert!(!is_path_id("sms"));
    }
}
