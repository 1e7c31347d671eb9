//! Templates in an authored capture: the values a replay fills in per
//! target, because each system answers with its own.
//!
//! A captured exchange that reads a message back (`GET /v1/sms/{id}`)
//! cannot carry the id: the legacy and the orchestrator each mint their
//! own, and a new replay mints new ones. A capture line marked
//! `"templates": true` (`compare/schemas/capture.v1.schema.json`) may
//! therefore hold, in its path, header values and body:
//!
//! | template | filled with, per target |
//! |---|---|
//! | `{{id:REF}}` | the string at `/id` of the answer this target gave to the earlier request `REF` (its correlation id) |
//! | `{{id:REF#/results/1/id}}` | the string at that JSON pointer of `REF`'s answer |
//! | `{{etag:REF}}` | the `ETag` of `REF`'s answer on this target |
//! | `{{time:+2h:iso}}` | the replay's start + 2 h (`s`, `m`, `h`, `d`; `-` for the past), as `toISOString()` writes it (UTC, milliseconds, `Z`) |
//! | `{{time:-1h:+01:00}}` | that instant in RFC 3339 at that UTC offset, whole seconds |
//! | `{{run}}` | one random token per replay (unique `Idempotency-Key`s on every run) |
//!
//! and two headers that are never sent:
//!
//! - `x-compare-caller: NAME`: send the headers given for caller `NAME`
//!   (`compare replay --caller 'NAME=Authorization: Bearer …'`; per target
//!   with `--primary-caller`/`--candidate-caller`). A capture holds no
//!   credentials; this says whose to use.
//! - `x-compare-await: PATH POINTER VALUE`: before sending, `GET PATH`
//!   (templates filled, the same caller) on the same target until the JSON
//!   value at `POINTER` is `VALUE` (a string compares without quotes), e.g.
//!   `/v1/sms/{{id:send-gsm7}} /status queued`: both systems have published
//!   the message, so both report the same lifecycle.
//!
//! The instants and the run token are the same for every target; ids and
//! ETags are each target's own. Anything else between `{{` and `}}` is
//! left as it is, and lines without the marker are sent verbatim (real
//! traffic may contain `{{…}}`).

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use http::HeaderMap;
use regex::Regex;
use serde_json::Value;

use crate::error::TemplateError;
use crate::exchange::RecordedResponse;

/// The header naming whose credentials a templated request is sent with.
pub const CALLER_HEADER: &str = "x-compare-caller";
/// The header naming what to wait for before a templated request is sent.
pub const AWAIT_HEADER: &str = "x-compare-await";

static TEMPLATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{(?:(id|etag|time):([^{}]+)|(run))\}\}").expect("template regex")
});

/// The replay's clock and run token: the same on every target.
#[derive(Debug, Clone)]
pub struct Clock {
    start: DateTime<Utc>,
    run: String,
}

impl Clock {
    /// Now, to the whole second, and a fresh run token.
    pub fn now() -> Self {
        let now = Utc::now();
        Self::at(
            DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
            &format!("{:016x}", rand::random::<u64>()),
        )
    }

    pub fn at(start: DateTime<Utc>, run: &str) -> Self {
        Self {
            start,
            run: run.to_owned(),
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    /// `+2h:iso`, `-1h:+01:00`: the instant and how to write it.
    pub fn time(&self, spec: &str) -> Result<String, TemplateError> {
        let bad = |reason: &str| TemplateError::Time {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (delta, form) = spec
            .split_once(':')
            .ok_or_else(|| bad("expected {{time:<±N><s|m|h|d>:<iso|±HH:MM>}}"))?;
        let sign = match delta.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(bad("the offset starts with + or -")),
        };
        let rest = &delta[1..];
        let unit = rest.chars().last().ok_or_else(|| bad("no amount"))?;
        let n: i64 = rest[..rest.len() - unit.len_utf8()]
            .parse()
            .map_err(|_| bad("not a whole number"))?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad("the unit is s, m, h or d")),
        };
        let t = self.start + chrono::Duration::seconds(sign * n * seconds);
        if form == "iso" {
            return Ok(t.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        let offset = parse_offset(form).ok_or_else(|| bad("the form is iso or ±HH:MM"))?;
        Ok(t.with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::Secs, false))
    }
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    let sign = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = text[1..].split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let seconds = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * seconds)
}

/// What one target answered to the requests later ones refer to, by
/// correlation id.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    by_reference: HashMap<String, (HeaderMap, Bytes)>,
}

impl Answers {
    /// Keeps `response` as the answer to `reference` (a later answer to
    /// the same reference replaces it).
    pub fn insert(&mut self, reference: &str, response: &RecordedResponse) {
        self.insert_parts(reference, response.headers.clone(), response.body.clone());
    }

    pub fn insert_parts(&mut self, reference: &str, headers: HeaderMap, body: Bytes) {
        self.by_reference
            .insert(reference.to_owned(), (headers, body));
    }

    /// `REF` or `REF#/pointer` (default `/id`): the string there.
    pub fn id(&self, spec: &str) -> Result<String, TemplateError> {
        let (reference, pointer) = spec.split_once('#').unwrap_or((spec, "/id"));
        let (_, body) = self.answer(reference)?;
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| {
                v.pointer(pointer)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| TemplateError::NoValue {
                reference: reference.to_owned(),
                what: format!("no string at {pointer} in its body"),
            })
    }

    /// The `ETag` of `REF`'s answer.
    pub fn etag(&self, reference: &str) -> Result<String, TemplateError> {
        let (headers, _) = self.answer(reference)?;
        headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| TemplateError::NoValue {
                reference: reference.to_owned(),
                what: "no ETag".to_owned(),
            })
    }

    fn answer(&self, reference: &str) -> Result<&(HeaderMap, Bytes), TemplateError> {
        self.by_reference
            .get(reference)
            .ok_or_else(|| TemplateError::NotAnswered {
                reference: reference.to_owned(),
            })
    }
}

/// `text` with every template filled for the target whose `answers` these
/// are. Text without templates comes back unchanged.
pub fn fill(text: &str, answers: &Answers, clock: &Clock) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for c in TEMPLATE.captures_iter(text) {
        let whole = c.get(0).expect("match");
        out.push_str(&text[last..whole.start()]);
        let value = match (c.get(1).map(|m| m.as_str()), c.get(2).map(|m| m.as_str())) {
            (Some("id"), Some(spec)) => answers.id(spec)?,
            (Some("etag"), Some(reference)) => answers.etag(reference)?,
            (Some("time"), Some(spec)) => clock.time(spec)?,
            _ => clock.run.clone(),
        };
        out.push_str(&value);
        last = whole.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// The correlation ids `text` refers to (`{{id:REF…}}`, `{{etag:REF}}`):
/// the answers a replay must keep.
pub fn references(text: &str) -> impl Iterator<Item = &str> {
    TEMPLATE.captures_iter(text).filter_map(|c| {
        let spec = c.get(2)?.as_str();
        matches!(c.get(1)?.as_str(), "id" | "etag")
            .then(|| spec.split_once('#').map_or(spec, |(r, _)| r))
    })
}

/// What `x-compare-await` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Await {
    /// Path and query to `GET` (templates not yet filled).
    pub path: String,
    pub pointer: String,
    pub value: String,
}

impl Await {
    /// `PATH POINTER VALUE`, separated by single spaces or more.
    pub fn parse(header: &str) -> Result<Self, TemplateError> {
        let mut parts = header.split_whitespace();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(path), Some(pointer), Some(value), None)
                if path.starts_with('/') && (pointer.is_empty() || pointer.starts_with('/')) =>
            {
                Ok(Self {
                    path: path.to_owned(),
                    pointer: pointer.to_owned(),
                    value: value.to_owned(),
                })
            }
            _ => Err(TemplateError::Await {
                header: header.to_owned(),
            }),
        }
    }

    /// Whether a body shows what is awaited.
    pub fn satisfied_by(&self, body: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        match v.pointer(&self.pointer) {
            Some(Value::String(s)) => *s == self.value,
            Some(other) => serde_json::to_string(other).is_ok_and(|text| text == self.value),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::at(
            DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            "r1",
        )
    }

    fn answers() -> Answers {
        let mut a = Answers::default();
        let mut headers = HeaderMap::new();
        headers.insert("etag", r#"W/"2a-abc""#.parse().unwrap());
        a.insert_parts(
            "send-1",
            headers,
            Bytes::from_static(br#"{"id":"aa","results":[{"id":"b0"},{"id":"b1"}]}"#),
        );
        a
    }

    #[test]
    fn fills_ids_etags_instants_and_the_run_token() {
        let filled = fill(
            "/v1/sms/{{id:send-1}} {{id:send-1#/results/1/id}} {{etag:send-1}} \
             {{time:+2h:iso}} {{time:-1h:+01:00}} {{time:+8d:-05:30}} key-{{run}}",
            &answers(),
            &clock(),
        )
        .unwrap();
        assert_eq!(
            filled,
            r#"/v1/sms/aa b1 W/"2a-abc" 2026-05-01T14:00:00.000Z 2026-05-01T12:00:00+01:00 2026-05-09T06:30:00-05:30 key-r1"#
        );
    }

    #[test]
    fn leaves_other_braces_alone() {
        let text = r#"{"body":"Hi {{name}}, {{id}} {{ id:x }}"}"#;
        assert_eq!(fill(text, &Answers::default(), &clock()).unwrap(), text);
    }

    #[test]
    fn says_what_is_missing() {
        let e = fill("{{id:nope}}", &answers(), &clock()).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = fill("{{id:send-1#/missing}}", &answers(), &clock()).unwrap_err();
        assert!(e.to_string().contains("/missing"), "{e}");
        assert!(fill("{{time:+2x:iso}}", &answers(), &clock()).is_err());
        assert!(fill("{{time:+2h:local}}", &answers(), &clock()).is_err());
    }

    #[test]
    fn lists_references() {
        let refs: Vec<_> =
            references("{{id:a}} {{id:b#/x}} {{etag:c}} {{time:+1h:iso}} {{run}}").collect();
        assert_eq!(refs, ["a", "b", "c"]);
    }

    #[test]
    fn awaits_a_value() {
        let a = Await::parse("/v1/sms/{{id:a}}  /status queued").unwrap();
        assert_eq!(a.pointer, "/status");
        assert!(a.satisfied_by(br#"{"status":"queued"}"#));
        assert!(!a.satisfied_by(br#"{"status":"accepted"}"#));
        assert!(Await::parse("/v1/sms/x /status").is_err());
        assert!(Await::parse("v1 /status queued").is_err());
    }
}
