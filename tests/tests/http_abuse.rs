//! Hostile HTTP against the real `orchestrator` binary (and, for request
//! smuggling, the real `mirror-proxy`): every abuse gets a bounded, clear
//! answer, the answer the legacy NestJS/Express gateway gave where it had
//! one (in the contract's envelope where the orchestrator's differs), and
//! the process's memory does not grow with it (RSS from `/proc`, sampled
//! before and after a batch, after a warm-up batch).
//!
//! Defaults throughout: the timeouts tested are the shipped ones
//! (`HEADER_READ_TIMEOUT` and `BODY_READ_TIMEOUT`, 10 s each).

mod shadow_support;

use std::time::{Duration, Instant};

use integration_tests::{Options, TestApp, TestDatabase, redis_url, send_body};
use serde_json::{Value, json};
use shadow_support::{Behaviour, Proxy, ProxyConfig, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The shipped `HEADER_READ_TIMEOUT` and `BODY_READ_TIMEOUT`.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of a timeout for a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_secs(5);
/// Most RSS a batch of abuse may add once warmed up.
const RSS_GROWTH_LIMIT_KIB: u64 = 16 * 1024;

/// Resident set size of a process, KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// RSS once the allocator has had a moment to return what the last
/// requests freed (mimalloc purges freed pages after ~10 ms; sampled at
/// once, a 5 MB answer just sent still counts).
async fn settled_rss_kib(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    rss_kib(pid)
}

fn pid(app: &TestApp) -> u32 {
    app.child.id().expect("orchestrator is running")
}

fn host(app: &TestApp) -> String {
    app.api.trim_start_matches("http://").to_owned()
}

/// Runs `batch` twice to warm up (allocator caches, pools, buffers grow to
/// their working size), then again between two RSS samples, and asserts
/// the run grew the process by less than the limit: flat once warm.
///
/// Warm-up is not always over after two batches: mimalloc keeps a heap per
/// thread, and a batch that first lands on a runtime worker which has not
/// served one yet grows that worker's heap once (seen on a loaded CI
/// machine: +19 MiB on the third batch). So a batch over the limit counts
/// as warm-up, up to `ATTEMPTS` times; a leak of the limit or more per
/// batch fails every attempt.
async fn without_memory_growth<F, Fut>(app: &TestApp, what: &str, mut batch: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    const ATTEMPTS: usize = 4;
    batch().await;
    batch().await;
    let mut seen = Vec::new();
    for _ in 0..ATTEMPTS {
        let before = settled_rss_kib(pid(app)).await;
        batch().await;
        let after = settled_rss_kib(pid(app)).await;
        eprintln!("{what}: RSS {before} KiB before, {after} KiB after");
        if after < before + RSS_GROWTH_LIMIT_KIB {
            return;
        }
        seen.push(format!("{before} -> {after}"));
    }
    panic!(
        "{what}: every batch grew RSS by {RSS_GROWTH_LIMIT_KIB} KiB or more (KiB: {})",
        seen.join(", ")
    );
}

/// What came back on a raw connection: everything until the server closed
/// it (or `wait` passed), and whether it did close.
#[derive(Debug)]
struct Raw {
    bytes: Vec<u8>,
    closed: bool,
    elapsed: Duration,
    /// The server closed before the whole request was written (it refused
    /// the head early, as Node does, and the kernel reset the connection).
    write_refused: bool,
}

impl Raw {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The first answer's status code.
    fn status(&self) -> u16 {
        let text = self.text();
        text.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
    }

    /// The first answer's head, lower-cased.
    fn head(&self) -> String {
        let text = self.text();
        text.split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    /// The first answer's body, as JSON.
    fn json(&self) -> Value {
        let text = self.text();
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().expect("content-length"))
            })
            .expect("content-length");
        serde_json::from_str(&body[..len]).unwrap_or_else(|_| panic!("JSON body: {body:?}"))
    }
}

/// Reads from `stream` until the server closes it or `wait` passes.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (bytes, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (bytes, true),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `request` on a fresh connection and reads until the server
/// closes it or `wait` passes.
async fn raw(addr: &str, request: &[u8], wait: Duration) -> Raw {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let write_refused = match stream.write_all(request).await {
        Ok(()) => false,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            true
        }
        Err(e) => panic!("write request: {e}"),
    };
    let (bytes, closed) = read_until_closed(&mut stream, wait).await;
    Raw {
        bytes,
        closed,
        elapsed: started.elapsed(),
        write_refused,
    }
}

/// A complete request with a JSON body, `Connection: close`.
fn post(app: &TestApp, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Tenant-Id: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.token_for(&app.tenant),
        app.tenant,
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// `GET /nothing` with one `X-Pad` header of `pad` bytes.
fn padded_get(pad: usize) -> Vec<u8> {
    format!(
        "GET /nothing HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(pad)
    )
    .into_bytes()
}

#[tokio::test]
async fn a_request_head_over_16_kib_is_431_with_no_body_and_a_closed_connection_as_node_answered() {
    let app = TestApp::embedded().await;
    let addr = host(&app);
    // Under Node's 16 KiB: routed as usual (Express's 404).
    let fine = raw(&addr, &padded_get(15 * 1024), SLACK).await;
    assert_eq!(fine.status(), 404, "{}", fine.head());
    assert_eq!(fine.json()["message"], "Cannot GET /nothing");
    // Many small headers under the byte limit are not refused either.
    let many: String = (0..1000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = raw(
        &addr,
        format!("GET /nothing HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n").as_bytes(),
        SLACK,
    )
    .await;
    assert_eq!(many.status(), 404, "{}", many.head());

    let big = raw(&addr, &padded_get(17 * 1024), SLACK).await;
    assert_eq!(big.status(), 431, "{}", big.head());
    assert!(big.closed, "the connection must be closed after a 431");
    assert!(
        big.head().contains("content-length: 0") || !big.text().contains("{"),
        "Node's 431 has no body: {}",
        big.text()
    );
    // A megabyte of headers: the same, and the server did not buffer it.
    without_memory_growth(&app, "oversized heads", || async {
        // The server answers 431 and closes after the first 16 KiB; the
        // rest of the megabyte may then meet a reset, which can also take
        // the 431 with it. Either way it was refused, never buffered.
        let mut answered = 0;
        for _ in 0..50 {
            let r = raw(&addr, &padded_get(1024 * 1024), SLACK).await;
            if r.bytes.is_empty() {
                assert!(r.write_refused && r.closed, "neither a 431 nor a refusal");
            } else {
                assert_eq!(r.status(), 431);
                answered += 1;
            }
        }
        println!("{answered} of 50 one-megabyte heads read their 431 before the reset");
    })
    .await;
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_at_the_header_read_timeout_while_others_are_served() {
    let app = TestApp::embedded().await;
    let addr = host(&app);
    let before = rss_kib(pid(&app));
    let started = Instant::now();
    // 50 connections that send a header line every second, forever.
    let mut lorises = Vec::new();
    for _ in 0..50 {
        let addr = addr.clone();
        lorises.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            stream
                .write_all(b"POST /v1/sms/send HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("write");
            let mut i = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                i += 1;
                if stream
                    .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                let mut b = [0u8; 64];
                // A closed connection reads 0 (or fails); the server never
                // answers a head it did not get.
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(10), stream.read(&mut b)).await
                {
                    assert_eq!(n, 0, "no answer to an unfinished head");
                    break;
                }
                if i > 60 {
                    panic!("the connection was still open after 60 s");
                }
            }
            Instant::now()
        }));
    }
    // Meanwhile a normal client is served at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quick = Instant::now();
    let r = app.send(&send_body("hello"), None).await;
    assert_eq!(r.status(), 201);
    assert!(quick.elapsed() < Duration::from_secs(2));
    for loris in lorises {
        let closed_at = loris.await.expect("loris task");
        let after = closed_at - started;
        assert!(
            after < READ_TIMEOUT + SLACK,
            "closed after {after:?}, past HEADER_READ_TIMEOUT"
        );
        assert!(
            after >= READ_TIMEOUT - Duration::from_secs(1),
            "closed early: {after:?}"
        );
    }
    let after = rss_kib(pid(&app));
    eprintln!("slowloris: RSS {before} KiB before, {after} KiB after");
    assert!(after < before + RSS_GROWTH_LIMIT_KIB);
}

#[tokio::test]
async fn a_body_that_never_finishes_is_408_in_the_envelope_at_the_body_read_timeout() {
    let app = TestApp::embedded().await;
    let addr = host(&app);
    // Content-Length promises 200 bytes; 20 come.
    let mut head = post(&app, "/v1/sms/send", &[0u8; 200]);
    head.truncate(head.len() - 180);
    let stalled = raw(&addr, &head, READ_TIMEOUT + SLACK).await;
    assert_eq!(stalled.status(), 408, "{}", stalled.text());
    assert_eq!(
        stalled.json(),
        json!({"message": "Request Timeout", "statusCode": 408})
    );
    assert!(stalled.head().contains("connection: close"));
    assert!(stalled.closed, "the connection is closed after the 408");
    assert!(
        stalled.elapsed >= READ_TIMEOUT - Duration::from_secs(1)
            && stalled.elapsed < READ_TIMEOUT + SLACK,
        "answered after {:?}",
        stalled.elapsed
    );

    // A chunked body that trickles a byte a second forever: the deadline
    // is for the whole body, not between chunks.
    let started = Instant::now();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let chunked_head = "POST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nAccept: application/problem+json\r\n\r\n";
    stream
        .write_all(chunked_head.as_bytes())
        .await
        .expect("head");
    let trickle = async {
        loop {
            if stream.write_all(b"1\r\n \r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            if started.elapsed() > READ_TIMEOUT + SLACK {
                break;
            }
        }
    };
    trickle.await;
    let (bytes, closed) = read_until_closed(&mut stream, SLACK).await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "expected a 408 while trickling: {text}"
    );
    assert!(text.contains("urn:sms-orchestrator:problem:request-timeout"));
    assert!(closed);

    // Nothing was stored by either.
    let r = app
        .request(reqwest::Method::GET, "/v1/sms/000000000000000000000000")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
    without_memory_growth(&app, "stalled bodies", || async {
        let mut all = Vec::new();
        for _ in 0..50 {
            let addr = addr.clone();
            let head = head.clone();
            all.push(tokio::spawn(async move {
                raw(&addr, &head, READ_TIMEOUT + SLACK).await.status()
            }));
        }
        for a in all {
            assert_eq!(a.await.expect("task"), 408);
        }
    })
    .await;
}

#[tokio::test]
async fn ten_thousand_distinct_idempotency_keys_are_each_stored_once_without_memory_growth() {
    let (app, db, _nats) = TestApp::full().await;
    let keys = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = |n: usize| {
        let keys = keys.clone();
        let app = &app;
        async move {
            let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
            let mut tasks = Vec::new();
            for _ in 0..n {
                let key = format!(
                    "abuse-{}",
                    keys.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                );
                let request = app
                    .request(reqwest::Method::POST, "/v1/sms/send")
                    .header("Idempotency-Key", key)
                    .json(&send_body("ten thousand keys"));
                let permit = sem.clone().acquire_owned().await.expect("permit");
                tasks.push(tokio::spawn(async move {
                    let r = request.send().await.expect("send");
                    drop(permit);
                    r.status().as_u16()
                }));
            }
            for t in tasks {
                assert_eq!(t.await.expect("task"), 201);
            }
        }
    };
    run(1_000).await;
    let before = rss_kib(pid(&app));
    run(10_000).await;
    let after = rss_kib(pid(&app));
    eprintln!("10 000 keys: RSS {before} KiB before, {after} KiB after");
    assert!(
        after < before + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {before} KiB to {after} KiB over 10 000 keys"
    );
    let pool = db.pool().await;
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM orch.idempotency_keys")
        .fetch_one(&pool)
        .await
        .expect("count keys");
    let (messages,): (i64,) = sqlx::query_as("SELECT count(*) FROM orch.messages")
        .fetch_one(&pool)
        .await
        .expect("count messages");
    assert_eq!((stored, messages), (11_000, 11_000));
}

/// Sends `body` to `/v1/sms/send` and returns (status, JSON answer).
async fn send_raw(app: &TestApp, body: Vec<u8>) -> (u16, Value) {
    let r = app
        .request(reqwest::Method::POST, "/v1/sms/send")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON answer"))
}

#[tokio::test]
async fn deeply_nested_json_and_huge_arrays_are_400_in_bounded_time_and_memory() {
    let app = TestApp::embedded().await;
    let depth = 40_000;
    let nested = format!(r#"{{"to":{}1{}}}"#, "[".repeat(depth), "]".repeat(depth));
    let top = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let wide_metadata = format!(
        r#"{{"to":"+447700900123","from":"Acme","body":"hi","metadata":{{"k":[{}0]}}}}"#,
        "0,".repeat(45_000)
    );
    let wide_bulk = format!(r#"{{"messages":[{}{{}}]}}"#, "{},".repeat(30_000));
    // Each answer within a bound that only a hang misses (a debug build on
    // a loaded 2-core machine); the figures go to the test's output.
    let bound = Duration::from_secs(60);
    without_memory_growth(&app, "nested and wide bodies", || async {
        for _ in 0..3 {
            let started = Instant::now();
            let (status, body) = send_raw(&app, nested.clone().into_bytes()).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"], "Bad Request");
            assert!(
                body["message"]
                    .as_array()
                    .is_some_and(|m| m.contains(&json!("to must be a valid phone number"))),
                "{body}"
            );
            let nested_took = started.elapsed();
            let started = Instant::now();
            let (status, body) = send_raw(&app, top.clone().into_bytes()).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["message"], json!(["body must be an object"]));
            let top_took = started.elapsed();
            let started = Instant::now();
            let (status, body) = send_raw(&app, wide_metadata.clone().into_bytes()).await;
            assert_eq!(status, 400, "{body}");
            let wide_took = started.elapsed();
            let started = Instant::now();
            let r = app
                .request(reqwest::Method::POST, "/v1/sms/bulk")
                .header("Content-Type", "application/json")
                .body(wide_bulk.clone())
                .send()
                .await
                .expect("bulk");
            assert_eq!(r.status(), 400);
            let text = r.text().await.expect("answer");
            let bulk_took = started.elapsed();
            // As the legacy's ValidationPipe did, every item's violations
            // are listed (three per empty item): about 5 MB for a 90 kB
            // body. Bounded by the body limit; see docs/hostile-input.md.
            assert!(
                text.len() < 8 * 1024 * 1024,
                "the answer to 30 000 empty items is {} bytes",
                text.len()
            );
            eprintln!(
                "nested {nested_took:?}, top-level nesting {top_took:?}, 45 000-element array {wide_took:?}, \
                 30 000 bulk items {bulk_took:?} ({} bytes answered)",
                text.len()
            );
            for took in [nested_took, top_took, wide_took, bulk_took] {
                assert!(took < bound, "an answer took {took:?}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn nul_bytes_are_refused_with_400_raw_or_escaped_and_nothing_is_stored() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        redis: Some(redis_url()),
        ..Options::default()
    })
    .await;
    // A raw NUL inside a string is not JSON: JSON.parse's own message.
    let (status, body) = send_raw(
        &app,
        b"{\"to\":\"+447700900123\",\"from\":\"Acme\",\"body\":\"a\0b\"}".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"message": "Bad control character in string literal in JSON at position 45",
               "error": "Bad Request", "statusCode": 400})
    );
    // Escaped, in each text field: a validation error for that field.
    let cases = [
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "a\u{0}b"}),
            "body must be a non-empty text within the segment limit",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "hi", "reference": "r\u{0}"}),
            "reference must be longer than or equal to 1 and shorter than or equal to 64 characters",
        ),
        (
            json!({"to": "+447700900123", "from": "Ac\u{0}me", "body": "hi"}),
            "from must be a valid sender id",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "hi", "metadata": {"k": "v\u{0}"}}),
            "metadata must be an object of at most 10 string values",
        ),
        (
            json!({"to": "+447700900123", "from": "Acme", "body": "hi", "metadata": {"k\u{0}": "v"}}),
            "metadata must be an object of at most 10 string values",
        ),
    ];
    for (request, message) in cases {
        let (status, body) = send_raw(&app, serde_json::to_vec(&request).unwrap()).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert_eq!(
            body,
            json!({"message": [message], "error": "Bad Request", "statusCode": 400}),
            "{request}"
        );
    }
    let pool = db.pool().await;
    let (messages,): (i64,) = sqlx::query_as("SELECT count(*) FROM orch.messages")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(messages, 0);
}

#[tokio::test]
async fn invalid_utf8_is_read_as_body_parser_read_it_replacement_characters() {
    let app = TestApp::embedded().await;
    // body-parser decodes with replacement characters (U+FFFD), so the
    // legacy accepted this text; so does the orchestrator (parity), and
    // the replacement character makes it UCS-2.
    let (status, body) = send_raw(
        &app,
        b"{\"to\":\"+447700900123\",\"from\":\"Acme\",\"body\":\"caf\xe9\"}".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["encoding"], "UCS-2");
    // In a field with a format, the same decoding makes it invalid.
    let (status, body) = send_raw(
        &app,
        b"{\"to\":\"+4477009\xff0123\",\"from\":\"Acme\",\"body\":\"hi\"}".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], json!(["to must be a valid phone number"]));
}

#[tokio::test]
async fn duplicate_json_keys_are_400_at_any_depth_and_store_nothing() {
    let app = TestApp::embedded().await;
    let (status, body) = send_raw(
        &app,
        br#"{"to":"+447700900123","to":"+447700900999","from":"Acme","body":"hi"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"message": "Duplicate key \"to\" in JSON at position 22",
               "error": "Bad Request", "statusCode": 400})
    );
    let (status, body) = send_raw(
        &app,
        br#"{"to":"+447700900123","from":"Acme","body":"hi","metadata":{"a":"1","a":"2"}}"#
            .to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Duplicate key \"a\"")
    );
    // Escaped spellings of the same key are the same key.
    let (status, _) = send_raw(
        &app,
        br#"{"to":"+447700900123","t\u006f":"+447700900999","from":"Acme","body":"hi"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    // In bulk too.
    let r = app
        .request(reqwest::Method::POST, "/v1/sms/bulk")
        .header("Content-Type", "application/json")
        .body(r#"{"messages":[{"to":"+447700900123","from":"Acme","body":"hi","body":"x"}]}"#)
        .send()
        .await
        .expect("bulk");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn numbers_out_of_range_are_400_with_the_fields_message() {
    let app = TestApp::embedded().await;
    let validity = "validity_period must be an integer from 60 to 259200".to_owned();
    for number in [
        "1e400",
        "-1e400",
        "0",
        "-1",
        "1.5",
        "259201",
        "9007199254740993",
        "1e308",
        "-0",
        "123456789012345678901234567890",
    ] {
        let body = format!(
            r#"{{"to":"+447700900123","from":"Acme","body":"hi","validity_period":{number}}}"#
        );
        let (status, answer) = send_raw(&app, body.into_bytes()).await;
        assert_eq!(status, 400, "{number}: {answer}");
        assert_eq!(
            answer["message"],
            json!([validity.clone()]),
            "{number}: {answer}"
        );
    }
    // A number where a string belongs, and an atomic that is a number.
    let (status, answer) = send_raw(
        &app,
        br#"{"to":4.47700900123e11,"from":"Acme","body":"hi"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["message"],
        json!(["to must be a valid phone number"])
    );
}

/// What a conflicting-framing request did: the client's bytes back, and
/// what each upstream saw.
async fn smuggle(proxy: &Proxy, request: &[u8]) -> Raw {
    raw(&proxy.addr, request, Duration::from_secs(5)).await
}

#[tokio::test]
async fn content_length_and_transfer_encoding_conflicts_never_split_differently_through_mirror_proxy()
 {
    let primary = Stub::start(Behaviour::Fast).await;
    let shadow = Stub::start(Behaviour::Fast).await;
    let proxy = Proxy::spawn(ProxyConfig::new(
        &primary.addr.to_string(),
        Some(&shadow.addr.to_string()),
    ))
    .await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "CL and TE: TE wins, the rest is not a second request",
            format!(
                "POST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "TE and CL, CL long enough to swallow a request",
            format!(
                "POST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{smuggled}",
                12 + smuggled.len()
            ),
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 2\r\nContent-Length: {}\r\n\r\n{{}}{smuggled}",
                2 + smuggled.len()
            ),
        ),
        (
            "a Content-Length list",
            format!(
                "POST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 2, {}\r\n\r\n{{}}{smuggled}",
                2 + smuggled.len()
            ),
        ),
        (
            "an obfuscated Transfer-Encoding",
            format!(
                "POST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 2\r\nTransfer-Encoding: xchunked\r\n\r\n{{}}{smuggled}"
            ),
        ),
        (
            "chunked not last",
            format!(
                "POST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!(
                "POST /v1/sms/send HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{{}}{smuggled}"
            ),
        ),
        (
            "a space before the colon",
            format!(
                "POST /v1/sms/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length : 2\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
    ];
    for (what, request) in &cases {
        let (p0, s0) = (primary.count(), shadow.count());
        let answer = smuggle(&proxy, request.as_bytes()).await;
        // At most one answer: the rest of the bytes is never a request.
        let answers = answer.text().matches("HTTP/1.1 ").count();
        assert!(
            answers <= 1,
            "{what}: {answers} answers:\n{}",
            answer.text()
        );
        if answers == 1 {
            let status = answer.status();
            assert!(
                status == 202 || status == 400,
                "{what}: status {status}\n{}",
                answer.text()
            );
        }
        // Give the tee a moment to deliver the shadow copy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let p: Vec<_> = primary.requests()[p0..].to_vec();
        let s: Vec<_> = shadow.requests()[s0..].to_vec();
        for seen in p.iter().chain(&s) {
            assert_ne!(
                seen.path, "/smuggled",
                "{what}: a smuggled request got through"
            );
        }
        assert!(p.len() <= 1, "{what}: the primary saw {} requests", p.len());
        // The shadow sees exactly what the primary saw, or nothing at all.
        assert!(
            s.len() <= p.len(),
            "{what}: the shadow saw more than the primary"
        );
        for (a, b) in p.iter().zip(&s) {
            assert_eq!(
                (&a.method, &a.path, &a.body),
                (&b.method, &b.path, &b.body),
                "{what}: primary and shadow saw different requests"
            );
        }
        eprintln!(
            "{what}: client got {}, primary saw {:?}, shadow saw {:?}",
            if answers == 1 {
                answer.status().to_string()
            } else {
                "no answer".into()
            },
            p.iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>(),
            s.iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>()
        );
    }
}
