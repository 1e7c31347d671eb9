//! Group commit on a real Postgres: many requests in one statement and one
//! commit, each answered as if it had been committed alone.
//!
//! These drive `PgStore` directly (with one commit slot, so that requests
//! queue and share commits deterministically enough); the HTTP-level
//! suites (submit_api, idempotency, publish) run through the same
//! committer with its defaults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use integration_tests::TestDatabase;
use orchestrator::store::{
    AcceptOutcome, Acceptance, GroupCommit, IdempotencyRecord, PgStore, StoredResponse,
};
use sqlx::Row;

const TENANT: &str = "tenant-gc";

fn acceptance(key: Option<&str>, fingerprint: &str, messages: usize) -> Arc<Acceptance> {
    let now = Utc::now();
    let (messages, outbox) =
        integration_tests::new_messages(TENANT, messages, "gc.sms.outbound.request");
    Arc::new(Acceptance {
        idempotency: key.map(|key| IdempotencyRecord {
            tenant: TENANT.into(),
            scope: "POST /v1/sms/send".into(),
            key: key.into(),
            fingerprint: fingerprint.into(),
            response: StoredResponse {
                status: 201,
                headers: vec![("content-type".into(), "application/json".into())],
                body: format!("{{\"fingerprint\":\"{fingerprint}\"}}").into_bytes(),
            },
            created_at: now,
            expires_at: now + chrono::Duration::hours(48),
        }),
        messages,
        outbox,
    })
}

/// One commit slot, so a burst queues behind it.
fn limits(max_requests: usize) -> GroupCommit {
    GroupCommit {
        max_requests,
        max_messages: 1000,
        concurrency: 1,
        sizes: None,
    }
}

async fn store(db: &TestDatabase, max_requests: usize) -> PgStore {
    db.store(8, limits(max_requests)).await
}

async fn accept_all(store: &PgStore, batch: &[Arc<Acceptance>]) -> Vec<AcceptOutcome> {
    futures::future::join_all(batch.iter().map(|a| store.accept(a.clone())))
        .await
        .into_iter()
        .map(|r| r.expect("no store error"))
        .collect()
}

fn assert_all_accepted(outcomes: &[AcceptOutcome]) {
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, AcceptOutcome::Accepted)),
        "{outcomes:?}"
    );
}

/// How many transactions wrote the message rows (each row's `xmin`).
async fn commits(db: &TestDatabase) -> i64 {
    let pool = db.pool().await;
    sqlx::query("SELECT count(DISTINCT xmin::text) FROM orch.messages")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0)
}

async fn count(db: &TestDatabase, table: &str) -> i64 {
    let pool = db.pool().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM orch.{table}"
    )))
    .fetch_one(&pool)
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn concurrent_requests_share_commits_and_each_gets_its_own_rows() {
    let db = TestDatabase::create().await;
    let store = store(&db, 64).await;
    // 60 requests: unkeyed, keyed, and bulk-sized ones, all at once.
    let batch: Vec<_> = (0..60)
        .map(|i| match i % 3 {
            0 => acceptance(None, "-", 1),
            1 => acceptance(Some(&format!("key-{i}")), &format!("fp-{i}"), 1),
            _ => acceptance(Some(&format!("bulk-{i}")), &format!("fp-{i}"), 5),
        })
        .collect();
    let outcomes = accept_all(&store, &batch).await;
    assert_all_accepted(&outcomes);
    let expected: i64 = batch.iter().map(|a| a.messages.len() as i64).sum();
    assert_eq!(count(&db, "messages").await, expected);
    // One row per message and one per key: the message row is its own
    // outbox (an unpublished event on it) and `accepted` is its created_at,
    // so no history rows are written.
    assert_eq!(count(&db, "message_status_history").await, 0);
    assert_eq!(count(&db, "idempotency_keys").await, 40);
    // Queued behind one commit slot, the 60 requests shared a few commits.
    let shared = commits(&db).await;
    assert!(shared < 10, "60 requests took {shared} commits");

    // Each message row carries its own event, pending, in the partial
    // index the relay reads.
    let pool = db.pool().await;
    let (own, pending): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE convert_from(event_payload, 'UTF8') = id
                                   AND event_headers = jsonb_build_array(jsonb_build_array('Nats-Msg-Id', id))
                                   AND event_subject = 'gc.sms.outbound.request'),
                count(*) FILTER (WHERE published_at IS NULL AND event_subject IS NOT NULL)
           FROM orch.messages",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((own, pending), (expected, expected));
    let outbox_table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('orch.outbox')::text")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(outbox_table, None, "no separate outbox table");
}

#[tokio::test]
async fn copies_of_one_key_in_a_burst_store_one_message_and_replay_it() {
    let db = TestDatabase::create().await;
    let store = store(&db, 64).await;
    // Five copies of each of four keys, plus ten unkeyed requests, at once:
    // copies of a key never share a commit; the later ones find it stored.
    let mut batch = Vec::new();
    for _copy in 0..5 {
        for key in 0..4 {
            batch.push(acceptance(
                Some(&format!("dup-{key}")),
                &format!("fp-{key}"),
                1,
            ));
        }
        batch.push(acceptance(None, "-", 1));
        batch.push(acceptance(None, "-", 1));
    }
    let outcomes = accept_all(&store, &batch).await;
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, AcceptOutcome::Accepted))
        .count();
    assert_eq!(accepted, 4 + 10, "{outcomes:?}");
    for (a, o) in batch.iter().zip(&outcomes) {
        if let AcceptOutcome::KeyExists(existing) = o {
            let mine = a.idempotency.as_ref().unwrap();
            assert_eq!(existing.key, mine.key);
            assert_eq!(existing.fingerprint, mine.fingerprint);
        }
    }
    assert!(
        outcomes
            .iter()
            .all(|o| !matches!(o, AcceptOutcome::KeyBusy)),
        "{outcomes:?}"
    );
    assert_eq!(count(&db, "messages").await, 14);
    assert_eq!(count(&db, "idempotency_keys").await, 4);
}

#[tokio::test]
async fn a_key_held_elsewhere_fails_alone_and_its_batch_mates_are_accepted() {
    let db = TestDatabase::create().await;
    let store = store(&db, 64).await;
    // Another transaction holds two keys and does not finish: a request for
    // the first ties up the one commit slot for lock_timeout (2 s) while
    // the others queue behind it and then share a commit with the request
    // for the second held key. That statement fails on the lock; its
    // requests are retried alone.
    let pool = db.pool().await;
    let mut holder = pool.begin().await.unwrap();
    for key in ["held-1", "held-2"] {
        sqlx::query(
            "INSERT INTO orch.idempotency_keys
               (tenant_id, scope, key, fingerprint, response_status, response_headers,
                response_body, created_at, expires_at)
             VALUES ($1, 'POST /v1/sms/send', $2, 'other', 201, '[]', '', now(), now() + interval '1 day')",
        )
        .bind(TENANT)
        .bind(key)
        .execute(&mut *holder)
        .await
        .unwrap();
    }
    let first = tokio::spawn({
        let store = store.clone();
        let a = acceptance(Some("held-1"), "mine", 1);
        async move { store.accept(a).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut batch: Vec<_> = (0..9)
        .map(|i| acceptance(Some(&format!("free-{i}")), "fp", 1))
        .collect();
    batch.insert(4, acceptance(Some("held-2"), "mine", 1));
    let started = Instant::now();
    let timed = futures::future::join_all(batch.iter().map(|a| {
        let store = store.clone();
        let a = a.clone();
        async move {
            let outcome = store.accept(a).await.expect("no store error");
            (outcome, started.elapsed())
        }
    }))
    .await;

    assert!(matches!(
        first.await.unwrap().unwrap(),
        AcceptOutcome::KeyBusy
    ));
    for (i, (o, waited)) in timed.iter().enumerate() {
        if i == 4 {
            assert!(matches!(o, AcceptOutcome::KeyBusy), "held key: {o:?}");
        } else {
            assert!(matches!(o, AcceptOutcome::Accepted), "free key {i}: {o:?}");
            // Queued behind the first (~1.8 s), then the shared statement's
            // lock timeout (2 s): they did share it with the held key, and
            // were accepted after it failed.
            assert!(
                *waited >= Duration::from_secs(3),
                "free key {i}: {waited:?}"
            );
        }
    }
    // Nothing of the failed shared statement was kept, nothing was doubled.
    assert_eq!(count(&db, "messages").await, 9);
    holder.rollback().await.unwrap();
}

#[tokio::test]
async fn without_group_commit_each_request_commits_alone_with_the_same_answers() {
    let db = TestDatabase::create().await;
    let store = store(&db, 1).await;
    let mut batch: Vec<_> = (0..10)
        .map(|i| acceptance(Some(&format!("k-{i}")), "fp", 2))
        .collect();
    batch.push(acceptance(Some("k-0"), "fp", 2));
    let outcomes = accept_all(&store, &batch).await;
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, AcceptOutcome::Accepted))
        .count();
    assert_eq!(accepted, 10, "{outcomes:?}");
    // The two copies of k-0 race: one is stored, the other is told.
    let copies = [&outcomes[0], outcomes.last().unwrap()];
    assert_eq!(
        copies
            .iter()
            .filter(|o| matches!(o, AcceptOutcome::Accepted))
            .count(),
        1,
        "{copies:?}"
    );
    assert!(
        copies
            .iter()
            .any(|o| matches!(o, AcceptOutcome::KeyExists(_) | AcceptOutcome::KeyBusy)),
        "{copies:?}"
    );
    assert_eq!(count(&db, "messages").await, 20);
    assert_eq!(commits(&db).await, 10, "one commit per stored request");
}

#[tokio::test]
async fn an_idle_store_commits_each_request_alone_and_a_burst_behind_it_shares_commits() {
    let db = TestDatabase::create().await;
    // The product's histogram, as startup hands it to the store.
    let metrics = orchestrator::metrics::Metrics::new(None, orchestrator::metrics::system_clock());
    let sizes = metrics.commit_requests.clone();
    let store = db
        .store(
            8,
            GroupCommit {
                sizes: Some(sizes.clone()),
                ..limits(64)
            },
        )
        .await;
    // One at a time: each finds the slot free and nobody queued, and
    // commits alone, at once.
    for i in 0..5 {
        let outcome = store
            .accept(acceptance(Some(&format!("lone-{i}")), "fp", 1))
            .await
            .expect("no store error");
        assert!(matches!(outcome, AcceptOutcome::Accepted), "{outcome:?}");
    }
    assert_eq!(commits(&db).await, 5, "one commit per lone request");
    assert_eq!(sizes.get_sample_count(), 5, "each lone commit observed");
    assert_eq!(sizes.get_sample_sum(), 5.0, "one request each");
    // Then a burst of 30: the first takes the free slot alone, the others
    // queue behind it and share the next commit(s).
    let burst: Vec<_> = (0..30)
        .map(|i| acceptance(Some(&format!("burst-{i}")), "fp", 1))
        .collect();
    let outcomes = accept_all(&store, &burst).await;
    assert_all_accepted(&outcomes);
    assert_eq!(count(&db, "messages").await, 35);
    let burst_commits = commits(&db).await - 5;
    assert!(
        (2..=4).contains(&burst_commits),
        "30 requests behind one slot took {burst_commits} commits"
    );
    // orchestrator_db_commit_requests saw the same commits and requests.
    assert_eq!(sizes.get_sample_count(), 5 + burst_commits as u64);
    assert_eq!(sizes.get_sample_sum(), 35.0);
    let text = String::from_utf8(metrics.render()).expect("utf-8");
    assert!(
        text.contains(&format!(
            "orchestrator_db_commit_requests_count {}",
            5 + burst_commits
        )),
        "{text}"
    );
}

/// One request with `key` and `messages` rows, which must be accepted.
async fn accept_one(store: &PgStore, key: &str, messages: usize) {
    let outcome = store
        .accept(acceptance(Some(key), "fp", messages))
        .await
        .expect("no store error");
    assert!(matches!(outcome, AcceptOutcome::Accepted), "{outcome:?}");
}

/// The store on `db`, its connections through a proxy that counts round
/// trips; group commit with its defaults (2 slots), a pool of 8.
async fn store_behind_proxy(
    db: &TestDatabase,
) -> (PgStore, integration_tests::faults::proxy::FaultProxy) {
    let (head, tail) = db.url.split_once('@').expect("user@host in the URL");
    let (host, path) = tail.split_once('/').expect("host/database in the URL");
    let proxy = integration_tests::faults::proxy::FaultProxy::start(host.to_owned()).await;
    let url = format!("{head}@{}/{path}", proxy.addr());
    let store = PgStore::connect(url.parse().expect("URL"), 8, GroupCommit::default())
        .await
        .expect("store connects through the proxy");
    (store, proxy)
}

#[tokio::test]
async fn a_lone_commit_is_one_round_trip_to_postgres() {
    let db = TestDatabase::create().await;
    let (store, proxy) = store_behind_proxy(&db).await;
    // The first commit prepares the statement (a round trip of its own).
    accept_one(&store, "warm-up", 1).await;
    let before = proxy.exchanges();
    for i in 0..40 {
        accept_one(&store, &format!("one-{i}"), 1).await;
    }
    // sqlx's pool pings a connection on every acquire and every release:
    // three round trips per commit. The commit slots keep theirs.
    let exchanges = proxy.exchanges() - before;
    assert!(
        exchanges <= 44,
        "40 lone commits took {exchanges} round trips to Postgres"
    );
    assert_eq!(count(&db, "messages").await, 41);
}

#[tokio::test]
async fn a_kept_connection_that_died_while_idle_is_replaced_before_a_request_uses_it() {
    let db = TestDatabase::create().await;
    let (store, _proxy) = store_behind_proxy(&db).await;
    accept_one(&store, "before", 1).await;
    // Every connection of the store ends, as in a Postgres restart.
    let admin = db.pool().await;
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
           FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(ended >= 1, "the store's connections were found");
    // Idle past the bypass window: the kept connection is checked first.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // No request meets the dead connection.
    for i in 0..4 {
        accept_one(&store, &format!("after-{i}"), 1).await;
    }
    assert_eq!(count(&db, "messages").await, 5);
}

#[tokio::test]
async fn a_connection_ended_by_a_fatal_error_is_not_kept_for_the_next_request() {
    let db = TestDatabase::create().await;
    let (store, _proxy) = store_behind_proxy(&db).await;
    // The pool's idle connections (opened for the migrations) get past
    // the ping window, so that the pool checks them; the one "first"
    // takes is kept.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    accept_one(&store, "first", 1).await;
    let admin = db.pool().await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&admin)
    .await
    .unwrap();
    // Within the ping window: the next request meets the dead connection
    // (Postgres's FATAL 57P01 waits on it) and fails, as one in flight would.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let met = store.accept(acceptance(Some("second"), "fp", 1)).await;
    assert!(met.is_err(), "{met:?}");
    // The one after it gets a live connection, not the same dead one.
    accept_one(&store, "third", 1).await;
}

#[tokio::test]
async fn lookups_share_the_kept_connections_one_round_trip_each() {
    let db = TestDatabase::create().await;
    let (store, proxy) = store_behind_proxy(&db).await;
    let a = acceptance(Some("looked-up"), "fp", 1);
    let outcome = store.accept(a.clone()).await.expect("no store error");
    assert!(matches!(outcome, AcceptOutcome::Accepted), "{outcome:?}");
    let id = a.messages[0].id;
    let now = Utc::now();
    // Each statement is prepared on first use.
    store.get_message(TENANT, false, id).await.expect("lookup");
    store
        .find_idempotency(TENANT, "POST /v1/sms/send", "looked-up", now)
        .await
        .expect("lookup");
    let before = proxy.exchanges();
    for _ in 0..20 {
        let view = store.get_message(TENANT, false, id).await.expect("lookup");
        assert_eq!(view.map(|v| v.id), Some(id));
        let record = store
            .find_idempotency(TENANT, "POST /v1/sms/send", "looked-up", now)
            .await
            .expect("lookup");
        assert_eq!(record.map(|r| r.fingerprint).as_deref(), Some("fp"));
    }
    let exchanges = proxy.exchanges() - before;
    assert!(
        exchanges <= 42,
        "40 lookups took {exchanges} round trips to Postgres"
    );
}

/// sqlx-core 0.9.0 opens its sockets without `TCP_NODELAY` (the workspace
/// patches it: `vendor/README.md`). Over TLS, a group commit longer than
/// one 16 KiB record could leave the client in two writes; Nagle's
/// algorithm then held the second until Postgres acknowledged the first,
/// and Postgres, holding half a message, delayed that acknowledgement by
/// at least 40 ms, while the slot and every request in the batch waited.
/// Measured before the patch (two slots, 16 clients, `bench/RESULTS.md`):
/// p90 47 ms. The assertion counts requests that took 40 ms or more.
#[tokio::test]
async fn large_group_commits_over_tls_do_not_wait_for_a_delayed_ack() {
    let pki = integration_tests::tls::Pki::new();
    let pg = integration_tests::PrivatePostgres::start_tls(&pki, "nagle-pw").await;
    let url = format!(
        "postgres://orch:nagle-pw@127.0.0.1:{}/orch?sslmode=require",
        pg.port
    );
    // One slot: a burst queues behind it and commits in large batches.
    let store = Arc::new(
        PgStore::connect(url.parse().expect("URL"), 8, limits(64))
            .await
            .expect("store connects over TLS"),
    );
    accept_one(&store, "warm-up", 10).await;
    let clients = (0..16).map(|c| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut took = Vec::new();
            for i in 0..25 {
                // Ten message rows: a batch of a few is past 16 KiB.
                let started = Instant::now();
                accept_one(&store, &format!("c{c}-{i}"), 10).await;
                took.push(started.elapsed());
            }
            took
        })
    });
    let took: Vec<Duration> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flat_map(|t| t.expect("client task"))
        .collect();
    let stalled = took
        .iter()
        .filter(|d| **d >= Duration::from_millis(40))
        .count();
    assert!(
        stalled * 20 < took.len(),
        "{stalled} of {} requests took 40 ms or more (a delayed ACK each)",
        took.len()
    );
}
