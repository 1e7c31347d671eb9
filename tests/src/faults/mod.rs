//! The fault suite's machinery (`tests/tests/faults_under_load.rs`): private
//! Postgres, Redis and NATS on random ports, the real orchestrator binary
//! (one or two), optionally mirror-proxy with the legacy gateway simulator
//! as its primary, a steady submit load, and the invariants counted from
//! Postgres and the whole stream afterwards.
//!
//! SQL lives in [`invariants`] only; the TCP fault proxy in [`proxy`].

pub mod invariants;
pub mod proxy;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{NatsNames, Options, PrivateNats, PrivatePostgres, SECRET, TestApp, free_port};
use proxy::FaultProxy;

/// How long a client waits for any answer. No request may take longer:
/// the orchestrator's own bounds (pool acquire 3 s, statement 15 s,
/// `REDIS_TIMEOUT` 10 ms, PubAck not awaited by a submit) all end sooner.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A private `redis-server` on a free port (no persistence).
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.resume().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: everything it held is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn resume(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server installed (the test command installs it)");
        self.child = Some(child);
        let url = self.url();
        let up = crate::eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                let client = redis::Client::open(url).ok()?;
                let mut c = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING").query_async::<String>(&mut c).await.ok()
            }
        })
        .await;
        assert!(up.is_some(), "private redis-server did not start");
    }

    /// `FLUSHALL`: every idempotency entry of the fast path is gone.
    pub async fn flush(&self) {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let _: String = redis::cmd("FLUSHALL")
            .query_async(&mut c)
            .await
            .expect("FLUSHALL");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a scenario's stack is made of.
#[derive(Debug, Clone, Copy, Default)]
pub struct StackSpec {
    /// Orchestrators sharing the stores.
    pub orchestrators: usize,
    /// Postgres reached through a [`FaultProxy`].
    pub pg_proxy: bool,
    /// Redis reached through a [`FaultProxy`].
    pub redis_proxy: bool,
    /// NATS reached (by the orchestrators) through a [`FaultProxy`].
    pub nats_proxy: bool,
    /// mirror-proxy (100 % sampling) in front of the legacy gateway
    /// simulator, shadowing to the first orchestrator.
    pub mirror: bool,
}

/// Private services and the processes under test.
#[derive(Debug)]
pub struct Stack {
    pub pg: PrivatePostgres,
    pub redis: PrivateRedis,
    pub nats: PrivateNats,
    pub names: NatsNames,
    pub pg_proxy: Option<FaultProxy>,
    pub redis_proxy: Option<FaultProxy>,
    pub nats_proxy: Option<FaultProxy>,
    pub apps: Vec<Option<TestApp>>,
    pub targets: Arc<RwLock<Vec<String>>>,
    pub options: Options,
    pub pool: sqlx::PgPool,
    pub mirror: Option<Mirror>,
    /// Lines logged by orchestrators that are gone (killed or restarted).
    pub past_logs: Vec<String>,
}

/// mirror-proxy and its primary.
#[derive(Debug)]
pub struct Mirror {
    pub proxy: tokio::process::Child,
    pub legacy: tokio::process::Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start(spec: StackSpec) -> Self {
        let pg = PrivatePostgres::start().await;
        let redis = PrivateRedis::start().await;
        let nats = PrivateNats::start().await;
        let nats_proxy = if spec.nats_proxy {
            Some(FaultProxy::start(format!("127.0.0.1:{}", nats.port)).await)
        } else {
            None
        };
        // The orchestrators' NATS address; the test reads the stream directly.
        let names = NatsNames::at(match &nats_proxy {
            Some(p) => format!("nats://{}", p.addr()),
            None => nats.url(),
        });
        let pg_proxy = if spec.pg_proxy {
            Some(FaultProxy::start(format!("127.0.0.1:{}", pg.port)).await)
        } else {
            None
        };
        let redis_proxy = if spec.redis_proxy {
            Some(FaultProxy::start(format!("127.0.0.1:{}", redis.port)).await)
        } else {
            None
        };
        let database_url = match &pg_proxy {
            Some(p) => format!("postgres://postgres@{}/postgres", p.addr()),
            None => pg.url(),
        };
        let redis_url = match &redis_proxy {
            Some(p) => format!("redis://{}", p.addr()),
            None => redis.url(),
        };
        let options = Options {
            database_url: Some(database_url),
            redis: Some(redis_url),
            nats: Some(names.clone()),
            ..Options::default()
        };
        let mut apps = Vec::new();
        for _ in 0..spec.orchestrators.max(1) {
            apps.push(Some(TestApp::spawn(options.clone()).await));
        }
        let targets = Arc::new(RwLock::new(
            apps.iter().flatten().map(|a| a.api.clone()).collect(),
        ));
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&pg.url())
            .await
            .expect("connect to the private Postgres");
        let mirror = if spec.mirror {
            let shadow = apps[0]
                .as_ref()
                .map(|a| a.api.trim_start_matches("http://").to_owned())
                .expect("an orchestrator");
            Some(Mirror::start(&shadow).await)
        } else {
            None
        };
        Self {
            pg,
            redis,
            nats,
            names,
            pg_proxy,
            redis_proxy,
            nats_proxy,
            apps,
            targets,
            options,
            pool,
            mirror,
            past_logs: Vec::new(),
        }
    }

    fn set_targets(&self) {
        *self.targets.write().unwrap_or_else(|p| p.into_inner()) =
            self.apps.iter().flatten().map(|a| a.api.clone()).collect();
    }

    /// SIGKILLs orchestrator `i` (clients still aimed at it see their
    /// connections fail, as behind a load balancer that has not noticed).
    pub async fn kill(&mut self, i: usize) {
        if let Some(mut app) = self.apps[i].take() {
            app.kill().await;
            self.past_logs.extend(app.log_lines());
        }
        self.set_targets();
    }

    /// Takes orchestrator `i` out of the targets, then SIGTERMs it (a
    /// graceful drain, as a rolling deploy does).
    pub async fn drain(&mut self, i: usize) {
        if let Some(mut app) = self.apps[i].take() {
            self.set_targets();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let status = app.terminate().await;
            assert!(status.success(), "orchestrator exited {status} on SIGTERM");
            self.past_logs.extend(app.log_lines());
        }
        self.set_targets();
    }

    /// Starts orchestrator `i` again (new ports) and aims clients at it.
    pub async fn restart(&mut self, i: usize) {
        self.apps[i] = Some(TestApp::spawn(self.options.clone()).await);
        self.set_targets();
    }

    /// Every log line of every orchestrator, past and present.
    pub fn logs(&self) -> Vec<String> {
        let mut all = self.past_logs.clone();
        for app in self.apps.iter().flatten() {
            all.extend(app.log_lines());
        }
        all
    }

    /// Kills NATS, reads what its store held (a throwaway server on the
    /// old store), deletes the store and starts NATS again empty. Returns
    /// the live events NATS lost.
    pub async fn wipe_nats(&mut self) -> Vec<Event> {
        self.nats.stop();
        let port = free_port();
        let mut reader = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(self.nats.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        let url = format!("nats://127.0.0.1:{port}");
        let up = crate::eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move { async_nats::connect(url).await.ok().map(|_| ()) }
        })
        .await;
        assert!(up.is_some(), "nats-server on the old store did not start");
        let lost = read_stream(&url, &self.names.stream, &self.names.subject()).await;
        let _ = reader.kill();
        let _ = reader.wait();
        for entry in std::fs::read_dir(self.nats.dir.path()).expect("nats store") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("wipe nats store");
            } else {
                std::fs::remove_file(&path).expect("wipe nats store");
            }
        }
        self.nats.resume().await;
        lost
    }
}

impl Mirror {
    async fn start(shadow: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut legacy = tokio::process::Command::new(crate::binary("legacy-gateway"))
            .args([
                "--listen=127.0.0.1:0".to_owned(),
                format!("--jwt-hs256-secret={SECRET}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn legacy-gateway");
        let line = listening(&mut legacy, "legacy-gateway").await;
        let primary = line["addr"].as_str().expect("addr").to_owned();
        let rules = crate::repo_root().join("mirror-proxy/rules/shadow.toml");
        let config = format!(
            "[primary]\naddress = \"{primary}\"\n\n[shadow]\nurl = \"http://{shadow}\"\n\
             credential = \"{}\"\ntimeout = \"5s\"\nmax_in_flight = 100\n\n\
             [sampling]\npercent = 100.0\n\n[diff]\nlog = \"{}\"\nrules = [\"{}\"]\n",
            crate::SHADOW_SECRET,
            dir.path().join("diff.jsonl").display(),
            rules.display()
        );
        let config_path = dir.path().join("mirror-proxy.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut proxy = tokio::process::Command::new(crate::binary("mirror-proxy"))
            .arg(format!("--config={}", config_path.display()))
            .args(["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"])
            .env("DIFF_REDACTION_KEY", "fault-suite-redaction-key")
            .env("RUST_LOG", "info,pingora_core=warn,pingora_proxy=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mirror-proxy");
        let line = listening(&mut proxy, "mirror-proxy").await;
        Self {
            url: format!(
                "http://{}",
                line["proxy_addr"].as_str().expect("proxy_addr")
            ),
            proxy,
            legacy,
            dir,
        }
    }
}

/// Waits for a child's `listening` line; its other lines are drained.
async fn listening(child: &mut tokio::process::Child, what: &str) -> Value {
    crate::listening_line(child, Arc::default(), Some(0), what)
        .await
        .unwrap_or_else(|| panic!("{what} exited before listening"))
}

/// One event read from the stream.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its `Nats-Msg-Id`.
    pub id: String,
    /// When the stream stored it.
    pub stored_at: chrono::DateTime<chrono::Utc>,
}

/// Every message of `subject` in `stream`, delivered once each to a fresh
/// ordered consumer (empty if the stream does not exist).
pub async fn read_stream(url: &str, stream: &str, subject: &str) -> Vec<Event> {
    use futures::StreamExt;
    let client = async_nats::connect(url).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let stored = stream.info().await.map(|i| i.state.messages).unwrap_or(0);
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    let idle = if stored == 0 {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    while let Ok(Some(Ok(m))) = tokio::time::timeout(idle, messages.next()).await {
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        let (nanos, pending) = m
            .info()
            .map(|i| (i.published.unix_timestamp_nanos(), i.pending))
            .unwrap_or_default();
        let stored_at = chrono::DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(0));
        out.push(Event { id, stored_at });
        // Nothing more on the subject for this consumer, or the stream
        // holds at most this many (all its subjects): done.
        if pending == 0 || out.len() as u64 >= stored {
            break;
        }
    }
    out
}

/// The kinds of request the load mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A send with a fresh Idempotency-Key.
    SendUnique,
    /// A send with a key from a small pool (same body each time).
    SendRepeat,
    /// A send without a key.
    SendUnkeyed,
    /// A bulk of three with a fresh key.
    BulkUnique,
    /// A bulk of two with a key from a small pool.
    BulkRepeat,
}

impl Kind {
    fn bulk(self) -> bool {
        matches!(self, Kind::BulkUnique | Kind::BulkRepeat)
    }
}

/// One request and what came of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    pub tenant: usize,
    pub key: Option<String>,
    pub body: Value,
    pub via_mirror: bool,
    /// When the answer (or the error) came, since the load started.
    pub ended: Duration,
    pub elapsed: Duration,
    pub status: Option<u16>,
    pub retry_after: bool,
    pub bytes: Vec<u8>,
    pub error: Option<String>,
}

impl Outcome {
    /// The ids of an accepted answer.
    pub fn ids(&self) -> Vec<String> {
        if self.status != Some(201) {
            return Vec::new();
        }
        let v: Value = serde_json::from_slice(&self.bytes).unwrap_or(Value::Null);
        if self.kind.bulk() {
            crate::bulk_ids(&v)
        } else {
            v["id"].as_str().map(str::to_owned).into_iter().collect()
        }
    }
}

/// The two tenants of every scenario and their tokens.
#[derive(Debug, Clone)]
pub struct Tenants {
    pub names: [String; 2],
    pub tokens: [String; 2],
}

impl Tenants {
    pub fn new() -> Self {
        let names = [crate::unique("tenant-a-"), crate::unique("tenant-b-")];
        let tokens = names.clone().map(|t| {
            orchestrator::auth::mint_dev_token(SECRET, &t, Duration::from_secs(3600))
                .expect("mint token")
        });
        Self { names, tokens }
    }
}

impl Default for Tenants {
    fn default() -> Self {
        Self::new()
    }
}

/// The request a kind makes (key and body), deterministic for pooled keys
/// so a repeat is the same request.
pub fn request_for(kind: Kind, n: u64) -> (Option<String>, Value) {
    match kind {
        Kind::SendUnique => (
            Some(crate::unique("uk-")),
            crate::send_body(&format!("Your code is {n}")),
        ),
        Kind::SendRepeat => {
            let k = n % 24;
            (
                Some(format!("repeat-send-{k}")),
                crate::send_body(&format!("Repeated {k}")),
            )
        }
        Kind::SendUnkeyed => (None, crate::send_body(&format!("Unkeyed {n}"))),
        Kind::BulkUnique => (
            Some(crate::unique("ub-")),
            json!({"messages": (0..3).map(|i| crate::send_body(&format!("Bulk {n}/{i}"))).collect::<Vec<_>>()}),
        ),
        Kind::BulkRepeat => {
            let k = n % 8;
            (
                Some(format!("repeat-bulk-{k}")),
                json!({"messages": (0..2).map(|i| crate::send_body(&format!("Repeated bulk {k}/{i}"))).collect::<Vec<_>>()}),
            )
        }
    }
}

/// One request to make.
#[derive(Debug, Clone)]
pub struct Req {
    pub tenant: usize,
    pub kind: Kind,
    pub key: Option<String>,
    pub body: Value,
}

/// Sends one request and records what came of it (`ended` counted from
/// `t0`).
pub async fn submit(
    http: &reqwest::Client,
    base: &str,
    tenants: &Tenants,
    req: Req,
    t0: Instant,
) -> Outcome {
    let Req {
        tenant,
        kind,
        key,
        body,
    } = req;
    let path = if kind.bulk() {
        "/v1/sms/bulk"
    } else {
        "/v1/sms/send"
    };
    let mut request = http
        .post(format!("{base}{path}"))
        .bearer_auth(&tenants.tokens[tenant])
        .header("X-Tenant-Id", &tenants.names[tenant])
        .timeout(DEADLINE)
        .json(&body);
    if let Some(k) = &key {
        request = request.header("Idempotency-Key", k);
    }
    let start = Instant::now();
    let (status, retry_after, bytes, error) = match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r.headers().contains_key("retry-after");
            match r.bytes().await {
                Ok(b) => (Some(status), retry_after, b.to_vec(), None),
                Err(e) => (Some(status), retry_after, Vec::new(), Some(e.to_string())),
            }
        }
        Err(e) => (None, false, Vec::new(), Some(format!("{e:?}"))),
    };
    Outcome {
        kind,
        tenant,
        key,
        body,
        via_mirror: false,
        ended: t0.elapsed(),
        elapsed: start.elapsed(),
        status,
        retry_after,
        bytes,
        error,
    }
}

/// A steady load running in the background.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    pub t0: Instant,
}

/// The mix, by request number: 3 unique sends, 2 repeated sends, 2
/// unkeyed sends, 1 unique bulk, 1 repeated bulk, 1 unique send per ten.
const MIX: [Kind; 10] = [
    Kind::SendUnique,
    Kind::SendRepeat,
    Kind::SendUnkeyed,
    Kind::BulkUnique,
    Kind::SendUnique,
    Kind::SendRepeat,
    Kind::SendUnkeyed,
    Kind::BulkRepeat,
    Kind::SendUnique,
    Kind::SendUnique,
];

impl Load {
    /// `workers` clients, each sending one request every `interval` at
    /// most, aimed round-robin at `targets`; plus, with a mirror, two
    /// clients through mirror-proxy.
    pub fn start(
        targets: Arc<RwLock<Vec<String>>>,
        mirror: Option<String>,
        tenants: Tenants,
        workers: usize,
        interval: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let http = crate::http_client();
        let mut handles = Vec::new();
        for w in 0..workers {
            let (stop, outcomes, targets, tenants, http) = (
                stop.clone(),
                outcomes.clone(),
                targets.clone(),
                tenants.clone(),
                http.clone(),
            );
            handles.push(tokio::spawn(async move {
                let mut n = w as u64;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let kind = MIX[usize::try_from(n).unwrap_or(0) % MIX.len()];
                    let tenant = usize::try_from((n / 10 + n) % 2).unwrap_or(0);
                    let base = {
                        let t = targets.read().unwrap_or_else(|p| p.into_inner());
                        if t.is_empty() {
                            None
                        } else {
                            Some(t[usize::try_from(n).unwrap_or(0) % t.len()].clone())
                        }
                    };
                    if let Some(base) = base {
                        let (key, body) = request_for(kind, n);
                        let req = Req {
                            tenant,
                            kind,
                            key,
                            body,
                        };
                        let o = submit(&http, &base, &tenants, req, t0).await;
                        outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(o);
                    }
                    n += workers as u64;
                    if let Some(rest) = interval.checked_sub(started.elapsed()) {
                        tokio::time::sleep(rest).await;
                    }
                }
            }));
        }
        if let Some(url) = mirror {
            for w in 0..2u64 {
                let (stop, outcomes, tenants, http, url) = (
                    stop.clone(),
                    outcomes.clone(),
                    tenants.clone(),
                    http.clone(),
                    url.clone(),
                );
                handles.push(tokio::spawn(async move {
                    let mut n = 1_000_000 + w;
                    while !stop.load(Ordering::SeqCst) {
                        let started = Instant::now();
                        let kind = if n % 2 == 0 {
                            Kind::SendUnique
                        } else {
                            Kind::SendUnkeyed
                        };
                        let (key, body) = request_for(kind, n);
                        let req = Req {
                            tenant: 0,
                            kind,
                            key,
                            body,
                        };
                        let mut o = submit(&http, &url, &tenants, req, t0).await;
                        o.via_mirror = true;
                        outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(o);
                        n += 2;
                        if let Some(rest) = interval.checked_sub(started.elapsed()) {
                            tokio::time::sleep(rest).await;
                        }
                    }
                }));
            }
        }
        Self {
            stop,
            handles,
            outcomes,
            t0,
        }
    }

    /// Seconds since the load started.
    pub fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// Stops and returns every outcome.
    pub async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.await.expect("load worker");
        }
        let mut o = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *o)
    }
}

/// What a scenario allows and when its outage was.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Connection failures are expected (an orchestrator was killed with
    /// requests in flight).
    pub transport_errors_allowed: bool,
    /// Postgres was down in this window (since the load started): no new
    /// acceptance may be answered inside it.
    pub pg_outage: Option<(Duration, Duration)>,
    /// Live events NATS lost with its storage (the wipe scenario).
    pub lost_by_nats: Vec<Event>,
    /// A loud log line the orchestrator must have written.
    pub log_must_contain: Option<&'static str>,
}

/// One scenario's counts.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    pub requests: usize,
    pub accepted: usize,
    pub unavailable: usize,
    pub in_flight: usize,
    pub transport_errors: usize,
    pub other_status: usize,
    pub replays: usize,
    pub replay_mismatches: usize,
    pub accepted_ids: usize,
    pub stored: usize,
    pub events: usize,
    pub duplicates: usize,
    pub missing_in_db: usize,
    pub missing_on_stream: usize,
    pub wrong_tenant: usize,
    pub phantoms: usize,
    pub shadow_on_live: usize,
    /// `orchestrator_publish_failures_total` of the replicas running at the
    /// end (publishes retried with the same `Nats-Msg-Id`).
    pub publish_failures: f64,
    /// Shadow messages the orchestrator stored (mirror scenarios).
    pub shadow_stored: usize,
    pub unconfirmed: usize,
    pub unknown_unkeyed: usize,
    pub lost_by_nats: usize,
    pub accepted_during_outage: usize,
    pub unavailable_without_retry_after: usize,
    pub mirror_requests: usize,
    pub mirror_errors: usize,
    pub overtime: usize,
    pub max_latency: Duration,
    pub max_outbox_age: Duration,
    pub loud_log: bool,
}

impl Row {
    /// Every invariant this row breaks, as sentences.
    pub fn violations(&self, expect: &Expect) -> Vec<String> {
        let mut v = Vec::new();
        let mut check = |bad: bool, what: String| {
            if bad {
                v.push(format!("{}: {what}", self.scenario));
            }
        };
        check(
            self.missing_in_db > 0,
            format!("{} accepted ids not in Postgres", self.missing_in_db),
        );
        check(
            self.missing_on_stream > 0,
            format!(
                "{} accepted ids never on the stream",
                self.missing_on_stream
            ),
        );
        check(
            self.duplicates > 0,
            format!("{} duplicate events", self.duplicates),
        );
        check(
            self.phantoms > 0,
            format!("{} events without an accepted message", self.phantoms),
        );
        check(
            self.shadow_on_live > 0,
            format!("{} shadow events on the live subject", self.shadow_on_live),
        );
        check(
            self.wrong_tenant > 0,
            format!("{} ids stored under another tenant", self.wrong_tenant),
        );
        check(
            self.replay_mismatches > 0,
            format!(
                "{} replays differ from the original answer",
                self.replay_mismatches
            ),
        );
        check(
            self.unconfirmed > self.unknown_unkeyed,
            format!(
                "{} stored messages nobody was told about, but only {} unkeyed requests had an unknown outcome",
                self.unconfirmed, self.unknown_unkeyed
            ),
        );
        check(
            self.accepted_during_outage > 0,
            format!(
                "{} new acceptances answered while Postgres was down",
                self.accepted_during_outage
            ),
        );
        check(
            self.unavailable_without_retry_after > 0,
            format!(
                "{} 503s without Retry-After",
                self.unavailable_without_retry_after
            ),
        );
        check(
            self.other_status > 0,
            format!("{} answers neither 201, 409 nor 503", self.other_status),
        );
        check(
            self.transport_errors > 0 && !expect.transport_errors_allowed,
            format!(
                "{} requests failed without an answer",
                self.transport_errors
            ),
        );
        check(
            self.mirror_errors > 0,
            format!(
                "{} answers through mirror-proxy the primary did not give",
                self.mirror_errors
            ),
        );
        check(
            self.overtime > 0,
            format!(
                "{} requests outlived the {DEADLINE:?} deadline",
                self.overtime
            ),
        );
        check(
            expect.log_must_contain.is_some() && !self.loud_log,
            format!(
                "no log line containing {:?}",
                expect.log_must_contain.unwrap_or_default()
            ),
        );
        check(self.accepted == 0, "nothing was accepted".into());
        check(
            self.mirror_requests > 0 && self.shadow_stored == 0,
            "mirror-proxy shadowed nothing to the orchestrator".into(),
        );
        v
    }
}

/// Recovery, drain and the counts: replays every keyed request (resolving
/// unknown outcomes, checking byte-identical answers), waits until the
/// stream holds every stored live message, then reads both.
pub async fn settle(
    scenario: &str,
    stack: &Stack,
    tenants: &Tenants,
    outcomes: Vec<Outcome>,
    expect: &Expect,
) -> Row {
    let http = crate::http_client();
    let mut row = Row {
        scenario: scenario.to_owned(),
        ..Row::default()
    };
    let base = stack
        .targets
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .first()
        .cloned()
        .expect("a live orchestrator after recovery");
    // (tenant, route, key) → the first 201's bytes.
    let mut originals: HashMap<(usize, bool, String), Vec<u8>> = HashMap::new();
    // Keyed requests with no 201 yet: the request to resolve them.
    let mut unresolved: HashMap<(usize, bool, String), Outcome> = HashMap::new();
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for o in &outcomes {
        row.max_latency = row.max_latency.max(o.elapsed);
        if o.elapsed > DEADLINE || o.error.as_deref().is_some_and(|e| e.contains("TimedOut")) {
            row.overtime += 1;
        }
        if o.via_mirror {
            row.mirror_requests += 1;
            // The primary (the legacy gateway simulator, no dependencies)
            // answers every valid request 201.
            if o.status != Some(201) {
                row.mirror_errors += 1;
            }
            continue;
        }
        row.requests += 1;
        match o.status {
            Some(201) => row.accepted += 1,
            Some(503) => {
                row.unavailable += 1;
                if !o.retry_after {
                    row.unavailable_without_retry_after += 1;
                }
            }
            Some(409) if o.retry_after => row.in_flight += 1,
            Some(_) => row.other_status += 1,
            None => row.transport_errors += 1,
        }
        let slot = o.key.clone().map(|k| (o.tenant, o.kind.bulk(), k));
        if o.status == Some(201) {
            let mut replay = false;
            if let Some(slot) = &slot {
                unresolved.remove(slot);
                match originals.get(slot) {
                    Some(first) => {
                        replay = true;
                        row.replays += 1;
                        if *first != o.bytes {
                            row.replay_mismatches += 1;
                        }
                    }
                    None => {
                        originals.insert(slot.clone(), o.bytes.clone());
                    }
                }
            }
            if !replay {
                if let Some((from, to)) = expect.pg_outage
                    && o.ended > from + Duration::from_secs(1)
                    && o.ended < to
                {
                    row.accepted_during_outage += 1;
                }
                for id in o.ids() {
                    accepted.insert(id, o.tenant);
                }
            }
        } else if let Some(slot) = slot {
            if !originals.contains_key(&slot) {
                unresolved.entry(slot).or_insert_with(|| o.clone());
            }
        } else if o.status.is_none_or(|s| s >= 500) {
            row.unknown_unkeyed += if o.kind.bulk() { 3 } else { 1 };
        }
    }
    // Unknown outcomes of keyed requests: the same request again decides
    // (a replay if it had committed, a fresh acceptance if not).
    let t0 = Instant::now();
    for (slot, o) in unresolved {
        // A replica killed mid-request leaves its key's in-flight lock in
        // Redis until IDEMPOTENCY_LOCK_TTL (30 s): `409` until then.
        let mut last = None;
        for _ in 0..80 {
            let req = Req {
                tenant: o.tenant,
                kind: o.kind,
                key: o.key.clone(),
                body: o.body.clone(),
            };
            let r = submit(&http, &base, tenants, req, t0).await;
            if r.status == Some(201) {
                last = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let r = last.unwrap_or_else(|| {
            panic!("{scenario}: a keyed request never got its 201 after recovery")
        });
        for id in r.ids() {
            accepted.insert(id, o.tenant);
        }
        originals.insert(slot, r.bytes);
    }
    // Every key answered 201 once answers the same bytes now.
    let mut replays: Vec<_> = originals.iter().collect();
    replays.sort_by(|a, b| a.0.cmp(b.0));
    for ((tenant, bulk, key), first) in replays {
        let kind = if *bulk {
            Kind::BulkRepeat
        } else {
            Kind::SendRepeat
        };
        let body = outcomes
            .iter()
            .find(|o| {
                o.tenant == *tenant && o.kind.bulk() == *bulk && o.key.as_deref() == Some(key)
            })
            .map(|o| o.body.clone())
            .expect("the original request");
        let req = Req {
            tenant: *tenant,
            kind,
            key: Some(key.clone()),
            body,
        };
        let r = submit(&http, &base, tenants, req, t0).await;
        row.replays += 1;
        if r.status != Some(201) || r.bytes != *first {
            row.replay_mismatches += 1;
        }
    }
    row.accepted_ids = accepted.len();

    // Drain: the stream catches up with the stored live messages.
    let lost: HashSet<String> = expect.lost_by_nats.iter().map(|e| e.id.clone()).collect();
    row.lost_by_nats = lost.len();
    let url = stack.nats.url();
    let subject = stack.names.subject();
    let deadline = Instant::now() + Duration::from_secs(90);
    let events = loop {
        let stored = invariants::live_message_count(&stack.pool).await;
        let events = read_stream(&url, &stack.names.stream, &subject).await;
        let on_stream: HashSet<&str> = events
            .iter()
            .map(|e| e.id.as_str())
            .chain(lost.iter().map(String::as_str))
            .collect();
        if i64::try_from(on_stream.len()).unwrap_or(0) >= stored || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let messages = invariants::messages(&stack.pool).await;
    let live: HashMap<&str, &invariants::StoredMessage> = messages
        .iter()
        .filter(|m| !m.shadow)
        .map(|m| (m.id.as_str(), m))
        .collect();
    let shadow: HashSet<&str> = messages
        .iter()
        .filter(|m| m.shadow)
        .map(|m| m.id.as_str())
        .collect();
    for app in stack.apps.iter().flatten() {
        row.publish_failures += app
            .metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("orchestrator_publish_failures_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    row.stored = live.len();
    row.shadow_stored = shadow.len();
    row.events = events.len();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *per_id.entry(e.id.as_str()).or_default() += 1;
        if shadow.contains(e.id.as_str()) {
            row.shadow_on_live += 1;
        } else if let Some(m) = live.get(e.id.as_str()) {
            let age = (e.stored_at - m.created_at).to_std().unwrap_or_default();
            row.max_outbox_age = row.max_outbox_age.max(age);
        } else {
            row.phantoms += 1;
        }
    }
    row.duplicates = per_id.values().map(|n| n - 1).sum();
    for (id, tenant) in &accepted {
        match live.get(id.as_str()) {
            None => row.missing_in_db += 1,
            Some(m) if m.tenant != tenants.names[*tenant] => row.wrong_tenant += 1,
            Some(_) => {}
        }
        if !per_id.contains_key(id.as_str()) && !lost.contains(id) {
            row.missing_on_stream += 1;
        }
    }
    row.unconfirmed = live
        .keys()
        .filter(|id| !accepted.contains_key(**id))
        .count();
    if let Some(needle) = expect.log_must_contain {
        row.loud_log = stack
            .logs()
            .iter()
            .any(|l| l.contains(needle) && l.contains("ERROR"));
    }
    row
}

/// The table of rows, Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | requests | 201 | 503 | 409 in flight | no answer | replays (byte-identical) | accepted ids | stored | events | publish failures retried | duplicates | phantoms | shadow stored / on live | lost with NATS store | unconfirmed (≤ unknown unkeyed) | via mirror (errors) | max latency | max outbox age |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} ({} differ) | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} (≤ {}) | {} ({}) | {:.1} s | {:.1} s |\n",
            r.scenario,
            r.requests,
            r.accepted,
            r.unavailable,
            r.in_flight,
            r.transport_errors,
            r.replays,
            r.replay_mismatches,
            r.accepted_ids,
            r.stored,
            r.events,
            r.publish_failures,
            r.duplicates,
            r.phantoms,
            r.shadow_stored,
            r.shadow_on_live,
            r.lost_by_nats,
            r.unconfirmed,
            r.unknown_unkeyed,
            r.mirror_requests,
            r.mirror_errors,
            r.max_latency.as_secs_f64(),
            r.max_outbox_age.as_secs_f64(),
        ));
    }
    t
}
