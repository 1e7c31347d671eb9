//! The cutover gate, through the real binary: exit code 0 and a READY line
//! when every route and the whole run pass, 1 and a one-line NOT READY
//! reason otherwise (diff-rate failures before unacknowledged contract
//! changes before sample shortfalls, with how many routes fail for each),
//! 2 when the input is unusable.

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
            accepted: None,
            rule: None,
        }),
        headers: Vec::new(),
        body: if differs {
            vec![BodyDiff {
                pointer: "/encoding".to_owned(),
                kind: DiffKind::Changed,
                primary: Some("GSM-7".into()),
                candidate: Some("UCS-2".into()),
                noise: None,
                accepted: None,
                rule: None,
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
    gate_with(path, &[])
}

fn gate_with(path: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let output = compare_bin()
        .arg("report")
        .arg(path)
        .args(["--max-diff-rate", "0.1%", "--min-samples", "1000", "--json"])
        .arg(path.with_extension("report.json"))
        .args(extra)
        .env("DIFF_REDACTION_KEY", "k")
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
        "NOT READY: diff rate over 0.100% on 1 of 2 routes (POST /v1/sms/send 0.250% (5/2000, top: /encoding)), overall 0.167% (5/3000)"
    );
}

#[test]
fn real_differences_come_before_sample_shortfalls_and_each_reason_counts_its_routes() {
    let dir = tmp();
    // The shadow demo's shape: sends differ everywhere, the status read
    // has one sample. The one line must lead with the differences.
    let path = log(
        &dir,
        &[
            ("POST /v1/sms/send", 60, 60),
            ("POST /v1/sms/bulk", 5, 1),
            ("GET /v1/sms/{id}", 1, 0),
        ],
    );
    let (code, stdout) = gate(&path);
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(
        stdout,
        "NOT READY: diff rate over 0.100% on 2 of 3 routes (POST /v1/sms/send 100.00% (60/60, top: /encoding), POST /v1/sms/bulk 20.00% (1/5, top: /encoding)), overall 92.42% (61/66); \
         too few samples on 3 of 3 routes (GET /v1/sms/{id} 1/1000, POST /v1/sms/bulk 5/1000, POST /v1/sms/send 60/1000)"
    );
    assert_eq!(stdout.lines().count(), 1);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path.with_extension("report.json")).expect("json report"),
    )
    .expect("valid JSON");
    let failures: Vec<&str> = report["gate"]["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(failures[0].contains("diff rate"), "{failures:?}");
    assert!(
        failures.last().is_some_and(|f| f.contains("samples")),
        "{failures:?}"
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
        "NOT READY: too few samples on 1 of 2 routes (GET /v1/sms/{id} 999/1000)"
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
