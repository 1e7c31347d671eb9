//! The token verification keys: a JSON Web Key Set (RFC 7517 §5) read from a
//! file or an `https://` (or `http://`) URL, cached by `kid`, refreshed when
//! a token names a key we do not have.
//!
//! An https JWKS is verified against the system's roots (the platform
//! verifier) plus, when set, the roots of `JWT_JWKS_CA_FILE` (an identity
//! provider behind a private CA). TLS is the process's one rustls stack
//! with the ring provider.
//!
//! Each key is imported with jwt-simple's strict JWK importers
//! (`RS256PublicKey::from_jwk`, `ES256PublicKey::from_jwk`,
//! `Ed25519PublicKey::from_jwk`). They decode RSA `n`/`e`, the P-256 `x`/`y`
//! point and the Ed25519 `x` in canonical base64url only, refuse any private
//! member, RSA moduli under 2048 bits and exponents other than 65537, and
//! refuse a key whose own `alg`, `use` or `key_ops` says it is for something
//! else. So the key's type fixes the one algorithm it verifies.
//!
//! A key that does not import is skipped with a warning rather than failing
//! the set: an identity provider may publish encryption keys or algorithms we
//! do not use next to the ones we need.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use jwt_simple::prelude::{ES256PublicKey, Ed25519PublicKey, RS256PublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

/// Largest JWKS document accepted. Real sets are a few kilobytes.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Time allowed for fetching a JWKS URL. A refresh holds up only requests
/// whose `kid` is unknown, but those wait for it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The JWK members passed on to the importer: the ones it checks, private
/// members included so that a leaked private key is refused rather than
/// silently used as a public one. Others (`x5c`, `x5t`, …) are dropped; a
/// certificate chain could push a key past jwt-simple's 8 KiB JWK limit.
const JWK_MEMBERS: &[&str] = &[
    "kty", "crv", "alg", "use", "key_ops", "kid", "n", "e", "x", "y", "d", "p", "q", "dp", "dq",
    "qi", "oth", "k",
];

/// A verification key; the variant is the only algorithm it verifies.
#[derive(Clone)]
pub(crate) enum VerifyingKey {
    /// Boxed: an RSA key is several times the size of the others.
    Rs256(Box<RS256PublicKey>),
    Es256(ES256PublicKey),
    Ed25519(Ed25519PublicKey),
}

impl VerifyingKey {
    fn kind(&self) -> &'static str {
        match self {
            VerifyingKey::Rs256(_) => "RS256",
            VerifyingKey::Es256(_) => "ES256",
            VerifyingKey::Ed25519(_) => "EdDSA",
        }
    }
}

/// The keys of one JWKS document, by `kid`.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, VerifyingKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<(&str, &str)> = self
            .by_kid
            .iter()
            .map(|(kid, key)| (kid.as_str(), key.kind()))
            .collect();
        kids.sort_unstable();
        f.debug_map().entries(kids).finish()
    }
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Value>,
}

impl KeySet {
    /// Parses a JWKS document. Fails only when the document itself is not a
    /// JWKS; unusable keys are skipped and logged.
    pub(crate) fn parse(document: &[u8]) -> anyhow::Result<Self> {
        ensure!(
            document.len() <= MAX_JWKS_BYTES,
            "JWKS larger than {MAX_JWKS_BYTES} bytes"
        );
        let document: Document =
            serde_json::from_slice(document).context("not a JWKS document ({\"keys\": [...]})")?;
        let mut set = KeySet::default();
        for (index, jwk) in document.keys.iter().enumerate() {
            match import(jwk) {
                Ok(Some((kid, key))) => match set.by_kid.entry(kid) {
                    Entry::Occupied(first) => {
                        tracing::warn!(
                            kid = first.key(),
                            "JWKS: duplicate kid, keeping the first key"
                        );
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(key);
                    }
                },
                Ok(None) => {}
                Err(err) => tracing::warn!(index, error = %err, "JWKS: key skipped"),
            }
        }
        Ok(set)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.by_kid.get(kid)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }
}

/// Imports one JWK. `Ok(None)` is a key we never use (encryption keys, other
/// curves); an error is a key that looks like ours but is not acceptable.
fn import(jwk: &Value) -> anyhow::Result<Option<(String, VerifyingKey)>> {
    let jwk = jwk
        .as_object()
        .ok_or_else(|| anyhow!("not a JSON object"))?;
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if text("use") == Some("enc") {
        return Ok(None);
    }
    let kid = text("kid").ok_or_else(|| anyhow!("no kid; tokens pick keys by kid"))?;
    let pruned: Map<String, Value> = jwk
        .iter()
        .filter(|(name, _)| JWK_MEMBERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let pruned = Value::Object(pruned).to_string();
    let refused = |err: anyhow::Error| anyhow!("kid {kid:?}: {err}");
    let key = match (text("kty"), text("crv")) {
        (Some("RSA"), _) => VerifyingKey::Rs256(Box::new(
            RS256PublicKey::from_jwk(&pruned).map_err(refused)?,
        )),
        (Some("EC"), Some("P-256")) => {
            VerifyingKey::Es256(ES256PublicKey::from_jwk(&pruned).map_err(refused)?)
        }
        (Some("OKP"), Some("Ed25519")) => {
            VerifyingKey::Ed25519(Ed25519PublicKey::from_jwk(&pruned).map_err(refused)?)
        }
        (kty, crv) => {
            tracing::debug!(kid, ?kty, ?crv, "JWKS: key type not used, skipped");
            return Ok(None);
        }
    };
    Ok(Some((kid.to_owned(), key)))
}

/// Where the JWKS comes from.
pub(crate) enum JwksSource {
    File(PathBuf),
    Url {
        url: reqwest::Url,
        client: reqwest::Client,
    },
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(path) => f.debug_tuple("File").field(path).finish(),
            JwksSource::Url { url, .. } => f.debug_tuple("Url").field(&redact_url(url)).finish(),
        }
    }
}

/// A URL without credentials or query, safe for logs.
pub(crate) fn redact_url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

impl JwksSource {
    /// A URL source: `https://` (system roots plus the PEM roots in
    /// `ca_file`, when given) or `http://` (an in-cluster endpoint).
    pub(crate) fn url(url: &str, ca_file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).context("jwks_url is not a URL")?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => bail!("jwks_url scheme {other:?} is not supported (https or http)"),
        }
        // The workspace builds reqwest's rustls without a provider of its
        // own; ring is the process's one (main installs it too).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("JWT_JWKS_CA_FILE {}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!(
                    "JWT_JWKS_CA_FILE {} holds no PEM certificate",
                    path.display()
                )
            })?;
            ensure!(
                !roots.is_empty(),
                "JWT_JWKS_CA_FILE {} holds no PEM certificate",
                path.display()
            );
            builder = builder.tls_certs_merge(roots);
        }
        let client = builder.build().context("building the JWKS HTTP client")?;
        Ok(JwksSource::Url {
            url: parsed,
            client,
        })
    }

    async fn fetch(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            JwksSource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .with_context(|| format!("reading JWKS file {}", path.display()))?;
                Ok(bytes)
            }
            JwksSource::Url { url, client } => {
                let redacted = redact_url(url);
                let response = client
                    .get(url.clone())
                    .header(http::header::ACCEPT, "application/json")
                    .send()
                    .await
                    .map_err(|e| anyhow!("fetching JWKS {redacted}: {}", error_chain(&e)))?
                    .error_for_status()
                    .with_context(|| format!("fetching JWKS {redacted}"))?;
                if response
                    .content_length()
                    .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
                {
                    bail!("JWKS {redacted} larger than {MAX_JWKS_BYTES} bytes");
                }
                let body = response
                    .bytes()
                    .await
                    .with_context(|| format!("reading JWKS {redacted}"))?;
                Ok(body.to_vec())
            }
        }
    }
}

/// An HTTP client error with its causes, the URL left out (it is logged
/// redacted): a TLS failure reads `… invalid peer certificate: UnknownIssuer`.
fn error_chain(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut parts = vec![kind.to_owned()];
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// The cached key set and its refresh policy.
#[derive(Debug)]
pub(crate) struct Jwks {
    source: JwksSource,
    /// A std lock, not tokio's: it is never held across an await, only for
    /// an `Arc` clone or swap, so readers never wait on a fetch.
    keys: RwLock<Arc<KeySet>>,
    /// When the last reload was attempted. A tokio mutex because it is held
    /// across the fetch: concurrent requests with the same new `kid` wait for
    /// one reload instead of each starting their own.
    last_reload: tokio::sync::Mutex<Instant>,
    min_interval: Duration,
    /// Bumped on every reload; cached verifications from older sets miss.
    generation: std::sync::atomic::AtomicU64,
}

impl Jwks {
    /// Loads the set once; fails if it cannot be read or has no usable key.
    pub(crate) async fn load(source: JwksSource, min_interval: Duration) -> anyhow::Result<Self> {
        let keys = Self::read(&source).await?;
        tracing::info!(source = ?source, keys = ?keys, "JWKS loaded");
        Ok(Jwks {
            source,
            keys: RwLock::new(Arc::new(keys)),
            last_reload: tokio::sync::Mutex::new(Instant::now()),
            min_interval,
            generation: std::sync::atomic::AtomicU64::new(1),
        })
    }

    async fn read(source: &JwksSource) -> anyhow::Result<KeySet> {
        let keys = KeySet::parse(&source.fetch().await?)?;
        ensure!(
            !keys.is_empty(),
            "JWKS from {source:?} has no usable RS256, ES256 or EdDSA key with a kid"
        );
        Ok(keys)
    }

    /// Which key set is current; changes on every reload.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads the source now, whatever the rate limit. On failure the
    /// cached keys stay in use.
    pub(crate) async fn reload(&self) -> anyhow::Result<()> {
        let mut last = self.last_reload.lock().await;
        self.reload_locked(&mut last).await
    }

    async fn reload_locked(&self, last: &mut Instant) -> anyhow::Result<()> {
        *last = Instant::now();
        let keys = Self::read(&self.source).await?;
        tracing::info!(source = ?self.source, keys = ?keys, "JWKS reloaded");
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// The key set, if it has `kid`: the cached one, or one reloaded now if
    /// the last reload is at least `min_interval` old. A token signed by a
    /// key the identity provider just added therefore verifies at once, while
    /// a flood of made-up `kid`s costs at most one reload per interval.
    pub(crate) async fn key_set_with(&self, kid: &str) -> Option<Arc<KeySet>> {
        let keys = self.current();
        if keys.get(kid).is_some() {
            return Some(keys);
        }
        let mut last = self.last_reload.lock().await;
        // Another request may have reloaded while this one waited.
        let keys = self.current();
        if keys.get(kid).is_some() {
            return Some(keys);
        }
        if last.elapsed() < self.min_interval {
            return None;
        }
        if let Err(err) = self.reload_locked(&mut last).await {
            tracing::warn!(error = %format!("{err:#}"), "JWKS reload failed; keeping the cached keys");
        }
        let keys = self.current();
        keys.get(kid).is_some().then_some(keys)
    }
}

#[cfg(test)]
mod tests {
    use jwt_simple::prelude::*;
    use serde_json::json;

    use super::*;

    fn jwk(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    fn document(keys: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn loads_several_key_types_by_kid() {
        let es = ES256KeyPair::generate().with_key_id("es-1");
        let ed = Ed25519KeyPair::generate().with_key_id("ed-1");
        let set = KeySet::parse(&document(vec![
            jwk(&es.public_key().to_jwk()),
            jwk(&ed.public_key().to_jwk()),
        ]))
        .unwrap();
        assert_eq!(set.by_kid.len(), 2);
        assert!(matches!(set.get("es-1"), Some(VerifyingKey::Es256(_))));
        assert!(matches!(set.get("ed-1"), Some(VerifyingKey::Ed25519(_))));
    }

    #[test]
    fn a_key_without_alg_loads_and_certificates_are_ignored() {
        let es = ES256KeyPair::generate().with_key_id("es-1");
        let mut key = jwk(&es.public_key().to_jwk());
        key.as_object_mut().unwrap().remove("alg");
        key["x5c"] = json!(["A".repeat(12_000)]);
        let set = KeySet::parse(&document(vec![key])).unwrap();
        assert!(matches!(set.get("es-1"), Some(VerifyingKey::Es256(_))));
    }

    #[test]
    fn a_key_whose_alg_disagrees_with_its_type_is_skipped() {
        let es = ES256KeyPair::generate().with_key_id("es-1");
        for alg in ["RS256", "HS256", "ES384", "none"] {
            let mut key = jwk(&es.public_key().to_jwk());
            key["alg"] = json!(alg);
            let set = KeySet::parse(&document(vec![key])).unwrap();
            assert_eq!(set.by_kid.len(), 0, "alg {alg}");
        }
    }

    #[test]
    fn private_keys_encryption_keys_and_keys_without_kid_are_skipped() {
        let es = ES256KeyPair::generate().with_key_id("private");
        let mut encryption = jwk(&ES256KeyPair::generate().public_key().to_jwk());
        encryption["kid"] = json!("enc-1");
        encryption["use"] = json!("enc");
        let no_kid = jwk(&ES256KeyPair::generate().public_key().to_jwk());
        let symmetric = json!({"kty": "oct", "kid": "oct-1", "k": "c2VjcmV0c2VjcmV0c2VjcmV0"});
        let set = KeySet::parse(&document(vec![
            jwk(&es.to_jwk()),
            encryption,
            no_kid,
            symmetric,
        ]))
        .unwrap();
        assert_eq!(set.by_kid.len(), 0, "{set:?}");
    }

    #[test]
    fn duplicate_kid_keeps_the_first_key() {
        let first = ES256KeyPair::generate().with_key_id("same");
        let second = Ed25519KeyPair::generate().with_key_id("same");
        let set = KeySet::parse(&document(vec![
            jwk(&first.public_key().to_jwk()),
            jwk(&second.public_key().to_jwk()),
        ]))
        .unwrap();
        assert!(matches!(set.get("same"), Some(VerifyingKey::Es256(_))));
    }

    #[test]
    fn a_document_that_is_not_a_jwks_is_an_error() {
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(b"{\"kty\":\"EC\"}").is_err());
        assert!(KeySet::parse(&vec![b' '; MAX_JWKS_BYTES + 1]).is_err());
    }

    #[test]
    fn url_source_accepts_https_and_http_only_and_never_shows_credentials() {
        assert!(JwksSource::url("http://idp.internal/jwks.json", None).is_ok());
        let source = JwksSource::url("https://user:pw@idp.example/jwks?token=x", None).unwrap();
        let shown = format!("{source:?}");
        assert!(
            !shown.contains("pw") && !shown.contains("token=x"),
            "{shown}"
        );
        assert!(JwksSource::url("file:///etc/jwks.json", None).is_err());
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let err = JwksSource::url("https://idp.example/jwks", Some(&not_pem)).unwrap_err();
        assert!(format!("{err:#}").contains("JWT_JWKS_CA_FILE"), "{err:#}");
    }
}
