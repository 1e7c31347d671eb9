//! `POST /v1/sms/send`: one message → `201` with the message and
//! `Location: /v1/sms/{id}`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::accept::{Accepted, Prepared, accept, stored_json};
use super::parse::{Rules, ValidMessage, parse_send};
use super::{Caller, IdemKey, Route};
use crate::body::JsonBody;
use crate::domain::{MessageId, process_ids};
use crate::legacy::iso_timestamp;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::NewMessage;

pub async fn send(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let message = parse_send(&rules(&app), &body).map_err(ApiError::Validation)?;
    let mut written = None;
    let accepted = accept(&app, &caller, key.as_ref(), Route::Send, &body, |now| {
        let m = new_message(&caller, message, now);
        let response = stored_json(&MessageBody::from(&m), Some(location(m.id)));
        written = Some(AcceptedLog::from(&m));
        Prepared {
            messages: vec![m],
            response,
        }
    })
    .await?;
    // `prepare` also runs when a concurrent twin's key wins the race; only
    // a fresh answer stands for a message this request wrote.
    if let (Some(m), Accepted::Fresh(_)) = (written, &accepted) {
        m.log(&caller);
    }
    Ok(accepted.into_response())
}

/// The validation rules of this deployment, at this instant.
pub fn rules(app: &AppState) -> Rules<'_> {
    Rules {
        contract: &app.contract,
        metrics: &app.metrics,
        max_segments: app.config.max_segments,
        max_items: app.config.bulk_max_items,
        now: Utc::now(),
    }
}

/// What the "message accepted" log line may say about a message: the
/// recipient only masked, never the body (it is the customer's content)
/// and nothing from the credential.
#[derive(Debug)]
struct AcceptedLog {
    id: MessageId,
    to: String,
    encoding: &'static str,
    segments: u32,
}

impl From<&NewMessage> for AcceptedLog {
    fn from(m: &NewMessage) -> Self {
        Self {
            id: m.id,
            to: m.to.masked(),
            encoding: m.body.encoding().as_str(),
            segments: m.body.segments(),
        }
    }
}

impl AcceptedLog {
    fn log(&self, caller: &Caller) {
        tracing::info!(
            message_id = %self.id,
            to = self.to.as_str(),
            encoding = self.encoding,
            segments = self.segments,
            tenant = caller.tenant.as_str(),
            shadow = caller.traffic.is_shadow(),
            correlation_id = caller.correlation_id.as_str(),
            "message accepted"
        );
    }
}

/// A fresh id (the legacy's ObjectId layout, stamped with `now`'s second)
/// and the request's context around a valid message.
pub fn new_message(caller: &Caller, m: ValidMessage, now: DateTime<Utc>) -> NewMessage {
    NewMessage {
        id: process_ids().next(now),
        tenant: caller.tenant.clone(),
        shadow: caller.traffic.is_shadow(),
        to: m.to,
        from: m.from,
        body: m.body,
        reference: m.reference,
        callback_url: m.callback_url,
        schedule_at: m.schedule_at,
        validity_period: m.validity_period,
        metadata: m.metadata,
        correlation_id: caller.correlation_id.clone(),
        created_at: now,
    }
}

pub fn location(id: MessageId) -> String {
    format!("/v1/sms/{id}")
}

/// The `201` body: the contract's `Message`, fields in the legacy's order
/// (also the first fields of a `GET`'s `MessageStatus`).
#[derive(Debug, Serialize)]
pub struct MessageBody<'a> {
    pub(super) id: String,
    pub(super) status: &'a str,
    pub(super) to: &'a str,
    pub(super) from: &'a str,
    pub(super) encoding: &'a str,
    pub(super) segments: u32,
    pub(super) created_at: String,
    pub(super) reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) callback_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) schedule_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) validity_period: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) metadata: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl<'a> From<&'a NewMessage> for MessageBody<'a> {
    fn from(m: &'a NewMessage) -> Self {
        Self {
            id: m.id.to_string(),
            status: "accepted",
            to: m.to.as_str(),
            from: m.from.as_str(),
            encoding: m.body.encoding().as_str(),
            segments: m.body.segments(),
            created_at: iso_timestamp(m.created_at),
            reference: m.reference.as_deref(),
            callback_url: m.callback_url.as_deref(),
            schedule_at: m.schedule_at.map(iso_timestamp),
            validity_period: m.validity_period,
            metadata: m.metadata.as_ref(),
        }
    }
}
