//! Does an answer conform to the committed contract? Checked against the
//! OpenAPI document itself (the operation's response for that status, its
//! headers, its media type and body schema), plus the legacy's Express
//! facts the document states in words: the exact content type, the weak
//! `ETag` of the very body sent, `304` without a body, and no header the
//! legacy never sent.
//!
//! Used by the integration tests on every answer of both the legacy
//! simulator and the orchestrator, and by the orchestrator itself when
//! `CHECK_RESPONSES` is on (the test harness turns it on for every
//! process it starts; a canary can too): each violation is logged as
//! `contract violation` and counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use jsonschema::Validator;
use serde_json::{Value, json};

use crate::routes::{RouteName, match_route};
use crate::state::AppState;

/// Headers any answer may carry besides those its response declares: what
/// Express and Node's HTTP server sent, and `Server` (the one header the
/// cutover may change).
const ALWAYS_ALLOWED: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "etag",
    "x-powered-by",
    "date",
    "connection",
    "keep-alive",
    "server",
];

/// One answer, as seen on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub method: &'a Method,
    /// The request path (no query).
    pub path: &'a str,
    pub request_headers: &'a HeaderMap,
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The checker: the document and the schemas compiled so far.
#[derive(Clone)]
pub struct Conformance {
    document: Arc<Value>,
    validators: Arc<Mutex<HashMap<String, Arc<Validator>>>>,
    content_type: String,
}

impl std::fmt::Debug for Conformance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conformance").finish_non_exhaustive()
    }
}

impl Conformance {
    /// A checker for a contract document (the YAML as JSON).
    pub fn new(document: Value) -> anyhow::Result<Self> {
        let content_type = document
            .pointer("/x-legacy/content_type")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("x-legacy.content_type missing"))?
            .to_owned();
        Ok(Self {
            document: Arc::new(document),
            validators: Arc::default(),
            content_type,
        })
    }

    /// The committed contract's checker.
    pub fn embedded() -> anyhow::Result<Self> {
        Self::new(serde_norway::from_str(crate::contract::OPENAPI_YAML)?)
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .document
                .pointer(r.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => v,
        }
    }

    /// The response object the contract gives for this answer, and a name
    /// for messages.
    fn response_spec(&self, x: &Exchange) -> Result<(String, &Value), String> {
        let operation = match match_route(x.method, x.path) {
            Some((route, _)) => {
                let (path, method) = match route {
                    RouteName::Send => ("/v1/sms/send", "post"),
                    RouteName::Bulk => ("/v1/sms/bulk", "post"),
                    RouteName::Message => ("/v1/sms/{id}", "get"),
                    RouteName::OpenApi => ("/openapi.json", "get"),
                    RouteName::Health => ("/healthz", "get"),
                    RouteName::Ready => ("/readyz", "get"),
                };
                let op = &self.document["paths"][path][method];
                Some((format!("{} {path}", method.to_uppercase()), op))
            }
            None => None,
        };
        let status = x.status.to_string();
        match operation {
            Some((name, op)) => op["responses"]
                .get(&status)
                .map(|r| (format!("{name} → {status}"), self.resolve(r)))
                .ok_or_else(|| format!("{name} has no {status} in the contract")),
            // No route: the router's 404, or what the body reader answers
            // before routing.
            None => {
                let name = match x.status {
                    404 => "UnknownRoute",
                    400 => "BadRequest",
                    413 => "ContentTooLarge",
                    415 => "UnsupportedMediaType",
                    500 => "InternalServerError",
                    _ => {
                        return Err(format!(
                            "{} {} (no route) answered {status}",
                            x.method, x.path
                        ));
                    }
                };
                Ok((
                    format!("{} {} (no route) → {status}", x.method, x.path),
                    &self.document["components"]["responses"][name],
                ))
            }
        }
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<Validator>, String> {
        let mut cache = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = cache.get(key) {
            return Ok(v.clone());
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": "#/schema",
            "schema": schema,
            "components": self.document["components"],
        });
        let v = Arc::new(
            jsonschema::options()
                .should_validate_formats(true)
                .build(&root)
                .map_err(|e| format!("schema for {key} does not compile: {e}"))?,
        );
        cache.insert(key.to_owned(), v.clone());
        Ok(v)
    }

    /// Every way the answer breaks the contract; empty when it conforms.
    pub fn check(&self, x: &Exchange) -> Vec<String> {
        let (name, spec) = match self.response_spec(x) {
            Ok(s) => s,
            Err(e) => return vec![e],
        };
        let mut out = Vec::new();
        let declared = spec["headers"].as_object();
        // Declared headers: present when required, values as specified.
        for (header, h) in declared.into_iter().flatten() {
            let h = self.resolve(h);
            let value = x.headers.get(header.as_str()).and_then(|v| v.to_str().ok());
            let problem_only = header.eq_ignore_ascii_case("www-authenticate");
            match value {
                None if h["required"] == true => {
                    out.push(format!("{name}: header {header} missing"))
                }
                None => {}
                Some(_) if problem_only && !crate::problem::wants_problem(x.request_headers) => out
                    .push(format!(
                        "{name}: {header} is sent only with problem documents"
                    )),
                Some(v) => {
                    let value = if h["schema"]["type"] == "integer" {
                        v.parse::<i64>().map_or(json!(v), |n| json!(n))
                    } else {
                        json!(v)
                    };
                    match self.validator(&format!("header {header}"), &h["schema"]) {
                        Ok(val) => {
                            for e in val.iter_errors(&value) {
                                out.push(format!("{name}: header {header} {v:?}: {e}"));
                            }
                        }
                        Err(e) => out.push(e),
                    }
                }
            }
        }
        // Nothing the legacy never sent.
        for header in x.headers.keys() {
            let n = header.as_str();
            let known = ALWAYS_ALLOWED.contains(&n)
                || declared.is_some_and(|d| d.keys().any(|k| k.eq_ignore_ascii_case(n)));
            if !known {
                out.push(format!("{name}: header {n} is not in the contract"));
            }
        }
        let content_type = x.headers.get("content-type").and_then(|v| v.to_str().ok());
        // A HEAD answer has the GET's headers and no body to check.
        if *x.method == Method::HEAD {
            return out;
        }
        if x.status == 304 {
            if !x.body.is_empty() || content_type.is_some() {
                out.push(format!("{name}: a 304 has neither body nor Content-Type"));
            }
            return out;
        }
        // Express's weak ETag of exactly these bytes.
        let expected = crate::express::etag(x.body);
        match x.headers.get("etag").and_then(|v| v.to_str().ok()) {
            Some(tag) if tag == expected => {}
            Some(tag) => out.push(format!("{name}: ETag {tag} is not {expected}")),
            None => out.push(format!("{name}: ETag missing")),
        }
        // The media type: the legacy's, or problem+json when asked for.
        let problem = crate::problem::wants_problem(x.request_headers);
        let media = match content_type {
            Some(ct) if ct == self.content_type => "application/json",
            Some(ct) if ct == crate::problem::PROBLEM_JSON => crate::problem::PROBLEM_JSON,
            other => {
                out.push(format!("{name}: Content-Type {other:?}"));
                return out;
            }
        };
        let is_error = x.status >= 400;
        if is_error && problem != (media == crate::problem::PROBLEM_JSON) {
            out.push(format!(
                "{name}: error as {media} although the request {} problem documents",
                if problem {
                    "asked for"
                } else {
                    "did not ask for"
                }
            ));
        }
        let Some(schema) = spec.pointer(&format!("/content/{}/schema", media.replace('/', "~1")))
        else {
            out.push(format!("{name}: no {media} body in the contract"));
            return out;
        };
        let body: Value = match serde_json::from_slice(x.body) {
            Ok(v) => v,
            Err(e) => {
                out.push(format!("{name}: body is not JSON: {e}"));
                return out;
            }
        };
        match self.validator(&format!("{name} {media}"), schema) {
            Ok(v) => {
                for e in v.iter_errors(&body) {
                    out.push(format!(
                        "{name}: body at {}: {}",
                        e.instance_path().as_str(),
                        e.masked()
                    ));
                }
            }
            Err(e) => out.push(e),
        }
        out
    }
}

/// Middleware (with `CHECK_RESPONSES`): checks every answer as it leaves,
/// logs and counts each violation. The answer itself is not changed.
pub async fn layer(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(check) = app.conformance.clone() else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut request_headers = req.headers().clone();
    // With ERROR_FORMAT=problem every request negotiates problem documents:
    // check the answer against that envelope (the deployment's choice,
    // warned about at start-up), as if the client had asked for it.
    if crate::problem::negotiated_problem(&request_headers, app.config.error_format)
        && !crate::problem::wants_problem(&request_headers)
    {
        request_headers.append(
            axum::http::header::ACCEPT,
            axum::http::HeaderValue::from_static(crate::problem::PROBLEM_JSON),
        );
    }
    let response = next.run(req).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let body = &bytes[..];
    for violation in check.check(&Exchange {
        method: &method,
        path: &path,
        request_headers: &request_headers,
        status: parts.status.as_u16(),
        headers: &parts.headers,
        body,
    }) {
        app.metrics.contract_violations.inc();
        tracing::error!(violation = violation.as_str(), "contract violation");
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn check(
        method: Method,
        path: &str,
        accept: &[(&str, &str)],
        status: u16,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Vec<String> {
        let c = Conformance::embedded().unwrap();
        let tag = crate::express::etag(body.as_bytes());
        let mut h = vec![
            ("content-type", "application/json; charset=utf-8"),
            ("x-powered-by", "Express"),
            ("etag", tag.as_str()),
        ];
        h.extend_from_slice(extra);
        let response_headers = headers(&h);
        let request_headers = headers(accept);
        c.check(&Exchange {
            method: &method,
            path,
            request_headers: &request_headers,
            status,
            headers: &response_headers,
            body: body.as_bytes(),
        })
    }

    const SENT: &str = r#"{"id":"6a3f2b1c9e8d7a6b5c4d3e2f","status":"accepted","to":"+447700900123","from":"Acme","encoding":"GSM-7","segments":1,"created_at":"2026-05-01T12:00:00.123Z","reference":null}"#;

    #[test]
    fn a_legacy_send_answer_conforms() {
        let v = check(
            Method::POST,
            "/v1/sms/send",
            &[],
            201,
            &[("location", "/v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f")],
            SENT,
        );
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn what_the_legacy_never_sent_is_a_violation() {
        let loc = ("location", "/v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f");
        // A header of the old orchestrator.
        let v = check(
            Method::POST,
            "/v1/sms/send",
            &[],
            201,
            &[loc, ("idempotent-replayed", "true")],
            SENT,
        );
        assert!(v.iter().any(|v| v.contains("idempotent-replayed")), "{v:?}");
        // The old status.
        let v = check(Method::POST, "/v1/sms/send", &[], 202, &[loc], SENT);
        assert!(v.iter().any(|v| v.contains("no 202")), "{v:?}");
        // A UUID and microseconds.
        let uuid = SENT
            .replace(
                "6a3f2b1c9e8d7a6b5c4d3e2f",
                "0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a",
            )
            .replace(".123Z", ".123456Z");
        let v = check(Method::POST, "/v1/sms/send", &[], 201, &[loc], &uuid);
        assert!(v.iter().any(|v| v.contains("/id")), "{v:?}");
        assert!(v.iter().any(|v| v.contains("/created_at")), "{v:?}");
        // No Location on a send.
        let v = check(Method::POST, "/v1/sms/send", &[], 201, &[], SENT);
        assert!(
            v.iter()
                .any(|v| v.contains("Location missing") || v.contains("location missing")),
            "{v:?}"
        );
    }

    #[test]
    fn the_envelope_must_be_the_one_asked_for() {
        let nest = r#"{"message":"Message not found","error":"Not Found","statusCode":404}"#;
        let path = "/v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f";
        assert!(check(Method::GET, path, &[], 404, &[], nest).is_empty());
        let v = check(
            Method::GET,
            path,
            &[("accept", "application/problem+json")],
            404,
            &[],
            nest,
        );
        assert!(v.iter().any(|v| v.contains("asked for")), "{v:?}");
        let unknown = r#"{"message":"Cannot PUT /x","error":"Not Found","statusCode":404}"#;
        assert!(check(Method::PUT, "/x", &[], 404, &[], unknown).is_empty());
    }

    #[test]
    fn the_etag_must_be_that_of_the_body() {
        let c = Conformance::embedded().unwrap();
        let body = r#"{"status":"ok"}"#;
        let h = headers(&[
            ("content-type", "application/json; charset=utf-8"),
            ("x-powered-by", "Express"),
            ("etag", "W/\"f-AAAAAAAAAAAAAAAAAAAAAAAAAAA\""),
        ]);
        let v = c.check(&Exchange {
            method: &Method::GET,
            path: "/healthz",
            request_headers: &HeaderMap::new(),
            status: 200,
            headers: &h,
            body: body.as_bytes(),
        });
        assert!(v.iter().any(|v| v.contains("ETag")), "{v:?}");
    }
}
