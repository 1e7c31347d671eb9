//! Publishing `sms.outbound.request` through the outbox, against real NATS
//! JetStream and real Postgres: exactly once in effect, through NATS
//! outages, crashes and two relaying replicas; status events back; shadow
//! traffic fenced off.

use std::collections::HashSet;
use std::time::Duration;

use integration_tests::{
    NatsNames, Options, PrivateNats, SHADOW_SECRET, TestApp, TestDatabase, accepted_id, bulk_ids,
    eventually, redis_url, send_body, stream_messages,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn event_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contracts/sms.outbound.request.v1.json"),
    )
    .unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

fn options(db: &TestDatabase, nats: &NatsNames) -> Options {
    Options {
        database_url: Some(db.url.clone()),
        redis: Some(redis_url()),
        nats: Some(nats.clone()),
        ..Options::default()
    }
}

/// Waits until `n` messages are on the subject; returns them.
async fn await_published(nats: &NatsNames, subject: &str, n: usize) -> Vec<(String, Value)> {
    // Long enough for rows leased by a killed relay to be claimed again.
    let found = eventually(Duration::from_secs(45), || async {
        let m = stream_messages(&nats.url, &nats.stream, subject).await;
        (m.len() >= n).then_some(m)
    })
    .await;
    found.unwrap_or_else(|| panic!("{n} messages on {subject} within 45 s"))
}

/// All messages once `n` are there and a second has passed for any
/// duplicate to land.
async fn settled(nats: &NatsNames, n: usize) -> Vec<(String, Value)> {
    await_published(nats, &nats.subject(), n).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stream_messages(&nats.url, &nats.stream, &nats.subject()).await
}

fn assert_exactly_once(messages: &[(String, Value)], accepted: &HashSet<String>) {
    let ids: HashSet<&String> = messages.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), messages.len(), "no duplicate deliveries");
    let published: HashSet<String> = messages.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        &published, accepted,
        "every accepted message published, nothing else"
    );
}

#[tokio::test]
async fn each_accepted_message_is_published_once_with_a_valid_payload_and_headers() {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let app = TestApp::spawn(options(&db, &nats)).await;
    let r = app
        .request(reqwest::Method::POST, "/v1/sms/send")
        .header("X-Correlation-ID", "corr-123")
        .json(&json!({"to": "+447700900123", "from": "Acme", "body": "hi", "reference": "r1", "metadata": {"a": "b"}}))
        .send()
        .await
        .unwrap();
    let id = accepted_id(r).await;

    let messages = await_published(&nats, &nats.subject(), 1).await;
    let schema = event_schema();
    let (msg_id, payload) = &messages[0];
    assert_eq!(msg_id, &id, "Nats-Msg-Id is the message id");
    assert!(schema.is_valid(payload), "{payload}");
    assert_eq!(payload["tenant_id"], app.tenant.as_str());
    assert_eq!(payload["correlation_id"], "corr-123");
    assert_eq!(payload["reference"], "r1");

    // Headers, read raw from the stream.
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let raw = js
        .get_stream(&nats.stream)
        .await
        .unwrap()
        .get_last_raw_message_by_subject(&nats.subject())
        .await
        .unwrap();
    let headers = raw.headers;
    assert_eq!(headers.get("X-Tenant-Id").unwrap().as_str(), app.tenant);
    assert_eq!(
        headers.get("X-Correlation-ID").unwrap().as_str(),
        "corr-123"
    );

    // After the PubAck the message is queued.
    let queued = eventually(Duration::from_secs(5), || async {
        let v: Value = app.get(&id).await.json().await.ok()?;
        (v["status"] == "queued").then_some(v)
    })
    .await
    .expect("status becomes queued");
    let history: Vec<&str> = queued["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, vec!["accepted", "queued"]);
}

#[tokio::test]
async fn a_bulk_of_1000_publishes_1000_events() {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let app = TestApp::spawn(options(&db, &nats)).await;
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"to": format!("+4477009{i:05}")}))
        .collect();
    let r = app
        .bulk(
            &json!({"defaults": {"from": "Acme", "body": "bulk"}, "messages": items}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let accepted: HashSet<String> = bulk_ids(&body).into_iter().collect();
    assert_eq!(accepted.len(), 1000);
    let messages = settled(&nats, 1000).await;
    let schema = event_schema();
    assert!(messages.iter().all(|(_, p)| schema.is_valid(p)));
    assert_exactly_once(&messages, &accepted);
}

async fn submit(app: &TestApp, n: usize, tag: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    for i in 0..n {
        let r = app.send(&send_body(&format!("{tag} {i}")), None).await;
        // A 201 even while NATS is down.
        ids.insert(accepted_id(r).await);
    }
    ids
}

#[tokio::test]
async fn a_nats_outage_loses_nothing_and_duplicates_nothing() {
    let db = TestDatabase::create().await;
    let mut server = PrivateNats::start().await;
    let nats = NatsNames::at(server.url());
    let app = TestApp::spawn(options(&db, &nats)).await;
    let mut accepted = submit(&app, 20, "before").await;
    await_published(&nats, &nats.subject(), 20).await;

    server.stop();
    accepted.extend(submit(&app, 30, "during").await);
    let pending: i64 =
        sqlx::query_scalar(
            "SELECT count(*) FROM orch.messages WHERE published_at IS NULL AND event_subject IS NOT NULL",
        )
            .fetch_one(&db.pool().await)
            .await
            .unwrap();
    assert!(
        pending >= 1,
        "the outbox holds the messages while NATS is down"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.resume().await;
    accepted.extend(submit(&app, 10, "after").await);

    let messages = settled(&nats, 60).await;
    assert_exactly_once(&messages, &accepted);
    // In creation order once NATS came back.
    let order: Vec<&str> = messages
        .iter()
        .map(|(_, p)| p["body"].as_str().unwrap())
        .collect();
    let during: Vec<&&str> = order.iter().filter(|b| b.starts_with("during")).collect();
    let expected: Vec<String> = (0..30).map(|i| format!("during {i}")).collect();
    assert_eq!(
        during.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        expected
    );
}

#[tokio::test]
async fn a_relay_killed_mid_stream_and_restarted_loses_and_doubles_nothing() {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let mut app = TestApp::spawn(options(&db, &nats)).await;
    let items: Vec<Value> = (0..500)
        .map(|i| json!({"to": format!("+4477009{i:05}"), "from": "Acme", "body": "kill"}))
        .collect();
    let body: Value = app
        .bulk(&json!({"messages": items}), None)
        .await
        .json()
        .await
        .unwrap();
    let accepted: HashSet<String> = bulk_ids(&body).into_iter().collect();
    app.kill().await; // SIGKILL, most likely mid-relay
    let restarted = TestApp::spawn(options(&db, &nats)).await;
    let messages = settled(&nats, 500).await;
    assert_exactly_once(&messages, &accepted);
    drop(restarted);
}

#[tokio::test]
async fn two_replicas_relaying_at_once_never_double_publish() {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let a = TestApp::spawn(options(&db, &nats)).await;
    let b = TestApp::spawn(options(&db, &nats)).await;
    let b = TestApp {
        tenant: a.tenant.clone(),
        ..b
    };
    let mut accepted = HashSet::new();
    for round in 0..10 {
        let app = if round % 2 == 0 { &a } else { &b };
        let items: Vec<Value> = (0..50)
            .map(|i| json!({"to": format!("+44770090{round:02}{i:02}"), "from": "Acme", "body": "two"}))
            .collect();
        let body: Value = app
            .bulk(&json!({"messages": items}), None)
            .await
            .json()
            .await
            .unwrap();
        accepted.extend(bulk_ids(&body));
    }
    let messages = settled(&nats, 500).await;
    assert_exactly_once(&messages, &accepted);
    // Both relays did work (woken by LISTEN/NOTIFY or their own commits).
    let published_a = a
        .metric(r#"orchestrator_published_total{kind="real"}"#)
        .await;
    let published_b = b
        .metric(r#"orchestrator_published_total{kind="real"}"#)
        .await;
    assert_eq!(published_a + published_b, 500.0);
}

#[tokio::test]
async fn status_events_are_applied_in_order_tolerantly_and_idempotently() {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let app = TestApp::spawn(options(&db, &nats)).await;
    let id = accepted_id(app.send(&send_body("status"), None).await).await;
    await_published(&nats, &nats.subject(), 1).await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let at = |s: i64| (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339();
    for event in [
        json!({"id": id, "status": "delivered", "at": at(2)}),
        json!({"id": id, "status": "sent", "at": at(1)}), // late, out of order
        json!({"id": id, "status": "delivered", "at": at(2)}), // duplicate
        json!({"id": id, "status": "failed", "at": at(3), "error_code": "E1"}), // after terminal
        json!({"id": "6a3f2b1c9e8d7a6b5c4d3e2f", "status": "sent", "at": at(1)}), // unknown id
        json!("not an event"),
    ] {
        js.publish(nats.status_subject(), event.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let done = eventually(Duration::from_secs(10), || async {
        let unknown = app
            .metric(r#"orchestrator_status_events_total{outcome="unknown_id"}"#)
            .await;
        let invalid = app
            .metric(r#"orchestrator_status_events_total{outcome="invalid"}"#)
            .await;
        (unknown >= 1.0 && invalid >= 1.0).then_some(())
    })
    .await;
    assert!(done.is_some(), "all status events consumed");
    let v: Value = app.get(&id).await.json().await.unwrap();
    assert_eq!(v["status"], "delivered", "terminal status kept: {v}");
    let history: Vec<&str> = v["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        vec!["accepted", "queued", "sent", "delivered", "failed"]
    );
    assert_eq!(
        app.metric(r#"orchestrator_status_events_total{outcome="duplicate"}"#)
            .await,
        1.0
    );
    assert_eq!(
        app.metric(r#"orchestrator_status_events_total{outcome="applied"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn shadow_traffic_never_reaches_the_real_subject() {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let app = TestApp::spawn(options(&db, &nats)).await;
    let r = app
        .request(reqwest::Method::POST, "/v1/sms/send")
        .header("X-Shadow-Request", "1")
        .header("X-Shadow-Credential", SHADOW_SECRET)
        .json(&send_body("shadow copy"))
        .send()
        .await
        .unwrap();
    let shadow_id = accepted_id(r).await;
    let shadow = await_published(&nats, &nats.shadow_subject(), 1).await;
    assert_eq!(shadow[0].0, shadow_id);
    // A live message afterwards proves the relay ran past the shadow row.
    app.send(&send_body("live"), None).await;
    let real = await_published(&nats, &nats.subject(), 1).await;
    assert_eq!(real.len(), 1);
    assert_ne!(real[0].0, shadow_id);

    // The shadow message is not visible to live reads, and not counted as accepted.
    assert_eq!(app.get(&shadow_id).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.metric(
            r#"orchestrator_messages_accepted_total{encoding="GSM-7",route="/v1/sms/send"}"#
        )
        .await,
        1.0
    );
    // Envoy's Host suffix marks shadow traffic too.
    let r = app
        .request(reqwest::Method::POST, "/v1/sms/send")
        .header("Host", "sms.example.com-shadow")
        .header("X-Shadow-Credential", SHADOW_SECRET)
        .json(&send_body("envoy shadow"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    await_published(&nats, &nats.shadow_subject(), 2).await;

    // A marker without the credential is refused, and nothing is stored.
    let r = app
        .request(reqwest::Method::POST, "/v1/sms/send")
        .header("X-Shadow-Request", "1")
        .json(&send_body("sneaky"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["message"], "Shadow credential missing or invalid");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orch.messages")
        .fetch_one(&db.pool().await)
        .await
        .unwrap();
    assert_eq!(n, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stream_messages(&nats.url, &nats.stream, &nats.subject())
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn without_create_the_orchestrator_refuses_to_start_naming_the_missing_stream() {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let mut args = nats.args();
    args.retain(|a| a != "--nats-create-stream");
    let error = TestApp::start_failure(Options {
        database_url: Some(db.url.clone()),
        args,
        ..Options::default()
    })
    .await;
    assert!(
        error.contains("nats (NATS_URL)")
            && error.contains("not found")
            && error.contains(&nats.stream),
        "{error}"
    );
    assert!(
        error.contains("NATS_CREATE_STREAM"),
        "says what to do: {error}"
    );
}
