//! Retention: expired idempotency keys, published outbox rows, shadow
//! messages and shadow outbox rows (published or not: a shadow event that
//! could not be published for `SHADOW_RETENTION` is dropped, never kept
//! forever) are deleted in bounded batches (`LIMIT … FOR UPDATE SKIP
//! LOCKED` on Postgres), so no lock is held for long and several replicas
//! can reap at once without waiting on each other.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::{RetentionConfig, ShadowConfig};
use crate::metrics::Metrics;
use crate::store::Store;

/// Rows deleted per statement.
pub const BATCH: i64 = 1000;

/// What the reapers keep, and for how long.
#[derive(Debug, Clone)]
pub struct Retention {
    pub interval: Duration,
    pub outbox: Duration,
    pub shadow: Duration,
    /// Outbox rows on this subject are shadow events; `None`: none are made.
    pub shadow_subject: Option<String>,
}

impl Retention {
    pub fn new(retention: &RetentionConfig, shadow: &ShadowConfig) -> Self {
        Self {
            interval: retention.reaper_interval,
            outbox: retention.outbox_retention,
            shadow: retention.shadow_retention,
            shadow_subject: Some(shadow.subject.clone()).filter(|s| !s.is_empty()),
        }
    }
}

/// Runs every reaper once, each until it finds less than a batch.
pub async fn reap_once(
    store: &Store,
    config: &Retention,
    metrics: &Metrics,
) -> anyhow::Result<u64> {
    let mut total = 0;
    let now = Utc::now();
    let outbox_before = now - chrono::Duration::from_std(config.outbox)?;
    let shadow_before = now - chrono::Duration::from_std(config.shadow)?;
    for table in [
        "idempotency_keys",
        "outbox",
        "shadow_outbox",
        "shadow_messages",
    ] {
        loop {
            let n = match table {
                "idempotency_keys" => store.reap_idempotency(BATCH).await?,
                "outbox" => store.reap_outbox(outbox_before, BATCH).await?,
                "shadow_outbox" => match &config.shadow_subject {
                    Some(subject) => {
                        store
                            .reap_unpublished(subject, shadow_before, BATCH)
                            .await?
                    }
                    None => 0,
                },
                _ => store.reap_shadow(shadow_before, BATCH).await?,
            };
            metrics.reaped.with_label_values(&[table]).inc_by(n);
            total += n;
            if n < u64::try_from(BATCH).unwrap_or(u64::MAX) {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(total)
}

pub async fn run(store: Store, config: Retention, metrics: Metrics, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match reap_once(&store, &config, &metrics).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "reaped expired rows"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "reaper failed; next round retries")
            }
        }
    }
}
