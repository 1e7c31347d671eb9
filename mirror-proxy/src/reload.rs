//! Reload: `SIGHUP`, or a change of the config file's modification time
//! when `reload_interval` is set, re-reads the file, re-applies flags and
//! environment, compiles the new settings and swaps them in. A config that
//! does not load is refused whole (logged and counted); the running
//! settings stay. Connections and requests in flight are untouched: they
//! hold the settings they started with.
//!
//! Pingora owns SIGTERM, SIGINT and SIGQUIT; SIGHUP is free, and is the
//! conventional "reload" signal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{SignalKind, signal};

use crate::config;
use crate::state::{Live, Shared};

#[derive(Debug)]
pub struct Reloader {
    shared: Arc<Shared>,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Loads and installs the config; `Err` leaves the running settings.
    pub fn reload(&self) -> anyhow::Result<()> {
        let shared = &self.shared;
        let file = config::read_file(shared.cli.config.as_deref())?;
        let settings = config::dynamic_settings(&file, &shared.cli)?;
        let live = Live::compile(settings, &shared.fixed, shared.redaction_key())?;
        shared.replace(live);
        Ok(())
    }

    fn reload_logged(&self, trigger: &str) {
        match self.reload() {
            Ok(()) => {
                self.shared.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(trigger, "configuration reloaded");
            }
            Err(e) => {
                self.shared
                    .metrics
                    .reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(trigger, error = %e, "configuration reload refused; keeping the running settings");
            }
        }
    }
}

fn modified(path: Option<&std::path::Path>) -> Option<SystemTime> {
    path.and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok())
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGHUP handler; reload by signal is off");
                self.shared.reload_ready.store(true, Ordering::Release);
                return;
            }
        };
        self.shared.reload_ready.store(true, Ordering::Release);
        let path = self.shared.cli.config.clone();
        let interval = self.shared.fixed.reload_interval;
        let mut last_modified = modified(path.as_deref());
        loop {
            let poll = async {
                match interval {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = hangup.recv() => {
                    last_modified = modified(path.as_deref());
                    self.reload_logged("sighup");
                }
                () = poll => {
                    let now = modified(path.as_deref());
                    if now != last_modified {
                        last_modified = now;
                        self.reload_logged("file-changed");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
