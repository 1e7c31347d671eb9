//! The attack matrix: each way a request can try to get past the step, and
//! the exact refusal it gets; plus the paths that must pass.

use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration as StdDuration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jwt_simple::prelude::*;
// jwt-simple's (coarsetime) Duration; `std::time::Duration` is `StdDuration`.
use jwt_simple::prelude::Duration;
use serde_json::{Map, Value, json};
use tempfile::NamedTempFile;

use super::*;

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "sms-orchestrator";
const TENANT: &str = "acme";
const HS256_SECRET: &str = "hs256-test-secret-0123456789abcdef";
const KONG_SECRET_HEADER: &str = "X-Kong-Upstream-Secret";
const KONG_SECRET: &str = "kong-request-transformer-secret-42";

/// The identity provider's keys. RSA generation is slow in debug builds, so
/// the keys are made once for the whole module.
struct Keys {
    rsa: RS256KeyPair,
    es: ES256KeyPair,
    ed: Ed25519KeyPair,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    rsa: RS256KeyPair::generate(2048)
        .expect("RSA key")
        .with_key_id("rsa-1"),
    es: ES256KeyPair::generate().with_key_id("es-1"),
    ed: Ed25519KeyPair::generate().with_key_id("ed-1"),
});

type TestClaims = JWTClaims<Map<String, Value>>;

/// Claims as a well-behaved identity provider issues them.
fn claims(tenant: &str) -> TestClaims {
    let mut custom = Map::new();
    custom.insert("tenant_id".to_owned(), Value::from(tenant));
    Claims::with_custom_claims(custom, Duration::from_mins(5))
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .with_subject("client-42")
}

fn write_jwks(path: &Path, jwks: &[String]) {
    let keys: Vec<Value> = jwks
        .iter()
        .map(|jwk| serde_json::from_str(jwk).unwrap())
        .collect();
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
}

fn jwks_file(jwks: &[String]) -> NamedTempFile {
    let file = NamedTempFile::new().unwrap();
    write_jwks(file.path(), jwks);
    file
}

fn request(tenant: &str, token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant-id", HeaderValue::from_str(tenant).unwrap());
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn b64(value: &Value) -> String {
    Base64UrlSafeNoPadding::encode_to_string(value.to_string()).unwrap()
}

/// An authenticator over the three public keys, with `iss` and `aud`
/// required, plus its JWKS file (kept alive with it).
struct Fixture {
    auth: Authenticator,
    _jwks: NamedTempFile,
}

impl Fixture {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(adjust: impl FnOnce(&mut AuthSettings)) -> Self {
        let jwks = jwks_file(&[
            KEYS.rsa.public_key().to_jwk(),
            KEYS.es.public_key().to_jwk(),
            KEYS.ed.public_key().to_jwk(),
        ]);
        let mut settings = AuthSettings {
            jwks_file: Some(jwks.path().to_owned()),
            issuer: Some(ISSUER.to_owned()),
            audience: Some(AUDIENCE.to_owned()),
            ..AuthSettings::default()
        };
        adjust(&mut settings);
        let auth = Authenticator::new(settings).await.expect("authenticator");
        Fixture { auth, _jwks: jwks }
    }

    async fn check(&self, tenant: &str, token: &str) -> Result<Principal, AuthError> {
        self.auth.authenticate(&request(tenant, token)).await
    }
}

fn with_hs256(settings: &mut AuthSettings) {
    settings.hs256_secret = Some(HS256_SECRET.to_owned());
}

fn now() -> UnixTimeStamp {
    Clock::now_since_epoch()
}

// ---- tokens that must pass -------------------------------------------------

#[tokio::test]
async fn a_valid_rs256_token_passes() {
    let fixture = Fixture::new().await;
    let token = KEYS.rsa.sign(claims(TENANT)).unwrap();
    let principal = fixture.check(TENANT, &token).await.unwrap();
    assert_eq!(principal.tenant.as_str(), TENANT);
    assert_eq!(principal.subject.as_deref(), Some("client-42"));
    assert_eq!(principal.method, AuthMethod::Jwt);
}

#[tokio::test]
async fn a_valid_es256_token_passes() {
    let fixture = Fixture::new().await;
    let token = KEYS.es.sign(claims(TENANT)).unwrap();
    let principal = fixture.check(TENANT, &token).await.unwrap();
    assert_eq!(principal.tenant.as_str(), TENANT);
}

#[tokio::test]
async fn a_valid_eddsa_token_passes() {
    let fixture = Fixture::new().await;
    let token = KEYS.ed.sign(claims(TENANT)).unwrap();
    let principal = fixture.check(TENANT, &token).await.unwrap();
    assert_eq!(principal.tenant.as_str(), TENANT);
}

#[tokio::test]
async fn a_valid_hs256_token_passes_when_a_secret_is_configured() {
    let fixture = Fixture::with(with_hs256).await;
    let token = HS256Key::from_bytes(HS256_SECRET.as_bytes())
        .authenticate(claims(TENANT))
        .unwrap();
    let principal = fixture.check(TENANT, &token).await.unwrap();
    assert_eq!(principal.tenant.as_str(), TENANT);
}

#[tokio::test]
async fn kong_consumer_headers_are_kept_for_audit() {
    let fixture = Fixture::new().await;
    let token = KEYS.es.sign(claims(TENANT)).unwrap();
    let mut headers = request(TENANT, &token);
    headers.insert("x-consumer-id", HeaderValue::from_static("5f0c-consumer"));
    headers.insert("x-consumer-username", HeaderValue::from_static("acme-bank"));
    headers.insert("x-credential-identifier", HeaderValue::from_static(ISSUER));
    let principal = fixture.auth.authenticate(&headers).await.unwrap();
    assert_eq!(
        principal.consumer,
        KongConsumer {
            id: Some("5f0c-consumer".to_owned()),
            username: Some("acme-bank".to_owned()),
            custom_id: None,
            credential_identifier: Some(ISSUER.to_owned()),
            anonymous: false,
        }
    );
}

#[tokio::test]
async fn the_tenant_claim_name_is_configurable() {
    let fixture = Fixture::with(|s| s.tenant_claim = "https://sms.example/tenant".to_owned()).await;
    let mut custom = Map::new();
    custom.insert("https://sms.example/tenant".to_owned(), Value::from(TENANT));
    let token = KEYS
        .es
        .sign(
            Claims::with_custom_claims(custom, Duration::from_mins(5))
                .with_issuer(ISSUER)
                .with_audience(AUDIENCE),
        )
        .unwrap();
    assert!(fixture.check(TENANT, &token).await.is_ok());

    let fixture = Fixture::with(|s| s.tenant_claim = "sub".to_owned()).await;
    let token = KEYS.es.sign(claims("globex").with_subject(TENANT)).unwrap();
    assert!(fixture.check(TENANT, &token).await.is_ok());
}

// ---- algorithm and key confusion -------------------------------------------

#[tokio::test]
async fn alg_none_is_refused() {
    let fixture = Fixture::new().await;
    let payload = serde_json::to_value(claims(TENANT)).unwrap();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "JWT", "kid": "rsa-1" });
        let token = format!("{}.{}.", b64(&header), b64(&payload));
        assert_eq!(
            fixture.check(TENANT, &token).await,
            Err(AuthError::InvalidToken("alg_not_allowed")),
            "alg {alg}"
        );
    }
}

/// HS256 tokens "signed" with the RSA public key as the HMAC secret: the
/// public key is public, so anyone can make these.
fn hs256_tokens_keyed_with_the_rsa_public_key() -> Vec<String> {
    let public = KEYS.rsa.public_key();
    [
        public.to_pem().unwrap().into_bytes(),
        public.to_der().unwrap(),
        public.to_jwk().into_bytes(),
    ]
    .iter()
    .map(|secret| {
        HS256Key::from_bytes(secret)
            .with_key_id("rsa-1")
            .authenticate(claims(TENANT))
            .unwrap()
    })
    .collect()
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused_when_hs256_is_off() {
    let fixture = Fixture::new().await;
    for token in hs256_tokens_keyed_with_the_rsa_public_key() {
        assert_eq!(
            fixture.check(TENANT, &token).await,
            Err(AuthError::InvalidToken("alg_not_allowed"))
        );
    }
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused_when_another_secret_is_configured() {
    let fixture = Fixture::with(with_hs256).await;
    for token in hs256_tokens_keyed_with_the_rsa_public_key() {
        assert_eq!(
            fixture.check(TENANT, &token).await,
            Err(AuthError::InvalidToken("bad_signature"))
        );
    }
}

#[tokio::test]
async fn a_key_only_verifies_its_own_algorithm() {
    let fixture = Fixture::new().await;
    // An ES256 token that names the RSA key, and an EdDSA token that names
    // the P-256 key.
    let es_naming_rsa = ES256KeyPair::generate()
        .with_key_id("rsa-1")
        .sign(claims(TENANT))
        .unwrap();
    let ed_naming_es = Ed25519KeyPair::generate()
        .with_key_id("es-1")
        .sign(claims(TENANT))
        .unwrap();
    for token in [es_naming_rsa, ed_naming_es] {
        assert_eq!(
            fixture.check(TENANT, &token).await,
            Err(AuthError::InvalidToken("alg_key_mismatch"))
        );
    }
}

#[tokio::test]
async fn other_algorithms_are_refused_even_with_a_known_kid() {
    let fixture = Fixture::new().await;
    let token = RS384KeyPair::from_der(&KEYS.rsa.to_der().unwrap())
        .unwrap()
        .with_key_id("rsa-1")
        .sign(claims(TENANT))
        .unwrap();
    assert_eq!(
        fixture.check(TENANT, &token).await,
        Err(AuthError::InvalidToken("alg_not_allowed"))
    );
}

// ---- signature and kid -----------------------------------------------------

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let fixture = Fixture::new().await;
    let token = ES256KeyPair::generate()
        .with_key_id("not-in-the-jwks")
        .sign(claims(TENANT))
        .unwrap();
    assert_eq!(
        fixture.check(TENANT, &token).await,
        Err(AuthError::InvalidToken("unknown_kid"))
    );
}

#[tokio::test]
async fn an_asymmetric_token_without_kid_is_refused() {
    let fixture = Fixture::new().await;
    let token = ES256KeyPair::generate().sign(claims(TENANT)).unwrap();
    assert_eq!(
        fixture.check(TENANT, &token).await,
        Err(AuthError::InvalidToken("missing_kid"))
    );
}

#[tokio::test]
async fn another_key_claiming_a_known_kid_is_refused() {
    let fixture = Fixture::new().await;
    let token = ES256KeyPair::generate()
        .with_key_id("es-1")
        .sign(claims(TENANT))
        .unwrap();
    assert_eq!(
        fixture.check(TENANT, &token).await,
        Err(AuthError::InvalidToken("bad_signature"))
    );
}

#[tokio::test]
async fn a_tampered_payload_with_the_original_signature_is_refused() {
    let fixture = Fixture::new().await;
    let forged = serde_json::to_value(claims("victim")).unwrap();
    for token in [
        KEYS.rsa.sign(claims(TENANT)).unwrap(),
        KEYS.es.sign(claims(TENANT)).unwrap(),
        KEYS.ed.sign(claims(TENANT)).unwrap(),
    ] {
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
        assert_eq!(
            fixture.check("victim", &tampered).await,
            Err(AuthError::InvalidToken("bad_signature"))
        );
    }
}

#[tokio::test]
async fn garbage_is_malformed() {
    let fixture = Fixture::new().await;
    for token in ["abc", "a.b.c", "e30.e30.", "x".repeat(20_000).as_str()] {
        assert_eq!(
            fixture.check(TENANT, token).await,
            Err(AuthError::InvalidToken("malformed")),
            "{token:.20}"
        );
    }
}

// ---- time claims -----------------------------------------------------------

#[tokio::test]
async fn an_expired_token_is_refused() {
    let fixture = Fixture::new().await;
    let mut expired = claims(TENANT);
    expired.issued_at = Some(now() - Duration::from_mins(10));
    expired.invalid_before = expired.issued_at;
    expired.expires_at = Some(now() - Duration::from_mins(2));
    let token = KEYS.es.sign(expired).unwrap();
    assert_eq!(
        fixture.check(TENANT, &token).await,
        Err(AuthError::InvalidToken("expired"))
    );
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let fixture = Fixture::new().await;
    let mut forever = claims(TENANT);
    forever.expires_at = None;
    let token = KEYS.es.sign(forever).unwrap();
    assert_eq!(
        fixture.check(TENANT, &token).await,
        Err(AuthError::InvalidToken("missing_exp"))
    );
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let fixture = Fixture::new().await;
    let mut early = claims(TENANT);
    early.invalid_before = Some(now() + Duration::from_mins(10));
    let token = KEYS.es.sign(early).unwrap();
    assert_eq!(
        fixture.check(TENANT, &token).await,
        Err(AuthError::InvalidToken("not_yet_valid"))
    );
}

#[tokio::test]
async fn the_leeway_is_honoured() {
    let mut just_expired = claims(TENANT);
    just_expired.expires_at = Some(now() - Duration::from_secs(30));
    let just_expired = KEYS.es.sign(just_expired).unwrap();
    let mut almost_valid = claims(TENANT);
    almost_valid.invalid_before = Some(now() + Duration::from_secs(30));
    let almost_valid = KEYS.es.sign(almost_valid).unwrap();

    let lenient = Fixture::new().await; // the default 60 s
    assert!(lenient.check(TENANT, &just_expired).await.is_ok());
    assert!(lenient.check(TENANT, &almost_valid).await.is_ok());

    let strict = Fixture::with(|s| s.leeway = StdDuration::ZERO).await;
    assert_eq!(
        strict.check(TENANT, &just_expired).await,
        Err(AuthError::InvalidToken("expired"))
    );
    assert_eq!(
        strict.check(TENANT, &almost_valid).await,
        Err(AuthError::InvalidToken("not_yet_valid"))
    );
}

// ---- issuer and audience ---------------------------------------------------

#[tokio::test]
async fn a_wrong_or_missing_issuer_is_refused() {
    let fixture = Fixture::new().await;
    let mut missing = claims(TENANT);
    missing.issuer = None;
    for claims in [claims(TENANT).with_issuer("https://evil.example/"), missing] {
        let token = KEYS.es.sign(claims).unwrap();
        assert_eq!(
            fixture.check(TENANT, &token).await,
            Err(AuthError::InvalidToken("wrong_issuer"))
        );
    }
}

#[tokio::test]
async fn a_wrong_or_missing_audience_is_refused() {
    let fixture = Fixture::new().await;
    let mut missing = claims(TENANT);
    missing.audiences = None;
    for claims in [claims(TENANT).with_audience("billing-api"), missing] {
        let token = KEYS.es.sign(claims).unwrap();
        assert_eq!(
            fixture.check(TENANT, &token).await,
            Err(AuthError::InvalidToken("wrong_audience"))
        );
    }
}

// ---- tenant ------------------------------------------------------------------

#[tokio::test]
async fn a_token_without_the_tenant_claim_is_refused() {
    let fixture = Fixture::new().await;
    let mut not_a_string = claims(TENANT);
    not_a_string
        .custom
        .insert("tenant_id".to_owned(), json!(["acme"]));
    let without = Claims::with_custom_claims(Map::new(), Duration::from_mins(5))
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE);
    for claims in [without, not_a_string] {
        let token = KEYS.es.sign(claims).unwrap();
        assert_eq!(
            fixture.check(TENANT, &token).await,
            Err(AuthError::InvalidToken("tenant_claim_missing"))
        );
    }
}

#[tokio::test]
async fn a_claim_for_another_tenant_is_a_mismatch() {
    let fixture = Fixture::new().await;
    let token = KEYS.rsa.sign(claims(TENANT)).unwrap();
    assert_eq!(
        fixture.check("globex", &token).await,
        Err(AuthError::TenantMismatch)
    );
}

#[tokio::test]
async fn a_tenant_header_differing_only_in_case_is_a_mismatch() {
    let fixture = Fixture::new().await;
    let token = KEYS.es.sign(claims("acme")).unwrap();
    for header in ["ACME", "Acme"] {
        assert_eq!(
            fixture.check(header, &token).await,
            Err(AuthError::TenantMismatch)
        );
    }
}

#[tokio::test]
async fn a_missing_tenant_header_is_refused() {
    let fixture = Fixture::new().await;
    let token = KEYS.es.sign(claims(TENANT)).unwrap();
    let mut headers = request(TENANT, &token);
    headers.remove("x-tenant-id");
    assert_eq!(
        fixture.auth.authenticate(&headers).await,
        Err(AuthError::TenantHeaderMissing)
    );
}

#[tokio::test]
async fn the_credential_is_checked_before_the_tenant_header() {
    // The legacy's guard ran first: no token and no tenant is a 401, and so
    // is a bad token without a tenant.
    let fixture = Fixture::new().await;
    let none = HeaderMap::new();
    assert_eq!(
        fixture.auth.authenticate(&none).await,
        Err(AuthError::MissingToken)
    );
    let mut bad = HeaderMap::new();
    bad.insert(
        "authorization",
        HeaderValue::from_static("Bearer not.a.token"),
    );
    assert!(matches!(
        fixture.auth.authenticate(&bad).await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn an_invalid_or_repeated_tenant_header_is_refused() {
    let fixture = Fixture::new().await;
    let token = KEYS.es.sign(claims(TENANT)).unwrap();
    let invalid = fixture.check("acme bank", &token).await;
    assert!(
        matches!(invalid, Err(AuthError::TenantHeaderInvalid(_))),
        "{invalid:?}"
    );

    let mut headers = request(TENANT, &token);
    headers.append("x-tenant-id", HeaderValue::from_static("globex"));
    let repeated = fixture.auth.authenticate(&headers).await;
    assert!(
        matches!(repeated, Err(AuthError::TenantHeaderInvalid(_))),
        "{repeated:?}"
    );
}

// ---- the Authorization header ----------------------------------------------

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let fixture = Fixture::new().await;
    let token = KEYS.es.sign(claims(TENANT)).unwrap();
    let mut headers = request(TENANT, &token);
    headers.append(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    assert_eq!(
        fixture.auth.authenticate(&headers).await,
        Err(AuthError::InvalidToken("duplicate_authorization"))
    );
}

#[tokio::test]
async fn a_non_bearer_authorization_is_refused() {
    let fixture = Fixture::new().await;
    let mut headers = request(TENANT, "unused");
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_static("Basic YWNtZTpwdw=="),
    );
    assert_eq!(
        fixture.auth.authenticate(&headers).await,
        Err(AuthError::InvalidToken("not_bearer"))
    );
}

#[tokio::test]
async fn no_authorization_is_a_missing_token() {
    let fixture = Fixture::new().await;
    let mut headers = request(TENANT, "unused");
    headers.remove(AUTHORIZATION);
    assert_eq!(
        fixture.auth.authenticate(&headers).await,
        Err(AuthError::MissingToken)
    );
}

// ---- key rotation ------------------------------------------------------------

#[tokio::test]
async fn key_rotation_with_a_jwks_file() {
    let old = ES256KeyPair::generate().with_key_id("2025-old");
    let current = Ed25519KeyPair::generate().with_key_id("2026-current");
    let next = ES256KeyPair::generate().with_key_id("2026-next");
    let file = jwks_file(&[old.public_key().to_jwk(), current.public_key().to_jwk()]);
    let auth = Authenticator::new(AuthSettings {
        jwks_file: Some(file.path().to_owned()),
        jwks_refresh_min_interval: StdDuration::ZERO,
        ..AuthSettings::default()
    })
    .await
    .unwrap();
    let check = |token: String| {
        let auth = auth.clone();
        async move { auth.authenticate(&request(TENANT, &token)).await }
    };
    let old_token = old.sign(claims(TENANT)).unwrap();
    let current_token = current.sign(claims(TENANT)).unwrap();
    let next_token = next.sign(claims(TENANT)).unwrap();

    // Two keys at once: tokens from both pass.
    assert!(check(old_token.clone()).await.is_ok());
    assert!(check(current_token.clone()).await.is_ok());

    // The old key leaves the file; after a refresh its tokens are refused.
    write_jwks(file.path(), &[current.public_key().to_jwk()]);
    auth.refresh_jwks().await.unwrap();
    assert_eq!(
        check(old_token.clone()).await,
        Err(AuthError::InvalidToken("unknown_kid"))
    );
    assert!(check(current_token.clone()).await.is_ok());

    // A new key is picked up by the first token that names it.
    write_jwks(
        file.path(),
        &[current.public_key().to_jwk(), next.public_key().to_jwk()],
    );
    assert!(check(next_token).await.is_ok());
    assert!(check(current_token).await.is_ok());
    assert_eq!(
        check(old_token).await,
        Err(AuthError::InvalidToken("unknown_kid"))
    );
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_reloads_at_most_once_per_interval() {
    let first = ES256KeyPair::generate().with_key_id("k1");
    let second = ES256KeyPair::generate().with_key_id("k2");
    let file = jwks_file(&[first.public_key().to_jwk()]);
    let auth = Authenticator::new(AuthSettings {
        jwks_file: Some(file.path().to_owned()),
        ..AuthSettings::default() // 30 s
    })
    .await
    .unwrap();
    let token = second.sign(claims(TENANT)).unwrap();

    write_jwks(
        file.path(),
        &[first.public_key().to_jwk(), second.public_key().to_jwk()],
    );
    // Loaded just now: no reload yet.
    assert_eq!(
        auth.authenticate(&request(TENANT, &token)).await,
        Err(AuthError::InvalidToken("unknown_kid"))
    );
    tokio::time::advance(StdDuration::from_secs(31)).await;
    assert!(auth.authenticate(&request(TENANT, &token)).await.is_ok());

    // Once the interval has passed, a made-up kid spends the reload, and a
    // real new key then waits out the interval.
    tokio::time::advance(StdDuration::from_secs(31)).await;
    let made_up = ES256KeyPair::generate()
        .with_key_id("k3")
        .sign(claims(TENANT))
        .unwrap();
    assert_eq!(
        auth.authenticate(&request(TENANT, &made_up)).await,
        Err(AuthError::InvalidToken("unknown_kid"))
    );
    let third = ES256KeyPair::generate().with_key_id("k4");
    write_jwks(
        file.path(),
        &[second.public_key().to_jwk(), third.public_key().to_jwk()],
    );
    let third_token = third.sign(claims(TENANT)).unwrap();
    assert_eq!(
        auth.authenticate(&request(TENANT, &third_token)).await,
        Err(AuthError::InvalidToken("unknown_kid"))
    );
    tokio::time::advance(StdDuration::from_secs(31)).await;
    assert!(
        auth.authenticate(&request(TENANT, &third_token))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_failed_reload_keeps_the_cached_keys() {
    let key = ES256KeyPair::generate().with_key_id("k1");
    let file = jwks_file(&[key.public_key().to_jwk()]);
    let auth = Authenticator::new(AuthSettings {
        jwks_file: Some(file.path().to_owned()),
        jwks_refresh_min_interval: StdDuration::ZERO,
        ..AuthSettings::default()
    })
    .await
    .unwrap();
    std::fs::write(file.path(), "{\"keys\": [").unwrap();
    assert!(auth.refresh_jwks().await.is_err());
    let token = key.sign(claims(TENANT)).unwrap();
    assert!(auth.authenticate(&request(TENANT, &token)).await.is_ok());
}

#[tokio::test]
async fn keys_are_fetched_from_a_jwks_url() {
    let first = ES256KeyPair::generate().with_key_id("url-1");
    let second = Ed25519KeyPair::generate().with_key_id("url-2");
    let served = Arc::new(Mutex::new(
        json!({ "keys": [serde_json::from_str::<Value>(&first.public_key().to_jwk()).unwrap()] })
            .to_string(),
    ));
    let body = Arc::clone(&served);
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let body = body.lock().unwrap().clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let auth = Authenticator::new(AuthSettings {
        jwks_url: Some(format!("http://{addr}/.well-known/jwks.json")),
        jwks_refresh_min_interval: StdDuration::ZERO,
        ..AuthSettings::default()
    })
    .await
    .unwrap();
    let first_token = first.sign(claims(TENANT)).unwrap();
    assert!(
        auth.authenticate(&request(TENANT, &first_token))
            .await
            .is_ok()
    );

    *served.lock().unwrap() =
        json!({ "keys": [serde_json::from_str::<Value>(&second.public_key().to_jwk()).unwrap()] })
            .to_string();
    let second_token = second.sign(claims(TENANT)).unwrap();
    assert!(
        auth.authenticate(&request(TENANT, &second_token))
            .await
            .is_ok()
    );
    assert_eq!(
        auth.authenticate(&request(TENANT, &first_token)).await,
        Err(AuthError::InvalidToken("unknown_kid"))
    );
}

// ---- Kong key-auth mode ------------------------------------------------------

fn key_auth(settings: &mut AuthSettings) {
    settings.key_auth = Some(KeyAuthSettings {
        secret_header: KONG_SECRET_HEADER.to_owned(),
        secret: KONG_SECRET.to_owned(),
    });
}

/// A request as Kong forwards it after key-auth: consumer headers, no
/// `Authorization`, and the secret if `secret` is given.
fn kong_request(tenant: &str, custom_id: &str, secret: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant-id", HeaderValue::from_str(tenant).unwrap());
    headers.insert("x-consumer-id", HeaderValue::from_static("9a1e-consumer"));
    headers.insert("x-consumer-username", HeaderValue::from_static("acme-bank"));
    headers.insert(
        "x-consumer-custom-id",
        HeaderValue::from_str(custom_id).unwrap(),
    );
    headers.insert(
        "x-credential-identifier",
        HeaderValue::from_static("4d2c-credential"),
    );
    if let Some(secret) = secret {
        headers.insert(KONG_SECRET_HEADER, HeaderValue::from_str(secret).unwrap());
    }
    headers
}

#[tokio::test]
async fn key_auth_with_the_secret_passes() {
    let fixture = Fixture::with(key_auth).await;
    let principal = fixture
        .auth
        .authenticate(&kong_request(TENANT, TENANT, Some(KONG_SECRET)))
        .await
        .unwrap();
    assert_eq!(principal.tenant.as_str(), TENANT);
    assert_eq!(principal.method, AuthMethod::KongKeyAuth);
    assert_eq!(principal.subject, None);
    assert_eq!(principal.consumer.custom_id.as_deref(), Some(TENANT));
    assert_eq!(
        principal.consumer.credential_identifier.as_deref(),
        Some("4d2c-credential")
    );
}

#[tokio::test]
async fn key_auth_without_or_with_a_wrong_secret_is_refused() {
    let fixture = Fixture::with(key_auth).await;
    let almost = &KONG_SECRET[..KONG_SECRET.len() - 1];
    for secret in [
        None,
        Some(""),
        Some(almost),
        Some("kong-request-transformer-secret-43"),
    ] {
        assert_eq!(
            fixture
                .auth
                .authenticate(&kong_request(TENANT, TENANT, secret))
                .await,
            Err(AuthError::InvalidToken("key_auth_secret")),
            "{secret:?}"
        );
    }
}

#[tokio::test]
async fn key_auth_custom_id_must_equal_the_tenant_header() {
    let fixture = Fixture::with(key_auth).await;
    assert_eq!(
        fixture
            .auth
            .authenticate(&kong_request("globex", TENANT, Some(KONG_SECRET)))
            .await,
        Err(AuthError::TenantMismatch)
    );
}

#[tokio::test]
async fn key_auth_refuses_kongs_anonymous_consumer_and_a_missing_custom_id() {
    let fixture = Fixture::with(key_auth).await;
    let mut anonymous = kong_request(TENANT, TENANT, Some(KONG_SECRET));
    anonymous.insert("x-anonymous-consumer", HeaderValue::from_static("true"));
    let mut without_custom_id = kong_request(TENANT, TENANT, Some(KONG_SECRET));
    without_custom_id.remove("x-consumer-custom-id");
    for headers in [anonymous, without_custom_id] {
        assert_eq!(
            fixture.auth.authenticate(&headers).await,
            Err(AuthError::InvalidToken("key_auth_consumer"))
        );
    }
}

#[tokio::test]
async fn key_auth_is_off_by_default() {
    let fixture = Fixture::new().await;
    assert_eq!(
        fixture
            .auth
            .authenticate(&kong_request(TENANT, TENANT, Some(KONG_SECRET)))
            .await,
        Err(AuthError::MissingToken)
    );
}

#[tokio::test]
async fn key_auth_mode_still_verifies_a_bearer_token_when_one_is_sent() {
    let fixture = Fixture::with(key_auth).await;
    let mut headers = kong_request(TENANT, TENANT, Some(KONG_SECRET));
    headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
    assert_eq!(
        fixture.auth.authenticate(&headers).await,
        Err(AuthError::InvalidToken("malformed"))
    );
    let token = KEYS.es.sign(claims(TENANT)).unwrap();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let principal = fixture.auth.authenticate(&headers).await.unwrap();
    assert_eq!(principal.method, AuthMethod::Jwt);
}

// ---- dev tokens and settings -------------------------------------------------

#[tokio::test]
async fn mint_dev_token_output_verifies() {
    let auth = Authenticator::new(AuthSettings {
        hs256_secret: Some(HS256_SECRET.to_owned()),
        ..AuthSettings::default()
    })
    .await
    .unwrap();
    let token = mint_dev_token(HS256_SECRET, TENANT, StdDuration::from_secs(600)).unwrap();
    let principal = auth.authenticate(&request(TENANT, &token)).await.unwrap();
    assert_eq!(principal.tenant.as_str(), TENANT);
    assert_eq!(principal.subject.as_deref(), Some("dev"));
    assert_eq!(
        auth.authenticate(&request("globex", &token)).await,
        Err(AuthError::TenantMismatch)
    );

    let metadata = Token::decode_metadata(&token).unwrap();
    assert_eq!(metadata.algorithm(), "HS256");
}

#[test]
fn mint_dev_token_refuses_short_secrets_and_invalid_tenants() {
    let ttl = StdDuration::from_secs(60);
    assert!(mint_dev_token("short", TENANT, ttl).is_err());
    assert!(mint_dev_token(HS256_SECRET, "acme bank", ttl).is_err());
    assert!(mint_dev_token(HS256_SECRET, TENANT, StdDuration::ZERO).is_err());
}

#[tokio::test]
async fn inconsistent_settings_are_refused_at_start() {
    let jwks = jwks_file(&[KEYS.es.public_key().to_jwk()]);
    let path = jwks.path().to_owned();
    let cases: Vec<(&str, AuthSettings)> = vec![
        ("nothing configured", AuthSettings::default()),
        (
            "file and url",
            AuthSettings {
                jwks_file: Some(path.clone()),
                jwks_url: Some("http://idp.internal/jwks".to_owned()),
                ..AuthSettings::default()
            },
        ),
        (
            "https url that does not answer",
            AuthSettings {
                jwks_url: Some("https://idp.example/jwks".to_owned()),
                ..AuthSettings::default()
            },
        ),
        (
            "missing file",
            AuthSettings {
                jwks_file: Some(path.with_extension("missing")),
                ..AuthSettings::default()
            },
        ),
        (
            "short hs256 secret",
            AuthSettings {
                hs256_secret: Some("secret".to_owned()),
                ..AuthSettings::default()
            },
        ),
        (
            "leeway of ten minutes",
            AuthSettings {
                jwks_file: Some(path.clone()),
                leeway: StdDuration::from_secs(600),
                ..AuthSettings::default()
            },
        ),
        (
            "empty tenant claim",
            AuthSettings {
                jwks_file: Some(path.clone()),
                tenant_claim: String::new(),
                ..AuthSettings::default()
            },
        ),
        (
            "short key-auth secret",
            AuthSettings {
                key_auth: Some(KeyAuthSettings {
                    secret_header: KONG_SECRET_HEADER.to_owned(),
                    secret: "short".to_owned(),
                }),
                ..AuthSettings::default()
            },
        ),
    ];
    for (case, settings) in cases {
        assert!(Authenticator::new(settings).await.is_err(), "{case}");
    }

    let empty = jwks_file(&[]);
    let err = Authenticator::new(AuthSettings {
        jwks_file: Some(empty.path().to_owned()),
        ..AuthSettings::default()
    })
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("no usable"), "{err:#}");
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let settings = AuthSettings {
        jwks_url: Some(
            "http://svc:url-password@idp.internal/jwks?access_token=url-token".to_owned(),
        ),
        hs256_secret: Some(HS256_SECRET.to_owned()),
        key_auth: Some(KeyAuthSettings {
            secret_header: KONG_SECRET_HEADER.to_owned(),
            secret: KONG_SECRET.to_owned(),
        }),
        ..AuthSettings::default()
    };
    let shown = format!("{settings:?}");
    for secret in [HS256_SECRET, KONG_SECRET, "url-password", "url-token"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("idp.internal"), "{shown}");

    let fixture = Fixture::with(|s| {
        with_hs256(s);
        key_auth(s);
    })
    .await;
    let shown = format!("{:?}", fixture.auth);
    for secret in [HS256_SECRET, KONG_SECRET] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("rsa-1"), "{shown}");
}
