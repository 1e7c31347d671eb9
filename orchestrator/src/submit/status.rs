//! `GET /v1/sms/{id}`: the message and its status history. Another tenant's
//! message, a malformed id (a UUID, uppercase hex) and an unknown id all
//! answer the same `404`.

use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Caller;
use super::send::MessageBody;
use crate::domain::MessageId;
use crate::legacy::iso_timestamp;
use crate::problem::ApiError;
use crate::routes::PathId;
use crate::state::AppState;
use crate::store::MessageView;

pub async fn status(
    State(app): State<AppState>,
    caller: Caller,
    Extension(PathId(id)): Extension<PathId>,
) -> Result<Response, ApiError> {
    let id = MessageId::parse(&id).map_err(|_| ApiError::NotFound)?;
    let view = app
        .store
        .get_message(&caller.tenant, caller.traffic.is_shadow(), id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(StatusBody::from(&view)).into_response())
}

/// The `200` body: the contract's `MessageStatus`, fields in the legacy's
/// order (the accepted message's, then `updated_at` and the history),
/// timestamps as `toISOString()` writes them.
#[derive(Debug, Serialize)]
struct StatusBody<'a> {
    #[serde(flatten)]
    message: MessageBody<'a>,
    updated_at: String,
    status_history: Vec<HistoryBody<'a>>,
}

#[derive(Debug, Serialize)]
struct HistoryBody<'a> {
    status: &'a str,
    at: String,
    error_code: Option<&'a str>,
}

impl<'a> From<&'a MessageView> for StatusBody<'a> {
    fn from(v: &'a MessageView) -> Self {
        Self {
            message: MessageBody {
                id: v.id.to_string(),
                status: &v.status,
                to: &v.to,
                from: &v.from,
                encoding: &v.encoding,
                segments: v.segments,
                created_at: iso_timestamp(v.created_at),
                reference: v.reference.as_deref(),
                callback_url: v.callback_url.as_deref(),
                schedule_at: v.schedule_at.map(iso_timestamp),
                validity_period: v.validity_period,
                metadata: v.metadata.as_ref(),
            },
            updated_at: iso_timestamp(v.updated_at),
            status_history: v
                .status_history
                .iter()
                .map(|h| HistoryBody {
                    status: &h.status,
                    at: iso_timestamp(h.at),
                    error_code: h.error_code.as_deref(),
                })
                .collect(),
        }
    }
}
