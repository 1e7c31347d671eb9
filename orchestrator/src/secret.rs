//! Secrets: a value that never prints, and the `*_FILE` convention.
//!
//! Every secret setting can be given directly (`JWT_HS256_SECRET=…`) or as
//! a file (`JWT_HS256_SECRET_FILE=/run/secrets/jwt`), the Kubernetes and
//! Docker convention: a mounted secret never enters the environment, so it
//! is not in `/proc/<pid>/environ`, `docker inspect` or a crash dump of the
//! environment. Giving both is refused (which one wins would be a guess). A
//! file's trailing line break is dropped (`echo secret > file` writes one);
//! anything else is kept as written.
//!
//! [`Secret`] is the only type a secret travels in: its `Debug` prints
//! `<redacted>`, it has no `Display`, and reading it takes an explicit
//! [`Secret::expose`], so a secret cannot reach a log line, `--help`, a
//! `Debug` dump of the configuration or a panic message by accident.

use std::fmt;
use std::path::{Path, PathBuf};

/// A secret value. Compare with [`Secret::expose`] only where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it (a connection, a MAC).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Why a secret could not be loaded. Names the setting, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{name} and {name}_FILE are both set; set one")]
    Both { name: &'static str },
    #[error("{name}_FILE {path}: {source}")]
    Unreadable {
        name: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}_FILE {path} is empty")]
    Empty { name: &'static str, path: PathBuf },
}

/// The secret given directly or in a file (`name` is the environment
/// variable, for the error message).
pub fn resolve(
    name: &'static str,
    direct: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, SecretError> {
    match (direct, file) {
        (Some(_), Some(_)) => Err(SecretError::Both { name }),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::Unreadable {
                name,
                path: path.to_owned(),
                source,
            })?;
            let value = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            if value.is_empty() {
                return Err(SecretError::Empty {
                    name,
                    path: path.to_owned(),
                });
            }
            Ok(Some(Secret::new(value)))
        }
    }
}

/// `url` with its password replaced by `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
    }

    #[test]
    fn a_file_secret_loses_one_trailing_line_break_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "  spaced secret \n").unwrap();
        let s = resolve("X", None, Some(&p)).unwrap().unwrap();
        assert_eq!(s.expose(), "  spaced secret ");
        std::fs::write(&p, "crlf\r\n").unwrap();
        assert_eq!(
            resolve("X", None, Some(&p)).unwrap().unwrap().expose(),
            "crlf"
        );
    }

    #[test]
    fn both_an_empty_file_or_a_missing_file_are_errors_that_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "\n").unwrap();
        let e = resolve("SHADOW_SECRET", None, Some(&p)).unwrap_err();
        assert!(e.to_string().contains("SHADOW_SECRET_FILE"), "{e}");
        let e = resolve("SHADOW_SECRET", Some(&Secret::new("v")), Some(&p)).unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
        let e = resolve("SHADOW_SECRET", None, Some(&dir.path().join("nope"))).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert_eq!(resolve("SHADOW_SECRET", None, None).unwrap(), None);
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://orch:s3cr3t@db:5432/orch?sslmode=verify-full"),
            "postgres://orch:***@db:5432/orch?sslmode=verify-full"
        );
        assert_eq!(
            redact_url("rediss://default:pw@cache:6380"),
            "rediss://default:***@cache:6380"
        );
        assert_eq!(redact_url("nats://n:4222"), "nats://n:4222");
    }
}
