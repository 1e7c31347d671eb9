//! compare's diff engine on any pair of answers to a send: the fuzzer's
//! bytes are split into the primary's and the candidate's bodies (and
//! statuses). Never panics; an answer compared with itself is never a
//! difference.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use compare::{Differ, Exchange, RecordedRequest, RecordedResponse, Rules, Verdict};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;

fn differ() -> &'static Differ {
    static D: OnceLock<Differ> = OnceLock::new();
    D.get_or_init(|| Differ::new(Rules::default_rules().expect("the shipped rules load")))
}

fn response(status: u8, body: &[u8]) -> RecordedResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    RecordedResponse {
        status: StatusCode::from_u16(200 + u16::from(status % 4) * 100 + u16::from(status % 30))
            .unwrap_or(StatusCode::OK),
        headers,
        body: Bytes::copy_from_slice(body),
        latency: Duration::from_millis(5),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&status, rest)) = data.split_first() else {
        return;
    };
    let (a, b) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, rest),
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let request = RecordedRequest {
        method: Method::POST,
        path: "/v1/sms/send".to_owned(),
        headers,
        body: Bytes::from_static(br#"{"to":"+447700900123","from":"Acme","body":"hi"}"#),
    };
    let exchange = Exchange {
        request: request.clone(),
        primary: response(status, a),
        candidate: response(status, b),
    };
    let record = differ().diff(&exchange);
    let _ = serde_json::to_string(&record).expect("a diff record serialises");
    let same = Exchange {
        request,
        primary: response(status, a),
        candidate: response(status, a),
    };
    let record = differ().diff(&same);
    assert!(
        record.body.is_empty() && record.verdict == Verdict::Same,
        "an answer differs from itself: {record:?}"
    );
});
