//! Step 3: what the edge does in a step, independent of the edge product:
//! which upstream the submit routes use and how the upstream's targets are
//! weighted. Both renderers (Kong, Envoy) draw from a [`Plan`], and the
//! checks read a [`Routing`] back out of each rendered file to prove the
//! phase invariants on what was written, not on what was meant.

use std::collections::BTreeMap;
use std::fmt;

use crate::description::{Backend, Description};
use crate::phase::{Phase, Step};

/// A backend of the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    ApiGateway,
    Orchestrator,
    MirrorProxy,
}

impl Target {
    pub const ALL: [Target; 3] = [
        Target::ApiGateway,
        Target::Orchestrator,
        Target::MirrorProxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::ApiGateway => "api-gateway",
            Target::Orchestrator => "orchestrator",
            Target::MirrorProxy => "mirror-proxy",
        }
    }

    pub fn backend(self, d: &Description) -> &Backend {
        match self {
            Target::ApiGateway => &d.api_gateway,
            Target::Orchestrator => &d.orchestrator,
            Target::MirrorProxy => &d.mirror_proxy,
        }
    }

    /// The target a `host:port` names in this description.
    pub fn from_address(d: &Description, host: &str, port: u16) -> Option<Target> {
        Target::ALL.into_iter().find(|t| {
            let b = t.backend(d);
            b.host.eq_ignore_ascii_case(host) && b.port == port
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One upstream (Kong) / cluster (Envoy).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamPlan {
    pub name: String,
    /// Targets and weights; weight 0 keeps a target declared but unused.
    pub targets: Vec<(Target, u16)>,
    pub sticky: bool,
    /// Active health checks on this path, when there is another target to
    /// fail over to. With a single target a failed probe would only turn
    /// a degraded backend into no backend at all.
    pub health_path: Option<String>,
}

impl UpstreamPlan {
    pub fn active_targets(&self) -> impl Iterator<Item = (Target, u16)> + '_ {
        self.targets.iter().copied().filter(|(_, w)| *w > 0)
    }
}

/// The edge in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub step: Step,
    /// The upstream the service (every submit route) sends to.
    pub service_upstream: String,
    pub upstreams: Vec<UpstreamPlan>,
}

impl Plan {
    /// The plan of `step`.
    pub fn of(d: &Description, step: Step) -> Plan {
        let main = d.edge.service.clone();
        let shadow = format!("{}-shadow", d.edge.service);
        let split =
            |api: u16, orch: u16| vec![(Target::ApiGateway, api), (Target::Orchestrator, orch)];
        let (service_upstream, targets, with_shadow) = match step.phase {
            Phase::Prep => (main.clone(), vec![(Target::ApiGateway, 100)], false),
            Phase::Shadow => (shadow.clone(), vec![(Target::ApiGateway, 100)], true),
            Phase::Canary | Phase::Ramp => {
                let p = u16::from(step.percent);
                (main.clone(), split(100 - p, p), false)
            }
            Phase::Decommission => (main.clone(), vec![(Target::Orchestrator, 100)], false),
        };
        let mut main_upstream = UpstreamPlan {
            name: main,
            targets,
            sticky: d.upstream.sticky,
            health_path: None,
        };
        // Hashing and health checks only mean something with two sides.
        if main_upstream.active_targets().count() > 1 {
            main_upstream.health_path = Some(d.api_gateway.health_path.clone());
        } else {
            main_upstream.sticky = false;
        }
        let mut upstreams = vec![main_upstream];
        if with_shadow {
            upstreams.push(UpstreamPlan {
                name: shadow,
                targets: vec![(Target::MirrorProxy, 100)],
                sticky: false,
                health_path: None,
            });
        }
        Plan {
            step,
            service_upstream,
            upstreams,
        }
    }

    /// What the routes of this plan do.
    pub fn routing(&self, d: &Description) -> Routing {
        let upstream = self
            .upstreams
            .iter()
            .find(|u| u.name == self.service_upstream)
            .expect("the service's upstream is in the plan");
        let route = RouteRouting {
            paths: d.edge.paths.clone(),
            shares: Shares::from_weights(upstream.active_targets()),
            sticky: upstream.sticky && upstream.active_targets().count() > 1,
        };
        Routing(
            d.edge
                .routes
                .iter()
                .map(|r| ((r.name.clone(), sorted(&r.hosts)), route.clone()))
                .collect(),
        )
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
    v.sort();
    v
}

/// Where requests go, as weights reduced to lowest terms (95/5 and 19/1
/// route the same).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shares(pub BTreeMap<Target, u32>);

impl Shares {
    pub fn from_weights(weights: impl IntoIterator<Item = (Target, u16)>) -> Shares {
        let mut m: BTreeMap<Target, u32> = BTreeMap::new();
        for (t, w) in weights {
            if w > 0 {
                *m.entry(t).or_default() += u32::from(w);
            }
        }
        let g = m.values().copied().fold(0, gcd);
        if g > 1 {
            for w in m.values_mut() {
                *w /= g;
            }
        }
        Shares(m)
    }

    /// Share of `t` in percent (0 when nothing is routed).
    pub fn percent(&self, t: Target) -> f64 {
        let total: u32 = self.0.values().sum();
        if total == 0 {
            return 0.0;
        }
        f64::from(self.0.get(&t).copied().unwrap_or(0)) * 100.0 / f64::from(total)
    }

    pub fn targets(&self) -> impl Iterator<Item = Target> + '_ {
        self.0.keys().copied()
    }
}

impl fmt::Display for Shares {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("nowhere");
        }
        let parts: Vec<String> = self
            .0
            .keys()
            .map(|t| format!("{t} {:.0} %", self.percent(*t)))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One route's behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRouting {
    pub paths: Vec<String>,
    pub shares: Shares,
    pub sticky: bool,
}

/// Every route's behaviour, keyed by (route name, sorted hosts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing(pub BTreeMap<(String, Vec<String>), RouteRouting>);

impl Routing {
    /// The differences from `other`, in words; empty when they route alike.
    pub fn differences(&self, other: &Routing) -> Vec<String> {
        let mut out = Vec::new();
        for (key, mine) in &self.0 {
            match other.0.get(key) {
                None => out.push(format!("route {} {:?} is missing", key.0, key.1)),
                Some(theirs) if theirs != mine => out.push(format!(
                    "route {}: {} (sticky {}, paths {:?}) vs {} (sticky {}, paths {:?})",
                    key.0,
                    mine.shares,
                    mine.sticky,
                    mine.paths,
                    theirs.shares,
                    theirs.sticky,
                    theirs.paths
                )),
                Some(_) => {}
            }
        }
        for key in other.0.keys() {
            if !self.0.contains_key(key) {
                out.push(format!("route {} {:?} is extra", key.0, key.1));
            }
        }
        out
    }

    /// The one share every route has (the checks require routes to agree).
    pub fn shares(&self) -> Option<&Shares> {
        let mut it = self.0.values().map(|r| &r.shares);
        let first = it.next()?;
        it.all(|s| s == first).then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Description {
        Description::parse(include_str!("../../kong/cutover.toml")).unwrap()
    }

    #[test]
    fn weights_follow_the_percentage() {
        let d = d();
        for step in Step::all(&d) {
            let r = Plan::of(&d, step).routing(&d);
            let shares = r.shares().unwrap();
            match step.phase {
                Phase::Shadow => assert_eq!(shares.percent(Target::MirrorProxy), 100.0),
                _ => assert_eq!(
                    shares.percent(Target::Orchestrator),
                    f64::from(step.percent),
                    "{step}"
                ),
            }
        }
    }

    #[test]
    fn health_checks_only_where_there_is_somewhere_else_to_go() {
        let d = d();
        for step in Step::all(&d) {
            let plan = Plan::of(&d, step);
            let main = &plan.upstreams[0];
            let expected = matches!(step.phase, Phase::Canary | Phase::Ramp) && step.percent < 100;
            assert_eq!(main.health_path.is_some(), expected, "{step}");
        }
    }

    #[test]
    fn shares_compare_in_lowest_terms() {
        let a = Shares::from_weights([(Target::ApiGateway, 95), (Target::Orchestrator, 5)]);
        let b = Shares::from_weights([(Target::ApiGateway, 19), (Target::Orchestrator, 1)]);
        assert_eq!(a, b);
        let c = Shares::from_weights([(Target::ApiGateway, 0), (Target::Orchestrator, 100)]);
        assert_eq!(c.to_string(), "orchestrator 100 %");
    }
}
