//! Configuration: every setting is a flag and an environment variable
//! (the README's table is generated from the same names).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::secret::{Secret, SecretError, resolve};

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

/// Every setting. The infrastructure settings are grouped in sections
/// (`#[command(flatten)]`, same flags and environment variables as
/// before); each background task is handed only its section. Secrets are
/// [`Secret`]s and load from `*_FILE` too ([`Config::load_secrets`], run
/// once in [`crate::startup::build`]).
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

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub nats: NatsConfig,

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

    #[command(flatten)]
    pub shadow: ShadowConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    /// Date of the cutover (RFC 3339 date, e.g. 2026-12-01); gateway_* metric
    /// aliases stay for 30 days after it.
    #[arg(long, env = "METRICS_CUTOVER_DATE")]
    pub metrics_cutover_date: Option<chrono::NaiveDate>,

    /// Last instant the gateway_* aliases are emitted (RFC 3339). Overrides
    /// the cutover date + 30 days.
    #[arg(long, env = "METRICS_GATEWAY_ALIAS_UNTIL")]
    pub metrics_gateway_alias_until: Option<chrono::DateTime<chrono::Utc>>,

    #[command(flatten)]
    pub retention: RetentionConfig,

    /// `json` (default) or `pretty`.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: String,

    /// How long graceful shutdown waits for in-flight requests.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How long a client may take to send a request's head (request line
    /// and headers), counted from its first byte or, on a kept-alive
    /// connection, from the end of the previous answer. Past it the
    /// connection is closed (slowloris). Node's server, the legacy's, had
    /// 60 s; Kong in front has its own.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a client may take to send a request's body once its head
    /// is in. Past it the answer is `408` (`request-timeout`) and the
    /// connection is closed: a body that never finishes holds no task.
    #[arg(long, env = "BODY_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
}

/// Token verification and Kong key-auth (the [`crate::auth`] step).
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// JWKS file with the token verification keys.
    #[arg(id = "jwt_jwks_file", long = "jwt-jwks-file", env = "JWT_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,

    /// JWKS URL with the token verification keys: `https://` (system roots
    /// plus JWT_JWKS_CA_FILE) or `http://`.
    #[arg(id = "jwt_jwks_url", long = "jwt-jwks-url", env = "JWT_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// PEM file of extra root certificates trusted for an https JWKS URL
    /// (a private CA), added to the system roots.
    #[arg(
        id = "jwt_jwks_ca_file",
        long = "jwt-jwks-ca-file",
        env = "JWT_JWKS_CA_FILE"
    )]
    pub jwks_ca_file: Option<PathBuf>,

    /// Enables HS256 with this shared secret (at least 32 bytes).
    #[arg(
        id = "jwt_hs256_secret",
        long = "jwt-hs256-secret",
        env = "JWT_HS256_SECRET",
        hide_env_values = true
    )]
    pub hs256_secret: Option<Secret>,

    /// File holding JWT_HS256_SECRET.
    #[arg(
        id = "jwt_hs256_secret_file",
        long = "jwt-hs256-secret-file",
        env = "JWT_HS256_SECRET_FILE"
    )]
    pub hs256_secret_file: Option<PathBuf>,

    /// Required `iss`, when set.
    #[arg(id = "jwt_issuer", long = "jwt-issuer", env = "JWT_ISSUER")]
    pub issuer: Option<String>,

    /// Required `aud`, when set.
    #[arg(id = "jwt_audience", long = "jwt-audience", env = "JWT_AUDIENCE")]
    pub audience: Option<String>,

    /// Clock leeway for `exp`/`nbf`.
    #[arg(id = "jwt_leeway", long = "jwt-leeway", env = "JWT_LEEWAY", default_value = "60s", value_parser = humantime::parse_duration)]
    pub leeway: Duration,

    /// On a token with an unknown `kid`, the JWKS is re-read at most this often.
    #[arg(id = "jwt_jwks_refresh_interval", long = "jwt-jwks-refresh-interval", env = "JWT_JWKS_REFRESH_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwks_refresh_interval: Duration,

    /// Claim that carries the tenant.
    #[arg(
        id = "jwt_tenant_claim",
        long = "jwt-tenant-claim",
        env = "JWT_TENANT_CLAIM",
        default_value = "tenant_id"
    )]
    pub tenant_claim: String,

    /// Opt-in Kong key-auth mode: the header carrying Kong's injected secret.
    #[arg(
        id = "key_auth_secret_header",
        long = "key-auth-secret-header",
        env = "KEY_AUTH_SECRET_HEADER"
    )]
    pub key_auth_secret_header: Option<String>,

    /// Opt-in Kong key-auth mode: the secret Kong's request-transformer injects.
    #[arg(
        id = "key_auth_secret",
        long = "key-auth-secret",
        env = "KEY_AUTH_SECRET",
        hide_env_values = true
    )]
    pub key_auth_secret: Option<Secret>,

    /// File holding KEY_AUTH_SECRET.
    #[arg(
        id = "key_auth_secret_file",
        long = "key-auth-secret-file",
        env = "KEY_AUTH_SECRET_FILE"
    )]
    pub key_auth_secret_file: Option<PathBuf>,
}

/// The store: Postgres (with TLS and credentials) or embedded SQLite.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// `postgres://…` for production (libpq's URL parameters, `sslmode`,
    /// `sslrootcert`, `sslcert`, `sslkey`, apply). Unset: an embedded SQLite
    /// file at `--sqlite-path`.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub url: Option<RedactedUrl>,

    /// Password for DATABASE_URL's user (overrides one in the URL).
    #[arg(
        id = "database_password",
        long = "database-password",
        env = "DATABASE_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<Secret>,

    /// File holding DATABASE_PASSWORD.
    #[arg(
        id = "database_password_file",
        long = "database-password-file",
        env = "DATABASE_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// TLS to Postgres: `disable`, `prefer` (libpq's default: TLS if the
    /// server offers it, unverified), `require` (TLS, unverified),
    /// `verify-ca` (the chain, not the name) or `verify-full` (chain and
    /// host name). Overrides the URL's `sslmode`.
    #[arg(id = "database_sslmode", long = "database-sslmode", env = "DATABASE_SSLMODE", value_parser = ["disable", "prefer", "require", "verify-ca", "verify-full"])]
    pub sslmode: Option<String>,

    /// PEM file of the root certificate(s) the server's chain must lead to
    /// (verify-ca, verify-full). Unset: the system roots.
    #[arg(
        id = "database_ssl_root_cert",
        long = "database-ssl-root-cert",
        env = "DATABASE_SSL_ROOT_CERT"
    )]
    pub ssl_root_cert: Option<PathBuf>,

    /// PEM client certificate, for servers that authenticate clients by
    /// certificate (`hostssl … cert`).
    #[arg(
        id = "database_ssl_cert",
        long = "database-ssl-cert",
        env = "DATABASE_SSL_CERT",
        requires = "database_ssl_key"
    )]
    pub ssl_cert: Option<PathBuf>,

    /// PEM private key of DATABASE_SSL_CERT.
    #[arg(
        id = "database_ssl_key",
        long = "database-ssl-key",
        env = "DATABASE_SSL_KEY",
        requires = "database_ssl_cert"
    )]
    pub ssl_key: Option<PathBuf>,

    /// SQLite file used when DATABASE_URL is unset.
    #[arg(
        id = "sqlite_path",
        long = "sqlite-path",
        env = "SQLITE_PATH",
        default_value = "data/orchestrator.db"
    )]
    pub sqlite_path: PathBuf,

    /// Database pool size.
    #[arg(
        id = "database_max_connections",
        long = "database-max-connections",
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,

    /// Group commit (Postgres): most concurrent requests committed in one
    /// statement and transaction; 1 commits each request alone.
    #[arg(
        id = "database_group_commit",
        long = "database-group-commit",
        env = "DATABASE_GROUP_COMMIT",
        default_value_t = 64
    )]
    pub group_commit: usize,

    /// Group commit (Postgres): commits in flight at once. Requests that
    /// arrive while all are busy share the next one. Two measured best on
    /// the submit bench (#17, `bench/RESULTS.md`): fewer, larger commits
    /// for less CPU and more throughput than three or four.
    #[arg(
        id = "database_commit_concurrency",
        long = "database-commit-concurrency",
        env = "DATABASE_COMMIT_CONCURRENCY",
        default_value_t = 2
    )]
    pub commit_concurrency: usize,
}

/// The idempotency fast path.
#[derive(Debug, Clone, Args)]
pub struct RedisConfig {
    /// Redis for the idempotency fast path: `redis://` or `rediss://` (TLS).
    /// Unset: an in-process cache.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "REDIS_URL",
        hide_env_values = true
    )]
    pub url: Option<RedactedUrl>,

    /// ACL user (Redis 6+); overrides one in the URL.
    #[arg(id = "redis_username", long = "redis-username", env = "REDIS_USERNAME")]
    pub username: Option<String>,

    /// Password of the ACL user (or `requirepass`); overrides one in the URL.
    #[arg(
        id = "redis_password",
        long = "redis-password",
        env = "REDIS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<Secret>,

    /// File holding REDIS_PASSWORD.
    #[arg(
        id = "redis_password_file",
        long = "redis-password-file",
        env = "REDIS_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// PEM root certificate(s) for `rediss://` instead of the system roots.
    #[arg(id = "redis_ca_file", long = "redis-ca-file", env = "REDIS_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// PEM client certificate for `rediss://` (`tls-auth-clients yes`).
    #[arg(
        id = "redis_client_cert",
        long = "redis-client-cert",
        env = "REDIS_CLIENT_CERT",
        requires = "redis_client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of REDIS_CLIENT_CERT.
    #[arg(
        id = "redis_client_key",
        long = "redis-client-key",
        env = "REDIS_CLIENT_KEY",
        requires = "redis_client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// Budget for one Redis call on the request path; past it the fast path
    /// is skipped and Postgres decides alone.
    #[arg(id = "redis_timeout", long = "redis-timeout", env = "REDIS_TIMEOUT", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Redis key prefix of the idempotency fast path.
    #[arg(
        id = "redis_key_prefix",
        long = "redis-key-prefix",
        env = "REDIS_KEY_PREFIX",
        default_value = "orch:submit-idem:"
    )]
    pub key_prefix: String,
}

/// Publishing (relay) and status events.
#[derive(Debug, Clone, Args)]
pub struct NatsConfig {
    /// NATS for publishing: `nats://` or `tls://` (TLS required), several
    /// comma-separated. Unset: events go to the JSONL file at `--events-file`.
    #[arg(
        id = "nats_url",
        long = "nats-url",
        env = "NATS_URL",
        hide_env_values = true
    )]
    pub url: Option<RedactedUrl>,

    /// PEM root certificate(s) for TLS to NATS instead of the system roots.
    #[arg(id = "nats_ca_file", long = "nats-ca-file", env = "NATS_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// PEM client certificate for NATS servers that verify clients.
    #[arg(
        id = "nats_client_cert",
        long = "nats-client-cert",
        env = "NATS_CLIENT_CERT",
        requires = "nats_client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of NATS_CLIENT_CERT.
    #[arg(
        id = "nats_client_key",
        long = "nats-client-key",
        env = "NATS_CLIENT_KEY",
        requires = "nats_client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// NATS user (with NATS_PASSWORD). One authentication mode at most:
    /// user/password, token, NKey seed or creds file.
    #[arg(id = "nats_user", long = "nats-user", env = "NATS_USER")]
    pub user: Option<String>,

    /// Password of NATS_USER.
    #[arg(
        id = "nats_password",
        long = "nats-password",
        env = "NATS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<Secret>,

    /// File holding NATS_PASSWORD.
    #[arg(
        id = "nats_password_file",
        long = "nats-password-file",
        env = "NATS_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,

    /// NATS authentication token.
    #[arg(
        id = "nats_token",
        long = "nats-token",
        env = "NATS_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<Secret>,

    /// File holding NATS_TOKEN.
    #[arg(
        id = "nats_token_file",
        long = "nats-token-file",
        env = "NATS_TOKEN_FILE"
    )]
    pub token_file: Option<PathBuf>,

    /// NKey seed (`SU…`) of an NKey user.
    #[arg(
        id = "nats_nkey_seed",
        long = "nats-nkey-seed",
        env = "NATS_NKEY_SEED",
        hide_env_values = true
    )]
    pub nkey_seed: Option<Secret>,

    /// File holding NATS_NKEY_SEED.
    #[arg(
        id = "nats_nkey_seed_file",
        long = "nats-nkey-seed-file",
        env = "NATS_NKEY_SEED_FILE"
    )]
    pub nkey_seed_file: Option<PathBuf>,

    /// A `.creds` file (user JWT + NKey seed, decentralised auth).
    #[arg(
        id = "nats_creds_file",
        long = "nats-creds-file",
        env = "NATS_CREDS_FILE"
    )]
    pub creds_file: Option<PathBuf>,

    /// Subject of accepted messages.
    #[arg(
        id = "nats_subject",
        long = "nats-subject",
        env = "NATS_SUBJECT",
        default_value = "sms.outbound.request"
    )]
    pub subject: String,

    /// JetStream stream that must capture NATS_SUBJECT and NATS_STATUS_SUBJECT.
    #[arg(
        id = "nats_stream",
        long = "nats-stream",
        env = "NATS_STREAM",
        default_value = "SMS_OUTBOUND"
    )]
    pub stream: String,

    /// Subjects of that stream when the orchestrator creates it
    /// (comma-separated).
    #[arg(
        id = "nats_stream_subjects",
        long = "nats-stream-subjects",
        env = "NATS_STREAM_SUBJECTS",
        default_value = "sms.outbound.>"
    )]
    pub stream_subjects: String,

    /// JetStream stream of shadow events (SHADOW_SUBJECT), kept apart from
    /// the live stream so no worker reading live events ever sees one;
    /// created with SHADOW_RETENTION as its max age. Not needed (nor
    /// created) when the live stream already captures SHADOW_SUBJECT.
    #[arg(
        id = "nats_shadow_stream",
        long = "nats-shadow-stream",
        env = "NATS_SHADOW_STREAM",
        default_value = "SMS_SHADOW"
    )]
    pub shadow_stream: String,

    /// Create the streams at start-up if missing (an existing stream is
    /// checked, never changed). Off: they must exist.
    #[arg(
        id = "nats_create_stream",
        long = "nats-create-stream",
        env = "NATS_CREATE_STREAM"
    )]
    pub create_stream: bool,

    /// Subject of delivery status events from the SMS workers.
    #[arg(
        id = "nats_status_subject",
        long = "nats-status-subject",
        env = "NATS_STATUS_SUBJECT",
        default_value = "sms.outbound.status"
    )]
    pub status_subject: String,

    /// Durable consumer name for status events.
    #[arg(
        id = "nats_status_consumer",
        long = "nats-status-consumer",
        env = "NATS_STATUS_CONSUMER",
        default_value = "orchestrator-status"
    )]
    pub status_consumer: String,

    /// Where events go without NATS (embedded default).
    #[arg(
        id = "events_file",
        long = "events-file",
        env = "EVENTS_FILE",
        default_value = "data/events.jsonl"
    )]
    pub events_file: PathBuf,
}

/// Shadow traffic from the mirror proxy.
#[derive(Debug, Clone, Args)]
pub struct ShadowConfig {
    /// Shared secret the mirror proxy sends in `X-Shadow-Credential`. Unset:
    /// every shadow-marked request is refused.
    #[arg(
        id = "shadow_secret",
        long = "shadow-secret",
        env = "SHADOW_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<Secret>,

    /// File holding SHADOW_SECRET.
    #[arg(
        id = "shadow_secret_file",
        long = "shadow-secret-file",
        env = "SHADOW_SECRET_FILE"
    )]
    pub secret_file: Option<PathBuf>,

    /// Subject for shadow events; empty publishes shadow events nowhere.
    #[arg(
        id = "shadow_subject",
        long = "shadow-subject",
        env = "SHADOW_SUBJECT",
        default_value = "shadow.sms.outbound.request"
    )]
    pub subject: String,
}

/// What the reapers delete, and when.
#[derive(Debug, Clone, Args)]
pub struct RetentionConfig {
    /// How often the reapers run (expired keys, published outbox rows, shadow rows).
    #[arg(id = "reaper_interval", long = "reaper-interval", env = "REAPER_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub reaper_interval: Duration,

    /// How long published outbox rows are kept (for audit) before deletion.
    #[arg(id = "outbox_retention", long = "outbox-retention", env = "OUTBOX_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub outbox_retention: Duration,

    /// How long shadow messages and their outbox rows (published or not)
    /// are kept before deletion; also the max age of the shadow stream.
    #[arg(id = "shadow_retention", long = "shadow-retention", env = "SHADOW_RETENTION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub shadow_retention: Duration,
}

/// A service URL (it may carry a password): `Debug` masks the password.
#[derive(Clone)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = self
            .0
            .split(',')
            .map(|u| crate::secret::redact_url(u.trim()))
            .collect::<Vec<_>>()
            .join(",");
        f.write_str(&redacted)
    }
}

impl std::str::FromStr for RedactedUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
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
        if self.database.is_postgres() {
            anyhow::bail!("--dev refuses to run with a Postgres DATABASE_URL");
        }
        self.submit_api_enabled = true;
        if self.auth.hs256_secret.is_none() && self.auth.hs256_secret_file.is_none() {
            self.auth.hs256_secret = Some(Secret::new(DEV_HS256_SECRET));
        }
        Ok(())
    }

    /// Reads every `*_FILE` secret into its setting (refusing a secret
    /// given both ways), so the rest of the program sees one value.
    pub fn load_secrets(&mut self) -> Result<(), SecretError> {
        fn load(
            name: &'static str,
            value: &mut Option<Secret>,
            file: &mut Option<PathBuf>,
        ) -> Result<(), SecretError> {
            *value = resolve(name, value.as_ref(), file.as_deref())?;
            *file = None;
            Ok(())
        }
        let a = &mut self.auth;
        load(
            "JWT_HS256_SECRET",
            &mut a.hs256_secret,
            &mut a.hs256_secret_file,
        )?;
        load(
            "KEY_AUTH_SECRET",
            &mut a.key_auth_secret,
            &mut a.key_auth_secret_file,
        )?;
        let d = &mut self.database;
        load("DATABASE_PASSWORD", &mut d.password, &mut d.password_file)?;
        let r = &mut self.redis;
        load("REDIS_PASSWORD", &mut r.password, &mut r.password_file)?;
        let n = &mut self.nats;
        load("NATS_PASSWORD", &mut n.password, &mut n.password_file)?;
        load("NATS_TOKEN", &mut n.token, &mut n.token_file)?;
        load("NATS_NKEY_SEED", &mut n.nkey_seed, &mut n.nkey_seed_file)?;
        let s = &mut self.shadow;
        load("SHADOW_SECRET", &mut s.secret, &mut s.secret_file)?;
        Ok(())
    }

    /// Whether the store is Postgres.
    pub fn is_postgres(&self) -> bool {
        self.database.is_postgres()
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

impl DatabaseConfig {
    pub fn is_postgres(&self) -> bool {
        self.url.as_ref().is_some_and(|u| {
            u.expose().starts_with("postgres://") || u.expose().starts_with("postgresql://")
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
                let long = arg.get_long().unwrap_or_default();
                assert!(
                    readme.contains(&format!("| `{env}` | `--{long}` |")),
                    "README configuration table lacks `{env}` with `--{long}`"
                );
            }
        }
    }

    #[test]
    fn every_secret_setting_has_a_file_twin_and_hides_its_value() {
        let command = Cli::command();
        let args: Vec<_> = command.get_arguments().collect();
        for secret in [
            "JWT_HS256_SECRET",
            "KEY_AUTH_SECRET",
            "DATABASE_PASSWORD",
            "REDIS_PASSWORD",
            "NATS_PASSWORD",
            "NATS_TOKEN",
            "NATS_NKEY_SEED",
            "SHADOW_SECRET",
        ] {
            let arg = args
                .iter()
                .find(|a| a.get_env().is_some_and(|e| e == secret))
                .unwrap_or_else(|| panic!("{secret} is a setting"));
            assert!(
                arg.is_hide_env_values_set(),
                "{secret} shows its value in --help"
            );
            let file = format!("{secret}_FILE");
            assert!(
                args.iter()
                    .any(|a| a.get_env().is_some_and(|e| e == file.as_str())),
                "{secret} has no {file}"
            );
        }
    }

    #[test]
    fn secrets_load_from_files_and_never_print_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, value: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, value).unwrap();
            p.display().to_string()
        };
        let mut c = Config::from_args([
            "orchestrator".to_owned(),
            format!(
                "--jwt-hs256-secret-file={}",
                file("jwt", "jwt-secret-from-file-0123456789abcdef\n")
            ),
            format!(
                "--shadow-secret-file={}",
                file("shadow", "shadow-secret-from-file")
            ),
            format!(
                "--database-password-file={}",
                file("db", "db-password-from-file\n")
            ),
            format!(
                "--redis-password-file={}",
                file("redis", "redis-password-from-file")
            ),
            format!(
                "--nats-nkey-seed-file={}",
                file("nkey", "SUAnkey-seed-from-file")
            ),
            "--key-auth-secret=key-auth-secret-inline".to_owned(),
            "--database-url=postgres://orch:url-password-inline@db/orch".to_owned(),
        ])
        .unwrap();
        c.load_secrets().unwrap();
        assert_eq!(
            c.auth.hs256_secret.as_ref().unwrap().expose(),
            "jwt-secret-from-file-0123456789abcdef"
        );
        assert_eq!(
            c.shadow.secret.as_ref().unwrap().expose(),
            "shadow-secret-from-file"
        );
        assert_eq!(
            c.database.password.as_ref().unwrap().expose(),
            "db-password-from-file"
        );
        let debug = format!("{c:?} {c:#?}");
        for secret in [
            "jwt-secret-from-file",
            "shadow-secret-from-file",
            "db-password-from-file",
            "redis-password-from-file",
            "nkey-seed-from-file",
            "key-auth-secret-inline",
            "url-password-inline",
        ] {
            assert!(!debug.contains(secret), "{secret} in Debug output");
        }
        let both = Config::from_args([
            "orchestrator".to_owned(),
            "--shadow-secret=inline".to_owned(),
            format!("--shadow-secret-file={}", file("shadow2", "file")),
        ]);
        assert!(
            both.unwrap()
                .load_secrets()
                .unwrap_err()
                .to_string()
                .contains("SHADOW_SECRET")
        );
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
        assert!(c.auth.hs256_secret.is_some());
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
