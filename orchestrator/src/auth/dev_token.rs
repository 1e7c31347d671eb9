//! Tokens for `--dev` mode and local testing, signed with the HS256 secret.

use std::time::Duration;

use anyhow::{anyhow, ensure};
use jwt_simple::prelude::{Claims, MACLike};
use serde_json::{Map, Value};

use super::DEFAULT_TENANT_CLAIM;
use super::jwt::hs256_key;
use crate::domain::TenantId;

/// Mints an HS256 token for `tenant`: `sub: "dev"`, `tenant_id`, `iat`,
/// `nbf` and `exp` (now + `ttl`).
///
/// It carries no `iss` or `aud`, so it verifies only where neither is
/// configured, and only with `hs256_secret` set to the same `secret` (at
/// least 32 bytes) and the default `tenant_claim`.
pub fn mint_dev_token(secret: &str, tenant: &str, ttl: Duration) -> anyhow::Result<String> {
    let tenant = TenantId::parse(tenant).map_err(|err| anyhow!("tenant: {err}"))?;
    ensure!(ttl.as_secs() >= 1, "ttl must be at least one second");
    let key = hs256_key(secret)?;
    let mut custom = Map::new();
    custom.insert(
        DEFAULT_TENANT_CLAIM.to_owned(),
        Value::from(tenant.as_str()),
    );
    let claims = Claims::with_custom_claims(
        custom,
        jwt_simple::prelude::Duration::from_secs(ttl.as_secs()),
    )
    .with_subject("dev");
    key.authenticate(claims)
        .map_err(|err| anyhow!("signing the dev token: {err}"))
}
