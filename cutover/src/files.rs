//! Step 6: the committed set of rendered files under `kong/`, with the
//! comment each starts with (what the step does, how it was rendered, how
//! to apply it, how to undo it), and the staleness check that keeps them
//! equal to what `kong/cutover.toml` renders today.
//!
//! ```text
//! kong/cutover.toml                       the description
//! kong/phases/<step>.kong.yaml            each step, for decK
//! kong/phases/<step>.envoy.yaml           its Envoy twin
//! kong/rollback/<step>.kong.yaml          the rollback of <step>: the step before's routing
//! kong/rollback/<step>.envoy.yaml         its twin
//! ```

use std::path::Path;

use crate::description::Description;
use crate::error::CutoverError;
use crate::phase::{Phase, Step};
use crate::plan::{Plan, Target};

/// The edge product a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    Kong,
    Envoy,
}

impl EdgeKind {
    pub fn parse(s: &str) -> Result<Self, CutoverError> {
        match s {
            "kong" => Ok(EdgeKind::Kong),
            "envoy" => Ok(EdgeKind::Envoy),
            other => Err(CutoverError::Step(format!(
                "unknown edge {other:?}; kong or envoy"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            EdgeKind::Kong => "kong",
            EdgeKind::Envoy => "envoy",
        }
    }
}

/// One rendered state: a step, or the rollback of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artefact {
    Phase(Step),
    /// The rollback *of* this step (it restores the step before).
    Rollback(Step),
}

impl Artefact {
    /// Every committed artefact: each step, then each rollback.
    pub fn all(d: &Description) -> Vec<Artefact> {
        let steps = Step::all(d);
        let mut out: Vec<Artefact> = steps.iter().copied().map(Artefact::Phase).collect();
        out.extend(
            steps
                .iter()
                .filter(|s| s.previous(d).is_some())
                .copied()
                .map(Artefact::Rollback),
        );
        out
    }

    /// The rollback of `step`, when it has one.
    pub fn rollback(d: &Description, step: Step) -> Result<Artefact, CutoverError> {
        if step.previous(d).is_some() {
            Ok(Artefact::Rollback(step))
        } else if step.phase == Phase::Decommission {
            Err(CutoverError::Step(
                "decommission has no rollback: the api-gateway Deployment is gone \
                 (docs/runbooks/decommission.md says what must hold before it)"
                    .into(),
            ))
        } else {
            Err(CutoverError::Step(
                "prep has no rollback: nothing comes before it".into(),
            ))
        }
    }

    /// The plan the file carries.
    pub fn plan(&self, d: &Description) -> Plan {
        match self {
            Artefact::Phase(s) => Plan::of(d, *s),
            Artefact::Rollback(s) => {
                Plan::of(d, s.previous(d).expect("rollbacks have a step before"))
            }
        }
    }

    /// Path relative to the repository root.
    pub fn path(&self, edge: EdgeKind) -> String {
        match self {
            Artefact::Phase(s) => format!("kong/phases/{}.{}.yaml", s.id(), edge.name()),
            Artefact::Rollback(s) => format!("kong/rollback/{}.{}.yaml", s.id(), edge.name()),
        }
    }

    /// The `cutover render` command that prints this file.
    pub fn command(&self, edge: EdgeKind) -> String {
        match self {
            Artefact::Phase(s) => format!("cutover render {} --edge {}", s.cli_args(), edge.name()),
            Artefact::Rollback(s) => format!(
                "cutover render {} --rollback --edge {}",
                s.cli_args(),
                edge.name()
            ),
        }
    }

    /// The file's text: its comment, then the YAML.
    pub fn render(&self, d: &Description, edge: EdgeKind) -> String {
        let plan = self.plan(d);
        let value = match edge {
            EdgeKind::Kong => crate::kong::document(d, &plan),
            EdgeKind::Envoy => crate::envoy::bootstrap(d, &plan),
        };
        let yaml = serde_norway::to_string(&value).expect("a JSON value is always YAML");
        format!("{}{yaml}", self.header(d, edge))
    }

    fn header(&self, d: &Description, edge: EdgeKind) -> String {
        let path = self.path(edge);
        let mut lines = Vec::new();
        let (title, step) = match self {
            Artefact::Phase(s) => (s.to_string(), *s),
            Artefact::Rollback(s) => {
                let prev = s.previous(d).expect("rollbacks have a step before");
                (format!("rollback of {s}: back to {prev}"), prev)
            }
        };
        let what = match edge {
            EdgeKind::Kong => title,
            EdgeKind::Envoy => format!("Envoy twin of {title}"),
        };
        lines.push(format!("{path}: {what}."));
        lines.push(summary(d, step));
        lines.push(String::new());
        lines.push(format!(
            "Rendered from kong/cutover.toml by `{}`.",
            self.command(edge)
        ));
        lines.push(
            "Do not edit: change kong/cutover.toml, run `cutover render --all`, commit both."
                .into(),
        );
        lines.push(String::new());
        match edge {
            EdgeKind::Kong => {
                lines.push(format!(
                    "Apply:     DECK_ORCH_KEY_AUTH_SECRET=<secret> deck sync -s {path}   (decK >= 1.12)"
                ));
                lines.push(format!(
                    "Check:     deck validate -s {path} && cutover check"
                ));
                match self {
                    Artefact::Phase(s) => {
                        if let Some(_prev) = s.previous(d) {
                            lines.push(format!(
                                "Roll back: deck sync -s {}",
                                Artefact::Rollback(*s).path(EdgeKind::Kong)
                            ));
                        }
                        if matches!(s.phase, Phase::Canary | Phase::Ramp) {
                            lines.push(format!(
                                "           or all to the api-gateway: deck sync -s {}",
                                Artefact::Phase(Step::all(d)[0]).path(EdgeKind::Kong)
                            ));
                        }
                    }
                    Artefact::Rollback(_) => {}
                }
                lines.push("Runbook:   docs/cutover.md".into());
            }
            EdgeKind::Envoy => {
                lines.push(format!(
                    "Run:       ORCH_KEY_AUTH_SECRET=<secret> envoy -c {path}"
                ));
                lines.push(format!("Check:     envoy --mode validate -c {path}"));
                lines.push(
                    "What the twin does and does not do: cutover/src/envoy.rs; runbook: docs/cutover.md"
                        .into(),
                );
            }
        }
        lines
            .into_iter()
            .map(|l| {
                if l.is_empty() {
                    "#\n".to_owned()
                } else {
                    format!("# {l}\n")
                }
            })
            .collect()
    }
}

/// One sentence on what a step does to client traffic.
pub fn summary(d: &Description, step: Step) -> String {
    let paths = d.edge.paths.join(", ");
    match step.phase {
        Phase::Prep => format!(
            "Every {paths} request goes to the api-gateway; the orchestrator is deployed with SUBMIT_API_ENABLED off and gets nothing."
        ),
        Phase::Shadow => format!(
            "Every {paths} request goes to the mirror proxy: clients get the api-gateway's answer, the orchestrator a marked copy."
        ),
        Phase::Canary | Phase::Ramp if step.percent < 100 => {
            let plan = Plan::of(d, step);
            let sticky = if plan.upstreams[0].sticky {
                " (sticky per consumer)"
            } else {
                ""
            };
            format!(
                "{} % of {paths} to the orchestrator, {} % to the api-gateway{sticky}; a target failing its health check gets nothing.",
                step.percent,
                100 - step.percent
            )
        }
        Phase::Canary | Phase::Ramp => format!(
            "All of {paths} to the orchestrator; the api-gateway stays a target at weight 0 until decommission."
        ),
        Phase::Decommission => format!(
            "Only the orchestrator serves {paths}; no service, route or target names the api-gateway ({}).",
            Target::ApiGateway.backend(d).host
        ),
    }
}

/// Files under `root` that differ from what the description renders
/// (or are missing), and rendered-looking files nothing renders any more.
pub fn stale(d: &Description, root: &Path) -> Result<Vec<String>, CutoverError> {
    let mut out = Vec::new();
    let mut expected = Vec::new();
    for a in Artefact::all(d) {
        for edge in [EdgeKind::Kong, EdgeKind::Envoy] {
            let rel = a.path(edge);
            let want = a.render(d, edge);
            match std::fs::read_to_string(root.join(&rel)) {
                Ok(have) if have == want => {}
                Ok(_) => out.push(format!("{rel} is stale: run `cutover render --all`")),
                Err(_) => out.push(format!("{rel} is missing: run `cutover render --all`")),
            }
            expected.push(rel);
        }
    }
    for dir in ["kong/phases", "kong/rollback"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            if !expected.contains(&rel) {
                out.push(format!("{rel} is rendered from nothing: delete it"));
            }
        }
    }
    Ok(out)
}

/// Writes every artefact under `root`; returns the paths written.
pub fn write_all(d: &Description, root: &Path) -> Result<Vec<String>, CutoverError> {
    let mut written = Vec::new();
    for dir in ["kong/phases", "kong/rollback"] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).map_err(|source| CutoverError::Write {
            path: dir.clone(),
            source,
        })?;
        // Files of steps the description no longer has go too.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".kong.yaml") || name.ends_with(".envoy.yaml") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    for a in Artefact::all(d) {
        for edge in [EdgeKind::Kong, EdgeKind::Envoy] {
            let rel = a.path(edge);
            let path = root.join(&rel);
            std::fs::write(&path, a.render(d, edge))
                .map_err(|source| CutoverError::Write { path, source })?;
            written.push(rel);
        }
    }
    Ok(written)
}
