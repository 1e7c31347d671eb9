//! Wiring: [`build`] connects everything and binds both listeners (port 0
//! works; the real addresses are reported), [`Application::run_until`]
//! serves until the shutdown future resolves, then drains: stop accepting,
//! finish in-flight requests, stop the background tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthSettings, Authenticator, KeyAuthSettings};
use crate::config::{AuthConfig, Config};
use crate::contract::Contract;
use crate::flag::SubmitFlag;
use crate::idempotency::IdempotencyCache;
use crate::metrics::{self, Metrics};
use crate::relay::{EventSink, Relay};
use crate::state::{AppState, Shared};
use crate::store::Store;

#[derive(Debug)]
pub struct Application {
    api: TcpListener,
    admin: TcpListener,
    state: AppState,
    sink: EventSink,
    reloader: crate::reload::Reloader,
}

/// Auth settings from the auth section (secrets already loaded).
pub fn auth_settings(config: &AuthConfig) -> anyhow::Result<AuthSettings> {
    let key_auth = match (&config.key_auth_secret_header, &config.key_auth_secret) {
        (Some(header), Some(secret)) => Some(KeyAuthSettings {
            secret_header: header.clone(),
            secret: secret.expose().to_owned(),
        }),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!(
            "KEY_AUTH_SECRET_HEADER is set without KEY_AUTH_SECRET (or KEY_AUTH_SECRET_FILE)"
        ),
        (None, Some(_)) => {
            anyhow::bail!("KEY_AUTH_SECRET is set without KEY_AUTH_SECRET_HEADER")
        }
    };
    Ok(AuthSettings {
        jwks_file: config.jwks_file.clone(),
        jwks_url: config.jwks_url.clone(),
        jwks_ca_file: config.jwks_ca_file.clone(),
        hs256_secret: config.hs256_secret.as_ref().map(|s| s.expose().to_owned()),
        issuer: config.issuer.clone(),
        audience: config.audience.clone(),
        leeway: config.leeway,
        tenant_claim: config.tenant_claim.clone(),
        jwks_refresh_min_interval: config.jwks_refresh_interval,
        key_auth,
    })
}

/// Loads the `*_FILE` secrets, applies dev mode, then [`build_with_clock`]
/// with the system clock.
pub async fn build(mut config: Config) -> anyhow::Result<Application> {
    config.load_secrets()?;
    config.apply_dev_mode()?;
    build_with_clock(config, metrics::system_clock()).await
}

/// [`build`] with an injected clock for the metric alias cut-off.
pub async fn build_with_clock(
    config: Config,
    clock: metrics::Clock,
) -> anyhow::Result<Application> {
    let metrics = Metrics::new(config.gateway_alias_until(), clock);
    let contract = Contract::embedded()?;
    let conformance = config
        .check_responses
        .then(crate::conformance::Conformance::embedded)
        .transpose()?;
    let store = Store::connect(&config.database, Some(metrics.commit_requests.clone()))
        .await
        .map_err(|e| e.context("database (DATABASE_URL)"))?;
    let cache = IdempotencyCache::connect(&config.redis, metrics.clone())
        .await
        .map_err(|e| e.context("redis (REDIS_URL)"))?;
    let auth = Authenticator::new(auth_settings(&config.auth)?)
        .await
        .map_err(|e| e.context("JWT verification keys"))?;
    let mut enabled = config.submit_api_enabled;
    if let Some(path) = &config.flags_file
        && let Some(on) = crate::flag::read_flag(path)?
    {
        enabled = on;
    }
    let flag = SubmitFlag::new(enabled, metrics.clone());
    if let Some(path) = &config.flags_file {
        flag.clone().watch(path.clone());
    }
    let reloader = crate::reload::Reloader::install(
        flag.clone(),
        config.flags_file.clone(),
        auth.clone(),
        config.auth.jwks_file.is_some() || config.auth.jwks_url.is_some(),
    )?;
    let (sink, health) = EventSink::connect(&config.nats, &config.shadow, &config.retention)
        .await
        .map_err(|e| e.context("nats (NATS_URL)"))?;
    // The streams are checked now when NATS answers, so a layout that
    // would lose events (a subject no stream captures) stops the start;
    // during an outage the relay checks them once NATS is back.
    if sink.is_connected() {
        sink.ensure_streams()
            .await
            .map_err(|e| e.context("nats (NATS_URL): JetStream streams"))?;
    }
    let api = TcpListener::bind(config.listen).await?;
    let admin = TcpListener::bind(config.admin_listen).await?;
    if config.error_format != crate::config::ErrorFormat::Legacy {
        tracing::warn!(
            "ERROR_FORMAT=problem: clients that do not ask for problem documents get them anyway, unlike the legacy api-gateway's; never during the shadow or canary phases"
        );
    }
    if config.gateway_alias_until().is_none() {
        tracing::warn!(
            "no METRICS_CUTOVER_DATE or METRICS_GATEWAY_ALIAS_UNTIL: gateway_* aliases stay on"
        );
    }
    let state = AppState::new(Shared {
        config,
        contract,
        store,
        cache,
        auth,
        metrics,
        flag,
        relay_wake: Arc::new(Notify::new()),
        sink: health,
        conformance,
    });
    Ok(Application {
        api,
        admin,
        state,
        sink,
        reloader,
    })
}

impl Application {
    pub fn api_addr(&self) -> SocketAddr {
        self.api
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let state = self.state;
        let relay = Relay {
            store: state.store.clone(),
            sink: self.sink.clone(),
            health: state.sink.clone(),
            wake: state.relay_wake.clone(),
            metrics: state.metrics.clone(),
            live_subject: state.config.nats.subject.clone(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(relay.run(stop.clone()));
        tasks.spawn(crate::reaper::run(
            state.store.clone(),
            crate::reaper::Retention::new(&state.config.retention, &state.config.shadow),
            state.metrics.clone(),
            stop.clone(),
        ));
        tasks.spawn(refresh_jwks(state.auth.clone(), stop.clone()));
        tasks.spawn(self.reloader.run(stop.clone()));
        if let Some((_, js)) = self.sink.nats() {
            tasks.spawn(crate::status_events::run(
                js.clone(),
                state.config.nats.clone(),
                state.store.clone(),
                state.metrics.clone(),
                stop.clone(),
            ));
        }
        let admin_stop = stop.clone();
        let admin = axum::serve(self.admin, crate::routes::admin(state.clone()))
            .with_graceful_shutdown(async move { admin_stop.cancelled().await });
        let admin = tokio::spawn(async move { admin.await });

        let grace = state.config.shutdown_grace;
        let draining = CancellationToken::new();
        let drain_signal = draining.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining in-flight requests");
            drain_signal.cancel();
        });
        let api = crate::server::serve(
            self.api,
            crate::routes::api(state.clone()),
            state.config.header_read_timeout,
            {
                let d = draining.clone();
                async move { d.cancelled().await }
            },
        );
        let served = async {
            api.await;
            anyhow::Ok(())
        };
        tokio::pin!(served);
        tokio::select! {
            r = &mut served => r?,
            () = async { draining.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "grace period over; closing remaining connections");
            }
        }
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        let _ = admin.await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// How often the JWKS is re-read even when no token names an unknown `kid`,
/// so a key the identity provider withdrew stops verifying.
const JWKS_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);

async fn refresh_jwks(auth: Authenticator, stop: CancellationToken) {
    let mut tick = tokio::time::interval(JWKS_REFRESH);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = auth.refresh_jwks().await {
                    tracing::warn!(error = %format!("{e:#}"), "periodic JWKS refresh failed; keeping the cached keys");
                }
            }
            () = stop.cancelled() => return,
        }
    }
}
