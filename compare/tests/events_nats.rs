//! `compare events` against the real NATS server at 127.0.0.1:4222 (the
//! test command starts it). Each test uses its own subjects, so tests run in
//! parallel with each other and with whatever else uses the server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use compare::events::{self, EventsConfig};
use compare::{DiffLogWriter, Differ, Redaction, Redactor, Rules, Verdict};
use serde_json::json;

const NATS_URL: &str = "nats://127.0.0.1:4222";

fn unique(prefix: &str) -> String {
    format!("{prefix}.{:016x}", rand::random::<u64>())
}

fn payload(correlation_id: &str, message_id: &str, encoding: &str) -> bytes::Bytes {
    json!({
        "correlation_id": correlation_id,
        "message_id": message_id,
        "tenant_id": "acme",
        "to": PHONE,
        "from": "Acme",
        "body": SECRET_BODY,
        "encoding": encoding,
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string()
    .into()
}

async fn publish_fixture(client: &async_nats::Client, legacy: &str, shadow: &str) {
    // Three pairs (one with a real difference), paired by payload field…
    for (i, encoding) in [(1, "GSM-7"), (2, "GSM-7"), (3, "UCS-2")] {
        let corr = format!("corr-{i}");
        client
            .publish(
                legacy.to_owned(),
                payload(&corr, "507f1f77bcf86cd799439011", "GSM-7"),
            )
            .await
            .expect("publish");
        client
            .publish(
                shadow.to_owned(),
                payload(&corr, "65f000000000000000000001", encoding),
            )
            .await
            .expect("publish");
    }
    // …one pair by the X-Correlation-ID header only…
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Correlation-ID", "corr-header");
    let no_field = |id: &str| {
        json!({"message_id": id, "encoding": "GSM-7"})
            .to_string()
            .into()
    };
    client
        .publish_with_headers(
            legacy.to_owned(),
            headers.clone(),
            no_field("507f1f77bcf86cd799439012"),
        )
        .await
        .expect("publish");
    client
        .publish_with_headers(
            shadow.to_owned(),
            headers,
            no_field("65f000000000000000000002"),
        )
        .await
        .expect("publish");
    // …and one event on each side that never finds a partner.
    client
        .publish(
            legacy.to_owned(),
            payload("legacy-only", "507f1f77bcf86cd799439013", "GSM-7"),
        )
        .await
        .expect("publish");
    client
        .publish(
            shadow.to_owned(),
            payload("shadow-only", "65f000000000000000000003", "GSM-7"),
        )
        .await
        .expect("publish");
    client.flush().await.expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_events_by_correlation_id_and_reports_differences_and_orphans() {
    let client = async_nats::connect(NATS_URL)
        .await
        .expect("NATS at 127.0.0.1:4222 (started by .ci/run)");
    let legacy = unique("test.compare.legacy");
    let shadow = unique("test.compare.shadow");
    let config = EventsConfig {
        nats_url: NATS_URL.to_owned(),
        primary_subject: legacy.clone(),
        candidate_subject: shadow.clone(),
        // Generous: a loaded CI machine can stall a process for a while.
        window: Duration::from_secs(1),
        ..EventsConfig::default()
    };
    let differ = Differ::new(Rules::default_rules().expect("rules"));
    let dir = tmp();
    let log = file(&dir, "events.jsonl");
    let mut writer =
        DiffLogWriter::append(&log, Redaction::Keyed(Redactor::new(b"k"))).expect("log");
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let publisher = {
        let (client, legacy, shadow) = (client.clone(), legacy.clone(), shadow.clone());
        tokio::spawn(async move {
            ready_rx.await.expect("subscribed");
            publish_fixture(&client, &legacy, &shadow).await;
        })
    };
    let summary = events::run(
        &config,
        &differ,
        &mut writer,
        move || {
            let _ = ready_tx.send(());
        },
        tokio::time::sleep(Duration::from_secs(3)),
    )
    .await
    .expect("events run");
    publisher.await.expect("publisher");

    assert_eq!(summary.pairs, 4, "{summary:?}");
    assert_eq!((summary.differs, summary.noise_only), (1, 3), "{summary:?}");
    assert_eq!(
        (summary.unmatched_primary, summary.unmatched_candidate),
        (1, 1)
    );
    let records = read_records(&log);
    assert_eq!(records.len(), 6);
    assert!(
        records
            .iter()
            .all(|r| r.route == "event sms.outbound.request" && r.status.is_none())
    );
    let differing = records
        .iter()
        .find(|r| r.correlation_id.as_deref() == Some("corr-3"))
        .expect("corr-3 record");
    assert_eq!(differing.verdict, Verdict::Differs);
    let real: Vec<_> = differing.real_differences().map(|(p, _)| p).collect();
    assert_eq!(real, vec!["/encoding"]);
    let by_header = records
        .iter()
        .find(|r| r.correlation_id.as_deref() == Some("corr-header"))
        .expect("paired by header");
    assert_eq!(
        by_header.verdict,
        Verdict::NoiseOnly,
        "each side minted its own ObjectId: value noise"
    );
    let orphans: Vec<_> = records.iter().filter(|r| r.unmatched.is_some()).collect();
    assert_eq!(orphans.len(), 2);
    assert!(orphans.iter().all(|r| r.verdict == Verdict::Differs));
}

#[test]
fn the_events_command_writes_records_and_stops_after_max_pairs() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime
        .block_on(async_nats::connect(NATS_URL))
        .expect("NATS at 127.0.0.1:4222 (started by .ci/run)");
    let legacy = unique("test.compare.cli.legacy");
    let shadow = unique("test.compare.cli.shadow");
    let dir = tmp();
    let log = file(&dir, "events.jsonl");
    let mut child = compare_bin()
        .args([
            "events",
            "--nats-url",
            NATS_URL,
            "--primary-subject",
            &legacy,
            "--candidate-subject",
            &shadow,
        ])
        .args([
            "--window",
            "5s",
            "--max-pairs",
            "4",
            "--duration",
            "30s",
            "--sampled",
            "--out",
        ])
        .arg(&log)
        .env("DIFF_REDACTION_KEY", "k")
        .stderr(Stdio::piped())
        .spawn()
        .expect("compare events starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while stderr.read_line(&mut line).expect("read") > 0 && !line.contains("listening") {}
    assert!(
        line.contains("listening"),
        "compare events did not subscribe: {line}"
    );
    runtime.block_on(publish_fixture(&client, &legacy, &shadow));
    let status = child.wait().expect("compare events exits");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert!(status.success(), "{rest}");
    assert!(rest.contains("4 pairs"), "{rest}");
    let records = read_records(&log);
    assert_eq!(records.iter().filter(|r| r.unmatched.is_none()).count(), 4);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains("447700900123") && !text.contains("482913"),
        "events are redacted"
    );
}
