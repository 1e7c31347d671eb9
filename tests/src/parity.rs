//! The legacy contract's golden exchanges (`contracts/legacy/exchanges.yaml`)
//! and a driver that plays them against a target and checks every answer
//! against its golden. The placeholders are described in
//! `contracts/legacy/README.md`; the same file, as compare's capture format,
//! is the parity corpus (`contracts/legacy/parity-corpus.jsonl`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use compare::template::{self, Answers};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The golden file.
#[derive(Debug, Clone, Deserialize)]
pub struct Goldens {
    pub version: u32,
    pub exchanges: Vec<Golden>,
}

/// One golden exchange.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `false`: the contract deliberately differs from the legacy here; the
    /// legacy simulator is not held to it and it is not in the corpus.
    #[serde(default = "yes")]
    pub legacy: bool,
    /// Before sending, wait until this message (`name` or `name#/pointer`)
    /// is published (`queued`) on the target.
    #[serde(default)]
    pub settle: Option<String>,
    pub request: GoldenRequest,
    pub response: GoldenResponse,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// Who is calling: `tenant` (default), `other-tenant`, `anonymous`,
    /// `tenant-header-only`, `token-only`, `forged`, `malformed-tenant`,
    /// `mismatch`.
    #[serde(rename = "as", default)]
    pub caller: Option<String>,
    /// A body sent as `application/json` (unless `headers` say otherwise).
    #[serde(default)]
    pub json: Option<String>,
    /// A body sent with the content type `headers` give.
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Map<String, Value>,
    #[serde(default)]
    pub body: Option<Value>,
    /// The answer of that earlier exchange, byte for byte (a replay).
    #[serde(default)]
    pub same_as: Option<String>,
    #[serde(default)]
    pub no_body: bool,
}

/// The repository's `contracts/legacy/` directory.
pub fn contracts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contracts/legacy")
}

impl Goldens {
    pub fn load() -> Self {
        let text = std::fs::read_to_string(contracts_dir().join("exchanges.yaml"))
            .expect("contracts/legacy/exchanges.yaml");
        let goldens: Goldens = serde_norway::from_str(&text).expect("exchanges.yaml parses");
        assert_eq!(goldens.version, 1);
        let mut names = std::collections::HashSet::new();
        for g in &goldens.exchanges {
            assert!(names.insert(g.name.clone()), "duplicate name {}", g.name);
        }
        goldens
    }
}

/// An answer as received.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

/// A request as sent (after the templates were filled).
#[derive(Debug, Clone)]
pub struct SentRequest {
    pub method: reqwest::Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Bytes>,
}

/// Tokens and tenants of one run, shared by both targets.
#[derive(Debug, Clone)]
pub struct Callers {
    pub secret: String,
    pub tenant: String,
    pub other_tenant: String,
}

impl Callers {
    fn token(&self, secret: &str, tenant: &str) -> String {
        orchestrator::auth::mint_dev_token(secret, tenant, Duration::from_secs(3600))
            .expect("mint token")
    }

    /// The auth headers of a caller kind.
    pub fn headers(&self, caller: Option<&str>) -> Vec<(String, String)> {
        let bearer = |t: String| ("Authorization".to_owned(), format!("Bearer {t}"));
        let tenant = |t: &str| ("X-Tenant-Id".to_owned(), t.to_owned());
        let own = || self.token(&self.secret, &self.tenant);
        match caller.unwrap_or("tenant") {
            "tenant" => vec![bearer(own()), tenant(&self.tenant)],
            "other-tenant" => vec![
                bearer(self.token(&self.secret, &self.other_tenant)),
                tenant(&self.other_tenant),
            ],
            "anonymous" => vec![],
            "tenant-header-only" => vec![tenant(&self.tenant)],
            "token-only" => vec![bearer(own())],
            "forged" => vec![
                bearer(self.token("a-forger-does-not-know-the-secret-0123456789", &self.tenant)),
                tenant(&self.tenant),
            ],
            "malformed-tenant" => vec![bearer(own()), tenant("acme bank")],
            "mismatch" => vec![bearer(own()), tenant(&self.other_tenant)],
            other => panic!("unknown caller {other}"),
        }
    }
}

/// One system under test and what it answered so far.
#[derive(Debug)]
pub struct Target {
    pub name: &'static str,
    pub base: String,
    /// Exchange name → the answer.
    pub answers: HashMap<String, Answer>,
    /// Exchange name → the request as sent.
    pub sent: Vec<(String, SentRequest)>,
    /// The answers as compare's templates read them (by exchange name, the
    /// correlation id).
    templates: Answers,
}

impl Target {
    pub fn new(name: &'static str, base: &str) -> Self {
        Self {
            name,
            base: base.trim_end_matches('/').to_owned(),
            answers: HashMap::new(),
            sent: Vec::new(),
            templates: Answers::default(),
        }
    }

    /// Keeps the answer to exchange `name`.
    pub fn record(&mut self, name: &str, answer: &Answer) {
        self.answers.insert(name.to_owned(), answer.clone());
        let mut headers = http::HeaderMap::new();
        for (k, v) in &answer.headers {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_str().as_bytes()),
                http::HeaderValue::from_bytes(v.as_bytes()),
            ) {
                headers.append(k, v);
            }
        }
        self.templates
            .insert_parts(name, headers, answer.body.clone());
    }

    /// `{{id:name}}` or `{{id:name#/pointer}}`: the id an earlier exchange
    /// created on this target.
    pub fn id_of(&self, reference: &str) -> String {
        self.templates
            .id(reference)
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

/// The run's clock and run token (compare's): `{{time:…}}` and `{{run}}`
/// are the same on both targets.
pub type Clock = template::Clock;

/// Fills `{{x*N}}` and the templates compare replay fills per target
/// (`{{time:…}}`, `{{run}}`, `{{id:…}}`, `{{etag:…}}`); the others
/// (`{{id}}`, `{{timestamp}}`) are left for matching.
pub fn fill(text: &str, target: &Target, clock: &Clock) -> String {
    template::fill(&fill_static(text), &target.templates, clock)
        .unwrap_or_else(|e| panic!("{}: {e}", target.name))
}

/// Fills only what does not depend on a target (`{{x*N}}`): the corpus
/// keeps the rest for the replayer.
pub fn fill_static(text: &str) -> String {
    let re = Regex::new(r"\{\{x\*([0-9]+)\}\}").expect("regex");
    re.replace_all(text, |c: &regex::Captures| {
        "x".repeat(c[1].parse().expect("n"))
    })
    .into_owned()
}

impl Golden {
    /// The request for a target.
    pub fn build(&self, target: &Target, callers: &Callers, clock: &Clock) -> SentRequest {
        let r = &self.request;
        let mut headers = callers.headers(r.caller.as_deref());
        headers.push(("X-Correlation-ID".into(), self.name.clone()));
        let mut has_type = false;
        for (k, v) in &r.headers {
            has_type |= k.eq_ignore_ascii_case("content-type");
            headers.push((
                k.clone(),
                fill(v.as_str().unwrap_or_default(), target, clock),
            ));
        }
        if r.json.is_some() && !has_type {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        SentRequest {
            method: reqwest::Method::from_bytes(r.method.as_bytes()).expect("a method"),
            path: fill(&r.path, target, clock),
            headers,
            body: r
                .json
                .as_ref()
                .or(r.text.as_ref())
                .map(|b| Bytes::from(fill(b, target, clock))),
        }
    }

    /// Every way `answer` differs from this golden on `target`; the ids it
    /// created are left in `target` by the caller.
    pub fn check(&self, answer: &Answer, target: &Target, clock: &Clock) -> Vec<String> {
        let mut out = Vec::new();
        let name = &self.name;
        let r = &self.response;
        if answer.status != r.status {
            out.push(format!(
                "{name}: status {} (expected {}): {}",
                answer.status,
                r.status,
                String::from_utf8_lossy(&answer.body)
            ));
            return out;
        }
        let mut bindings: HashMap<String, String> = HashMap::new();
        if let Some(earlier) = &r.same_as {
            let first = target
                .answers
                .get(earlier)
                .unwrap_or_else(|| panic!("{name}: same_as {earlier} not run yet"));
            if first.body != answer.body {
                out.push(format!("{name}: body is not {earlier}'s, byte for byte"));
            }
            for h in ["location", "etag", "content-type", "x-powered-by"] {
                if first.headers.get(h) != answer.headers.get(h) {
                    out.push(format!("{name}: {h} differs from {earlier}'s"));
                }
            }
        }
        for (header, expected) in &r.headers {
            let expected = fill(expected.as_str().unwrap_or_default(), target, clock);
            let actual = answer
                .headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if let Err(e) = match_string(&expected, actual, &mut bindings) {
                out.push(format!("{name}: header {header}: {e}"));
            }
        }
        if r.no_body {
            if !answer.body.is_empty() {
                out.push(format!("{name}: a body where none is expected"));
            }
            return out;
        }
        if let Some(expected) = &r.body {
            match serde_json::from_slice::<Value>(&answer.body) {
                Ok(actual) => {
                    let mut errors = Vec::new();
                    match_value(
                        expected,
                        &actual,
                        "",
                        target,
                        clock,
                        &mut bindings,
                        &mut errors,
                    );
                    out.extend(errors.into_iter().map(|e| format!("{name}: {e}")));
                }
                Err(e) => out.push(format!("{name}: body is not JSON: {e}")),
            }
        }
        out
    }
}

fn match_value(
    expected: &Value,
    actual: &Value,
    at: &str,
    target: &Target,
    clock: &Clock,
    bindings: &mut HashMap<String, String>,
    errors: &mut Vec<String>,
) {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) => {
            let e = fill(e, target, clock);
            if let Err(err) = match_string(&e, a, bindings) {
                errors.push(format!("{at}: {err}"));
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            let ek: Vec<&String> = e.keys().collect();
            let ak: Vec<&String> = a.keys().collect();
            if ek != ak {
                errors.push(format!(
                    "{at}: members {ak:?}, expected {ek:?} (in this order)"
                ));
                return;
            }
            for (k, v) in e {
                match_value(
                    v,
                    &a[k],
                    &format!("{at}/{k}"),
                    target,
                    clock,
                    bindings,
                    errors,
                );
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                errors.push(format!(
                    "{at}: {} items, expected {}: {actual}",
                    a.len(),
                    e.len()
                ));
                return;
            }
            for (i, (e, a)) in e.iter().zip(a).enumerate() {
                match_value(e, a, &format!("{at}/{i}"), target, clock, bindings, errors);
            }
        }
        (e, a) if e == a => {}
        (e, a) => errors.push(format!("{at}: {a}, expected {e}")),
    }
}

/// Matches a string against a template whose remaining placeholders are
/// `{{id}}`/`{{id#N}}` (a fresh ObjectId, the same wherever the same name
/// appears) and `{{timestamp}}` (`toISOString()`, within two minutes of now).
pub fn match_string(
    template: &str,
    actual: &str,
    bindings: &mut HashMap<String, String>,
) -> Result<(), String> {
    let re = Regex::new(r"\{\{(id(?:#[0-9]+)?|timestamp)\}\}").expect("regex");
    let mut pattern = String::from("^");
    let mut names = Vec::new();
    let mut last = 0;
    for c in re.captures_iter(template) {
        let m = c.get(0).expect("match");
        pattern.push_str(&regex::escape(&template[last..m.start()]));
        let name = c[1].to_owned();
        pattern.push_str(if name == "timestamp" {
            r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z)"
        } else {
            "([0-9a-f]{24})"
        });
        names.push(name);
        last = m.end();
    }
    pattern.push_str(&regex::escape(&template[last..]));
    pattern.push('$');
    let caps = Regex::new(&pattern)
        .expect("pattern")
        .captures(actual)
        .ok_or_else(|| format!("{actual:?} does not match {template:?}"))?;
    for (i, name) in names.iter().enumerate() {
        let value = &caps[i + 1];
        if name == "timestamp" {
            let t = DateTime::parse_from_rfc3339(value).map_err(|e| format!("{value}: {e}"))?;
            let age = (Utc::now() - t.with_timezone(&Utc)).num_seconds().abs();
            if age > 120 {
                return Err(format!("timestamp {value} is {age} s from now"));
            }
        } else if let Some(bound) = bindings.get(name) {
            if bound != value {
                return Err(format!(
                    "{{{{{name}}}}} is {value} here and {bound} elsewhere"
                ));
            }
        } else {
            bindings.insert(name.clone(), value.to_owned());
        }
    }
    Ok(())
}

/// Sends one request.
pub async fn send(http: &reqwest::Client, target: &Target, request: &SentRequest) -> Answer {
    let mut r = http.request(
        request.method.clone(),
        format!("{}{}", target.base, request.path),
    );
    for (k, v) in &request.headers {
        r = r.header(k.as_str(), v.as_str());
    }
    if let Some(body) = &request.body {
        r = r.body(body.clone());
    }
    let response = r.send().await.unwrap_or_else(|e| {
        panic!(
            "{}: {} {} failed: {e}",
            target.name, request.method, request.path
        )
    });
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap_or_default(),
    }
}

/// Waits until the message `reference` is `queued` on `target` (the
/// simulator publishes before it answers; the orchestrator's relay right
/// after its commit).
pub async fn settle(http: &reqwest::Client, target: &Target, callers: &Callers, reference: &str) {
    let id = target.id_of(reference);
    let ok = crate::eventually(Duration::from_secs(15), || async {
        let mut r = http.get(format!("{}/v1/sms/{id}", target.base));
        for (k, v) in callers.headers(None) {
            r = r.header(k, v);
        }
        let body: Value = r.send().await.ok()?.json().await.ok()?;
        (body["status"] == "queued").then_some(())
    })
    .await;
    assert!(ok.is_some(), "{}: {reference} never published", target.name);
}

/// The corpus line of a golden, in compare's capture format: the request
/// with `{{x*N}}` expanded and the per-target templates kept for
/// `compare replay` (`"templates": true`, see `compare::template`): the
/// caller as `x-compare-caller`, `settle` as an `x-compare-await` on the
/// message's status.
pub fn capture_line(golden: &Golden) -> Value {
    let r = &golden.request;
    let mut headers: Vec<Value> = Vec::new();
    match r.caller.as_deref().unwrap_or("tenant") {
        "anonymous" => {}
        caller => headers.push(json!([template::CALLER_HEADER, caller])),
    }
    if let Some(reference) = &golden.settle {
        headers.push(json!([
            template::AWAIT_HEADER,
            format!("/v1/sms/{{{{id:{reference}}}}} /status queued")
        ]));
    }
    let mut has_type = false;
    for (k, v) in &r.headers {
        has_type |= k.eq_ignore_ascii_case("content-type");
        headers.push(json!([
            k.to_ascii_lowercase(),
            fill_static(v.as_str().unwrap_or_default())
        ]));
    }
    if r.json.is_some() && !has_type {
        headers.push(json!(["content-type", "application/json"]));
    }
    let mut request = json!({"method": r.method, "path": r.path, "headers": headers});
    if let Some(body) = r.json.as_ref().or(r.text.as_ref()) {
        request["body"] = json!(fill_static(body));
    }
    json!({
        "schema_version": 1,
        "correlation_id": golden.name,
        "templates": true,
        "request": request,
    })
}

/// The `sms.outbound.request` events the corpus makes each system publish:
/// one per accepted message of every `201` that is not a replay.
pub fn expected_events(goldens: &Goldens) -> usize {
    goldens
        .exchanges
        .iter()
        .filter(|g| g.legacy && g.response.status == 201 && g.response.same_as.is_none())
        .map(|g| {
            g.response
                .body
                .as_ref()
                .and_then(|b| b["accepted"].as_u64())
                .map_or(1, |n| n as usize)
        })
        .sum()
}

/// `compare events` over the legacy's and the orchestrator's subjects, as
/// an SRE runs it (the shipped rules), stopping after `pairs` pairs.
#[derive(Debug)]
pub struct CompareEvents {
    child: tokio::process::Child,
    stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl CompareEvents {
    /// Starts it and waits until both subscriptions are live.
    pub async fn start(nats_url: &str, primary: &str, candidate: &str, pairs: usize) -> Self {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("events.jsonl");
        let mut child = tokio::process::Command::new(crate::binary("compare"))
            .args(["events", "--nats-url", nats_url])
            .args([
                "--primary-subject",
                primary,
                "--candidate-subject",
                candidate,
            ])
            .args(["--window", "60s", "--duration", "120s"])
            .args(["--max-pairs", &pairs.to_string()])
            .arg("--out")
            .arg(&log)
            .env("DIFF_REDACTION_KEY", "parity-events")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("compare events");
        let mut stderr =
            tokio::io::BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = stderr.next_line().await {
                if line == "listening" {
                    return;
                }
            }
        })
        .await
        .expect("compare events listening");
        Self {
            child,
            stderr,
            log,
            _dir: dir,
        }
    }

    /// Waits for it to stop and checks what the proof needs: every one of
    /// the `expected` events paired (none unmatched, none a duplicate) and
    /// no pair differing. Its records.
    pub async fn every_event_alike(self, expected: usize) -> Vec<compare::DiffRecord> {
        let (summary, records) = self.finish().await;
        println!("compare events: {summary}");
        assert_eq!(records.len(), expected, "{summary}");
        assert!(
            summary.contains(&format!("{expected} pairs"))
                && summary.contains("unmatched legacy 0, unmatched shadow 0; duplicates 0"),
            "{summary}"
        );
        let (_, differs) = tally(&records);
        assert!(
            differs.is_empty(),
            "event differences:\n{}",
            differs.join("\n")
        );
        records
    }

    /// Waits for it to stop (after its pairs, or its duration); its
    /// summary line and its records.
    pub async fn finish(mut self) -> (String, Vec<compare::DiffRecord>) {
        let status = tokio::time::timeout(Duration::from_secs(150), self.child.wait())
            .await
            .expect("compare events stops")
            .expect("compare events ran");
        let mut summary = String::new();
        while let Ok(Some(line)) = self.stderr.next_line().await {
            summary.push_str(&line);
            summary.push('\n');
        }
        assert!(status.success(), "{summary}");
        let records = compare::difflog::read_records(&self.log).expect("events diff log");
        (summary, records)
    }
}

/// Diff records by verdict (`same`, `noise-only`, `differs`), and each
/// `differs` record as JSON (for a failure message).
pub fn tally(records: &[compare::DiffRecord]) -> (HashMap<&'static str, usize>, Vec<String>) {
    let mut verdicts = HashMap::new();
    let mut differs = Vec::new();
    for record in records {
        let label = match record.verdict {
            compare::Verdict::Same => "same",
            compare::Verdict::NoiseOnly => "noise-only",
            compare::Verdict::Differs => {
                differs.push(serde_json::to_string(record).unwrap_or_default());
                "differs"
            }
        };
        *verdicts.entry(label).or_default() += 1;
    }
    (verdicts, differs)
}
