//! The HTML and the Markdown report carry the same tables: same sections,
//! same columns, same cells, in the same order (the Markdown goes into the
//! change ticket, the HTML to the reviewer; they must not tell different
//! stories). And "copy as curl" reproduces the captured request: a request
//! without credentials gets none.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::PHONE;
use compare::report::{Gate, Report, render_html, render_markdown};
use compare::{Differ, Exchange, KeepRequest, RecordedRequest, RecordedResponse, Redactor, Rules};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use regex::Regex;
use serde_json::{Value, json};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    map
}

fn response(status: u16, body: Value) -> RecordedResponse {
    RecordedResponse {
        status: StatusCode::from_u16(status).expect("status"),
        headers: headers(&[("content-type", "application/json; charset=utf-8")]),
        body: Bytes::from(body.to_string()),
        latency: Duration::from_millis(4),
    }
}

fn message(id: &str, reference: &str) -> Value {
    json!({"id": id, "status": "accepted", "to": PHONE, "encoding": "GSM-7",
           "created_at": "2026-05-01T12:00:00.100Z", "reference": reference})
}

/// Exchanges that fill every table: value noise (ids), an accepted
/// contract change (a status class), unexplained differences (a value with
/// a pipe in it, to exercise escaping), and a second route.
fn report() -> Report {
    let rules = Rules::from_toml_str(&format!(
        "{}\n[[routes.\"POST /v1/sms/send\".status_class]]\nname = \"send-accepted\"\nprimary = [201]\ncandidate = [202]\n",
        compare::rules::DEFAULT_RULES_TOML
    ))
    .expect("rules");
    let differ = Differ::new(rules).keep_request(KeepRequest::Always);
    let redactor = Redactor::new(b"k");
    let request = |method: Method, path: &str, auth: bool| {
        let mut pairs = vec![
            ("content-type", "application/json"),
            ("x-tenant-id", "acme"),
        ];
        if auth {
            pairs.push(("authorization", "Bearer secret-token"));
        }
        RecordedRequest {
            method,
            path: path.to_owned(),
            headers: headers(&pairs),
            body: Bytes::from(json!({"to": PHONE, "from": "Acme", "body": "hi"}).to_string()),
        }
    };
    let mut records = Vec::new();
    for i in 0..6 {
        let candidate_reference = if i < 2 { "order|7" } else { "order-7" };
        let status = if i % 2 == 0 { 202 } else { 201 };
        let mut record = differ.diff(&Exchange {
            request: request(Method::POST, "/v1/sms/send", i % 3 != 0),
            primary: response(201, message(&format!("65f{i:021x}"), "order-7")),
            candidate: response(
                status,
                message(&format!("65f{:021x}", 100 + i), candidate_reference),
            ),
        });
        redactor.redact_record(&mut record);
        records.push(record);
        let mut read = differ.diff(&Exchange {
            request: request(Method::GET, "/v1/sms/65f000000000000000000001", true),
            primary: response(200, message("65f000000000000000000001", "order-7")),
            candidate: response(200, message("65f000000000000000000099", "order-7")),
        });
        redactor.redact_record(&mut read);
        records.push(read);
    }
    Report::build(
        &records,
        vec!["test".to_owned()],
        Some(Gate {
            max_diff_rate: 0.001,
            min_samples: 5,
            acknowledged: Vec::new(),
        }),
    )
}

/// A table as read back from a rendered report: its section title, column
/// names and cell texts.
type Table = (String, Vec<String>, Vec<Vec<String>>);

fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

fn html_tables(html: &str) -> Vec<Table> {
    let section = Regex::new(r#"(?s)<h2 id="section-[^"]+">(.*?)</h2>(.*?)(?:<h2|$)"#).expect("re");
    let table = Regex::new(r#"(?s)<table id="[^"]+">(.*?)</table>"#).expect("re");
    let row = Regex::new(r"(?s)<tr>(.*?)</tr>").expect("re");
    let cell = Regex::new(r"(?s)<t[hd][^>]*>(.*?)</t[hd]>").expect("re");
    let tag = Regex::new(r"<[^>]+>").expect("re");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(m) = section.captures(rest) {
        let (title, body) = (&m[1], &m[2]);
        if let Some(t) = table.captures(body) {
            let rows: Vec<Vec<String>> = row
                .captures_iter(&t[1])
                .map(|r| {
                    cell.captures_iter(&r[1])
                        .map(|c| unescape_html(tag.replace_all(&c[1], "").trim()).replace('`', "'"))
                        .collect()
                })
                .collect();
            let (head, rows) = rows.split_first().expect("a header row");
            out.push((unescape_html(title), head.clone(), rows.to_vec()));
        }
        let consumed = m.get(2).map_or(rest.len(), |b| b.end());
        rest = &rest[consumed..];
    }
    out
}

fn markdown_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().expect("cell").push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().expect("cell").push(c),
        }
    }
    cells
        .into_iter()
        .map(|c| {
            let c = c.trim();
            c.strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .unwrap_or(c)
                .to_owned()
        })
        .collect()
}

fn markdown_tables(markdown: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut title = String::new();
    let mut lines = markdown.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(t) = line.strip_prefix("## ") {
            title = t.to_owned();
        } else if line.starts_with('|') {
            let head = markdown_cells(line);
            lines.next(); // |---|
            let mut rows = Vec::new();
            while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
                rows.push(markdown_cells(row));
            }
            out.push((title.clone(), head, rows));
        }
    }
    out
}

#[test]
fn the_html_and_the_markdown_report_carry_the_same_tables() {
    let report = report();
    let html = html_tables(&render_html(&report).expect("html"));
    let markdown = markdown_tables(&render_markdown(&report).expect("markdown"));
    let titles: Vec<&str> = html.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Summary",
            "Per route",
            "Accepted contract changes",
            "Unexplained differences",
            "Explained as value noise"
        ],
        "every table is filled by this fixture"
    );
    assert!(html.iter().all(|(_, _, rows)| !rows.is_empty()));
    assert_eq!(html.len(), markdown.len());
    for (h, m) in html.iter().zip(&markdown) {
        assert_eq!(h, m, "the {} table differs between HTML and Markdown", h.0);
    }
    // The pipe inside a value survived both formats.
    let differences = &html[3].2;
    assert!(
        differences
            .iter()
            .any(|row| row.iter().any(|cell| cell == "order|7")),
        "{differences:?}"
    );
}

#[test]
fn copy_as_curl_sends_a_credential_only_when_the_captured_request_had_one() {
    let report = report();
    let curls: Vec<&str> = report
        .top_paths
        .iter()
        .flat_map(|p| &p.examples)
        .chain(report.contract_changes.iter().map(|c| &c.example))
        .filter_map(|e| e.curl.as_deref())
        .collect();
    let with: Vec<&&str> = curls
        .iter()
        .filter(|c| c.contains("authorization"))
        .collect();
    let without: Vec<&&str> = curls
        .iter()
        .filter(|c| !c.contains("authorization"))
        .collect();
    assert!(
        !with.is_empty() && !without.is_empty(),
        "the fixture has requests with and without credentials: {curls:#?}"
    );
    for curl in &with {
        assert!(
            curl.contains(r#"-H 'authorization: Bearer '"$TOKEN""#),
            "{curl}"
        );
    }
    for curl in curls {
        assert!(
            !curl.contains("secret-token") && !curl.contains("[dropped]"),
            "{curl}"
        );
        assert!(curl.contains("-H 'x-tenant-id: acme'"), "{curl}");
    }
}
