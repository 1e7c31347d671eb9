//! Observability end to end: what the running orchestrator emits against
//! what `docs/` promises. The metric catalogue (`docs/metrics.md`) is compared
//! with a real scrape; counters are checked after a known sequence of
//! requests; the `gateway_*` aliases are checked before and after their
//! instant; the Prometheus rules, their unit tests and a real scrape go
//! through `promtool`; the Grafana dashboard may only query series that
//! exist; logs carry the correlation id and never a full phone number, a
//! message body or a token; `/readyz` degrades without Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use integration_tests::{
    NatsNames, Options, SHADOW_SECRET, TestApp, TestDatabase, eventually, redis_url, send_body,
    stream_messages, unique,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------
// The Prometheus text format, as much of it as the assertions need.

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One scrape: each family's `# TYPE`, and every sample.
#[derive(Debug)]
struct Scrape {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                types.insert(name.to_owned(), kind.trim().to_owned());
            } else if !line.starts_with('#') {
                samples.push(parse_sample(line));
            }
        }
        Self { types, samples }
    }

    /// The family a sample belongs to (`x_bucket` of histogram `x` is `x`).
    fn family(&self, sample: &str) -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && self.types.get(base).is_some_and(|t| t == "histogram")
            {
                return base.to_owned();
            }
        }
        sample.to_owned()
    }

    /// The value of the sample with exactly these labels, 0 when absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map_or(0.0, |s| s.value)
    }

    /// Sum over the samples of `name` whose labels include `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn samples_of_family(&self, family: &str) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| self.family(&s.name) == family)
            .collect()
    }
}

/// `name{a="x",b="y"} 1.5 [timestamp]`, with `\\`, `\"` and `\n` escapes.
fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or_else(|| panic!("sample without value: {line}"));
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next().unwrap_or_else(|| panic!("unclosed: {line}"));
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('\\') => match chars.next().map(|(_, c)| c) {
                                Some('n') => value.push('\n'),
                                Some(other) => value.push(other),
                                None => panic!("dangling escape: {line}"),
                            },
                            Some('"') => break,
                            Some(other) => value.push(other),
                            None => panic!("unclosed label value: {line}"),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("sample value: {line}"));
    Sample {
        name,
        labels,
        value,
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    Scrape::parse(&app.metrics().await)
}

// ---------------------------------------------------------------------------
// docs/metrics.md, read as data.

#[derive(Debug)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

#[derive(Debug)]
struct Catalogue {
    metrics: BTreeMap<String, Family>,
    /// legacy name → (type, new name)
    aliases: BTreeMap<String, (String, String)>,
    label_values: BTreeMap<String, BTreeSet<String>>,
}

/// The `code` spans of a markdown table cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Rows (cells) of the first table under `## heading`, header skipped.
fn table(markdown: &str, heading: &str) -> Vec<Vec<String>> {
    let section = markdown
        .split(&format!("\n## {heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("docs/metrics.md has a '## {heading}' section"));
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

impl Catalogue {
    fn load() -> Self {
        let md = read("docs/metrics.md");
        let mut metrics = BTreeMap::new();
        for row in table(&md, "Metrics") {
            let name = code_spans(&row[0]).remove(0);
            let family = Family {
                kind: row[1].clone(),
                labels: code_spans(&row[2]).into_iter().collect(),
            };
            assert!(
                metrics.insert(name.clone(), family).is_none(),
                "{name} listed twice"
            );
        }
        let aliases = table(&md, "Compatibility aliases (`gateway_*`)")
            .into_iter()
            .map(|row| {
                (
                    code_spans(&row[0]).remove(0),
                    (row[1].clone(), code_spans(&row[2]).remove(0)),
                )
            })
            .collect();
        let label_values = table(&md, "Label values")
            .into_iter()
            .map(|row| {
                (
                    code_spans(&row[0]).remove(0),
                    code_spans(&row[1]).into_iter().collect(),
                )
            })
            .collect();
        Self {
            metrics,
            aliases,
            label_values,
        }
    }

    /// Name → type of every family a scrape shows while the aliases last.
    fn with_aliases(&self) -> BTreeMap<String, String> {
        self.metrics
            .iter()
            .map(|(n, f)| (n.clone(), f.kind.clone()))
            .chain(
                self.aliases
                    .iter()
                    .map(|(old, (kind, _))| (old.clone(), kind.clone())),
            )
            .collect()
    }

    /// The documented family a scraped family stands for (itself, or the
    /// new name of an alias).
    fn family(&self, name: &str) -> Option<&Family> {
        let name = self.aliases.get(name).map_or(name, |(_, new)| new.as_str());
        self.metrics.get(name)
    }

    /// Every series name a query may use: families, and the `_bucket`,
    /// `_sum`, `_count` series of histograms.
    fn series_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (name, kind) in self.with_aliases() {
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
            out.insert(name);
        }
        out
    }
}

/// Label names a metric must never have: unbounded or personal.
const FORBIDDEN_LABELS: &[&str] = &[
    "tenant",
    "tenant_id",
    "message_id",
    "id",
    "correlation_id",
    "to",
    "from",
    "phone",
    "idempotency_key",
];

// ---------------------------------------------------------------------------
// The catalogue against a real scrape.

/// NATS arguments with the shadow subject outside the test's stream, in a
/// shadow stream of its own that [`unstream_shadow`] deletes once the
/// orchestrator has started, so shadow events fail to publish (`no
/// responders`) and the failure family appears, while live events publish
/// normally.
fn nats_args_with_unstreamed_shadow(nats: &NatsNames) -> Vec<String> {
    vec![
        format!("--nats-url={}", nats.url),
        "--nats-create-stream".into(),
        format!("--nats-stream={}", nats.stream),
        format!("--nats-stream-subjects={}.>", nats.prefix),
        format!("--nats-subject={}", nats.subject()),
        format!("--nats-status-subject={}", nats.status_subject()),
        format!("--nats-status-consumer={}-status", nats.prefix),
        format!("--shadow-subject=unstreamed.{}.shadow", nats.prefix),
        format!("--nats-shadow-stream={}", nats.shadow_stream()),
    ]
}

/// Deletes the shadow stream the orchestrator created at start-up.
async fn unstream_shadow(nats: &NatsNames) {
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.delete_stream(nats.shadow_stream()).await.unwrap();
}

#[tokio::test]
async fn the_catalogue_matches_what_is_emitted() {
    let catalogue = Catalogue::load();
    let db = TestDatabase::create().await;
    let nats = NatsNames::fresh();
    let app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        redis: Some(redis_url()),
        args: nats_args_with_unstreamed_shadow(&nats),
        ..Options::default()
    })
    .await;
    unstream_shadow(&nats).await;

    // Traffic that touches every family.
    let readyz = app
        .http
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status(), StatusCode::OK);
    let key = unique("key-");
    let sent = app.send(&send_body("catalogue"), Some(&key)).await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    let replayed = app.send(&send_body("catalogue"), Some(&key)).await;
    assert_eq!(replayed.status(), StatusCode::CREATED);
    let invalid = app.send(&json!({"to": "+447700900123"}), None).await;
    assert!(invalid.status().is_client_error());
    let unauthenticated = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .header("X-Tenant-Id", &app.tenant)
        .json(&send_body("no token"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let live_published = eventually(Duration::from_secs(20), || async {
        (scrape(&app)
            .await
            .value("orchestrator_published_total", &[("kind", "real")])
            >= 1.0)
            .then_some(())
    })
    .await;
    assert!(live_published.is_some(), "the live event is published");
    let shadow = app
        .request(Method::POST, "/v1/sms/send")
        .header("X-Shadow-Request", "1")
        .header("X-Shadow-Credential", SHADOW_SECRET)
        .json(&send_body("shadow copy"))
        .send()
        .await
        .unwrap();
    assert_eq!(shadow.status(), StatusCode::CREATED);
    let js = async_nats::jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    js.publish(nats.status_subject(), "not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let expected = catalogue.with_aliases();
    let seen = eventually(Duration::from_secs(30), || async {
        let s = scrape(&app).await;
        expected
            .keys()
            .all(|n| s.types.contains_key(n))
            .then_some(s)
    })
    .await;
    let s = match seen {
        Some(s) => s,
        None => {
            let s = scrape(&app).await;
            let missing: Vec<_> = expected
                .keys()
                .filter(|n| !s.types.contains_key(*n))
                .collect();
            panic!("families never emitted despite the traffic: {missing:?}");
        }
    };

    assert_eq!(
        s.types, expected,
        "the scrape's `# TYPE` lines (left) and docs/metrics.md (right) differ"
    );
    for sample in &s.samples {
        let family_name = s.family(&sample.name);
        let family = catalogue
            .family(&family_name)
            .unwrap_or_else(|| panic!("{family_name} is not in the catalogue"));
        for (label, value) in &sample.labels {
            if label == "le" && family.kind == "histogram" {
                continue;
            }
            assert!(
                family.labels.contains(label),
                "{} has label {label:?}, not documented for {family_name}",
                sample.name
            );
            let allowed = catalogue
                .label_values
                .get(label)
                .unwrap_or_else(|| panic!("label {label:?} has no row in 'Label values'"));
            assert!(
                allowed.contains(value),
                "{}: {label}={value:?} is not among the documented values {allowed:?}",
                sample.name
            );
        }
    }
}

#[test]
fn the_catalogue_agrees_with_the_alias_table_in_code_and_bounds_its_labels() {
    let catalogue = Catalogue::load();
    let in_code: BTreeMap<String, String> = orchestrator::metrics::GATEWAY_ALIASES
        .iter()
        .map(|(old, new)| ((*old).to_owned(), (*new).to_owned()))
        .collect();
    let in_docs: BTreeMap<String, String> = catalogue
        .aliases
        .iter()
        .map(|(old, (_, new))| (old.clone(), new.clone()))
        .collect();
    assert_eq!(
        in_docs, in_code,
        "docs/metrics.md vs metrics::GATEWAY_ALIASES"
    );
    for (old, (kind, new)) in &catalogue.aliases {
        assert!(old.starts_with("gateway_"), "{old}");
        let family = catalogue
            .metrics
            .get(new)
            .unwrap_or_else(|| panic!("alias {old} points at {new}, not in the catalogue"));
        assert_eq!(&family.kind, kind, "{old} must have the type of {new}");
    }
    for (name, family) in &catalogue.metrics {
        assert!(name.starts_with("orchestrator_"), "{name}");
        assert!(
            ["counter", "gauge", "histogram"].contains(&family.kind.as_str()),
            "{name}: {}",
            family.kind
        );
        assert_eq!(
            family.kind == "counter",
            name.ends_with("_total"),
            "{name}: counters and only counters end in _total"
        );
        for label in &family.labels {
            assert!(
                !FORBIDDEN_LABELS.contains(&label.as_str()),
                "{name} has the unbounded label {label}"
            );
            assert!(
                catalogue.label_values.contains_key(label),
                "{name}: label {label} has no documented value set"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Exact counts, and the aliases.

#[tokio::test]
async fn a_known_sequence_of_requests_gives_exact_counts_mirrored_by_the_aliases() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        redis: Some(redis_url()),
        // A loaded test machine must not turn a replay into a fallback.
        args: vec![
            "--redis-timeout=2s".into(),
            "--metrics-gateway-alias-until=2999-01-01T00:00:00Z".into(),
        ],
        ..Options::default()
    })
    .await;

    let key = unique("key-");
    let gsm_two_segments = "a".repeat(161);
    for (body, key) in [
        (send_body("Hello"), Some(key.as_str())),
        (send_body(&gsm_two_segments), None),
        (send_body("Привет"), None),
    ] {
        assert_eq!(app.send(&body, key).await.status(), StatusCode::CREATED);
    }
    let replay = app.send(&send_body("Hello"), Some(&key)).await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    for _ in 0..2 {
        let missing_body = json!({"to": "+447700900123", "from": "Acme"});
        assert!(
            app.send(&missing_body, None)
                .await
                .status()
                .is_client_error()
        );
    }

    // The file sink publishes the three messages in the background.
    let published = eventually(Duration::from_secs(20), || async {
        let s = scrape(&app).await;
        (s.value("orchestrator_published_total", &[("kind", "real")]) == 3.0).then_some(s)
    })
    .await;
    let s = published.expect("three events published");

    let send = [("route", "/v1/sms/send"), ("method", "POST")];
    let live = |class: &'static str| {
        [
            ("route", "/v1/sms/send"),
            ("method", "POST"),
            ("status_class", class),
            ("traffic", "live"),
        ]
    };
    assert_eq!(
        s.value("orchestrator_http_requests_total", &live("2xx")),
        4.0
    );
    assert_eq!(
        s.value("orchestrator_http_requests_total", &live("4xx")),
        2.0
    );
    assert_eq!(s.sum("orchestrator_http_requests_total", &[]), 6.0);
    assert_eq!(
        s.value(
            "orchestrator_http_request_duration_seconds_count",
            &[send[0], send[1], ("traffic", "live")]
        ),
        6.0
    );
    let accepted = |encoding| {
        s.value(
            "orchestrator_messages_accepted_total",
            &[("route", "/v1/sms/send"), ("encoding", encoding)],
        )
    };
    assert_eq!(accepted("GSM-7"), 2.0);
    assert_eq!(accepted("UCS-2"), 1.0);
    let segments = |encoding| {
        s.value(
            "orchestrator_message_segments_total",
            &[("encoding", encoding)],
        )
    };
    assert_eq!(segments("GSM-7"), 3.0, "1 + 2 segments");
    assert_eq!(segments("UCS-2"), 1.0);
    assert_eq!(
        s.value(
            "orchestrator_validation_failures_total",
            &[("rule", "required")]
        ),
        2.0
    );
    assert_eq!(s.sum("orchestrator_validation_failures_total", &[]), 2.0);
    let idempotency = |outcome| {
        s.value(
            "orchestrator_idempotency_outcomes_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(idempotency("new"), 1.0);
    assert_eq!(idempotency("replayed"), 1.0);
    assert_eq!(idempotency("mismatch"), 0.0);
    assert_eq!(idempotency("in_flight"), 0.0);
    assert_eq!(s.sum("orchestrator_auth_failures_total", &[]), 0.0);
    assert_eq!(s.sum("orchestrator_shadow_requests_total", &[]), 0.0);

    // Same scrape: every alias sample is its new sample, renamed.
    for (old, new) in orchestrator::metrics::GATEWAY_ALIASES {
        assert_eq!(
            s.types.get(*old),
            s.types.get(*new),
            "{old} has the type of {new}"
        );
        let renamed: Vec<Sample> = s
            .samples_of_family(new)
            .into_iter()
            .map(|x| Sample {
                name: x.name.replacen(new, old, 1),
                ..x.clone()
            })
            .collect();
        assert_eq!(
            s.samples_of_family(old)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>(),
            renamed,
            "{old}"
        );
    }
    assert_eq!(
        s.value(
            "gateway_sms_submitted_total",
            &[("route", "/v1/sms/send"), ("encoding", "GSM-7")]
        ),
        2.0
    );
}

/// A fresh embedded orchestrator started with `args`, scraped after one
/// accepted send.
async fn scrape_after_one_send(args: &[&str]) -> Scrape {
    let app = TestApp::spawn(Options {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..Options::default()
    })
    .await;
    assert_eq!(
        app.send(&send_body("alias"), None).await.status(),
        StatusCode::CREATED
    );
    scrape(&app).await
}

#[tokio::test]
async fn the_aliases_are_emitted_until_their_instant_and_not_after() {
    let today = chrono::Utc::now().date_naive().to_string();
    for (args, aliases) in [
        (
            vec!["--metrics-gateway-alias-until=2999-01-01T00:00:00Z"],
            true,
        ),
        (
            vec!["--metrics-gateway-alias-until=2001-01-01T00:00:00Z"],
            false,
        ),
        // The default: 30 days after the cutover date.
        (vec!["--metrics-cutover-date", today.as_str()], true),
        (vec!["--metrics-cutover-date=2001-01-01"], false),
        // No date at all: the cutover has not happened, the aliases stay.
        (vec![], true),
    ] {
        let s = scrape_after_one_send(&args).await;
        let new = s.value(
            "orchestrator_messages_accepted_total",
            &[("route", "/v1/sms/send"), ("encoding", "GSM-7")],
        );
        assert_eq!(new, 1.0, "{args:?}");
        let gateway: Vec<&String> = s
            .types
            .keys()
            .filter(|n| n.starts_with("gateway_"))
            .collect();
        if aliases {
            assert_eq!(
                s.value(
                    "gateway_sms_submitted_total",
                    &[("route", "/v1/sms/send"), ("encoding", "GSM-7")]
                ),
                new,
                "{args:?}"
            );
            assert!(gateway.contains(&&"gateway_http_requests_total".to_owned()));
        } else {
            assert!(gateway.is_empty(), "{args:?}: {gateway:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Readiness.

#[tokio::test]
async fn readyz_with_redis_down_is_ready_and_says_redis_is_degraded() {
    let db = TestDatabase::create().await;
    let app = TestApp::spawn(Options {
        database_url: Some(db.url.clone()),
        redis: Some("redis://127.0.0.1:1".into()),
        ..Options::default()
    })
    .await;
    for base in [&app.admin, &app.api] {
        let r = app.http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{base}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "ready", "{body}");
        assert_eq!(body["checks"]["database"], "ok", "{body}");
        assert_eq!(body["checks"]["redis"], "degraded", "{body}");
        assert_eq!(body["checks"]["nats"], "ok", "{body}");
    }
    // Degraded, not stopped: a keyed send is accepted on Postgres alone.
    let r = app
        .send(&send_body("no redis"), Some(&unique("key-")))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let s = scrape(&app).await;
    let up = |d| s.value("orchestrator_dependency_up", &[("dependency", d)]);
    assert_eq!((up("database"), up("redis"), up("nats")), (1.0, 0.0, 1.0));
    assert!(s.value("orchestrator_redis_fallback_total", &[]) >= 1.0);
}

// ---------------------------------------------------------------------------
// Logs.

fn json_lines(app: &TestApp) -> Vec<Value> {
    app.log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits for the log lines `pick` selects to number `n`, and returns them.
async fn await_log_lines(app: &TestApp, n: usize, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
    let found = eventually(Duration::from_secs(10), || async {
        let lines: Vec<Value> = json_lines(app).into_iter().filter(|l| pick(l)).collect();
        (lines.len() >= n).then_some(lines)
    })
    .await;
    let lines = found.unwrap_or_else(|| {
        panic!(
            "expected {n} matching log lines; got:\n{}",
            app.log_lines().join("\n")
        )
    });
    // Give a duplicate the time to show up before asserting there is none.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again: Vec<Value> = json_lines(app).into_iter().filter(|l| pick(l)).collect();
    assert_eq!(again.len(), lines.len(), "{again:?}");
    lines
}

type Headers<'a> = Vec<(&'a str, &'a str)>;

#[tokio::test]
async fn the_correlation_id_follows_kong_then_envoy_then_a_new_one_into_logs_and_events() {
    let (app, _db, nats) = TestApp::full().await;
    let corr = unique("corr-");
    let kong = unique("kong-");
    let envoy = unique("envoy-");
    let too_long = "x".repeat(129);
    // (headers sent, id expected back; None: a freshly minted one)
    let cases: Vec<(Headers, Option<&str>)> = vec![
        (
            vec![
                ("X-Correlation-ID", corr.as_str()),
                ("Kong-Request-ID", "kong-ignored"),
                ("x-request-id", "envoy-ignored"),
            ],
            Some(corr.as_str()),
        ),
        (
            vec![
                ("Kong-Request-ID", kong.as_str()),
                ("x-request-id", "envoy-ignored"),
            ],
            Some(kong.as_str()),
        ),
        (vec![("x-request-id", envoy.as_str())], Some(envoy.as_str())),
        // Not 1–128 visible ASCII characters: the next source is used…
        (
            vec![
                ("X-Correlation-ID", "two words"),
                ("x-request-id", "fallback-1"),
            ],
            Some("fallback-1"),
        ),
        // …or, when there is none, a fresh UUIDv7.
        (vec![("X-Correlation-ID", too_long.as_str())], None),
        (vec![], None),
    ];
    for (headers, expected) in cases {
        let mut request = app
            .request(Method::POST, "/v1/sms/send")
            .json(&send_body("corr"));
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{headers:?}");
        // Not echoed on the answer (the legacy sent no such header)…
        assert!(r.headers().get("x-correlation-id").is_none());
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // …but carried into the log lines and the event.
        let accepted = await_log_lines(&app, 1, |l| {
            l["message"] == "message accepted" && l["message_id"] == id.as_str()
        })
        .await;
        let echoed = accepted[0]["correlation_id"].as_str().unwrap().to_owned();
        match expected {
            Some(e) => assert_eq!(echoed, e, "{headers:?}"),
            None => {
                let minted = uuid::Uuid::parse_str(&echoed).expect("a generated UUID");
                assert_eq!(minted.get_version_num(), 7, "{echoed}");
            }
        }

        // Exactly one request line, with everything an on-call needs.
        let request_lines = await_log_lines(&app, 1, |l| {
            l["target"] == "request" && l["correlation_id"] == echoed.as_str()
        })
        .await;
        let line = &request_lines[0];
        assert_eq!(request_lines.len(), 1, "{request_lines:?}");
        assert_eq!(line["route"], "/v1/sms/send", "{line}");
        assert_eq!(line["status"], 201, "{line}");
        assert_eq!(line["tenant"], app.tenant.as_str(), "{line}");
        assert_eq!(line["outcome"], "ok", "{line}");
        assert_eq!(line["traffic"], "live", "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{line}"
        );
    }

    // The event carries it too (payload field and header).
    let events = eventually(Duration::from_secs(20), || async {
        let m = stream_messages(&nats.url, &nats.stream, &nats.subject()).await;
        (m.len() >= 6).then_some(m)
    })
    .await
    .expect("six events published");
    let from_kong = events
        .iter()
        .find(|(_, payload)| payload["correlation_id"] == kong.as_str())
        .expect("the Kong-id event");
    assert_eq!(from_kong.1["tenant_id"], app.tenant.as_str());
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(&nats.stream).await.unwrap();
    let raw = stream
        .get_last_raw_message_by_subject(&nats.subject())
        .await
        .unwrap();
    let payload: Value = serde_json::from_slice(&raw.payload).unwrap();
    assert_eq!(
        raw.headers.get("X-Correlation-ID").map(|v| v.to_string()),
        payload["correlation_id"].as_str().map(str::to_owned),
    );
}

#[tokio::test]
async fn logs_mask_phone_numbers_and_never_contain_bodies_or_tokens() {
    let (app, _db, _nats) = TestApp::full().await;
    let number = "+447700900456";
    let digits = &number[1..];
    let masked = orchestrator::domain::PhoneNumber::parse(number)
        .unwrap()
        .masked();
    assert_eq!(masked, "+44********56");
    let secret_body = format!("Your code is 771204 {}", unique("body-"));
    let token = app.token_for(&app.tenant);
    let forged = format!("{}forged", &token[..token.len() - 6]);

    // Accepted.
    let r = app
        .send(
            &json!({"to": number, "from": "Acme", "body": secret_body}),
            Some(&unique("key-")),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Refused by validation, with the number and the body in the request.
    let r = app
        .send(
            &json!({"to": number, "from": "", "body": secret_body}),
            None,
        )
        .await;
    assert!(r.status().is_client_error());
    // Bulk, with a second number.
    let r = app
        .bulk(
            &json!({"messages": [
                {"to": number, "from": "Acme", "body": secret_body},
                {"to": "+14155550123", "from": "Acme", "body": secret_body},
            ]}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // Refused by authentication, with a forged token.
    let r = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .bearer_auth(&forged)
        .header("X-Tenant-Id", &app.tenant)
        .json(&json!({"to": number, "from": "Acme", "body": secret_body}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Read back (the API answers the full number; the log must not).
    assert_eq!(app.get(&id).await.status(), StatusCode::OK);

    let accepted = await_log_lines(&app, 1, |l| {
        l["message"] == "message accepted" && l["message_id"] == id.as_str()
    })
    .await;
    assert_eq!(accepted[0]["to"], masked.as_str(), "{}", accepted[0]);
    assert_eq!(accepted[0]["tenant"], app.tenant.as_str());
    assert!(accepted[0].get("body").is_none(), "{}", accepted[0]);
    // Every request has been logged before the scan.
    await_log_lines(&app, 5, |l| l["target"] == "request").await;

    let lines = app.log_lines();
    for line in &lines {
        for (secret, what) in [
            (digits, "a full phone number"),
            ("4155550123", "a full phone number"),
            (secret_body.as_str(), "a message body"),
            ("771204", "part of a message body"),
            (token.as_str(), "a token"),
            (forged.as_str(), "a token"),
            (&token[token.len() - 20..], "part of a token"),
        ] {
            assert!(!line.contains(secret), "{what} in the log: {line}");
        }
    }
    assert!(
        lines.iter().any(|l| l.contains(&masked)),
        "the masked number is logged"
    );
}

// ---------------------------------------------------------------------------
// promtool: the rules, their unit tests, and a real scrape.

fn promtool(args: &[&str]) -> std::process::Output {
    std::process::Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("promtool on PATH (Debian package `prometheus`; scripts/test.sh installs it)")
}

fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules() {
    let out = promtool(&["check", "rules", "docs/prometheus/rules.yml"]);
    assert_success(&out, "promtool check rules");
}

#[test]
fn promtool_passes_the_rules_unit_tests() {
    let out = promtool(&["test", "rules", "docs/prometheus/rules_test.yml"]);
    assert_success(&out, "promtool test rules");
}

#[tokio::test]
async fn a_real_scrape_passes_promtool_check_metrics() {
    let app = TestApp::embedded().await;
    assert_eq!(
        app.send(&send_body("lint"), Some("lint-key"))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert!(app.send(&json!({}), None).await.status().is_client_error());
    app.http
        .get(format!("{}/readyz", app.admin))
        .send()
        .await
        .unwrap();
    let text = app.metrics().await;
    assert!(text.contains("# TYPE orchestrator_http_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE gateway_http_requests_total counter"));

    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (Debian package `prometheus`; scripts/test.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_success(&out, "promtool check metrics");
}

// ---------------------------------------------------------------------------
// Rules and dashboard query only series that exist.

/// Metric names a PromQL expression selects: identifiers outside strings,
/// label matchers, ranges and grouping clauses that are not functions,
/// keywords or Grafana variables.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    // Operators and literals, then aggregations (`sum by (x) (…)` has no
    // parenthesis right after its name).
    const KEYWORDS: &str = "and or unless bool offset inf nan \
        sum avg min max count group stddev stdvar topk bottomk quantile count_values limitk limit_ratio";
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let close = |open: usize, o: char, c: char| {
        let mut depth = 0;
        let mut j = open;
        let mut quote = None;
        while j < chars.len() {
            match (quote, chars[j]) {
                (Some(q), ch) if ch == q => quote = None,
                (Some(_), '\\') => j += 1,
                (Some(_), _) => {}
                (None, '"' | '\'' | '`') => quote = Some(chars[j]),
                (None, ch) if ch == o => depth += 1,
                (None, ch) if ch == c => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        panic!("unbalanced {o}{c} in {expr}");
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c == '{' {
            i = close(i, '{', '}');
        } else if c == '[' {
            i = close(i, '[', ']');
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            if GROUPING.contains(&ident.as_str()) {
                if chars.get(next) == Some(&'(') {
                    i = close(next, '(', ')');
                }
            } else if chars.get(next) == Some(&'(')
                || KEYWORDS
                    .split_whitespace()
                    .any(|k| k.eq_ignore_ascii_case(&ident))
            {
                // A function call or an operator keyword.
            } else {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_promql_name_scanner_finds_metrics_only() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(a_bucket{route=~"/v1/.+",x="by (y)"}[$__rate_interval])))
           / on (route) group_left (le) b:rec offset 5m and c > 1e-3 unless sum(d) without (e)"#,
    );
    let want: BTreeSet<String> = ["a_bucket", "b:rec", "c", "d"].map(str::to_owned).into();
    assert_eq!(names, want);
}

/// Every `expr` of the rules file: recorded name → expression, and the
/// alert expressions.
fn rules() -> (BTreeMap<String, String>, Vec<String>) {
    let doc: Value = serde_norway::from_str(&read("docs/prometheus/rules.yml")).expect("YAML");
    let mut recorded = BTreeMap::new();
    let mut alerts = Vec::new();
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr").to_owned();
            match rule["record"].as_str() {
                Some(name) => {
                    recorded.insert(name.to_owned(), expr);
                }
                None => alerts.push(expr),
            }
        }
    }
    (recorded, alerts)
}

/// Names of the mirror proxy's metrics, read from its source (it is being
/// built alongside; its names are whatever it registers today).
fn mirror_proxy_series() -> BTreeSet<String> {
    let src = read("mirror-proxy/src/metrics.rs");
    let mut out = BTreeSet::new();
    for piece in src.split("\"mirror_").skip(1) {
        let name = format!("mirror_{}", piece.split('"').next().unwrap_or_default());
        for suffix in ["", "_bucket", "_sum", "_count"] {
            out.insert(format!("{name}{suffix}"));
        }
    }
    assert!(out.contains("mirror_diff_verdicts_total"), "{out:?}");
    out
}

#[test]
fn the_rules_query_only_catalogued_series() {
    let catalogue = Catalogue::load();
    let (recorded, alerts) = rules();
    let known: BTreeSet<String> = catalogue
        .series_names()
        .into_iter()
        .chain(mirror_proxy_series())
        .chain(recorded.keys().cloned())
        .collect();
    for expr in recorded.values().chain(&alerts) {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{expr}");
        for name in names {
            assert!(
                known.contains(&name),
                "{name} (in {expr}) is not a known series"
            );
            assert!(
                !name.starts_with("gateway_"),
                "rules must outlive the aliases: {expr}"
            );
        }
    }
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

#[test]
fn the_dashboard_is_importable_and_queries_only_series_that_exist() {
    let dashboard: Value =
        serde_json::from_str(&read("docs/grafana/submit-path.json")).expect("valid JSON");
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "a Prometheus datasource input: {inputs:?}"
    );
    let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(dashboard["id"].is_null(), "an id would clash on import");

    let mut ids = BTreeSet::new();
    for p in panels(&dashboard) {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {p}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "{}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
            assert!(t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()));
        }
    }

    let catalogue = Catalogue::load();
    let (recorded, _) = rules();
    let known: BTreeSet<String> = catalogue
        .series_names()
        .into_iter()
        .chain(mirror_proxy_series())
        .chain(recorded.keys().cloned())
        .collect();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in promql_metric_names(expr) {
            assert!(
                known.contains(&name),
                "{name} (in {expr}) is not a known series"
            );
            // A recorded series stands for the series its rule reads.
            match recorded.get(&name) {
                Some(rule) => used.extend(promql_metric_names(rule)),
                None => {
                    used.insert(name);
                }
            }
        }
    }
    // Every orchestrator family is on the dashboard, directly or through a rule.
    for (name, family) in &catalogue.metrics {
        let shown = used.contains(name)
            || (family.kind == "histogram" && used.contains(&format!("{name}_bucket")));
        assert!(shown, "{name} is on no panel");
    }
    // And every go/no-go alert's series.
    for signal in [
        "orchestrator:availability:ratio_rate5m",
        "orchestrator:outbox_oldest_age_seconds:max",
        "orchestrator:publish_failures:ratio_rate5m",
        "mirror:diff_ratio:rate5m",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(signal)),
            "{signal} is on no panel"
        );
    }
}

/// Issue #16, defect 6: Kong's consumer headers are in the request line at
/// the default level (`info`), for accepted and refused requests alike.
#[tokio::test]
async fn kong_consumer_headers_are_in_the_request_line_at_the_default_level() {
    let app = TestApp::embedded().await;
    let consumer = uuid::Uuid::new_v4().to_string();
    let accepted = app
        .request(Method::POST, "/v1/sms/send")
        .json(&send_body("audit"))
        .header("X-Correlation-ID", "audit-accepted")
        .header("X-Consumer-ID", &consumer)
        .header("X-Consumer-Custom-ID", "acme-billing")
        .header("X-Consumer-Username", "acme")
        .header("X-Credential-Identifier", "acme-jwt-key")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::CREATED);
    let refused = app
        .http
        .post(format!("{}/v1/sms/send", app.api))
        .header("X-Correlation-ID", "audit-refused")
        .header("X-Tenant-Id", &app.tenant)
        .header("X-Consumer-ID", &consumer)
        .header("X-Anonymous-Consumer", "true")
        .json(&send_body("audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let line = &await_log_lines(&app, 1, |l| {
        l["target"] == "request" && l["correlation_id"] == "audit-accepted"
    })
    .await[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["consumer_id"], consumer.as_str(), "{line}");
    assert_eq!(line["consumer_custom_id"], "acme-billing", "{line}");
    assert_eq!(line["consumer_username"], "acme", "{line}");
    assert_eq!(line["credential_identifier"], "acme-jwt-key", "{line}");
    assert!(line.get("anonymous_consumer").is_none(), "{line}");

    let line = &await_log_lines(&app, 1, |l| {
        l["target"] == "request" && l["correlation_id"] == "audit-refused"
    })
    .await[0];
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["consumer_id"], consumer.as_str(), "{line}");
    assert_eq!(line["anonymous_consumer"], true, "{line}");
    assert!(line.get("consumer_custom_id").is_none(), "{line}");
}
