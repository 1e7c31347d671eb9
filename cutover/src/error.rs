//! The library's errors: what went wrong, in words an operator can act on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("description: {0}")]
    Description(String),
    #[error("{0}")]
    Step(String),
    #[error("{path}: not YAML this tool can read: {message}")]
    Yaml { path: String, message: String },
    #[error("rules: {0}")]
    Rules(String),
    #[error("prometheus: {0}")]
    Prometheus(String),
}
