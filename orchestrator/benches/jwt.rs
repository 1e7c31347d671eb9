//! Cost of the authentication step per request: header parsing, JWKS lookup
//! by `kid`, signature and claim checks, tenant comparison.
//!
//! `cargo bench -p orchestrator --bench jwt`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jwt_simple::prelude::*;
use orchestrator::auth::{AuthSettings, Authenticator};
use serde_json::{Map, Value, json};

const TENANT: &str = "acme";
const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "sms-orchestrator";

fn claims() -> JWTClaims<Map<String, Value>> {
    let mut custom = Map::new();
    custom.insert("tenant_id".to_owned(), Value::from(TENANT));
    Claims::with_custom_claims(custom, Duration::from_hours(1))
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_subject("bench")
}

fn request(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant-id", HeaderValue::from_static(TENANT));
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn authenticate(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rsa = RS256KeyPair::generate(2048).unwrap().with_key_id("rsa-1");
    let es = ES256KeyPair::generate().with_key_id("es-1");
    let jwks = tempfile::NamedTempFile::new().unwrap();
    let keys: Vec<Value> = [rsa.public_key().to_jwk(), es.public_key().to_jwk()]
        .iter()
        .map(|jwk| serde_json::from_str(jwk).unwrap())
        .collect();
    std::fs::write(jwks.path(), json!({ "keys": keys }).to_string()).unwrap();
    let auth = runtime
        .block_on(Authenticator::new(AuthSettings {
            jwks_file: Some(jwks.path().to_owned()),
            issuer: Some(ISSUER.to_owned()),
            audience: Some(AUDIENCE.to_owned()),
            ..AuthSettings::default()
        }))
        .unwrap();

    let mut group = c.benchmark_group("authenticate");
    for (name, token) in [
        ("ES256", es.sign(claims()).unwrap()),
        ("RS256", rsa.sign(claims()).unwrap()),
    ] {
        let headers = request(&token);
        runtime
            .block_on(auth.authenticate(&headers))
            .expect("the benchmark token verifies");
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(auth.authenticate(black_box(&headers)).await) })
        });
    }
    group.finish();
}

criterion_group!(benches, authenticate);
criterion_main!(benches);
