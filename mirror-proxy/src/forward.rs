//! The primary path: where the request goes, what is added to it, and what
//! the client gets when the primary cannot answer.
//!
//! The request reaches the legacy gateway as the client sent it (Host
//! preserved, Kong's and Envoy's headers untouched) plus one hop appended
//! to `X-Forwarded-For`. The response is streamed back untouched. When the
//! primary cannot be reached the client gets `502` problem+json; the shadow
//! is never a fallback in the shadow phase.

use std::net::IpAddr;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use serde_json::json;

use crate::config::PrimarySettings;
use crate::marking;

/// The peer for the primary.
pub fn primary_peer(settings: &PrimarySettings, addr: std::net::SocketAddr) -> Box<HttpPeer> {
    let mut peer = HttpPeer::new(addr, settings.tls, settings.sni.clone());
    peer.options.connection_timeout = Some(settings.connect_timeout);
    peer.options.read_timeout = settings.read_timeout;
    Box::new(peer)
}

/// Appends the client to `X-Forwarded-For` on the upstream request.
pub fn append_forwarded_for(
    request: &mut RequestHeader,
    client: Option<IpAddr>,
) -> pingora::Result<()> {
    if let Some(value) = marking::forwarded_for(&request.headers, client) {
        request.insert_header("x-forwarded-for", value)?;
    }
    Ok(())
}

/// The `502` body: RFC 9457 problem details, like the orchestrator's own
/// errors, so Kong and clients see one error format.
pub fn bad_gateway_problem(instance: &str, correlation_id: Option<&str>) -> Bytes {
    let mut problem = json!({
        "type": "urn:sms-orchestrator:problem:primary-unavailable",
        "title": "Upstream unavailable",
        "status": 502,
        "detail": "The SMS API could not be reached. Retry later.",
        "instance": instance,
    });
    if let Some(id) = correlation_id {
        problem["correlation_id"] = json!(id);
    }
    Bytes::from(problem.to_string())
}
