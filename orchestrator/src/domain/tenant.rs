//! Tenant IDs: which customer a submit belongs to.

use std::fmt;

use serde::Serialize;

use super::DomainError;

/// Long enough for a UUID or a slug, short enough to sit in a metric label
/// and a NATS subject token.
const MAX_LEN: usize = 64;

/// A tenant identifier: 1 to 64 characters, `[A-Za-z0-9][A-Za-z0-9._-]*`.
///
/// Case-sensitive and compared byte for byte: `Acme` and `acme` are two
/// tenants. Nothing is folded or trimmed, because a tenant ID scopes
/// idempotency keys and data, and two spellings meaning one tenant would
/// let one tenant's key collide with another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Parses a tenant ID such as `acme-bank` or `t_01.eu`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let Some(first) = s.chars().next() else {
            return Err(DomainError::new("tenant id is empty"));
        };
        let len = s.chars().count();
        if len > MAX_LEN {
            return Err(DomainError::new(format!(
                "tenant id must be at most {MAX_LEN} characters; found {len}"
            )));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(DomainError::new(format!(
                "tenant id must start with an ASCII letter or digit; found {first:?}"
            )));
        }
        if let Some(c) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(DomainError::new(format!(
                "tenant id may contain only A-Z, a-z, 0-9, '.', '_' and '-'; found {c:?}"
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The tenant ID exactly as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_tenant_ids() {
        let max = "a".repeat(64);
        let valid = [
            "a",
            "7",
            "acme",
            "Acme-Bank",
            "t_01.eu",
            "0f8c9a2e-5b7d-4c1e-9a3f-2d6b8e4c1a7f",
            "a.",
            "a-",
            "a_",
            "a..b",
            max.as_str(),
        ];
        for input in valid {
            let tenant =
                TenantId::parse(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"));
            assert_eq!(tenant.as_str(), input);
            assert_eq!(tenant.to_string(), input);
        }
    }

    #[test]
    fn rejects_invalid_tenant_ids() {
        let too_long = "a".repeat(65);
        let cases = [
            ("", "tenant id is empty"),
            (
                too_long.as_str(),
                "tenant id must be at most 64 characters; found 65",
            ),
            (
                "-acme",
                "tenant id must start with an ASCII letter or digit; found '-'",
            ),
            (
                ".acme",
                "tenant id must start with an ASCII letter or digit; found '.'",
            ),
            (
                "_acme",
                "tenant id must start with an ASCII letter or digit; found '_'",
            ),
            (
                " acme",
                "tenant id must start with an ASCII letter or digit; found ' '",
            ),
            (
                "émile",
                "tenant id must start with an ASCII letter or digit; found 'é'",
            ),
            (
                "acme bank",
                "tenant id may contain only A-Z, a-z, 0-9, '.', '_' and '-'; found ' '",
            ),
            (
                "acme/bank",
                "tenant id may contain only A-Z, a-z, 0-9, '.', '_' and '-'; found '/'",
            ),
            (
                "acme\n",
                "tenant id may contain only A-Z, a-z, 0-9, '.', '_' and '-'; found '\\n'",
            ),
            (
                "acmé",
                "tenant id may contain only A-Z, a-z, 0-9, '.', '_' and '-'; found 'é'",
            ),
        ];
        for (input, detail) in cases {
            let err = TenantId::parse(input).expect_err(input);
            assert_eq!(err.detail(), detail, "input {input:?}");
        }
    }

    #[test]
    fn compares_case_sensitively() {
        let lower = TenantId::parse("acme").unwrap();
        let upper = TenantId::parse("ACME").unwrap();
        assert_ne!(lower, upper);
        assert_eq!(lower, TenantId::parse("acme").unwrap());
    }

    #[test]
    fn serializes_as_the_plain_string() {
        let tenant = TenantId::parse("acme-bank").unwrap();
        assert_eq!(serde_json::to_value(&tenant).unwrap(), "acme-bank");
    }
}
