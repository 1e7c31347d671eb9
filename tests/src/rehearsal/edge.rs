//! Envoy with file-based dynamic configuration: routes from `rds.yaml`,
//! clusters from `cds.yaml`, both the committed twins' resources
//! (`cutover::envoy::resources`) rendered for the rehearsal's addresses.
//! A step is applied by moving new files into place: routes change for
//! every connection's next request, without a restart.
//!
//! Who served each request is read from Envoy's own access log (upstream
//! host, attempts, start time), not from the answers: the two services
//! answer differently until contract parity lands, and only `Server` may
//! differ in the end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::stack::write_atomically;
use crate::{eventually, http_client};
use cutover::envoy::Resources;

/// One line of the access log.
#[derive(Debug, Clone)]
pub struct Served {
    /// Start of the request, seconds since the epoch.
    pub start: f64,
    pub correlation_id: String,
    /// `host:port` that gave the final answer ("-" for none).
    pub upstream: String,
    pub cluster: String,
    pub status: u16,
    pub attempts: u32,
}

#[derive(Debug)]
pub struct Edge {
    pub child: Child,
    pub admin: String,
    pub listener_port: u16,
    dir: PathBuf,
    version: u64,
    clusters: Vec<Value>,
    route_config: Value,
    http: reqwest::Client,
}

impl Edge {
    /// Starts Envoy on `first` (the rehearsal's phase 0).
    pub async fn start(envoy: &Path, dir: &Path, first: &Resources) -> Edge {
        let bootstrap = dir.join("envoy.yaml");
        std::fs::write(&bootstrap, Self::bootstrap(dir).to_string()).expect("write bootstrap");
        let mut version = 0;
        write_clusters(dir, &mut version, &first.clusters);
        write_routes(dir, &mut version, &first.route_config);
        let admin_path = dir.join("admin-address");
        let log = std::fs::File::create(dir.join("envoy.log")).expect("envoy log");
        let child = Command::new(envoy)
            .arg("-c")
            .arg(&bootstrap)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args([
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--file-flush-interval-msec",
                "100",
                "--concurrency",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn envoy");
        let mut edge = Edge {
            child,
            admin: String::new(),
            listener_port: 0,
            dir: dir.to_owned(),
            version,
            clusters: first.clusters.clone(),
            route_config: first.route_config.clone(),
            http: http_client(),
        };
        edge.admin = eventually(Duration::from_secs(30), || {
            let p = admin_path.clone();
            async move {
                std::fs::read_to_string(p)
                    .ok()
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
            }
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "envoy did not start; see {}",
                dir.join("envoy.log").display()
            )
        });
        let http = edge.http.clone();
        let admin = edge.admin.clone();
        edge.listener_port = eventually(Duration::from_secs(30), || {
            let http = http.clone();
            let admin = admin.clone();
            async move {
                let v: Value = http
                    .get(format!("http://{admin}/listeners?format=json"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let port =
                    v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
                        .as_u64()
                        .filter(|p| *p != 0)?;
                u16::try_from(port).ok()
            }
        })
        .await
        .expect("envoy listener bound");
        edge
    }

    fn bootstrap(dir: &Path) -> Value {
        let mut hcm = cutover::envoy::connection_manager();
        hcm["rds"] = json!({
            "route_config_name": cutover::envoy::ROUTE_CONFIG,
            "config_source": {"path_config_source": {"path": dir.join("rds.yaml")}, "resource_api_version": "V3"},
        });
        hcm["access_log"] = json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": dir.join("access.jsonl"),
                "log_format": {"json_format": {
                    "start": "%START_TIME(%s.%3f)%",
                    "corr": "%REQ(X-CORRELATION-ID)%",
                    "upstream": "%UPSTREAM_HOST%",
                    "cluster": "%UPSTREAM_CLUSTER%",
                    "status": "%RESPONSE_CODE%",
                    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
                }},
            },
        }]);
        json!({
            "node": {"id": "rehearsal", "cluster": "rehearsal"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "dynamic_resources": {
                "cds_config": {"path_config_source": {"path": dir.join("cds.yaml")}, "resource_api_version": "V3"},
            },
            "static_resources": {"listeners": [cutover::envoy::listener("127.0.0.1", 0, hcm)]},
        })
    }

    fn write_clusters(&mut self, clusters: &[Value]) -> String {
        write_clusters(&self.dir, &mut self.version, clusters)
    }

    fn write_routes(&mut self, route_config: &Value) -> String {
        write_routes(&self.dir, &mut self.version, route_config)
    }

    async fn stat_text(&self, filter: &str) -> String {
        match self
            .http
            .get(format!("http://{}/stats?filter={filter}", self.admin))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until Envoy reports `version` for CDS (`cds`) or RDS, and no
    /// cluster is still warming. Panics when Envoy rejected the update.
    async fn applied(&self, what: &str, version: &str) {
        let filter = if what == "cds" {
            "cluster_manager\\.(cds\\.(version_text|update_rejected)|warming_clusters)".to_owned()
        } else {
            format!(
                "http\\.edge\\.rds\\.{}\\.(version_text|update_rejected)",
                cutover::envoy::ROUTE_CONFIG
            )
        };
        let want = format!("version_text: \"{version}\"");
        let ok = eventually(Duration::from_secs(30), || async {
            let text = self.stat_text(&filter).await;
            if text
                .lines()
                .any(|l| l.contains("update_rejected") && !l.trim_end().ends_with(" 0"))
            {
                panic!("envoy rejected a {what} update: {text}");
            }
            let warming = text
                .lines()
                .any(|l| l.starts_with("cluster_manager.warming_clusters") && !l.ends_with(" 0"));
            (text.contains(&want) && !warming).then_some(())
        })
        .await;
        assert!(ok.is_some(), "envoy did not apply {what} version {version}");
    }

    /// Moves Envoy to `next`: clusters it adds first, then the routes, then
    /// the clusters it drops, so no route ever names a missing cluster.
    /// Returns when Envoy reports every part applied.
    pub async fn apply(&mut self, next: &Resources) {
        let mut union = self.clusters.clone();
        for c in &next.clusters {
            match union.iter_mut().find(|u| u["name"] == c["name"]) {
                Some(u) => *u = c.clone(),
                None => union.push(c.clone()),
            }
        }
        if union != self.clusters {
            let v = self.write_clusters(&union);
            self.applied("cds", &v).await;
        }
        if next.route_config != self.route_config {
            let v = self.write_routes(&next.route_config);
            self.applied("rds", &v).await;
        }
        if next.clusters != union {
            let v = self.write_clusters(&next.clusters);
            self.applied("cds", &v).await;
        }
        self.clusters = next.clusters.clone();
        self.route_config = next.route_config.clone();
    }

    /// Health of `host:port` in `cluster` as Envoy's active check sees it.
    pub async fn healthy(&self, cluster: &str, address: &str) -> Option<bool> {
        let v: Value = self
            .http
            .get(format!("http://{}/clusters?format=json", self.admin))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let c = v["cluster_statuses"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == cluster)?;
        let h = c["host_statuses"].as_array()?.iter().find(|h| {
            let a = &h["address"]["socket_address"];
            format!(
                "{}:{}",
                a["address"].as_str().unwrap_or(""),
                a["port_value"]
            ) == address
        })?;
        let s = &h["health_status"];
        Some(s["failed_active_health_check"] != true && s["eds_health_status"] == "HEALTHY")
    }

    /// Waits until Envoy sees `address` healthy in `cluster`.
    pub async fn wait_healthy(&self, cluster: &str, address: &str) -> Duration {
        let t = Instant::now();
        let ok = eventually(Duration::from_secs(30), || async {
            (self.healthy(cluster, address).await == Some(true)).then_some(())
        })
        .await;
        assert!(
            ok.is_some(),
            "envoy never saw {address} healthy in {cluster}"
        );
        t.elapsed()
    }

    /// Every access log line so far.
    pub fn served(&self) -> Vec<Served> {
        let text = std::fs::read_to_string(self.dir.join("access.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                let s = |k: &str| match &v[k] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                Served {
                    start: s("start").parse().unwrap_or(0.0),
                    correlation_id: s("corr"),
                    upstream: s("upstream"),
                    cluster: s("cluster"),
                    status: s("status").parse().unwrap_or(0),
                    attempts: s("attempts").parse().unwrap_or(0),
                }
            })
            .collect()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("envoy.log")
    }
}

/// Writes `cds.yaml` (a DiscoveryResponse) with the next version.
fn write_clusters(dir: &Path, version: &mut u64, clusters: &[Value]) -> String {
    *version += 1;
    let resources: Vec<Value> = clusters
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c["@type"] = json!("type.googleapis.com/envoy.config.cluster.v3.Cluster");
            c
        })
        .collect();
    let v = version.to_string();
    write_atomically(
        &dir.join("cds.yaml"),
        &json!({"version_info": v, "resources": resources}).to_string(),
    );
    v
}

/// Writes `rds.yaml` with the next version.
fn write_routes(dir: &Path, version: &mut u64, route_config: &Value) -> String {
    *version += 1;
    let mut r = route_config.clone();
    r["@type"] = json!("type.googleapis.com/envoy.config.route.v3.RouteConfiguration");
    let v = version.to_string();
    write_atomically(
        &dir.join("rds.yaml"),
        &json!({"version_info": v, "resources": [r]}).to_string(),
    );
    v
}
