//! Tenant isolation at scale: two tenants send interleaved, concurrent
//! traffic that shares Idempotency-Key names (with the same body and with
//! different bodies) and references, on the real orchestrator over
//! Postgres, Redis and NATS. Counted, each must be zero:
//!
//! * cross-tenant reads: a `GET` of the other tenant's id answers exactly
//!   the legacy `404` of an unknown id (byte for byte);
//! * cross-tenant replays: a tenant's replay never returns the other
//!   tenant's answer, and each tenant's replays return its own original
//!   bytes;
//! * cross-tenant idempotency hits: a key the other tenant used first is
//!   never a replay nor a `422` conflict for this tenant;
//! * cross-tenant events: every event on the stream carries the tenant
//!   whose request it came from (payload `tenant_id`), once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use integration_tests::faults::invariants;
use integration_tests::{TestApp, eventually, send_body, stream_messages};
use reqwest::Method;
use serde_json::{Value, json};

/// Key names both tenants use for sends, and for bulks.
const SHARED_SEND_KEYS: usize = 60;
const SHARED_BULK_KEYS: usize = 15;
/// Unkeyed sends per tenant (with references the other tenant uses too).
const UNKEYED: usize = 40;

#[derive(Debug, Clone)]
struct Request {
    tenant: usize,
    bulk: bool,
    key: Option<String>,
    body: Value,
}

#[derive(Debug, Clone)]
struct Answer {
    request: Request,
    status: u16,
    bytes: Vec<u8>,
}

impl Answer {
    fn ids(&self) -> Vec<String> {
        let v: Value = serde_json::from_slice(&self.bytes).unwrap_or(Value::Null);
        if self.request.bulk {
            integration_tests::bulk_ids(&v)
        } else {
            v["id"].as_str().map(str::to_owned).into_iter().collect()
        }
    }
}

fn body(tenant: usize, k: usize, same: bool) -> Value {
    let mut b = send_body(&if same {
        format!("Shared text {k}")
    } else {
        format!("Tenant {tenant} text {k}")
    });
    b["reference"] = json!(format!("ref-{k}"));
    b
}

/// Both tenants' requests, interleaved A, B, A, B…
fn requests() -> Vec<Request> {
    let mut out = Vec::new();
    for k in 0..SHARED_SEND_KEYS {
        for tenant in 0..2 {
            // Even keys: the same body for both tenants; odd: different.
            out.push(Request {
                tenant,
                bulk: false,
                key: Some(format!("shared-send-{k}")),
                body: body(tenant, k, k % 2 == 0),
            });
        }
    }
    for k in 0..SHARED_BULK_KEYS {
        for tenant in 0..2 {
            let same = k % 2 == 0;
            out.push(Request {
                tenant,
                bulk: true,
                key: Some(format!("shared-bulk-{k}")),
                body: json!({"messages": [body(tenant, k, same), body(tenant, k + 1000, same)]}),
            });
        }
    }
    for k in 0..UNKEYED {
        for tenant in 0..2 {
            out.push(Request {
                tenant,
                bulk: false,
                key: None,
                body: body(tenant, k, true),
            });
        }
    }
    out
}

async fn submit(app: &TestApp, tenants: &[String; 2], r: Request) -> Answer {
    let path = if r.bulk {
        "/v1/sms/bulk"
    } else {
        "/v1/sms/send"
    };
    let mut req = app
        .request_as(&tenants[r.tenant], Method::POST, path)
        .json(&r.body);
    if let Some(k) = &r.key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("submit");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body").to_vec();
    Answer {
        request: r,
        status,
        bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_sharing_keys_and_references_never_see_each_other() {
    let (app, db, nats) = TestApp::full().await;
    let tenants = [
        integration_tests::unique("iso-a-"),
        integration_tests::unique("iso-b-"),
    ];
    let reqs = requests();
    let total = reqs.len();

    // Round 1, concurrent: 16 in flight, the two tenants interleaved.
    let first: Vec<Answer> = futures::stream::iter(reqs.clone())
        .map(|r| submit(&app, &tenants, r))
        .buffered(16)
        .collect()
        .await;
    let not_created: Vec<_> = first
        .iter()
        .filter(|a| a.status != 201)
        .map(|a| (a.request.tenant, a.request.key.clone(), a.status))
        .collect();
    // A key the other tenant used first is never a conflict nor a replay
    // for this one: every first request is a fresh 201.
    let cross_conflicts = not_created.len();
    assert_eq!(cross_conflicts, 0, "not accepted: {not_created:?}");

    // (tenant, bulk, key) → the original answer; id → its tenant.
    let mut originals: HashMap<(usize, bool, String), Vec<u8>> = HashMap::new();
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut duplicate_ids = 0;
    for a in &first {
        if let Some(k) = &a.request.key {
            originals.insert(
                (a.request.tenant, a.request.bulk, k.clone()),
                a.bytes.clone(),
            );
        }
        for id in a.ids() {
            if owner.insert(id, a.request.tenant).is_some() {
                duplicate_ids += 1;
            }
        }
    }
    // Shared keys with the same body still made one message per tenant.
    let cross_idempotency_hits = duplicate_ids;

    // Round 2: every keyed request again, interleaved and concurrent.
    let keyed: Vec<Request> = reqs.iter().filter(|r| r.key.is_some()).cloned().collect();
    let replays: Vec<Answer> = futures::stream::iter(keyed)
        .map(|r| submit(&app, &tenants, r))
        .buffered(16)
        .collect()
        .await;
    let (mut own_replays, mut cross_replays, mut replay_mismatches) = (0, 0, 0);
    for a in &replays {
        let k = a.request.key.clone().expect("keyed");
        let mine = &originals[&(a.request.tenant, a.request.bulk, k.clone())];
        let theirs = &originals[&(1 - a.request.tenant, a.request.bulk, k)];
        if a.status == 201 && a.bytes == *mine {
            own_replays += 1;
        } else {
            replay_mismatches += 1;
        }
        if a.bytes == *theirs {
            cross_replays += 1;
        }
    }

    // Reads: own ids 200 with the id; the other tenant's ids the unknown-id 404.
    let unknown = app
        .request_as(&tenants[0], Method::GET, "/v1/sms/6a3f2b1c9e8d7a6b5c4d3e2f")
        .send()
        .await
        .expect("get");
    assert_eq!(unknown.status(), 404);
    let unknown_404 = unknown.bytes().await.expect("body").to_vec();
    let unknown_404 = &unknown_404;
    let ids: Vec<(String, usize)> = owner.iter().map(|(i, t)| (i.clone(), *t)).collect();
    let reads: Vec<(usize, usize)> = futures::stream::iter(ids.clone())
        .map(|(id, t)| {
            let app = &app;
            let tenants = &tenants;
            async move {
                let own = app
                    .request_as(&tenants[t], Method::GET, &format!("/v1/sms/{id}"))
                    .send()
                    .await
                    .expect("get");
                let own_ok = own.status() == 200
                    && own.json::<Value>().await.expect("json")["id"] == id.as_str();
                let other = app
                    .request_as(&tenants[1 - t], Method::GET, &format!("/v1/sms/{id}"))
                    .send()
                    .await
                    .expect("get");
                let status = other.status();
                let bytes = other.bytes().await.expect("body").to_vec();
                let cross = status != 404 || bytes != *unknown_404;
                (usize::from(own_ok), usize::from(cross))
            }
        })
        .buffered(16)
        .collect()
        .await;
    let own_reads: usize = reads.iter().map(|r| r.0).sum();
    let cross_reads: usize = reads.iter().map(|r| r.1).sum();

    // Storage: each id under its tenant; each shared key held by both.
    let pool = db.pool().await;
    let stored: HashMap<String, String> = invariants::messages(&pool)
        .await
        .into_iter()
        .filter(|m| !m.shadow)
        .map(|m| (m.id, m.tenant))
        .collect();
    let wrong_tenant_rows = ids
        .iter()
        .filter(|(id, t)| stored.get(id) != Some(&tenants[*t]))
        .count();
    let keys_held_by_one_tenant = invariants::idempotency_tenants_per_key(&pool)
        .await
        .into_iter()
        .filter(|(_, n)| *n != 2)
        .count();

    // Events: every id once, carrying its tenant.
    let _ = eventually(Duration::from_secs(30), || async {
        let e = stream_messages(&nats.url, &nats.stream, &nats.subject()).await;
        (e.len() >= ids.len()).then_some(())
    })
    .await;
    let events = stream_messages(&nats.url, &nats.stream, &nats.subject()).await;
    let mut seen = HashSet::new();
    let (mut cross_events, mut duplicate_events, mut phantom_events) = (0, 0, 0);
    for (id, payload) in &events {
        if !seen.insert(id.clone()) {
            duplicate_events += 1;
        }
        match owner.get(id) {
            Some(t) if payload["tenant_id"] == tenants[*t].as_str() => {}
            Some(_) => cross_events += 1,
            None => phantom_events += 1,
        }
    }
    let missing_events = ids.iter().filter(|(id, _)| !seen.contains(id)).count();

    println!(
        "tenant isolation: {total} requests + {} replays + {} reads ×2 over {} ids; \
         own replays {own_replays}, own reads {own_reads}, events {}; \
         cross-tenant: reads {cross_reads}, replays {cross_replays}, idempotency hits {cross_idempotency_hits}, \
         conflicts {cross_conflicts}, events {cross_events}, stored rows {wrong_tenant_rows}, \
         keys held by one tenant {keys_held_by_one_tenant}",
        replays.len(),
        ids.len(),
        ids.len(),
        events.len(),
    );
    let expected_ids = 2 * (SHARED_SEND_KEYS + 2 * SHARED_BULK_KEYS + UNKEYED);
    assert_eq!(ids.len(), expected_ids, "one message per item per tenant");
    assert_eq!(cross_reads, 0, "cross-tenant reads");
    assert_eq!(own_reads, ids.len(), "each tenant reads its own messages");
    assert_eq!(cross_replays, 0, "cross-tenant replays");
    assert_eq!(replay_mismatches, 0, "replays differing from the original");
    assert_eq!(own_replays, replays.len());
    assert_eq!(cross_idempotency_hits, 0, "cross-tenant idempotency hits");
    assert_eq!(wrong_tenant_rows, 0, "rows under another tenant");
    assert_eq!(
        keys_held_by_one_tenant, 0,
        "a shared key recorded for one tenant only"
    );
    assert_eq!(cross_events, 0, "events carrying another tenant");
    assert_eq!(phantom_events, 0, "events of no accepted message");
    assert_eq!(duplicate_events, 0, "events published twice");
    assert_eq!(missing_events, 0, "accepted messages never published");
}
