//! The SLI rules file (`docs/prometheus/rules.yml`) as the gate reads it:
//! recording rules by name, alerting rules with their expression and
//! summary, and every range in an expression re-windowed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::error::CutoverError;

#[derive(Debug, Deserialize)]
struct File {
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Group {
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// One alerting rule.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
}

/// The rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    pub recording: BTreeMap<String, String>,
    pub alerts: Vec<Alert>,
}

impl Rules {
    pub fn load(path: &Path) -> Result<Self, CutoverError> {
        let text = std::fs::read_to_string(path).map_err(|source| CutoverError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, CutoverError> {
        let file: File =
            serde_norway::from_str(text).map_err(|e| CutoverError::Rules(e.to_string()))?;
        let mut recording = BTreeMap::new();
        let mut alerts = Vec::new();
        for rule in file.groups.into_iter().flat_map(|g| g.rules) {
            match (rule.record, rule.alert) {
                (Some(name), None) => {
                    recording.insert(name, rule.expr);
                }
                (None, Some(name)) => alerts.push(Alert {
                    name,
                    expr: rule.expr,
                    labels: rule.labels,
                    summary: rule.annotations.get("summary").cloned().unwrap_or_default(),
                }),
                _ => {
                    return Err(CutoverError::Rules(
                        "a rule needs exactly one of record and alert".into(),
                    ));
                }
            }
        }
        if alerts.is_empty() {
            return Err(CutoverError::Rules(
                "no alerting rules: nothing to gate on".into(),
            ));
        }
        Ok(Rules { recording, alerts })
    }
}

/// `expr` with every range selector (`[5m]`) replaced by `window`.
pub fn rewindow(expr: &str, window: Duration) -> String {
    let ranges =
        Regex::new(r"\[\s*\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\s*\]").expect("static regex");
    ranges
        .replace_all(expr, format!("[{}]", prometheus_duration(window)))
        .into_owned()
}

/// A duration as Prometheus writes one (`90s`, `30m`, `1500ms`).
pub fn prometheus_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_rules_load() {
        let r = Rules::parse(include_str!("../../../docs/prometheus/rules.yml")).unwrap();
        assert!(
            r.recording
                .contains_key("orchestrator:availability:ratio_rate5m")
        );
        assert!(
            r.alerts
                .iter()
                .any(|a| a.name == "OrchestratorLatencyP99High")
        );
    }

    #[test]
    fn every_range_takes_the_window() {
        let e = "sum(rate(x[5m])) / sum(rate(y[1h30m]))";
        assert_eq!(
            rewindow(e, Duration::from_secs(10)),
            "sum(rate(x[10s])) / sum(rate(y[10s]))"
        );
        assert_eq!(prometheus_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(prometheus_duration(Duration::from_millis(2500)), "2500ms");
    }
}
