//! Step 4 of a submit: check the body against the contract's JSON Schema
//! and parse it into domain types, collecting **every** violation: schema
//! and domain rules together, and in a bulk request the envelope's and
//! every item's together, so a request with five mistakes is told about
//! five.
//!
//! The order violations are reported in is part of the contract
//! (`x-legacy.validation`): in each object, properties the schema does not
//! know first (request order), then the known fields in the schema's
//! order; in a bulk request, the envelope (unknown members, `messages`,
//! `defaults`, `atomic`), then each item in index order. Each violation
//! carries the legacy's message for it (one per field in the legacy
//! envelope) and an RFC 6901 pointer for problem documents.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::contract::{Contract, RequestSchema, SchemaIssue, escape_pointer};
use crate::domain::{MessageText, PhoneNumber, SenderId};
use crate::legacy::Surface;
use crate::metrics::Metrics;
use crate::problem::Violation;

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

/// What validation needs besides the body.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub contract: &'a Contract,
    pub metrics: &'a Metrics,
    pub max_segments: u32,
    pub max_items: usize,
    pub now: DateTime<Utc>,
}

impl Rules<'_> {
    fn legacy(&self) -> &Surface {
        self.contract.legacy()
    }

    fn count(&self, rule: &str) {
        self.metrics
            .validation_failures
            .with_label_values(&[rule])
            .inc();
    }
}

/// Where an object sits in the request: its pointer and the legacy's
/// message prefix (`/messages/3` and `messages.3.`; both empty at the top).
#[derive(Debug, Clone, Default)]
struct Scope {
    pointer: String,
    legacy: String,
}

impl Scope {
    fn nested(&self, segment: &str) -> Scope {
        Scope {
            pointer: format!("{}/{}", self.pointer, escape_pointer(segment)),
            legacy: format!("{}{segment}.", self.legacy),
        }
    }
}

/// A bulk request, checked: every item parsed or rejected with its
/// violations, or the whole request refused.
#[derive(Debug)]
pub struct Bulk {
    pub items: Vec<Result<ValidMessage, Vec<Violation>>>,
    pub atomic: bool,
}

/// `POST /v1/sms/send`: the body as one message.
pub fn parse_send(rules: &Rules, body: &Value) -> Result<ValidMessage, Vec<Violation>> {
    parse_message(rules, body, &Scope::default())
}

/// `POST /v1/sms/bulk`: the envelope, then each item merged with
/// `defaults` (shallow; the item's fields win) and checked as a message.
/// `Err` when the request as a whole is refused: an envelope violation,
/// no valid item, or an invalid item in an atomic batch; the list then
/// holds every violation of the envelope and of every item.
pub fn parse_bulk(rules: &Rules, body: &Value) -> Result<Bulk, Vec<Violation>> {
    let Some(request) = body.as_object() else {
        rules.count("type");
        return Err(vec![not_an_object(rules, &Scope::default())]);
    };
    let mut envelope = Vec::new();
    let mut defaults_issues = Vec::new();
    for issue in rules.contract.issues(RequestSchema::Bulk, body) {
        match issue.path.first().map(String::as_str) {
            // Items are checked after the merge with defaults.
            Some("messages") if issue.path.len() > 1 => {}
            Some("defaults") if issue.path.len() > 1 => defaults_issues.push(SchemaIssue {
                path: issue.path[1..].to_vec(),
                ..issue
            }),
            _ => envelope.push(issue),
        }
    }
    let items = request.get("messages").and_then(Value::as_array);
    if items.is_some_and(|i| i.len() > rules.max_items)
        && !envelope
            .iter()
            .any(|i| i.path == ["messages"] && i.keyword == "maxItems")
    {
        envelope.push(SchemaIssue {
            path: vec!["messages".into()],
            keyword: "maxItems".into(),
            detail: format!("at most {} messages per request", rules.max_items),
        });
    }
    let top = Scope::default();
    let mut violations = object_violations(
        rules,
        request,
        &top,
        RequestSchema::Bulk,
        envelope,
        Vec::new(),
    );
    // `defaults` is checked like a message whose fields are all optional
    // (schema and domain rules on the fields it has), and reported where
    // the schema lists it: among the known fields.
    if let Some(defaults_value) = request.get("defaults")
        && let Some(defaults) = defaults_value.as_object()
    {
        let refused: Vec<&str> = defaults_issues
            .iter()
            .filter_map(|i| i.path.first().map(String::as_str))
            .collect();
        let (_, domain) = parse_domain(defaults_value, &refused, rules);
        let nested = object_violations(
            rules,
            defaults,
            &top.nested("defaults"),
            RequestSchema::Send,
            defaults_issues,
            domain,
        );
        let at = violations
            .iter()
            .position(|v| {
                rules
                    .contract
                    .field_order(RequestSchema::Bulk)
                    .iter()
                    .position(|f| v.pointer == format!("/{f}"))
                    > rules
                        .contract
                        .field_order(RequestSchema::Bulk)
                        .iter()
                        .position(|f| f == "defaults")
            })
            .unwrap_or(violations.len());
        violations.splice(at..at, nested);
    }
    let defaults = request.get("defaults").and_then(Value::as_object);
    let atomic = request
        .get("atomic")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let parsed: Vec<Result<ValidMessage, Vec<Violation>>> = items
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let scope = top.nested("messages").nested(&i.to_string());
            parse_message(rules, &merge(defaults, item), &scope)
        })
        .collect();
    let valid = parsed.iter().filter(|p| p.is_ok()).count();
    let refused = !violations.is_empty() || valid == 0 || (atomic && valid < parsed.len());
    if refused {
        violations.extend(parsed.into_iter().filter_map(Result::err).flatten());
        return Err(violations);
    }
    Ok(Bulk {
        items: parsed,
        atomic,
    })
}

/// The item-relative messages of a rejected bulk item (`to must be ...`,
/// not `messages.3.to must be ...`), for its entry in `results`.
pub fn item_messages(index: usize, violations: &[Violation]) -> Vec<String> {
    let prefix = format!("messages.{index}.");
    let relative: Vec<Violation> = violations
        .iter()
        .map(|v| Violation {
            message: v
                .message
                .strip_prefix(&prefix)
                .unwrap_or(&v.message)
                .to_owned(),
            ..v.clone()
        })
        .collect();
    crate::problem::legacy_messages(&relative)
}

fn merge(defaults: Option<&Map<String, Value>>, item: &Value) -> Value {
    match (defaults, item.as_object()) {
        (Some(d), Some(i)) => {
            let mut merged = d.clone();
            merged.extend(i.iter().map(|(k, v)| (k.clone(), v.clone())));
            Value::Object(merged)
        }
        _ => item.clone(),
    }
}

fn not_an_object(rules: &Rules, scope: &Scope) -> Violation {
    Violation::new(
        scope.pointer.clone(),
        "must be a JSON object",
        rules.legacy().not_an_object(&scope.legacy),
    )
}

/// Schema, then domain, for one message object.
fn parse_message(
    rules: &Rules,
    value: &Value,
    scope: &Scope,
) -> Result<ValidMessage, Vec<Violation>> {
    let Some(object) = value.as_object() else {
        rules.count("type");
        return Err(vec![not_an_object(rules, scope)]);
    };
    let issues = rules.contract.issues(RequestSchema::Send, value);
    for issue in &issues {
        rules.count(&issue.keyword);
    }
    // Domain rules run on every field the schema did not already refuse.
    let refused: Vec<&str> = issues
        .iter()
        .filter_map(|i| i.path.first().map(String::as_str))
        .collect();
    let (message, domain) = parse_domain(value, &refused, rules);
    for d in &domain {
        rules.count(&format!("domain:{}", d.path[0]));
    }
    let violations = object_violations(rules, object, scope, RequestSchema::Send, issues, domain);
    match message {
        Some(m) if violations.is_empty() => Ok(m),
        _ => Err(violations),
    }
}

/// One object's violations in the contract's order: unknown members in
/// request order, then the known fields in schema order (each field's
/// schema issues, then its domain issues).
fn object_violations(
    rules: &Rules,
    object: &Map<String, Value>,
    scope: &Scope,
    schema: RequestSchema,
    schema_issues: Vec<SchemaIssue>,
    domain_issues: Vec<SchemaIssue>,
) -> Vec<Violation> {
    let order = rules.contract.field_order(schema);
    let rank = |issue: &SchemaIssue| -> (usize, usize) {
        let Some(name) = issue.path.first() else {
            return (0, 0);
        };
        match order.iter().position(|f| f == name) {
            Some(i) => (2, i),
            // Unknown member: by its position in the request.
            None => (1, object.keys().position(|k| k == name).unwrap_or(0)),
        }
    };
    let mut all: Vec<SchemaIssue> = schema_issues.into_iter().chain(domain_issues).collect();
    all.sort_by_key(rank); // stable: schema before domain within a field
    all.into_iter()
        .map(|issue| {
            let pointer = issue.pointer(&scope.pointer);
            let message = match issue.path.first() {
                None => rules.legacy().not_an_object(&scope.legacy),
                Some(name) if !order.contains(name) => {
                    rules.legacy().unknown_property(&scope.legacy, name)
                }
                Some(name) => {
                    rules
                        .legacy()
                        .field(&scope.legacy, name, &issue.keyword, rules.max_items)
                }
            };
            Violation::new(pointer, issue.detail, message)
        })
        .collect()
}

/// The rules JSON Schema cannot say, for the fields it did not refuse.
/// `Some` message only when every required field parsed.
fn parse_domain(
    value: &Value,
    refused: &[&str],
    rules: &Rules,
) -> (Option<ValidMessage>, Vec<SchemaIssue>) {
    let text = |name: &str| value.get(name).and_then(Value::as_str);
    let open = |name: &str| !refused.contains(&name);
    let mut issues = Vec::new();
    let mut field = |name: &str, detail: String| {
        issues.push(SchemaIssue {
            path: vec![name.to_owned()],
            keyword: "domain".to_owned(),
            detail,
        });
    };
    let mut check = |name: &str, parse: &dyn Fn(&str) -> Result<(), String>| {
        if let Some(s) = text(name).filter(|_| open(name))
            && let Err(detail) = parse(s)
        {
            field(name, detail);
        }
    };
    check("to", &|s| {
        PhoneNumber::parse(s)
            .map(drop)
            .map_err(|e| e.detail().to_owned())
    });
    check("from", &|s| {
        SenderId::parse(s)
            .map(drop)
            .map_err(|e| e.detail().to_owned())
    });
    check("body", &|s| {
        MessageText::parse(s, rules.max_segments)
            .map(drop)
            .map_err(|e| e.detail().to_owned())
    });
    let now = rules.now;
    check("schedule_at", &|s| match DateTime::parse_from_rfc3339(s) {
        Err(_) => Err("must be an RFC 3339 date-time with offset".into()),
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            if t <= now {
                Err("must be in the future".into())
            } else if t > now + MAX_SCHEDULE_AHEAD {
                Err("must be at most 7 days ahead".into())
            } else {
                Ok(())
            }
        }
    });
    if !issues.is_empty() || !refused.is_empty() {
        return (None, issues);
    }
    let parsed = (|| {
        Some(ValidMessage {
            to: PhoneNumber::parse(text("to")?).ok()?,
            from: SenderId::parse(text("from")?).ok()?,
            body: MessageText::parse(text("body")?, rules.max_segments).ok()?,
            reference: text("reference").map(str::to_owned),
            callback_url: text("callback_url").map(str::to_owned),
            schedule_at: text("schedule_at")
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc)),
            validity_period: value
                .get("validity_period")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok()),
            metadata: value.get("metadata").and_then(Value::as_object).cloned(),
        })
    })();
    (parsed, issues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_rules<T>(f: impl FnOnce(&Rules) -> T) -> T {
        let contract = Contract::embedded().unwrap();
        let metrics = Metrics::new(None, crate::metrics::system_clock());
        f(&Rules {
            contract: &contract,
            metrics: &metrics,
            max_segments: 10,
            max_items: 1000,
            now: Utc::now(),
        })
    }

    fn send(v: Value) -> Result<ValidMessage, Vec<Violation>> {
        with_rules(|r| parse_send(r, &v))
    }

    fn bulk(v: Value) -> Result<Bulk, Vec<Violation>> {
        with_rules(|r| parse_bulk(r, &v))
    }

    fn pointers(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|v| v.pointer.as_str()).collect()
    }

    fn messages(v: &[Violation]) -> Vec<String> {
        crate::problem::legacy_messages(v)
    }

    #[test]
    fn schema_and_domain_violations_are_reported_together() {
        // Defect: `from` (a domain rule) used to be hidden by `to` (a schema rule).
        let v = send(json!({"to": "447700900123", "from": "12", "body": "x"})).unwrap_err();
        assert_eq!(pointers(&v), vec!["/to", "/from"]);
        assert_eq!(
            messages(&v),
            vec![
                "to must be a valid phone number",
                "from must be a valid sender id"
            ]
        );
    }

    #[test]
    fn unknown_members_come_first_then_fields_in_contract_order() {
        let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let v = send(json!({
            "schedule_at": past, "zeta": 1, "body": "", "alpha": 2, "reference": 5
        }))
        .unwrap_err();
        assert_eq!(
            messages(&v),
            vec![
                "property zeta should not exist",
                "property alpha should not exist",
                "to must be a valid phone number",
                "from must be a valid sender id",
                "body must be a non-empty text within the segment limit",
                "reference must be a string",
                "schedule_at must be a date-time in the future, at most 7 days ahead",
            ]
        );
    }

    #[test]
    fn domain_rules_report_every_field_at_once() {
        let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let v = send(json!({
            "to": "+9991234", "from": "12", "body": "x".repeat(1600), "schedule_at": past
        }))
        .unwrap_err();
        // +999… passes E.164 syntax; "12" is no sender kind; 1600 chars is 11 segments.
        assert_eq!(pointers(&v), vec!["/from", "/body", "/schedule_at"]);
    }

    #[test]
    fn a_valid_message_keeps_its_options() {
        let soon = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let m = send(json!({
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

    #[test]
    fn an_envelope_error_does_not_hide_the_items_errors() {
        // Defect: `"atomic": "yes"` used to hide every item's errors.
        let v = bulk(json!({
            "atomic": "yes",
            "messages": [{"to": "+447700900123", "from": "Acme", "body": "ok"}, {"to": "bad"}]
        }))
        .unwrap_err();
        assert_eq!(
            messages(&v),
            vec![
                "atomic must be a boolean value",
                "messages.1.to must be a valid phone number",
                "messages.1.from must be a valid sender id",
                "messages.1.body must be a non-empty text within the segment limit",
            ]
        );
        assert_eq!(v[1].pointer, "/messages/1/to");
    }

    #[test]
    fn defaults_are_reported_among_the_envelope_fields() {
        let v = bulk(json!({
            "extra": true,
            "atomic": 1,
            "defaults": {"to": "nope", "colour": "red"},
            "messages": []
        }))
        .unwrap_err();
        assert_eq!(
            messages(&v),
            vec![
                "property extra should not exist",
                "messages must contain at least 1 elements",
                "defaults.property colour should not exist",
                "defaults.to must be a valid phone number",
                "atomic must be a boolean value",
            ]
        );
    }

    #[test]
    fn defaults_get_the_domain_rules_too() {
        let v = bulk(json!({
            "defaults": {"from": "12"},
            "messages": [{"to": "+447700900123", "body": "x"}]
        }))
        .unwrap_err();
        assert_eq!(
            messages(&v),
            vec![
                "defaults.from must be a valid sender id",
                "messages.0.from must be a valid sender id"
            ]
        );
    }

    #[test]
    fn a_partial_bulk_keeps_valid_items_and_explains_the_others() {
        let b = bulk(json!({
            "defaults": {"from": "Acme", "body": "hi"},
            "messages": [{"to": "+447700900001"}, {"to": "x", "colour": 1}, 7]
        }))
        .unwrap();
        assert!(b.items[0].is_ok());
        let second = b.items[1].as_ref().unwrap_err();
        assert_eq!(
            item_messages(1, second),
            vec![
                "property colour should not exist",
                "to must be a valid phone number"
            ]
        );
        let third = b.items[2].as_ref().unwrap_err();
        assert_eq!(
            item_messages(2, third),
            vec!["messages.2 must be an object"]
        );
    }

    #[test]
    fn too_many_items_uses_the_configured_limit() {
        let contract = Contract::embedded().unwrap();
        let metrics = Metrics::new(None, crate::metrics::system_clock());
        let rules = Rules {
            contract: &contract,
            metrics: &metrics,
            max_segments: 10,
            max_items: 2,
            now: Utc::now(),
        };
        let item = json!({"to": "+447700900001", "from": "Acme", "body": "x"});
        let v = parse_bulk(&rules, &json!({"messages": [item, item, item]})).unwrap_err();
        assert_eq!(
            messages(&v),
            vec!["messages must contain no more than 2 elements"]
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_violation() {
        let v = send(json!([1, 2])).unwrap_err();
        assert_eq!(messages(&v), vec!["body must be an object"]);
        let v = bulk(json!("x")).unwrap_err();
        assert_eq!(messages(&v), vec!["body must be an object"]);
    }
}
