//! `legacy-gateway`: a stand-in for the retired NestJS `api-gateway`, the
//! primary of the shadow phase in tests and in the shadow demo
//! (`docs/shadow-phase.md`).
//!
//! It **implements** the legacy contract (`orchestrator/openapi.yaml` and
//! the golden exchanges in `contracts/legacy/exchanges.yaml`) the way the
//! NestJS 10 / Express 4 service did; it does not define it. The contract
//! tests hold it and the orchestrator to the same goldens. It is written
//! independently of the orchestrator's HTTP code on purpose (parity must
//! not test code against itself): routing, body reading, validation and
//! messages, the error bodies, the headers and the ETag are all its own.
//! It shares only the parsers of facts that are not the surface: E.164
//! numbers, sender ids, GSM-7/UCS-2 segmenting, tenant ids and
//! Idempotency-Keys (`orchestrator::domain`), and `JSON.parse`
//! (`orchestrator::node_json::parse_body_as_legacy`, which keeps a
//! duplicate key's last value as the legacy did).
//!
//! Like the legacy it publishes every accepted message to NATS
//! `sms.outbound.request` (core publish, or JetStream with `--jetstream`).
//!
//! The one documented difference from the orchestrator is the contract's
//! own: a JSON object with a duplicate key is accepted here (last value
//! wins), refused there (`400`).
//!
//! Not simulated: rate limiting, Kong's headers, persistence across
//! restarts (messages live in memory), `409` (requests run one at a time
//! per key), `503`.
//!
//! Prints `{"message":"listening","addr":"127.0.0.1:PORT"}` on stdout once it
//! accepts connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use orchestrator::domain::{IdempotencyKey, MessageText, PhoneNumber, SenderId, TenantId};
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
    /// Status of a successful send (the gateway answered 201).
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
    /// Most items in one bulk request.
    #[arg(long, default_value_t = 1000)]
    bulk_max_items: usize,
    /// body-parser's `limit` in bytes (its default: 100kb).
    #[arg(long, default_value_t = 100 * 1024)]
    body_limit: usize,
}

#[derive(Clone)]
struct App {
    cli: Arc<Cli>,
    messages: Arc<Mutex<HashMap<String, Stored>>>,
    idempotency: Arc<Mutex<Replays>>,
    nats: Option<async_nats::Client>,
    counter: Arc<AtomicU32>,
    machine: [u8; 5],
}

/// (tenant, route, Idempotency-Key) → the request body and the first answer.
type Replays = HashMap<(String, &'static str, String), Saved>;

#[derive(Clone)]
struct Stored {
    tenant: String,
    view: Map<String, Value>,
    history: Vec<Value>,
}

#[derive(Clone)]
struct Saved {
    request: Value,
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
    let machine: [u8; 5] = rand_bytes();
    let app = App {
        cli: Arc::new(cli.clone()),
        messages: Arc::default(),
        idempotency: Arc::default(),
        nats,
        counter: Arc::new(AtomicU32::new(u32::from_be_bytes([
            0, machine[1], machine[3], machine[4],
        ]))),
        machine,
    };
    let router = Router::new().fallback(express).with_state(app);
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    println!(
        "{}",
        json!({"message": "listening", "addr": listener.local_addr()?.to_string()})
    );
    axum::serve(listener, router).await?;
    Ok(())
}

fn rand_bytes() -> [u8; 5] {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    [b[0], b[1], b[2], b[3], b[4]]
}

// ---------------------------------------------------------------- Express

/// An answer as Express's `res.send` wrote it.
struct Answer {
    status: StatusCode,
    body: Bytes,
    location: Option<String>,
}

impl Answer {
    fn json(status: StatusCode, body: &Value) -> Self {
        Self {
            status,
            body: Bytes::from(body.to_string()),
            location: None,
        }
    }
}

/// NestJS 10's `HttpException` body: `{message, error, statusCode}`.
fn http_exception(status: StatusCode, message: Value) -> Answer {
    Answer::json(
        status,
        &json!({
            "message": message,
            "error": status.canonical_reason().unwrap_or("Error"),
            "statusCode": status.as_u16(),
        }),
    )
}

fn bad_request(messages: Vec<String>) -> Answer {
    http_exception(StatusCode::BAD_REQUEST, json!(messages))
}

/// The one handler: body-parser, then the router, then the controller.
async fn express(State(app): State<App>, req: Request) -> Response {
    let method = req.method().clone();
    let url = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let answer = match body_parser(&app, req).await {
        Err(a) => a,
        Ok(body) => route(&app, &method, &url, &path, &headers, body).await,
    };
    send(&method, &headers, answer)
}

/// `res.send`: headers, weak ETag, `304` when fresh.
fn send(method: &Method, req: &HeaderMap, answer: Answer) -> Response {
    let digest = sha1_smol::Sha1::from(&answer.body[..]).digest().bytes();
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
    let etag = format!("W/\"{:x}-{}\"", answer.body.len(), &b64[..27]);
    let fresh = (*method == Method::GET || *method == Method::HEAD)
        && answer.status.is_success()
        && is_fresh(req, &etag);
    let mut response = if fresh {
        (StatusCode::NOT_MODIFIED, Body::empty()).into_response()
    } else {
        let mut r = (answer.status, answer.body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    };
    let h = response.headers_mut();
    h.insert("x-powered-by", HeaderValue::from_static("Express"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(l) = answer.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, l);
    }
    response
}

/// The `fresh` module: If-None-Match against the ETag.
fn is_fresh(req: &HeaderMap, etag: &str) -> bool {
    let get = |h| req.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    let none_match = get(header::IF_NONE_MATCH);
    let modified_since = get(header::IF_MODIFIED_SINCE);
    if none_match.is_none() && modified_since.is_none() {
        return false;
    }
    if get(header::CACHE_CONTROL).is_some_and(|c| {
        c.split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
    }) {
        return false;
    }
    if let Some(m) = none_match.filter(|m| *m != "*") {
        let hit = m
            .split([' ', ','])
            .filter(|t| !t.is_empty())
            .any(|t| t == etag || format!("W/{t}") == etag || format!("W/{etag}") == t);
        if !hit {
            return false;
        }
    }
    modified_since.is_none()
}

/// What Node does with a body nobody read (body-parser's `dump` of a
/// refused body, `IncomingMessage._dump` when a handler answered without
/// reading): read it to the end and discard it, so the keep-alive
/// connection serves the client's next request.
async fn dump(body: axum::body::Body) {
    use futures::StreamExt;
    let mut chunks = body.into_data_stream();
    while let Some(Ok(_)) = chunks.next().await {}
}

/// body-parser's `json()`: `Ok(None)` when it leaves the body alone.
async fn body_parser(app: &App, req: Request) -> Result<Option<Value>, Answer> {
    let headers = req.headers();
    let has_body = headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING);
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        dump(req.into_body()).await;
        return Ok(None);
    };
    let mut params = content_type.split(';');
    let essence = params.next().unwrap_or_default().trim();
    if !has_body || !essence.eq_ignore_ascii_case("application/json") {
        dump(req.into_body()).await;
        return Ok(None);
    }
    let charset = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
    if let Some(c) = charset.filter(|c| !c.starts_with("utf-")) {
        dump(req.into_body()).await;
        return Err(Answer::json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &json!({"statusCode": 415, "message": format!("unsupported charset \"{}\"", c.to_uppercase())}),
        ));
    }
    let too_large = || {
        Answer::json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"statusCode": 413, "message": "request entity too large"}),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > app.cli.body_limit) {
        dump(req.into_body()).await;
        return Err(too_large());
    }
    let mut chunks = req.into_body().into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
        let Ok(chunk) = chunk else {
            return Err(too_large());
        };
        if bytes.len() + chunk.len() > app.cli.body_limit {
            while let Some(Ok(_)) = futures::StreamExt::next(&mut chunks).await {}
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    orchestrator::node_json::parse_body_as_legacy(text)
        .map(Some)
        .map_err(|message| {
            // The parser's message may hold half a surrogate pair, which
            // JSON.stringify writes as an escape: build the body by hand.
            let body = format!(
                "{{\"message\":{},\"error\":\"Bad Request\",\"statusCode\":400}}",
                message.to_json()
            );
            Answer {
                status: StatusCode::BAD_REQUEST,
                body: Bytes::from(body),
                location: None,
            }
        })
}

/// Express's router: routes match in any case, with one optional trailing
/// slash; the `:id` parameter is percent-decoded.
async fn route(
    app: &App,
    method: &Method,
    url: &str,
    path: &str,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Answer {
    let trimmed = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    let lower = trimmed.to_ascii_lowercase();
    let body = body.unwrap_or_else(|| json!({}));
    let cannot = || {
        http_exception(
            StatusCode::NOT_FOUND,
            json!(format!("Cannot {method} {url}")),
        )
    };
    if *method == Method::POST && lower == "/v1/sms/send" {
        tokio::time::sleep(app.cli.delay).await;
        return send_sms(app, headers, body).await;
    }
    if *method == Method::POST && lower == "/v1/sms/bulk" {
        tokio::time::sleep(app.cli.delay).await;
        return bulk_sms(app, headers, body).await;
    }
    if (*method == Method::GET || *method == Method::HEAD)
        && let Some(raw) = lower
            .strip_prefix("/v1/sms/")
            .map(|_| &trimmed["/v1/sms/".len()..])
            .filter(|id| !id.is_empty() && !id.contains('/'))
    {
        let Some(id) = decode_uri_component(raw) else {
            return http_exception(
                StatusCode::BAD_REQUEST,
                json!(format!("Failed to decode param '{raw}'")),
            );
        };
        tokio::time::sleep(app.cli.delay).await;
        return get_sms(app, headers, &id);
    }
    if (*method == Method::GET || *method == Method::HEAD) && path == "/healthz" {
        return Answer::json(StatusCode::OK, &json!({"status": "ok"}));
    }
    cannot()
}

fn decode_uri_component(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

// ------------------------------------------------------------ controllers

impl App {
    /// A MongoDB ObjectId: 4-byte seconds, 5-byte process value, 3-byte counter.
    fn object_id(&self, now: DateTime<Utc>) -> String {
        let secs = u32::try_from(now.timestamp()).unwrap_or(u32::MAX);
        let count = self.counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let mut bytes = Vec::with_capacity(12);
        bytes.extend_from_slice(&secs.to_be_bytes());
        bytes.extend_from_slice(&self.machine);
        bytes.extend_from_slice(&count.to_be_bytes()[1..]);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The guards: the bearer token (401), then `X-Tenant-Id` (400), then
    /// the token's tenant against it (403).
    fn authenticate(&self, headers: &HeaderMap) -> Result<String, Answer> {
        let unauthorized = || {
            Answer::json(
                StatusCode::UNAUTHORIZED,
                &json!({"message": "Unauthorized", "statusCode": 401}),
            )
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(unauthorized)?;
        let claimed = match &self.cli.jwt_hs256_secret {
            Some(secret) => {
                use jwt_simple::prelude::*;
                let key = HS256Key::from_bytes(secret.as_bytes());
                let claims = key
                    .verify_token::<Map<String, Value>>(token, None)
                    .map_err(|_| unauthorized())?;
                Some(
                    claims
                        .custom
                        .get("tenant_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
            None => None,
        };
        let mut tenants = headers.get_all("x-tenant-id").iter();
        let tenant = match (tenants.next(), tenants.next()) {
            (Some(v), None) => v
                .to_str()
                .ok()
                .and_then(|t| TenantId::parse(t).ok())
                .map(|t| t.as_str().to_owned()),
            _ => None,
        }
        .ok_or_else(|| bad_request(vec!["x-tenant-id should not be empty".into()]))?;
        if claimed.is_some_and(|c| c != tenant) {
            return Err(http_exception(
                StatusCode::FORBIDDEN,
                json!("Forbidden resource"),
            ));
        }
        Ok(tenant)
    }

    async fn publish(
        &self,
        tenant: &str,
        correlation_id: &str,
        view: &Map<String, Value>,
        body: &str,
    ) -> bool {
        let Some(nats) = &self.nats else {
            return false;
        };
        let field = |k: &str| view.get(k).cloned().unwrap_or(Value::Null);
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
        if let Some(id) = view.get("id").and_then(Value::as_str) {
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

    /// The Idempotency-Key header: none, or exactly one valid key.
    fn idempotency_key(&self, headers: &HeaderMap) -> Result<Option<String>, Answer> {
        let invalid = || {
            bad_request(vec![
                "idempotency-key must be 1 to 255 visible ASCII characters".into(),
            ])
        };
        let mut values = headers.get_all("idempotency-key").iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => {
                let s = v.to_str().map_err(|_| invalid())?;
                IdempotencyKey::parse(s).map_err(|_| invalid())?;
                Ok(Some(s.to_owned()))
            }
            _ => Err(invalid()),
        }
    }

    /// A stored answer for this key: the same body replays it, another is 422.
    fn replay(
        &self,
        tenant: &str,
        route: &'static str,
        key: Option<&String>,
        request: &Value,
    ) -> Option<Answer> {
        let key = key?;
        let saved = self
            .idempotency
            .lock()
            .ok()?
            .get(&(tenant.to_owned(), route, key.clone()))
            .cloned()?;
        if saved.request != *request {
            return Some(http_exception(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!("This Idempotency-Key was already used with a different request body"),
            ));
        }
        Some(Answer {
            status: saved.status,
            body: saved.body,
            location: saved.location,
        })
    }

    fn save(&self, tenant: &str, route: &'static str, key: Option<String>, saved: Saved) {
        if let (Some(key), Ok(mut map)) = (key, self.idempotency.lock()) {
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
        now: DateTime<Utc>,
    ) -> Map<String, Value> {
        let id = self.object_id(now);
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
                .push(json!({"status": "queued", "at": iso(Utc::now()), "error_code": null}));
        }
        view
    }
}

fn correlation_id(headers: &HeaderMap) -> String {
    ["x-correlation-id", "kong-request-id", "x-request-id"]
        .iter()
        .find_map(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| {
                    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
                })
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// `Date.prototype.toISOString()`.
fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

async fn send_sms(app: &App, headers: &HeaderMap, body: Value) -> Answer {
    let tenant = match app.authenticate(headers) {
        Ok(t) => t,
        Err(a) => return a,
    };
    let key = match app.idempotency_key(headers) {
        Ok(k) => k,
        Err(a) => return a,
    };
    let now = now_ms();
    let (view, text) = match validate_message(&body, "", app.cli.max_segments, now) {
        Ok(v) => v,
        Err(messages) => return bad_request(messages),
    };
    if let Some(replay) = app.replay(&tenant, "send", key.as_ref(), &body) {
        return replay;
    }
    let view = app
        .accept(&tenant, &correlation_id(headers), view, &text, now)
        .await;
    let id = view
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let status = StatusCode::from_u16(app.cli.send_status).unwrap_or(StatusCode::CREATED);
    let answer = Answer {
        status,
        body: Bytes::from(Value::Object(view).to_string()),
        location: Some(format!("/v1/sms/{id}")),
    };
    app.save(
        &tenant,
        "send",
        key,
        Saved {
            request: body,
            status,
            body: answer.body.clone(),
            location: answer.location.clone(),
        },
    );
    answer
}

async fn bulk_sms(app: &App, headers: &HeaderMap, body: Value) -> Answer {
    let tenant = match app.authenticate(headers) {
        Ok(t) => t,
        Err(a) => return a,
    };
    let key = match app.idempotency_key(headers) {
        Ok(k) => k,
        Err(a) => return a,
    };
    let now = now_ms();
    let Some(request) = body.as_object() else {
        return bad_request(vec!["body must be an object".into()]);
    };
    // The envelope, in the DTO's order: unknown members, messages,
    // defaults, atomic.
    let mut envelope: Vec<String> = request
        .keys()
        .filter(|k| !matches!(k.as_str(), "messages" | "defaults" | "atomic"))
        .map(|k| format!("property {k} should not exist"))
        .collect();
    let items = request.get("messages").and_then(Value::as_array);
    match items {
        None => envelope.push("messages must contain at least 1 elements".into()),
        Some(i) if i.is_empty() => {
            envelope.push("messages must contain at least 1 elements".into())
        }
        Some(i) if i.len() > app.cli.bulk_max_items.min(1000) => envelope.push(format!(
            "messages must contain no more than {} elements",
            app.cli.bulk_max_items
        )),
        Some(_) => {}
    }
    let defaults = match request.get("defaults") {
        None => None,
        Some(Value::Object(d)) => {
            envelope.extend(field_errors(
                d,
                "defaults.",
                app.cli.max_segments,
                now,
                false,
            ));
            Some(d.clone())
        }
        Some(_) => {
            envelope.push("defaults must be an object".into());
            None
        }
    };
    let atomic = match request.get("atomic") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            envelope.push("atomic must be a boolean value".into());
            false
        }
    };
    let mut validated = Vec::new();
    for (i, item) in items
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let merged = match (item.as_object(), &defaults) {
            (Some(fields), Some(d)) => {
                let mut m = d.clone();
                m.extend(fields.clone());
                Value::Object(m)
            }
            _ => item.clone(),
        };
        validated.push(validate_message(
            &merged,
            &format!("messages.{i}."),
            app.cli.max_segments,
            now,
        ));
    }
    let valid = validated.iter().filter(|r| r.is_ok()).count();
    if !envelope.is_empty() || valid == 0 || (atomic && valid < validated.len()) {
        envelope.extend(validated.into_iter().filter_map(Result::err).flatten());
        return bad_request(envelope);
    }
    if let Some(replay) = app.replay(&tenant, "bulk", key.as_ref(), &body) {
        return replay;
    }
    let correlation = correlation_id(headers);
    let (mut accepted, mut rejected, mut results) = (0, 0, Vec::new());
    for (index, outcome) in validated.into_iter().enumerate() {
        match outcome {
            Ok((view, text)) => {
                let view = app.accept(&tenant, &correlation, view, &text, now).await;
                accepted += 1;
                results.push(json!({"index": index, "id": view.get("id"), "status": "accepted"}));
            }
            Err(messages) => {
                rejected += 1;
                // The item's own messages, without its `messages.N.` path.
                let prefix = format!("messages.{index}.");
                let own: Vec<String> = messages
                    .iter()
                    .map(|m| m.strip_prefix(&prefix).unwrap_or(m).to_owned())
                    .collect();
                results.push(json!({
                    "index": index,
                    "error": {"message": own, "error": "Bad Request", "statusCode": 400},
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
        key,
        Saved {
            request: body,
            status,
            body: bytes.clone(),
            location: None,
        },
    );
    Answer {
        status,
        body: bytes,
        location: None,
    }
}

fn get_sms(app: &App, headers: &HeaderMap, id: &str) -> Answer {
    let tenant = match app.authenticate(headers) {
        Ok(t) => t,
        Err(a) => return a,
    };
    let found = app
        .messages
        .lock()
        .ok()
        .and_then(|m| m.get(id).cloned())
        .filter(|m| m.tenant == tenant);
    let Some(stored) = found else {
        return http_exception(StatusCode::NOT_FOUND, json!("Message not found"));
    };
    let mut view = stored.view;
    let last = stored.history.last().cloned().unwrap_or(Value::Null);
    view.insert(
        "status".into(),
        last.get("status").cloned().unwrap_or(json!("accepted")),
    );
    view.insert(
        "updated_at".into(),
        last.get("at").cloned().unwrap_or(Value::Null),
    );
    view.insert("status_history".into(), Value::Array(stored.history));
    Answer::json(StatusCode::OK, &Value::Object(view))
}

// ------------------------------------------------------------- validation

/// The message DTO's fields, in declaration order.
const FIELDS: [&str; 8] = [
    "to",
    "from",
    "body",
    "reference",
    "callback_url",
    "schedule_at",
    "validity_period",
    "metadata",
];

/// One message (or a merged bulk item) as the DTO validated it. `Ok`: the
/// answer's view and the text; `Err`: the messages, each prefixed with
/// `prefix` (`messages.3.`).
fn validate_message(
    value: &Value,
    prefix: &str,
    max_segments: u32,
    now: DateTime<Utc>,
) -> Result<(Map<String, Value>, String), Vec<String>> {
    let Some(item) = value.as_object() else {
        return Err(vec![if prefix.is_empty() {
            "body must be an object".to_owned()
        } else {
            format!("{} must be an object", prefix.trim_end_matches('.'))
        }]);
    };
    let errors = field_errors(item, prefix, max_segments, now, true);
    if !errors.is_empty() {
        return Err(errors);
    }
    let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
    let (Ok(to), Ok(body)) = (
        PhoneNumber::parse(text("to")),
        MessageText::parse(text("body"), max_segments),
    ) else {
        return Err(vec![format!("{prefix}to must be a valid phone number")]);
    };
    let mut view = Map::new();
    view.insert("id".into(), Value::Null);
    view.insert("status".into(), json!("accepted"));
    view.insert("to".into(), json!(to.as_str()));
    view.insert("from".into(), json!(text("from")));
    view.insert("encoding".into(), json!(body.encoding().as_str()));
    view.insert("segments".into(), json!(body.segments()));
    view.insert("created_at".into(), json!(iso(now)));
    view.insert(
        "reference".into(),
        item.get("reference").cloned().unwrap_or(Value::Null),
    );
    if let Some(v) = item.get("callback_url") {
        view.insert("callback_url".into(), v.clone());
    }
    if let Some(t) = item
        .get("schedule_at")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        view.insert("schedule_at".into(), json!(iso(t.with_timezone(&Utc))));
    }
    for optional in ["validity_period", "metadata"] {
        if let Some(v) = item.get(optional) {
            view.insert(optional.into(), v.clone());
        }
    }
    Ok((view, body.as_str().to_owned()))
}

/// The DTO's constraint messages: unknown members first (request order),
/// then each invalid field once, in declaration order.
fn field_errors(
    item: &Map<String, Value>,
    prefix: &str,
    max_segments: u32,
    now: DateTime<Utc>,
    required: bool,
) -> Vec<String> {
    let mut errors: Vec<String> = item
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| format!("{prefix}property {k} should not exist"))
        .collect();
    for field in FIELDS {
        let Some(v) = item.get(field) else {
            if required && matches!(field, "to" | "from" | "body") {
                errors.push(format!("{prefix}{}", field_message(field, false)));
            }
            continue;
        };
        if let Err(wrong_type) = check_field(field, v, max_segments, now) {
            errors.push(format!("{prefix}{}", field_message(field, wrong_type)));
        }
    }
    errors
}

fn field_message(field: &str, wrong_type: bool) -> &'static str {
    match field {
        "to" => "to must be a valid phone number",
        "from" => "from must be a valid sender id",
        "body" => "body must be a non-empty text within the segment limit",
        "reference" if wrong_type => "reference must be a string",
        "reference" => {
            "reference must be longer than or equal to 1 and shorter than or equal to 64 characters"
        }
        "callback_url" => "callback_url must be an https URL",
        "schedule_at" => "schedule_at must be a date-time in the future, at most 7 days ahead",
        "validity_period" => "validity_period must be an integer from 60 to 259200",
        _ => "metadata must be an object of at most 10 string values",
    }
}

/// `Err(true)` when the value has the wrong JSON type, `Err(false)` for
/// any other broken rule.
fn check_field(field: &str, v: &Value, max_segments: u32, now: DateTime<Utc>) -> Result<(), bool> {
    let chars = |s: &str| s.chars().count();
    let ok = |b: bool| if b { Ok(()) } else { Err(false) };
    match field {
        "validity_period" => {
            let n = v.as_f64().ok_or(true)?;
            ok(n.fract() == 0.0 && (60.0..=259_200.0).contains(&n))
        }
        "metadata" => {
            let m = v.as_object().ok_or(true)?;
            ok(m.len() <= 10
                && m.iter().all(|(k, v)| {
                    chars(k) <= 64
                        && !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                        && v.as_str().is_some_and(|s| chars(s) <= 256)
                }))
        }
        _ => {
            let s = v.as_str().ok_or(true)?;
            ok(match field {
                "to" => PhoneNumber::parse(s).is_ok(),
                "from" => SenderId::parse(s).is_ok() && chars(s) <= 16,
                "body" => {
                    (1..=1600).contains(&chars(s)) && MessageText::parse(s, max_segments).is_ok()
                }
                "reference" => (1..=64).contains(&chars(s)),
                "callback_url" => {
                    chars(s) <= 2048
                        && s.strip_prefix("https://").is_some_and(|rest| {
                            !rest.is_empty() && !rest.chars().any(char::is_whitespace)
                        })
                }
                "schedule_at" => {
                    is_rfc3339(s)
                        && DateTime::parse_from_rfc3339(s).is_ok_and(|t| {
                            let t = t.with_timezone(&Utc);
                            t > now && t <= now + chrono::Duration::days(7)
                        })
                }
                _ => false,
            })
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}
