//! Step 1: the one description of the cutover (`kong/cutover.toml`):
//! where each backend lives, which hostnames and paths the edge serves,
//! the plugin settings, and the percentages of the canary and the ramp.
//! Every rendered file (each phase, each rollback, Kong and Envoy) comes
//! from this one value, so a phase can differ from the next only in what
//! the phase is about.
//!
//! Unknown keys are errors: a misspelt setting must not silently fall back
//! to a default in a file that moves production traffic.

use std::path::Path;

use serde::Deserialize;

use crate::error::CutoverError;

/// The whole description.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Description {
    pub edge: Edge,
    pub api_gateway: Backend,
    pub orchestrator: Backend,
    pub mirror_proxy: Backend,
    pub upstream: Upstream,
    pub steps: Steps,
    pub plugins: Plugins,
    pub envoy: Envoy,
}

/// What the edge serves.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// decK `select_tags`: every entity carries them, and `deck sync` only
    /// touches entities with them (consumers and other services stay).
    pub tags: Vec<String>,
    /// Name of the one Kong service (and of its upstream).
    pub service: String,
    /// Path prefixes routed to the submit path.
    pub paths: Vec<String>,
    /// Route protocols (`https` only: TLS ends at the edge).
    pub protocols: Vec<String>,
    /// One route per authentication mode.
    pub routes: Vec<RouteSpec>,
    /// Headers a client must never set: stripped on every route, every
    /// phase (the shadow marker and credential of the mirror proxy).
    pub strip_headers: Vec<String>,
    /// Service timeouts, milliseconds.
    pub connect_timeout_ms: u32,
    pub read_timeout_ms: u32,
    pub write_timeout_ms: u32,
    /// Connection-level retries on another target (Kong `retries`).
    pub retries: u32,
}

/// One route of the edge.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: String,
    pub hosts: Vec<String>,
    pub auth: Auth,
}

/// How a route authenticates clients.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    Jwt,
    KeyAuth,
}

/// A backend the edge can send to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub host: String,
    pub port: u16,
    /// Path the edge's active health check probes on this backend's API
    /// port (only rendered where there is another target to fail over to).
    pub health_path: String,
}

impl Backend {
    /// `host:port`, as a Kong target.
    pub fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The upstream that carries the canary and the ramp.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `consistent-hashing` on the consumer: each tenant stays on one side.
    pub sticky: bool,
    /// Active health check interval, seconds.
    pub health_interval_s: u32,
    pub health_timeout_s: u32,
    /// Failed probes before a target is taken out.
    pub unhealthy_after: u32,
    /// Good probes before it is put back.
    pub healthy_after: u32,
}

/// The percentages of the canary and the ramp steps.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    pub canary: u8,
    pub ramp: Vec<u8>,
}

/// Settings of the Kong plugins on every route.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plugins {
    pub jwt: Jwt,
    pub key_auth: KeyAuth,
    pub rate_limiting: RateLimiting,
    pub correlation_id: CorrelationId,
    pub prometheus: Prometheus,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    pub claims_to_verify: Vec<String>,
    pub key_claim_name: String,
    pub maximum_expiration: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyAuth {
    pub key_names: Vec<String>,
    pub hide_credentials: bool,
    /// Header the orchestrator's key-auth mode reads (`KEY_AUTH_SECRET_HEADER`).
    pub secret_header: String,
    /// The value Kong adds: a decK environment reference, never the secret.
    pub secret_ref: String,
    /// The Envoy twin's equivalent (`%ENVIRONMENT(NAME)%`).
    pub envoy_secret_env: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimiting {
    pub second: Option<u32>,
    pub minute: Option<u32>,
    pub hour: Option<u32>,
    pub limit_by: String,
    pub policy: String,
    pub fault_tolerant: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CorrelationId {
    pub header_name: String,
    pub generator: String,
    pub echo_downstream: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Prometheus {
    pub status_code_metrics: bool,
    pub latency_metrics: bool,
    pub upstream_health_metrics: bool,
    pub per_consumer: bool,
}

/// Where the Envoy twin listens.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Envoy {
    pub listen_address: String,
    pub listen_port: u16,
    pub admin_address: String,
    pub admin_port: u16,
    /// Route timeout, seconds (Kong's read timeout is per attempt; Envoy's
    /// route timeout covers the whole request).
    pub route_timeout_s: u32,
}

impl Description {
    /// Reads and checks a description file.
    pub fn load(path: &Path) -> Result<Self, CutoverError> {
        let text = std::fs::read_to_string(path).map_err(|source| CutoverError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            CutoverError::Description(m) => {
                CutoverError::Description(format!("{}: {m}", path.display()))
            }
            other => other,
        })
    }

    /// Parses and checks a description.
    pub fn parse(text: &str) -> Result<Self, CutoverError> {
        let d: Description =
            toml::from_str(text).map_err(|e| CutoverError::Description(e.to_string()))?;
        d.check()?;
        Ok(d)
    }

    /// Consistency rules the types cannot say.
    fn check(&self) -> Result<(), CutoverError> {
        let bad = |m: String| Err(CutoverError::Description(m));
        if !(1..=99).contains(&self.steps.canary) {
            return bad(format!(
                "steps.canary is {}%; a canary is 1–99 %",
                self.steps.canary
            ));
        }
        let mut last = self.steps.canary;
        for &p in &self.steps.ramp {
            if p <= last || p > 100 {
                return bad(format!(
                    "steps.ramp must rise above the canary ({}%) to at most 100 %: {:?}",
                    self.steps.canary, self.steps.ramp
                ));
            }
            last = p;
        }
        if self.steps.ramp.last() != Some(&100) {
            return bad("steps.ramp must end at 100 %".into());
        }
        if self.edge.routes.is_empty() {
            return bad("edge.routes is empty".into());
        }
        for path in &self.edge.paths {
            if !path.starts_with('/') || path.contains("//") {
                return bad(format!(
                    "edge.paths: {path:?} must start with / and not hold //"
                ));
            }
        }
        let mut names: Vec<&str> = self.edge.routes.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != self.edge.routes.len() {
            return bad("edge.routes: route names must be unique".into());
        }
        for r in &self.edge.routes {
            if r.hosts.is_empty() {
                return bad(format!(
                    "route {}: give it hosts (a route without hosts would also match a Host ending in -shadow)",
                    r.name
                ));
            }
        }
        if self.upstream.health_interval_s == 0 || self.upstream.unhealthy_after == 0 {
            return bad("upstream health checks need an interval and a failure count".into());
        }
        let strip: Vec<String> = self
            .edge
            .strip_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for required in ["x-shadow-request", "x-shadow-credential"] {
            if !strip.iter().any(|h| h == required) {
                return bad(format!("edge.strip_headers must include {required}"));
            }
        }
        if !self.plugins.key_auth.secret_ref.starts_with("${{") {
            return bad(
                "plugins.key_auth.secret_ref must be a decK environment reference \
                 (${{ env \"DECK_…\" }}), never the secret itself"
                    .into(),
            );
        }
        for (name, b) in [
            ("api_gateway", &self.api_gateway),
            ("orchestrator", &self.orchestrator),
            ("mirror_proxy", &self.mirror_proxy),
        ] {
            if b.host.is_empty() || b.port == 0 || !b.health_path.starts_with('/') {
                return bad(format!("{name}: host, port and health_path are required"));
            }
        }
        if self.api_gateway.health_path != self.orchestrator.health_path {
            return bad(format!(
                "api_gateway.health_path ({}) and orchestrator.health_path ({}) must be the same: \
                 Kong probes every target of an upstream on one path",
                self.api_gateway.health_path, self.orchestrator.health_path
            ));
        }
        Ok(())
    }

    /// The headers stripped from client traffic on every route: the
    /// configured ones plus the key-auth secret header (a client must not
    /// be able to present Kong's secret).
    pub fn stripped_headers(&self) -> Vec<String> {
        let mut h = self.edge.strip_headers.clone();
        let secret = &self.plugins.key_auth.secret_header;
        if !h.iter().any(|x| x.eq_ignore_ascii_case(secret)) {
            h.push(secret.clone());
        }
        h
    }

    /// The committed description, `kong/cutover.toml`, relative to the
    /// workspace root.
    pub const COMMITTED: &'static str = "kong/cutover.toml";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../kong/cutover.toml"))
            .expect("kong/cutover.toml")
    }

    #[test]
    fn the_committed_description_parses() {
        let d = Description::parse(&committed()).unwrap();
        assert_eq!(d.steps.canary, 5);
        assert_eq!(d.steps.ramp, vec![25, 50, 100]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = committed().replace("[upstream]", "[upstream]\nstickyy = true");
        let e = Description::parse(&text).unwrap_err().to_string();
        assert!(e.contains("stickyy"), "{e}");
    }

    #[test]
    fn a_ramp_that_does_not_end_at_100_is_refused() {
        let text = committed().replace("ramp = [25, 50, 100]", "ramp = [25, 50]");
        let e = Description::parse(&text).unwrap_err().to_string();
        assert!(e.contains("end at 100"), "{e}");
    }

    #[test]
    fn a_literal_key_auth_secret_is_refused() {
        let d = Description::parse(&committed()).unwrap();
        let text = committed().replace(&d.plugins.key_auth.secret_ref, "hunter2hunter2hunter2");
        let e = Description::parse(&text).unwrap_err().to_string();
        assert!(e.contains("never the secret"), "{e}");
    }

    #[test]
    fn the_shadow_headers_must_be_stripped() {
        let text = committed().replace(", \"X-Shadow-Credential\"]", "]");
        let e = Description::parse(&text).unwrap_err().to_string();
        assert!(e.contains("x-shadow-credential"), "{e}");
    }
}
