//! The API's HTTP server: hyper with the limits a public listener needs
//! and `axum::serve` does not set (it runs hyper without a timer, so a
//! client that never finishes its headers holds a connection forever).
//!
//! - **Header read timeout** (`HEADER_READ_TIMEOUT`): a request head that
//!   does not arrive in time closes the connection (slowloris). It also
//!   bounds how long an idle kept-alive connection waits for its next
//!   request.
//! - **Head size**: at most [`MAX_HEAD_BYTES`], Node's `maxHeaderSize`
//!   (the legacy's server); more is `431` with no body, as Node answered.
//! - `TCP_NODELAY` on every connection: a response written in more than
//!   one segment must not wait for the client's delayed ACK (Nagle),
//!   ~40 ms on idle keep-alive connections.
//! - Graceful shutdown: when `shutdown` resolves, stop accepting, let the
//!   in-flight requests finish, close idle connections.
//!
//! The body's own deadline (`BODY_READ_TIMEOUT`, `408`) is enforced where
//! the body is read, [`crate::body`].

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The largest request head (request line and headers) accepted: Node
/// 20's default `--max-http-header-size`, 16 KiB. Larger is `431`.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header fields in one head. High enough that the byte limit, not
/// the count, is what a client meets (a field is at least 4 bytes), so a
/// request Node accepted is not refused for having many small headers.
const MAX_HEADERS: usize = MAX_HEAD_BYTES / 4;

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin, as axum::serve does.
                    tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        let service = router
            .clone()
            .map_request(|req: http::Request<Incoming>| req.map(Body::new))
            .map_err(|e: Infallible| match e {});
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A client that went away, a header timeout, a malformed
                // head: the connection's business, not the service's.
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
