//! Step 5 of a submit: the Idempotency-Key. Postgres (or SQLite) is the
//! truth; Redis (or an in-process map, embedded) is a fast path that only
//! ever answers early with what the database already decided or is deciding.
//!
//! * Scope: (tenant, route, key); shadow traffic has its own routes
//!   (`shadow-send`, `shadow-bulk`), so it can never replay a real answer.
//! * Fingerprint: SHA-256 over `METHOD\nroute\n` + the RFC 8785 (JCS)
//!   canonical body: key order and whitespace do not matter.
//! * Redis key: `{prefix}{tenant}:{scope}:{key}` (default prefix
//!   `orch:submit-idem:`). Tenant ids have no `:`, scopes are fixed words,
//!   and the key comes last, so distinct scopes never share a Redis key.
//!   Value: JSON [`CachedEntry`]; `SET NX PX` with the lock TTL while in
//!   flight, overwritten with the completed record and the key's remaining
//!   TTL after commit.
//! * Every answer from the cache re-checks the fingerprint (a known bug
//!   class: payload checks skipped on the cache-hit path).
//! * Redis down, slow or flushed: each call is bounded by `REDIS_TIMEOUT`;
//!   past it the fast path is skipped, counted, warned about at most once a
//!   minute, and the database decides alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::config::RedisConfig;
use crate::metrics::Metrics;
use crate::store::IdempotencyRecord;

/// The request's digest: method, route and canonical body.
pub fn fingerprint(method: &str, route: &str, body: &serde_json::Value) -> String {
    let canonical = serde_jcs::to_vec(body).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(route.as_bytes());
    h.update(b"\n");
    h.update(&canonical);
    hex::encode(h.finalize())
}

/// What the fast path holds for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CachedEntry {
    InFlight { fingerprint: String },
    Completed(IdempotencyRecord),
}

impl CachedEntry {
    pub fn fingerprint(&self) -> &str {
        match self {
            CachedEntry::InFlight { fingerprint } => fingerprint,
            CachedEntry::Completed(r) => &r.fingerprint,
        }
    }
}

/// The answer to "may I take this key?".
#[derive(Debug)]
pub enum Begin {
    /// The in-flight marker is ours; go on to the database.
    Acquired,
    /// Someone has it, in flight or done.
    Existing(CachedEntry),
    /// The fast path is unavailable; the database decides alone.
    Skipped,
}

#[derive(Clone)]
pub struct IdempotencyCache {
    backend: Backend,
    prefix: String,
    timeout: Duration,
    metrics: Metrics,
    last_warning: Arc<AtomicI64>,
}

impl std::fmt::Debug for IdempotencyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyCache")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Backend {
    /// Connected lazily in the background, so a Redis outage at start-up
    /// does not stop the service.
    Redis(Arc<OnceCell<redis::aio::ConnectionManager>>),
    Local(Arc<Mutex<HashMap<String, (CachedEntry, Instant)>>>),
}

#[derive(Debug, thiserror::Error)]
enum FastPathError {
    #[error("not connected")]
    NotConnected,
    #[error("timed out")]
    Timeout,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl IdempotencyCache {
    /// The in-process cache (no Redis configured).
    pub fn in_process(prefix: &str, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            backend: Backend::Local(Arc::new(Mutex::new(HashMap::new()))),
            prefix: prefix.to_owned(),
            timeout,
            metrics,
            last_warning: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Redis when `REDIS_URL` is set, else in-process.
    ///
    /// The first connection is tried now. A misconfiguration (TLS
    /// verification, wrong ACL user or password, a bad URL) stops the
    /// start with the reason; an outage (refused, timed out) does not: the
    /// fast path stays off, a background task keeps connecting, and the
    /// database decides alone meanwhile.
    pub async fn connect(config: &RedisConfig, metrics: Metrics) -> anyhow::Result<Self> {
        let Some(url) = &config.url else {
            return Ok(Self::in_process(
                &config.key_prefix,
                config.timeout,
                metrics,
            ));
        };
        let redacted = format!("{url:?}");
        let client = redis_client(config)?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(2);
        let cell = Arc::new(OnceCell::new());
        let first = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(manager_config.clone()),
        )
        .await;
        match first {
            Ok(Ok(manager)) => {
                let _ = cell.set(manager);
                tracing::info!(url = %redacted, "redis connected");
            }
            Ok(Err(e)) if is_misconfiguration(&e) => {
                anyhow::bail!("cannot connect to {redacted}: {}", crate::cause::chain(&e))
            }
            first => {
                let reason = match first {
                    Ok(Err(e)) => crate::cause::chain(&e),
                    _ => "no answer within 5s".to_owned(),
                };
                tracing::warn!(url = %redacted, error = %reason, "redis not reachable at start-up; the fast path is off until it answers");
                let target = cell.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match client
                            .get_connection_manager_with_config(manager_config.clone())
                            .await
                        {
                            Ok(manager) => {
                                let _ = target.set(manager);
                                tracing::info!("redis connected");
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(error = %crate::cause::chain(&e), "redis not reachable; retrying in 1s");
                            }
                        }
                    }
                });
            }
        }
        Ok(Self {
            backend: Backend::Redis(cell),
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            metrics,
            last_warning: Arc::new(AtomicI64::new(0)),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Redis(_) => "redis",
            Backend::Local(_) => "in-process",
        }
    }

    /// The Redis key of a scope.
    pub fn key(&self, tenant: &str, scope: &str, key: &str) -> String {
        format!("{}{tenant}:{scope}:{key}", self.prefix)
    }

    /// Whether Redis answers a PING now (readiness).
    pub async fn ping(&self) -> bool {
        match &self.backend {
            Backend::Local(_) => true,
            Backend::Redis(cell) => {
                let Some(conn) = cell.get() else { return false };
                let mut conn = conn.clone();
                matches!(
                    tokio::time::timeout(
                        Duration::from_millis(250),
                        redis::cmd("PING").query_async::<String>(&mut conn)
                    )
                    .await,
                    Ok(Ok(_))
                )
            }
        }
    }

    /// Takes the in-flight marker, or reports who has the key.
    pub async fn begin(&self, key: &str, fingerprint: &str, lock_ttl: Duration) -> Begin {
        let marker = CachedEntry::InFlight {
            fingerprint: fingerprint.to_owned(),
        };
        match &self.backend {
            Backend::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                match map.get(key) {
                    Some((entry, expires)) if *expires > now => Begin::Existing(entry.clone()),
                    _ => {
                        map.insert(key.to_owned(), (marker, now + lock_ttl));
                        Begin::Acquired
                    }
                }
            }
            Backend::Redis(_) => {
                let result = self
                    .redis(|mut c| {
                        let key = key.to_owned();
                        async move {
                            let value = serde_json::to_string(&marker)?;
                            let set: Option<String> = redis::cmd("SET")
                                .arg(&key)
                                .arg(value)
                                .arg("NX")
                                .arg("PX")
                                .arg(u64::try_from(lock_ttl.as_millis()).unwrap_or(u64::MAX))
                                .query_async(&mut c)
                                .await?;
                            if set.is_some() {
                                return Ok(None);
                            }
                            let held: Option<String> = c.get(&key).await?;
                            Ok(match held {
                                Some(v) => Some(serde_json::from_str::<CachedEntry>(&v)?),
                                // Expired between the two calls: let the database decide.
                                None => None,
                            })
                        }
                    })
                    .await;
                match result {
                    Ok(None) => Begin::Acquired,
                    Ok(Some(entry)) => Begin::Existing(entry),
                    Err(()) => Begin::Skipped,
                }
            }
        }
    }

    /// Stores the completed record for the rest of its TTL.
    pub async fn complete(&self, key: &str, record: &IdempotencyRecord) {
        let ttl = (record.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::from_secs(1));
        let entry = CachedEntry::Completed(record.clone());
        match &self.backend {
            Backend::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                // Expired entries go in a sweep every 1024 keys, so the
                // embedded cache stays bounded by the live window.
                if map.len() % 1024 == 1023 {
                    map.retain(|_, (_, expires)| *expires > now);
                }
                map.insert(key.to_owned(), (entry, now + ttl));
            }
            // Off the response path: the answer is committed in Postgres,
            // the truth; until this write lands a retry finds the in-flight
            // marker, asks Postgres and replays what it holds.
            Backend::Redis(_) => {
                let this = self.clone();
                let key = key.to_owned();
                tokio::spawn(async move {
                    let _ = this
                        .redis(|mut c| async move {
                            let value = serde_json::to_string(&entry)?;
                            let _: () = c
                                .pset_ex(
                                    &key,
                                    value,
                                    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                                )
                                .await?;
                            Ok(())
                        })
                        .await;
                });
            }
        }
    }

    /// Drops our in-flight marker after a failure, so a retry is not told
    /// "in flight" for the whole lock TTL. Only an in-flight marker with our
    /// fingerprint is removed.
    pub async fn release(&self, key: &str, fingerprint: &str) {
        match &self.backend {
            Backend::Local(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                if matches!(map.get(key), Some((CachedEntry::InFlight { fingerprint: f }, _)) if f == fingerprint)
                {
                    map.remove(key);
                }
            }
            Backend::Redis(_) => {
                let marker = serde_json::to_string(&CachedEntry::InFlight {
                    fingerprint: fingerprint.to_owned(),
                })
                .unwrap_or_default();
                let _ = self
                    .redis(|mut c| {
                        let key = key.to_owned();
                        async move {
                            let script = redis::Script::new(
                                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
                            );
                            let _: i64 = script.key(&key).arg(marker).invoke_async(&mut c).await?;
                            Ok(())
                        }
                    })
                    .await;
            }
        }
    }

    /// Runs one Redis interaction within the timeout; on any failure counts
    /// it, warns at most once a minute, and returns `Err(())`.
    async fn redis<T, F, Fut>(&self, f: F) -> Result<T, ()>
    where
        F: FnOnce(redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = Result<T, FastPathError>>,
    {
        let Backend::Redis(cell) = &self.backend else {
            return Err(());
        };
        let outcome = match cell.get() {
            None => Err(FastPathError::NotConnected),
            Some(conn) => match tokio::time::timeout(self.timeout, f(conn.clone())).await {
                Ok(r) => r,
                Err(_) => Err(FastPathError::Timeout),
            },
        };
        outcome.map_err(|e| {
            self.metrics.redis_fallback.inc();
            self.metrics
                .idempotency
                .with_label_values(&["redis_fallback"])
                .inc();
            let now = chrono::Utc::now().timestamp();
            let last = self.last_warning.load(Ordering::Relaxed);
            if now - last >= 60
                && self
                    .last_warning
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(error = %e, "redis fast path skipped; the database decides alone (logged once a minute)");
            }
        })
    }
}

/// The Redis client: URL, ACL credentials and TLS from the configuration.
/// `REDIS_USERNAME`/`REDIS_PASSWORD` override the URL's; `REDIS_CA_FILE`
/// and a client certificate need a `rediss://` URL.
fn redis_client(config: &RedisConfig) -> anyhow::Result<redis::Client> {
    use anyhow::Context;
    use redis::IntoConnectionInfo;
    let url = config.url.as_ref().map(|u| u.expose()).unwrap_or_default();
    let mut info = url.into_connection_info().map_err(|e| {
        anyhow::anyhow!("REDIS_URL is not a Redis URL: {}", crate::cause::chain(&e))
    })?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    info = info.set_redis_settings(settings);
    let tls = url.starts_with("rediss://");
    let custom = config.ca_file.is_some() || config.client_cert.is_some();
    if custom && !tls {
        anyhow::bail!("REDIS_CA_FILE or REDIS_CLIENT_CERT is set but REDIS_URL is not rediss://");
    }
    if !custom {
        return redis::Client::open(info)
            .map_err(|e| anyhow::anyhow!("{}", crate::cause::chain(&e)));
    }
    let read = |name: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{name} {}", path.display()))
    };
    let root_cert = config
        .ca_file
        .as_deref()
        .map(|p| read("REDIS_CA_FILE", p))
        .transpose()?;
    let client_tls = match (&config.client_cert, &config.client_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("REDIS_CLIENT_CERT", cert)?,
            client_key: read("REDIS_CLIENT_KEY", key)?,
        }),
        _ => None,
    };
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| anyhow::anyhow!("Redis TLS settings: {}", crate::cause::chain(&e)))
}

/// A failure that retrying cannot fix: wrong credentials or ACL, a client
/// configuration error, or TLS verification. rustls's errors reach us as
/// I/O errors, recognised by their text ("invalid peer certificate", a
/// handshake alert).
fn is_misconfiguration(e: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig
    ) {
        return true;
    }
    if e.code()
        .is_some_and(|c| matches!(c, "WRONGPASS" | "NOAUTH" | "NOPERM"))
    {
        return true;
    }
    let text = crate::cause::chain(e).to_ascii_lowercase();
    [
        "certificate",
        "handshake",
        "tls",
        "wrongpass",
        "noauth",
        "noperm",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_fingerprint() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"to":"+447700900123","from":"Acme","body":"hi"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(
            "{ \"body\" : \"hi\",\n \"from\":\"Acme\", \"to\" : \"+447700900123\" }",
        )
        .unwrap();
        assert_eq!(
            fingerprint("POST", "send", &a),
            fingerprint("POST", "send", &b)
        );
    }

    #[test]
    fn method_route_and_values_change_the_fingerprint() {
        let body = json!({"to": "+447700900123", "from": "Acme", "body": "hi"});
        let base = fingerprint("POST", "send", &body);
        assert_ne!(base, fingerprint("POST", "bulk", &body));
        assert_ne!(base, fingerprint("PUT", "send", &body));
        let other = json!({"to": "+447700900123", "from": "Acme", "body": "hi!"});
        assert_ne!(base, fingerprint("POST", "send", &other));
    }

    #[tokio::test]
    async fn in_process_cache_holds_markers_until_their_ttl() {
        let cache = IdempotencyCache::in_process(
            "orch:submit-idem:",
            Duration::from_millis(10),
            Metrics::new(None, crate::metrics::system_clock()),
        );
        let k = cache.key("acme", "send", "k1");
        assert!(matches!(
            cache.begin(&k, "fp", Duration::from_millis(50)).await,
            Begin::Acquired
        ));
        match cache.begin(&k, "fp2", Duration::from_millis(50)).await {
            Begin::Existing(CachedEntry::InFlight { fingerprint }) => assert_eq!(fingerprint, "fp"),
            other => panic!("expected in-flight, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(
            cache.begin(&k, "fp2", Duration::from_millis(50)).await,
            Begin::Acquired
        ));
        cache.release(&k, "fp2").await;
        assert!(matches!(
            cache.begin(&k, "fp3", Duration::from_millis(50)).await,
            Begin::Acquired
        ));
    }
}
