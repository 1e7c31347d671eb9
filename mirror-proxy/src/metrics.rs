//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Label values are bounded: routes are the templates of the sampling table
//! and the three SMS routes (anything else is `other`), reasons and error
//! kinds are fixed strings from this crate.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Why a request was not mirrored, or a mirrored exchange not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The request already carried a shadow marker (loop guard).
    AlreadyMarked,
    /// The request body went over the mirror cap.
    BodyTooLarge,
    /// The in-flight bound of shadow requests was reached.
    InFlightFull,
    /// `GET /v1/sms/{id}` with an id (or an `If-None-Match` ETag) the proxy
    /// has not learned.
    UnknownId,
    /// The background diff queue was full.
    DiffQueueFull,
    /// The primary failed or the client went away; nothing to compare.
    PrimaryFailed,
    /// The primary's response body went over the capture cap.
    ResponseTooLarge,
    /// The shadow target is not configured.
    NoShadow,
}

impl DropReason {
    const COUNT: usize = 8;

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::AlreadyMarked => "already-marked",
            DropReason::BodyTooLarge => "body-too-large",
            DropReason::InFlightFull => "in-flight-full",
            DropReason::UnknownId => "unknown-id",
            DropReason::DiffQueueFull => "diff-queue-full",
            DropReason::PrimaryFailed => "primary-failed",
            DropReason::ResponseTooLarge => "response-too-large",
            DropReason::NoShadow => "no-shadow",
        }
    }
}

/// How a shadow request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowError {
    /// No answer within the shadow timeout.
    Timeout,
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// The connection was reset or closed before a full response.
    Reset,
    /// The answer was not valid HTTP, or its body was over the cap.
    Protocol,
}

impl ShadowError {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowError::Timeout => "timeout",
            ShadowError::Connect => "connect",
            ShadowError::Reset => "reset",
            ShadowError::Protocol => "protocol",
        }
    }
}

/// Every metric of the proxy, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests that reached the proxy, by route.
    pub requests: IntCounterVec,
    /// Requests not selected by sampling, by route.
    pub sampled_out: IntCounterVec,
    /// Copies sent to the shadow, by route.
    pub mirrored: IntCounterVec,
    /// Requests not mirrored or exchanges not compared, by reason.
    pub dropped: IntCounterVec,
    /// `dropped`'s series, each resolved once on first use: a full
    /// in-flight budget counts every request, and a label lookup (hash and
    /// lock of the vector's map) on each was the drop path's main cost.
    dropped_by: std::sync::Arc<[std::sync::OnceLock<IntCounter>; DropReason::COUNT]>,
    /// Shadow requests that failed, by kind.
    pub shadow_errors: IntCounterVec,
    /// Shadow requests in flight now.
    pub shadow_in_flight: IntGauge,
    /// Primary failures answered with 502.
    pub primary_errors: IntCounter,
    /// Compared exchanges, by route and verdict.
    pub verdicts: IntCounterVec,
    /// Differences no rule explains, by route and kind.
    pub differences: IntCounterVec,
    pub primary_latency: HistogramVec,
    pub shadow_latency: HistogramVec,
    /// Shadow latency minus primary latency, seconds (negative: shadow faster).
    pub latency_delta: HistogramVec,
    /// Primary id ↔ shadow id pairs held for id correlation.
    pub id_pairs: IntGauge,
    /// Config reloads, by result (`ok`, `error`).
    pub reloads: IntCounterVec,
    /// Diff log or capture write failures.
    pub write_errors: IntCounter,
    /// Diff records written.
    pub records_written: IntCounter,
    /// Pooled primary connections Pingora dropped unreused (a race in its
    /// pool, see `telemetry`); synced from the log bridge at each scrape.
    pub primary_reuse_misses: IntCounter,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const DELTA_BUCKETS: &[f64] = &[
    -5.0, -1.0, -0.25, -0.1, -0.025, -0.005, 0.0, 0.005, 0.025, 0.1, 0.25, 1.0, 5.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["route"],
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        Self {
            requests: counter_vec("mirror_requests_total", "Requests received", &["route"]),
            sampled_out: counter_vec(
                "mirror_sampled_out_total",
                "Requests not selected by sampling",
                &["route"],
            ),
            mirrored: counter_vec(
                "mirror_mirrored_total",
                "Copies sent to the shadow",
                &["route"],
            ),
            dropped: counter_vec(
                "mirror_dropped_total",
                "Requests not mirrored, or exchanges not compared, by reason",
                &["reason"],
            ),
            dropped_by: std::sync::Arc::new(std::array::from_fn(|_| std::sync::OnceLock::new())),
            shadow_errors: counter_vec(
                "mirror_shadow_errors_total",
                "Shadow requests that failed, by kind (timeout, connect, reset, protocol)",
                &["kind"],
            ),
            shadow_in_flight: gauge("mirror_shadow_in_flight", "Shadow requests in flight"),
            primary_errors: counter(
                "mirror_primary_errors_total",
                "Requests the primary could not answer (502 sent)",
            ),
            verdicts: counter_vec(
                "mirror_diff_verdicts_total",
                "Compared exchanges by route and verdict",
                &["route", "verdict"],
            ),
            differences: counter_vec(
                "mirror_diff_differences_total",
                "Differences no rule explains, by route and kind",
                &["route", "kind"],
            ),
            primary_latency: histogram(
                "mirror_primary_latency_seconds",
                "Primary latency as the client saw it through the proxy",
                LATENCY_BUCKETS,
            ),
            shadow_latency: histogram(
                "mirror_shadow_latency_seconds",
                "Shadow latency, request sent to response body read",
                LATENCY_BUCKETS,
            ),
            latency_delta: histogram(
                "mirror_latency_delta_seconds",
                "Shadow latency minus primary latency",
                DELTA_BUCKETS,
            ),
            id_pairs: gauge(
                "mirror_id_pairs",
                "Primary/shadow id pairs held for id correlation",
            ),
            reloads: counter_vec(
                "mirror_config_reloads_total",
                "Config reloads by result",
                &["result"],
            ),
            write_errors: counter(
                "mirror_write_errors_total",
                "Diff log or capture write failures",
            ),
            records_written: counter("mirror_diff_records_total", "Diff records written"),
            primary_reuse_misses: counter(
                "mirror_primary_reuse_misses_total",
                "Pooled primary connections dropped unreused (Pingora pool race; a new connection was dialled)",
            ),
            registry,
        }
    }

    pub fn drop(&self, reason: DropReason) {
        self.dropped_by[reason as usize]
            .get_or_init(|| self.dropped.with_label_values(&[reason.as_str()]))
            .inc();
    }

    pub fn shadow_error(&self, kind: ShadowError) {
        self.shadow_errors.with_label_values(&[kind.as_str()]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let seen = crate::telemetry::reuse_misses();
        let counted = self.primary_reuse_misses.get();
        if seen > counted {
            self.primary_reuse_misses.inc_by(seen - counted);
        }
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
