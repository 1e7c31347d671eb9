//! A database written before message ids became ObjectIds migrates: each
//! UUIDv7 becomes the ObjectId of its own creation second and its last 8
//! bytes, in every table that names it, and the message is then readable
//! under its new id, on Postgres and on the embedded SQLite.

use std::path::Path;

use integration_tests::{Options, TestApp, TestDatabase};
use reqwest::StatusCode;
use serde_json::Value;

const OLD_ID: &str = "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a";

/// The ObjectId the migration gives `OLD_ID`: the UUID's 48-bit
/// millisecond prefix / 1000 as 4 bytes, then its last 8 bytes.
fn new_id() -> String {
    let hex = OLD_ID.replace('-', "");
    let ms = u64::from_str_radix(&hex[..12], 16).unwrap();
    format!("{:08x}{}", ms / 1000, &hex[16..])
}

/// Only the first migration of a dialect, as a database that predates the
/// second holds it.
async fn first_migration(dialect: &str) -> sqlx::migrate::Migrator {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(dialect)
        .join("20261126000001_submit.sql");
    std::fs::copy(&source, dir.path().join("20261126000001_submit.sql")).unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    drop(dir);
    migrator
}

const MESSAGE_COLUMNS: &str = "(id, tenant_id, shadow, status, to_number, sender, body, encoding, segments, created_at, updated_at)";

async fn read_back(app: &TestApp, tenant: &str) {
    let got = app
        .request_as(
            tenant,
            reqwest::Method::GET,
            &format!("/v1/sms/{}", new_id()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let body: Value = got.json().await.unwrap();
    assert_eq!(body["id"], new_id().as_str());
    assert_eq!(body["status"], "queued");
    let history: Vec<&str> = body["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, vec!["accepted", "queued"]);
    // The old form is not an id any more: the same 404 as an unknown one.
    let old = app
        .request_as(tenant, reqwest::Method::GET, &format!("/v1/sms/{OLD_ID}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_postgres_database_with_uuid_ids_migrates_to_object_ids() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    first_migration("postgres").await.run(&pool).await.unwrap();
    let tenant = "migrated-tenant";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO orch.messages {MESSAGE_COLUMNS}
         VALUES ($1::uuid, $2, false, 'queued', '+447700900123', 'Acme', 'old', 'GSM-7', 1, now(), now())"
    )))
    .bind(OLD_ID)
    .bind(tenant)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO orch.message_status_history (message_id, status, at)
         VALUES ($1::uuid, 'accepted', now() - interval '1 second'), ($1::uuid, 'queued', now())",
    )
    .bind(OLD_ID)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO orch.outbox (message_id, subject, headers, payload, created_at, next_attempt_at, published_at)
         VALUES ($1::uuid, 's', '[]', '\\x00', now(), now(), now())",
    )
    .bind(OLD_ID)
    .execute(&pool)
    .await
    .unwrap();

    let app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM orch.messages UNION ALL SELECT message_id FROM orch.message_status_history
         UNION ALL SELECT message_id FROM orch.outbox",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ids, vec![new_id(); 4]);
    read_back(&app, tenant).await;
    // New rows must be ObjectIds: the column refuses anything else.
    let refused = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO orch.messages {MESSAGE_COLUMNS}
         VALUES ('not-an-object-id', 't', false, 'accepted', '+447700900123', 'Acme', 'x', 'GSM-7', 1, now(), now())"
    )))
    .execute(&pool)
    .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn an_embedded_sqlite_database_with_uuid_ids_migrates_to_object_ids() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let file = dir.path().join("data/orchestrator.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        first_migration("sqlite").await.run(&pool).await.unwrap();
        let at = |offset: &str| format!("2026-11-30T10:00:0{offset}.000000Z");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO messages {MESSAGE_COLUMNS}
             VALUES (?1, 'migrated-tenant', 0, 'queued', '+447700900123', 'Acme', 'old', 'GSM-7', 1, ?2, ?3)"
        )))
        .bind(OLD_ID)
        .bind(at("0"))
        .bind(at("1"))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO message_status_history (message_id, status, at)
             VALUES (?1, 'accepted', ?2), (?1, 'queued', ?3)",
        )
        .bind(OLD_ID)
        .bind(at("0"))
        .bind(at("1"))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let app = TestApp::spawn_in(Options::default(), dir).await;
    read_back(&app, "migrated-tenant").await;
}
