//! The cutover gate, through the real binary: exit code 0 and a READY line
//! when every route and the whole run pass, 1 and a one-line NOT READY
//! reason otherwise, 2 when the input is unusable.

mod common;

use chrono::{TimeDelta, Utc};
use common::*;
use compare::record::{BodyDiff, DiffKind, SCHEMA_VERSION, StatusDiff};
use compare::{DiffRecord, Verdict};

fn record(route: &str, i: usize, differs: bool) -> DiffRecord {
    DiffRecord {
        schema_version: SCHEMA_VERSION,
        ts: Utc::now() - TimeDelta::seconds(3600) + TimeDelta::milliseconds(i as i64 * 500),
        route: route.to_owned(),
        method: route.split(' ').next().unwrap_or("GET").to_owned(),
        correlation_id: Some(format!("c-{i}")),
        status: Some(StatusDiff {
            primary: 200,
            candidate: 200,
            noise: None,
        }),
        headers: Vec::new(),
        body: if differs {
            vec![BodyDiff {
                pointer: "/encoding".to_owned(),
                kind: DiffKind::Changed,
                primary: Some("GSM-7".into()),
                candidate: Some("UCS-2".into()),
                noise: None,
            }]
        } else {
            Vec::new()
        },
        truncated: 0,
        envelope: None,
        verdict: if differs {
            Verdict::Differs
        } else {
            Verdict::Same
        },
        latency_ms: None,
        request: None,
        unmatched: None,
        error: None,
        redacted: true,
    }
}

/// `samples` records per route, the first `differing` of each differing.
fn log(dir: &tempfile::TempDir, routes: &[(&str, usize, usize)]) -> std::path::PathBuf {
    let path = file(dir, "diffs.jsonl");
    let mut text = String::new();
    for (route, samples, differing) in routes {
        for i in 0..*samples {
            text.push_str(&serde_json::to_string(&record(route, i, i < *differing)).expect("json"));
            text.push('\n');
        }
    }
    std::fs::write(&path, text).expect("write log");
    path
}

fn gate(path: &std::path::Path) -> (i32, String) {
    let output = compare_bin()
        .arg("report")
        .arg(path)
        .args(["--max-diff-rate", "0.1%", "--min-samples", "1000", "--json"])
        .arg(path.with_extension("report.json"))
        .env("COMPARE_REDACT_KEY", "k")
        .output()
        .expect("compare runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    )
}

#[test]
fn ready_when_every_route_has_enough_samples_and_few_differences() {
    let dir = tmp();
    let path = log(
        &dir,
        &[
            ("POST /v1/sms/send", 2000, 1),
            ("GET /v1/sms/{id}", 1000, 1),
        ],
    );
    let (code, stdout) = gate(&path);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.starts_with("READY: 2 routes, 3000 samples"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1);
}

#[test]
fn not_ready_when_a_route_differs_too_often() {
    let dir = tmp();
    let path = log(
        &dir,
        &[
            ("POST /v1/sms/send", 2000, 5),
            ("GET /v1/sms/{id}", 1000, 0),
        ],
    );
    let (code, stdout) = gate(&path);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        stdout,
        "NOT READY: route POST /v1/sms/send: diff rate 0.250% (5/2000) > 0.100% (and 1 more)"
    );
}

#[test]
fn not_ready_when_a_route_has_too_few_samples() {
    let dir = tmp();
    let path = log(
        &dir,
        &[("POST /v1/sms/send", 5000, 0), ("GET /v1/sms/{id}", 999, 0)],
    );
    let (code, stdout) = gate(&path);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        stdout,
        "NOT READY: route GET /v1/sms/{id}: 999 samples < 1000 required"
    );
}

#[test]
fn an_unreadable_log_is_an_error_not_a_verdict() {
    let dir = tmp();
    let path = file(&dir, "broken.jsonl");
    std::fs::write(&path, "{not json\n").expect("write");
    let (code, _) = gate(&path);
    assert_eq!(code, 2);
    let (code, _) = gate(&file(&dir, "missing.jsonl"));
    assert_eq!(code, 2);
}

#[test]
fn the_json_report_carries_the_gate_decision() {
    let dir = tmp();
    let path = log(&dir, &[("POST /v1/sms/send", 1000, 2)]);
    let (code, _) = gate(&path);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path.with_extension("report.json")).expect("json report"),
    )
    .expect("valid JSON");
    assert_eq!(report["gate"]["ready"], false);
    assert_eq!(report["overall"]["differs"], 2);
    assert_eq!(report["routes"][0]["samples"], 1000);
    let (low, high) = (
        report["overall"]["ci_low"].as_f64(),
        report["overall"]["ci_high"].as_f64(),
    );
    assert!(low.zip(high).is_some_and(|(l, h)| l < 0.002 && h > 0.002));
    assert_eq!(report["top_paths"][0]["path"], "/encoding");
}
