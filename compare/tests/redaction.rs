//! Redaction end to end: phone numbers, message bodies and credentials go
//! in through every input (captures, replayed traffic, NATS events), and no
//! output (diff logs, HTML, Markdown and JSON reports, learn-noise output,
//! stdout and stderr) contains them. The same run with `--no-redact` does
//! contain them, which proves the scan would notice.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use compare::events::{Event, EventDiffer, EventsConfig};
use compare::record::Side;
use compare::{DiffLogWriter, Differ, Redaction, Redactor, Rules};
use http::{HeaderMap, HeaderValue};
use serde_json::json;

const SECOND_PHONE: &str = "+447700900456";
const COOKIE: &str = "session=cookie-secret-value";
const SHADOW_SECRET: &str = "shadow-credential-secret";

/// Strings that must never appear in redacted output.
fn secrets() -> Vec<&'static str> {
    vec![
        "447700900123",
        "447700900456",
        SECRET_BODY,
        "482913",
        "super-secret-token",
        "cookie-secret-value",
        SHADOW_SECRET,
    ]
}

fn capture_line(i: usize) -> serde_json::Value {
    let request_body =
        json!({"to": PHONE, "from": "Acme", "body": SECRET_BODY, "reference": format!("r-{i}")});
    let primary = json!({"id": "507f1f77bcf86cd799439011", "status": "accepted", "to": PHONE, "body": SECRET_BODY,
                         "detail": format!("sent to {SECOND_PHONE}."), "segments": 1});
    let candidate = json!({"id": "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a", "status": "queued", "to": SECOND_PHONE,
                           "body": format!("{SECRET_BODY}!"), "detail": format!("queued for {PHONE}"), "segments": 2});
    json!({
        "schema_version": 1,
        "correlation_id": format!("c-{i}"),
        "request": {
            "method": "POST",
            "path": format!("/v1/sms/send?to={PHONE}&trace=1"),
            "headers": [["content-type", "application/json"], ["authorization", TOKEN], ["cookie", COOKIE],
                        ["x-shadow-credential", SHADOW_SECRET], ["x-msisdn", PHONE]],
            "body": request_body.to_string()
        },
        "primary": {"status": 201, "headers": [["content-type", "application/json"], ["set-cookie", COOKIE], ["x-echo", PHONE]],
                    "body": primary.to_string()},
        "candidate": if i == 0 {
            json!({"status": 502, "headers": [["content-type", "text/plain"], ["x-echo", SECOND_PHONE]],
                   "body": format!("upstream failed for {PHONE}")})
        } else {
            json!({"status": 202, "headers": [["content-type", "application/json"], ["x-echo", SECOND_PHONE]],
                   "body": candidate.to_string()})
        }
    })
}

fn event(payload: serde_json::Value) -> Event {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_static("Bearer eyJ-super-secret-token"),
    );
    Event {
        headers,
        payload: Bytes::from(payload.to_string()),
        received: Instant::now(),
    }
}

fn write_event_records(path: &Path, redaction: Redaction) {
    let differ = Differ::new(Rules::default_rules().expect("rules"));
    let config = EventsConfig {
        window: Duration::from_millis(1),
        ..EventsConfig::default()
    };
    let mut events = EventDiffer::new(&differ, &config);
    let mut writer = DiffLogWriter::append(path, redaction).expect("log");
    let legacy = json!({"correlation_id": "e-1", "to": PHONE, "body": SECRET_BODY, "message_id": "507f1f77bcf86cd799439011"});
    let shadow = json!({"correlation_id": "e-1", "to": SECOND_PHONE, "body": "other text", "message_id": "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a"});
    assert!(events.offer(Side::Primary, event(legacy)).is_none());
    let record = events
        .offer(Side::Candidate, event(shadow))
        .expect("a pair");
    writer.write(record).expect("write");
    let lonely = json!({"correlation_id": PHONE, "to": PHONE});
    assert!(events.offer(Side::Candidate, event(lonely)).is_none());
    std::thread::sleep(Duration::from_millis(5));
    for record in events.expire(Instant::now()) {
        writer.write(record).expect("write");
    }
    writer.flush().expect("flush");
}

/// Runs every command that writes output; returns the files and captured
/// streams to scan.
fn produce_outputs(dir: &tempfile::TempDir, redact: bool) -> Vec<(String, String)> {
    let capture = file(dir, "capture.jsonl");
    write_jsonl(&capture, &(0..3).map(capture_line).collect::<Vec<_>>());
    let log = file(dir, "diffs.jsonl");
    let events_log = file(dir, "events.jsonl");
    let no_redact: &[&str] = if redact { &[] } else { &["--no-redact"] };
    let mut streams = Vec::new();
    let mut run = |args: Vec<std::ffi::OsString>| {
        let output = compare_bin()
            .args(&args)
            .args(no_redact)
            .env("DIFF_REDACTION_KEY", "test-key")
            .output()
            .expect("compare runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?}: {stderr}");
        streams.push((format!("{args:?} stdout"), stdout));
        streams.push((format!("{args:?} stderr"), stderr));
    };
    let os = |parts: &[&dyn AsRef<std::ffi::OsStr>]| {
        parts
            .iter()
            .map(|p| p.as_ref().to_owned())
            .collect::<Vec<_>>()
    };

    // 1. Offline diff of a capture holding both responses.
    run(os(&[
        &"diff",
        &"--capture",
        &capture,
        &"--out",
        &log,
        &"--keep-request",
        &"always",
    ]));

    // 2. Replay of the same capture against two live services.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let legacy = runtime.block_on(FakeService::start(Flavour::Legacy, "legacy"));
    let orchestrator = runtime.block_on(FakeService::start(Flavour::Orchestrator, "orchestrator"));
    let (legacy_url, orchestrator_url) = (legacy.url(), orchestrator.url());
    run(os(&[
        &"replay",
        &"--capture",
        &capture,
        &"--primary",
        &legacy_url,
        &"--candidate",
        &orchestrator_url,
        &"--allow-writes",
        &"--keep-request",
        &"always",
        &"--no-progress",
        &"--out",
        &log,
    ]));
    assert_eq!(orchestrator.requests().len(), 3);

    // 3. Events.
    let redaction = if redact {
        Redaction::Keyed(Redactor::new(b"test-key"))
    } else {
        Redaction::Disabled
    };
    write_event_records(&events_log, redaction);

    // 4. Reports and noise learning over everything.
    let (html, md, json_report) = (file(dir, "r.html"), file(dir, "r.md"), file(dir, "r.json"));
    run(os(&[
        &"report",
        &log,
        &events_log,
        &"--html",
        &html,
        &"--markdown",
        &md,
        &"--json",
        &json_report,
    ]));
    run(os(&[&"report", &log, &events_log]));
    run(os(&[
        &"learn-noise",
        &log,
        &events_log,
        &"--json",
        &"--min-samples",
        &"1",
        &"--min-diff-rate",
        &"0",
    ]));

    let mut outputs: Vec<(String, String)> = [&log, &events_log, &html, &md, &json_report]
        .iter()
        .map(|p: &&PathBuf| {
            (
                p.display().to_string(),
                std::fs::read_to_string(p).expect("output exists"),
            )
        })
        .collect();
    outputs.extend(streams);
    outputs
}

#[test]
fn no_output_contains_phone_numbers_bodies_or_credentials() {
    let dir = tmp();
    let outputs = produce_outputs(&dir, true);
    let mut leaks = Vec::new();
    for (name, text) in &outputs {
        for secret in secrets() {
            if text.contains(secret) {
                leaks.push(format!("{name} contains {secret:?}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    // The records are still useful: equal values hash equally, the diffs
    // and the curl examples are there.
    let log = &outputs[0].1;
    assert!(log.contains("\"redacted\":true"));
    assert!(log.contains("hmac:"));
    let html = &outputs[2].1;
    assert!(html.contains("curl -sS -X"), "copy as curl present");
    assert!(html.contains("segments"), "{html}");
}

#[test]
fn with_no_redact_the_same_scan_finds_them() {
    let dir = tmp();
    let outputs = produce_outputs(&dir, false);
    let everything: String = outputs.iter().map(|(_, t)| t.as_str()).collect();
    for secret in ["447700900123", SECRET_BODY, "super-secret-token"] {
        assert!(
            everything.contains(secret),
            "--no-redact output lacks {secret:?}"
        );
    }
}
