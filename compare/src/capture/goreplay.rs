//! GoReplay's file format (what `gor --output-file` writes).
//!
//! Payloads are separated by `"\n🐵🙈🙉\n"`. Each starts with a meta line
//! `<type> <id> <timestamp-ns> [<latency-ns>]`, then the raw HTTP message:
//! type `1` is a request, `2` the original response (with
//! `--input-raw-track-response`), `3` a replayed response. Requests are
//! read; an original response with the same id becomes the recorded
//! primary response.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};

use super::{CapturedRequest, header_map, method};
use crate::error::CaptureError;
use crate::exchange::{RecordedRequest, RecordedResponse};

/// The payload separator.
pub const SEPARATOR: &str = "\n🐵🙈🙉\n";

const MAX_HEADERS: usize = 256;

struct Meta<'a> {
    kind: u8,
    id: &'a str,
    ts: Option<DateTime<Utc>>,
    latency: Option<Duration>,
}

fn parse_meta(line: &str) -> Option<Meta<'_>> {
    let mut parts = line.split_ascii_whitespace();
    let kind = match parts.next()? {
        "1" => 1,
        "2" => 2,
        "3" => 3,
        _ => return None,
    };
    let id = parts.next()?;
    let ts = parts
        .next()
        .and_then(|t| t.parse::<i64>().ok())
        .map(DateTime::from_timestamp_nanos);
    let latency = parts
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .map(Duration::from_nanos);
    Some(Meta {
        kind,
        id,
        ts,
        latency,
    })
}

/// Parses a GoReplay file. `line` in errors is the payload number (1-based).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<CapturedRequest>, CaptureError> {
    let mut requests: Vec<(String, CapturedRequest)> = Vec::new();
    let mut responses: HashMap<String, RecordedResponse> = HashMap::new();
    for (index, payload) in split_payloads(bytes).enumerate() {
        let number = index + 1;
        let invalid = |reason: String| CaptureError::Invalid {
            path: path.to_owned(),
            line: number,
            reason,
        };
        let Some(newline) = payload.iter().position(|b| *b == b'\n') else {
            if payload.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Err(invalid("payload without a meta line".to_owned()));
        };
        let meta_line = String::from_utf8_lossy(&payload[..newline]);
        let meta = parse_meta(meta_line.trim())
            .ok_or_else(|| invalid(format!("invalid meta line {:?}", meta_line.trim())))?;
        let message = &payload[newline + 1..];
        match meta.kind {
            1 => {
                let request = parse_request(message).map_err(&invalid)?;
                let (method_text, target, headers, body) = request;
                let request = RecordedRequest {
                    method: method(path, number, &method_text)?,
                    path: super::path_of(&target)
                        .ok_or_else(|| invalid(format!("invalid request target {target:?}")))?,
                    headers,
                    body,
                };
                requests.push((
                    meta.id.to_owned(),
                    CapturedRequest {
                        ts: meta.ts,
                        request,
                        primary: None,
                        candidate: None,
                        templates: false,
                    },
                ));
            }
            2 => {
                // A malformed original response only loses the recording.
                if let Ok((status, headers, body)) = parse_response(message) {
                    responses.insert(
                        meta.id.to_owned(),
                        RecordedResponse {
                            status,
                            headers,
                            body,
                            latency: meta.latency.unwrap_or_default(),
                        },
                    );
                }
            }
            _ => {}
        }
    }
    Ok(requests
        .into_iter()
        .map(|(id, mut captured)| {
            captured.primary = responses.remove(&id);
            captured
        })
        .collect())
}

fn split_payloads(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let sep = SEPARATOR.as_bytes();
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match find(rest, sep) {
            Some(i) => {
                let (head, tail) = rest.split_at(i);
                rest = &tail[sep.len()..];
                Some(head)
            }
            None => {
                let head = rest;
                rest = &[];
                Some(head)
            }
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

type ParsedRequest = (String, String, HeaderMap, Bytes);

fn parse_request(message: &[u8]) -> Result<ParsedRequest, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(message) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("truncated HTTP request head".to_owned()),
        Err(e) => return Err(format!("invalid HTTP request: {e}")),
    };
    let method = request.method.unwrap_or("GET").to_owned();
    let target = request.path.unwrap_or("/").to_owned();
    let map = to_header_map(request.headers);
    let body = message_body(&map, message.get(head_len..).unwrap_or_default());
    Ok((method, target, map, body))
}

fn parse_response(message: &[u8]) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(message) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("truncated HTTP response head".to_owned()),
        Err(e) => return Err(format!("invalid HTTP response: {e}")),
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("invalid status")?;
    let map = to_header_map(response.headers);
    let body = message_body(&map, message.get(head_len..).unwrap_or_default());
    Ok((status, map, body))
}

fn to_header_map(headers: &[httparse::Header<'_>]) -> HeaderMap {
    let pairs: Vec<(&str, String)> = headers
        .iter()
        .map(|h| (h.name, String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    header_map(pairs.iter().map(|(n, v)| (*n, v.as_str())))
}

/// The body after the head: de-chunked when chunked, cut to
/// `Content-Length` when given.
fn message_body(headers: &HeaderMap, raw: &[u8]) -> Bytes {
    let chunked = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
        });
    if chunked {
        return Bytes::from(dechunk(raw));
    }
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => Bytes::copy_from_slice(&raw[..n.min(raw.len())]),
        None => Bytes::copy_from_slice(raw),
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (start, size) = match httparse::parse_chunk_size(raw) {
            Ok(httparse::Status::Complete((start, size))) => (start, size),
            _ => return out,
        };
        let Ok(size) = usize::try_from(size) else {
            return out;
        };
        if size == 0 {
            return out;
        }
        let data = raw.get(start..).unwrap_or_default();
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        // Skip the chunk and its CRLF.
        raw = data.get(take + 2..).unwrap_or_default();
        if raw.is_empty() {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"),
            b"Wikipedia"
        );
        assert_eq!(dechunk(b"garbage"), b"");
    }

    #[test]
    fn requests_and_original_responses_pair_by_id() {
        let file = format!(
            "1 abc 1700000000000000000 0\nPOST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}{SEPARATOR}2 abc 1700000000000000001 5000000\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n{SEPARATOR}"
        );
        let out = parse(Path::new("t.gor"), file.as_bytes()).expect("parses");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request.path, "/v1/sms/send");
        assert_eq!(&out[0].request.body[..], b"{}");
        assert_eq!(
            out[0].primary.as_ref().map(|r| r.status.as_u16()),
            Some(202)
        );
    }
}
