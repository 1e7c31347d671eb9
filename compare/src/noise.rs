//! Learning noise from traffic, without calling the primary twice.
//!
//! Diffy finds noise by sending each request to two primaries; for a submit
//! API that means two real SMS. Here noise is learned from the diff log
//! instead: a path is proposed as noise when
//! - its values differ in at least `min_diff_rate` of the route's exchanges
//!   (a real regression rarely hits every single exchange with a different
//!   value each time), **and**
//! - in at least `min_generated` of those, both sides' values look
//!   generated **in the same format**: ids of one format (two ObjectIds,
//!   two UUIDv7s), RFC 3339 timestamps of one layout within a few minutes
//!   of each other, or integers that grow monotonically on both sides
//!   (counters, epoch times).
//!
//! A field that differs everywhere but holds ordinary values (`"queued"` vs
//! `"accepted"`, a different segment count) is a real difference and is
//! never proposed; neither are ids or timestamps whose format differs
//! between the sides (an ObjectId against a UUIDv7): that is a change a
//! client could notice, not noise. Headers are proposed as normalisers
//! (`ids = true`, or the digits replaced), never ignored: their presence
//! still counts. Each proposal carries its evidence; `--accept` appends it
//! to the rules file with `toml_edit`, keeping comments and layout.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use toml_edit::{Array, DocumentMut, Item, Table, value};

use crate::error::NoiseError;
use crate::record::{DiffKind, DiffRecord};
use crate::redact::HASH_PREFIX;
use crate::rules::Rules;
use crate::rules::pointer::generalise;
use crate::rules::shape::{Generated, classify, id_format, parse_timestamp, timestamp_format};

/// Thresholds for proposing a path.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NoiseOptions {
    /// Fraction of a route's exchanges in which the path must differ.
    pub min_diff_rate: f64,
    /// Fraction of those differences where both values look generated.
    pub min_generated: f64,
    /// Fewest exchanges of a route before anything is proposed for it.
    pub min_samples: usize,
    /// Largest timestamp gap still treated as noise; beyond it the
    /// timestamps disagree for real (a time zone bug, a stale cache).
    pub max_timestamp_gap_secs: f64,
}

impl Default for NoiseOptions {
    fn default() -> Self {
        Self {
            min_diff_rate: 0.9,
            min_generated: 0.95,
            min_samples: 20,
            max_timestamp_gap_secs: 300.0,
        }
    }
}

/// The rule a proposal would add.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum ProposedRule {
    /// `[[match]] shape = "id"`.
    IdShape,
    /// `[[match]] shape = "timestamp"` with a tolerance in whole seconds.
    Timestamp { tolerance_secs: u64 },
    /// `ignore = [...]`: monotonic counters have no shape to check.
    Ignore,
    /// `[[header_normalize]] ids = true`: a header holding generated ids.
    HeaderIds,
    /// `[[header_normalize]] replace` of the digits: a header holding a
    /// counter.
    HeaderNumber,
}

/// Why a path is proposed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Exchanges of the route in the log.
    pub exchanges: usize,
    /// Exchanges in which the path differed (unexplained).
    pub differing: usize,
    pub diff_rate: f64,
    /// Fraction of differing pairs in which both values look generated.
    pub generated_rate: f64,
    /// What the values looked like, per side: `{"uuid": 998, ...}`.
    pub primary_kinds: BTreeMap<String, usize>,
    pub candidate_kinds: BTreeMap<String, usize>,
    /// For integers: fraction of consecutive values that increase, per side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monotonic: Option<(f64, f64)>,
    /// For timestamps: the largest gap seen, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_gap_secs: Option<f64>,
    /// Up to three value pairs as stored (redacted).
    pub examples: Vec<(Value, Value)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    pub route: String,
    /// Body pointer pattern (`/results/*/id`) or `header:<name>`.
    pub path: String,
    #[serde(flatten)]
    pub rule: ProposedRule,
    pub evidence: Evidence,
}

impl Proposal {
    /// One line for a terminal.
    pub fn summary(&self) -> String {
        let e = &self.evidence;
        let rule = match &self.rule {
            ProposedRule::IdShape => "shape = \"id\"".to_owned(),
            ProposedRule::Timestamp { tolerance_secs } => {
                format!("shape = \"timestamp\", tolerance = \"{tolerance_secs}s\"")
            }
            ProposedRule::Ignore => "ignore".to_owned(),
            ProposedRule::HeaderIds => "header_normalize, ids = true".to_owned(),
            ProposedRule::HeaderNumber => {
                "header_normalize, replace = { pattern = '^[0-9]+$' }".to_owned()
            }
        };
        format!(
            "{} {}: {rule} (differs in {}/{} = {:.1}%, both generated in {:.1}%; primary {}, candidate {})",
            self.route,
            self.path,
            e.differing,
            e.exchanges,
            e.diff_rate * 100.0,
            e.generated_rate * 100.0,
            kinds(&e.primary_kinds),
            kinds(&e.candidate_kinds)
        )
    }
}

fn kinds(map: &BTreeMap<String, usize>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One observed differing pair (values as stored, so already redacted).
struct Observation {
    ts: DateTime<Utc>,
    primary: Option<Value>,
    candidate: Option<Value>,
}

/// Proposes noisy paths from diff records.
pub fn learn(records: &[DiffRecord], options: &NoiseOptions) -> Vec<Proposal> {
    let mut exchanges: HashMap<&str, usize> = HashMap::new();
    let mut observed: HashMap<(&str, String), Vec<Observation>> = HashMap::new();
    for record in records {
        if record.unmatched.is_some() || record.error.is_some() {
            continue;
        }
        *exchanges.entry(record.route.as_str()).or_default() += 1;
        let body = record
            .body
            .iter()
            .filter(|d| {
                d.noise.is_none()
                    && d.accepted.is_none()
                    && matches!(d.kind, DiffKind::Changed | DiffKind::Type)
            })
            .map(|d| {
                (
                    generalise(&d.pointer),
                    d.primary.clone(),
                    d.candidate.clone(),
                )
            });
        let headers = record
            .headers
            .iter()
            .filter(|d| d.noise.is_none() && d.accepted.is_none() && d.kind == DiffKind::Changed)
            .map(|d| {
                (
                    format!("header:{}", d.name),
                    d.primary.clone().map(Value::String),
                    d.candidate.clone().map(Value::String),
                )
            });
        let mut seen: Vec<String> = Vec::new();
        for (path, primary, candidate) in body.chain(headers) {
            // One observation per path and exchange, even when an array
            // makes the same generalised path differ several times.
            if seen.contains(&path) {
                continue;
            }
            seen.push(path.clone());
            observed
                .entry((record.route.as_str(), path))
                .or_default()
                .push(Observation {
                    ts: record.ts,
                    primary,
                    candidate,
                });
        }
    }
    let mut proposals: Vec<Proposal> = observed
        .into_iter()
        .filter_map(|((route, path), observations)| {
            let total = exchanges.get(route).copied().unwrap_or(0);
            evaluate(route, path, total, observations, options)
        })
        .collect();
    proposals.sort_by(|a, b| (&a.route, &a.path).cmp(&(&b.route, &b.path)));
    proposals
}

fn label(value: Option<&Value>) -> (String, Option<Generated>) {
    match value {
        None => ("absent".to_owned(), None),
        Some(Value::String(s)) if s.starts_with(HASH_PREFIX) => ("hashed".to_owned(), None),
        Some(v) => match classify(v) {
            Some(kind) => (
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                Some(kind),
            ),
            None => ("other".to_owned(), None),
        },
    }
}

fn evaluate(
    route: &str,
    path: String,
    exchanges: usize,
    mut observations: Vec<Observation>,
    options: &NoiseOptions,
) -> Option<Proposal> {
    if exchanges < options.min_samples || exchanges == 0 {
        return None;
    }
    let differing = observations.len();
    let diff_rate = differing as f64 / exchanges as f64;
    if diff_rate < options.min_diff_rate {
        return None;
    }
    observations.sort_by_key(|o| o.ts);
    let mut primary_kinds = BTreeMap::new();
    let mut candidate_kinds = BTreeMap::new();
    let (mut ids, mut stamps, mut ints) = (0usize, 0usize, 0usize);
    let mut max_gap: f64 = 0.0;
    let mut p_ints = Vec::new();
    let mut c_ints = Vec::new();
    for o in &observations {
        let (p_label, p_kind) = label(o.primary.as_ref());
        let (c_label, c_kind) = label(o.candidate.as_ref());
        *primary_kinds.entry(p_label).or_insert(0) += 1;
        *candidate_kinds.entry(c_label).or_insert(0) += 1;
        match (p_kind, c_kind) {
            (Some(p), Some(c)) if p.is_id() && c.is_id() && same_format(o, id_format) => ids += 1,
            (Some(Generated::Timestamp), Some(Generated::Timestamp))
                if same_format(o, timestamp_format) =>
            {
                let gap = o
                    .primary
                    .as_ref()
                    .and_then(Value::as_str)
                    .and_then(parse_timestamp)
                    .zip(
                        o.candidate
                            .as_ref()
                            .and_then(Value::as_str)
                            .and_then(parse_timestamp),
                    )
                    .map(|(a, b)| (a - b).num_milliseconds().unsigned_abs() as f64 / 1000.0);
                if let Some(gap) = gap {
                    stamps += 1;
                    max_gap = max_gap.max(gap);
                }
            }
            (Some(Generated::Integer), Some(Generated::Integer)) => {
                ints += 1;
                p_ints.extend(o.primary.as_ref().and_then(Value::as_f64));
                c_ints.extend(o.candidate.as_ref().and_then(Value::as_f64));
            }
            _ => {}
        }
    }
    let share = |n: usize| n as f64 / differing.max(1) as f64;
    let is_header = path.starts_with("header:");
    let (rule, generated_rate, monotonic, max_gap_secs) = if share(ids) >= options.min_generated {
        let rule = if is_header {
            ProposedRule::HeaderIds
        } else {
            ProposedRule::IdShape
        };
        (rule, share(ids), None, None)
    } else if share(stamps) >= options.min_generated && !is_header {
        if max_gap > options.max_timestamp_gap_secs {
            return None;
        }
        // Twice the largest gap seen, at least a second.
        let tolerance_secs = ((max_gap * 2.0).ceil() as u64).max(1);
        (
            ProposedRule::Timestamp { tolerance_secs },
            share(stamps),
            None,
            Some(max_gap),
        )
    } else if share(ints) >= options.min_generated {
        let (p, c) = (increasing(&p_ints), increasing(&c_ints));
        if p < 0.9 || c < 0.9 {
            return None;
        }
        let rule = if is_header {
            ProposedRule::HeaderNumber
        } else {
            ProposedRule::Ignore
        };
        (rule, share(ints), Some((p, c)), None)
    } else {
        return None;
    };
    let examples = observations
        .iter()
        .take(3)
        .map(|o| {
            (
                o.primary.clone().unwrap_or(Value::Null),
                o.candidate.clone().unwrap_or(Value::Null),
            )
        })
        .collect();
    Some(Proposal {
        route: route.to_owned(),
        path,
        rule,
        evidence: Evidence {
            exchanges,
            differing,
            diff_rate: differing as f64 / exchanges as f64,
            generated_rate,
            primary_kinds,
            candidate_kinds,
            monotonic,
            max_gap_secs,
            examples,
        },
    })
}

/// Whether both values of an observation are strings of one format (ids of
/// one kind, timestamps of one layout): only then can they be value noise.
fn same_format<F: PartialEq>(o: &Observation, format: fn(&str) -> Option<F>) -> bool {
    let of = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).and_then(format);
    matches!((of(&o.primary), of(&o.candidate)), (Some(a), Some(b)) if a == b)
}

/// Fraction of consecutive values that strictly increase.
fn increasing(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let up = values.windows(2).filter(|w| w[1] > w[0]).count();
    up as f64 / (values.len() - 1) as f64
}

/// Appends proposals to the rules file at `path`, keeping its comments and
/// layout. Proposals already present are skipped. The result must still
/// compile as rules, else nothing is written. Returns how many were added.
pub fn accept(path: &Path, proposals: &[Proposal], today: &str) -> Result<usize, NoiseError> {
    let text = std::fs::read_to_string(path).map_err(|source| NoiseError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| NoiseError::Parse {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
    let shape_err = |reason: &str| NoiseError::Shape {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut added = 0;
    for proposal in proposals {
        let routes = doc
            .entry("routes")
            .or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            })
            .as_table_mut()
            .ok_or_else(|| shape_err("`routes` is not a table"))?;
        let route = routes
            .entry(&proposal.route)
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| shape_err("a route section is not a table"))?;
        let e = &proposal.evidence;
        let note = format!(
            "learned {today}: differs in {}/{} exchanges, both sides generated in {:.0}%",
            e.differing,
            e.exchanges,
            e.generated_rate * 100.0
        );
        let changed = match &proposal.rule {
            ProposedRule::IdShape | ProposedRule::Timestamp { .. } => {
                let matchers = route
                    .entry("match")
                    .or_insert_with(|| Item::ArrayOfTables(Default::default()))
                    .as_array_of_tables_mut()
                    .ok_or_else(|| shape_err("`match` is not an array of tables"))?;
                let exists = matchers.iter().any(|t| {
                    t.get("pointer").and_then(Item::as_str) == Some(proposal.path.as_str())
                });
                if exists {
                    false
                } else {
                    let mut table = Table::new();
                    table.insert("pointer", value(proposal.path.as_str()));
                    match &proposal.rule {
                        ProposedRule::Timestamp { tolerance_secs } => {
                            table.insert("shape", value("timestamp"));
                            table.insert("tolerance", value(format!("{tolerance_secs}s")));
                        }
                        _ => {
                            table.insert("shape", value("id"));
                        }
                    }
                    table.insert("note", value(note));
                    matchers.push(table);
                    true
                }
            }
            ProposedRule::Ignore => push_unique(route, "ignore", &proposal.path, &shape_err)?,
            ProposedRule::HeaderIds | ProposedRule::HeaderNumber => {
                let name = proposal.path.trim_start_matches("header:");
                let normalizers = route
                    .entry("header_normalize")
                    .or_insert_with(|| Item::ArrayOfTables(Default::default()))
                    .as_array_of_tables_mut()
                    .ok_or_else(|| shape_err("`header_normalize` is not an array of tables"))?;
                let exists = normalizers.iter().any(|t| {
                    t.get("header")
                        .and_then(Item::as_str)
                        .is_some_and(|h| h.eq_ignore_ascii_case(name))
                });
                if exists {
                    false
                } else {
                    let mut table = Table::new();
                    // header_normalize has no `note` key: the evidence
                    // goes in a comment above the entry.
                    table.decor_mut().set_prefix(format!("\n# {note}\n"));
                    table.insert("header", value(name));
                    if proposal.rule == ProposedRule::HeaderIds {
                        table.insert("ids", value(true));
                    } else {
                        let mut replace = toml_edit::InlineTable::new();
                        replace.insert("pattern", "^[0-9]+$".into());
                        replace.insert("with", "<number>".into());
                        table.insert("replace", value(replace));
                    }
                    normalizers.push(table);
                    true
                }
            }
        };
        if changed {
            added += 1;
        }
    }
    let updated = doc.to_string();
    Rules::from_toml_str(&updated)?;
    if added > 0 {
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, &updated).map_err(|source| NoiseError::Write {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, path).map_err(|source| NoiseError::Write {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(added)
}

fn push_unique(
    table: &mut Table,
    key: &str,
    entry: &str,
    shape_err: &dyn Fn(&str) -> NoiseError,
) -> Result<bool, NoiseError> {
    let array = table
        .entry(key)
        .or_insert_with(|| value(Array::new()))
        .as_array_mut()
        .ok_or_else(|| shape_err("expected an array"))?;
    if array.iter().any(|v| v.as_str() == Some(entry)) {
        return Ok(false);
    }
    array.push(entry);
    Ok(true)
}
