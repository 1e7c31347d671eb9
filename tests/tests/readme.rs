//! The README's two set-up commands, as a newcomer would use them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The `sh` code blocks under "## Quick start".
fn quick_start_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a Quick start section");
    section
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .map(|b| b.trim().to_owned())
        .collect()
}

#[test]
fn the_readme_has_exactly_two_commands_and_ci_runs_the_test_one() {
    let commands = quick_start_commands();
    assert_eq!(
        commands,
        vec!["cargo run -p orchestrator -- --dev", "./scripts/test.sh"]
    );
    let ci = std::fs::read_to_string(repo().join(".ci/run")).expect(".ci/run");
    let code: Vec<&str> = ci
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(
        code.iter().any(|l| l.contains("scripts/test.sh")),
        ".ci/run must call the README's test command: {code:?}"
    );
    assert!(
        repo().join("scripts/test.sh").exists(),
        "the test command exists"
    );
}

/// Runs the README's run command as written (only the ports are moved to
/// free ones, as the quick start's `curl` lines are printed with the real
/// address), then runs the printed `curl` lines with `sh`.
#[tokio::test]
async fn the_readme_run_command_ends_in_an_accepted_sms_that_get_shows() {
    let command = quick_start_commands().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mut parts = command.split_whitespace();
    let program = parts.next().unwrap();
    let mut args: Vec<String> = parts.map(str::to_owned).collect();
    // Run from a scratch directory so data/ lands there, not in the repo.
    args.insert(
        1,
        format!("--manifest-path={}", repo().join("Cargo.toml").display()),
    );
    args.insert(1, "-q".into());
    let mut child = tokio::process::Command::new(program)
        .args(&args)
        .current_dir(dir.path())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("ADMIN_LISTEN_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cargo on PATH");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut printed = Vec::new();
    let collect = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.starts_with("Metrics:");
            printed.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), collect)
        .await
        .expect("quick start printed within 5 minutes");

    // The first curl block: lines from "curl -si" to the line without a trailing backslash.
    let text = printed.join("\n");
    let send = text
        .split("  curl -si ")
        .nth(1)
        .map(|rest| {
            let end = rest.find("'\n").map_or(rest.len(), |i| i + 1);
            format!("curl -si {}", &rest[..end])
        })
        .expect("a printed send curl");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&send)
        .output()
        .expect("curl runs");
    let response = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let location = response
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("Location header")
        .trim()
        .to_owned();
    let id = location.rsplit('/').next().unwrap();
    the_readme_example_answer_has_the_shape_of(&response);

    let get = text
        .lines()
        .find(|l| l.trim_start().starts_with("curl -s http") && l.contains("<id>"))
        .expect("a printed GET curl")
        .trim()
        .replace("<id>", id);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&get)
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("GET answers JSON");
    assert_eq!(body["id"], id);
    assert_eq!(body["to"], "+447700900123");

    // The embedded event sink shows the published event.
    let events = dir.path().join("data/events.jsonl");
    let published = integration_tests::eventually(Duration::from_secs(5), || async {
        std::fs::read_to_string(&events)
            .ok()
            .filter(|t| t.contains(id))
    })
    .await;
    assert!(published.is_some(), "event for {id} in data/events.jsonl");
    let _ = child.kill().await;
}

/// The README's example answer (the `http` block under "## The API") and a
/// real one: the same status line, the same headers in the same order
/// (apart from `Date` and `Content-Length`, which the example leaves out),
/// the same body members in the same order, and each one's ETag is
/// Express's `W/"<length>-<hash>"` of its own body.
fn the_readme_example_answer_has_the_shape_of(real: &str) {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let example = readme
        .split("```http\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an http block in the README");
    let parts = |text: &str| -> (String, Vec<(String, String)>, serde_json::Value) {
        let text = text.replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").expect("head and body");
        let mut lines = head.lines();
        let status = lines.next().expect("status line").trim().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .filter(|(k, _)| k != "date" && k != "content-length")
            .collect();
        let body = serde_json::from_str(body.trim()).expect("a JSON body");
        (status, headers, body)
    };
    let (example_status, example_headers, example_body) = parts(example);
    let (real_status, real_headers, real_body) = parts(real);
    assert_eq!(example_status, real_status);
    let names = |h: &[(String, String)]| h.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(names(&example_headers), names(&real_headers), "{real}");
    let keys = |b: &serde_json::Value| {
        b.as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&example_body), keys(&real_body), "{real}");
    for (headers, body) in [
        (&example_headers, &example_body),
        (&real_headers, &real_body),
    ] {
        let etag = &headers
            .iter()
            .find(|(k, _)| k == "etag")
            .expect("an ETag")
            .1;
        let length = serde_json::to_string(body).unwrap().len();
        assert!(
            etag.starts_with(&format!("W/\"{length:x}-")),
            "{etag} is not the weak ETag of a {length}-byte body"
        );
        let location = &headers.iter().find(|(k, _)| k == "location").unwrap().1;
        assert_eq!(
            location,
            &format!("/v1/sms/{}", body["id"].as_str().unwrap())
        );
    }
}
