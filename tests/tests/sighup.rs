//! `SIGHUP` reloads what can be reloaded and never stops the orchestrator,
//! with or without `FLAGS_FILE` (issue #16, defect 4).

use std::time::Duration;

use integration_tests::{Options, TestApp, accepted_id, eventually, send_body};
use serde_json::Value;

fn hangup(app: &TestApp) {
    let pid = app.child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

async fn reload_line(app: &TestApp, n: usize) -> Value {
    eventually(Duration::from_secs(10), || async {
        app.log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["signal"] == "SIGHUP")
            .nth(n - 1)
    })
    .await
    .unwrap_or_else(|| panic!("no reload line #{n}:\n{}", app.log_lines().join("\n")))
}

#[tokio::test]
async fn sighup_without_a_flags_file_is_logged_and_the_service_keeps_serving() {
    let mut app = TestApp::embedded().await;
    hangup(&app);
    let line = reload_line(&app, 1).await;
    assert_eq!(line["flags_file"], "not configured", "{line}");
    assert_eq!(line["jwks"], "not configured", "{line}");
    assert!(app.child.try_wait().unwrap().is_none(), "SIGHUP killed it");
    accepted_id(app.send(&send_body("after hup"), None).await).await;
    // A second one too (the handler stays installed).
    hangup(&app);
    reload_line(&app, 2).await;
    accepted_id(app.send(&send_body("after second hup"), None).await).await;
    assert!(app.terminate().await.success());
}

#[tokio::test]
async fn sighup_rereads_the_flags_file() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.env");
    std::fs::write(&flags, "SUBMIT_API_ENABLED=true\n").unwrap();
    let app = TestApp::spawn(Options {
        args: vec![format!("--flags-file={}", flags.display())],
        submit_disabled: true,
        ..Options::default()
    })
    .await;
    accepted_id(app.send(&send_body("flag on"), None).await).await;
    std::fs::write(&flags, "SUBMIT_API_ENABLED=false\n").unwrap();
    hangup(&app);
    let line = reload_line(&app, 1).await;
    assert_eq!(line["flags_file"], "reloaded", "{line}");
    assert_eq!(line["submit_api_enabled"], false, "{line}");
    assert_eq!(app.send(&send_body("flag off"), None).await.status(), 404);
}
