//! Delivery status events back from the SMS workers (`sms.outbound.status`,
//! `{id, status, at, error_code?}`), consumed by a durable JetStream pull
//! consumer and applied to the message. Idempotent and order-tolerant: a
//! status only moves forward ([`crate::store::MessageStatus::rank`]), a
//! duplicate changes nothing, an unknown id is counted and acknowledged.
//! A database outage naks with a delay so the event comes back later.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::config::NatsConfig;
use crate::metrics::Metrics;
use crate::store::{StatusApplied, StatusEvent, Store, StoreError};

pub async fn run(
    js: jetstream::Context,
    config: NatsConfig,
    store: Store,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = consume(&js, &config, &store, &metrics, &shutdown).await {
            tracing::warn!(error = %format!("{e:#}"), "status consumer stopped; restarting in 1s");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

async fn consume(
    js: &jetstream::Context,
    config: &NatsConfig,
    store: &Store,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let stream = js.get_stream(&config.stream).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.status_consumer,
            pull::Config {
                durable_name: Some(config.status_consumer.clone()),
                filter_subject: config.status_subject.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    loop {
        let message = tokio::select! {
            m = messages.next() => m,
            () = shutdown.cancelled() => return Ok(()),
        };
        let Some(message) = message else {
            anyhow::bail!("status message stream ended");
        };
        let message = message?;
        let outcome = match serde_json::from_slice::<StatusEvent>(&message.payload) {
            Err(_) => "invalid",
            Ok(event) => match store.apply_status(&event).await {
                Ok(StatusApplied::Applied) => "applied",
                Ok(StatusApplied::Stale) => "stale",
                Ok(StatusApplied::Duplicate) => "duplicate",
                Ok(StatusApplied::UnknownId) => "unknown_id",
                Err(StoreError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "database unavailable; status event will be redelivered");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                        .await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "applying status event failed");
                    "error"
                }
            },
        };
        metrics.status_events.with_label_values(&[outcome]).inc();
        if let Err(e) = message.ack().await {
            tracing::warn!(error = %e, "status ack failed; the event will be redelivered and deduplicated");
        }
    }
}
