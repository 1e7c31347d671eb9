//! The HTML report as a person sees it: rendered by headless Chromium
//! (Debian's `chromium`), screenshotted, and its text checked through
//! `--dump-dom`. The page must work offline: no external resources.
//!
//! Fails when no Chromium binary can be found (a test that passes by not
//! running proves nothing); the project's test command installs it
//! (`apt-get install -y chromium`), or set `CHROMIUM` to a binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The Chromium binary; panics, naming the package, when there is none.
fn chromium() -> PathBuf {
    let candidates = [
        std::env::var("CHROMIUM").ok(),
        Some("/usr/bin/chromium".to_owned()),
        Some("/usr/bin/chromium-browser".to_owned()),
        Some("/usr/bin/google-chrome".to_owned()),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "Chromium is not installed (nor CHROMIUM set): apt-get install -y chromium; \
                 scripts/test.sh does this. The HTML report cannot be checked in a browser without it."
            )
        })
}

/// Runs Chromium headless with a deadline; returns stdout.
fn run_chromium(binary: &Path, profile: &Path, extra: &[String], url: &str) -> String {
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().expect("reader")
}

/// Diff records from a real replay (with injected differences) spread over
/// time, so the chart has a shape.
fn make_log(dir: &tempfile::TempDir) -> PathBuf {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let legacy = runtime.block_on(FakeService::start(Flavour::Legacy, "legacy"));
    // The GETs' injected difference is `served_by`, the instance's name: of
    // the same length on both sides, so it is the only one (a longer name
    // would also change `Content-Length` and the ETag's length part).
    let orchestrator = runtime.block_on(FakeService::start(Flavour::Orchestrator, "shadow"));
    let capture = file(dir, "capture.jsonl");
    let mut lines: Vec<_> = (0..40)
        .map(|i| send_line(i, if i % 8 == 0 { "inject" } else { "order" }))
        .collect();
    lines.extend((0..20).map(|i| get_line(i, "/v1/sms/507f1f77bcf86cd799439011")));
    write_jsonl(&capture, &lines);
    let log = file(dir, "diffs.jsonl");
    let output = compare_bin()
        .args(["replay", "--capture"])
        .arg(&capture)
        .args([
            "--primary",
            &legacy.url(),
            "--candidate",
            &orchestrator.url(),
        ])
        .args(["--allow-writes", "--no-progress", "--out"])
        .arg(&log)
        .env("DIFF_REDACTION_KEY", "k")
        .output()
        .expect("replay runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Spread the records over an hour for the chart.
    let mut records = read_records(&log);
    let start = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    for (i, record) in records.iter_mut().enumerate() {
        record.ts = start + chrono::TimeDelta::seconds(i as i64 * 60);
    }
    let text: String = records
        .iter()
        .map(|r| serde_json::to_string(r).expect("json") + "\n")
        .collect();
    std::fs::write(&log, text).expect("rewrite log");
    log
}

#[test]
fn the_html_report_renders_in_chromium_with_its_summary_chart_and_examples() {
    let binary = chromium();
    let dir = tmp();
    let log = make_log(&dir);
    let html = file(&dir, "report.html");
    let output = compare_bin()
        .arg("report")
        .arg(&log)
        .arg("--html")
        .arg(&html)
        .args(["--max-diff-rate", "0.1%", "--min-samples", "10"])
        .env("DIFF_REDACTION_KEY", "k")
        .output()
        .expect("report runs");
    assert_eq!(
        output.status.code(),
        Some(1),
        "the injected differences fail the gate"
    );
    let source = std::fs::read_to_string(&html).expect("html");
    for external in ["<link", "src=\"http", "src='http", "@import", "url(http"] {
        assert!(
            !source.contains(external),
            "the report must not load {external}…"
        );
    }

    let url = format!("file://{}", html.display());
    let screenshot = file(&dir, "report.png");
    let profile = file(&dir, "profile");
    run_chromium(
        &binary,
        &profile,
        &[format!("--screenshot={}", screenshot.display())],
        &url,
    );
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "screenshot is {} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("COMPARE_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&screenshot, keep);
    }

    let dom = run_chromium(&binary, &profile, &["--dump-dom".to_owned()], &url);
    // The serialised DOM escapes text; compare with what a reader sees.
    let dom = dom
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    for text in [
        "compare report: legacy api-gateway vs orchestrator",
        "NOT READY: diff rate over 0.100% on 2 of 2 routes (GET /v1/sms/{id} 100.00% (20/20, top: /served_by), POST /v1/sms/send 12.50% (5/40, top: /encoding)), overall 41.67% (25/60)",
        "route POST /v1/sms/send: diff rate 12.50% (5/40) > 0.100%",
        "Per route",
        "POST /v1/sms/send",
        "GET /v1/sms/{id}",
        "Diff rate over time",
        "Accepted contract changes",
        "None: no rule accepted a client-visible change.",
        "Unexplained differences",
        "Explained as value noise",
        "[defaults] match /id",
        "normalize:etag",
        "/encoding",
        "/served_by",
        "legacy (primary)",
        "orchestrator (candidate)",
        "copy as curl",
        "curl -sS -X 'POST'",
    ] {
        assert!(dom.contains(text), "rendered page lacks {text:?}");
    }
    assert!(dom.contains("<polyline"), "the chart is an inline SVG");
    assert!(
        !dom.contains(PHONE) && !dom.contains(SECRET_BODY),
        "personal data is redacted"
    );
}
