//! Contract parity: the legacy simulator and the real orchestrator
//! (Postgres, Redis, JetStream), each held to every golden exchange of
//! `contracts/legacy/exchanges.yaml` and to the OpenAPI document, then to
//! each other: compare's differ, with compare's shipped rules
//! (`compare/rules/default.toml`, value noise only), finds no difference in
//! any answer or in any `sms.outbound.request` event. The committed corpus
//! (`contracts/legacy/parity-corpus.jsonl`) is these exchanges in compare's
//! capture format.

mod shadow_support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use compare::{Differ, Exchange, RecordedRequest, RecordedResponse, Rules, Verdict};
use integration_tests::parity::{
    Answer, Callers, Clock, CompareEvents, Goldens, Target, capture_line, contracts_dir,
    expected_events, send, settle, tally,
};
use integration_tests::{SECRET, TestApp, http_client, unique};
use orchestrator::conformance::{Conformance, Exchange as Wire};
use serde_json::Value;
use shadow_support::Legacy;

/// compare's shipped rules (`compare/rules/default.toml`), what `compare`
/// uses when no `--rules` is given: the proof uses nothing else.
fn rules() -> Rules {
    Rules::default_rules().expect("the shipped rules compile")
}

fn to_http(headers: &reqwest::header::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_str().as_bytes()),
            http::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            out.append(k, v);
        }
    }
    out
}

fn recorded(a: &Answer) -> RecordedResponse {
    RecordedResponse {
        status: http::StatusCode::from_u16(a.status).expect("status"),
        headers: to_http(&a.headers),
        body: a.body.clone(),
        latency: Duration::ZERO,
    }
}

#[tokio::test]
async fn the_corpus_is_the_goldens_in_compares_capture_format() {
    let goldens = Goldens::load();
    let lines: Vec<String> = goldens
        .exchanges
        .iter()
        .filter(|g| g.legacy)
        .map(|g| capture_line(g).to_string())
        .collect();
    let expected = lines.join("\n") + "\n";
    let path = contracts_dir().join("parity-corpus.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &expected).expect("write the corpus");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "contracts/legacy/parity-corpus.jsonl is not the goldens' corpus; regenerate with \
         UPDATE_GOLDEN=1 cargo nextest run -p integration-tests --test parity the_corpus"
    );
    // Every line is a valid capture line (compare's own schema).
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../compare/schemas/capture.v1.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for line in committed.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(validator.is_valid(&v), "{line}");
    }
    assert!(lines.len() >= 60, "{} exchanges", lines.len());
}

#[tokio::test]
async fn the_legacy_simulator_and_the_orchestrator_answer_the_goldens_and_each_other_alike() {
    let (app, _db, nats) = TestApp::full().await;
    let legacy_subject = format!("{}.legacy.sms.outbound.request", nats.prefix);
    let legacy = Legacy::spawn(&[
        &format!("--jwt-hs256-secret={SECRET}"),
        &format!("--nats-url={}", nats.url),
        "--jetstream",
        &format!("--nats-subject={legacy_subject}"),
    ])
    .await;
    let callers = Callers {
        secret: SECRET.to_owned(),
        tenant: app.tenant.clone(),
        other_tenant: unique("parity-other-"),
    };
    let http = http_client();
    let clock = Clock::now();
    let conformance = Conformance::embedded().unwrap();
    let goldens = Goldens::load();
    // `compare events` listens to both subjects while the corpus runs.
    let expected_events = expected_events(&goldens);
    let compare_events =
        CompareEvents::start(&nats.url, &legacy_subject, &nats.subject(), expected_events).await;
    let mut sim = Target::new("legacy", &legacy.url());
    let mut orch = Target::new("orchestrator", &app.api);
    let mut failures: Vec<String> = Vec::new();
    let mut pairs: Vec<(String, RecordedRequest, Answer, Answer)> = Vec::new();

    for golden in &goldens.exchanges {
        let mut answers = Vec::new();
        for target in [&mut sim, &mut orch] {
            if !golden.legacy && target.name == "legacy" {
                continue;
            }
            if let Some(reference) = &golden.settle {
                settle(&http, target, &callers, reference).await;
            }
            let request = golden.build(target, &callers, &clock);
            let answer = send(&http, target, &request).await;
            for e in golden.check(&answer, target, &clock) {
                failures.push(format!("{}: {e}", target.name));
            }
            let request_headers = to_http(&{
                let mut h = reqwest::header::HeaderMap::new();
                for (k, v) in &request.headers {
                    h.append(
                        reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        reqwest::header::HeaderValue::from_str(v).unwrap(),
                    );
                }
                h
            });
            let path = request
                .path
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned();
            let wire_headers = to_http(&answer.headers);
            for v in conformance.check(&Wire {
                method: &request.method,
                path: &path,
                request_headers: &request_headers,
                status: answer.status,
                headers: &wire_headers,
                body: &answer.body,
            }) {
                failures.push(format!("{}: {}: contract: {v}", target.name, golden.name));
            }
            target.record(&golden.name, &answer);
            target.sent.push((golden.name.clone(), request.clone()));
            answers.push((request, answer));
        }
        if let [(request, legacy_answer), (_, orch_answer)] = answers.as_slice() {
            let recorded_request = RecordedRequest {
                method: request.method.clone(),
                path: request.path.clone(),
                headers: http::HeaderMap::new(),
                body: request.body.clone().unwrap_or_default(),
            };
            pairs.push((
                golden.name.clone(),
                recorded_request,
                legacy_answer.clone(),
                orch_answer.clone(),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden or contract mismatches:\n{}",
        failures.join("\n")
    );

    // The two systems against each other: value noise only.
    let differ = Differ::new(rules());
    let mut verdicts: HashMap<&'static str, usize> = HashMap::new();
    let mut differs = Vec::new();
    for (name, request, primary, candidate) in &pairs {
        assert_eq!(
            primary.status, candidate.status,
            "{name}: clients would see another status"
        );
        let record = differ.diff(&Exchange {
            request: request.clone(),
            primary: recorded(primary),
            candidate: recorded(candidate),
        });
        let label = match record.verdict {
            Verdict::Same => "same",
            Verdict::NoiseOnly => "noise-only",
            Verdict::Differs => "differs",
        };
        *verdicts.entry(label).or_default() += 1;
        if record.verdict == Verdict::Differs {
            differs.push(format!(
                "{name}: {}",
                serde_json::to_string(&record).unwrap()
            ));
        }
    }
    println!("parity over {} exchanges: {verdicts:?}", pairs.len());
    // The rules explain only value noise: what a client would notice still
    // differs (the status, the content type, an id of another kind).
    let (_, request, primary, candidate) = pairs
        .iter()
        .find(|(name, ..)| name == "send-gsm7")
        .expect("send-gsm7");
    let changed = |f: &dyn Fn(&mut RecordedResponse)| {
        let mut c = recorded(candidate);
        f(&mut c);
        differ
            .diff(&Exchange {
                request: request.clone(),
                primary: recorded(primary),
                candidate: c,
            })
            .verdict
    };
    assert_eq!(
        changed(&|c| c.status = http::StatusCode::ACCEPTED),
        Verdict::Differs
    );
    assert_eq!(
        changed(&|c| {
            c.headers.insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
        }),
        Verdict::Differs
    );
    assert_eq!(
        changed(&|c| {
            let body = String::from_utf8_lossy(&c.body).into_owned();
            let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            c.body = Bytes::from(body.replace(&id, "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a"));
        }),
        Verdict::Differs
    );
    assert_eq!(
        changed(&|c| {
            c.headers.insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
        }),
        Verdict::Differs
    );
    assert!(
        differs.is_empty(),
        "differences beyond value noise:\n{}",
        differs.join("\n")
    );
    assert!(pairs.len() >= 60);

    // The events downstream workers get: the same, beyond value noise,
    // item by item (`compare events` pairs a bulk request's events by
    // position).
    compare_events.every_event_alike(expected_events).await;
}

/// `--caller NAME=Header: value` for every caller the corpus names, from
/// the run's tokens (the corpus holds no credentials).
fn caller_args(callers: &Callers) -> Vec<String> {
    let mut args = Vec::new();
    for name in [
        "tenant",
        "other-tenant",
        "tenant-header-only",
        "token-only",
        "forged",
        "malformed-tenant",
        "mismatch",
    ] {
        args.push("--caller".to_owned());
        args.push(format!("{name}="));
        for (header, value) in callers.headers(Some(name)) {
            args.push("--caller".to_owned());
            args.push(format!("{name}={header}: {value}"));
        }
    }
    args
}

#[tokio::test]
async fn compare_replay_of_the_committed_corpus_finds_only_value_noise_with_the_shipped_rules() {
    let (app, _db, nats) = TestApp::full().await;
    let legacy = Legacy::spawn(&[
        &format!("--jwt-hs256-secret={SECRET}"),
        &format!("--nats-url={}", nats.url),
        "--jetstream",
        &format!("--nats-subject={}.legacy.sms.outbound.request", nats.prefix),
    ])
    .await;
    let callers = Callers {
        secret: SECRET.to_owned(),
        tenant: app.tenant.clone(),
        other_tenant: unique("parity-other-"),
    };
    let corpus = contracts_dir().join("parity-corpus.jsonl");
    let lines = std::fs::read_to_string(&corpus).unwrap().lines().count();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("replay.jsonl");
    // As an SRE would against staging: the orchestrator fenced as a shadow
    // (its credential), writes to the legacy allowed (a stand-in here),
    // compare's shipped rules (no --rules).
    let output = tokio::process::Command::new(integration_tests::binary("compare"))
        .args(["replay", "--capture"])
        .arg(&corpus)
        .args(["--primary", &legacy.url(), "--candidate", &app.api])
        .args(["--candidate-shadow-safe", "--allow-writes", "--no-progress"])
        .args(caller_args(&callers))
        .arg("--out")
        .arg(&log)
        .env(
            "COMPARE_SHADOW_CREDENTIAL",
            integration_tests::SHADOW_SECRET,
        )
        .env("DIFF_REDACTION_KEY", "parity-replay")
        .output()
        .await
        .expect("compare replay runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stderr}");
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("templates: {lines} authored lines")),
        "{stderr}"
    );
    assert!(!stderr.contains("warning: templates"), "{stderr}");
    let records = compare::difflog::read_records(&log).expect("diff log");
    assert_eq!(records.len(), lines, "one record per corpus line");
    let (verdicts, differs) = tally(&records);
    for record in &records {
        assert!(record.accepted_changes().next().is_none(), "{record:?}");
    }
    println!("compare replay over {} lines: {verdicts:?}", records.len());
    assert!(differs.is_empty(), "differences:\n{}", differs.join("\n"));
    // The reads of created messages were compared, each side under its own
    // id: templates were filled per target.
    for name in [
        "get-own-message",
        "get-a-bulk-item",
        "get-own-message-not-modified",
    ] {
        let record = records
            .iter()
            .find(|r| r.correlation_id.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name}"));
        let status = record.status.as_ref().expect("an HTTP record");
        let expected = if name.ends_with("not-modified") {
            304
        } else {
            200
        };
        assert_eq!(
            (status.primary, status.candidate),
            (expected, expected),
            "{name}"
        );
    }
    // And the gate agrees.
    let report = std::process::Command::new(integration_tests::binary("compare"))
        .arg("report")
        .arg(&log)
        .args([
            "--json",
            &dir.path().join("report.json").display().to_string(),
        ])
        .args(["--max-diff-rate", "0%", "--min-samples", "1"])
        .output()
        .expect("compare report");
    let line = String::from_utf8_lossy(&report.stdout);
    assert_eq!(report.status.code(), Some(0), "{line}");
    assert!(line.starts_with("READY"), "{line}");
}

/// Sends one HTTP/1.1 request on `stream` and reads its answer (status and
/// body, by `Content-Length`); `None` when the connection is gone.
async fn exchange_on(
    stream: &mut tokio::net::TcpStream,
    head: &str,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let buf = shadow_support::read_head(stream).await?;
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut answer = vec![0; length];
    stream.read_exact(&mut answer).await.ok()?;
    Some((status, answer))
}

#[tokio::test]
async fn a_body_left_unread_does_not_cost_the_client_its_connection_on_either_system() {
    // body-parser dumps the rest of a refused body and Node discards what a
    // handler did not read, so a keep-alive client's next request on the
    // same connection is served. (Found by `compare replay`: the request
    // after a 413 failed on the orchestrator's reused connection.)
    let app = TestApp::embedded().await;
    let legacy = Legacy::spawn(&[&format!("--jwt-hs256-secret={SECRET}")]).await;
    let big = format!(
        r#"{{"to":"+447700900123","from":"Acme","body":"{}"}}"#,
        "x".repeat(150 * 1024)
    );
    let cases: [(&str, &str, u16); 3] = [
        ("/v1/sms/send", "application/json", 413),
        ("/v1/sms/bulk", "application/json; charset=latin1", 415),
        ("/v1/sms/send", "text/plain", 401),
    ];
    for base in [
        legacy.addr.clone(),
        app.api.trim_start_matches("http://").to_owned(),
    ] {
        for (path, content_type, status) in cases {
            let mut stream = tokio::net::TcpStream::connect(&base).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                big.len()
            );
            let first = exchange_on(&mut stream, &head, big.as_bytes()).await;
            assert_eq!(first.map(|a| a.0), Some(status), "{base} {content_type}");
            let second = exchange_on(
                &mut stream,
                "GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n",
                b"",
            )
            .await;
            assert_eq!(
                second.map(|a| a.0),
                Some(404),
                "{base}: the connection did not serve the request after a {status} ({content_type})"
            );
        }
    }
}
