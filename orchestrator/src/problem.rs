//! Every client-facing error, and the one place it becomes a response body.
//!
//! Handlers (and the middleware in front of them) return
//! `Result<_, ApiError>`. Each variant is client-safe: what it carries may
//! be sent. Internal causes travel in [`ApiError::Unexpected`] and
//! [`ApiError::StorageUnavailable`]; they are logged here and never sent.
//!
//! An error is rendered in one of two envelopes, chosen per request by
//! [`render`] (the middleware that runs around every API route):
//!
//! - by default, the legacy api-gateway's NestJS body, from the template
//!   the contract's `x-legacy.errors` holds for the error's kind, with
//!   `application/json; charset=utf-8`: what every client has today;
//! - when the request's `Accept` names `application/problem+json`, an
//!   RFC 9457 problem document (`type`, `title`, `status`, `detail`,
//!   `instance`, `correlation_id`, `errors[{pointer, detail}]`).
//!
//! The status is the same either way.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::correlation::CorrelationId;
use crate::legacy::Vars;
use crate::node_json::BodyError;
use crate::state::AppState;

/// Media type of the opt-in error envelope.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One violation: where in the request it is, what is wrong in words, and
/// the legacy's message for it (field path first, as NestJS wrote it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// RFC 6901 JSON Pointer into the request body, or `header:<Name>`.
    pub pointer: String,
    pub detail: String,
    /// The legacy envelope's message (`messages.3.to must be ...`).
    #[serde(skip)]
    pub message: String,
}

impl Violation {
    pub fn new(
        pointer: impl Into<String>,
        detail: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
            message: message.into(),
        }
    }
}

/// The legacy's `message` list: each violation's message once, in order
/// (a field that breaks two rules is one message).
///
/// Linear in the number of violations: a bulk body of 30 000 empty items
/// has 90 000, and a scan of the list per message (quadratic) held a core
/// for a minute per such 90 kB request.
pub fn legacy_messages(violations: &[Violation]) -> Vec<String> {
    let mut seen: std::collections::HashSet<&str> =
        std::collections::HashSet::with_capacity(violations.len());
    violations
        .iter()
        .filter(|v| seen.insert(v.message.as_str()))
        .map(|v| v.message.clone())
        .collect()
}

/// The RFC 9457 body. `type` is `urn:sms-orchestrator:problem:<slug>`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path (set when rendered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request's correlation id (set when rendered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Violation>,
}

impl Problem {
    pub fn slug(&self) -> &str {
        self.type_.rsplit(':').next().unwrap_or_default()
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request failed validation")]
    Validation(Vec<Violation>),
    #[error("body is not acceptable JSON")]
    Body(BodyError),
    #[error("unsupported charset {0}")]
    UnsupportedCharset(String),
    #[error("payload too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("path parameter cannot be decoded")]
    PathParamInvalid(String),
    #[error("X-Tenant-Id header missing")]
    TenantHeaderMissing,
    #[error("invalid Idempotency-Key: {0}")]
    IdempotencyKeyInvalid(String),
    #[error("Idempotency-Key required")]
    IdempotencyKeyMissing,
    #[error("Idempotency-Key reused with a different request")]
    IdempotencyKeyReused,
    #[error("request with this Idempotency-Key still in flight")]
    IdempotencyKeyInFlight { retry_after_secs: u64 },
    #[error("invalid token")]
    InvalidToken,
    #[error("tenant does not match the token")]
    TenantMismatch,
    #[error("shadow marker without a valid shadow credential")]
    ShadowCredentialInvalid,
    #[error("not found")]
    NotFound,
    #[error("no such route")]
    UnknownRoute,
    #[error("submit API disabled")]
    SubmitApiDisabled,
    #[error("storage unavailable: {0:#}")]
    StorageUnavailable(anyhow::Error),
    #[error("unexpected: {0:#}")]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// Stable machine name: the legacy template's key, the last part of
    /// the problem `type`, and a bounded metric label.
    pub fn slug(&self) -> &'static str {
        use ApiError::*;
        match self {
            Validation(_) => "validation-failed",
            Body(BodyError::Syntax(_)) => "malformed-json",
            Body(BodyError::DuplicateKey { .. }) => "duplicate-key",
            UnsupportedCharset(_) => "unsupported-media-type",
            PayloadTooLarge { .. } => "payload-too-large",
            RequestTimeout => "request-timeout",
            PathParamInvalid(_) => "path-param-invalid",
            TenantHeaderMissing => "tenant-header-missing",
            IdempotencyKeyInvalid(_) => "idempotency-key-invalid",
            IdempotencyKeyMissing => "idempotency-key-missing",
            IdempotencyKeyReused => "idempotency-key-reused",
            IdempotencyKeyInFlight { .. } => "idempotency-key-in-flight",
            InvalidToken => "invalid-token",
            TenantMismatch => "tenant-mismatch",
            ShadowCredentialInvalid => "shadow-credential-invalid",
            NotFound => "not-found",
            UnknownRoute => "unknown-route",
            SubmitApiDisabled => "submit-api-disabled",
            StorageUnavailable(_) => "storage-unavailable",
            Unexpected(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        use ApiError::*;
        match self {
            Validation(_) => "Request failed validation",
            Body(BodyError::Syntax(_)) => "Malformed JSON",
            Body(BodyError::DuplicateKey { .. }) => "Duplicate key in JSON object",
            UnsupportedCharset(_) => "Unsupported media type",
            PayloadTooLarge { .. } => "Payload too large",
            RequestTimeout => "Request timeout",
            PathParamInvalid(_) => "Path parameter cannot be decoded",
            TenantHeaderMissing => "X-Tenant-Id header missing",
            IdempotencyKeyInvalid(_) => "Invalid Idempotency-Key",
            IdempotencyKeyMissing => "Idempotency-Key required",
            IdempotencyKeyReused => "Idempotency-Key reused with a different request",
            IdempotencyKeyInFlight { .. } => "Request with this Idempotency-Key is in flight",
            InvalidToken => "Invalid token",
            TenantMismatch => "Tenant does not match the token",
            ShadowCredentialInvalid => "Shadow marker not accepted",
            NotFound => "Not found",
            UnknownRoute => "No such route",
            SubmitApiDisabled => "Submit API disabled",
            StorageUnavailable(_) => "Storage unavailable",
            Unexpected(_) => "Internal error",
        }
    }

    /// The problem document of this error, without `instance` and
    /// `correlation_id` (the request supplies those when it is rendered).
    pub fn problem(&self, status: StatusCode) -> Problem {
        use ApiError::*;
        let (detail, errors) = match self {
            Validation(v) => (
                Some(format!("{} violation(s); see errors", v.len())),
                v.clone(),
            ),
            Body(e) => (Some(e.message().to_string()), Vec::new()),
            UnsupportedCharset(c) => (Some(format!("unsupported charset \"{c}\"")), Vec::new()),
            PayloadTooLarge { limit } => (
                Some(format!("request body exceeds the limit of {limit} bytes")),
                Vec::new(),
            ),
            PathParamInvalid(p) => (Some(format!("cannot decode {p}")), Vec::new()),
            RequestTimeout => (
                Some("the request body did not arrive within BODY_READ_TIMEOUT".into()),
                Vec::new(),
            ),
            TenantHeaderMissing => (
                None,
                vec![Violation::new(
                    "header:X-Tenant-Id",
                    "the X-Tenant-Id header is required",
                    "",
                )],
            ),
            IdempotencyKeyInvalid(d) => {
                (None, vec![Violation::new("header:Idempotency-Key", d, "")])
            }
            IdempotencyKeyMissing => (
                None,
                vec![Violation::new(
                    "header:Idempotency-Key",
                    "this deployment requires an Idempotency-Key header on submits",
                    "",
                )],
            ),
            IdempotencyKeyReused => (
                Some("this Idempotency-Key was used for a different request; use a new key".into()),
                Vec::new(),
            ),
            IdempotencyKeyInFlight { .. } => (
                Some("the first request with this key has not finished; retry later".into()),
                Vec::new(),
            ),
            StorageUnavailable(_) => (Some("retry later".into()), Vec::new()),
            _ => (None, Vec::new()),
        };
        Problem {
            type_: format!("urn:sms-orchestrator:problem:{}", self.slug()),
            title: self.title(),
            status: status.as_u16(),
            detail,
            instance: None,
            correlation_id: None,
            errors,
        }
    }

    /// The template values this error supplies.
    fn vars(&self) -> Vars {
        let mut vars = Vars::default();
        match self {
            ApiError::Validation(v) => vars.messages = legacy_messages(v),
            ApiError::Body(e) => vars.parser = Some(e.message()),
            ApiError::UnsupportedCharset(c) => vars.charset = Some(c.clone()),
            ApiError::PathParamInvalid(p) => vars.param = Some(p.clone()),
            _ => {}
        }
        vars
    }
}

/// An error waiting to be rendered by [`render`], carried in the
/// response's extensions.
#[derive(Debug, Clone)]
pub struct Failure {
    slug: &'static str,
    vars: Vars,
    problem: Arc<Problem>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unexpected(e) => {
                tracing::error!(error = %format!("{e:#}"), "unexpected error")
            }
            ApiError::StorageUnavailable(e) => {
                tracing::warn!(error = %format!("{e:#}"), "storage unavailable")
            }
            _ => {}
        }
        let mut response = Response::default();
        match &self {
            ApiError::IdempotencyKeyInFlight { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::StorageUnavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The rest of the body is still on the wire (or never comes):
            // the connection cannot carry another request.
            ApiError::RequestTimeout => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        let slug = self.slug();
        response.extensions_mut().insert(ProblemSlug(slug));
        response.extensions_mut().insert(Failure {
            slug,
            vars: self.vars(),
            // The status comes from the contract's template; the problem
            // document gets the same one when it is rendered.
            problem: Arc::new(self.problem(StatusCode::INTERNAL_SERVER_ERROR)),
        });
        response
    }
}

impl From<crate::auth::AuthError> for ApiError {
    /// No reason leaks beyond the error kind; the reason goes to the log
    /// and the auth-failures metric.
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        match e {
            AuthError::TenantHeaderMissing | AuthError::TenantHeaderInvalid(_) => {
                ApiError::TenantHeaderMissing
            }
            AuthError::MissingToken | AuthError::InvalidToken(_) => ApiError::InvalidToken,
            AuthError::TenantMismatch => ApiError::TenantMismatch,
        }
    }
}

/// Marks a response as an error and says which, for the request log and metrics.
#[derive(Debug, Clone, Copy)]
pub struct ProblemSlug(pub &'static str);

/// Whether the request asked for problem documents: its `Accept` names
/// `application/problem+json` with a non-zero quality.
pub fn wants_problem(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            media.eq_ignore_ascii_case(PROBLEM_JSON) && q > 0.0
        })
}

/// Whether a request gets problem documents: it asked for them, or the
/// deployment answers every client so (`ERROR_FORMAT=problem`).
pub fn negotiated_problem(headers: &HeaderMap, format: crate::config::ErrorFormat) -> bool {
    format == crate::config::ErrorFormat::Problem || wants_problem(headers)
}

/// What [`render`] needs to know about the request.
#[derive(Debug, Clone)]
struct RequestFacts {
    problem: bool,
    method: Method,
    /// Path and query as received (Express's `originalUrl`).
    url: String,
    path: String,
    correlation_id: Option<String>,
}

/// Middleware around the API: renders every [`Failure`] in the envelope
/// the request negotiated, then finishes every answer as Express did
/// ([`crate::express::finish`]).
pub async fn render(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let facts = RequestFacts {
        problem: negotiated_problem(req.headers(), app.config.error_format),
        method: req.method().clone(),
        url: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned()),
        path: req.uri().path().to_owned(),
        correlation_id: req.extensions().get::<CorrelationId>().map(|c| c.0.clone()),
    };
    let freshness = crate::express::Freshness::of(&req);
    let mut response = next.run(req).await;
    if let Some(failure) = response.extensions_mut().remove::<Failure>() {
        fill_failure(&app, &facts, failure, &mut response);
    }
    crate::express::finish(app.contract.legacy(), response, &freshness).await
}

fn fill_failure(app: &AppState, facts: &RequestFacts, failure: Failure, response: &mut Response) {
    let template = app.contract.legacy().error(failure.slug);
    *response.status_mut() = template.status;
    let (content_type, body) = if facts.problem {
        let mut problem = (*failure.problem).clone();
        problem.status = template.status.as_u16();
        problem.instance = Some(facts.path.clone());
        problem.correlation_id = facts.correlation_id.clone();
        if failure.slug == "invalid-token" {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        (
            HeaderValue::from_static(PROBLEM_JSON),
            serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec()),
        )
    } else {
        let mut vars = failure.vars;
        vars.method = Some(facts.method.as_str().to_owned());
        vars.url = Some(facts.url.clone());
        (
            app.contract.legacy().content_type.clone(),
            template.render(&vars),
        )
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    *response.body_mut() = axum::body::Body::from(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_urn_type_and_the_status_it_is_given() {
        let e = ApiError::Validation(vec![Violation::new("/to", "bad", "to must be x")]);
        let p = e.problem(StatusCode::BAD_REQUEST);
        assert_eq!(p.type_, "urn:sms-orchestrator:problem:validation-failed");
        assert_eq!(p.status, 400);
        assert_eq!(p.slug(), "validation-failed");
        assert_eq!(p.errors.len(), 1);
        // The legacy message is not part of the problem document.
        assert!(!serde_json::to_string(&p).unwrap().contains("to must be x"));
    }

    /// Regression (HTTP abuse, #15): a 90 kB bulk body of 30 000 empty
    /// items has 90 000 violations; their messages are listed once each,
    /// in order, in one pass (a list scan per message took a minute).
    #[test]
    fn legacy_messages_keep_the_first_of_each_in_order_over_ninety_thousand() {
        let mut violations = Vec::new();
        for i in 0..30_000 {
            for field in ["to", "from", "body"] {
                let message = format!("messages.{i}.{field} must be valid");
                violations.push(Violation::new("/p", "d", message.clone()));
                violations.push(Violation::new("/p", "again", message));
            }
        }
        let messages = legacy_messages(&violations);
        assert_eq!(messages.len(), 90_000);
        assert_eq!(messages[0], "messages.0.to must be valid");
        assert_eq!(messages[1], "messages.0.from must be valid");
        assert_eq!(messages[89_999], "messages.29999.body must be valid");
    }

    #[test]
    fn every_slug_has_a_legacy_template() {
        for slug in crate::legacy::ERROR_KINDS {
            assert!(!slug.is_empty());
        }
        let errors = [
            ApiError::Validation(vec![]),
            ApiError::UnknownRoute,
            ApiError::NotFound,
            ApiError::IdempotencyKeyReused,
            ApiError::Unexpected(anyhow::anyhow!("x")),
        ];
        for e in errors {
            assert!(
                crate::legacy::ERROR_KINDS.contains(&e.slug()),
                "{}",
                e.slug()
            );
        }
    }

    #[test]
    fn internal_causes_are_never_in_the_body() {
        let e = ApiError::Unexpected(anyhow::anyhow!("password=hunter2 at db"));
        let body = serde_json::to_string(&e.problem(StatusCode::INTERNAL_SERVER_ERROR)).unwrap();
        assert!(!body.contains("hunter2"), "{body}");
    }

    #[test]
    fn legacy_messages_name_each_field_once_in_order() {
        let v = vec![
            Violation::new("/colour", "x", "property colour should not exist"),
            Violation::new("/to", "pattern", "to must be a valid phone number"),
            Violation::new("/to", "length", "to must be a valid phone number"),
            Violation::new("/from", "x", "from must be a valid sender id"),
        ];
        assert_eq!(
            legacy_messages(&v),
            vec![
                "property colour should not exist",
                "to must be a valid phone number",
                "from must be a valid sender id"
            ]
        );
    }

    #[test]
    fn problem_documents_are_opt_in_by_accept() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            wants_problem(&h)
        };
        assert!(accept("application/problem+json"));
        assert!(accept("application/json, application/problem+json;q=0.5"));
        assert!(!accept("application/problem+json;q=0"));
        assert!(!accept("application/json"));
        assert!(!accept("*/*"));
        assert!(!wants_problem(&HeaderMap::new()));
    }
}
