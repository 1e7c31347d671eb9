//! The one [`ProxyHttp`] implementation. Each phase is a few lines that call
//! a step module; the phases in the order a request meets them:
//!
//! 1. `request_filter`: answer the health path ([`crate::health`]); decide
//!    the tee ([`crate::tee::decide`]: marker, sampling, body cap, id
//!    rewrite, in-flight bound). A request without a body is sent to the
//!    shadow right away.
//! 2. `request_body_filter`: copy each chunk into the pending copy (cap);
//!    at the end of the body, send the copy ([`crate::tee`]).
//! 3. `upstream_peer` / `upstream_request_filter`: the primary, Host kept,
//!    `X-Forwarded-For` appended ([`crate::forward`]).
//! 4. `response_filter` / `response_body_filter`: copy the primary's answer
//!    for the diff ([`crate::capture`]); the client's bytes are not touched.
//! 5. `logging`: primary latency; hand the primary's answer to the shadow
//!    task, which queues the diff ([`crate::diff_service`]).
//! 6. `fail_to_proxy`: the primary failed: `502` problem+json.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use tokio::sync::oneshot;

use crate::capture::PrimaryCapture;
use crate::metrics::DropReason;
use crate::state::{Live, Shared};
use crate::tee::{self, Decision, PendingCopy, PrimaryOutcome, RequestHead};
use crate::{forward, health};

/// The mirror proxy.
#[derive(Debug)]
pub struct MirrorProxy {
    shared: Arc<Shared>,
}

impl MirrorProxy {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestCtx {
    started: Instant,
    route: String,
    client: Option<IpAddr>,
    /// The settings this request started with (a reload does not change them).
    live: Option<Arc<Live>>,
    /// The copy being filled while the body streams.
    copy: Option<Box<PendingCopy>>,
    /// Set once the copy is sent: takes the primary's outcome.
    primary_tx: Option<oneshot::Sender<PrimaryOutcome>>,
    capture: Option<PrimaryCapture>,
}

impl RequestCtx {
    fn mirrored(&self) -> bool {
        self.copy.is_some() || self.primary_tx.is_some()
    }
}

#[async_trait]
impl ProxyHttp for MirrorProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Instant::now(),
            route: crate::sampling::OTHER_ROUTE.to_owned(),
            client: None,
            live: None,
            copy: None,
            primary_tx: None,
            capture: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        if session.req_header().uri.path() == self.shared.fixed.health_path {
            health::respond(session).await?;
            return Ok(true);
        }
        let live = self.shared.live();
        ctx.client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let body_empty = session.is_body_empty();
        let req = session.req_header();
        let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let share = live.sampler.route(&req.method, path);
        ctx.route = share.route.clone();
        self.shared
            .metrics
            .requests
            .with_label_values(&[&ctx.route])
            .inc();
        let head = RequestHead {
            method: &req.method,
            path,
            headers: &req.headers,
            client: ctx.client,
            content_length: content_length(req),
        };
        if let Decision::Copy(copy) = tee::decide(&self.shared, &live, &share, &head) {
            if body_empty {
                ctx.primary_tx = Some(copy.dispatch(self.shared.clone()));
            } else {
                ctx.copy = Some(copy);
            }
        }
        ctx.live = Some(live);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let (Some(copy), Some(chunk)) = (ctx.copy.as_mut(), body.as_ref())
            && !copy.push(chunk)
            && let Some(copy) = ctx.copy.take()
        {
            tee::abandon(copy, &self.shared.metrics, DropReason::BodyTooLarge);
        }
        if end_of_stream && let Some(copy) = ctx.copy.take() {
            ctx.primary_tx = Some(copy.dispatch(self.shared.clone()));
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let live = ctx.live.clone().unwrap_or_else(|| self.shared.live());
        Ok(forward::primary_peer(&live.settings.primary, live.primary))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        forward::append_forwarded_for(upstream_request, ctx.client)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if ctx.mirrored() && !upstream_response.status.is_informational() {
            let cap = ctx
                .live
                .as_ref()
                .and_then(|l| l.shadow.as_ref())
                .map_or(0, |s| s.settings.max_response_bytes);
            ctx.capture = Some(PrimaryCapture::new(
                upstream_response.status,
                upstream_response.headers.clone(),
                cap,
            ));
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let Some(capture) = ctx.capture.as_mut() {
            capture.push(body.as_ref(), end_of_stream);
        }
        Ok(None)
    }

    async fn logging(
        &self,
        _session: &mut Session,
        error: Option<&pingora::Error>,
        ctx: &mut Self::CTX,
    ) {
        if ctx.live.is_none() {
            return; // the health path
        }
        self.shared
            .metrics
            .primary_latency
            .with_label_values(&[&ctx.route])
            .observe(ctx.started.elapsed().as_secs_f64());
        if ctx.copy.take().is_some() {
            // The client's body never completed: nothing was sent.
            self.shared.metrics.drop(DropReason::PrimaryFailed);
        }
        if let Some(tx) = ctx.primary_tx.take() {
            let outcome = match ctx.capture.take() {
                Some(capture) => capture.finish(ctx.started, error.is_some()),
                None => PrimaryOutcome::Failed,
            };
            // The shadow task may be gone (it never outlives its timeout
            // without waiting here, so this only happens on shutdown).
            let _ = tx.send(outcome);
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        _ctx: &mut Self::CTX,
    ) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code == 502 {
            self.shared.metrics.primary_errors.inc();
        }
        if code > 0 && session.response_written().is_none() {
            let written = if code == 502 {
                let req = session.req_header();
                let body = forward::bad_gateway_problem(
                    req.uri.path(),
                    compare::exchange::correlation_id(&req.headers),
                );
                health::respond_problem(session, 502, body).await
            } else {
                session.respond_error(code).await
            };
            if let Err(e) = written {
                tracing::debug!(error = %e, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

fn content_length(req: &RequestHeader) -> Option<usize> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
