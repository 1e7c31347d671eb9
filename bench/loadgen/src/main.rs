//! `loadgen`: drives `POST /v1/sms/send` (or `GET /v1/sms/{id}`) the way
//! production clients do and `wrk` cannot: every request with its own
//! Idempotency-Key and, optionally, a freshly minted token.
//!
//! * closed loop (`--clients N`, no `--rate`): N clients back to back, for
//!   peak throughput;
//! * open loop (`--rate R`): requests are *scheduled* at a fixed rate (one
//!   uniform schedule, any idle connection takes the next request) and
//!   latency is measured from the scheduled instant, so a stalled server
//!   is charged for the queue it causes (no coordinated omission). The
//!   JSON line adds `late_p50_ms`/`late_p99_ms`: how late requests left
//!   against their schedule (the harness's own share of the latency).
//!
//! * bulk (`--mode bulk --bulk-size N`): one client sends N-item
//!   `POST /v1/sms/bulk` requests one after another; per request it records
//!   the accept latency and, with `--nats-url`, the time from sending the
//!   request until the last of its N `sms.outbound.request` events arrived
//!   on NATS (matched by message id).
//!
//! Prints one table row (and `--json` a machine-readable line).

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(about, long_about = None, after_help = "Example: loadgen --url http://127.0.0.1:8080 --secret $JWT_HS256_SECRET --clients 16 --duration 10s")]
struct Args {
    /// Base URL of the orchestrator.
    #[arg(long)]
    url: String,
    /// HS256 secret the orchestrator trusts (tokens are minted with it).
    #[arg(long, env = "JWT_HS256_SECRET", hide_env_values = true)]
    secret: String,
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Concurrent clients (closed loop) or connections (open loop).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Open loop at this many requests per second; unset: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// `send`, `get` (GETs read messages created in a warm-up) or `bulk`.
    #[arg(long, default_value = "send")]
    mode: String,
    /// Items per bulk request (`--mode bulk`).
    #[arg(long, default_value_t = 1000)]
    bulk_size: usize,
    /// NATS server to watch for the bulk requests' events (`--mode bulk`).
    #[arg(long)]
    nats_url: Option<String>,
    /// Subject the orchestrator publishes `sms.outbound.request` on.
    #[arg(long, default_value = "sms.outbound.request")]
    nats_subject: String,
    /// Mint a new token for every request (as many distinct clients would).
    #[arg(long)]
    fresh_tokens: bool,
    /// Print a JSON line too.
    #[arg(long)]
    json: bool,
    /// Label of the row.
    #[arg(long, default_value = "orchestrator")]
    label: String,
}

struct Shared {
    hist: Histogram<u64>,
    /// Open loop: how late a request left against its due instant (the
    /// pacer's wake-up plus the wait for a free connection).
    lateness: Histogram<u64>,
    ok: u64,
    errors: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Arc::new(Args::parse());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let token =
        orchestrator::auth::mint_dev_token(&args.secret, &args.tenant, Duration::from_secs(3600))?;
    if args.mode == "bulk" {
        return bulk(&client, &args, &token).await;
    }
    let ids = Arc::new(if args.mode == "get" {
        warm_up(&client, &args, &token, 200).await?
    } else {
        Vec::new()
    });
    let shared = Arc::new(Mutex::new(Shared {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        lateness: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        ok: 0,
        errors: 0,
    }));
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut tasks = Vec::new();
    // Open loop: a pacer thread hands out tickets, ticket i due at
    // `start + i / rate`, and any idle connection takes the next one (a
    // connection pool under a steady arrival stream). Latency counts from
    // the ticket's due instant, so a ticket that waits for a free
    // connection is charged for the wait (no coordinated omission). The
    // pacer sleeps with `std::thread::sleep` (hrtimer, ~60 µs late here)
    // rather than tokio's 1 ms timer wheel, which made every request up
    // to a millisecond late; its remaining lateness is reported apart.
    let tickets = args.rate.map(|rate| {
        let (tx, rx) = async_channel::unbounded::<Instant>();
        std::thread::spawn(move || {
            for i in 0u64.. {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if due >= deadline {
                    break;
                }
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if tx.send_blocking(due).is_err() {
                    break;
                }
            }
        });
        rx
    });
    for worker in 0..args.clients {
        let (args, client, token, ids, shared, tickets) = (
            args.clone(),
            client.clone(),
            token.clone(),
            ids.clone(),
            shared.clone(),
            tickets.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n: u64 = 0;
            loop {
                let scheduled = match &tickets {
                    Some(tickets) => match tickets.recv().await {
                        Ok(due) => due,
                        Err(_) => break,
                    },
                    None => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        now
                    }
                };
                let lateness = micros(scheduled.elapsed());
                n += 1;
                let ok = one(&client, &args, &token, &ids, worker, n).await;
                let mut s = shared.lock().await;
                let _ = s.hist.record(micros(scheduled.elapsed()));
                let _ = s.lateness.record(lateness);
                if ok { s.ok += 1 } else { s.errors += 1 }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let s = shared.lock().await;
    let ms = |q: f64| s.hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        args.label,
        args.mode,
        args.rate
            .map_or(format!("closed c={}", args.clients), |r| format!(
                "open {r}/s"
            )),
        s.ok as f64 / elapsed,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        s.hist.max() as f64 / 1000.0,
        s.errors
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"label": args.label, "mode": args.mode, "rps": s.ok as f64 / elapsed,
                "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "max_ms": s.hist.max() as f64 / 1000.0,
                "ok": s.ok, "errors": s.errors,
                "late_p50_ms": s.lateness.value_at_quantile(0.5) as f64 / 1000.0,
                "late_p99_ms": s.lateness.value_at_quantile(0.99) as f64 / 1000.0})
        );
    }
    Ok(())
}

async fn one(
    client: &reqwest::Client,
    args: &Args,
    token: &str,
    ids: &[String],
    worker: usize,
    n: u64,
) -> bool {
    let fresh;
    let token = if args.fresh_tokens {
        fresh = orchestrator::auth::mint_dev_token(
            &args.secret,
            &args.tenant,
            Duration::from_secs(600),
        )
        .unwrap_or_default();
        fresh.as_str()
    } else {
        token
    };
    let request = if args.mode == "get" {
        let id = &ids[(n as usize + worker) % ids.len().max(1)];
        client.get(format!("{}/v1/sms/{id}", args.url))
    } else {
        client
            .post(format!("{}/v1/sms/send", args.url))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header("content-type", "application/json")
            .body(r#"{"to":"+447700900123","from":"Acme","body":"Your code is 123456"}"#)
    };
    match request
        .bearer_auth(token)
        .header("X-Tenant-Id", &args.tenant)
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

async fn warm_up(
    client: &reqwest::Client,
    args: &Args,
    token: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let v: serde_json::Value = client
            .post(format!("{}/v1/sms/send", args.url))
            .bearer_auth(token)
            .header("X-Tenant-Id", &args.tenant)
            .json(&serde_json::json!({"to": "+447700900123", "from": "Acme", "body": "warm"}))
            .send()
            .await?
            .json()
            .await?;
        ids.push(v["id"].as_str().unwrap_or_default().to_owned());
    }
    Ok(ids)
}

/// Bulk requests back to back, one at a time, so each request's events can
/// be told apart: accept latency, and request-sent → last event seen.
async fn bulk(client: &reqwest::Client, args: &Args, token: &str) -> anyhow::Result<()> {
    use futures::StreamExt;
    let mut events = match &args.nats_url {
        Some(url) => Some(
            async_nats::connect(url)
                .await?
                .subscribe(args.nats_subject.clone())
                .await?,
        ),
        None => None,
    };
    let item = serde_json::json!({"to": "+447700900123", "body": "Your code is 123456"});
    let body = serde_json::to_vec(&serde_json::json!({
        "defaults": {"from": "Acme"},
        "messages": vec![item; args.bulk_size],
    }))?;
    let mut accept = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut published = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut ok, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < args.duration {
        let sent = Instant::now();
        let response = client
            .post(format!("{}/v1/sms/bulk", args.url))
            .bearer_auth(token)
            .header("X-Tenant-Id", &args.tenant)
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let answer: serde_json::Value = match response {
            Ok(r) if r.status().is_success() => r.json().await?,
            _ => {
                errors += 1;
                continue;
            }
        };
        let _ = accept.record(micros(sent.elapsed()));
        let mut pending: std::collections::HashSet<String> = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        if pending.len() != args.bulk_size {
            errors += 1;
            continue;
        }
        ok += 1;
        if let Some(events) = events.as_mut() {
            let wait = tokio::time::timeout(Duration::from_secs(30), async {
                while !pending.is_empty() {
                    let Some(message) = events.next().await else {
                        break;
                    };
                    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&message.payload)
                        && let Some(id) = event["id"].as_str()
                    {
                        pending.remove(id);
                    }
                }
            })
            .await;
            if wait.is_err() || !pending.is_empty() {
                anyhow::bail!(
                    "{} events of a bulk request not seen within 30 s",
                    pending.len()
                );
            }
            let _ = published.record(micros(sent.elapsed()));
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "| {} | bulk {} | closed c=1 | {} requests | accept p50 {:.1} ms p99 {:.1} ms max {:.1} ms | last event p50 {:.1} ms p99 {:.1} ms max {:.1} ms | {} errors |",
        args.label,
        args.bulk_size,
        ok,
        ms(&accept, 0.5),
        ms(&accept, 0.99),
        accept.max() as f64 / 1000.0,
        ms(&published, 0.5),
        ms(&published, 0.99),
        published.max() as f64 / 1000.0,
        errors
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"label": args.label, "mode": "bulk", "bulk_size": args.bulk_size,
                "requests": ok, "errors": errors,
                "accept_p50_ms": ms(&accept, 0.5), "accept_p99_ms": ms(&accept, 0.99),
                "accept_max_ms": accept.max() as f64 / 1000.0,
                "events_p50_ms": ms(&published, 0.5), "events_p99_ms": ms(&published, 0.99),
                "events_max_ms": published.max() as f64 / 1000.0})
        );
    }
    Ok(())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}
