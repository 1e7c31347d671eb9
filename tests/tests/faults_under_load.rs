//! The fault suite: each scenario starts private Postgres, Redis and NATS
//! on random ports, the real orchestrator (one or two) and, for two of
//! them, mirror-proxy in front of the legacy gateway simulator; drives a
//! steady submit load (sends and bulks; unique, repeated and no
//! Idempotency-Keys; two tenants sharing key names), injects one fault
//! mid-load, recovers, drains, and counts the invariants from Postgres and
//! the whole stream (see `integration_tests::faults` and
//! docs/reliability.md):
//!
//! * every accepted (`201`) id is in Postgres under its tenant, and on the
//!   stream exactly once (by `Nats-Msg-Id`, delivered once to a consumer);
//! * no event without a stored live message, no shadow event on the live
//!   subject, no stored message nobody could have been told about beyond the
//!   unkeyed requests whose outcome was unknown;
//! * every replay (during the load and after recovery) returns the original
//!   answer byte for byte; every keyed request resolves after recovery;
//! * answers are `201`, `409` (key in flight, with `Retry-After`) or `503`
//!   with `Retry-After`; no new acceptance while Postgres is down; no request
//!   takes longer than [`faults::DEADLINE`];
//! * through mirror-proxy the clients get only the primary's answers.
//!
//! All scenarios run in this one test, one after the other (they measure
//! time and share two cores); the table of counts is printed, written to
//! `$CARGO_TARGET_TMPDIR/faults-table.md`, and, with
//! `FAULTS_RECORD=docs/reliability.md`, into that file between its markers.

use std::time::Duration;

use integration_tests::faults::{self, Expect, Load, Row, Stack, StackSpec, Tenants};

/// Clients of the orchestrators, each one request per [`INTERVAL`] at most.
const WORKERS: usize = 6;
const INTERVAL: Duration = Duration::from_millis(60);
/// Load before the fault and after recovery.
const WARM: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// NATS SIGKILLed for 20 s (the figure), then started again on
    /// its store.
    NatsDown,
    /// NATS stopped, its store deleted, started again empty.
    NatsWiped,
    RedisKilled,
    RedisFlushed,
    /// Redis replies delayed 50 ms (REDIS_TIMEOUT is 10 ms) for 4 s, then
    /// stalled for 2 s.
    RedisSlow,
    /// The orchestrator's NATS link stalled 7 s (past the 5 s PubAck
    /// timeout: outcomes unknown, rows republished with the same
    /// `Nats-Msg-Id`), then healed and the held bytes delivered.
    NatsStalled,
    /// Postgres stopped (immediate) for 5 s, then started again.
    PostgresRestart,
    /// 80 ms added to every Postgres read and write for 5 s.
    PostgresSlow,
    /// The orchestrator SIGKILLed and started again.
    OrchestratorKilled,
    /// Two orchestrators; one SIGKILLed, never restarted (its leased
    /// outbox rows are the other's after the lease).
    OneOfTwoKilled,
    /// Two orchestrators, each drained (SIGTERM) and started again in turn.
    RollingRestart,
    /// NATS down 8 s with mirror-proxy (100 %) in front.
    MirrorNatsDown,
    /// Postgres restarted (5 s) with mirror-proxy (100 %) in front.
    MirrorPostgresRestart,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::NatsDown => "NATS killed 20 s",
            Fault::NatsWiped => "NATS restarted with its store wiped",
            Fault::NatsStalled => "NATS link stalled 7 s",
            Fault::RedisKilled => "Redis killed 5 s",
            Fault::RedisFlushed => "Redis flushed (twice)",
            Fault::RedisSlow => "Redis slow (50 ms) then stalled",
            Fault::PostgresRestart => "Postgres restarted (down 5 s)",
            Fault::PostgresSlow => "Postgres slow (+80 ms per read/write)",
            Fault::OrchestratorKilled => "orchestrator SIGKILLed, restarted",
            Fault::OneOfTwoKilled => "two orchestrators, one SIGKILLed",
            Fault::RollingRestart => "rolling restart of two",
            Fault::MirrorNatsDown => "mirror-proxy 100 %, NATS killed 8 s",
            Fault::MirrorPostgresRestart => "mirror-proxy 100 %, Postgres restarted",
        }
    }

    fn spec(self) -> StackSpec {
        StackSpec {
            orchestrators: match self {
                Fault::OneOfTwoKilled | Fault::RollingRestart => 2,
                _ => 1,
            },
            pg_proxy: matches!(self, Fault::PostgresSlow),
            redis_proxy: matches!(self, Fault::RedisSlow),
            nats_proxy: matches!(self, Fault::NatsStalled),
            mirror: matches!(self, Fault::MirrorNatsDown | Fault::MirrorPostgresRestart),
        }
    }

    /// Injects the fault and recovers from it, the load running.
    async fn inject(self, stack: &mut Stack, load: &Load) -> Expect {
        let mut expect = Expect::default();
        match self {
            Fault::NatsDown | Fault::MirrorNatsDown => {
                stack.nats.stop();
                let down = if matches!(self, Fault::NatsDown) {
                    20
                } else {
                    8
                };
                tokio::time::sleep(Duration::from_secs(down)).await;
                stack.nats.resume().await;
            }
            Fault::NatsWiped => {
                expect.lost_by_nats = stack.wipe_nats().await;
                expect.log_must_contain = Some("JetStream stream missing");
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Fault::NatsStalled => {
                let p = stack.nats_proxy.as_ref().expect("nats proxy");
                p.stall();
                tokio::time::sleep(Duration::from_secs(7)).await;
                p.heal();
            }
            Fault::RedisKilled => {
                stack.redis.stop();
                tokio::time::sleep(Duration::from_secs(5)).await;
                stack.redis.resume().await;
            }
            Fault::RedisFlushed => {
                stack.redis.flush().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                stack.redis.flush().await;
            }
            Fault::RedisSlow => {
                let p = stack.redis_proxy.as_ref().expect("redis proxy");
                p.delay(Duration::from_millis(50));
                tokio::time::sleep(Duration::from_secs(4)).await;
                p.stall();
                tokio::time::sleep(Duration::from_secs(2)).await;
                p.heal();
            }
            Fault::PostgresRestart | Fault::MirrorPostgresRestart => {
                let from = load.now();
                stack.pg.stop();
                tokio::time::sleep(Duration::from_secs(5)).await;
                let to = load.now();
                stack.pg.resume();
                expect.pg_outage = Some((from, to));
            }
            Fault::PostgresSlow => {
                let p = stack.pg_proxy.as_ref().expect("postgres proxy");
                p.delay(Duration::from_millis(80));
                tokio::time::sleep(Duration::from_secs(5)).await;
                p.heal();
            }
            Fault::OrchestratorKilled => {
                stack.kill(0).await;
                expect.transport_errors_allowed = true;
                tokio::time::sleep(Duration::from_millis(500)).await;
                stack.restart(0).await;
            }
            Fault::OneOfTwoKilled => {
                stack.kill(1).await;
                expect.transport_errors_allowed = true;
                // The killed one's leased rows wait out the 10 s lease.
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Fault::RollingRestart => {
                for i in 0..2 {
                    stack.drain(i).await;
                    stack.restart(i).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        expect
    }
}

async fn scenario(fault: Fault) -> (Row, Vec<String>) {
    let mut stack = Stack::start(fault.spec()).await;
    let tenants = Tenants::new();
    let load = Load::start(
        stack.targets.clone(),
        stack.mirror.as_ref().map(|m| m.url.clone()),
        tenants.clone(),
        WORKERS,
        INTERVAL,
    );
    tokio::time::sleep(WARM).await;
    let expect = fault.inject(&mut stack, &load).await;
    tokio::time::sleep(WARM).await;
    let outcomes = load.finish().await;
    let row = faults::settle(fault.name(), &stack, &tenants, outcomes, &expect).await;
    let violations = row.violations(&expect);
    (row, violations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invariant_holds_under_each_fault() {
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for fault in [
        Fault::NatsDown,
        Fault::NatsWiped,
        Fault::NatsStalled,
        Fault::RedisKilled,
        Fault::RedisFlushed,
        Fault::RedisSlow,
        Fault::PostgresRestart,
        Fault::PostgresSlow,
        Fault::OrchestratorKilled,
        Fault::OneOfTwoKilled,
        Fault::RollingRestart,
        Fault::MirrorNatsDown,
        Fault::MirrorPostgresRestart,
    ] {
        // FAULTS_ONLY=<part of a name>: run just those (while working on one).
        if let Ok(only) = std::env::var("FAULTS_ONLY")
            && !fault.name().contains(only.as_str())
        {
            continue;
        }
        let t = std::time::Instant::now();
        // A panic inside a scenario is its failure, not the suite's end.
        match tokio::spawn(scenario(fault)).await {
            Ok((row, violations)) => {
                println!("{} took {:.1} s", fault.name(), t.elapsed().as_secs_f64());
                failures.extend(violations);
                rows.push(row);
            }
            Err(e) => failures.push(format!("{}: panicked: {e}", fault.name())),
        }
    }
    let table = faults::table(&rows);
    println!(
        "\n{table}\nsuite wall time {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-table.md");
    std::fs::write(&out, &table).expect("write the table");
    if let Ok(doc) = std::env::var("FAULTS_RECORD") {
        record(&doc, &table, started.elapsed());
    }
    assert!(
        failures.is_empty(),
        "invariants broken:\n{}",
        failures.join("\n")
    );
}

/// Replaces the table between `<!-- faults:table -->` and
/// `<!-- /faults:table -->` in `doc` (relative to the repository root).
fn record(doc: &str, table: &str, took: Duration) {
    let path = integration_tests::repo_root().join(doc);
    let text = std::fs::read_to_string(&path).expect("read the doc");
    let (head, rest) = text
        .split_once("<!-- faults:table -->")
        .expect("a <!-- faults:table --> marker");
    let (_, tail) = rest
        .split_once("<!-- /faults:table -->")
        .expect("a <!-- /faults:table --> marker");
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    std::fs::write(
        &path,
        format!(
            "{head}<!-- faults:table -->\nRun {date} on {cores} cores, suite wall time {:.0} s:\n\n{table}<!-- /faults:table -->{tail}",
            took.as_secs_f64()
        ),
    )
    .expect("write the doc");
}
