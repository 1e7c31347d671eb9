//! `cutover`: the api-gateway → orchestrator migration as code.
//!
//! One description (`kong/cutover.toml`) renders every step of the plan
//! (docs/migration-plan.md §3) for Kong and, beside it, its Envoy twin; the
//! checks prove each file keeps the phase invariants; the gate decides, on
//! Prometheus, whether the next step may go. In the order a cutover uses
//! them:
//!
//! 1. [`description`]: hostnames, ports, percentages, plugin settings;
//! 2. [`phase`]: the steps (prep, shadow, canary 5, ramp 25/50/100,
//!    decommission) and what each one's rollback restores;
//! 3. [`plan`]: what the edge does in a step (upstream, targets, weights),
//!    and the [`plan::Routing`] the checks read back out of a file;
//! 4. [`kong::render`] and [`envoy`]: the decK file and the Envoy bootstrap;
//! 5. [`kong::check`] and [`invariants`]: what `deck validate` does not
//!    check, and the phase invariants on the files as written;
//! 6. [`files`]: the committed set under `kong/` and its staleness check;
//! 7. [`gate`]: the SLI rules of `docs/prometheus/rules.yml` evaluated over
//!    a window, go / no-go with the reason.

pub mod description;
pub mod envoy;
pub mod error;
pub mod files;
pub mod gate;
pub mod invariants;
pub mod kong;
pub mod phase;
pub mod plan;

pub use description::Description;
pub use error::CutoverError;
pub use files::{Artefact, EdgeKind};
pub use phase::{Phase, Step};
pub use plan::{Plan, Target};
