//! Step 6 of a submit: claim the Idempotency-Key, write everything in one
//! transaction, answer `201` (or replay the stored answer), wake the relay.
//! Shared by send and bulk.
//!
//! [`accept`] answers two questions, in order:
//!
//! 1. **Has this request been answered already?** A [`KeyClaim`] asks the
//!    fast path ([`crate::idempotency`]): a completed record with the same
//!    fingerprint is replayed; a different fingerprint is `422`; an
//!    in-flight marker sends it to the database, which decides.
//! 2. **Can it be stored?** The key row is inserted in the same
//!    transaction as the messages. A concurrent twin waits on it, then
//!    replays it.
//!
//! The outcome is [`Accepted::Fresh`] or [`Accepted::Replayed`]: a replay
//! is the stored answer byte for byte, with nothing added (the legacy sent
//! no `Idempotent-Replayed` header). A validation failure never gets here,
//! so it stores nothing; a failed transaction stores nothing and releases
//! the fast-path marker.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::{Caller, Route};
use crate::domain::IdempotencyKey;
use crate::idempotency::{Begin, CachedEntry, fingerprint};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::store::{
    AcceptOutcome, Acceptance, IdempotencyRecord, NewMessage, OutboxEvent, StoredResponse,
};

/// Seconds a client is told to wait when its key is in flight.
const IN_FLIGHT_RETRY_AFTER: u64 = 1;

/// What the handler hands over: the rows to write and the answer to give.
#[derive(Debug)]
pub struct Prepared {
    pub messages: Vec<NewMessage>,
    pub response: StoredResponse,
}

/// How a request was answered.
#[derive(Debug)]
pub enum Accepted {
    /// Processed now: its messages were written by this request.
    Fresh(StoredResponse),
    /// An earlier request with the same key and body was answered this way.
    Replayed(StoredResponse),
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let (stored, replayed) = match self {
            Accepted::Fresh(s) => (s, false),
            Accepted::Replayed(s) => (s, true),
        };
        let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::CREATED);
        let mut response = (status, stored.body).into_response();
        let headers = response.headers_mut();
        for (name, value) in &stored.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.insert(n, v);
            }
        }
        if replayed {
            response
                .extensions_mut()
                .insert(crate::correlation::Replayed);
        }
        response
    }
}

/// This request's hold on its Idempotency-Key: (tenant, scope, key) and
/// the body's fingerprint, in the fast path and in the database.
#[derive(Debug)]
pub struct KeyClaim<'a> {
    app: &'a AppState,
    tenant: &'a str,
    scope: &'static str,
    key: &'a str,
    cache_key: String,
    fingerprint: String,
}

impl<'a> KeyClaim<'a> {
    pub fn new(
        app: &'a AppState,
        caller: &'a Caller,
        route: Route,
        key: &'a IdempotencyKey,
        body: &serde_json::Value,
    ) -> Self {
        let scope = route.scope(caller.traffic);
        Self {
            app,
            tenant: caller.tenant.as_str(),
            scope,
            key: key.as_str(),
            cache_key: app.cache.key(caller.tenant.as_str(), scope, key.as_str()),
            fingerprint: fingerprint("POST", route.path(), body),
        }
    }

    /// Takes the key on the fast path. `Ok(Some)`: the request was answered
    /// before (a replay); `Ok(None)`: go on and process it.
    pub async fn begin(&self) -> Result<Option<Accepted>, ApiError> {
        let lock_ttl = self.app.config.idempotency_lock_ttl;
        match self
            .app
            .cache
            .begin(&self.cache_key, &self.fingerprint, lock_ttl)
            .await
        {
            Begin::Acquired | Begin::Skipped => Ok(None),
            Begin::Existing(entry) if entry.fingerprint() != self.fingerprint => {
                Err(mismatch(self.app))
            }
            Begin::Existing(CachedEntry::Completed(record)) => {
                Ok(Some(replay(self.app, record.response)))
            }
            Begin::Existing(CachedEntry::InFlight { .. }) => {
                // The marker may be stale (its owner died); the database decides.
                match self
                    .app
                    .store
                    .find_idempotency(self.tenant, self.scope, self.key)
                    .await?
                {
                    Some(record) => self.settle(record).map(Some),
                    None => Err(in_flight(self.app)),
                }
            }
        }
    }

    /// The record to store with the answer.
    fn record(&self, response: &StoredResponse, now: DateTime<Utc>) -> IdempotencyRecord {
        IdempotencyRecord {
            tenant: self.tenant.to_owned(),
            scope: self.scope.to_owned(),
            key: self.key.to_owned(),
            fingerprint: self.fingerprint.clone(),
            response: response.clone(),
            created_at: now,
            expires_at: now
                + chrono::Duration::from_std(self.app.config.idempotency_ttl)
                    .unwrap_or(chrono::Duration::hours(48)),
        }
    }

    /// A record found for this key: the same body replays it, another is `422`.
    fn settle(&self, existing: IdempotencyRecord) -> Result<Accepted, ApiError> {
        if existing.fingerprint == self.fingerprint {
            Ok(replay(self.app, existing.response))
        } else {
            Err(mismatch(self.app))
        }
    }

    /// After the commit: the fast path learns the answer.
    pub async fn complete(&self, record: &IdempotencyRecord) {
        self.app.cache.complete(&self.cache_key, record).await;
    }

    /// Nothing was stored: the fast-path marker goes.
    pub async fn release(&self) {
        self.app
            .cache
            .release(&self.cache_key, &self.fingerprint)
            .await;
    }
}

/// Runs the idempotency protocol and the write for one request. `prepare`
/// builds the rows and the response body at time `now` (ids, timestamps);
/// it runs only when the request will really be processed.
pub async fn accept(
    app: &AppState,
    caller: &Caller,
    key: Option<&IdempotencyKey>,
    route: Route,
    request_body: &serde_json::Value,
    prepare: impl FnOnce(DateTime<Utc>) -> Prepared,
) -> Result<Accepted, ApiError> {
    let claim = key.map(|k| KeyClaim::new(app, caller, route, k, request_body));
    if let Some(claim) = &claim
        && let Some(replayed) = claim.begin().await?
    {
        return Ok(replayed);
    }

    let now = legacy_now();
    let Prepared { messages, response } = prepare(now);
    let outbox = messages
        .iter()
        .filter_map(|m| super::event::outbox_event(&app.config, m))
        .collect::<Vec<OutboxEvent>>();
    let record = claim.as_ref().map(|c| c.record(&response, now));
    let acceptance = std::sync::Arc::new(Acceptance {
        messages,
        outbox,
        idempotency: record.clone(),
    });

    let result = app.store.accept(acceptance.clone()).await;
    if !matches!(result, Ok(AcceptOutcome::Accepted))
        && let Some(claim) = &claim
    {
        claim.release().await;
    }
    match result {
        Ok(AcceptOutcome::Accepted) => {
            if let (Some(claim), Some(record)) = (&claim, &record) {
                claim.complete(record).await;
                app.metrics.idempotency.with_label_values(&["new"]).inc();
            }
            if !acceptance.outbox.is_empty() {
                app.relay_wake.notify_one();
            }
            count_accepted(app, caller, route, &acceptance.messages);
            Ok(Accepted::Fresh(response))
        }
        Ok(AcceptOutcome::KeyExists(existing)) => match &claim {
            Some(claim) => claim.settle(existing),
            None => Err(ApiError::Unexpected(anyhow::anyhow!(
                "an unkeyed acceptance met a key"
            ))),
        },
        Ok(AcceptOutcome::KeyBusy) => Err(in_flight(app)),
        Err(e) => Err(e.into()),
    }
}

/// Now, at the precision clients see (`toISOString()`: milliseconds), so
/// what is stored is exactly what is shown.
pub fn legacy_now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

fn mismatch(app: &AppState) -> ApiError {
    app.metrics
        .idempotency
        .with_label_values(&["mismatch"])
        .inc();
    ApiError::IdempotencyKeyReused
}

fn in_flight(app: &AppState) -> ApiError {
    app.metrics
        .idempotency
        .with_label_values(&["in_flight"])
        .inc();
    ApiError::IdempotencyKeyInFlight {
        retry_after_secs: IN_FLIGHT_RETRY_AFTER,
    }
}

fn replay(app: &AppState, stored: StoredResponse) -> Accepted {
    app.metrics
        .idempotency
        .with_label_values(&["replayed"])
        .inc();
    Accepted::Replayed(stored)
}

fn count_accepted(app: &AppState, caller: &Caller, route: Route, messages: &[NewMessage]) {
    if caller.traffic.is_shadow() {
        app.metrics
            .shadow_requests
            .with_label_values(&[route.path()])
            .inc();
        return;
    }
    for m in messages {
        let encoding = m.body.encoding().as_str();
        app.metrics
            .accepted
            .with_label_values(&[route.path(), encoding])
            .inc();
        app.metrics
            .segments
            .with_label_values(&[encoding])
            .inc_by(u64::from(m.body.segments()));
    }
}

/// A `201` with a JSON body and the headers a replay must repeat.
pub fn stored_json(body: &impl serde::Serialize, location: Option<String>) -> StoredResponse {
    let mut headers = vec![(
        header::CONTENT_TYPE.as_str().to_owned(),
        "application/json".to_owned(),
    )];
    if let Some(location) = location {
        headers.push((header::LOCATION.as_str().to_owned(), location));
    }
    StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        headers,
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}
