//! Step 6, after the `202`: the outbox relay. Publishes committed events
//! to JetStream (or, embedded, to a JSONL file), waits for each PubAck,
//! then marks the batch published and its messages `queued` in one
//! statement. On Postgres the message row is its own outbox row (its
//! `published_at` and an event to publish), on SQLite an `outbox` row.
//!
//! * Woken on commit: the accepting replica's relay by an in-process
//!   [`Notify`], at once. The other replicas `LISTEN orch_outbox`; a relay
//!   that claims a full batch (a backlog) sends one `NOTIFY` so they help
//!   drain it with `SKIP LOCKED`. A `NOTIFY` in every accepting transaction
//!   would take Postgres's global notify lock at each commit: measured, it
//!   cost a third of the submit throughput. A 1 s poll is only a safety net.
//! * Several replicas relay at once without double publishing: rows are
//!   leased with `FOR UPDATE SKIP LOCKED` (Postgres) for [`LEASE`].
//! * At-least-once on the wire, exactly-once in effect: every publish
//!   carries `Nats-Msg-Id` = message id, so a republish after an unknown
//!   outcome (ack timeout, crash after publish) is dropped by the stream's
//!   duplicate window. That window must exceed the longest gap between two
//!   publishes of one row: ack timeout (5 s) + lease (10 s) + max backoff
//!   (30 s) ≈ 45 s. The stream we create uses 5 minutes; the NATS default
//!   of 2 minutes is also enough.
//! * NATS down: the whole batch backs off together (exponential, full
//!   jitter, capped), so rows go out in creation order when NATS returns.
//! * Shadow events are a lane of their own: a shadow publish that fails
//!   (its stream deleted, full, or not capturing the subject) defers only
//!   that row (its own `next_attempt_at`, same capped backoff) and never
//!   makes the relay wait, so live events are not delayed by shadow
//!   traffic. Shadow rows that never make it are reaped after
//!   `SHADOW_RETENTION` (see `reaper`).
//!
//! The sink (NATS or the file) and the streams live in [`crate::event_sink`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use crate::event_sink::{ACK_TIMEOUT, EventSink, PublishError, SinkHealth, subject_matches};
use crate::metrics::Metrics;
use crate::store::Store;

/// How long a relay owns the rows it claimed.
/// Short, so rows leased by a crashed replica are picked up again soon; long
/// enough to cover one batch's publishes and their acks ([`ACK_TIMEOUT`]).
pub const LEASE: Duration = Duration::from_secs(10);
const BATCH: i64 = 512;
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const BATCH_ROWS: usize = BATCH as usize;
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
const SAFETY_POLL: Duration = Duration::from_secs(1);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Delay before the `attempt`-th retry: full jitter over a capped exponential.
pub fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(BACKOFF_MAX);
    let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

/// The relay loop of one replica.
#[derive(Debug)]
pub struct Relay {
    pub store: Store,
    pub sink: EventSink,
    pub health: SinkHealth,
    pub wake: Arc<Notify>,
    pub metrics: Metrics,
    /// `NATS_SUBJECT`: rows on it are live; any other subject is shadow.
    pub live_subject: String,
}

impl Relay {
    pub async fn run(self, shutdown: CancellationToken) {
        if let Store::Postgres(pg) = &self.store {
            spawn_listener(pg.pool().clone(), self.wake.clone(), shutdown.clone());
        }
        let mut failures: u32 = 0;
        let mut backlog_at: Option<Instant> = None;
        let mut stream_ready = self.sink.nats().is_none();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            self.metrics
                .nats_connected
                .set(i64::from(self.health.is_connected()));
            if !stream_ready {
                match self.sink.ensure_streams().await {
                    Ok(()) => stream_ready = true,
                    Err(e) => {
                        failures += 1;
                        tracing::error!(error = %format!("{e:#}"), "event stream not ready; publishing waits");
                        self.sleep(backoff(failures), &shutdown).await;
                        continue;
                    }
                }
            }
            match self.pass().await {
                // Less than a full batch: nothing else was claimable when
                // this round claimed, so wait for the next commit (a commit
                // during the round has left its wake-up permit) instead of
                // running a claim that finds nothing.
                Ok(n) if n < BATCH_ROWS => {
                    failures = 0;
                    self.update_backlog(&mut backlog_at).await;
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(SAFETY_POLL) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
                Ok(_) => failures = 0,
                Err(Retry {
                    delay,
                    stream_missing,
                }) => {
                    failures += 1;
                    if stream_missing {
                        // NATS answers but the stream is gone (deleted, or
                        // NATS restarted without its storage): every event
                        // it held is lost downstream, and nothing published
                        // now would land. The outbox rows stay until the
                        // stream exists again (recreated here with
                        // NATS_CREATE_STREAM, else by an operator).
                        tracing::error!(
                            stream = %self.sink.stream_name(),
                            "JetStream stream missing: NATS lost it (deleted, or restarted without its storage); events it held are gone, unpublished outbox rows are kept and wait for the stream"
                        );
                        stream_ready = false;
                    }
                    self.update_backlog(&mut backlog_at).await;
                    let delay = delay.max(backoff(failures));
                    self.sleep(delay, &shutdown).await;
                }
            }
        }
    }

    async fn sleep(&self, d: Duration, shutdown: &CancellationToken) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            () = shutdown.cancelled() => {}
        }
    }

    /// The backlog gauges, read at most every [`BACKLOG_EVERY`]: the count
    /// reads the whole partial index of unpublished rows, and under load
    /// the relay goes idle hundreds of times a second, while the gauges
    /// are scraped every few seconds.
    async fn update_backlog(&self, last: &mut Option<Instant>) {
        if last.is_some_and(|t| t.elapsed() < BACKLOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        if let Ok(b) = self.store.outbox_backlog().await {
            self.metrics.outbox_pending.set(b.pending);
            let age = b
                .oldest
                .map_or(0.0, |t| (Utc::now() - t).as_seconds_f64().max(0.0));
            self.metrics.outbox_oldest_age.set(age);
        }
    }

    /// One claim-publish-mark round. `Ok(n)`: rows claimed and settled
    /// (published, or shadow rows deferred); `Err(retry)`: back off before
    /// the next round.
    async fn pass(&self) -> Result<usize, Retry> {
        let rows = match self.store.claim_outbox(BATCH, LEASE).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return Err(Retry::after(Duration::ZERO));
            }
        };
        if rows.is_empty() {
            return Ok(0);
        }
        if rows.len() == BATCH_ROWS {
            // More is waiting than one relay takes at a time: ask for help.
            if let Store::Postgres(pg) = &self.store {
                let _ = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(crate::store::OUTBOX_CHANNEL)
                    .execute(pg.pool())
                    .await;
            }
        }
        // Pipelined: every publish goes out, then the acks are collected.
        let results = futures::future::join_all(rows.iter().map(|r| self.sink.publish(r))).await;
        let mut done = Vec::with_capacity(rows.len());
        let mut first_error = None;
        let mut shadow_failed = Vec::new();
        for (row, result) in rows.iter().zip(results) {
            let live = row.subject == self.live_subject;
            let kind = if live { "real" } else { "shadow" };
            match result {
                Ok(()) => {
                    self.metrics.published.with_label_values(&[kind]).inc();
                    self.metrics
                        .publish_duration
                        .with_label_values(&[kind])
                        .observe((Utc::now() - row.created_at).as_seconds_f64().max(0.0));
                    done.push(row.message_id);
                }
                Err(e) => {
                    self.metrics
                        .publish_failures
                        .with_label_values(&[e.reason()])
                        .inc();
                    if live {
                        first_error.get_or_insert(e);
                    } else {
                        shadow_failed.push((row, e));
                    }
                }
            }
        }
        if let Err(e) = self.store.mark_published(&done).await {
            // Published but not marked: the lease expires and the rows are
            // republished with the same Nats-Msg-Id, which the stream drops.
            tracing::warn!(error = %e, rows = done.len(), "marking published rows failed");
            return Err(Retry::after(Duration::ZERO));
        }
        // The shadow lane: each failed shadow row is deferred alone and the
        // relay goes on at once.
        if let Some((_, e)) = shadow_failed.first() {
            tracing::warn!(error = %e, rows = shadow_failed.len(), "shadow events not published; retrying them later without holding up live events");
        }
        for (row, e) in &shadow_failed {
            let delay = backoff(u32::try_from(row.attempts).unwrap_or(1));
            let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            let _ = self
                .store
                .mark_failed(row.message_id, retry_at, &e.to_string())
                .await;
        }
        match first_error {
            None => Ok(done.len() + shadow_failed.len()),
            Some(e) => {
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(1);
                let delay = backoff(u32::try_from(attempts).unwrap_or(1));
                let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis(), "publishing failed; backing off");
                let settled: std::collections::HashSet<_> = done
                    .iter()
                    .copied()
                    .chain(shadow_failed.iter().map(|(r, _)| r.message_id))
                    .collect();
                for row in rows.iter().filter(|r| !settled.contains(&r.message_id)) {
                    let _ = self
                        .store
                        .mark_failed(row.message_id, retry_at, &e.to_string())
                        .await;
                }
                Err(Retry {
                    delay,
                    stream_missing: matches!(e, PublishError::NoStream(_)),
                })
            }
        }
    }
}

/// Why and when a relay round is tried again.
#[derive(Debug)]
struct Retry {
    delay: Duration,
    /// A live publish met no stream: check (recreate) the streams first.
    stream_missing: bool,
}

impl Retry {
    fn after(delay: Duration) -> Self {
        Self {
            delay,
            stream_missing: false,
        }
    }
}

/// Postgres `LISTEN`: commits on other replicas wake this relay.
fn spawn_listener(pool: sqlx::PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox LISTEN failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => return,
                    }
                }
            };
            if let Err(e) = listener.listen(crate::store::OUTBOX_CHANNEL).await {
                tracing::warn!(error = %e, "outbox LISTEN failed; retrying");
                continue;
            }
            loop {
                tokio::select! {
                    n = listener.recv() => match n {
                        Ok(_) => wake.notify_one(),
                        Err(_) => break,
                    },
                    () = shutdown.cancelled() => return,
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_MAX, "{attempt}: {d:?}");
            assert!(d >= Duration::from_millis(50), "{attempt}: {d:?}");
        }
        assert!(backoff(1) <= Duration::from_millis(200));
        assert!(backoff(20) >= BACKOFF_MAX / 2);
    }
}
