//! Reading what the request says about its caller: `X-Tenant-Id`, the
//! `Authorization` header, and the consumer headers Kong sets.
//!
//! Nothing here is trusted yet; it only extracts values in a strict shape so
//! the later steps compare exact strings.

use http::header::{AUTHORIZATION, HeaderMap, HeaderName};

use super::KongConsumer;
use super::error::{AuthError, invalid, why};
use crate::domain::TenantId;

pub(crate) const TENANT_HEADER: HeaderName = HeaderName::from_static("x-tenant-id");
pub(crate) const CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub(crate) const CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub(crate) const CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub(crate) const CREDENTIAL_IDENTIFIER: HeaderName =
    HeaderName::from_static("x-credential-identifier");
pub(crate) const ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// The tenant the request claims to act for: exactly one `X-Tenant-Id`.
///
/// Two values are refused rather than picking one, because a proxy and the
/// service could pick differently.
pub(crate) fn tenant(headers: &HeaderMap) -> Result<TenantId, AuthError> {
    let mut values = headers.get_all(TENANT_HEADER).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::TenantHeaderMissing);
    };
    if values.next().is_some() {
        return Err(AuthError::TenantHeaderInvalid(
            "X-Tenant-Id must be sent exactly once".to_owned(),
        ));
    }
    let value = value.to_str().map_err(|_| {
        AuthError::TenantHeaderInvalid("X-Tenant-Id must be visible ASCII".to_owned())
    })?;
    TenantId::parse(value).map_err(|err| AuthError::TenantHeaderInvalid(err.detail().to_owned()))
}

/// The bearer token, if the request has an `Authorization` header at all.
///
/// `Ok(None)` means no `Authorization` header (the only case key-auth mode
/// may take over). Two headers are refused even when equal: Kong's jwt plugin
/// reads one, and a second could be what some other component reads.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid(why::DUPLICATE_AUTHORIZATION));
    }
    let value = value
        .to_str()
        .map_err(|_| invalid(why::MALFORMED_AUTHORIZATION))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    // The scheme is case-insensitive (RFC 9110 §11.1); Kong's jwt plugin
    // also accepts `bearer`.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(invalid(why::NOT_BEARER));
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains([' ', ',']) {
        return Err(invalid(why::MALFORMED_AUTHORIZATION));
    }
    Ok(Some(token))
}

/// The value of a header sent exactly once, as visible ASCII; `None` when it
/// is missing, repeated or not text. Kong overwrites the consumer headers, so
/// a repeated one did not come from Kong.
pub(crate) fn single(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    value.to_str().ok().map(str::to_owned)
}

/// Kong's consumer headers, kept for audit logs. In JWT mode they are not
/// trusted for anything; the token is.
pub(crate) fn kong_consumer(headers: &HeaderMap) -> KongConsumer {
    KongConsumer {
        id: single(headers, &CONSUMER_ID),
        username: single(headers, &CONSUMER_USERNAME),
        custom_id: single(headers, &CONSUMER_CUSTOM_ID),
        credential_identifier: single(headers, &CREDENTIAL_IDENTIFIER),
        anonymous: headers
            .get_all(ANONYMOUS_CONSUMER)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"true")),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with_authorization(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn reads_a_bearer_token_in_any_scheme_case() {
        for value in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            let headers = with_authorization(&[value]);
            assert_eq!(bearer_token(&headers), Ok(Some("abc.def.ghi")), "{value}");
        }
    }

    #[test]
    fn no_authorization_header_is_none() {
        assert_eq!(bearer_token(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn refuses_other_schemes_and_empty_or_joined_tokens() {
        let cases = [
            ("Basic dXNlcjpwYXNz", why::NOT_BEARER),
            ("Bearer", why::MALFORMED_AUTHORIZATION),
            ("abc.def.ghi", why::NOT_BEARER),
            ("Bearer ", why::MALFORMED_AUTHORIZATION),
            ("Bearer a.b.c, Bearer d.e.f", why::MALFORMED_AUTHORIZATION),
            ("Bearer a.b.c d", why::MALFORMED_AUTHORIZATION),
        ];
        for (value, reason) in cases {
            let headers = with_authorization(&[value]);
            assert_eq!(bearer_token(&headers), Err(invalid(reason)), "{value}");
        }
    }

    #[test]
    fn refuses_two_authorization_headers_even_when_equal() {
        let headers = with_authorization(&["Bearer a.b.c", "Bearer a.b.c"]);
        assert_eq!(
            bearer_token(&headers),
            Err(invalid(why::DUPLICATE_AUTHORIZATION))
        );
    }

    #[test]
    fn refuses_a_repeated_or_invalid_tenant_header() {
        let mut headers = HeaderMap::new();
        headers.append(TENANT_HEADER, HeaderValue::from_static("acme"));
        headers.append(TENANT_HEADER, HeaderValue::from_static("acme"));
        assert!(matches!(
            tenant(&headers),
            Err(AuthError::TenantHeaderInvalid(_))
        ));

        let mut headers = HeaderMap::new();
        headers.insert(TENANT_HEADER, HeaderValue::from_static("acme/bank"));
        assert!(matches!(
            tenant(&headers),
            Err(AuthError::TenantHeaderInvalid(_))
        ));

        assert_eq!(
            tenant(&HeaderMap::new()),
            Err(AuthError::TenantHeaderMissing)
        );
    }

    #[test]
    fn kong_consumer_ignores_repeated_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(CONSUMER_ID, HeaderValue::from_static("c-1"));
        headers.append(CONSUMER_USERNAME, HeaderValue::from_static("a"));
        headers.append(CONSUMER_USERNAME, HeaderValue::from_static("b"));
        let consumer = kong_consumer(&headers);
        assert_eq!(consumer.id.as_deref(), Some("c-1"));
        assert_eq!(consumer.username, None);
        assert!(!consumer.anonymous);
    }
}
