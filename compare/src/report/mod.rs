//! `compare report`: turns diff records into the SRE's go/no-go evidence.
//!
//! [`Report::build`] (or [`ReportBuilder`], one record at a time, for diff
//! logs too large to hold) aggregates: overall and per-route diff rates with 95 %
//! Wilson confidence intervals, the diff rate over time, the top
//! differing paths with side-by-side examples and a "copy as curl" for each,
//! every **accepted contract change** (by rule, route and path, with an
//! example), and everything explained away as **value noise** (by rule,
//! route and path, with an example), so a reviewer sees what each rule
//! absorbed. [`Gate`] decides readiness (per route and overall: a diff rate
//! at or under the maximum, no contract change the run did not acknowledge,
//! enough samples). [`render_html`] writes one self-contained HTML file
//! (inline SVG chart, no network), [`render_markdown`] a change-ticket
//! summary with the same tables, [`render_json`] the same data for
//! machines.

mod render;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde_json::Value;

pub use render::{curl_command, render_html, render_json, render_markdown};

use crate::record::{Category, DiffKind, DiffRecord, Explained};
use crate::rules::pointer::generalise;

/// Examples kept per differing path (Diffy keeps 5 requests per field).
const EXAMPLES_PER_PATH: usize = 3;
/// Differing paths listed in a report.
const TOP_PATHS: usize = 25;
/// Points of the diff-rate-over-time chart.
const TIME_BUCKETS: i64 = 48;
/// Routes named per reason in the gate's one-line reason.
const ROUTES_IN_REASON: usize = 3;

/// The go/no-go thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    /// Highest acceptable diff rate, as a fraction (0.001 = 0.1 %).
    pub max_diff_rate: f64,
    /// Fewest samples a route (and the whole run) must have.
    pub min_samples: u64,
    /// Contract changes this run accepts, by the label a report shows
    /// (`status-class:send-accepted`); any other accepted change fails the
    /// gate. The CLI's `--acknowledge-contract-change`.
    pub acknowledged: Vec<String>,
}

/// The gate's decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub ready: bool,
    /// One line for a terminal or a CI log: diff-rate failures first, then
    /// unacknowledged contract changes, then sample shortfalls, each with
    /// how many routes fail for it.
    pub reason: String,
    /// Every failed check, one line each, in the same order.
    pub failures: Vec<String>,
    /// Contract changes seen but not acknowledged, by label.
    pub unacknowledged: Vec<String>,
    pub gate: Gate,
}

/// Counts and rate for a set of records.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateStats {
    pub samples: u64,
    pub same: u64,
    pub noise_only: u64,
    /// Records whose only differences beyond noise are contract changes a
    /// rule accepted (verdict `differs` in the log).
    pub accepted_change: u64,
    /// Records with at least one unexplained difference.
    pub differs: u64,
    /// `differs` over `samples`.
    pub diff_rate: f64,
    /// 95 % Wilson score interval of the diff rate.
    pub ci_low: f64,
    pub ci_high: f64,
}

impl RateStats {
    fn from_counts(c: Counts) -> Self {
        let samples = c.same + c.noise_only + c.accepted_change + c.differs;
        let (ci_low, ci_high) = wilson_interval(c.differs, samples);
        Self {
            samples,
            same: c.same,
            noise_only: c.noise_only,
            accepted_change: c.accepted_change,
            differs: c.differs,
            diff_rate: if samples == 0 {
                0.0
            } else {
                c.differs as f64 / samples as f64
            },
            ci_low,
            ci_high,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteStats {
    pub route: String,
    #[serde(flatten)]
    pub stats: RateStats,
    /// Median latencies (ms) when recorded.
    pub p50_primary_ms: Option<f64>,
    pub p50_candidate_ms: Option<f64>,
    /// Status pairs that differed, `"200→500": count`.
    pub status_pairs: BTreeMap<String, u64>,
    /// Accepted contract changes by label: exchanges in which each occurred.
    pub contract_changes: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeBucket {
    pub start: DateTime<Utc>,
    pub samples: u64,
    pub differs: u64,
    pub diff_rate: f64,
}

/// One differing path with its count and examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathStats {
    pub route: String,
    /// `status`, `header:<name>`, `event`, `transport-error` or a body
    /// pointer with indices generalised to `*`.
    pub path: String,
    pub kind: DiffKind,
    /// Exchanges in which this path differed.
    pub count: u64,
    /// `count` over the route's samples.
    pub share: f64,
    pub examples: Vec<Example>,
}

/// What one rule explained on one path of one route: value noise, or an
/// accepted contract change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedStats {
    /// The rule entry (`[defaults] match /**/created_at`).
    pub rule: String,
    /// Its label (`timestamp±5000ms`, `status-class:send-accepted`): for a
    /// contract change, the name `--acknowledge-contract-change` takes.
    pub label: String,
    pub route: String,
    /// As in [`PathStats::path`].
    pub path: String,
    pub kind: DiffKind,
    /// Exchanges in which the rule explained this path.
    pub count: u64,
    /// `count` over the route's samples.
    pub share: f64,
    /// The first one seen.
    pub example: Example,
}

/// A side-by-side example (values as stored: redacted unless the records
/// were written with `--no-redact`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Example {
    pub ts: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub primary: String,
    pub candidate: String,
    pub curl: Option<String>,
}

/// Everything a rendered report shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub sources: Vec<String>,
    pub first_ts: Option<DateTime<Utc>>,
    pub last_ts: Option<DateTime<Utc>>,
    pub overall: RateStats,
    pub routes: Vec<RouteStats>,
    pub timeline: Vec<TimeBucket>,
    /// Unexplained differences, most frequent first.
    pub top_paths: Vec<PathStats>,
    /// Every accepted contract change, by route, label and path.
    pub contract_changes: Vec<ExplainedStats>,
    /// Everything explained as value noise, by rule, route and path.
    pub noise: Vec<ExplainedStats>,
    pub unmatched_primary: u64,
    pub unmatched_candidate: u64,
    pub transport_errors: u64,
    /// Whether every record was redacted when written.
    pub all_redacted: bool,
    pub gate: Option<GateResult>,
}

impl Report {
    /// Aggregates records. `sources` are only listed in the report. Same as
    /// feeding them one by one to a [`ReportBuilder`].
    pub fn build(records: &[DiffRecord], sources: Vec<String>, gate: Option<Gate>) -> Self {
        let mut builder = ReportBuilder::new();
        for record in records {
            builder.add(record);
        }
        builder.finish(sources, gate)
    }
}

/// Record counts by category.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    same: u64,
    noise_only: u64,
    accepted_change: u64,
    differs: u64,
}

impl Counts {
    fn add(&mut self, category: Category) {
        match category {
            Category::Same => self.same += 1,
            Category::NoiseOnly => self.noise_only += 1,
            Category::AcceptedChange => self.accepted_change += 1,
            Category::Differs => self.differs += 1,
        }
    }
}

/// What a route's line in the report needs.
#[derive(Debug, Default)]
struct RouteAcc {
    counts: Counts,
    /// Status pairs that differed, `"200→500": count`.
    status_pairs: BTreeMap<String, u64>,
    contract_changes: BTreeMap<String, u64>,
    primary_ms: Vec<f64>,
    candidate_ms: Vec<f64>,
}

/// (route, generalised path, kind) → (exchanges, first examples).
type PathCounts = HashMap<(String, String, DiffKind), (u64, Vec<Example>)>;

/// (route, rule, label, generalised path, kind) → (exchanges, first example).
type ExplainedCounts = HashMap<(String, String, String, String, DiffKind), (u64, Example)>;

/// Builds a [`Report`] from records added one at a time, so a report over
/// a diff log of any size does not hold the records: it keeps counters,
/// the first [`EXAMPLES_PER_PATH`] examples per differing path, one example
/// per rule, route and path it explained (bounded by the rules and the
/// API's shape, not by the traffic), and about 32 bytes per record (time
/// and verdict for the timeline, which needs the last time before it can
/// place the first; latencies for the medians).
#[derive(Debug)]
pub struct ReportBuilder {
    overall: Counts,
    routes: BTreeMap<String, RouteAcc>,
    points: Vec<(DateTime<Utc>, bool)>,
    paths: PathCounts,
    changes: ExplainedCounts,
    noise: ExplainedCounts,
    unmatched_primary: u64,
    unmatched_candidate: u64,
    transport_errors: u64,
    all_redacted: bool,
}

impl Default for ReportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReportBuilder {
    pub fn new() -> Self {
        Self {
            overall: Counts::default(),
            routes: BTreeMap::new(),
            points: Vec::new(),
            paths: HashMap::new(),
            changes: HashMap::new(),
            noise: HashMap::new(),
            unmatched_primary: 0,
            unmatched_candidate: 0,
            transport_errors: 0,
            all_redacted: true,
        }
    }

    /// Counts one record. Examples are taken from the first records added.
    pub fn add(&mut self, record: &DiffRecord) {
        let category = record.category();
        self.overall.add(category);
        let route = match self.routes.get_mut(record.route.as_str()) {
            Some(route) => route,
            None => self.routes.entry(record.route.clone()).or_default(),
        };
        route.counts.add(category);
        if let Some(s) = &record.status
            && s.primary != s.candidate
        {
            *route
                .status_pairs
                .entry(format!("{}→{}", s.primary, s.candidate))
                .or_insert(0) += 1;
        }
        if let Some(latency) = &record.latency_ms {
            route.primary_ms.push(latency.primary);
            route.candidate_ms.push(latency.candidate);
        }
        let mut labels: Vec<&str> = Vec::new();
        for change in record.accepted_changes() {
            if !labels.contains(&change.label) {
                labels.push(change.label);
                *route
                    .contract_changes
                    .entry(change.label.to_owned())
                    .or_insert(0) += 1;
            }
        }
        self.points.push((record.ts, category == Category::Differs));
        if category == Category::Differs {
            let mut seen = Vec::new();
            for (path, kind) in record.real_differences() {
                let key = (record.route.clone(), generalise(&path), kind);
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key.clone());
                let entry = self.paths.entry(key).or_insert((0, Vec::new()));
                entry.0 += 1;
                if entry.1.len() < EXAMPLES_PER_PATH {
                    entry.1.push(example(record, &path));
                }
            }
        }
        count_explained(&mut self.changes, record, record.accepted_changes());
        count_explained(&mut self.noise, record, record.noise_differences());
        match record.unmatched {
            Some(crate::record::Side::Primary) => self.unmatched_primary += 1,
            Some(crate::record::Side::Candidate) => self.unmatched_candidate += 1,
            None => {}
        }
        if record.error.is_some() {
            self.transport_errors += 1;
        }
        self.all_redacted &= record.redacted;
    }

    /// The report over every record added. `sources` are only listed in it.
    pub fn finish(self, sources: Vec<String>, gate: Option<Gate>) -> Report {
        let routes: Vec<RouteStats> = self
            .routes
            .into_iter()
            .map(|(route, acc)| RouteStats {
                route,
                stats: RateStats::from_counts(acc.counts),
                p50_primary_ms: median(acc.primary_ms),
                p50_candidate_ms: median(acc.candidate_ms),
                status_pairs: acc.status_pairs,
                contract_changes: acc.contract_changes,
            })
            .collect();
        let first_ts = self.points.iter().map(|(ts, _)| *ts).min();
        let last_ts = self.points.iter().map(|(ts, _)| *ts).max();
        let route_samples: HashMap<&str, u64> = routes
            .iter()
            .map(|r| (r.route.as_str(), r.stats.samples))
            .collect();
        let top_paths = top_paths(self.paths, &route_samples);
        let mut contract_changes = explained(self.changes, &route_samples);
        contract_changes
            .sort_by(|a, b| (&a.route, &a.label, &a.path).cmp(&(&b.route, &b.label, &b.path)));
        let mut noise = explained(self.noise, &route_samples);
        noise.sort_by(|a, b| (&a.rule, &a.route, &a.path).cmp(&(&b.rule, &b.route, &b.path)));
        let mut report = Report {
            generated_at: Utc::now(),
            sources,
            first_ts,
            last_ts,
            overall: RateStats::from_counts(self.overall),
            timeline: timeline(&self.points, first_ts, last_ts),
            top_paths,
            contract_changes,
            noise,
            routes,
            unmatched_primary: self.unmatched_primary,
            unmatched_candidate: self.unmatched_candidate,
            transport_errors: self.transport_errors,
            all_redacted: self.all_redacted,
            gate: None,
        };
        report.gate = gate.map(|g| g.evaluate(&report));
        report
    }
}

/// Counts each (rule, label, generalised path) once per record.
fn count_explained<'r>(
    counts: &mut ExplainedCounts,
    record: &'r DiffRecord,
    explained: impl Iterator<Item = Explained<'r>>,
) {
    let mut seen: Vec<(&str, &str, String)> = Vec::new();
    for e in explained {
        let path = generalise(&e.path);
        if seen
            .iter()
            .any(|(rule, label, p)| *rule == e.rule && *label == e.label && *p == path)
        {
            continue;
        }
        let key = (
            record.route.clone(),
            e.rule.to_owned(),
            e.label.to_owned(),
            path.clone(),
            e.kind,
        );
        seen.push((e.rule, e.label, path));
        counts
            .entry(key)
            .and_modify(|(n, _)| *n += 1)
            .or_insert_with(|| (1, example(record, &e.path)));
    }
}

fn explained(counts: ExplainedCounts, route_samples: &HashMap<&str, u64>) -> Vec<ExplainedStats> {
    counts
        .into_iter()
        .map(
            |((route, rule, label, path, kind), (count, example))| ExplainedStats {
                share: share_of_route(route_samples, &route, count),
                rule,
                label,
                route,
                path,
                kind,
                count,
                example,
            },
        )
        .collect()
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// `points`: each record's time and whether it differs.
fn timeline(
    points: &[(DateTime<Utc>, bool)],
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
) -> Vec<TimeBucket> {
    let (Some(first), Some(last)) = (first, last) else {
        return Vec::new();
    };
    let span_ms = (last - first).num_milliseconds().max(1);
    // Round the bucket width up to a whole second so labels stay readable.
    let width_ms = ((span_ms + TIME_BUCKETS - 1) / TIME_BUCKETS).max(1000);
    let buckets = ((span_ms / width_ms) + 1).clamp(1, TIME_BUCKETS + 1);
    let mut samples = vec![0u64; buckets as usize];
    let mut differs = vec![0u64; buckets as usize];
    for &(ts, differing) in points {
        let offset = (ts - first).num_milliseconds().max(0);
        let index = ((offset / width_ms).min(buckets - 1)) as usize;
        if let (Some(s), Some(d)) = (samples.get_mut(index), differs.get_mut(index)) {
            *s += 1;
            if differing {
                *d += 1;
            }
        }
    }
    samples
        .iter()
        .zip(&differs)
        .enumerate()
        .map(|(i, (&samples, &differs))| TimeBucket {
            start: first + TimeDelta::milliseconds(i as i64 * width_ms),
            samples,
            differs,
            diff_rate: if samples == 0 {
                0.0
            } else {
                differs as f64 / samples as f64
            },
        })
        .collect()
}

/// `count` over the route's samples.
fn share_of_route(route_samples: &HashMap<&str, u64>, route: &str, count: u64) -> f64 {
    let samples = route_samples.get(route).copied().unwrap_or(0).max(1);
    count as f64 / samples as f64
}

fn top_paths(paths: PathCounts, route_samples: &HashMap<&str, u64>) -> Vec<PathStats> {
    let mut out: Vec<PathStats> = paths
        .into_iter()
        .map(|((route, path, kind), (count, examples))| PathStats {
            share: share_of_route(route_samples, &route, count),
            route,
            path,
            kind,
            count,
            examples,
        })
        .collect();
    // Most frequent first; among equals, what a client meets first: the
    // status (or no answer at all), then headers, then the body; last the
    // headers derived from the body's bytes (`Content-Length`, `ETag`),
    // which differ whenever it does and so never say why.
    let rank = |path: &str| match path {
        "status" | "transport-error" | "event" => 0,
        "header:content-length" | "header:etag" => 3,
        p if p.starts_with("header:") => 1,
        _ => 2,
    };
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.route.cmp(&b.route))
            .then_with(|| rank(&a.path).cmp(&rank(&b.path)))
            .then_with(|| a.path.cmp(&b.path))
    });
    out.truncate(TOP_PATHS);
    out
}

fn example(record: &DiffRecord, path: &str) -> Example {
    let show = |v: Option<&Value>| match v {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    };
    let (primary, candidate) = if path == "status" {
        let s = record.status.as_ref();
        (
            s.map(|s| s.primary.to_string()).unwrap_or_default(),
            s.map(|s| s.candidate.to_string()).unwrap_or_default(),
        )
    } else if path == "transport-error" {
        (
            "(answered)".to_owned(),
            record.error.clone().unwrap_or_default(),
        )
    } else if path == "event" {
        match record.unmatched {
            Some(crate::record::Side::Primary) => ("(event)".to_owned(), "(no event)".to_owned()),
            _ => ("(no event)".to_owned(), "(event)".to_owned()),
        }
    } else if let Some(name) = path.strip_prefix("header:") {
        let d = record.headers.iter().find(|d| d.name == name);
        (
            d.and_then(|d| d.primary.clone())
                .unwrap_or_else(|| "(absent)".to_owned()),
            d.and_then(|d| d.candidate.clone())
                .unwrap_or_else(|| "(absent)".to_owned()),
        )
    } else {
        match record.body.iter().find(|d| d.pointer == path) {
            // Explained whole without keeping the bodies (`ignore_body`, a
            // large envelope).
            Some(d) if d.primary.is_none() && d.candidate.is_none() => {
                ("(not kept)".to_owned(), "(not kept)".to_owned())
            }
            d => (
                show(d.and_then(|d| d.primary.as_ref())),
                show(d.and_then(|d| d.candidate.as_ref())),
            ),
        }
    };
    Example {
        ts: record.ts,
        correlation_id: record.correlation_id.clone(),
        primary,
        candidate,
        curl: record.request.as_ref().map(curl_command),
    }
}

/// The 95 % Wilson score interval for `k` successes out of `n`. Unlike the
/// normal approximation it stays inside [0, 1] and is meaningful for rates
/// near zero, which is where a cutover gate lives.
pub fn wilson_interval(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    // Exact at the edges: no `0.0000%` from rounding when nothing differed.
    let low = if k == 0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let high = if k as f64 == n {
        1.0
    } else {
        (center + half).min(1.0)
    };
    (low, high)
}

/// A rate as a percentage with enough digits for gates like 0.1 %.
pub fn percent(rate: f64) -> String {
    let pct = rate * 100.0;
    if pct == 0.0 {
        "0%".to_owned()
    } else if pct < 0.01 {
        format!("{pct:.4}%")
    } else if pct < 1.0 {
        format!("{pct:.3}%")
    } else {
        format!("{pct:.2}%")
    }
}

impl Gate {
    /// Checks each route and the whole run: the diff rate, contract changes
    /// the run did not acknowledge, and the sample count, in that order of
    /// importance. A route is checked for all three: a differing exchange
    /// is evidence however few samples its route has.
    pub fn evaluate(&self, report: &Report) -> GateResult {
        let total = report.routes.len();
        let over_rate =
            |stats: &RateStats| stats.differs > 0 && stats.diff_rate > self.max_diff_rate;
        let rate = |stats: &RateStats| {
            format!(
                "{} ({}/{})",
                percent(stats.diff_rate),
                stats.differs,
                stats.samples
            )
        };
        // What differs most on a route, for the one-line reason: its most
        // frequent unexplained path (with the status pair for `status`).
        let top = |route: &RouteStats| -> String {
            let Some(p) = report.top_paths.iter().find(|p| p.route == route.route) else {
                return String::new();
            };
            let what = if p.path == "status" {
                match route.status_pairs.iter().max_by_key(|(_, n)| **n) {
                    Some((pair, _)) => format!("status {pair}"),
                    None => "status".to_owned(),
                }
            } else if p.path.is_empty() {
                "(whole body)".to_owned()
            } else {
                p.path.clone()
            };
            format!(", top: {what}")
        };

        // Worst first: most differing exchanges, then fewest samples.
        let mut rate_routes: Vec<&RouteStats> = report
            .routes
            .iter()
            .filter(|r| over_rate(&r.stats))
            .collect();
        rate_routes.sort_by_key(|r| std::cmp::Reverse(r.stats.differs));
        let overall_rate = over_rate(&report.overall);
        let change_routes: Vec<(&RouteStats, Vec<(&str, u64)>)> = report
            .routes
            .iter()
            .filter_map(|r| {
                let open: Vec<(&str, u64)> = r
                    .contract_changes
                    .iter()
                    .filter(|(label, _)| !self.acknowledged.iter().any(|a| a == *label))
                    .map(|(label, n)| (label.as_str(), *n))
                    .collect();
                (!open.is_empty()).then_some((r, open))
            })
            .collect();
        let mut short_routes: Vec<&RouteStats> = report
            .routes
            .iter()
            .filter(|r| r.stats.samples < self.min_samples)
            .collect();
        short_routes.sort_by_key(|r| r.stats.samples);
        let overall_short = report.overall.samples < self.min_samples;

        let mut failures = Vec::new();
        for r in &rate_routes {
            failures.push(format!(
                "route {}: diff rate {} > {}",
                r.route,
                rate(&r.stats),
                percent(self.max_diff_rate)
            ));
        }
        if overall_rate {
            failures.push(format!(
                "overall: diff rate {} > {}",
                rate(&report.overall),
                percent(self.max_diff_rate)
            ));
        }
        for (r, open) in &change_routes {
            for (label, n) in open {
                failures.push(format!(
                    "route {}: contract change {label} accepted by a rule in {n} exchanges, not acknowledged (--acknowledge-contract-change {label})",
                    r.route
                ));
            }
        }
        for r in &short_routes {
            failures.push(format!(
                "route {}: {} samples < {} required",
                r.route, r.stats.samples, self.min_samples
            ));
        }
        if overall_short {
            failures.push(format!(
                "overall: {} samples < {} required",
                report.overall.samples, self.min_samples
            ));
        }

        let mut unacknowledged: Vec<String> = change_routes
            .iter()
            .flat_map(|(_, open)| open.iter().map(|(label, _)| (*label).to_owned()))
            .collect();
        unacknowledged.sort();
        unacknowledged.dedup();

        let ready = failures.is_empty();
        let reason = if ready {
            let mut line = format!(
                "READY: {} routes, {} samples, diff rate {} (95% CI {}–{}) <= {}",
                total,
                report.overall.samples,
                percent(report.overall.diff_rate),
                percent(report.overall.ci_low),
                percent(report.overall.ci_high),
                percent(self.max_diff_rate)
            );
            if report.overall.accepted_change > 0 {
                let mut labels: Vec<&str> = report
                    .routes
                    .iter()
                    .flat_map(|r| r.contract_changes.keys().map(String::as_str))
                    .collect();
                labels.sort_unstable();
                labels.dedup();
                line.push_str(&format!(
                    "; {} exchanges with acknowledged contract changes ({})",
                    report.overall.accepted_change,
                    labels.join(", ")
                ));
            }
            line
        } else {
            let mut clauses = Vec::new();
            if !rate_routes.is_empty() || overall_rate {
                let listed = listing(rate_routes.iter().map(|r| {
                    let rate = rate(&r.stats);
                    // `12.50% (5/40)` → `12.50% (5/40, top: /encoding)`
                    let rate = match rate.strip_suffix(')') {
                        Some(open) => format!("{open}{})", top(r)),
                        None => rate,
                    };
                    format!("{} {rate}", r.route)
                }));
                let mut clause = format!(
                    "diff rate over {} on {} of {total} routes{listed}",
                    percent(self.max_diff_rate),
                    rate_routes.len(),
                );
                if overall_rate {
                    clause.push_str(&format!(", overall {}", rate(&report.overall)));
                }
                clauses.push(clause);
            }
            if !change_routes.is_empty() {
                let listed = listing(change_routes.iter().map(|(r, open)| {
                    let labels: Vec<String> = open
                        .iter()
                        .map(|(label, n)| format!("{label} ×{n}"))
                        .collect();
                    format!("{}: {}", r.route, labels.join(", "))
                }));
                clauses.push(format!(
                    "unacknowledged contract changes on {} of {total} routes{listed}",
                    change_routes.len()
                ));
            }
            if !short_routes.is_empty() {
                let listed = listing(
                    short_routes
                        .iter()
                        .map(|r| format!("{} {}/{}", r.route, r.stats.samples, self.min_samples)),
                );
                clauses.push(format!(
                    "too few samples on {} of {total} routes{listed}",
                    short_routes.len()
                ));
            } else if overall_short {
                clauses.push(format!(
                    "too few samples overall ({}/{})",
                    report.overall.samples, self.min_samples
                ));
            }
            format!("NOT READY: {}", clauses.join("; "))
        };
        GateResult {
            ready,
            reason,
            failures,
            unacknowledged,
            gate: self.clone(),
        }
    }
}

/// ` (a, b, c, +2 more)`: the first few items of a list for a one-line
/// reason.
fn listing(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        return String::new();
    }
    let mut shown: Vec<String> = items.iter().take(ROUTES_IN_REASON).cloned().collect();
    if items.len() > ROUTES_IN_REASON {
        shown.push(format!("+{} more", items.len() - ROUTES_IN_REASON));
    }
    format!(" ({})", shown.join(", "))
}

/// Parses `0.1%` or `0.001` into a fraction.
pub fn parse_rate(text: &str) -> Option<f64> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().ok()? / 100.0,
        None => t.parse::<f64>().ok()?,
    };
    (value.is_finite() && (0.0..=1.0).contains(&value)).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        let (lo, hi) = wilson_interval(0, 1000);
        assert!(
            lo.abs() < 1e-12 && (hi - 0.003_83).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson_interval(50, 100);
        assert!((lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3);
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
    }

    #[test]
    fn among_equals_the_top_difference_is_what_the_client_meets_and_derived_headers_come_last() {
        let mut paths: PathCounts = HashMap::new();
        for path in [
            "header:content-length",
            "header:etag",
            "/message",
            "header:content-type",
        ] {
            paths.insert(
                ("POST /v1/sms/send".into(), path.into(), DiffKind::Changed),
                (10, Vec::new()),
            );
        }
        let samples = HashMap::from([("POST /v1/sms/send", 10)]);
        let order: Vec<String> = top_paths(paths, &samples)
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            order,
            [
                "header:content-type",
                "/message",
                "header:content-length",
                "header:etag"
            ]
        );
    }

    #[test]
    fn rates_parse_as_percent_or_fraction() {
        assert_eq!(parse_rate("0.1%"), Some(0.001));
        assert_eq!(parse_rate("0.001"), Some(0.001));
        assert_eq!(parse_rate("150%"), None);
        assert_eq!(parse_rate("x"), None);
    }
}
