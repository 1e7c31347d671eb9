//! The library's error types, one per boundary. Each variant says what the
//! operator has to fix; none of them carries request or response data, so an
//! error message is always safe to print.

use std::path::PathBuf;

/// A rules file could not be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read rules file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rules file is not valid TOML or has unknown keys: {0}")]
    Parse(String),
    #[error("unsupported rules version {0} (this build understands version 1)")]
    Version(u32),
    #[error("invalid route template {template:?}: {reason}")]
    Route { template: String, reason: String },
    #[error("invalid JSON pointer pattern {pattern:?}: {reason}")]
    Pointer { pattern: String, reason: String },
    #[error("invalid header pattern {pattern:?}")]
    Header { pattern: String },
    #[error("invalid regular expression {pattern:?}: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("invalid tolerance {value:?}: {reason}")]
    Tolerance { value: String, reason: String },
    #[error("matcher on {pointer:?}: {reason}")]
    Matcher { pointer: String, reason: String },
}

/// A capture (mirror-proxy JSONL, HAR or GoReplay) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read capture {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: cannot tell the capture format (expected .jsonl, .har or a GoReplay .gor file)"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// A diff log (JSONL of diff records) could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DiffLogError {
    #[error("diff log I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a diff record: {reason}")]
    Invalid {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot serialise a diff record: {0}")]
    Serialise(String),
}

/// Replaying a capture against the targets failed as a whole (single
/// request failures are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("invalid target URL {url:?}: {reason}")]
    Target { url: String, reason: String },
    #[error("invalid header override {header:?}: expected 'Name: value'")]
    Header { header: String },
    #[error("--rate must be between 0.001 and 1000000 requests per second, got {0}")]
    Rate(f64),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("invalid caller {caller:?}: expected 'NAME=Header: value' (or 'NAME=' for none)")]
    Caller { caller: String },
    #[error(
        "the capture sends requests as {names} but the {target} has no such caller: give each with --caller 'NAME=Header: value' (or --{target}-caller)"
    )]
    MissingCallers { target: &'static str, names: String },
    #[error(transparent)]
    DiffLog(#[from] DiffLogError),
}

/// A template of a capture line could not be filled for a target (see
/// [`crate::template`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TemplateError {
    #[error("{{{{…:{reference}}}}}: no answer to {reference:?} on this target yet")]
    NotAnswered { reference: String },
    #[error("{{{{…:{reference}}}}}: the answer to {reference:?} has {what}")]
    NoValue { reference: String, what: String },
    #[error("{{{{time:{spec}}}}}: {reason}")]
    Time { spec: String, reason: String },
    #[error("x-compare-await {header:?}: expected 'PATH POINTER VALUE'")]
    Await { header: String },
}

/// Subscribing to NATS or pairing events failed.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe { subject: String, reason: String },
    #[error(transparent)]
    DiffLog(#[from] DiffLogError),
}

/// A report could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("template error: {0}")]
    Template(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialise the report: {0}")]
    Serialise(String),
}

/// Learning noise from a diff log, or writing accepted proposals into the
/// rules file, failed.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("cannot read rules file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rules file {path} is not valid TOML: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("rules file {path}: {reason}")]
    Shape { path: PathBuf, reason: String },
    #[error("cannot write rules file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the updated rules file no longer compiles: {0}")]
    Rules(#[from] RulesError),
}
