//! Step 4b: the Envoy twin of a step: the same routing as the Kong file,
//! as an Envoy bootstrap that `envoy --mode validate` checks and that the
//! cutover rehearsal runs.
//!
//! | Kong | Envoy twin |
//! |---|---|
//! | service + upstream with weighted targets | one cluster, weighted endpoints (`load_balancing_weight`) |
//! | weight 0 target | endpoint left out (Envoy weights are 1..) |
//! | `consistent-hashing` on consumer | `MAGLEV` + hash on `X-Tenant-Id` (the tenant the services check against the credential) |
//! | active health checks | `health_checks`, panic threshold 0 |
//! | `retries` (connection failures) | `retry_policy` `connect-failure,refused-stream`, other host |
//! | route hosts / paths, `strip_path: false`, `preserve_host: false` | virtual host domains, prefix match, `auto_host_rewrite` |
//! | `request-transformer` remove / add | `request_headers_to_remove` / `request_headers_to_add` |
//! | `correlation-id` (`X-Correlation-ID`, echoed) | `x-request-id` copied when absent, echoed on the response |
//! | `prometheus` | the admin's `/stats/prometheus` |
//!
//! Two differences on purpose. With two targets the twin also retries a
//! `404` once on the *other* target: the orchestrator answers `404` to
//! every submit while `SUBMIT_API_ENABLED` is off (before it has done
//! anything), and a status read of a message the other side accepted is
//! a `404` on this side; Kong OSS cannot retry on a status, so on Kong the
//! flag lever relies on the health check alone (docs/cutover.md). And
//! `jwt`, `key-auth` and `rate-limiting` have no twin: Envoy has no
//! key-auth, and both services verify the token themselves.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Value, json};

use crate::description::{Auth, Description};
use crate::error::CutoverError;
use crate::plan::{Plan, RouteRouting, Routing, Shares, Target, UpstreamPlan};

/// Name of the route configuration (the RDS resource in the rehearsal).
pub const ROUTE_CONFIG: &str = "sms-submit";

/// What changes between steps: the routes and the clusters.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub route_config: Value,
    pub clusters: Vec<Value>,
}

/// The routes and clusters of `plan`.
pub fn resources(d: &Description, plan: &Plan) -> Resources {
    Resources {
        route_config: route_config(d, plan),
        clusters: plan.upstreams.iter().map(|u| cluster(d, u)).collect(),
    }
}

/// The twin of `plan`: a static bootstrap.
pub fn bootstrap(d: &Description, plan: &Plan) -> Value {
    let r = resources(d, plan);
    let mut hcm = connection_manager();
    hcm["route_config"] = r.route_config;
    hcm["access_log"] = json!([{
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
        },
    }]);
    json!({
        "admin": {"address": socket(&d.envoy.admin_address, d.envoy.admin_port)},
        "static_resources": {
            "listeners": [listener(&d.envoy.listen_address, d.envoy.listen_port, hcm)],
            "clusters": r.clusters,
        },
    })
}

/// The HTTP connection manager every twin uses, without its routes.
pub fn connection_manager() -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "edge",
        // The client is external: Envoy appends it to X-Forwarded-For and
        // drops client-sent x-envoy-* headers.
        "use_remote_address": true,
        "normalize_path": true,
        "merge_slashes": true,
        "http_filters": [{
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    })
}

/// A listener with `hcm` as its only filter.
pub fn listener(address: &str, port: u16, hcm: Value) -> Value {
    json!({
        "name": "edge",
        "address": socket(address, port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]}],
    })
}

fn socket(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

fn route_config(d: &Description, plan: &Plan) -> Value {
    let upstream = plan
        .upstreams
        .iter()
        .find(|u| u.name == plan.service_upstream)
        .expect("the service's upstream is in the plan");
    let two_sides = upstream.active_targets().count() > 1;
    let corr = d.plugins.correlation_id.header_name.to_ascii_lowercase();
    let stripped: Vec<String> = d
        .stripped_headers()
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let hosts: Vec<Value> = d
        .edge
        .routes
        .iter()
        .map(|r| {
            let mut domains = Vec::new();
            for h in &r.hosts {
                domains.push(h.to_ascii_lowercase());
                domains.push(format!("{}:*", h.to_ascii_lowercase()));
            }
            let mut add = vec![json!({
                "header": {"key": corr, "value": "%REQ(x-request-id)%"},
                "append_action": "ADD_IF_ABSENT",
            })];
            if r.auth == Auth::KeyAuth {
                add.push(json!({
                    "header": {
                        "key": d.plugins.key_auth.secret_header.to_ascii_lowercase(),
                        "value": format!("%ENVIRONMENT({})%", d.plugins.key_auth.envoy_secret_env),
                    },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }));
            }
            let mut vhost = json!({
                "name": r.name,
                "domains": domains,
                "request_headers_to_remove": stripped,
                "request_headers_to_add": add,
                "routes": d.edge.paths.iter().map(|p| route(d, upstream, p, two_sides)).collect::<Vec<_>>(),
            });
            if d.plugins.correlation_id.echo_downstream {
                vhost["response_headers_to_add"] = json!([{
                    "header": {"key": corr, "value": format!("%REQ({corr})%")},
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }]);
            }
            vhost
        })
        .collect();
    json!({"name": ROUTE_CONFIG, "virtual_hosts": hosts})
}

fn route(d: &Description, upstream: &UpstreamPlan, prefix: &str, two_sides: bool) -> Value {
    let mut retry_on = "connect-failure,refused-stream".to_owned();
    if two_sides {
        retry_on.push_str(",retriable-status-codes");
    }
    let mut retry = json!({
        "retry_on": retry_on,
        "num_retries": d.edge.retries,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
        }],
        "host_selection_retry_max_attempts": 3,
    });
    if two_sides {
        retry["retriable_status_codes"] = json!([404]);
    }
    let mut action = json!({
        "cluster": upstream.name,
        "timeout": format!("{}s", d.envoy.route_timeout_s),
        "auto_host_rewrite": true,
        "retry_policy": retry,
    });
    if upstream.sticky && two_sides {
        action["hash_policy"] = json!([{"header": {"header_name": "x-tenant-id"}}]);
    }
    json!({
        "match": {"prefix": prefix},
        "route": action,
        // A retry resends the body, so Envoy keeps it: a bulk request is
        // at most BULK_BODY_LIMIT (4 MiB) on the orchestrator.
        "per_request_buffer_limit_bytes": 5 * 1024 * 1024,
    })
}

fn cluster(d: &Description, u: &UpstreamPlan) -> Value {
    let active: Vec<(Target, u16)> = u.active_targets().collect();
    let all_ip = active
        .iter()
        .all(|(t, _)| t.backend(d).host.parse::<IpAddr>().is_ok());
    let endpoints: Vec<Value> = active
        .iter()
        .map(|(t, w)| {
            let b = t.backend(d);
            json!({
                "endpoint": {"address": socket(&b.host, b.port), "hostname": b.host},
                "load_balancing_weight": w,
            })
        })
        .collect();
    let mut c = json!({
        "name": u.name,
        "type": if all_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": millis(d.edge.connect_timeout_ms),
        "lb_policy": if u.sticky && active.len() > 1 { "MAGLEV" } else { "ROUND_ROBIN" },
    });
    if let Some(path) = &u.health_path {
        let h = &d.upstream;
        // Panic threshold 0: an unhealthy target is never used, as in Kong.
        c["common_lb_config"] = json!({"healthy_panic_threshold": {"value": 0.0}});
        c["health_checks"] = json!([{
            "timeout": format!("{}s", h.health_timeout_s),
            "interval": format!("{}s", h.health_interval_s),
            "no_traffic_interval": format!("{}s", h.health_interval_s),
            "unhealthy_threshold": h.unhealthy_after,
            "healthy_threshold": h.healthy_after,
            "http_health_check": {"path": path},
        }]);
    }
    c["load_assignment"] =
        json!({"cluster_name": u.name, "endpoints": [{"lb_endpoints": endpoints}]});
    c
}

fn millis(ms: u32) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", f64::from(ms) / 1000.0)
    }
}

/// A parsed Envoy twin.
#[derive(Debug, Clone)]
pub struct EnvoyFile {
    pub path: String,
    pub doc: Value,
}

impl EnvoyFile {
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

    fn route_configs(&self) -> Vec<&Value> {
        arr(&self.doc["static_resources"]["listeners"])
            .iter()
            .flat_map(|l| arr(&l["filter_chains"]))
            .flat_map(|c| arr(&c["filters"]))
            .map(|f| &f["typed_config"]["route_config"])
            .filter(|r| !r.is_null())
            .collect()
    }

    /// The virtual hosts of every listener.
    pub fn virtual_hosts(&self) -> Vec<&Value> {
        self.route_configs()
            .into_iter()
            .flat_map(|r| arr(&r["virtual_hosts"]))
            .collect()
    }

    /// Where each virtual host (one per Kong route) sends requests.
    pub fn routing(&self, d: &Description) -> Result<Routing, Vec<String>> {
        let clusters: BTreeMap<&str, &Value> = arr(&self.doc["static_resources"]["clusters"])
            .iter()
            .map(|c| (c["name"].as_str().unwrap_or_default(), c))
            .collect();
        let mut problems = Vec::new();
        let mut out = BTreeMap::new();
        for vh in self.virtual_hosts() {
            let name = vh["name"].as_str().unwrap_or_default().to_owned();
            let mut hosts: Vec<String> = arr(&vh["domains"])
                .iter()
                .filter_map(Value::as_str)
                .filter(|h| !h.ends_with(":*"))
                .map(str::to_owned)
                .collect();
            hosts.sort();
            let mut paths = Vec::new();
            let mut routed: Option<(Shares, bool)> = None;
            for r in arr(&vh["routes"]) {
                paths.push(r["match"]["prefix"].as_str().unwrap_or_default().to_owned());
                let cname = r["route"]["cluster"].as_str().unwrap_or_default();
                let Some(c) = clusters.get(cname) else {
                    problems.push(format!(
                        "virtual host {name}: cluster {cname:?} is not defined"
                    ));
                    continue;
                };
                let mut weights = Vec::new();
                for group in arr(&c["load_assignment"]["endpoints"]) {
                    for e in arr(&group["lb_endpoints"]) {
                        let a = &e["endpoint"]["address"]["socket_address"];
                        let host = a["address"].as_str().unwrap_or_default();
                        let port = a["port_value"].as_u64().and_then(|p| u16::try_from(p).ok());
                        let w = e["load_balancing_weight"].as_u64().unwrap_or(1);
                        match port.and_then(|p| Target::from_address(d, host, p)) {
                            Some(t) => weights.push((t, u16::try_from(w).unwrap_or(u16::MAX))),
                            None => problems.push(format!(
                                "cluster {cname}: endpoint {host}:{} is none of the description's backends",
                                a["port_value"]
                            )),
                        }
                    }
                }
                let sticky = weights.len() > 1
                    && matches!(c["lb_policy"].as_str(), Some("MAGLEV" | "RING_HASH"))
                    && !arr(&r["route"]["hash_policy"]).is_empty();
                let this = (Shares::from_weights(weights), sticky);
                match &routed {
                    Some(prev) if *prev != this => problems.push(format!(
                        "virtual host {name}: its routes send to different places"
                    )),
                    _ => routed = Some(this),
                }
            }
            let (shares, sticky) = routed.unwrap_or_default();
            out.insert(
                (name, hosts),
                RouteRouting {
                    paths,
                    shares,
                    sticky,
                },
            );
        }
        if problems.is_empty() {
            Ok(Routing(out))
        } else {
            Err(problems)
        }
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}
