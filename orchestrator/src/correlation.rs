//! Step 2 of a submit: the correlation id, and the request log line.
//!
//! Taken from `X-Correlation-ID` (Kong's correlation-id plugin), else
//! `Kong-Request-ID`, else `x-request-id` (Envoy), else minted (UUIDv7).
//! Carried into the log line, the published event and problem documents'
//! `correlation_id`. It is not echoed as a response header: the legacy
//! api-gateway sent none, and Kong's correlation-id plugin echoes it at
//! the edge when configured to. An id that is not 1–128 visible ASCII
//! characters is replaced.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{Metrics, status_class};
use crate::problem::ProblemSlug;

const SOURCES: &[&str] = &["x-correlation-id", "kong-request-id", "x-request-id"];

#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Filled by the auth step with the verified tenant, read by the log line.
#[derive(Debug, Clone, Default)]
pub struct TenantSlot(pub std::sync::Arc<std::sync::OnceLock<String>>);

/// Filled by routing with the route's name (a bounded label), read by the
/// log line and the metrics.
#[derive(Debug, Clone, Default)]
pub struct RouteSlot(pub std::sync::Arc<std::sync::OnceLock<&'static str>>);

/// Marks an answer that replayed a stored one (an Idempotency-Key hit).
#[derive(Debug, Clone, Copy)]
pub struct Replayed;

fn usable(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?.trim();
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// Middleware over the API router: the correlation id in; one log line
/// and the HTTP metrics per request.
pub async fn layer(State(metrics): State<Metrics>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = SOURCES
        .iter()
        .find_map(|h| req.headers().get(*h).and_then(usable))
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let route_slot = RouteSlot::default();
    let method = req.method().clone();
    let shadow = crate::shadow::is_marked(req.headers());
    // Kong's consumer headers, as received, for audit: who Kong says called,
    // whatever the outcome. Never trusted for a decision here.
    let consumer = crate::auth::headers::kong_consumer(req.headers());
    let tenant_slot = TenantSlot::default();
    req.extensions_mut().insert(CorrelationId(id.clone()));
    req.extensions_mut().insert(tenant_slot.clone());
    req.extensions_mut().insert(route_slot.clone());

    let response = next.run(req).await;

    let route = route_slot.0.get().copied().unwrap_or("unmatched");
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let method_label = bounded_method(&method);
    let traffic = if shadow { "shadow" } else { "live" };
    metrics
        .http_requests
        .with_label_values(&[route, method_label, status_class(status), traffic])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[route, method_label, traffic])
        .observe(elapsed.as_secs_f64());
    let outcome = response.extensions().get::<ProblemSlug>().map_or_else(
        || {
            if response.extensions().get::<Replayed>().is_some() {
                "replayed"
            } else {
                "ok"
            }
        },
        |s| s.0,
    );
    let tenant = tenant_slot.0.get().map(String::as_str);
    tracing::info!(
        target: "request",
        route = route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        tenant,
        outcome,
        traffic,
        correlation_id = id.as_str(),
        consumer_id = consumer.id.as_deref().map(audit_value),
        consumer_custom_id = consumer.custom_id.as_deref().map(audit_value),
        consumer_username = consumer.username.as_deref().map(audit_value),
        credential_identifier = consumer.credential_identifier.as_deref().map(audit_value),
        anonymous_consumer = consumer.anonymous.then_some(true),
        "request"
    );
    response
}

/// A header value for the audit fields, at most 128 bytes: Kong's ids are
/// UUIDs and short names, and a client that bypassed Kong cannot make the
/// line huge.
fn audit_value(v: &str) -> &str {
    let mut end = v.len().min(128);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

fn bounded_method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
