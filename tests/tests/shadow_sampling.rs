//! Which requests get a copy: the sampled share within statistical
//! tolerance, the same requests again when hashing on a header, a reload
//! that changes the share without dropping requests in flight, and no
//! mirror loops.

mod shadow_support;

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use integration_tests::{SHADOW_SECRET, http_client, send_body};
use shadow_support::{Behaviour, Legacy, Proxy, ProxyConfig, Stub, send};

#[tokio::test]
async fn ten_percent_sampling_lands_within_statistical_tolerance() {
    let legacy = Legacy::spawn(&[]).await;
    let shadow = Stub::start(Behaviour::Fast).await;
    let mut config = ProxyConfig::new(&legacy.addr, Some(&shadow.addr.to_string()));
    config.percent = 10.0;
    let proxy = Proxy::spawn(config).await;
    let http = http_client();

    let n = 3000;
    let statuses: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| {
            let request = send(&http, &proxy.url(), &send_body(&format!("sample {i}")));
            async move { request.send().await.expect("send").status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201));

    let mirrored = proxy
        .metric("mirror_mirrored_total{route=\"POST /v1/sms/send\"}")
        .await;
    let sampled_out = proxy
        .metric("mirror_sampled_out_total{route=\"POST /v1/sms/send\"}")
        .await;
    assert_eq!(mirrored + sampled_out, f64::from(n));
    // Binomial(3000, 0.1): mean 300, sd 16.4; five sd either side.
    eprintln!("10 % sampling: {mirrored} of {n} mirrored");
    assert!(
        (218.0..=382.0).contains(&mirrored),
        "{mirrored} of {n} mirrored"
    );
    proxy.wait_records(mirrored as usize).await;
    assert_eq!(shadow.count() as f64, mirrored);
}

#[tokio::test]
async fn hashing_on_the_request_id_picks_the_same_requests_every_time() {
    let legacy = Legacy::spawn(&[]).await;
    let shadow = Stub::start(Behaviour::Fast).await;
    let mut config = ProxyConfig::new(&legacy.addr, Some(&shadow.addr.to_string()));
    config.percent = 25.0;
    config.hash_header = Some("x-request-id".into());
    let proxy = Proxy::spawn(config).await;
    let http = http_client();

    let mut rounds = Vec::new();
    for round in 0..2 {
        let before = shadow.count();
        for i in 0..200 {
            let response = send(&http, &proxy.url(), &send_body("hash"))
                .header("x-request-id", format!("req-{i}"))
                .send()
                .await
                .expect("send");
            assert_eq!(response.status(), 201);
        }
        proxy.wait_metric("mirror_diff_records_total", 1.0).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let picked: HashSet<String> = shadow.requests()[before..]
            .iter()
            .map(|s| s.headers["x-request-id"].clone())
            .collect();
        eprintln!("round {round}: {} of 200 picked", picked.len());
        rounds.push(picked);
    }
    assert_eq!(
        rounds[0], rounds[1],
        "the same request ids are mirrored in both rounds"
    );
    assert!(
        (25..=75).contains(&rounds[0].len()),
        "{} of 200",
        rounds[0].len()
    );
}

#[tokio::test]
async fn a_reload_changes_the_share_without_dropping_requests_in_flight() {
    // The primary takes 800 ms, so requests are in flight across the reload.
    let legacy = Legacy::spawn(&["--delay=800ms"]).await;
    let shadow = Stub::start(Behaviour::Fast).await;
    let mut config = ProxyConfig::new(&legacy.addr, Some(&shadow.addr.to_string()));
    config.percent = 0.0;
    let mut proxy = Proxy::spawn(config.clone()).await;
    let http = http_client();

    let in_flight: Vec<_> = (0..10)
        .map(|i| {
            let request = send(&http, &proxy.url(), &send_body(&format!("before {i}")));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    config.percent = 100.0;
    proxy.reload(config);
    assert_eq!(
        proxy
            .wait_metric("mirror_config_reloads_total{result=\"ok\"}", 1.0)
            .await,
        1.0
    );

    for handle in in_flight {
        let status = handle
            .await
            .expect("task")
            .expect("request survived the reload");
        assert_eq!(status, 201);
    }
    // They started under 0 %: not mirrored.
    assert_eq!(
        proxy
            .metric("mirror_sampled_out_total{route=\"POST /v1/sms/send\"}")
            .await,
        10.0
    );
    assert_eq!(shadow.count(), 0);

    for i in 0..10 {
        let response = send(&http, &proxy.url(), &send_body(&format!("after {i}")))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 201);
    }
    proxy.wait_records(10).await;
    assert_eq!(
        shadow.count(),
        10,
        "requests after the reload are all mirrored"
    );

    // A broken file is refused whole; the running settings stay.
    std::fs::write(
        proxy.dir.path().join("mirror-proxy.toml"),
        "[sampling]\npercent = 250\n",
    )
    .expect("write");
    let pid = proxy.child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert_eq!(
        proxy
            .wait_metric("mirror_config_reloads_total{result=\"error\"}", 1.0)
            .await,
        1.0
    );
    let response = send(&http, &proxy.url(), &send_body("still"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    proxy.wait_records(11).await;
    assert_eq!(shadow.count(), 11);
}

#[tokio::test]
async fn copies_are_never_mirrored_again_so_chained_proxies_cannot_loop() {
    // client → A → legacy; A's copies → B; B forwards them to its primary
    // (a stub standing in for the orchestrator) and must not mirror them
    // again to its own shadow.
    let legacy = Legacy::spawn(&[]).await;
    let b_primary = Stub::start(Behaviour::Fast).await;
    let b_shadow = Stub::start(Behaviour::Fast).await;
    let b = Proxy::spawn(ProxyConfig::new(
        &b_primary.addr.to_string(),
        Some(&b_shadow.addr.to_string()),
    ))
    .await;
    let a = Proxy::spawn(ProxyConfig::new(&legacy.addr, Some(&b.addr))).await;
    let http = http_client();

    for i in 0..5 {
        let response = send(&http, &a.url(), &send_body(&format!("chain {i}")))
            .header("Host", "sms.example.com:8443")
            .header("X-Correlation-ID", format!("chain-{i}"))
            .header("X-Forwarded-For", "203.0.113.7")
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 201);
    }
    a.wait_records(5).await;
    assert_eq!(b_primary.count(), 5, "B forwards the copies to its primary");
    assert_eq!(b_shadow.count(), 0, "B never mirrors a copy");
    assert_eq!(
        b.metric("mirror_dropped_total{reason=\"already-marked\"}")
            .await,
        5.0
    );

    // The copies carry the markers, the suffixed Host, the correlation id
    // and one more X-Forwarded-For hop.
    for seen in b_primary.requests() {
        assert_eq!(seen.headers["x-shadow-request"], "1");
        assert_eq!(seen.headers["x-shadow-credential"], SHADOW_SECRET);
        assert_eq!(seen.headers["host"], "sms.example.com-shadow:8443");
        assert!(seen.headers["x-correlation-id"].starts_with("chain-"));
        // A appended the client; B appended A.
        assert_eq!(
            seen.headers["x-forwarded-for"],
            "203.0.113.7, 127.0.0.1, 127.0.0.1"
        );
    }

    // A request already marked by an edge (Envoy's -shadow Host) is
    // accepted and proxied, Host preserved, and not mirrored.
    let response = send(&http, &a.url(), &send_body("edge-marked"))
        .header("Host", "sms.example.com-shadow")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    assert_eq!(
        a.metric("mirror_dropped_total{reason=\"already-marked\"}")
            .await,
        1.0
    );
    assert_eq!(
        a.metric("mirror_mirrored_total{route=\"POST /v1/sms/send\"}")
            .await,
        5.0
    );
}
