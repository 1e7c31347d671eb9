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
//! - **Authored corpora.** Lines marked `"templates": true` have their
//!   templates filled per target ([`crate::template`]): ids and ETags from
//!   the answers that target gave to earlier lines, instants from the
//!   replay's clock, credentials from the caller the line names. A capture
//!   with such lines is replayed one request at a time, in capture order
//!   (a line may depend on any earlier answer).

use std::collections::{BTreeSet, HashMap, HashSet};
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
use crate::error::{ReplayError, TemplateError};
use crate::exchange::{Exchange, RecordedRequest, RecordedResponse, is_write};
use crate::record::{DiffRecord, Verdict};
use crate::redact::Redactor;
use crate::template::{self, AWAIT_HEADER, Answers, Await, CALLER_HEADER, Clock};

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
    /// Caller name → headers: what a templated line naming that caller in
    /// `x-compare-caller` is sent with.
    pub callers: HashMap<String, Vec<(HeaderName, HeaderValue)>>,
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
            callers: HashMap::new(),
        })
    }

    /// Adds a `Name: value` header override.
    pub fn header(mut self, line: &str) -> Result<Self, ReplayError> {
        self.headers.push(parse_header(line)?);
        Ok(self)
    }

    /// Adds `NAME=Header: value` to caller `NAME`'s headers; `NAME=` alone
    /// declares a caller that sends none.
    pub fn caller(mut self, spec: &str) -> Result<Self, ReplayError> {
        let bad = || ReplayError::Caller {
            caller: spec.to_owned(),
        };
        let (name, header) = spec.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad());
        }
        let headers = self.callers.entry(name.to_owned()).or_default();
        if !header.trim().is_empty() {
            headers.push(parse_header(header).map_err(|_| bad())?);
        }
        Ok(self)
    }

    pub fn shadow_safe(mut self, safe: bool) -> Self {
        self.shadow_safe = safe;
        self
    }
}

fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), ReplayError> {
    let bad = || ReplayError::Header {
        header: line.to_owned(),
    };
    let (name, value) = line.split_once(':').ok_or_else(bad)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
    Ok((name, value))
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
    /// How long a templated line's `x-compare-await` polls before the
    /// request is sent anyway (and counted in `await_timeouts`).
    pub await_timeout: Duration,
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
            await_timeout: Duration::from_secs(15),
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
        let templated = requests.iter().filter(|r| r.templates).count();
        if templated > 0 {
            lines.push(format!(
                "templates: {templated} authored lines are filled per target (ids and ETags from that target's earlier answers, credentials from --caller); replayed one at a time, in capture order"
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
    /// Templated requests not sent to a target because a template could
    /// not be filled there (an earlier answer without the id, …).
    pub template_errors: AtomicU64,
    /// `x-compare-await` conditions not met in time (sent anyway).
    pub await_timeouts: AtomicU64,
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
            template_errors: get(&self.template_errors),
            await_timeouts: get(&self.await_timeouts),
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
    pub template_errors: u64,
    pub await_timeouts: u64,
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

/// Which target: the index of its answers in [`Templating`].
#[derive(Debug, Clone, Copy)]
enum Slot {
    Primary = 0,
    Candidate = 1,
    Secondary = 2,
}

/// What a replay of templated lines keeps: the clock, and per target the
/// answers later lines refer to.
#[derive(Debug)]
struct Templating {
    clock: Clock,
    /// Correlation ids some templated line refers to: only their answers
    /// are kept.
    referenced: HashSet<String>,
    answers: [Mutex<Answers>; 3],
}

impl Templating {
    /// `None` when no line is templated. Fails when a target lacks a
    /// caller the capture names.
    fn new(
        config: &ReplayConfig,
        requests: &[CapturedRequest],
    ) -> Result<Option<Self>, ReplayError> {
        let templated: Vec<&RecordedRequest> = requests
            .iter()
            .filter(|r| r.templates)
            .map(|r| &r.request)
            .collect();
        if templated.is_empty() {
            return Ok(None);
        }
        let mut referenced = HashSet::new();
        let mut callers = BTreeSet::new();
        for request in &templated {
            let body = String::from_utf8_lossy(&request.body);
            let texts = std::iter::once(request.path.as_str())
                .chain(request.headers.values().filter_map(|v| v.to_str().ok()))
                .chain(std::iter::once(body.as_ref()));
            for text in texts {
                referenced.extend(template::references(text).map(str::to_owned));
            }
            if let Some(name) = request
                .headers
                .get(CALLER_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                callers.insert(name.trim().to_owned());
            }
        }
        for target in [
            Some(&config.primary),
            Some(&config.candidate),
            config.secondary.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let missing: Vec<&str> = callers
                .iter()
                .filter(|name| !target.callers.contains_key(name.as_str()))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(ReplayError::MissingCallers {
                    target: target.name,
                    names: missing.join(", "),
                });
            }
        }
        Ok(Some(Self {
            clock: Clock::now(),
            referenced,
            answers: Default::default(),
        }))
    }

    fn answers(&self, slot: Slot) -> std::sync::MutexGuard<'_, Answers> {
        self.answers[slot as usize]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The request as `target` gets it: templates filled from its own
    /// answers, the caller's headers in place of `x-compare-caller`; and
    /// what to await first.
    fn prepare(
        &self,
        slot: Slot,
        target: &Target,
        request: &RecordedRequest,
    ) -> Result<Prepared, TemplateError> {
        let answers = self.answers(slot);
        let fill = |text: &str| template::fill(text, &answers, &self.clock);
        let mut headers = HeaderMap::with_capacity(request.headers.len());
        let mut caller = Vec::new();
        let mut wait = None;
        for (name, value) in &request.headers {
            let text = value.to_str().unwrap_or_default();
            if name == CALLER_HEADER {
                caller = target.callers.get(text.trim()).cloned().unwrap_or_default();
            } else if name == AWAIT_HEADER {
                let mut condition = Await::parse(text)?;
                condition.path = fill(&condition.path)?;
                wait = Some(condition);
            } else if text.contains("{{") {
                let filled = fill(text)?;
                headers.append(
                    name.clone(),
                    HeaderValue::from_str(&filled).unwrap_or_else(|_| value.clone()),
                );
            } else {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, value) in &caller {
            headers.insert(name.clone(), value.clone());
        }
        let body = match std::str::from_utf8(&request.body) {
            Ok(text) if text.contains("{{") => Bytes::from(fill(text)?),
            _ => request.body.clone(),
        };
        let mut wait_headers = HeaderMap::new();
        for (name, value) in &caller {
            wait_headers.insert(name.clone(), value.clone());
        }
        Ok(Prepared {
            request: RecordedRequest {
                method: request.method.clone(),
                path: fill(&request.path)?,
                headers,
                body,
            },
            wait: wait.map(|condition| (condition, wait_headers)),
        })
    }

    /// Keeps `response` when later lines refer to `request`.
    fn remember(&self, slot: Slot, request: &RecordedRequest, response: &RecordedResponse) {
        if let Some(id) = request.correlation_id()
            && self.referenced.contains(id)
        {
            self.answers(slot).insert(id, response);
        }
    }
}

/// A request ready for one target.
#[derive(Debug, Clone)]
struct Prepared {
    request: RecordedRequest,
    /// Await this (a `GET` with these headers) before sending.
    wait: Option<(Await, HeaderMap)>,
}

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
    let templating = Templating::new(&config, &requests)?.map(Arc::new);
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
    // Templated lines may depend on any earlier answer: one at a time.
    let concurrency = if templating.is_some() {
        1
    } else {
        config.concurrency.max(1)
    };
    let semaphore = Arc::new(Semaphore::new(concurrency));
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
        let (client, config, differ, sink, counters, credentials, templating) = (
            client.clone(),
            config.clone(),
            differ.clone(),
            sink.clone(),
            counters.clone(),
            credentials.clone(),
            templating.clone(),
        );
        tasks.spawn(async move {
            let one = One {
                client: &client,
                config: &config,
                differ: &differ,
                counters: &counters,
                templating: templating.as_deref(),
            };
            let result = one
                .replay(&credentials, captured.request, captured.templates, write)
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

/// What one replayed request needs.
struct One<'a> {
    client: &'a reqwest::Client,
    config: &'a ReplayConfig,
    differ: &'a Differ,
    counters: &'a ReplayCounters,
    templating: Option<&'a Templating>,
}

impl One<'_> {
    async fn replay(
        &self,
        credentials: &Redactor,
        mut request: RecordedRequest,
        templated: bool,
        write: bool,
    ) -> Outcome {
        let config = self.config;
        if !config.keep_credentials {
            strip_credentials(&mut request.headers, credentials);
        }
        strip_connection_headers(&mut request.headers);
        if request.correlation_id().is_none()
            && let Ok(value) = HeaderValue::from_str(&new_correlation_id())
        {
            request.headers.insert("x-correlation-id", value);
        }
        let templating = self.templating.filter(|_| templated);
        let secondary = config
            .secondary
            .as_ref()
            .filter(|t| !write || config.may_write(t));
        let primary_call = self.call(Slot::Primary, &config.primary, templating, &request);
        let candidate_call = self.call(Slot::Candidate, &config.candidate, templating, &request);
        let secondary_call = async {
            match secondary {
                Some(target) => Some(
                    self.call(Slot::Secondary, target, templating, &request)
                        .await,
                ),
                None => None,
            }
        };
        let (primary, candidate, secondary) =
            tokio::join!(primary_call, candidate_call, secondary_call);

        // The record shows the request as the candidate got it, so "copy as
        // curl" reproduces its answer.
        let (candidate_request, candidate) = candidate;
        let request = candidate_request.unwrap_or(request);
        let Ok(primary) = primary.1 else {
            return Outcome::PrimaryFailed;
        };
        let candidate = match candidate {
            Ok(candidate) => candidate,
            Err(error) => {
                let mut record = self.differ.failed(&request, &primary, error);
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
        let mut record = match secondary.map(|(_, answer)| answer) {
            Some(Ok(secondary)) => self.differ.diff_with_secondary(&exchange, &secondary),
            _ => self.differ.diff(&exchange),
        };
        if let Some(snapshot) = record.request.as_mut() {
            candidate_headers(snapshot, &config.candidate);
        }
        Outcome::Record(Box::new(record))
    }

    /// Prepares (templated lines), awaits, sends to one target and keeps
    /// the answer when later lines refer to it. Returns the request as
    /// sent (templated lines only) and the answer.
    async fn call(
        &self,
        slot: Slot,
        target: &Target,
        templating: Option<&Templating>,
        request: &RecordedRequest,
    ) -> (Option<RecordedRequest>, Result<RecordedResponse, String>) {
        let Some(templating) = templating else {
            let answer = send(self.client, self.config, target, request).await;
            if let (Some(templating), Ok(answer)) = (self.templating, &answer) {
                templating.remember(slot, request, answer);
            }
            return (None, answer);
        };
        let prepared = match templating.prepare(slot, target, request) {
            Ok(prepared) => prepared,
            Err(e) => {
                self.counters
                    .template_errors
                    .fetch_add(1, Ordering::Relaxed);
                return (None, Err(format!("{}: template: {e}", target.name)));
            }
        };
        if let Some((condition, headers)) = &prepared.wait {
            self.wait_for(target, condition, headers).await;
        }
        let answer = send(self.client, self.config, target, &prepared.request).await;
        if let Ok(answer) = &answer {
            templating.remember(slot, &prepared.request, answer);
        }
        (Some(prepared.request), answer)
    }

    /// Polls `GET condition.path` on `target` until it shows the value, or
    /// the await timeout passes (counted; the request is sent anyway).
    async fn wait_for(&self, target: &Target, condition: &Await, headers: &HeaderMap) {
        let poll = RecordedRequest {
            method: http::Method::GET,
            path: condition.path.clone(),
            headers: headers.clone(),
            body: Bytes::new(),
        };
        let deadline = Instant::now() + self.config.await_timeout;
        loop {
            if let Ok(answer) = send(self.client, self.config, target, &poll).await
                && condition.satisfied_by(&answer.body)
            {
                return;
            }
            if Instant::now() >= deadline {
                self.counters.await_timeouts.fetch_add(1, Ordering::Relaxed);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
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
