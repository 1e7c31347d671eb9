//! The library never panics on input: random bytes, mangled JSON, broken
//! captures, odd rules and text go through every entry point. (The
//! reliability work fuzzes this further; this is the always-on smoke test.)

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use compare::capture::{self, CaptureFormat};
use compare::{Differ, Exchange, RecordedRequest, RecordedResponse, Redactor, Rules};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rand::Rng;
use rand::seq::IndexedRandom;

const SEEDS: &[&str] = &[
    r#"{"id":"507f1f77bcf86cd799439011","to":"+447700900123","items":[1,2,{"a":null}],"created_at":"2026-05-01T12:00:00Z"}"#,
    r#"[{"statusCode":400,"message":["bad"],"error":"Bad Request"}]"#,
    r#"{"type":"urn:x","status":"400","title":"t","nested":{"deep":[[[[[]]]]]}}"#,
    "1 abc 1700000000000000000 0\nPOST /v1/sms/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    r#"{"log":{"entries":[{"request":{"method":"GET","url":"http://x/y","headers":[]}}]}}"#,
    r#"{"schema_version":1,"request":{"method":"POST","path":"/a","body_base64":"!!"}}"#,
    "",
];

/// A seed with random bytes flipped, cut or repeated.
fn mangle(rng: &mut impl Rng, seed: &str) -> Vec<u8> {
    let mut bytes = seed.as_bytes().to_vec();
    for _ in 0..rng.random_range(0..6) {
        match rng.random_range(0..4) {
            0 if !bytes.is_empty() => {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            1 if !bytes.is_empty() => {
                let i = rng.random_range(0..bytes.len());
                bytes.truncate(i);
            }
            2 => {
                let extra: Vec<u8> = (0..rng.random_range(0..16)).map(|_| rng.random()).collect();
                bytes.extend(extra);
            }
            _ => bytes.extend_from_slice(b"\"}]{[:,\\u12"),
        }
    }
    bytes
}

fn random_input(rng: &mut impl Rng) -> Vec<u8> {
    let seed = SEEDS[rng.random_range(0..SEEDS.len())];
    mangle(rng, seed)
}

fn response(rng: &mut impl Rng, body: Vec<u8>) -> RecordedResponse {
    let mut headers = HeaderMap::new();
    let content_type = *[
        "application/json",
        "application/problem+json",
        "text/plain",
        "APPLICATION/JSON; x=y",
        "",
    ]
    .choose(rng)
    .unwrap_or(&"");
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert("content-type", value);
    }
    RecordedResponse {
        status: StatusCode::from_u16(
            *[200u16, 201, 202, 400, 422, 500]
                .choose(rng)
                .unwrap_or(&200),
        )
        .unwrap_or(StatusCode::OK),
        headers,
        body: Bytes::from(body),
        latency: Duration::from_micros(rng.random_range(0..1_000_000)),
    }
}

#[test]
fn random_exchanges_never_panic_the_differ_or_the_redactor() {
    let mut rng = rand::rng();
    let differ = Differ::new(Rules::default_rules().expect("rules"));
    let redactor = Redactor::new(b"k");
    for _ in 0..3000 {
        let primary = random_input(&mut rng);
        let candidate = random_input(&mut rng);
        let method = [Method::GET, Method::POST, Method::DELETE]
            .choose(&mut rng)
            .cloned()
            .unwrap_or(Method::GET);
        let path = String::from_utf8_lossy(&mangle(&mut rng, "/v1/sms/send?to=+447700900123"))
            .into_owned();
        let exchange = Exchange {
            request: RecordedRequest {
                method,
                path,
                headers: HeaderMap::new(),
                body: Bytes::from(mangle(&mut rng, SEEDS[0])),
            },
            primary: response(&mut rng, primary),
            candidate: response(&mut rng, candidate),
        };
        let mut record = differ.diff(&exchange);
        redactor.redact_record(&mut record);
        let mut with_secondary = differ.diff_with_secondary(&exchange, &exchange.candidate);
        redactor.redact_record(&mut with_secondary);
        assert!(serde_json::to_string(&record).is_ok());
        let bytes = mangle(&mut rng, "call +447700900123 or 07700 900123 ✓");
        let text = String::from_utf8_lossy(&bytes);
        let _ = redactor.redact_text(&text);
        let _ = redactor.redact_path(&text);
    }
}

#[test]
fn random_captures_are_errors_or_requests_never_panics() {
    let mut rng = rand::rng();
    for _ in 0..3000 {
        let bytes = random_input(&mut rng);
        for format in [
            CaptureFormat::Jsonl,
            CaptureFormat::Har,
            CaptureFormat::Goreplay,
        ] {
            let path = Path::new("fuzz");
            let _ = match format {
                CaptureFormat::Jsonl => capture::jsonl::parse(path, &bytes),
                CaptureFormat::Har => capture::har::parse(path, &bytes),
                CaptureFormat::Goreplay => capture::goreplay::parse(path, &bytes),
            };
            let _ = CaptureFormat::detect(path, &bytes);
        }
    }
}

#[test]
fn odd_rules_are_errors_not_panics() {
    let mut rng = rand::rng();
    let seed = compare::rules::DEFAULT_RULES_TOML;
    for _ in 0..500 {
        let text = String::from_utf8_lossy(&mangle(&mut rng, seed)).into_owned();
        let _ = Rules::from_toml_str(&text);
    }
    for bad in [
        "[defaults]\nignore = [\"no-slash\"]",
        "[[defaults.match]]\npointer = \"/a\"\nshape = \"pattern\"",
        "[[defaults.match]]\npointer = \"/a\"\nshape = \"pattern\"\npattern = \"(\"",
        "[[defaults.match]]\npointer = \"/a\"\nshape = \"timestamp\"\ntolerance = \"forever\"",
        "[[defaults.match]]\npointer = \"/a\"\nshape = \"number\"\ntolerance = -1.0",
        "[routes.\"/no-method\"]",
        "version = 2",
        "[defaults]\nignore_headers = [\"bad header\"]",
    ] {
        assert!(Rules::from_toml_str(bad).is_err(), "{bad}");
    }
}
