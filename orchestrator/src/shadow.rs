//! Shadow traffic: copies of live requests sent by the mirror proxy during
//! the shadow phase. They run the whole pipeline but are stored flagged as
//! shadow, use their own idempotency scopes, publish only to the shadow
//! subject, are left out of real status and metrics, and are reaped.
//!
//! A request is shadow-marked by `X-Shadow-Request: 1` or a `Host` whose
//! name ends in `-shadow` (Envoy's mirror marking). A marker counts only
//! with the configured credential in `X-Shadow-Credential`; a marker
//! without it is **rejected** (`403 shadow-credential-invalid`), not served
//! as live: a misconfigured mirror must never send a real SMS, and a client
//! must never turn its request into a silent no-op. Kong also strips these
//! headers from client traffic.

use axum::http::{HeaderMap, header};

use crate::problem::ApiError;

pub const SHADOW_HEADER: &str = "x-shadow-request";
pub const CREDENTIAL_HEADER: &str = "x-shadow-credential";

/// Whether the request carries a shadow marker (credential not checked).
pub fn is_marked(headers: &HeaderMap) -> bool {
    let header_marked = headers
        .get_all(SHADOW_HEADER)
        .iter()
        .any(|v| !matches!(v.to_str().map(str::trim), Ok("" | "0" | "false")));
    let host_marked = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_name)
        .is_some_and(|h| h.to_ascii_lowercase().ends_with("-shadow"));
    header_marked || host_marked
}

/// `Ok(true)` for accepted shadow traffic, `Ok(false)` for live traffic.
pub fn classify(headers: &HeaderMap, secret: Option<&str>) -> Result<bool, ApiError> {
    if !is_marked(headers) {
        return Ok(false);
    }
    let presented = headers
        .get(CREDENTIAL_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    match secret {
        Some(s) if !s.is_empty() && constant_time_eq(presented, s.as_bytes()) => Ok(true),
        _ => Err(ApiError::ShadowCredentialInvalid),
    }
}

/// Host without the port (`[v6]:port` kept whole inside the brackets).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn unmarked_traffic_is_live() {
        assert!(!classify(&headers(&[("host", "sms.example.com")]), Some("s")).unwrap());
    }

    #[test]
    fn marked_with_the_credential_is_shadow() {
        let h = headers(&[("x-shadow-request", "1"), ("x-shadow-credential", "s3cret")]);
        assert!(classify(&h, Some("s3cret")).unwrap());
        let h = headers(&[
            ("host", "sms.example.com-shadow:8080"),
            ("x-shadow-credential", "s3cret"),
        ]);
        assert!(classify(&h, Some("s3cret")).unwrap());
    }

    #[test]
    fn a_marker_without_the_credential_is_refused_not_served_live() {
        for h in [
            headers(&[("x-shadow-request", "1")]),
            headers(&[("x-shadow-request", "1"), ("x-shadow-credential", "wrong")]),
            headers(&[("host", "api-shadow")]),
        ] {
            assert!(matches!(
                classify(&h, Some("s3cret")),
                Err(ApiError::ShadowCredentialInvalid)
            ));
            assert!(matches!(
                classify(&h, None),
                Err(ApiError::ShadowCredentialInvalid)
            ));
        }
    }
}
