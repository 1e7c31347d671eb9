//! mirror-proxy's log is for machines and for alerts: every line it writes
//! (stdout or stderr, Pingora's own records included) is one JSON object,
//! and healthy traffic logs nothing at ERROR (issue #16, defect 8).

mod shadow_support;

use std::time::Duration;

use futures::StreamExt;
use integration_tests::{http_client, send_body};
use serde_json::Value;
use shadow_support::{Behaviour, Legacy, Proxy, ProxyConfig, Stub, send};

#[tokio::test]
async fn healthy_traffic_logs_only_json_lines_and_nothing_at_error() {
    let legacy = Legacy::spawn(&[]).await;
    let shadow = Stub::start(Behaviour::Fast).await;
    let config = ProxyConfig::new(&legacy.addr, Some(&shadow.addr.to_string()));
    // The default filter (info, Pingora's records included): what an SRE
    // running it with no RUST_LOG sees.
    let mut proxy = Proxy::spawn_with_env(config.clone(), &[("RUST_LOG", "info")]).await;
    let http = http_client();

    // Enough keep-alive reuse, 8 at a time, to meet Pingora's pool race
    // (seen 49 times in 600 such requests before the fix).
    let statuses: Vec<u16> = futures::stream::iter(0..600)
        .map(|i| {
            let request = send(&http, &proxy.url(), &send_body(&format!("healthy {i}")));
            async move { request.send().await.expect("send").status().as_u16() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201), "every client got 201");
    proxy.reload(config);
    proxy
        .wait_metric("mirror_config_reloads_total{result=\"ok\"}", 1.0)
        .await;
    let misses = proxy.metric("mirror_primary_reuse_misses_total").await;
    let pid = proxy.child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    tokio::time::timeout(Duration::from_secs(20), proxy.child.wait())
        .await
        .expect("stops within 20 s")
        .expect("exit status");
    // The pipes drain after the exit.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stdout = proxy.logs.lock().unwrap().clone();
    let stderr = proxy.stderr.lock().unwrap().clone();
    assert!(!stdout.is_empty());
    for line in stdout.iter().chain(&stderr) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["message"].is_string() && v["timestamp"].is_string(),
            "a log line without level, message or timestamp: {line}"
        );
        assert_ne!(
            v["level"], "ERROR",
            "an ERROR during healthy traffic: {line}"
        );
    }
    assert!(
        stdout
            .iter()
            .any(|l| l.contains("\"target\":\"pingora_core")),
        "Pingora's own records are in the log, as JSON"
    );
    eprintln!("pooled primary connections re-dialled (counted, not logged): {misses}");
}
