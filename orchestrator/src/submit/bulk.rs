//! `POST /v1/sms/bulk`: up to `BULK_MAX_ITEMS` messages, `defaults` merged
//! into each (shallow: a field in the item wins). Each item is checked on
//! its own ([`super::parse::parse_bulk`]); with `"atomic": true` one
//! invalid item rejects the batch. The valid items are accepted in one
//! transaction under one Idempotency-Key, whose replay returns the same
//! per-item results. A batch with no valid item is a `400` (nothing would
//! be accepted).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::accept::{Prepared, accept, stored_json};
use super::parse::{item_messages, parse_bulk};
use super::send::{new_message, rules};
use super::{Caller, Envelope, IdemKey, Route};
use crate::body::JsonBody;
use crate::legacy::Vars;
use crate::problem::ApiError;
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
        error: Value,
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
    caller: Caller,
    IdemKey(key): IdemKey,
    envelope: Envelope,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let parsed = parse_bulk(&rules(&app), &body).map_err(ApiError::Validation)?;
    let accepted = accept(&app, &caller, key.as_ref(), Route::Bulk, &body, |now| {
        let mut messages = Vec::with_capacity(parsed.items.len());
        let mut results = Vec::with_capacity(parsed.items.len());
        for (index, p) in parsed.items.into_iter().enumerate() {
            match p {
                Ok(m) => {
                    let m = new_message(&caller, m, now);
                    results.push(ItemResult::Accepted {
                        index,
                        id: m.id.to_string(),
                        status: "accepted",
                    });
                    messages.push(m);
                }
                Err(violations) => results.push(ItemResult::Rejected {
                    index,
                    error: item_error(&app, envelope, index, violations),
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
    .await?;
    Ok(accepted.into_response())
}

/// A rejected item's `error`: the legacy's validation body with the
/// item's own messages, or a problem document when the client asked for
/// those.
fn item_error(
    app: &AppState,
    envelope: Envelope,
    index: usize,
    violations: Vec<crate::problem::Violation>,
) -> Value {
    if envelope.problem {
        let problem = ApiError::Validation(violations).problem(StatusCode::BAD_REQUEST);
        return serde_json::to_value(problem).unwrap_or_default();
    }
    let body = app
        .contract
        .legacy()
        .error("validation-failed")
        .render(&Vars {
            messages: item_messages(index, &violations),
            ..Vars::default()
        });
    serde_json::from_slice(&body).unwrap_or_default()
}
