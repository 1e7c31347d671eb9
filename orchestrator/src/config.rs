//! Configuration: every setting is a flag and an environment variable
//! (the README's table is generated from the same names).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Fixed HS256 secret of `--dev` mode. Dev mode refuses to start with a
/// Postgres `DATABASE_URL`, so this can never sign production traffic.
pub const DEV_HS256_SECRET: &str = "dev-only-secret-never-use-in-production";

#[derive(Debug, Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "SMS submit endpoint: validation, idempotency, tenant auth, outbox publishing to NATS"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the submit API (the default).
    Serve,
    /// Mint a short-lived HS256 token with the dev secret (dev mode only).
    ///
    /// Example: `orchestrator --dev token --tenant acme`
    Token {
        #[arg(long, default_value = "acme")]
        tenant: String,
        /// Lifetime, e.g. `15m`, `1h`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

/// The error envelope of a request that does not name one (`ERROR_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ErrorFormat {
    /// The legacy api-gateway's NestJS body.
    Legacy,
    /// RFC 9457 problem documents.
    Problem,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Dev mode: submit API on, HS256 with a fixed dev secret, a ready-made
    /// `curl` printed at start. Refused with a Postgres DATABASE_URL.
    #[arg(long, env = "DEV_MODE", global = true)]
    pub dev: bool,

    /// Address of the public API listener (what Kong routes to).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener: /metrics, /healthz, /readyz. Never
    /// routed by Kong.
    #[arg(long, env = "ADMIN_LISTEN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin_listen: SocketAddr,

    /// `postgres://…` for production. Unset: an embedded SQLite file at
    /// `--sqlite-path`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// SQLite file used when DATABASE_URL is unset.
    #[arg(long, env = "SQLITE_PATH", default_value = "data/orchestrator.db")]
    pub sqlite_path: PathBuf,

    /// Database pool size.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// Group commit (Postgres): most concurrent requests committed in one
    /// statement and transaction; 1 commits each request alone.
    #[arg(long, env = "DATABASE_GROUP_COMMIT", default_value_t = 64)]
    pub database_group_commit: usize,

    /// Group commit (Postgres): commits in flight at once. Requests that
    /// arrive while all are busy share the next one.
    #[arg(long, env = "DATABASE_COMMIT_CONCURRENCY", default_value_t = 4)]
    pub database_commit_concurrency: usize,

    /// Redis for the idempotency fast path. Unset: an in-process cache.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Budget for one Redis call on the request path; past it the fast path
    /// is skipped and Postgres decides alone.
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Redis key prefix of the idempotency fast path.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "orch:submit-idem:")]
    pub redis_key_prefix: String,

    /// NATS for publishing. Unset: events go to the JSONL file at `--events-file`.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,

    /// Subject of accepted messages.
    #[arg(long, env = "NATS_SUBJECT", default_value = "sms.outbound.request")]
    pub nats_subject: String,

    /// JetStream stream that must capture the subjects.
    #[arg(long, env = "NATS_STREAM", default_value = "SMS_OUTBOUND")]
    pub nats_stream: String,

    /// Subjects of the stream when the orchestrator creates it.
    #[arg(long, env = "NATS_STREAM_SUBJECTS", default_value = "sms.outbound.>")]
    pub nats_stream_subjects: String,

    /// Create (or check) the stream at start-up instead of only checking it.
    #[arg(long, env = "NATS_CREATE_STREAM")]
    pub nats_create_stream: bool,

    /// Subject of delivery status events from the SMS workers.
    #[arg(
        long,
        env = "NATS_STATUS_SUBJECT",
        default_value = "sms.outbound.status"
    )]
    pub nats_status_subject: String,

    /// Durable consumer name for status events.
    #[arg(
        long,
        env = "NATS_STATUS_CONSUMER",
        default_value = "orchestrator-status"
    )]
    pub nats_status_consumer: String,

    /// Where events go without NATS (embedded default).
    #[arg(long, env = "EVENTS_FILE", default_value = "data/events.jsonl")]
    pub events_file: PathBuf,

    /// Feature flag of the migration plan: off, the /v1/sms routes answer 404.
    #[arg(long, env = "SUBMIT_API_ENABLED")]
    pub submit_api_enabled: bool,

    /// A file of `KEY=value` lines re-read on SIGHUP and when it changes
    /// (polled twice a second); `SUBMIT_API_ENABLED` there overrides the flag.
    #[arg(long, env = "FLAGS_FILE")]
    pub flags_file: Option<PathBuf>,

    /// Most segments one message may take.
    #[arg(long, env = "MAX_SEGMENTS", default_value_t = 10)]
    pub max_segments: u32,

    /// Most items in one bulk request (the contract's ceiling is 1000).
    #[arg(long, env = "BULK_MAX_ITEMS", default_value_t = 1000)]
    pub bulk_max_items: usize,

    /// Body size limit of POST /v1/sms/send (and of JSON bodies on other
    /// paths), bytes. Unset: the legacy's, from the contract (100 kB).
    #[arg(long, env = "SEND_BODY_LIMIT")]
    pub send_body_limit: Option<usize>,

    /// Body size limit of POST /v1/sms/bulk, bytes. Unset: the legacy's,
    /// from the contract (100 kB).
    #[arg(long, env = "BULK_BODY_LIMIT")]
    pub bulk_body_limit: Option<usize>,

    /// How long a completed Idempotency-Key is replayed.
    #[arg(long, env = "IDEMPOTENCY_TTL", default_value = "48h", value_parser = humantime::parse_duration)]
    pub idempotency_ttl: Duration,

    /// How long an in-flight marker holds a key; longer than the worst request.
    #[arg(long, env = "IDEMPOTENCY_LOCK_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idempotency_lock_ttl: Duration,

    /// Make Idempotency-Key mandatory on POSTs.
    #[arg(long, env = "IDEMPOTENCY_KEY_REQUIRED")]
    pub idempotency_key_required: bool,

    /// The error envelope of a client that does not ask for one:
    /// `legacy` (the default): the NestJS body every client has today, as
    /// the cutover promises; `problem`: RFC 9457 problem documents for
    /// everyone, for a deployment whose clients all read them (after the
    /// legacy's clients have moved on, or a new product). `Accept:
    /// application/problem+json` gets problem documents either way.
    /// `problem` is a client-visible change: during the shadow and canary
    /// phases the shadow gate refuses it (tests/tests/parity_shadow.rs runs
    /// the parity corpus through mirror-proxy against it).
    #[arg(long, env = "ERROR_FORMAT", value_enum, default_value_t = ErrorFormat::Legacy)]
    pub error_format: ErrorFormat,

    /// Check every API answer against the committed contract; log each
    /// violation (`contract violation`) and count it. For tests and canaries.
    #[arg(long, env = "CHECK_RESPONSES")]
    pub check_responses: bool,

    /// Shared secret the mirror proxy sends in `X-Shadow-Credential`. Unset:
    /// every shadow-marked request is refused.
    #[arg(long, env = "SHADOW_SECRET", hide_env_values = true)]
    pub shadow_secret: Option<String>,

    /// Subject for shadow events; empty publishes shadow events nowhere.
    #[arg(
        long,
        env = "SHADOW_SUBJECT",
        default_value = "shadow.sms.outbound.request"
    )]
    pub shadow_subject: String,

    /// JWKS file with the token verification keys.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,

    /// JWKS URL with the token verification keys.
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Enables HS256 with this shared secret.
    #[arg(long, env = "JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,

    /// Required `iss`, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud`, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock leeway for `exp`/`nbf`.
    #[arg(long, env = "JWT_LEEWAY", default_value = "60s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// On a token with an unknown `kid`, the JWKS is re-read at most this often.
    #[arg(long, env = "JWT_JWKS_REFRESH_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_jwks_refresh_interval: Duration,

    /// Claim that carries the tenant.
    #[arg(long, env = "JWT_TENANT_CLAIM", default_value = "tenant_id")]
    pub jwt_tenant_claim: String,

    /// Opt-in Kong key-auth mode: the header carrying Kong's injected secret.
    #[arg(long, env = "KEY_AUTH_SECRET_HEADER", requires = "key_auth_secret")]
    pub key_auth_secret_header: Option<String>,

    /// Opt-in Kong key-auth mode: the secret Kong's request-transformer injects.
    #[arg(long, env = "KEY_AUTH_SECRET", hide_env_values = true)]
    pub key_auth_secret: Option<String>,

    /// Date of the cutover (RFC 3339 date, e.g. 2026-12-01); gateway_* metric
    /// aliases stay for 30 days after it.
    #[arg(long, env = "METRICS_CUTOVER_DATE")]
    pub metrics_cutover_date: Option<chrono::NaiveDate>,

    /// Last instant the gateway_* aliases are emitted (RFC 3339). Overrides
    /// the cutover date + 30 days.
    #[arg(long, env = "METRICS_GATEWAY_ALIAS_UNTIL")]
    pub metrics_gateway_alias_until: Option<chrono::DateTime<chrono::Utc>>,

    /// How often the reapers run (expired keys, published outbox rows, shadow rows).
    #[arg(long, env = "REAPER_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub reaper_interval: Duration,

    /// How long published outbox rows are kept (for audit) before deletion.
    #[arg(long, env = "OUTBOX_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub outbox_retention: Duration,

    /// How long shadow messages are kept before deletion.
    #[arg(long, env = "SHADOW_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub shadow_retention: Duration,

    /// `json` (default) or `pretty`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    /// How long graceful shutdown waits for in-flight requests.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// Parses flags and environment the way the binary does (for tests).
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args).map(|cli| cli.config)
    }

    /// Applies `--dev`: the flag on and a dev HS256 secret. Refused against
    /// Postgres, so the dev secret never guards real data.
    pub fn apply_dev_mode(&mut self) -> anyhow::Result<()> {
        if !self.dev {
            return Ok(());
        }
        if self.is_postgres() {
            anyhow::bail!("--dev refuses to run with a Postgres DATABASE_URL");
        }
        self.submit_api_enabled = true;
        if self.jwt_hs256_secret.is_none() {
            self.jwt_hs256_secret = Some(DEV_HS256_SECRET.to_owned());
        }
        Ok(())
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }

    /// Until when the `gateway_*` aliases are emitted, if at all.
    pub fn gateway_alias_until(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.metrics_gateway_alias_until.or_else(|| {
            self.metrics_cutover_date
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc() + chrono::Duration::days(30))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_readme_documents_every_setting() {
        let readme = include_str!("../../README.md");
        for arg in Cli::command().get_arguments() {
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    readme.contains(&format!("| `{env}` |")),
                    "README configuration table lacks {env}"
                );
            }
        }
    }

    #[test]
    fn dev_mode_is_refused_against_postgres() {
        let mut c =
            Config::from_args(["orchestrator", "--dev", "--database-url", "postgres://x/y"])
                .unwrap();
        assert!(c.apply_dev_mode().is_err());
        let mut c = Config::from_args(["orchestrator", "--dev"]).unwrap();
        c.apply_dev_mode().unwrap();
        assert!(c.submit_api_enabled);
        assert!(c.jwt_hs256_secret.is_some());
    }

    #[test]
    fn aliases_default_to_thirty_days_after_the_cutover_date() {
        let c =
            Config::from_args(["orchestrator", "--metrics-cutover-date", "2026-12-01"]).unwrap();
        assert_eq!(
            c.gateway_alias_until().unwrap().to_rfc3339(),
            "2026-12-31T00:00:00+00:00"
        );
    }
}
