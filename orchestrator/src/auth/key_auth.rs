//! Kong key-auth mode: the tenant comes from Kong's `X-Consumer-Custom-ID`,
//! vouched for by a secret only Kong knows.
//!
//! With Kong's `key-auth` plugin there is no token to verify again: the API
//! key stays in Kong, and the service only sees the consumer headers Kong
//! sets. Those are plain headers. A request that reaches the pod without
//! passing Kong (a misrouted ingress, a port-forward, another workload in the
//! cluster calling the pod directly) can set `X-Consumer-Custom-ID: victim`
//! itself. So the headers count only when the request also carries the
//! shared secret that Kong's `request-transformer` adds; a caller that
//! bypasses Kong does not know it.
//!
//! Kong side: on the key-auth route, set `hide_credentials: true` (the API key
//! need not reach us) and configure `request-transformer` with
//! `remove.headers: [<secret header>]` and `add.headers: [<secret
//! header>:<secret>]`; `add` alone keeps a client-sent value.
//!
//! The mode is opt-in and applies only to requests with no `Authorization`
//! header; any request with one is verified as a JWT.

use std::fmt;

use anyhow::{Context, ensure};
use http::header::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::KeyAuthSettings;
use super::error::{AuthError, invalid, why};
use super::headers::{self, CONSUMER_CUSTOM_ID};

/// Shortest secret accepted; it stands in for a signature.
const MIN_SECRET_BYTES: usize = 16;

/// The configured secret header and a digest of the secret.
pub(crate) struct KeyAuth {
    header: HeaderName,
    /// Comparing SHA-256 digests with a constant-time equality makes the
    /// comparison independent of where the two strings first differ and of
    /// the secret's length.
    secret_digest: [u8; 32],
}

impl fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAuth")
            .field("header", &self.header)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl KeyAuth {
    pub(crate) fn new(settings: &KeyAuthSettings) -> anyhow::Result<Self> {
        let header = HeaderName::try_from(settings.secret_header.as_str())
            .context("key_auth.secret_header is not a header name")?;
        ensure!(
            settings.secret.len() >= MIN_SECRET_BYTES,
            "key_auth.secret must be at least {MIN_SECRET_BYTES} bytes"
        );
        Ok(KeyAuth {
            header,
            secret_digest: Sha256::digest(settings.secret.as_bytes()).into(),
        })
    }

    /// The tenant Kong authenticated, from `X-Consumer-Custom-ID`, once the
    /// secret header proves the request came through Kong.
    pub(crate) fn consumer_tenant(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        let presented = headers::single(headers, &self.header).unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if !bool::from(digest.ct_eq(&self.secret_digest)) {
            return Err(invalid(why::KEY_AUTH_SECRET));
        }
        let consumer = headers::kong_consumer(headers);
        // Kong's anonymous consumer means key-auth let the request through
        // without a key.
        if consumer.anonymous {
            return Err(invalid(why::KEY_AUTH_CONSUMER));
        }
        headers::single(headers, &CONSUMER_CUSTOM_ID).ok_or(invalid(why::KEY_AUTH_CONSUMER))
    }
}
