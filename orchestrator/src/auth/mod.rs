//! Tenant authentication: who is calling, checked again behind Kong.
//!
//! Kong's `jwt` plugin verifies the token at the edge, but it checks only
//! `exp`/`nbf` (no issuer or audience), and it knows nothing of
//! `X-Tenant-Id`. A request that reaches the pod without passing Kong is not
//! checked at all. So the service verifies the same token again (defense in
//! depth) and holds the `X-Tenant-Id` header to the token's tenant claim:
//! one tenant's valid token cannot submit for another tenant.
//!
//! The steps, in the order a request meets them ([`Authenticator::authenticate`]):
//!
//! The credential is checked before the tenant header, as the legacy
//! api-gateway's guard did: a request with neither is `401`, not `400`.
//!
//! 1. `headers`: the credential, exactly one `Authorization: Bearer <JWT>`.
//!    Without `Authorization`, and only if configured, `key_auth` mode takes
//!    the tenant from Kong's `X-Consumer-Custom-ID` instead, vouched for by a
//!    secret header only Kong's request-transformer knows.
//! 2. `jwt`: the token header's `alg` must be RS256, ES256, EdDSA, or HS256
//!    when a secret is configured; its `kid` picks a key from the `jwks`
//!    cache (reloaded on an unknown `kid`, at most once per
//!    `jwks_refresh_min_interval`); the key's type must be the one `alg`
//!    needs.
//! 3. `jwt`: signature, then `exp` (required), `nbf` and `iat` with the
//!    leeway, then `iss` and `aud` when configured.
//! 4. `headers`: `X-Tenant-Id`, sent exactly once, parsed as a
//!    [`TenantId`]. Missing → [`AuthError::TenantHeaderMissing`].
//! 5. The tenant claim must equal `X-Tenant-Id` byte for byte, else
//!    [`AuthError::TenantMismatch`] (403).
//!
//! Every refusal is an [`AuthError`]; its `Display` is client-safe and never
//! includes token contents, and [`AuthError::reason`] is a bounded label for
//! logs and metrics.

mod dev_token;
mod error;
pub(crate) mod headers;
mod jwks;
mod jwt;
mod key_auth;
mod verified_cache;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use http::HeaderMap;

pub use self::dev_token::mint_dev_token;
pub use self::error::AuthError;
use self::jwks::{Jwks, JwksSource};
use self::jwt::{TenantClaim, TokenVerifier};
use self::key_auth::KeyAuth;
use self::verified_cache::VerifiedCache;
use crate::domain::TenantId;

/// The claim that carries the tenant unless configured otherwise.
pub const DEFAULT_TENANT_CLAIM: &str = "tenant_id";
/// Default clock leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Default for [`AuthSettings::jwks_refresh_min_interval`].
pub const DEFAULT_JWKS_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// How to authenticate tenants; filled from flags and environment.
///
/// At least one of `jwks_file`, `jwks_url`, `hs256_secret` or `key_auth` must
/// be set; `jwks_file` and `jwks_url` exclude each other.
#[derive(Clone)]
pub struct AuthSettings {
    /// A JWKS document on disk (for example synced from the identity
    /// provider, or the keys Kong's jwt credentials use).
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL, `https://` (system roots plus `jwks_ca_file`) or
    /// `http://`.
    pub jwks_url: Option<String>,
    /// PEM roots trusted for an https `jwks_url` besides the system's.
    pub jwks_ca_file: Option<PathBuf>,
    /// Enables HS256 with this secret (at least 32 bytes). Unset, HS256
    /// tokens are refused.
    pub hs256_secret: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// Clock leeway for `exp`, `nbf` and `iat`; at most 5 minutes.
    pub leeway: Duration,
    /// The claim that carries the tenant: a custom claim, or `sub`.
    pub tenant_claim: String,
    /// Opt-in Kong key-auth mode.
    pub key_auth: Option<KeyAuthSettings>,
    /// On an unknown `kid`, the JWKS is reloaded at most once per this
    /// interval.
    pub jwks_refresh_min_interval: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            jwks_file: None,
            jwks_url: None,
            jwks_ca_file: None,
            hs256_secret: None,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            tenant_claim: DEFAULT_TENANT_CLAIM.to_owned(),
            key_auth: None,
            jwks_refresh_min_interval: DEFAULT_JWKS_REFRESH_MIN_INTERVAL,
        }
    }
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.jwks_url.as_deref().map(|url| {
            reqwest::Url::parse(url)
                .map_or_else(|_| "<unparsable>".to_owned(), |u| jwks::redact_url(&u))
        });
        f.debug_struct("AuthSettings")
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &url)
            .field("jwks_ca_file", &self.jwks_ca_file)
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("tenant_claim", &self.tenant_claim)
            .field("key_auth", &self.key_auth)
            .field("jwks_refresh_min_interval", &self.jwks_refresh_min_interval)
            .finish()
    }
}

/// Kong key-auth mode: which header carries Kong's secret, and the secret.
#[derive(Clone)]
pub struct KeyAuthSettings {
    /// For example `X-Kong-Upstream-Secret`.
    pub secret_header: String,
    /// What Kong's request-transformer puts in it (at least 16 bytes).
    pub secret: String,
}

impl fmt::Debug for KeyAuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAuthSettings")
            .field("secret_header", &self.secret_header)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A bearer JWT, verified here.
    Jwt,
    /// Kong's key-auth consumer, vouched for by Kong's shared secret.
    KongKeyAuth,
}

impl AuthMethod {
    /// A bounded label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::KongKeyAuth => "kong_key_auth",
        }
    }
}

/// Kong's consumer headers as received, for audit logs. In JWT mode nothing
/// is decided on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KongConsumer {
    /// `X-Consumer-ID`: the consumer's UUID.
    pub id: Option<String>,
    /// `X-Consumer-Username`.
    pub username: Option<String>,
    /// `X-Consumer-Custom-ID`.
    pub custom_id: Option<String>,
    /// `X-Credential-Identifier`: the jwt secret's `key` (jwt plugin) or the
    /// key-auth credential's id.
    pub credential_identifier: Option<String>,
    /// `X-Anonymous-Consumer: true`: Kong let the request through as its
    /// anonymous consumer.
    pub anonymous: bool,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant: `X-Tenant-Id`, proven equal to the credential's tenant.
    pub tenant: TenantId,
    /// The token's `sub`, if any (none in key-auth mode).
    pub subject: Option<String>,
    pub method: AuthMethod,
    pub consumer: KongConsumer,
}

/// Authenticates requests; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    verifier: TokenVerifier,
    key_auth: Option<KeyAuth>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("verifier", &self.inner.verifier)
            .field("key_auth", &self.inner.key_auth)
            .finish()
    }
}

impl Authenticator {
    /// Checks the settings and loads the JWKS. Fails when the settings are
    /// inconsistent, a secret is too short, or the JWKS cannot be read or has
    /// no usable key: better not to start than to refuse every request.
    pub async fn new(settings: AuthSettings) -> anyhow::Result<Self> {
        let source = match (&settings.jwks_file, &settings.jwks_url) {
            (Some(_), Some(_)) => bail!("set jwks_file or jwks_url, not both"),
            (Some(path), None) => Some(JwksSource::File(path.clone())),
            (None, Some(url)) => Some(JwksSource::url(url, settings.jwks_ca_file.as_deref())?),
            (None, None) => None,
        };
        if source.is_none() && settings.hs256_secret.is_none() && settings.key_auth.is_none() {
            bail!("no way to authenticate: set jwks_file, jwks_url, hs256_secret or key_auth");
        }
        let hs256 = settings
            .hs256_secret
            .as_deref()
            .map(jwt::hs256_key)
            .transpose()?;
        let options = jwt::verification_options(
            settings.leeway,
            settings.issuer.as_deref(),
            settings.audience.as_deref(),
        )?;
        let tenant_claim = TenantClaim::new(&settings.tenant_claim)?;
        let key_auth = settings.key_auth.as_ref().map(KeyAuth::new).transpose()?;
        let jwks = match source {
            Some(source) => Some(
                Jwks::load(source, settings.jwks_refresh_min_interval)
                    .await
                    .context("loading the JWKS")?,
            ),
            None => None,
        };
        Ok(Authenticator {
            inner: Arc::new(Inner {
                verifier: TokenVerifier {
                    jwks,
                    hs256,
                    options,
                    tenant_claim,
                    verified: VerifiedCache::default(),
                },
                key_auth,
            }),
        })
    }

    /// Authenticates a request from its headers; see the module docs for the
    /// steps.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let consumer = headers::kong_consumer(headers);
        let Some(token) = headers::bearer_token(headers)? else {
            let Some(key_auth) = &self.inner.key_auth else {
                return Err(AuthError::MissingToken);
            };
            let consumer_tenant = key_auth.consumer_tenant(headers)?;
            let tenant = headers::tenant(headers)?;
            if consumer_tenant != tenant.as_str() {
                return Err(AuthError::TenantMismatch);
            }
            return Ok(Principal {
                tenant,
                subject: None,
                method: AuthMethod::KongKeyAuth,
                consumer,
            });
        };
        let verified = self.inner.verifier.verify(token).await?;
        let tenant = headers::tenant(headers)?;
        if verified.tenant != tenant.as_str() {
            return Err(AuthError::TenantMismatch);
        }
        Ok(Principal {
            tenant,
            subject: verified.subject,
            method: AuthMethod::Jwt,
            consumer,
        })
    }

    /// Reloads the JWKS now, ignoring the rate limit; a no-op without one.
    ///
    /// A key removed from the set stays trusted until the next reload, and
    /// reloads otherwise happen only when a token names an unknown `kid`. Run
    /// this on a timer (every few minutes) so that a withdrawn key stops
    /// verifying even if no new key appears. On failure the cached keys stay.
    pub async fn refresh_jwks(&self) -> anyhow::Result<()> {
        match &self.inner.verifier.jwks {
            Some(jwks) => jwks.reload().await,
            None => Ok(()),
        }
    }
}
