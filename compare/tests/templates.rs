//! `compare replay` of an authored corpus: templated lines are filled per
//! target (each side's own ids and ETags, the callers' credentials, waits),
//! through the real binary against two local services.

mod common;

use common::{FakeService, Flavour, compare_bin, file, read_records, tmp, write_jsonl};
use serde_json::{Value, json};

fn line(correlation_id: &str, templates: bool, request: Value) -> Value {
    json!({
        "schema_version": 1,
        "correlation_id": correlation_id,
        "templates": templates,
        "request": request,
    })
}

fn corpus() -> Vec<Value> {
    vec![
        line(
            "send-1",
            true,
            json!({"method": "POST", "path": "/v1/sms/send", "headers": [
                ["x-compare-caller", "tenant"], ["content-type", "application/json"],
                ["idempotency-key", "k-{{run}}"]],
                "body": r#"{"to":"+447700900123","from":"Acme","body":"hi","schedule_at":"{{time:+2h:+01:00}}"}"#}),
        ),
        line(
            "read-1",
            true,
            json!({"method": "GET", "path": "/v1/sms/{{id:send-1}}", "headers": [
                ["x-compare-caller", "tenant"],
                ["x-compare-await", "/v1/sms/{{id:send-1}} /status delivered"],
                ["if-none-match", "{{etag:send-1}}"]]}),
        ),
        // Captured traffic: braces are data, sent as they are.
        line(
            "read-verbatim",
            false,
            json!({"method": "GET", "path": "/v1/sms/{{id:send-1}}", "headers": []}),
        ),
    ]
}

fn replay(
    legacy: &FakeService,
    orchestrator: &FakeService,
    capture: &std::path::Path,
    log: &std::path::Path,
    callers: &[&str],
) -> std::process::Output {
    compare_bin()
        .args(["replay", "--capture"])
        .arg(capture)
        .args([
            "--primary",
            &legacy.url(),
            "--candidate",
            &orchestrator.url(),
        ])
        .args(["--allow-writes", "--no-progress", "--concurrency", "8"])
        .args(callers)
        .arg("--out")
        .arg(log)
        .env("DIFF_REDACTION_KEY", "k")
        .output()
        .expect("compare replay runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templated_lines_are_filled_per_target_and_sent_as_each_caller() {
    let legacy = FakeService::start(Flavour::Legacy, "legacy").await;
    let orchestrator = FakeService::start(Flavour::Orchestrator, "shadow").await;
    let dir = tmp();
    let capture = file(&dir, "corpus.jsonl");
    write_jsonl(&capture, &corpus());
    let log = file(&dir, "diffs.jsonl");
    let output = replay(
        &legacy,
        &orchestrator,
        &capture,
        &log,
        &[
            "--caller",
            "tenant=Authorization: Bearer shared-token",
            "--caller",
            "tenant=X-Tenant-Id: acme",
            "--candidate-caller",
            "tenant=Authorization: Bearer candidate-token",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("templates: 2 authored lines")
            && stderr.contains("one at a time, in capture order"),
        "the plan says so before sending: {stderr}"
    );
    assert!(!stderr.contains("warning: templates"), "{stderr}");

    for (service, token, tenant) in [
        (&legacy, "Bearer shared-token", Some("acme")),
        // --candidate-caller replaces the caller's headers on that target.
        (&orchestrator, "Bearer candidate-token", None),
    ] {
        let requests = service.requests();
        let send = &requests[0];
        let answer_id = {
            // The send's answer is not kept by the fake; its id is the one
            // the GETs must carry: the only id it minted.
            let reads: Vec<_> = requests.iter().filter(|r| r.method == "GET").collect();
            assert_eq!(reads.len(), 3, "an await poll, the read, the verbatim read");
            reads[1].path.trim_start_matches("/v1/sms/").to_owned()
        };
        assert_eq!(answer_id.len(), 24, "{answer_id}");
        for r in &requests[..3] {
            assert_eq!(r.headers["authorization"], token);
            assert_eq!(
                r.headers.get("x-tenant-id").and_then(|v| v.to_str().ok()),
                tenant
            );
            assert!(r.headers.get("x-compare-caller").is_none());
            assert!(r.headers.get("x-compare-await").is_none());
        }
        let body: Value = serde_json::from_slice(&send.body).expect("json body");
        let schedule = body["schedule_at"].as_str().expect("schedule_at");
        assert!(
            schedule.ends_with("+01:00") && !schedule.contains("{{"),
            "{schedule}"
        );
        let key = send.headers["idempotency-key"].to_str().unwrap();
        assert!(key.starts_with("k-") && key.len() == 18, "{key}");
        // The poll of x-compare-await, then the read itself, both under
        // this target's own id, the read conditional on its own ETag.
        assert_eq!(requests[1].path, format!("/v1/sms/{answer_id}"));
        assert!(requests[1].headers.get("if-none-match").is_none());
        assert_eq!(requests[2].path, format!("/v1/sms/{answer_id}"));
        let etag = requests[2].headers["if-none-match"].to_str().unwrap();
        assert!(etag.starts_with("W/\""), "{etag}");
        // The line that is not marked went out as captured.
        assert_eq!(requests[3].path, "/v1/sms/{{id:send-1}}");
    }
    // The run token is one per replay, the same on both targets.
    assert_eq!(
        legacy.requests()[0].headers["idempotency-key"],
        orchestrator.requests()[0].headers["idempotency-key"]
    );
    let records = read_records(&log);
    assert_eq!(records.len(), 3);
    // The read's record shows the path the candidate got (copy as curl).
    let read = records
        .iter()
        .find(|r| r.correlation_id.as_deref() == Some("read-1"))
        .expect("read record");
    assert_eq!(read.route, "GET /v1/sms/{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_the_corpus_names_but_nobody_gave_stops_the_replay_before_sending() {
    let legacy = FakeService::start(Flavour::Legacy, "legacy").await;
    let orchestrator = FakeService::start(Flavour::Orchestrator, "shadow").await;
    let dir = tmp();
    let capture = file(&dir, "corpus.jsonl");
    write_jsonl(&capture, &corpus());
    let output = replay(
        &legacy,
        &orchestrator,
        &capture,
        &file(&dir, "diffs.jsonl"),
        &["--primary-caller", "tenant=Authorization: Bearer p"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tenant") && stderr.contains("candidate"),
        "{stderr}"
    );
    assert!(legacy.requests().is_empty() && orchestrator.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_a_target_cannot_fill_is_that_targets_error_on_the_record() {
    let legacy = FakeService::start(Flavour::Legacy, "legacy").await;
    let orchestrator = FakeService::start(Flavour::Orchestrator, "shadow").await;
    let dir = tmp();
    let capture = file(&dir, "corpus.jsonl");
    // `ping` answers without an id.
    write_jsonl(
        &capture,
        &[
            line(
                "ping",
                true,
                json!({"method": "GET", "path": "/v1/ping", "headers": []}),
            ),
            line(
                "read",
                true,
                json!({"method": "GET", "path": "/v1/sms/{{id:ping}}", "headers": []}),
            ),
        ],
    );
    let log = file(&dir, "diffs.jsonl");
    let output = replay(&legacy, &orchestrator, &capture, &log, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: templates could not be filled 2 times"),
        "{stderr}"
    );
    // The primary could not send it: no record, counted as its error.
    assert_eq!(read_records(&log).len(), 1);
    assert!(stderr.contains("primary errors 1"), "{stderr}");
}
