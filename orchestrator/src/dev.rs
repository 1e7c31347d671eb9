//! `--dev`: the README's quick start. Prints a token and ready-to-paste
//! `curl` commands that work as printed against this process.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::DEV_HS256_SECRET;

pub const DEV_TENANT: &str = "acme";

pub fn print_quickstart(api: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let token =
        crate::auth::mint_dev_token(DEV_HS256_SECRET, DEV_TENANT, Duration::from_secs(3600))?;
    eprintln!(
        r#"
orchestrator dev mode: embedded SQLite, in-process idempotency cache, events in the JSONL file.
Send an SMS (paste into another terminal):

  curl -si http://{api}/v1/sms/send \
    -H 'Authorization: Bearer {token}' \
    -H 'X-Tenant-Id: {DEV_TENANT}' -H 'Idempotency-Key: demo-1' \
    -H 'Content-Type: application/json' \
    -d '{{"to":"+447700900123","from":"Acme","body":"Hello from the orchestrator"}}'

Then read it back (use the id from the answer's Location header):

  curl -s http://{api}/v1/sms/<id> -H 'Authorization: Bearer {token}' -H 'X-Tenant-Id: {DEV_TENANT}'

Metrics: curl -s http://{admin}/metrics    Contract: http://{api}/openapi.json
"#
    );
    Ok(())
}
