//! What the diff engine compares: one request and the answers of the primary
//! (the legacy api-gateway) and the candidate (the orchestrator).
//!
//! The types hold `http` crate types and `Bytes`, so the mirror proxy can fill
//! them from Pingora's request and response headers without copying bodies.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

/// The method used for NATS events: an extension method, so events travel
/// through the same route matching as HTTP (`event sms.outbound.request`).
pub const EVENT_METHOD: &str = "EVENT";

/// The request both targets answered.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query as sent (`/v1/sms/abc?x=1`); for events the logical
    /// event name (`sms.outbound.request`).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// One target's answer (or, for events, one published message).
#[derive(Debug, Clone)]
pub struct RecordedResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Time from sending the request to the end of the response body.
    pub latency: Duration,
}

/// A request with the primary's and the candidate's answers.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: RecordedRequest,
    pub primary: RecordedResponse,
    pub candidate: RecordedResponse,
}

impl RecordedRequest {
    /// The request path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    /// Whether this request is a NATS event rather than an HTTP request.
    pub fn is_event(&self) -> bool {
        self.method.as_str() == EVENT_METHOD
    }

    /// The correlation id the edge assigned, from the first of
    /// `X-Correlation-ID`, `Kong-Request-ID` and `X-Request-Id` present.
    pub fn correlation_id(&self) -> Option<&str> {
        correlation_id(&self.headers)
    }
}

/// The headers a correlation id is read from, in order of preference.
pub const CORRELATION_HEADERS: [&str; 3] = ["x-correlation-id", "kong-request-id", "x-request-id"];

/// The correlation id in `headers`, if any (see [`CORRELATION_HEADERS`]).
pub fn correlation_id(headers: &HeaderMap) -> Option<&str> {
    CORRELATION_HEADERS
        .iter()
        .filter_map(|name| headers.get(*name))
        .find_map(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// Whether a method changes state on the target. These are only sent to a
/// target that is marked shadow-safe, or with `--allow-writes`.
pub fn is_write(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}
