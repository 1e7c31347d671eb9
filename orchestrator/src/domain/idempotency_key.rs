//! Idempotency keys: the client's name for one logical submit.

use std::fmt;

use serde::Serialize;

use super::DomainError;

/// Room for a UUID, a ULID or a client's own composite key, while bounding
/// what we store per request.
const MAX_LEN: usize = 255;

/// The value of an `Idempotency-Key` header: 1 to 255 visible ASCII
/// characters (0x21 to 0x7E).
///
/// Compared exactly, within a tenant. Visible ASCII only, so a key survives
/// HTTP headers, logs and database columns unchanged, and two keys that
/// look the same are the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a key such as `0f8c9a2e-5b7d-4c1e-9a3f-2d6b8e4c1a7f`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() {
            return Err(DomainError::new("idempotency key is empty"));
        }
        if let Some(c) = s.chars().find(|c| !matches!(c, '\x21'..='\x7E')) {
            return Err(DomainError::new(format!(
                "idempotency key may contain only visible ASCII characters (0x21 to 0x7E); found {c:?}"
            )));
        }
        // Only ASCII is left, so bytes are characters.
        if s.len() > MAX_LEN {
            return Err(DomainError::new(format!(
                "idempotency key must be at most {MAX_LEN} characters; found {}",
                s.len()
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The key exactly as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_visible_ascii_keys() {
        let max = "k".repeat(255);
        let every_visible: String = ('\x21'..='\x7E').collect();
        let valid = [
            "k",
            "0f8c9a2e-5b7d-4c1e-9a3f-2d6b8e4c1a7f",
            "01HZX3J9Q8K7M6N5P4R3S2T1V0",
            "order:42/attempt=1",
            every_visible.as_str(),
            max.as_str(),
        ];
        for input in valid {
            let key =
                IdempotencyKey::parse(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"));
            assert_eq!(key.as_str(), input);
            assert_eq!(key.to_string(), input);
        }
    }

    #[test]
    fn says_which_rule_a_key_breaks() {
        const CHARSET: &str =
            "idempotency key may contain only visible ASCII characters (0x21 to 0x7E); found";
        let too_long = "k".repeat(256);
        let cases = [
            ("", "idempotency key is empty".to_owned()),
            (
                too_long.as_str(),
                "idempotency key must be at most 255 characters; found 256".to_owned(),
            ),
            ("order 42", format!("{CHARSET} ' '")),
            (" ", format!("{CHARSET} ' '")),
            ("key\t1", format!("{CHARSET} '\\t'")),
            ("key\r\n", format!("{CHARSET} '\\r'")),
            ("key\u{7F}", format!("{CHARSET} '\\u{{7f}}'")),
            ("key\0", format!("{CHARSET} '\\0'")),
            ("clé", format!("{CHARSET} 'é'")),
        ];
        for (input, detail) in cases {
            let err = IdempotencyKey::parse(input).expect_err(input);
            assert_eq!(err.detail(), detail, "input {input:?}");
        }
    }

    #[test]
    fn serializes_as_the_plain_string() {
        let key = IdempotencyKey::parse("order-42").unwrap();
        assert_eq!(serde_json::to_value(&key).unwrap(), "order-42");
    }
}
