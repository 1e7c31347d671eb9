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
    // The outbox row is on the message now (#17's migration, which ran too):
    // its publication time, and no separate table.
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM orch.messages WHERE published_at IS NOT NULL
         UNION ALL SELECT message_id FROM orch.message_status_history",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ids, vec![new_id(); 3]);
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

/// The migrations up to and including `last`, as a database that predates
/// the ones after it holds them.
async fn migrations_up_to(dialect: &str, last: &str) -> sqlx::migrate::Migrator {
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(dialect);
    for entry in std::fs::read_dir(&source).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.as_str() <= last {
            std::fs::copy(source.join(&name), dir.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    drop(dir);
    migrator
}

/// #17: a database holding the old shape (a separate outbox, `accepted`
/// and `queued` history rows) moves to messages that are their own outbox:
/// pending events carry over and are published by the relay, published
/// ones keep their time, and every message's history reads back exactly
/// as it was stored before.
#[tokio::test]
async fn a_postgres_database_with_a_separate_outbox_migrates_onto_the_messages() {
    use orchestrator::domain::MessageId;

    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let old = migrations_up_to("postgres", "20261127000001_message_ids.sql").await;
    old.run(&pool).await.unwrap();
    let tenant = "outbox-tenant";
    // (id, status, shadow, created_at)
    let messages = [
        ("674a0a000000000000000001", "queued", false), // published
        ("674a0a000000000000000002", "accepted", false), // pending, retried twice
        ("674a0a000000000000000003", "delivered", false), // published, outbox reaped
        ("674a0a000000000000000004", "accepted", true), // shadow, no event
        ("674a0a000000000000000005", "queued", false), // downstream queued first
    ];
    let created = "2026-11-29 10:00:00.123+00";
    for (id, status, shadow) in messages {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO orch.messages {MESSAGE_COLUMNS}
             VALUES ($1, $2, $3, $4, '+447700900123', 'Acme', 'old', 'GSM-7', 1, $5::timestamptz, $5::timestamptz)"
        )))
        .bind(id)
        .bind(tenant)
        .bind(shadow)
        .bind(status)
        .bind(created)
        .execute(&pool)
        .await
        .unwrap();
    }
    let history = [
        ("674a0a000000000000000001", "accepted", created),
        (
            "674a0a000000000000000001",
            "queued",
            "2026-11-29 10:00:00.200+00",
        ),
        ("674a0a000000000000000002", "accepted", created),
        ("674a0a000000000000000003", "accepted", created),
        (
            "674a0a000000000000000003",
            "queued",
            "2026-11-29 10:00:00.300+00",
        ),
        ("674a0a000000000000000003", "sent", "2026-11-29 10:00:01+00"),
        (
            "674a0a000000000000000003",
            "delivered",
            "2026-11-29 10:00:05+00",
        ),
        ("674a0a000000000000000004", "accepted", created),
        ("674a0a000000000000000005", "accepted", created),
        (
            "674a0a000000000000000005",
            "queued",
            "2026-11-29 10:00:00.150+00",
        ),
    ];
    for (id, status, at) in history {
        sqlx::query(
            "INSERT INTO orch.message_status_history (message_id, status, at)
             VALUES ($1, $2, $3::timestamptz)",
        )
        .bind(id)
        .bind(status)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    // (id, published_at, attempts, last_error)
    let outbox = [
        (
            "674a0a000000000000000001",
            Some("2026-11-29 10:00:00.200+00"),
            1,
            None,
        ),
        (
            "674a0a000000000000000002",
            None,
            2,
            Some("nats: no responders"),
        ),
        (
            "674a0a000000000000000005",
            Some("2026-11-29 10:00:00.400+00"),
            1,
            None,
        ),
    ];
    for (id, published_at, attempts, last_error) in outbox {
        sqlx::query(
            "INSERT INTO orch.outbox (message_id, subject, headers, payload, created_at,
                                      attempts, next_attempt_at, published_at, last_error)
             VALUES ($1, 'old.sms.outbound.request', jsonb_build_array(jsonb_build_array('Nats-Msg-Id', $1)),
                     convert_to('payload of ' || $1, 'UTF8'), $2::timestamptz, $3,
                     $2::timestamptz, $4::timestamptz, $5)",
        )
        .bind(id)
        .bind(created)
        .bind(attempts)
        .bind(published_at)
        .bind(last_error)
        .execute(&pool)
        .await
        .unwrap();
    }
    // Each message's history as the earlier release read it: its rows in
    // lifecycle order.
    let before: Vec<(String, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT message_id, status, at FROM orch.message_status_history
          ORDER BY message_id, at, array_position(
            ARRAY['accepted','queued','sent','delivered','failed','expired','rejected'], status)",
    )
    .fetch_all(&pool)
    .await
    .unwrap();

    // Connecting migrates the old shape.
    let store = db.store_committing_alone().await;

    let outbox_table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('orch.outbox')::text")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(outbox_table, None);
    // Only what the timestamps do not say stays in the history: the
    // delivery statuses and the downstream `queued` that came first.
    let kept: Vec<(String, String)> = sqlx::query_as(
        "SELECT message_id, status FROM orch.message_status_history ORDER BY message_id, at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let kept: Vec<(&str, &str)> = kept.iter().map(|(m, s)| (m.as_str(), s.as_str())).collect();
    assert_eq!(
        kept,
        vec![
            ("674a0a000000000000000003", "sent"),
            ("674a0a000000000000000003", "delivered"),
            ("674a0a000000000000000005", "queued"),
        ]
    );
    type Row = (
        String,
        Option<String>,
        Option<String>,
        i32,
        Option<String>,
        bool,
    );
    let published: Vec<Row> = sqlx::query_as(
        "SELECT id, to_char(published_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS'), event_subject,
                    publish_attempts, last_error, event_payload IS NOT NULL
               FROM orch.messages ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let row = |id: &str,
               at: Option<&str>,
               subject: bool,
               attempts: i32,
               error: Option<&str>,
               payload: bool|
     -> Row {
        (
            id.to_owned(),
            at.map(str::to_owned),
            subject.then(|| "old.sms.outbound.request".to_owned()),
            attempts,
            error.map(str::to_owned),
            payload,
        )
    };
    let want: Vec<Row> = vec![
        row(
            "674a0a000000000000000001",
            Some("10:00:00.200"),
            true,
            1,
            None,
            false,
        ),
        row(
            "674a0a000000000000000002",
            None,
            true,
            2,
            Some("nats: no responders"),
            true,
        ),
        row(
            "674a0a000000000000000003",
            Some("10:00:00.300"),
            false,
            0,
            None,
            false,
        ),
        row("674a0a000000000000000004", None, false, 0, None, false),
        row(
            "674a0a000000000000000005",
            Some("10:00:00.400"),
            true,
            1,
            None,
            false,
        ),
    ];
    assert_eq!(published, want);

    // Every history reads back as it did.
    for (id, _, shadow) in messages {
        let view = store
            .get_message(tenant, shadow, MessageId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        let got: Vec<(String, chrono::DateTime<chrono::Utc>)> = view
            .status_history
            .iter()
            .map(|h| (h.status.clone(), h.at))
            .collect();
        let want: Vec<(String, chrono::DateTime<chrono::Utc>)> = before
            .iter()
            .filter(|(m, _, _)| m == id)
            .map(|(_, s, at)| (s.clone(), *at))
            .collect();
        assert_eq!(got, want, "history of {id}");
    }

    // The pending event is the relay's, payload and all, and nothing else is.
    let claimed = store
        .claim_outbox(10, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].message_id.to_string(),
        "674a0a000000000000000002"
    );
    assert_eq!(claimed[0].payload, b"payload of 674a0a000000000000000002");
    assert_eq!(
        claimed[0].headers,
        vec![(
            "Nats-Msg-Id".to_owned(),
            "674a0a000000000000000002".to_owned()
        )]
    );
    assert_eq!(claimed[0].attempts, 3);
    store
        .mark_published(&[claimed[0].message_id])
        .await
        .unwrap();
    let view = store
        .get_message(tenant, false, claimed[0].message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.status, "queued");
    let statuses: Vec<&str> = view
        .status_history
        .iter()
        .map(|h| h.status.as_str())
        .collect();
    assert_eq!(statuses, vec!["accepted", "queued"]);
}
