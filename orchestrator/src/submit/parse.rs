//! Steps 3–4 of a submit: read the body, check it against the contract's
//! JSON Schema, then parse it into domain types. Every violation is
//! collected, so a request with three errors is told about all three.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::contract::{Contract, RequestSchema};
use crate::domain::{MessageText, PhoneNumber, SenderId};
use crate::metrics::Metrics;
use crate::problem::{ApiError, Violation};

/// How far ahead `schedule_at` may be.
pub const MAX_SCHEDULE_AHEAD: chrono::Duration = chrono::Duration::days(7);

/// One message as the client asked for it, every field parsed.
#[derive(Debug, Clone)]
pub struct ValidMessage {
    pub to: PhoneNumber,
    pub from: SenderId,
    pub body: MessageText,
    pub reference: Option<String>,
    pub callback_url: Option<String>,
    pub schedule_at: Option<DateTime<Utc>>,
    pub validity_period: Option<u32>,
    pub metadata: Option<Map<String, Value>>,
}

/// Reads a JSON body: `415` unless `application/json`, `413` over `limit`,
/// `400` with line and column when it does not parse.
pub async fn read_json(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == "application/json");
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over_limit =
            std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                e.source()
            })
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if over_limit {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::MalformedJson("the request body could not be read".into())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::MalformedJson(format!(
            "invalid JSON at line {} column {}: {}",
            e.line(),
            e.column(),
            match e.classify() {
                serde_json::error::Category::Eof => "unexpected end of input",
                serde_json::error::Category::Syntax => "syntax error",
                _ => "not valid JSON",
            }
        ))
    })
}

/// Schema, then domain: one message at `prefix` (`""` for send,
/// `/messages/3` for a bulk item).
pub fn parse_message(
    contract: &Contract,
    metrics: &Metrics,
    value: &Value,
    prefix: &str,
    max_segments: u32,
    now: DateTime<Utc>,
) -> Result<ValidMessage, Vec<Violation>> {
    let violations = contract.violations(RequestSchema::Send, value, prefix);
    if !violations.is_empty() {
        for keyword in contract.violated_keywords(RequestSchema::Send, value) {
            metrics
                .validation_failures
                .with_label_values(&[keyword.as_str()])
                .inc();
        }
        return Err(violations);
    }
    parse_domain(value, prefix, max_segments, now).inspect_err(|violations| {
        for v in violations {
            let rule = domain_rule(&v.pointer[prefix.len()..]);
            metrics.validation_failures.with_label_values(&[rule]).inc();
        }
    })
}

/// Metric label of a domain rule, by field.
fn domain_rule(pointer: &str) -> &'static str {
    match pointer {
        "/to" => "domain:to",
        "/from" => "domain:from",
        "/body" => "domain:body",
        "/schedule_at" => "domain:schedule_at",
        _ => "domain:other",
    }
}

/// The rules JSON Schema cannot say. The schema already guaranteed types
/// and presence, so missing fields here are impossible, not ignored.
fn parse_domain(
    value: &Value,
    prefix: &str,
    max_segments: u32,
    now: DateTime<Utc>,
) -> Result<ValidMessage, Vec<Violation>> {
    let text = |name: &str| value.get(name).and_then(Value::as_str);
    let mut violations = Vec::new();
    let mut field = |name: &str, detail: String| {
        violations.push(Violation::new(format!("{prefix}/{name}"), detail));
    };
    let to = PhoneNumber::parse(text("to").unwrap_or_default())
        .map_err(|e| field("to", e.detail().to_owned()))
        .ok();
    let from = SenderId::parse(text("from").unwrap_or_default())
        .map_err(|e| field("from", e.detail().to_owned()))
        .ok();
    let body = MessageText::parse(text("body").unwrap_or_default(), max_segments)
        .map_err(|e| field("body", e.detail().to_owned()))
        .ok();
    let schedule_at = match text("schedule_at") {
        None => None,
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Err(_) => {
                field(
                    "schedule_at",
                    "must be an RFC 3339 date-time with offset".into(),
                );
                None
            }
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                if t <= now {
                    field("schedule_at", "must be in the future".into());
                } else if t > now + MAX_SCHEDULE_AHEAD {
                    field("schedule_at", "must be at most 7 days ahead".into());
                }
                Some(t)
            }
        },
    };
    match (to, from, body) {
        (Some(to), Some(from), Some(body)) if violations.is_empty() => Ok(ValidMessage {
            to,
            from,
            body,
            reference: text("reference").map(str::to_owned),
            callback_url: text("callback_url").map(str::to_owned),
            schedule_at,
            validity_period: value
                .get("validity_period")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok()),
            metadata: value.get("metadata").and_then(Value::as_object).cloned(),
        }),
        _ => Err(violations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ValidMessage, Vec<Violation>> {
        let contract = Contract::embedded().unwrap();
        let metrics = Metrics::new(None, crate::metrics::system_clock());
        parse_message(&contract, &metrics, &v, "", 10, Utc::now())
    }

    fn pointers(r: Result<ValidMessage, Vec<Violation>>) -> Vec<String> {
        let mut p: Vec<String> = r.unwrap_err().into_iter().map(|v| v.pointer).collect();
        p.sort();
        p
    }

    #[test]
    fn domain_rules_report_every_field_at_once() {
        let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let r = parse(json!({
            "to": "+9991234", "from": "12", "body": "x".repeat(1600), "schedule_at": past
        }));
        // +999… passes E.164 syntax; "12" is no sender kind; 1600 chars is 11 segments.
        assert_eq!(pointers(r), vec!["/body", "/from", "/schedule_at"]);
    }

    #[test]
    fn schedule_more_than_a_week_ahead_is_rejected() {
        let later = (Utc::now() + chrono::Duration::days(8)).to_rfc3339();
        let r = parse(
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "schedule_at": later}),
        );
        assert_eq!(pointers(r), vec!["/schedule_at"]);
    }

    #[test]
    fn a_valid_message_keeps_its_options() {
        let soon = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let m = parse(json!({
            "to": "+447700900123", "from": "Acme", "body": "héllo", "reference": "r-1",
            "callback_url": "https://example.com/cb", "schedule_at": soon,
            "validity_period": 3600, "metadata": {"k": "v"}
        }))
        .unwrap();
        assert_eq!(m.body.encoding().as_str(), "GSM-7");
        assert_eq!(m.reference.as_deref(), Some("r-1"));
        assert_eq!(m.validity_period, Some(3600));
        assert!(m.schedule_at.is_some());
    }
}
