//! Message ids: the legacy api-gateway's MongoDB ObjectIds, kept so that a
//! client that stored a 24-character id, or sorts by it, sees no change.
//!
//! Layout (MongoDB's ObjectId specification), 12 bytes written as 24
//! lowercase hex characters:
//!
//! | bytes | what |
//! |---|---|
//! | 0–3 | seconds since the Unix epoch, big-endian: ids sort by creation second |
//! | 4–8 | 5 random bytes, drawn once per process |
//! | 9–11 | a counter, big-endian, starting at a random value and wrapping at 2^24 |
//!
//! Two processes differ in their random bytes, and one process hands out
//! 2^24 ids per second before its counter could repeat within the second.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Serialize, Serializer};

use super::DomainError;

/// A message id: 24 lowercase hex characters.
///
/// [`MessageId::parse`] (text, as clients send it and the store holds it)
/// is the only way in from outside; fresh ids come from [`MessageIds`]. Uppercase hex is refused, as are UUIDs: the contract
/// defines ids as lowercase, and a `GET` of anything else is the same `404`
/// as an unknown id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId([u8; 12]);

impl MessageId {
    /// Parses `65f1c0de7a3b9e0012a4c5d6`: exactly 24 characters of `[0-9a-f]`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bytes = s.as_bytes();
        if bytes.len() != 24 {
            return Err(DomainError::new("message id must be 24 hex characters"));
        }
        let mut out = [0u8; 12];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
                return Err(DomainError::new(
                    "message id may contain only 0-9 and a-f (lowercase)",
                ));
            };
            out[i] = hi << 4 | lo;
        }
        Ok(Self(out))
    }

    /// The 12 bytes.
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// The creation second the id carries.
    pub fn timestamp(&self) -> DateTime<Utc> {
        let secs = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        Utc.timestamp_opt(i64::from(secs), 0)
            .single()
            .unwrap_or_default()
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The id generator of one process: its random bytes and its counter.
#[derive(Debug)]
pub struct MessageIds {
    process: [u8; 5],
    counter: AtomicU32,
}

impl MessageIds {
    /// A generator with fresh random process bytes and counter start.
    pub fn new() -> Self {
        let process: [u8; 5] = rand::random();
        Self {
            process,
            counter: AtomicU32::new(rand::random::<u32>() & 0x00ff_ffff),
        }
    }

    /// The next id, stamped with `now`'s second.
    pub fn next(&self, now: DateTime<Utc>) -> MessageId {
        // Seconds fit in 4 bytes until 2106; saturate rather than wrap.
        let secs = u32::try_from(now.timestamp().max(0)).unwrap_or(u32::MAX);
        let count = self.counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&secs.to_be_bytes());
        id[4..9].copy_from_slice(&self.process);
        id[9..].copy_from_slice(&count.to_be_bytes()[1..]);
        MessageId(id)
    }
}

/// This process's generator: the random bytes are per process, so there is
/// exactly one.
pub fn process_ids() -> &'static MessageIds {
    static IDS: std::sync::LazyLock<MessageIds> = std::sync::LazyLock::new(MessageIds::new);
    &IDS
}

impl Default for MessageIds {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_24_lowercase_hex_and_round_trips() {
        let id = MessageId::parse("65f1c0de7a3b9e0012a4c5d6").unwrap();
        assert_eq!(id.to_string(), "65f1c0de7a3b9e0012a4c5d6");
        assert_eq!(id.timestamp().timestamp(), 0x65f1_c0de);
        assert_eq!(id.as_bytes()[..4], [0x65, 0xf1, 0xc0, 0xde]);
    }

    #[test]
    fn parse_refuses_uppercase_uuids_and_wrong_lengths() {
        for bad in [
            "65F1C0DE7A3B9E0012A4C5D6",
            "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a",
            "65f1c0de7a3b9e0012a4c5d",
            "65f1c0de7a3b9e0012a4c5d6a",
            "65f1c0de7a3b9e0012a4c5dg",
            "",
        ] {
            assert!(MessageId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_carry_the_second_share_the_process_bytes_and_count_up() {
        let ids = MessageIds::new();
        let now = Utc.timestamp_opt(1_777_636_800, 123_000_000).unwrap();
        let a = ids.next(now);
        let b = ids.next(now);
        assert_eq!(a.timestamp().timestamp(), 1_777_636_800);
        assert_eq!(a.as_bytes()[4..9], b.as_bytes()[4..9]);
        let count = |id: MessageId| u32::from_be_bytes([0, id.0[9], id.0[10], id.0[11]]);
        assert_eq!(count(b), (count(a) + 1) & 0x00ff_ffff);
        assert!(a.to_string().bytes().all(|c| nibble(c).is_some()));
    }

    #[test]
    fn ids_sort_by_creation_second() {
        let ids = MessageIds::new();
        let t = Utc.timestamp_opt(1_777_636_800, 0).unwrap();
        let later = ids.next(t + chrono::Duration::seconds(1));
        // Even a counter that wrapped cannot put a later second first.
        let earlier = ids.next(t);
        assert!(earlier.to_string() < later.to_string());
    }

    #[test]
    fn the_counter_wraps_at_24_bits() {
        let ids = MessageIds {
            process: [1; 5],
            counter: AtomicU32::new(0x00ff_ffff),
        };
        let now = Utc::now();
        assert!(ids.next(now).to_string().ends_with("ffffff"));
        assert!(ids.next(now).to_string().ends_with("000000"));
    }
}
