//! Why a request was refused, in a form the HTTP layer can map and count.

/// Declares the `InvalidToken` reasons once: a constant per reason (what the
/// code raises), its metric label (`invalid_token_<reason>`) and, for tests,
/// the full list. One list keeps the label set closed: a reason that is not
/// declared here cannot get its own label.
macro_rules! invalid_token_reasons {
    ($($(#[$doc:meta])* $name:ident = $reason:literal,)*) => {
        /// The internal reasons carried by [`AuthError::InvalidToken`].
        pub(crate) mod why {
            $($(#[$doc])* pub(crate) const $name: &str = $reason;)*
        }

        fn invalid_token_label(reason: &str) -> &'static str {
            match reason {
                $($reason => concat!("invalid_token_", $reason),)*
                _ => "invalid_token_other",
            }
        }

        #[cfg(test)]
        pub(crate) const ALL_INVALID_TOKEN_REASONS: &[&str] = &[$($reason),*];
    };
}

invalid_token_reasons! {
    /// `Authorization` is not visible ASCII, or `Bearer` has no token.
    MALFORMED_AUTHORIZATION = "malformed_authorization",
    /// `Authorization` uses another scheme (Basic, Digest, …).
    NOT_BEARER = "not_bearer",
    /// More than one `Authorization` header (token smuggling).
    DUPLICATE_AUTHORIZATION = "duplicate_authorization",
    /// Not a compact JWS, or its header or claims do not decode.
    MALFORMED = "malformed",
    /// `alg` is not RS256, ES256, EdDSA, or HS256 with a secret configured.
    ALG_NOT_ALLOWED = "alg_not_allowed",
    /// An asymmetric token without `kid`.
    MISSING_KID = "missing_kid",
    /// `kid` is not in the JWKS, even after a refresh.
    UNKNOWN_KID = "unknown_kid",
    /// The key named by `kid` is of another type than `alg` needs.
    ALG_KEY_MISMATCH = "alg_key_mismatch",
    /// The signature does not verify.
    BAD_SIGNATURE = "bad_signature",
    /// `exp` is past, beyond the leeway.
    EXPIRED = "expired",
    /// The token has no `exp`.
    MISSING_EXP = "missing_exp",
    /// `nbf` is in the future, beyond the leeway.
    NOT_YET_VALID = "not_yet_valid",
    /// `iat` is in the future, beyond the leeway.
    ISSUED_IN_FUTURE = "issued_in_future",
    /// `iss` is missing or not the configured issuer.
    WRONG_ISSUER = "wrong_issuer",
    /// `aud` is missing or does not include the configured audience.
    WRONG_AUDIENCE = "wrong_audience",
    /// The tenant claim is missing or not a string.
    TENANT_CLAIM_MISSING = "tenant_claim_missing",
    /// Key-auth mode: Kong's shared secret header is missing or wrong.
    KEY_AUTH_SECRET = "key_auth_secret",
    /// Key-auth mode: no single `X-Consumer-Custom-ID`, or Kong's anonymous
    /// consumer.
    KEY_AUTH_CONSUMER = "key_auth_consumer",
}

/// A request the authentication step refuses.
///
/// `Display` is client-safe and never includes token contents. The internal
/// detail of [`AuthError::InvalidToken`] is for logs and the metric label
/// ([`AuthError::reason`]); the client only learns that the token is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `X-Tenant-Id` header.
    #[error("X-Tenant-Id header missing")]
    TenantHeaderMissing,
    /// `X-Tenant-Id` sent more than once or not a valid tenant ID; the
    /// detail says which rule failed (from [`crate::domain::DomainError`]).
    #[error("invalid X-Tenant-Id: {0}")]
    TenantHeaderInvalid(String),
    /// No `Authorization` header (and key-auth mode does not apply).
    #[error("bearer token missing")]
    MissingToken,
    /// The credential was refused. The reason is internal (a short fixed
    /// string such as `"unknown_kid"`): log it, count it, never send it.
    #[error("invalid token")]
    InvalidToken(&'static str),
    /// The credential is valid but names another tenant than `X-Tenant-Id`.
    #[error("tenant does not match the token")]
    TenantMismatch,
}

impl AuthError {
    /// A bounded metric label: `tenant_header_missing`,
    /// `tenant_header_invalid`, `missing_token`, `tenant_mismatch`, or
    /// `invalid_token_<reason>` for one of the declared reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::TenantHeaderMissing => "tenant_header_missing",
            AuthError::TenantHeaderInvalid(_) => "tenant_header_invalid",
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidToken(reason) => invalid_token_label(reason),
            AuthError::TenantMismatch => "tenant_mismatch",
        }
    }
}

/// Shorthand for the refusals raised inside this module.
pub(crate) fn invalid(reason: &'static str) -> AuthError {
    AuthError::InvalidToken(reason)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_declared_reason_has_its_own_label() {
        let labels: HashSet<&str> = ALL_INVALID_TOKEN_REASONS
            .iter()
            .map(|reason| AuthError::InvalidToken(reason).reason())
            .collect();
        assert_eq!(labels.len(), ALL_INVALID_TOKEN_REASONS.len());
        for reason in ALL_INVALID_TOKEN_REASONS {
            assert_eq!(
                AuthError::InvalidToken(reason).reason(),
                format!("invalid_token_{reason}")
            );
        }
    }

    #[test]
    fn an_undeclared_reason_falls_into_one_label() {
        assert_eq!(
            AuthError::InvalidToken("made_up").reason(),
            "invalid_token_other"
        );
    }

    #[test]
    fn display_never_includes_the_internal_reason() {
        let err = AuthError::InvalidToken(why::UNKNOWN_KID);
        assert_eq!(err.to_string(), "invalid token");
    }
}
