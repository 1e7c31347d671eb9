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
//!   token oracle. In a request snapshot the header stays, with the value
//!   `[dropped]` (an `Authorization` scheme is kept: `Bearer [dropped]`),
//!   so "copy as curl" knows the request carried it and asks for one.
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

/// The environment variable holding the HMAC key, under the same name for
/// every tool that writes or reads hashed values (`mirror-proxy`'s diff
/// log, `compare replay`/`events`/`report`): one exported key makes their
/// hashes comparable.
pub const REDACTION_KEY_ENV: &str = "DIFF_REDACTION_KEY";

/// The names the key had before it had one name: `mirror-proxy` read
/// `MIRROR_REDACTION_KEY`, `compare` read `COMPARE_REDACT_KEY`. Both tools
/// still read both (their own first), with a deprecation warning, so no
/// deployment silently falls back to a random key.
pub const DEPRECATED_REDACTION_KEY_ENVS: [&str; 2] = ["MIRROR_REDACTION_KEY", "COMPARE_REDACT_KEY"];

/// The redaction key a tool should use, and what to warn about.
#[derive(Clone, Default)]
pub struct KeyResolution {
    /// `None`: no key anywhere; the caller uses a random one (and says so).
    pub key: Option<String>,
    /// Where it came from: `explicit` (the flag, `DIFF_REDACTION_KEY`, a
    /// configured variable) or a deprecated variable's name.
    pub source: Option<String>,
    /// Deprecation and conflict warnings, one sentence each.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for KeyResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("KeyResolution")
            .field("key", &self.key.as_ref().map(|_| "[hidden]"))
            .field("source", &self.source)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Resolves the redaction key: `explicit` (a flag, or [`REDACTION_KEY_ENV`]
/// read by the caller's argument parser) wins; else the first of
/// `deprecated` (a tool passes its own old name first) that `env` finds,
/// with a warning to rename it. A deprecated variable set next to the key
/// in use is named in a warning too, louder when its value differs (hashes
/// would not compare across tools). Empty values count as unset.
pub fn resolve_redaction_key(
    explicit: Option<String>,
    deprecated: &[&str],
    env: impl Fn(&str) -> Option<String>,
) -> KeyResolution {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let explicit = explicit.filter(|v| !v.is_empty());
    let mut out = KeyResolution::default();
    let mut chosen: Option<(String, String)> = explicit.map(|k| ("explicit".to_owned(), k));
    for name in deprecated {
        let Some(value) = set(name) else { continue };
        match &chosen {
            None => {
                out.warnings.push(format!(
                    "{name} is deprecated: rename it to {REDACTION_KEY_ENV}, the name both mirror-proxy and compare read"
                ));
                chosen = Some(((*name).to_owned(), value));
            }
            Some((source, key)) if *key == value => out.warnings.push(format!(
                "{name} is deprecated and no longer needed: remove it ({} already holds the same key)",
                if source == "explicit" { REDACTION_KEY_ENV } else { source.as_str() }
            )),
            Some((source, _)) => out.warnings.push(format!(
                "{name} is deprecated and ignored, and differs from the key in use ({}): hashes written under it will not match; unset it",
                if source == "explicit" { REDACTION_KEY_ENV } else { source.as_str() }
            )),
        }
    }
    if let Some((source, key)) = chosen {
        out.source = Some(source);
        out.key = Some(key);
    }
    out
}

/// The key in a mounted secret file (`DIFF_REDACTION_KEY_FILE`, the
/// Kubernetes convention): its text without one trailing line break. An
/// empty file is an error, never an empty key.
pub fn read_key_file(path: &std::path::Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let key = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if key.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok(key.to_owned())
}

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

    /// Header pairs as they may be written: credential values replaced by
    /// [`DROPPED`] (see [`dropped_credential`]), phone numbers in other
    /// values hashed.
    pub fn redact_header_pairs(&self, headers: &mut [(String, String)]) {
        for (name, value) in headers.iter_mut() {
            *value = if self.drops_header(name) {
                dropped_credential(name, value)
            } else {
                self.redact_text(value)
            };
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

/// Authentication schemes kept in front of a dropped credential. A fixed
/// list, so that a value that merely looks like `<word> <secret>` never
/// leaks its first word.
const AUTH_SCHEMES: &[&str] = &[
    "Basic",
    "Bearer",
    "Digest",
    "DPoP",
    "HOBA",
    "Mutual",
    "Negotiate",
    "NTLM",
    "OAuth",
    "Token",
    "ApiKey",
];

/// What a credential header's value becomes: [`DROPPED`], after the
/// authentication scheme for `Authorization`/`Proxy-Authorization`
/// (`Bearer [dropped]`): the scheme is not secret, and a reproduction
/// needs it.
pub fn dropped_credential(name: &str, value: &str) -> String {
    let scheme = if name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
    {
        value
            .trim()
            .split_once(' ')
            .map(|(scheme, _)| scheme)
            .filter(|s| {
                AUTH_SCHEMES
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(s))
            })
    } else {
        None
    };
    match scheme {
        Some(scheme) => format!("{scheme} {DROPPED}"),
        None => DROPPED.to_owned(),
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

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const MIRROR_FIRST: [&str; 2] = ["MIRROR_REDACTION_KEY", "COMPARE_REDACT_KEY"];

    #[test]
    fn the_one_key_name_wins_without_warnings() {
        let r = resolve_redaction_key(Some("k".into()), &MIRROR_FIRST, env(&[]));
        assert_eq!((r.key.as_deref(), r.warnings.len()), (Some("k"), 0));
    }

    #[test]
    fn either_old_name_still_works_in_either_tool_with_a_warning() {
        for old in ["MIRROR_REDACTION_KEY", "COMPARE_REDACT_KEY"] {
            let vars = [(old, "old-key")];
            let r = resolve_redaction_key(None, &MIRROR_FIRST, env(&vars));
            assert_eq!(r.key.as_deref(), Some("old-key"), "{old}");
            assert_eq!(r.source.as_deref(), Some(old));
            assert!(
                r.warnings.len() == 1
                    && r.warnings[0].contains(old)
                    && r.warnings[0].contains("DIFF_REDACTION_KEY"),
                "{:?}",
                r.warnings
            );
        }
    }

    #[test]
    fn an_old_name_next_to_the_new_one_is_named_and_a_conflict_is_loud() {
        let vars = [("COMPARE_REDACT_KEY", "other")];
        let r = resolve_redaction_key(Some("k".into()), &MIRROR_FIRST, env(&vars));
        assert_eq!(r.key.as_deref(), Some("k"));
        assert!(r.warnings[0].contains("differs"), "{:?}", r.warnings);
        let vars = [("MIRROR_REDACTION_KEY", "a"), ("COMPARE_REDACT_KEY", "b")];
        let r = resolve_redaction_key(None, &MIRROR_FIRST, env(&vars));
        assert_eq!(r.key.as_deref(), Some("a"), "the tool's own old name first");
        assert_eq!(r.warnings.len(), 2);
        let r = resolve_redaction_key(Some(String::new()), &MIRROR_FIRST, env(&[]));
        assert!(r.key.is_none(), "empty is unset");
        let r = resolve_redaction_key(Some("s3cret".into()), &MIRROR_FIRST, env(&[]));
        assert!(!format!("{r:?}").contains("s3cret"));
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
            vec![
                ("Authorization".to_owned(), "Bearer [dropped]".to_owned()),
                ("X-Shadow-Credential".to_owned(), "[dropped]".to_owned()),
                ("x-refresh-token".to_owned(), "[dropped]".to_owned()),
                ("content-type".to_owned(), "application/json".to_owned())
            ]
        );
        // Redacting again changes nothing.
        let again = headers.clone();
        red.redact_header_pairs(&mut headers);
        assert_eq!(headers, again);
    }
}
