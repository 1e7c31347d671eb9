//! Test harness: spawns the real `orchestrator` binary on port 0 against
//! real Postgres, Redis and NATS (or the embedded defaults), each test in its
//! own database, tenant and NATS stream, so tests run in parallel.
//!
//! Service addresses come from `TEST_DATABASE_URL`, `TEST_REDIS_URL` and
//! `TEST_NATS_URL` (defaults: the machine's services on their usual ports).
//! The project's test command makes sure they answer before any test runs;
//! the database default is the role and database that
//! `scripts/pg-test-role.sh` makes (it runs as part of the test command):
//! role `orch_test` with CREATEDB and a password, since a stock cluster
//! allows no password-less TCP login.

pub mod faults;
pub mod parity;
pub mod rehearsal;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub mod tls;

/// HS256 secret every spawned orchestrator trusts.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// Shadow credential every spawned orchestrator accepts.
pub const SHADOW_SECRET: &str = "integration-shadow-credential";

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://orch_test:orch_test@127.0.0.1:5432/orch_test".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A free TCP port on loopback (for servers that take a port number).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A short random id for names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Path of a workspace binary next to the running test executable
/// (`target/debug/deps/x` → `target/debug/name`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo build --workspace --bins` first (the test command does)",
        path.display()
    );
    path
}

/// An external tool the test command installs (`deck`, `envoy`,
/// `prometheus`, …): `$ENV_VAR` when set, else the first `name` on `PATH`.
/// Missing is a failure that says how to install it, never a skip.
pub fn require_tool(name: &str, env_var: &str, install: &str) -> PathBuf {
    std::env::var_os(env_var)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        })
        .unwrap_or_else(|| {
            panic!("`{name}` is not installed (nor {env_var} set): {install}; scripts/test.sh does this")
        })
}

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .canonicalize()
        .expect("repository root")
}

/// A fresh Postgres database, dropped when the test ends.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let admin = postgres_admin_url();
        let name = unique("orch_test_");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("Postgres reachable at TEST_DATABASE_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// The product's Postgres store on this database (migrated on connect).
    pub async fn store(
        &self,
        max_connections: u32,
        limits: orchestrator::store::GroupCommit,
    ) -> orchestrator::store::PgStore {
        orchestrator::store::PgStore::connect(
            self.url.parse().expect("database URL"),
            max_connections,
            limits,
        )
        .await
        .expect("store connects and migrates")
    }

    /// The store with group commit off: each acceptance commits alone.
    pub async fn store_committing_alone(&self) -> orchestrator::store::PgStore {
        let limits = orchestrator::store::GroupCommit {
            max_requests: 1,
            ..orchestrator::store::GroupCommit::default()
        };
        self.store(4, limits).await
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
            .expect("connect test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort, off the async runtime: a leftover database is
        // harmless and the test command sweeps old ones.
        std::thread::spawn(move || {
            let _ = std::process::Command::new("psql")
                .args([
                    &postgres_admin_url(),
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        });
    }
}

/// Every JetStream stream a test makes on a shared server starts with
/// this; `sweep-test-state` deletes them before a run.
pub const TEST_STREAM_PREFIX: &str = "ORCH_TEST_";

/// Names for one test's JetStream stream and subjects.
#[derive(Debug, Clone)]
pub struct NatsNames {
    pub url: String,
    pub stream: String,
    pub prefix: String,
}

impl NatsNames {
    pub fn fresh() -> Self {
        Self::at(nats_url())
    }

    pub fn at(url: String) -> Self {
        let prefix = unique("t");
        Self {
            url,
            stream: format!("{TEST_STREAM_PREFIX}{}", prefix.to_uppercase()),
            prefix,
        }
    }
    pub fn subject(&self) -> String {
        format!("{}.sms.outbound.request", self.prefix)
    }
    pub fn status_subject(&self) -> String {
        format!("{}.sms.outbound.status", self.prefix)
    }
    pub fn shadow_subject(&self) -> String {
        format!("{}.shadow.sms.outbound.request", self.prefix)
    }
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("--nats-url={}", self.url),
            "--nats-create-stream".into(),
            format!("--nats-stream={}", self.stream),
            format!("--nats-stream-subjects={}.>", self.prefix),
            format!("--nats-subject={}", self.subject()),
            format!("--nats-status-subject={}", self.status_subject()),
            format!("--shadow-subject={}", self.shadow_subject()),
            format!("--nats-status-consumer={}-status", self.prefix),
            // Never the default shadow stream name on a shared server.
            format!("--nats-shadow-stream={}", self.shadow_stream()),
        ]
    }

    /// This test's shadow stream (created only when the live stream does
    /// not capture the shadow subject).
    pub fn shadow_stream(&self) -> String {
        format!("{}_SHADOW", self.stream)
    }
}

/// How to start an orchestrator.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Postgres URL; `None` runs on embedded SQLite in a temp dir.
    pub database_url: Option<String>,
    pub redis: Option<String>,
    pub nats: Option<NatsNames>,
    pub submit_disabled: bool,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Leave out the default `--jwt-hs256-secret`/`--shadow-secret` (a test
    /// that passes secrets its own way, e.g. from files).
    pub no_default_secrets: bool,
}

/// A running orchestrator process.
#[derive(Debug)]
pub struct TestApp {
    pub api: String,
    pub admin: String,
    pub tenant: String,
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub options: Options,
    pub contract: ContractGuard,
}

impl TestApp {
    /// On embedded SQLite, no servers.
    pub async fn embedded() -> Self {
        Self::spawn(Options::default()).await
    }

    /// On real Postgres (a fresh database) + Redis + NATS; the database
    /// handle must outlive the app.
    pub async fn full() -> (Self, TestDatabase, NatsNames) {
        let db = TestDatabase::create().await;
        let nats = NatsNames::fresh();
        let app = Self::spawn(Options {
            database_url: Some(db.url.clone()),
            redis: Some(redis_url()),
            nats: Some(nats.clone()),
            ..Options::default()
        })
        .await;
        (app, db, nats)
    }

    pub async fn spawn(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::spawn_in(options, dir).await
    }

    /// Starts the binary expecting it to refuse to start: waits (30 s at
    /// most) for it to exit non-zero and returns the `error` field of its
    /// `start-up failed` line.
    pub async fn start_failure(options: Options) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            Self::command(&options, dir.path()).output(),
        )
        .await
        .expect("the orchestrator exits within 30 s")
        .expect("run orchestrator");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !output.status.success(),
            "expected a refusal to start; it exited {}:\n{stdout}",
            output.status
        );
        for line in stdout.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
            if v["message"] == "start-up failed" {
                return v["error"].as_str().unwrap_or_default().to_owned();
            }
        }
        panic!("no `start-up failed` line:\n{stdout}");
    }

    /// The command line [`TestApp::spawn_in`] runs.
    fn command(options: &Options, dir: &std::path::Path) -> Command {
        let mut cmd = Command::new(binary("orchestrator"));
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .args([
                "--listen=127.0.0.1:0",
                "--admin-listen=127.0.0.1:0",
                // Every answer a test sees is checked against the contract;
                // a violation fails the test when the app is dropped.
                "--check-responses",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if !options.no_default_secrets {
            cmd.args([
                format!("--jwt-hs256-secret={SECRET}"),
                format!("--shadow-secret={SHADOW_SECRET}"),
            ]);
        }
        if !options.submit_disabled {
            cmd.arg("--submit-api-enabled");
        }
        if let Some(url) = &options.database_url {
            cmd.arg(format!("--database-url={url}"));
        }
        if let Some(url) = &options.redis {
            cmd.arg(format!("--redis-url={url}"));
        }
        if let Some(n) = &options.nats {
            cmd.args(n.args());
        }
        cmd.args(&options.args);
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the binary in `dir` (SQLite file and events file live there).
    pub async fn spawn_in(options: Options, dir: tempfile::TempDir) -> Self {
        let mut child = Self::command(&options, dir.path())
            .spawn()
            .expect("spawn orchestrator");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let Some(line) = listening_line(&mut child, logs.clone(), None, "orchestrator").await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let lines = logs.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
            panic!("orchestrator exited before listening:\n{lines}");
        };
        let addr = |field: &str| line[field].as_str().unwrap_or_default().to_owned();
        let (api, admin) = (addr("api_addr"), addr("admin_addr"));
        Self {
            api: format!("http://{api}"),
            admin: format!("http://{admin}"),
            tenant: unique("tenant-"),
            child,
            dir,
            http: http_client(),
            contract: ContractGuard { logs: logs.clone() },
            logs,
            options,
        }
    }

    /// A valid token for `tenant`.
    pub fn token_for(&self, tenant: &str) -> String {
        orchestrator::auth::mint_dev_token(SECRET, tenant, Duration::from_secs(600))
            .expect("mint token")
    }

    /// A request to the API with this test's tenant and a valid token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_as(&self.tenant, method, path)
    }

    pub fn request_as(
        &self,
        tenant: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(self.token_for(tenant))
            .header("X-Tenant-Id", tenant)
    }

    /// `POST /v1/sms/send` with an optional Idempotency-Key.
    pub async fn send(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut r = self
            .request(reqwest::Method::POST, "/v1/sms/send")
            .json(body);
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.send().await.expect("send request")
    }

    /// `POST /v1/sms/bulk` with an optional Idempotency-Key.
    pub async fn bulk(&self, body: &Value, key: Option<&str>) -> reqwest::Response {
        let mut r = self
            .request(reqwest::Method::POST, "/v1/sms/bulk")
            .json(body);
        if let Some(k) = key {
            r = r.header("Idempotency-Key", k);
        }
        r.send().await.expect("bulk request")
    }

    /// `GET /v1/sms/{id}`.
    pub async fn get(&self, id: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, &format!("/v1/sms/{id}"))
            .send()
            .await
            .expect("get request")
    }

    /// The admin `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text")
    }

    /// Value of one sample in `/metrics`, by its full series text
    /// (`name{labels}`), or 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        sample(&self.metrics().await, series)
    }

    /// Captured stdout log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// SIGKILL, no cleanup.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM and wait for the exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exit within 30 s")
            .expect("wait")
    }
}

impl TestApp {
    /// The contract violations the orchestrator logged so far.
    pub fn contract_violations(&self) -> Vec<String> {
        self.contract.violations()
    }
}

/// Fails the test, when the app goes away, if any answer the orchestrator
/// gave broke the contract (it checks each one, `--check-responses`).
#[derive(Debug)]
pub struct ContractGuard {
    logs: Arc<Mutex<Vec<String>>>,
}

impl ContractGuard {
    fn violations(&self) -> Vec<String> {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l.contains("\"contract violation\""))
            .cloned()
            .collect()
    }
}

impl Drop for ContractGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "answers broke the contract:\n{}",
            violations.join("\n")
        );
    }
}

/// An HTTP client for tests (installs the process's rustls provider once:
/// the workspace builds reqwest without a default one).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Value of one sample in a Prometheus text exposition, by its full series
/// text (`name{labels}`), or 0 when absent.
pub fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

/// The message id of a `201` send answer (asserts the `201`).
pub async fn accepted_id(r: reqwest::Response) -> String {
    assert_eq!(r.status(), reqwest::StatusCode::CREATED, "expected a 201");
    let body: Value = r.json().await.expect("JSON body");
    body["id"].as_str().expect("an id").to_owned()
}

/// The ids of a bulk answer's accepted items.
pub fn bulk_ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A valid send body to a fictional UK number.
pub fn send_body(text: &str) -> Value {
    serde_json::json!({"to": "+447700900123", "from": "Acme", "body": text})
}

/// Problem pointers of a response body, sorted.
pub fn pointers(problem: &Value) -> Vec<String> {
    let mut p: Vec<String> = problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["pointer"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    p.sort();
    p
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private `nats-server -js` on a free port, for tests that stop NATS
/// (never the machine's shared server).
#[derive(Debug)]
pub struct PrivateNats {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// On a given port (a test that starts a client before its server).
    pub async fn start_on(port: u16) -> Self {
        let mut nats = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        nats.resume().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (its JetStream store stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub async fn resume(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server installed (the test command installs it)");
        self.child = Some(child);
        let url = self.url();
        let up = eventually(Duration::from_secs(10), || {
            let url = url.clone();
            async move { async_nats::connect(url).await.ok().map(|_| ()) }
        })
        .await;
        assert!(up.is_some(), "private nats-server did not start");
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every message on `subject` in `stream`, read with a fresh ordered
/// consumer: `(Nats-Msg-Id, payload)` per delivery.
pub async fn stream_messages(url: &str, stream: &str, subject: &str) -> Vec<(String, Value)> {
    use futures::StreamExt;
    let client = async_nats::connect(url).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let Ok(stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((
            id,
            serde_json::from_slice(&m.payload).unwrap_or(Value::Null),
        ));
    }
    out
}

/// A private Postgres cluster on a free port, for tests that take the
/// database away (never the machine's shared server). Runs as the
/// `postgres` OS user when the tests run as root (initdb refuses root).
#[derive(Debug)]
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).max())
            .expect("PostgreSQL server binaries under /usr/lib/postgresql");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let pg = Self { port, dir, bin };
        pg.init();
        pg.resume();
        pg
    }

    /// A cluster authenticated as a stock Debian install is: `peer` on the
    /// Unix socket, `scram-sha-256` over TCP, no `test` database.
    pub async fn start_stock() -> Self {
        let pg = Self::start().await;
        std::fs::write(
            pg.dir.path().join("data/pg_hba.conf"),
            "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
        )
        .expect("pg_hba.conf");
        pg.run(&format!(
            "{}/pg_ctl -D {} reload >/dev/null",
            pg.bin.display(),
            pg.data()
        ));
        pg
    }

    /// The directory of the cluster's Unix socket (for `PGHOST`).
    pub fn socket_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn init(&self) {
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(self.dir.path())
            .status();
        let ok = self
            .run(&format!(
                "{}/initdb -D {} -U postgres --auth=trust -N >/dev/null",
                self.bin.display(),
                self.data()
            ))
            .success();
        assert!(ok, "initdb failed");
    }

    /// A cluster with `ssl = on` (the PKI's `localhost` certificate, client
    /// certificates checked against its CA) whose `pg_hba.conf` allows TCP
    /// only over TLS: `hostssl` with scram-sha-256 for `orch` (database
    /// `orch`, password `password`) and `cert` for `certuser` (database
    /// `certdb`). The superuser logs in over the private Unix socket only.
    pub async fn start_tls(pki: &tls::Pki, password: &str) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).max())
            .expect("PostgreSQL server binaries under /usr/lib/postgresql");
        let pg = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            bin,
        };
        pg.init();
        let data = pg.dir.path().join("data");
        for (from, to) in [
            (&pki.server_cert, "server.crt"),
            (&pki.server_key, "server.key"),
            (&pki.ca, "root.crt"),
        ] {
            tls::write_private(&data.join(to), &std::fs::read(from).expect("PEM"));
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local   all  postgres                 trust\n\
             hostssl orch orch      127.0.0.1/32  scram-sha-256\n\
             hostssl orch orch      ::1/128       scram-sha-256\n\
             hostssl certdb certuser 127.0.0.1/32 cert\n\
             hostssl certdb certuser ::1/128      cert\n",
        )
        .expect("pg_hba.conf");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        std::io::Write::write_all(
            &mut conf,
            b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\npassword_encryption = 'scram-sha-256'\n",
        )
        .expect("postgresql.conf");
        let _ = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(pg.dir.path())
            .status();
        pg.resume();
        for sql in [
            format!("CREATE ROLE orch LOGIN PASSWORD '{password}'"),
            "CREATE DATABASE orch OWNER orch".to_owned(),
            "CREATE ROLE certuser LOGIN".to_owned(),
            "CREATE DATABASE certdb OWNER certuser".to_owned(),
        ] {
            pg.psql(&sql);
        }
        pg
    }

    /// Runs SQL as the superuser over the cluster's own Unix socket.
    pub fn psql(&self, sql: &str) {
        let ok = self
            .run(&format!(
                "psql -qX -v ON_ERROR_STOP=1 -h {} -p {} -U postgres -d postgres -c \"{sql}\" >/dev/null",
                self.dir.path().display(),
                self.port
            ))
            .success();
        assert!(ok, "psql {sql:?} failed");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, script: &str) -> std::process::ExitStatus {
        let as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
        let mut cmd = if as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", script]);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", script]);
            c
        };
        cmd.status().expect("run postgres tool")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts (again) on the same port and data directory.
    pub fn resume(&self) {
        let ok = self
            .run(&format!(
                "{}/pg_ctl -D {} -w -l {}/log -o '-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off' start >/dev/null",
                self.bin.display(),
                self.data(),
                self.dir.path().display(),
                self.port,
                self.dir.path().display()
            ))
            .success();
        assert!(ok, "pg_ctl start failed");
    }

    /// Stops it at once, as a crash or an outage would.
    pub fn stop(&self) {
        self.run(&format!(
            "{}/pg_ctl -D {} -m immediate stop >/dev/null 2>&1",
            self.bin.display(),
            self.data()
        ));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` valid messages for `tenant` created now, each with its outbox
/// event on `subject`: the rows of an [`orchestrator::store::Acceptance`]
/// for tests that drive a store directly.
pub fn new_messages(
    tenant: &str,
    n: usize,
    subject: &str,
) -> (
    Vec<orchestrator::store::NewMessage>,
    Vec<orchestrator::store::OutboxEvent>,
) {
    use orchestrator::domain::{MessageText, PhoneNumber, SenderId, TenantId};
    let now = chrono::Utc::now();
    let messages: Vec<_> = (0..n)
        .map(|_| orchestrator::store::NewMessage {
            id: orchestrator::domain::process_ids().next(now),
            tenant: TenantId::parse(tenant).unwrap(),
            shadow: false,
            to: PhoneNumber::parse("+447700900123").unwrap(),
            from: SenderId::parse("Acme").unwrap(),
            body: MessageText::parse("Your code is 123456", 10).unwrap(),
            reference: None,
            callback_url: None,
            schedule_at: None,
            validity_period: None,
            metadata: None,
            correlation_id: format!("corr-{tenant}"),
            created_at: now,
        })
        .collect();
    let outbox = messages
        .iter()
        .map(|m| orchestrator::store::OutboxEvent {
            message_id: m.id,
            subject: subject.into(),
            headers: vec![("Nats-Msg-Id".into(), m.id.to_string())],
            payload: m.id.to_string().into_bytes(),
        })
        .collect();
    (messages, outbox)
}

/// Reads a child's stdout (piped) line by line into `logs`, keeping at
/// least the last `keep` lines when set (`Some(0)`: none; a request log
/// line per request adds up), and returns the first line whose JSON has
/// `"message":"listening"`, or `None` when the child closed its stdout
/// first. Panics after 30 s without either.
pub async fn listening_line(
    child: &mut Child,
    logs: Arc<Mutex<Vec<String>>>,
    keep: Option<usize>,
    what: &str,
) -> Option<Value> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening"
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(v);
            }
            let mut logs = logs.lock().unwrap_or_else(|p| p.into_inner());
            match keep {
                Some(0) => continue,
                Some(keep) if logs.len() >= 2 * keep => drop(logs.drain(..keep)),
                _ => {}
            }
            logs.push(line);
        }
    });
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .unwrap_or_else(|_| panic!("{what} did not report its address within 30 s"))
        .ok()
}
