//! The mirror proxy's capture format: JSON Lines, one exchange per line.
//! Schema: `compare/schemas/capture.v1.schema.json`.
//!
//! ```json
//! {"schema_version":1,"ts":"2026-05-01T12:00:00.123Z","correlation_id":"4bf9…",
//!  "request":{"method":"POST","path":"/v1/sms/send",
//!             "headers":[["content-type","application/json"]],"body":"{\"to\":\"+44…\"}"},
//!  "primary":{"status":200,"headers":[],"body":"…","latency_ms":12.5},
//!  "candidate":{"status":202,"headers":[],"body":"…","latency_ms":4.1}}
//! ```
//!
//! A capture is replay input, so request bodies are kept as sent (a replay of
//! a hashed phone number would be useless); credentials are never written
//! (see [`CaptureLine::from_exchange`]). Treat capture files as personal
//! data: restricted permissions, short retention.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::{CapturedRequest, header_map, method};
use crate::error::CaptureError;
use crate::exchange::{Exchange, RecordedRequest, RecordedResponse};
use crate::lines::NumberedLines;
use crate::redact::Redactor;

pub const CAPTURE_SCHEMA_VERSION: u32 = 1;

/// One line of a capture.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureLine {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// An authored line: `compare replay` fills its templates per target
    /// (`compare::template`). Never set on captured traffic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub templates: bool,
    pub request: CaptureRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<CaptureResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<CaptureResponse>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    pub method: String,
    /// Path and query (`/v1/sms/send?dry=1`).
    pub path: String,
    /// `[name, value]` pairs in wire order; a name may repeat.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// UTF-8 body. Exclusive with `body_base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Body bytes that are not UTF-8, base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureResponse {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

impl CaptureLine {
    /// A capture line for an exchange, as the mirror proxy writes it:
    /// credential headers (per `redactor`) are left out, bodies kept.
    pub fn from_exchange(exchange: &Exchange, redactor: &Redactor, ts: DateTime<Utc>) -> Self {
        let headers = |map: &HeaderMap| -> Vec<(String, String)> {
            map.iter()
                .filter(|(name, _)| !redactor.drops_header(name.as_str()))
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect()
        };
        let (body, body_base64) = encode_body(&exchange.request.body);
        let response = |r: &RecordedResponse| {
            let (body, body_base64) = encode_body(&r.body);
            CaptureResponse {
                status: r.status.as_u16(),
                headers: headers(&r.headers),
                body,
                body_base64,
                latency_ms: Some(r.latency.as_secs_f64() * 1000.0),
            }
        };
        Self {
            schema_version: CAPTURE_SCHEMA_VERSION,
            ts: Some(ts),
            correlation_id: exchange.request.correlation_id().map(str::to_owned),
            templates: false,
            request: CaptureRequest {
                method: exchange.request.method.as_str().to_owned(),
                path: exchange.request.path.clone(),
                headers: headers(&exchange.request.headers),
                body,
                body_base64,
            },
            primary: Some(response(&exchange.primary)),
            candidate: Some(response(&exchange.candidate)),
        }
    }
}

fn encode_body(body: &Bytes) -> (Option<String>, Option<String>) {
    if body.is_empty() {
        return (None, None);
    }
    match std::str::from_utf8(body) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(BASE64.encode(body))),
    }
}

fn decode_body(
    path: &Path,
    line: usize,
    body: &Option<String>,
    body_base64: &Option<String>,
) -> Result<Bytes, CaptureError> {
    match (body, body_base64) {
        (Some(_), Some(_)) => Err(invalid(path, line, "both body and body_base64 are set")),
        (Some(text), None) => Ok(Bytes::from(text.clone().into_bytes())),
        (None, Some(b64)) => BASE64
            .decode(b64.trim())
            .map(Bytes::from)
            .map_err(|e| invalid(path, line, &format!("body_base64: {e}"))),
        (None, None) => Ok(Bytes::new()),
    }
}

fn invalid(path: &Path, line: usize, reason: &str) -> CaptureError {
    CaptureError::Invalid {
        path: path.to_owned(),
        line,
        reason: reason.to_owned(),
    }
}

fn pairs(headers: &[(String, String)]) -> HeaderMap {
    header_map(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

fn response(
    path: &Path,
    line: usize,
    r: &CaptureResponse,
) -> Result<RecordedResponse, CaptureError> {
    Ok(RecordedResponse {
        status: StatusCode::from_u16(r.status)
            .map_err(|_| invalid(path, line, &format!("invalid status {}", r.status)))?,
        headers: pairs(&r.headers),
        body: decode_body(path, line, &r.body, &r.body_base64)?,
        latency: Duration::from_secs_f64(
            r.latency_ms
                .filter(|ms| ms.is_finite() && *ms >= 0.0 && *ms < 1e12)
                .unwrap_or(0.0)
                / 1000.0,
        ),
    })
}

/// Parses a JSONL capture held in memory. Lines that are not UTF-8 are
/// read lossily; blank lines are skipped.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<CapturedRequest>, CaptureError> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .enumerate()
        .filter_map(|(index, raw)| parse_line(path, index + 1, raw).transpose())
        .collect()
}

/// Parses one line of a JSONL capture; `line_no` counts from 1 and is only
/// used in errors. A blank line is `Ok(None)`.
pub fn parse_line(
    path: &Path,
    line_no: usize,
    raw: &str,
) -> Result<Option<CapturedRequest>, CaptureError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let line: CaptureLine =
        serde_json::from_str(raw).map_err(|e| invalid(path, line_no, &e.to_string()))?;
    if line.schema_version != CAPTURE_SCHEMA_VERSION {
        return Err(invalid(
            path,
            line_no,
            &format!("unsupported schema_version {}", line.schema_version),
        ));
    }
    let mut headers = pairs(&line.request.headers);
    if let Some(id) = &line.correlation_id
        && !headers.contains_key("x-correlation-id")
        && let Ok(value) = http::HeaderValue::from_str(id)
    {
        headers.insert("x-correlation-id", value);
    }
    if !line.request.path.starts_with('/') {
        return Err(invalid(path, line_no, "request.path must start with '/'"));
    }
    Ok(Some(CapturedRequest {
        ts: line.ts,
        request: RecordedRequest {
            method: method(path, line_no, &line.request.method)?,
            path: line.request.path.clone(),
            headers,
            body: decode_body(path, line_no, &line.request.body, &line.request.body_base64)?,
        },
        primary: line
            .primary
            .as_ref()
            .map(|r| response(path, line_no, r))
            .transpose()?,
        candidate: line
            .candidate
            .as_ref()
            .map(|r| response(path, line_no, r))
            .transpose()?,
        templates: line.templates,
    }))
}

/// Reads a JSONL capture one line at a time, in file order, through one
/// reused line buffer: memory does not grow with the capture. Lines are
/// parsed exactly as [`parse`] does (same line numbers in errors, blank
/// lines skipped, lossy UTF-8). The iterator ends after the first error.
#[derive(Debug)]
pub struct JsonlReader<R> {
    lines: NumberedLines<R>,
    path: PathBuf,
    done: bool,
}

impl<R: BufRead> JsonlReader<R> {
    /// `path` is only used in errors.
    pub fn new(reader: R, path: &Path) -> Self {
        Self {
            lines: NumberedLines::new(reader),
            path: path.to_owned(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<CapturedRequest, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let parsed = match self.lines.next_line()? {
                // '\n' never occurs inside a UTF-8 sequence, so decoding
                // line by line replaces exactly what decoding the whole
                // file would.
                Ok((line_no, line)) => {
                    parse_line(&self.path, line_no, &String::from_utf8_lossy(line)).transpose()
                }
                Err(source) => Some(Err(CaptureError::Read {
                    path: self.path.clone(),
                    source,
                })),
            };
            if let Some(parsed) = parsed {
                self.done = parsed.is_err();
                return Some(parsed);
            }
        }
        None
    }
}
