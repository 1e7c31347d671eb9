//! One function per subcommand: build the library's pieces from the
//! arguments, run them, print a summary. Exit codes are decided here.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use compare::capture;
use compare::events::{self, EventsConfig};
use compare::noise::{self, NoiseOptions};
use compare::replay::{self, ReplayConfig, ReplayCounters, Target, WritePlan};
use compare::report::{self, Gate, ReportBuilder};
use compare::{DiffLogWriter, Differ, Exchange, Redaction, Redactor, Rules, difflog};

use crate::args::{
    DiffArgs, EventsArgs, LearnNoiseArgs, Output, RedactArgs, ReplayArgs, ReportArgs,
};

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
        let explicit = match (&self.redact_key, &self.redact_key_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "set {} or DIFF_REDACTION_KEY_FILE, not both",
                compare::redact::REDACTION_KEY_ENV
            ),
            (Some(key), None) => Some(key.clone()),
            (None, Some(path)) => Some(
                compare::redact::read_key_file(path)
                    .with_context(|| format!("DIFF_REDACTION_KEY_FILE {}", path.display()))?,
            ),
            (None, None) => None,
        };
        let resolved = compare::redact::resolve_redaction_key(
            explicit,
            &["COMPARE_REDACT_KEY", "MIRROR_REDACTION_KEY"],
            |name| std::env::var(name).ok(),
        );
        for warning in &resolved.warnings {
            eprintln!("warning: {warning}");
        }
        let key = match resolved.key {
            Some(key) => key.into_bytes(),
            None => {
                eprintln!(
                    "note: {} is not set; hashes use a random key and only compare within this run",
                    compare::redact::REDACTION_KEY_ENV
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

/// The rules at `path`, or the shipped defaults.
fn load_rules(path: Option<&Path>) -> anyhow::Result<Rules> {
    match path {
        Some(path) => {
            Rules::load(path).with_context(|| format!("loading rules {}", path.display()))
        }
        None => Rules::default_rules().context("compiling the shipped default rules"),
    }
}

/// A replay target: its URL, header overrides, and callers (`shared`
/// from --caller, except the names `own` gives for this target alone).
fn target(
    name: &'static str,
    url: &str,
    headers: &[String],
    (shared, own): (&[String], &[String]),
    shadow_safe: bool,
) -> anyhow::Result<Target> {
    let mut target = Target::new(name, url)?.shadow_safe(shadow_safe);
    for header in headers {
        target = target.header(header)?;
    }
    let caller_name = |spec: &String| spec.split_once('=').map(|(n, _)| n.trim().to_owned());
    let overridden: std::collections::HashSet<String> =
        own.iter().filter_map(caller_name).collect();
    for spec in shared
        .iter()
        .filter(|spec| caller_name(spec).is_none_or(|n| !overridden.contains(&n)))
        .chain(own)
    {
        target = target.caller(spec)?;
    }
    Ok(target)
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let rules = args.output.rules()?;
    let redaction = args.output.redaction(&rules)?;
    let requests = capture::read(&args.capture, args.format)?;
    let mut config = ReplayConfig::new(
        target(
            "primary",
            &args.primary,
            &args.primary_headers,
            (&args.callers, &args.primary_callers),
            args.primary_shadow_safe,
        )?,
        target(
            "candidate",
            &args.candidate,
            &args.candidate_headers,
            (&args.callers, &args.candidate_callers),
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
                (&args.callers, &args.secondary_callers),
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
    config.await_timeout = args.await_timeout;

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
    if summary.template_errors > 0 || summary.await_timeouts > 0 {
        eprintln!(
            "warning: templates could not be filled {} times (see the records' errors) and {} awaited conditions timed out",
            summary.template_errors, summary.await_timeouts
        );
    }
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

pub async fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
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

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let rules = args.output.rules()?;
    let redaction = args.output.redaction(&rules)?;
    // One record at a time: memory does not grow with the logs.
    let mut builder = ReportBuilder::new();
    for path in &args.logs {
        for record in difflog::RecordReader::open(path)? {
            let mut record = record?;
            // Records are redacted when written; redacting again is a no-op
            // for them and protects reports built from --no-redact logs.
            redaction.apply(&mut record);
            builder.add(&record);
        }
    }
    let gate = match (args.max_diff_rate, args.min_samples) {
        (Some(max_diff_rate), Some(min_samples)) => Some(Gate {
            max_diff_rate,
            min_samples,
            acknowledged: args
                .acknowledge_contract_change
                .iter()
                .map(|label| label.trim().to_owned())
                .filter(|label| !label.is_empty())
                .collect(),
        }),
        _ => None,
    };
    let sources = args.logs.iter().map(|p| p.display().to_string()).collect();
    let report = builder.finish(sources, gate);
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

pub fn learn_noise(args: LearnNoiseArgs) -> anyhow::Result<ExitCode> {
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

/// Streams the capture (JSONL: one line in memory at a time) through the
/// differ into the diff log.
pub fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let rules = args.output.rules()?;
    let redaction = args.output.redaction(&rules)?;
    let differ = Differ::new(rules).keep_request(args.keep_request.into());
    let mut requests = capture::open(&args.capture, args.format)?.peekable();
    // A capture that is wrong from its first line leaves no diff log behind.
    if let Some(Err(_)) = requests.peek()
        && let Some(Err(e)) = requests.next()
    {
        return Err(e.into());
    }
    let mut writer = DiffLogWriter::append(&args.out, redaction)?;
    let mut skipped = 0;
    for captured in requests {
        let captured = match captured {
            Ok(captured) => captured,
            Err(e) => {
                writer.flush()?;
                eprintln!(
                    "note: {} records from the lines before the error were appended to {}",
                    writer.written(),
                    args.out.display()
                );
                return Err(e.into());
            }
        };
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

pub fn check_rules(path: &Path) -> anyhow::Result<ExitCode> {
    let rules = Rules::load(path)?;
    println!("{}: ok", path.display());
    // What a reviewer must see: these rules accept client-visible changes.
    let changes = rules.contract_changes();
    if changes.is_empty() {
        println!("value noise only: no rule accepts a contract change");
    } else {
        println!(
            "{} rules accept a contract change; a gate over their diff logs needs --acknowledge-contract-change for each label it meets:",
            changes.len()
        );
        for (label, rule) in changes {
            println!("  {label}  ({rule})");
        }
    }
    Ok(ExitCode::SUCCESS)
}
