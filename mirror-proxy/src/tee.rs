//! The tee: decides whether a request gets a shadow copy, copies its body
//! while it streams to the primary, and sends the copy from a task of its
//! own.
//!
//! The copy never sits on the primary's path:
//! - the decision is made from the request head, with no I/O;
//! - body chunks are cloned (`Bytes` is reference-counted) into a buffer
//!   capped at `max_body_bytes`; over the cap the copy is abandoned;
//! - the in-flight bound is a `try_acquire` on the process-wide
//!   [`crate::budget::InFlightBudget`] (one budget across reloads): when it
//!   is full the copy is dropped and counted, never queued;
//! - the shadow request runs in a spawned task with its own HTTP client
//!   (own connection pool) and its own timeout; the primary never waits
//!   for it. The task later receives the primary's captured answer over a
//!   oneshot channel and hands both to the diff service.
//!
//! The shadow request starts when the client's body is complete: the
//! orchestrator needs the whole JSON document anyway, and a copy that might
//! still go over the cap is never half-sent.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use compare::{Exchange, RecordedRequest, RecordedResponse};
use http::{HeaderMap, Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::config::ShadowSettings;
use crate::correlation;
use crate::diff_service::{Compared, DiffJob};
use crate::marking;
use crate::metrics::{DropReason, Metrics, ShadowError};
use crate::state::{Live, Shared};

/// The shadow: its settings and its own client (connection pool). Its
/// in-flight bound is not here: it outlives reloads ([`Shared::in_flight`]).
#[derive(Debug)]
pub struct ShadowTarget {
    pub settings: ShadowSettings,
    client: reqwest::Client,
}

impl ShadowTarget {
    pub fn new(settings: ShadowSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_max_idle_per_host(settings.pool_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Self { client, settings })
    }

    fn url(&self, path_and_query: &str) -> String {
        let base = self.settings.url.as_str().trim_end_matches('/');
        format!("{base}{path_and_query}")
    }
}

/// What the proxy knows of the request when it decides.
#[derive(Debug)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub client: Option<IpAddr>,
    pub content_length: Option<usize>,
}

/// The outcome of the decision.
#[derive(Debug)]
pub enum Decision {
    Copy(Box<PendingCopy>),
    /// Not mirrored; the reason (if any) is already counted.
    Skip,
}

/// A copy being filled while the client's body streams.
#[derive(Debug)]
pub struct PendingCopy {
    live: Arc<Live>,
    route: String,
    method: Method,
    /// Path and query as the client sent them (what the diff record shows).
    path: String,
    /// Path and query sent to the shadow (the id rewritten for status reads).
    shadow_path: String,
    /// The client's headers, for the diff and the capture.
    headers: HeaderMap,
    shadow_headers: HeaderMap,
    body: BytesMut,
    cap: usize,
    permit: InFlight,
}

/// A held in-flight slot; releases the slot and the gauge when dropped.
#[derive(Debug)]
struct InFlight {
    _permit: OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Decides whether a request gets a copy. Counts every request it turns
/// away, by reason.
pub fn decide(
    shared: &Shared,
    live: &Arc<Live>,
    route: &crate::sampling::RouteShare,
    head: &RequestHead<'_>,
) -> Decision {
    let metrics = &shared.metrics;
    if marking::is_marked(head.headers) {
        metrics.drop(DropReason::AlreadyMarked);
        return Decision::Skip;
    }
    if !live.sampler.selects(route, head.headers) {
        metrics.sampled_out.with_label_values(&[&route.route]).inc();
        return Decision::Skip;
    }
    let Some(target) = live.shadow.as_ref() else {
        metrics.drop(DropReason::NoShadow);
        return Decision::Skip;
    };
    if head
        .content_length
        .is_some_and(|n| n > target.settings.max_body_bytes)
    {
        metrics.drop(DropReason::BodyTooLarge);
        return Decision::Skip;
    }
    let mut shadow_path = head.path.to_owned();
    let mut if_none_match = None;
    if let Some(id) = correlation::status_read_id(head.method, head.path) {
        let correlation = &live.settings.correlation;
        let unknown = correlation.enabled && !correlation.mirror_unknown;
        match shared.ids.get(id).filter(|_| correlation.enabled) {
            Some(shadow_id) => {
                shadow_path = correlation::rewrite_status_path(head.path, id, &shadow_id)
            }
            None if !unknown => {}
            None => {
                metrics.drop(DropReason::UnknownId);
                return Decision::Skip;
            }
        }
        if let Some(value) = head
            .headers
            .get(http::header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .filter(|_| correlation.enabled)
        {
            match correlation::rewrite_if_none_match(value, &shared.etags) {
                Some(rewritten) => if_none_match = Some(rewritten),
                None if !unknown => {}
                None => {
                    metrics.drop(DropReason::UnknownId);
                    return Decision::Skip;
                }
            }
        }
    }
    let Some(permit) = shared.in_flight.try_acquire() else {
        metrics.drop(DropReason::InFlightFull);
        return Decision::Skip;
    };
    metrics.shadow_in_flight.inc();
    let permit = InFlight {
        _permit: permit,
        gauge: metrics.shadow_in_flight.clone(),
    };
    let shadow_headers = match marking::shadow_headers(
        head.headers,
        head.client,
        &target.settings.credential,
        target.settings.host_suffix,
    ) {
        Ok(mut h) => {
            if let Some(value) = if_none_match.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
                h.insert(http::header::IF_NONE_MATCH, value);
            }
            h
        }
        Err(_) => {
            // Only a credential that is not a valid header value gets here.
            tracing::error!("shadow credential is not a valid header value; not mirroring");
            metrics.drop(DropReason::NoShadow);
            return Decision::Skip;
        }
    };
    Decision::Copy(Box::new(PendingCopy {
        live: live.clone(),
        route: route.route.clone(),
        method: head.method.clone(),
        path: head.path.to_owned(),
        shadow_path,
        headers: head.headers.clone(),
        shadow_headers,
        body: BytesMut::with_capacity(head.content_length.unwrap_or(0)),
        cap: target.settings.max_body_bytes,
        permit,
    }))
}

/// What the shadow task learns about the primary when the client's
/// response is done.
#[derive(Debug)]
pub enum PrimaryOutcome {
    Complete(RecordedResponse),
    /// The body went over the capture cap: nothing to compare.
    TooLarge,
    /// The primary failed or the client went away.
    Failed,
}

impl PendingCopy {
    /// Copies one body chunk. `false`: the copy went over the cap and must
    /// be abandoned (the caller counts it).
    pub fn push(&mut self, chunk: &Bytes) -> bool {
        if self.body.len() + chunk.len() > self.cap {
            return false;
        }
        self.body.extend_from_slice(chunk);
        true
    }

    /// Starts the shadow request in its own task. The returned sender takes
    /// the primary's outcome when the client's response is done.
    pub fn dispatch(self, shared: Arc<Shared>) -> oneshot::Sender<PrimaryOutcome> {
        let (tx, rx) = oneshot::channel();
        shared
            .metrics
            .mirrored
            .with_label_values(&[&self.route])
            .inc();
        shadow_runtime().spawn(run(self, rx, shared));
        tx
    }
}

/// The shadow's own runtime, one worker thread: shadow requests (their
/// connections, timers, reads and the wait for the primary's answer) never
/// run on the threads that serve the primary. Spawned there, a slow
/// shadow's hundreds of in-flight copies shared the proxy threads' run
/// queues and timer wheels with the primary's requests and stretched the
/// primary's tail (p99 ×1.26–1.44 with a 1 s shadow, #17). The shadow
/// client's pooled connections live on this runtime too (hyper spawns a
/// connection's task where it is dialled). Its threads (the worker and any
/// blocking thread, e.g. a DNS lookup) run at a lower CPU priority than the
/// proxy's ([`crate::priority`]).
fn shadow_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("shadow")
                .on_thread_start(|| {
                    crate::priority::lower_this_thread("shadow");
                })
                .enable_all()
                .build()
                .expect("the shadow runtime starts")
        })
        .handle()
}

/// The shadow task: send, read the answer (capped, timed), release the
/// in-flight slot, wait for the primary, learn ids, queue the diff.
async fn run(copy: PendingCopy, primary: oneshot::Receiver<PrimaryOutcome>, shared: Arc<Shared>) {
    let PendingCopy {
        live,
        route,
        method,
        path,
        shadow_path,
        headers,
        shadow_headers,
        body,
        permit,
        ..
    } = copy;
    let body = body.freeze();
    let Some(target) = live.shadow.as_ref() else {
        return;
    };
    let metrics = &shared.metrics;
    let started = Instant::now();
    let answer = tokio::time::timeout(
        target.settings.timeout,
        fetch(
            target,
            method.clone(),
            &shadow_path,
            shadow_headers,
            body.clone(),
        ),
    )
    .await;
    let latency = started.elapsed();
    drop(permit);
    let shadow = match answer {
        Ok(Ok((status, headers, body))) => {
            metrics
                .shadow_latency
                .with_label_values(&[&route])
                .observe(latency.as_secs_f64());
            Ok(RecordedResponse {
                status,
                headers,
                body,
                latency,
            })
        }
        Ok(Err((kind, reason))) => {
            metrics.shadow_error(kind);
            Err(format!("{}: {reason}", kind.as_str()))
        }
        Err(_) => {
            metrics.shadow_error(ShadowError::Timeout);
            Err(format!(
                "timeout: no answer within {:?}",
                target.settings.timeout
            ))
        }
    };

    let primary = match primary.await {
        Ok(PrimaryOutcome::Complete(response)) => response,
        Ok(PrimaryOutcome::TooLarge) => {
            metrics.drop(DropReason::ResponseTooLarge);
            return;
        }
        Ok(PrimaryOutcome::Failed) | Err(_) => {
            metrics.drop(DropReason::PrimaryFailed);
            return;
        }
    };
    let request = RecordedRequest {
        method,
        path,
        headers,
        body,
    };
    let compared = match shadow {
        Ok(candidate) => {
            metrics
                .latency_delta
                .with_label_values(&[&route])
                .observe(candidate.latency.as_secs_f64() - primary.latency.as_secs_f64());
            learn_ids(&shared, &live, &route, &primary, &candidate);
            learn_etag(&shared, &live, &request, &primary, &candidate);
            Compared::Both(Exchange {
                request,
                primary,
                candidate,
            })
        }
        Err(error) => Compared::ShadowFailed {
            request,
            primary,
            error,
        },
    };
    if shared
        .jobs
        .try_send(DiffJob {
            live,
            route,
            compared,
        })
        .is_err()
    {
        metrics.drop(DropReason::DiffQueueFull);
    }
}

fn learn_ids(
    shared: &Shared,
    live: &Live,
    route: &str,
    primary: &RecordedResponse,
    shadow: &RecordedResponse,
) {
    if !live.settings.correlation.enabled
        || !primary.status.is_success()
        || !shadow.status.is_success()
    {
        return;
    }
    for (p, s) in correlation::learned_pairs(route, &primary.body, &shadow.body) {
        shared.ids.insert(p, s);
    }
    shared
        .metrics
        .id_pairs
        .set(i64::try_from(shared.ids.len()).unwrap_or(i64::MAX));
}

/// Pairs the ETags of a status read both sides answered with a body, so a
/// later conditional read of it can be mirrored meaningfully.
fn learn_etag(
    shared: &Shared,
    live: &Live,
    request: &RecordedRequest,
    primary: &RecordedResponse,
    shadow: &RecordedResponse,
) {
    if !live.settings.correlation.enabled
        || correlation::status_read_id(&request.method, &request.path).is_none()
        || primary.status != StatusCode::OK
        || shadow.status != StatusCode::OK
    {
        return;
    }
    let etag = |r: &RecordedResponse| {
        r.headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let (Some(p), Some(s)) = (etag(primary), etag(shadow)) {
        shared.etags.insert(p, s);
    }
}

type ShadowAnswer = (StatusCode, HeaderMap, Bytes);

async fn fetch(
    target: &ShadowTarget,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<ShadowAnswer, (ShadowError, String)> {
    let mut request = target
        .client
        .request(method, target.url(path))
        .headers(headers);
    if !body.is_empty() {
        request = request.body(body);
    }
    let mut response = request.send().await.map_err(classify)?;
    let status = response.status();
    let headers = response.headers().clone();
    let cap = target.settings.max_response_bytes;
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if buf.len() + chunk.len() > cap {
            return Err((
                ShadowError::Protocol,
                format!("response body over {cap} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((status, headers, buf.freeze()))
}

/// Sorts a client error into the metric's kinds. The reason never holds
/// the URL (it may carry a message id) or any body.
fn classify(error: reqwest::Error) -> (ShadowError, String) {
    let error = error.without_url();
    if error.is_timeout() {
        return (ShadowError::Timeout, "timed out".to_owned());
    }
    if error.is_connect() {
        return (ShadowError::Connect, chain(&error));
    }
    let text = chain(&error);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return (ShadowError::Reset, text);
            }
        }
        source = e.source();
    }
    if text.contains("closed before message completed") || text.contains("connection closed") {
        return (ShadowError::Reset, text);
    }
    (ShadowError::Protocol, text)
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}

/// Drops a copy that will not be sent (its in-flight slot is released)
/// and counts why.
pub fn abandon(copy: Box<PendingCopy>, metrics: &Metrics, reason: DropReason) {
    metrics.drop(reason);
    drop(copy);
}
