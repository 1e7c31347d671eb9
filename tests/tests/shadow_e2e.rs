//! The shadow phase end to end, every part real: client → mirror-proxy →
//! legacy gateway simulator (primary, publishing to JetStream) + the real
//! orchestrator on Postgres, Redis and NATS (shadow, fenced by its shadow
//! credential).

mod shadow_support;

use std::time::Duration;

use integration_tests::{
    NatsNames, SECRET, SHADOW_SECRET, TestApp, eventually, http_client, send_body,
};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use shadow_support::{Legacy, Proxy, ProxyConfig};

struct Stack {
    app: TestApp,
    _db: integration_tests::TestDatabase,
    nats: NatsNames,
    legacy: Legacy,
    proxy: Proxy,
    token: String,
}

async fn stack() -> Stack {
    let (app, db, nats) = TestApp::full().await;
    let legacy = Legacy::spawn(&[
        &format!("--nats-url={}", nats.url),
        &format!("--nats-subject={}", nats.subject()),
        "--jetstream",
        &format!("--jwt-hs256-secret={SECRET}"),
    ])
    .await;
    let shadow = app.api.trim_start_matches("http://").to_owned();
    let mut config = ProxyConfig::new(&legacy.addr, Some(&shadow));
    config.capture = true;
    let proxy = Proxy::spawn(config).await;
    let token = app.token_for(&app.tenant);
    Stack {
        app,
        _db: db,
        nats,
        legacy,
        proxy,
        token,
    }
}

impl Stack {
    fn request(&self, method: reqwest::Method, base: &str, path: &str) -> reqwest::RequestBuilder {
        http_client()
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.token)
            .header("X-Tenant-Id", &self.app.tenant)
    }
}

/// Status, end-to-end headers and body bytes.
async fn parts(response: reqwest::Response) -> (u16, Vec<(String, Vec<u8>)>, Vec<u8>) {
    let status = response.status().as_u16();
    let headers = end_to_end(response.headers());
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

/// Headers minus `Date` (restamped by every HTTP/1.1 hop, Pingora included)
/// and the hop-by-hop `Connection`/`Keep-Alive`.
fn end_to_end(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "connection" | "keep-alive"))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

#[tokio::test]
async fn clients_get_the_primarys_bytes_and_the_diff_log_shows_only_documented_differences() {
    let s = stack().await;
    let proxy = s.proxy.url();
    let legacy = s.legacy.url();
    let post = reqwest::Method::POST;

    // Sends: what the client gets through the proxy is what the legacy
    // gateway answers (replayed by its Idempotency-Key, directly).
    for i in 0..5 {
        let body = send_body(&format!("Your code is {i}4821"));
        let through = s
            .request(post.clone(), &proxy, "/v1/sms/send")
            .header("Idempotency-Key", format!("e2e-{i}"))
            .header("X-Correlation-ID", format!("e2e-send-{i}"))
            .json(&body)
            .send()
            .await
            .expect("send through the proxy");
        let through = parts(through).await;
        assert_eq!(through.0, 201);
        let direct = s
            .request(post.clone(), &legacy, "/v1/sms/send")
            .header("Idempotency-Key", format!("e2e-{i}"))
            .json(&body)
            .send()
            .await
            .expect("send to the legacy gateway");
        assert_eq!(
            through,
            parts(direct).await,
            "the client gets the primary's exact answer"
        );
    }

    // A bulk request with one invalid item, and an invalid send: both
    // systems reject what is invalid, in the same words.
    let bulk = json!({
        "defaults": {"from": "Acme", "body": "Your order has shipped"},
        "messages": [{"to": "+447700900001"}, {"to": "not-a-number"}, {"to": "+447700900003"}, {"to": "+447700900004"}]
    });
    let through = s
        .request(post.clone(), &proxy, "/v1/sms/bulk")
        .header("Idempotency-Key", "e2e-bulk")
        .header("X-Correlation-ID", "e2e-bulk")
        .json(&bulk)
        .send()
        .await
        .expect("bulk");
    let through = parts(through).await;
    assert_eq!(through.0, 201);
    let direct = s
        .request(post.clone(), &legacy, "/v1/sms/bulk")
        .header("Idempotency-Key", "e2e-bulk")
        .json(&bulk)
        .send()
        .await
        .expect("bulk direct");
    assert_eq!(through, parts(direct).await);

    let invalid = s
        .request(post.clone(), &proxy, "/v1/sms/send")
        .header("X-Correlation-ID", "e2e-invalid")
        .json(&json!({"to": "0044-not-e164", "from": "Acme", "body": "x"}))
        .send()
        .await
        .expect("invalid send");
    assert_eq!(invalid.status(), 400);
    let nest: Value = invalid.json().await.expect("nest error");
    assert_eq!(nest["statusCode"], 400);

    let records = s.proxy.wait_records(7).await;
    assert_eq!(records.len(), 7, "one record per mirrored request");
    for record in &records {
        assert_ne!(
            record.verdict,
            compare::Verdict::Differs,
            "an undocumented difference: {}",
            serde_json::to_string_pretty(record).unwrap_or_default()
        );
        assert!(record.redacted);
        assert!(
            record
                .correlation_id
                .as_deref()
                .is_some_and(|c| c.starts_with("e2e-"))
        );
    }
    // The shipped rules accept no contract change: nothing was explained
    // away but value noise.
    assert!(
        records
            .iter()
            .all(|r| r.accepted_changes().next().is_none() && r.envelope.is_none()),
        "a contract change accepted by the shipped rules"
    );
    // The orchestrator answers in the legacy's own terms now: no record
    // needs an envelope class or a status class to look alike, and the
    // invalid send's two error bodies are identical.
    for record in &records {
        assert!(record.envelope.is_none(), "{record:?}");
        let status = record.status.as_ref().expect("an HTTP record");
        assert_eq!(status.primary, status.candidate);
        assert!(status.noise.is_none());
    }
    let invalid = records
        .iter()
        .find(|r| r.correlation_id.as_deref() == Some("e2e-invalid"))
        .expect("the invalid send's record");
    assert_eq!(invalid.verdict, compare::Verdict::Same, "{invalid:?}");

    // Nothing personal or secret in the diff log.
    let log = std::fs::read_to_string(s.proxy.diff_log()).expect("diff log");
    for needle in [
        "+447700900123",
        "+447700900001",
        "Your code is",
        SHADOW_SECRET,
        &s.token,
    ] {
        assert!(!log.contains(needle), "the diff log contains {needle:?}");
    }

    // The capture holds both answers of every exchange, as compare reads it.
    let capture =
        compare::capture::read(&s.proxy.dir.path().join("capture.jsonl"), None).expect("capture");
    assert_eq!(capture.len(), 7);
    assert!(
        capture
            .iter()
            .all(|c| c.primary.is_some() && c.candidate.is_some())
    );
    assert!(
        capture
            .iter()
            .all(|c| c.request.headers.get("authorization").is_none()
                && c.request.headers.get("x-shadow-credential").is_none())
    );

    // NATS: the real subject carries only the legacy gateway's 8 messages
    // (5 sends + 3 bulk items); the orchestrator's copies went to the shadow
    // subject.
    let nats = async_nats::connect(&s.nats.url).await.expect("nats");
    let js = async_nats::jetstream::new(nats);
    let shadow_subject = s.nats.shadow_subject();
    let messages = eventually(Duration::from_secs(15), || {
        let js = js.clone();
        let stream = s.nats.stream.clone();
        let shadow_subject = shadow_subject.clone();
        async move {
            let mut stream = js.get_stream(&stream).await.ok()?;
            let last = stream.info().await.ok()?.state.last_sequence;
            let mut all = Vec::new();
            for seq in 1..=last {
                if let Ok(m) = stream.get_raw_message(seq).await {
                    all.push(m);
                }
            }
            (all.iter()
                .filter(|m| m.subject.as_str() == shadow_subject)
                .count()
                >= 8)
                .then_some(all)
        }
    })
    .await
    .expect("the orchestrator published its 8 shadow copies");
    let real: Vec<_> = messages
        .iter()
        .filter(|m| m.subject.as_str() == s.nats.subject())
        .collect();
    assert_eq!(real.len(), 8);
    for m in &real {
        let payload: Value = serde_json::from_slice(&m.payload).expect("event JSON");
        let id = payload["id"].as_str().unwrap_or_default();
        assert!(
            id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "a real-subject event with a non-legacy id {id}"
        );
        assert!(m.headers.get("X-Shadow-Request").is_none());
    }
    let shadow: Vec<_> = messages
        .iter()
        .filter(|m| m.subject.as_str() == shadow_subject)
        .collect();
    assert_eq!(shadow.len(), 8);
}

#[tokio::test]
async fn a_status_read_through_the_proxy_reaches_the_shadow_under_the_shadows_own_id() {
    let s = stack().await;
    let proxy = s.proxy.url();
    let sent = s
        .request(reqwest::Method::POST, &proxy, "/v1/sms/send")
        .header("X-Correlation-ID", "e2e-corr-send")
        .json(&send_body("status read"))
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), 201);
    let legacy_id = sent.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(s.proxy.wait_metric("mirror_id_pairs", 1.0).await, 1.0);
    // Let both systems publish (accepted → queued) before reading.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let read = s
        .request(
            reqwest::Method::GET,
            &proxy,
            &format!("/v1/sms/{legacy_id}"),
        )
        .header("X-Correlation-ID", "e2e-corr-get")
        .send()
        .await
        .expect("status read");
    assert_eq!(read.status(), 200);
    assert_eq!(
        read.json::<Value>().await.expect("json")["id"],
        legacy_id.as_str()
    );

    let records = s.proxy.wait_records(2).await;
    let get = records
        .iter()
        .find(|r| r.route == "GET /v1/sms/{id}")
        .expect("a record for the status read");
    let status = get.status.as_ref().expect("status pair");
    assert_eq!(
        (status.primary, status.candidate),
        (200, 200),
        "the shadow found its own message"
    );
    assert_ne!(
        get.verdict,
        compare::Verdict::Differs,
        "{}",
        serde_json::to_string_pretty(get).unwrap_or_default()
    );

    // An id the proxy never learned is not mirrored (and counted).
    let unknown = s
        .request(
            reqwest::Method::GET,
            &proxy,
            "/v1/sms/65f000000000000000000000",
        )
        .send()
        .await
        .expect("unknown read");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        s.proxy
            .metric("mirror_dropped_total{reason=\"unknown-id\"}")
            .await,
        1.0
    );
}
