//! The gate is not fooled: through the real binary (`compare diff` over a
//! capture holding both answers, then `compare report`), a candidate that
//! answers `202`, a problem document or a UUID where the legacy answered
//! `201`, a NestJS error or an ObjectId fails the gate under the shipped
//! default rules, naming the route and the difference. An operator who
//! accepts such a change in their own rules file gets it listed as an
//! accepted contract change, and the gate passes only when the run
//! acknowledges that change by name.

mod common;

use std::path::{Path, PathBuf};

use common::{PHONE, compare_bin, file, tmp};
use serde_json::{Value, json};

const KEY: &str = "contract-test-key";

/// One capture line with both answers.
fn exchange(
    i: usize,
    method: &str,
    path: &str,
    request_body: Option<Value>,
    primary: (u16, &[(&str, &str)], Value),
    candidate: (u16, &[(&str, &str)], Value),
) -> Value {
    let headers = |h: &[(&str, &str)]| -> Vec<[String; 2]> {
        h.iter()
            .map(|(n, v)| [(*n).to_owned(), (*v).to_owned()])
            .collect()
    };
    let mut request = json!({
        "method": method,
        "path": path,
        "headers": [["content-type", "application/json"], ["authorization", "Bearer t"], ["x-correlation-id", format!("c-{i}")]],
    });
    if let Some(body) = request_body {
        request["body"] = json!(body.to_string());
    }
    json!({
        "schema_version": 1,
        "ts": format!("2026-05-01T12:00:{:02}.000Z", i % 60),
        "request": request,
        "primary": {"status": primary.0, "headers": headers(primary.1), "body": primary.2.to_string(), "latency_ms": 3.0},
        "candidate": {"status": candidate.0, "headers": headers(candidate.1), "body": candidate.2.to_string(), "latency_ms": 2.0},
    })
}

const LEGACY_JSON: &[(&str, &str)] = &[
    ("content-type", "application/json; charset=utf-8"),
    ("x-powered-by", "Express"),
];

fn object_id(seed: usize) -> String {
    format!("65f{seed:021x}")
}

fn message(id: &str, created_at: &str) -> Value {
    json!({"id": id, "status": "accepted", "to": PHONE, "from": "Acme", "encoding": "GSM-7",
           "segments": 1, "created_at": created_at, "reference": null})
}

/// `n` sends where the candidate answers `202` with a UUIDv7 (before
/// parity), `n` validation errors answered with problem+json, and `n`
/// status reads whose id is a UUID.
fn before_parity(n: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for i in 0..n {
        let legacy_id = object_id(i);
        let uuid = format!("0196b3f2-7c1a-7e4b-9a2d-{i:012x}");
        lines.push(exchange(
            i,
            "POST",
            "/v1/sms/send",
            Some(json!({"to": PHONE, "from": "Acme", "body": "hello"})),
            (
                201,
                LEGACY_JSON,
                message(&legacy_id, "2026-05-01T12:00:00.100Z"),
            ),
            (
                202,
                &[("content-type", "application/json")],
                message(&uuid, "2026-05-01T12:00:00.120Z"),
            ),
        ));
        lines.push(exchange(
            i,
            "POST",
            "/v1/sms/send",
            Some(json!({"to": "12", "from": "Acme", "body": "hello"})),
            (
                400,
                LEGACY_JSON,
                json!({"statusCode": 400, "message": ["to must be a valid phone number"], "error": "Bad Request"}),
            ),
            (
                400,
                &[("content-type", "application/problem+json")],
                json!({"type": "urn:problem:validation", "title": "Request validation failed", "status": 400,
                       "errors": [{"pointer": "/to", "detail": "must be E.164"}]}),
            ),
        ));
        lines.push(exchange(
            i,
            "GET",
            &format!("/v1/sms/{legacy_id}"),
            None,
            (
                200,
                LEGACY_JSON,
                message(&legacy_id, "2026-05-01T12:00:00.100Z"),
            ),
            (200, LEGACY_JSON, message(&uuid, "2026-05-01T12:00:00.120Z")),
        ));
    }
    lines
}

/// `n` sends where the candidate answers like the legacy (its own
/// ObjectIds, its own timestamps) with HTTP `status`.
fn parity_sends(n: usize, status: u16) -> Vec<Value> {
    (0..n)
        .map(|i| {
            exchange(
                i,
                "POST",
                "/v1/sms/send",
                Some(json!({"to": PHONE, "from": "Acme", "body": "hello"})),
                (
                    201,
                    LEGACY_JSON,
                    message(&object_id(i), "2026-05-01T12:00:00.100Z"),
                ),
                (
                    status,
                    LEGACY_JSON,
                    message(&object_id(500 + i), "2026-05-01T12:00:00.130Z"),
                ),
            )
        })
        .collect()
}

fn write_capture(dir: &tempfile::TempDir, lines: &[Value]) -> PathBuf {
    let path = file(dir, "capture.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).expect("write capture");
    path
}

/// `compare diff` (with `rules`, else the shipped defaults) into a diff log.
fn diff(dir: &tempfile::TempDir, capture: &Path, rules: Option<&Path>) -> PathBuf {
    let log = file(dir, "diffs.jsonl");
    let mut command = compare_bin();
    command
        .args(["diff", "--capture"])
        .arg(capture)
        .arg("--out")
        .arg(&log);
    if let Some(rules) = rules {
        command.arg("--rules").arg(rules);
    }
    let output = command
        .env("DIFF_REDACTION_KEY", KEY)
        .output()
        .expect("compare diff runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    log
}

struct Gated {
    code: i32,
    line: String,
    json: Value,
    markdown: String,
}

fn report(dir: &tempfile::TempDir, log: &Path, extra: &[&str]) -> Gated {
    let (json_path, md_path) = (file(dir, "report.json"), file(dir, "report.md"));
    let output = compare_bin()
        .arg("report")
        .arg(log)
        .args(["--max-diff-rate", "0.1%", "--min-samples", "5", "--json"])
        .arg(&json_path)
        .arg("--markdown")
        .arg(&md_path)
        .arg("--html")
        .arg(file(dir, "report.html"))
        .args(extra)
        .env("DIFF_REDACTION_KEY", KEY)
        .output()
        .expect("compare report runs");
    let read = |p: &Path| std::fs::read_to_string(p).expect("report written");
    Gated {
        code: output.status.code().unwrap_or(-1),
        line: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        json: serde_json::from_str(&read(&json_path)).expect("JSON report"),
        markdown: read(&md_path),
    }
}

fn rows<'a>(report: &'a Value, section: &str) -> Vec<&'a Value> {
    report[section].as_array().into_iter().flatten().collect()
}

#[test]
fn the_shipped_defaults_fail_the_gate_on_a_202_a_problem_document_and_a_uuid() {
    let dir = tmp();
    let log = diff(&dir, &write_capture(&dir, &before_parity(10)), None);
    let gated = report(&dir, &log, &[]);

    assert_eq!(gated.code, 1, "{}", gated.line);
    assert!(
        gated
            .line
            .starts_with("NOT READY: diff rate over 0.100% on 2 of 2 routes"),
        "{}",
        gated.line
    );
    assert!(
        gated
            .line
            .contains("POST /v1/sms/send 100.00% (20/20, top: ")
            && gated
                .line
                .contains("GET /v1/sms/{id} 100.00% (10/10, top: /id)"),
        "the line names each route and what differs: {}",
        gated.line
    );
    assert_eq!(gated.line.lines().count(), 1);

    // Every client-visible difference is an unexplained difference…
    let differing: Vec<(String, String)> = rows(&gated.json, "top_paths")
        .iter()
        .map(|p| {
            (
                p["route"].as_str().unwrap_or_default().to_owned(),
                p["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (route, path) in [
        ("POST /v1/sms/send", "status"),
        ("POST /v1/sms/send", "header:content-type"),
        ("POST /v1/sms/send", "/id"),
        ("POST /v1/sms/send", "/statusCode"),
        ("POST /v1/sms/send", "/type"),
        ("GET /v1/sms/{id}", "/id"),
    ] {
        assert!(
            differing.contains(&(route.to_owned(), path.to_owned())),
            "{route} {path} must be an unexplained difference: {differing:?}"
        );
    }
    let status = rows(&gated.json, "routes")
        .into_iter()
        .find(|r| r["route"] == "POST /v1/sms/send")
        .map(|r| r["status_pairs"].clone())
        .expect("send route");
    assert_eq!(status["201→202"], 10);
    // …none is explained away, as noise or as an accepted change.
    assert!(rows(&gated.json, "contract_changes").is_empty());
    for row in rows(&gated.json, "noise") {
        let path = row["path"].as_str().unwrap_or_default();
        assert!(
            !["status", "header:content-type", "/id", ""].contains(&path),
            "{path} explained away as noise: {row:#}"
        );
    }
    assert_eq!(gated.json["overall"]["noise_only"], 0);
    assert!(
        gated
            .markdown
            .contains("| `POST /v1/sms/send` | `status` |"),
        "{}",
        gated.markdown
    );
    assert!(!gated.markdown.contains(PHONE), "the report is redacted");
}

/// The shipped defaults plus one status class, as an operator would write
/// them in their own copy.
fn rules_with_status_class(dir: &tempfile::TempDir) -> PathBuf {
    let path = file(dir, "accepted.toml");
    let text = format!(
        "{}\n# Accepted on purpose: sends answer 202 during the canary.\n\
         [[routes.\"POST /v1/sms/send\".status_class]]\nname = \"send-accepted\"\nprimary = [201]\ncandidate = [202]\n",
        compare::rules::DEFAULT_RULES_TOML
    );
    std::fs::write(&path, text).expect("write rules");
    path
}

#[test]
fn an_accepted_status_class_is_listed_apart_and_fails_the_gate_until_acknowledged() {
    let dir = tmp();
    let rules = rules_with_status_class(&dir);
    // A reviewer of the rules file sees what it accepts.
    let checked = compare_bin()
        .arg("check-rules")
        .arg(&rules)
        .output()
        .expect("check-rules runs");
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success()
            && stdout.contains("1 rules accept a contract change")
            && stdout.contains("status-class:send-accepted"),
        "{stdout}"
    );
    let log = diff(
        &dir,
        &write_capture(&dir, &parity_sends(20, 202)),
        Some(&rules),
    );

    // Without the acknowledgement: NOT READY, and why.
    let gated = report(&dir, &log, &[]);
    assert_eq!(gated.code, 1, "{}", gated.line);
    assert_eq!(
        gated.line,
        "NOT READY: unacknowledged contract changes on 1 of 1 routes (POST /v1/sms/send: status-class:send-accepted ×20)"
    );
    let changes = rows(&gated.json, "contract_changes");
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let change = changes[0];
    assert_eq!(change["label"], "status-class:send-accepted");
    assert_eq!(
        change["rule"],
        "[routes.\"POST /v1/sms/send\"] status_class send-accepted"
    );
    assert_eq!(change["route"], "POST /v1/sms/send");
    assert_eq!(change["path"], "status");
    assert_eq!(change["count"], 20);
    assert_eq!(
        (
            &change["example"]["primary"],
            &change["example"]["candidate"]
        ),
        (&json!("201"), &json!("202"))
    );
    // Never folded into noise, never counted as a plain difference.
    assert_eq!(gated.json["overall"]["accepted_change"], 20);
    assert_eq!(gated.json["overall"]["noise_only"], 0);
    assert_eq!(gated.json["overall"]["differs"], 0);
    assert!(
        rows(&gated.json, "noise")
            .iter()
            .all(|r| r["path"] != "status")
    );
    assert!(
        gated.markdown.contains("## Accepted contract changes")
            && gated.markdown.contains("| `status-class:send-accepted` |"),
        "{}",
        gated.markdown
    );
    assert_eq!(
        gated.json["gate"]["unacknowledged"],
        json!(["status-class:send-accepted"])
    );

    // Acknowledging another change does not help.
    let wrong = report(
        &dir,
        &log,
        &[
            "--acknowledge-contract-change",
            "envelope-class:nest-error-vs-problem",
        ],
    );
    assert_eq!(wrong.code, 1, "{}", wrong.line);

    // With the acknowledgement: READY, and the line still says what was accepted.
    let acknowledged = report(
        &dir,
        &log,
        &[
            "--acknowledge-contract-change",
            "status-class:send-accepted",
        ],
    );
    assert_eq!(acknowledged.code, 0, "{}", acknowledged.line);
    assert!(
        acknowledged.line.starts_with("READY: 1 routes, 20 samples")
            && acknowledged.line.ends_with(
                "; 20 exchanges with acknowledged contract changes (status-class:send-accepted)"
            ),
        "{}",
        acknowledged.line
    );
    assert!(
        rows(&acknowledged.json, "contract_changes").len() == 1,
        "still listed"
    );
}

#[test]
fn the_noise_section_shows_what_each_rule_explained_with_an_example() {
    let dir = tmp();
    // At parity: each side's own ObjectIds and timestamps, nothing else.
    let lines = parity_sends(10, 201);
    let log = diff(&dir, &write_capture(&dir, &lines), None);
    let gated = report(&dir, &log, &[]);
    assert_eq!(gated.code, 0, "{}", gated.line);
    let noise = rows(&gated.json, "noise");
    let id = noise
        .iter()
        .find(|r| r["path"] == "/id")
        .expect("the /id row");
    assert_eq!(id["rule"], "[defaults] match /id");
    assert_eq!(id["label"], "shape:id");
    assert_eq!(id["count"], 10);
    assert_eq!(id["example"]["primary"], object_id(0));
    assert_eq!(id["example"]["candidate"], object_id(500));
    let created = noise
        .iter()
        .find(|r| r["path"] == "/created_at")
        .expect("the /created_at row");
    assert_eq!(created["rule"], "[defaults] match /**/created_at");
    assert!(
        gated
            .markdown
            .contains("| `[defaults] match /id` | `shape:id` | `POST /v1/sms/send` | `/id` | 10 |"),
        "{}",
        gated.markdown
    );
}

#[test]
fn an_old_diff_log_that_called_contract_changes_noise_is_not_certified() {
    // Written by the previous mirror-proxy: status class, Content-Type
    // normalisation and an ObjectId/UUIDv7 pair all filed as `noise`, no
    // `rule` anywhere, verdict `noise-only`.
    let dir = tmp();
    let line = |i: usize| {
        json!({
            "schema_version": 1, "ts": format!("2026-05-01T12:00:{:02}Z", i), "route": "POST /v1/sms/send",
            "method": "POST",
            "status": {"primary": 201, "candidate": 202, "noise": "status-class:send-accepted"},
            "headers": [
                {"name": "content-type", "kind": "changed", "primary": "application/json; charset=utf-8",
                 "candidate": "application/json", "noise": "normalize:content-type"},
                {"name": "location", "kind": "changed", "primary": "/v1/sms/507f1f77bcf86cd799439011",
                 "candidate": "/v1/sms/65f000000000000000000001", "noise": "normalize:location"}
            ],
            "body": [
                {"pointer": "/id", "kind": "changed", "primary": "507f1f77bcf86cd799439011",
                 "candidate": "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a", "noise": "shape:id"},
                {"pointer": "/created_at", "kind": "changed", "primary": "2026-05-01T12:00:00.100Z",
                 "candidate": "2026-05-01T12:00:00.123Z", "noise": "timestamp±5000ms"}
            ],
            "verdict": "noise-only", "redacted": true
        })
        .to_string()
    };
    let log = file(&dir, "old.jsonl");
    let text: String = (0..10).map(|i| line(i) + "\n").collect();
    std::fs::write(&log, text).expect("write log");
    let gated = report(&dir, &log, &[]);
    assert_eq!(gated.code, 1, "{}", gated.line);
    assert_eq!(gated.json["overall"]["noise_only"], 0);
    assert_eq!(gated.json["overall"]["accepted_change"], 10);
    let labels: Vec<&str> = rows(&gated.json, "contract_changes")
        .iter()
        .filter_map(|c| c["label"].as_str())
        .collect();
    assert_eq!(
        labels,
        [
            "format-change:/id",
            "header-normalize:content-type",
            "status-class:send-accepted"
        ],
        "{labels:?}"
    );
    // Two ObjectIds in Location and two millisecond timestamps stay noise.
    let noise: Vec<&str> = rows(&gated.json, "noise")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(noise, ["header:location", "/created_at"], "{noise:?}");
}
