//! The command line: one struct per subcommand, each with an example in
//! its `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use compare::KeepRequest;
use compare::capture::CaptureFormat;
use compare::report;

#[derive(Debug, Parser)]
#[command(
    name = "compare",
    version,
    about = "Compare the legacy api-gateway with the orchestrator: replay captures, diff NATS events, report and gate the cutover",
    after_help = "Typical flow:\n  compare replay --capture capture.jsonl --primary http://legacy:3000 --candidate http://orchestrator:8080 --candidate-shadow-safe --out diffs.jsonl\n  compare report diffs.jsonl --html report.html --markdown report.md --max-diff-rate 0.1% --min-samples 1000"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Replay(ReplayArgs),
    Events(EventsArgs),
    Report(ReportArgs),
    LearnNoise(LearnNoiseArgs),
    Diff(DiffArgs),
    CheckRules(CheckRulesArgs),
}

/// Options shared by every command that writes records or reports.
#[derive(Debug, Args)]
pub struct Output {
    /// Rules file (TOML); default: the shipped compare/rules/default.toml.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub redact: RedactArgs,
}

/// How written values are redacted.
#[derive(Debug, Args)]
pub struct RedactArgs {
    /// HMAC key for hashing phone numbers and message bodies: the same
    /// DIFF_REDACTION_KEY mirror-proxy reads, so hashes compare across both
    /// tools. Without it a random key is used and hashes only compare
    /// within this run. The old name COMPARE_REDACT_KEY (and
    /// MIRROR_REDACTION_KEY) still works, with a deprecation warning.
    #[arg(
        long,
        env = "DIFF_REDACTION_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub redact_key: Option<String>,
    /// File holding the HMAC key (a mounted secret): the same
    /// DIFF_REDACTION_KEY_FILE mirror-proxy reads. One trailing line break
    /// is dropped; setting both the key and its file is refused.
    #[arg(long, env = "DIFF_REDACTION_KEY_FILE", value_name = "PATH")]
    pub redact_key_file: Option<std::path::PathBuf>,
    /// Write personal data and credentials in clear. Never use on production
    /// traffic.
    #[arg(long)]
    pub no_redact: bool,
}

/// Send captured requests to the primary and the candidate (and a
/// secondary) and write one diff record per exchange.
///
/// Captures: the mirror proxy's JSONL (.jsonl), HAR 1.2 (.har) or a GoReplay
/// file (.gor). State-changing requests (POST, PUT, PATCH, DELETE) are only
/// sent to targets marked shadow-safe (they get `X-Shadow-Request: 1` and the
/// shadow credential) or with --allow-writes; the plan is printed before
/// anything is sent.
///
/// Authored corpora (JSONL lines marked "templates": true, such as
/// contracts/legacy/parity-corpus.jsonl) are filled per target: ids and
/// ETags from that target's own earlier answers ({{id:REF}}, {{etag:REF}}),
/// instants from the replay's start ({{time:+2h:iso}}), a run token
/// ({{run}}), credentials from --caller; they are replayed one at a time,
/// in order.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  COMPARE_SHADOW_CREDENTIAL=… compare replay --capture capture.har \\\n    --primary http://api-gateway:3000 --primary-header 'Authorization: Bearer $LEGACY_TOKEN' \\\n    --candidate http://orchestrator:8080 --candidate-header 'Authorization: Bearer $NEW_TOKEN' \\\n    --candidate-shadow-safe --rate 50 --concurrency 16 --out diffs.jsonl\n\nAn authored corpus (callers named in the corpus, see contracts/legacy/README.md):\n  compare replay --capture contracts/legacy/parity-corpus.jsonl \\\n    --primary http://legacy-staging:3000 --candidate http://orchestrator-staging:8080 \\\n    --caller \"tenant=Authorization: Bearer $TOKEN\" --caller 'tenant=X-Tenant-Id: acme' … \\\n    --allow-writes --out parity.jsonl"
)]
pub struct ReplayArgs {
    /// Capture file to replay.
    #[arg(long, value_name = "FILE")]
    pub capture: PathBuf,
    /// Capture format (default: from the extension, else sniffed).
    #[arg(long, value_enum)]
    pub format: Option<CaptureFormat>,
    /// Base URL of the primary (the legacy api-gateway).
    #[arg(long, value_name = "URL")]
    pub primary: String,
    /// Base URL of the candidate (the orchestrator).
    #[arg(long, value_name = "URL")]
    pub candidate: String,
    /// Base URL of a second primary, for Diffy-style noise cancellation on
    /// read-only routes (it never receives writes unless shadow-safe).
    #[arg(long, value_name = "URL")]
    pub secondary: Option<String>,
    /// Header for every primary request, 'Name: value' (repeatable).
    #[arg(long = "primary-header", value_name = "HEADER")]
    pub primary_headers: Vec<String>,
    /// Header for every candidate request (repeatable).
    #[arg(long = "candidate-header", value_name = "HEADER")]
    pub candidate_headers: Vec<String>,
    /// Header for every secondary request (repeatable).
    #[arg(long = "secondary-header", value_name = "HEADER")]
    pub secondary_headers: Vec<String>,
    /// A caller of an authored corpus, 'NAME=Header: value' (repeatable; one
    /// flag per header, 'NAME=' for a caller that sends none): a templated
    /// line with `x-compare-caller: NAME` is sent with these headers, to
    /// every target. Example: --caller 'tenant=Authorization: Bearer …'
    /// --caller 'tenant=X-Tenant-Id: acme'.
    #[arg(long = "caller", value_name = "NAME=HEADER")]
    pub callers: Vec<String>,
    /// Like --caller, for the primary only (replaces --caller's headers of
    /// that NAME there).
    #[arg(long = "primary-caller", value_name = "NAME=HEADER")]
    pub primary_callers: Vec<String>,
    /// Like --caller, for the candidate only.
    #[arg(long = "candidate-caller", value_name = "NAME=HEADER")]
    pub candidate_callers: Vec<String>,
    /// Like --caller, for the secondary only.
    #[arg(long = "secondary-caller", value_name = "NAME=HEADER")]
    pub secondary_callers: Vec<String>,
    /// How long a templated line's `x-compare-await` waits for its
    /// condition on a target before the request is sent anyway.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub await_timeout: Duration,
    /// The primary is a shadow deployment: it may receive writes, marked.
    #[arg(long)]
    pub primary_shadow_safe: bool,
    /// The candidate honours the shadow marker: it may receive writes,
    /// marked `X-Shadow-Request: 1` with the shadow credential.
    #[arg(long)]
    pub candidate_shadow_safe: bool,
    /// The secondary may receive writes, marked.
    #[arg(long)]
    pub secondary_shadow_safe: bool,
    /// Shadow credential sent as `X-Shadow-Credential` to shadow-safe targets.
    #[arg(
        long,
        env = "COMPARE_SHADOW_CREDENTIAL",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub shadow_credential: Option<String>,
    /// Send writes to targets that are not shadow-safe. Real side effects:
    /// real SMS.
    #[arg(long)]
    pub allow_writes: bool,
    /// Forward captured credentials (Authorization, cookies, API keys)
    /// instead of dropping them.
    #[arg(long)]
    pub keep_credentials: bool,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Requests started per second (default: as fast as --concurrency allows).
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Per-request timeout on each target (250ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Which records carry the (redacted) request for copy-as-curl.
    #[arg(long, value_enum, default_value_t = KeepArg::Differs)]
    pub keep_request: KeepArg,
    /// Diff log to append records to (JSONL).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeepArg {
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
pub struct EventsArgs {
    /// NATS server.
    #[arg(
        long,
        default_value = "nats://127.0.0.1:4222",
        env = "NATS_URL",
        value_name = "URL"
    )]
    pub nats_url: String,
    /// Subject the legacy publishes to.
    #[arg(long, default_value = "sms.outbound.request")]
    pub primary_subject: String,
    /// Subject the orchestrator publishes shadow events to.
    #[arg(long, default_value = "shadow.sms.outbound.request")]
    pub candidate_subject: String,
    /// Logical event name: records use the route `event <NAME>`.
    #[arg(long, default_value = "sms.outbound.request")]
    pub event_name: String,
    /// Payload field holding the correlation id when there is no
    /// X-Correlation-ID header.
    #[arg(long, default_value = "/correlation_id", value_name = "POINTER")]
    pub correlation_pointer: String,
    /// How long an event waits for its partner.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub window: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many pairs.
    #[arg(long)]
    pub max_pairs: Option<u64>,
    /// The mirror samples traffic: legacy events without a shadow twin are
    /// counted but not written as differences.
    #[arg(long)]
    pub sampled: bool,
    /// Diff log to append records to (JSONL).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub output: Output,
}

/// Summarise diff logs into an HTML, Markdown and/or JSON report, and gate
/// the cutover.
///
/// With --max-diff-rate and --min-samples the exit code is the go/no-go:
/// 0 and a READY line when every route and the whole run have a diff rate
/// at or under the maximum, no contract change the run did not acknowledge,
/// and enough samples; 1 and a NOT READY line with the reasons otherwise
/// (diff-rate failures first, then unacknowledged contract changes, then
/// sample shortfalls, each with how many routes fail for it).
///
/// A contract change is a difference a client could notice that a rule
/// accepted on purpose (a status class, an envelope class, Content-Type
/// normalisation, ids or timestamps of another format). The shipped rules
/// accept none; the report lists every one apart from noise, and the gate
/// fails on it unless it is named with --acknowledge-contract-change.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  compare report diffs.jsonl events.jsonl --html report.html --markdown report.md \\\n    --json report.json --max-diff-rate 0.1% --min-samples 1000 && echo 'go for canary'\n\nAccepting a contract change the rules that wrote the log declare (the label is in the report and in the NOT READY line):\n  compare report diffs.jsonl --max-diff-rate 0.1% --min-samples 1000 \\\n    --acknowledge-contract-change status-class:send-accepted"
)]
pub struct ReportArgs {
    /// Diff logs (from replay, events or the mirror proxy).
    #[arg(required = true, value_name = "DIFF_LOG")]
    pub logs: Vec<PathBuf>,
    /// Write the HTML report (one self-contained file) here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the Markdown report (for a change ticket) here.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write the JSON report (for machines) here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Highest acceptable diff rate, per route and overall (`0.1%` or `0.001`).
    #[arg(long, value_parser = parse_rate_arg, requires = "min_samples")]
    pub max_diff_rate: Option<f64>,
    /// Fewest samples each route and the whole run must have.
    #[arg(long, requires = "max_diff_rate")]
    pub min_samples: Option<u64>,
    /// Accept one contract change a rule declares, by the label the report
    /// shows (`status-class:send-accepted`, `envelope-class:<name>`,
    /// `header-normalize:content-type`, `format-change:/id`). Repeatable,
    /// or comma-separated. Any accepted change not named here fails the
    /// gate, so a rule added later cannot slip through an old command line.
    #[arg(
        long = "acknowledge-contract-change",
        value_name = "CONTRACT_CHANGE",
        value_delimiter = ',',
        requires = "max_diff_rate"
    )]
    pub acknowledge_contract_change: Vec<String>,
    #[command(flatten)]
    pub output: Output,
}

/// Propose noisy paths from diff logs, with evidence: values that differ in
/// (nearly) every exchange while both sides look generated (ids, RFC 3339
/// timestamps, monotonic counters). --accept writes them into the rules file.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  compare learn-noise diffs.jsonl --rules my-rules.toml            # review the proposals\n  compare learn-noise diffs.jsonl --rules my-rules.toml --accept   # append them"
)]
pub struct LearnNoiseArgs {
    #[arg(required = true, value_name = "DIFF_LOG")]
    pub logs: Vec<PathBuf>,
    /// Rules file to append accepted proposals to.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Write the proposals into --rules (comments and layout are kept).
    #[arg(long, requires = "rules")]
    pub accept: bool,
    /// A path must differ in at least this share of a route's exchanges.
    #[arg(long, default_value = "90%", value_parser = parse_rate_arg)]
    pub min_diff_rate: f64,
    /// Both values must look generated in at least this share of those.
    #[arg(long, default_value = "95%", value_parser = parse_rate_arg)]
    pub min_generated: f64,
    /// Fewest exchanges of a route before proposing anything for it.
    #[arg(long, default_value_t = 20)]
    pub min_samples: usize,
    /// Print proposals as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub redact: RedactArgs,
}

/// Diff exchanges a capture already holds (the mirror proxy records both
/// responses) without sending anything.
///
/// A JSONL capture is read one line at a time, so memory does not grow with
/// its size, and diffed in file order (not re-sorted by `ts`). An invalid
/// line stops the run with its line number; records for the lines before it
/// are already in --out.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  compare diff --capture mirror-capture.jsonl --rules rules.toml --out diffs.jsonl"
)]
pub struct DiffArgs {
    /// Capture holding both responses per request.
    #[arg(long, value_name = "FILE")]
    pub capture: PathBuf,
    /// Capture format (default: from the extension, else sniffed).
    #[arg(long, value_enum)]
    pub format: Option<CaptureFormat>,
    /// Which records carry the (redacted) request for copy-as-curl.
    #[arg(long, value_enum, default_value_t = KeepArg::Differs)]
    pub keep_request: KeepArg,
    /// Diff log to append records to (JSONL).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub output: Output,
}

/// Check that a rules file parses and compiles.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  compare check-rules compare/rules/default.toml")]
pub struct CheckRulesArgs {
    /// The rules file.
    pub file: PathBuf,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    compare::rules::parse_duration(text)
        .map_err(|e| e.to_string())
        .and_then(|d| d.to_std().map_err(|e| e.to_string()))
}

pub fn parse_rate_arg(text: &str) -> Result<f64, String> {
    report::parse_rate(text)
        .ok_or_else(|| format!("{text:?}: expected a rate such as 0.1% or 0.001"))
}
