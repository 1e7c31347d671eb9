//! The submit API end to end: the real binary on port 0, on embedded SQLite
//! and on real Postgres.

use std::time::Duration;

use integration_tests::{Options, TestApp, TestDatabase, eventually, pointers, send_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PROBLEM: &str = "application/problem+json";

async fn problem(r: reqwest::Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        PROBLEM,
        "content type"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("urn:sms-orchestrator:problem:{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16());
    body
}

async fn accepted_then_read_back(app: &TestApp) {
    let r = app.send(&send_body("Hello {world} €5"), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/sms/{}", body["id"].as_str().unwrap())
    );
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["encoding"], "GSM-7");
    assert_eq!(body["segments"], 1);
    assert_eq!(body["to"], "+447700900123");
    assert_eq!(body["reference"], Value::Null);

    let got = app.get(body["id"].as_str().unwrap()).await;
    assert_eq!(got.status(), StatusCode::OK);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["id"], body["id"]);
    assert_eq!(got["to"], "+447700900123");
    assert_eq!(got["status_history"][0]["status"], "accepted");
}

#[tokio::test]
async fn a_message_is_accepted_and_read_back_on_embedded_sqlite() {
    let app = TestApp::embedded().await;
    accepted_then_read_back(&app).await;
}

#[tokio::test]
async fn a_message_is_accepted_and_read_back_on_postgres() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    accepted_then_read_back(&app).await;
    let pool = db.pool().await;
    let (tenant, shadow): (String, bool) =
        sqlx::query_as("SELECT tenant_id, shadow FROM orch.messages")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(tenant, app.tenant);
    assert!(!shadow);
}

#[tokio::test]
async fn three_errors_are_reported_as_three_violations_with_pointers() {
    let app = TestApp::embedded().await;
    let r = app
        .send(
            &json!({"to": "447700900123", "body": "", "from": "Acme"}),
            None,
        )
        .await;
    let p = problem(r, StatusCode::BAD_REQUEST, "validation-failed").await;
    assert_eq!(pointers(&p), vec!["/body", "/to"]);

    let r = app
        .send(
            &json!({"to": "+0447", "from": "Acme!", "body": "x", "extra": 1}),
            None,
        )
        .await;
    let p = problem(r, StatusCode::BAD_REQUEST, "validation-failed").await;
    assert_eq!(pointers(&p), vec!["/extra", "/from", "/to"]);
}

#[tokio::test]
async fn every_validation_rule_has_its_pointer() {
    let app = TestApp::embedded().await;
    let past = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let far = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"from": "Acme", "body": "x"}), "/to"),
        (json!({"to": "+447700900123", "body": "x"}), "/from"),
        (json!({"to": "+447700900123", "from": "Acme"}), "/body"),
        (
            json!({"to": "+4477009001234567", "from": "Acme", "body": "x"}),
            "/to",
        ),
        (
            json!({"to": "+447700900123", "from": "TooLongSender", "body": "x"}),
            "/from",
        ),
        (
            json!({"to": "+447700900123", "from": "12", "body": "x"}),
            "/from",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme!", "body": "x"}),
            "/from",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x".repeat(1601)}),
            "/body",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x".repeat(1531)}),
            "/body",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "reference": ""}),
            "/reference",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "callback_url": "http://a.example"}),
            "/callback_url",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "schedule_at": past}),
            "/schedule_at",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "schedule_at": far}),
            "/schedule_at",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "schedule_at": "tomorrow"}),
            "/schedule_at",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "validity_period": 10}),
            "/validity_period",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "metadata": {"k": 1}}),
            "/metadata/k",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "unknown": true}),
            "/unknown",
        ),
    ];
    for (body, pointer) in cases {
        let r = app.send(&body, None).await;
        let p = problem(r, StatusCode::BAD_REQUEST, "validation-failed").await;
        assert_eq!(pointers(&p), vec![pointer], "for {body}: {p}");
    }
}

#[tokio::test]
async fn encoding_and_segments_are_reported_as_carriers_bill_them() {
    let app = TestApp::embedded().await;
    let cases = [
        ("a".repeat(160), "GSM-7", 1),
        ("a".repeat(161), "GSM-7", 2),
        ("a".repeat(307), "GSM-7", 3),
        (format!("{}€", "a".repeat(159)), "GSM-7", 2),
        ("é".repeat(10), "GSM-7", 1),
        ("ę".to_owned(), "UCS-2", 1),
        ("ę".repeat(71), "UCS-2", 2),
        ("😀".repeat(35), "UCS-2", 1),
        ("😀".repeat(36), "UCS-2", 2),
    ];
    for (text, encoding, segments) in cases {
        let r = app.send(&send_body(&text), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["encoding"], encoding, "{text}");
        assert_eq!(body["segments"], segments, "{text}");
    }
}

#[tokio::test]
async fn bulk_accepts_valid_items_and_reports_invalid_ones() {
    let app = TestApp::embedded().await;
    let r = app
        .bulk(
            &json!({
                "defaults": {"from": "Acme", "body": "default text"},
                "messages": [
                    {"to": "+447700900001"},
                    {"to": "not-a-number"},
                    {"to": "+447700900003", "body": "own text"},
                ]
            }),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(body["results"][1]["index"], 1);
    assert_eq!(
        body["results"][1]["error"]["errors"][0]["pointer"],
        "/messages/1/to"
    );
    let id = body["results"][2]["id"].as_str().unwrap();
    let got: Value = app.get(id).await.json().await.unwrap();
    assert_eq!(got["to"], "+447700900003");
}

#[tokio::test]
async fn atomic_bulk_rejects_the_batch_and_stores_nothing() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        ..Options::default()
    })
    .await;
    let r = app
        .bulk(
            &json!({
                "atomic": true,
                "messages": [
                    {"to": "+447700900001", "from": "Acme", "body": "ok"},
                    {"to": "+447700900002", "from": "12", "body": "bad sender"},
                    {"to": "bad", "from": "Acme", "body": "bad number"},
                ]
            }),
            None,
        )
        .await;
    let p = problem(r, StatusCode::BAD_REQUEST, "validation-failed").await;
    assert_eq!(pointers(&p), vec!["/messages/1/from", "/messages/2/to"]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orch.messages")
        .fetch_one(&db.pool().await)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn bulk_over_the_item_limit_is_rejected() {
    let app = TestApp::spawn(Options {
        args: vec!["--bulk-max-items=3".into()],
        ..Options::default()
    })
    .await;
    let items: Vec<Value> = (0..4)
        .map(|i| json!({"to": format!("+44770090000{i}"), "from": "Acme", "body": "x"}))
        .collect();
    let r = app.bulk(&json!({"messages": items}), None).await;
    let p = problem(r, StatusCode::BAD_REQUEST, "validation-failed").await;
    assert_eq!(pointers(&p), vec!["/messages"]);

    let items: Vec<Value> = (0..1001).map(|_| json!({"to": "+447700900001"})).collect();
    let r = app.bulk(&json!({"messages": items}), None).await;
    let p = problem(r, StatusCode::BAD_REQUEST, "validation-failed").await;
    assert_eq!(pointers(&p), vec!["/messages"]);
}

#[tokio::test]
async fn another_tenants_message_is_a_404_like_an_unknown_id() {
    let app = TestApp::embedded().await;
    let id = integration_tests::accepted_id(app.send(&send_body("mine"), None).await).await;
    let other = app
        .request_as("other-tenant", Method::GET, &format!("/v1/sms/{id}"))
        .send()
        .await
        .unwrap();
    let a = problem(other, StatusCode::NOT_FOUND, "not-found").await;
    let unknown = app.get(&uuid::Uuid::now_v7().to_string()).await;
    let b = problem(unknown, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(a, b);
    let malformed = app.get("not-an-id").await;
    problem(malformed, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn tenant_header_is_required() {
    let app = TestApp::embedded().await;
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .bearer_auth(app.token_for(&app.tenant))
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "tenant-header-missing").await;
}

#[tokio::test]
async fn with_the_flag_off_the_routes_are_404_the_edge_probe_fails_and_the_process_stays_healthy() {
    let app = TestApp::spawn(Options {
        submit_disabled: true,
        ..Options::default()
    })
    .await;
    let r = app.send(&send_body("x"), None).await;
    problem(r, StatusCode::NOT_FOUND, "submit-api-disabled").await;
    let r = app.get(&uuid::Uuid::now_v7().to_string()).await;
    problem(r, StatusCode::NOT_FOUND, "submit-api-disabled").await;
    // The API listener's /healthz is the edge's health check: it takes
    // this target out of rotation while the flag is off.
    let edge = app
        .http
        .get(format!("{}/healthz", app.api))
        .send()
        .await
        .unwrap();
    assert_eq!(edge.status(), StatusCode::SERVICE_UNAVAILABLE);
    let edge: Value = edge.json().await.unwrap();
    assert_eq!(edge["status"], "submit_api_disabled");
    // The admin listener's probes are the process's: alive and ready.
    let health = app
        .http
        .get(format!("{}/healthz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .http
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(
        app.metrics()
            .await
            .contains("orchestrator_submit_api_enabled 0")
    );
}

#[tokio::test]
async fn the_flag_flips_at_runtime_from_the_flags_file() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.env");
    std::fs::write(&flags, "SUBMIT_API_ENABLED=false\n").unwrap();
    let app = TestApp::spawn_in(
        Options {
            args: vec![format!("--flags-file={}", flags.display())],
            ..Options::default()
        },
        dir,
    )
    .await;
    let r = app.send(&send_body("x"), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    std::fs::write(&flags, "SUBMIT_API_ENABLED=true\n").unwrap();
    let on = eventually(Duration::from_secs(2), || async {
        (app.send(&send_body("x"), None).await.status() == StatusCode::ACCEPTED).then_some(())
    })
    .await;
    assert!(on.is_some(), "flag did not turn on within 2 s");
    assert!(
        app.log_lines()
            .iter()
            .any(|l| l.contains("feature flag flipped"))
    );

    std::fs::write(&flags, "SUBMIT_API_ENABLED=false\n").unwrap();
    let off = eventually(Duration::from_secs(2), || async {
        (app.send(&send_body("x"), None).await.status() == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(off.is_some(), "flag did not turn off within 2 s");
}

#[tokio::test]
async fn malformed_json_is_a_400_with_its_position() {
    let app = TestApp::embedded().await;
    let r = app
        .request(Method::POST, "/v1/sms/send")
        .header("content-type", "application/json")
        .body("{\"to\": \"+447700900123\",\n \"from\": }")
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::BAD_REQUEST, "malformed-json").await;
    assert!(
        p["detail"].as_str().unwrap().contains("line 2 column"),
        "{p}"
    );
}

#[tokio::test]
async fn wrong_content_type_is_a_415() {
    let app = TestApp::embedded().await;
    let r = app
        .request(Method::POST, "/v1/sms/send")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    problem(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_a_413_with_separate_send_and_bulk_limits() {
    let app = TestApp::spawn(Options {
        args: vec![
            "--send-body-limit=200".into(),
            "--bulk-body-limit=400".into(),
        ],
        ..Options::default()
    })
    .await;
    let r = app.send(&send_body(&"x".repeat(300)), None).await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    // 300 bytes is over the send limit but under the bulk limit.
    let r = app
        .bulk(
            &json!({"messages": [{"to": "+447700900123", "from": "Acme", "body": "x".repeat(200)}]}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app
        .bulk(
            &json!({"messages": [{"to": "+447700900123", "from": "Acme", "body": "x".repeat(500)}]}),
            None,
        )
        .await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = TestApp::embedded().await;
    let r = app
        .request(Method::GET, "/v2/nothing")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::NOT_FOUND, "not-found").await;
    let r = app
        .request(Method::GET, "/v1/sms/send")
        .send()
        .await
        .unwrap();
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    problem(r, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    assert!(allow.contains("POST"), "{allow}");
}

#[tokio::test]
async fn the_contract_is_served_as_json() {
    let app = TestApp::embedded().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/sms/send"]["post"].is_object());
    assert!(doc["components"]["schemas"]["SendRequest"].is_object());
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let mut app = TestApp::embedded().await;
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"to": format!("+4477009{i:05}"), "from": "Acme", "body": "drain me"}))
        .collect();
    let body = json!({"messages": items});
    let request = app.bulk(&body, None);
    let (response, ()) = tokio::join!(request, async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        send_sigterm(&app);
    });
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted = response.json::<Value>().await.unwrap()["accepted"].clone();
    assert_eq!(accepted, 1000);
    let exit = app.terminate().await;
    assert!(exit.success(), "{exit:?}");
}

/// Sends SIGTERM without waiting for the exit.
fn send_sigterm(app: &TestApp) {
    if let Some(pid) = app.child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

#[tokio::test]
async fn with_the_database_down_submits_are_503_with_retry_after_and_nothing_is_half_written() {
    let pg = integration_tests::PrivatePostgres::start().await;
    let app = TestApp::spawn(Options {
        database_url: Some(pg.url()),
        ..Options::default()
    })
    .await;
    assert_eq!(
        app.send(&send_body("before"), None).await.status(),
        StatusCode::ACCEPTED
    );

    pg.stop();
    let r = app.send(&send_body("during"), Some("outage-key")).await;
    assert_eq!(r.headers()["retry-after"], "1");
    problem(r, StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable").await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["database"], "down");

    pg.resume();
    // The same key works once the database is back: the 503 stored nothing.
    let back = eventually(Duration::from_secs(10), || async {
        let r = app.send(&send_body("during"), Some("outage-key")).await;
        (r.status() == StatusCode::ACCEPTED).then_some(r)
    })
    .await
    .expect("accepted once the database is back");
    assert!(back.headers().get("idempotent-replayed").is_none());
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orch.messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "exactly the two accepted messages");
}

/// Validates `instance` against `components.schemas.<name>` of the committed contract.
fn conforms(name: &str, instance: &Value) {
    let doc: Value = contract_json(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../orchestrator/openapi.yaml"),
        )
        .unwrap(),
    );
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{name} does not match the contract: {errors:?}\n{instance}"
    );
}

/// The contract document as JSON, parsed the way the service parses it.
fn contract_json(yaml: &str) -> Value {
    let contract = orchestrator::contract::Contract::from_yaml(yaml).unwrap();
    serde_json::from_slice(contract.document_json()).unwrap()
}

#[tokio::test]
async fn every_answer_matches_the_contracts_response_schemas() {
    let app = TestApp::embedded().await;
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let sent: Value = app
        .send(
            &json!({"to": "+447700900123", "from": "Acme", "body": "x", "reference": "r",
                    "callback_url": "https://cb.example/x", "schedule_at": soon,
                    "validity_period": 600, "metadata": {"k": "v"}}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    conforms("Message", &sent);
    let got: Value = app
        .get(sent["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    conforms("MessageStatus", &got);
    let bulk: Value = app
        .bulk(
            &json!({"messages": [{"to": "+447700900123", "from": "Acme", "body": "x"}, {"to": "x"}]}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    conforms("BulkResponse", &bulk);
    let bad: Value = app.send(&json!({}), None).await.json().await.unwrap();
    conforms("Problem", &bad);
    let ready: Value = app
        .http
        .get(format!("{}/readyz", app.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    conforms("Readiness", &ready);
}
