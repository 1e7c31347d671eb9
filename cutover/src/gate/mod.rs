//! Step 7: the gate before each canary and ramp step.
//!
//! "25 % → 50 % → 100 % if SLIs hold" (the plan, §3): the gate asks
//! Prometheus whether they held over a window. It reads the committed
//! rules file (`docs/prometheus/rules.yml`), evaluates every alerting rule
//! with its recording rules' ranges set to the window ([`expr`] says why
//! and how), and says READY only when
//!
//! 1. Prometheus scrapes the orchestrator (`up{job=…}` is 1),
//! 2. the orchestrator answered enough live `/v1/sms/*` requests in the
//!    window to judge at all (a quiet canary proves nothing),
//! 3. no `severity: page` alert condition holds over the window, and
//! 4. Prometheus itself is firing none of the file's `page` alerts.
//!
//! A condition of another severity (`ticket`: degraded, not breaching an
//! objective, such as Redis fallbacks) is printed as a warning and does not
//! hold the step back, unless `--strict`: the rules file's own header
//! makes pages the rollback criterion. Anything the gate cannot evaluate is
//! NOT READY (or an error), never READY.

pub mod expr;
pub mod prometheus;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::CutoverError;
use expr::{Labels, Vector};
use prometheus::Prometheus;
use rules::{Rules, prometheus_duration, rewindow};

/// How the gate is run.
#[derive(Debug, Clone)]
pub struct GateSettings {
    pub prometheus: String,
    pub window: Duration,
    pub min_requests: u64,
    /// The orchestrator's scrape job.
    pub job: String,
    /// Every alert blocks, whatever its severity.
    pub strict: bool,
}

#[derive(Debug, Clone)]
pub struct Gate {
    rules: Rules,
    rules_path: PathBuf,
    settings: GateSettings,
    alerts: Vec<(rules::Alert, expr::Expr)>,
}

/// One line of the decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// A failed check that does not block is a warning.
    pub blocking: bool,
    pub detail: String,
}

/// The gate's answer.
#[derive(Debug, Clone)]
pub struct Decision {
    pub header: String,
    pub checks: Vec<Check>,
}

impl Decision {
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.passed || !c.blocking)
    }

    /// The failed blocking checks, one phrase each.
    pub fn reasons(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed && c.blocking)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    /// Failed checks that do not block.
    pub fn warnings(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed && !c.blocking)
            .map(|c| c.name.clone())
            .collect()
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header)?;
        for c in &self.checks {
            writeln!(
                f,
                "  {:<7} {}: {}",
                match (c.passed, c.blocking) {
                    (true, _) => "ok",
                    (false, true) => "FAILED",
                    (false, false) => "warning",
                },
                c.name,
                c.detail
            )?;
        }
        let warnings = self.warnings();
        if self.ready() && warnings.is_empty() {
            writeln!(f, "READY: every SLI rule held over the window")
        } else if self.ready() {
            writeln!(
                f,
                "READY: every page-level SLI rule held over the window (warnings: {})",
                warnings.join(", ")
            )
        } else {
            writeln!(f, "NOT READY: {}", self.reasons().join("; "))
        }
    }
}

impl Gate {
    /// Loads the rules and parses every alert (an alert the gate cannot
    /// evaluate is an error now, not a silent pass later).
    pub fn load(rules_path: &Path, settings: GateSettings) -> Result<Self, CutoverError> {
        let rules = Rules::load(rules_path)?;
        let mut alerts = Vec::new();
        for a in &rules.alerts {
            let e = expr::parse(&a.expr)
                .map_err(|e| CutoverError::Rules(format!("alert {}: {e}", a.name)))?;
            alerts.push((a.clone(), e));
        }
        Ok(Self {
            rules,
            rules_path: rules_path.to_owned(),
            settings,
            alerts,
        })
    }

    /// Whether `alert` holds the step back when its condition holds.
    fn blocks(&self, alert: &rules::Alert) -> bool {
        self.settings.strict || alert.labels.get("severity").map(String::as_str) == Some("page")
    }

    /// Asks Prometheus and decides.
    pub async fn decide(&self) -> Result<Decision, CutoverError> {
        let prom = Prometheus::new(&self.settings.prometheus)?;
        let window = prometheus_duration(self.settings.window);
        let header = format!(
            "cutover gate: SLI rules of {} over the last {window}, from {}",
            self.rules_path.display(),
            prom.base()
        );
        let mut checks = Vec::new();

        let job = &self.settings.job;
        let up = prom.query(&format!("up{{job=\"{job}\"}}")).await?;
        checks.push(Check {
            name: "scrape".into(),
            blocking: true,
            passed: !up.is_empty() && up.iter().all(|(_, v)| *v == 1.0),
            detail: if up.is_empty() {
                format!(
                    "Prometheus has no target with job=\"{job}\": it cannot see the orchestrator"
                )
            } else {
                format!(
                    "job {job}: {} of {} targets up",
                    up.iter().filter(|(_, v)| *v == 1.0).count(),
                    up.len()
                )
            },
        });

        let traffic = prom
            .query(&format!(
                "sum(increase(orchestrator_http_requests_total{{traffic=\"live\",route=~\"/v1/sms/.+\"}}[{window}]))"
            ))
            .await?;
        let requests = traffic.first().map(|(_, v)| *v).unwrap_or(0.0);
        let requests = if requests.is_nan() { 0.0 } else { requests };
        checks.push(Check {
            name: "traffic".into(),
            blocking: true,
            passed: requests >= self.settings.min_requests as f64,
            detail: format!(
                "{requests:.0} live /v1/sms/* requests answered by the orchestrator (at least {} needed to judge)",
                self.settings.min_requests
            ),
        });

        let mut recorded: BTreeMap<String, Vector> = BTreeMap::new();
        for (_, e) in &self.alerts {
            for name in e.names() {
                if recorded.contains_key(&name) {
                    continue;
                }
                let q = match self.rules.recording.get(&name) {
                    Some(expr) => rewindow(expr, self.settings.window),
                    None => name.clone(),
                };
                recorded.insert(name, prom.query(&q).await?);
            }
        }
        for (alert, e) in &self.alerts {
            let firing = e.eval(&recorded)?;
            let inputs: usize = e
                .names()
                .iter()
                .map(|n| recorded.get(n).map_or(0, Vec::len))
                .sum();
            let signal = alert.labels.get("signal").cloned().unwrap_or_default();
            checks.push(Check {
                name: format!("{} ({signal})", alert.name),
                passed: firing.is_empty(),
                blocking: self.blocks(alert),
                detail: if !firing.is_empty() {
                    firing
                        .iter()
                        .map(|(labels, v)| {
                            format!(
                                "{} — {} {}",
                                summary(&alert.summary, labels),
                                value(*v),
                                labels_text(labels)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                } else if inputs == 0 {
                    "no data in the window (the condition cannot hold)".into()
                } else {
                    let values: Vec<String> = e
                        .names()
                        .iter()
                        .flat_map(|n| recorded.get(n).into_iter().flatten())
                        .map(|(l, v)| format!("{}{}", value(*v), labels_text(l)))
                        .collect();
                    format!("holds ({})", values.join(", "))
                },
            });
        }

        let names: Vec<&str> = self
            .alerts
            .iter()
            .filter(|(a, _)| self.blocks(a))
            .map(|(a, _)| a.name.as_str())
            .collect();
        let firing = prom
            .query(&format!(
                "ALERTS{{alertstate=\"firing\",alertname=~\"{}\"}}",
                names.join("|")
            ))
            .await?;
        checks.push(Check {
            name: "alerts".into(),
            passed: firing.is_empty(),
            blocking: true,
            detail: if firing.is_empty() {
                "Prometheus fires none of the file's blocking alerts".into()
            } else {
                format!(
                    "Prometheus is firing {}",
                    firing
                        .iter()
                        .map(|(l, _)| l.get("alertname").cloned().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        });
        Ok(Decision { header, checks })
    }
}

fn value(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v}")
    } else {
        format!("{v:.4}")
    }
}

fn labels_text(l: &Labels) -> String {
    if l.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", parts.join(","))
}

/// The alert's summary with `{{ $labels.x }}` filled in.
fn summary(template: &str, labels: &Labels) -> String {
    let re = regex::Regex::new(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
        .expect("static regex");
    re.replace_all(template, |c: &regex::Captures<'_>| {
        labels.get(&c[1]).cloned().unwrap_or_default()
    })
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_take_their_labels() {
        let mut l = Labels::new();
        l.insert("route".into(), "/v1/sms/send".into());
        assert_eq!(
            summary("p99 latency of {{ $labels.route }} above its objective", &l),
            "p99 latency of /v1/sms/send above its objective"
        );
    }

    #[test]
    fn the_gate_loads_the_committed_rules() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/prometheus/rules.yml"
        ));
        let gate = Gate::load(
            path,
            GateSettings {
                prometheus: "http://127.0.0.1:9".into(),
                window: Duration::from_secs(600),
                min_requests: 1,
                job: "orchestrator".into(),
                strict: false,
            },
        )
        .unwrap();
        assert!(gate.alerts.len() >= 7);
    }
}
