//! Verifying the bearer token: algorithm allowlist, key by `kid`, signature,
//! time claims, issuer and audience, then reading the tenant claim.
//!
//! The token's header is unsigned, so it only *selects*: `alg` must be on the
//! allowlist and `kid` names a key; the key's own type then decides how the
//! signature is checked. An RSA key verifies only RS256, a P-256 key only
//! ES256, an Ed25519 key only EdDSA, and the HS256 secret only HS256. That
//! makes `alg: none` and the classic confusion (HS256 "signed" with the RSA
//! public key as the HMAC secret) impossible rather than merely checked for.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use anyhow::{bail, ensure};
use jwt_simple::JWTError;
use jwt_simple::prelude::{
    ECDSAP256PublicKeyLike, EdDSAPublicKeyLike, HS256Key, JWTClaims, MACLike, RSAPublicKeyLike,
    Token, VerificationOptions,
};
use serde_json::{Map, Value};

use super::error::{AuthError, invalid, why};
use super::jwks::{Jwks, VerifyingKey};
use super::verified_cache::{Entry, VerifiedCache, digest};

/// Registered claims plus everything else, where the tenant claim lives.
pub(crate) type Claims = JWTClaims<Map<String, Value>>;

/// Longest token accepted. Kong and most proxies cap a header line near
/// 8 KiB anyway; jwt-simple's own default is 1 MB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash.
pub(crate) const MIN_HS256_SECRET_BYTES: usize = 32;

/// Clock leeway above this is refused: RFC 7519 §4.1.4 allows "no more than
/// a few minutes", and a larger value is more likely a unit mistake.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Claims read from the token's registered fields, not from the custom map;
/// only `sub` of them can carry a tenant.
const REGISTERED_CLAIMS: &[&str] = &["iss", "aud", "exp", "nbf", "iat", "jti", "nonce"];

/// The algorithms a token may name, each bound to one key type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    Rs256,
    Es256,
    /// `EdDSA`, or its RFC 9864 fully specified name `Ed25519`; Ed25519 keys
    /// only (never Ed448).
    EdDsa,
    Hs256,
}

impl Algorithm {
    fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            "EdDSA" | "Ed25519" => Some(Algorithm::EdDsa),
            "HS256" => Some(Algorithm::Hs256),
            _ => None,
        }
    }
}

/// Where the tenant is in the claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TenantClaim {
    Subject,
    Custom(String),
}

impl TenantClaim {
    pub(crate) fn new(name: &str) -> anyhow::Result<Self> {
        ensure!(!name.is_empty(), "tenant_claim is empty");
        if name == "sub" {
            return Ok(TenantClaim::Subject);
        }
        if REGISTERED_CLAIMS.contains(&name) {
            bail!("tenant_claim {name:?} is a registered claim that cannot carry a tenant");
        }
        Ok(TenantClaim::Custom(name.to_owned()))
    }

    fn read<'c>(&self, claims: &'c Claims) -> Option<&'c str> {
        match self {
            TenantClaim::Subject => claims.subject.as_deref(),
            TenantClaim::Custom(name) => claims.custom.get(name).and_then(Value::as_str),
        }
    }
}

/// What a verified token says about its caller.
#[derive(Debug)]
pub(crate) struct VerifiedToken {
    pub(crate) tenant: String,
    pub(crate) subject: Option<String>,
}

/// Builds the HS256 key, refusing secrets too short to be one.
pub(crate) fn hs256_key(secret: &str) -> anyhow::Result<HS256Key> {
    ensure!(
        secret.len() >= MIN_HS256_SECRET_BYTES,
        "the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes"
    );
    Ok(HS256Key::from_bytes(secret.as_bytes()))
}

/// Verification options shared by every token.
pub(crate) fn verification_options(
    leeway: Duration,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> anyhow::Result<VerificationOptions> {
    ensure!(
        leeway <= MAX_LEEWAY,
        "leeway {leeway:?} is more than {MAX_LEEWAY:?}"
    );
    let one = |value: &str| HashSet::from([value.to_owned()]);
    Ok(VerificationOptions {
        time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(leeway.as_secs())),
        allowed_issuers: issuer.map(one),
        allowed_audiences: audience.map(one),
        max_token_length: Some(MAX_TOKEN_BYTES),
        ..VerificationOptions::default()
    })
}

/// Everything needed to verify a token.
pub(crate) struct TokenVerifier {
    pub(crate) jwks: Option<Jwks>,
    pub(crate) hs256: Option<HS256Key>,
    pub(crate) options: VerificationOptions,
    pub(crate) tenant_claim: TenantClaim,
    pub(crate) verified: VerifiedCache,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("jwks", &self.jwks)
            .field("hs256", &self.hs256.as_ref().map(|_| "<redacted>"))
            .field("allowed_issuers", &self.options.allowed_issuers)
            .field("allowed_audiences", &self.options.allowed_audiences)
            .field("leeway", &self.options.time_tolerance)
            .field("tenant_claim", &self.tenant_claim)
            .finish()
    }
}

impl TokenVerifier {
    /// Verifies `token` and reads its tenant claim; a token that verified
    /// before is answered from [`VerifiedCache`] after its time and key
    /// checks are redone.
    pub(crate) async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(why::MALFORMED));
        }
        let key = digest(token);
        let generation = self.jwks.as_ref().map_or(0, Jwks::generation);
        let now = jwt_simple::prelude::Clock::now_since_epoch().as_secs();
        let leeway = self.options.time_tolerance.map_or(0, |d| d.as_secs());
        if let Some(hit) = self.verified.get(&key, now, leeway, generation) {
            return Ok(VerifiedToken {
                tenant: hit.tenant,
                subject: hit.subject,
            });
        }
        let verified = self.verify_uncached(token).await?;
        self.verified.insert(
            key,
            Entry {
                tenant: verified.0.tenant.clone(),
                subject: verified.0.subject.clone(),
                expires_at: verified.1,
                not_before: verified.2,
                generation,
            },
        );
        Ok(verified.0)
    }

    /// The full check; also returns `exp` and `nbf` (seconds) for the cache.
    async fn verify_uncached(
        &self,
        token: &str,
    ) -> Result<(VerifiedToken, u64, Option<u64>), AuthError> {
        let metadata = Token::decode_metadata(token).map_err(|_| invalid(why::MALFORMED))?;
        let algorithm =
            Algorithm::from_header(metadata.algorithm()).ok_or(invalid(why::ALG_NOT_ALLOWED))?;
        let options = Some(self.options.clone());
        let claims: Claims = match algorithm {
            Algorithm::Hs256 => {
                let key = self.hs256.as_ref().ok_or(invalid(why::ALG_NOT_ALLOWED))?;
                key.verify_token(token, options).map_err(rejection)?
            }
            Algorithm::Rs256 | Algorithm::Es256 | Algorithm::EdDsa => {
                let jwks = self.jwks.as_ref().ok_or(invalid(why::ALG_NOT_ALLOWED))?;
                let kid = metadata.key_id().ok_or(invalid(why::MISSING_KID))?;
                let keys = jwks
                    .key_set_with(kid)
                    .await
                    .ok_or(invalid(why::UNKNOWN_KID))?;
                let key = keys.get(kid).ok_or(invalid(why::UNKNOWN_KID))?;
                verify_with(key, algorithm, token, options)?
            }
        };
        // jwt-simple checks `exp` only when present; a token that never
        // expires is not one we accept.
        let Some(expires_at) = claims.expires_at else {
            return Err(invalid(why::MISSING_EXP));
        };
        let tenant = self
            .tenant_claim
            .read(&claims)
            .ok_or(invalid(why::TENANT_CLAIM_MISSING))?
            .to_owned();
        Ok((
            VerifiedToken {
                tenant,
                subject: claims.subject,
            },
            expires_at.as_secs(),
            claims.invalid_before.map(|t| t.as_secs()),
        ))
    }
}

/// Verifies with `key`, only if `key` is the type `algorithm` needs. Each
/// jwt-simple key type also re-checks the header's `alg` against its own.
fn verify_with(
    key: &VerifyingKey,
    algorithm: Algorithm,
    token: &str,
    options: Option<VerificationOptions>,
) -> Result<Claims, AuthError> {
    let verified = match (key, algorithm) {
        (VerifyingKey::Rs256(key), Algorithm::Rs256) => key.verify_token(token, options),
        (VerifyingKey::Es256(key), Algorithm::Es256) => key.verify_token(token, options),
        (VerifyingKey::Ed25519(key), Algorithm::EdDsa) => key.verify_token(token, options),
        _ => return Err(invalid(why::ALG_KEY_MISMATCH)),
    };
    verified.map_err(rejection)
}

/// Maps jwt-simple's error to our reason; what is not a recognised check
/// failing (bad base64, bad JSON, unknown `crit`, wrong `typ`) is malformed.
fn rejection(err: jwt_simple::Error) -> AuthError {
    let reason = match err.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => why::BAD_SIGNATURE,
        Some(JWTError::TokenHasExpired) => why::EXPIRED,
        Some(JWTError::TokenNotValidYet) => why::NOT_YET_VALID,
        Some(JWTError::ClockDrift) => why::ISSUED_IN_FUTURE,
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
            why::WRONG_ISSUER
        }
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
            why::WRONG_AUDIENCE
        }
        Some(JWTError::AlgorithmMismatch) => why::ALG_KEY_MISMATCH,
        _ => why::MALFORMED,
    };
    invalid(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_algorithms_are_allowed() {
        for alg in [
            "none", "None", "NONE", "HS384", "HS512", "RS384", "RS512", "PS256", "ES384", "ES256K",
            "Ed448", "rs256", "",
        ] {
            assert_eq!(Algorithm::from_header(alg), None, "{alg}");
        }
        assert_eq!(Algorithm::from_header("Ed25519"), Some(Algorithm::EdDsa));
    }

    #[test]
    fn tenant_claim_may_be_sub_or_a_custom_claim_but_not_another_registered_one() {
        assert_eq!(TenantClaim::new("sub").unwrap(), TenantClaim::Subject);
        assert_eq!(
            TenantClaim::new("https://example.com/tenant").unwrap(),
            TenantClaim::Custom("https://example.com/tenant".to_owned())
        );
        for name in ["", "iss", "aud", "exp"] {
            assert!(TenantClaim::new(name).is_err(), "{name}");
        }
    }

    #[test]
    fn short_hs256_secrets_and_large_leeways_are_refused() {
        assert!(hs256_key("short").is_err());
        assert!(hs256_key(&"s".repeat(32)).is_ok());
        assert!(verification_options(Duration::from_secs(301), None, None).is_err());
    }
}
