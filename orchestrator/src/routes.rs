//! The two routers: the public API (what Kong routes to) and the admin
//! listener (metrics and probes, never routed by Kong). Unknown routes and
//! wrong methods answer problem+json too.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::problem::{ApiError, ProblemSlug};
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
    Router::new()
        .merge(submit)
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(edge_healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(method_not_allowed_as_problem))
        .layer(middleware::from_fn_with_state(
            app.metrics.clone(),
            crate::correlation::layer,
        ))
        .with_state(app)
}

/// The admin listener: `/metrics`, `/healthz`, `/readyz`.
pub fn admin(app: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .merge(probes())
        .fallback(|| async { ApiError::NotFound })
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

/// axum answers a wrong method with an empty `405`; give it a body, keep `Allow`.
async fn method_not_allowed_as_problem(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.extensions().get::<ProblemSlug>().is_some()
    {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = ApiError::MethodNotAllowed.into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}
