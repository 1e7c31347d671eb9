//! Where the relay publishes: JetStream (with TLS and credentials), or a
//! JSONL file when no NATS is configured; and the streams that must
//! capture what it publishes.
//!
//! ## Connecting
//!
//! `NATS_URL` is `nats://` (TLS if the server asks for it) or `tls://`
//! (TLS required). `NATS_CA_FILE` replaces the system roots,
//! `NATS_CLIENT_CERT`/`KEY` present a client certificate. One
//! authentication mode at most: user/password, token, NKey seed or a
//! `.creds` file. The first connection is tried at start-up: a
//! misconfiguration (TLS verification, wrong credentials, bad URL) stops
//! the start with a message naming NATS and the reason, while an outage
//! (refused, timed out) only delays publishing: the client keeps trying in
//! the background and the relay waits.
//!
//! ## Streams
//!
//! Live events (`NATS_SUBJECT`) and status events (`NATS_STATUS_SUBJECT`)
//! go in `NATS_STREAM` (default `SMS_OUTBOUND`, subjects `sms.outbound.>`).
//! Shadow events (`SHADOW_SUBJECT`, default `shadow.sms.outbound.request`)
//! go in a stream of their own, `NATS_SHADOW_STREAM` (default
//! `SMS_SHADOW`), whose max age is `SHADOW_RETENTION`: a worker reading the
//! live stream can never see a shadow event, whatever its filter, and
//! shadow events do not fill the live stream. A deployment whose live
//! stream already captures the shadow subject keeps that layout (JetStream
//! allows a subject in one stream only). At start-up every subject the
//! orchestrator publishes must be captured by a stream, or it refuses to
//! start and names the subject and the stream to create;
//! `NATS_CREATE_STREAM=true` creates missing streams (never changes one).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::config::{NatsConfig, RetentionConfig, ShadowConfig};
use crate::store::OutboxRow;

/// Longest wait for one PubAck.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Duplicate window of the streams we create; see `relay` for why it must
/// exceed ack timeout + lease + max backoff (≈ 45 s).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(300);
/// How long the first connection attempt may take before start-up goes on
/// and the client keeps trying in the background.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the sink is connected, for readiness and the metric.
#[derive(Debug, Clone)]
pub struct SinkHealth {
    connected: Arc<AtomicBool>,
    kind: &'static str,
}

impl SinkHealth {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// The streams and subjects, parsed from the configuration once.
#[derive(Debug, Clone)]
pub struct StreamLayout {
    pub stream: String,
    pub stream_subjects: Vec<String>,
    pub subject: String,
    pub status_subject: String,
    /// `None`: shadow events are published nowhere.
    pub shadow_subject: Option<String>,
    pub shadow_stream: String,
    pub shadow_max_age: Duration,
    pub create: bool,
}

impl StreamLayout {
    pub fn new(nats: &NatsConfig, shadow: &ShadowConfig, retention: &RetentionConfig) -> Self {
        Self {
            stream: nats.stream.clone(),
            stream_subjects: nats
                .stream_subjects
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            subject: nats.subject.clone(),
            status_subject: nats.status_subject.clone(),
            shadow_subject: Some(shadow.subject.clone()).filter(|s| !s.is_empty()),
            shadow_stream: nats.shadow_stream.clone(),
            shadow_max_age: retention.shadow_retention,
            create: nats.create_stream,
        }
    }
}

/// Where events go.
#[derive(Clone)]
pub enum EventSink {
    Nats {
        client: async_nats::Client,
        js: Box<jetstream::Context>,
        layout: Arc<StreamLayout>,
    },
    File(Arc<Mutex<tokio::fs::File>>, PathBuf),
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventSink::Nats { layout, .. } => write!(f, "EventSink::Nats({})", layout.stream),
            EventSink::File(_, p) => write!(f, "EventSink::File({})", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish failed: {0}")]
    Publish(String),
    /// JetStream answered that no stream captures the subject: the stream
    /// was deleted, or NATS lost its storage. The relay checks (and, with
    /// `NATS_CREATE_STREAM`, recreates) the streams before trying again.
    #[error("no JetStream stream captures the subject: {0}")]
    NoStream(String),
    #[error("no acknowledgement within {0:?} (outcome unknown; will republish)")]
    AckTimeout(Duration),
    #[error("file sink: {0}")]
    File(#[from] std::io::Error),
}

impl PublishError {
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Publish(_) => "publish",
            PublishError::NoStream(_) => "no_stream",
            PublishError::AckTimeout(_) => "ack_timeout",
            PublishError::File(_) => "file",
        }
    }
}

/// How the orchestrator proves itself to NATS.
#[derive(Debug)]
enum NatsAuth {
    None,
    UserPassword(String, crate::secret::Secret),
    Token(crate::secret::Secret),
    NKey(crate::secret::Secret),
    Creds(PathBuf),
}

impl NatsAuth {
    fn from_config(nats: &NatsConfig) -> anyhow::Result<Self> {
        let mut modes = Vec::new();
        if let Some(user) = &nats.user {
            let password = nats
                .password
                .clone()
                .context("NATS_USER is set without NATS_PASSWORD (or NATS_PASSWORD_FILE)")?;
            modes.push(NatsAuth::UserPassword(user.clone(), password));
        } else if nats.password.is_some() {
            bail!("NATS_PASSWORD is set without NATS_USER");
        }
        if let Some(token) = &nats.token {
            modes.push(NatsAuth::Token(token.clone()));
        }
        if let Some(seed) = &nats.nkey_seed {
            modes.push(NatsAuth::NKey(seed.clone()));
        }
        if let Some(path) = &nats.creds_file {
            modes.push(NatsAuth::Creds(path.clone()));
        }
        match modes.len() {
            0 => Ok(NatsAuth::None),
            1 => Ok(modes.remove(0)),
            _ => bail!(
                "more than one NATS authentication is configured (user/password, token, NKey seed, creds file); set one"
            ),
        }
    }
}

/// The client options, authentication and TLS included (built per attempt:
/// connecting consumes them).
async fn connect_options(
    nats: &NatsConfig,
    connected: Arc<AtomicBool>,
) -> anyhow::Result<async_nats::ConnectOptions> {
    let mut options = async_nats::ConnectOptions::new()
        .name("orchestrator")
        .connection_timeout(Duration::from_secs(2))
        .event_callback(move |event| {
            let flag = connected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => flag.store(true, Ordering::Relaxed),
                    async_nats::Event::Disconnected => {
                        flag.store(false, Ordering::Relaxed);
                        tracing::warn!("nats disconnected");
                    }
                    other => tracing::info!(event = %other, "nats event"),
                }
            }
        });
    options = match NatsAuth::from_config(nats)? {
        NatsAuth::None => options,
        NatsAuth::UserPassword(user, password) => {
            options.user_and_password(user, password.expose().to_owned())
        }
        NatsAuth::Token(token) => options.token(token.expose().to_owned()),
        NatsAuth::NKey(seed) => {
            // Checked here so a bad seed is a clear start-up error rather
            // than a failed handshake.
            nkeys::KeyPair::from_seed(seed.expose().trim())
                .map_err(|_| anyhow::anyhow!("NATS_NKEY_SEED is not an NKey seed"))?;
            options.nkey(seed.expose().trim().to_owned())
        }
        NatsAuth::Creds(path) => options
            .credentials_file(&path)
            .await
            .with_context(|| format!("NATS_CREDS_FILE {}", path.display()))?,
    };
    if let Some(ca) = &nats.ca_file {
        ensure_readable("NATS_CA_FILE", ca)?;
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&nats.client_cert, &nats.client_key) {
        ensure_readable("NATS_CLIENT_CERT", cert)?;
        ensure_readable("NATS_CLIENT_KEY", key)?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let url = nats.url.as_ref().map(|u| u.expose()).unwrap_or_default();
    if url.split(',').any(|u| u.trim().starts_with("tls://")) {
        options = options.require_tls(true);
    }
    Ok(options)
}

fn ensure_readable(name: &str, path: &std::path::Path) -> anyhow::Result<()> {
    std::fs::metadata(path)
        .map(|_| ())
        .with_context(|| format!("{name} {}", path.display()))
}

/// A connection failure that a retry cannot fix: the start must stop.
fn is_misconfiguration(error: &async_nats::ConnectError) -> bool {
    use async_nats::ConnectErrorKind::*;
    match error.kind() {
        Authentication | AuthorizationViolation | Tls | ServerParse => true,
        Dns | TimedOut | MaxReconnects => false,
        // A certificate the client refuses (or the server refuses) surfaces
        // as an I/O error carrying rustls's error.
        Io => is_tls_failure(error),
    }
}

fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && (inner.downcast_ref::<rustls::Error>().is_some() || is_tls_failure(inner))
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl EventSink {
    /// NATS when `NATS_URL` is set, else the JSONL file. See the module doc
    /// for what stops the start and what only delays publishing.
    pub async fn connect(
        nats: &NatsConfig,
        shadow: &ShadowConfig,
        retention: &RetentionConfig,
    ) -> anyhow::Result<(Self, SinkHealth)> {
        let connected = Arc::new(AtomicBool::new(false));
        let Some(url) = nats.url.as_ref().map(|u| u.expose().to_owned()) else {
            return Self::file(nats, connected).await;
        };
        let redacted = format!("{:?}", nats.url.as_ref().expect("set"));
        let first = tokio::time::timeout(
            FIRST_CONNECT_TIMEOUT,
            connect_options(nats, connected.clone())
                .await?
                .connect(url.as_str()),
        )
        .await;
        let client = match first {
            Ok(Ok(client)) => client,
            Ok(Err(e)) if is_misconfiguration(&e) => {
                bail!("cannot connect to {redacted}: {}", crate::cause::chain(&e))
            }
            Ok(Err(e)) => {
                tracing::warn!(url = %redacted, error = %crate::cause::chain(&e), "NATS unreachable at start-up; publishing waits until it answers");
                connect_options(nats, connected.clone())
                    .await?
                    .retry_on_initial_connect()
                    .connect(url.as_str())
                    .await?
            }
            Err(_) => {
                tracing::warn!(url = %redacted, "NATS did not answer within {FIRST_CONNECT_TIMEOUT:?} at start-up; publishing waits until it answers");
                connect_options(nats, connected.clone())
                    .await?
                    .retry_on_initial_connect()
                    .connect(url.as_str())
                    .await?
            }
        };
        if client.connection_state() == async_nats::connection::State::Connected {
            connected.store(true, Ordering::Relaxed);
        }
        let js = jetstream::ContextBuilder::new()
            .ack_timeout(ACK_TIMEOUT)
            .build(client.clone());
        let sink = Self::Nats {
            client,
            js: Box::new(js),
            layout: Arc::new(StreamLayout::new(nats, shadow, retention)),
        };
        Ok((
            sink,
            SinkHealth {
                connected,
                kind: "nats",
            },
        ))
    }

    async fn file(
        nats: &NatsConfig,
        connected: Arc<AtomicBool>,
    ) -> anyhow::Result<(Self, SinkHealth)> {
        if let Some(dir) = nats
            .events_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&nats.events_file)
            .await?;
        connected.store(true, Ordering::Relaxed);
        Ok((
            Self::File(Arc::new(Mutex::new(file)), nats.events_file.clone()),
            SinkHealth {
                connected,
                kind: "file",
            },
        ))
    }

    /// The NATS client, for the status consumer.
    /// The live stream's name (empty for the file sink).
    pub fn stream_name(&self) -> &str {
        match self {
            EventSink::Nats { layout, .. } => &layout.stream,
            EventSink::File(..) => "",
        }
    }

    pub fn nats(&self) -> Option<(&async_nats::Client, &jetstream::Context)> {
        match self {
            EventSink::Nats { client, js, .. } => Some((client, js.as_ref())),
            EventSink::File(..) => None,
        }
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        match self {
            EventSink::Nats { client, .. } => {
                client.connection_state() == async_nats::connection::State::Connected
            }
            EventSink::File(..) => true,
        }
    }

    /// Creates (with `NATS_CREATE_STREAM`) and checks the streams: every
    /// subject the orchestrator publishes or consumes must be captured, or
    /// the error names the subject and the stream to create.
    pub async fn ensure_streams(&self) -> anyhow::Result<()> {
        let EventSink::Nats { js, layout, .. } = self else {
            return Ok(());
        };
        if layout.create {
            js.get_or_create_stream(jetstream::stream::Config {
                name: layout.stream.clone(),
                subjects: layout.stream_subjects.clone(),
                duplicate_window: DUPLICATE_WINDOW,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating stream {}: {e}", layout.stream))?;
        }
        let mut stream = js.get_stream(&layout.stream).await.map_err(|e| {
            anyhow::anyhow!(
                "JetStream stream {:?} not found ({e}); create it with subjects {:?} \
                 (and a duplicate_window of at least 2m), or start with NATS_CREATE_STREAM=true",
                layout.stream,
                layout.stream_subjects
            )
        })?;
        let info = stream.info().await?;
        let live_captures = |subject: &str| {
            info.config
                .subjects
                .iter()
                .any(|pattern| subject_matches(pattern, subject))
        };
        for (setting, subject) in [
            ("NATS_SUBJECT", &layout.subject),
            ("NATS_STATUS_SUBJECT", &layout.status_subject),
        ] {
            if !live_captures(subject) {
                bail!(
                    "stream {:?} does not capture {setting} {subject:?} (its subjects: {:?})",
                    layout.stream,
                    info.config.subjects
                );
            }
        }
        let Some(shadow) = &layout.shadow_subject else {
            return Ok(());
        };
        if live_captures(shadow) {
            return Ok(());
        }
        if layout.create {
            js.get_or_create_stream(jetstream::stream::Config {
                name: layout.shadow_stream.clone(),
                subjects: vec![shadow.clone()],
                max_age: layout.shadow_max_age,
                duplicate_window: DUPLICATE_WINDOW.min(layout.shadow_max_age),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("creating stream {}: {e}", layout.shadow_stream))?;
        }
        match js.stream_by_subject(shadow.as_str()).await {
            Ok(_) => Ok(()),
            Err(_) => bail!(
                "no JetStream stream captures SHADOW_SUBJECT {shadow:?}, so every shadow event \
                 would fail: create stream {:?} with subjects [{shadow:?}] (max_age = \
                 SHADOW_RETENTION), or start with NATS_CREATE_STREAM=true, or set SHADOW_SUBJECT \
                 empty to publish shadow events nowhere",
                layout.shadow_stream
            ),
        }
    }

    pub async fn publish(&self, row: &OutboxRow) -> Result<(), PublishError> {
        match self {
            EventSink::Nats { js, .. } => {
                let mut headers = async_nats::HeaderMap::new();
                for (k, v) in &row.headers {
                    headers.insert(k.as_str(), v.as_str());
                }
                let ack = js
                    .send_publish(
                        row.subject.clone(),
                        jetstream::message::PublishMessage::build()
                            .payload(row.payload.clone().into())
                            .headers(headers),
                    )
                    .await
                    .map_err(|e| PublishError::Publish(e.to_string()))?;
                match tokio::time::timeout(ACK_TIMEOUT + Duration::from_millis(500), ack).await {
                    Ok(Ok(_ack)) => Ok(()),
                    Ok(Err(e))
                        if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound =>
                    {
                        Err(PublishError::NoStream(e.to_string()))
                    }
                    Ok(Err(e)) => Err(PublishError::Publish(e.to_string())),
                    Err(_) => Err(PublishError::AckTimeout(ACK_TIMEOUT)),
                }
            }
            EventSink::File(file, _) => {
                let line = serde_json::json!({
                    "subject": row.subject,
                    "headers": row.headers.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "payload": serde_json::from_slice::<serde_json::Value>(&row.payload).unwrap_or_default(),
                });
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                let mut f = file.lock().await;
                f.write_all(&bytes).await?;
                f.sync_data().await?;
                Ok(())
            }
        }
    }
}

/// NATS subject wildcard match (`*` one token, `>` the rest).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_wildcards() {
        assert!(subject_matches("sms.outbound.>", "sms.outbound.request"));
        assert!(subject_matches("sms.*.request", "sms.outbound.request"));
        assert!(!subject_matches("sms.outbound.>", "sms.outbound"));
        assert!(!subject_matches(
            "sms.outbound.request",
            "sms.outbound.status"
        ));
        assert!(subject_matches(
            "sms.outbound.request",
            "sms.outbound.request"
        ));
        // Issue #16, defect 1: the default live subjects never captured the
        // default shadow subject; it needs a stream of its own.
        assert!(!subject_matches(
            "sms.outbound.>",
            "shadow.sms.outbound.request"
        ));
    }

    #[test]
    fn one_nats_authentication_at_most() {
        let parse = |args: &[&str]| {
            let mut all = vec!["orchestrator"];
            all.extend_from_slice(args);
            let c = crate::config::Config::from_args(all).unwrap();
            NatsAuth::from_config(&c.nats)
        };
        assert!(matches!(parse(&[]).unwrap(), NatsAuth::None));
        assert!(matches!(
            parse(&["--nats-user=u", "--nats-password=p"]).unwrap(),
            NatsAuth::UserPassword(..)
        ));
        assert!(parse(&["--nats-user=u"]).is_err());
        assert!(parse(&["--nats-password=p"]).is_err());
        let err = parse(&["--nats-token=t", "--nats-creds-file=/x.creds"]).unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
    }
}
