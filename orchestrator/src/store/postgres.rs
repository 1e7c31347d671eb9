//! Postgres, schema `orch`: the production store.
//!
//! Concurrency is decided here, not in Redis. Two requests with one
//! Idempotency-Key race on the primary key of `orch.idempotency_keys`: the
//! second `INSERT` waits on the first's uncommitted row, then sees it
//! committed (and replays it) or rolled back (and proceeds). The wait is
//! bounded by the connection's `lock_timeout`; past it the request is told
//! the key is in flight.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use uuid::Uuid;

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

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let options = options.options([
            ("lock_timeout", KEY_LOCK_TIMEOUT),
            ("statement_timeout", "15s"),
            ("idle_in_transaction_session_timeout", "30s"),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// One statement, one round trip: the key, the messages, their history
    /// and their outbox rows are data-modifying CTEs of a single `INSERT`
    /// (atomic on its own), and the rows are written only if the key was
    /// taken. No `NOTIFY` here: it takes a global lock at commit and cost a
    /// third of the throughput; this replica's relay is woken in process,
    /// and relays with a backlog ask the others for help (see `relay`).
    pub async fn accept(&self, a: &Acceptance) -> Result<AcceptOutcome, StoreError> {
        // Built once from constants (no request data): safe to send as is.
        let sql: &'static str = if a.idempotency.is_some() {
            ACCEPT_KEYED.as_str()
        } else {
            ACCEPT_UNKEYED.as_str()
        };
        let query = bind_acceptance(sqlx::query_scalar::<_, i64>(sql), a);
        let query = match &a.idempotency {
            Some(idem) => query
                .bind(&idem.tenant)
                .bind(&idem.scope)
                .bind(&idem.key)
                .bind(&idem.fingerprint)
                .bind(i16::try_from(idem.response.status).unwrap_or(i16::MAX))
                .bind(sqlx::types::Json(&idem.response.headers))
                .bind(&idem.response.body)
                .bind(idem.created_at)
                .bind(idem.expires_at),
            None => query,
        };
        match query.fetch_one(&self.pool).await {
            Ok(taken) if taken > 0 => Ok(AcceptOutcome::Accepted),
            Ok(_) => {
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
            // lock_not_available: a twin holds the key past lock_timeout.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => {
                Ok(AcceptOutcome::KeyBusy)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn find_idempotency(
        &self,
        tenant: &str,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT fingerprint, response_status, response_headers, response_body, created_at, expires_at
               FROM orch.idempotency_keys
              WHERE tenant_id = $1 AND scope = $2 AND key = $3 AND expires_at > $4",
        )
        .bind(tenant)
        .bind(scope)
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
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
        id: Uuid,
    ) -> Result<Option<MessageView>, StoreError> {
        let row = sqlx::query(
            "SELECT id, status, to_number, sender, encoding, segments, reference, callback_url,
                    schedule_at, validity_period, metadata, created_at, updated_at
               FROM orch.messages WHERE id = $1 AND tenant_id = $2 AND shadow = $3",
        )
        .bind(id)
        .bind(tenant)
        .bind(shadow)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let history = sqlx::query(
            "SELECT status, at, error_code FROM orch.message_status_history
              WHERE message_id = $1 ORDER BY at, status",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|h| {
            Ok(HistoryEntry {
                status: h.try_get("status")?,
                at: h.try_get("at")?,
                error_code: h.try_get("error_code")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let metadata: Option<sqlx::types::Json<serde_json::Map<String, serde_json::Value>>> =
            row.try_get("metadata")?;
        Ok(Some(MessageView {
            id: row.try_get("id")?,
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
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            status_history: sort_history(history),
        }))
    }

    pub async fn claim_outbox(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "UPDATE orch.outbox SET lease_until = now() + make_interval(secs => $2),
                                    attempts = attempts + 1
              WHERE id IN (SELECT id FROM orch.outbox
                            WHERE published_at IS NULL AND next_attempt_at <= now()
                              AND (lease_until IS NULL OR lease_until < now())
                            ORDER BY id LIMIT $1
                            FOR UPDATE SKIP LOCKED)
          RETURNING id, message_id, subject, headers, payload, attempts, created_at",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .into_iter()
            .map(|r| {
                let headers: sqlx::types::Json<Vec<(String, String)>> = r.try_get("headers")?;
                Ok(OutboxRow {
                    id: r.try_get("id")?,
                    message_id: r.try_get("message_id")?,
                    subject: r.try_get("subject")?,
                    headers: headers.0,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    pub async fn mark_published(&self, ids: &[(i64, Uuid)]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let outbox_ids: Vec<i64> = ids.iter().map(|(i, _)| *i).collect();
        let message_ids: Vec<Uuid> = ids.iter().map(|(_, m)| *m).collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE orch.outbox SET published_at = now(), lease_until = NULL, last_error = NULL
              WHERE id = ANY($1)",
        )
        .bind(&outbox_ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE orch.messages SET status = 'queued', updated_at = now()
              WHERE id = ANY($1) AND status = 'accepted'",
        )
        .bind(&message_ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO orch.message_status_history (message_id, status, at)
             SELECT m, 'queued', now() FROM unnest($1::uuid[]) AS m
             ON CONFLICT DO NOTHING",
        )
        .bind(&message_ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn mark_failed(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE orch.outbox SET next_attempt_at = $2, lease_until = NULL, last_error = $3
              WHERE id = $1",
        )
        .bind(id)
        .bind(next_attempt_at)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS pending, min(created_at) AS oldest
               FROM orch.outbox WHERE published_at IS NULL",
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
        let current: Option<String> = sqlx::query_scalar(
            "SELECT status FROM orch.messages WHERE id = $1 AND NOT shadow FOR UPDATE",
        )
        .bind(e.id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(current) = current else {
            return Ok(StatusApplied::UnknownId);
        };
        let recorded = sqlx::query(
            "INSERT INTO orch.message_status_history (message_id, status, at, error_code)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(e.id)
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
                .bind(e.id)
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
        .bind(now)
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn reap_outbox(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM orch.outbox WHERE id IN (
                SELECT id FROM orch.outbox WHERE published_at < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(before)
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn reap_shadow(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM orch.messages WHERE id IN (
                SELECT id FROM orch.messages WHERE shadow AND created_at < $1
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(before)
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}

/// The rows of an acceptance as arrays: `$1`–`$15` messages, `$16`–`$19`
/// outbox; `$20`–`$28` the idempotency record.
const ACCEPT_ROWS: &str = "
  m AS (
    INSERT INTO orch.messages
      (id, tenant_id, shadow, status, to_number, sender, body, encoding, segments, reference,
       callback_url, schedule_at, validity_period, metadata, correlation_id, created_at, updated_at)
    SELECT id, tenant, shadow, 'accepted', to_number, sender, body, encoding, segments, reference,
           callback_url, schedule_at, validity_period, metadata, correlation_id, created_at, created_at
      FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[],
                  $7::text[], $8::int[], $9::text[], $10::text[], $11::timestamptz[], $12::int[],
                  $13::jsonb[], $14::text[], $15::timestamptz[])
        AS t(id, tenant, shadow, to_number, sender, body, encoding, segments, reference,
             callback_url, schedule_at, validity_period, metadata, correlation_id, created_at)
     WHERE {taken}
    RETURNING id, created_at),
  h AS (
    INSERT INTO orch.message_status_history (message_id, status, at)
    SELECT id, 'accepted', created_at FROM m),
  o AS (
    -- clock_timestamp(), not now(): the row's age then starts at (almost)
    -- commit, which is what the commit→PubAck latency metric measures.
    INSERT INTO orch.outbox (message_id, subject, headers, payload, created_at, next_attempt_at)
    SELECT m_id, s, hd, p, clock_timestamp(), clock_timestamp()
      FROM unnest($16::uuid[], $17::text[], $18::jsonb[], $19::bytea[]) WITH ORDINALITY
        AS t(m_id, s, hd, p, n)
     WHERE {taken}
     ORDER BY n)";

static ACCEPT_UNKEYED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH {} SELECT 1::int8",
        ACCEPT_ROWS.replace("{taken}", "true")
    )
});

static ACCEPT_KEYED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH k AS (
            INSERT INTO orch.idempotency_keys
              (tenant_id, scope, key, fingerprint, response_status, response_headers,
               response_body, created_at, expires_at)
            VALUES ($20, $21, $22, $23, $24, $25, $26, $27, $28)
            ON CONFLICT (tenant_id, scope, key) DO UPDATE SET
               fingerprint = EXCLUDED.fingerprint,
               response_status = EXCLUDED.response_status,
               response_headers = EXCLUDED.response_headers,
               response_body = EXCLUDED.response_body,
               created_at = EXCLUDED.created_at,
               expires_at = EXCLUDED.expires_at
            WHERE orch.idempotency_keys.expires_at <= EXCLUDED.created_at
            RETURNING 1 AS taken),
         {}
         SELECT count(*) FROM k",
        ACCEPT_ROWS.replace("{taken}", "EXISTS (SELECT 1 FROM k)")
    )
});

type AcceptQuery<'q> =
    sqlx::query::QueryScalar<'q, sqlx::Postgres, i64, sqlx::postgres::PgArguments>;

/// Binds `$1`–`$19`: whatever the batch size, one statement.
fn bind_acceptance<'q>(query: AcceptQuery<'q>, a: &'q Acceptance) -> AcceptQuery<'q> {
    let m = &a.messages;
    let o = &a.outbox;
    query
        .bind(m.iter().map(|m| m.id).collect::<Vec<Uuid>>())
        .bind(m.iter().map(|m| m.tenant.as_str()).collect::<Vec<&str>>())
        .bind(m.iter().map(|m| m.shadow).collect::<Vec<bool>>())
        .bind(m.iter().map(|m| m.to.as_str()).collect::<Vec<&str>>())
        .bind(m.iter().map(|m| m.from.as_str()).collect::<Vec<&str>>())
        .bind(m.iter().map(|m| m.body.as_str()).collect::<Vec<&str>>())
        .bind(
            m.iter()
                .map(|m| m.body.encoding().as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(
            m.iter()
                .map(|m| i32::try_from(m.body.segments()).unwrap_or(i32::MAX))
                .collect::<Vec<i32>>(),
        )
        .bind(
            m.iter()
                .map(|m| m.reference.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(
            m.iter()
                .map(|m| m.callback_url.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(
            m.iter()
                .map(|m| m.schedule_at)
                .collect::<Vec<Option<DateTime<Utc>>>>(),
        )
        .bind(
            m.iter()
                .map(|m| m.validity_period.and_then(|v| i32::try_from(v).ok()))
                .collect::<Vec<Option<i32>>>(),
        )
        .bind(
            m.iter()
                .map(|m| m.metadata.clone().map(serde_json::Value::Object))
                .collect::<Vec<Option<serde_json::Value>>>(),
        )
        .bind(
            m.iter()
                .map(|m| m.correlation_id.as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(
            m.iter()
                .map(|m| m.created_at)
                .collect::<Vec<DateTime<Utc>>>(),
        )
        .bind(o.iter().map(|e| e.message_id).collect::<Vec<Uuid>>())
        .bind(o.iter().map(|e| e.subject.as_str()).collect::<Vec<&str>>())
        .bind(
            o.iter()
                .map(|e| serde_json::to_value(&e.headers).unwrap_or_default())
                .collect::<Vec<serde_json::Value>>(),
        )
        .bind(
            o.iter()
                .map(|e| e.payload.as_slice())
                .collect::<Vec<&[u8]>>(),
        )
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
