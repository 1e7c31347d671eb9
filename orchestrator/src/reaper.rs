//! Retention: expired idempotency keys, published outbox rows and shadow
//! messages are deleted in bounded batches (`LIMIT … FOR UPDATE SKIP
//! LOCKED` on Postgres), so no lock is held for long and several replicas
//! can reap at once without waiting on each other.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// Rows deleted per statement.
pub const BATCH: i64 = 1000;

/// Runs every reaper once, each until it finds less than a batch.
pub async fn reap_once(store: &Store, config: &Config, metrics: &Metrics) -> anyhow::Result<u64> {
    let mut total = 0;
    let now = Utc::now();
    let outbox_before = now - chrono::Duration::from_std(config.outbox_retention)?;
    let shadow_before = now - chrono::Duration::from_std(config.shadow_retention)?;
    for table in ["idempotency_keys", "outbox", "shadow_messages"] {
        loop {
            let n = match table {
                "idempotency_keys" => store.reap_idempotency(BATCH).await?,
                "outbox" => store.reap_outbox(outbox_before, BATCH).await?,
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

pub async fn run(store: Store, config: Config, metrics: Metrics, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.reaper_interval.max(Duration::from_millis(100)));
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
