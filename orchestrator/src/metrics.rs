//! Prometheus metrics, served on the admin listener (never routed by Kong).
//!
//! Every series is registered here, once; `docs/metrics.md` is the
//! catalogue and a test checks the two agree. Labels are bounded: route
//! templates, status classes, fixed reasons; never tenant or message ids.
//!
//! **`gateway_*` compatibility aliases.** Scope item 5 of the migration plan:
//! dashboards and alerts built on the NestJS api-gateway's metrics keep
//! working for 30 days. [`GATEWAY_ALIASES`] maps each legacy name to the
//! series that replaces it; until the configured instant, each alias is
//! emitted at scrape time as a renamed copy of the new family (same labels,
//! identical values, no double counting in code). After it, the aliases stop
//! by themselves, no restart needed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Legacy api-gateway name → orchestrator name. These are the series a
/// NestJS gateway with `@willsoto/nestjs-prometheus` and our interceptors
/// exported, and the ones the cutover dashboards read.
pub const GATEWAY_ALIASES: &[(&str, &str)] = &[
    (
        "gateway_http_requests_total",
        "orchestrator_http_requests_total",
    ),
    (
        "gateway_http_request_duration_seconds",
        "orchestrator_http_request_duration_seconds",
    ),
    (
        "gateway_sms_submitted_total",
        "orchestrator_messages_accepted_total",
    ),
    (
        "gateway_sms_segments_total",
        "orchestrator_message_segments_total",
    ),
    (
        "gateway_validation_errors_total",
        "orchestrator_validation_failures_total",
    ),
    (
        "gateway_idempotency_requests_total",
        "orchestrator_idempotency_outcomes_total",
    ),
    (
        "gateway_auth_failures_total",
        "orchestrator_auth_failures_total",
    ),
    (
        "gateway_nats_published_total",
        "orchestrator_published_total",
    ),
    (
        "gateway_nats_publish_failures_total",
        "orchestrator_publish_failures_total",
    ),
];

/// Buckets for a service whose answers take well under 10 ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

/// Requests per group commit: 1 to `DATABASE_GROUP_COMMIT`'s default 64.
const COMMIT_REQUEST_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Source of "now" for the alias cut-off; tests inject their own.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    alias_until: Option<DateTime<Utc>>,
    clock: Clock,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub accepted: IntCounterVec,
    pub segments: IntCounterVec,
    pub validation_failures: IntCounterVec,
    pub idempotency: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub outbox_pending: IntGauge,
    pub outbox_oldest_age: prometheus::Gauge,
    pub published: IntCounterVec,
    pub publish_failures: IntCounterVec,
    pub publish_duration: HistogramVec,
    pub nats_connected: IntGauge,
    pub status_events: IntCounterVec,
    pub submit_api_enabled: IntGauge,
    pub shadow_requests: IntCounterVec,
    pub reaped: IntCounterVec,
    pub dependency_up: IntGaugeVec,
    pub redis_fallback: IntCounter,
    pub contract_violations: IntCounter,
    /// Requests written by one Postgres commit of the accept path.
    pub commit_requests: prometheus::Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("alias_until", &self.alias_until)
            .finish_non_exhaustive()
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    /// All series, registered on a fresh registry. Names and labels are
    /// constants, so registration cannot fail at run time.
    pub fn new(alias_until: Option<DateTime<Utc>>, clock: Clock) -> Self {
        let r = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let outbox_oldest_age = prometheus::Gauge::new(
            "orchestrator_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when empty).",
        )
        .expect("valid metric");
        r.register(Box::new(outbox_oldest_age.clone()))
            .expect("unique metric");
        let dependency_up = IntGaugeVec::new(
            Opts::new(
                "orchestrator_dependency_up",
                "1 when the dependency answered its last check, else 0.",
            ),
            &["dependency"],
        )
        .expect("valid metric");
        r.register(Box::new(dependency_up.clone()))
            .expect("unique metric");
        let redis_fallback = IntCounter::new(
            "orchestrator_redis_fallback_total",
            "Redis calls skipped (error or timeout); Postgres decided alone.",
        )
        .expect("valid metric");
        r.register(Box::new(redis_fallback.clone()))
            .expect("unique metric");
        let contract_violations = IntCounter::new(
            "orchestrator_contract_violations_total",
            "Answers that broke the committed contract (checked only with CHECK_RESPONSES).",
        )
        .expect("valid metric");
        r.register(Box::new(contract_violations.clone()))
            .expect("unique metric");
        Self {
            contract_violations,
            http_requests: counter(
                &r,
                "orchestrator_http_requests_total",
                "HTTP requests by route template, method and status class.",
                &["route", "method", "status_class", "traffic"],
            ),
            http_duration: histogram(
                &r,
                "orchestrator_http_request_duration_seconds",
                "HTTP request duration by route template.",
                &["route", "method", "traffic"],
            ),
            accepted: counter(
                &r,
                "orchestrator_messages_accepted_total",
                "Messages accepted (durable), by route and encoding.",
                &["route", "encoding"],
            ),
            segments: counter(
                &r,
                "orchestrator_message_segments_total",
                "Segments of accepted messages, by encoding.",
                &["encoding"],
            ),
            validation_failures: counter(
                &r,
                "orchestrator_validation_failures_total",
                "Validation violations by rule (JSON Schema keyword or domain rule).",
                &["rule"],
            ),
            idempotency: counter(
                &r,
                "orchestrator_idempotency_outcomes_total",
                "Idempotency-Key outcomes: new, replayed, mismatch, in_flight.",
                &["outcome"],
            ),
            auth_failures: counter(
                &r,
                "orchestrator_auth_failures_total",
                "Authentication failures by reason.",
                &["reason"],
            ),
            outbox_pending: gauge(
                "orchestrator_outbox_pending",
                "Outbox rows not yet published.",
            ),
            outbox_oldest_age,
            published: counter(
                &r,
                "orchestrator_published_total",
                "Events published and acknowledged, by kind (real or shadow).",
                &["kind"],
            ),
            publish_failures: counter(
                &r,
                "orchestrator_publish_failures_total",
                "Publish attempts that failed, by reason.",
                &["reason"],
            ),
            publish_duration: histogram(
                &r,
                "orchestrator_publish_duration_seconds",
                "Time from commit of the outbox row to its acknowledgement.",
                &["kind"],
            ),
            nats_connected: gauge(
                "orchestrator_nats_connected",
                "1 while the event sink is connected (always 1 for the file sink).",
            ),
            status_events: counter(
                &r,
                "orchestrator_status_events_total",
                "Delivery status events by outcome: applied, stale, duplicate, unknown_id, invalid.",
                &["outcome"],
            ),
            submit_api_enabled: gauge(
                "orchestrator_submit_api_enabled",
                "State of the SUBMIT_API_ENABLED flag (1 on, 0 off).",
            ),
            shadow_requests: counter(
                &r,
                "orchestrator_shadow_requests_total",
                "Shadow-marked requests accepted from the mirror proxy, by route.",
                &["route"],
            ),
            reaped: counter(
                &r,
                "orchestrator_reaped_rows_total",
                "Rows deleted by the reapers, by table.",
                &["table"],
            ),
            dependency_up,
            redis_fallback,
            commit_requests: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "orchestrator_db_commit_requests",
                        "Requests written by one Postgres commit of the accept path (group commit; 1 = alone).",
                    )
                    .buckets(COMMIT_REQUEST_BUCKETS.to_vec()),
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            registry: r,
            alias_until,
            clock,
        }
    }

    /// Whether the `gateway_*` aliases are still emitted.
    pub fn aliases_active(&self) -> bool {
        match self.alias_until {
            Some(until) => (self.clock)() < until,
            None => true,
        }
    }

    /// Every family, with the aliases while they last.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.registry.gather();
        if self.aliases_active() {
            let aliases: Vec<_> = families
                .iter()
                .filter_map(|f| {
                    GATEWAY_ALIASES
                        .iter()
                        .find(|(_, new)| *new == f.name())
                        .map(|(old, _)| {
                            let mut copy = f.clone();
                            copy.set_name((*old).to_owned());
                            copy.set_help(format!(
                                "Deprecated alias of {} (api-gateway compatibility).",
                                f.name()
                            ));
                            copy
                        })
                })
                .collect();
            families.extend(aliases);
        }
        families
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        // Encoding in-memory families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.gather(), &mut buf);
        buf
    }
}

/// `2xx`, `4xx`…: the bounded status label.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[test]
    fn aliases_mirror_the_new_series_until_the_date_then_vanish() {
        let now = Arc::new(AtomicI64::new(1_000));
        let n = now.clone();
        let clock: Clock = Arc::new(move || {
            DateTime::from_timestamp(n.load(Ordering::SeqCst), 0).unwrap_or_default()
        });
        let until = DateTime::from_timestamp(2_000, 0);
        let m = Metrics::new(until, clock);
        m.http_requests
            .with_label_values(&["/v1/sms/send", "POST", "2xx", "live"])
            .inc_by(3);

        let text = String::from_utf8(m.render()).unwrap();
        let line = r#"{method="POST",route="/v1/sms/send",status_class="2xx",traffic="live"} 3"#;
        assert!(
            text.contains(&format!("orchestrator_http_requests_total{line}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("gateway_http_requests_total{line}")),
            "{text}"
        );

        now.store(2_000, Ordering::SeqCst);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(&format!("orchestrator_http_requests_total{line}")));
        assert!(!text.contains("gateway_"), "{text}");
    }
}
