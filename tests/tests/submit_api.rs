//! The submit API end to end: the real binary on port 0, on embedded SQLite
//! and on real Postgres. Every answer here is also checked against the
//! contract by the orchestrator itself (`--check-responses`, see
//! `integration_tests::ContractGuard`).

use std::time::Duration;

use integration_tests::{Options, TestApp, TestDatabase, eventually, pointers, send_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LEGACY_JSON: &str = "application/json; charset=utf-8";
const PROBLEM: &str = "application/problem+json";

/// A legacy (NestJS) error body, with its status and content type checked.
async fn legacy(r: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], LEGACY_JSON);
    assert_eq!(r.headers()["x-powered-by"], "Express");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["statusCode"], status.as_u16(), "{body}");
    body
}

/// The `message` list of a legacy validation failure.
async fn messages(r: reqwest::Response) -> Vec<String> {
    let body = legacy(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["error"], "Bad Request");
    serde_json::from_value(body["message"].clone()).expect("a list of messages")
}

/// A problem document (the request asked for one).
async fn problem(r: reqwest::Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], PROBLEM, "content type");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("urn:sms-orchestrator:problem:{slug}"),
        "{body}"
    );
    assert_eq!(body["status"], status.as_u16());
    body
}

/// `POST /v1/sms/send` asking for problem documents.
async fn send_for_problems(app: &TestApp, body: &Value) -> reqwest::Response {
    app.request(Method::POST, "/v1/sms/send")
        .header("Accept", PROBLEM)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_iso_millis(s: &str) -> bool {
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.'
}

async fn accepted_then_read_back(app: &TestApp) {
    let r = app.send(&send_body("Hello {world} €5"), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["content-type"], LEGACY_JSON);
    assert!(r.headers().get("x-correlation-id").is_none());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(is_object_id(id), "{id}");
    assert_eq!(location, format!("/v1/sms/{id}"));
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["encoding"], "GSM-7");
    assert_eq!(body["segments"], 1);
    assert_eq!(body["to"], "+447700900123");
    assert_eq!(body["reference"], Value::Null);
    assert!(
        is_iso_millis(body["created_at"].as_str().unwrap()),
        "{body}"
    );
    // The id's first 4 bytes are its creation second.
    let secs = i64::from_str_radix(&id[..8], 16).unwrap();
    let created =
        chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(secs, created.timestamp());

    let got = app.get(id).await;
    assert_eq!(got.status(), StatusCode::OK);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["id"], body["id"]);
    assert_eq!(got["to"], "+447700900123");
    assert_eq!(
        got["created_at"], body["created_at"],
        "stored at the precision shown"
    );
    assert_eq!(got["status_history"][0]["status"], "accepted");
    assert_eq!(got["status_history"][0]["at"], body["created_at"]);
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
    let (id, tenant, shadow): (String, String, bool) =
        sqlx::query_as("SELECT id, tenant_id, shadow FROM orch.messages")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(is_object_id(&id));
    assert_eq!(tenant, app.tenant);
    assert!(!shadow);
}

#[tokio::test]
async fn every_violation_is_reported_at_once_schema_and_domain_together() {
    let app = TestApp::embedded().await;
    // Defect: a schema error (`to`) used to hide the domain checks (`from`).
    let r = app
        .send(
            &json!({"to": "447700900123", "from": "12", "body": "x"}),
            None,
        )
        .await;
    assert_eq!(
        messages(r).await,
        vec![
            "to must be a valid phone number",
            "from must be a valid sender id"
        ]
    );
    let r = app
        .send(
            &json!({"to": "+0447", "from": "Acme!", "body": "x", "extra": 1}),
            None,
        )
        .await;
    assert_eq!(
        messages(r).await,
        vec![
            "property extra should not exist",
            "to must be a valid phone number",
            "from must be a valid sender id"
        ]
    );
    // The same violations as a problem document, in the same order.
    let r = send_for_problems(
        &app,
        &json!({"to": "+0447", "from": "Acme!", "body": "x", "extra": 1}),
    )
    .await;
    let p = problem(r, StatusCode::BAD_REQUEST, "validation-failed").await;
    let ordered: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(ordered, vec!["/extra", "/to", "/from"]);
}

#[tokio::test]
async fn every_validation_rule_has_its_pointer_and_message() {
    let app = TestApp::embedded().await;
    let past = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let far = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"from": "Acme", "body": "x"}),
            "/to",
            "to must be a valid phone number",
        ),
        (
            json!({"to": "+447700900123", "body": "x"}),
            "/from",
            "from must be a valid sender id",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme"}),
            "/body",
            "body must be a non-empty text within the segment limit",
        ),
        (
            json!({"to": "+4477009001234567", "from": "Acme", "body": "x"}),
            "/to",
            "to must be a valid phone number",
        ),
        (
            json!({"to": "+447700900123", "from": "TooLongSender", "body": "x"}),
            "/from",
            "from must be a valid sender id",
        ),
        (
            json!({"to": "+447700900123", "from": "12", "body": "x"}),
            "/from",
            "from must be a valid sender id",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme!", "body": "x"}),
            "/from",
            "from must be a valid sender id",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x".repeat(1601)}),
            "/body",
            "body must be a non-empty text within the segment limit",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x".repeat(1531)}),
            "/body",
            "body must be a non-empty text within the segment limit",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "reference": ""}),
            "/reference",
            "reference must be longer than or equal to 1 and shorter than or equal to 64 characters",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "reference": 7}),
            "/reference",
            "reference must be a string",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "callback_url": "http://a.example"}),
            "/callback_url",
            "callback_url must be an https URL",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "schedule_at": past}),
            "/schedule_at",
            "schedule_at must be a date-time in the future, at most 7 days ahead",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "schedule_at": far}),
            "/schedule_at",
            "schedule_at must be a date-time in the future, at most 7 days ahead",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "schedule_at": "tomorrow"}),
            "/schedule_at",
            "schedule_at must be a date-time in the future, at most 7 days ahead",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "validity_period": 10}),
            "/validity_period",
            "validity_period must be an integer from 60 to 259200",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "metadata": {"k": 1}}),
            "/metadata/k",
            "metadata must be an object of at most 10 string values",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "x", "unknown": true}),
            "/unknown",
            "property unknown should not exist",
        ),
    ];
    for (body, pointer, message) in cases {
        let r = app.send(&body, None).await;
        assert_eq!(messages(r).await, vec![message], "for {body}");
        let r = send_for_problems(&app, &body).await;
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
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["encoding"], encoding, "{text}");
        assert_eq!(body["segments"], segments, "{text}");
    }
}

#[tokio::test]
async fn every_optional_field_is_echoed_and_schedule_at_in_utc_milliseconds() {
    let app = TestApp::embedded().await;
    let at = chrono::Utc::now() + chrono::Duration::hours(2);
    let with_offset = at
        .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let r = app
        .send(
            &json!({"to": "+447700900123", "from": "Acme", "body": "x", "reference": "r-1",
                    "callback_url": "https://cb.example/x", "schedule_at": with_offset,
                    "validity_period": 600, "metadata": {"b": "2", "a": "1"}}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let expected = format!("{}.000Z", at.format("%Y-%m-%dT%H:%M:%S"));
    assert_eq!(body["schedule_at"], expected);
    // The legacy's field order, metadata members in request order.
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        vec![
            "id",
            "status",
            "to",
            "from",
            "encoding",
            "segments",
            "created_at",
            "reference",
            "callback_url",
            "schedule_at",
            "validity_period",
            "metadata"
        ]
    );
    assert!(text.ends_with(r#""metadata":{"b":"2","a":"1"}}"#), "{text}");
    let got: Value = app
        .get(body["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["schedule_at"], expected);
    let keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(&keys[keys.len() - 2..], ["updated_at", "status_history"]);
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
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("location").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(body["results"][1]["index"], 1);
    assert_eq!(
        body["results"][1]["error"],
        json!({"message": ["to must be a valid phone number"], "error": "Bad Request", "statusCode": 400})
    );
    let id = body["results"][2]["id"].as_str().unwrap();
    let got: Value = app.get(id).await.json().await.unwrap();
    assert_eq!(got["to"], "+447700900003");

    // Asked for problem documents, the item's error is one.
    let r = app
        .request(Method::POST, "/v1/sms/bulk")
        .header("Accept", PROBLEM)
        .json(&json!({"messages": [{"to": "+447700900001", "from": "Acme", "body": "x"}, {"to": "x"}]}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["results"][1]["error"]["errors"][0]["pointer"],
        "/messages/1/to"
    );
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
    assert_eq!(
        messages(r).await,
        vec![
            "messages.1.from must be a valid sender id",
            "messages.2.to must be a valid phone number"
        ]
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orch.messages")
        .fetch_one(&db.pool().await)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn an_envelope_error_is_reported_with_every_items_errors() {
    let app = TestApp::embedded().await;
    // Defect: `"atomic": "yes"` used to hide the items' errors.
    let r = app
        .bulk(
            &json!({"atomic": "yes", "messages": [{"to": "bad", "from": "Acme", "body": "x"}]}),
            None,
        )
        .await;
    assert_eq!(
        messages(r).await,
        vec![
            "atomic must be a boolean value",
            "messages.0.to must be a valid phone number"
        ]
    );
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
    assert_eq!(
        messages(r).await,
        vec!["messages must contain no more than 3 elements"]
    );
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
    let a = legacy(other, StatusCode::NOT_FOUND).await;
    assert_eq!(a["message"], "Message not found");
    let unknown = app.get("6a3f2b1c9e8d7a6b5c4d3e2f").await;
    assert_eq!(legacy(unknown, StatusCode::NOT_FOUND).await, a);
    for not_an_id in [
        "not-an-id",
        "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a",
        &id.to_uppercase(),
    ] {
        let r = app.get(not_an_id).await;
        assert_eq!(legacy(r, StatusCode::NOT_FOUND).await, a, "{not_an_id}");
    }
}

#[tokio::test]
async fn a_get_is_304_when_the_clients_copy_is_fresh() {
    let app = TestApp::embedded().await;
    let id = integration_tests::accepted_id(app.send(&send_body("etag"), None).await).await;
    // Once published the message no longer changes, nor does its ETag.
    let first = eventually(Duration::from_secs(10), || async {
        let r = app.get(&id).await;
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        (body["status"] == "queued").then_some(etag)
    })
    .await
    .expect("published");
    let etag = first;
    assert!(etag.starts_with("W/\""), "{etag}");
    let conditional = |value: &str, extra: Option<(&str, &str)>| {
        let mut r = app
            .request(Method::GET, &format!("/v1/sms/{id}"))
            .header("If-None-Match", value);
        if let Some((k, v)) = extra {
            r = r.header(k, v);
        }
        r.send()
    };
    let r = conditional(&etag, None).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.headers().get("content-type").is_none());
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().await.unwrap().is_empty());
    // A strong copy of the tag and `*` match too; no-cache never does.
    let strong = etag.trim_start_matches("W/");
    assert_eq!(
        conditional(strong, None).await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        conditional("*", None).await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        conditional(&etag, Some(("Cache-Control", "no-cache")))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        conditional("W/\"1-x\"", None).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_credential_is_checked_before_the_tenant_header() {
    let app = TestApp::embedded().await;
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    let body = legacy(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body, json!({"message": "Unauthorized", "statusCode": 401}));
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .bearer_auth(app.token_for(&app.tenant))
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    let body = legacy(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["message"], json!(["x-tenant-id should not be empty"]));
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .bearer_auth(app.token_for(&app.tenant))
        .header("X-Tenant-Id", "someone-else")
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    let body = legacy(r, StatusCode::FORBIDDEN).await;
    assert_eq!(body["message"], "Forbidden resource");
}

#[tokio::test]
async fn problem_documents_carry_instance_and_correlation_id() {
    // Defect: the contract promised both and neither was ever sent.
    let app = TestApp::embedded().await;
    let r = app
        .request(Method::GET, "/v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f")
        .header("Accept", PROBLEM)
        .header("X-Correlation-ID", "corr-problem-1")
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(p["instance"], "/v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f");
    assert_eq!(p["correlation_id"], "corr-problem-1");
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .header("Accept", PROBLEM)
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let p = problem(r, StatusCode::UNAUTHORIZED, "invalid-token").await;
    assert_eq!(p["instance"], "/v1/sms/send");
    assert!(
        p["correlation_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{p}"
    );
}

#[tokio::test]
async fn with_the_flag_off_the_routes_are_404_the_edge_probe_fails_and_the_process_stays_healthy() {
    let app = TestApp::spawn(Options {
        submit_disabled: true,
        ..Options::default()
    })
    .await;
    let r = app.send(&send_body("x"), None).await;
    let body = legacy(r, StatusCode::NOT_FOUND).await;
    assert_eq!(body["message"], "Cannot POST /v1/sms/send");
    let r = app.get("6a3f2b1c9e8d7a6b5c4d3e2f").await;
    let body = legacy(r, StatusCode::NOT_FOUND).await;
    assert_eq!(
        body["message"],
        "Cannot GET /v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f"
    );
    let r = app
        .request(Method::POST, "/v1/sms/send")
        .header("Accept", PROBLEM)
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
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
        (app.send(&send_body("x"), None).await.status() == StatusCode::CREATED).then_some(())
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
async fn malformed_json_is_a_400_in_node_20s_words_even_before_authentication() {
    let app = TestApp::embedded().await;
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .header("content-type", "application/json")
        .body("{\"to\": \"+447700900123\",\n \"from\": }")
        .send()
        .await
        .unwrap();
    let body = legacy(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        body["message"],
        "Unexpected token '}', ...\"\n \"from\": }\" is not valid JSON"
    );
    let r = send_raw(&app, "/v1/sms/send", "application/json", "[1,]").await;
    let body = legacy(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        body["message"],
        "Unexpected token ']', \"[1,]\" is not valid JSON"
    );
}

async fn send_raw(app: &TestApp, path: &str, content_type: &str, body: &str) -> reqwest::Response {
    app.request(Method::POST, path)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_duplicate_key_is_a_400_and_stores_nothing() {
    // JSON.parse keeps the last value; something in front may read the
    // first. Refused, whichever value is valid.
    let app = TestApp::embedded().await;
    let body = r#"{"to": "+447700900123", "to": "+447700900999", "from": "Acme", "body": "x"}"#;
    let r = send_raw(&app, "/v1/sms/send", "application/json", body).await;
    let got = legacy(r, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        got["message"],
        "Duplicate key \"to\" in JSON at position 24"
    );
    let r = app
        .request(Method::POST, "/v1/sms/bulk")
        .header("content-type", "application/json")
        .header("Accept", PROBLEM)
        .body(
            r#"{"messages": [{"to": "+447700900123", "from": "Acme", "body": "a", "body": "b"}]}"#,
        )
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "duplicate-key").await;
    assert_eq!(
        app.metric(
            r#"orchestrator_messages_accepted_total{encoding="GSM-7",route="/v1/sms/send"}"#
        )
        .await,
        0.0
    );
}

#[tokio::test]
async fn another_content_type_reads_as_an_empty_body_and_a_foreign_charset_is_415() {
    let app = TestApp::embedded().await;
    let r = send_raw(
        &app,
        "/v1/sms/send",
        "text/plain",
        &send_body("x").to_string(),
    )
    .await;
    assert_eq!(
        messages(r).await,
        vec![
            "to must be a valid phone number",
            "from must be a valid sender id",
            "body must be a non-empty text within the segment limit"
        ]
    );
    let r = send_raw(&app, "/v1/sms/bulk", "text/plain", "{}").await;
    assert_eq!(
        messages(r).await,
        vec!["messages must contain at least 1 elements"]
    );
    let r = send_raw(
        &app,
        "/v1/sms/send",
        "application/json; charset=latin1",
        &send_body("x").to_string(),
    )
    .await;
    let body = legacy(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(
        body,
        json!({"statusCode": 415, "message": "unsupported charset \"LATIN1\""})
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_a_413_at_the_legacys_100_kb_by_default() {
    let app = TestApp::embedded().await;
    // Exactly the limit is read (and is then not a valid message)…
    let pad = |n: usize| format!("{{\"body\":\"{}\"}}", "x".repeat(n - 11));
    let r = send_raw(&app, "/v1/sms/send", "application/json", &pad(102_400)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // …one byte more is not, and the answer comes before authentication.
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .header("content-type", "application/json")
        .body(pad(102_401))
        .send()
        .await
        .unwrap();
    let body = legacy(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(
        body,
        json!({"statusCode": 413, "message": "request entity too large"})
    );
}

#[tokio::test]
async fn send_and_bulk_limits_can_be_set_apart() {
    let app = TestApp::spawn(Options {
        args: vec![
            "--send-body-limit=200".into(),
            "--bulk-body-limit=400".into(),
        ],
        ..Options::default()
    })
    .await;
    let r = app.send(&send_body(&"x".repeat(300)), None).await;
    legacy(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    // 300 bytes is over the send limit but under the bulk limit.
    let r = app
        .bulk(
            &json!({"messages": [{"to": "+447700900123", "from": "Acme", "body": "x".repeat(200)}]}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .bulk(
            &json!({"messages": [{"to": "+447700900123", "from": "Acme", "body": "x".repeat(500)}]}),
            None,
        )
        .await;
    legacy(r, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn routes_match_as_express_matched_them_and_there_is_no_405() {
    let app = TestApp::embedded().await;
    let cannot = |method: &str, url: &str| json!({"message": format!("Cannot {method} {url}"), "error": "Not Found", "statusCode": 404});
    let r = app
        .request(Method::GET, "/v2/nothing?x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        legacy(r, StatusCode::NOT_FOUND).await,
        cannot("GET", "/v2/nothing?x=1")
    );
    for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        let r = app
            .request(method.clone(), "/v1/sms/send")
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("allow").is_none());
        assert_eq!(
            legacy(r, StatusCode::NOT_FOUND).await,
            cannot(method.as_str(), "/v1/sms/send")
        );
    }
    let r = app
        .request(Method::POST, "/v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f")
        .send()
        .await
        .unwrap();
    assert_eq!(
        legacy(r, StatusCode::NOT_FOUND).await,
        cannot("POST", "/v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f")
    );
    // `GET /v1/sms/send` is a lookup of the id "send".
    let r = app
        .request(Method::GET, "/v1/sms/send")
        .send()
        .await
        .unwrap();
    assert_eq!(
        legacy(r, StatusCode::NOT_FOUND).await["message"],
        "Message not found"
    );
    // Any case, one trailing slash.
    let r = app
        .request(Method::POST, "/V1/SMS/Send/")
        .json(&send_body("case"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .request(Method::GET, &format!("/v1/SMS/{id}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A percent-encoding that does not decode.
    let r = app
        .request(Method::GET, "/v1/sms/%zz")
        .send()
        .await
        .unwrap();
    assert_eq!(
        legacy(r, StatusCode::BAD_REQUEST).await["message"],
        "Failed to decode param '%zz'"
    );
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
    assert!(doc["paths"]["/v1/sms/send"]["post"]["responses"]["201"].is_object());
    assert!(doc["components"]["schemas"]["SendRequest"].is_object());
    assert_eq!(doc["x-legacy"]["runtime"]["node"], "20");
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
    assert_eq!(response.status(), StatusCode::CREATED);
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
        StatusCode::CREATED
    );

    pg.stop();
    let r = app.send(&send_body("during"), Some("outage-key")).await;
    assert_eq!(r.headers()["retry-after"], "1");
    let body = legacy(r, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"], "Service Unavailable");
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
    eventually(Duration::from_secs(10), || async {
        let r = app.send(&send_body("during"), Some("outage-key")).await;
        (r.status() == StatusCode::CREATED).then_some(r)
    })
    .await
    .expect("accepted once the database is back");
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orch.messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "exactly the two accepted messages");
}

#[tokio::test]
async fn the_conformance_check_passes_a_real_answer_and_refuses_it_with_another_status() {
    // The guard every test relies on: a deliberately broken contract (the
    // send answer must be 202) makes the orchestrator log the 201 it gives.
    let app = TestApp::embedded().await;
    assert!(app.contract_violations().is_empty());
    let check = orchestrator::conformance::Conformance::embedded().unwrap();
    let r = app.send(&send_body("self-check"), None).await;
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let body = r.bytes().await.unwrap();
    let mut wire = axum::http::HeaderMap::new();
    for (k, v) in &headers {
        wire.append(
            axum::http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
            axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    let no_headers = axum::http::HeaderMap::new();
    let exchange = |status| orchestrator::conformance::Exchange {
        method: &axum::http::Method::POST,
        path: "/v1/sms/send",
        request_headers: &no_headers,
        status,
        headers: &wire,
        body: &body,
    };
    assert!(check.check(&exchange(status)).is_empty());
    assert!(!check.check(&exchange(202)).is_empty());
}
