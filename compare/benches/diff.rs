//! Diff throughput with the shipped default rules on ~1 KB JSON bodies, the
//! shape of `GET /v1/sms/{id}` and `POST /v1/sms/send` answers.
//!
//! Run: `cargo bench -p compare --bench diff -- --warm-up-time 1 --measurement-time 3`
//! The bar is 100 000 exchanges per second per core; results go in
//! `bench/RESULTS.md`.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use compare::{Differ, Exchange, RecordedRequest, RecordedResponse, Redactor, Rules};

fn status_body(id: &str, created: &str, extra_note: &str) -> Bytes {
    let body = serde_json::json!({
        "id": id,
        "status": "delivered",
        "to": "+447700900123",
        "from": "Acme",
        "encoding": "GSM-7",
        "segments": 2,
        "created_at": created,
        "updated_at": "2026-05-01T12:00:04.870Z",
        "reference": "order-8812",
        "callback_url": "https://hooks.acme.example/sms/status",
        "validity_period": 3600,
        "metadata": {"campaign": "spring-2026", "customer_id": "c-10442", "note": extra_note},
        "status_history": [
            {"status": "accepted", "at": created, "error_code": null},
            {"status": "queued", "at": "2026-05-01T12:00:00.201Z", "error_code": null},
            {"status": "sent", "at": "2026-05-01T12:00:01.512Z", "error_code": null},
            {"status": "delivered", "at": "2026-05-01T12:00:04.870Z", "error_code": null}
        ]
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_static(value));
    }
    map
}

fn exchange(primary_body: Bytes, candidate_body: Bytes) -> Exchange {
    Exchange {
        request: RecordedRequest {
            method: Method::GET,
            path: "/v1/sms/507f1f77bcf86cd799439011".to_owned(),
            headers: headers(&[
                ("x-correlation-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                ("x-tenant-id", "acme"),
                ("authorization", "Bearer eyJhbGciOi"),
            ]),
            body: Bytes::new(),
        },
        primary: RecordedResponse {
            status: StatusCode::OK,
            headers: headers(&[
                ("content-type", "application/json; charset=utf-8"),
                ("x-powered-by", "Express"),
                ("date", "Fri, 01 May 2026 12:00:05 GMT"),
                ("etag", "W/\"3f2-abc\""),
                ("x-correlation-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ]),
            body: primary_body,
            latency: Duration::from_millis(12),
        },
        candidate: RecordedResponse {
            status: StatusCode::OK,
            // At parity with the legacy: the shipped rules explain only
            // value noise (its own ids, timestamps, ETag).
            headers: headers(&[
                ("content-type", "application/json; charset=utf-8"),
                ("x-powered-by", "Express"),
                ("date", "Fri, 01 May 2026 12:00:05 GMT"),
                ("etag", "W/\"3f2-def\""),
                ("x-correlation-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ]),
            body: candidate_body,
            latency: Duration::from_millis(4),
        },
    }
}

fn bench(c: &mut Criterion) {
    let rules = Rules::default_rules().unwrap_or_else(|_| Rules::empty());
    let differ = Differ::new(rules);
    let note = "x".repeat(300);
    let legacy = status_body(
        "507f1f77bcf86cd799439011",
        "2026-05-01T12:00:00.100Z",
        &note,
    );
    let orchestrator = status_body(
        "65f000000000000000000001",
        "2026-05-01T12:00:00.123Z",
        &note,
    );
    let changed = status_body(
        "65f000000000000000000001",
        "2026-05-01T12:00:00.123Z",
        "a real difference",
    );

    let mut group = c.benchmark_group("diff");
    group.throughput(Throughput::Elements(1));

    let noise_only = exchange(legacy.clone(), orchestrator.clone());
    // The fixtures measure what their names say (`cargo test --benches`
    // checks it).
    assert_eq!(
        differ.diff(&noise_only).verdict,
        compare::Verdict::NoiseOnly
    );
    eprintln!("body size: {} bytes", legacy.len());
    group.bench_function("noise_only_1kb", |b| {
        b.iter(|| black_box(differ.diff(black_box(&noise_only))))
    });

    let same = exchange(orchestrator.clone(), orchestrator.clone());
    group.bench_function("same_1kb", |b| {
        b.iter(|| black_box(differ.diff(black_box(&same))))
    });

    let differs = exchange(legacy.clone(), changed);
    group.bench_function("differs_1kb", |b| {
        b.iter(|| black_box(differ.diff(black_box(&differs))))
    });

    // For scale: what parsing one body into a serde_json::Value costs (a
    // naive differ pays it twice per exchange).
    group.bench_function("reference_serde_value_parse_1kb", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(black_box(&legacy)).ok()))
    });

    // What the mirror proxy does per exchange before writing: diff, redact,
    // serialise one JSONL line.
    let redactor = Redactor::new(b"bench-key");
    group.bench_function("differs_1kb_redacted_jsonl", |b| {
        b.iter(|| {
            let mut record = differ.diff(black_box(&differs));
            redactor.redact_record(&mut record);
            black_box(serde_json::to_vec(&record).unwrap_or_default())
        })
    });
    group.finish();
}

/// This thread's time on a CPU and waiting in the run queue, in ns, from
/// `/proc/thread-self/schedstat` (Linux). Criterion reports wall time, which
/// on a shared machine includes time other processes held the core; CPU
/// time is what "per core" means.
fn schedstat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// Exchanges per CPU-second for the realistic case, independent of load.
fn per_cpu_second() {
    let Ok(rules) = Rules::default_rules() else {
        return;
    };
    let differ = Differ::new(rules);
    let note = "x".repeat(300);
    let exchange = exchange(
        status_body(
            "507f1f77bcf86cd799439011",
            "2026-05-01T12:00:00.100Z",
            &note,
        ),
        status_body(
            "65f000000000000000000001",
            "2026-05-01T12:00:00.123Z",
            &note,
        ),
    );
    assert_eq!(
        differ.diff(&exchange).verdict,
        compare::Verdict::NoiseOnly,
        "the realistic case is noise only"
    );
    let n: u32 = 200_000;
    for _ in 0..n / 10 {
        black_box(differ.diff(black_box(&exchange)));
    }
    let (Some((cpu0, wait0)), wall0) = (schedstat(), std::time::Instant::now()) else {
        eprintln!("per-CPU-second figure needs /proc/thread-self/schedstat (Linux)");
        return;
    };
    for _ in 0..n {
        black_box(differ.diff(black_box(&exchange)));
    }
    let wall = wall0.elapsed().as_secs_f64();
    let Some((cpu1, wait1)) = schedstat() else {
        return;
    };
    let cpu = (cpu1 - cpu0) as f64 / 1e9;
    let waited = (wait1 - wait0) as f64 / 1e9;
    println!(
        "diff/noise_only_1kb per CPU-second: {:.0} exchanges/s ({n} exchanges in {cpu:.3} s of CPU; wall {wall:.3} s, {waited:.3} s waiting for a core)",
        f64::from(n) / cpu
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    // `cargo bench` passes --bench; `cargo test --benches` does not, and
    // 200 000 unoptimised diffs would only slow the test run down.
    if std::env::args().any(|a| a == "--bench") {
        per_cpu_second();
    }
    Criterion::default().configure_from_args().final_summary();
}
