//! Responses the proxy writes itself: the health endpoint on the proxy
//! listener (for Kong upstream health checks and Envoy cluster health
//! checks, which probe the address they route to) and problem+json errors.
//!
//! Health is liveness of the proxy itself: it does not probe the primary,
//! so Kong does not mark the sidecar down for the primary's outages (the
//! client sees those as `502` from the proxy either way).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

pub async fn respond(session: &mut Session) -> pingora::Result<()> {
    write(
        session,
        200,
        "application/json",
        Bytes::from_static(br#"{"status":"ok"}"#),
    )
    .await
}

pub async fn respond_problem(
    session: &mut Session,
    status: u16,
    body: Bytes,
) -> pingora::Result<()> {
    write(session, status, "application/problem+json", body).await
}

async fn write(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header("content-type", content_type)?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("cache-control", "no-store")?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}
