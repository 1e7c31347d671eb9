//! Every client-facing error, and the one place it becomes an RFC 9457
//! `application/problem+json` response.
//!
//! Handlers return `Result<_, ApiError>`. Each variant is client-safe: what it
//! carries may be sent. Internal causes travel in [`ApiError::Unexpected`] and
//! [`ApiError::StorageUnavailable`]; they are logged here and never sent.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One violation: where in the request it is, and what is wrong, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// RFC 6901 JSON Pointer into the request body, or `header:<Name>`.
    pub pointer: String,
    pub detail: String,
}

impl Violation {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Violation>,
}

impl Problem {
    pub fn slug(&self) -> &str {
        self.type_.rsplit(':').next().unwrap_or_default()
    }
}

/// Everything a `/v1/sms/*` request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request failed validation")]
    Validation(Vec<Violation>),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
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
    #[error("submit API disabled")]
    SubmitApiDisabled,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("storage unavailable: {0:#}")]
    StorageUnavailable(anyhow::Error),
    #[error("unexpected: {0:#}")]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Validation(_)
            | MalformedJson(_)
            | TenantHeaderMissing
            | IdempotencyKeyInvalid(_)
            | IdempotencyKeyMissing => StatusCode::BAD_REQUEST,
            InvalidToken => StatusCode::UNAUTHORIZED,
            TenantMismatch | ShadowCredentialInvalid => StatusCode::FORBIDDEN,
            NotFound | SubmitApiDisabled => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IdempotencyKeyInFlight { .. } => StatusCode::CONFLICT,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine name; the last part of the problem `type`, and a
    /// bounded metric label.
    pub fn slug(&self) -> &'static str {
        use ApiError::*;
        match self {
            Validation(_) => "validation-failed",
            MalformedJson(_) => "malformed-json",
            UnsupportedMediaType => "unsupported-media-type",
            PayloadTooLarge { .. } => "payload-too-large",
            TenantHeaderMissing => "tenant-header-missing",
            IdempotencyKeyInvalid(_) => "idempotency-key-invalid",
            IdempotencyKeyMissing => "idempotency-key-missing",
            IdempotencyKeyReused => "idempotency-key-reused",
            IdempotencyKeyInFlight { .. } => "idempotency-key-in-flight",
            InvalidToken => "invalid-token",
            TenantMismatch => "tenant-mismatch",
            ShadowCredentialInvalid => "shadow-credential-invalid",
            NotFound => "not-found",
            SubmitApiDisabled => "submit-api-disabled",
            MethodNotAllowed => "method-not-allowed",
            StorageUnavailable(_) => "storage-unavailable",
            Unexpected(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        use ApiError::*;
        match self {
            Validation(_) => "Request failed validation",
            MalformedJson(_) => "Malformed JSON",
            UnsupportedMediaType => "Unsupported media type",
            PayloadTooLarge { .. } => "Payload too large",
            TenantHeaderMissing => "X-Tenant-Id header missing",
            IdempotencyKeyInvalid(_) => "Invalid Idempotency-Key",
            IdempotencyKeyMissing => "Idempotency-Key required",
            IdempotencyKeyReused => "Idempotency-Key reused with a different request",
            IdempotencyKeyInFlight { .. } => "Request with this Idempotency-Key is in flight",
            InvalidToken => "Invalid token",
            TenantMismatch => "Tenant does not match the token",
            ShadowCredentialInvalid => "Shadow marker not accepted",
            NotFound => "Not found",
            SubmitApiDisabled => "Submit API disabled",
            MethodNotAllowed => "Method not allowed",
            StorageUnavailable(_) => "Storage unavailable",
            Unexpected(_) => "Internal error",
        }
    }

    /// The client-safe body of this error.
    pub fn problem(&self) -> Problem {
        use ApiError::*;
        let (detail, errors) = match self {
            Validation(v) => (
                Some(format!("{} violation(s); see errors", v.len())),
                v.clone(),
            ),
            MalformedJson(d) => (Some(d.clone()), Vec::new()),
            PayloadTooLarge { limit } => (
                Some(format!("request body exceeds the limit of {limit} bytes")),
                Vec::new(),
            ),
            UnsupportedMediaType => (
                Some("send Content-Type: application/json".into()),
                Vec::new(),
            ),
            TenantHeaderMissing => (
                None,
                vec![Violation::new(
                    "header:X-Tenant-Id",
                    "the X-Tenant-Id header is required",
                )],
            ),
            IdempotencyKeyInvalid(d) => (None, vec![Violation::new("header:Idempotency-Key", d)]),
            IdempotencyKeyMissing => (
                None,
                vec![Violation::new(
                    "header:Idempotency-Key",
                    "this deployment requires an Idempotency-Key header on submits",
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
            status: self.status().as_u16(),
            detail,
            errors,
        }
    }
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
        let mut headers = HeaderMap::new();
        match &self {
            ApiError::IdempotencyKeyInFlight { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::StorageUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            _ => {}
        }
        let problem = self.problem();
        let mut response = problem_response(self.status(), &problem, headers);
        response.extensions_mut().insert(ProblemSlug(self.slug()));
        response
    }
}

impl From<crate::auth::AuthError> for ApiError {
    /// No reason leaks beyond the problem type; the reason goes to the
    /// log and the auth-failures metric.
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

/// Serialises a problem with the right media type.
pub fn problem_response(status: StatusCode, problem: &Problem, mut headers: HeaderMap) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| b"{}".to_vec());
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    (status, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_urn_type_and_matching_status() {
        let e = ApiError::Validation(vec![Violation::new("/to", "bad")]);
        let p = e.problem();
        assert_eq!(p.type_, "urn:sms-orchestrator:problem:validation-failed");
        assert_eq!(p.status, 400);
        assert_eq!(p.slug(), "validation-failed");
        assert_eq!(p.errors.len(), 1);
    }

    #[test]
    fn internal_causes_are_never_in_the_body() {
        let e = ApiError::Unexpected(anyhow::anyhow!("password=hunter2 at db"));
        let body = serde_json::to_string(&e.problem()).unwrap();
        assert!(!body.contains("hunter2"), "{body}");
    }
}
