//! Postgres, schema `orch`: the production store.
//!
//! Concurrency is decided here, not in Redis. Two requests with one
//! Idempotency-Key race on the primary key of `orch.idempotency_keys`: the
//! second `INSERT` waits on the first's uncommitted row, then sees it
//! committed (and replays it) or rolled back (and proceeds). The wait is
//! bounded by the connection's `lock_timeout`; past it the request is told
//! the key is in flight.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgExecutor, PgPool, Row};

use crate::domain::MessageId;

use super::group_commit::{Committer, GroupCommit};
use super::kept::KeptConnections;
use super::{
    AcceptOutcome, Acceptance, HistoryEntry, IdempotencyRecord, MessageStatus, MessageView,
    OutboxBacklog, OutboxRow, StatusApplied, StatusEvent, StoreError, StoredResponse,
};

/// Channel the relays `LISTEN` on: a relay with more pending rows than one
/// batch notifies it so that the other replicas help drain the backlog.
pub const OUTBOX_CHANNEL: &str = "orch_outbox";

/// How long a request waits for another holding the same key before it is
/// answered `409`.
const KEY_LOCK_TIMEOUT: &str = "2s";

/// A connection idle for at least this long is pinged before it is used
/// again; one used more recently is trusted (HikariCP's
/// `aliveBypassWindowMs`, 500 ms, is the same rule). sqlx's default pings
/// every connection on every acquire: one extra round trip to Postgres per
/// statement. Together with the commit slots keeping their connections
/// (no ping on release either, `kept`), dropping it took the
/// submit path from 536–552 to 471–474 µs of server CPU per `201` and
/// from 3 080–3 110 to 3 530–3 540 requests/s (#17, `bench/RESULTS.md`).
/// A connection that died while in steady use fails
/// its next statement instead, as a statement in flight at that moment
/// would have; after an outage longer than this, every connection is
/// checked before use.
pub(super) const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Pool options shared by both pools: a 3 s acquire timeout and the
/// idle-only ping of [`PING_IF_IDLE_FOR`].
fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// The connection options: `DATABASE_URL` (libpq's URL parameters apply),
/// then the explicit settings on top: `DATABASE_PASSWORD`,
/// `DATABASE_SSLMODE`, `DATABASE_SSL_ROOT_CERT`, `DATABASE_SSL_CERT`/`KEY`.
/// TLS is rustls with the ring provider (one TLS stack in the process);
/// without a root certificate, `verify-ca`/`verify-full` check against the
/// system's roots.
pub fn connect_options(config: &crate::config::DatabaseConfig) -> anyhow::Result<PgConnectOptions> {
    use sqlx::postgres::PgSslMode;
    let url = config.url.as_ref().map(|u| u.expose()).unwrap_or_default();
    let mut options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| anyhow::anyhow!("DATABASE_URL is not a Postgres URL: {e}"))?;
    if let Some(password) = &config.password {
        options = options.password(password.expose());
    }
    if let Some(mode) = &config.sslmode {
        let mode: PgSslMode = mode
            .parse()
            .map_err(|_| anyhow::anyhow!("DATABASE_SSLMODE {mode:?} is not an sslmode"))?;
        options = options.ssl_mode(mode);
    }
    let readable = |name: &str, path: &std::path::Path| {
        std::fs::metadata(path)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{name} {}: {e}", path.display()))
    };
    if let Some(ca) = &config.ssl_root_cert {
        readable("DATABASE_SSL_ROOT_CERT", ca)?;
        options = options.ssl_root_cert(ca);
    }
    if let (Some(cert), Some(key)) = (&config.ssl_cert, &config.ssl_key) {
        readable("DATABASE_SSL_CERT", cert)?;
        readable("DATABASE_SSL_KEY", key)?;
        options = options.ssl_client_cert(cert).ssl_client_key(key);
    }
    Ok(options)
}

/// Applies the migrations, bookkept in `orch._sqlx_migrations`.
///
/// sqlx's default, an unqualified `_sqlx_migrations`, lands in the first
/// schema of the `search_path` (`"$user", public`). With a database role
/// named `orch`, as production's is, `"$user"` is the schema the first
/// migration creates: the first start books it in `public`, the second
/// looks in `orch`, finds nothing and re-applies everything ("relation
/// messages already exists"). Everything the orchestrator owns lives in
/// schema `orch`, its bookkeeping included; a table left in `public` by an
/// earlier release is moved there once.
async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let legacy: Option<String> = sqlx::query_scalar(
        "SELECT to_regclass('public._sqlx_migrations')::text
          WHERE to_regclass('orch._sqlx_migrations') IS NULL
            AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'orch')",
    )
    .fetch_optional(pool)
    .await?
    .flatten();
    if legacy.is_some() {
        sqlx::raw_sql("ALTER TABLE public._sqlx_migrations SET SCHEMA orch")
            .execute(pool)
            .await?;
    }
    let mut migrator = sqlx::migrate!("../migrations/postgres");
    migrator.create_schema("orch");
    migrator.dangerous_set_table_name("orch._sqlx_migrations");
    migrator.run(pool).await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The relay's and reapers' bookkeeping (leases, `published_at`,
    /// `queued`, deletions of what is done): connections with
    /// `synchronous_commit = off`, so these commits do not queue for the
    /// WAL flush that every `202` waits on. Losing one to a crash (at most
    /// ~3 × `wal_writer_delay`) leaves rows unpublished or unreaped again:
    /// the relay republishes them with the same `Nats-Msg-Id` (JetStream
    /// drops the duplicate) and the reapers delete them next round.
    /// Acceptances and status events stay on `pool` (synchronous). Seen
    /// from outside after a Postgres crash: a message may read `queued`,
    /// then `accepted` again until it is republished. Up to 4 connections
    /// beyond `DATABASE_MAX_CONNECTIONS`.
    ///
    /// These connections also run with `enable_bitmapscan = off`. The
    /// claim reads the partial index `messages_unpublished`, whose entries
    /// for published rows stay until a vacuum. A bitmap scan (what the
    /// planner picks for a claim of a few rows) visits every one of them
    /// in the heap on every claim and never marks them dead, so each claim
    /// costs in proportion to what was published since the last vacuum
    /// (measured: 22 346 entries and 2 356 heap pages for a claim that
    /// found nothing, 6 s into a bench; the largest item in Postgres's
    /// profile). A plain index scan marks the entries it finds dead
    /// (`LP_DEAD`), later scans skip them, and the index sheds them as it
    /// grows. The marks and reapers use their indexes the same way. Test:
    /// `tests/tests/relay_store.rs`.
    bookkeeping: PgPool,
    /// One `bookkeeping` connection kept for the relay's claims and marks
    /// (`kept`): a round trip each, no ping on release.
    relay: Arc<KeptConnections>,
    /// Connections of `pool` kept out of it between statements (`kept`),
    /// shared by the commit slots and the lookups (`GET /v1/sms/{id}`, a
    /// key's stored answer): half of the pool at most.
    kept: Arc<KeptConnections>,
    /// Group commit of acceptances; `None`: each commits alone.
    committer: Option<Committer>,
}

impl PgStore {
    pub async fn connect(
        options: PgConnectOptions,
        max_connections: u32,
        group_commit: GroupCommit,
    ) -> anyhow::Result<Self> {
        let options = options.options([
            ("lock_timeout", KEY_LOCK_TIMEOUT),
            ("statement_timeout", "15s"),
            ("idle_in_transaction_session_timeout", "30s"),
        ]);
        let bookkeeping = pool_options(max_connections.clamp(1, 4)).connect_lazy_with(
            options
                .clone()
                .options([("synchronous_commit", "off"), ("enable_bitmapscan", "off")]),
        );
        let pool = pool_options(max_connections)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect: {}", crate::cause::chain(&e)))?;
        migrate(&pool).await?;
        let alone = Self {
            kept: Arc::new(KeptConnections::new(pool.clone(), usize::MAX)),
            pool,
            relay: Arc::new(KeptConnections::new(bookkeeping.clone(), 1)),
            bookkeeping,
            committer: None,
        };
        let committer =
            (group_commit.max_requests > 1).then(|| Committer::start(alone.clone(), group_commit));
        Ok(Self { committer, ..alone })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) fn kept(&self) -> &Arc<KeptConnections> {
        &self.kept
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Stores an acceptance: through the group committer when there is one
    /// (see `group_commit`), else alone. Either way the answer comes after
    /// the commit that holds the rows.
    pub async fn accept(&self, a: Arc<Acceptance>) -> Result<AcceptOutcome, StoreError> {
        match &self.committer {
            Some(committer) => committer.accept(a).await,
            None => self.accept_alone(&a).await,
        }
    }

    /// One acceptance in its own statement and commit.
    pub(super) async fn accept_alone(&self, a: &Acceptance) -> Result<AcceptOutcome, StoreError> {
        let written = self.write(&self.pool, &[a]).await;
        self.outcome_alone(a, written).await
    }

    /// What [`PgStore::write`] of `a` alone means for it.
    pub(super) async fn outcome_alone(
        &self,
        a: &Acceptance,
        written: Result<Vec<i32>, sqlx::Error>,
    ) -> Result<AcceptOutcome, StoreError> {
        match written {
            Ok(taken) if !taken.is_empty() => Ok(AcceptOutcome::Accepted),
            Ok(_) => self.not_taken(a).await,
            // lock_not_available: a twin holds the key past lock_timeout.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => {
                Ok(AcceptOutcome::KeyBusy)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An acceptance whose key was not taken: it exists, replayable, or is
    /// held by a transaction that has not finished.
    pub(super) async fn not_taken(&self, a: &Acceptance) -> Result<AcceptOutcome, StoreError> {
        let idem = a.idempotency.as_ref().ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!("unkeyed acceptance wrote nothing"))
        })?;
        Ok(
            match self
                .find_idempotency(&idem.tenant, &idem.scope, &idem.key, idem.created_at)
                .await?
            {
                Some(existing) => AcceptOutcome::KeyExists(existing),
                None => AcceptOutcome::KeyBusy,
            },
        )
    }

    /// One statement, one round trip, one commit for any number of
    /// acceptances: their keys and messages (each its own outbox row) are
    /// data-modifying CTEs of a single `INSERT` (atomic on its own), and an
    /// acceptance's rows are written only if its key was taken (or it has
    /// none). Returns the indexes (into `batch`) of the acceptances
    /// written. The keys in one batch must be distinct.
    ///
    /// No `NOTIFY` here: it takes a global lock at commit and cost a third
    /// of the throughput; this replica's relay is woken in process, and
    /// relays with a backlog ask the others for help (see `relay`).
    pub(super) async fn write<'e>(
        &self,
        db: impl PgExecutor<'e>,
        batch: &[&Acceptance],
    ) -> Result<Vec<i32>, sqlx::Error> {
        let rows = AcceptRows::of(batch);
        // Built once from constants (no request data): safe to send as is.
        sqlx::query_scalar::<_, Vec<i32>>(ACCEPT)
            .bind(rows.message_ids)
            .bind(rows.tenants)
            .bind(rows.shadow)
            .bind(rows.to)
            .bind(rows.from)
            .bind(rows.body)
            .bind(rows.encoding)
            .bind(rows.segments)
            .bind(rows.reference)
            .bind(rows.callback_url)
            .bind(rows.schedule_at)
            .bind(rows.validity_period)
            .bind(rows.metadata)
            .bind(rows.correlation_id)
            .bind(rows.created_at)
            .bind(rows.event_subjects)
            .bind(rows.event_headers)
            .bind(rows.event_payloads)
            .bind(rows.key_tenants)
            .bind(rows.key_scopes)
            .bind(rows.keys)
            .bind(rows.key_fingerprints)
            .bind(rows.key_statuses)
            .bind(rows.key_headers)
            .bind(rows.key_bodies)
            .bind(rows.key_created_at)
            .bind(rows.key_expires_at)
            .bind(rows.key_requests)
            .bind(rows.unkeyed_requests)
            .bind(rows.message_requests)
            .fetch_one(db)
            .await
    }

    pub async fn find_idempotency(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let lookup = sqlx::query(
            "SELECT fingerprint, response_status, response_headers, response_body, created_at, expires_at
               FROM orch.idempotency_keys
              WHERE tenant_id = $1 AND scope = $2 AND key = $3 AND expires_at > $4",
        )
        .bind(tenant)
        .bind(scope)
        .bind(key)
        .bind(now);
        let row = self
            .kept
            .run(async |c| lookup.fetch_optional(c).await)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let headers: sqlx::types::Json<Vec<(String, String)>> = row.try_get("response_headers")?;
        Ok(Some(IdempotencyRecord {
            tenant: tenant.to_owned(),
            scope: scope.to_owned(),
            key: key.to_owned(),
            fingerprint: row.try_get("fingerprint")?,
            response: StoredResponse {
                status: u16::try_from(row.try_get::<i16, _>("response_status")?).unwrap_or(500),
                headers: headers.0,
                body: row.try_get("response_body")?,
            },
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    pub async fn get_message(
        &self,
        tenant: &str,
        shadow: bool,
        id: MessageId,
    ) -> Result<Option<MessageView>, StoreError> {
        // One round trip: the message joined with its history (one row per
        // entry; the message's columns repeat, a handful of rows at most).
        let lookup = sqlx::query(
            "SELECT m.id, m.status, m.to_number, m.sender, m.encoding, m.segments, m.reference,
                    m.callback_url, m.schedule_at, m.validity_period, m.metadata, m.created_at,
                    m.updated_at, m.published_at, h.status AS h_status, h.at AS h_at, h.error_code AS h_error_code
               FROM orch.messages m
               LEFT JOIN orch.message_status_history h ON h.message_id = m.id
              WHERE m.id = $1 AND m.tenant_id = $2 AND m.shadow = $3",
        )
        .bind(id.to_string())
        .bind(tenant)
        .bind(shadow);
        let rows = self.kept.run(async |c| lookup.fetch_all(c).await).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let history = rows
            .iter()
            .map(|h| -> Result<Option<HistoryEntry>, sqlx::Error> {
                let Some(status) = h.try_get::<Option<String>, _>("h_status")? else {
                    return Ok(None);
                };
                Ok(Some(HistoryEntry {
                    status,
                    at: h.try_get("h_at")?,
                    error_code: h.try_get("h_error_code")?,
                }))
            })
            .filter_map(Result::transpose)
            .collect::<Result<Vec<_>, _>>()?;
        let created_at: DateTime<Utc> = row.try_get("created_at")?;
        let published_at: Option<DateTime<Utc>> = row.try_get("published_at")?;
        let history = with_derived_history(history, created_at, published_at);
        let metadata: Option<sqlx::types::Json<serde_json::Map<String, serde_json::Value>>> =
            row.try_get("metadata")?;
        Ok(Some(MessageView {
            id: parse_id(row.try_get("id")?)?,
            status: row.try_get("status")?,
            to: row.try_get("to_number")?,
            from: row.try_get("sender")?,
            encoding: row.try_get("encoding")?,
            segments: u32::try_from(row.try_get::<i32, _>("segments")?).unwrap_or_default(),
            reference: row.try_get("reference")?,
            callback_url: row.try_get("callback_url")?,
            schedule_at: row.try_get("schedule_at")?,
            validity_period: row
                .try_get::<Option<i32>, _>("validity_period")?
                .and_then(|v| u32::try_from(v).ok()),
            metadata: metadata.map(|m| m.0),
            created_at,
            updated_at: row.try_get("updated_at")?,
            status_history: sort_history(history),
        }))
    }

    /// The relay's and reapers' batch statements (`id = ANY`, `IN
    /// (SELECT … LIMIT)`) run once per batch, not per request, and go
    /// unprepared (`persistent(false)`): Postgres plans
    /// them with the batch in hand every time. Prepared once per
    /// connection, they kept the generic plan chosen while the tables were
    /// nearly empty (a sequential scan for `id = ANY($1)`), and with no
    /// `ANALYZE` to invalidate it (autovacuum off, as on the CI machine)
    /// every batch scanned the whole of `orch.messages` and `orch.outbox`
    /// (measured: 1 856 scans reading 8.2 M rows in a 10 s run at
    /// 1 000 requests/s; 0.19 M rows, all while the tables were small,
    /// once planned per batch). Test: `tests/tests/relay_store.rs`.
    pub async fn claim_outbox(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        // The pending rows through the partial index `messages_unpublished`,
        // oldest first (`created_at`, then the id: within one replica ids
        // grow with creation).
        let claim = sqlx::query(
            "UPDATE orch.messages SET lease_until = now() + make_interval(secs => $2),
                                      publish_attempts = publish_attempts + 1
              WHERE id IN (SELECT id FROM orch.messages
                            WHERE published_at IS NULL AND event_subject IS NOT NULL
                              AND (next_attempt_at IS NULL OR next_attempt_at <= now())
                              AND (lease_until IS NULL OR lease_until < now())
                            ORDER BY created_at, id LIMIT $1
                            FOR UPDATE SKIP LOCKED)
          RETURNING id, event_subject, event_headers, event_payload, publish_attempts, created_at",
        )
        .persistent(false)
        .bind(limit)
        .bind(lease.as_secs_f64());
        let rows = self.relay.run(async |c| claim.fetch_all(c).await).await?;
        let mut out = rows
            .into_iter()
            .map(|r| {
                let headers: Option<sqlx::types::Json<Vec<(String, String)>>> =
                    r.try_get("event_headers")?;
                Ok(OutboxRow {
                    message_id: parse_id(r.try_get("id")?)?,
                    subject: r.try_get("event_subject")?,
                    headers: headers.map(|h| h.0).unwrap_or_default(),
                    payload: r
                        .try_get::<Option<Vec<u8>>, _>("event_payload")?
                        .unwrap_or_default(),
                    attempts: r.try_get("publish_attempts")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        out.sort_by_key(|r| (r.created_at, r.message_id));
        Ok(out)
    }

    /// One statement for the whole batch: each row is published, its event
    /// dropped (never sent again) and, if still `accepted`, the message
    /// moves to `queued` (its history's `queued` entry is `published_at`).
    /// A row already marked (a second relay after a lease ran out) keeps
    /// its first `published_at`.
    pub async fn mark_published(&self, ids: &[MessageId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let message_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let mark = sqlx::query(
            "UPDATE orch.messages
                SET published_at = now(), lease_until = NULL, last_error = NULL,
                    next_attempt_at = NULL, event_headers = NULL, event_payload = NULL,
                    status = CASE WHEN status = 'accepted' THEN 'queued' ELSE status END,
                    updated_at = CASE WHEN status = 'accepted' THEN now() ELSE updated_at END
              WHERE id = ANY($1) AND published_at IS NULL",
        )
        .persistent(false)
        .bind(&message_ids);
        self.relay.run(async |c| mark.execute(c).await).await?;
        Ok(())
    }

    pub async fn mark_failed(
        &self,
        id: MessageId,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orch.messages SET next_attempt_at = $2, lease_until = NULL, last_error = $3
              WHERE id = $1 AND published_at IS NULL",
        )
        .bind(id.to_string())
        .bind(next_attempt_at)
        .bind(error)
        .execute(&self.bookkeeping)
        .await?;
        Ok(())
    }

    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS pending, min(created_at) AS oldest
               FROM orch.messages WHERE published_at IS NULL AND event_subject IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxBacklog {
            pending: row.try_get("pending")?,
            oldest: row.try_get("oldest")?,
        })
    }

    pub async fn apply_status(&self, e: &StatusEvent) -> Result<StatusApplied, StoreError> {
        let mut tx = self.pool.begin().await?;
        let current: Option<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT status, published_at FROM orch.messages WHERE id = $1 AND NOT shadow FOR UPDATE",
        )
        .bind(e.id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((current, published_at)) = current else {
            return Ok(StatusApplied::UnknownId);
        };
        // `accepted` (the row's created_at) and, once published, `queued`
        // (its published_at) are on record without a history row.
        if e.status == MessageStatus::Accepted
            || (e.status == MessageStatus::Queued && published_at.is_some())
        {
            return Ok(StatusApplied::Duplicate);
        }
        let recorded = sqlx::query(
            "INSERT INTO orch.message_status_history (message_id, status, at, error_code)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(e.id.to_string())
        .bind(e.status.as_str())
        .bind(e.at)
        .bind(&e.error_code)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() == 0 {
            return Ok(StatusApplied::Duplicate);
        }
        let current = MessageStatus::parse(&current).unwrap_or(MessageStatus::Accepted);
        let outcome = if e.status.rank() > current.rank() {
            sqlx::query("UPDATE orch.messages SET status = $2, updated_at = now() WHERE id = $1")
                .bind(e.id.to_string())
                .bind(e.status.as_str())
                .execute(&mut *tx)
                .await?;
            StatusApplied::Applied
        } else {
            StatusApplied::Stale
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub async fn reap_idempotency(
        &self,
        now: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM orch.idempotency_keys WHERE ctid IN (
                SELECT ctid FROM orch.idempotency_keys WHERE expires_at <= $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .persistent(false)
        .bind(now)
        .bind(batch)
        .execute(&self.bookkeeping)
        .await?;
        Ok(r.rows_affected())
    }

    /// Nothing to delete: a published event's headers and payload go when
    /// it is marked published, and the row is the message's own.
    pub async fn reap_outbox(
        &self,
        _before: DateTime<Utc>,
        _batch: i64,
    ) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Gives up shadow events that never made it (the messages stay until
    /// [`Self::reap_shadow`]); uses the `messages_unpublished` partial
    /// index: only unpublished rows.
    pub async fn reap_unpublished(
        &self,
        subject: &str,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE orch.messages
                SET event_subject = NULL, event_headers = NULL, event_payload = NULL,
                    lease_until = NULL, next_attempt_at = NULL
              WHERE id IN (
                SELECT id FROM orch.messages
                 WHERE published_at IS NULL AND event_subject = $1 AND created_at < $2
                 LIMIT $3 FOR UPDATE SKIP LOCKED)",
        )
        .persistent(false)
        .bind(subject)
        .bind(before)
        .bind(batch)
        .execute(&self.bookkeeping)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn reap_shadow(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM orch.messages WHERE id IN (
                SELECT id FROM orch.messages WHERE shadow AND created_at < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .persistent(false)
        .bind(before)
        .bind(batch)
        .execute(&self.bookkeeping)
        .await?;
        Ok(r.rows_affected())
    }
}

/// The accepting statement. `$1`–`$15` message columns, `$16`–`$18` each
/// message's event (subject, headers, payload; NULL for none), `$19`–`$27`
/// idempotency records, then the request (index into the batch) each key
/// (`$28`) and message (`$30`) belongs to, and the requests without a key
/// (`$29`). A request is "taken" when its key was inserted (or had
/// expired) or it has none; only taken requests' rows are written. Returns
/// the taken requests.
///
/// One row per message and one per key: the message row is its own outbox
/// (`published_at IS NULL` with an event: pending), and its `accepted`
/// history entry is its `created_at`.
const ACCEPT: &str = "
WITH k AS (
    INSERT INTO orch.idempotency_keys
      (tenant_id, scope, key, fingerprint, response_status, response_headers,
       response_body, created_at, expires_at)
    SELECT * FROM unnest($19::text[], $20::text[], $21::text[], $22::text[], $23::int2[],
                         $24::jsonb[], $25::bytea[], $26::timestamptz[], $27::timestamptz[])
    ON CONFLICT (tenant_id, scope, key) DO UPDATE SET
       fingerprint = EXCLUDED.fingerprint,
       response_status = EXCLUDED.response_status,
       response_headers = EXCLUDED.response_headers,
       response_body = EXCLUDED.response_body,
       created_at = EXCLUDED.created_at,
       expires_at = EXCLUDED.expires_at
    WHERE orch.idempotency_keys.expires_at <= EXCLUDED.created_at
    RETURNING tenant_id, scope, key),
  taken AS (
    SELECT r FROM unnest($19::text[], $20::text[], $21::text[], $28::int4[])
             AS u(tenant_id, scope, key, r)
             JOIN k USING (tenant_id, scope, key)
    UNION ALL
    SELECT unnest($29::int4[])),
  m AS (
    INSERT INTO orch.messages
      (id, tenant_id, shadow, status, to_number, sender, body, encoding, segments, reference,
       callback_url, schedule_at, validity_period, metadata, correlation_id, created_at, updated_at,
       event_subject, event_headers, event_payload)
    SELECT id, tenant, shadow, 'accepted', to_number, sender, body, encoding, segments, reference,
           callback_url, schedule_at, validity_period, metadata, correlation_id, created_at, created_at,
           event_subject, event_headers, event_payload
      FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[],
                  $7::text[], $8::int[], $9::text[], $10::text[], $11::timestamptz[], $12::int[],
                  $13::jsonb[], $14::text[], $15::timestamptz[], $16::text[], $17::jsonb[],
                  $18::bytea[], $30::int4[])
        AS t(id, tenant, shadow, to_number, sender, body, encoding, segments, reference,
             callback_url, schedule_at, validity_period, metadata, correlation_id, created_at,
             event_subject, event_headers, event_payload, r)
     WHERE r IN (SELECT r FROM taken))
SELECT coalesce(array_agg(r), '{}') FROM taken";

/// An event's headers as the `jsonb` array they are stored as.
type Headers<'a> = sqlx::types::Json<&'a [(String, String)]>;

/// The columns of a batch of acceptances, as the arrays [`ACCEPT`] binds.
#[derive(Default)]
struct AcceptRows<'a> {
    message_ids: Vec<String>,
    tenants: Vec<&'a str>,
    shadow: Vec<bool>,
    to: Vec<&'a str>,
    from: Vec<&'a str>,
    body: Vec<&'a str>,
    encoding: Vec<&'static str>,
    segments: Vec<i32>,
    reference: Vec<Option<&'a str>>,
    callback_url: Vec<Option<&'a str>>,
    schedule_at: Vec<Option<DateTime<Utc>>>,
    validity_period: Vec<Option<i32>>,
    metadata: Vec<Option<serde_json::Value>>,
    correlation_id: Vec<&'a str>,
    created_at: Vec<DateTime<Utc>>,
    event_subjects: Vec<Option<&'a str>>,
    event_headers: Vec<Option<Headers<'a>>>,
    event_payloads: Vec<Option<&'a [u8]>>,
    key_tenants: Vec<&'a str>,
    key_scopes: Vec<&'a str>,
    keys: Vec<&'a str>,
    key_fingerprints: Vec<&'a str>,
    key_statuses: Vec<i16>,
    key_headers: Vec<sqlx::types::Json<&'a [(String, String)]>>,
    key_bodies: Vec<&'a [u8]>,
    key_created_at: Vec<DateTime<Utc>>,
    key_expires_at: Vec<DateTime<Utc>>,
    key_requests: Vec<i32>,
    unkeyed_requests: Vec<i32>,
    message_requests: Vec<i32>,
}

impl<'a> AcceptRows<'a> {
    fn of(batch: &[&'a Acceptance]) -> Self {
        let mut rows = Self::default();
        for (request, a) in batch.iter().enumerate() {
            let request = i32::try_from(request).unwrap_or(i32::MAX);
            let mut events = a.outbox.iter().peekable();
            for m in &a.messages {
                // Events come in message order, at most one per message
                // (none where shadow publishing is off).
                let event = match events.peek() {
                    Some(e) if e.message_id == m.id => events.next(),
                    _ => a.outbox.iter().find(|e| e.message_id == m.id),
                };
                rows.event_subjects.push(event.map(|e| e.subject.as_str()));
                rows.event_headers
                    .push(event.map(|e| sqlx::types::Json(e.headers.as_slice())));
                rows.event_payloads
                    .push(event.map(|e| e.payload.as_slice()));
                rows.message_ids.push(m.id.to_string());
                rows.tenants.push(m.tenant.as_str());
                rows.shadow.push(m.shadow);
                rows.to.push(m.to.as_str());
                rows.from.push(m.from.as_str());
                rows.body.push(m.body.as_str());
                rows.encoding.push(m.body.encoding().as_str());
                rows.segments
                    .push(i32::try_from(m.body.segments()).unwrap_or(i32::MAX));
                rows.reference.push(m.reference.as_deref());
                rows.callback_url.push(m.callback_url.as_deref());
                rows.schedule_at.push(m.schedule_at);
                rows.validity_period
                    .push(m.validity_period.and_then(|v| i32::try_from(v).ok()));
                rows.metadata
                    .push(m.metadata.clone().map(serde_json::Value::Object));
                rows.correlation_id.push(m.correlation_id.as_str());
                rows.created_at.push(m.created_at);
                rows.message_requests.push(request);
            }
            match &a.idempotency {
                Some(idem) => {
                    rows.key_tenants.push(idem.tenant.as_str());
                    rows.key_scopes.push(idem.scope.as_str());
                    rows.keys.push(idem.key.as_str());
                    rows.key_fingerprints.push(idem.fingerprint.as_str());
                    rows.key_statuses
                        .push(i16::try_from(idem.response.status).unwrap_or(i16::MAX));
                    rows.key_headers
                        .push(sqlx::types::Json(idem.response.headers.as_slice()));
                    rows.key_bodies.push(idem.response.body.as_slice());
                    rows.key_created_at.push(idem.created_at);
                    rows.key_expires_at.push(idem.expires_at);
                    rows.key_requests.push(request);
                }
                None => rows.unkeyed_requests.push(request),
            }
        }
        rows
    }
}

/// A stored id; the column's CHECK constraint makes a failure here a bug.
pub(super) fn parse_id(s: &str) -> Result<MessageId, sqlx::Error> {
    MessageId::parse(s).map_err(|e| sqlx::Error::Decode(format!("stored message id: {e}").into()))
}

/// The stored history (statuses from downstream) with the entries the
/// message's own timestamps stand for: `accepted` at `created_at`, and
/// `queued` at `published_at` once published. A stored row of either
/// status (a downstream `queued` that came before the relay published;
/// rows a migrated database kept) is what was recorded first and wins.
pub(super) fn with_derived_history(
    mut history: Vec<HistoryEntry>,
    created_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
) -> Vec<HistoryEntry> {
    let has = |h: &[HistoryEntry], s: MessageStatus| h.iter().any(|e| e.status == s.as_str());
    if !has(&history, MessageStatus::Accepted) {
        history.push(HistoryEntry {
            status: MessageStatus::Accepted.as_str().to_owned(),
            at: created_at,
            error_code: None,
        });
    }
    if let Some(at) = published_at
        && !has(&history, MessageStatus::Queued)
    {
        history.push(HistoryEntry {
            status: MessageStatus::Queued.as_str().to_owned(),
            at,
            error_code: None,
        });
    }
    history
}

/// History in lifecycle order; ties on time broken by rank.
pub(super) fn sort_history(mut h: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    h.sort_by_key(|e| {
        (
            e.at,
            MessageStatus::parse(&e.status).map_or(0, MessageStatus::rank),
        )
    });
    h
}
