//! Sender IDs: what the recipient's phone shows as "from".

use std::fmt;

use serde::{Serialize, Serializer};

use super::{DomainError, PhoneNumber};

/// Carriers show at most 11 characters of an alphanumeric sender: the GSM
/// TP-OA field holds 11 packed septets.
const MAX_ALPHANUMERIC_LEN: usize = 11;
/// Short codes are national and vary by country from 3 to 8 digits.
const SHORT_CODE_LEN: std::ops::RangeInclusive<usize> = 3..=8;

/// Which of the three sender forms a [`SenderId`] is; carriers route and
/// restrict them differently (alphanumeric senders cannot be replied to and
/// are barred in some countries, such as the US and Canada).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenderKind {
    /// 1 to 11 of `A-Z a-z 0-9` and space, with at least one letter.
    Alphanumeric,
    /// An E.164 number, as [`PhoneNumber`] accepts it.
    PhoneNumber,
    /// 3 to 8 digits, no `+`.
    ShortCode,
}

impl SenderKind {
    /// `"alphanumeric"`, `"phone_number"` or `"short_code"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alphanumeric => "alphanumeric",
            Self::PhoneNumber => "phone_number",
            Self::ShortCode => "short_code",
        }
    }
}

impl fmt::Display for SenderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SenderKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A sender ID in one of the forms carriers accept; see [`SenderKind`].
///
/// The form is decided by the value itself: a leading `+` means a phone
/// number, all digits means a short code, anything else must be
/// alphanumeric. A sender is the tenant's own identity, not personal data,
/// so `Debug` shows it whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SenderId {
    value: String,
    kind: SenderKind,
}

impl SenderId {
    /// Parses `"ACME"`, `"+447700900123"` or `"12345"`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() {
            return Err(DomainError::new("sender is empty"));
        }
        let kind = if s.starts_with('+') {
            PhoneNumber::parse(s).map_err(|_| {
                DomainError::new(
                    "a sender starting with '+' must be an E.164 number: '+', then 2 to 15 digits, the first 1-9",
                )
            })?;
            SenderKind::PhoneNumber
        } else if s.bytes().all(|b| b.is_ascii_digit()) {
            if !SHORT_CODE_LEN.contains(&s.len()) {
                return Err(DomainError::new(
                    "a numeric sender must be a short code of 3 to 8 digits, or an E.164 number starting with '+'",
                ));
            }
            SenderKind::ShortCode
        } else {
            check_alphanumeric(s)?;
            SenderKind::Alphanumeric
        };
        Ok(Self {
            value: s.to_owned(),
            kind,
        })
    }

    /// The sender exactly as given.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Which form the sender takes.
    pub fn kind(&self) -> SenderKind {
        self.kind
    }
}

/// The rules for a sender that is neither a number nor a short code. It is
/// known to be non-empty and not all digits.
fn check_alphanumeric(s: &str) -> Result<(), DomainError> {
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == ' '))
    {
        return Err(DomainError::new(format!(
            "an alphanumeric sender may contain only A-Z, a-z, 0-9 and spaces; found {c:?}"
        )));
    }
    // Only ASCII is left, so bytes are characters.
    if s.len() > MAX_ALPHANUMERIC_LEN {
        return Err(DomainError::new(format!(
            "an alphanumeric sender must be at most {MAX_ALPHANUMERIC_LEN} characters; found {}",
            s.len()
        )));
    }
    if s.starts_with(' ') || s.ends_with(' ') {
        return Err(DomainError::new(
            "sender must not start or end with a space",
        ));
    }
    if !s.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(DomainError::new(
            "an alphanumeric sender must contain at least one letter",
        ));
    }
    Ok(())
}

impl fmt::Display for SenderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl Serialize for SenderId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_sender_form() {
        let cases = [
            ("A", SenderKind::Alphanumeric),
            ("ACME", SenderKind::Alphanumeric),
            ("Acme Bank", SenderKind::Alphanumeric),
            ("ACME  BANK", SenderKind::Alphanumeric),
            ("AbcdefGhijk", SenderKind::Alphanumeric),
            ("2FA", SenderKind::Alphanumeric),
            ("123456789A", SenderKind::Alphanumeric),
            ("A 1", SenderKind::Alphanumeric),
            ("+447700900123", SenderKind::PhoneNumber),
            ("+14155550100", SenderKind::PhoneNumber),
            ("123", SenderKind::ShortCode),
            ("12345", SenderKind::ShortCode),
            ("12345678", SenderKind::ShortCode),
            ("00123", SenderKind::ShortCode),
        ];
        for (input, kind) in cases {
            let sender =
                SenderId::parse(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"));
            assert_eq!(sender.kind(), kind, "input {input:?}");
            assert_eq!(sender.as_str(), input);
            assert_eq!(sender.to_string(), input);
        }
    }

    #[test]
    fn rejects_senders_carriers_would_refuse() {
        const NOT_E164: &str = "a sender starting with '+' must be an E.164 number: '+', then 2 to 15 digits, the first 1-9";
        const NOT_SHORT_CODE: &str = "a numeric sender must be a short code of 3 to 8 digits, or an E.164 number starting with '+'";
        const EDGE_SPACE: &str = "sender must not start or end with a space";
        let cases = [
            ("", "sender is empty"),
            ("+", NOT_E164),
            ("+0447700900123", NOT_E164),
            ("+44 7700 900123", NOT_E164),
            ("+ACME", NOT_E164),
            ("+1234567890123456", NOT_E164),
            ("12", NOT_SHORT_CODE),
            ("123456789", NOT_SHORT_CODE),
            ("447700900123", NOT_SHORT_CODE),
            (
                "AcmeBankPlc1",
                "an alphanumeric sender must be at most 11 characters; found 12",
            ),
            (
                "ACME-BANK",
                "an alphanumeric sender may contain only A-Z, a-z, 0-9 and spaces; found '-'",
            ),
            (
                "ACMÉ",
                "an alphanumeric sender may contain only A-Z, a-z, 0-9 and spaces; found 'É'",
            ),
            (
                "ACME\tBANK",
                "an alphanumeric sender may contain only A-Z, a-z, 0-9 and spaces; found '\\t'",
            ),
            (
                "ACME_BANK",
                "an alphanumeric sender may contain only A-Z, a-z, 0-9 and spaces; found '_'",
            ),
            (" ACME", EDGE_SPACE),
            ("ACME ", EDGE_SPACE),
            (" ", EDGE_SPACE),
            ("   ", EDGE_SPACE),
            (
                "123 456",
                "an alphanumeric sender must contain at least one letter",
            ),
            (
                "1 2",
                "an alphanumeric sender must contain at least one letter",
            ),
        ];
        for (input, detail) in cases {
            let err = SenderId::parse(input).expect_err(input);
            assert_eq!(err.detail(), detail, "input {input:?}");
        }
    }

    #[test]
    fn kind_has_a_stable_wire_name() {
        let cases = [
            (SenderKind::Alphanumeric, "alphanumeric"),
            (SenderKind::PhoneNumber, "phone_number"),
            (SenderKind::ShortCode, "short_code"),
        ];
        for (kind, name) in cases {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
        }
    }

    #[test]
    fn serializes_as_the_plain_string() {
        for input in ["ACME", "+447700900123", "12345"] {
            let sender = SenderId::parse(input).unwrap();
            assert_eq!(serde_json::to_value(&sender).unwrap(), input);
        }
    }
}
