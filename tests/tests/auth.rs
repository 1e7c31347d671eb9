//! Tenant defense in depth, through the real process: what a client sees
//! for each refusal, a JWKS-configured deployment with key rotation, and
//! the dev `token` command. The full attack matrix is unit-tested beside
//! the authenticator (`orchestrator/src/auth/tests.rs`).

use std::time::Duration;

use integration_tests::{Options, TestApp, binary, send_body};
use jwt_simple::prelude::*;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

async fn problem_type(r: reqwest::Response) -> String {
    r.json::<Value>().await.unwrap()["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:sms-orchestrator:problem:")
        .to_owned()
}

/// The legacy body of a refusal.
async fn legacy_body(r: reqwest::Response) -> Value {
    r.json::<Value>().await.unwrap()
}

#[tokio::test]
async fn a_missing_or_bad_token_is_a_401_and_counted() {
    let app = TestApp::embedded().await;
    let url = format!("{}/v1/sms/send", app.api);
    let no_token = app
        .http
        .post(&url)
        .header("X-Tenant-Id", &app.tenant)
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    // As the legacy answered: NestJS's default body, no challenge header.
    assert!(no_token.headers().get("www-authenticate").is_none());
    assert_eq!(
        legacy_body(no_token).await,
        json!({"message": "Unauthorized", "statusCode": 401})
    );
    // A client that asks for problem documents gets the RFC 6750 challenge.
    let asked = app
        .http
        .post(&url)
        .header("X-Tenant-Id", &app.tenant)
        .header("Accept", "application/problem+json")
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        asked.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_eq!(problem_type(asked).await, "invalid-token");

    let forged = app
        .http
        .post(&url)
        .header("X-Tenant-Id", &app.tenant)
        .bearer_auth(
            orchestrator::auth::mint_dev_token(
                "some-other-secret-that-is-long-enough-32",
                &app.tenant,
                Duration::from_secs(60),
            )
            .unwrap(),
        )
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let body = forged.text().await.unwrap();
    assert!(!body.contains("signature"), "no reason leaks: {body}");

    let metrics = app.metrics().await;
    let failures: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("orchestrator_auth_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failures, 3.0, "{metrics}");
}

#[tokio::test]
async fn a_token_for_one_tenant_cannot_act_as_another() {
    let app = TestApp::embedded().await;
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .bearer_auth(app.token_for("tenant-a"))
        .header("X-Tenant-Id", "tenant-b")
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        legacy_body(r).await,
        json!({"message": "Forbidden resource", "error": "Forbidden", "statusCode": 403})
    );
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .bearer_auth(app.token_for("tenant-a"))
        .header("X-Tenant-Id", "TENANT-A")
        .json(&send_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "case matters");
}

fn es256_token(key: &ES256KeyPair, tenant: &str) -> String {
    let mut custom = Map::new();
    custom.insert("tenant_id".into(), Value::from(tenant));
    key.sign(
        Claims::with_custom_claims(custom, jwt_simple::prelude::Duration::from_mins(5))
            .with_issuer("https://idp.example.test/"),
    )
    .unwrap()
}

#[tokio::test]
async fn a_jwks_deployment_accepts_rotated_keys_and_drops_removed_ones() {
    let old = ES256KeyPair::generate().with_key_id("old");
    let new = ES256KeyPair::generate().with_key_id("new");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let write = |keys: &[&ES256KeyPair]| {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| serde_json::from_str(&k.public_key().to_jwk()).unwrap())
            .collect();
        std::fs::write(&jwks, json!({ "keys": keys }).to_string()).unwrap();
    };
    write(&[&old]);
    let app = TestApp::spawn(Options {
        args: vec![
            format!("--jwt-jwks-file={}", jwks.display()),
            "--jwt-issuer=https://idp.example.test/".into(),
            "--jwt-jwks-refresh-interval=0s".into(),
        ],
        ..Options::default()
    })
    .await;
    let send = |token: String| {
        app.http
            .post(format!("{}/v1/sms/send", app.api))
            .bearer_auth(token)
            .header("X-Tenant-Id", &app.tenant)
            .json(&send_body("rotated"))
            .send()
    };
    assert_eq!(
        send(es256_token(&old, &app.tenant)).await.unwrap().status(),
        StatusCode::CREATED
    );

    // Rotation: the new key is published next to the old one; an unknown
    // kid makes the orchestrator re-read the set.
    write(&[&old, &new]);
    assert_eq!(
        send(es256_token(&new, &app.tenant)).await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        send(es256_token(&old, &app.tenant)).await.unwrap().status(),
        StatusCode::CREATED
    );

    // The old key is withdrawn; the next refresh (here, triggered by an
    // unknown kid) drops it.
    write(&[&new]);
    let stranger = ES256KeyPair::generate().with_key_id("stranger");
    assert_eq!(
        send(es256_token(&stranger, &app.tenant))
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(es256_token(&old, &app.tenant)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(es256_token(&new, &app.tenant)).await.unwrap().status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn the_token_command_refuses_outside_dev_mode() {
    let out = std::process::Command::new(binary("orchestrator"))
        .args(["token", "--tenant", "acme"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = std::process::Command::new(binary("orchestrator"))
        .args(["--dev", "token", "--tenant", "acme"])
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "a JWT");
}
