//! Request JSON read the way the legacy api-gateway read it: Express's
//! `body-parser` (`json()`, strict mode) in front of Node's `JSON.parse`,
//! so that a malformed body gets, word for word and position for position,
//! the message the legacy sent back. One difference, on purpose: an object
//! with the same key twice is refused (`JSON.parse` keeps the last value,
//! and a proxy or WAF in front that reads the first would see another
//! request than this service), see [`BodyError::DuplicateKey`].
//!
//! Which Node release's wording this is comes from the contract
//! (`x-legacy.runtime.node` in `orchestrator/openapi.yaml`); this module
//! implements V8 11.3 (Node 20), and the contract loader refuses any other
//! value rather than answer in the wrong words. The messages were checked
//! against `node` 20.20 with body-parser 1.20: every case in
//! `contracts/legacy/json-parse-errors.jsonl` is what that `JSON.parse`
//! said (`node contracts/legacy/tools/json-parse-errors.js` regenerates it).
//!
//! Positions and the context excerpts in V8's messages count UTF-16 code
//! units, as JavaScript strings do, so the parser works on UTF-16.
//!
//! The value is built with an explicit stack (no recursion, whatever the
//! nesting). Containers deeper than [`MAX_BUILT_DEPTH`] are still parsed
//! and checked, but kept empty: no request field the contract knows is
//! that deep, so validation answers the same, and a hostile body cannot
//! make the service build (or drop, recursively) a tower of values.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Number, Value};

/// Deepest container whose contents are kept (the root is depth 1).
pub const MAX_BUILT_DEPTH: usize = 32;

/// The Node release whose `JSON.parse` wording this module speaks.
pub const NODE_MAJOR: &str = "20";

/// V8's context excerpt: this many code units either side of the error.
const CONTEXT: usize = 10;

/// A JavaScript string: UTF-16 code units, lone surrogates allowed (V8's
/// excerpts can cut a surrogate pair in half, and `JSON.stringify` then
/// writes the half as `\udXXX`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct JsString(Vec<u16>);

impl JsString {
    fn from_str(s: &str) -> Self {
        Self(s.encode_utf16().collect())
    }

    /// Appends Rust text.
    pub fn push_str(&mut self, s: &str) {
        self.0.extend(s.encode_utf16());
    }

    /// Appends another JavaScript string.
    pub fn push_js(&mut self, s: &JsString) {
        self.0.extend_from_slice(&s.0);
    }

    /// The string as `JSON.stringify` writes it, quotes included.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 2);
        out.push('"');
        for unit in char::decode_utf16(self.0.iter().copied()) {
            match unit {
                Ok('"') => out.push_str("\\\""),
                Ok('\\') => out.push_str("\\\\"),
                Ok('\u{8}') => out.push_str("\\b"),
                Ok('\u{c}') => out.push_str("\\f"),
                Ok('\n') => out.push_str("\\n"),
                Ok('\r') => out.push_str("\\r"),
                Ok('\t') => out.push_str("\\t"),
                Ok(c) if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                Ok(c) => out.push(c),
                Err(lone) => out.push_str(&format!("\\u{:04x}", lone.unpaired_surrogate())),
            }
        }
        out.push('"');
        out
    }
}

impl fmt::Display for JsString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf16_lossy(&self.0))
    }
}

impl fmt::Debug for JsString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

/// Why a body is not accepted as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// What `JSON.parse` (or body-parser's strict check) threw, verbatim.
    Syntax(JsString),
    /// Valid JSON with a key twice in one object. `position` is where the
    /// second occurrence starts (UTF-16 units, like V8's positions).
    DuplicateKey { key: String, position: usize },
}

impl BodyError {
    /// The client-facing message.
    pub fn message(&self) -> JsString {
        match self {
            BodyError::Syntax(m) => m.clone(),
            BodyError::DuplicateKey { key, position } => {
                let mut m = JsString::from_str("Duplicate key ");
                m.0.extend(
                    JsString::from_str(key)
                        .to_json()
                        .encode_utf16()
                        .collect::<Vec<_>>(),
                );
                m.push_str(&format!(" in JSON at position {position}"));
                m
            }
        }
    }
}

/// Decodes a request body as body-parser does for `charset=utf-8`: invalid
/// UTF-8 becomes U+FFFD, a leading byte-order mark is dropped.
pub fn decode_utf8(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix('\u{feff}').unwrap_or(&text).to_owned()
}

/// body-parser's `json()` on a decoded body: empty is `{}`; strict mode
/// refuses a first non-blank character other than `{` or `[`; then
/// `JSON.parse`; then this service's duplicate-key rule.
pub fn parse_body(text: &str) -> Result<Value, BodyError> {
    read_body(text, Duplicates::Refuse)
}

/// Exactly what the legacy did: [`parse_body`] without the duplicate-key
/// rule (a repeated key keeps its first position and its last value, as
/// `JSON.parse` does). For the legacy simulator.
pub fn parse_body_as_legacy(text: &str) -> Result<Value, JsString> {
    read_body(text, Duplicates::KeepLast).map_err(|e| e.message())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duplicates {
    Refuse,
    KeepLast,
}

fn read_body(text: &str, duplicates: Duplicates) -> Result<Value, BodyError> {
    if text.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let src: Vec<u16> = text.encode_utf16().collect();
    let first = src
        .iter()
        .position(|&c| !matches!(c, 0x20 | 0x09 | 0x0a | 0x0d));
    match first {
        None => return Err(BodyError::Syntax(JsString::from_str(EOS_MESSAGE))),
        Some(i) if !matches!(src[i], 0x7b | 0x5b) => {
            // body-parser re-runs JSON.parse on the text with everything
            // from that character on replaced by '#', then puts the
            // original characters back into the message: V8's "Unexpected
            // token" message for that character, at that position.
            return Err(BodyError::Syntax(unexpected_token_message(&src, i)));
        }
        Some(_) => {}
    }
    let mut parser = Parser {
        src: &src,
        pos: 0,
        duplicate: None,
    };
    let value = parser.run()?;
    match parser.duplicate {
        Some((key, position)) if duplicates == Duplicates::Refuse => {
            Err(BodyError::DuplicateKey { key, position })
        }
        _ => Ok(value),
    }
}

const EOS_MESSAGE: &str = "Unexpected end of JSON input";

/// V8's token classes (`one_char_json_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Eos,
    String,
    Number,
    True,
    False,
    Null,
    Whitespace,
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Colon,
    Comma,
    Illegal,
}

fn classify(c: Option<u16>) -> Token {
    let Some(c) = c else { return Token::Eos };
    match c {
        0x22 => Token::String,
        0x2d | 0x30..=0x39 => Token::Number,
        0x74 => Token::True,
        0x66 => Token::False,
        0x6e => Token::Null,
        0x20 | 0x09 | 0x0a | 0x0d => Token::Whitespace,
        0x7b => Token::LBrace,
        0x7d => Token::RBrace,
        0x5b => Token::LBrack,
        0x5d => Token::RBrack,
        0x3a => Token::Colon,
        0x2c => Token::Comma,
        _ => Token::Illegal,
    }
}

/// V8's templates that name a position.
#[derive(Debug, Clone, Copy)]
enum Expected {
    PropNameOrRBrace,
    DoubleQuotedPropertyName,
    ColonAfterPropertyName,
    CommaOrRBrace,
    CommaOrRBrack,
    NonWhitespaceAfterJson,
    BadControlCharacter,
    BadEscapedCharacter,
    BadUnicodeEscape,
    UnterminatedString,
    NoNumberAfterMinusSign,
    UnterminatedFractionalNumber,
    ExponentPartMissingNumber,
}

impl Expected {
    fn text(self) -> &'static str {
        match self {
            Expected::PropNameOrRBrace => "Expected property name or '}' in JSON",
            Expected::DoubleQuotedPropertyName => "Expected double-quoted property name in JSON",
            Expected::ColonAfterPropertyName => "Expected ':' after property name in JSON",
            Expected::CommaOrRBrace => "Expected ',' or '}' after property value in JSON",
            Expected::CommaOrRBrack => "Expected ',' or ']' after array element in JSON",
            Expected::NonWhitespaceAfterJson => "Unexpected non-whitespace character after JSON",
            Expected::BadControlCharacter => "Bad control character in string literal in JSON",
            Expected::BadEscapedCharacter => "Bad escaped character in JSON",
            Expected::BadUnicodeEscape => "Bad Unicode escape in JSON",
            Expected::UnterminatedString => "Unterminated string in JSON",
            Expected::NoNumberAfterMinusSign => "No number after minus sign in JSON",
            Expected::UnterminatedFractionalNumber => "Unterminated fractional number in JSON",
            Expected::ExponentPartMissingNumber => "Exponent part is missing a number in JSON",
        }
    }
}

/// V8's "Unexpected token 'c', <excerpt> is not valid JSON" for the code
/// unit at `pos`.
fn unexpected_token_message(src: &[u16], pos: usize) -> JsString {
    let len = src.len();
    let mut m = JsString::from_str("Unexpected token '");
    m.0.push(src[pos]);
    m.push_str("', ");
    // Short sources are quoted whole; longer ones as 10 units either side.
    if len <= 2 * CONTEXT {
        m.push_str("\"");
        m.0.extend_from_slice(src);
        m.push_str("\"");
    } else if pos < CONTEXT {
        m.push_str("\"");
        m.0.extend_from_slice(&src[..pos + CONTEXT]);
        m.push_str("\"...");
    } else if pos < len - CONTEXT {
        m.push_str("...\"");
        m.0.extend_from_slice(&src[pos - CONTEXT..pos + CONTEXT]);
        m.push_str("\"...");
    } else {
        m.push_str("...\"");
        m.0.extend_from_slice(&src[pos - CONTEXT..]);
        m.push_str("\"");
    }
    m.push_str(" is not valid JSON");
    m
}

/// An open container on the parse stack.
enum Frame {
    Object {
        map: Map<String, Value>,
        keys: HashSet<String>,
        pending_key: Option<String>,
        kept: bool,
    },
    Array {
        items: Vec<Value>,
        kept: bool,
    },
}

struct Parser<'a> {
    src: &'a [u16],
    pos: usize,
    /// The first duplicate key seen; reported only if the text parses.
    duplicate: Option<(String, usize)>,
}

type Step<T> = Result<T, JsString>;

impl Parser<'_> {
    /// `JSON.parse` (V8 11.3); a duplicate key is noted, not refused.
    fn run(&mut self) -> Result<Value, BodyError> {
        let value = self.value_tree().map_err(BodyError::Syntax)?;
        self.skip_whitespace();
        if self.pos < self.src.len() {
            return Err(BodyError::Syntax(
                self.expected(Expected::NonWhitespaceAfterJson),
            ));
        }
        Ok(value)
    }

    fn peek(&self) -> Option<u16> {
        self.src.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(0x20 | 0x09 | 0x0a | 0x0d)) {
            self.pos += 1;
        }
    }

    fn expected(&self, e: Expected) -> JsString {
        JsString::from_str(&format!("{} at position {}", e.text(), self.pos))
    }

    /// `ReportUnexpectedToken` without a template: by the token class of
    /// the unit at the cursor.
    fn unexpected(&self) -> JsString {
        match classify(self.peek()) {
            Token::Eos => JsString::from_str(EOS_MESSAGE),
            Token::Number => JsString::from_str(&format!(
                "Unexpected number in JSON at position {}",
                self.pos
            )),
            Token::String => JsString::from_str(&format!(
                "Unexpected string in JSON at position {}",
                self.pos
            )),
            _ => unexpected_token_message(self.src, self.pos),
        }
    }

    /// The whole value at the cursor, containers included, without
    /// recursion.
    fn value_tree(&mut self) -> Step<Value> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // Parse one value (a scalar, or open a container).
            self.skip_whitespace();
            let kept = stack.len() < MAX_BUILT_DEPTH && stack.last().is_none_or(frame_kept);
            let mut value = match classify(self.peek()) {
                Token::String => Value::String(self.string()?),
                Token::Number => self.number()?,
                Token::True => {
                    self.literal("true")?;
                    Value::Bool(true)
                }
                Token::False => {
                    self.literal("false")?;
                    Value::Bool(false)
                }
                Token::Null => {
                    self.literal("null")?;
                    Value::Null
                }
                Token::LBrace => {
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(0x7d) {
                        self.pos += 1;
                        Value::Object(Map::new())
                    } else {
                        let key = self.property_name(Expected::PropNameOrRBrace)?;
                        let mut keys = HashSet::new();
                        keys.insert(key.clone());
                        stack.push(Frame::Object {
                            map: Map::new(),
                            keys,
                            pending_key: Some(key),
                            kept,
                        });
                        continue;
                    }
                }
                Token::LBrack => {
                    self.pos += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(0x5d) {
                        self.pos += 1;
                        Value::Array(Vec::new())
                    } else {
                        stack.push(Frame::Array {
                            items: Vec::new(),
                            kept,
                        });
                        continue;
                    }
                }
                _ => return Err(self.unexpected()),
            };
            // Hand the value to its container; close containers that end.
            loop {
                let Some(frame) = stack.last_mut() else {
                    return Ok(value);
                };
                self.skip_whitespace();
                match frame {
                    Frame::Object {
                        map,
                        keys,
                        pending_key,
                        kept,
                    } => {
                        if let Some(key) = pending_key.take()
                            && *kept
                        {
                            map.insert(key, std::mem::take(&mut value));
                        }
                        match self.peek() {
                            Some(0x2c) => {
                                self.pos += 1;
                                self.skip_whitespace();
                                let at = self.pos;
                                let key = self.property_name(Expected::DoubleQuotedPropertyName)?;
                                if !keys.insert(key.clone()) && self.duplicate.is_none() {
                                    self.duplicate = Some((key.clone(), at));
                                }
                                *pending_key = Some(key);
                                break;
                            }
                            Some(0x7d) => {
                                self.pos += 1;
                                value = Value::Object(std::mem::take(map));
                                stack.pop();
                            }
                            _ => return Err(self.expected(Expected::CommaOrRBrace)),
                        }
                    }
                    Frame::Array { items, kept } => {
                        if *kept {
                            items.push(std::mem::take(&mut value));
                        }
                        match self.peek() {
                            Some(0x2c) => {
                                self.pos += 1;
                                break;
                            }
                            Some(0x5d) => {
                                self.pos += 1;
                                value = Value::Array(std::mem::take(items));
                                stack.pop();
                            }
                            _ => return Err(self.expected(Expected::CommaOrRBrack)),
                        }
                    }
                }
            }
        }
    }

    /// A property name and the colon after it; the cursor is on the name.
    fn property_name(&mut self, missing: Expected) -> Step<String> {
        if self.peek() != Some(0x22) {
            return Err(self.expected(missing));
        }
        let key = self.string()?;
        self.skip_whitespace();
        if self.peek() != Some(0x3a) {
            return Err(self.expected(Expected::ColonAfterPropertyName));
        }
        self.pos += 1;
        Ok(key)
    }

    /// A string; the cursor is on its opening quote.
    fn string(&mut self) -> Step<String> {
        self.pos += 1;
        let mut units: Vec<u16> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.expected(Expected::UnterminatedString));
            };
            match c {
                0x22 => {
                    self.pos += 1;
                    return Ok(String::from_utf16_lossy(&units));
                }
                0x5c => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.unexpected());
                    };
                    if e > 0xff {
                        return Err(self.unexpected());
                    }
                    let plain = match e {
                        0x22 => Some(0x22),
                        0x5c => Some(0x5c),
                        0x2f => Some(0x2f),
                        0x62 => Some(0x08),
                        0x66 => Some(0x0c),
                        0x6e => Some(0x0a),
                        0x72 => Some(0x0d),
                        0x74 => Some(0x09),
                        _ => None,
                    };
                    if let Some(u) = plain {
                        units.push(u);
                        self.pos += 1;
                    } else if e == 0x75 {
                        let mut value = 0u16;
                        for _ in 0..4 {
                            self.pos += 1;
                            let digit = self
                                .peek()
                                .and_then(|d| char::from_u32(u32::from(d)))
                                .and_then(|d| d.to_digit(16));
                            let Some(digit) = digit else {
                                return Err(self.expected(Expected::BadUnicodeEscape));
                            };
                            value = value * 16 + digit as u16;
                        }
                        units.push(value);
                        self.pos += 1;
                    } else {
                        return Err(self.expected(Expected::BadEscapedCharacter));
                    }
                }
                c if c < 0x20 => return Err(self.expected(Expected::BadControlCharacter)),
                c => {
                    units.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn is_digit(&self) -> bool {
        matches!(self.peek(), Some(0x30..=0x39))
    }

    fn digits(&mut self) {
        while self.is_digit() {
            self.pos += 1;
        }
    }

    /// A number, as JavaScript holds it: a double. Integral values up to
    /// 2^53 become JSON integers (so `1e3` and `1000.0` are the integer
    /// 1000, as they are to the legacy); infinities saturate.
    fn number(&mut self) -> Step<Value> {
        let start = self.pos;
        if self.peek() == Some(0x2d) {
            self.pos += 1;
            if !self.is_digit() {
                return Err(self.expected(Expected::NoNumberAfterMinusSign));
            }
        }
        if self.peek() == Some(0x30) {
            self.pos += 1;
            if self.is_digit() {
                return Err(JsString::from_str(&format!(
                    "Unexpected number in JSON at position {}",
                    self.pos
                )));
            }
        } else {
            self.digits();
        }
        if self.peek() == Some(0x2e) {
            self.pos += 1;
            if !self.is_digit() {
                return Err(self.expected(Expected::UnterminatedFractionalNumber));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(0x65 | 0x45)) {
            self.pos += 1;
            if matches!(self.peek(), Some(0x2b | 0x2d)) {
                self.pos += 1;
            }
            if !self.is_digit() {
                return Err(self.expected(Expected::ExponentPartMissingNumber));
            }
            self.digits();
        }
        let text = String::from_utf16_lossy(&self.src[start..self.pos]);
        let x: f64 = text.parse().unwrap_or(f64::NAN);
        let x = if x.is_infinite() {
            f64::MAX.copysign(x)
        } else {
            x
        };
        const SAFE: f64 = 9_007_199_254_740_992.0;
        Ok(if x.fract() == 0.0 && x.abs() <= SAFE {
            // Exact: |x| ≤ 2^53 converts to i64 without loss.
            #[allow(clippy::cast_possible_truncation)]
            Value::Number(Number::from(x as i64))
        } else {
            Number::from_f64(x).map_or(Value::Null, Value::Number)
        })
    }

    /// `true`, `false` or `null`; the cursor is on the first letter.
    fn literal(&mut self, word: &str) -> Step<()> {
        for expected in word.encode_utf16().skip(1) {
            self.pos += 1;
            if self.peek() != Some(expected) {
                return Err(self.unexpected());
            }
        }
        self.pos += 1;
        Ok(())
    }
}

fn frame_kept(frame: &Frame) -> bool {
    match frame {
        Frame::Object { kept, .. } | Frame::Array { kept, .. } => *kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(body: &str) -> String {
        parse_body(body).unwrap_err().message().to_string()
    }

    #[test]
    fn valid_bodies_parse_to_the_same_value_as_serde() {
        for body in [
            r#"{"to":"+447700900123","from":"Acme","body":"h\u00e9 \"x\" \\ \/ \n","n":[1,-2.5,true,false,null,{}]}"#,
            "  [ ]  ",
            "{\"a\":{\"b\":[[],[{}]]}}",
        ] {
            let mine = parse_body(body).unwrap();
            let serde: Value = serde_json::from_str(body).unwrap();
            assert_eq!(mine, serde, "{body}");
        }
    }

    #[test]
    fn numbers_are_javascript_doubles() {
        assert_eq!(parse_body(r#"{"v":1e3}"#).unwrap(), json!({"v": 1000}));
        assert_eq!(parse_body(r#"{"v":3600.0}"#).unwrap(), json!({"v": 3600}));
        assert_eq!(parse_body(r#"{"v":-0}"#).unwrap(), json!({"v": 0}));
        assert_eq!(parse_body(r#"{"v":1.5}"#).unwrap(), json!({"v": 1.5}));
        assert!(parse_body(r#"{"v":1e400}"#).unwrap()["v"].as_f64().unwrap() > 1e300);
    }

    #[test]
    fn an_empty_body_is_an_empty_object_and_a_blank_one_is_not_json() {
        assert_eq!(parse_body("").unwrap(), json!({}));
        assert_eq!(message("  \n"), "Unexpected end of JSON input");
    }

    #[test]
    fn strict_mode_names_the_first_character() {
        assert_eq!(
            message("\"hi\""),
            "Unexpected token '\"', \"\"hi\"\" is not valid JSON"
        );
        assert_eq!(
            message(" 123"),
            "Unexpected token '1', \" 123\" is not valid JSON"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_after_the_syntax_is_checked() {
        assert_eq!(
            parse_body(r#"{"to":"a", "t\u006f":"b"}"#),
            Err(BodyError::DuplicateKey {
                key: "to".into(),
                position: 11
            })
        );
        assert_eq!(
            message(r#"{"to":"a","to":"b"}"#),
            "Duplicate key \"to\" in JSON at position 10"
        );
        // A syntax error anywhere wins over a duplicate before it.
        assert!(message(r#"{"a":1,"a":2,}"#).starts_with("Expected double-quoted"));
        // The legacy kept the last value, in the first key's place.
        assert_eq!(
            parse_body_as_legacy(r#"{"to":"a","x":1,"to":"b"}"#).unwrap(),
            json!({"to": "b", "x": 1})
        );
        assert_eq!(
            serde_json::to_string(&parse_body_as_legacy(r#"{"to":"a","x":1,"to":"b"}"#).unwrap())
                .unwrap(),
            r#"{"to":"b","x":1}"#
        );
        // Nested objects have their own keys.
        assert!(parse_body(r#"{"a":{"a":1},"b":{"a":2}}"#).is_ok());
        assert!(parse_body(r#"{"m":[{"x":1,"x":2}]}"#).is_err());
    }

    #[test]
    fn deep_nesting_is_parsed_without_recursion_and_kept_shallow() {
        let depth = 200_000;
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let v = parse_body(&body).unwrap();
        let mut d = 0;
        let mut cur = &v;
        while let Some(first) = cur.as_array().and_then(|a| a.first()) {
            cur = first;
            d += 1;
        }
        assert!(d <= MAX_BUILT_DEPTH, "{d}");
        let broken = format!("{}1{}", "[".repeat(depth), "]".repeat(depth - 1));
        assert_eq!(
            message(&broken),
            format!(
                "Expected ',' or ']' after array element in JSON at position {}",
                2 * depth
            )
        );
    }

    #[test]
    fn lone_surrogates_are_written_as_javascript_does() {
        let m = message("{\"a\": 😀}");
        assert_eq!(
            m,
            "Unexpected token '\u{fffd}', \"{\"a\": 😀}\" is not valid JSON"
        );
        let json = parse_body("{\"a\": 😀}").unwrap_err().message().to_json();
        assert!(json.starts_with("\"Unexpected token '\\ud83d'"), "{json}");
    }

    /// Every case recorded from Node 20's `JSON.parse` through body-parser.
    #[test]
    fn messages_match_node_20_word_for_word() {
        let cases = include_str!("../../contracts/legacy/json-parse-errors.jsonl");
        let mut n = 0;
        for line in cases.lines().filter(|l| !l.trim().is_empty()) {
            let case: Value = serde_json::from_str(line).unwrap();
            let body = case["body"].as_str().unwrap();
            let got = match parse_body(body) {
                Ok(_) | Err(BodyError::DuplicateKey { .. }) => Value::Null,
                Err(BodyError::Syntax(m)) => Value::String(m.to_json()),
            };
            assert_eq!(got, case["message_json"], "body {body:?}");
            n += 1;
        }
        assert!(n > 50, "only {n} cases");
    }
}
