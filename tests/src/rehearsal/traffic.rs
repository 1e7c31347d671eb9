//! Steady client traffic through the edge: `POST /v1/sms/send` at a fixed
//! rate from a pool of tenants, each request with its own
//! `X-Correlation-ID` (`reh-N`, which Envoy's access log and both services'
//! events carry) and `Idempotency-Key`, over keep-alive connections (so a
//! route change must reach connections that are already open).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::task::JoinSet;

use crate::SECRET;

/// The edge hostname the rehearsal's clients use (a route host of
/// `kong/cutover.toml`).
pub fn edge_host(d: &cutover::Description) -> String {
    d.edge.routes[0].hosts[0].clone()
}

/// One client request.
#[derive(Debug, Clone)]
pub struct Sent {
    pub correlation_id: String,
    /// Seconds since the epoch.
    pub start: f64,
    /// When the answer arrived, seconds since the epoch.
    pub end: f64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub tenant: String,
}

impl Sent {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A running traffic generator.
#[derive(Debug)]
pub struct Traffic {
    pub sent: Arc<Mutex<Vec<Sent>>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// A bearer token for `tenant` (both services verify it).
pub fn token(tenant: &str) -> String {
    orchestrator::auth::mint_dev_token(SECRET, tenant, Duration::from_secs(3600)).expect("token")
}

/// A client that sends `host` to the edge at `edge`.
pub fn client(host: &str, edge: SocketAddr) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .resolve(host, edge)
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

impl Traffic {
    /// Starts `rate` requests per second to `base` (`http://host:port`)
    /// with `workers` connections, `prefix` naming the correlation ids.
    pub fn start(
        http: reqwest::Client,
        base: String,
        rate: u32,
        workers: usize,
        tenants: usize,
        prefix: &'static str,
    ) -> Traffic {
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (tx, rx) = async_channel::bounded::<u64>(1024);
        let mut tasks = JoinSet::new();
        let tokens: Arc<Vec<(String, String)>> = Arc::new(
            (0..tenants)
                .map(|i| {
                    let t = format!("rehearsal-{i:03}");
                    let tok = token(&t);
                    (t, tok)
                })
                .collect(),
        );
        let mut stopped_pace = stopped.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped_pace.changed() => break,
                }
                seq += 1;
                if tx.send(seq).await.is_err() {
                    break;
                }
            }
        });
        for _ in 0..workers {
            let rx = rx.clone();
            let http = http.clone();
            let base = base.clone();
            let sent = sent.clone();
            let tokens = tokens.clone();
            tasks.spawn(async move {
                while let Ok(seq) = rx.recv().await {
                    let (tenant, token) = &tokens[(seq as usize) % tokens.len()];
                    let correlation_id = format!("{prefix}-{seq}");
                    let start = now();
                    let t = Instant::now();
                    let result = http
                        .post(format!("{base}/v1/sms/send"))
                        .bearer_auth(token)
                        .header("X-Tenant-Id", tenant)
                        .header("X-Correlation-ID", &correlation_id)
                        .header("Idempotency-Key", &correlation_id)
                        .json(&json!({
                            "to": format!("+4477009{:05}", seq % 100_000),
                            "from": "Rehearsal",
                            "body": format!("cutover rehearsal message {seq}"),
                        }))
                        .send()
                        .await;
                    let (status, error) = match result {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let _ = r.bytes().await;
                            (Some(status), None)
                        }
                        Err(e) => (None, Some(e.to_string())),
                    };
                    let record = Sent {
                        correlation_id,
                        start,
                        end: start + t.elapsed().as_secs_f64(),
                        status,
                        error,
                        tenant: tenant.clone(),
                    };
                    sent.lock().unwrap_or_else(|p| p.into_inner()).push(record);
                }
            });
        }
        Traffic { sent, stop, tasks }
    }

    /// Requests that started in `[from, to)`.
    pub fn between(&self, from: f64, to: f64) -> Vec<Sent> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.start >= from && s.start < to)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Sent> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops sending and waits for the requests in flight.
    pub async fn stop(mut self) -> Vec<Sent> {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.all()
    }
}
