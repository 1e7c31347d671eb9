//! Contract parity: the legacy simulator and the real orchestrator
//! (Postgres, Redis, JetStream), each held to every golden exchange of
//! `contracts/legacy/exchanges.yaml` and to the OpenAPI document, then to
//! each other: compare's differ, with rules that accept only value noise
//! (`contracts/legacy/value-noise.toml`), finds no difference in any
//! answer or in any `sms.outbound.request` event. The committed corpus
//! (`contracts/legacy/parity-corpus.jsonl`) is these exchanges in compare's
//! capture format.

mod shadow_support;

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use bytes::Bytes;
use compare::{Differ, Exchange, RecordedRequest, RecordedResponse, Rules, Verdict};
use integration_tests::parity::{
    Answer, Callers, Clock, Goldens, Target, capture_line, contracts_dir, send, settle,
};
use integration_tests::{NatsNames, SECRET, TestApp, http_client, unique};
use orchestrator::conformance::{Conformance, Exchange as Wire};
use serde_json::Value;
use shadow_support::Legacy;

fn rules() -> Rules {
    Rules::load(&contracts_dir().join("value-noise.toml")).expect("value-noise.toml compiles")
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
        .map(|g| {
            let mut line = capture_line(g);
            if let Some(s) = &g.settle {
                line["request"]["headers"]
                    .as_array_mut()
                    .expect("headers")
                    .push(serde_json::json!(["x-parity-settle", s]));
            }
            line.to_string()
        })
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
    let requests_with_events = goldens
        .exchanges
        .iter()
        .filter(|g| g.legacy && g.response.status == 201 && g.response.same_as.is_none())
        .count();
    let events_dir = tempfile::tempdir().unwrap();
    let events_log = events_dir.path().join("events.jsonl");
    let mut compare_events = tokio::process::Command::new(integration_tests::binary("compare"))
        .args([
            "events",
            "--nats-url",
            &nats.url,
            "--primary-subject",
            &legacy_subject,
        ])
        .args(["--candidate-subject", &nats.subject(), "--window", "60s"])
        .args([
            "--duration",
            "120s",
            "--max-pairs",
            &requests_with_events.to_string(),
        ])
        .arg("--rules")
        .arg(contracts_dir().join("value-noise.toml"))
        .arg("--out")
        .arg(&events_log)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("compare events");
    let mut stderr = tokio::io::BufReader::new(compare_events.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line == "listening" {
                return;
            }
        }
    })
    .await
    .expect("compare events listening");
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
            let request = golden.build(target, &callers, clock);
            let answer = send(&http, target, &request).await;
            for e in golden.check(&answer, target, clock) {
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
            target.answers.insert(golden.name.clone(), answer.clone());
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

    // The events downstream workers get: the same, beyond value noise.
    let expected_events = goldens
        .exchanges
        .iter()
        .filter(|g| g.legacy)
        .map(|g| {
            let a = &orch.answers[&g.name];
            if a.status != 201 || g.response.same_as.is_some() {
                return 0;
            }
            let body: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
            body["accepted"].as_u64().map_or(1, |n| n as usize)
        })
        .sum::<usize>();
    let (legacy_events, orch_events) = (
        events(&nats, &legacy_subject, expected_events).await,
        events(&nats, &nats.subject(), expected_events).await,
    );
    assert_eq!(legacy_events.len(), expected_events, "legacy events");
    assert_eq!(orch_events.len(), expected_events, "orchestrator events");
    let paired = pair_events(legacy_events, orch_events);
    let mut event_differs = Vec::new();
    for (key, primary, candidate) in &paired {
        let record = differ.diff(&Exchange {
            request: RecordedRequest {
                method: http::Method::from_bytes(compare::exchange::EVENT_METHOD.as_bytes())
                    .unwrap(),
                path: "sms.outbound.request".into(),
                headers: http::HeaderMap::new(),
                body: Bytes::new(),
            },
            primary: primary.clone(),
            candidate: candidate.clone(),
        });
        // Nats-Msg-Id is each side's message id: an ObjectId on both.
        for side in [primary, candidate] {
            let id = side.headers["nats-msg-id"].to_str().unwrap();
            assert!(
                id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{key}: {id}"
            );
        }
        if record.verdict == Verdict::Differs {
            event_differs.push(format!(
                "{key}: {}",
                serde_json::to_string(&record).unwrap()
            ));
        }
    }
    println!("events: {} pairs", paired.len());
    assert_eq!(paired.len(), expected_events);
    assert!(
        event_differs.is_empty(),
        "event differences:\n{}",
        event_differs.join("\n")
    );

    // The `compare events` CLI over the same run: no difference either. It
    // pairs by correlation id alone, so it compares each request's first
    // event and counts a bulk request's others as duplicates.
    let status = tokio::time::timeout(Duration::from_secs(120), compare_events.wait())
        .await
        .expect("compare events stops after its pairs")
        .unwrap();
    let mut summary = String::new();
    while let Ok(Some(line)) = stderr.next_line().await {
        summary.push_str(&line);
        summary.push('\n');
    }
    println!("compare events: {summary}");
    assert!(status.success(), "{summary}");
    let records: Vec<compare::DiffRecord> = std::fs::read_to_string(&events_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), requests_with_events, "{summary}");
    assert!(
        records.iter().all(|r| r.verdict != Verdict::Differs),
        "{summary}"
    );
    assert!(
        summary.contains(&format!(
            "duplicates {}",
            expected_events - requests_with_events
        )),
        "{summary}"
    );
}

/// Every event on `subject` (waits until `n` are there).
async fn events(nats: &NatsNames, subject: &str, n: usize) -> Vec<RecordedResponse> {
    use futures::StreamExt;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(&nats.stream).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(20), messages.next()).await
        else {
            break;
        };
        let mut headers = http::HeaderMap::new();
        for (k, values) in m.headers.iter().flat_map(|h| h.iter()) {
            for v in values {
                if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.to_string().as_bytes()),
                    http::HeaderValue::from_str(v.as_str()),
                ) {
                    headers.append(k, v);
                }
            }
        }
        out.push(RecordedResponse {
            status: http::StatusCode::OK,
            headers,
            body: m.payload.clone(),
            latency: Duration::ZERO,
        });
    }
    out
}

/// Pairs events by correlation id and, within one request (a bulk), by
/// position: `compare events` pairs by correlation id alone, so it cannot
/// tell a bulk request's events apart.
fn pair_events(
    primary: Vec<RecordedResponse>,
    candidate: Vec<RecordedResponse>,
) -> Vec<(String, RecordedResponse, RecordedResponse)> {
    let key = |e: &RecordedResponse| {
        e.headers
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut by_key: HashMap<String, Vec<RecordedResponse>> = HashMap::new();
    for e in candidate {
        by_key.entry(key(&e)).or_default().push(e);
    }
    let mut out = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in primary {
        let k = key(&e);
        let i = seen.entry(k.clone()).or_default();
        if let Some(c) = by_key.get(&k).and_then(|v| v.get(*i)) {
            out.push((format!("{k}#{i}"), e.clone(), c.clone()));
        }
        *i += 1;
    }
    out
}
