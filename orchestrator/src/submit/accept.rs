//! Step 5 of a submit: take the Idempotency-Key, write everything in one
//! transaction, answer `202`, wake the relay. Shared by send and bulk.
//!
//! Order of questions for a request with a key:
//! 1. The fast path ([`crate::idempotency`]): a completed record with the
//!    same fingerprint is replayed; a different fingerprint is `422`; an
//!    in-flight marker sends us to the database, which decides.
//! 2. The database: the key row is inserted in the same transaction as the
//!    messages. A concurrent twin waits on it, then replays it.
//!
//! A validation failure never gets here, so it stores nothing; a failed
//! transaction stores nothing and releases the fast-path marker.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::{Route, SubmitContext};
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

/// Runs the idempotency protocol and the write for one request. `prepare`
/// builds the rows and the response body at time `now` (ids, timestamps);
/// it runs only when the request will really be processed.
pub async fn accept(
    app: &AppState,
    ctx: &SubmitContext,
    route: Route,
    request_body: &serde_json::Value,
    prepare: impl FnOnce(DateTime<Utc>) -> Prepared,
) -> Result<Response, ApiError> {
    if ctx.idempotency_key.is_none() && app.config.idempotency_key_required {
        return Err(ApiError::IdempotencyKeyMissing);
    }
    let scope = route.scope(ctx.shadow);
    let tenant = ctx.tenant.as_str();
    let keyed = ctx.idempotency_key.as_ref().map(|key| {
        (
            key.as_str(),
            app.cache.key(tenant, scope, key.as_str()),
            fingerprint("POST", route.path(), request_body),
        )
    });

    if let Some((key, cache_key, fp)) = &keyed {
        match app
            .cache
            .begin(cache_key, fp, app.config.idempotency_lock_ttl)
            .await
        {
            Begin::Acquired | Begin::Skipped => {}
            Begin::Existing(entry) if entry.fingerprint() != fp => {
                return Err(outcome(app, Outcome::Mismatch));
            }
            Begin::Existing(CachedEntry::Completed(record)) => {
                return Ok(replay(app, &record));
            }
            Begin::Existing(CachedEntry::InFlight { .. }) => {
                // The marker may be stale (its owner died); the database decides.
                return match app.store.find_idempotency(tenant, scope, key).await? {
                    Some(record) if record.fingerprint == *fp => Ok(replay(app, &record)),
                    Some(_) => Err(outcome(app, Outcome::Mismatch)),
                    None => Err(outcome(app, Outcome::InFlight)),
                };
            }
        }
    }

    let now = Utc::now();
    let Prepared { messages, response } = prepare(now);
    let outbox = messages
        .iter()
        .filter_map(|m| super::event::outbox_event(&app.config, m))
        .collect::<Vec<OutboxEvent>>();
    let record = keyed.as_ref().map(|(key, _, fp)| IdempotencyRecord {
        tenant: tenant.to_owned(),
        scope: scope.to_owned(),
        key: (*key).to_owned(),
        fingerprint: fp.clone(),
        response: response.clone(),
        created_at: now,
        expires_at: now
            + chrono::Duration::from_std(app.config.idempotency_ttl)
                .unwrap_or(chrono::Duration::hours(48)),
    });
    let acceptance = std::sync::Arc::new(Acceptance {
        messages,
        outbox,
        idempotency: record.clone(),
    });

    let result = app.store.accept(acceptance.clone()).await;
    let release = || async {
        if let Some((_, cache_key, fp)) = &keyed {
            app.cache.release(cache_key, fp).await;
        }
    };
    match result {
        Ok(AcceptOutcome::Accepted) => {
            if let (Some((_, cache_key, _)), Some(record)) = (&keyed, &record) {
                app.cache.complete(cache_key, record).await;
            }
            if !acceptance.outbox.is_empty() {
                app.relay_wake.notify_one();
            }
            count_accepted(app, ctx, route, &acceptance.messages);
            if keyed.is_some() {
                app.metrics.idempotency.with_label_values(&["new"]).inc();
            }
            Ok(respond(&response, false))
        }
        Ok(AcceptOutcome::KeyExists(existing)) => {
            release().await;
            if keyed
                .as_ref()
                .is_some_and(|(_, _, fp)| *fp == existing.fingerprint)
            {
                Ok(replay(app, &existing))
            } else {
                Err(outcome(app, Outcome::Mismatch))
            }
        }
        Ok(AcceptOutcome::KeyBusy) => {
            release().await;
            Err(outcome(app, Outcome::InFlight))
        }
        Err(e) => {
            release().await;
            Err(e.into())
        }
    }
}

enum Outcome {
    Mismatch,
    InFlight,
}

fn outcome(app: &AppState, o: Outcome) -> ApiError {
    match o {
        Outcome::Mismatch => {
            app.metrics
                .idempotency
                .with_label_values(&["mismatch"])
                .inc();
            ApiError::IdempotencyKeyReused
        }
        Outcome::InFlight => {
            app.metrics
                .idempotency
                .with_label_values(&["in_flight"])
                .inc();
            ApiError::IdempotencyKeyInFlight {
                retry_after_secs: IN_FLIGHT_RETRY_AFTER,
            }
        }
    }
}

fn count_accepted(app: &AppState, ctx: &SubmitContext, route: Route, messages: &[NewMessage]) {
    if ctx.shadow {
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

/// The stored answer, byte for byte, marked as a replay.
fn replay(app: &AppState, record: &IdempotencyRecord) -> Response {
    app.metrics
        .idempotency
        .with_label_values(&["replayed"])
        .inc();
    respond(&record.response, true)
}

fn respond(stored: &StoredResponse, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = (status, stored.body.clone()).into_response();
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
        headers.insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// A `202` with a JSON body and the headers a replay must repeat.
pub fn stored_json(body: &impl serde::Serialize, location: Option<String>) -> StoredResponse {
    let mut headers = vec![(
        header::CONTENT_TYPE.as_str().to_owned(),
        "application/json".to_owned(),
    )];
    if let Some(location) = location {
        headers.push((header::LOCATION.as_str().to_owned(), location));
    }
    StoredResponse {
        status: StatusCode::ACCEPTED.as_u16(),
        headers,
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}
