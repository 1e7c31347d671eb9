//! Step 6 of a submit: persistence. The message rows, the idempotency record
//! and the outbox rows of one request are written in one transaction; the
//! `202` is sent only after it commits, so a `202` means durable.
//!
//! Two dialects behind one enum (no `dyn`, no generic soup): Postgres in
//! schema `orch` for production, an embedded SQLite file by default.
//! Migrations live in `migrations/<dialect>/` and run at start-up.

mod group_commit;
mod kept;
mod postgres;
mod sqlite;

use std::sync::Arc;

use crate::domain::{MessageId, MessageText, PhoneNumber, SenderId, TenantId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use group_commit::GroupCommit;
pub use postgres::{OUTBOX_CHANNEL, PgStore};
pub use sqlite::SqliteStore;

/// A message that passed every check, about to be stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub tenant: TenantId,
    pub shadow: bool,
    pub to: PhoneNumber,
    pub from: SenderId,
    pub body: MessageText,
    pub reference: Option<String>,
    pub callback_url: Option<String>,
    pub schedule_at: Option<DateTime<Utc>>,
    pub validity_period: Option<u32>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub correlation_id: String,
    pub created_at: DateTime<Utc>,
}

/// An event to publish once the acceptance commits.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub message_id: MessageId,
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

/// A response as first sent, kept to be replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "serde_bytes_b64")]
    pub body: Vec<u8>,
}

/// The idempotency record of one accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub tenant: String,
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
    pub response: StoredResponse,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Everything one request writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Acceptance {
    pub messages: Vec<NewMessage>,
    pub outbox: Vec<OutboxEvent>,
    pub idempotency: Option<IdempotencyRecord>,
}

/// What came of an acceptance.
#[derive(Debug)]
pub enum AcceptOutcome {
    /// Committed.
    Accepted,
    /// The key was already taken by a completed request; nothing written.
    KeyExists(IdempotencyRecord),
    /// Another transaction holds the key and did not finish in time.
    KeyBusy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub status: String,
    pub at: DateTime<Utc>,
    pub error_code: Option<String>,
}

/// A stored message, as `GET /v1/sms/{id}` reads it.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub id: MessageId,
    pub status: String,
    pub to: String,
    pub from: String,
    pub encoding: String,
    pub segments: u32,
    pub reference: Option<String>,
    pub callback_url: Option<String>,
    pub schedule_at: Option<DateTime<Utc>>,
    pub validity_period: Option<u32>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status_history: Vec<HistoryEntry>,
}

/// A claimed event, leased to one relay; the message's id names it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub message_id: MessageId,
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Pending work in the outbox, for the metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxBacklog {
    pub pending: i64,
    pub oldest: Option<DateTime<Utc>>,
}

/// A delivery status event from the SMS workers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusEvent {
    pub id: MessageId,
    pub status: MessageStatus,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub error_code: Option<String>,
}

/// What applying a status event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusApplied {
    /// The message moved to this status.
    Applied,
    /// Recorded in the history, but the message is already further along.
    Stale,
    /// Already recorded; nothing changed.
    Duplicate,
    /// No (live) message with that id.
    UnknownId,
}

/// Lifecycle: `accepted` → `queued` (published) → `sent` → one terminal of
/// `delivered | failed | expired | rejected`. A status only moves forward:
/// a terminal status is never replaced by an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Accepted,
    Queued,
    Sent,
    Delivered,
    Failed,
    Expired,
    Rejected,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    /// Position in the lifecycle; terminal statuses share the last rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::Queued => 1,
            Self::Sent => 2,
            Self::Delivered | Self::Failed | Self::Expired | Self::Rejected => 3,
        }
    }
}

/// Storage failures, split by what the client should be told.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached now: `503` with `Retry-After`.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] Arc<sqlx::Error>),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    /// The same error for another request that met it (a shared commit).
    pub fn share(&self) -> Self {
        match self {
            StoreError::Unavailable(e) => StoreError::Unavailable(e.clone()),
            StoreError::Other(e) => StoreError::Other(anyhow::anyhow!("{e:#}")),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(Arc::new(e)),
            sqlx::Error::Database(db)
                if db.code().is_some_and(|c| {
                    // admin_shutdown, crash_shutdown, cannot_connect_now, read-only
                    matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "25006")
                }) =>
            {
                StoreError::Unavailable(Arc::new(e))
            }
            _ => StoreError::Other(e.into()),
        }
    }
}

impl From<StoreError> for crate::problem::ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => Self::StorageUnavailable(e.into()),
            StoreError::Other(e) => Self::Unexpected(e),
        }
    }
}

/// The database, whichever it is.
#[derive(Debug, Clone)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Postgres($s) => $call,
            Store::Sqlite($s) => $call,
        }
    };
}

impl Store {
    /// Connects and applies migrations. `commit_sizes` observes the
    /// requests of each Postgres group commit.
    pub async fn connect(
        config: &crate::config::DatabaseConfig,
        commit_sizes: Option<prometheus::Histogram>,
    ) -> anyhow::Result<Self> {
        if config.is_postgres() {
            Ok(Self::Postgres(
                PgStore::connect(
                    postgres::connect_options(config)?,
                    config.max_connections,
                    GroupCommit {
                        max_requests: config.group_commit,
                        concurrency: config.commit_concurrency,
                        sizes: commit_sizes,
                        ..GroupCommit::default()
                    },
                )
                .await?,
            ))
        } else if let Some(url) = &config.url {
            anyhow::bail!(
                "DATABASE_URL must be a postgres:// URL (got scheme {:?}); unset it for embedded SQLite",
                url.expose().split(':').next().unwrap_or_default()
            )
        } else {
            Ok(Self::Sqlite(SqliteStore::open(&config.sqlite_path).await?))
        }
    }

    pub fn dialect(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    /// Stores what one request writes, atomically; returns after the commit.
    pub async fn accept(&self, a: Arc<Acceptance>) -> Result<AcceptOutcome, StoreError> {
        match self {
            Store::Postgres(s) => s.accept(a).await,
            Store::Sqlite(s) => s.accept(&a).await,
        }
    }

    pub async fn find_idempotency(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        dispatch!(self, s => s.find_idempotency(tenant, scope, key, Utc::now()).await)
    }

    pub async fn get_message(
        &self,
        tenant: &TenantId,
        shadow: bool,
        id: MessageId,
    ) -> Result<Option<MessageView>, StoreError> {
        dispatch!(self, s => s.get_message(tenant.as_str(), shadow, id).await)
    }

    /// Leases up to `limit` due outbox rows (oldest first) for `lease`.
    pub async fn claim_outbox(
        &self,
        limit: i64,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        dispatch!(self, s => s.claim_outbox(limit, lease).await)
    }

    /// Marks the messages' events published and the messages `queued`.
    pub async fn mark_published(&self, ids: &[MessageId]) -> Result<(), StoreError> {
        dispatch!(self, s => s.mark_published(ids).await)
    }

    /// Records a failed attempt and when to try again.
    pub async fn mark_failed(
        &self,
        id: MessageId,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.mark_failed(id, next_attempt_at, error).await)
    }

    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        dispatch!(self, s => s.outbox_backlog().await)
    }

    pub async fn apply_status(&self, e: &StatusEvent) -> Result<StatusApplied, StoreError> {
        dispatch!(self, s => s.apply_status(e).await)
    }

    /// Deletes up to `batch` expired idempotency keys; returns how many.
    pub async fn reap_idempotency(&self, batch: i64) -> Result<u64, StoreError> {
        dispatch!(self, s => s.reap_idempotency(Utc::now(), batch).await)
    }

    /// Deletes up to `batch` outbox rows published before `before`
    /// (SQLite; on Postgres a published event's payload goes when it is
    /// marked published and there is nothing left to delete).
    pub async fn reap_outbox(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        dispatch!(self, s => s.reap_outbox(before, batch).await)
    }

    /// Gives up to `batch` unpublished events on `subject` created before
    /// `before` (shadow events that never made it): deleted outbox rows on
    /// SQLite, events dropped from their message rows on Postgres.
    pub async fn reap_unpublished(
        &self,
        subject: &str,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.reap_unpublished(subject, before, batch).await)
    }

    /// Deletes up to `batch` shadow messages created before `before`.
    pub async fn reap_shadow(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        dispatch!(self, s => s.reap_shadow(before, batch).await)
    }
}

/// Stored responses carry raw bytes; JSON (Redis, SQLite) holds them as base64.
mod serde_bytes_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}
