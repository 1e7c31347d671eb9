//! Every SQL query the fault suite and the tenant-isolation test run, in one
//! place so a schema change (issue 17) adapts here only. They read the
//! messages table (the truth of what was accepted) and never the outbox:
//! what was published is counted from the stream itself.

use chrono::{DateTime, Utc};

/// One stored message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: String,
    pub tenant: String,
    pub shadow: bool,
    pub created_at: DateTime<Utc>,
}

/// Every message in the orchestrator's database, shadow ones included.
pub async fn messages(pool: &sqlx::PgPool) -> Vec<StoredMessage> {
    let rows: Vec<(String, String, bool, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, tenant_id, shadow, created_at FROM orch.messages")
            .fetch_all(pool)
            .await
            .expect("read orch.messages");
    rows.into_iter()
        .map(|(id, tenant, shadow, created_at)| StoredMessage {
            id,
            tenant,
            shadow,
            created_at,
        })
        .collect()
}

/// How many live (non-shadow) messages are stored.
pub async fn live_message_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orch.messages WHERE NOT shadow")
        .fetch_one(pool)
        .await
        .expect("count orch.messages")
}

/// Idempotency records per (tenant, key) for the live routes: how many
/// tenants hold each key (a key shared by two tenants must have one record
/// per tenant).
pub async fn idempotency_tenants_per_key(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT key, count(DISTINCT tenant_id) FROM orch.idempotency_keys
          WHERE scope IN ('send', 'bulk') GROUP BY key",
    )
    .fetch_all(pool)
    .await
    .expect("read orch.idempotency_keys")
}
