//! `POST /v1/sms/bulk`: up to `BULK_MAX_ITEMS` messages, `defaults` merged
//! into each (shallow: a field in the item wins). Each item is checked on
//! its own; with `"atomic": true` one invalid item rejects the batch.
//! The valid items are accepted in one transaction under one
//! Idempotency-Key, whose replay returns the same per-item results. A batch
//! with no valid item is a `400` (nothing would be accepted).

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, Value};

use super::accept::{Prepared, accept, stored_json};
use super::parse::{ValidMessage, parse_message, read_json};
use super::send::new_message;
use super::{Route, SubmitContext};
use crate::contract::RequestSchema;
use crate::problem::{ApiError, Problem, Violation};
use crate::state::AppState;

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ItemResult {
    Accepted {
        index: usize,
        id: String,
        status: &'static str,
    },
    Rejected {
        index: usize,
        error: Problem,
    },
}

#[derive(Debug, Serialize)]
struct BulkBody {
    accepted: usize,
    rejected: usize,
    results: Vec<ItemResult>,
}

pub async fn bulk(
    State(app): State<AppState>,
    ctx: SubmitContext,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value = read_json(&headers, body, app.config.bulk_body_limit).await?;
    let envelope: Vec<Violation> = app
        .contract
        .violations(RequestSchema::Bulk, &value, "")
        .into_iter()
        .filter(|v| !is_item_pointer(&v.pointer))
        .collect();
    if !envelope.is_empty() {
        return Err(ApiError::Validation(envelope));
    }
    let items = value
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if items.len() > app.config.bulk_max_items {
        return Err(ApiError::Validation(vec![Violation::new(
            "/messages",
            format!("at most {} messages per request", app.config.bulk_max_items),
        )]));
    }
    let defaults = value.get("defaults").and_then(Value::as_object);
    let atomic = value
        .get("atomic")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let now = Utc::now();
    let parsed: Vec<Result<ValidMessage, Vec<Violation>>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_message(
                &app.contract,
                &app.metrics,
                &merge(defaults, item),
                &format!("/messages/{i}"),
                app.config.max_segments,
                now,
            )
        })
        .collect();
    let valid = parsed.iter().filter(|p| p.is_ok()).count();
    if valid == 0 || (atomic && valid < parsed.len()) {
        let all = parsed
            .into_iter()
            .filter_map(Result::err)
            .flatten()
            .collect();
        return Err(ApiError::Validation(all));
    }
    accept(&app, &ctx, Route::Bulk, &value, |now| {
        let mut messages = Vec::with_capacity(valid);
        let mut results = Vec::with_capacity(parsed.len());
        for (index, p) in parsed.into_iter().enumerate() {
            match p {
                Ok(m) => {
                    let m = new_message(&ctx, m, now);
                    results.push(ItemResult::Accepted {
                        index,
                        id: m.id.to_string(),
                        status: "accepted",
                    });
                    messages.push(m);
                }
                Err(violations) => results.push(ItemResult::Rejected {
                    index,
                    error: ApiError::Validation(violations).problem(),
                }),
            }
        }
        let body = BulkBody {
            accepted: messages.len(),
            rejected: results.len() - messages.len(),
            results,
        };
        Prepared {
            response: stored_json(&body, None),
            messages,
        }
    })
    .await
}

/// `/messages/3` or `/messages/3/to`: an item's own violation, re-checked
/// after `defaults` are merged in.
fn is_item_pointer(pointer: &str) -> bool {
    pointer
        .strip_prefix("/messages/")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn item_pointers_are_told_from_envelope_pointers() {
        assert!(is_item_pointer("/messages/0"));
        assert!(is_item_pointer("/messages/12/to"));
        assert!(!is_item_pointer("/messages"));
        assert!(!is_item_pointer("/defaults/to"));
        assert!(!is_item_pointer("/messages/x/to"));
    }

    #[test]
    fn item_fields_win_over_defaults() {
        let d = json!({"from": "Acme", "body": "default"});
        let merged = merge(
            d.as_object(),
            &json!({"to": "+447700900123", "body": "mine"}),
        );
        assert_eq!(
            merged,
            json!({"from": "Acme", "body": "mine", "to": "+447700900123"})
        );
    }
}
