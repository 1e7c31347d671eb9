//! Golden tests: each directory under `tests/golden/` holds an exchange
//! (`exchange.json`, one capture line with both responses), the rules
//! (`rules.toml`; absent = the shipped default rules) and the expected diff
//! record (`expected.json`, without the timestamp). Together they cover
//! every rule kind and every diff kind; `REQUIRED` keeps them from being
//! deleted unnoticed.
//!
//! After an intended change: `UPDATE_GOLDEN=1 cargo test -p compare --test golden`
//! and review the diff of `expected.json` files like code.

use std::path::{Path, PathBuf};

use compare::{Differ, Exchange, KeepRequest, Rules, capture};

const REQUIRED: &[&str] = &[
    // diff kinds: added, removed, changed, type
    "diff-kinds",
    "numbers-compare-by-value",
    "text-bodies",
    "json-vs-text",
    "empty-vs-body",
    // rule kinds
    "ignore-headers-globs",
    "ignore-pointers-wildcards",
    "sets-ignore-order",
    "sets-report-missing-elements",
    "match-id",
    "match-specific-id-shapes",
    "match-timestamp-tolerance",
    "match-number-tolerance",
    "match-pattern",
    "match-present",
    "header-normalize",
    "status-class",
    "status-differs",
    "envelope-class-legacy-200-error",
    "envelope-class-status-mismatch",
    "ignore-body-route",
    "route-without-inherit",
    "unknown-route-template",
    "default-rules-send",
    "default-rules-send-real-difference",
    "default-rules-error-envelope",
    // contract changes an operator accepts on purpose
    "match-id-format-change",
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn run_case(dir: &Path) -> serde_json::Value {
    let rules_path = dir.join("rules.toml");
    let rules = if rules_path.exists() {
        Rules::load(&rules_path).expect("rules compile")
    } else {
        Rules::default_rules().expect("default rules compile")
    };
    let exchange_path = dir.join("exchange.json");
    let text = std::fs::read_to_string(&exchange_path).expect("exchange.json");
    // The capture reader takes one exchange per line.
    let value: serde_json::Value = serde_json::from_str(&text).expect("exchange.json is JSON");
    let line = serde_json::to_string(&value).expect("serialise");
    let mut captured =
        capture::jsonl::parse(&exchange_path, line.as_bytes()).expect("valid capture line");
    let captured = captured.pop().expect("one exchange");
    let exchange = Exchange {
        request: captured.request,
        primary: captured.primary.expect("primary response"),
        candidate: captured.candidate.expect("candidate response"),
    };
    let record = Differ::new(rules)
        .keep_request(KeepRequest::Never)
        .diff(&exchange);
    let mut json = serde_json::to_value(&record).expect("record serialises");
    if let Some(map) = json.as_object_mut() {
        map.shift_remove("ts");
    }
    json
}

#[test]
fn every_golden_case_produces_its_expected_record() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let names: Vec<String> = dirs
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for required in REQUIRED {
        assert!(
            names.iter().any(|n| n == required),
            "golden case {required} is missing"
        );
    }
    let mut failures = Vec::new();
    for dir in &dirs {
        let actual = run_case(dir);
        let expected_path = dir.join("expected.json");
        let pretty = serde_json::to_string_pretty(&actual).expect("pretty") + "\n";
        if update {
            std::fs::write(&expected_path, &pretty).expect("write expected.json");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let expected: serde_json::Value =
            serde_json::from_str(&expected).unwrap_or(serde_json::Value::Null);
        if expected != actual {
            failures.push(format!("{}:\n{pretty}", dir.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
}

#[test]
fn golden_verdicts_are_the_intended_ones() {
    // The expected files could be regenerated wrongly; the verdicts, and
    // how a report counts each record, are pinned here independently.
    use compare::Category::{AcceptedChange, Differs, NoiseOnly, Same};
    let expect = [
        ("diff-kinds", "differs", Differs),
        ("numbers-compare-by-value", "same", Same),
        ("ignore-pointers-wildcards", "differs", Differs),
        ("sets-ignore-order", "differs", Differs),
        ("match-id", "differs", Differs),
        ("match-present", "differs", Differs),
        ("header-normalize", "differs", Differs),
        // Contract changes are never noise: verdict `differs`, counted
        // apart by reports.
        ("status-class", "differs", AcceptedChange),
        ("status-differs", "differs", Differs),
        ("envelope-class-legacy-200-error", "differs", AcceptedChange),
        ("envelope-class-status-mismatch", "differs", Differs),
        ("match-id-format-change", "differs", AcceptedChange),
        // Ignored bodies are recorded, so the report shows what was ignored.
        ("ignore-body-route", "noise-only", NoiseOnly),
        // The shipped defaults: the orchestrator at parity is noise only;
        // 202, UUIDs, a plain content type or problem+json are not.
        ("default-rules-send", "noise-only", NoiseOnly),
        ("default-rules-send-real-difference", "differs", Differs),
        ("default-rules-error-envelope", "differs", Differs),
        ("match-pattern", "noise-only", NoiseOnly),
    ];
    for (case, verdict, category) in expect {
        let value = run_case(&golden_dir().join(case));
        assert_eq!(value["verdict"], verdict, "{case}: {value:#}");
        // run_case drops `ts`; a record needs one.
        let mut with_ts = value.clone();
        with_ts["ts"] = serde_json::json!("2026-05-01T12:00:00Z");
        let record: compare::DiffRecord = serde_json::from_value(with_ts).expect("a record");
        assert_eq!(record.category(), category, "{case}: {value:#}");
    }
}

#[test]
fn the_shipped_defaults_explain_nothing_but_value_noise() {
    // Every explanation in a golden case under the shipped defaults is
    // noise; none is an accepted contract change.
    for case in [
        "default-rules-send",
        "default-rules-send-real-difference",
        "default-rules-error-envelope",
    ] {
        let value = run_case(&golden_dir().join(case));
        let text = value.to_string();
        assert!(!text.contains("\"accepted\""), "{case}: {value:#}");
        assert!(value.get("envelope").is_none(), "{case}");
    }
    let send = run_case(&golden_dir().join("default-rules-send-real-difference"));
    let unexplained: Vec<&str> = send["body"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(send["headers"].as_array().into_iter().flatten())
        .filter(|d| d.get("noise").is_none())
        .filter_map(|d| d.get("pointer").or(d.get("name")).and_then(|v| v.as_str()))
        .collect();
    for real in ["/id", "content-type", "/encoding"] {
        assert!(unexplained.contains(&real), "{real} must differ: {send:#}");
    }
    assert!(send["status"].get("noise").is_none(), "201 vs 202 is real");
}

#[test]
fn under_the_shipped_defaults_an_etag_is_noise_only_in_its_hash_and_lengths_must_match() {
    // Express's weak ETag is `W/"<length in hex>-<hash>"`. Two bodies that
    // differ only by value noise have the same length: the hash is noise,
    // the length and the weak marker are not, nor is `Content-Length`.
    let differ = Differ::new(Rules::default_rules().expect("shipped rules"));
    let body = br#"{"id":"507f1f77bcf86cd799439011","status":"queued"}"#;
    let answer = |headers: &[(&str, &str)]| compare::RecordedResponse {
        status: http::StatusCode::OK,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect(),
        body: bytes::Bytes::from_static(body),
        latency: std::time::Duration::ZERO,
    };
    let verdict = |primary: &[(&str, &str)], candidate: &[(&str, &str)]| {
        let record = differ.diff(&Exchange {
            request: compare::RecordedRequest {
                method: http::Method::GET,
                path: "/v1/sms/507f1f77bcf86cd799439011".into(),
                headers: http::HeaderMap::new(),
                body: bytes::Bytes::new(),
            },
            primary: answer(primary),
            candidate: answer(candidate),
        });
        (record.verdict, serde_json::to_string(&record).unwrap())
    };
    let legacy = [
        ("etag", r#"W/"33-1hSRAiTq0hHlrRjPXDv3xBI1mZA""#),
        ("content-length", "51"),
    ];
    let cases: [(&[(&str, &str)], compare::Verdict); 4] = [
        (
            &[
                ("etag", r#"W/"33-9sWyJ4cq0VUKhk4O7a0Xcfz1ZkY""#),
                ("content-length", "51"),
            ],
            compare::Verdict::NoiseOnly,
        ),
        (
            &[
                ("etag", r#"W/"34-9sWyJ4cq0VUKhk4O7a0Xcfz1ZkY""#),
                ("content-length", "51"),
            ],
            compare::Verdict::Differs,
        ),
        (
            &[
                ("etag", r#""33-9sWyJ4cq0VUKhk4O7a0Xcfz1ZkY""#),
                ("content-length", "51"),
            ],
            compare::Verdict::Differs,
        ),
        (
            &[
                ("etag", r#"W/"33-9sWyJ4cq0VUKhk4O7a0Xcfz1ZkY""#),
                ("content-length", "52"),
            ],
            compare::Verdict::Differs,
        ),
    ];
    for (candidate, expected) in cases {
        let (verdict, record) = verdict(&legacy, candidate);
        assert_eq!(verdict, expected, "{candidate:?}: {record}");
    }
}
