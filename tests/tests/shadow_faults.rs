//! The primary path never pays for the shadow: a slow, dead, garbled or
//! resetting shadow leaves the client's answer and latency alone, a full
//! in-flight budget drops copies instead of queueing them, a body over the
//! cap is not mirrored, and a dead primary is a 502 problem, never the
//! shadow's answer.

mod shadow_support;

use std::time::{Duration, Instant};

use integration_tests::{http_client, send_body};
use shadow_support::{Behaviour, Legacy, Proxy, ProxyConfig, Stub, closed_port, percentile, send};

/// Sequential sends through `proxy`; the latencies the client saw.
async fn timed_sends(proxy: &Proxy, n: usize) -> Vec<Duration> {
    let http = http_client();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let response = send(&http, &proxy.url(), &send_body(&format!("latency {i}")))
            .send()
            .await
            .expect("send through the proxy");
        assert_eq!(response.status(), 201);
        response.bytes().await.expect("body");
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::test]
async fn a_shadow_taking_one_second_does_not_slow_the_primary() {
    let legacy = Legacy::spawn(&[]).await;
    let fast = Stub::start(Behaviour::Fast).await;
    let slow = Stub::start(Behaviour::Slow(Duration::from_secs(1))).await;
    let baseline = Proxy::spawn(ProxyConfig::new(&legacy.addr, Some(&fast.addr.to_string()))).await;
    let slowed = Proxy::spawn(ProxyConfig::new(&legacy.addr, Some(&slow.addr.to_string()))).await;

    // Warm both paths (connection pools, first-request costs).
    timed_sends(&baseline, 5).await;
    timed_sends(&slowed, 5).await;
    let mut fast_samples = timed_sends(&baseline, 40).await;
    let mut slow_samples = timed_sends(&slowed, 40).await;

    let (fast_p50, fast_p95) = (
        percentile(&mut fast_samples, 50.0),
        percentile(&mut fast_samples, 95.0),
    );
    let (slow_p50, slow_p95) = (
        percentile(&mut slow_samples, 50.0),
        percentile(&mut slow_samples, 95.0),
    );
    let slow_max = percentile(&mut slow_samples, 100.0);
    eprintln!(
        "primary latency through mirror-proxy, 40 sequential sends: \
         fast shadow p50 {fast_p50:.2} ms p95 {fast_p95:.2} ms; \
         1 s shadow p50 {slow_p50:.2} ms p95 {slow_p95:.2} ms max {slow_max:.2} ms"
    );
    // Generous bound: a copy waiting for its 1 s shadow must never show up
    // in the client's latency (the benchmarks measure the real figures).
    assert!(
        slow_max < 500.0,
        "a send took {slow_max} ms with a 1 s shadow"
    );
    assert!(
        slow_p95 < fast_p95 + 100.0,
        "p95 {slow_p95} ms vs {fast_p95} ms"
    );
    // The copies did go out and were answered after ~1 s.
    assert!(slowed.wait_metric("mirror_diff_records_total", 45.0).await >= 45.0);
    assert_eq!(slow.count(), 45);
}

#[tokio::test]
async fn a_dead_garbled_or_resetting_shadow_leaves_the_primary_untouched_and_is_counted() {
    let legacy = Legacy::spawn(&[]).await;
    let garbage = Stub::start(Behaviour::Garbage).await;
    let reset = Stub::start(Behaviour::Reset).await;
    let cases = [
        ("connect", closed_port()),
        ("protocol", garbage.addr.to_string()),
        ("reset", reset.addr.to_string()),
    ];
    let http = http_client();
    for (kind, shadow) in cases {
        let proxy = Proxy::spawn(ProxyConfig::new(&legacy.addr, Some(&shadow))).await;
        for i in 0..10 {
            let response = send(&http, &proxy.url(), &send_body(&format!("{kind} {i}")))
                .send()
                .await
                .expect("send");
            assert_eq!(
                response.status(),
                201,
                "{kind}: the client gets the primary's answer"
            );
            assert_eq!(response.headers()["x-powered-by"], "Express");
            let body: serde_json::Value = response.json().await.expect("primary JSON");
            assert_eq!(body["status"], "accepted");
        }
        let errors = proxy
            .wait_metric(
                &format!("mirror_shadow_errors_total{{kind=\"{kind}\"}}"),
                10.0,
            )
            .await;
        assert_eq!(
            errors, 10.0,
            "{kind}: every failed copy is counted under its kind"
        );
        assert_eq!(
            proxy
                .metric("mirror_mirrored_total{route=\"POST /v1/sms/send\"}")
                .await,
            10.0
        );
        let records = proxy.wait_records(10).await;
        assert_eq!(records.len(), 10);
        for record in &records {
            assert_eq!(record.verdict, compare::Verdict::Differs);
            let error = record.error.as_deref().unwrap_or_default();
            assert!(error.starts_with(kind), "{kind}: record error {error:?}");
        }
    }
}

#[tokio::test]
async fn a_dead_primary_is_a_502_problem_and_never_the_shadows_answer() {
    let shadow = Stub::start(Behaviour::Fast).await;
    let proxy = Proxy::spawn(ProxyConfig::new(
        &closed_port(),
        Some(&shadow.addr.to_string()),
    ))
    .await;
    let http = http_client();
    for request in [
        send(&http, &proxy.url(), &send_body("to nowhere")).header("X-Correlation-ID", "corr-502"),
        http.get(format!("{}/v1/sms/abc", proxy.url()))
            .bearer_auth("t")
            .header("X-Correlation-ID", "corr-502"),
    ] {
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 502);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = response.json().await.expect("problem JSON");
        assert_eq!(problem["status"], 502);
        assert_eq!(
            problem["type"],
            "urn:sms-orchestrator:problem:primary-unavailable"
        );
        assert_eq!(problem["correlation_id"], "corr-502");
    }
    assert_eq!(proxy.metric("mirror_primary_errors_total").await, 2.0);
    // Nothing was compared: there is no primary answer to compare with.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(proxy.records().is_empty());
}

#[tokio::test]
async fn a_body_over_the_cap_is_not_mirrored_whether_sized_or_chunked() {
    let legacy = Legacy::spawn(&[]).await;
    let shadow = Stub::start(Behaviour::Fast).await;
    let mut config = ProxyConfig::new(&legacy.addr, Some(&shadow.addr.to_string()));
    config.max_body_bytes = 1024;
    let proxy = Proxy::spawn(config).await;
    let http = http_client();

    // Content-Length over the cap: decided from the head.
    let big = send_body(&"x".repeat(2000));
    let response = send(&http, &proxy.url(), &big).send().await.expect("send");
    assert_eq!(
        response.status(),
        400,
        "the legacy gateway still answers (too many segments)"
    );

    // Chunked, found out while streaming.
    let body = serde_json::to_vec(&send_body(&"y".repeat(2000))).expect("json");
    let mut stream = tokio::net::TcpStream::connect(&proxy.addr)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request =
        "POST /v1/sms/send HTTP/1.1\r\nHost: sms.example.com\r\nAuthorization: Bearer t\r\n\
         X-Tenant-Id: acme\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
            .as_bytes()
            .to_vec();
    for chunk in body.chunks(400) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A small one still is.
    let response = send(&http, &proxy.url(), &send_body("small"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);

    assert_eq!(
        proxy
            .wait_metric("mirror_dropped_total{reason=\"body-too-large\"}", 2.0)
            .await,
        2.0
    );
    proxy.wait_records(1).await;
    assert_eq!(
        shadow.count(),
        1,
        "only the small request reached the shadow"
    );
}

#[tokio::test]
async fn a_full_in_flight_budget_drops_copies_instead_of_queueing_them() {
    let legacy = Legacy::spawn(&[]).await;
    let slow = Stub::start(Behaviour::Slow(Duration::from_secs(1))).await;
    let mut config = ProxyConfig::new(&legacy.addr, Some(&slow.addr.to_string()));
    config.max_in_flight = 2;
    let proxy = Proxy::spawn(config).await;
    let http = http_client();

    let started = Instant::now();
    let sends = (0..10).map(|i| {
        let request = send(&http, &proxy.url(), &send_body(&format!("burst {i}")));
        async move {
            let t = Instant::now();
            let status = request.send().await.expect("send").status();
            (status, t.elapsed())
        }
    });
    let results = futures::future::join_all(sends).await;
    for (status, took) in &results {
        assert_eq!(*status, 201);
        assert!(
            *took < Duration::from_millis(800),
            "a send waited {took:?} behind the shadow"
        );
    }
    assert!(started.elapsed() < Duration::from_millis(900));

    assert_eq!(
        proxy
            .metric("mirror_mirrored_total{route=\"POST /v1/sms/send\"}")
            .await,
        2.0
    );
    assert_eq!(
        proxy
            .metric("mirror_dropped_total{reason=\"in-flight-full\"}")
            .await,
        8.0
    );
    proxy.wait_records(2).await;
    assert_eq!(
        slow.max_in_flight.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    assert_eq!(proxy.metric("mirror_shadow_in_flight").await, 0.0);
}

/// Issue #16, defect 5: the budget is the process's, not one per reload.
/// Copies stalled on a slow shadow keep their slots through a reload, so
/// the copies after it find the budget still full.
#[tokio::test]
async fn reloads_do_not_add_room_beside_copies_still_in_flight() {
    let legacy = Legacy::spawn(&[]).await;
    // Stalled for longer than the test runs, even on a loaded machine: the
    // first two copies hold their slots throughout.
    let stalled = Stub::start(Behaviour::Slow(Duration::from_secs(30))).await;
    let mut config = ProxyConfig::new(&legacy.addr, Some(&stalled.addr.to_string()));
    config.max_in_flight = 2;
    config.timeout = "60s".into();
    let mut proxy = Proxy::spawn(config.clone()).await;
    let http = http_client();

    for round in 0..3 {
        for i in 0..2 {
            let response = send(&http, &proxy.url(), &send_body(&format!("r{round} {i}")))
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 201);
        }
        if round < 2 {
            proxy.reload(config.clone());
            let reloads = f64::from(round + 1);
            assert_eq!(
                proxy
                    .wait_metric("mirror_config_reloads_total{result=\"ok\"}", reloads)
                    .await,
                reloads
            );
        }
    }
    assert_eq!(
        proxy
            .metric("mirror_mirrored_total{route=\"POST /v1/sms/send\"}")
            .await,
        2.0,
        "only the first two copies fit the budget"
    );
    assert_eq!(
        proxy
            .metric("mirror_dropped_total{reason=\"in-flight-full\"}")
            .await,
        4.0
    );
    assert!(proxy.metric("mirror_shadow_in_flight").await <= 2.0);
    assert!(
        stalled
            .max_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            <= 2
    );
}

/// `mirror_proxy::priority::TEE_NICE` (this crate does not link the proxy).
const TEE_NICE: i32 = 10;

/// Name and nice value of every thread of process `pid`, from
/// `/proc/<pid>/task/<tid>/stat` (the name is in parentheses and may hold
/// spaces; nice is the 19th field).
fn threads_of(pid: u32) -> Vec<(String, i32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the proxy's threads") {
        let Ok(stat) = std::fs::read_to_string(task.expect("task entry").path().join("stat"))
        else {
            continue; // the thread ended meanwhile
        };
        let (open, close) = (
            stat.find('(').expect("comm"),
            stat.rfind(')').expect("comm"),
        );
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // fields[0] is field 3 (state), so field 19 (nice) is fields[16].
        threads.push((name, fields[16].parse().expect("nice")));
    }
    threads
}

#[tokio::test]
async fn the_tees_threads_run_at_a_lower_cpu_priority_than_the_primarys() {
    let legacy = Legacy::spawn(&[]).await;
    let shadow = Stub::start(Behaviour::Fast).await;
    let proxy = Proxy::spawn(ProxyConfig::new(
        &legacy.addr,
        Some(&shadow.addr.to_string()),
    ))
    .await;
    // One mirrored request starts the shadow runtime; its diff record
    // shows that the diff service ran too.
    let response = send(&http_client(), &proxy.url(), &send_body("priority"))
        .send()
        .await
        .expect("send through the proxy");
    assert_eq!(response.status(), 201);
    proxy.wait_records(1).await;

    let pid = proxy.child.id().expect("the proxy runs");
    let threads = threads_of(pid);
    // The main thread's nice value is the process's (0 unless the test
    // itself runs under `nice`).
    let base = threads
        .iter()
        .find(|(name, _)| name == "mirror-proxy")
        .map(|(_, nice)| *nice)
        .expect("a thread named mirror-proxy");
    let lowered = (base + TEE_NICE).min(19);
    let tee = |name: &str| name == "shadow" || name == "BG diff";
    assert!(
        threads.iter().any(|(name, _)| name == "shadow")
            && threads.iter().any(|(name, _)| name == "BG diff"),
        "the shadow runtime's and the diff service's threads exist: {threads:?}"
    );
    for (name, nice) in &threads {
        let expected = if tee(name) { lowered } else { base };
        assert_eq!(*nice, expected, "thread {name:?}: {threads:?}");
    }
    assert!(
        proxy
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|l| l.contains("lower CPU priority")),
        "the proxy says so at start"
    );
}
