//! Shadow events under the DEFAULT stream layout (issue #16, defect 1):
//! against a private `nats-server` (the default stream names must not be
//! touched on a shared server), with nothing configured but the server and
//! `NATS_CREATE_STREAM`, live events land in `SMS_OUTBOUND`, shadow events
//! in `SMS_SHADOW`; a shadow lane that fails never delays live events; and
//! shadow rows that never publish are reaped.

use std::time::{Duration, Instant};

use integration_tests::{
    Options, PrivateNats, SHADOW_SECRET, TestApp, accepted_id, eventually, send_body,
    stream_messages,
};
use reqwest::{Method, StatusCode};

async fn on_defaults(nats: &PrivateNats, extra: &[&str]) -> TestApp {
    let mut args = vec![
        format!("--nats-url={}", nats.url()),
        "--nats-create-stream".into(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    TestApp::spawn(Options {
        args,
        ..Options::default()
    })
    .await
}

async fn send_shadow(app: &TestApp, text: &str) {
    let r = app
        .request(Method::POST, "/v1/sms/send")
        .header("X-Shadow-Request", "1")
        .header("X-Shadow-Credential", SHADOW_SECRET)
        .json(&send_body(text))
        .send()
        .await
        .expect("shadow send");
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn ids_in(url: &str, stream: &str, subject: &str) -> Vec<String> {
    stream_messages(url, stream, subject)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn on_the_defaults_live_and_shadow_events_both_publish_each_to_its_own_stream() {
    let nats = PrivateNats::start().await;
    let app = on_defaults(&nats, &[]).await;
    let live = accepted_id(app.send(&send_body("live"), None).await).await;
    send_shadow(&app, "shadow").await;

    let shadow_published = eventually(Duration::from_secs(10), || async {
        (app.metric("orchestrator_published_total{kind=\"shadow\"}")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(
        shadow_published.is_some(),
        "the shadow event is published under the default layout"
    );
    let live_ids = ids_in(&nats.url(), "SMS_OUTBOUND", "sms.outbound.request").await;
    assert_eq!(live_ids, vec![live.clone()]);
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut live_stream = js.get_stream("SMS_OUTBOUND").await.unwrap();
    assert_eq!(
        live_stream.info().await.unwrap().state.messages,
        1,
        "only the live event is in the live stream"
    );
    let shadow_ids = ids_in(&nats.url(), "SMS_SHADOW", "shadow.sms.outbound.request").await;
    assert_eq!(shadow_ids.len(), 1, "{shadow_ids:?}");
    assert_eq!(
        app.metric("orchestrator_publish_failures_total{reason=\"publish\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_stream_that_misses_the_shadow_subject_stops_the_start_naming_it() {
    // The layout of earlier releases: one stream, `sms.outbound.>`.
    let nats = PrivateNats::start().await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "SMS_OUTBOUND".into(),
        subjects: vec!["sms.outbound.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let error = TestApp::start_failure(Options {
        args: vec![format!("--nats-url={}", nats.url())],
        ..Options::default()
    })
    .await;
    assert!(error.contains("nats (NATS_URL)"), "{error}");
    assert!(
        error.contains("SHADOW_SUBJECT \"shadow.sms.outbound.request\"")
            && error.contains("SMS_SHADOW"),
        "names the uncaptured subject and the stream to create: {error}"
    );
}

#[tokio::test]
async fn a_failing_shadow_lane_never_delays_live_events_and_its_rows_are_reaped() {
    let nats = PrivateNats::start().await;
    let app = on_defaults(&nats, &["--shadow-retention=2s", "--reaper-interval=200ms"]).await;
    // The shadow stream goes away (deleted, or its account out of storage):
    // every shadow publish now fails. (Releases before the fix never made
    // it: there the default layout alone failed every shadow publish.)
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let _ = js.delete_stream("SMS_SHADOW").await;
    assert!(
        js.stream_by_subject("shadow.sms.outbound.request")
            .await
            .is_err()
    );

    let mut worst = Duration::ZERO;
    let mut shadow_sent = 0;
    let started = Instant::now();
    let mut live_sent = 0;
    while started.elapsed() < Duration::from_secs(6) {
        for _ in 0..5 {
            send_shadow(&app, "shadow while its stream is gone").await;
            shadow_sent += 1;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let sent_at = Instant::now();
        let id = accepted_id(app.send(&send_body("live"), None).await).await;
        live_sent += 1;
        let seen = eventually(Duration::from_secs(40), || async {
            ids_in(&nats.url(), "SMS_OUTBOUND", "sms.outbound.request")
                .await
                .contains(&id)
                .then_some(())
        })
        .await;
        assert!(seen.is_some(), "live event {id} published");
        worst = worst.max(sent_at.elapsed());
    }
    assert!(
        app.metric("orchestrator_publish_failures_total{reason=\"no_stream\"}")
            .await
            >= 1.0,
        "the shadow publishes did fail, for want of a stream"
    );
    // `ids_in` reads with a fresh consumer, ~0.5 s of it idle waiting.
    assert!(
        worst < Duration::from_millis(1500),
        "a live event waited {worst:?} behind failing shadow events ({live_sent} live, {shadow_sent} shadow)"
    );
    let reaped = eventually(Duration::from_secs(10), || async {
        let n = app
            .metric("orchestrator_reaped_rows_total{table=\"shadow_outbox\"}")
            .await;
        (n >= f64::from(shadow_sent)).then_some(n)
    })
    .await;
    assert!(
        reaped.is_some(),
        "the {shadow_sent} unpublished shadow rows are reaped after SHADOW_RETENTION"
    );
}

#[tokio::test]
async fn a_nats_outage_at_start_up_only_delays_publishing() {
    let port = integration_tests::free_port();
    let app = TestApp::spawn(Options {
        args: vec![
            format!("--nats-url=nats://127.0.0.1:{port}"),
            "--nats-create-stream".into(),
        ],
        ..Options::default()
    })
    .await;
    let id = accepted_id(app.send(&send_body("before NATS is up"), None).await).await;
    let nats = PrivateNats::start_on(port).await;
    let published = eventually(Duration::from_secs(30), || async {
        ids_in(&nats.url(), "SMS_OUTBOUND", "sms.outbound.request")
            .await
            .contains(&id)
            .then_some(())
    })
    .await;
    assert!(published.is_some(), "published once NATS answered");
}
