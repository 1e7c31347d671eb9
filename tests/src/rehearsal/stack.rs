//! The processes of the rehearsal, each real and on loopback: a private
//! `nats-server -js` and `redis-server`, a fresh database on the machine's
//! Postgres, the orchestrator with its default stream and subjects, the
//! legacy stand-in, mirror-proxy, and a Prometheus server scraping them
//! with the committed rules. (Envoy is in [`super::edge`].)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::{PrivateNats, SECRET, SHADOW_SECRET, TestDatabase, eventually, http_client, sample};

/// Key of the diff log's HMAC in the rehearsal.
const REDACTION_KEY: &str = "rehearsal-redaction-key";

/// A child process that printed `{"message":"listening",…}` on stdout.
#[derive(Debug)]
pub struct Service {
    pub child: Child,
    pub listening: Value,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Spawns `cmd` (stdout piped) and waits for its listening line.
    pub async fn spawn(name: &str, mut cmd: Command) -> Service {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let logs: Arc<Mutex<Vec<String>>> = Arc::default();
        // Keep the last lines only: a request log line per request.
        let listening = crate::listening_line(&mut child, logs.clone(), Some(1000), name)
            .await
            .unwrap_or_else(|| panic!("{name} exited before listening"));
        Service {
            child,
            listening,
            logs,
        }
    }

    pub fn addr(&self, field: &str) -> String {
        self.listening[field]
            .as_str()
            .unwrap_or_else(|| panic!("listening line without {field}: {}", self.listening))
            .to_owned()
    }
}

/// A private `redis-server` on a free port (the orchestrator's default key
/// prefix stays away from the machine's shared Redis).
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    _dir: tempfile::TempDir,
    _child: Child,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server installed (the test command installs it)");
        let up = eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        assert!(up.is_some(), "private redis-server did not start");
        Self {
            port,
            _dir: dir,
            _child: child,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Writes `text` to `path` by rename, so a reader never sees half a file.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// Every process but Envoy.
#[derive(Debug)]
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub nats: PrivateNats,
    pub redis: PrivateRedis,
    pub db: TestDatabase,
    pub orchestrator: Service,
    pub legacy: Service,
    pub mirror: Service,
    pub prometheus: Child,
    pub prometheus_url: String,
    pub flags_file: PathBuf,
    pub diff_log: PathBuf,
    http: reqwest::Client,
}

impl Stack {
    pub async fn start(bin_dir: &Path, repo: &Path, prometheus_bin: &Path) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let nats = PrivateNats::start().await;
        let redis = PrivateRedis::start().await;
        let db = TestDatabase::create().await;

        // Phase 0: deployed with the flag off, in the flags file.
        let flags_file = dir.path().join("flags.env");
        write_atomically(&flags_file, "SUBMIT_API_ENABLED=false\n");
        let mut cmd = Command::new(bin_dir.join("orchestrator"));
        cmd.current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            // Only what production sets; stream, subjects, shadow subject
            // and Redis prefix stay at their defaults.
            .args([
                "--listen=127.0.0.1:0",
                "--admin-listen=127.0.0.1:0",
                &format!("--jwt-hs256-secret={SECRET}"),
                &format!("--shadow-secret={SHADOW_SECRET}"),
                &format!("--database-url={}", db.url),
                &format!("--redis-url={}", redis.url()),
                &format!("--nats-url={}", nats.url()),
                "--nats-create-stream",
            ])
            .arg(format!("--flags-file={}", flags_file.display()));
        let orchestrator = Service::spawn("orchestrator", cmd).await;

        let mut cmd = Command::new(bin_dir.join("legacy-gateway"));
        cmd.args([
            "--listen=127.0.0.1:0",
            &format!("--jwt-hs256-secret={SECRET}"),
            &format!("--nats-url={}", nats.url()),
            "--jetstream",
        ]);
        let legacy = Service::spawn("legacy-gateway", cmd).await;

        let diff_log = dir.path().join("shadow-diff.jsonl");
        let config = dir.path().join("mirror-proxy.toml");
        std::fs::write(
            &config,
            format!(
                "[primary]\naddress = \"{}\"\n\n[shadow]\nurl = \"http://{}\"\ncredential = \"{SHADOW_SECRET}\"\n\
                 timeout = \"5s\"\nmax_in_flight = 200\n\n[sampling]\npercent = 100.0\n\n\
                 [diff]\nlog = \"{}\"\nrules = [\"{}\"]\n",
                legacy.addr("addr"),
                orchestrator.addr("api_addr"),
                diff_log.display(),
                repo.join("mirror-proxy/rules/shadow.toml").display()
            ),
        )
        .expect("write mirror-proxy config");
        let mut cmd = Command::new(bin_dir.join("mirror-proxy"));
        cmd.arg(format!("--config={}", config.display()))
            .args(["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"])
            .env("DIFF_REDACTION_KEY", REDACTION_KEY)
            .env("RUST_LOG", "info,pingora_core=warn,pingora_proxy=warn");
        let mirror = Service::spawn("mirror-proxy", cmd).await;

        let prometheus_port = free_port();
        let prometheus_url = format!("http://127.0.0.1:{prometheus_port}");
        let stack_dir = dir.path().to_owned();
        let prometheus = start_prometheus(
            prometheus_bin,
            &stack_dir,
            prometheus_port,
            repo,
            &[
                ("orchestrator", orchestrator.addr("admin_addr"), "/metrics"),
                ("mirror-proxy", mirror.addr("admin_addr"), "/metrics"),
            ],
        );
        Stack {
            dir,
            nats,
            redis,
            db,
            orchestrator,
            legacy,
            mirror,
            prometheus,
            prometheus_url,
            flags_file,
            diff_log,
            http: http_client(),
        }
    }

    /// Adds Envoy's admin as a scrape target (it starts after the stack).
    pub fn scrape_envoy(&self, admin: &str, repo: &Path) {
        write_prometheus_config(
            self.dir.path(),
            repo,
            &[
                (
                    "orchestrator",
                    self.orchestrator.addr("admin_addr"),
                    "/metrics",
                ),
                ("mirror-proxy", self.mirror.addr("admin_addr"), "/metrics"),
                ("envoy", admin.to_owned(), "/stats/prometheus"),
            ],
        );
        if let Some(pid) = self.prometheus.id() {
            let _ = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
        }
    }

    /// Waits until Prometheus is ready and every job in `jobs` is up.
    pub async fn prometheus_ready(&self, jobs: &[&str]) -> bool {
        let http = self.http.clone();
        let url = self.prometheus_url.clone();
        let jobs: Vec<String> = jobs.iter().map(|j| (*j).to_owned()).collect();
        eventually(Duration::from_secs(60), || {
            let http = http.clone();
            let url = url.clone();
            let jobs = jobs.clone();
            async move {
                let query = reqwest::Url::parse_with_params(
                    &format!("{url}/api/v1/query"),
                    &[("query", "up")],
                )
                .ok()?;
                let v: Value = http.get(query).send().await.ok()?.json().await.ok()?;
                let up: Vec<String> = v["data"]["result"]
                    .as_array()?
                    .iter()
                    .filter(|r| r["value"][1] == "1")
                    .filter_map(|r| r["metric"]["job"].as_str().map(str::to_owned))
                    .collect();
                jobs.iter().all(|j| up.contains(j)).then_some(())
            }
        })
        .await
        .is_some()
    }

    pub fn orchestrator_api(&self) -> String {
        format!("http://{}", self.orchestrator.addr("api_addr"))
    }

    /// The orchestrator's `/metrics`.
    pub async fn orchestrator_metrics(&self) -> String {
        scrape(&self.http, &self.orchestrator.addr("admin_addr")).await
    }

    pub async fn mirror_metrics(&self) -> String {
        scrape(&self.http, &self.mirror.addr("admin_addr")).await
    }

    /// Flips `SUBMIT_API_ENABLED` through the flags file (the orchestrator
    /// polls it twice a second).
    pub fn set_flag(&self, on: bool) {
        write_atomically(&self.flags_file, &format!("SUBMIT_API_ENABLED={on}\n"));
    }

    /// Waits until the orchestrator reports the flag as `on`.
    pub async fn flag_is(&self, on: bool) -> bool {
        let want = if on { 1.0 } else { 0.0 };
        eventually(Duration::from_secs(10), || async {
            (sample(
                &self.orchestrator_metrics().await,
                "orchestrator_submit_api_enabled",
            ) == want)
                .then_some(())
        })
        .await
        .is_some()
    }
}

async fn scrape(http: &reqwest::Client, admin: &str) -> String {
    match http.get(format!("http://{admin}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn write_prometheus_config(dir: &Path, repo: &Path, jobs: &[(&str, String, &str)]) {
    let mut text = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\nscrape_configs:\n",
        repo.join("docs/prometheus/rules.yml").display()
    );
    for (job, target, path) in jobs {
        text.push_str(&format!(
            "  - job_name: {job}\n    metrics_path: {path}\n    static_configs:\n      - targets: ['{target}']\n"
        ));
    }
    write_atomically(&dir.join("prometheus.yml"), &text);
}

fn start_prometheus(
    bin: &Path,
    dir: &Path,
    port: u16,
    repo: &Path,
    jobs: &[(&str, String, &str)],
) -> Child {
    write_prometheus_config(dir, repo, jobs);
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
    Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(["--log.level=warn", "--storage.tsdb.retention.time=1h"])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn prometheus")
}

/// The sum of every sample of `name` whose labels include all of `labels`
/// (`("traffic", "live")`), in a Prometheus text exposition.
pub fn sum_samples(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_sum_over_matching_labels() {
        let text = "# HELP x\nx_total{a=\"1\",b=\"live\"} 3\nx_total{a=\"2\",b=\"live\"} 4\nx_total{a=\"2\",b=\"shadow\"} 5\nx_totally 9\n";
        assert_eq!(sum_samples(text, "x_total", &[("b", "live")]), 7.0);
        assert_eq!(sum_samples(text, "x_total", &[]), 12.0);
        assert_eq!(sum_samples(text, "x_totally", &[]), 9.0);
    }
}
