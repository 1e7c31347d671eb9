//! Step 1 of a submit: the `SUBMIT_API_ENABLED` feature flag of the
//! migration plan (phase 0 deploys with it off; rollback flips it off).
//!
//! It starts from the flag/env value; when `FLAGS_FILE` is set, the file's
//! `SUBMIT_API_ENABLED=` line overrides it and is re-read whenever the file
//! changes (polled every 500 ms, so a flip takes effect within a second, no
//! restart) and on SIGHUP ([`crate::reload`]). Each flip is logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::Metrics;
use crate::problem::ApiError;

const FLAG: &str = "SUBMIT_API_ENABLED";

#[derive(Debug, Clone)]
pub struct SubmitFlag {
    on: Arc<AtomicBool>,
    metrics: Metrics,
}

impl SubmitFlag {
    pub fn new(on: bool, metrics: Metrics) -> Self {
        metrics.submit_api_enabled.set(i64::from(on));
        Self {
            on: Arc::new(AtomicBool::new(on)),
            metrics,
        }
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Sets the flag; logs and counts only real flips.
    pub fn set(&self, on: bool, source: &str) {
        if self.on.swap(on, Ordering::Relaxed) != on {
            self.metrics.submit_api_enabled.set(i64::from(on));
            tracing::warn!(submit_api_enabled = on, source, "feature flag flipped");
        }
    }

    /// Follows `path` until the process ends: a change re-reads it.
    pub fn watch(self, path: PathBuf) {
        tokio::spawn(async move {
            let mut seen: Option<SystemTime> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                if modified != seen {
                    seen = modified;
                    match read_flag(&path) {
                        Ok(Some(on)) => self.set(on, "flags file"),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, path = %path.display(), "flags file unreadable; flag unchanged")
                        }
                    }
                }
            }
        });
    }
}

/// The `SUBMIT_API_ENABLED` value in an env-style file, if present.
pub fn read_flag(path: &Path) -> anyhow::Result<Option<bool>> {
    for item in dotenvy::from_path_iter(path)? {
        let (key, value) = item?;
        if key == FLAG {
            return Ok(Some(parse_bool(&value).ok_or_else(|| {
                anyhow::anyhow!("{FLAG} must be true/false/1/0/on/off")
            })?));
        }
    }
    Ok(None)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// Middleware on `/v1/sms/*`: off → `404 submit-api-disabled`.
pub async fn gate(State(flag): State<SubmitFlag>, req: Request, next: Next) -> Response {
    if flag.is_on() {
        next.run(req).await
    } else {
        ApiError::SubmitApiDisabled.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_file_values_parse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("flags.env");
        std::fs::write(&p, "# cutover flags\nSUBMIT_API_ENABLED=true\n").unwrap();
        assert_eq!(read_flag(&p).unwrap(), Some(true));
        std::fs::write(&p, "SUBMIT_API_ENABLED=off\n").unwrap();
        assert_eq!(read_flag(&p).unwrap(), Some(false));
        std::fs::write(&p, "OTHER=1\n").unwrap();
        assert_eq!(read_flag(&p).unwrap(), None);
        std::fs::write(&p, "SUBMIT_API_ENABLED=maybe\n").unwrap();
        assert!(read_flag(&p).is_err());
    }
}
