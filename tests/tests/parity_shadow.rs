//! The parity proof of issue #13, through the shadow phase as it runs: the
//! committed corpus (`contracts/legacy/parity-corpus.jsonl`, the goldens in
//! order) sent by a client through mirror-proxy, the legacy simulator as
//! primary (publishing to JetStream), the real orchestrator (Postgres,
//! Redis, JetStream) as the fenced shadow, with the shipped rules only
//! (`compare/rules/default.toml` + `mirror-proxy/rules/shadow.toml`):
//!
//! - every exchange is mirrored and no diff record `differs`;
//! - `compare events` over the legacy's subject and the shadow subject of
//!   the same run pairs every event (each bulk item with its twin) and
//!   finds no difference;
//! - `compare report` over both logs says READY;
//!
//! and the gate is not fooled: the same corpus through the same path
//! against an orchestrator that answers errors as problem documents by
//! default (`ERROR_FORMAT=problem`, a real setting) is NOT READY, naming
//! the routes and the difference.

mod shadow_support;

use std::time::Duration;

use compare::{DiffRecord, Verdict};
use integration_tests::parity::{
    Callers, Clock, CompareEvents, Goldens, Target, contracts_dir, expected_events, send, tally,
};
use integration_tests::{NatsNames, Options, SECRET, TestApp, TestDatabase, redis_url, unique};
use shadow_support::{Legacy, Proxy, ProxyConfig};

struct Stack {
    app: TestApp,
    _db: TestDatabase,
    nats: NatsNames,
    _legacy: Legacy,
    proxy: Proxy,
}

/// The legacy simulator, the orchestrator started with `args`, and
/// mirror-proxy between them as the shadow phase deploys it.
async fn stack(args: &[&str]) -> Stack {
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        redis: Some(redis_url()),
        nats: Some(nats.clone()),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..Options::default()
    })
    .await;
    let legacy = Legacy::spawn(&[
        &format!("--jwt-hs256-secret={SECRET}"),
        &format!("--nats-url={}", nats.url),
        &format!("--nats-subject={}", nats.subject()),
        "--jetstream",
    ])
    .await;
    let shadow = app.api.trim_start_matches("http://").to_owned();
    let mut config = ProxyConfig::new(&legacy.addr, Some(&shadow));
    // Two departures from mirror-proxy.example.toml, so that every
    // exchange of the corpus is compared (the rules are the shipped ones):
    // the corpus's oversize bodies (100 kB + 1, the legacy's limit) are
    // over the example's 64 kB copy cap, and its reads of ids nobody
    // created would not be mirrored (`mirror_unknown = false`).
    config.max_body_bytes = 256 * 1024;
    config.mirror_unknown = true;
    let proxy = Proxy::spawn(config).await;
    Stack {
        app,
        _db: db,
        nats,
        _legacy: legacy,
        proxy,
    }
}

/// Sends the corpus's exchanges through the proxy, in order, one at a
/// time (each waits for the previous one's diff record: a client's next
/// request never overtakes the copy of its last). A golden's `settle`
/// waits until the shadow has published every message accepted so far
/// (the legacy publishes before it answers). Returns the diff records.
async fn drive(s: &Stack) -> Vec<DiffRecord> {
    let goldens = Goldens::load();
    let callers = Callers {
        secret: SECRET.to_owned(),
        tenant: s.app.tenant.clone(),
        other_tenant: unique("parity-other-"),
    };
    let http = integration_tests::http_client();
    let clock = Clock::now();
    let mut client = Target::new("client", &s.proxy.url());
    let mut failures = Vec::new();
    let (mut sent, mut accepted) = (0, 0usize);
    for golden in goldens.exchanges.iter().filter(|g| g.legacy) {
        if golden.settle.is_some() {
            let published = integration_tests::eventually(Duration::from_secs(15), || async {
                let n = s
                    .app
                    .metric("orchestrator_published_total{kind=\"shadow\"}")
                    .await;
                (n >= accepted as f64).then_some(())
            })
            .await;
            assert!(
                published.is_some(),
                "{}: the shadow never published",
                golden.name
            );
        }
        let request = golden.build(&client, &callers, &clock);
        let answer = send(&http, &client, &request).await;
        // The client gets the legacy's answer: the golden's.
        failures.extend(golden.check(&answer, &client, &clock));
        if answer.status == 201 && golden.response.same_as.is_none() {
            accepted += golden
                .response
                .body
                .as_ref()
                .and_then(|b| b["accepted"].as_u64())
                .map_or(1, |n| n as usize);
        }
        client.record(&golden.name, &answer);
        sent += 1;
        let records = s.proxy.wait_records(sent).await;
        assert_eq!(
            records.len(),
            sent,
            "{}: not mirrored, or no diff record within 15 s",
            golden.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    s.proxy.records()
}

/// `compare report` with the gate over `logs`: exit code and one-line reason.
fn gate(logs: &[&std::path::Path], markdown: &std::path::Path) -> (Option<i32>, String) {
    let output = std::process::Command::new(integration_tests::binary("compare"))
        .arg("report")
        .args(logs)
        .arg("--markdown")
        .arg(markdown)
        .args(["--max-diff-rate", "0.1%", "--min-samples", "1"])
        .env("DIFF_REDACTION_KEY", shadow_support::REDACTION_KEY)
        .output()
        .expect("compare report");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    )
}

#[tokio::test]
async fn the_corpus_through_mirror_proxy_differs_in_nothing_but_value_noise_in_answers_and_events()
{
    let s = stack(&[]).await;
    let goldens = Goldens::load();
    let events = expected_events(&goldens);
    let compare_events = CompareEvents::start(
        &s.nats.url,
        &s.nats.subject(),
        &s.nats.shadow_subject(),
        events,
    )
    .await;

    let records = drive(&s).await;
    let lines = std::fs::read_to_string(contracts_dir().join("parity-corpus.jsonl"))
        .unwrap()
        .lines()
        .count();
    let (verdicts, differs) = tally(&records);
    println!(
        "through mirror-proxy: {} records {verdicts:?}",
        records.len()
    );
    assert_eq!(records.len(), lines, "every corpus exchange was compared");
    assert!(differs.is_empty(), "differences:\n{}", differs.join("\n"));
    assert!(
        records
            .iter()
            .all(|r| r.accepted_changes().next().is_none() && r.envelope.is_none()),
        "the shipped rules accept no contract change"
    );
    // The reads of created messages reached the shadow under its own ids,
    // the conditional one with its own ETag.
    for (name, status) in [
        ("get-own-message", 200),
        ("get-own-message-not-modified", 304),
        ("get-no-cache-is-never-fresh", 200),
        ("get-a-bulk-item", 200),
        ("get-another-tenants-message", 404),
    ] {
        let record = records
            .iter()
            .find(|r| r.correlation_id.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no record of {name}"));
        let pair = record.status.as_ref().expect("HTTP record");
        assert_eq!((pair.primary, pair.candidate), (status, status), "{name}");
    }

    let event_records = compare_events.every_event_alike(events).await;

    // The gate over both logs.
    let dir = tempfile::tempdir().unwrap();
    let events_log = dir.path().join("events.jsonl");
    std::fs::write(
        &events_log,
        event_records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let (code, line) = gate(
        &[&s.proxy.diff_log(), &events_log],
        &dir.path().join("report.md"),
    );
    assert_eq!(code, Some(0), "{line}");
    assert!(line.starts_with("READY"), "{line}");
}

#[tokio::test]
async fn the_gate_refuses_an_orchestrator_that_answers_problem_documents_by_default() {
    let s = stack(&["--error-format=problem"]).await;
    let records = drive(&s).await;
    println!(
        "through mirror-proxy, ERROR_FORMAT=problem: {} records {:?}",
        records.len(),
        tally(&records).0
    );
    // What differs is the errors: error answers (their envelope and
    // content type) and a bulk answer's refused items (their envelope, and
    // so the answer's length).
    let differing: Vec<&DiffRecord> = records
        .iter()
        .filter(|r| r.verdict == Verdict::Differs)
        .collect();
    let not_errors: Vec<_> = differing
        .iter()
        .filter(|r| r.status.as_ref().is_some_and(|s| s.primary < 400))
        .filter(|r| {
            r.real_differences().any(|(path, _)| {
                !path.starts_with("/results/")
                    && path != "header:etag"
                    && path != "header:content-length"
            })
        })
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    assert!(not_errors.is_empty(), "{}", not_errors.join("\n"));
    assert!(differing.len() >= 40, "{}", differing.len());
    let dir = tempfile::tempdir().unwrap();
    let markdown = dir.path().join("report.md");
    let (code, line) = gate(&[&s.proxy.diff_log()], &markdown);
    println!("{line}");
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.starts_with("NOT READY: diff rate over 0.100%"),
        "{line}"
    );
    // The route and the difference, in the line CI shows.
    assert!(
        line.contains("POST /v1/sms/send ") && line.contains("top: header:content-type"),
        "{line}"
    );
    let report = std::fs::read_to_string(&markdown).unwrap();
    assert!(report.contains("application/problem+json"), "{report}");
}
