//! An overlay that accepts a client-visible change is said out loud at
//! start (and at every reload): the shipped rules explain value noise only.

use std::process::Command;

fn check(rules: &[&std::path::Path]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirror-proxy"));
    command.args(["--check", "--primary", "127.0.0.1:9"]);
    for path in rules {
        command.arg("--rules").arg(path);
    }
    let output = command
        .env("DIFF_REDACTION_KEY", "k")
        .env("RUST_LOG", "info")
        .output()
        .expect("mirror-proxy runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}");
    stdout
}

#[test]
fn an_overlay_that_accepts_a_contract_change_is_warned_about_and_the_shipped_rules_are_not() {
    let shipped = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/shadow.toml"));
    let quiet = check(&[shipped]);
    assert!(!quiet.contains("contract change"), "{quiet}");

    let dir = tempfile::tempdir().expect("temp dir");
    let overlay = dir.path().join("accepted.toml");
    std::fs::write(
        &overlay,
        "version = 1\n[[routes.\"POST /v1/sms/send\".status_class]]\nname = \"send-accepted\"\nprimary = [201]\ncandidate = [202]\n",
    )
    .expect("write overlay");
    let loud = check(&[shipped, &overlay]);
    let warning = loud
        .lines()
        .find(|l| l.contains("accept a contract change"))
        .unwrap_or_else(|| panic!("no warning: {loud}"));
    assert!(
        warning.contains("\"level\":\"WARN\"")
            && warning.contains("\"contract_change\":\"status-class:send-accepted\""),
        "{warning}"
    );
}
