//! `legacy-gateway`: a stand-in for the retired NestJS `api-gateway`, the
//! primary of the shadow phase in tests and in the shadow demo
//! (`docs/shadow-phase.md`).
//!
//! It implements the same submit contract as the orchestrator
//! (`orchestrator/openapi.yaml`: `POST /v1/sms/send`, `POST /v1/sms/bulk`,
//! `GET /v1/sms/{id}`) the way the Express/NestJS service did, and publishes
//! every accepted message to NATS `sms.outbound.request` (core publish, or
//! JetStream with `--jetstream`), as the old service did.
//!
//! # Documented differences from the orchestrator
//!
//! Each one is explained by a rule in `compare/rules/default.toml` or
//! `mirror-proxy/rules/shadow.toml`; anything else the diff log reports is
//! a real difference.
//!
//! | legacy gateway | orchestrator | rule |
//! |---|---|---|
//! | ids are 24-hex MongoDB ObjectIds | UUIDv7 | `shape = "id"` on `/id`, `/results/*/id`; `Location` normalised |
//! | send and bulk answer `201` (`--send-status 200` for the older `200`) | `202` | status classes `send-accepted`, `bulk-accepted` |
//! | `X-Powered-By: Express`, weak `ETag` | neither | ignored headers |
//! | `Content-Type: application/json; charset=utf-8` | `application/json` | `Content-Type` normalised |
//! | errors `{statusCode, message, error}` (`message` a list for validation) | `application/problem+json` | envelope class `nest-error-vs-problem` |
//! | rejected bulk items carry the Nest error object | a problem object | `/results/*/error` present on both (shadow.toml) |
//! | timestamps in milliseconds (`toISOString`) | microseconds | timestamp shape, 5 s tolerance |
//! | no `Idempotent-Replayed` header on replays | `Idempotent-Replayed: true` | ignored header |
//! | the published event's `id` is the ObjectId | UUIDv7 | events rules |
//!
//! Not simulated: rate limiting, Kong's headers, persistence across
//! restarts (messages live in memory).
//!
//! Prints `{"message":"listening","addr":"127.0.0.1:PORT"}` on stdout once it
//! accepts connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{SecondsFormat, Utc};
use clap::Parser;
use orchestrator::domain::{MessageText, PhoneNumber, SenderId};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "legacy-gateway",
    about = "Stand-in for the retired NestJS api-gateway (shadow-phase primary)",
    after_help = "Example:\n  legacy-gateway --listen 127.0.0.1:3000 --nats-url nats://127.0.0.1:4222 --jetstream"
)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Status of a successful send (the gateway answered 201; older builds 200).
    #[arg(long, default_value_t = 201)]
    send_status: u16,
    /// Status of a successful bulk request.
    #[arg(long, default_value_t = 201)]
    bulk_status: u16,
    /// Publish accepted messages here.
    #[arg(long, env = "LEGACY_NATS_URL")]
    nats_url: Option<String>,
    #[arg(long, default_value = "sms.outbound.request")]
    nats_subject: String,
    /// Publish through JetStream (waits for the ack) instead of core NATS.
    #[arg(long)]
    jetstream: bool,
    /// Verify bearer tokens (HS256, claim `tenant_id`); unset: any bearer
    /// token is accepted and `X-Tenant-Id` is trusted.
    #[arg(long, env = "LEGACY_JWT_HS256_SECRET", hide_env_values = true)]
    jwt_hs256_secret: Option<String>,
    /// Artificial latency added to every /v1/sms response.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay: Duration,
    #[arg(long, default_value_t = 10)]
    max_segments: u32,
}

#[derive(Clone)]
struct App {
    cli: Arc<Cli>,
    messages: Arc<Mutex<HashMap<String, Stored>>>,
    /// (tenant, route, key) → the first response, replayed byte for byte.
    idempotency: Arc<Mutex<Replays>>,
    nats: Option<async_nats::Client>,
    counter: Arc<AtomicU32>,
    machine: [u8; 5],
}

/// (tenant, route, Idempotency-Key) → the first answer.
type Replays = HashMap<(String, &'static str, String), Saved>;

/// An error answer, boxed (a `Response` is large).
type Rejection = Box<Response>;

#[derive(Clone)]
struct Stored {
    tenant: String,
    view: Map<String, Value>,
    history: Vec<Value>,
}

#[derive(Clone)]
struct Saved {
    status: StatusCode,
    body: Bytes,
    location: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let nats = match &cli.nats_url {
        Some(url) => Some(async_nats::connect(url).await?),
        None => None,
    };
    let machine: [u8; 5] = uuid::Uuid::new_v4().as_bytes()[..5]
        .try_into()
        .unwrap_or_default();
    let app = App {
        cli: Arc::new(cli.clone()),
        messages: Arc::default(),
        idempotency: Arc::default(),
        nats,
        counter: Arc::new(AtomicU32::new(u32::from_be_bytes([
            0, machine[0], machine[1], machine[2],
        ]))),
        machine,
    };
    let router = Router::new()
        .route("/v1/sms/send", post(send))
        .route("/v1/sms/bulk", post(bulk))
        .route("/v1/sms/{id}", get(status))
        .route(
            "/healthz",
            get(|| async { express(StatusCode::OK, &json!({"status": "ok"}), None) }),
        )
        .fallback(|req: axum::extract::Request| async move {
            let message = format!("Cannot {} {}", req.method(), req.uri().path());
            nest_error(StatusCode::NOT_FOUND, json!(message))
        })
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    println!(
        "{}",
        json!({"message": "listening", "addr": listener.local_addr()?.to_string()})
    );
    axum::serve(listener, router).await?;
    Ok(())
}

/// An Express JSON response: `X-Powered-By`, charset, weak ETag.
fn express(status: StatusCode, body: &Value, location: Option<&str>) -> Response {
    let bytes = Bytes::from(body.to_string());
    express_bytes(status, bytes, location)
}

fn express_bytes(status: StatusCode, bytes: Bytes, location: Option<&str>) -> Response {
    let mut response = (status, bytes.clone()).into_response();
    let headers = response.headers_mut();
    headers.insert("x-powered-by", HeaderValue::from_static("Express"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Ok(etag) =
        HeaderValue::from_str(&format!("W/\"{:x}-{:016x}\"", bytes.len(), fnv1a(&bytes)))
    {
        headers.insert(header::ETAG, etag);
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// NestJS's error body: `{statusCode, message, error}`.
fn nest_error(status: StatusCode, message: Value) -> Response {
    express(status, &nest_error_body(status, message), None)
}

fn reject(status: StatusCode, message: Value) -> Rejection {
    Box::new(nest_error(status, message))
}

fn nest_error_body(status: StatusCode, message: Value) -> Value {
    json!({
        "statusCode": status.as_u16(),
        "message": message,
        "error": status.canonical_reason().unwrap_or("Error"),
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl App {
    /// A MongoDB ObjectId: 4-byte seconds, 5-byte process value, 3-byte counter.
    fn object_id(&self) -> String {
        let secs = u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX);
        let count = self.counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let mut bytes = Vec::with_capacity(12);
        bytes.extend_from_slice(&secs.to_be_bytes());
        bytes.extend_from_slice(&self.machine);
        bytes.extend_from_slice(&count.to_be_bytes()[1..]);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks the bearer token and the tenant header like the gateway's
    /// guards did. `Err` is the response to send.
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, Rejection> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| reject(StatusCode::UNAUTHORIZED, json!("Unauthorized")))?;
        let tenant = headers
            .get("x-tenant-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                reject(
                    StatusCode::BAD_REQUEST,
                    json!(["x-tenant-id should not be empty"]),
                )
            })?
            .to_owned();
        if let Some(secret) = &self.cli.jwt_hs256_secret {
            use jwt_simple::prelude::*;
            let key = HS256Key::from_bytes(secret.as_bytes());
            let claims = key
                .verify_token::<Map<String, Value>>(token, None)
                .map_err(|_| reject(StatusCode::UNAUTHORIZED, json!("Unauthorized")))?;
            if claims.custom.get("tenant_id").and_then(Value::as_str) != Some(tenant.as_str()) {
                return Err(reject(StatusCode::FORBIDDEN, json!("Forbidden resource")));
            }
        }
        Ok(tenant)
    }

    async fn publish(
        &self,
        tenant: &str,
        correlation_id: &str,
        message: &Map<String, Value>,
        body: &str,
    ) -> bool {
        let Some(nats) = &self.nats else {
            return false;
        };
        let field = |k: &str| message.get(k).cloned().unwrap_or(Value::Null);
        let payload = json!({
            "schema": "sms.outbound.request.v1",
            "id": field("id"),
            "tenant_id": tenant,
            "to": field("to"),
            "from": field("from"),
            "body": body,
            "encoding": field("encoding"),
            "segments": field("segments"),
            "reference": field("reference"),
            "callback_url": field("callback_url"),
            "schedule_at": field("schedule_at"),
            "validity_period": field("validity_period"),
            "metadata": field("metadata"),
            "correlation_id": correlation_id,
            "created_at": field("created_at"),
        });
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = message.get("id").and_then(Value::as_str) {
            headers.insert("Nats-Msg-Id", id);
        }
        headers.insert("X-Tenant-Id", tenant);
        headers.insert("X-Correlation-ID", correlation_id);
        let subject = self.cli.nats_subject.clone();
        let bytes = Bytes::from(payload.to_string());
        if self.cli.jetstream {
            let js = async_nats::jetstream::new(nats.clone());
            match js.publish_with_headers(subject, headers, bytes).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        } else {
            nats.publish_with_headers(subject, headers, bytes)
                .await
                .is_ok()
                && nats.flush().await.is_ok()
        }
    }
}

fn correlation_id(headers: &HeaderMap) -> String {
    ["x-correlation-id", "kong-request-id", "x-request-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Validates one message like the gateway's class-validator DTO. `Err`:
/// the constraint messages.
fn validate(
    item: &Map<String, Value>,
    max_segments: u32,
) -> Result<(Map<String, Value>, String), Vec<String>> {
    let mut errors = Vec::new();
    let text = |k: &str| item.get(k).and_then(Value::as_str);
    for key in item.keys() {
        if !matches!(
            key.as_str(),
            "to" | "from"
                | "body"
                | "reference"
                | "callback_url"
                | "schedule_at"
                | "validity_period"
                | "metadata"
        ) {
            errors.push(format!("property {key} should not exist"));
        }
    }
    let to = text("to").map(PhoneNumber::parse);
    if !matches!(to, Some(Ok(_))) {
        errors.push("to must be a valid phone number".to_owned());
    }
    if !matches!(text("from").map(SenderId::parse), Some(Ok(_))) {
        errors.push("from must be a valid sender id".to_owned());
    }
    let body = text("body").map(|b| MessageText::parse(b, max_segments));
    if !matches!(body, Some(Ok(_))) {
        errors.push("body must be a non-empty text within the segment limit".to_owned());
    }
    if item.get("reference").is_some_and(|r| !r.is_string()) {
        errors.push("reference must be a string".to_owned());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(Ok(to)), Some(Ok(body))) = (to, body) else {
        return Err(vec!["invalid message".to_owned()]);
    };
    let mut view = Map::new();
    view.insert("id".into(), Value::Null);
    view.insert("status".into(), json!("accepted"));
    view.insert("to".into(), json!(to.as_str()));
    view.insert(
        "from".into(),
        item.get("from").cloned().unwrap_or(Value::Null),
    );
    view.insert("encoding".into(), json!(body.encoding().as_str()));
    view.insert("segments".into(), json!(body.segments()));
    view.insert("created_at".into(), json!(now()));
    view.insert(
        "reference".into(),
        item.get("reference").cloned().unwrap_or(Value::Null),
    );
    for optional in ["callback_url", "schedule_at", "validity_period", "metadata"] {
        if let Some(v) = item.get(optional).filter(|v| !v.is_null()) {
            view.insert(optional.into(), v.clone());
        }
    }
    Ok((view, body.as_str().to_owned()))
}

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, Rejection> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(reject(
            StatusCode::BAD_REQUEST,
            json!(["body must be an object"]),
        )),
        Err(_) => Err(reject(
            StatusCode::BAD_REQUEST,
            json!("Unexpected token in JSON at position 0"),
        )),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl App {
    fn replay(&self, tenant: &str, route: &'static str, headers: &HeaderMap) -> Option<Response> {
        let key = idempotency_key(headers)?;
        let saved = self
            .idempotency
            .lock()
            .ok()?
            .get(&(tenant.to_owned(), route, key))
            .cloned()?;
        Some(express_bytes(
            saved.status,
            saved.body,
            saved.location.as_deref(),
        ))
    }

    fn save(&self, tenant: &str, route: &'static str, headers: &HeaderMap, saved: Saved) {
        if let (Some(key), Ok(mut map)) = (idempotency_key(headers), self.idempotency.lock()) {
            map.insert((tenant.to_owned(), route, key), saved);
        }
    }

    /// Stores, publishes and (once published) queues one accepted message.
    async fn accept(
        &self,
        tenant: &str,
        correlation: &str,
        mut view: Map<String, Value>,
        text: &str,
    ) -> Map<String, Value> {
        let id = self.object_id();
        view.insert("id".into(), json!(id));
        let accepted_at = view.get("created_at").cloned().unwrap_or(Value::Null);
        if let Ok(mut messages) = self.messages.lock() {
            messages.insert(
                id.clone(),
                Stored {
                    tenant: tenant.to_owned(),
                    view: view.clone(),
                    history: vec![
                        json!({"status": "accepted", "at": accepted_at, "error_code": null}),
                    ],
                },
            );
        }
        if self.publish(tenant, correlation, &view, text).await
            && let Ok(mut messages) = self.messages.lock()
            && let Some(stored) = messages.get_mut(&id)
        {
            stored
                .history
                .push(json!({"status": "queued", "at": now(), "error_code": null}));
        }
        view
    }
}

async fn send(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    tokio::time::sleep(app.cli.delay).await;
    let tenant = match app.authenticate(&headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if let Some(replay) = app.replay(&tenant, "send", &headers) {
        return replay;
    }
    let item = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let (view, text) = match validate(&item, app.cli.max_segments) {
        Ok(v) => v,
        Err(errors) => return nest_error(StatusCode::BAD_REQUEST, json!(errors)),
    };
    let view = app
        .accept(&tenant, &correlation_id(&headers), view, &text)
        .await;
    let id = view
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let status = StatusCode::from_u16(app.cli.send_status).unwrap_or(StatusCode::CREATED);
    let location = format!("/v1/sms/{id}");
    let bytes = Bytes::from(Value::Object(view).to_string());
    app.save(
        &tenant,
        "send",
        &headers,
        Saved {
            status,
            body: bytes.clone(),
            location: Some(location.clone()),
        },
    );
    express_bytes(status, bytes, Some(&location))
}

async fn bulk(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    tokio::time::sleep(app.cli.delay).await;
    let tenant = match app.authenticate(&headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if let Some(replay) = app.replay(&tenant, "bulk", &headers) {
        return replay;
    }
    let request = match parse_body(&body) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let Some(items) = request
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return nest_error(
            StatusCode::BAD_REQUEST,
            json!(["messages must contain at least 1 elements"]),
        );
    };
    let defaults = request
        .get("defaults")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let atomic = request
        .get("atomic")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let correlation = correlation_id(&headers);
    let mut validated = Vec::with_capacity(items.len());
    for item in items {
        let mut merged = defaults.clone();
        if let Some(fields) = item.as_object() {
            merged.extend(fields.clone());
        }
        validated.push(validate(&merged, app.cli.max_segments));
    }
    if validated.iter().all(Result::is_err) || (atomic && validated.iter().any(Result::is_err)) {
        let errors: Vec<String> = validated
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.as_ref()
                    .err()
                    .map(|e| format!("messages.{i}: {}", e.join(", ")))
            })
            .collect();
        return nest_error(StatusCode::BAD_REQUEST, json!(errors));
    }
    let (mut accepted, mut rejected, mut results) = (0, 0, Vec::new());
    for (index, outcome) in validated.into_iter().enumerate() {
        match outcome {
            Ok((view, text)) => {
                let view = app.accept(&tenant, &correlation, view, &text).await;
                accepted += 1;
                results.push(json!({"index": index, "id": view.get("id"), "status": "accepted"}));
            }
            Err(errors) => {
                rejected += 1;
                results.push(json!({
                    "index": index,
                    "error": nest_error_body(StatusCode::BAD_REQUEST, json!(errors)),
                }));
            }
        }
    }
    let status = StatusCode::from_u16(app.cli.bulk_status).unwrap_or(StatusCode::CREATED);
    let bytes = Bytes::from(
        json!({"accepted": accepted, "rejected": rejected, "results": results}).to_string(),
    );
    app.save(
        &tenant,
        "bulk",
        &headers,
        Saved {
            status,
            body: bytes.clone(),
            location: None,
        },
    );
    express_bytes(status, bytes, None)
}

async fn status(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    tokio::time::sleep(app.cli.delay).await;
    let tenant = match app.authenticate(&headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let found = app
        .messages
        .lock()
        .ok()
        .and_then(|m| m.get(&id).cloned())
        .filter(|m| m.tenant == tenant);
    let Some(stored) = found else {
        return nest_error(StatusCode::NOT_FOUND, json!("Message not found"));
    };
    let mut view = stored.view;
    let current = stored
        .history
        .last()
        .and_then(|h| h.get("status"))
        .cloned()
        .unwrap_or(json!("accepted"));
    let updated = stored
        .history
        .last()
        .and_then(|h| h.get("at"))
        .cloned()
        .unwrap_or(Value::Null);
    view.insert("status".into(), current);
    view.insert("updated_at".into(), updated);
    view.insert("status_history".into(), Value::Array(stored.history));
    express(StatusCode::OK, &Value::Object(view), None)
}
