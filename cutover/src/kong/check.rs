//! Step 5a: what `deck validate` does not check in a Kong file.
//!
//! Debian's decK (1.4) checks the JSON schema of the entities and that
//! names are unique, but leaves plugin `config` free (`additionalProperties:
//! true`) and checks no ranges or references (see
//! `../shared/reference/kong-envoy.md` §3). These checks read the file as
//! Kong would: plugin settings against the plugins' schemas (keys, types,
//! enums, the rate-limiting order of periods), weights and ports in range,
//! every service host naming an upstream with something to send to, and
//! no secret written into the file. [`KongFile::routing`] reads back where
//! each route sends its requests, for the phase invariants.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::description::Description;
use crate::error::CutoverError;
use crate::plan::{RouteRouting, Routing, Shares, Target};

/// A parsed Kong declarative file.
#[derive(Debug, Clone)]
pub struct KongFile {
    pub path: String,
    pub doc: Value,
}

impl KongFile {
    pub fn parse(path: &str, text: &str) -> Result<Self, CutoverError> {
        let doc: Value = serde_norway::from_str(text).map_err(|e| CutoverError::Yaml {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            path: path.into(),
            doc,
        })
    }

    fn services(&self) -> &[Value] {
        array(&self.doc["services"])
    }

    fn upstreams(&self) -> &[Value] {
        array(&self.doc["upstreams"])
    }

    /// The routes with the service that holds each.
    pub fn routes(&self) -> Vec<(&Value, &Value)> {
        self.services()
            .iter()
            .flat_map(|s| array(&s["routes"]).iter().map(move |r| (s, r)))
            .collect()
    }

    /// The plugins configured on a route (nested under it).
    pub fn route_plugins<'a>(&self, route: &'a Value) -> &'a [Value] {
        array(&route["plugins"])
    }

    /// Where each route sends requests, reading service → upstream →
    /// targets with a weight above 0. `Err`: a reference that does not
    /// resolve, or a target that is none of the description's backends.
    pub fn routing(&self, d: &Description) -> Result<Routing, Vec<String>> {
        let mut problems = Vec::new();
        let mut routing = BTreeMap::new();
        for (service, route) in self.routes() {
            let name = str_of(&route["name"]).to_owned();
            let mut hosts: Vec<String> = array(&route["hosts"])
                .iter()
                .map(|h| str_of(h).to_ascii_lowercase())
                .collect();
            hosts.sort();
            let paths: Vec<String> = array(&route["paths"])
                .iter()
                .map(|p| str_of(p).to_owned())
                .collect();
            let host = str_of(&service["host"]);
            let Some(upstream) = self.upstreams().iter().find(|u| str_of(&u["name"]) == host)
            else {
                problems.push(format!(
                    "service {} sends to {host:?}, which is no upstream of this file",
                    str_of(&service["name"])
                ));
                continue;
            };
            let mut weights = Vec::new();
            for t in array(&upstream["targets"]) {
                let w = t["weight"].as_u64().unwrap_or(100);
                if w == 0 {
                    continue;
                }
                let target = str_of(&t["target"]);
                match split_target(target).and_then(|(h, p)| Target::from_address(d, h, p)) {
                    Some(tg) => weights.push((tg, u16::try_from(w).unwrap_or(u16::MAX))),
                    None => problems.push(format!(
                        "upstream {host}: target {target:?} is none of the description's backends"
                    )),
                }
            }
            let active = weights.len();
            routing.insert(
                (name, hosts),
                RouteRouting {
                    paths,
                    shares: Shares::from_weights(weights),
                    sticky: str_of(&upstream["algorithm"]) == "consistent-hashing" && active > 1,
                },
            );
        }
        if problems.is_empty() {
            Ok(Routing(routing))
        } else {
            Err(problems)
        }
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// `host:port` (Kong's default port is 8000 when none is given).
pub fn split_target(target: &str) -> Option<(&str, u16)> {
    match target.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            Some((h.trim_matches(['[', ']']), p.parse().ok()?))
        }
        _ => Some((target, 8000)),
    }
}

/// Every problem this tool finds in `file` (empty: it passes).
pub fn check_file(d: &Description, file: &KongFile) -> Vec<String> {
    let mut p = Problems::default();
    let doc = &file.doc;
    if doc["_format_version"] != "3.0" {
        p.add(
            "",
            format!(
                "_format_version must be \"3.0\", not {}",
                doc["_format_version"]
            ),
        );
    }
    if let Some(top) = doc.as_object() {
        for key in top.keys() {
            if !matches!(
                key.as_str(),
                "_format_version" | "_info" | "services" | "upstreams" | "consumers" | "plugins"
            ) {
                p.add("", format!("unexpected top-level key {key:?}"));
            }
        }
    }
    let select_tags: BTreeSet<&str> = array(&doc["_info"]["select_tags"])
        .iter()
        .map(str_of)
        .collect();
    let tagged = |p: &mut Problems, at: &str, entity: &Value| {
        let tags: BTreeSet<&str> = array(&entity["tags"]).iter().map(str_of).collect();
        if !select_tags.is_subset(&tags) {
            p.add(
                at,
                format!("lacks the select_tags {select_tags:?} (deck sync would not manage it)"),
            );
        }
    };

    let mut route_names = BTreeSet::new();
    let mut service_names = BTreeSet::new();
    for s in file.services() {
        let sname = str_of(&s["name"]);
        let at = format!("service {sname}");
        if sname.is_empty() || !service_names.insert(sname) {
            p.add(&at, "needs a unique name".into());
        }
        tagged(&mut p, &at, s);
        int_in(&mut p, &at, s, "retries", 0, 32_767);
        for t in ["connect_timeout", "read_timeout", "write_timeout"] {
            int_in(&mut p, &at, s, t, 1, 2_147_483_646);
        }
        if !matches!(str_of(&s["protocol"]), "http" | "https") {
            p.add(&at, format!("protocol {} is not http/https", s["protocol"]));
        }
        if str_of(&s["host"]).is_empty() {
            p.add(&at, "has no host".into());
        }
        for r in array(&s["routes"]) {
            let rname = str_of(&r["name"]);
            let at = format!("route {rname}");
            if rname.is_empty() || !route_names.insert(rname) {
                p.add(&at, "needs a unique name".into());
            }
            tagged(&mut p, &at, r);
            check_route(&mut p, &at, r);
            let mut seen = BTreeSet::new();
            for plugin in array(&r["plugins"]) {
                let name = str_of(&plugin["name"]);
                let at = format!("route {rname} plugin {name}");
                if !seen.insert(name) {
                    p.add(&at, "configured twice on one route".into());
                }
                tagged(&mut p, &at, plugin);
                check_plugin(&mut p, &at, name, &plugin["config"], d);
            }
        }
    }

    let mut upstream_names = BTreeSet::new();
    for u in file.upstreams() {
        let uname = str_of(&u["name"]);
        let at = format!("upstream {uname}");
        if uname.is_empty() || !upstream_names.insert(uname) {
            p.add(&at, "needs a unique name".into());
        }
        tagged(&mut p, &at, u);
        check_upstream(&mut p, &at, u);
    }
    for s in file.services() {
        let host = str_of(&s["host"]);
        match file.upstreams().iter().find(|u| str_of(&u["name"]) == host) {
            None => p.add(
                &format!("service {}", str_of(&s["name"])),
                format!("host {host:?} names no upstream of this file"),
            ),
            Some(u) if !array(&u["targets"]).iter().any(|t| t["weight"].as_u64() != Some(0)) => p
                .add(
                    &format!("service {}", str_of(&s["name"])),
                    format!("its upstream {host} has no target with a weight above 0: every request would fail"),
                ),
            Some(_) => {}
        }
    }
    if let Err(problems) = file.routing(d) {
        for m in problems {
            p.add("", m);
        }
    }
    p.0
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, at: &str, m: String) {
        self.0.push(if at.is_empty() {
            m
        } else {
            format!("{at}: {m}")
        });
    }
}

fn int_in(p: &mut Problems, at: &str, v: &Value, key: &str, min: i64, max: i64) {
    match &v[key] {
        Value::Null => {}
        n => match n.as_i64() {
            Some(i) if (min..=max).contains(&i) => {}
            _ => p.add(
                at,
                format!("{key} must be an integer {min}..{max}, not {n}"),
            ),
        },
    }
}

fn check_route(p: &mut Problems, at: &str, r: &Value) {
    for proto in array(&r["protocols"]) {
        if !matches!(str_of(proto), "http" | "https") {
            p.add(at, format!("protocol {proto} is not http/https"));
        }
    }
    let paths = array(&r["paths"]);
    for path in paths {
        let s = str_of(path);
        if !(s.starts_with('/') || s.starts_with("~/")) || s.contains("//") {
            p.add(
                at,
                format!("path {s:?} must start with / (or ~/) and hold no //"),
            );
        }
    }
    for m in array(&r["methods"]) {
        let s = str_of(m);
        if s.is_empty() || s != s.to_ascii_uppercase() {
            p.add(at, format!("method {m} must be upper case"));
        }
    }
    if paths.is_empty() && array(&r["hosts"]).is_empty() && array(&r["methods"]).is_empty() {
        p.add(at, "matches nothing (no paths, hosts or methods)".into());
    }
    if r["strip_path"] != Value::Bool(false) {
        p.add(
            at,
            "strip_path must be false: the services route on the full /v1/sms/ path".into(),
        );
    }
    if r["preserve_host"] == Value::Bool(true) {
        p.add(at, "preserve_host must be false: a client Host ending in -shadow would mark live traffic as shadow".into());
    }
}

fn check_upstream(p: &mut Problems, at: &str, u: &Value) {
    let algorithm = str_of(&u["algorithm"]);
    if !matches!(
        algorithm,
        "" | "round-robin" | "consistent-hashing" | "least-connections" | "latency"
    ) {
        p.add(
            at,
            format!("algorithm {algorithm:?} is not a Kong algorithm"),
        );
    }
    for key in ["hash_on", "hash_fallback"] {
        let v = str_of(&u[key]);
        if !matches!(
            v,
            "" | "none"
                | "consumer"
                | "ip"
                | "header"
                | "cookie"
                | "path"
                | "query_arg"
                | "uri_capture"
        ) {
            p.add(at, format!("{key} {v:?} is not a Kong hash input"));
        }
    }
    if !matches!(str_of(&u["hash_on"]), "" | "none") && algorithm != "consistent-hashing" {
        p.add(at, "hash_on needs algorithm consistent-hashing".into());
    }
    if str_of(&u["hash_on"]) == "consumer" && str_of(&u["hash_fallback"]) == "consumer" {
        p.add(at, "hash_fallback cannot repeat hash_on".into());
    }
    let active = &u["healthchecks"]["active"];
    if !active.is_null() {
        let path = str_of(&active["http_path"]);
        if !path.starts_with('/') {
            p.add(
                at,
                format!("health check http_path {path:?} must start with /"),
            );
        }
        for side in ["healthy", "unhealthy"] {
            int_in(p, at, &active[side], "interval", 0, 65_535);
            for s in array(&active[side]["http_statuses"]) {
                if !s.as_u64().is_some_and(|s| (100..=999).contains(&s)) {
                    p.add(at, format!("{side} http_status {s} out of 100..999"));
                }
            }
        }
        for key in ["http_failures", "tcp_failures", "timeouts"] {
            int_in(p, at, &active["unhealthy"], key, 0, 255);
        }
        int_in(p, at, &active["healthy"], "successes", 0, 255);
        if active["healthy"]["interval"].as_u64() == Some(0)
            || active["unhealthy"]["interval"].as_u64() == Some(0)
        {
            p.add(
                at,
                "an interval of 0 switches the active health check off".into(),
            );
        }
    }
    let mut targets = BTreeSet::new();
    for t in array(&u["targets"]) {
        let target = str_of(&t["target"]);
        if !targets.insert(target) {
            p.add(at, format!("target {target} twice"));
        }
        match t["weight"].as_i64() {
            Some(w) if (0..=65_535).contains(&w) => {}
            None if t["weight"].is_null() => {}
            _ => p.add(
                at,
                format!(
                    "target {target}: weight {} is outside 0..65535",
                    t["weight"]
                ),
            ),
        }
        if split_target(target).is_none() {
            p.add(
                at,
                format!("target {target:?} is not host:port (port 1..65535)"),
            );
        }
    }
}

/// Config keys (and, where closed, values) of the plugins this cutover uses.
fn check_plugin(p: &mut Problems, at: &str, name: &str, config: &Value, d: &Description) {
    let keys: &[&str] = match name {
        "jwt" => &[
            "uri_param_names",
            "cookie_names",
            "header_names",
            "key_claim_name",
            "secret_is_base64",
            "claims_to_verify",
            "maximum_expiration",
            "anonymous",
            "run_on_preflight",
        ],
        "key-auth" => &[
            "key_names",
            "hide_credentials",
            "key_in_header",
            "key_in_query",
            "key_in_body",
            "anonymous",
            "run_on_preflight",
        ],
        "rate-limiting" => &[
            "second",
            "minute",
            "hour",
            "day",
            "month",
            "year",
            "limit_by",
            "header_name",
            "path",
            "policy",
            "fault_tolerant",
            "hide_client_headers",
            "error_code",
            "error_message",
            "sync_rate",
        ],
        "correlation-id" => &["header_name", "generator", "echo_downstream"],
        "request-transformer" => &[
            "http_method",
            "remove",
            "rename",
            "replace",
            "add",
            "append",
        ],
        "prometheus" => &[
            "per_consumer",
            "status_code_metrics",
            "latency_metrics",
            "bandwidth_metrics",
            "upstream_health_metrics",
            "ai_metrics",
            "wasm_metrics",
        ],
        other => {
            p.add(at, format!("plugin {other:?} is not one this cutover uses"));
            return;
        }
    };
    let Some(config) = config.as_object() else {
        p.add(at, "config must be a map".into());
        return;
    };
    for key in config.keys() {
        if !keys.contains(&key.as_str()) {
            p.add(at, format!("unknown config key {key:?}"));
        }
    }
    let one_of = |p: &mut Problems, key: &str, allowed: &[&str]| {
        if let Some(v) = config.get(key)
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            p.add(at, format!("{key} {v} is not one of {allowed:?}"));
        }
    };
    match name {
        "jwt" => {
            for c in array(config.get("claims_to_verify").unwrap_or(&Value::Null)) {
                if !matches!(str_of(c), "exp" | "nbf") {
                    p.add(at, format!("claims_to_verify: {c} is not exp or nbf"));
                }
            }
            let max = config
                .get("maximum_expiration")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if max > 31_536_000 {
                p.add(at, "maximum_expiration is above 31536000".into());
            }
            let has_exp = array(config.get("claims_to_verify").unwrap_or(&Value::Null))
                .iter()
                .any(|c| c == "exp");
            if max > 0 && !has_exp {
                p.add(
                    at,
                    "maximum_expiration needs exp in claims_to_verify".into(),
                );
            }
            if !has_exp {
                p.add(
                    at,
                    "claims_to_verify must include exp: an expired token must not pass".into(),
                );
            }
        }
        "key-auth" if array(config.get("key_names").unwrap_or(&Value::Null)).is_empty() => {
            p.add(at, "key_names must name at least one key".into());
        }
        "rate-limiting" => {
            one_of(
                p,
                "limit_by",
                &["consumer", "credential", "ip", "service", "header", "path"],
            );
            one_of(p, "policy", &["local", "redis"]);
            let periods = ["second", "minute", "hour", "day", "month", "year"];
            let mut last: Option<(&str, f64)> = None;
            let mut any = false;
            for period in periods {
                let Some(v) = config.get(period).filter(|v| !v.is_null()) else {
                    continue;
                };
                any = true;
                let Some(n) = v.as_f64().filter(|n| *n > 0.0) else {
                    p.add(at, format!("{period} must be a number above 0"));
                    continue;
                };
                if let Some((shorter, m)) = last
                    && n < m
                {
                    p.add(at, format!("{period} ({n}) is lower than {shorter} ({m})"));
                }
                last = Some((period, n));
            }
            if !any {
                p.add(at, "needs at least one limit (second … year)".into());
            }
        }
        "correlation-id" => {
            one_of(p, "generator", &["uuid", "uuid#counter", "tracker"]);
        }
        "request-transformer" => check_transformer(p, at, config, d),
        "prometheus" => {
            for (k, v) in config {
                if !v.is_boolean() {
                    p.add(at, format!("{k} must be true or false"));
                }
            }
        }
        _ => {}
    }
}

fn check_transformer(
    p: &mut Problems,
    at: &str,
    config: &serde_json::Map<String, Value>,
    d: &Description,
) {
    for (section, v) in config {
        if section == "http_method" {
            continue;
        }
        let Some(parts) = v.as_object() else {
            p.add(at, format!("{section} must be a map"));
            continue;
        };
        for (part, list) in parts {
            if !matches!(part.as_str(), "headers" | "querystring" | "body") {
                p.add(
                    at,
                    format!("{section}.{part} is not headers, querystring or body"),
                );
            }
            for entry in array(list) {
                let Some(s) = entry.as_str() else {
                    p.add(at, format!("{section}.{part}: {entry} is not a string"));
                    continue;
                };
                let name = if section == "remove" {
                    s
                } else {
                    match s.split_once(':') {
                        Some((n, _)) => n,
                        None => {
                            p.add(at, format!("{section}.{part}: {s:?} needs name:value"));
                            continue;
                        }
                    }
                };
                if part == "headers" && !is_token(name) {
                    p.add(
                        at,
                        format!("{section}.headers: {name:?} is not a header name"),
                    );
                }
                if section != "remove"
                    && part == "headers"
                    && name.eq_ignore_ascii_case(&d.plugins.key_auth.secret_header)
                {
                    let value = s.split_once(':').map(|(_, v)| v).unwrap_or_default();
                    if !value.trim_start().starts_with("${{") {
                        p.add(at, format!("{name} is set to a literal value: secrets come from the environment (${{{{ env \"DECK_…\" }}}}), never from this file"));
                    }
                }
            }
        }
    }
}

/// An HTTP header name (RFC 9110 token).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phase::Step;
    use crate::plan::Plan;

    fn d() -> Description {
        Description::parse(include_str!("../../../kong/cutover.toml")).unwrap()
    }

    fn rendered(step_id: &str) -> KongFile {
        let d = d();
        let step = Step::all(&d)
            .into_iter()
            .find(|s| s.id() == step_id)
            .unwrap();
        let doc = crate::kong::document(&d, &Plan::of(&d, step));
        KongFile {
            path: step_id.into(),
            doc,
        }
    }

    fn problems_after(step_id: &str, edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut f = rendered(step_id);
        edit(&mut f.doc);
        check_file(&d(), &f)
    }

    #[test]
    fn every_rendered_step_passes() {
        let d = d();
        for step in Step::all(&d) {
            let f = rendered(&step.id());
            assert_eq!(check_file(&d, &f), Vec::<String>::new(), "{step}");
            assert_eq!(f.routing(&d).unwrap(), Plan::of(&d, step).routing(&d));
        }
    }

    #[test]
    fn a_weight_out_of_range_is_found() {
        let p = problems_after("2-canary-5", |doc| {
            doc["upstreams"][0]["targets"][0]["weight"] = 70000.into();
        });
        assert!(p.iter().any(|m| m.contains("outside 0..65535")), "{p:?}");
    }

    #[test]
    fn an_unknown_plugin_key_and_enum_are_found() {
        let p = problems_after("0-prep", |doc| {
            let plugins = &mut doc["services"][0]["routes"][0]["plugins"];
            plugins[0]["config"]["generator"] = "random".into();
            plugins[2]["config"]["limit_by"] = "tenant".into();
            plugins[2]["config"]["per_second"] = 5.into();
        });
        assert!(p.iter().any(|m| m.contains("generator")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("limit_by")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("per_second")), "{p:?}");
    }

    #[test]
    fn a_lower_limit_for_a_longer_period_is_found() {
        let p = problems_after("0-prep", |doc| {
            doc["services"][0]["routes"][0]["plugins"][2]["config"]["minute"] = 10.into();
        });
        assert!(p.iter().any(|m| m.contains("lower than second")), "{p:?}");
    }

    #[test]
    fn a_dangling_service_host_is_found() {
        let p = problems_after("1-shadow", |doc| {
            doc["upstreams"].as_array_mut().unwrap().remove(1);
        });
        assert!(p.iter().any(|m| m.contains("names no upstream")), "{p:?}");
    }

    #[test]
    fn an_upstream_with_nothing_to_send_to_is_found() {
        let p = problems_after("3-ramp-100", |doc| {
            doc["upstreams"][0]["targets"][1]["weight"] = 0.into();
        });
        assert!(
            p.iter()
                .any(|m| m.contains("no target with a weight above 0")),
            "{p:?}"
        );
    }

    #[test]
    fn a_literal_secret_is_found() {
        let p = problems_after("0-prep", |doc| {
            let route = &mut doc["services"][0]["routes"][1];
            route["plugins"][3]["config"]["add"]["headers"][0] =
                "X-Kong-Key-Auth-Secret:s3cr3t-s3cr3t-s3cr3t".into();
        });
        assert!(p.iter().any(|m| m.contains("literal value")), "{p:?}");
    }

    #[test]
    fn a_target_that_is_no_backend_is_found() {
        let p = problems_after("2-canary-5", |doc| {
            doc["upstreams"][0]["targets"][1]["target"] = "orchestrator-v2.sms.svc:8080".into();
        });
        assert!(
            p.iter()
                .any(|m| m.contains("none of the description's backends")),
            "{p:?}"
        );
    }

    #[test]
    fn strip_path_and_preserve_host_are_enforced() {
        let p = problems_after("0-prep", |doc| {
            doc["services"][0]["routes"][0]["strip_path"] = true.into();
            doc["services"][0]["routes"][0]["preserve_host"] = true.into();
        });
        assert!(p.iter().any(|m| m.contains("strip_path")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("preserve_host")), "{p:?}");
    }

    #[test]
    fn targets_split_into_host_and_port() {
        assert_eq!(split_target("a.b:3000"), Some(("a.b", 3000)));
        assert_eq!(split_target("a.b"), Some(("a.b", 8000)));
        assert_eq!(split_target("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_target("a:x"), None);
    }
}
