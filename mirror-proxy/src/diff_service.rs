//! The diff service: a Pingora background service, off the request path.
//!
//! For each mirrored exchange it runs compare's [`compare::Differ`] under
//! the rules the request started with, counts the verdict, writes the
//! redacted diff record to the diff log and, when enabled, the exchange to
//! the capture file. Files are flushed whenever the queue runs empty, so a
//! reader sees every record of a quiet proxy within milliseconds.
//!
//! After each batch the service pauses [`BATCH_PAUSE`] before it waits
//! again: under load the exchanges queued meanwhile are taken in one batch,
//! instead of the proxy threads waking this thread once per exchange (a
//! cross-thread wake-up costs more than the diff itself). The first
//! exchange after a quiet spell is still handled at once. The service's
//! thread runs at a lower CPU priority than the proxy's
//! ([`crate::priority`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use compare::capture::jsonl::CaptureLine;
use compare::{DiffRecord, Exchange, RecordedRequest, RecordedResponse};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::logfile::RotatingFile;
use crate::state::{Live, Shared};

/// Pause after a batch, before waiting for the next exchange.
pub const BATCH_PAUSE: Duration = Duration::from_millis(2);

/// One mirrored request, ready to be compared.
#[derive(Debug)]
pub struct DiffJob {
    pub live: Arc<Live>,
    pub route: String,
    pub compared: Compared,
}

#[derive(Debug)]
pub enum Compared {
    Both(Exchange),
    /// The shadow gave no usable answer; recorded as `differs` with the error.
    ShadowFailed {
        request: RecordedRequest,
        primary: RecordedResponse,
        error: String,
    },
}

#[derive(Debug)]
pub struct DiffService {
    shared: Arc<Shared>,
    jobs: Mutex<Option<mpsc::Receiver<DiffJob>>>,
}

impl DiffService {
    pub fn new(shared: Arc<Shared>, jobs: mpsc::Receiver<DiffJob>) -> Self {
        Self {
            shared,
            jobs: Mutex::new(Some(jobs)),
        }
    }
}

struct Writers {
    diff_log: Option<RotatingFile>,
    capture: Option<RotatingFile>,
}

#[async_trait]
impl BackgroundService for DiffService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // This service has one thread of its own (Pingora's default for a
        // background service): it yields the CPU to the proxy's threads.
        if let Some(nice) = crate::priority::lower_this_thread("diff") {
            tracing::info!(
                nice,
                "diff service and shadow requests run at a lower CPU priority than the primary's threads"
            );
        }
        let Some(mut jobs) = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let fixed = &self.shared.fixed;
        let open = |path: &Option<std::path::PathBuf>, what: &str| {
            path.as_ref().and_then(|p| {
                RotatingFile::open(p, fixed.rotate_bytes, fixed.keep_files)
                    .map_err(|e| tracing::error!(path = %p.display(), error = %e, "cannot open the {what}"))
                    .ok()
            })
        };
        let mut writers = Writers {
            diff_log: open(&fixed.diff_log, "diff log"),
            capture: open(&fixed.capture, "capture file"),
        };
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else { break };
                    self.handle(job, &mut writers);
                    while let Ok(job) = jobs.try_recv() {
                        self.handle(job, &mut writers);
                    }
                    self.flush(&mut writers);
                    tokio::time::sleep(BATCH_PAUSE).await;
                }
                _ = shutdown.changed() => {
                    while let Ok(job) = jobs.try_recv() {
                        self.handle(job, &mut writers);
                    }
                    self.flush(&mut writers);
                    break;
                }
            }
        }
    }
}

impl DiffService {
    fn handle(&self, job: DiffJob, writers: &mut Writers) {
        let metrics = &self.shared.metrics;
        let DiffJob {
            live,
            route,
            compared,
        } = job;
        let mut record: DiffRecord = match &compared {
            Compared::Both(exchange) => live.differ.diff(exchange),
            Compared::ShadowFailed {
                request,
                primary,
                error,
            } => live.differ.failed(request, primary, error.clone()),
        };
        metrics
            .verdicts
            .with_label_values(&[&route, record.verdict.as_str()])
            .inc();
        for (_, kind) in record.real_differences() {
            metrics
                .differences
                .with_label_values(&[&route, kind.as_str()])
                .inc();
        }
        if let (Some(capture), Compared::Both(exchange)) = (writers.capture.as_mut(), &compared) {
            let line = CaptureLine::from_exchange(exchange, &live.redactor, Utc::now());
            let written = serde_json::to_vec(&line)
                .map_err(std::io::Error::other)
                .and_then(|bytes| capture.write_line(&bytes));
            if let Err(e) = written {
                metrics.write_errors.inc();
                tracing::warn!(error = %e, "capture write failed");
            }
        }
        if let Some(log) = writers.diff_log.as_mut() {
            live.redaction.apply(&mut record);
            let written = serde_json::to_vec(&record)
                .map_err(std::io::Error::other)
                .and_then(|bytes| log.write_line(&bytes));
            match written {
                Ok(()) => metrics.records_written.inc(),
                Err(e) => {
                    metrics.write_errors.inc();
                    tracing::warn!(error = %e, "diff log write failed");
                }
            }
        }
    }

    fn flush(&self, writers: &mut Writers) {
        for file in [writers.diff_log.as_mut(), writers.capture.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = file.flush() {
                self.shared.metrics.write_errors.inc();
                tracing::warn!(error = %e, "flushing a diff file failed");
            }
        }
    }
}
