//! The committed JSON Schemas describe what the code writes: every diff
//! record variant and every capture line validate, and malformed ones do
//! not.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use compare::capture::jsonl::CaptureLine;
use compare::events::{Event, EventDiffer, EventsConfig};
use compare::record::Side;
use compare::{Differ, Exchange, KeepRequest, RecordedRequest, RecordedResponse, Redactor, Rules};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

fn validator(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file"))
        .expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:?}\n{instance:#}"
    );
}

fn golden_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"))
            .expect("golden dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
    dirs.sort();
    dirs
}

fn exchange() -> Exchange {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("authorization", HeaderValue::from_static("Bearer x"));
    headers.insert("x-correlation-id", HeaderValue::from_static("c-1"));
    let response = |status: u16, body: Value| RecordedResponse {
        status: StatusCode::from_u16(status).expect("status"),
        headers: headers.clone(),
        body: Bytes::from(body.to_string()),
        latency: Duration::from_millis(3),
    };
    Exchange {
        request: RecordedRequest {
            method: Method::POST,
            path: "/v1/sms/send?x=1".to_owned(),
            headers: headers.clone(),
            body: Bytes::from(json!({"to": PHONE, "body": SECRET_BODY}).to_string()),
        },
        primary: response(
            200,
            json!({"id": "507f1f77bcf86cd799439011", "encoding": "GSM-7"}),
        ),
        candidate: response(
            500,
            json!({"id": "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a", "encoding": "UCS-2", "extra": 1}),
        ),
    }
}

#[test]
fn every_kind_of_diff_record_matches_the_schema() {
    let schema = validator("diff-record.v1.schema.json");
    for dir in golden_dirs() {
        let mut record: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("expected.json")).expect("expected"),
        )
        .expect("JSON");
        record["ts"] = json!("2026-05-01T12:00:00Z");
        assert_valid(&schema, &record, &dir.display().to_string());
    }
    let differ =
        Differ::new(Rules::default_rules().expect("rules")).keep_request(KeepRequest::Always);
    let redactor = Redactor::new(b"k");
    let ex = exchange();
    let mut records = vec![
        differ.diff(&ex),
        differ.diff_with_secondary(&ex, &ex.primary),
        differ.failed(&ex.request, &ex.primary, "candidate: timeout".to_owned()),
    ];
    // Events: a pair and an orphan.
    let config = EventsConfig {
        window: Duration::ZERO,
        ..EventsConfig::default()
    };
    let mut events = EventDiffer::new(&differ, &config);
    let event = |id: &str| Event {
        headers: HeaderMap::new(),
        payload: Bytes::from(json!({"correlation_id": "e", "message_id": id}).to_string()),
        received: Instant::now(),
    };
    assert!(
        events
            .offer(Side::Primary, event("507f1f77bcf86cd799439011"))
            .is_none()
    );
    records.extend(events.offer(
        Side::Candidate,
        event("0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a"),
    ));
    let orphan = Event {
        payload: Bytes::from(json!({"correlation_id": "lonely"}).to_string()),
        ..event("x")
    };
    assert!(events.offer(Side::Primary, orphan).is_none());
    records.extend(events.expire(Instant::now() + Duration::from_millis(1)));
    assert_eq!(records.len(), 5);
    for mut record in records {
        assert_valid(
            &schema,
            &serde_json::to_value(&record).expect("json"),
            "record",
        );
        redactor.redact_record(&mut record);
        assert_valid(
            &schema,
            &serde_json::to_value(&record).expect("json"),
            "redacted record",
        );
    }
    let bad = json!({"schema_version": 1, "ts": "2026-05-01T12:00:00Z", "route": "x", "method": "GET", "verdict": "maybe"});
    assert!(!schema.is_valid(&bad));
}

#[test]
fn capture_lines_match_the_schema() {
    let schema = validator("capture.v1.schema.json");
    for dir in golden_dirs() {
        let line: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("exchange.json")).expect("exchange"),
        )
        .expect("JSON");
        assert_valid(&schema, &line, &dir.display().to_string());
    }
    let line = CaptureLine::from_exchange(&exchange(), &Redactor::new(b"k"), chrono::Utc::now());
    let value = serde_json::to_value(&line).expect("json");
    assert_valid(&schema, &value, "CaptureLine::from_exchange");
    assert!(
        !value.to_string().contains("Bearer x"),
        "captures never hold credentials"
    );
    // A binary body goes to body_base64 and reads back the same.
    let mut binary = exchange();
    binary.request.body = Bytes::from_static(&[0xff, 0x00, 0xfe]);
    let value = serde_json::to_value(CaptureLine::from_exchange(
        &binary,
        &Redactor::new(b"k"),
        chrono::Utc::now(),
    ))
    .expect("json");
    assert_valid(&schema, &value, "binary body");
    let text = value.to_string();
    let back =
        compare::capture::jsonl::parse(Path::new("x.jsonl"), text.as_bytes()).expect("reads back");
    assert_eq!(&back[0].request.body[..], &[0xff, 0x00, 0xfe]);

    let both = json!({"schema_version": 1, "request": {"method": "GET", "path": "/", "body": "a", "body_base64": "YQ=="}});
    assert!(!schema.is_valid(&both));
    let relative = json!({"schema_version": 1, "request": {"method": "GET", "path": "v1"}});
    assert!(!schema.is_valid(&relative));
}
