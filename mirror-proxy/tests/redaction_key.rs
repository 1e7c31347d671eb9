//! mirror-proxy reads the redaction key as `DIFF_REDACTION_KEY`, the name
//! `compare` reads too (issue #16, defect 9), and still honours the old
//! `MIRROR_REDACTION_KEY` (and `COMPARE_REDACT_KEY`) with a deprecation
//! warning instead of falling back to a random key. Checked through
//! `--check`, which loads the configuration, logs, prints it and exits.

use std::process::Command;

const NAMES: [&str; 3] = [
    "DIFF_REDACTION_KEY",
    "MIRROR_REDACTION_KEY",
    "COMPARE_REDACT_KEY",
];

/// stdout (settings and JSON log lines) of `mirror-proxy --check`, with
/// whitespace removed (the settings are pretty-printed).
fn check(env: &[(&str, &str)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirror-proxy"));
    command.args(["--check", "--primary", "127.0.0.1:9"]);
    for name in NAMES {
        command.env_remove(name);
    }
    let output = command
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .output()
        .expect("mirror-proxy runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.split_whitespace().collect()
}

/// `text` without whitespace, to look for it in [`check`]'s output.
fn squash(text: &str) -> String {
    text.split_whitespace().collect()
}

#[test]
fn the_redaction_key_is_diff_redaction_key_and_the_old_names_warn() {
    let out = check(&[("DIFF_REDACTION_KEY", "shared-key")]);
    assert!(
        out.contains(&squash(r#"redaction_key_source: Some("explicit""#)),
        "{out}"
    );
    assert!(
        !out.contains("deprecated") && !out.contains(&squash("random one")),
        "{out}"
    );
    assert!(!out.contains("shared-key"), "the key is never printed");

    for old in ["MIRROR_REDACTION_KEY", "COMPARE_REDACT_KEY"] {
        let out = check(&[(old, "shared-key")]);
        let source = format!(r#"redaction_key_source: Some("{old}""#);
        assert!(out.contains(&squash(&source)), "{old}: {out}");
        let warning = format!("{old} is deprecated: rename it to DIFF_REDACTION_KEY");
        assert!(out.contains(&squash(&warning)), "{out}");
        assert!(!out.contains(&squash("random one")), "{out}");
        assert!(!out.contains("shared-key"), "the key is never printed");
    }

    let out = check(&[]);
    assert!(out.contains(&squash("redaction_key_source: None")), "{out}");
    let warning = "no redaction key configured (DIFF_REDACTION_KEY): using a random one";
    assert!(out.contains(&squash(warning)), "{out}");
}
