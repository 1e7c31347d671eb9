//! Test helpers: two small HTTP services that answer like the legacy
//! api-gateway and like the orchestrator, capture files, and the real
//! `compare` binary.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A phone number and a message body used in inputs; no output may contain
/// them unless redaction is off.
pub const PHONE: &str = "+447700900123";
pub const SECRET_BODY: &str = "Your Acme verification code is 482913";
pub const TOKEN: &str = "Bearer eyJ-super-secret-token";

/// How a fake service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// NestJS api-gateway: ObjectId ids, `201` for a send, Express headers.
    Legacy,
    /// Orchestrator at parity: answers like the legacy, differing only in
    /// value noise (its own ObjectIds, its own timestamps, the ETag of its
    /// own body); answers `UCS-2` for a message whose reference is `inject`
    /// (the injected difference).
    Orchestrator,
    /// The orchestrator before parity: UUIDv7 ids, `202`, plain
    /// `application/json`, no Express headers. Every send differs from the
    /// legacy in ways a client notices.
    Accepted202,
}

/// One request a fake service received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
struct AppState {
    flavour: Flavour,
    name: &'static str,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A running fake service on 127.0.0.1:0.
pub struct FakeService {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl FakeService {
    pub async fn start(flavour: Flavour, name: &'static str) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = AppState {
            flavour,
            name,
            received: received.clone(),
        };
        let app = Router::new()
            .route("/v1/sms/send", post(send))
            .route("/v1/sms/{id}", get(status))
            .route("/v1/ping", get(ping))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

fn record(state: &AppState, method: &str, path: String, headers: &HeaderMap, body: &Bytes) {
    state.received.lock().expect("lock").push(Received {
        at: Instant::now(),
        method: method.to_owned(),
        path,
        headers: headers.clone(),
        body: body.clone(),
    });
}

fn new_id(flavour: Flavour) -> String {
    match flavour {
        Flavour::Legacy | Flavour::Orchestrator => {
            format!("{:024x}", rand_u128() & ((1u128 << 96) - 1))
        }
        Flavour::Accepted202 => uuid::Uuid::now_v7().to_string(),
    }
}

fn rand_u128() -> u128 {
    rand::random()
}

fn json_response(
    flavour: Flavour,
    status: StatusCode,
    body: Value,
    location: Option<String>,
) -> Response {
    let text = body.to_string();
    let etag = format!("W/\"{:x}-{:08x}\"", text.len(), crc(text.as_bytes()));
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    let content_type = match flavour {
        Flavour::Legacy | Flavour::Orchestrator => "application/json; charset=utf-8",
        Flavour::Accepted202 => "application/json",
    };
    headers.insert(header::CONTENT_TYPE, content_type.parse().expect("static"));
    if flavour != Flavour::Accepted202 {
        headers.insert("x-powered-by", "Express".parse().expect("static"));
        headers.insert(header::ETAG, etag.parse().expect("etag"));
    }
    if let Some(location) = location.and_then(|l| l.parse().ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// A checksum for the fake ETag (any hash of the body will do).
fn crc(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

async fn send(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    record(&state, "POST", "/v1/sms/send".to_owned(), &headers, &body);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = new_id(state.flavour);
    let encoding = if state.flavour != Flavour::Legacy && request["reference"] == "inject" {
        "UCS-2"
    } else {
        "GSM-7"
    };
    let message = json!({
        "id": id,
        "status": "accepted",
        "to": request["to"],
        "from": request["from"],
        "encoding": encoding,
        "segments": 1,
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "reference": request["reference"],
    });
    let status = match state.flavour {
        Flavour::Legacy | Flavour::Orchestrator => StatusCode::CREATED,
        Flavour::Accepted202 => StatusCode::ACCEPTED,
    };
    json_response(
        state.flavour,
        status,
        message,
        Some(format!("/v1/sms/{id}")),
    )
}

async fn status(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    record(
        &state,
        "GET",
        format!("/v1/sms/{id}"),
        &headers,
        &Bytes::new(),
    );
    let message = json!({
        "id": id,
        "status": "delivered",
        "to": PHONE,
        "from": "Acme",
        "encoding": "GSM-7",
        "segments": 1,
        "created_at": "2026-05-01T12:00:00.123Z",
        "served_by": state.name,
    });
    json_response(state.flavour, StatusCode::OK, message, None)
}

async fn ping(State(state): State<AppState>, headers: HeaderMap) -> Response {
    record(
        &state,
        "GET",
        "/v1/ping".to_owned(),
        &headers,
        &Bytes::new(),
    );
    json_response(state.flavour, StatusCode::OK, json!({"pong": true}), None)
}

/// A capture line for `POST /v1/sms/send`.
pub fn send_line(i: usize, reference: &str) -> Value {
    json!({
        "schema_version": 1,
        "ts": format!("2026-05-01T12:00:{:02}.{:03}Z", (i / 1000) % 60, i % 1000),
        "correlation_id": format!("corr-{i}"),
        "request": {
            "method": "POST",
            "path": "/v1/sms/send",
            "headers": [["content-type", "application/json"], ["authorization", TOKEN], ["x-tenant-id", "acme"]],
            "body": json!({"to": PHONE, "from": "Acme", "body": SECRET_BODY, "reference": reference}).to_string()
        }
    })
}

/// A capture line for a read-only request.
pub fn get_line(i: usize, path: &str) -> Value {
    json!({
        "schema_version": 1,
        "correlation_id": format!("corr-get-{i}"),
        "request": {"method": "GET", "path": path, "headers": [["authorization", TOKEN]]}
    })
}

pub fn write_jsonl(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).expect("write capture");
}

pub fn compare_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_compare"))
}

pub fn read_records(path: &Path) -> Vec<compare::DiffRecord> {
    compare::difflog::read_records(path).expect("diff log reads")
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
