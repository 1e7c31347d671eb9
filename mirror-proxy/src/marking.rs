//! Shadow marking: how a copy tells the orchestrator "this is shadow
//! traffic, send no SMS", and how the proxy recognises traffic that is
//! already a copy (so it never mirrors a copy again).
//!
//! The markers are the orchestrator's (`orchestrator/src/shadow.rs`):
//! `X-Shadow-Request: 1`, the credential in `X-Shadow-Credential`, and
//! Envoy's `-shadow` suffix on the Host name. A marker without the right
//! credential is refused by the orchestrator, so a mistake here fails closed.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const SHADOW_HEADER: &str = "x-shadow-request";
pub const CREDENTIAL_HEADER: &str = "x-shadow-credential";
pub const HOST_SUFFIX: &str = "-shadow";

/// Headers that describe one connection, not the request: never copied.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
    "host",
];

/// Whether a request is already shadow traffic: it carries
/// `X-Shadow-Request` (any value but `0`/`false`/empty, as the orchestrator
/// reads it) or its Host name ends in `-shadow`.
pub fn is_marked(headers: &HeaderMap) -> bool {
    let header_marked = headers
        .get_all(SHADOW_HEADER)
        .iter()
        .any(|v| !matches!(v.to_str().map(str::trim), Ok("" | "0" | "false")));
    header_marked
        || headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(host_is_shadow)
}

/// Whether a Host header value names a `-shadow` host (port ignored).
pub fn host_is_shadow(host: &str) -> bool {
    host_name(host).to_ascii_lowercase().ends_with(HOST_SUFFIX)
}

/// Host without the port; a bracketed IPv6 literal is kept whole.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `sms.example.com:8080` → `sms.example.com-shadow:8080`, as Envoy does.
/// IP literals are left alone (a suffixed IP is no name at all); the
/// `X-Shadow-Request` header marks those copies.
pub fn suffixed_host(host: &str) -> String {
    if host_is_shadow(host) || host.starts_with('[') {
        return host.to_owned();
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, Some(port)),
        _ => (host, None),
    };
    if name.parse::<IpAddr>().is_ok() {
        return host.to_owned();
    }
    match port {
        Some(port) => format!("{name}{HOST_SUFFIX}:{port}"),
        None => format!("{name}{HOST_SUFFIX}"),
    }
}

/// `X-Forwarded-For` with the client appended, as Kong and Envoy do.
pub fn forwarded_for(existing: &HeaderMap, client: Option<IpAddr>) -> Option<HeaderValue> {
    let previous: Vec<&str> = existing
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let client = client.map(|ip| ip.to_string());
    let joined = previous
        .into_iter()
        .map(str::to_owned)
        .chain(client)
        .collect::<Vec<_>>()
        .join(", ");
    if joined.is_empty() {
        return None;
    }
    HeaderValue::from_str(&joined).ok()
}

/// The headers of the copy sent to the shadow: the client's end-to-end
/// headers (Kong's and Envoy's included), the Host (suffixed when
/// `host_suffix`), `X-Forwarded-For` with the client, and the markers.
pub fn shadow_headers(
    original: &HeaderMap,
    client: Option<IpAddr>,
    credential: &str,
    host_suffix: bool,
) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
    let mut headers = HeaderMap::with_capacity(original.len() + 3);
    for (name, value) in original {
        if HOP_BY_HOP.contains(&name.as_str())
            || name.as_str() == SHADOW_HEADER
            || name.as_str() == CREDENTIAL_HEADER
            || name.as_str() == "x-forwarded-for"
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if let Some(host) = original.get(header::HOST).and_then(|h| h.to_str().ok()) {
        let host = if host_suffix {
            suffixed_host(host)
        } else {
            host.to_owned()
        };
        headers.insert(header::HOST, HeaderValue::from_str(&host)?);
    }
    if let Some(xff) = forwarded_for(original, client) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), xff);
    }
    headers.insert(
        HeaderName::from_static(SHADOW_HEADER),
        HeaderValue::from_static("1"),
    );
    let mut credential = HeaderValue::from_str(credential)?;
    credential.set_sensitive(true);
    headers.insert(HeaderName::from_static(CREDENTIAL_HEADER), credential);
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_suffix_goes_before_the_port() {
        assert_eq!(
            suffixed_host("sms.example.com:8080"),
            "sms.example.com-shadow:8080"
        );
        assert_eq!(suffixed_host("sms.example.com"), "sms.example.com-shadow");
        assert_eq!(suffixed_host("api-shadow:80"), "api-shadow:80");
        assert_eq!(suffixed_host("127.0.0.1:80"), "127.0.0.1:80");
        assert_eq!(suffixed_host("[::1]:80"), "[::1]:80");
    }

    #[test]
    fn marked_requests_are_recognised_like_the_orchestrator_does() {
        assert!(is_marked(&map(&[("x-shadow-request", "1")])));
        assert!(is_marked(&map(&[("host", "sms.example.com-shadow:8080")])));
        assert!(!is_marked(&map(&[
            ("x-shadow-request", "0"),
            ("host", "sms.example.com")
        ])));
        assert!(!is_marked(&map(&[("host", "shadow.example.com")])));
    }

    #[test]
    fn the_copy_carries_markers_and_end_to_end_headers_only() {
        let original = map(&[
            ("host", "sms.example.com"),
            ("x-correlation-id", "c-1"),
            ("kong-request-id", "k-1"),
            ("x-consumer-username", "acme"),
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "keep-alive"),
            ("content-length", "12"),
            ("authorization", "Bearer t"),
        ]);
        let h =
            shadow_headers(&original, Some("10.0.0.7".parse().unwrap()), "s3cret", true).unwrap();
        assert_eq!(h["host"], "sms.example.com-shadow");
        assert_eq!(h["x-shadow-request"], "1");
        assert_eq!(h["x-shadow-credential"], "s3cret");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(h["x-correlation-id"], "c-1");
        assert_eq!(h["kong-request-id"], "k-1");
        assert_eq!(h["x-consumer-username"], "acme");
        assert_eq!(h["authorization"], "Bearer t");
        assert!(h.get("connection").is_none());
        assert!(h.get("content-length").is_none());
    }
}
