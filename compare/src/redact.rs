//! Redaction: what may be written to disk or shown in a report.
//!
//! - Phone numbers and message bodies become `hmac:<16 hex>`, an HMAC-SHA256
//!   of the value under a configured key, cut to 64 bits. Equal values still
//!   look equal (so "the candidate echoed a different `to`" stays visible),
//!   but the values cannot be read back, and without the key a dictionary of
//!   phone numbers cannot be hashed to find them.
//! - Values are hashed whole at the pointers in [`DEFAULT_HASH_POINTERS`]
//!   (plus `[redact] hash` from the rules); anywhere else, phone-number-like
//!   digit runs inside strings are hashed in place.
//! - Credentials (`Authorization`, cookies, API keys, tokens, the shadow
//!   credential) are dropped, never hashed: a hash of a token is still a
//!   token oracle.
//!
//! Redaction is on by default everywhere the CLI writes; only `--no-redact`
//! turns it off.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::error::RulesError;
use crate::record::{DiffRecord, RequestSnapshot};
use crate::rules::HeaderMatcher;
use crate::rules::file::RedactSpec;
use crate::rules::pointer::{OwnedPath, PathSeg, PointerPattern};

/// Prefix of every hashed value; values that already carry it are left as
/// they are, so redacting twice changes nothing.
pub const HASH_PREFIX: &str = "hmac:";

/// What the written value of a dropped header is.
pub const DROPPED: &str = "[dropped]";

/// Pointers whose values are personal data in the submit API and its events
/// (recipients, senders, message text).
pub const DEFAULT_HASH_POINTERS: &[&str] = &[
    "/**/to",
    "/**/from",
    "/**/msisdn",
    "/**/phone",
    "/**/phone_number",
    "/**/recipient",
    "/**/recipients",
    "/**/destination",
    "/**/destinations",
    "/**/sender",
    "/**/body",
    "/**/text",
    "/**/message_text",
    "/**/content",
];

/// Headers never written.
pub const DEFAULT_DROP_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "apikey",
    "x-shadow-credential",
    "*token*",
    "*secret*",
    "*password*",
    "x-consumer-*",
    "x-credential-identifier",
];

/// Query parameter names whose values are hashed whole.
const HASH_QUERY_KEYS: &[&str] = &[
    "to",
    "from",
    "msisdn",
    "phone",
    "phone_number",
    "recipient",
    "body",
    "text",
    "content",
];

/// Hashes personal data and drops credentials. Build it once; it is cheap to
/// share.
#[derive(Clone)]
pub struct Redactor {
    /// Boxed: the keyed state is large and cloned once per hash anyway.
    mac: Box<Hmac<Sha256>>,
    hash: Vec<PointerPattern>,
    drop: HeaderMatcher,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Redactor")
            .field("hash", &self.hash.len())
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor with the built-in lists and `key` for the HMAC.
    pub fn new(key: &[u8]) -> Self {
        Self::with_spec(key, &RedactSpec::default()).unwrap_or_else(|_| Self {
            // The built-in lists always compile; this branch is unreachable
            // but keeps the constructor total.
            mac: Box::new(new_mac(key)),
            hash: Vec::new(),
            drop: HeaderMatcher::default(),
        })
    }

    /// A redactor with the built-in lists plus a rules file's `[redact]`.
    pub fn with_spec(key: &[u8], spec: &RedactSpec) -> Result<Self, RulesError> {
        let hash = DEFAULT_HASH_POINTERS
            .iter()
            .copied()
            .chain(spec.hash.iter().map(String::as_str))
            .map(PointerPattern::parse)
            .collect::<Result<_, _>>()?;
        let drop = HeaderMatcher::new(
            DEFAULT_DROP_HEADERS
                .iter()
                .copied()
                .chain(spec.drop_headers.iter().map(String::as_str)),
        )?;
        Ok(Self {
            mac: Box::new(new_mac(key)),
            hash,
            drop,
        })
    }

    /// `hmac:<16 hex>` for a value.
    pub fn hash(&self, value: &str) -> String {
        if value.starts_with(HASH_PREFIX) {
            return value.to_owned();
        }
        let mut mac = (*self.mac).clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HASH_PREFIX.len() + 16);
        out.push_str(HASH_PREFIX);
        out.push_str(&hex::encode(&digest[..8]));
        out
    }

    /// Whether a header is a credential (never written).
    pub fn drops_header(&self, name: &str) -> bool {
        self.drop.matches_any_case(name)
    }

    /// Hashes phone-number-like digit runs (7 to 15 digits, optional `+`)
    /// that stand alone, leaving ids, times and decimals intact.
    pub fn redact_text(&self, text: &str) -> String {
        self.redact_text_cow(text).into_owned()
    }

    fn redact_text_cow<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let bytes = text.as_bytes();
        let mut out = String::new();
        let mut copied = 0;
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_digit() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            let from = if start > 0 && bytes[start - 1] == b'+' {
                start - 1
            } else {
                start
            };
            let before_ok = from == 0 || !is_word_byte(bytes[from - 1]) && bytes[from - 1] != b'.';
            let after_ok = i == bytes.len()
                || !(is_word_byte(bytes[i])
                    || bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
            if (7..=15).contains(&digits) && before_ok && after_ok {
                // `from..i` is ASCII, so both ends are char boundaries.
                out.push_str(&text[copied..from]);
                out.push_str(&self.hash(&text[from..i]));
                copied = i;
            }
        }
        if copied == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// Redacts a JSON value found at `pointer` in a body.
    pub fn redact_value_at(&self, pointer: &str, value: &mut Value) {
        let owned = OwnedPath::parse(pointer);
        let mut path: Vec<PathSeg<'_>> = owned.as_ref().map(OwnedPath::segs).unwrap_or_default();
        if path.is_empty()
            && let Value::String(s) = value
        {
            // A whole text body: it may be anything, but it is not a
            // structured message, so only phone numbers are hashed.
            *s = self.redact_form_or_text(s);
            return;
        }
        self.redact_walk(&mut path, value);
    }

    fn redact_walk<'p, 'v: 'p>(&self, path: &mut Vec<PathSeg<'p>>, value: &'v mut Value) {
        if self.hash.iter().any(|p| p.covers(path)) {
            if !matches!(value, Value::Null) {
                let hashed = match &*value {
                    Value::String(s) => self.hash(s),
                    other => self.hash(&other.to_string()),
                };
                *value = Value::String(hashed);
            }
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(redacted) = self.redact_text_cow(s) {
                    *s = redacted;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(PathSeg::Index(i));
                    self.redact_walk(path, item);
                    path.pop();
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    path.push(PathSeg::Key(key.as_str()));
                    self.redact_walk(path, item);
                    path.pop();
                }
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => {}
        }
    }

    /// A path with a query: query values of personal-data keys hashed,
    /// phone numbers anywhere else hashed.
    pub fn redact_path(&self, path: &str) -> String {
        match path.split_once('?') {
            None => self.redact_text(path),
            Some((p, q)) => format!("{}?{}", self.redact_text(p), self.redact_query(q)),
        }
    }

    fn redact_query(&self, query: &str) -> String {
        query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if HASH_QUERY_KEYS.iter().any(|h| h.eq_ignore_ascii_case(k)) => {
                    format!("{k}={}", self.hash(v))
                }
                Some((k, v)) => format!("{k}={}", self.redact_text(v)),
                None => self.redact_text(pair),
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    fn redact_form_or_text(&self, text: &str) -> String {
        let form_like = text.contains('=')
            && !text
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b == b'<' || b == b'{');
        if form_like {
            self.redact_query(text)
        } else {
            self.redact_text(text)
        }
    }

    /// Header pairs as they may be written: credentials dropped, phone
    /// numbers in values hashed.
    pub fn redact_header_pairs(&self, headers: &mut Vec<(String, String)>) {
        headers.retain(|(name, _)| !self.drops_header(name));
        for (_, value) in headers.iter_mut() {
            *value = self.redact_text(value);
        }
    }

    /// Redacts a request snapshot in place.
    pub fn redact_request(&self, request: &mut RequestSnapshot) {
        request.path = self.redact_path(&request.path);
        self.redact_header_pairs(&mut request.headers);
        if let Some(body) = request.body.as_mut() {
            self.redact_value_at("", body);
        }
    }

    /// Redacts every value of a diff record in place and marks it redacted.
    pub fn redact_record(&self, record: &mut DiffRecord) {
        for diff in &mut record.headers {
            if self.drops_header(&diff.name) {
                for value in [&mut diff.primary, &mut diff.candidate]
                    .into_iter()
                    .flatten()
                {
                    *value = DROPPED.to_owned();
                }
            } else {
                for value in [&mut diff.primary, &mut diff.candidate]
                    .into_iter()
                    .flatten()
                {
                    *value = self.redact_text(value);
                }
            }
        }
        for diff in &mut record.body {
            for value in [&mut diff.primary, &mut diff.candidate]
                .into_iter()
                .flatten()
            {
                self.redact_value_at(&diff.pointer, value);
            }
        }
        if let Some(request) = record.request.as_mut() {
            self.redact_request(request);
        }
        if let Some(id) = record.correlation_id.as_mut() {
            *id = self.redact_text(id);
        }
        if let Some(error) = record.error.as_mut() {
            *error = self.redact_text(error);
        }
        record.redacted = true;
    }
}

/// HMAC-SHA256 keyed with `key`, built without a fallible constructor: a
/// key is zero-padded to the 64-byte block, or hashed first when longer,
/// exactly as RFC 2104 prescribes, so the result equals
/// `Hmac::new_from_slice(key)`.
fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    use hmac::digest::KeyInit;
    use sha2::Digest;
    let mut block = [0u8; 64];
    if key.len() <= block.len() {
        block[..key.len()].copy_from_slice(key);
    } else {
        block[..32].copy_from_slice(&Sha256::digest(key));
    }
    <Hmac<Sha256> as KeyInit>::new(&block.into())
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r() -> Redactor {
        Redactor::new(b"test-key")
    }

    #[test]
    fn hashes_are_stable_keyed_and_idempotent() {
        let a = r().hash("+447700900123");
        assert_eq!(a, r().hash("+447700900123"));
        assert_ne!(a, Redactor::new(b"other").hash("+447700900123"));
        assert!(a.starts_with(HASH_PREFIX) && a.len() == HASH_PREFIX.len() + 16);
        assert_eq!(r().hash(&a), a);
    }

    #[test]
    fn phone_numbers_in_text_are_hashed_but_ids_and_times_are_not() {
        let red = r();
        let text = "must be an E.164 number such as +447700900123.";
        let out = red.redact_text(text);
        assert!(!out.contains("447700900123"), "{out}");
        assert!(out.ends_with('.'));
        for keep in [
            "0196b3f2-7c1a-7e4b-9a2d-123456789012",
            "2026-05-01T12:00:00.123Z",
            "1234567.89",
            "order-8812345",
            "507f1f77bcf86cd799439011",
        ] {
            assert_eq!(red.redact_text(keep), keep);
        }
    }

    #[test]
    fn personal_fields_are_hashed_whole_wherever_they_are() {
        let red = r();
        let mut v = json!({"to": "+447700900123", "body": "Your code is 482913", "meta": {"from": 447700900456u64}, "status": "accepted"});
        red.redact_value_at("", &mut v);
        let s = v.to_string();
        assert!(
            !s.contains("447700900123") && !s.contains("482913") && !s.contains("447700900456"),
            "{s}"
        );
        assert_eq!(v["status"], "accepted");
        let mut leaf = json!("+447700900123");
        red.redact_value_at("/messages/0/to", &mut leaf);
        assert_eq!(leaf, json!(red.hash("+447700900123")));
    }

    #[test]
    fn query_values_and_form_bodies_are_redacted() {
        let red = r();
        let out = red.redact_path("/v1/lookup?to=%2B447700900123&page=2");
        assert!(
            !out.contains("447700900123") && out.ends_with("&page=2"),
            "{out}"
        );
        let mut body = json!("to=+447700900123&body=hello+there");
        red.redact_value_at("", &mut body);
        let s = body.to_string();
        assert!(!s.contains("447700900123") && !s.contains("hello"), "{s}");
    }

    #[test]
    fn the_infallible_mac_equals_the_standard_one() {
        for key in [&b""[..], b"short", &[7u8; 64][..], &[9u8; 100][..]] {
            let mut ours = new_mac(key);
            let mut std = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any length");
            ours.update(b"x");
            std.update(b"x");
            assert_eq!(ours.finalize().into_bytes(), std.finalize().into_bytes());
        }
    }

    #[test]
    fn credentials_are_dropped() {
        let red = r();
        let mut headers = vec![
            ("Authorization".to_owned(), "Bearer abc".to_owned()),
            ("X-Shadow-Credential".to_owned(), "s3cret".to_owned()),
            ("x-refresh-token".to_owned(), "t".to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        red.redact_header_pairs(&mut headers);
        assert_eq!(
            headers,
            vec![("content-type".to_owned(), "application/json".to_owned())]
        );
    }
}
