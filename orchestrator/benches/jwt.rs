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

    let es_token = es.sign(claims()).unwrap();
    let rsa_token = rsa.sign(claims()).unwrap();

    // A client reusing its token: after the first request, a hit in the
    // verified-token cache (time and key generation re-checked).
    let mut group = c.benchmark_group("authenticate_repeat_token");
    for (name, token) in [("ES256", &es_token), ("RS256", &rsa_token)] {
        let headers = request(token);
        runtime
            .block_on(auth.authenticate(&headers))
            .expect("the benchmark token verifies");
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(auth.authenticate(black_box(&headers)).await) })
        });
    }
    group.finish();

    // Every request with a token never seen before: the full signature
    // check. The pool is larger than the cache, so no iteration hits.
    let pool: Vec<HeaderMap> = (0..(2 * 10_000 + 7))
        .map(|i| request(&es.sign(claims().with_jwt_id(format!("j{i}"))).unwrap()))
        .collect();
    let mut next = 0usize;
    let mut group = c.benchmark_group("authenticate_first_use");
    group.bench_function("ES256", |b| {
        b.to_async(&runtime).iter(|| {
            next = (next + 1) % pool.len();
            let headers = &pool[next];
            async { black_box(auth.authenticate(black_box(headers)).await) }
        })
    });
    group.finish();

    // The floor: jwt-simple's verification alone, with the same checks, so
    // the step's own cost is the difference.
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from_strings(&[ISSUER])),
        allowed_audiences: Some(HashSet::from_strings(&[AUDIENCE])),
        time_tolerance: Some(Duration::from_secs(60)),
        ..VerificationOptions::default()
    };
    let es_public = es.public_key();
    let rsa_public = rsa.public_key();
    let mut group = c.benchmark_group("jwt_simple_verify_only");
    group.bench_function("ES256", |b| {
        b.iter(|| {
            es_public
                .verify_token::<Map<String, Value>>(black_box(&es_token), Some(options.clone()))
        })
    });
    group.bench_function("RS256", |b| {
        b.iter(|| {
            rsa_public
                .verify_token::<Map<String, Value>>(black_box(&rsa_token), Some(options.clone()))
        })
    });
    group.finish();
}

criterion_group!(benches, authenticate);
criterion_main!(benches);
