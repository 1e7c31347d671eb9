//! The submit path, in the order a request meets it (the middleware in
//! front is listed in [`crate::routes`]):
//!
//! 1. [`crate::body`]: the JSON body, read once before routing (413, 415,
//!    400 with `JSON.parse`'s words, 400 on a duplicate key).
//! 2. [`crate::flag`]: `SUBMIT_API_ENABLED` off → the route does not exist.
//! 3. [`Caller`] (this module): authenticate ([`crate::auth`]: JWT, then
//!    `X-Tenant-Id` held to its claim) and classify shadow traffic
//!    ([`crate::shadow`]).
//! 4. [`IdemKey`] (this module): the optional `Idempotency-Key` header.
//! 5. [`parse`]: JSON Schema from the contract, then domain types; every
//!    violation at once.
//! 6. [`accept`]: claim the key ([`accept::KeyClaim`]), write the
//!    messages, the idempotency record and the outbox rows in one
//!    transaction ([`crate::store`]), answer `201`, or replay a stored
//!    answer.
//! 7. [`crate::relay`] publishes the outbox to NATS after commit.
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
    pub fn scope(self, traffic: Traffic) -> &'static str {
        match (self, traffic) {
            (Route::Send, Traffic::Live) => "send",
            (Route::Bulk, Traffic::Live) => "bulk",
            (Route::Send, Traffic::Shadow) => "shadow-send",
            (Route::Bulk, Traffic::Shadow) => "shadow-bulk",
        }
    }
}

/// Live client traffic, or a mirrored copy that must never be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Live,
    Shadow,
}

impl Traffic {
    pub fn is_shadow(self) -> bool {
        self == Traffic::Shadow
    }
}

/// Who is asking: the verified tenant (the only tenant the rest of the
/// pipeline sees), whether this is shadow traffic, and the correlation id.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub traffic: Traffic,
    pub correlation_id: String,
}

impl FromRequestParts<AppState> for Caller {
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
        let traffic = match crate::shadow::classify(
            &parts.headers,
            app.config.shadow.secret.as_ref().map(|s| s.expose()),
        )? {
            true => Traffic::Shadow,
            false => Traffic::Live,
        };
        let correlation_id = parts
            .extensions
            .get::<CorrelationId>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        Ok(Self {
            tenant: principal.tenant,
            traffic,
            correlation_id,
        })
    }
}

/// The `Idempotency-Key` header of a POST: none, or exactly one valid key.
#[derive(Debug, Clone)]
pub struct IdemKey(pub Option<IdempotencyKey>);

impl FromRequestParts<AppState> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let key = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(raw), None) => {
                let raw = raw
                    .to_str()
                    .map_err(|_| ApiError::IdempotencyKeyInvalid("must be visible ASCII".into()))?;
                Some(
                    IdempotencyKey::parse(raw)
                        .map_err(|e| ApiError::IdempotencyKeyInvalid(e.detail().to_owned()))?,
                )
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::IdempotencyKeyInvalid(
                    "send exactly one Idempotency-Key header".into(),
                ));
            }
        };
        if key.is_none() && app.config.idempotency_key_required {
            return Err(ApiError::IdempotencyKeyMissing);
        }
        Ok(Self(key))
    }
}

/// Whether error objects inside a success body (a bulk answer's rejected
/// items) are problem documents: the request's `Accept` decides, as it
/// does for error answers.
#[derive(Debug, Clone, Copy)]
pub struct Envelope {
    pub problem: bool,
}

impl FromRequestParts<AppState> for Envelope {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            problem: crate::problem::negotiated_problem(&parts.headers, app.config.error_format),
        })
    }
}
