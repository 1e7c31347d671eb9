//! Step 5b: the phase invariants, proven on the files as written (each is
//! read back with [`KongFile::routing`] / [`EnvoyFile::routing`], so a
//! hand edit that breaks one is caught even if the renderer is right):
//!
//! - prep sends nothing to the orchestrator;
//! - shadow never answers a client from the orchestrator (only the mirror
//!   proxy, which answers from the api-gateway);
//! - each canary and ramp step's weights equal its percentage;
//! - decommission names the api-gateway nowhere;
//! - every step strips the shadow headers from client traffic (and the
//!   key-auth route adds Kong's secret after stripping a client's copy);
//! - the rollback of step N routes exactly as step N−1;
//! - each Envoy twin routes exactly as its Kong file and strips the same
//!   headers.

use std::path::Path;

use serde_json::Value;

use crate::description::{Auth, Description};
use crate::envoy::EnvoyFile;
use crate::error::CutoverError;
use crate::files::{Artefact, EdgeKind};
use crate::kong::{KongFile, check_file};
use crate::phase::{Phase, Step};
use crate::plan::Target;

/// The invariants of `step` on its Kong file.
pub fn for_step(d: &Description, step: Step, kong: &KongFile) -> Vec<String> {
    let mut out = Vec::new();
    let at = |m: String| format!("{}: {step}: {m}", kong.path);
    match kong.routing(d) {
        Err(problems) => out.extend(problems.into_iter().map(at)),
        Ok(routing) => {
            for ((route, _), r) in &routing.0 {
                let orch = r.shares.percent(Target::Orchestrator);
                let ok = match step.phase {
                    Phase::Shadow => r.shares.targets().eq([Target::MirrorProxy]),
                    _ => {
                        (orch - f64::from(step.percent)).abs() < 1e-9
                            && !r.shares.targets().any(|t| t == Target::MirrorProxy)
                    }
                };
                if !ok {
                    out.push(at(match step.phase {
                        Phase::Shadow => format!(
                            "route {route} sends to {}; in shadow only the mirror proxy may answer clients",
                            r.shares
                        ),
                        _ => format!(
                            "route {route} sends {} — the orchestrator's share must be {} %",
                            r.shares, step.percent
                        ),
                    }));
                }
            }
        }
    }
    if step.phase == Phase::Decommission {
        let text = kong.doc.to_string().to_ascii_lowercase();
        if text.contains(&d.api_gateway.host.to_ascii_lowercase()) {
            out.push(at(format!(
                "names the api-gateway ({}); decommission removes every reference",
                d.api_gateway.host
            )));
        }
    }
    for (_, route) in kong.routes() {
        let name = route["name"].as_str().unwrap_or_default();
        let auth = d
            .edge
            .routes
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.auth);
        let transformer = kong
            .route_plugins(route)
            .iter()
            .find(|p| p["name"] == "request-transformer")
            .map(|p| &p["config"]);
        let Some(config) = transformer else {
            out.push(at(format!(
                "route {name} has no request-transformer: the shadow headers would pass"
            )));
            continue;
        };
        let removed = strings(&config["remove"]["headers"]);
        for h in d.stripped_headers() {
            if !removed.iter().any(|r| r.eq_ignore_ascii_case(&h)) {
                out.push(at(format!("route {name} does not strip {h}")));
            }
        }
        let added = strings(&config["add"]["headers"]);
        let adds_secret = added.iter().any(|a| {
            a.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(&d.plugins.key_auth.secret_header))
        });
        if auth == Some(Auth::KeyAuth) && !adds_secret {
            out.push(at(format!(
                "key-auth route {name} does not add {} (the orchestrator's key-auth mode would refuse every request)",
                d.plugins.key_auth.secret_header
            )));
        }
        if auth == Some(Auth::Jwt) && adds_secret {
            out.push(at(format!("jwt route {name} adds the key-auth secret")));
        }
    }
    out
}

/// The rollback of `of` must route exactly as the step before it.
pub fn for_rollback(
    d: &Description,
    of: Step,
    rollback: &KongFile,
    previous: &KongFile,
) -> Vec<String> {
    match (rollback.routing(d), previous.routing(d)) {
        (Ok(r), Ok(p)) => r
            .differences(&p)
            .into_iter()
            .map(|m| {
                format!(
                    "{}: the rollback of {of} does not route like {}: {m}",
                    rollback.path, previous.path
                )
            })
            .collect(),
        (Err(e), _) | (_, Err(e)) => e,
    }
}

/// The Envoy twin must route as its Kong file and strip the same headers.
pub fn for_twin(d: &Description, kong: &KongFile, envoy: &EnvoyFile) -> Vec<String> {
    let mut out = Vec::new();
    match (kong.routing(d), envoy.routing(d)) {
        (Ok(k), Ok(e)) => out.extend(
            k.differences(&e)
                .into_iter()
                .map(|m| format!("{} is no twin of {}: {m}", envoy.path, kong.path)),
        ),
        (Err(p), _) | (_, Err(p)) => out.extend(p),
    }
    for vh in envoy.virtual_hosts() {
        let removed = strings(&vh["request_headers_to_remove"]);
        for h in d.stripped_headers() {
            if !removed.iter().any(|r| r.eq_ignore_ascii_case(&h)) {
                out.push(format!(
                    "{}: virtual host {} does not strip {h}",
                    envoy.path, vh["name"]
                ));
            }
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Every check on the committed tree under `root`: each Kong file passes
/// [`check_file`] and its step's invariants, each rollback routes as the
/// step before, each twin as its Kong file. Missing files are problems
/// too (the staleness check says which are out of date).
pub fn check_tree(d: &Description, root: &Path) -> Result<Vec<String>, CutoverError> {
    let load = |a: &Artefact, edge: EdgeKind| -> Result<Option<(String, String)>, CutoverError> {
        let rel = a.path(edge);
        match std::fs::read_to_string(root.join(&rel)) {
            Ok(t) => Ok(Some((rel, t))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CutoverError::Read {
                path: root.join(&rel),
                source,
            }),
        }
    };
    let mut out = Vec::new();
    let mut kong_files = Vec::new();
    for a in Artefact::all(d) {
        let Some((rel, text)) = load(&a, EdgeKind::Kong)? else {
            out.push(format!("{} is missing", a.path(EdgeKind::Kong)));
            continue;
        };
        let kong = KongFile::parse(&rel, &text)?;
        out.extend(
            check_file(d, &kong)
                .into_iter()
                .map(|m| format!("{rel}: {m}")),
        );
        match a {
            Artefact::Phase(step) => out.extend(for_step(d, step, &kong)),
            Artefact::Rollback(of) => {
                if let Some(prev) = of.previous(d) {
                    out.extend(for_step(d, prev, &kong));
                }
            }
        }
        match load(&a, EdgeKind::Envoy)? {
            None => out.push(format!("{} is missing", a.path(EdgeKind::Envoy))),
            Some((erel, etext)) => {
                let envoy = EnvoyFile::parse(&erel, &etext)?;
                out.extend(for_twin(d, &kong, &envoy));
            }
        }
        kong_files.push((a, kong));
    }
    for (a, rollback) in &kong_files {
        let Artefact::Rollback(of) = a else { continue };
        let Some(prev) = of.previous(d) else { continue };
        if let Some((_, previous)) = kong_files.iter().find(|(b, _)| *b == Artefact::Phase(prev)) {
            out.extend(for_rollback(d, *of, rollback, previous));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;

    fn d() -> Description {
        Description::parse(include_str!("../../kong/cutover.toml")).unwrap()
    }

    fn kong(d: &Description, id: &str) -> KongFile {
        let step = Step::all(d).into_iter().find(|s| s.id() == id).unwrap();
        KongFile {
            path: id.into(),
            doc: crate::kong::document(d, &Plan::of(d, step)),
        }
    }

    fn step(d: &Description, id: &str) -> Step {
        Step::all(d).into_iter().find(|s| s.id() == id).unwrap()
    }

    #[test]
    fn rendered_steps_keep_every_invariant() {
        let d = d();
        for s in Step::all(&d) {
            assert_eq!(for_step(&d, s, &kong(&d, &s.id())), Vec::<String>::new());
        }
    }

    #[test]
    fn a_shadow_file_that_lets_the_orchestrator_answer_fails() {
        let d = d();
        let mut f = kong(&d, "1-shadow");
        f.doc["services"][0]["host"] = "sms-submit".into();
        f.doc["upstreams"][0]["targets"] =
            serde_json::json!([{"target": d.orchestrator.target(), "weight": 100}]);
        let p = for_step(&d, step(&d, "1-shadow"), &f);
        assert!(
            p.iter().any(|m| m.contains("only the mirror proxy")),
            "{p:?}"
        );
    }

    #[test]
    fn weights_that_miss_the_percentage_fail() {
        let d = d();
        let mut f = kong(&d, "3-ramp-25");
        f.doc["upstreams"][0]["targets"][0]["weight"] = 70.into();
        let p = for_step(&d, step(&d, "3-ramp-25"), &f);
        assert!(p.iter().any(|m| m.contains("must be 25 %")), "{p:?}");
    }

    #[test]
    fn a_decommission_that_still_names_the_api_gateway_fails() {
        let d = d();
        let mut f = kong(&d, "4-decommission");
        f.doc["upstreams"][0]["targets"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"target": d.api_gateway.target(), "weight": 0}));
        let p = for_step(&d, step(&d, "4-decommission"), &f);
        assert!(
            p.iter().any(|m| m.contains("names the api-gateway")),
            "{p:?}"
        );
    }

    #[test]
    fn a_route_that_forgets_a_shadow_header_fails() {
        let d = d();
        let mut f = kong(&d, "2-canary-5");
        f.doc["services"][0]["routes"][1]["plugins"][3]["config"]["remove"]["headers"] =
            serde_json::json!(["X-Shadow-Request", "X-Kong-Key-Auth-Secret"]);
        let p = for_step(&d, step(&d, "2-canary-5"), &f);
        assert!(
            p.iter()
                .any(|m| m.contains("does not strip X-Shadow-Credential")),
            "{p:?}"
        );
    }

    #[test]
    fn a_rollback_that_does_not_restore_the_step_before_fails() {
        let d = d();
        let wrong = kong(&d, "2-canary-5");
        let previous = kong(&d, "3-ramp-25");
        let p = for_rollback(&d, step(&d, "3-ramp-50"), &wrong, &previous);
        assert!(p.iter().any(|m| m.contains("does not route like")), "{p:?}");
        let right = kong(&d, "3-ramp-25");
        assert!(for_rollback(&d, step(&d, "3-ramp-50"), &right, &previous).is_empty());
    }

    #[test]
    fn a_twin_with_other_weights_fails() {
        let d = d();
        let s = step(&d, "3-ramp-50");
        let plan = Plan::of(&d, s);
        let mut envoy = EnvoyFile {
            path: "twin".into(),
            doc: crate::envoy::bootstrap(&d, &plan),
        };
        let k = kong(&d, "3-ramp-50");
        assert_eq!(for_twin(&d, &k, &envoy), Vec::<String>::new());
        envoy.doc["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
            [1]["load_balancing_weight"] = 10.into();
        let p = for_twin(&d, &k, &envoy);
        assert!(p.iter().any(|m| m.contains("no twin")), "{p:?}");
    }
}
