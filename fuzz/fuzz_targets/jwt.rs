//! JWT header and claims parsing: `Authenticator::authenticate` with an
//! HS256 secret, fed (a) any bytes as the bearer token and (b) a token
//! whose header and claims are the fuzzer's JSON, correctly signed, so the
//! claims parsing past the signature is reached. Never panics; a token
//! that verifies carries the tenant it was sent with.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use orchestrator::auth::{AuthSettings, Authenticator};
use sha2::Sha256;

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";
const TENANT: &str = "acme";

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        runtime()
            .block_on(Authenticator::new(AuthSettings {
                hs256_secret: Some(SECRET.to_owned()),
                ..AuthSettings::default()
            }))
            .expect("authenticator")
    })
}

fn signed(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        // header JSON, a NUL, claims JSON.
        let (header, claims) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (&br#"{"alg":"HS256","typ":"JWT"}"#[..], rest),
        };
        signed(header, claims)
    };
    let mut headers = HeaderMap::new();
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return;
    };
    headers.insert(http::header::AUTHORIZATION, value);
    headers.insert("x-tenant-id", HeaderValue::from_static(TENANT));
    if let Ok(principal) = runtime().block_on(authenticator().authenticate(&headers)) {
        assert_eq!(principal.tenant.as_str(), TENANT);
    }
});
