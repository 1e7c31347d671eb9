//! The relay's bookkeeping statements on a real Postgres, as the tables
//! grow.
//!
//! Prepared once per connection, `UPDATE … WHERE id = ANY($1)` kept the
//! generic plan Postgres chose while the tables were nearly empty: a
//! sequential scan, which with no `ANALYZE` to invalidate it (autovacuum
//! off, as on the CI machine) then read the whole of `orch.messages` for
//! every relay batch. The relay's statements now go unprepared and are
//! planned with each batch.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::TestDatabase;
use orchestrator::store::{Acceptance, GroupCommit, PgStore};
use sqlx::Row;

fn acceptance(messages: usize) -> Arc<Acceptance> {
    let (messages, outbox) =
        integration_tests::new_messages("tenant-relay", messages, "relay.sms.outbound.request");
    Arc::new(Acceptance {
        idempotency: None,
        messages,
        outbox,
    })
}

/// One relay round: lease up to `limit` rows, mark them published.
async fn relay_round(store: &PgStore, limit: i64) -> usize {
    let rows = store
        .claim_outbox(limit, Duration::from_secs(10))
        .await
        .expect("claim");
    let ids: Vec<_> = rows.iter().map(|r| (r.id, r.message_id)).collect();
    store.mark_published(&ids).await.expect("mark published");
    ids.len()
}

#[tokio::test]
async fn relay_batches_do_not_scan_the_grown_tables() {
    let db = TestDatabase::create().await;
    let store = PgStore::connect(
        db.url.parse().expect("database URL"),
        4,
        GroupCommit {
            max_requests: 1,
            max_messages: 1000,
            concurrency: 1,
        },
    )
    .await
    .expect("store connects and migrates");
    // An ANALYZE by autovacuum (where it is on) would replace stale plans
    // and hide the regression this test is for.
    sqlx::raw_sql(
        "ALTER TABLE orch.messages SET (autovacuum_enabled = off);
         ALTER TABLE orch.outbox SET (autovacuum_enabled = off);",
    )
    .execute(&db.pool().await)
    .await
    .expect("autovacuum off for the test's tables");

    // Tiny tables: every bookkeeping connection runs the relay's
    // statements well past the point where Postgres settles on a plan.
    for _ in 0..40 {
        store.accept(acceptance(1)).await.expect("accept");
        assert_eq!(relay_round(&store, 10).await, 1);
    }
    // The tables grow to 6 040 messages.
    for _ in 0..60 {
        store.accept(acceptance(100)).await.expect("accept");
    }
    // Batches against the grown tables, on the same connections.
    let mut published = 0;
    for _ in 0..20 {
        published += relay_round(&store, 10).await;
    }
    assert_eq!(published, 200);

    // Statistics are flushed when the store's backends exit.
    drop(store);
    let pool = db.pool().await;
    let gone = integration_tests::eventually(Duration::from_secs(15), || {
        let pool = pool.clone();
        async move {
            let others: i64 = sqlx::query(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
            (others == 0).then_some(())
        }
    })
    .await;
    assert!(gone.is_some(), "the store's connections closed");
    let stats = sqlx::query(
        "SELECT coalesce(sum(seq_tup_read), 0)::int8,
                coalesce(sum(n_tup_upd) FILTER (WHERE relname = 'outbox'), 0)::int8
           FROM pg_stat_user_tables
          WHERE schemaname = 'orch' AND relname IN ('messages', 'outbox')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (read, outbox_updates): (i64, i64) = (stats.get(0), stats.get(1));
    // The statistics are there at all: 240 claims and 240 marks.
    assert!(
        outbox_updates >= 480,
        "table statistics collected ({outbox_updates} outbox updates)"
    );
    // One sequential scan of a grown table (6 040 rows) is over the limit:
    // planned per batch, the relay reads only the 40 tiny rounds' few rows
    // sequentially (the tiny-table plan read 48 320 when this was written).
    assert!(
        read < 6_000,
        "relay batches read {read} rows sequentially from messages/outbox"
    );
}
