//! `docs/shadow-phase.md`'s demo, run as written: its shell block, from the
//! repository root, with only what the doc lets a reader set (the `DEMO_*`
//! addresses: free ports and a private `nats-server`, so the demo runs next
//! to everything else on this machine), then `kill %1 %2 %3` as the doc
//! says to stop it. Every claim the doc makes about the output is checked.

use std::time::Duration;

use compare::Verdict;
use futures::StreamExt;
use integration_tests::{PrivateNats, binary, repo_root};

/// The doc's demo block.
fn demo_block() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/shadow-phase.md")).expect("doc");
    let demo = &doc[doc
        .find("## Demo on one machine")
        .expect("the demo section")..];
    let start = demo.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + demo[start..].find("\n```").expect("the block's end");
    demo[start..end].to_owned()
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

#[tokio::test]
async fn the_shadow_demo_runs_as_written_and_says_what_the_runbook_says() {
    let nats = PrivateNats::start().await;
    // The legacy gateway publishes every accepted send here.
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let mut published = client
        .subscribe("sms.outbound.request")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");

    let dir = tempfile::tempdir().expect("temp dir");
    let demo_dir = dir.path().join("shadow-demo");
    // The build the doc starts with is this test's own: the same target
    // directory (`$B` is `$CARGO_TARGET_DIR/debug`).
    let target_dir = binary("orchestrator")
        .parent()
        .and_then(|debug| debug.parent())
        .expect("target dir")
        .to_owned();
    let script = format!("{}\nkill %1 %2 %3\nwait\n", demo_block());
    let mut command = tokio::process::Command::new("bash");
    command
        .arg("-c")
        .arg(&script)
        .current_dir(repo_root())
        .env_clear()
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("DEMO_NATS_URL", nats.url())
        .env("DEMO_DIR", &demo_dir)
        .env("DEMO_LEGACY", free_address())
        .env("DEMO_ORCH", free_address())
        .env("DEMO_ORCH_ADMIN", free_address())
        .env("DEMO_PROXY", free_address())
        .env("DEMO_PROXY_ADMIN", free_address())
        .process_group(0)
        .kill_on_drop(true);
    // What cargo and rustup need to find the toolchain and reuse the build.
    for (name, value) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if matches!(
            name_text.as_ref(),
            "PATH" | "HOME" | "RUSTUP_HOME" | "RUSTUP_TOOLCHAIN" | "CARGO_HOME" | "RUSTFLAGS"
        ) || name_text.starts_with("CARGO_INCREMENTAL")
            || name_text.starts_with("CARGO_BUILD_")
            || name_text.starts_with("CARGO_PROFILE_")
        {
            command.env(name, value);
        }
    }
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    let pid = child.id().expect("pid");
    let output =
        match tokio::time::timeout(Duration::from_secs(900), child.wait_with_output()).await {
            Ok(output) => output.expect("the demo ran"),
            Err(_) => {
                // Only the demo's own process group.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
                panic!("the demo did not finish within 15 minutes");
            }
        };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Every command ran: the build (a no-op after this test's own), the
    // tools the doc assumes (curl, python3).
    assert!(stderr.contains("Finished"), "cargo build --bins:\n{stderr}");
    assert!(
        !stderr.contains("command not found") && !stderr.contains("No such file"),
        "{stderr}"
    );

    // "201 × 60: the legacy gateway's answers"
    let codes = stdout
        .lines()
        .find(|l| l.starts_with("201 "))
        .unwrap_or_else(|| panic!("no status line:\n{stdout}\n{stderr}"));
    let codes: Vec<&str> = codes.split_whitespace().collect();
    assert_eq!(codes, vec!["201"; 60], "{stdout}");
    // The read through the sidecar is the legacy's answer, published.
    let read: serde_json::Value = stdout
        .lines()
        .find(|l| l.starts_with("{\"id\""))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no read answer:\n{stdout}"));
    assert_eq!(read["status"], "queued", "{read}");
    assert_eq!(read["to"], "+447700900123");
    // The metrics: every request mirrored, nothing dropped, verdicts counted.
    for expected in [
        "mirror_mirrored_total{route=\"POST /v1/sms/send\"} 61",
        "mirror_mirrored_total{route=\"GET /v1/sms/{id}\"} 1",
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "{expected}:\n{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .filter(|l| l.starts_with("mirror_dropped"))
            .all(|l| l.ends_with(" 0")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .filter(|l| l.starts_with("mirror_diff_verdicts"))
            .all(|l| l.contains("noise-only") || l.ends_with(" 0")),
        "only noise-only verdicts: {stdout}"
    );
    // The gate, as the doc quotes it.
    assert!(
        stdout
            .lines()
            .any(|l| l == "NOT READY: too few samples on 1 of 2 routes (GET /v1/sms/{id} 1/50)"),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "gate exit code: 1"), "{stdout}");

    // "every record is noise-only", nothing accepted as a contract change.
    let records =
        compare::difflog::read_records(&demo_dir.join("shadow-diff.jsonl")).expect("the diff log");
    assert_eq!(records.len(), 62);
    for record in &records {
        assert_eq!(record.verdict, Verdict::NoiseOnly, "{record:?}");
        assert!(record.accepted_changes().next().is_none(), "{record:?}");
        // Ids, timestamps and the ETag's hash: Content-Length is equal.
        assert!(
            record.headers.iter().all(|h| h.name != "content-length"),
            "{record:?}"
        );
    }
    let report = std::fs::read_to_string(demo_dir.join("report.md")).expect("report.md");
    for expected in [
        "Explained as value noise",
        "None: no rule accepted a client-visible change.",
        "normalize:etag",
        "shape:id",
    ] {
        assert!(report.contains(expected), "{expected}:\n{report}");
    }
    assert!(demo_dir.join("report.html").exists());

    // The legacy gateway published each accepted send to NATS.
    let mut events = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), published.next()).await {
        events += 1;
    }
    assert_eq!(events, 61);
}
