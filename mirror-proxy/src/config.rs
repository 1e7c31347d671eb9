//! Configuration: a TOML file, then flags and environment variables on top.
//!
//! The file is re-read on `SIGHUP` (and, with `reload_interval`, when its
//! modification time changes); flags and environment variables are applied
//! again on top of every reload, so a value pinned by a flag stays pinned.
//! Listeners, the diff log path and the capture path are fixed at start;
//! everything else (primary, shadow, sampling, correlation, rules) takes
//! effect for requests that start after the reload. Requests in flight keep
//! the settings they started with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Flags and environment variables. Each one overrides the file.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mirror-proxy",
    version,
    about = "Shadow-phase sidecar: forwards to the primary (legacy api-gateway), tees a sampled, \
             marked copy to the shadow (orchestrator) and diffs both answers",
    after_help = "Example:\n  mirror-proxy --config mirror-proxy.toml\n  \
                  mirror-proxy --listen 127.0.0.1:8480 --primary 127.0.0.1:3000 \\\n    \
                  --shadow http://127.0.0.1:8080 --shadow-credential \"$SHADOW_SECRET\" \\\n    \
                  --sample-percent 10 --diff-log shadow-diff.jsonl"
)]
pub struct Cli {
    /// TOML config file (see docs/shadow-phase.md). Re-read on SIGHUP.
    #[arg(long, env = "MIRROR_CONFIG")]
    pub config: Option<PathBuf>,

    /// Proxy listener (what Kong or Envoy routes to). Port 0 picks a free port.
    #[arg(long, env = "MIRROR_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Admin listener: /metrics, /healthz. Port 0 picks a free port.
    #[arg(long, env = "MIRROR_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// The primary (legacy api-gateway), `host:port`.
    #[arg(long, env = "MIRROR_PRIMARY")]
    pub primary: Option<String>,

    /// The shadow (orchestrator) base URL, `http://host:port`.
    #[arg(long, env = "MIRROR_SHADOW")]
    pub shadow: Option<String>,

    /// The credential sent in `X-Shadow-Credential` (the orchestrator's SHADOW_SECRET).
    #[arg(long, env = "MIRROR_SHADOW_CREDENTIAL", hide_env_values = true)]
    pub shadow_credential: Option<Secret>,

    /// File holding the shadow credential (a mounted secret; re-read on
    /// reload, so a rotated secret is picked up by SIGHUP).
    #[arg(long, env = "MIRROR_SHADOW_CREDENTIAL_FILE")]
    pub shadow_credential_file: Option<PathBuf>,

    /// Share of requests mirrored, in percent, for routes without their own value.
    #[arg(long, env = "MIRROR_SAMPLE_PERCENT")]
    pub sample_percent: Option<f64>,

    /// Header whose value decides sampling deterministically (e.g. x-request-id).
    #[arg(long, env = "MIRROR_SAMPLE_HASH_HEADER")]
    pub sample_hash_header: Option<String>,

    /// Most shadow requests in flight; more are dropped and counted.
    #[arg(long, env = "MIRROR_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,

    /// Largest request body mirrored, bytes; bigger requests are not mirrored.
    #[arg(long, env = "MIRROR_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Timeout of one shadow request, e.g. `2s`.
    #[arg(long, env = "MIRROR_SHADOW_TIMEOUT", value_parser = humantime::parse_duration)]
    pub shadow_timeout: Option<Duration>,

    /// Diff log (JSONL of diff records, what `compare report` reads).
    #[arg(long, env = "MIRROR_DIFF_LOG")]
    pub diff_log: Option<PathBuf>,

    /// Capture file (JSONL, what `compare replay` reads). Holds request
    /// bodies as sent: personal data.
    #[arg(long, env = "MIRROR_CAPTURE")]
    pub capture: Option<PathBuf>,

    /// Extra rules files laid over compare's default rules (repeatable).
    #[arg(long = "rules", env = "MIRROR_RULES", value_delimiter = ',')]
    pub rules: Vec<PathBuf>,

    /// Key of the HMAC that hashes phone numbers and message text in the
    /// diff log: the same DIFF_REDACTION_KEY `compare` reads, so hashes
    /// compare across both tools. The old name MIRROR_REDACTION_KEY (and
    /// COMPARE_REDACT_KEY) still works, with a deprecation warning.
    #[arg(long, env = "DIFF_REDACTION_KEY", hide_env_values = true)]
    pub redaction_key: Option<Secret>,

    /// File holding DIFF_REDACTION_KEY (a mounted secret).
    #[arg(long, env = "DIFF_REDACTION_KEY_FILE")]
    pub redaction_key_file: Option<PathBuf>,

    /// Write diff records unredacted (never in production).
    #[arg(long)]
    pub no_redact: bool,

    /// Worker threads of the proxy service.
    #[arg(long, env = "MIRROR_THREADS")]
    pub threads: Option<usize>,

    /// `json` (default) or `pretty`.
    #[arg(long, env = "MIRROR_LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    /// Load and check the configuration, print it (secrets hidden), exit.
    #[arg(long)]
    pub check: bool,
}

/// The file, as written. Every key has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub threads: Option<usize>,
    /// Path answered by the proxy listener itself (Kong/Envoy health checks).
    pub health_path: Option<String>,
    /// Poll the file for changes this often (e.g. `"2s"`); unset: SIGHUP only.
    pub reload_interval: Option<String>,
    pub primary: PrimaryFile,
    pub shadow: ShadowFile,
    pub sampling: SamplingFile,
    pub correlation: CorrelationFile,
    pub diff: DiffFile,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrimaryFile {
    /// `host:port` of the legacy api-gateway.
    pub address: Option<String>,
    pub tls: bool,
    /// SNI and certificate name when `tls` (default: the host of `address`).
    pub sni: Option<String>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowFile {
    /// `http://host:port` of the orchestrator; unset: nothing is mirrored.
    pub url: Option<String>,
    pub credential: Option<Secret>,
    /// Environment variable holding the credential (keeps it out of the file).
    pub credential_env: Option<String>,
    /// File holding the credential (a mounted secret).
    pub credential_file: Option<PathBuf>,
    /// Append `-shadow` to the Host as Envoy does (default true).
    pub host_suffix: Option<bool>,
    pub timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub max_in_flight: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub max_response_bytes: Option<usize>,
    pub pool_idle_per_host: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingFile {
    /// Percent of requests mirrored for routes not listed in `routes`.
    pub percent: Option<f64>,
    /// Hash this header's value (FNV-1a) to decide, so a replay or a second
    /// proxy picks the same requests. Requests without it are sampled at random.
    pub hash_header: Option<String>,
    /// Per-route percent, keyed by route template (`"POST /v1/sms/send"`).
    pub routes: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationFile {
    pub enabled: Option<bool>,
    pub ttl: Option<String>,
    pub max_entries: Option<usize>,
    /// Mirror `GET /v1/sms/{id}` with an id the proxy has not learned, as is.
    pub mirror_unknown: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiffFile {
    /// Start from compare's shipped rules (default true).
    pub default_rules: Option<bool>,
    /// Rules files laid over them, in order.
    pub rules: Vec<PathBuf>,
    pub log: Option<PathBuf>,
    pub rotate_bytes: Option<u64>,
    pub keep_files: Option<usize>,
    pub redact: Option<bool>,
    /// Environment variable holding the redaction key, when it is not the
    /// default `DIFF_REDACTION_KEY`.
    pub redaction_key_env: Option<String>,
    /// File holding the redaction key (a mounted secret).
    pub redaction_key_file: Option<PathBuf>,
    pub capture: Option<PathBuf>,
    /// Exchanges waiting for the diff service; more are dropped and counted.
    pub queue: Option<usize>,
    /// Keep the request in every record, not only in `differs` ones.
    pub keep_request_always: Option<bool>,
}

/// Settings fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct StaticSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    pub health_path: String,
    pub reload_interval: Option<Duration>,
    pub diff_log: Option<PathBuf>,
    pub rotate_bytes: u64,
    pub keep_files: usize,
    pub capture: Option<PathBuf>,
    pub queue: usize,
    pub redact: bool,
    pub redaction_key: Option<Secret>,
    /// Where the key came from (`explicit`, or a deprecated variable).
    pub redaction_key_source: Option<String>,
    /// Deprecated or conflicting key variables, logged at start.
    pub redaction_key_warnings: Vec<String>,
}

/// A secret value whose `Debug` never prints it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[hidden]")
    }
}

/// Settings that a reload replaces.
#[derive(Debug, Clone)]
pub struct DynamicSettings {
    pub primary: PrimarySettings,
    pub shadow: Option<ShadowSettings>,
    pub sampling: SamplingFile,
    pub correlation: CorrelationSettings,
    pub default_rules: bool,
    pub rules: Vec<PathBuf>,
    pub keep_request_always: bool,
}

#[derive(Debug, Clone)]
pub struct PrimarySettings {
    pub address: String,
    pub tls: bool,
    pub sni: String,
    pub connect_timeout: Duration,
    pub read_timeout: Option<Duration>,
}

#[derive(Clone)]
pub struct ShadowSettings {
    pub url: reqwest::Url,
    pub credential: String,
    pub host_suffix: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_in_flight: usize,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    pub pool_idle_per_host: usize,
}

impl std::fmt::Debug for ShadowSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credential.
        f.debug_struct("ShadowSettings")
            .field("url", &self.url.as_str())
            .field("credential", &"[hidden]")
            .field("host_suffix", &self.host_suffix)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct CorrelationSettings {
    pub enabled: bool,
    pub ttl: Duration,
    pub max_entries: usize,
    pub mirror_unknown: bool,
}

/// A configuration problem, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// A secret given directly or as a file (`*_FILE`, the Kubernetes
/// convention); both is refused. A file's one trailing line break is
/// dropped. Errors name the setting, never the value.
fn secret(
    key: &'static str,
    direct: Option<&String>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    match (direct, file) {
        (Some(_), Some(_)) => Err(invalid(key, "set it or its _FILE, not both")),
        (Some(value), None) => Ok(Some(value.clone())),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(key, format!("file {}: {e}", path.display())))?;
            let value = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            if value.is_empty() {
                return Err(invalid(key, format!("file {} is empty", path.display())));
            }
            Ok(Some(value.to_owned()))
        }
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn duration(
    key: &'static str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t).map_err(|e| invalid(key, e.to_string())),
    }
}

/// Reads the file (if any). Missing file path: all defaults.
pub fn read_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// The fixed settings from the file and the flags.
pub fn static_settings(file: &FileConfig, cli: &Cli) -> Result<StaticSettings, ConfigError> {
    let default_listen: SocketAddr = ([127, 0, 0, 1], 8480).into();
    let default_admin: SocketAddr = ([127, 0, 0, 1], 9480).into();
    let health_path = file
        .health_path
        .clone()
        .unwrap_or_else(|| "/__mirror/health".to_owned());
    if !health_path.starts_with('/') {
        return Err(invalid("health_path", "must start with '/'"));
    }
    // The flag or DIFF_REDACTION_KEY (or its _FILE), else the file's
    // `redaction_key_file`, else the variable the file names, else the
    // tools' old names (with a warning each).
    let explicit = match secret(
        "DIFF_REDACTION_KEY",
        cli.redaction_key
            .as_ref()
            .map(|k| &k.0)
            .filter(|k| !k.is_empty()),
        cli.redaction_key_file.as_deref(),
    )? {
        Some(key) => Some(key),
        None => match &file.diff.redaction_key_file {
            Some(path) => secret("diff.redaction_key_file", None, Some(path))?,
            None => file
                .diff
                .redaction_key_env
                .as_deref()
                .and_then(|name| std::env::var(name).ok()),
        },
    };
    let resolved = compare::redact::resolve_redaction_key(
        explicit,
        &compare::redact::DEPRECATED_REDACTION_KEY_ENVS,
        |name| std::env::var(name).ok(),
    );
    Ok(StaticSettings {
        listen: cli.listen.or(file.listen).unwrap_or(default_listen),
        admin_listen: cli
            .admin_listen
            .or(file.admin_listen)
            .unwrap_or(default_admin),
        threads: cli.threads.or(file.threads).unwrap_or(2).max(1),
        health_path,
        reload_interval: file
            .reload_interval
            .as_deref()
            .map(|t| duration("reload_interval", Some(t), Duration::ZERO))
            .transpose()?
            .filter(|d| !d.is_zero()),
        diff_log: cli.diff_log.clone().or_else(|| file.diff.log.clone()),
        rotate_bytes: file.diff.rotate_bytes.unwrap_or(64 * 1024 * 1024).max(4096),
        keep_files: file.diff.keep_files.unwrap_or(5),
        capture: cli.capture.clone().or_else(|| file.diff.capture.clone()),
        queue: file.diff.queue.unwrap_or(4096).max(1),
        redact: !cli.no_redact && file.diff.redact.unwrap_or(true),
        redaction_key: resolved.key.map(Secret),
        redaction_key_source: resolved.source,
        redaction_key_warnings: resolved.warnings,
    })
}

/// The reloadable settings from the file and the flags.
pub fn dynamic_settings(file: &FileConfig, cli: &Cli) -> Result<DynamicSettings, ConfigError> {
    let address = cli
        .primary
        .clone()
        .or_else(|| file.primary.address.clone())
        .ok_or_else(|| {
            invalid(
                "primary.address",
                "the primary (--primary host:port) is required",
            )
        })?;
    let address = address
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    use std::net::ToSocketAddrs;
    if address
        .to_socket_addrs()
        .map(|mut a| a.next().is_none())
        .unwrap_or(true)
    {
        return Err(invalid(
            "primary.address",
            format!("{address:?} is not a reachable host:port"),
        ));
    }
    let sni = file.primary.sni.clone().unwrap_or_else(|| {
        address
            .rsplit_once(':')
            .map_or(address.as_str(), |(h, _)| h)
            .to_owned()
    });
    let primary = PrimarySettings {
        tls: file.primary.tls,
        sni,
        connect_timeout: duration(
            "primary.connect_timeout",
            file.primary.connect_timeout.as_deref(),
            Duration::from_secs(2),
        )?,
        read_timeout: file
            .primary
            .read_timeout
            .as_deref()
            .map(|t| duration("primary.read_timeout", Some(t), Duration::ZERO))
            .transpose()?,
        address,
    };

    let shadow = match cli.shadow.clone().or_else(|| file.shadow.url.clone()) {
        None => None,
        Some(url) => {
            let url =
                reqwest::Url::parse(&url).map_err(|e| invalid("shadow.url", e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid("shadow.url", "must be an http(s) URL with a host"));
            }
            let from_cli = secret(
                "MIRROR_SHADOW_CREDENTIAL",
                cli.shadow_credential.as_ref().map(|c| &c.0),
                cli.shadow_credential_file.as_deref(),
            )?;
            let from_file = match &file.shadow.credential_file {
                Some(path) => secret("shadow.credential_file", None, Some(path))?,
                None => None,
            };
            let credential = from_cli
                .or(from_file)
                .or_else(|| file.shadow.credential.clone().map(|c| c.0))
                .or_else(|| {
                    file.shadow
                        .credential_env
                        .as_deref()
                        .and_then(|name| std::env::var(name).ok())
                })
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "shadow.credential",
                        "a shadow target needs its credential (--shadow-credential or MIRROR_SHADOW_CREDENTIAL); \
                         without it the orchestrator refuses every copy",
                    )
                })?;
            Some(ShadowSettings {
                url,
                credential,
                host_suffix: file.shadow.host_suffix.unwrap_or(true),
                timeout: cli.shadow_timeout.map_or_else(
                    || {
                        duration(
                            "shadow.timeout",
                            file.shadow.timeout.as_deref(),
                            Duration::from_secs(5),
                        )
                    },
                    Ok,
                )?,
                connect_timeout: duration(
                    "shadow.connect_timeout",
                    file.shadow.connect_timeout.as_deref(),
                    Duration::from_secs(1),
                )?,
                max_in_flight: cli
                    .max_in_flight
                    .or(file.shadow.max_in_flight)
                    .unwrap_or(100),
                max_body_bytes: cli
                    .max_body_bytes
                    .or(file.shadow.max_body_bytes)
                    // Above the legacy's 100 kB body limit, so a request it
                    // refuses with 413 is mirrored and its answer compared.
                    .unwrap_or(256 * 1024),
                max_response_bytes: file.shadow.max_response_bytes.unwrap_or(1024 * 1024),
                pool_idle_per_host: file.shadow.pool_idle_per_host.unwrap_or(32),
            })
        }
    };

    let mut sampling = file.sampling.clone();
    if let Some(p) = cli.sample_percent {
        sampling.percent = Some(p);
    }
    if let Some(h) = &cli.sample_hash_header {
        sampling.hash_header = Some(h.clone());
    }
    for (route, p) in sampling
        .routes
        .iter()
        .map(|(r, p)| (r.as_str(), *p))
        .chain(sampling.percent.map(|p| ("(default)", p)))
    {
        if !(0.0..=100.0).contains(&p) {
            return Err(invalid(
                "sampling",
                format!("percent for {route} must be 0..=100, got {p}"),
            ));
        }
    }

    let correlation = CorrelationSettings {
        enabled: file.correlation.enabled.unwrap_or(true),
        ttl: duration(
            "correlation.ttl",
            file.correlation.ttl.as_deref(),
            Duration::from_secs(3600),
        )?,
        max_entries: file.correlation.max_entries.unwrap_or(100_000).max(1),
        mirror_unknown: file.correlation.mirror_unknown.unwrap_or(false),
    };

    let mut rules = file.diff.rules.clone();
    rules.extend(cli.rules.iter().cloned());
    Ok(DynamicSettings {
        primary,
        shadow,
        sampling,
        correlation,
        default_rules: file.diff.default_rules.unwrap_or(true),
        rules,
        keep_request_always: file.diff.keep_request_always.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("mirror-proxy").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig = toml::from_str(
            "[primary]\naddress = \"127.0.0.1:3000\"\n[shadow]\nurl = \"http://127.0.0.1:8080\"\n\
             credential = \"from-file\"\nmax_in_flight = 7\n[sampling]\npercent = 50.0\n",
        )
        .unwrap();
        let settings = dynamic_settings(
            &file,
            &cli(&["--sample-percent", "10", "--shadow-credential", "flag"]),
        )
        .unwrap();
        assert_eq!(settings.sampling.percent, Some(10.0));
        let shadow = settings.shadow.unwrap();
        assert_eq!(shadow.credential, "flag");
        assert_eq!(shadow.max_in_flight, 7);
        assert!(shadow.host_suffix);
    }

    #[test]
    fn a_shadow_without_credential_or_a_bad_share_is_refused() {
        let file: FileConfig = toml::from_str(
            "[primary]\naddress = \"127.0.0.1:3000\"\n[shadow]\nurl = \"http://127.0.0.1:8080\"\n",
        )
        .unwrap();
        assert!(dynamic_settings(&file, &cli(&[])).is_err());
        let file: FileConfig = toml::from_str(
            "[primary]\naddress = \"127.0.0.1:3000\"\n[sampling]\npercent = 250.0\n",
        )
        .unwrap();
        assert!(dynamic_settings(&file, &cli(&[])).is_err());
        assert!(
            toml::from_str::<FileConfig>("[primary]\nadress = \"x\"\n").is_err(),
            "typos are errors"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let file: FileConfig = toml::from_str(
            "[primary]\naddress = \"127.0.0.1:3000\"\n[shadow]\nurl = \"http://127.0.0.1:8080\"\ncredential = \"s3cret-cred\"\n",
        )
        .unwrap();
        let cli = cli(&["--redaction-key", "s3cret-key"]);
        let text = format!(
            "{:?} {:?}",
            static_settings(&file, &cli).unwrap(),
            dynamic_settings(&file, &cli).unwrap()
        );
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn the_credential_and_the_redaction_key_load_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let credential = dir.path().join("credential");
        std::fs::write(&credential, "credential-from-file-77\n").unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "redaction-key-from-file-88").unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(
            &path,
            "[primary]\naddress = \"127.0.0.1:3000\"\n[shadow]\nurl = \"http://127.0.0.1:8080\"\n",
        )
        .unwrap();
        let file = read_file(Some(&path)).unwrap();
        let cli = cli(&[
            "--shadow-credential-file",
            credential.to_str().unwrap(),
            "--redaction-key-file",
            key.to_str().unwrap(),
        ]);
        let dynamic = dynamic_settings(&file, &cli).unwrap();
        assert_eq!(
            dynamic.shadow.as_ref().unwrap().credential,
            "credential-from-file-77"
        );
        let fixed = static_settings(&file, &cli).unwrap();
        assert_eq!(
            fixed.redaction_key.as_ref().unwrap().0,
            "redaction-key-from-file-88"
        );
        let shown = format!("{dynamic:?} {fixed:?} {cli:?}");
        assert!(!shown.contains("credential-from-file"), "{shown}");
        assert!(!shown.contains("redaction-key-from-file"), "{shown}");
        let both = self::cli(&[
            "--shadow-credential",
            "x",
            "--shadow-credential-file",
            credential.to_str().unwrap(),
        ]);
        assert!(dynamic_settings(&file, &both).is_err());
    }
}
