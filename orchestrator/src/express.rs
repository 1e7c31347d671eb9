//! The last step of every API answer: what Express's `res.send` added to
//! the legacy's responses, so that clients see the same headers.
//!
//! - the contract's static headers (`X-Powered-By: Express`);
//! - `Content-Type: application/json; charset=utf-8` on JSON bodies (a
//!   problem document keeps `application/problem+json`);
//! - a weak `ETag` computed as Express's default `etag` function does:
//!   `W/"<byte length in hex>-<first 27 characters of the base64 SHA-1>"`;
//! - on `GET`/`HEAD`, a `2xx` whose `ETag` the request's `If-None-Match`
//!   matches becomes `304 Not Modified` without a body, as `req.fresh`
//!   decides it (the `fresh` module): `If-None-Match: *` matches anything,
//!   `Cache-Control: no-cache` never matches, and an `If-Modified-Since`
//!   never matches (the legacy sent no `Last-Modified`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;

use crate::legacy::Surface;

/// The request's conditional headers, taken before the handler runs.
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    conditional: bool,
    if_none_match: Option<String>,
    if_modified_since: bool,
    no_cache: bool,
}

impl Freshness {
    pub fn of(req: &Request) -> Self {
        let headers = req.headers();
        let text = |h: header::HeaderName| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Self {
            conditional: matches!(*req.method(), Method::GET | Method::HEAD),
            if_none_match: text(header::IF_NONE_MATCH),
            if_modified_since: headers.contains_key(header::IF_MODIFIED_SINCE),
            no_cache: text(header::CACHE_CONTROL).is_some_and(|c| {
                c.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
            }),
        }
    }

    /// `fresh(reqHeaders, {etag})` from the `fresh` module (0.5).
    fn is_fresh(&self, etag: &str) -> bool {
        if !self.conditional || (self.if_none_match.is_none() && !self.if_modified_since) {
            return false;
        }
        if self.no_cache {
            return false;
        }
        if let Some(none_match) = self.if_none_match.as_deref().filter(|v| *v != "*") {
            let matched = none_match
                .split([' ', ','])
                .filter(|t| !t.is_empty())
                .any(|t| t == etag || format!("W/{t}") == etag || format!("W/{etag}") == t);
            if !matched {
                return false;
            }
        }
        // If-Modified-Since needs a Last-Modified, which the legacy never sent.
        !self.if_modified_since
    }
}

/// Express's weak ETag of a body.
pub fn etag(body: &[u8]) -> String {
    let digest = sha1_smol::Sha1::from(body).digest().bytes();
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    format!("W/\"{:x}-{}\"", body.len(), &b64[..27])
}

/// Adds Express's headers and ETag, and answers `304` when the client's
/// copy is fresh. Bodies are small (a bulk answer is tens of kB), so the
/// body is read whole to hash it.
pub async fn finish(surface: &Surface, response: Response, freshness: &Freshness) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "response body could not be read");
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            Default::default()
        }
    };
    // The body may have been replaced since a length was stamped on it.
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &surface.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    if is_plain_json(&parts.headers) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, surface.content_type.clone());
    }
    let tag = etag(&bytes);
    if let Ok(v) = HeaderValue::from_str(&tag) {
        parts.headers.insert(header::ETAG, v);
    }
    if parts.status.is_success() && freshness.is_fresh(&tag) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::TRANSFER_ENCODING);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// `application/json` (any parameters), or no type on a JSON body.
fn is_plain_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.essence_str() == "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_what_express_computes() {
        // Recorded from Express 4.22 (res.send of these exact bodies).
        assert_eq!(
            etag(b"{\"id\":\"abc\"}"),
            "W/\"c-e1kCf4ZLjl4c93RajrHys7E+KVk\""
        );
        assert_eq!(
            etag(br#"{"message":"Message not found","error":"Not Found","statusCode":404}"#),
            "W/\"44-zUR9Gr2Z6CRb+5OukRLUxA4IwPM\""
        );
        assert_eq!(etag(b""), "W/\"0-2jmj7l5rSw0yVb/vlWAYkK/YBwk\"");
    }

    fn freshness(method: Method, headers: &[(&str, &str)]) -> Freshness {
        let mut req = Request::builder().method(method);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Freshness::of(&req.body(Body::empty()).unwrap())
    }

    #[test]
    fn freshness_follows_express() {
        let tag = "W/\"c-e1kCf4ZLjl4c93RajrHys7E+KVk\"";
        let get = |h: &[(&str, &str)]| freshness(Method::GET, h).is_fresh(tag);
        assert!(get(&[("if-none-match", tag)]));
        assert!(get(&[(
            "if-none-match",
            "\"c-e1kCf4ZLjl4c93RajrHys7E+KVk\""
        )]));
        assert!(get(&[(
            "if-none-match",
            "\"x\", W/\"c-e1kCf4ZLjl4c93RajrHys7E+KVk\""
        )]));
        assert!(get(&[("if-none-match", "*")]));
        assert!(!get(&[("if-none-match", "W/\"d-other\"")]));
        assert!(!get(&[]));
        assert!(!get(&[
            ("if-none-match", tag),
            ("cache-control", "no-cache")
        ]));
        assert!(!get(&[(
            "if-modified-since",
            "Mon, 30 Nov 2026 16:33:01 GMT"
        )]));
        assert!(!freshness(Method::POST, &[("if-none-match", "*")]).is_fresh(tag));
    }
}
