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
use orchestrator::store::{Acceptance, PgStore};
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
    let ids: Vec<_> = rows.iter().map(|r| r.message_id).collect();
    store.mark_published(&ids).await.expect("mark published");
    ids.len()
}

#[tokio::test]
async fn relay_batches_do_not_scan_the_grown_tables() {
    let db = TestDatabase::create().await;
    let store = db.store_committing_alone().await;
    // An ANALYZE by autovacuum (where it is on) would replace stale plans
    // and hide the regression this test is for.
    sqlx::raw_sql("ALTER TABLE orch.messages SET (autovacuum_enabled = off);")
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

    drop(store);
    let pool = one_connection(&db).await;
    statistics_flushed(&pool).await;
    let stats = sqlx::query(
        "SELECT coalesce(sum(seq_tup_read), 0)::int8, coalesce(sum(n_tup_upd), 0)::int8
           FROM pg_stat_user_tables
          WHERE schemaname = 'orch' AND relname = 'messages'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let (read, updates): (i64, i64) = (stats.get(0), stats.get(1));
    // The statistics are there at all: 240 claims and 240 marks.
    assert!(
        updates >= 480,
        "table statistics collected ({updates} message updates)"
    );
    // One sequential scan of a grown table (6 040 rows) is over the limit:
    // planned per batch, the relay reads only the 40 tiny rounds' few rows
    // sequentially (the tiny-table plan read 48 320 when this was written).
    assert!(
        read < 6_000,
        "relay batches read {read} rows sequentially from messages"
    );
}

/// A pool of one connection: [`statistics_flushed`] waits for every other
/// backend of the database to go, so the test's own must be the only one.
async fn one_connection(db: &TestDatabase) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect")
}

/// Statistics are flushed when a backend exits: waits until the dropped
/// store's backends have gone.
async fn statistics_flushed(pool: &sqlx::PgPool) {
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
    if gone.is_none() {
        let left: Vec<String> = sqlx::query_scalar(
            "SELECT format('%s %s %s', pid, state, left(query, 60)) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        panic!("the store's connections did not close: {left:?}");
    }
}

/// Heap pages of `orch.messages` read so far (from cache or disk).
async fn message_heap_pages(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0))::int8
           FROM pg_statio_user_tables WHERE schemaname = 'orch' AND relname = 'messages'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The partial index of unpublished rows keeps an entry for every row
/// published since the last vacuum. A claim must not visit each of them
/// in the heap every time: done as a bitmap scan (what Postgres planned
/// for a claim of a few rows), a claim that found nothing read ~2 400
/// heap pages 6 s into a bench, and the claims were the largest item in
/// Postgres's profile. Done as an index scan, the first claim marks the
/// entries dead and later claims skip them.
#[tokio::test]
async fn claims_skip_published_rows_instead_of_visiting_each_one() {
    let db = TestDatabase::create().await;
    let store = db.store_committing_alone().await;
    let pool = one_connection(&db).await;
    // No vacuum: the published rows' index entries stay, as they do
    // between two vacuums of a busy table.
    sqlx::raw_sql("ALTER TABLE orch.messages SET (autovacuum_enabled = off);")
        .execute(&pool)
        .await
        .expect("autovacuum off for the test's tables");
    for _ in 0..30 {
        store.accept(acceptance(100)).await.expect("accept");
    }
    let mut published = 0;
    loop {
        match relay_round(&store, 512).await {
            0 => break,
            n => published += n,
        }
    }
    assert_eq!(published, 3_000);
    drop(store);
    statistics_flushed(&pool).await;
    let before = message_heap_pages(&pool).await;
    // The table's size, read without reading its pages.
    let table_pages: i64 = sqlx::query_scalar(
        "SELECT (pg_relation_size('orch.messages') / current_setting('block_size')::int8)::int8",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(table_pages > 100, "{table_pages} pages");

    // Fresh connections, as after a restart; 50 claims with nothing to do.
    let store = db.store_committing_alone().await;
    for _ in 0..50 {
        assert_eq!(relay_round(&store, 512).await, 0);
    }
    drop(store);
    statistics_flushed(&pool).await;
    let read = message_heap_pages(&pool).await - before;
    // A bitmap scan reads every page holding a published row, 50 times
    // over (10 700 pages here, 37 times the table). An index scan reads
    // them once, when it marks the entries dead. The marking needs the
    // rows dead to every snapshot; in the parallel suite another test's
    // transaction can delay it by a claim or two (650 pages seen once,
    // against 292 when run alone). Hence 5 times the table, not 1.
    assert!(
        read < 5 * table_pages,
        "50 empty claims read {read} heap pages of messages (the table has {table_pages})"
    );
}

/// The message row is its own outbox: claimed in creation order, a whole
/// batch marked published in one statement (first `published_at` kept),
/// its event dropped, and `accepted`/`queued` read back from the row's
/// timestamps with no history rows; downstream statuses are recorded as
/// before and the lifecycle only moves forward.
#[tokio::test]
async fn a_batch_is_published_in_one_statement_and_reads_back_queued() {
    use orchestrator::store::{MessageStatus, StatusApplied, StatusEvent};
    let db = TestDatabase::create().await;
    let store = db.store_committing_alone().await;
    let pool = db.pool().await;
    let accepted = acceptance(5);
    store.accept(accepted.clone()).await.expect("accept");
    let ids: Vec<_> = accepted.messages.iter().map(|m| m.id).collect();

    let rows = store
        .claim_outbox(3, Duration::from_secs(10))
        .await
        .expect("claim");
    let claimed: Vec<_> = rows.iter().map(|r| r.message_id).collect();
    assert_eq!(claimed, ids[..3], "oldest first, in creation order");
    assert_eq!(rows[0].payload, ids[0].to_string().into_bytes());
    assert_eq!(rows[0].subject, "relay.sms.outbound.request");
    assert_eq!(rows[0].attempts, 1);
    // Leased: a second relay gets only the other two.
    let other = store
        .claim_outbox(10, Duration::from_secs(10))
        .await
        .expect("claim");
    assert_eq!(
        other.iter().map(|r| r.message_id).collect::<Vec<_>>(),
        ids[3..]
    );

    store.mark_published(&claimed).await.expect("mark");
    let published: Vec<(String, Option<chrono::DateTime<chrono::Utc>>, bool)> = sqlx::query_as(
        "SELECT status, published_at, event_payload IS NULL AND event_headers IS NULL
           FROM orch.messages ORDER BY created_at, id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (i, (status, at, dropped)) in published.iter().enumerate() {
        let done = i < 3;
        assert_eq!(status, if done { "queued" } else { "accepted" }, "row {i}");
        assert_eq!(at.is_some(), done, "row {i}");
        assert_eq!(*dropped, done, "row {i}");
    }
    let first_at = published[0].1.unwrap();
    // Marked again (a relay whose lease ran out): the first time stays.
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .mark_published(&claimed[..1])
        .await
        .expect("mark again");
    let again: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT published_at FROM orch.messages WHERE id = $1")
            .bind(ids[0].to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(again, first_at);

    let tenant = orchestrator::domain::TenantId::parse("tenant-relay").unwrap();
    let view = store
        .get_message(tenant.as_str(), false, ids[0])
        .await
        .expect("read")
        .expect("found");
    let history: Vec<_> = view
        .status_history
        .iter()
        .map(|h| (h.status.as_str(), h.at))
        .collect();
    assert_eq!(
        history,
        vec![("accepted", view.created_at), ("queued", first_at)]
    );
    assert_eq!(view.updated_at, first_at);

    // Downstream: `accepted`, and `queued` once published, are on record;
    // `sent` is written and moves the message; a late `queued` after it
    // does not move it back.
    let start = chrono::Utc::now();
    let event = |id, status, after_ms| StatusEvent {
        id,
        status,
        at: start + chrono::Duration::milliseconds(after_ms),
        error_code: None,
    };
    for (e, expected) in [
        (
            event(ids[0], MessageStatus::Accepted, 0),
            StatusApplied::Duplicate,
        ),
        (
            event(ids[0], MessageStatus::Queued, 0),
            StatusApplied::Duplicate,
        ),
        (
            event(ids[0], MessageStatus::Sent, 10),
            StatusApplied::Applied,
        ),
        (
            event(ids[4], MessageStatus::Sent, 10),
            StatusApplied::Applied,
        ),
        (
            event(ids[4], MessageStatus::Queued, 20),
            StatusApplied::Stale,
        ),
    ] {
        assert_eq!(
            store.apply_status(&e).await.expect("apply"),
            expected,
            "{e:?}"
        );
    }
    let history_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orch.message_status_history")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(history_rows, 3, "sent, sent, the late queued");
    // The downstream `queued` recorded before publishing is the one shown,
    // and publishing later keeps it (and the status `sent`).
    store.mark_published(&ids[3..]).await.expect("mark");
    let view = store
        .get_message(tenant.as_str(), false, ids[4])
        .await
        .expect("read")
        .expect("found");
    assert_eq!(view.status, "sent");
    let statuses: Vec<_> = view
        .status_history
        .iter()
        .map(|h| h.status.as_str())
        .collect();
    assert_eq!(statuses, vec!["accepted", "sent", "queued"]);
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orch.messages WHERE published_at IS NULL AND event_subject IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 0);
}
