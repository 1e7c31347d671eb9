//! Embedded SQLite: the default when no `DATABASE_URL` is set, so the README
//! demo needs no servers. Same tables and semantics as Postgres; SQLite's
//! single writer replaces row locks (every writing transaction is
//! `BEGIN IMMEDIATE`, so two writers queue instead of failing on upgrade).
//! Timestamps are fixed-width RFC 3339 text, so text order is time order.

use std::path::Path;
use std::time::Duration;

use crate::domain::MessageId;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    AcceptOutcome, Acceptance, HistoryEntry, IdempotencyRecord, MessageStatus, MessageView,
    OutboxBacklog, OutboxRow, StatusApplied, StatusEvent, StoreError, StoredResponse,
};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Other(anyhow::anyhow!("bad timestamp in SQLite: {e}")))
}

fn parse_id(s: &str) -> Result<MessageId, StoreError> {
    MessageId::parse(s)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("bad message id in SQLite: {e}")))
}

impl SqliteStore {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before the 202 goes out.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn accept(&self, a: &Acceptance) -> Result<AcceptOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(idem) = &a.idempotency {
            let taken = sqlx::query(
                "INSERT INTO idempotency_keys
                   (tenant_id, scope, key, fingerprint, response_status, response_headers,
                    response_body, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (tenant_id, scope, key) DO UPDATE SET
                    fingerprint = excluded.fingerprint,
                    response_status = excluded.response_status,
                    response_headers = excluded.response_headers,
                    response_body = excluded.response_body,
                    created_at = excluded.created_at,
                    expires_at = excluded.expires_at
                 WHERE idempotency_keys.expires_at <= excluded.created_at",
            )
            .bind(&idem.tenant)
            .bind(&idem.scope)
            .bind(&idem.key)
            .bind(&idem.fingerprint)
            .bind(i64::from(idem.response.status))
            .bind(serde_json::to_string(&idem.response.headers).map_err(anyhow::Error::from)?)
            .bind(&idem.response.body)
            .bind(ts(idem.created_at))
            .bind(ts(idem.expires_at))
            .execute(&mut *tx)
            .await?;
            if taken.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(
                    match self
                        .find_idempotency(&idem.tenant, &idem.scope, &idem.key, idem.created_at)
                        .await?
                    {
                        Some(existing) => AcceptOutcome::KeyExists(existing),
                        None => AcceptOutcome::KeyBusy,
                    },
                );
            }
        }
        for m in &a.messages {
            let created = ts(m.created_at);
            sqlx::query(
                "INSERT INTO messages
                   (id, tenant_id, shadow, status, to_number, sender, body, encoding, segments,
                    reference, callback_url, schedule_at, validity_period, metadata, correlation_id,
                    created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'accepted', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)",
            )
            .bind(m.id.to_string())
            .bind(m.tenant.as_str())
            .bind(m.shadow)
            .bind(m.to.as_str())
            .bind(m.from.as_str())
            .bind(m.body.as_str())
            .bind(m.body.encoding().as_str())
            .bind(i64::from(m.body.segments()))
            .bind(&m.reference)
            .bind(&m.callback_url)
            .bind(m.schedule_at.map(ts))
            .bind(m.validity_period.map(i64::from))
            .bind(
                m.metadata
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(anyhow::Error::from)?,
            )
            .bind(&m.correlation_id)
            .bind(&created)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO message_status_history (message_id, status, at) VALUES (?1, 'accepted', ?2)",
            )
            .bind(m.id.to_string())
            .bind(&created)
            .execute(&mut *tx)
            .await?;
        }
        let now = ts(Utc::now());
        for e in &a.outbox {
            sqlx::query(
                "INSERT INTO outbox (message_id, subject, headers, payload, created_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )
            .bind(e.message_id.to_string())
            .bind(&e.subject)
            .bind(serde_json::to_string(&e.headers).map_err(anyhow::Error::from)?)
            .bind(&e.payload)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(AcceptOutcome::Accepted)
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
               FROM idempotency_keys
              WHERE tenant_id = ?1 AND scope = ?2 AND key = ?3 AND expires_at > ?4",
        )
        .bind(tenant)
        .bind(scope)
        .bind(key)
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let headers: String = row.try_get("response_headers")?;
        Ok(Some(IdempotencyRecord {
            tenant: tenant.to_owned(),
            scope: scope.to_owned(),
            key: key.to_owned(),
            fingerprint: row.try_get("fingerprint")?,
            response: StoredResponse {
                status: u16::try_from(row.try_get::<i64, _>("response_status")?).unwrap_or(500),
                headers: serde_json::from_str(&headers).map_err(anyhow::Error::from)?,
                body: row.try_get("response_body")?,
            },
            created_at: parse_ts(row.try_get("created_at")?)?,
            expires_at: parse_ts(row.try_get("expires_at")?)?,
        }))
    }

    pub async fn get_message(
        &self,
        tenant: &str,
        shadow: bool,
        id: MessageId,
    ) -> Result<Option<MessageView>, StoreError> {
        let row = sqlx::query(
            "SELECT id, status, to_number, sender, encoding, segments, reference, callback_url,
                    schedule_at, validity_period, metadata, created_at, updated_at
               FROM messages WHERE id = ?1 AND tenant_id = ?2 AND shadow = ?3",
        )
        .bind(id.to_string())
        .bind(tenant)
        .bind(shadow)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut history = Vec::new();
        for h in sqlx::query(
            "SELECT status, at, error_code FROM message_status_history WHERE message_id = ?1",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?
        {
            history.push(HistoryEntry {
                status: h.try_get("status")?,
                at: parse_ts(h.try_get("at")?)?,
                error_code: h.try_get("error_code")?,
            });
        }
        let metadata: Option<String> = row.try_get("metadata")?;
        Ok(Some(MessageView {
            id: parse_id(row.try_get("id")?)?,
            status: row.try_get("status")?,
            to: row.try_get("to_number")?,
            from: row.try_get("sender")?,
            encoding: row.try_get("encoding")?,
            segments: u32::try_from(row.try_get::<i64, _>("segments")?).unwrap_or_default(),
            reference: row.try_get("reference")?,
            callback_url: row.try_get("callback_url")?,
            schedule_at: row
                .try_get::<Option<String>, _>("schedule_at")?
                .as_deref()
                .map(parse_ts)
                .transpose()?,
            validity_period: row
                .try_get::<Option<i64>, _>("validity_period")?
                .and_then(|v| u32::try_from(v).ok()),
            metadata: metadata
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(anyhow::Error::from)?,
            created_at: parse_ts(row.try_get("created_at")?)?,
            updated_at: parse_ts(row.try_get("updated_at")?)?,
            status_history: super::postgres::sort_history(history),
        }))
    }

    pub async fn claim_outbox(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let now = Utc::now();
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let rows = sqlx::query(
            "UPDATE outbox SET lease_until = ?3, attempts = attempts + 1
              WHERE id IN (SELECT id FROM outbox
                            WHERE published_at IS NULL AND next_attempt_at <= ?2
                              AND (lease_until IS NULL OR lease_until < ?2)
                            ORDER BY id LIMIT ?1)
          RETURNING id, message_id, subject, headers, payload, attempts, created_at",
        )
        .bind(limit)
        .bind(ts(now))
        .bind(ts(lease_until))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let headers: String = r.try_get("headers")?;
            let id: i64 = r.try_get("id")?;
            out.push((
                id,
                OutboxRow {
                    message_id: parse_id(r.try_get("message_id")?)?,
                    subject: r.try_get("subject")?,
                    headers: serde_json::from_str(&headers).map_err(anyhow::Error::from)?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                    created_at: parse_ts(r.try_get("created_at")?)?,
                },
            ));
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    pub async fn mark_published(&self, ids: &[MessageId]) -> Result<(), StoreError> {
        let now = ts(Utc::now());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for message_id in ids {
            sqlx::query(
                "UPDATE outbox SET published_at = ?2, lease_until = NULL, last_error = NULL
                  WHERE message_id = ?1 AND published_at IS NULL",
            )
            .bind(message_id.to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE messages SET status = 'queued', updated_at = ?2 WHERE id = ?1 AND status = 'accepted'",
            )
            .bind(message_id.to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO message_status_history (message_id, status, at) VALUES (?1, 'queued', ?2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(message_id.to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn mark_failed(
        &self,
        id: MessageId,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = ?2, lease_until = NULL, last_error = ?3
              WHERE message_id = ?1 AND published_at IS NULL",
        )
        .bind(id.to_string())
        .bind(ts(next_attempt_at))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS pending, min(created_at) AS oldest FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxBacklog {
            pending: row.try_get("pending")?,
            oldest: row
                .try_get::<Option<String>, _>("oldest")?
                .as_deref()
                .map(parse_ts)
                .transpose()?,
        })
    }

    pub async fn apply_status(&self, e: &StatusEvent) -> Result<StatusApplied, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM messages WHERE id = ?1 AND shadow = 0")
                .bind(e.id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else {
            return Ok(StatusApplied::UnknownId);
        };
        let recorded = sqlx::query(
            "INSERT INTO message_status_history (message_id, status, at, error_code)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )
        .bind(e.id.to_string())
        .bind(e.status.as_str())
        .bind(ts(e.at))
        .bind(&e.error_code)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() == 0 {
            return Ok(StatusApplied::Duplicate);
        }
        let current = MessageStatus::parse(&current).unwrap_or(MessageStatus::Accepted);
        let outcome = if e.status.rank() > current.rank() {
            sqlx::query("UPDATE messages SET status = ?2, updated_at = ?3 WHERE id = ?1")
                .bind(e.id.to_string())
                .bind(e.status.as_str())
                .bind(ts(Utc::now()))
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
            "DELETE FROM idempotency_keys WHERE rowid IN (
                SELECT rowid FROM idempotency_keys WHERE expires_at <= ?1 LIMIT ?2)",
        )
        .bind(ts(now))
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn reap_outbox(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM outbox WHERE id IN (
                SELECT id FROM outbox WHERE published_at < ?1 LIMIT ?2)",
        )
        .bind(ts(before))
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn reap_unpublished(
        &self,
        subject: &str,
        before: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM outbox WHERE id IN (
                SELECT id FROM outbox
                 WHERE published_at IS NULL AND subject = ?1 AND created_at < ?2 LIMIT ?3)",
        )
        .bind(subject)
        .bind(ts(before))
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn reap_shadow(&self, before: DateTime<Utc>, batch: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM messages WHERE id IN (
                SELECT id FROM messages WHERE shadow = 1 AND created_at < ?1 LIMIT ?2)",
        )
        .bind(ts(before))
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}
