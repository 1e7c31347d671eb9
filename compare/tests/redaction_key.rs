//! One name for the redaction key across the tools (issue #16, defect 9):
//! `compare` reads `DIFF_REDACTION_KEY`, like mirror-proxy, and still
//! honours both old names (`COMPARE_REDACT_KEY`, `MIRROR_REDACTION_KEY`)
//! with a deprecation warning, so no deployment silently gets a random key.

mod common;

use common::{PHONE, compare_bin, file, send_line, tmp, write_jsonl};
use serde_json::{Value, json};

const NAMES: [&str; 4] = [
    "DIFF_REDACTION_KEY",
    "DIFF_REDACTION_KEY_FILE",
    "COMPARE_REDACT_KEY",
    "MIRROR_REDACTION_KEY",
];

/// Runs `compare diff` on one captured send with `env` set (and the other
/// key variables unset); returns the hashed `to` of the kept request and
/// stderr.
fn hashed_to(dir: &tempfile::TempDir, name: &str, env: &[(&str, &str)]) -> (String, String) {
    let capture = file(dir, &format!("{name}.capture.jsonl"));
    let mut line = send_line(1, "order");
    let body = |id: &str| json!({"id": id, "to": PHONE}).to_string();
    line["primary"] =
        json!({"status": 201, "headers": [], "body": body("507f1f77bcf86cd799439011")});
    line["candidate"] =
        json!({"status": 201, "headers": [], "body": body("507f1f77bcf86cd799439011")});
    write_jsonl(&capture, &[line]);
    let log = file(dir, &format!("{name}.diffs.jsonl"));
    let mut command = compare_bin();
    command
        .args(["diff", "--keep-request", "always", "--capture"])
        .arg(&capture)
        .arg("--out")
        .arg(&log);
    for n in NAMES {
        command.env_remove(n);
    }
    let output = command
        .envs(env.iter().copied())
        .output()
        .expect("compare runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: Value = serde_json::from_str(
        std::fs::read_to_string(&log)
            .expect("diff log")
            .lines()
            .next()
            .expect("a record"),
    )
    .expect("JSON");
    let to = record["request"]["body"]["to"]
        .as_str()
        .expect("hashed to")
        .to_owned();
    assert!(to.starts_with("hmac:"), "{to}");
    (to, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_key_has_one_name_and_the_old_names_still_work_with_a_warning() {
    let dir = tmp();
    let (new, stderr) = hashed_to(&dir, "new", &[("DIFF_REDACTION_KEY", "shared-key")]);
    assert!(
        !stderr.contains("warning") && !stderr.contains("random"),
        "{stderr}"
    );

    for old in ["COMPARE_REDACT_KEY", "MIRROR_REDACTION_KEY"] {
        let (hash, stderr) = hashed_to(&dir, old, &[(old, "shared-key")]);
        assert_eq!(hash, new, "{old} is still the same key");
        assert!(
            stderr.contains(&format!(
                "warning: {old} is deprecated: rename it to DIFF_REDACTION_KEY"
            )),
            "{stderr}"
        );
    }

    let (random, stderr) = hashed_to(&dir, "none", &[]);
    assert_ne!(random, new);
    assert!(
        stderr.contains("DIFF_REDACTION_KEY is not set; hashes use a random key"),
        "{stderr}"
    );

    // The new name wins over an old one, and a conflicting old one is named.
    let (hash, stderr) = hashed_to(
        &dir,
        "both",
        &[
            ("DIFF_REDACTION_KEY", "shared-key"),
            ("COMPARE_REDACT_KEY", "stale"),
        ],
    );
    assert_eq!(hash, new);
    assert!(
        stderr.contains("COMPARE_REDACT_KEY is deprecated and ignored, and differs"),
        "{stderr}"
    );
}

#[test]
fn the_key_reads_from_the_same_file_variable_mirror_proxy_reads() {
    let dir = tmp();
    let (direct, _) = hashed_to(&dir, "direct", &[("DIFF_REDACTION_KEY", "shared-key")]);
    // A mounted secret ends in a line break; the key is the text before it.
    let secret = file(&dir, "redaction-key");
    std::fs::write(&secret, "shared-key\n").unwrap();
    let path = secret.to_str().unwrap();
    let (from_file, stderr) = hashed_to(&dir, "file", &[("DIFF_REDACTION_KEY_FILE", path)]);
    assert_eq!(from_file, direct, "{stderr}");
    assert!(!stderr.contains("random"), "{stderr}");

    // Both at once is refused, naming the settings and never the key.
    let capture = file(&dir, "both.capture.jsonl");
    write_jsonl(&capture, &[send_line(1, "order")]);
    let mut command = compare_bin();
    command
        .args(["diff", "--capture"])
        .arg(&capture)
        .arg("--out")
        .arg(file(&dir, "both.diffs.jsonl"));
    for n in NAMES {
        command.env_remove(n);
    }
    let output = command
        .env("DIFF_REDACTION_KEY", "shared-key")
        .env("DIFF_REDACTION_KEY_FILE", path)
        .output()
        .expect("compare runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("DIFF_REDACTION_KEY or DIFF_REDACTION_KEY_FILE, not both"),
        "{stderr}"
    );
    assert!(!stderr.contains("shared-key"), "{stderr}");
}
