//! `compare replay` against two real local HTTP services: the injected
//! difference is found and nothing else, writes honour shadow safety, the
//! rate is held, the secondary cancels noise, HAR and GoReplay captures
//! replay, and a dead candidate is recorded as a difference.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use compare::capture;
use compare::replay::{self, ReplayConfig, ReplayCounters, Target, WritePlan};
use compare::{DiffLogWriter, Differ, Redaction, Redactor, Rules, Verdict};

fn sink(path: &std::path::Path) -> replay::RecordSink<std::fs::File> {
    let writer =
        DiffLogWriter::append(path, Redaction::Keyed(Redactor::new(b"test"))).expect("open log");
    Arc::new(Mutex::new(writer))
}

fn config(legacy: &FakeService, orchestrator: &FakeService) -> ReplayConfig {
    let primary = Target::new("primary", &legacy.url())
        .and_then(|t| t.header("Authorization: Bearer legacy-token"))
        .expect("primary target");
    let candidate = Target::new("candidate", &orchestrator.url())
        .and_then(|t| t.header("Authorization: Bearer orchestrator-token"))
        .expect("candidate target")
        .shadow_safe(true);
    let mut config = ReplayConfig::new(primary, candidate);
    config.shadow_credential = Some("shadow-secret".to_owned());
    config.concurrency = 4;
    config
}

async fn replay_capture(
    config: ReplayConfig,
    capture_path: &std::path::Path,
    log: &std::path::Path,
) -> replay::ReplaySummary {
    let requests = capture::read(capture_path, None).expect("capture reads");
    let differ = Arc::new(Differ::new(Rules::default_rules().expect("rules")));
    replay::run(
        config,
        requests,
        differ,
        sink(log),
        Arc::new(ReplayCounters::default()),
    )
    .await
    .expect("replay runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_finds_the_injected_difference_and_nothing_else() {
    let legacy = FakeService::start(Flavour::Legacy, "legacy").await;
    let orchestrator = FakeService::start(Flavour::Orchestrator, "orchestrator").await;
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    let mut lines: Vec<_> = (0..20)
        .map(|i| send_line(i, if i == 7 { "inject" } else { "order" }))
        .collect();
    lines.extend((0..10).map(|i| get_line(i, "/v1/ping")));
    write_jsonl(&capture_path, &lines);
    let log = file(&dir, "diffs.jsonl");
    let mut config = config(&legacy, &orchestrator);
    config.allow_writes = true; // the fake legacy has no real side effects

    let summary = replay_capture(config, &capture_path, &log).await;

    assert_eq!(summary.done, 30);
    assert_eq!(
        (
            summary.primary_errors,
            summary.candidate_errors,
            summary.skipped_writes
        ),
        (0, 0, 0)
    );
    let records = read_records(&log);
    assert_eq!(records.len(), 30);
    let differing: Vec<_> = records
        .iter()
        .filter(|r| r.verdict == Verdict::Differs)
        .collect();
    assert_eq!(
        differing.len(),
        1,
        "only the injected difference: {differing:#?}"
    );
    let real: Vec<_> = differing[0].real_differences().collect();
    assert_eq!(
        real,
        vec![("/encoding".to_owned(), compare::DiffKind::Changed)]
    );
    assert_eq!(differing[0].correlation_id.as_deref(), Some("corr-7"));
    assert!(
        differing[0].request.is_some(),
        "differing records keep the request for copy-as-curl"
    );
    let sends = records.iter().filter(|r| r.route == "POST /v1/sms/send");
    assert!(
        sends
            .filter(|r| r.verdict != Verdict::Differs)
            .all(|r| r.verdict == Verdict::NoiseOnly),
        "the orchestrator at parity differs from the legacy by value noise only (ids, timestamps, ETag, Content-Length)"
    );
    assert!(records.iter().all(|r| r.redacted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_safe_targets_get_the_marker_and_credential_and_nobody_gets_captured_tokens() {
    let legacy = FakeService::start(Flavour::Legacy, "legacy").await;
    let orchestrator = FakeService::start(Flavour::Orchestrator, "orchestrator").await;
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    write_jsonl(
        &capture_path,
        &[send_line(1, "order"), get_line(2, "/v1/ping")],
    );
    let mut config = config(&legacy, &orchestrator);
    config.allow_writes = true; // the fake legacy has no real side effects
    replay_capture(config, &capture_path, &file(&dir, "diffs.jsonl")).await;

    let to_candidate = orchestrator.requests();
    assert_eq!(to_candidate.len(), 2);
    for request in &to_candidate {
        assert_eq!(request.headers["x-shadow-request"], "1");
        assert_eq!(request.headers["x-shadow-credential"], "shadow-secret");
        assert_eq!(
            request.headers["authorization"],
            "Bearer orchestrator-token"
        );
    }
    for request in legacy.requests() {
        assert!(request.headers.get("x-shadow-request").is_none());
        assert!(request.headers.get("x-shadow-credential").is_none());
        assert_eq!(request.headers["authorization"], "Bearer legacy-token");
        assert!(request.headers.get("x-correlation-id").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_not_sent_unless_both_targets_may_receive_them() {
    let legacy = FakeService::start(Flavour::Legacy, "legacy").await;
    let orchestrator = FakeService::start(Flavour::Orchestrator, "orchestrator").await;
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    let lines: Vec<_> = (0..5)
        .map(|i| send_line(i, "order"))
        .chain((0..3).map(|i| get_line(i, "/v1/ping")))
        .collect();
    write_jsonl(&capture_path, &lines);
    // Neither target is shadow-safe and --allow-writes is off.
    let mut config = config(&legacy, &orchestrator);
    config.candidate.shadow_safe = false;
    let requests = capture::read(&capture_path, None).expect("capture");
    let plan = WritePlan::new(&config, &requests);
    assert_eq!((plan.writes, plan.skipped), (5, 5));
    assert!(
        plan.lines.iter().any(|l| l.contains("not sent")),
        "{:?}",
        plan.lines
    );

    let summary = replay_capture(config.clone(), &capture_path, &file(&dir, "a.jsonl")).await;
    assert_eq!(summary.skipped_writes, 5);
    assert!(legacy.requests().iter().all(|r| r.method == "GET"));
    assert!(orchestrator.requests().iter().all(|r| r.method == "GET"));
    assert_eq!(orchestrator.requests().len(), 3);

    // A shadow-safe candidate alone is not enough: the primary is real.
    config.candidate.shadow_safe = true;
    let plan = WritePlan::new(&config, &requests);
    assert_eq!(plan.skipped, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_is_held_within_two_percent() {
    let legacy = FakeService::start(Flavour::Legacy, "legacy").await;
    let orchestrator = FakeService::start(Flavour::Orchestrator, "orchestrator").await;
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    let lines: Vec<_> = (0..200).map(|i| get_line(i, "/v1/ping")).collect();
    write_jsonl(&capture_path, &lines);
    let mut config = config(&legacy, &orchestrator);
    config.rate = Some(100.0);
    config.concurrency = 16;

    let summary = replay_capture(config, &capture_path, &file(&dir, "diffs.jsonl")).await;

    assert_eq!(summary.done, 200);
    // The rate the candidate saw: the least-squares slope of arrival time
    // over arrival order, so one request delayed by a busy machine does not
    // decide the result (the schedule catches up after a stall).
    let mut arrivals: Vec<_> = orchestrator.requests().iter().map(|r| r.at).collect();
    arrivals.sort();
    let t0 = arrivals[0];
    let ys: Vec<f64> = arrivals.iter().map(|t| (*t - t0).as_secs_f64()).collect();
    let n = ys.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        cov += (i as f64 - mean_x) * (y - mean_y);
        var += (i as f64 - mean_x).powi(2);
    }
    let rate = var / cov;
    assert!(
        (rate - 100.0).abs() <= 2.0,
        "arrival rate {rate:.2}/s is not within 2% of 100/s"
    );
    // 199 intervals of 10 ms, plus the last answer.
    let elapsed = summary.elapsed.as_secs_f64();
    assert!(
        (1.95..3.0).contains(&elapsed),
        "200 requests at 100/s took {elapsed:.3}s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_turns_primary_noise_into_noise() {
    // `served_by` is the instance's name: a value that differs between any
    // two instances, of one length (the body's length, and so its
    // `Content-Length` and the ETag's length part, stay equal).
    let legacy_a = FakeService::start(Flavour::Legacy, "primary-a").await;
    let legacy_b = FakeService::start(Flavour::Legacy, "primary-b").await;
    let orchestrator = FakeService::start(Flavour::Orchestrator, "candidate").await;
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    write_jsonl(
        &capture_path,
        &[get_line(1, "/v1/sms/507f1f77bcf86cd799439011")],
    );

    // Without a secondary, `served_by` is an unexplained difference.
    let without = file(&dir, "without.jsonl");
    replay_capture(config(&legacy_a, &orchestrator), &capture_path, &without).await;
    let record = &read_records(&without)[0];
    assert_eq!(record.verdict, Verdict::Differs);

    // The two legacy instances disagree on it too, so it is noise.
    let with = file(&dir, "with.jsonl");
    let mut config = config(&legacy_a, &orchestrator);
    config.secondary = Some(Target::new("secondary", &legacy_b.url()).expect("target"));
    replay_capture(config, &capture_path, &with).await;
    let record = &read_records(&with)[0];
    assert_eq!(record.verdict, Verdict::NoiseOnly, "{record:#?}");
    let served_by = record
        .body
        .iter()
        .find(|d| d.pointer == "/served_by")
        .expect("served_by diff");
    assert_eq!(served_by.noise.as_deref(), Some("secondary"));
    assert_eq!(legacy_b.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_candidate_is_recorded_as_a_difference() {
    let legacy = FakeService::start(Flavour::Legacy, "legacy").await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let dir = tmp();
    let capture_path = file(&dir, "capture.jsonl");
    write_jsonl(&capture_path, &[get_line(1, "/v1/ping")]);
    let primary = Target::new("primary", &legacy.url()).expect("target");
    let candidate = Target::new("candidate", &dead_url).expect("target");
    let mut config = ReplayConfig::new(primary, candidate);
    config.timeout = Duration::from_secs(2);
    let log = file(&dir, "diffs.jsonl");
    let summary = replay_capture(config, &capture_path, &log).await;
    assert_eq!(summary.candidate_errors, 1);
    let record = &read_records(&log)[0];
    assert_eq!(record.verdict, Verdict::Differs);
    assert_eq!(
        record.error.as_deref(),
        Some("candidate: connection failed")
    );
}

fn har(legacy_body: &str) -> serde_json::Value {
    serde_json::json!({"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": [
        {"startedDateTime": "2026-05-01T12:00:00.000Z", "time": 12.5,
         "request": {"method": "POST", "url": "https://api.example.com/v1/sms/send", "httpVersion": "HTTP/2",
                     "headers": [{"name": ":authority", "value": "api.example.com"}, {"name": "content-type", "value": "application/json"}, {"name": "authorization", "value": TOKEN}],
                     "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 10,
                     "postData": {"mimeType": "application/json", "text": legacy_body}},
         "response": {"status": 201, "statusText": "Created", "httpVersion": "HTTP/2", "headers": [], "cookies": [],
                      "content": {"size": 2, "mimeType": "application/json", "text": "{}"}, "redirectURL": "", "headersSize": -1, "bodySize": 2},
         "cache": {}, "timings": {"send": 0, "wait": 10, "receive": 2}},
        {"startedDateTime": "2026-05-01T12:00:01.000Z", "time": 3,
         "request": {"method": "GET", "url": "https://api.example.com/v1/ping?x=1", "httpVersion": "HTTP/2", "headers": [], "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
         "response": {"status": 0, "statusText": "", "httpVersion": "", "headers": [], "cookies": [], "content": {"size": 0, "mimeType": ""}, "redirectURL": "", "headersSize": -1, "bodySize": 0},
         "cache": {}, "timings": {"send": 0, "wait": 0, "receive": 0}}
    ]}})
}

fn goreplay(body: &str) -> String {
    let sep = compare::capture::goreplay::SEPARATOR;
    format!(
        "1 a1 1777636800000000000 0\nPOST /v1/sms/send HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nAuthorization: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}{sep}\
         2 a1 1777636800010000000 10000000\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{{}}{sep}\
         1 b2 1777636801000000000 0\nGET /v1/ping HTTP/1.1\r\nHost: api.example.com\r\n\r\n{sep}",
        body.len()
    )
}

#[test]
fn har_and_goreplay_captures_replay_through_the_cli() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let legacy = runtime.block_on(FakeService::start(Flavour::Legacy, "legacy"));
    let orchestrator = runtime.block_on(FakeService::start(Flavour::Orchestrator, "orchestrator"));
    let dir = tmp();
    let body = serde_json::json!({"to": PHONE, "from": "Acme", "body": SECRET_BODY, "reference": "from-capture"}).to_string();
    let har_path = file(&dir, "capture.har");
    std::fs::write(&har_path, har(&body).to_string()).expect("write har");
    let gor_path = file(&dir, "capture.gor");
    std::fs::write(&gor_path, goreplay(&body)).expect("write gor");

    for (capture_path, expected_total) in [(&har_path, 2), (&gor_path, 4)] {
        let log = file(&dir, "diffs.jsonl");
        let output = compare_bin()
            .args(["replay", "--capture"])
            .arg(capture_path)
            .args([
                "--primary",
                &legacy.url(),
                "--candidate",
                &orchestrator.url(),
            ])
            .args([
                "--candidate-shadow-safe",
                "--primary-shadow-safe",
                "--no-progress",
            ])
            .args(["--shadow-credential", "shadow-secret", "--out"])
            .arg(&log)
            .env("DIFF_REDACTION_KEY", "test-key")
            .output()
            .expect("compare runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(
            stderr.contains("write safety: 1 of 2 requests change state"),
            "{stderr}"
        );
        assert!(stderr.contains("X-Shadow-Request: 1"), "{stderr}");
        let posts: Vec<_> = orchestrator
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        let last = posts.last().expect("the POST reached the candidate");
        assert_eq!(&last.body[..], body.as_bytes());
        assert!(
            last.headers.get("authorization").is_none(),
            "captured tokens are not replayed"
        );
        assert_eq!(orchestrator.requests().len(), expected_total);
        assert_eq!(legacy.requests().len(), expected_total);
        assert_eq!(read_records(&log).len(), expected_total);
    }
    assert!(orchestrator.requests().iter().any(|r| r.path == "/v1/ping"));
}
