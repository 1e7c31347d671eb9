//! Step 6, after the `202`: the outbox relay. Publishes committed outbox
//! rows to JetStream (or, embedded, to a JSONL file), waits for each PubAck,
//! then marks the row published and the message `queued`.
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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{OutboxRow, Store};

/// How long a relay owns the rows it claimed.
/// Short, so rows leased by a crashed replica are picked up again soon; long
/// enough to cover one batch's publishes and their acks ([`ACK_TIMEOUT`]).
pub const LEASE: Duration = Duration::from_secs(10);
/// Longest wait for one PubAck.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const BATCH: i64 = 512;
const SAFETY_POLL: Duration = Duration::from_secs(1);
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Whether the sink is connected, for readiness and the metric.
#[derive(Debug, Clone)]
pub struct SinkHealth {
    connected: Arc<AtomicBool>,
    kind: &'static str,
}

impl SinkHealth {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// Where events go.
#[derive(Clone)]
pub enum EventSink {
    Nats {
        client: async_nats::Client,
        js: Box<jetstream::Context>,
    },
    File(Arc<Mutex<tokio::fs::File>>, PathBuf),
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventSink::Nats { .. } => f.write_str("EventSink::Nats"),
            EventSink::File(_, p) => write!(f, "EventSink::File({})", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("no acknowledgement within {0:?} (outcome unknown; will republish)")]
    AckTimeout(Duration),
    #[error("file sink: {0}")]
    File(#[from] std::io::Error),
}

impl PublishError {
    fn reason(&self) -> &'static str {
        match self {
            PublishError::Publish(_) => "publish",
            PublishError::AckTimeout(_) => "ack_timeout",
            PublishError::File(_) => "file",
        }
    }
}

impl EventSink {
    /// NATS when `NATS_URL` is set (connecting in the background, so an
    /// outage at start-up only delays publishing), else the JSONL file.
    pub async fn connect(config: &Config) -> anyhow::Result<(Self, SinkHealth)> {
        let connected = Arc::new(AtomicBool::new(false));
        match &config.nats_url {
            Some(url) => {
                let flag = connected.clone();
                let client = async_nats::ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connection_timeout(Duration::from_secs(2))
                    .event_callback(move |event| {
                        let flag = flag.clone();
                        async move {
                            match event {
                                async_nats::Event::Connected => flag.store(true, Ordering::Relaxed),
                                async_nats::Event::Disconnected => {
                                    flag.store(false, Ordering::Relaxed);
                                    tracing::warn!("nats disconnected");
                                }
                                other => tracing::info!(event = %other, "nats event"),
                            }
                        }
                    })
                    .connect(url.as_str())
                    .await?;
                if client.connection_state() == async_nats::connection::State::Connected {
                    connected.store(true, Ordering::Relaxed);
                }
                let js = jetstream::ContextBuilder::new()
                    .ack_timeout(ACK_TIMEOUT)
                    .build(client.clone());
                Ok((
                    Self::Nats {
                        client,
                        js: Box::new(js),
                    },
                    SinkHealth {
                        connected,
                        kind: "nats",
                    },
                ))
            }
            None => {
                if let Some(dir) = config
                    .events_file
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir)?;
                }
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&config.events_file)
                    .await?;
                connected.store(true, Ordering::Relaxed);
                Ok((
                    Self::File(Arc::new(Mutex::new(file)), config.events_file.clone()),
                    SinkHealth {
                        connected,
                        kind: "file",
                    },
                ))
            }
        }
    }

    /// The NATS client, for the status consumer.
    pub fn nats(&self) -> Option<(&async_nats::Client, &jetstream::Context)> {
        match self {
            EventSink::Nats { client, js } => Some((client, js.as_ref())),
            EventSink::File(..) => None,
        }
    }

    /// Creates or checks the stream. Without `create`, a missing stream or
    /// one that does not capture the subject is an error that says what to do.
    pub async fn ensure_stream(&self, config: &Config) -> anyhow::Result<()> {
        let Some((_, js)) = self.nats() else {
            return Ok(());
        };
        let subjects: Vec<String> = config
            .nats_stream_subjects
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if config.nats_create_stream {
            js.get_or_create_stream(jetstream::stream::Config {
                name: config.nats_stream.clone(),
                subjects,
                duplicate_window: Duration::from_secs(300),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating stream {}: {e}", config.nats_stream))?;
            return Ok(());
        }
        let mut stream = js.get_stream(&config.nats_stream).await.map_err(|e| {
            anyhow::anyhow!(
                "JetStream stream {:?} not found ({e}); create it with subjects {:?} \
                 (and a duplicate_window of at least 2m), or start with NATS_CREATE_STREAM=true",
                config.nats_stream,
                config.nats_stream_subjects
            )
        })?;
        let info = stream.info().await?;
        let captured = |subject: &str| {
            info.config
                .subjects
                .iter()
                .any(|pattern| subject_matches(pattern, subject))
        };
        for subject in [&config.nats_subject, &config.nats_status_subject] {
            if !captured(subject) {
                anyhow::bail!(
                    "stream {:?} does not capture subject {subject:?} (its subjects: {:?})",
                    config.nats_stream,
                    info.config.subjects
                );
            }
        }
        Ok(())
    }

    async fn publish(&self, row: &OutboxRow) -> Result<(), PublishError> {
        match self {
            EventSink::Nats { js, .. } => {
                let mut headers = async_nats::HeaderMap::new();
                for (k, v) in &row.headers {
                    headers.insert(k.as_str(), v.as_str());
                }
                let ack = js
                    .send_publish(
                        row.subject.clone(),
                        jetstream::message::PublishMessage::build()
                            .payload(row.payload.clone().into())
                            .headers(headers),
                    )
                    .await
                    .map_err(|e| PublishError::Publish(e.to_string()))?;
                match tokio::time::timeout(ACK_TIMEOUT + Duration::from_millis(500), ack).await {
                    Ok(Ok(_ack)) => Ok(()),
                    Ok(Err(e)) => Err(PublishError::Publish(e.to_string())),
                    Err(_) => Err(PublishError::AckTimeout(ACK_TIMEOUT)),
                }
            }
            EventSink::File(file, _) => {
                let line = serde_json::json!({
                    "subject": row.subject,
                    "headers": row.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "payload": serde_json::from_slice::<serde_json::Value>(&row.payload).unwrap_or_default(),
                });
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                let mut f = file.lock().await;
                f.write_all(&bytes).await?;
                f.sync_data().await?;
                Ok(())
            }
        }
    }
}

/// NATS subject wildcard match (`*` one token, `>` the rest).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

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
    pub config: Config,
}

impl Relay {
    pub async fn run(self, shutdown: CancellationToken) {
        if let Store::Postgres(pg) = &self.store {
            spawn_listener(pg.pool().clone(), self.wake.clone(), shutdown.clone());
        }
        let mut failures: u32 = 0;
        let mut stream_ready = self.sink.nats().is_none();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            self.metrics
                .nats_connected
                .set(i64::from(self.health.is_connected()));
            if !stream_ready {
                match self.sink.ensure_stream(&self.config).await {
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
                Ok(0) => {
                    failures = 0;
                    self.update_backlog().await;
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(SAFETY_POLL) => {}
                        () = shutdown.cancelled() => return,
                    }
                }
                Ok(_) => failures = 0,
                Err(delay) => {
                    failures += 1;
                    self.update_backlog().await;
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

    async fn update_backlog(&self) {
        if let Ok(b) = self.store.outbox_backlog().await {
            self.metrics.outbox_pending.set(b.pending);
            let age = b
                .oldest
                .map_or(0.0, |t| (Utc::now() - t).as_seconds_f64().max(0.0));
            self.metrics.outbox_oldest_age.set(age);
        }
    }

    /// One claim-publish-mark round. `Ok(n)`: rows published; `Err(delay)`:
    /// back off before the next round.
    async fn pass(&self) -> Result<usize, Duration> {
        let rows = match self.store.claim_outbox(BATCH, LEASE).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return Err(Duration::ZERO);
            }
        };
        if rows.is_empty() {
            return Ok(0);
        }
        if rows.len() == usize::try_from(BATCH).unwrap_or(usize::MAX) {
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
        for (row, result) in rows.iter().zip(results) {
            match result {
                Ok(()) => {
                    let kind = if row.subject == self.config.nats_subject {
                        "real"
                    } else {
                        "shadow"
                    };
                    self.metrics.published.with_label_values(&[kind]).inc();
                    self.metrics
                        .publish_duration
                        .with_label_values(&[kind])
                        .observe((Utc::now() - row.created_at).as_seconds_f64().max(0.0));
                    done.push((row.id, row.message_id));
                }
                Err(e) => {
                    self.metrics
                        .publish_failures
                        .with_label_values(&[e.reason()])
                        .inc();
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Err(e) = self.store.mark_published(&done).await {
            // Published but not marked: the lease expires and the rows are
            // republished with the same Nats-Msg-Id, which the stream drops.
            tracing::warn!(error = %e, rows = done.len(), "marking published rows failed");
            return Err(Duration::ZERO);
        }
        match first_error {
            None => Ok(done.len()),
            Some(e) => {
                let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(1);
                let delay = backoff(u32::try_from(attempts).unwrap_or(1));
                let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis(), "publishing failed; backing off");
                let published: std::collections::HashSet<i64> =
                    done.iter().map(|(id, _)| *id).collect();
                for row in rows.iter().filter(|r| !published.contains(&r.id)) {
                    let _ = self
                        .store
                        .mark_failed(row.id, retry_at, &e.to_string())
                        .await;
                }
                Err(delay)
            }
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
    fn subject_wildcards() {
        assert!(subject_matches("sms.outbound.>", "sms.outbound.request"));
        assert!(subject_matches("sms.*.request", "sms.outbound.request"));
        assert!(!subject_matches("sms.outbound.>", "sms.outbound"));
        assert!(!subject_matches(
            "sms.outbound.request",
            "sms.outbound.status"
        ));
        assert!(subject_matches(
            "sms.outbound.request",
            "sms.outbound.request"
        ));
    }

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
