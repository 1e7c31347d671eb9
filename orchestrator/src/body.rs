//! The request body, read once, where Express's `json()` middleware read
//! it: in front of routing and authentication, on every request. So, as
//! before the cutover, a malformed body is a `400` even on an unknown route
//! or without a token, and a body over the limit is a `413` before
//! anything else is looked at.
//!
//! The rules (body-parser 1.20's `json()` with its defaults):
//!
//! 1. Only a `Content-Type` of `application/json` (any parameters, any
//!    case) with a body (`Content-Length` or `Transfer-Encoding` present)
//!    is read. Anything else leaves the body empty, `{}`: a request sent as
//!    `text/plain` is then told which fields are missing (`400`), as the
//!    legacy did, rather than `415`.
//! 2. A `charset` parameter must start with `utf-` (else `415 unsupported
//!    charset "X"`).
//! 3. More than the limit (declared or read) is `413`.
//! 4. The text goes through [`crate::node_json::parse_body`]: `400` with
//!    `JSON.parse`'s own message, or `400` for a duplicate key.
//!
//! The value is left in the request's extensions as [`JsonBody`].
//!
//! The whole body must arrive within `BODY_READ_TIMEOUT` of the head; a
//! body that stalls or never ends is a `408` (`request-timeout`) and the
//! connection is closed.
//!
//! A body the legacy did not read (not JSON, an unsupported charset, over
//! the limit) is still read to its end and discarded, up to
//! [`DRAIN_LIMIT`]: body-parser dumps the rest of a refused body and Node
//! discards what a handler left unread, so the client's keep-alive
//! connection serves its next request. Answering with the body unread would
//! make hyper close the connection without `Connection: close`, and the
//! client's next request on it would fail.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use bytes::BytesMut;
use http_body_util::BodyExt;

use crate::node_json::{decode_utf8, parse_body};
use crate::problem::ApiError;
use crate::state::AppState;

/// The request's JSON body; `{}` when there was none to read.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequestParts<S> for JsonBody {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<JsonBody>()
            .cloned()
            .unwrap_or_else(|| JsonBody(Value::Object(Map::new()))))
    }
}

/// The middleware.
pub async fn parse(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let limit = if is_bulk_path(req.uri().path()) {
        app.config.bulk_body_limit
    } else {
        app.config.send_body_limit
    }
    .unwrap_or(app.contract.legacy().body_limit);
    // One deadline for the whole body, read or drained: a client that
    // stops sending (or trickles forever) gets a `408` and loses the
    // connection, as Node's `requestTimeout` gave the legacy's clients.
    match tokio::time::timeout(app.config.body_read_timeout, read(req, limit)).await {
        Ok(Ok(req)) => next.run(req).await,
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::RequestTimeout.into_response(),
    }
}

/// Most bytes of an unread body [`drain`] reads and discards; beyond it the
/// connection is given up (a guard against being fed a body forever).
pub const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads what is left of `body` and discards it (at most [`DRAIN_LIMIT`]
/// bytes), so the connection can serve the next request.
async fn drain(mut body: axum::body::Body) {
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            seen += data.len();
            if seen > DRAIN_LIMIT {
                return;
            }
        }
    }
}

async fn read(req: Request, limit: usize) -> Result<Request, ApiError> {
    let (mut parts, mut body) = req.into_parts();
    if !has_body(&parts.headers) {
        return Ok(Request::from_parts(parts, body));
    }
    let Some(charset) = json_charset(&parts.headers) else {
        // Not read, as json() did not; no handler reads it either.
        drain(body).await;
        return Ok(Request::from_parts(parts, axum::body::Body::empty()));
    };
    if let Some(c) = charset.filter(|c| !c.to_ascii_lowercase().starts_with("utf-")) {
        drain(body).await;
        return Err(ApiError::UnsupportedCharset(c.to_ascii_uppercase()));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body).await;
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut bytes = BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(frame) = body.frame().await {
        // The client went away mid-body; nobody will read the answer.
        let frame = frame.map_err(|e| {
            ApiError::Unexpected(anyhow::anyhow!("request body could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if bytes.len() + data.len() > limit {
            drain(body).await;
            return Err(ApiError::PayloadTooLarge { limit });
        }
        bytes.extend_from_slice(&data);
    }
    let value = parse_body(&decode_utf8(&bytes)).map_err(ApiError::Body)?;
    parts.extensions.insert(JsonBody(value));
    Ok(Request::from_parts(parts, axum::body::Body::empty()))
}

/// `type-is`'s `hasBody`.
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) || headers.contains_key(header::CONTENT_LENGTH)
}

/// `Some(charset parameter)` when the body is `application/json`.
fn json_charset(headers: &HeaderMap) -> Option<Option<String>> {
    let mime = headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .parse::<mime::Mime>()
        .ok()?;
    mime.essence_str()
        .eq_ignore_ascii_case("application/json")
        .then(|| mime.get_param(mime::CHARSET).map(|c| c.as_str().to_owned()))
}

/// `/v1/sms/bulk` as Express matches it: any case, one optional trailing
/// slash.
pub fn is_bulk_path(path: &str) -> bool {
    let p = path.strip_suffix('/').unwrap_or(path);
    p.eq_ignore_ascii_case("/v1/sms/bulk")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                header::HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_json_with_a_body_is_read() {
        assert_eq!(
            json_charset(&headers(&[("content-type", "application/json")])),
            Some(None)
        );
        assert_eq!(
            json_charset(&headers(&[(
                "content-type",
                "APPLICATION/JSON; charset=UTF-8"
            )])),
            Some(Some("utf-8".into()))
        );
        assert_eq!(
            json_charset(&headers(&[("content-type", "text/plain")])),
            None
        );
        assert_eq!(
            json_charset(&headers(&[("content-type", "application/vnd.api+json")])),
            None
        );
        assert!(has_body(&headers(&[("content-length", "0")])));
        assert!(!has_body(&headers(&[])));
    }

    #[test]
    fn the_bulk_limit_applies_to_the_bulk_path_as_express_matches_it() {
        assert!(is_bulk_path("/v1/sms/bulk"));
        assert!(is_bulk_path("/V1/SMS/Bulk/"));
        assert!(!is_bulk_path("/v1/sms/bulk//"));
        assert!(!is_bulk_path("/v1/sms/send"));
    }
}
