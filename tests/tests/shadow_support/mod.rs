//! Helpers of the shadow-phase tests (`tests/tests/shadow_*.rs`): the legacy
//! gateway simulator, mirror-proxy, and tiny stub shadows that answer fast,
//! slowly, with garbage or with a connection reset, all real processes or
//! sockets on loopback.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::{SHADOW_SECRET, binary, http_client};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Key of the diff log's HMAC in these tests.
pub const REDACTION_KEY: &str = "shadow-tests-redaction-key";

/// Reads a child's stdout lines into `sink`; returns its listening line.
async fn listening_line(child: &mut Child, sink: Arc<Mutex<Vec<String>>>, what: &str) -> Value {
    integration_tests::listening_line(child, sink, None, what)
        .await
        .unwrap_or_else(|| panic!("{what} exited before listening"))
}

/// A running legacy gateway simulator.
#[derive(Debug)]
pub struct Legacy {
    pub addr: String,
    pub child: Child,
}

impl Legacy {
    pub async fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_legacy-gateway"))
            .arg("--listen=127.0.0.1:0")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn legacy-gateway");
        let line = listening_line(&mut child, Arc::default(), "legacy-gateway").await;
        Self {
            addr: line["addr"].as_str().expect("addr").to_owned(),
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// How a mirror-proxy is configured (written as its TOML file).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub primary: String,
    /// `host:port` of the shadow; `None`: no shadow.
    pub shadow: Option<String>,
    pub percent: f64,
    pub routes: Vec<(String, f64)>,
    pub hash_header: Option<String>,
    pub max_in_flight: usize,
    pub max_body_bytes: usize,
    pub timeout: String,
    pub capture: bool,
    pub rules: Vec<PathBuf>,
    pub mirror_unknown: bool,
}

impl ProxyConfig {
    pub fn new(primary: &str, shadow: Option<&str>) -> Self {
        Self {
            primary: primary.to_owned(),
            shadow: shadow.map(str::to_owned),
            percent: 100.0,
            routes: Vec::new(),
            hash_header: None,
            max_in_flight: 100,
            max_body_bytes: 64 * 1024,
            timeout: "5s".into(),
            capture: false,
            rules: vec![shipped_rules()],
            mirror_unknown: false,
        }
    }

    fn toml(&self, dir: &std::path::Path) -> String {
        let mut t = String::new();
        t.push_str(&format!("[primary]\naddress = \"{}\"\n\n", self.primary));
        if let Some(shadow) = &self.shadow {
            t.push_str(&format!(
                "[shadow]\nurl = \"http://{shadow}\"\ncredential = \"{SHADOW_SECRET}\"\n\
                 timeout = \"{}\"\nmax_in_flight = {}\nmax_body_bytes = {}\n\n",
                self.timeout, self.max_in_flight, self.max_body_bytes
            ));
        }
        t.push_str(&format!("[sampling]\npercent = {:?}\n", self.percent));
        if let Some(h) = &self.hash_header {
            t.push_str(&format!("hash_header = \"{h}\"\n"));
        }
        if !self.routes.is_empty() {
            t.push_str("[sampling.routes]\n");
            for (route, p) in &self.routes {
                t.push_str(&format!("\"{route}\" = {p:?}\n"));
            }
        }
        t.push_str(&format!(
            "\n[correlation]\nmirror_unknown = {}\n\n[diff]\nlog = \"{}\"\n",
            self.mirror_unknown,
            dir.join("diff.jsonl").display()
        ));
        if self.capture {
            t.push_str(&format!(
                "capture = \"{}\"\n",
                dir.join("capture.jsonl").display()
            ));
        }
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect();
        t.push_str(&format!("rules = [{}]\n", rules.join(", ")));
        t
    }
}

/// `mirror-proxy/rules/shadow.toml`.
pub fn shipped_rules() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mirror-proxy/rules/shadow.toml"
    ))
}

/// A running mirror-proxy.
#[derive(Debug)]
pub struct Proxy {
    pub addr: String,
    pub admin: String,
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config: ProxyConfig,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl Proxy {
    pub async fn spawn(config: ProxyConfig) -> Self {
        Self::spawn_with_env(
            config,
            &[("RUST_LOG", "info,pingora_core=warn,pingora_proxy=warn")],
        )
        .await
    }

    /// Starts it with extra environment; its stderr lines are collected in
    /// [`Proxy::stderr`] (stdout's in [`Proxy::logs`]).
    pub async fn spawn_with_env(config: ProxyConfig, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("mirror-proxy.toml"),
            config.toml(dir.path()),
        )
        .expect("write config");
        let mut child = Command::new(binary("mirror-proxy"))
            .arg(format!(
                "--config={}",
                dir.path().join("mirror-proxy.toml").display()
            ))
            .args(["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"])
            .env("DIFF_REDACTION_KEY", REDACTION_KEY)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mirror-proxy");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let logs = Arc::new(Mutex::new(Vec::new()));
        let line = listening_line(&mut child, logs.clone(), "mirror-proxy").await;
        Self {
            addr: line["proxy_addr"].as_str().expect("proxy_addr").to_owned(),
            admin: line["admin_addr"].as_str().expect("admin_addr").to_owned(),
            child,
            dir,
            config,
            logs,
            stderr,
            http: http_client(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload(&mut self, config: ProxyConfig) {
        std::fs::write(
            self.dir.path().join("mirror-proxy.toml"),
            config.toml(self.dir.path()),
        )
        .expect("write config");
        self.config = config;
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text")
    }

    /// One sample by its full series text (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        integration_tests::sample(&self.metrics().await, series)
    }

    /// Waits until `series` reaches `at_least`; returns its value.
    pub async fn wait_metric(&self, series: &str, at_least: f64) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.metric(series).await;
            if v >= at_least || tokio::time::Instant::now() >= deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn diff_log(&self) -> PathBuf {
        self.dir.path().join("diff.jsonl")
    }

    /// The diff records written so far (read with compare's reader, as
    /// `compare report` does).
    pub fn records(&self) -> Vec<compare::DiffRecord> {
        if !self.diff_log().exists() {
            return Vec::new();
        }
        compare::difflog::read_records(&self.diff_log()).expect("diff log readable by compare")
    }

    /// Waits until at least `n` records exist.
    pub async fn wait_records(&self, n: usize) -> Vec<compare::DiffRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let records = self.records();
            if records.len() >= n || tokio::time::Instant::now() >= deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// What a stub shadow does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `202` with a small JSON body, at once.
    Fast,
    /// `202` after this long.
    Slow(Duration),
    /// Bytes that are not HTTP, then close.
    Garbage,
    /// Read the request, then reset the connection (RST).
    Reset,
}

/// One request a stub received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// A tiny HTTP/1.1 server on loopback standing in for the shadow (or any
/// upstream), counting what it gets.
#[derive(Debug, Clone)]
pub struct Stub {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
}

impl Stub {
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind stub");
        let stub = Self {
            addr: listener.local_addr().expect("stub addr"),
            seen: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
        };
        let server = stub.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.serve(stream, behaviour).await });
            }
        });
        stub
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn serve(&self, mut stream: TcpStream, behaviour: Behaviour) {
        loop {
            let Some(seen) = read_request(&mut stream).await else {
                return;
            };
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(seen);
            let keep = match behaviour {
                Behaviour::Fast => write_json(&mut stream).await,
                Behaviour::Slow(d) => {
                    tokio::time::sleep(d).await;
                    write_json(&mut stream).await
                }
                Behaviour::Garbage => {
                    let _ = stream
                        .write_all(b"\x16\x03\x01 this is not HTTP \xff\xfe\r\n\r\n")
                        .await;
                    false
                }
                Behaviour::Reset => {
                    #[allow(deprecated)]
                    let _ = stream.set_linger(Some(Duration::ZERO));
                    false
                }
            };
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if !keep {
                return;
            }
        }
    }
}

async fn write_json(stream: &mut TcpStream) -> bool {
    let body = br#"{"id":"0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a","status":"accepted"}"#;
    let head = format!(
        "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.is_ok() && stream.write_all(body).await.is_ok()
}

/// Reads an HTTP/1.1 head (request or status line and headers, up to the
/// blank line) byte by byte, so nothing of the body is consumed; `None` at
/// the end of the stream or past 64 KiB.
pub async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.push(byte[0]);
    }
    Some(buf)
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body).
async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let buf = read_head(stream).await?;
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split_whitespace();
    let (method, path) = (start.next()?.to_owned(), start.next()?.to_owned());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = Vec::new();
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        stream.read_exact(&mut body).await.ok()?;
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        let mut reader = BufReader::new(&mut *stream);
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await.ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

/// A loopback address nothing listens on.
pub fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr.to_string()
}

/// A send with a bearer token and tenant (the legacy gateway accepts any
/// bearer token when started without a secret).
pub fn send(http: &reqwest::Client, base: &str, body: &Value) -> reqwest::RequestBuilder {
    http.post(format!("{base}/v1/sms/send"))
        .bearer_auth("test-token")
        .header("X-Tenant-Id", "acme")
        .json(body)
}

/// Percentile (0..=100) of durations, in milliseconds.
pub fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p / 100.0).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}
