//! The idempotency fingerprint over a body parsed as the service parses
//! it: never panics, the canonical form (RFC 8785) always exists, and
//! whitespace and member order do not change the fingerprint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::idempotency::fingerprint;
use orchestrator::node_json::{decode_utf8, parse_body};
use serde_json::Value;

/// The same value with every object's members in reverse order.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reversed(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_body(&decode_utf8(data)) else {
        return;
    };
    serde_jcs::to_vec(&body).expect("every parsed body has a canonical form");
    let fp = fingerprint("POST", "/v1/sms/send", &body);
    let pretty = serde_json::to_string_pretty(&body).expect("serialises");
    let reparsed = parse_body(&pretty).expect("its own serialisation parses");
    assert_eq!(
        fingerprint("POST", "/v1/sms/send", &reparsed),
        fp,
        "whitespace changed the fingerprint"
    );
    assert_eq!(
        fingerprint("POST", "/v1/sms/send", &reversed(&body)),
        fp,
        "member order changed the fingerprint"
    );
    assert_ne!(
        fingerprint("POST", "/v1/sms/bulk", &body),
        fp,
        "the route is part of it"
    );
});
