//! Captured traffic: the requests `compare replay` sends again.
//!
//! Three formats are read, chosen by extension or by sniffing the content:
//! - the mirror proxy's JSONL capture ([`jsonl`], schema in
//!   `compare/schemas/capture.v1.schema.json`), which may also hold both
//!   recorded responses;
//! - HAR 1.2 ([`har`]), as browsers, mitmproxy and Charles export it;
//! - GoReplay's file format ([`goreplay`]), `--output-file` of `gor`.

pub mod goreplay;
pub mod har;
pub mod jsonl;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::error::CaptureError;
use crate::exchange::{RecordedRequest, RecordedResponse};

/// One captured request, with the responses the capture recorded, if any.
#[derive(Debug, Clone)]
pub struct CapturedRequest {
    /// When it was captured (used to keep the original order).
    pub ts: Option<DateTime<Utc>>,
    pub request: RecordedRequest,
    /// The response the original target gave, when recorded.
    pub primary: Option<RecordedResponse>,
    /// The shadow's response, when the mirror proxy recorded it.
    pub candidate: Option<RecordedResponse>,
    /// An authored line whose templates a replay fills per target
    /// ([`crate::template`]); captured traffic is always sent verbatim.
    pub templates: bool,
}

/// The capture formats `compare replay` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CaptureFormat {
    /// Mirror-proxy JSON Lines capture.
    Jsonl,
    /// HTTP Archive 1.2.
    Har,
    /// GoReplay `.gor` file.
    Goreplay,
}

impl CaptureFormat {
    /// Guesses the format from the extension, then from the first bytes.
    pub fn detect(path: &Path, head: &[u8]) -> Option<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl" | "ndjson") => return Some(Self::Jsonl),
            Some("har") => return Some(Self::Har),
            Some("gor") => return Some(Self::Goreplay),
            _ => {}
        }
        let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            // A HAR is one JSON document whose first key is "log".
            let compact: String = trimmed
                .chars()
                .filter(|c| !c.is_whitespace())
                .take(8)
                .collect();
            if compact.starts_with("{\"log\"") {
                Some(Self::Har)
            } else {
                Some(Self::Jsonl)
            }
        } else if trimmed.starts_with("1 ") || trimmed.contains(goreplay::SEPARATOR.trim()) {
            Some(Self::Goreplay)
        } else {
            None
        }
    }
}

/// Reads a capture file in any supported format (`format` overrides
/// detection). Requests come back in capture order.
pub fn read(
    path: &Path,
    format: Option<CaptureFormat>,
) -> Result<Vec<CapturedRequest>, CaptureError> {
    let bytes = std::fs::read(path).map_err(|source| CaptureError::Read {
        path: path.to_owned(),
        source,
    })?;
    let format = format
        .or_else(|| CaptureFormat::detect(path, &bytes))
        .ok_or_else(|| CaptureError::UnknownFormat {
            path: path.to_owned(),
        })?;
    parse_all(path, format, &bytes)
}

/// Parses a whole capture and puts it in capture order.
fn parse_all(
    path: &Path,
    format: CaptureFormat,
    bytes: &[u8],
) -> Result<Vec<CapturedRequest>, CaptureError> {
    let mut requests = match format {
        CaptureFormat::Jsonl => jsonl::parse(path, bytes)?,
        CaptureFormat::Har => har::parse(path, bytes)?,
        CaptureFormat::Goreplay => goreplay::parse(path, bytes)?,
    };
    // Stable: requests without a timestamp keep their place.
    if requests.iter().all(|r| r.ts.is_some()) {
        requests.sort_by_key(|r| r.ts);
    }
    Ok(requests)
}

/// A capture read one request at a time: see [`open`].
#[derive(Debug)]
pub enum CaptureStream {
    /// A JSONL capture, parsed line by line as it is read.
    Jsonl(jsonl::JsonlReader<BufReader<File>>),
    /// A HAR or GoReplay capture, parsed whole.
    Loaded(std::vec::IntoIter<CapturedRequest>),
}

impl Iterator for CaptureStream {
    type Item = Result<CapturedRequest, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Jsonl(reader) => reader.next(),
            Self::Loaded(requests) => requests.next().map(Ok),
        }
    }
}

/// Opens a capture to go through it once, one request at a time (`format`
/// overrides detection), for consumers that do not need the whole capture at
/// once (`compare diff`).
///
/// A JSONL capture is streamed: memory stays flat whatever its size, and
/// the first error (with its line number) comes when its line is reached,
/// after the requests before it. Requests come in **file order**: unlike
/// [`read`], they are not sorted by `ts`, which would need the whole file.
/// The mirror proxy stamps `ts` as it appends a line, so its captures are
/// in `ts` order already; and a diff record depends only on its own
/// exchange, so order changes only the order of records in the output (and
/// so which examples a report picks first), not their content.
///
/// HAR and GoReplay captures are read and parsed whole, sorted like
/// [`read`], then handed out one by one.
pub fn open(path: &Path, format: Option<CaptureFormat>) -> Result<CaptureStream, CaptureError> {
    let read_error = |source| CaptureError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let format = match format {
        Some(format) => format,
        None => {
            let head = reader.fill_buf().map_err(read_error)?;
            CaptureFormat::detect(path, head).ok_or_else(|| CaptureError::UnknownFormat {
                path: path.to_owned(),
            })?
        }
    };
    if format == CaptureFormat::Jsonl {
        return Ok(CaptureStream::Jsonl(jsonl::JsonlReader::new(reader, path)));
    }
    // Go on from the reader (not the path), so the bytes sniffed above are
    // not lost when the capture is a pipe.
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(read_error)?;
    Ok(CaptureStream::Loaded(
        parse_all(path, format, &bytes)?.into_iter(),
    ))
}

/// Builds a header map from name/value pairs, skipping pairs that are not
/// valid HTTP (HTTP/2 pseudo-headers such as `:authority`, bad bytes).
pub(crate) fn header_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if name.starts_with(':') {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// Parses a method, reporting the capture position when it is invalid.
pub(crate) fn method(path: &Path, line: usize, text: &str) -> Result<Method, CaptureError> {
    Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes()).map_err(|_| {
        CaptureError::Invalid {
            path: path.to_owned(),
            line,
            reason: format!("invalid method {text:?}"),
        }
    })
}

/// Path and query of a URL (absolute or already a path).
pub(crate) fn path_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.trim().parse().ok()?;
    let pq = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    Some(if pq.is_empty() {
        "/".to_owned()
    } else {
        pq.to_owned()
    })
}
