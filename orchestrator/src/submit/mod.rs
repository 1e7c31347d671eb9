//! The submit path, in the order a request meets it:
//!
//! 1. [`crate::flag`]: `SUBMIT_API_ENABLED` off → `404 submit-api-disabled`.
//! 2. [`crate::correlation`]: the correlation id is taken or minted, echoed.
//! 3. [`SubmitContext`] (this module): authenticate ([`crate::auth`]: JWT ↔
//!    `X-Tenant-Id`), classify shadow traffic ([`crate::shadow`]), parse the
//!    `Idempotency-Key`.
//! 4. [`parse`]: body read (415/413/400), JSON Schema from the contract, then
//!    domain types.
//! 5. [`accept`]: idempotency fast path, then one transaction with the
//!    messages, the idempotency record and the outbox rows ([`crate::store`]),
//!    then `202`.
//! 6. [`crate::relay`] publishes the outbox to NATS after commit.
//!
//! The handlers ([`send`], [`bulk`], [`status`]) are short: each is this list.

pub mod accept;
pub mod bulk;
pub mod event;
pub mod parse;
pub mod send;
pub mod status;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::correlation::CorrelationId;
use crate::domain::{IdempotencyKey, TenantId};
use crate::problem::ApiError;
use crate::state::AppState;

/// The two write routes; their names are the idempotency scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Send,
    Bulk,
}

impl Route {
    pub fn path(self) -> &'static str {
        match self {
            Route::Send => "/v1/sms/send",
            Route::Bulk => "/v1/sms/bulk",
        }
    }

    /// Idempotency scope: shadow traffic never shares keys with live traffic.
    pub fn scope(self, shadow: bool) -> &'static str {
        match (self, shadow) {
            (Route::Send, false) => "send",
            (Route::Bulk, false) => "bulk",
            (Route::Send, true) => "shadow-send",
            (Route::Bulk, true) => "shadow-bulk",
        }
    }
}

/// Who is asking, and how: everything a handler needs from the headers.
/// The verified tenant is the only tenant the rest of the pipeline sees.
#[derive(Debug, Clone)]
pub struct SubmitContext {
    pub tenant: TenantId,
    pub shadow: bool,
    pub idempotency_key: Option<IdempotencyKey>,
    pub correlation_id: String,
}

impl FromRequestParts<AppState> for SubmitContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let principal = app.auth.authenticate(&parts.headers).await.map_err(|e| {
            app.metrics
                .auth_failures
                .with_label_values(&[e.reason()])
                .inc();
            tracing::info!(reason = e.reason(), "authentication failed");
            ApiError::from(e)
        })?;
        tracing::debug!(
            tenant = principal.tenant.as_str(),
            consumer_id = principal.consumer.id.as_deref(),
            consumer_username = principal.consumer.username.as_deref(),
            credential = principal.consumer.credential_identifier.as_deref(),
            "authenticated"
        );
        if let Some(slot) = parts.extensions.get::<crate::correlation::TenantSlot>() {
            let _ = slot.0.set(principal.tenant.as_str().to_owned());
        }
        let shadow = crate::shadow::classify(
            &parts.headers,
            app.config.shadow.secret.as_ref().map(|s| s.expose()),
        )?;
        let idempotency_key = match parts.headers.get_all("idempotency-key").iter().count() {
            0 => None,
            1 => {
                let raw = parts
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        ApiError::IdempotencyKeyInvalid("must be visible ASCII".into())
                    })?;
                Some(
                    IdempotencyKey::parse(raw)
                        .map_err(|e| ApiError::IdempotencyKeyInvalid(e.detail().to_owned()))?,
                )
            }
            _ => {
                return Err(ApiError::IdempotencyKeyInvalid(
                    "send exactly one Idempotency-Key header".into(),
                ));
            }
        };
        let correlation_id = parts
            .extensions
            .get::<CorrelationId>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        Ok(Self {
            tenant: principal.tenant,
            shadow,
            idempotency_key,
            correlation_id,
        })
    }
}
