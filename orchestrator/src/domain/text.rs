//! Message text, its encoding, and the segments a carrier will bill for.
//!
//! The counting follows 3GPP TS 23.038 (GSM 03.38) and TS 23.040 the way
//! carriers apply them, because a segment count that differs from the
//! carrier's by one is a billing dispute:
//!
//! - If every character is in the GSM-7 default alphabet or its extension
//!   table, the message is GSM-7. Default-alphabet characters cost one
//!   septet; extension characters cost two (an escape, then the character).
//! - Otherwise the *whole* message is UCS-2 (UTF-16 in practice), and costs
//!   one unit per UTF-16 code unit, so a character outside the BMP, such as
//!   an emoji, costs two.
//! - A message that fits one segment (160 septets or 70 units) is sent
//!   whole. A longer one is split into parts of 153 septets or 67 units,
//!   because each part carries a 6-octet concatenation header (the UDH)
//!   inside the same 140-octet payload: 140 - 6 = 134 octets, which is 67
//!   UCS-2 units, or 153 septets once the header is padded to a septet
//!   boundary.
//! - A character is never split across parts: an escape pair or a surrogate
//!   pair that does not fit moves whole to the next part, so a GSM-7 part
//!   may hold 152 septets and a UCS-2 part 66 units.

use std::fmt;

use serde::{Serialize, Serializer};

use super::DomainError;

const GSM7_SINGLE_SEGMENT: u64 = 160;
const GSM7_PER_PART: u64 = 153;
const UCS2_SINGLE_SEGMENT: u64 = 70;
const UCS2_PER_PART: u64 = 67;

/// The escape septet that announces an extension-table character. It has no
/// character of its own, so a raw U+001B in the text is not GSM-7.
const ESCAPE: char = '\u{1B}';

/// The GSM 03.38 default alphabet (TS 23.038 §6.2.1), in septet order,
/// sixteen to a row: row 0 is septets 0x00-0x0F. Slot 0x1B is [`ESCAPE`].
#[rustfmt::skip]
const DEFAULT_ALPHABET: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ESCAPE, 'Æ', 'æ', 'ß', 'É',
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The default extension table (TS 23.038 §6.2.1.1): each is sent as
/// [`ESCAPE`] followed by its code, so each costs two septets. The form feed
/// is here, not in the default alphabet.
const EXTENSION_TABLE: [char; 10] = ['\u{0C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];

/// How a message's characters go over the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The GSM 03.38 7-bit alphabet: 160 septets in one segment.
    Gsm7,
    /// 16-bit units: 70 in one segment. Chosen as soon as one character
    /// is outside GSM-7.
    Ucs2,
}

impl Encoding {
    /// `"GSM-7"` or `"UCS-2"`, the names providers report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Encoding {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A non-empty message body, with the encoding and segment count a carrier
/// will use for it, known to fit the tenant's segment limit.
///
/// `Debug` shows the encoding and counts but not the text, which may hold
/// one-time codes or personal data. `Display`, [`as_str`](Self::as_str) and
/// `Serialize` give the text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MessageText {
    text: String,
    encoding: Encoding,
    units: u32,
    segments: u32,
}

impl MessageText {
    /// Parses a message body that must fit in `max_segments` segments.
    ///
    /// Only the empty string is rejected for its content; whitespace and
    /// control characters are the sender's business, and they are counted
    /// like any other character.
    pub fn parse(s: &str, max_segments: u32) -> Result<Self, DomainError> {
        if s.is_empty() {
            return Err(DomainError::new("message text is empty"));
        }
        let measure = Measure::of(s);
        if measure.segments > u64::from(max_segments) {
            let noun = if measure.segments == 1 {
                "segment"
            } else {
                "segments"
            };
            return Err(DomainError::new(format!(
                "message needs {} {noun}; the limit is {max_segments}",
                measure.segments
            )));
        }
        Ok(Self {
            text: s.to_owned(),
            encoding: measure.encoding,
            // Both fit: segments is at most max_segments, and units at most
            // max_segments * 153.
            units: saturate(measure.units),
            segments: saturate(measure.segments),
        })
    }

    /// The text exactly as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// GSM-7 if every character is in the GSM 03.38 tables, else UCS-2.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// How many segments a carrier sends, and bills, for this text.
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// The text's length in the encoding's units: septets for GSM-7 (an
    /// extension character counts two), UTF-16 code units for UCS-2 (an
    /// emoji counts two).
    pub fn units(&self) -> u32 {
        self.units
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl fmt::Display for MessageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for MessageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageText")
            .field("encoding", &self.encoding)
            .field("units", &self.units)
            .field("segments", &self.segments)
            .finish_non_exhaustive()
    }
}

impl Serialize for MessageText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// A text's encoding, total length in units and segment count.
///
/// Counted in `u64` so that no input length can overflow before the
/// segment limit rejects it.
struct Measure {
    encoding: Encoding,
    units: u64,
    segments: u64,
}

impl Measure {
    fn of(text: &str) -> Self {
        if text.chars().all(|c| gsm7_septets(c).is_some()) {
            let costs = text.chars().filter_map(gsm7_septets);
            Self::pack(Encoding::Gsm7, costs, GSM7_SINGLE_SEGMENT, GSM7_PER_PART)
        } else {
            let costs = text.chars().map(|c| c.len_utf16() as u64);
            Self::pack(Encoding::Ucs2, costs, UCS2_SINGLE_SEGMENT, UCS2_PER_PART)
        }
    }

    /// Packs characters, given as their cost in units, greedily into parts
    /// of `per_part` units, moving a character that does not fit whole to
    /// the next part. A text of at most `single` units is one segment.
    fn pack(
        encoding: Encoding,
        costs: impl Iterator<Item = u64>,
        single: u64,
        per_part: u64,
    ) -> Self {
        let mut units = 0;
        let mut parts = 1;
        let mut in_part = 0;
        for cost in costs {
            units += cost;
            if in_part + cost > per_part {
                parts += 1;
                in_part = 0;
            }
            in_part += cost;
        }
        let segments = if units <= single { 1 } else { parts };
        Self {
            encoding,
            units,
            segments,
        }
    }
}

/// What a character costs in GSM-7, or `None` if GSM-7 cannot carry it.
///
/// A linear scan of the tables: a message is a few hundred characters and
/// the tables fit in a few cache lines, and the tables stay readable as the
/// standard prints them.
fn gsm7_septets(c: char) -> Option<u64> {
    if c == ESCAPE {
        None
    } else if DEFAULT_ALPHABET.contains(&c) {
        Some(1)
    } else if EXTENSION_TABLE.contains(&c) {
        Some(2)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit high enough that only the counting is under test.
    const NO_LIMIT: u32 = u32::MAX;

    #[test]
    fn counts_units_and_segments_as_carriers_bill() {
        use Encoding::{Gsm7, Ucs2};
        let a = |n| "a".repeat(n);
        let e_ogonek = |n| "ę".repeat(n);
        let emoji = |n| "😀".repeat(n);
        let cases: Vec<(&str, String, Encoding, u32, u32)> = vec![
            // (what, text, encoding, units, segments)
            ("one GSM char", a(1), Gsm7, 1, 1),
            ("160 GSM chars fill one segment", a(160), Gsm7, 160, 1),
            ("161 GSM chars need two", a(161), Gsm7, 161, 2),
            ("153 x 2 GSM chars fill two parts", a(306), Gsm7, 306, 2),
            ("307 GSM chars need three", a(307), Gsm7, 307, 3),
            ("153 x 10 GSM chars fill ten parts", a(1530), Gsm7, 1530, 10),
            ("euro costs two septets", "€".into(), Gsm7, 2, 1),
            ("brace costs two septets", "{".into(), Gsm7, 2, 1),
            ("158 + euro is exactly 160", a(158) + "€", Gsm7, 160, 1),
            ("159 + euro is 161 septets", a(159) + "€", Gsm7, 161, 2),
            ("159 + brace is 161 septets", a(159) + "{", Gsm7, 161, 2),
            ("80 euros fill one segment", "€".repeat(80), Gsm7, 160, 1),
            ("81 euros: 76 + 5 per part", "€".repeat(81), Gsm7, 162, 2),
            (
                "escape pair not split at the boundary",
                a(152) + "€" + &a(152),
                Gsm7,
                306,
                3,
            ),
            (
                "escape pair that fits exactly stays",
                a(151) + "€" + &a(153),
                Gsm7,
                306,
                2,
            ),
            ("153 euros: 76 per part", "€".repeat(153), Gsm7, 306, 3),
            (
                "every extension char",
                "^{}\\[~]|€\u{0C}".into(),
                Gsm7,
                20,
                1,
            ),
            ("e acute stays GSM-7", "é".into(), Gsm7, 1, 1),
            (
                "accents in the alphabet",
                "Ça va? Ñoño, Øre, Åse, ß".into(),
                Gsm7,
                24,
                1,
            ),
            (
                "Greek capitals in the alphabet",
                "ΔΦΓΛΩΠΨΣΘΞ".into(),
                Gsm7,
                10,
                1,
            ),
            ("CR and LF cost one", "\r\n".into(), Gsm7, 2, 1),
            ("one e ogonek makes UCS-2", "ę".into(), Ucs2, 1, 1),
            ("one emoji makes UCS-2", "😀".into(), Ucs2, 2, 1),
            ("lower-case c cedilla is not GSM-7", "ç".into(), Ucs2, 1, 1),
            ("backtick is not GSM-7", "`".into(), Ucs2, 1, 1),
            ("raw escape is not GSM-7", "\u{1B}".into(), Ucs2, 1, 1),
            ("tab is not GSM-7", "\t".into(), Ucs2, 1, 1),
            ("Greek lower case is not GSM-7", "α".into(), Ucs2, 1, 1),
            ("one UCS-2 char converts all", a(100) + "ę", Ucs2, 101, 2),
            (
                "euro in UCS-2 costs one unit",
                "€".repeat(70) + "ę",
                Ucs2,
                71,
                2,
            ),
            ("70 UCS-2 units fill one segment", e_ogonek(70), Ucs2, 70, 1),
            ("71 UCS-2 units need two", e_ogonek(71), Ucs2, 71, 2),
            (
                "67 x 2 UCS-2 units fill two parts",
                e_ogonek(134),
                Ucs2,
                134,
                2,
            ),
            ("135 UCS-2 units need three", e_ogonek(135), Ucs2, 135, 3),
            ("35 emoji are 70 units", emoji(35), Ucs2, 70, 1),
            ("36 emoji are 72 units", emoji(36), Ucs2, 72, 2),
            ("67 emoji: 33 per part", emoji(67), Ucs2, 134, 3),
            (
                "surrogate pair not split at the boundary",
                e_ogonek(66) + "😀" + &e_ogonek(66),
                Ucs2,
                134,
                3,
            ),
            (
                "surrogate pair that fits exactly stays",
                e_ogonek(65) + "😀" + &e_ogonek(67),
                Ucs2,
                134,
                2,
            ),
        ];
        for (what, text, encoding, units, segments) in cases {
            let message =
                MessageText::parse(&text, NO_LIMIT).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(message.encoding(), encoding, "{what}: encoding");
            assert_eq!(message.units(), units, "{what}: units");
            assert_eq!(message.segments(), segments, "{what}: segments");
            assert_eq!(message.as_str(), text, "{what}: text kept as given");
        }
    }

    #[test]
    fn enforces_the_segment_limit() {
        let cases: Vec<(String, u32, Result<u32, &str>)> = vec![
            // (text, max_segments, segments or error detail)
            ("a".repeat(1530), 10, Ok(10)),
            (
                "a".repeat(1531),
                10,
                Err("message needs 11 segments; the limit is 10"),
            ),
            (
                "a".repeat(1800),
                10,
                Err("message needs 12 segments; the limit is 10"),
            ),
            ("a".repeat(160), 1, Ok(1)),
            (
                "a".repeat(161),
                1,
                Err("message needs 2 segments; the limit is 1"),
            ),
            ("ę".repeat(670), 10, Ok(10)),
            (
                "ę".repeat(671),
                10,
                Err("message needs 11 segments; the limit is 10"),
            ),
            (
                "a".repeat(152) + "€" + &"a".repeat(152),
                2,
                Err("message needs 3 segments; the limit is 2"),
            ),
            (
                "a".into(),
                0,
                Err("message needs 1 segment; the limit is 0"),
            ),
        ];
        for (text, max, expected) in cases {
            let result = MessageText::parse(&text, max)
                .map(|m| m.segments())
                .map_err(|e| e.detail().to_owned());
            assert_eq!(
                result,
                expected.map_err(str::to_owned),
                "{} chars, limit {max}",
                text.chars().count()
            );
        }
    }

    #[test]
    fn rejects_empty_text() {
        let err = MessageText::parse("", 10).unwrap_err();
        assert_eq!(err.detail(), "message text is empty");
    }

    #[test]
    fn error_details_never_echo_the_text() {
        let text = "secret ".repeat(300);
        let err = MessageText::parse(&text, 1).unwrap_err();
        assert!(!err.detail().contains("secret"), "{err}");
    }

    #[test]
    fn default_alphabet_is_the_gsm_03_38_table() {
        let mut distinct = DEFAULT_ALPHABET.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 128, "no character appears twice");
        assert_eq!(DEFAULT_ALPHABET[0x1B], ESCAPE);
        let spot_checks = [
            (0x00, '@'),
            (0x0A, '\n'),
            (0x0D, '\r'),
            (0x10, '\u{0394}'), // GREEK CAPITAL LETTER DELTA, not INCREMENT
            (0x12, '\u{03A6}'),
            (0x13, '\u{0393}'),
            (0x14, '\u{039B}'),
            (0x15, '\u{03A9}'), // GREEK CAPITAL LETTER OMEGA, not OHM SIGN
            (0x16, '\u{03A0}'),
            (0x17, '\u{03A8}'),
            (0x18, '\u{03A3}'),
            (0x19, '\u{0398}'),
            (0x1A, '\u{039E}'),
            (0x20, ' '),
            (0x24, '¤'),
            (0x30, '0'),
            (0x40, '¡'),
            (0x41, 'A'),
            (0x5F, '§'),
            (0x60, '¿'),
            (0x61, 'a'),
            (0x7F, 'à'),
        ];
        for (septet, c) in spot_checks {
            assert_eq!(DEFAULT_ALPHABET[septet], c, "septet {septet:#04x}");
        }
        for c in EXTENSION_TABLE {
            assert!(!DEFAULT_ALPHABET.contains(&c), "{c:?} is in both tables");
        }
        assert!(
            !DEFAULT_ALPHABET.contains(&'\u{0C}'),
            "form feed is an extension"
        );
    }

    #[test]
    fn encoding_has_the_provider_names() {
        let cases = [(Encoding::Gsm7, "GSM-7"), (Encoding::Ucs2, "UCS-2")];
        for (encoding, name) in cases {
            assert_eq!(encoding.as_str(), name);
            assert_eq!(encoding.to_string(), name);
            assert_eq!(serde_json::to_value(encoding).unwrap(), name);
        }
    }

    #[test]
    fn serializes_as_the_text_and_debug_hides_it() {
        let message = MessageText::parse("Your code is 123456", 10).unwrap();
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            "Your code is 123456"
        );
        assert_eq!(message.to_string(), "Your code is 123456");
        let debug = format!("{message:?}");
        assert!(!debug.contains("123456"), "{debug}");
        assert_eq!(
            debug,
            "MessageText { encoding: Gsm7, units: 19, segments: 1, .. }"
        );
    }
}
