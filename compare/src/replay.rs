//! Replay: send captured requests to the primary, the candidate and
//! optionally a secondary, diff the answers, write diff records.
//!
//! - **Pacing.** With `rate`, requests start on a fixed schedule (a tokio
//!   interval with [`MissedTickBehavior::Burst`], so a late tick is caught
//!   up and the average rate stays exact); `concurrency` caps requests in
//!   flight. Without `rate`, only `concurrency` limits.
//! - **Write safety.** A state-changing request (POST, PUT, PATCH, DELETE)
//!   goes to a target only if that target is shadow-safe (it then receives
//!   `X-Shadow-Request: 1` and the shadow credential, so the orchestrator
//!   never sends an SMS) or `allow_writes` is set. A write is replayed only
//!   when both the primary and the candidate may receive it (otherwise
//!   there is nothing to compare); the secondary simply does not get it.
//!   [`WritePlan`] says all this before anything is sent.
//! - **Credentials.** Captured credentials are not forwarded (unless
//!   `keep_credentials`): each target gets its own through header overrides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::capture::CapturedRequest;
use crate::diff::Differ;
use crate::difflog::DiffLogWriter;
use crate::error::ReplayError;
use crate::exchange::{Exchange, RecordedRequest, RecordedResponse, is_write};
use crate::record::{DiffRecord, Verdict};
use crate::redact::Redactor;

/// The shadow marker the orchestrator honours (with the credential).
pub const SHADOW_HEADER: &str = "x-shadow-request";
/// The header carrying the shadow credential.
pub const SHADOW_CREDENTIAL_HEADER: &str = "x-shadow-credential";

/// Headers that belong to one connection and are never replayed.
const HOP_BY_HOP: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-connection",
];

/// Accepted `rate` range (requests per second): below it a replay would
/// take days, above it the timer resolution is the limit, not the pacer.
pub const MIN_RATE: f64 = 0.001;
pub const MAX_RATE: f64 = 1_000_000.0;

/// One replay target.
#[derive(Debug, Clone)]
pub struct Target {
    /// `primary`, `candidate` or `secondary`: used in messages.
    pub name: &'static str,
    /// Base URL; the captured path is appended (`http://127.0.0.1:3000`).
    pub base_url: String,
    /// Headers set on every request to this target (replacing captured ones).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Marked safe for writes: it gets the shadow marker and credential.
    pub shadow_safe: bool,
}

impl Target {
    /// A target from a base URL; the URL must be `http://` or `https://`.
    pub fn new(name: &'static str, base_url: &str) -> Result<Self, ReplayError> {
        let uri: http::Uri =
            base_url
                .parse()
                .map_err(|e: http::uri::InvalidUri| ReplayError::Target {
                    url: base_url.to_owned(),
                    reason: e.to_string(),
                })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ReplayError::Target {
                url: base_url.to_owned(),
                reason: "expected http://host[:port][/prefix] or https://…".to_owned(),
            });
        }
        Ok(Self {
            name,
            base_url: base_url.trim_end_matches('/').to_owned(),
            headers: Vec::new(),
            shadow_safe: false,
        })
    }

    /// Adds a `Name: value` header override.
    pub fn header(mut self, line: &str) -> Result<Self, ReplayError> {
        let bad = || ReplayError::Header {
            header: line.to_owned(),
        };
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        self.headers.push((name, value));
        Ok(self)
    }

    pub fn shadow_safe(mut self, safe: bool) -> Self {
        self.shadow_safe = safe;
        self
    }
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub primary: Target,
    pub candidate: Target,
    pub secondary: Option<Target>,
    /// Requests in flight at most (each request goes to all targets at once).
    pub concurrency: usize,
    /// Requests started per second; `None` = as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Per-request timeout on each target.
    pub timeout: Duration,
    /// Send writes to targets that are not shadow-safe.
    pub allow_writes: bool,
    /// Value for `X-Shadow-Credential` on shadow-safe targets.
    pub shadow_credential: Option<String>,
    /// Forward captured credentials (Authorization, cookies…).
    pub keep_credentials: bool,
}

impl ReplayConfig {
    pub fn new(primary: Target, candidate: Target) -> Self {
        Self {
            primary,
            candidate,
            secondary: None,
            concurrency: 8,
            rate: None,
            timeout: Duration::from_secs(10),
            allow_writes: false,
            shadow_credential: None,
            keep_credentials: false,
        }
    }

    fn may_write(&self, target: &Target) -> bool {
        self.allow_writes || target.shadow_safe
    }
}

/// What will happen to state-changing requests, decided before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    pub total: usize,
    pub writes: usize,
    /// Writes skipped because the primary or the candidate may not receive
    /// them.
    pub skipped: usize,
    pub lines: Vec<String>,
}

impl WritePlan {
    pub fn new(config: &ReplayConfig, requests: &[CapturedRequest]) -> Self {
        let writes = requests
            .iter()
            .filter(|r| is_write(&r.request.method))
            .count();
        let mut lines = vec![format!(
            "write safety: {writes} of {} requests change state (POST/PUT/PATCH/DELETE)",
            requests.len()
        )];
        let targets = [
            Some(&config.primary),
            Some(&config.candidate),
            config.secondary.as_ref(),
        ];
        for target in targets.into_iter().flatten() {
            let how = if target.shadow_safe {
                let credential = if config.shadow_credential.is_some() {
                    "with the shadow credential"
                } else {
                    "WITHOUT a shadow credential (the orchestrator will answer 403)"
                };
                format!("sent, marked X-Shadow-Request: 1 {credential}")
            } else if config.allow_writes {
                "SENT UNMARKED (--allow-writes): real side effects, real SMS".to_owned()
            } else {
                "not sent (target is not --*-shadow-safe and --allow-writes is off)".to_owned()
            };
            lines.push(format!(
                "  {:<9} {}: writes {how}",
                target.name, target.base_url
            ));
        }
        let both = config.may_write(&config.primary) && config.may_write(&config.candidate);
        let skipped = if both { 0 } else { writes };
        if skipped > 0 {
            lines.push(format!(
                "  {skipped} write requests will be skipped: a write is compared only when both primary and candidate may receive it"
            ));
        }
        Self {
            total: requests.len(),
            writes,
            skipped,
            lines,
        }
    }
}

/// Live counts, shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct ReplayCounters {
    pub started: AtomicU64,
    pub done: AtomicU64,
    pub same: AtomicU64,
    pub noise_only: AtomicU64,
    pub differs: AtomicU64,
    pub primary_errors: AtomicU64,
    pub candidate_errors: AtomicU64,
    pub skipped_writes: AtomicU64,
}

impl ReplayCounters {
    fn count(&self, verdict: Verdict) {
        let counter = match verdict {
            Verdict::Same => &self.same,
            Verdict::NoiseOnly => &self.noise_only,
            Verdict::Differs => &self.differs,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ReplaySummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReplaySummary {
            started: get(&self.started),
            done: get(&self.done),
            same: get(&self.same),
            noise_only: get(&self.noise_only),
            differs: get(&self.differs),
            primary_errors: get(&self.primary_errors),
            candidate_errors: get(&self.candidate_errors),
            skipped_writes: get(&self.skipped_writes),
            elapsed: Duration::ZERO,
        }
    }
}

/// Totals of a finished replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySummary {
    pub started: u64,
    pub done: u64,
    pub same: u64,
    pub noise_only: u64,
    pub differs: u64,
    pub primary_errors: u64,
    pub candidate_errors: u64,
    pub skipped_writes: u64,
    /// From the first request started to the last answer.
    pub elapsed: Duration,
}

impl ReplaySummary {
    /// Requests started per second over the run.
    pub fn achieved_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.started as f64 / secs
        } else {
            0.0
        }
    }
}

/// Where records go: a diff log (which redacts) shared by the tasks.
pub type RecordSink<W> = Arc<Mutex<DiffLogWriter<W>>>;

/// Replays `requests` and writes one diff record per compared exchange.
pub async fn run<W: std::io::Write + Send + 'static>(
    config: ReplayConfig,
    requests: Vec<CapturedRequest>,
    differ: Arc<Differ>,
    sink: RecordSink<W>,
    counters: Arc<ReplayCounters>,
) -> Result<ReplaySummary, ReplayError> {
    if let Some(rate) = config.rate
        && !(MIN_RATE..=MAX_RATE).contains(&rate)
    {
        return Err(ReplayError::Rate(rate));
    }
    // reqwest is built on rustls without a bundled crypto provider; use ring
    // (already in the tree through async-nats) unless the process chose one.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(config.concurrency.max(1))
        .build()
        .map_err(|e| ReplayError::Client(e.to_string()))?;
    let config = Arc::new(config);
    let semaphore = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut ticker = config.rate.map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        interval
    });
    // Only used to recognise credentials to strip; values are not hashed
    // here, so the key does not matter.
    let credentials = Arc::new(Redactor::new(b"replay"));
    let mut tasks = JoinSet::new();
    let mut write_error = None;
    let start = Instant::now();

    for captured in requests {
        let write = is_write(&captured.request.method);
        if write && !(config.may_write(&config.primary) && config.may_write(&config.candidate)) {
            counters.skipped_writes.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        let Ok(permit) = semaphore.clone().acquire_owned().await else {
            break;
        };
        counters.started.fetch_add(1, Ordering::Relaxed);
        let (client, config, differ, sink, counters, credentials) = (
            client.clone(),
            config.clone(),
            differ.clone(),
            sink.clone(),
            counters.clone(),
            credentials.clone(),
        );
        tasks.spawn(async move {
            let result = replay_one(
                &client,
                &config,
                &differ,
                &credentials,
                captured.request,
                write,
            )
            .await;
            drop(permit);
            let outcome = match result {
                Outcome::PrimaryFailed => {
                    counters.primary_errors.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Outcome::Record(record) => {
                    if record.error.is_some() {
                        counters.candidate_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    counters.count(record.verdict);
                    match sink.lock() {
                        Ok(mut writer) => writer.write(*record),
                        Err(poisoned) => poisoned.into_inner().write(*record),
                    }
                }
            };
            counters.done.fetch_add(1, Ordering::Relaxed);
            outcome
        });
        // Reap finished tasks as we go so the set stays small.
        while let Some(joined) = tasks.try_join_next() {
            note_failure(joined, &mut write_error);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        note_failure(joined, &mut write_error);
    }
    let elapsed = start.elapsed();
    let flushed = match sink.lock() {
        Ok(mut writer) => writer.flush(),
        Err(poisoned) => poisoned.into_inner().flush(),
    };
    if let Some(e) = write_error {
        return Err(ReplayError::DiffLog(e));
    }
    flushed?;
    let mut summary = counters.snapshot();
    summary.elapsed = elapsed;
    Ok(summary)
}

fn note_failure(
    joined: Result<Result<(), crate::error::DiffLogError>, tokio::task::JoinError>,
    first: &mut Option<crate::error::DiffLogError>,
) {
    if let Ok(Err(e)) = joined
        && first.is_none()
    {
        *first = Some(e);
    }
}

enum Outcome {
    PrimaryFailed,
    Record(Box<DiffRecord>),
}

async fn replay_one(
    client: &reqwest::Client,
    config: &ReplayConfig,
    differ: &Differ,
    credentials: &Redactor,
    mut request: RecordedRequest,
    write: bool,
) -> Outcome {
    if !config.keep_credentials {
        strip_credentials(&mut request.headers, credentials);
    }
    strip_connection_headers(&mut request.headers);
    if request.correlation_id().is_none()
        && let Ok(value) = HeaderValue::from_str(&new_correlation_id())
    {
        request.headers.insert("x-correlation-id", value);
    }
    let secondary = config
        .secondary
        .as_ref()
        .filter(|t| !write || config.may_write(t));
    let primary_call = send(client, config, &config.primary, &request);
    let candidate_call = send(client, config, &config.candidate, &request);
    let secondary_call = async {
        match secondary {
            Some(target) => Some(send(client, config, target, &request).await),
            None => None,
        }
    };
    let (primary, candidate, secondary) =
        tokio::join!(primary_call, candidate_call, secondary_call);

    let Ok(primary) = primary else {
        return Outcome::PrimaryFailed;
    };
    let candidate = match candidate {
        Ok(candidate) => candidate,
        Err(error) => {
            let mut record = differ.failed(&request, &primary, error);
            if let Some(snapshot) = record.request.as_mut() {
                candidate_headers(snapshot, &config.candidate);
            }
            return Outcome::Record(Box::new(record));
        }
    };
    let exchange = Exchange {
        request,
        primary,
        candidate,
    };
    let mut record = match secondary {
        Some(Ok(secondary)) => differ.diff_with_secondary(&exchange, &secondary),
        _ => differ.diff(&exchange),
    };
    if let Some(snapshot) = record.request.as_mut() {
        candidate_headers(snapshot, &config.candidate);
    }
    Outcome::Record(Box::new(record))
}

/// The snapshot as the candidate received it: the target's own headers
/// (`--candidate-header`, e.g. its `Authorization`) replace captured ones,
/// so "copy as curl" reproduces what was sent. Credentials among them are
/// dropped by the redactor like any other.
fn candidate_headers(snapshot: &mut crate::record::RequestSnapshot, target: &Target) {
    for (name, value) in &target.headers {
        snapshot
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_str()));
        snapshot.headers.push((
            name.as_str().to_owned(),
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ));
    }
}

async fn send(
    client: &reqwest::Client,
    config: &ReplayConfig,
    target: &Target,
    request: &RecordedRequest,
) -> Result<RecordedResponse, String> {
    let mut headers = request.headers.clone();
    for (name, value) in &target.headers {
        headers.insert(name.clone(), value.clone());
    }
    if target.shadow_safe {
        headers.insert(SHADOW_HEADER, HeaderValue::from_static("1"));
        if let Some(credential) = &config.shadow_credential
            && let Ok(value) = HeaderValue::from_str(credential)
        {
            headers.insert(SHADOW_CREDENTIAL_HEADER, value);
        }
    }
    let url = format!("{}{}", target.base_url, request.path);
    let started = Instant::now();
    let response = client
        .request(request.method.clone(), &url)
        .headers(headers)
        .body(request.body.clone())
        .send()
        .await
        .map_err(|e| describe(target, &e))?;
    let status = response.status();
    let response_headers = response.headers().clone();
    let body: Bytes = response.bytes().await.map_err(|e| describe(target, &e))?;
    Ok(RecordedResponse {
        status,
        headers: response_headers,
        body,
        latency: started.elapsed(),
    })
}

fn describe(target: &Target, error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{}: {what}", target.name)
}

fn strip_credentials(headers: &mut HeaderMap, redactor: &Redactor) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| redactor.drops_header(name.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP
        .iter()
        .chain(&[SHADOW_HEADER, SHADOW_CREDENTIAL_HEADER])
    {
        headers.remove(*name);
    }
}

fn new_correlation_id() -> String {
    format!("compare-{:032x}", rand::random::<u128>())
}
