//! Deletes the JetStream streams that tests and benchmarks leave on a
//! shared NATS server (`ORCH_TEST_*`, `BENCH_*`, or the prefixes given).
//!
//! Streams are file-backed: without a sweep, every test run and every
//! benchmark (millions of messages) stays on the server's disk. The test
//! command runs this before the suite; a stream in use by a test that is
//! running concurrently elsewhere would be deleted too, so run it only when
//! no other suite is running against the same server.

use clap::Parser;
use futures::TryStreamExt;

#[derive(Debug, Parser)]
#[command(about = "Delete JetStream streams left by tests and benchmarks")]
struct Cli {
    /// NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Name prefixes of the streams to delete.
    #[arg(long = "prefix", default_values_t = [integration_tests::TEST_STREAM_PREFIX.to_owned(), "BENCH_".to_owned()])]
    prefixes: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client = async_nats::connect(&cli.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let names: Vec<String> = js.stream_names().try_collect().await?;
    let mut deleted = 0usize;
    for name in names
        .iter()
        .filter(|n| cli.prefixes.iter().any(|p| n.starts_with(p.as_str())))
    {
        js.delete_stream(name).await?;
        deleted += 1;
    }
    println!(
        "sweep-test-state: deleted {deleted} of {} JetStream streams",
        names.len()
    );
    Ok(())
}
