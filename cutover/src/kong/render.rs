//! Step 4a: a step as a decK file (`_format_version: "3.0"`).
//!
//! One service (`edge.service`) carries every submit route; its host is an
//! upstream, so a phase changes only the upstream the service names and
//! the targets' weights: the smallest diff a reviewer can read, and a
//! change Kong applies entity by entity without a window with no route.
//! Everything is nested under its parent (routes and plugins under the
//! service, targets under the upstream) and named, as both Kong and decK
//! require, and tagged with `edge.tags` so that `deck sync` manages these
//! entities only (tenants' consumers and credentials live elsewhere).

use serde_json::{Map, Value, json};

use crate::description::{Auth, Description, RouteSpec};
use crate::plan::{Plan, UpstreamPlan};

/// The decK document of `plan`.
pub fn document(d: &Description, plan: &Plan) -> Value {
    let tags = json!(d.edge.tags);
    let routes: Vec<Value> = d.edge.routes.iter().map(|r| route(d, r)).collect();
    let service = json!({
        "name": d.edge.service,
        "protocol": "http",
        "host": plan.service_upstream,
        "retries": d.edge.retries,
        "connect_timeout": d.edge.connect_timeout_ms,
        "read_timeout": d.edge.read_timeout_ms,
        "write_timeout": d.edge.write_timeout_ms,
        "tags": tags,
        "routes": routes,
    });
    let upstreams: Vec<Value> = plan.upstreams.iter().map(|u| upstream(d, u)).collect();
    json!({
        "_format_version": "3.0",
        "_info": {"select_tags": tags},
        "services": [service],
        "upstreams": upstreams,
    })
}

fn route(d: &Description, r: &RouteSpec) -> Value {
    let p = &d.plugins;
    let tags = json!(d.edge.tags);
    let mut plugins = vec![json!({
        "name": "correlation-id",
        "config": {
            "header_name": p.correlation_id.header_name,
            "generator": p.correlation_id.generator,
            "echo_downstream": p.correlation_id.echo_downstream,
        },
        "tags": tags,
    })];
    plugins.push(match r.auth {
        Auth::Jwt => json!({
            "name": "jwt",
            "config": {
                "claims_to_verify": p.jwt.claims_to_verify,
                "key_claim_name": p.jwt.key_claim_name,
                "maximum_expiration": p.jwt.maximum_expiration,
            },
            "tags": tags,
        }),
        Auth::KeyAuth => json!({
            "name": "key-auth",
            "config": {
                "key_names": p.key_auth.key_names,
                "hide_credentials": p.key_auth.hide_credentials,
            },
            "tags": tags,
        }),
    });
    let mut limits = Map::new();
    for (period, limit) in [
        ("second", p.rate_limiting.second),
        ("minute", p.rate_limiting.minute),
        ("hour", p.rate_limiting.hour),
    ] {
        if let Some(l) = limit {
            limits.insert(period.into(), json!(l));
        }
    }
    limits.insert("limit_by".into(), json!(p.rate_limiting.limit_by));
    limits.insert("policy".into(), json!(p.rate_limiting.policy));
    limits.insert(
        "fault_tolerant".into(),
        json!(p.rate_limiting.fault_tolerant),
    );
    plugins.push(json!({"name": "rate-limiting", "config": limits, "tags": tags}));
    // Kong runs request-transformer (priority 801) after the auth plugins
    // (jwt 1450, key-auth 1250), so removing here never undoes the consumer
    // headers they set; `remove` runs before `add`, so a client's copy of
    // the secret header is dropped before Kong's own is added.
    let mut transformer = json!({"remove": {"headers": d.stripped_headers()}});
    if r.auth == Auth::KeyAuth {
        transformer["add"] = json!({"headers": [format!(
            "{}:{}",
            p.key_auth.secret_header, p.key_auth.secret_ref
        )]});
    }
    plugins.push(json!({"name": "request-transformer", "config": transformer, "tags": tags}));
    plugins.push(json!({
        "name": "prometheus",
        "config": {
            "status_code_metrics": p.prometheus.status_code_metrics,
            "latency_metrics": p.prometheus.latency_metrics,
            "upstream_health_metrics": p.prometheus.upstream_health_metrics,
            "per_consumer": p.prometheus.per_consumer,
        },
        "tags": tags,
    }));
    json!({
        "name": r.name,
        "protocols": d.edge.protocols,
        "hosts": r.hosts,
        "paths": d.edge.paths,
        // The upstream sees the path the client sent (/v1/sms/send), and
        // the Host of the target, never the client's (a Host ending in
        // -shadow would mark the request as shadow traffic).
        "strip_path": false,
        "preserve_host": false,
        "tags": tags,
        "plugins": plugins,
    })
}

fn upstream(d: &Description, u: &UpstreamPlan) -> Value {
    let tags = json!(d.edge.tags);
    let mut v = json!({"name": u.name});
    if u.sticky {
        v["algorithm"] = json!("consistent-hashing");
        v["hash_on"] = json!("consumer");
        v["hash_fallback"] = json!("ip");
    } else {
        v["algorithm"] = json!("round-robin");
    }
    if let Some(path) = &u.health_path {
        let h = &d.upstream;
        v["healthchecks"] = json!({
            "active": {
                "type": "http",
                "http_path": path,
                "timeout": h.health_timeout_s,
                "concurrency": 10,
                "healthy": {
                    "interval": h.health_interval_s,
                    "successes": h.healthy_after,
                    "http_statuses": [200],
                },
                "unhealthy": {
                    "interval": h.health_interval_s,
                    "http_failures": h.unhealthy_after,
                    "tcp_failures": h.unhealthy_after,
                    "timeouts": h.unhealthy_after,
                    "http_statuses": [404, 429, 500, 502, 503, 504],
                },
            },
        });
    }
    v["tags"] = tags.clone();
    v["targets"] = json!(
        u.targets
            .iter()
            .map(|(t, w)| json!({"target": t.backend(d).target(), "weight": w, "tags": tags}))
            .collect::<Vec<_>>()
    );
    v
}
