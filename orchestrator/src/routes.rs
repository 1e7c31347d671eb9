//! The two routers: the public API (what Kong routes to) and the admin
//! listener (metrics and probes, never routed by Kong).
//!
//! The public API, from the outside in (each a middleware, then the
//! router):
//!
//! 1. [`crate::correlation::layer`]: correlation id, request log, metrics.
//! 2. [`crate::problem::render`]: errors in the negotiated envelope, then
//!    Express's headers, `ETag` and `304` ([`crate::express`]).
//! 3. [`crate::body::parse`]: the JSON body, read once, before routing.
//! 4. `express_routing` (below): which route a request is, matched the way the
//!    legacy's Express router matched it: paths in any case and with one
//!    trailing slash, `GET /v1/sms/send` as a lookup of the id `send`, and
//!    no `405`: a method a path does not have is the same `404 Cannot
//!    <METHOD> <url>` as an unknown path.
//! 5. The router: the submit routes behind the feature flag
//!    ([`crate::flag::gate`]), the contract, the probes.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::problem::ApiError;
use crate::state::AppState;
use crate::submit::{bulk::bulk, send::send, status::status};

/// The public API: `/v1/sms/*` behind the feature flag, plus the contract
/// and the probes Kong's upstream health checks use.
pub fn api(app: AppState) -> Router {
    let submit = Router::new()
        .route("/v1/sms/send", post(send))
        .route("/v1/sms/bulk", post(bulk))
        .route("/v1/sms/{id}", get(status))
        .route_layer(middleware::from_fn_with_state(
            app.flag.clone(),
            crate::flag::gate,
        ));
    let routed = Router::new()
        .merge(submit)
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(edge_healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::UnknownRoute })
        .with_state(app.clone());
    // Routing happens inside: the middleware below must see the request
    // before the router does, to rewrite what it matches on.
    let routed = tower::ServiceBuilder::new()
        .layer(middleware::from_fn(express_routing))
        .service(routed);
    Router::new()
        .fallback_service(routed)
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::body::parse,
        ))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::problem::render,
        ))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            crate::conformance::layer,
        ))
        .layer(middleware::from_fn_with_state(
            app.metrics.clone(),
            crate::correlation::layer,
        ))
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz`.
pub fn admin(app: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .merge(probes())
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(app)
}

fn probes() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
}

/// The edge's health check of this target (Kong's upstream, the Envoy
/// twin's cluster): `503` while `SUBMIT_API_ENABLED` is off, so the flag
/// alone takes the orchestrator out of the edge's rotation within the
/// check's interval (the rollback lever of the migration plan). Kong probes
/// every target of an upstream on one path, and the api-gateway answers
/// `/healthz`, hence this path. The admin listener's `/healthz` is the
/// process's liveness (Kubernetes) and ignores the flag.
async fn edge_healthz(State(app): State<AppState>) -> Response {
    if app.flag.is_on() {
        axum::Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "submit_api_disabled"})),
        )
            .into_response()
    }
}

async fn openapi(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.contract.document_json().to_vec(),
    )
        .into_response()
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Ready when the database answers (migrations ran at start-up, before the
/// listener existed). Redis and NATS outages degrade, they do not stop
/// acceptance: the outbox holds events, Postgres holds keys.
async fn readyz(State(app): State<AppState>) -> Response {
    let database = app.store.ping().await.is_ok();
    let redis = app.cache.ping().await;
    let nats = app.sink.is_connected();
    for (name, up) in [("database", database), ("redis", redis), ("nats", nats)] {
        app.metrics
            .dependency_up
            .with_label_values(&[name])
            .set(i64::from(up));
    }
    let word = |up: bool, down: &'static str| if up { "ok" } else { down };
    let body = json!({
        "status": if database { "ready" } else { "not_ready" },
        "checks": {
            "database": word(database, "down"),
            "redis": word(redis, "degraded"),
            "nats": word(nats, "degraded"),
        }
    });
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The message id of `GET /v1/sms/{id}`, percent-decoded as Express's
/// `decodeURIComponent` does.
#[derive(Debug, Clone)]
pub struct PathId(pub String);

/// A route of the public API, as the request log and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteName {
    Send,
    Bulk,
    Message,
    OpenApi,
    Health,
    Ready,
}

impl RouteName {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteName::Send => "/v1/sms/send",
            RouteName::Bulk => "/v1/sms/bulk",
            RouteName::Message => "/v1/sms/{id}",
            RouteName::OpenApi => "/openapi.json",
            RouteName::Health => "/healthz",
            RouteName::Ready => "/readyz",
        }
    }
}

/// Which route Express would have chosen, and the `:id` it captured.
pub fn match_route<'a>(method: &Method, path: &'a str) -> Option<(RouteName, Option<&'a str>)> {
    // Express (non-strict routing) allows one trailing slash and ignores case.
    let p = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let submit = |m: &Method| *m == Method::POST;
    let read = |m: &Method| *m == Method::GET || *m == Method::HEAD;
    if submit(method) && p.eq_ignore_ascii_case("/v1/sms/send") {
        return Some((RouteName::Send, None));
    }
    if submit(method) && p.eq_ignore_ascii_case("/v1/sms/bulk") {
        return Some((RouteName::Bulk, None));
    }
    if read(method)
        && p.len() > 8
        && p.is_char_boundary(8)
        && p[..8].eq_ignore_ascii_case("/v1/sms/")
        && !p[8..].contains('/')
    {
        return Some((RouteName::Message, Some(&p[8..])));
    }
    // The service's own endpoints: exact, GET (and HEAD) only.
    match (read(method), path) {
        (true, "/openapi.json") => Some((RouteName::OpenApi, None)),
        (true, "/healthz") => Some((RouteName::Health, None)),
        (true, "/readyz") => Some((RouteName::Ready, None)),
        _ => None,
    }
}

/// `decodeURIComponent`: `%XX` sequences must be hex and form UTF-8.
pub fn decode_uri_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Middleware in front of the router: rewrites the request to the
/// canonical path of the route Express would have matched, or answers the
/// legacy's `404` itself.
async fn express_routing(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let Some((route, id)) = match_route(req.method(), &path) else {
        return ApiError::UnknownRoute.into_response();
    };
    if let Some(slot) = req.extensions().get::<crate::correlation::RouteSlot>() {
        let _ = slot.0.set(route.as_str());
    }
    let canonical = match (route, id) {
        (RouteName::Message, Some(raw)) => {
            let Some(decoded) = decode_uri_component(raw) else {
                return ApiError::PathParamInvalid(raw.to_owned()).into_response();
            };
            req.extensions_mut().insert(PathId(decoded));
            // The router's own path for a lookup; the id travels as
            // `PathId` (`GET /v1/sms/send` is a lookup, not the send route).
            "/v1/sms/id".to_owned()
        }
        (route, _) => route.as_str().to_owned(),
    };
    let mut uri = req.uri().clone().into_parts();
    let query = uri
        .path_and_query
        .as_ref()
        .and_then(|p| p.query())
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    uri.path_and_query = format!("{canonical}{query}").parse().ok();
    if let Ok(rewritten) = Uri::from_parts(uri) {
        *req.uri_mut() = rewritten;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_as_express_matched_them() {
        let m = |method: Method, p: &str| {
            match_route(&method, p).map(|(r, id)| (r, id.map(str::to_owned)))
        };
        assert_eq!(
            m(Method::POST, "/v1/sms/send"),
            Some((RouteName::Send, None))
        );
        assert_eq!(
            m(Method::POST, "/V1/SMS/SEND/"),
            Some((RouteName::Send, None))
        );
        assert_eq!(m(Method::POST, "/v1/sms/send//"), None);
        assert_eq!(m(Method::PUT, "/v1/sms/send"), None);
        assert_eq!(
            m(Method::GET, "/v1/sms/send"),
            Some((RouteName::Message, Some("send".into())))
        );
        assert_eq!(
            m(Method::HEAD, "/v1/sms/abc/"),
            Some((RouteName::Message, Some("abc".into())))
        );
        assert_eq!(m(Method::GET, "/v1/sms/a/b"), None);
        assert_eq!(m(Method::GET, "/v1/sms/"), None);
        assert_eq!(m(Method::POST, "/v1/sms/abc"), None);
        assert_eq!(m(Method::GET, "//v1/sms/abc"), None);
        assert_eq!(m(Method::DELETE, "/v1/sms/abc"), None);
        assert_eq!(
            m(Method::GET, "/openapi.json"),
            Some((RouteName::OpenApi, None))
        );
        assert_eq!(m(Method::POST, "/healthz"), None);
    }

    #[test]
    fn path_parameters_decode_like_decode_uri_component() {
        assert_eq!(decode_uri_component("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(decode_uri_component("%C3%A9").as_deref(), Some("é"));
        assert_eq!(decode_uri_component("%zz"), None);
        assert_eq!(decode_uri_component("%C3"), None);
        assert_eq!(decode_uri_component("%4"), None);
        assert_eq!(decode_uri_component("plain").as_deref(), Some("plain"));
    }
}
