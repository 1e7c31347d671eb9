//! Step 2: the steps of the migration plan, in order. A *phase* is the
//! plan's (0 prep … 4 decommission); a *step* is one rendered state: the
//! ramp is one phase of several steps (25, 50, 100 %).

use std::fmt;

use crate::description::Description;
use crate::error::CutoverError;

/// A phase of the migration plan (docs/migration-plan.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// 0: the orchestrator is deployed with `SUBMIT_API_ENABLED` off; the
    /// edge still sends everything to the api-gateway.
    Prep,
    /// 1: everything to the mirror proxy, which answers from the
    /// api-gateway and tees a copy to the orchestrator.
    Shadow,
    /// 2: a small share straight to the orchestrator.
    Canary,
    /// 3: the share rises step by step to all of it.
    Ramp,
    /// 4: only the orchestrator; the api-gateway is gone from the edge.
    Decommission,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Prep,
        Phase::Shadow,
        Phase::Canary,
        Phase::Ramp,
        Phase::Decommission,
    ];

    /// The plan's number.
    pub fn number(self) -> u8 {
        match self {
            Phase::Prep => 0,
            Phase::Shadow => 1,
            Phase::Canary => 2,
            Phase::Ramp => 3,
            Phase::Decommission => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Prep => "prep",
            Phase::Shadow => "shadow",
            Phase::Canary => "canary",
            Phase::Ramp => "ramp",
            Phase::Decommission => "decommission",
        }
    }

    pub fn parse(s: &str) -> Result<Self, CutoverError> {
        Phase::ALL
            .into_iter()
            .find(|p| p.name() == s || p.number().to_string() == s)
            .ok_or_else(|| {
                CutoverError::Step(format!(
                    "unknown phase {s:?}; one of prep, shadow, canary, ramp, decommission (or 0–4)"
                ))
            })
    }

    fn takes_percent(self) -> bool {
        matches!(self, Phase::Canary | Phase::Ramp)
    }
}

/// One rendered state of the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Step {
    pub phase: Phase,
    /// Share of client requests the orchestrator answers, in percent
    /// (0 in prep and shadow, 100 in decommission).
    pub percent: u8,
}

impl Step {
    /// Every step of the description, in the order the cutover walks them.
    pub fn all(d: &Description) -> Vec<Step> {
        let mut steps = vec![
            Step {
                phase: Phase::Prep,
                percent: 0,
            },
            Step {
                phase: Phase::Shadow,
                percent: 0,
            },
            Step {
                phase: Phase::Canary,
                percent: d.steps.canary,
            },
        ];
        steps.extend(d.steps.ramp.iter().map(|&percent| Step {
            phase: Phase::Ramp,
            percent,
        }));
        steps.push(Step {
            phase: Phase::Decommission,
            percent: 100,
        });
        steps
    }

    /// The step `--phase NAME [--percent N]` names, checked against the
    /// description (a canary or ramp percentage must be one of its steps,
    /// so a rendered file always has a committed twin).
    pub fn parse(d: &Description, phase: &str, percent: Option<u8>) -> Result<Step, CutoverError> {
        let phase = Phase::parse(phase)?;
        let steps: Vec<Step> = Step::all(d)
            .into_iter()
            .filter(|s| s.phase == phase)
            .collect();
        match (phase.takes_percent(), percent) {
            (false, None) => Ok(steps[0]),
            (false, Some(p)) => Err(CutoverError::Step(format!(
                "phase {} takes no --percent (given {p})",
                phase.name()
            ))),
            (true, None) if steps.len() == 1 => Ok(steps[0]),
            (true, None) => Err(CutoverError::Step(format!(
                "phase {} needs --percent, one of {:?}",
                phase.name(),
                steps.iter().map(|s| s.percent).collect::<Vec<_>>()
            ))),
            (true, Some(p)) => steps.into_iter().find(|s| s.percent == p).ok_or_else(|| {
                CutoverError::Step(format!(
                    "{}% is not a {} step of kong/cutover.toml (steps.{}: {})",
                    p,
                    phase.name(),
                    phase.name(),
                    if phase == Phase::Canary {
                        d.steps.canary.to_string()
                    } else {
                        format!("{:?}", d.steps.ramp)
                    }
                ))
            }),
        }
    }

    /// File stem: `2-canary-5`.
    pub fn id(&self) -> String {
        if self.phase.takes_percent() {
            format!(
                "{}-{}-{}",
                self.phase.number(),
                self.phase.name(),
                self.percent
            )
        } else {
            format!("{}-{}", self.phase.number(), self.phase.name())
        }
    }

    /// The step before this one: what its rollback restores. `None` for
    /// prep (nothing before it) and for decommission (the api-gateway
    /// Deployment is gone; there is nothing to roll back to).
    pub fn previous(&self, d: &Description) -> Option<Step> {
        if self.phase == Phase::Decommission {
            return None;
        }
        let all = Step::all(d);
        let i = all.iter().position(|s| s == self)?;
        i.checked_sub(1).map(|j| all[j])
    }

    /// The `cutover render` arguments that name this step.
    pub fn cli_args(&self) -> String {
        if self.phase.takes_percent() {
            format!("--phase {} --percent {}", self.phase.name(), self.percent)
        } else {
            format!("--phase {}", self.phase.name())
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.phase {
            Phase::Canary | Phase::Ramp => write!(
                f,
                "phase {} {} {} %",
                self.phase.number(),
                self.phase.name(),
                self.percent
            ),
            _ => write!(f, "phase {} {}", self.phase.number(), self.phase.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Description {
        Description::parse(include_str!("../../kong/cutover.toml")).unwrap()
    }

    #[test]
    fn the_steps_follow_the_plan() {
        let ids: Vec<String> = Step::all(&d()).iter().map(Step::id).collect();
        assert_eq!(
            ids,
            [
                "0-prep",
                "1-shadow",
                "2-canary-5",
                "3-ramp-25",
                "3-ramp-50",
                "3-ramp-100",
                "4-decommission"
            ]
        );
    }

    #[test]
    fn a_step_is_named_by_phase_and_percent() {
        let d = d();
        assert_eq!(
            Step::parse(&d, "canary", Some(5)).unwrap().id(),
            "2-canary-5"
        );
        assert_eq!(Step::parse(&d, "canary", None).unwrap().id(), "2-canary-5");
        assert_eq!(Step::parse(&d, "3", Some(50)).unwrap().id(), "3-ramp-50");
        assert!(Step::parse(&d, "ramp", None).is_err());
        assert!(Step::parse(&d, "ramp", Some(40)).is_err());
        assert!(Step::parse(&d, "prep", Some(5)).is_err());
        assert!(Step::parse(&d, "cutover", None).is_err());
    }

    #[test]
    fn each_rollback_restores_the_step_before() {
        let d = d();
        let ramp50 = Step::parse(&d, "ramp", Some(50)).unwrap();
        assert_eq!(ramp50.previous(&d).unwrap().id(), "3-ramp-25");
        let canary = Step::parse(&d, "canary", None).unwrap();
        assert_eq!(canary.previous(&d).unwrap().id(), "1-shadow");
        assert!(
            Step::parse(&d, "prep", None)
                .unwrap()
                .previous(&d)
                .is_none()
        );
        assert!(
            Step::parse(&d, "decommission", None)
                .unwrap()
                .previous(&d)
                .is_none()
        );
    }
}
