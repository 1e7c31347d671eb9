//! The orchestrator binary: parse config, set up logs, run the library.

use clap::Parser;

/// mimalloc: a profile of the submit path showed ~9 % of the process in
/// glibc malloc/free. Its v2 line (workspace feature `v2`): v3 keeps freed
/// pages committed for 1 s (`purge_delay`), which held a 1000-item bulk
/// run at 96 MiB peak RSS; v2 returns them after 10 ms (51 MiB, same run).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use orchestrator::config::{Cli, Command, DEV_HS256_SECRET};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // One TLS crypto provider for every rustls user in the process (the JWKS
    // client, NATS over TLS): ring, which pingora and async-nats use too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let config = cli.config;
    if let Some(Command::Token { tenant, ttl }) = &cli.command {
        if !config.dev {
            anyhow::bail!("`token` mints dev tokens and runs only with --dev (DEV_MODE=true)");
        }
        println!(
            "{}",
            orchestrator::auth::mint_dev_token(DEV_HS256_SECRET, tenant, *ttl)?
        );
        return Ok(());
    }
    orchestrator::telemetry::init(&config.log_format);
    let app = match orchestrator::startup::build(config).await {
        Ok(app) => app,
        Err(e) => {
            // One JSON line naming the dependency and the reason (the
            // contexts of `build`), never a secret: errors carry setting
            // names and redacted URLs only.
            tracing::error!(error = %format!("{e:#}"), "start-up failed");
            std::process::exit(1);
        }
    };
    let (api, admin) = (app.api_addr(), app.admin_addr());
    tracing::info!(api_addr = %api, admin_addr = %admin, store = app.state().store.dialect(), "listening");
    if app.state().config.dev {
        orchestrator::dev::print_quickstart(api, admin)?;
    }
    app.run_until(shutdown_signal()).await
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
