//! E.164 phone numbers, and how to show one in a log without leaking it.

use std::fmt;

use serde::Serialize;

use super::DomainError;

/// ITU-T E.164 caps a number at 15 digits, country calling code included.
const MAX_DIGITS: usize = 15;
/// No real number is this short, but E.164 sets no lower bound above the
/// country code; reachability is the carrier's call, not ours.
const MIN_DIGITS: usize = 2;

/// A phone number in E.164 form: `+`, then 2 to 15 digits, the first 1-9.
///
/// Written exactly as the client sent it; no spaces, dashes or trunk prefix
/// are removed, because guessing at a national format risks texting the
/// wrong person.
///
/// `Debug` prints the [masked](Self::masked) form, so a number that reaches
/// a log through `{:?}` or `tracing`'s `?field` is not leaked. `Display`,
/// [`as_str`](Self::as_str) and `Serialize` give the full number.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses an E.164 number such as `+447700900123`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() {
            return Err(DomainError::new("phone number is empty"));
        }
        let Some(digits) = s.strip_prefix('+') else {
            return Err(DomainError::new(
                "phone number must be in E.164 form, starting with '+'",
            ));
        };
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(DomainError::new(format!(
                "phone number may contain only digits after the '+'; found {c:?}"
            )));
        }
        if digits.starts_with('0') {
            return Err(DomainError::new(
                "phone number must not start with +0; country calling codes start with 1-9",
            ));
        }
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
            return Err(DomainError::new(format!(
                "phone number must have {MIN_DIGITS} to {MAX_DIGITS} digits after the '+'; found {}",
                digits.len()
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The number as the client sent it, with the leading `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country calling code, without the `+` (`"44"` for
    /// `+447700900123`, `"1"` for `+14155550100`, `"353"` for Ireland).
    ///
    /// The length follows from the leading digits, because ITU calling codes
    /// are prefix-free (see `calling_code_len`). For a number
    /// shorter than its calling code (legal E.164 allows `+35`), this is
    /// all of its digits.
    pub fn country_calling_code(&self) -> &str {
        let digits = self.digits();
        &digits[..calling_code_len(digits).min(digits.len())]
    }

    /// The number for logs: the `+`, the country calling code and the last
    /// two digits, every other digit replaced by `*`
    /// (`+447700900123` becomes `+44********23`).
    ///
    /// The country and the tail are enough to correlate a log line with a
    /// support ticket; the rest identifies a person. A number too short to
    /// have anything between the code and the tail is shown whole.
    pub fn masked(&self) -> String {
        let digits = self.digits();
        let head = calling_code_len(digits);
        let tail_start = digits.len().saturating_sub(2);
        let mut masked = String::with_capacity(self.0.len());
        masked.push('+');
        for (i, digit) in digits.chars().enumerate() {
            masked.push(if i < head || i >= tail_start {
                digit
            } else {
                '*'
            });
        }
        masked
    }

    fn digits(&self) -> &str {
        &self.0[1..]
    }
}

/// How many leading digits of an E.164 number are its country calling code.
///
/// ITU-T calling codes are prefix-free (no code is the start of another),
/// so the leading digits alone decide the length:
///
/// - one digit: `1` (NANP) and `7` (Russia, Kazakhstan);
/// - two digits: 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46,
///   47, 48, 49, 51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66,
///   81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98;
/// - three digits: everything else (including unassigned codes, which can
///   only make the masked prefix one digit longer, never leak the tail).
fn calling_code_len(digits: &str) -> usize {
    if digits.starts_with(['1', '7']) {
        return 1;
    }
    match digits.get(..2) {
        Some(
            "20" | "27" | "30" | "31" | "32" | "33" | "34" | "36" | "39" | "40" | "41" | "43"
            | "44" | "45" | "46" | "47" | "48" | "49" | "51" | "52" | "53" | "54" | "55" | "56"
            | "57" | "58" | "60" | "61" | "62" | "63" | "64" | "65" | "66" | "81" | "82" | "84"
            | "86" | "90" | "91" | "92" | "93" | "94" | "95" | "98",
        ) => 2,
        _ => 3,
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PhoneNumber").field(&self.masked()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164_numbers() {
        let valid = [
            "+447700900123",
            "+14155550100",
            "+12",
            "+123456789012345",
            "+79161234567",
            "+353861234567",
        ];
        for input in valid {
            let phone =
                PhoneNumber::parse(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"));
            assert_eq!(phone.as_str(), input);
            assert_eq!(phone.to_string(), input);
        }
    }

    #[test]
    fn rejects_anything_but_plus_and_digits() {
        let cases = [
            ("", "phone number is empty"),
            (
                "447700900123",
                "phone number must be in E.164 form, starting with '+'",
            ),
            (
                "00447700900123",
                "phone number must be in E.164 form, starting with '+'",
            ),
            (
                " +447700900123",
                "phone number must be in E.164 form, starting with '+'",
            ),
            (
                "+44 7700 900123",
                "phone number may contain only digits after the '+'; found ' '",
            ),
            (
                "+44-7700-900123",
                "phone number may contain only digits after the '+'; found '-'",
            ),
            (
                "+447700900123\n",
                "phone number may contain only digits after the '+'; found '\\n'",
            ),
            (
                "++447700900123",
                "phone number may contain only digits after the '+'; found '+'",
            ),
            (
                "+４４7700900123",
                "phone number may contain only digits after the '+'; found '４'",
            ),
            (
                "+0447700900123",
                "phone number must not start with +0; country calling codes start with 1-9",
            ),
            (
                "+",
                "phone number must have 2 to 15 digits after the '+'; found 0",
            ),
            (
                "+9",
                "phone number must have 2 to 15 digits after the '+'; found 1",
            ),
            (
                "+1234567890123456",
                "phone number must have 2 to 15 digits after the '+'; found 16",
            ),
        ];
        for (input, detail) in cases {
            let err = PhoneNumber::parse(input).expect_err(input);
            assert_eq!(err.detail(), detail, "input {input:?}");
        }
    }

    #[test]
    fn error_details_never_echo_the_number() {
        for input in [
            "447700900123",
            "+44 7700900123",
            "+04477009001",
            "+4477009001234567",
        ] {
            let err = PhoneNumber::parse(input).expect_err(input);
            assert!(!err.detail().contains("7700900"), "{input:?}: {err}");
        }
    }

    #[test]
    fn finds_the_country_calling_code() {
        let cases = [
            ("+14155550100", "1"),
            ("+79161234567", "7"),
            ("+201001234567", "20"),
            ("+27821234567", "27"),
            ("+447700900123", "44"),
            ("+4915112345678", "49"),
            ("+61412345678", "61"),
            ("+819012345678", "81"),
            ("+8613812345678", "86"),
            ("+905321234567", "90"),
            ("+989121234567", "98"),
            ("+353861234567", "353"),
            ("+212612345678", "212"),
            ("+380501234567", "380"),
            ("+852912345678", "852"),
            ("+971501234567", "971"),
            ("+35", "35"),
        ];
        for (input, code) in cases {
            let phone = PhoneNumber::parse(input).expect(input);
            assert_eq!(phone.country_calling_code(), code, "input {input:?}");
        }
    }

    #[test]
    fn masks_all_but_country_code_and_last_two_digits() {
        let cases = [
            ("+447700900123", "+44********23"),
            ("+14155550100", "+1********00"),
            ("+79161234567", "+7********67"),
            ("+353861234567", "+353*******67"),
            ("+123456789012345", "+1************45"),
            ("+4412345", "+44***45"),
            ("+441234", "+44**34"),
            ("+4412", "+4412"),
            ("+12", "+12"),
            ("+35", "+35"),
        ];
        for (input, masked) in cases {
            let phone = PhoneNumber::parse(input).expect(input);
            assert_eq!(phone.masked(), masked, "input {input:?}");
            assert_eq!(masked.len(), input.len(), "masking keeps the length");
        }
    }

    #[test]
    fn debug_shows_only_the_masked_number() {
        let phone = PhoneNumber::parse("+447700900123").unwrap();
        assert_eq!(format!("{phone:?}"), "PhoneNumber(\"+44********23\")");
    }

    #[test]
    fn serializes_as_the_plain_string() {
        let phone = PhoneNumber::parse("+447700900123").unwrap();
        assert_eq!(serde_json::to_string(&phone).unwrap(), "\"+447700900123\"");
    }
}
