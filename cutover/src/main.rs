//! `cutover`: render, check and gate the api-gateway → orchestrator
//! cutover (docs/cutover.md). Exit codes: 0 done / READY, 1 problems found
//! / NOT READY, 2 could not run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cutover::gate::{Gate, GateSettings};
use cutover::{Artefact, Description, EdgeKind, Step, files, invariants};

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Render, check and gate the submit path's cutover (docs/cutover.md)"
)]
struct Cli {
    /// The description every file is rendered from.
    #[arg(long, global = true, default_value = Description::COMMITTED)]
    description: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print one step (or its rollback) as a Kong or Envoy file, or write all of them.
    #[command(
        after_help = "Examples:\n  cutover render --phase canary --percent 5 --edge kong\n  cutover render --phase ramp --percent 50 --rollback --edge envoy\n  cutover render --all            # rewrite kong/phases and kong/rollback\n  cutover render --all --check    # exit 1 if a committed file is stale"
    )]
    Render {
        /// prep, shadow, canary, ramp, decommission (or 0–4).
        #[arg(long, required_unless_present = "all")]
        phase: Option<String>,
        /// The canary or ramp step's percentage.
        #[arg(long)]
        percent: Option<u8>,
        /// Render the rollback of the step: the step before's routing.
        #[arg(long)]
        rollback: bool,
        #[arg(long, default_value = "kong")]
        edge: String,
        /// Override `upstream.sticky` (consistent hashing on the consumer).
        #[arg(long)]
        sticky: Option<bool>,
        /// Every step and rollback, both edges, into kong/phases and kong/rollback.
        #[arg(long, conflicts_with_all = ["phase", "percent", "rollback", "sticky"])]
        all: bool,
        /// With --all: write nothing, exit 1 when a committed file differs.
        #[arg(long, requires = "all")]
        check: bool,
    },
    /// Check the committed files: our checks of every Kong file, the phase
    /// invariants, each rollback against the step before, each Envoy twin
    /// against its Kong file. (`deck validate` and `envoy --mode validate`
    /// are run by the test command.)
    Check,
    /// List the steps in order with their files.
    Steps,
    /// Go / no-go for the next step: evaluates the alerting rules of the
    /// SLI rules file over a window on Prometheus. Exit 0 READY, 1 NOT READY.
    /// `severity: page` alerts block; others are warnings unless --strict.
    #[command(
        after_help = "Example:\n  cutover gate --prometheus http://prometheus:9090 --window 30m --min-requests 1000"
    )]
    Gate {
        /// Prometheus base URL.
        #[arg(long, env = "CUTOVER_PROMETHEUS_URL")]
        prometheus: String,
        #[arg(long, default_value = "docs/prometheus/rules.yml")]
        rules: PathBuf,
        /// The window the rules are evaluated over (their `[5m]` ranges become this).
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        window: Duration,
        /// Fewest live orchestrator requests in the window to judge at all.
        #[arg(long, default_value_t = 1000)]
        min_requests: u64,
        /// The orchestrator's scrape job; it must be up.
        #[arg(long, default_value = "orchestrator")]
        job: String,
        /// Block on every alert, not only `severity: page` ones.
        #[arg(long)]
        strict: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cutover: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn root_of(description: &Path) -> PathBuf {
    description
        .canonicalize()
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The gate reads only the rules file; everything else the description.
    let load = || -> anyhow::Result<(Description, PathBuf)> {
        Ok((
            Description::load(&cli.description)?,
            root_of(&cli.description),
        ))
    };
    match cli.command {
        Command::Render {
            phase,
            percent,
            rollback,
            edge,
            sticky,
            all,
            check,
        } => {
            let (mut d, root) = load()?;
            if all {
                if check {
                    let stale = files::stale(&d, &root)?;
                    for m in &stale {
                        println!("{m}");
                    }
                    return Ok(if stale.is_empty() {
                        println!("every file under kong/ is what kong/cutover.toml renders");
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    });
                }
                for p in files::write_all(&d, &root)? {
                    println!("wrote {p}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(s) = sticky {
                d.upstream.sticky = s;
            }
            let step = Step::parse(&d, phase.as_deref().unwrap_or_default(), percent)?;
            let artefact = if rollback {
                Artefact::rollback(&d, step)?
            } else {
                Artefact::Phase(step)
            };
            print!("{}", artefact.render(&d, EdgeKind::parse(&edge)?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            let (d, root) = load()?;
            let problems = invariants::check_tree(&d, &root)?;
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!(
                    "{} files checked: every step keeps its invariants, every rollback restores the step before, every twin routes like its Kong file",
                    Artefact::all(&d).len() * 2
                );
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(1))
            }
        }
        Command::Steps => {
            let (d, _) = load()?;
            for step in Step::all(&d) {
                println!(
                    "{:<28} {}",
                    step.to_string(),
                    Artefact::Phase(step).path(EdgeKind::Kong)
                );
                if let Ok(r) = Artefact::rollback(&d, step) {
                    println!("{:<28} {}", "  rollback", r.path(EdgeKind::Kong));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gate {
            prometheus,
            rules,
            window,
            min_requests,
            job,
            strict,
        } => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let gate = Gate::load(
                &rules,
                GateSettings {
                    prometheus,
                    window,
                    min_requests,
                    job,
                    strict,
                },
            )?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let decision = runtime.block_on(gate.decide())?;
            print!("{decision}");
            Ok(if decision.ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
