//! The `compare` CLI: argument parsing and output around the library.
//! Exit codes: 0 success (for `report` with a gate: ready), 1 gate not
//! ready, 2 usage or runtime error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use compare::capture::{self, CaptureFormat};
use compare::events::{self, EventsConfig};
use compare::noise::{self, NoiseOptions};
use compare::replay::{self, ReplayConfig, ReplayCounters, Target, WritePlan};
use compare::report::{self, Gate, Report};
use compare::{DiffLogWriter, Differ, Exchange, KeepRequest, Redaction, Redactor, Rules, difflog};

#[derive(Debug, Parser)]
#[command(
    name = "compare",
    version,
    about = "Compare the legacy api-gateway with the orchestrator: replay captures, diff NATS events, report and gate the cutover",
    after_help = "Typical flow:\n  compare replay --capture capture.jsonl --primary http://legacy:3000 --candidate http://orchestrator:8080 --candidate-shadow-safe --out diffs.jsonl\n  compare report diffs.jsonl --html report.html --markdown report.md --max-diff-rate 0.1% --min-samples 1000"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Replay(ReplayArgs),
    Events(EventsArgs),
    Report(ReportArgs),
    LearnNoise(LearnNoiseArgs),
    Diff(DiffArgs),
    CheckRules(CheckRulesArgs),
}

/// Options shared by every command that writes records or reports.
#[derive(Debug, Args)]
struct Output {
    /// Rules file (TOML); default: the shipped compare/rules/default.toml.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    redact: RedactArgs,
}

/// How written values are redacted.
#[derive(Debug, Args)]
struct RedactArgs {
    /// HMAC key for hashing phone numbers and message bodies. Without it a
    /// random key is used and hashes only compare within this run.
    #[arg(
        long,
        env = "COMPARE_REDACT_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    redact_key: Option<String>,
    /// Write personal data and credentials in clear. Never use on production
    /// traffic.
    #[arg(long)]
    no_redact: bool,
}

impl Output {
    fn rules(&self) -> anyhow::Result<Rules> {
        load_rules(self.rules.as_deref())
    }

    fn redaction(&self, rules: &Rules) -> anyhow::Result<Redaction> {
        self.redact.redaction(rules)
    }
}

impl RedactArgs {
    fn redaction(&self, rules: &Rules) -> anyhow::Result<Redaction> {
        if self.no_redact {
            eprintln!(
                "warning: --no-redact: phone numbers, message bodies and credentials are written in clear"
            );
            return Ok(Redaction::Disabled);
        }
        let key = match &self.redact_key {
            Some(key) if !key.is_empty() => key.as_bytes().to_vec(),
            _ => {
                eprintln!(
                    "note: COMPARE_REDACT_KEY is not set; hashes use a random key and only compare within this run"
                );
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        Ok(Redaction::Keyed(
            Redactor::with_spec(&key, rules.redact_spec())
                .context("the rules' [redact] section")?,
        ))
    }
}

/// Send captured requests to the primary and the candidate (and a
/// secondary) and write one diff record per exchange.
///
/// Captures: the mirror proxy's JSONL (.jsonl), HAR 1.2 (.har) or a GoReplay
/// file (.gor). State-changing requests (POST, PUT, PATCH, DELETE) are only
/// sent to targets marked shadow-safe (they get `X-Shadow-Request: 1` and the
/// shadow credential) or with --allow-writes; the plan is printed before
/// anything is sent.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  COMPARE_SHADOW_CREDENTIAL=… compare replay --capture capture.har \\\n    --primary http://api-gateway:3000 --primary-header 'Authorization: Bearer $LEGACY_TOKEN' \\\n    --candidate http://orchestrator:8080 --candidate-header 'Authorization: Bearer $NEW_TOKEN' \\\n    --candidate-shadow-safe --rate 50 --concurrency 16 --out diffs.jsonl"
)]
struct ReplayArgs {
    /// Capture file to replay.
    #[arg(long, value_name = "FILE")]
    capture: PathBuf,
    /// Capture format (default: from the extension, else sniffed).
    #[arg(long, value_enum)]
    format: Option<CaptureFormat>,
    /// Base URL of the primary (the legacy api-gateway).
    #[arg(long, value_name = "URL")]
    primary: String,
    /// Base URL of the candidate (the orchestrator).
    #[arg(long, value_name = "URL")]
    candidate: String,
    /// Base URL of a second primary, for Diffy-style noise cancellation on
    /// read-only routes (it never receives writes unless shadow-safe).
    #[arg(long, value_name = "URL")]
    secondary: Option<String>,
    /// Header for every primary request, 'Name: value' (repeatable).
    #[arg(long = "primary-header", value_name = "HEADER")]
    primary_headers: Vec<String>,
    /// Header for every candidate request (repeatable).
    #[arg(long = "candidate-header", value_name = "HEADER")]
    candidate_headers: Vec<String>,
    /// Header for every secondary request (repeatable).
    #[arg(long = "secondary-header", value_name = "HEADER")]
    secondary_headers: Vec<String>,
    /// The primary is a shadow deployment: it may receive writes, marked.
    #[arg(long)]
    primary_shadow_safe: bool,
    /// The candidate honours the shadow marker: it may receive writes,
    /// marked `X-Shadow-Request: 1` with the shadow credential.
    #[arg(long)]
    candidate_shadow_safe: bool,
    /// The secondary may receive writes, marked.
    #[arg(long)]
    secondary_shadow_safe: bool,
    /// Shadow credential sent as `X-Shadow-Credential` to shadow-safe targets.
    #[arg(
        long,
        env = "COMPARE_SHADOW_CREDENTIAL",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    shadow_credential: Option<String>,
    /// Send writes to targets that are not shadow-safe. Real side effects:
    /// real SMS.
    #[arg(long)]
    allow_writes: bool,
    /// Forward captured credentials (Authorization, cookies, API keys)
    /// instead of dropping them.
    #[arg(long)]
    keep_credentials: bool,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Requests started per second (default: as fast as --concurrency allows).
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Per-request timeout on each target (250ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Which records carry the (redacted) request for copy-as-curl.
    #[arg(long, value_enum, default_value_t = KeepArg::Differs)]
    keep_request: KeepArg,
    /// Diff log to append records to (JSONL).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeepArg {
    Never,
    Differs,
    Always,
}

impl From<KeepArg> for KeepRequest {
    fn from(k: KeepArg) -> Self {
        match k {
            KeepArg::Never => KeepRequest::Never,
            KeepArg::Differs => KeepRequest::WhenDiffers,
            KeepArg::Always => KeepRequest::Always,
        }
    }
}

/// Diff what downstream SMS workers receive: the legacy's events against the
/// orchestrator's shadow events on NATS, paired by correlation id.
///
/// Pairs are diffed under the route `event sms.outbound.request` with the
/// same rules as HTTP; an event without a partner after --window is written
/// as an unmatched record.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  compare events --nats-url nats://127.0.0.1:4222 --window 30s --duration 1h --out events.jsonl\n  compare report events.jsonl --html events.html"
)]
struct EventsArgs {
    /// NATS server.
    #[arg(
        long,
        default_value = "nats://127.0.0.1:4222",
        env = "NATS_URL",
        value_name = "URL"
    )]
    nats_url: String,
    /// Subject the legacy publishes to.
    #[arg(long, default_value = "sms.outbound.request")]
    primary_subject: String,
    /// Subject the orchestrator publishes shadow events to.
    #[arg(long, default_value = "shadow.sms.outbound.request")]
    candidate_subject: String,
    /// Logical event name: records use the route `event <NAME>`.
    #[arg(long, default_value = "sms.outbound.request")]
    event_name: String,
    /// Payload field holding the correlation id when there is no
    /// X-Correlation-ID header.
    #[arg(long, default_value = "/correlation_id", value_name = "POINTER")]
    correlation_pointer: String,
    /// How long an event waits for its partner.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    window: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many pairs.
    #[arg(long)]
    max_pairs: Option<u64>,
    /// The mirror samples traffic: legacy events without a shadow twin are
    /// counted but not written as differences.
    #[arg(long)]
    sampled: bool,
    /// Diff log to append records to (JSONL).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    output: Output,
}

/// Summarise diff logs into an HTML, Markdown and/or JSON report, and gate
/// the cutover.
///
/// With --max-diff-rate and --min-samples the exit code is the go/no-go:
/// 0 and a READY line when every route and the whole run have enough samples
/// and a diff rate at or under the maximum; 1 and a NOT READY line with the
/// reason otherwise.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  compare report diffs.jsonl events.jsonl --html report.html --markdown report.md \\\n    --json report.json --max-diff-rate 0.1% --min-samples 1000 && echo 'go for canary'"
)]
struct ReportArgs {
    /// Diff logs (from replay, events or the mirror proxy).
    #[arg(required = true, value_name = "DIFF_LOG")]
    logs: Vec<PathBuf>,
    /// Write the HTML report (one self-contained file) here.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the Markdown report (for a change ticket) here.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Write the JSON report (for machines) here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Highest acceptable diff rate, per route and overall (`0.1%` or `0.001`).
    #[arg(long, value_parser = parse_rate_arg, requires = "min_samples")]
    max_diff_rate: Option<f64>,
    /// Fewest samples each route and the whole run must have.
    #[arg(long, requires = "max_diff_rate")]
    min_samples: Option<u64>,
    #[command(flatten)]
    output: Output,
}

/// Propose noisy paths from diff logs, with evidence: values that differ in
/// (nearly) every exchange while both sides look generated (ids, RFC 3339
/// timestamps, monotonic counters). --accept writes them into the rules file.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  compare learn-noise diffs.jsonl --rules my-rules.toml            # review the proposals\n  compare learn-noise diffs.jsonl --rules my-rules.toml --accept   # append them"
)]
struct LearnNoiseArgs {
    #[arg(required = true, value_name = "DIFF_LOG")]
    logs: Vec<PathBuf>,
    /// Rules file to append accepted proposals to.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Write the proposals into --rules (comments and layout are kept).
    #[arg(long, requires = "rules")]
    accept: bool,
    /// A path must differ in at least this share of a route's exchanges.
    #[arg(long, default_value = "90%", value_parser = parse_rate_arg)]
    min_diff_rate: f64,
    /// Both values must look generated in at least this share of those.
    #[arg(long, default_value = "95%", value_parser = parse_rate_arg)]
    min_generated: f64,
    /// Fewest exchanges of a route before proposing anything for it.
    #[arg(long, default_value_t = 20)]
    min_samples: usize,
    /// Print proposals as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    redact: RedactArgs,
}

/// Diff exchanges a capture already holds (the mirror proxy records both
/// responses) without sending anything.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  compare diff --capture mirror-capture.jsonl --rules rules.toml --out diffs.jsonl"
)]
struct DiffArgs {
    /// Capture holding both responses per request.
    #[arg(long, value_name = "FILE")]
    capture: PathBuf,
    /// Capture format (default: from the extension, else sniffed).
    #[arg(long, value_enum)]
    format: Option<CaptureFormat>,
    /// Which records carry the (redacted) request for copy-as-curl.
    #[arg(long, value_enum, default_value_t = KeepArg::Differs)]
    keep_request: KeepArg,
    /// Diff log to append records to (JSONL).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    output: Output,
}

/// Check that a rules file parses and compiles.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  compare check-rules compare/rules/default.toml")]
struct CheckRulesArgs {
    /// The rules file.
    file: PathBuf,
}

/// The rules at `path`, or the shipped defaults.
fn load_rules(path: Option<&Path>) -> anyhow::Result<Rules> {
    match path {
        Some(path) => {
            Rules::load(path).with_context(|| format!("loading rules {}", path.display()))
        }
        None => Rules::default_rules().context("compiling the shipped default rules"),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    compare::rules::parse_duration(text)
        .map_err(|e| e.to_string())
        .and_then(|d| d.to_std().map_err(|e| e.to_string()))
}

fn parse_rate_arg(text: &str) -> Result<f64, String> {
    report::parse_rate(text)
        .ok_or_else(|| format!("{text:?}: expected a rate such as 0.1% or 0.001"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay_cmd(args).await,
        Command::Events(args) => events_cmd(args).await,
        Command::Report(args) => report_cmd(args),
        Command::LearnNoise(args) => learn_noise_cmd(args),
        Command::Diff(args) => diff_cmd(args),
        Command::CheckRules(args) => {
            Rules::load(&args.file)?;
            println!("{}: ok", args.file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn target(
    name: &'static str,
    url: &str,
    headers: &[String],
    shadow_safe: bool,
) -> anyhow::Result<Target> {
    let mut target = Target::new(name, url)?.shadow_safe(shadow_safe);
    for header in headers {
        target = target.header(header)?;
    }
    Ok(target)
}

async fn replay_cmd(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let rules = args.output.rules()?;
    let redaction = args.output.redaction(&rules)?;
    let requests = capture::read(&args.capture, args.format)?;
    let mut config = ReplayConfig::new(
        target(
            "primary",
            &args.primary,
            &args.primary_headers,
            args.primary_shadow_safe,
        )?,
        target(
            "candidate",
            &args.candidate,
            &args.candidate_headers,
            args.candidate_shadow_safe,
        )?,
    );
    config.secondary = args
        .secondary
        .as_deref()
        .map(|url| {
            target(
                "secondary",
                url,
                &args.secondary_headers,
                args.secondary_shadow_safe,
            )
        })
        .transpose()?;
    config.concurrency = args.concurrency.max(1);
    config.rate = args.rate;
    config.timeout = args.timeout;
    config.allow_writes = args.allow_writes;
    config.shadow_credential = args.shadow_credential.filter(|c| !c.is_empty());
    config.keep_credentials = args.keep_credentials;

    let plan = WritePlan::new(&config, &requests);
    eprintln!(
        "replaying {} requests from {} ({} in flight at most{})",
        requests.len(),
        args.capture.display(),
        config.concurrency,
        config.rate.map(|r| format!(", {r}/s")).unwrap_or_default()
    );
    for line in &plan.lines {
        eprintln!("{line}");
    }

    let differ = Arc::new(Differ::new(rules).keep_request(args.keep_request.into()));
    let writer = DiffLogWriter::append(&args.out, redaction)?;
    let sink = Arc::new(Mutex::new(writer));
    let counters = Arc::new(ReplayCounters::default());
    let to_send = (plan.total - plan.skipped) as u64;
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(to_send)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker = {
        let (bar, counters) = (bar.clone(), counters.clone());
        tokio::spawn(async move {
            loop {
                let s = counters.snapshot();
                bar.set_position(s.done);
                bar.set_message(format!(
                    "same {} · noise {} · differs {} · errors {}/{}",
                    s.same, s.noise_only, s.differs, s.primary_errors, s.candidate_errors
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let result = replay::run(config, requests, differ, sink, counters.clone()).await;
    ticker.abort();
    bar.finish_and_clear();
    let summary = result?;
    eprintln!(
        "done in {:.2}s ({:.1} req/s): {} compared, same {}, noise-only {}, differs {}; primary errors {}, candidate errors {}, writes skipped {}",
        summary.elapsed.as_secs_f64(),
        summary.achieved_rate(),
        summary.done - summary.primary_errors,
        summary.same,
        summary.noise_only,
        summary.differs,
        summary.primary_errors,
        summary.candidate_errors,
        counters.skipped_writes.load(Ordering::Relaxed),
    );
    eprintln!("records appended to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

async fn events_cmd(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let rules = args.output.rules()?;
    let redaction = args.output.redaction(&rules)?;
    let config = EventsConfig {
        nats_url: args.nats_url,
        primary_subject: args.primary_subject,
        candidate_subject: args.candidate_subject,
        event_name: args.event_name,
        correlation_pointer: args.correlation_pointer,
        window: args.window,
        sampled: args.sampled,
        max_pairs: args.max_pairs,
        ..EventsConfig::default()
    };
    let differ = Differ::new(rules);
    let mut writer = DiffLogWriter::append(&args.out, redaction)?;
    eprintln!(
        "pairing {} (legacy) with {} (shadow) on {}, window {:?}",
        config.primary_subject, config.candidate_subject, config.nats_url, config.window
    );
    let duration = args.duration;
    let shutdown = async move {
        match duration {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let ready = || eprintln!("listening");
    let summary = events::run(&config, &differ, &mut writer, ready, shutdown).await?;
    eprintln!(
        "{} pairs: same {}, noise-only {}, differs {}; unmatched legacy {}, unmatched shadow {}; duplicates {}, without correlation id {}, still waiting at exit {}",
        summary.pairs,
        summary.same,
        summary.noise_only,
        summary.differs,
        summary.unmatched_primary,
        summary.unmatched_candidate,
        summary.duplicates,
        summary.without_correlation_id,
        summary.pending_at_exit
    );
    eprintln!("records appended to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn report_cmd(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let rules = args.output.rules()?;
    let redaction = args.output.redaction(&rules)?;
    let mut records = difflog::read_all(&args.logs)?;
    // Records are redacted when written; redacting again is a no-op for
    // them and protects reports built from --no-redact logs.
    for record in &mut records {
        redaction.apply(record);
    }
    let gate = match (args.max_diff_rate, args.min_samples) {
        (Some(max_diff_rate), Some(min_samples)) => Some(Gate {
            max_diff_rate,
            min_samples,
        }),
        _ => None,
    };
    let sources = args.logs.iter().map(|p| p.display().to_string()).collect();
    let report = Report::build(&records, sources, gate);
    if let Some(path) = &args.html {
        write_file(path, &report::render_html(&report)?)?;
    }
    if let Some(path) = &args.markdown {
        write_file(path, &report::render_markdown(&report)?)?;
    }
    if let Some(path) = &args.json {
        write_file(path, &report::render_json(&report)?)?;
    }
    if args.html.is_none() && args.markdown.is_none() && args.json.is_none() {
        print!("{}", report::render_markdown(&report)?);
    }
    match &report.gate {
        Some(result) => {
            // The one-line reason goes to stdout for CI logs; details are
            // in the reports.
            println!("{}", result.reason);
            Ok(if result.ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        None => {
            eprintln!(
                "{} records, diff rate {} (no gate: pass --max-diff-rate and --min-samples)",
                report.overall.samples,
                report::percent(report.overall.diff_rate)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn learn_noise_cmd(args: LearnNoiseArgs) -> anyhow::Result<ExitCode> {
    let rules = load_rules(args.rules.as_deref())?;
    let redaction = args.redact.redaction(&rules)?;
    let mut records = difflog::read_all(&args.logs)?;
    // The examples shown come from the records: redact them like a report.
    for record in &mut records {
        redaction.apply(record);
    }
    let options = NoiseOptions {
        min_diff_rate: args.min_diff_rate,
        min_generated: args.min_generated,
        min_samples: args.min_samples,
        ..NoiseOptions::default()
    };
    let proposals = noise::learn(&records, &options);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&proposals)?);
    } else if proposals.is_empty() {
        println!("no noisy paths found in {} records", records.len());
    } else {
        println!("{} proposed noise rules:", proposals.len());
        for proposal in &proposals {
            println!("  {}", proposal.summary());
        }
    }
    if args.accept {
        let Some(path) = &args.rules else {
            bail!("--accept needs --rules FILE");
        };
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let added = noise::accept(path, &proposals, &today)?;
        eprintln!("{added} rules added to {}", path.display());
    } else if !proposals.is_empty() {
        eprintln!("review, then run again with --accept --rules FILE to add them");
    }
    Ok(ExitCode::SUCCESS)
}

fn diff_cmd(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let rules = args.output.rules()?;
    let redaction = args.output.redaction(&rules)?;
    let differ = Differ::new(rules).keep_request(args.keep_request.into());
    let requests = capture::read(&args.capture, args.format)?;
    let mut writer = DiffLogWriter::append(&args.out, redaction)?;
    let mut skipped = 0;
    for captured in requests {
        let (Some(primary), Some(candidate)) = (captured.primary, captured.candidate) else {
            skipped += 1;
            continue;
        };
        let exchange = Exchange {
            request: captured.request,
            primary,
            candidate,
        };
        writer.write(differ.diff(&exchange))?;
    }
    writer.flush()?;
    eprintln!(
        "{} records appended to {}; {skipped} captured requests lacked one of the two responses",
        writer.written(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
