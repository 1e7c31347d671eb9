//! `compare diff` streams JSONL captures (`capture::open`) instead of
//! reading them whole (`capture::read`), and `compare report` streams diff
//! logs (`difflog::RecordReader` into a `ReportBuilder`) instead of holding
//! every record: each must give what the whole-file path gives, errors
//! included.

mod common;

use std::path::Path;

use serde_json::{Value, json};

use common::{PHONE, compare_bin, file, tmp};
use compare::capture::{self, CapturedRequest};
use compare::error::CaptureError;
use compare::report::{self, Report};
use compare::{DiffLogWriter, Differ, Exchange, KeepRequest, Redaction, Redactor, Rules, difflog};

const KEY: &str = "test-key";

fn send_exchange(i: usize, candidate_encoding: &str) -> Value {
    let body = |id: &str, encoding: &str, created: &str| {
        json!({"id": id, "status": "accepted", "to": PHONE, "from": "Acme", "encoding": encoding,
               "segments": 1, "created_at": created, "reference": null})
        .to_string()
    };
    json!({
        "schema_version": 1,
        "ts": format!("2026-05-01T12:00:0{i}.000Z"),
        "correlation_id": format!("corr-{i}"),
        "request": {
            "method": "POST",
            "path": "/v1/sms/send",
            "headers": [["content-type", "application/json"]],
            "body": json!({"to": PHONE, "from": "Acme", "body": "Your code is 482913"}).to_string()
        },
        "primary": {"status": 201, "headers": [["content-type", "application/json; charset=utf-8"]],
                    "body": body("507f1f77bcf86cd799439011", "GSM-7", "2026-05-01T12:00:00.100Z"),
                    "latency_ms": 12.5},
        "candidate": {"status": 201, "headers": [["content-type", "application/json; charset=utf-8"]],
                      "body": body("65f000000000000000000001", candidate_encoding, "2026-05-01T12:00:00.123Z"),
                      "latency_ms": 4.0}
    })
}

/// Five exchanges over seven lines: a blank line, a CRLF line end, a
/// request without a candidate answer (skipped by the diff), and a body
/// that is not UTF-8 (read lossily).
fn capture_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |value: Value, end: &str| {
        out.extend_from_slice(value.to_string().as_bytes());
        out.extend_from_slice(end.as_bytes());
    };
    line(send_exchange(1, "GSM-7"), "\n");
    line(send_exchange(2, "UCS-2"), "\n\n");
    line(send_exchange(3, "GSM-7"), "\r\n");
    let mut no_candidate = send_exchange(4, "GSM-7");
    if let Some(map) = no_candidate.as_object_mut() {
        map.remove("candidate");
    }
    line(no_candidate, "\n   \n");
    let mut not_utf8 = send_exchange(5, "GSM-7").to_string().into_bytes();
    let at = not_utf8
        .windows(4)
        .rposition(|w| w == b"Acme")
        .expect("the candidate answer has Acme");
    not_utf8.splice(at..at + 4, [b'A', 0xff, 0xfe, b'e']);
    out.extend_from_slice(&not_utf8);
    out.push(b'\n');
    out
}

fn redaction(rules: &Rules) -> Redaction {
    Redaction::Keyed(Redactor::with_spec(KEY.as_bytes(), rules.redact_spec()).expect("redactor"))
}

/// Diffs the requests into a diff log the way `compare diff` does; returns
/// the log's records as JSON without `ts` (the time of diffing).
fn diff_log(
    dir: &tempfile::TempDir,
    name: &str,
    requests: impl IntoIterator<Item = Result<CapturedRequest, CaptureError>>,
) -> Vec<Value> {
    let rules = Rules::default_rules().expect("default rules");
    let path = file(dir, name);
    let mut writer = DiffLogWriter::append(&path, redaction(&rules)).expect("diff log");
    let differ = Differ::new(rules).keep_request(KeepRequest::Always);
    for captured in requests {
        let captured = captured.expect("valid capture");
        let (Some(primary), Some(candidate)) = (captured.primary, captured.candidate) else {
            continue;
        };
        let exchange = Exchange {
            request: captured.request,
            primary,
            candidate,
        };
        writer.write(differ.diff(&exchange)).expect("write");
    }
    writer.flush().expect("flush");
    records_without_ts(&path)
}

fn records_without_ts(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("diff log");
    text.lines()
        .map(|line| {
            let mut value: Value = serde_json::from_str(line).expect("record");
            if let Some(map) = value.as_object_mut() {
                map.remove("ts");
            }
            value
        })
        .collect()
}

#[test]
fn streaming_and_whole_file_reading_give_the_same_diff_log() {
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    std::fs::write(&capture_path, capture_bytes()).expect("write capture");

    let whole = capture::read(&capture_path, None).expect("reads whole");
    assert_eq!(whole.len(), 5);
    let expected = diff_log(&dir, "whole.jsonl", whole.into_iter().map(Ok));
    assert_eq!(
        expected.len(),
        4,
        "the request without a candidate is skipped"
    );
    let verdicts: Vec<&str> = expected
        .iter()
        .map(|r| r["verdict"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        verdicts,
        ["noise-only", "differs", "noise-only", "differs"],
        "the lossily read body differs; the UCS-2 answer differs"
    );
    assert_eq!(expected[0]["correlation_id"], "corr-1");

    let streamed = diff_log(
        &dir,
        "streamed.jsonl",
        capture::open(&capture_path, None).expect("opens"),
    );
    assert_eq!(streamed, expected);

    // The CLI streams too, and writes the same records.
    let cli_log = file(&dir, "cli.jsonl");
    let output = compare_bin()
        .args(["diff", "--keep-request", "always", "--capture"])
        .arg(&capture_path)
        .arg("--out")
        .arg(&cli_log)
        .env("DIFF_REDACTION_KEY", KEY)
        .output()
        .expect("compare runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("4 records appended") && stderr.contains("1 captured requests lacked"),
        "{stderr}"
    );
    assert_eq!(records_without_ts(&cli_log), expected);
}

#[test]
fn streaming_keeps_file_order_where_reading_whole_sorts_by_ts() {
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    let text = format!(
        "{}\n{}\n",
        send_exchange(2, "GSM-7"),
        send_exchange(1, "GSM-7")
    );
    std::fs::write(&capture_path, text).expect("write capture");
    let id = |r: &CapturedRequest| {
        r.request
            .correlation_id()
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let whole: Vec<String> = capture::read(&capture_path, None)
        .expect("reads")
        .iter()
        .map(id)
        .collect();
    let streamed: Vec<String> = capture::open(&capture_path, None)
        .expect("opens")
        .map(|r| id(&r.expect("valid")))
        .collect();
    assert_eq!(whole, ["corr-1", "corr-2"]);
    assert_eq!(streamed, ["corr-2", "corr-1"]);
}

fn line_of(error: &CaptureError) -> usize {
    match error {
        CaptureError::Invalid { line, .. } => *line,
        other => panic!("expected an invalid-line error, got {other}"),
    }
}

#[test]
fn an_invalid_line_reports_its_line_number_when_streaming() {
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    let wrong_version = send_exchange(2, "GSM-7")
        .to_string()
        .replace("\"schema_version\":1", "\"schema_version\":2");
    for (bad_line, reason) in [
        ("{\"schema_version\": 1, \"request\": {".to_owned(), "EOF"),
        (wrong_version, "unsupported schema_version 2"),
    ] {
        // Line 1 valid, line 2 blank, line 3 bad, line 4 valid.
        let text = format!(
            "{}\n\n{bad_line}\n{}\n",
            send_exchange(1, "GSM-7"),
            send_exchange(3, "GSM-7")
        );
        std::fs::write(&capture_path, text).expect("write capture");

        let whole = capture::read(&capture_path, None).expect_err("invalid");
        assert_eq!(line_of(&whole), 3, "{whole}");

        let mut stream = capture::open(&capture_path, None).expect("opens");
        assert!(stream.next().is_some_and(|r| r.is_ok()));
        let streamed = stream.next().and_then(Result::err).expect("an error");
        assert_eq!(streamed.to_string(), whole.to_string());
        assert!(streamed.to_string().contains(reason), "{streamed}");
        assert!(stream.next().is_none(), "the stream ends at the error");

        let log = file(&dir, "diffs.jsonl");
        let _ = std::fs::remove_file(&log);
        let output = compare_diff(&capture_path, &log);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{}:3: ", capture_path.display())),
            "{stderr}"
        );
        assert!(stderr.contains("note: 1 records"), "{stderr}");
        assert_eq!(records_without_ts(&log).len(), 1);
    }
}

#[test]
fn a_capture_invalid_from_its_first_line_leaves_no_diff_log() {
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    std::fs::write(&capture_path, "\n{\"schema_version\": 1}\n").expect("write capture");
    let log = file(&dir, "diffs.jsonl");
    let output = compare_diff(&capture_path, &log);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2: ", capture_path.display())),
        "{stderr}"
    );
    assert!(!log.exists());
}

/// `compare diff --capture CAPTURE --out LOG`, redacting with the test key.
fn compare_diff(capture: &std::path::Path, log: &std::path::Path) -> std::process::Output {
    compare_bin()
        .args(["diff", "--capture"])
        .arg(capture)
        .arg("--out")
        .arg(log)
        .env("DIFF_REDACTION_KEY", KEY)
        .output()
        .expect("compare runs")
}

/// The JSON report without the time it was generated.
fn report_json(text: &str) -> Value {
    let mut value: Value = serde_json::from_str(text).expect("JSON report");
    if let Some(map) = value.as_object_mut() {
        map.remove("generated_at");
    }
    value
}

#[test]
fn the_streamed_report_is_the_report_over_all_records() {
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    std::fs::write(&capture_path, capture_bytes()).expect("write capture");
    // Two logs, the first twice over (so examples and medians see repeats)
    // and with a blank line, as a long shadow phase leaves them.
    let logs = [file(&dir, "a.jsonl"), file(&dir, "b.jsonl")];
    for (log, times) in logs.iter().zip([2, 1]) {
        for _ in 0..times {
            let status = compare_bin()
                .args(["diff", "--keep-request", "always", "--capture"])
                .arg(&capture_path)
                .arg("--out")
                .arg(log)
                .env("DIFF_REDACTION_KEY", KEY)
                .output()
                .expect("compare runs")
                .status;
            assert!(status.success());
        }
    }
    let mut text = std::fs::read_to_string(&logs[0]).expect("log");
    text.insert(text.find('\n').expect("a line") + 1, '\n');
    std::fs::write(&logs[0], text).expect("write log");

    let json_path = file(&dir, "report.json");
    let output = compare_bin()
        .arg("report")
        .args(&logs)
        .arg("--json")
        .arg(&json_path)
        .env("DIFF_REDACTION_KEY", KEY)
        .output()
        .expect("compare runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let streamed = report_json(&std::fs::read_to_string(&json_path).expect("report"));

    let rules = Rules::default_rules().expect("default rules");
    let redaction = redaction(&rules);
    let mut records = difflog::read_all(&logs).expect("logs read");
    assert_eq!(records.len(), 12);
    for record in &mut records {
        redaction.apply(record);
    }
    let sources = logs.iter().map(|p| p.display().to_string()).collect();
    let whole = Report::build(&records, sources, None);
    let whole = report_json(&report::render_json(&whole).expect("render"));
    assert_eq!(streamed, whole);
    assert_eq!(streamed["overall"]["differs"], 6);
    assert!(
        streamed["routes"][0]["p50_primary_ms"].is_number(),
        "{streamed}"
    );
    assert!(
        !streamed["top_paths"][0]["examples"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{streamed}"
    );
}

#[test]
fn a_bad_diff_log_line_is_reported_with_its_number_when_streaming() {
    let dir = tmp();
    let log = file(&dir, "diffs.jsonl");
    std::fs::write(&log, "\n{\"schema_version\": 1,\n").expect("write log");
    let whole = difflog::read_records(&log).expect_err("invalid");
    let streamed = difflog::RecordReader::open(&log)
        .expect("opens")
        .find_map(Result::err)
        .expect("an error");
    assert_eq!(streamed.to_string(), whole.to_string());
    assert!(
        streamed.to_string().contains("diffs.jsonl:2: "),
        "{streamed}"
    );
    let output = compare_bin()
        .arg("report")
        .arg(&log)
        .env("DIFF_REDACTION_KEY", KEY)
        .output()
        .expect("compare runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains(&whole.to_string()));
}
