//! Idempotency-Key semantics on real Postgres and real Redis (and on the
//! embedded default), including races and a process killed mid-request.

use std::collections::HashSet;
use std::time::Duration;

use integration_tests::{
    NatsNames, Options, TestApp, TestDatabase, eventually, redis_url, send_body,
};
use reqwest::StatusCode;
use serde_json::Value;

async fn pg_app(db: &TestDatabase, redis: Option<String>, args: &[&str]) -> TestApp {
    TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        redis,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    })
    .await
}

async fn count(db: &TestDatabase, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.pool().await)
        .await
        .unwrap()
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replay_returns_the_identical_answer_and_stores_nothing_new() {
    let db = TestDatabase::create().await;
    let app = pg_app(&db, Some(redis_url()), &[]).await;
    let first = app.send(&send_body("once"), Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_headers = first.headers().clone();
    let first_body = first.bytes().await.unwrap();

    let again = app.send(&send_body("once"), Some("key-1")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    // Exactly the first answer: same headers (the ETag too), nothing added;
    // the legacy sent no Idempotent-Replayed header.
    let names = |h: &reqwest::header::HeaderMap| -> Vec<String> {
        let mut n: Vec<String> = h
            .keys()
            .filter(|k| *k != "date")
            .map(|k| k.to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(again.headers()), names(&first_headers));
    for h in ["location", "etag", "content-type", "x-powered-by"] {
        assert_eq!(again.headers()[h], first_headers[h], "{h}");
    }
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(again.bytes().await.unwrap(), first_body, "byte for byte");

    assert_eq!(count(&db, "SELECT count(*) FROM orch.messages").await, 1);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM orch.messages WHERE event_subject IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM orch.idempotency_keys").await,
        1
    );

    // The fast path holds the completed record under the documented key, for the key's TTL.
    let mut r = redis().await;
    let key = format!("orch:submit-idem:{}:send:key-1", app.tenant);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(ttl > 47 * 3600 * 1000, "ttl {ttl}");
    assert!(
        app.metric(r#"orchestrator_idempotency_outcomes_total{outcome="replayed"}"#)
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_replay_served_from_postgres_alone_is_identical_too() {
    let db = TestDatabase::create().await;
    let app = pg_app(&db, Some(redis_url()), &[]).await;
    let first = app.send(&send_body("pg truth"), Some("key-flush")).await;
    let first_body = first.bytes().await.unwrap();
    // Redis flushed (or lost): Postgres still knows the answer. The
    // completed record is written to Redis after the answer (off the
    // response path, abandoned past REDIS_TIMEOUT on a loaded machine):
    // give it time to land, then flush whatever Redis holds.
    let mut r = redis().await;
    let cached = format!("orch:submit-idem:{}:send:key-flush", app.tenant);
    let _landed = eventually(Duration::from_secs(2), || {
        let cached = cached.clone();
        async move {
            let mut r = redis().await;
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&cached)
                .query_async(&mut r)
                .await
                .unwrap();
            (ttl > 47 * 3600 * 1000).then_some(())
        }
    })
    .await;

    let _: () = redis::cmd("DEL")
        .arg(format!("orch:submit-idem:{}:send:key-flush", app.tenant))
        .query_async(&mut r)
        .await
        .unwrap();
    let again = app.send(&send_body("pg truth"), Some("key-flush")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(count(&db, "SELECT count(*) FROM orch.messages").await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_422_and_stores_nothing() {
    let db = TestDatabase::create().await;
    let app = pg_app(&db, Some(redis_url()), &[]).await;
    app.send(&send_body("first"), Some("key-2")).await;
    let r = app.send(&send_body("second"), Some("key-2")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        p,
        serde_json::json!({
            "message": "This Idempotency-Key was already used with a different request body",
            "error": "Unprocessable Entity",
            "statusCode": 422
        })
    );
    assert_eq!(count(&db, "SELECT count(*) FROM orch.messages").await, 1);
    // Also when the cache is gone and Postgres decides.
    let mut c = redis().await;
    let _: () = redis::cmd("DEL")
        .arg(format!("orch:submit-idem:{}:send:key-2", app.tenant))
        .query_async(&mut c)
        .await
        .unwrap();
    let r = app.send(&send_body("second"), Some("key-2")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_key_in_flight_is_a_409_with_retry_after() {
    let db = TestDatabase::create().await;
    // The marker below is only in Redis, so this test needs the fast path to
    // answer. Past the default 10 ms REDIS_TIMEOUT (a loaded CI machine) the
    // database decides alone and, holding no row, accepts: the designed
    // degradation, covered by the fault suite, not what this test names.
    let app = pg_app(&db, Some(redis_url()), &["--redis-timeout=2s"]).await;
    // Another replica holds the key: its in-flight marker is in Redis.
    let fp = orchestrator::idempotency::fingerprint("POST", "/v1/sms/send", &send_body("busy"));
    let marker = serde_json::json!({"state": "in_flight", "fingerprint": fp}).to_string();
    let mut r = redis().await;
    let _: () = redis::cmd("SET")
        .arg(format!("orch:submit-idem:{}:send:key-3", app.tenant))
        .arg(marker)
        .arg("PX")
        .arg(30_000)
        .query_async(&mut r)
        .await
        .unwrap();
    let res = app.send(&send_body("busy"), Some("key-3")).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(res.headers()["retry-after"], "1");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["statusCode"], 409);
    assert_eq!(p["error"], "Conflict");
    assert_eq!(count(&db, "SELECT count(*) FROM orch.messages").await, 0);
}

#[tokio::test]
async fn a_validation_failure_stores_nothing_so_the_corrected_retry_is_processed() {
    let db = TestDatabase::create().await;
    let app = pg_app(&db, Some(redis_url()), &[]).await;
    let bad = serde_json::json!({"to": "0044", "from": "Acme", "body": "x"});
    let r = app.send(&bad, Some("key-4")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app.send(&send_body("x"), Some("key-4")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(count(&db, "SELECT count(*) FROM orch.messages").await, 1);
}

#[tokio::test]
async fn keys_are_scoped_by_tenant_and_body_key_order_does_not_matter() {
    let db = TestDatabase::create().await;
    let app = pg_app(&db, Some(redis_url()), &[]).await;
    let a = app.send(&send_body("scoped"), Some("shared")).await;
    let a: Value = a.json().await.unwrap();
    let other_tenant = integration_tests::unique("other-");
    let other = app
        .request_as(&other_tenant, reqwest::Method::POST, "/v1/sms/send")
        .header("Idempotency-Key", "shared")
        .json(&send_body("scoped"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::CREATED);
    let b: Value = other.json().await.unwrap();
    assert_ne!(a["id"], b["id"]);

    let reordered = r#"{ "body": "scoped",   "from": "Acme", "to": "+447700900123" }"#;
    let r = app
        .request(reqwest::Method::POST, "/v1/sms/send")
        .header("Idempotency-Key", "shared")
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    // A replay: the first answer's message.
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], a["id"]);
    assert_eq!(count(&db, "SELECT count(*) FROM orch.messages").await, 2);
}

#[tokio::test]
async fn an_invalid_or_missing_required_key_is_a_400() {
    let app = TestApp::spawn(Options {
        args: vec!["--idempotency-key-required".into()],
        ..Options::default()
    })
    .await;
    let r = app.send(&send_body("x"), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["message"][0], "idempotency-key should not be empty");
    let r = app.send(&send_body("x"), Some(&"k".repeat(256))).await;
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        p["message"][0],
        "idempotency-key must be 1 to 255 visible ASCII characters"
    );
    // A problem document names the header.
    let r = app
        .request(reqwest::Method::POST, "/v1/sms/send")
        .header("Accept", "application/problem+json")
        .header("Idempotency-Key", "k".repeat(256))
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    let p: Value = r.json().await.unwrap();
    assert_eq!(
        p["type"],
        "urn:sms-orchestrator:problem:idempotency-key-invalid"
    );
    assert_eq!(p["errors"][0]["pointer"], "header:Idempotency-Key");
    let r = app.send(&send_body("x"), Some("has space")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// 100 copies of one request at once: one message, every answer the
/// original 201 (first or replayed, byte for byte) or a 409, never a
/// second acceptance.
async fn race(apps: &[&TestApp], db: &TestDatabase) -> (usize, usize, usize) {
    let key = "race-key";
    let body = send_body("race");
    let requests = (0..100).map(|i| {
        let app = apps[i % apps.len()];
        let body = body.clone();
        async move {
            let r = app.send(&body, Some(key)).await;
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            (status, v)
        }
    });
    let results = futures::future::join_all(requests).await;
    let mut created = 0;
    let mut conflicts = 0;
    let mut ids = HashSet::new();
    for (status, v) in results {
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected {other}: {v}"),
        }
        if status == StatusCode::CREATED {
            ids.insert(v["id"].as_str().unwrap().to_owned());
        }
    }
    // One message was written; every other 201 replayed its answer.
    let originals = usize::try_from(count(db, "SELECT count(*) FROM orch.messages").await).unwrap();
    let replays = created - originals;
    assert_eq!(originals, 1, "exactly one original acceptance");
    assert_eq!(ids.len(), 1, "every 201 carries the same message");
    assert_eq!(count(db, "SELECT count(*) FROM orch.messages").await, 1);
    assert_eq!(
        count(
            db,
            "SELECT count(*) FROM orch.messages WHERE event_subject IS NOT NULL"
        )
        .await,
        1
    );
    println!("race: {originals} original, {replays} replayed, {conflicts} in flight (409)");
    (originals, replays, conflicts)
}

#[tokio::test]
async fn a_hundred_racing_copies_make_one_message_with_redis() {
    let db = TestDatabase::create().await;
    let app = pg_app(&db, Some(redis_url()), &[]).await;
    race(&[&app], &db).await;
}

#[tokio::test]
async fn a_hundred_racing_copies_make_one_message_with_redis_unreachable() {
    let db = TestDatabase::create().await;
    // Nothing listens on port 1: every Redis call fails; Postgres decides.
    let app = pg_app(&db, Some("redis://127.0.0.1:1".into()), &[]).await;
    let (_, replays, _) = race(&[&app], &db).await;
    assert!(replays > 0);
    assert!(app.metric("orchestrator_redis_fallback_total").await > 0.0);
}

#[tokio::test]
async fn racing_copies_across_two_processes_make_one_message() {
    let db = TestDatabase::create().await;
    let a = pg_app(&db, Some(redis_url()), &[]).await;
    let b = pg_app(&db, Some(redis_url()), &[]).await;
    let b = TestApp {
        tenant: a.tenant.clone(),
        ..b
    };
    race(&[&a, &b], &db).await;
}

#[tokio::test]
async fn the_embedded_default_has_the_same_semantics() {
    let app = TestApp::embedded().await;
    let first = app.send(&send_body("embedded"), Some("e-1")).await;
    let first_body = first.bytes().await.unwrap();
    let again = app.send(&send_body("embedded"), Some("e-1")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.bytes().await.unwrap(), first_body);
    let other = app.send(&send_body("changed"), Some("e-1")).await;
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = send_body("r");
    let results = futures::future::join_all((0..50).map(|_| app.send(&body, Some("e-2")))).await;
    assert!(
        results
            .iter()
            .all(|r| r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT)
    );
    let mut ids = HashSet::new();
    for r in results
        .into_iter()
        .filter(|r| r.status() == StatusCode::CREATED)
    {
        ids.insert(r.json::<Value>().await.unwrap()["id"].to_string());
    }
    assert_eq!(ids.len(), 1, "one message; the other 201s replayed it");
    let accepted = app
        .metric(r#"orchestrator_messages_accepted_total{encoding="GSM-7",route="/v1/sms/send"}"#)
        .await;
    assert_eq!(accepted, 2.0, "e-1 and e-2: two messages accepted");
}

#[tokio::test]
async fn after_the_ttl_a_key_is_new_again_and_the_reaper_removes_rows() {
    let db = TestDatabase::create().await;
    let app = pg_app(
        &db,
        Some(redis_url()),
        &["--idempotency-ttl=1s", "--reaper-interval=200ms"],
    )
    .await;
    let first: Value = app
        .send(&send_body("ttl"), Some("ttl-key"))
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = app.send(&send_body("ttl"), Some("ttl-key")).await;
    assert_eq!(second.status(), StatusCode::CREATED);
    let second: Value = second.json().await.unwrap();
    assert_ne!(first["id"], second["id"]);
    let reaped = eventually(Duration::from_secs(5), || async {
        (count(&db, "SELECT count(*) FROM orch.idempotency_keys").await == 0).then_some(())
    })
    .await;
    assert!(reaped.is_some(), "reaper removed the expired rows");
    assert!(
        app.metric(r#"orchestrator_reaped_rows_total{table="idempotency_keys"}"#)
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_process_killed_before_commit_leaves_nothing_and_a_retry_succeeds_after_the_lock_ttl() {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let mut app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        redis: Some(redis_url()),
        nats: Some(nats),
        // A Redis call slower than the default 10 ms budget under load would
        // skip the fast path this test is about.
        args: vec![
            "--idempotency-lock-ttl=5s".into(),
            "--redis-timeout=2s".into(),
        ],
        ..Options::default()
    })
    .await;
    // Hold the messages table so the request takes its key and then blocks
    // inside its transaction.
    let pool = db.pool().await;
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE orch.messages IN EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let url = format!("{}/v1/sms/send", app.api);
    let token = app.token_for(&app.tenant);
    let tenant = app.tenant.clone();
    let pending = tokio::spawn(async move {
        integration_tests::http_client()
            .post(url)
            .bearer_auth(token)
            .header("X-Tenant-Id", tenant)
            .header("Idempotency-Key", "crash-key")
            .json(&send_body("crash"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
    });
    // Wait until the request holds the in-flight marker, then kill the process.
    let marker = format!("orch:submit-idem:{}:send:crash-key", app.tenant);
    let mut r = redis().await;
    let held = eventually(Duration::from_secs(5), || {
        let mut r = r.clone();
        let marker = marker.clone();
        async move {
            let v: Option<String> = redis::cmd("GET")
                .arg(&marker)
                .query_async(&mut r)
                .await
                .ok()?;
            v.filter(|v| v.contains("in_flight"))
        }
    })
    .await;
    assert!(held.is_some(), "request took the key");
    app.kill().await;
    assert!(pending.await.unwrap().is_err(), "the client saw the crash");
    blocker.rollback().await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM orch.messages").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM orch.idempotency_keys").await,
        0
    );

    let restarted = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        redis: Some(redis_url()),
        // A Redis call slower than the default 10 ms budget under load would
        // skip the fast path this test is about.
        args: vec![
            "--idempotency-lock-ttl=5s".into(),
            "--redis-timeout=2s".into(),
        ],
        ..Options::default()
    })
    .await;
    let restarted = TestApp {
        tenant: app.tenant.clone(),
        ..restarted
    };
    // Still marked in flight until the lock TTL passes.
    let early = restarted.send(&send_body("crash"), Some("crash-key")).await;
    assert_eq!(early.status(), StatusCode::CONFLICT);
    let ok = eventually(Duration::from_secs(10), || async {
        let r = restarted.send(&send_body("crash"), Some("crash-key")).await;
        (r.status() == StatusCode::CREATED).then_some(())
    })
    .await;
    assert!(ok.is_some(), "retry accepted after the lock TTL");
    assert_eq!(count(&db, "SELECT count(*) FROM orch.messages").await, 1);
    let _: () = redis::cmd("DEL")
        .arg(&marker)
        .query_async(&mut r)
        .await
        .unwrap();
}
