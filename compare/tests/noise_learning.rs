//! Noise learning on a synthetic stream with known noisy and real
//! differences: the noisy paths are proposed, the real ones are not, and
//! `--accept` writes them into the rules file without losing its comments.

mod common;

use bytes::Bytes;
use chrono::{SecondsFormat, TimeDelta, Utc};
use common::*;
use compare::noise::{self, NoiseOptions, ProposedRule};
use compare::{DiffRecord, Differ, Exchange, RecordedRequest, RecordedResponse, Rules, Verdict};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

const RULES_WITH_COMMENTS: &str = r#"# Team rules: keep this comment.
version = 1

[defaults]
# Edge headers.
ignore_headers = ["Date"]

[routes."GET /v1/sms/{id}"]
# A hand-written rule that must survive.
ignore = ["/debug"]
"#;

fn response(body: serde_json::Value, trace: &str) -> RecordedResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(trace) {
        headers.insert("x-trace-id", value);
    }
    RecordedResponse {
        status: StatusCode::OK,
        headers,
        body: Bytes::from(body.to_string()),
        latency: std::time::Duration::from_millis(5),
    }
}

/// 200 exchanges of `GET /v1/sms/{id}`:
/// - noisy: `/id` (each side's own ObjectId), `/created_at` (≤ 1 s apart,
///   both in milliseconds), `/seq` (each side's own counter), header
///   `x-trace-id` (random hex);
/// - real: `/status` ("queued" vs "accepted" in every exchange), `/segments`
///   (random integers, differ every time but do not grow), `/reference`
///   (ids that differ in only 5 % of the exchanges), `/message_id` (an
///   ObjectId against a UUIDv7: generated on both sides, but a format a
///   client would notice), `/updated_at` (milliseconds against
///   microseconds).
fn stream(rules: Rules) -> Vec<DiffRecord> {
    let differ = Differ::new(rules);
    let start = Utc::now();
    (0..200u64)
        .map(|i| {
            let t_primary = start + TimeDelta::seconds(i as i64);
            let t_candidate = t_primary + TimeDelta::milliseconds((i % 9 + 1) as i64 * 100);
            let reference_p = "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a";
            let reference_c = if i % 20 == 0 {
                "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4b"
            } else {
                reference_p
            };
            let millis = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
            let micros = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
            let primary = json!({
                "id": format!("{:024x}", 0x507f1f77bcf86cd7_u128 * 1000 + i as u128),
                "message_id": format!("{:024x}", 0x65f0_u128 * 1000 + i as u128),
                "status": "queued",
                "segments": (i * 7919) % 13,
                "created_at": millis(t_primary),
                "updated_at": millis(t_primary),
                "seq": 1000 + i,
                "reference": reference_p,
                "debug": i,
            });
            let candidate = json!({
                "id": format!("{:024x}", 0x65f1_u128 * 1000 + 7 * i as u128),
                "message_id": format!("0196b3f2-7c1a-7e4b-9a2d-{:012x}", i),
                "status": "accepted",
                "segments": (i * 104729 + 5) % 11,
                "created_at": millis(t_candidate),
                "updated_at": micros(t_candidate),
                "seq": 50 + 3 * i,
                "reference": reference_c,
                "debug": 0,
            });
            let exchange = Exchange {
                request: RecordedRequest {
                    method: Method::GET,
                    path: format!("/v1/sms/{i}"),
                    headers: HeaderMap::new(),
                    body: Bytes::new(),
                },
                primary: response(primary, &format!("{:032x}", i * 31 + 7)),
                candidate: response(candidate, &format!("{:032x}", i * 17 + 3)),
            };
            let mut record = differ.diff(&exchange);
            record.ts = t_primary;
            record
        })
        .collect()
}

fn rules() -> Rules {
    Rules::from_toml_str(RULES_WITH_COMMENTS).expect("rules compile")
}

#[test]
fn proposes_the_noisy_paths_and_not_the_real_differences() {
    let records = stream(rules());
    let proposals = noise::learn(&records, &NoiseOptions::default());
    let found: Vec<(&str, &ProposedRule)> = proposals
        .iter()
        .map(|p| (p.path.as_str(), &p.rule))
        .collect();
    let paths: Vec<&str> = found.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        paths,
        vec!["/created_at", "/id", "/seq", "header:x-trace-id"],
        "{proposals:#?}"
    );
    assert!(found.contains(&("/id", &ProposedRule::IdShape)));
    assert!(found.contains(&("/seq", &ProposedRule::Ignore)));
    assert!(found.contains(&("header:x-trace-id", &ProposedRule::HeaderIds)));
    let created = proposals
        .iter()
        .find(|p| p.path == "/created_at")
        .expect("created_at");
    assert_eq!(created.rule, ProposedRule::Timestamp { tolerance_secs: 2 });
    assert_eq!(created.evidence.max_gap_secs, Some(0.9));
    let id = proposals.iter().find(|p| p.path == "/id").expect("id");
    assert_eq!((id.evidence.differing, id.evidence.exchanges), (200, 200));
    assert_eq!(id.evidence.primary_kinds.get("object-id"), Some(&200));
    assert_eq!(id.evidence.candidate_kinds.get("object-id"), Some(&200));
    assert_eq!(id.evidence.examples.len(), 3);
    for real in [
        "/status",
        "/segments",
        "/reference",
        "/debug",
        "/message_id",
        "/updated_at",
    ] {
        assert!(!paths.contains(&real), "{real} must not be proposed");
    }
}

#[test]
fn too_few_samples_propose_nothing() {
    let records = stream(rules());
    let options = NoiseOptions {
        min_samples: 1000,
        ..NoiseOptions::default()
    };
    assert!(noise::learn(&records, &options).is_empty());
}

#[test]
fn accepted_proposals_turn_noise_into_noise_and_keep_comments() {
    let dir = tmp();
    let path = file(&dir, "rules.toml");
    std::fs::write(&path, RULES_WITH_COMMENTS).expect("write rules");
    let proposals = noise::learn(&stream(rules()), &NoiseOptions::default());

    let added = noise::accept(&path, &proposals, "2026-05-01").expect("accept");
    assert_eq!(added, 4);
    let text = std::fs::read_to_string(&path).expect("read rules");
    for kept in [
        "# Team rules: keep this comment.",
        "# Edge headers.",
        "# A hand-written rule that must survive.",
    ] {
        assert!(text.contains(kept), "lost {kept:?}:\n{text}");
    }
    assert!(
        text.contains("learned 2026-05-01: differs in 200/200 exchanges"),
        "{text}"
    );
    // Accepting again adds nothing.
    assert_eq!(
        noise::accept(&path, &proposals, "2026-05-02").expect("accept"),
        0
    );

    // With the learned rules only the real differences remain.
    let learned = Rules::load(&path).expect("learned rules compile");
    let records = stream(learned);
    for record in &records {
        assert_eq!(record.verdict, Verdict::Differs);
        let real: Vec<String> = record.real_differences().map(|(p, _)| p).collect();
        for noisy in ["/id", "/created_at", "/seq", "header:x-trace-id"] {
            assert!(
                !real.iter().any(|p| p == noisy),
                "{noisy} still counted: {real:?}"
            );
        }
        assert!(real.iter().any(|p| p == "/status"));
        assert!(real.iter().any(|p| p == "/message_id"), "{real:?}");
    }
    assert!(
        text.contains("header = \"x-trace-id\"")
            && !text.contains("ignore_headers = [\"Date\", \"x-trace-id\"]"),
        "a header is normalised, never ignored: {text}"
    );
}

#[test]
fn learn_noise_cli_prints_evidence_and_accepts() {
    let dir = tmp();
    let log = file(&dir, "diffs.jsonl");
    let lines: String = stream(rules())
        .iter()
        .map(|r| serde_json::to_string(r).expect("json") + "\n")
        .collect();
    std::fs::write(&log, lines).expect("write log");
    let rules_path = file(&dir, "rules.toml");
    std::fs::write(&rules_path, RULES_WITH_COMMENTS).expect("write rules");

    let output = compare_bin()
        .arg("learn-noise")
        .arg(&log)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.contains("4 proposed noise rules"), "{stdout}");
    assert!(
        stdout.contains("GET /v1/sms/{id} /id: shape = \"id\" (differs in 200/200"),
        "{stdout}"
    );

    let output = compare_bin()
        .arg("learn-noise")
        .arg(&log)
        .arg("--rules")
        .arg(&rules_path)
        .arg("--accept")
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&rules_path).expect("rules");
    assert!(
        text.contains("pointer = \"/id\"") && text.contains("# Team rules: keep this comment."),
        "{text}"
    );
    let check = compare_bin()
        .arg("check-rules")
        .arg(&rules_path)
        .output()
        .expect("runs");
    assert!(check.status.success());
}
