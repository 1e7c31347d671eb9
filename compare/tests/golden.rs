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
    // The expected files could be regenerated wrongly; the verdicts are
    // pinned here independently.
    let expect = [
        ("diff-kinds", "differs"),
        ("numbers-compare-by-value", "same"),
        ("ignore-pointers-wildcards", "differs"),
        ("sets-ignore-order", "differs"),
        ("match-id", "differs"),
        ("match-present", "differs"),
        ("header-normalize", "differs"),
        ("status-class", "noise-only"),
        ("status-differs", "differs"),
        ("envelope-class-legacy-200-error", "noise-only"),
        ("envelope-class-status-mismatch", "differs"),
        ("ignore-body-route", "same"),
        ("default-rules-send", "noise-only"),
        ("default-rules-send-real-difference", "differs"),
        ("match-pattern", "noise-only"),
    ];
    for (case, verdict) in expect {
        let record = run_case(&golden_dir().join(case));
        assert_eq!(record["verdict"], verdict, "{case}: {record:#}");
    }
}
