//! `POST /v1/sms/send`: one message.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::accept::{Prepared, accept, stored_json};
use super::parse::{ValidMessage, parse_message, read_json};
use super::{Route, SubmitContext};
use crate::domain::{MessageId, process_ids};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::NewMessage;

pub async fn send(
    State(app): State<AppState>,
    ctx: SubmitContext,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value = read_json(&headers, body, app.config.send_body_limit).await?;
    let message = parse_message(
        &app.contract,
        &app.metrics,
        &value,
        "",
        app.config.max_segments,
        Utc::now(),
    )
    .map_err(ApiError::Validation)?;
    let mut written = None;
    let response = accept(&app, &ctx, Route::Send, &value, |now| {
        let m = new_message(&ctx, message, now);
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
    if let Some(m) = written
        && !response.headers().contains_key("idempotent-replayed")
    {
        m.log(&ctx);
    }
    Ok(response)
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
    fn log(&self, ctx: &SubmitContext) {
        tracing::info!(
            message_id = %self.id,
            to = self.to.as_str(),
            encoding = self.encoding,
            segments = self.segments,
            tenant = ctx.tenant.as_str(),
            shadow = ctx.shadow,
            correlation_id = ctx.correlation_id.as_str(),
            "message accepted"
        );
    }
}

/// A fresh, time-ordered id and the request's context around a valid message.
pub fn new_message(ctx: &SubmitContext, m: ValidMessage, now: DateTime<Utc>) -> NewMessage {
    NewMessage {
        id: process_ids().next(now),
        tenant: ctx.tenant.clone(),
        shadow: ctx.shadow,
        to: m.to,
        from: m.from,
        body: m.body,
        reference: m.reference,
        callback_url: m.callback_url,
        schedule_at: m.schedule_at,
        validity_period: m.validity_period,
        metadata: m.metadata,
        correlation_id: ctx.correlation_id.clone(),
        created_at: now,
    }
}

pub fn location(id: MessageId) -> String {
    format!("/v1/sms/{id}")
}

/// The `202` body: the contract's `Message`.
#[derive(Debug, Serialize)]
pub struct MessageBody<'a> {
    id: String,
    status: &'static str,
    to: &'a str,
    from: &'a str,
    encoding: &'static str,
    segments: u32,
    created_at: String,
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validity_period: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a serde_json::Map<String, serde_json::Value>>,
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
            created_at: m.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            reference: m.reference.as_deref(),
            callback_url: m.callback_url.as_deref(),
            schedule_at: m
                .schedule_at
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            validity_period: m.validity_period,
            metadata: m.metadata.as_ref(),
        }
    }
}
