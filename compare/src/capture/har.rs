//! HAR 1.2 (`log.entries[]`). Only what a replay needs is read; unknown
//! fields are ignored, since every exporter adds its own (`_initiator`, …).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;

use super::{CapturedRequest, header_map, method, path_of};
use crate::error::CaptureError;
use crate::exchange::{RecordedRequest, RecordedResponse};

#[derive(Debug, Deserialize)]
struct Har {
    log: Log,
}

#[derive(Debug, Deserialize)]
struct Log {
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    started_date_time: Option<String>,
    request: Request,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    time: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    post_data: Option<PostData>,
}

#[derive(Debug, Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostData {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Response {
    status: i64,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct Content {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

fn body(
    path: &Path,
    index: usize,
    text: Option<&str>,
    encoding: Option<&str>,
) -> Result<Bytes, CaptureError> {
    let Some(text) = text else {
        return Ok(Bytes::new());
    };
    if encoding.is_some_and(|e| e.eq_ignore_ascii_case("base64")) {
        BASE64
            .decode(text.trim())
            .map(Bytes::from)
            .map_err(|e| CaptureError::Invalid {
                path: path.to_owned(),
                line: index + 1,
                reason: format!("entry {index}: base64 body: {e}"),
            })
    } else {
        Ok(Bytes::from(text.to_owned().into_bytes()))
    }
}

/// Parses a HAR file. `line` in errors is the entry number (1-based).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<CapturedRequest>, CaptureError> {
    let har: Har = serde_json::from_slice(bytes).map_err(|e| CaptureError::Invalid {
        path: path.to_owned(),
        line: e.line(),
        reason: format!("not a HAR 1.2 file: {e}"),
    })?;
    let mut out = Vec::with_capacity(har.log.entries.len());
    for (index, entry) in har.log.entries.iter().enumerate() {
        let request_path = path_of(&entry.request.url).ok_or_else(|| CaptureError::Invalid {
            path: path.to_owned(),
            line: index + 1,
            reason: format!("entry {index}: invalid url {:?}", entry.request.url),
        })?;
        let headers = header_map(
            entry
                .request
                .headers
                .iter()
                .map(|h| (h.name.as_str(), h.value.as_str())),
        );
        let post = entry.request.post_data.as_ref();
        let request_body = body(
            path,
            index,
            post.and_then(|p| p.text.as_deref()),
            post.and_then(|p| p.encoding.as_deref()),
        )?;
        // Browsers record failed requests with status 0: no response.
        let primary = match &entry.response {
            Some(r) if (100..=999).contains(&r.status) => Some(RecordedResponse {
                status: StatusCode::from_u16(r.status as u16).unwrap_or(StatusCode::OK),
                headers: header_map(
                    r.headers
                        .iter()
                        .map(|h| (h.name.as_str(), h.value.as_str())),
                ),
                body: body(
                    path,
                    index,
                    r.content.as_ref().and_then(|c| c.text.as_deref()),
                    r.content.as_ref().and_then(|c| c.encoding.as_deref()),
                )?,
                latency: entry
                    .time
                    .filter(|t| t.is_finite() && *t >= 0.0 && *t < 1e12)
                    .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                    .unwrap_or_default(),
            }),
            _ => None,
        };
        out.push(CapturedRequest {
            ts: entry
                .started_date_time
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            request: RecordedRequest {
                method: method(path, index + 1, &entry.request.method)?,
                path: request_path,
                headers,
                body: request_body,
            },
            primary,
            candidate: None,
            templates: false,
        });
    }
    Ok(out)
}
