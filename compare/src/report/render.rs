//! Report rendering: minijinja templates (`compare/templates/`) for HTML and
//! Markdown, serde for JSON. The HTML is one file with inline CSS, an inline
//! SVG chart and a few lines of inline script for the copy buttons: it opens
//! from a ticket attachment with no network.

use minijinja::value::Serde;
use minijinja::{Environment, Value as JinjaValue, context};
use serde::Serialize;

use super::{Report, percent};
use crate::error::ReportError;
use crate::record::RequestSnapshot;

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

/// A shell command that sends the request again. The target and the token
/// come from `$TARGET` and `$TOKEN`; hashed values (`hmac:…`) must be
/// replaced by real ones before it is useful against a real system.
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
        parts.push(format!("-H {}", shell_quote(&format!("{name}: {value}"))));
    }
    parts.push("-H \"Authorization: Bearer $TOKEN\"".to_owned());
    if let Some(body) = &request.body {
        let text = match body {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        parts.push(format!("--data-raw {}", shell_quote(&text)));
    }
    parts.join(" \\\n  ")
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
}
