//! Report rendering: minijinja templates (`compare/templates/`) for HTML and
//! Markdown, serde for JSON. The HTML is one file with inline CSS, an inline
//! SVG chart and a few lines of inline script for the copy buttons: it opens
//! from a ticket attachment with no network.
//!
//! Both templates draw their tables from one model ([`tables`]): the same
//! tables, columns and cells in the same order, so the Markdown attached to
//! a change ticket says what the HTML says. The HTML adds the chart and the
//! full-length examples with "copy as curl".

use minijinja::value::Serde;
use minijinja::{Environment, Value as JinjaValue, context};
use serde::Serialize;

use super::{Example, ExplainedStats, RateStats, Report, percent};
use crate::error::ReportError;
use crate::record::RequestSnapshot;
use crate::redact::DROPPED;

const HTML_TEMPLATE: &str = include_str!("../../templates/report.html");
const MARKDOWN_TEMPLATE: &str = include_str!("../../templates/report.md");

const CHART_WIDTH: f64 = 960.0;
const CHART_HEIGHT: f64 = 240.0;
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 16.0;
const MARGIN_TOP: f64 = 16.0;
const MARGIN_BOTTOM: f64 = 36.0;

/// The diff-rate-over-time chart, laid out for the SVG template.
#[derive(Debug, Serialize)]
struct Chart {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    polyline: String,
    points: Vec<ChartPoint>,
    y_ticks: Vec<Tick>,
    x_ticks: Vec<Tick>,
    /// y of the gate's maximum diff rate, when a gate is set and in range.
    threshold_y: Option<f64>,
    threshold_label: String,
}

#[derive(Debug, Serialize)]
struct ChartPoint {
    x: f64,
    y: f64,
    title: String,
}

#[derive(Debug, Serialize)]
struct Tick {
    pos: f64,
    label: String,
    /// SVG `text-anchor`, so the first and last labels stay inside.
    anchor: &'static str,
}

fn chart(report: &Report) -> Chart {
    let plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let threshold = report.gate.as_ref().map(|g| g.gate.max_diff_rate);
    let highest = report
        .timeline
        .iter()
        .map(|b| b.diff_rate)
        .fold(threshold.unwrap_or(0.0) * 2.0, f64::max);
    let y_max = nice_ceiling(highest.max(0.001));
    let n = report.timeline.len();
    let x_of = |i: usize| {
        if n <= 1 {
            MARGIN_LEFT + plot_w / 2.0
        } else {
            MARGIN_LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y_of = |rate: f64| MARGIN_TOP + plot_h * (1.0 - (rate / y_max).clamp(0.0, 1.0));
    let points: Vec<ChartPoint> = report
        .timeline
        .iter()
        .enumerate()
        .map(|(i, b)| ChartPoint {
            x: round1(x_of(i)),
            y: round1(y_of(b.diff_rate)),
            title: format!(
                "{}: {} ({} of {})",
                b.start.format("%Y-%m-%d %H:%M:%S UTC"),
                percent(b.diff_rate),
                b.differs,
                b.samples
            ),
        })
        .collect();
    let polyline = points
        .iter()
        .map(|p| format!("{},{}", p.x, p.y))
        .collect::<Vec<_>>()
        .join(" ");
    let y_ticks = (0..=4)
        .map(|i| {
            let rate = y_max * f64::from(i) / 4.0;
            Tick {
                pos: round1(y_of(rate)),
                label: percent(rate),
                anchor: "end",
            }
        })
        .collect();
    let x_ticks = if n == 0 {
        Vec::new()
    } else {
        let mut idx = vec![0, n / 2, n - 1];
        idx.dedup();
        idx.into_iter()
            .filter_map(|i| {
                let anchor = if n == 1 {
                    "middle"
                } else if i == 0 {
                    "start"
                } else if i == n - 1 {
                    "end"
                } else {
                    "middle"
                };
                report.timeline.get(i).map(|b| Tick {
                    pos: round1(x_of(i)),
                    label: b.start.format("%m-%d %H:%M:%S").to_string(),
                    anchor,
                })
            })
            .collect()
    };
    Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        left: MARGIN_LEFT,
        right: CHART_WIDTH - MARGIN_RIGHT,
        top: MARGIN_TOP,
        bottom: CHART_HEIGHT - MARGIN_BOTTOM,
        polyline,
        points,
        y_ticks,
        x_ticks,
        threshold_y: threshold.filter(|t| *t <= y_max).map(|t| round1(y_of(t))),
        threshold_label: threshold.map(percent).unwrap_or_default(),
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * base)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * base)
}

/// Rows a rendered table shows at most; the JSON report has them all.
const MAX_TABLE_ROWS: usize = 100;
/// Characters of an example value shown in a table cell.
const EXAMPLE_CELL_CHARS: usize = 80;

/// A table as both templates render it.
#[derive(Debug, Serialize)]
struct TableView {
    /// HTML `id`, stable for tests and links.
    id: &'static str,
    title: &'static str,
    /// One sentence under the title.
    intro: &'static str,
    columns: Vec<Column>,
    rows: Vec<Vec<Cell>>,
    /// Shown instead of the table when there are no rows.
    empty: &'static str,
    /// Rows left out (see [`MAX_TABLE_ROWS`]).
    more: usize,
}

#[derive(Debug, Serialize)]
struct Column {
    name: &'static str,
    numeric: bool,
}

#[derive(Debug, Serialize)]
struct Cell {
    text: String,
    /// Rendered as code (route templates, paths, values).
    code: bool,
    /// HTML only: the anchor of the full example below the tables.
    link: Option<String>,
}

fn text(text: impl Into<String>) -> Cell {
    Cell {
        text: text.into(),
        code: false,
        link: None,
    }
}

fn code(text: impl Into<String>) -> Cell {
    Cell {
        text: text.into(),
        code: true,
        link: None,
    }
}

fn columns(names: &[(&'static str, bool)]) -> Vec<Column> {
    names
        .iter()
        .map(|(name, numeric)| Column {
            name,
            numeric: *numeric,
        })
        .collect()
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

fn path_cell(path: &str) -> Cell {
    code(if path.is_empty() {
        "(whole body)"
    } else {
        path
    })
}

fn example_cells(example: Option<&Example>) -> [Cell; 2] {
    match example {
        Some(e) => [
            code(cut(&e.primary, EXAMPLE_CELL_CHARS)),
            code(cut(&e.candidate, EXAMPLE_CELL_CHARS)),
        ],
        None => [text("–"), text("–")],
    }
}

fn ms(value: Option<f64>) -> String {
    match value {
        Some(ms) => format!("{ms:.1} ms"),
        None => "–".to_owned(),
    }
}

fn table(
    id: &'static str,
    title: &'static str,
    intro: &'static str,
    columns: Vec<Column>,
    mut rows: Vec<Vec<Cell>>,
    empty: &'static str,
) -> TableView {
    let more = rows.len().saturating_sub(MAX_TABLE_ROWS);
    rows.truncate(MAX_TABLE_ROWS);
    TableView {
        id,
        title,
        intro,
        columns,
        rows,
        empty,
        more,
    }
}

/// The columns of the accepted-changes and noise tables: the rule and its
/// label (in the order given), then where, how often, and an example.
fn explained_columns(first: &'static str, second: &'static str) -> Vec<Column> {
    columns(&[
        (first, false),
        (second, false),
        ("route", false),
        ("path", false),
        ("exchanges", true),
        ("share of route", true),
        ("legacy (example)", false),
        ("orchestrator (example)", false),
    ])
}

fn explained_rows(
    rows: &[ExplainedStats],
    anchor: Option<&str>,
    rule_first: bool,
) -> Vec<Vec<Cell>> {
    rows.iter()
        .enumerate()
        .map(|(i, e)| {
            let mut label = code(e.label.as_str());
            label.link = anchor.map(|a| format!("{a}-{}", i + 1));
            let (first, second) = if rule_first {
                (code(e.rule.as_str()), label)
            } else {
                (label, code(e.rule.as_str()))
            };
            let [primary, candidate] = example_cells(Some(&e.example));
            vec![
                first,
                second,
                code(e.route.as_str()),
                path_cell(&e.path),
                text(e.count.to_string()),
                text(percent(e.share)),
                primary,
                candidate,
            ]
        })
        .collect()
}

/// The counts and rate of a set of records, as the summary and each route
/// show them.
const STAT_COLUMNS: [(&str, bool); 7] = [
    ("samples", true),
    ("same", true),
    ("noise only", true),
    ("accepted contract changes", true),
    ("differs", true),
    ("diff rate", true),
    ("95% CI", false),
];

fn stat_cells(stats: &RateStats) -> Vec<Cell> {
    vec![
        text(stats.samples.to_string()),
        text(stats.same.to_string()),
        text(stats.noise_only.to_string()),
        text(stats.accepted_change.to_string()),
        text(stats.differs.to_string()),
        text(percent(stats.diff_rate)),
        text(format!(
            "{} – {}",
            percent(stats.ci_low),
            percent(stats.ci_high)
        )),
    ]
}

/// The tables of a report, in the order both templates show them.
fn tables(report: &Report) -> Vec<TableView> {
    let summary = table(
        "summary",
        "Summary",
        "Every compared exchange, by how its differences were explained. The diff rate counts unexplained differences only.",
        columns(&STAT_COLUMNS),
        vec![stat_cells(&report.overall)],
        "No records.",
    );
    let mut route_columns = vec![("route", false)];
    route_columns.extend(STAT_COLUMNS);
    route_columns.extend([
        ("p50 legacy", true),
        ("p50 orchestrator", true),
        ("statuses that differ (legacy→orchestrator)", false),
    ]);
    let routes = table(
        "routes",
        "Per route",
        "The gate checks each route on its own.",
        columns(&route_columns),
        report
            .routes
            .iter()
            .map(|r| {
                let pairs: Vec<String> = r
                    .status_pairs
                    .iter()
                    .map(|(pair, n)| format!("{pair}: {n}"))
                    .collect();
                let mut row = vec![code(r.route.as_str())];
                row.extend(stat_cells(&r.stats));
                row.extend([
                    text(ms(r.p50_primary_ms)),
                    text(ms(r.p50_candidate_ms)),
                    text(pairs.join(", ")),
                ]);
                row
            })
            .collect(),
        "No records.",
    );
    let changes = table(
        "contract-changes",
        "Accepted contract changes",
        "Differences a client could notice that a rule accepted (status, envelope or format classes). They are not noise: the gate fails on them unless the run acknowledges each one with --acknowledge-contract-change <contract change>.",
        explained_columns("contract change", "rule"),
        explained_rows(&report.contract_changes, Some("change"), false),
        "None: no rule accepted a client-visible change.",
    );
    let differences = table(
        "paths",
        "Unexplained differences",
        "What no rule explains, most frequent first: each counts against the diff rate.",
        columns(&[
            ("route", false),
            ("path", false),
            ("kind", false),
            ("exchanges", true),
            ("share of route", true),
            ("legacy (example)", false),
            ("orchestrator (example)", false),
        ]),
        report
            .top_paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut path = path_cell(&p.path);
                path.link = Some(format!("path-{}", i + 1));
                let [primary, candidate] = example_cells(p.examples.first());
                vec![
                    code(p.route.as_str()),
                    path,
                    text(p.kind.as_str()),
                    text(p.count.to_string()),
                    text(percent(p.share)),
                    primary,
                    candidate,
                ]
            })
            .collect(),
        "No unexplained differences.",
    );
    let noise = table(
        "noise",
        "Explained as value noise",
        "What the rules explained away as values that differ between any two correct runs (generated ids of the same format, timestamps within tolerance, per-response headers), by rule, route and path.",
        explained_columns("rule", "explained as"),
        explained_rows(&report.noise, None, true),
        "Nothing was explained as noise.",
    );
    vec![summary, routes, changes, differences, noise]
}

fn environment() -> Result<Environment<'static>, ReportError> {
    let mut env = Environment::new();
    // Block tags do not leave their line breaks and indentation behind.
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| ReportError::Template(e.to_string()))?;
    env.set_syntax(syntax);
    env.add_filter("pct", |rate: f64| percent(rate));
    env.add_filter("ms", |ms: Option<f64>| match ms {
        Some(ms) => format!("{ms:.1} ms"),
        None => "–".to_owned(),
    });
    // Markdown table cells: no pipes, no line breaks.
    env.add_filter("cell", |text: String| {
        text.replace('|', "\\|").replace(['\n', '\r'], " ")
    });
    // Inside a Markdown code span: no backticks either.
    env.add_filter("codecell", |text: String| {
        text.replace('|', "\\|")
            .replace(['\n', '\r'], " ")
            .replace('`', "'")
    });
    env.add_filter(
        "dt",
        |text: String| match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(t) => t
                .with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M:%S%.3f UTC")
                .to_string(),
            Err(_) => text,
        },
    );
    env.add_filter("cut", |text: String, max: usize| {
        match text.char_indices().nth(max) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text,
        }
    });
    env.add_template("report.html", HTML_TEMPLATE)
        .map_err(|e| ReportError::Template(e.to_string()))?;
    env.add_template("report.md", MARKDOWN_TEMPLATE)
        .map_err(|e| ReportError::Template(e.to_string()))?;
    Ok(env)
}

fn render(name: &str, report: &Report) -> Result<String, ReportError> {
    let env = environment()?;
    let template = env
        .get_template(name)
        .map_err(|e| ReportError::Template(e.to_string()))?;
    template
        .render(context! {
            report => JinjaValue::from(Serde(report)),
            chart => JinjaValue::from(Serde(chart(report))),
            tables => JinjaValue::from(Serde(tables(report))),
        })
        .map_err(|e| ReportError::Template(format!("{e:#}")))
}

/// The self-contained HTML report.
pub fn render_html(report: &Report) -> Result<String, ReportError> {
    render("report.html", report)
}

/// The Markdown report, for a change ticket.
pub fn render_markdown(report: &Report) -> Result<String, ReportError> {
    render("report.md", report)
}

/// The JSON report, for machines.
pub fn render_json(report: &Report) -> Result<String, ReportError> {
    serde_json::to_string_pretty(report).map_err(|e| ReportError::Serialise(e.to_string()))
}

/// A shell command that sends the captured request again: its method,
/// path, headers and body, and nothing else. The target comes from
/// `$TARGET`; a credential the request carried (stored as `[dropped]`)
/// comes from a variable named after its header (`$TOKEN` for
/// `Authorization`, `$X_API_KEY`, `$COOKIE`…), and a request that carried
/// none gets none. Hashed values (`hmac:…`) must be replaced by real ones
/// before it is useful against a real system.
pub fn curl_command(request: &RequestSnapshot) -> String {
    let mut parts = vec![format!("curl -sS -X {}", shell_quote(&request.method))];
    parts.push(format!(
        "\"${{TARGET:-http://localhost:8080}}\"{}",
        shell_quote(&request.path)
    ));
    for (name, value) in &request.headers {
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "host" | "content-length"
        ) {
            continue;
        }
        match value.strip_suffix(DROPPED) {
            Some(scheme) => parts.push(format!(
                "-H {}\"${}\"",
                shell_quote(&format!("{name}: {scheme}")),
                credential_variable(name)
            )),
            None => parts.push(format!("-H {}", shell_quote(&format!("{name}: {value}")))),
        }
    }
    if let Some(body) = &request.body {
        let text = match body {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        parts.push(format!("--data-raw {}", shell_quote(&text)));
    }
    parts.join(" \\\n  ")
}

/// The shell variable a dropped credential is read from: `TOKEN` for
/// `Authorization`, else the header name in upper snake case.
fn credential_variable(header: &str) -> String {
    if header.eq_ignore_ascii_case("authorization") {
        return "TOKEN".to_owned();
    }
    header
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Single-quotes a string for POSIX shells.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0013), 0.002);
        assert_eq!(nice_ceiling(0.03), 0.05);
        assert_eq!(nice_ceiling(0.22), 0.25);
        assert_eq!(nice_ceiling(1.0), 1.0);
    }

    #[test]
    fn curl_quotes_safely() {
        let request = RequestSnapshot {
            method: "POST".into(),
            path: "/v1/sms/send".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(serde_json::json!({"body": "it's"})),
        };
        let curl = curl_command(&request);
        assert!(
            curl.contains(r#"--data-raw '{"body":"it'\''s"}'"#),
            "{curl}"
        );
        assert!(curl.contains("'/v1/sms/send'"));
    }

    #[test]
    fn curl_sends_a_credential_only_when_the_request_carried_one() {
        let without = RequestSnapshot {
            method: "GET".into(),
            path: "/v1/sms/507f1f77bcf86cd799439011".into(),
            headers: vec![("x-tenant-id".into(), "acme".into())],
            body: None,
        };
        let curl = curl_command(&without);
        assert!(
            !curl.to_ascii_lowercase().contains("authorization"),
            "{curl}"
        );
        assert!(!curl.contains("--data-raw"), "{curl}");

        let with = RequestSnapshot {
            headers: vec![
                ("authorization".into(), "Bearer [dropped]".into()),
                ("x-api-key".into(), "[dropped]".into()),
                ("x-tenant-id".into(), "acme".into()),
            ],
            ..without
        };
        let curl = curl_command(&with);
        assert!(
            curl.contains(r#"-H 'authorization: Bearer '"$TOKEN""#),
            "{curl}"
        );
        assert!(curl.contains(r#"-H 'x-api-key: '"$X_API_KEY""#), "{curl}");
        assert!(!curl.contains("[dropped]"), "{curl}");
    }
}
