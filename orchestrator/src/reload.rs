//! `SIGHUP`: reload what can change without a restart, whatever is
//! configured. The handler is installed in [`crate::startup::build`], before
//! the "listening" line, so a `SIGHUP` (a config-management tool's
//! habitual "reload") never kills the process, with or without
//! `FLAGS_FILE`.
//!
//! Reloaded: the `FLAGS_FILE` flag (when set; it is also polled) and the
//! JWKS (when a file or URL is configured). Everything else is fixed at
//! start; the log line says what was reloaded.

use std::path::PathBuf;

use tokio::signal::unix::Signal;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::flag::SubmitFlag;

/// The installed handler and what it reloads.
#[derive(Debug)]
pub struct Reloader {
    pub hangup: Signal,
    pub flag: SubmitFlag,
    pub flags_file: Option<PathBuf>,
    pub auth: Authenticator,
    pub jwks: bool,
}

impl Reloader {
    /// Installs the handler now (so a signal that arrives before
    /// [`Reloader::run`] waits for it rather than killing the process).
    pub fn install(
        flag: SubmitFlag,
        flags_file: Option<PathBuf>,
        auth: Authenticator,
        jwks: bool,
    ) -> std::io::Result<Self> {
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(Self {
            hangup,
            flag,
            flags_file,
            auth,
            jwks,
        })
    }

    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            tokio::select! {
                received = self.hangup.recv() => {
                    if received.is_none() {
                        return;
                    }
                    self.reload().await;
                }
                () = stop.cancelled() => return,
            }
        }
    }

    async fn reload(&self) {
        let flags = match &self.flags_file {
            None => "not configured",
            Some(path) => match crate::flag::read_flag(path) {
                Ok(Some(on)) => {
                    self.flag.set(on, "SIGHUP");
                    "reloaded"
                }
                Ok(None) => "no SUBMIT_API_ENABLED line",
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "flags file unreadable; flag unchanged");
                    "unreadable"
                }
            },
        };
        let jwks = if !self.jwks {
            "not configured"
        } else {
            match self.auth.refresh_jwks().await {
                Ok(()) => "reloaded",
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "JWKS reload failed; keeping the cached keys");
                    "failed"
                }
            }
        };
        tracing::info!(
            signal = "SIGHUP",
            flags_file = flags,
            jwks,
            submit_api_enabled = self.flag.is_on(),
            "reload requested; other settings need a restart"
        );
    }
}
