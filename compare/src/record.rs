//! The diff record: one per compared exchange, one JSON object per line in a
//! diff log. Its JSON Schema is `compare/schemas/diff-record.v1.schema.json`;
//! the mirror proxy, `compare replay` and `compare events` write it, and
//! `compare report` and `compare learn-noise` read it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped when a field changes meaning or is removed; adding an optional
/// field keeps the version.
pub const SCHEMA_VERSION: u32 = 1;

/// At most this many body differences are kept per record; the rest are
/// counted in [`DiffRecord::truncated`]. Keeps a pathological response from
/// producing a huge log line.
pub const MAX_BODY_DIFFS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffRecord {
    pub schema_version: u32,
    /// When the diff was made.
    pub ts: DateTime<Utc>,
    /// Route template from the rules (`POST /v1/sms/send`), or one guessed
    /// from the path.
    pub route: String,
    pub method: String,
    /// Correlation id from `X-Correlation-ID`, `Kong-Request-ID` or
    /// `X-Request-Id` (events: the pairing key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Absent for NATS events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusDiff>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderDiff>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub body: Vec<BodyDiff>,
    /// Body differences beyond [`MAX_BODY_DIFFS`] that were not kept.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truncated: usize,
    /// Name of the envelope class that made the two error bodies equivalent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<String>,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    /// The request, redacted, for "copy as curl" (kept for `differs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestSnapshot>,
    /// For events that found no partner within the pairing window: the side
    /// that was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched: Option<Side>,
    /// Transport failure of the candidate (timeout, connection refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the values in this record went through the redactor.
    #[serde(default)]
    pub redacted: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The outcome of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// No differences.
    Same,
    /// Differences exist, all explained by rules (or by the secondary).
    NoiseOnly,
    /// At least one difference no rule explains.
    Differs,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Same => "same",
            Verdict::NoiseOnly => "noise-only",
            Verdict::Differs => "differs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Primary,
    Candidate,
}

/// How a record's differences are explained, from best to worst. Read
/// from the record by [`DiffRecord::category`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Same,
    /// Every difference is value noise.
    NoiseOnly,
    /// Every difference that is not value noise was accepted by a
    /// contract-change rule (verdict `differs`).
    AcceptedChange,
    /// At least one difference no rule explains.
    Differs,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Same => "same",
            Category::NoiseOnly => "noise-only",
            Category::AcceptedChange => "accepted-change",
            Category::Differs => "differs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDiff {
    pub primary: u16,
    pub candidate: u16,
    /// Set when the statuses differ and a rule explains it as noise
    /// (`secondary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    /// Set when the statuses differ and a contract-change rule accepts it
    /// (`status-class:<name>`, `envelope-class:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
    /// The rule entry that explained it (`[routes."POST /v1/sms/send"]
    /// status_class send-accepted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// How a value differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffKind {
    /// Only the candidate has it.
    Added,
    /// Only the primary has it.
    Removed,
    /// Both have it, same JSON type, different value.
    Changed,
    /// Both have it with different JSON types.
    Type,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Added => "added",
            DiffKind::Removed => "removed",
            DiffKind::Changed => "changed",
            DiffKind::Type => "type",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderDiff {
    /// Lowercase header name.
    pub name: String,
    pub kind: DiffKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The rule that explains the difference as value noise, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    /// The contract change a rule accepted here, if any
    /// (`header-normalize:content-type`, `envelope-class:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
    /// The rule entry behind `noise` or `accepted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyDiff {
    /// RFC 6901 JSON Pointer into the body (`""` = the whole body).
    pub pointer: String,
    pub kind: DiffKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Value>,
    /// The rule that explains the difference as value noise, if any
    /// (`shape:id`, `timestamp±5000ms`, `ignore`, `secondary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    /// The contract change a rule accepted here, if any
    /// (`format-change:/id`, `envelope-class:<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
    /// The rule entry behind `noise` or `accepted`
    /// (`[defaults] match /**/created_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub primary: f64,
    pub candidate: f64,
}

/// The request as it may be stored: credentials dropped, personal data
/// hashed (when the record is redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSnapshot {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header name/value pairs in arrival order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// JSON body, or a string for non-JSON bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// One explained difference of a record, as reports list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained<'r> {
    /// `status`, `header:<name>` or a body pointer.
    pub path: String,
    pub kind: DiffKind,
    /// The `noise` or `accepted` label.
    pub label: &'r str,
    /// The rule entry; old records without one give the label.
    pub rule: &'r str,
}

impl DiffRecord {
    /// Recomputes the verdict from the differences: `differs` if any is
    /// not value noise (unexplained, or an accepted contract change),
    /// `noise-only` if all are value noise, `same` when there are none.
    ///
    /// An accepted contract change keeps the verdict `differs` so that a
    /// reader that does not know `accepted` (an older `compare`, a `jq`
    /// one-liner) counts it against the gate rather than as noise;
    /// [`DiffRecord::category`] tells the two kinds of `differs` apart.
    pub fn recompute_verdict(&mut self) {
        let status_changed = self
            .status
            .as_ref()
            .is_some_and(|s| s.primary != s.candidate);
        let status_noise = self
            .status
            .as_ref()
            .is_some_and(|s| s.primary != s.candidate && s.noise.is_some());
        let not_noise = (status_changed && !status_noise)
            || self.error.is_some()
            || self.unmatched.is_some()
            || self.headers.iter().any(|d| d.noise.is_none())
            || self.body.iter().any(|d| d.noise.is_none());
        let noise = status_noise
            || self.envelope.is_some()
            || !self.headers.is_empty()
            || !self.body.is_empty()
            || self.truncated > 0;
        self.verdict = if not_noise {
            Verdict::Differs
        } else if noise {
            Verdict::NoiseOnly
        } else {
            Verdict::Same
        };
    }

    /// Reads a record written before rules were attributed (an explained
    /// difference without `rule`) the way it is meant today. Those records
    /// carried contract changes as `noise`: status and envelope classes,
    /// `Content-Type` normalisation, ids and timestamps of another format
    /// under the old, format-blind shapes. They become `accepted`, so a
    /// report over an old diff log never counts them as noise. Records with
    /// attribution are left alone. [`crate::difflog::RecordReader`] applies
    /// it to every record it reads.
    pub fn upgrade_legacy(&mut self) {
        use crate::rules::shape::{id_format, timestamp_format};
        if let Some(s) = self.status.as_mut()
            && s.rule.is_none()
            && let Some(label) = s.noise.as_deref()
            && let Some(accepted) = legacy_class(label)
        {
            s.accepted = Some(accepted);
            s.noise = None;
        }
        for d in self.headers.iter_mut().filter(|d| d.rule.is_none()) {
            let Some(label) = d.noise.as_deref() else {
                continue;
            };
            let accepted = legacy_class(label).or_else(|| {
                let header = label.strip_prefix("normalize:")?;
                let formats = |v: &Option<String>| v.as_deref().map(crate::rules::path_id_formats);
                let changed =
                    header == "content-type" || formats(&d.primary) != formats(&d.candidate);
                changed.then(|| format!("header-normalize:{header}"))
            });
            if accepted.is_some() {
                d.accepted = accepted;
                d.noise = None;
            }
        }
        for d in self.body.iter_mut().filter(|d| d.rule.is_none()) {
            let Some(label) = d.noise.as_deref() else {
                continue;
            };
            let text = |v: &Option<serde_json::Value>| {
                v.as_ref().and_then(|v| v.as_str().map(str::to_owned))
            };
            let (p, c) = (text(&d.primary), text(&d.candidate));
            let changed = match (p.as_deref(), c.as_deref()) {
                (Some(p), Some(c)) if label.starts_with("shape:") => {
                    id_format(p).is_some() && id_format(c).is_some() && id_format(p) != id_format(c)
                }
                (Some(p), Some(c)) if label.starts_with("timestamp") => {
                    timestamp_format(p) != timestamp_format(c)
                }
                _ => false,
            };
            let accepted = legacy_class(label)
                .or_else(|| changed.then(|| format!("format-change:{}", d.pointer)));
            if accepted.is_some() {
                d.accepted = accepted;
                d.noise = None;
            }
        }
        self.recompute_verdict();
    }

    /// `differs` split in two: [`Category::AcceptedChange`] when every
    /// difference that is not noise was accepted by a contract-change rule.
    pub fn category(&self) -> Category {
        match self.verdict {
            Verdict::Same => Category::Same,
            Verdict::NoiseOnly => Category::NoiseOnly,
            Verdict::Differs => {
                if self.real_differences().next().is_none()
                    && self.accepted_changes().next().is_some()
                {
                    Category::AcceptedChange
                } else {
                    Category::Differs
                }
            }
        }
    }

    /// Every difference no rule explains, as `(path, kind)`: `status`,
    /// `header:<name>` or a body pointer. Used for "top differing paths".
    pub fn real_differences(&self) -> impl Iterator<Item = (String, DiffKind)> + '_ {
        let status = self
            .status
            .as_ref()
            .filter(|s| s.primary != s.candidate && s.noise.is_none() && s.accepted.is_none())
            .map(|_| ("status".to_owned(), DiffKind::Changed));
        let error = self
            .error
            .as_ref()
            .map(|_| ("transport-error".to_owned(), DiffKind::Removed));
        let unmatched = self.unmatched.map(|side| {
            let kind = match side {
                Side::Primary => DiffKind::Removed,
                Side::Candidate => DiffKind::Added,
            };
            ("event".to_owned(), kind)
        });
        let headers = self
            .headers
            .iter()
            .filter(|d| d.noise.is_none() && d.accepted.is_none())
            .map(|d| (format!("header:{}", d.name), d.kind));
        let body = self
            .body
            .iter()
            .filter(|d| d.noise.is_none() && d.accepted.is_none())
            .map(|d| (d.pointer.clone(), d.kind));
        status
            .into_iter()
            .chain(error)
            .chain(unmatched)
            .chain(headers)
            .chain(body)
    }

    /// Every difference a contract-change rule accepted.
    pub fn accepted_changes(&self) -> impl Iterator<Item = Explained<'_>> + '_ {
        self.explained(|noise, accepted| if noise.is_none() { accepted } else { None })
    }

    /// Every difference explained as value noise.
    pub fn noise_differences(&self) -> impl Iterator<Item = Explained<'_>> + '_ {
        self.explained(|noise, _| noise)
    }

    fn explained<'r>(
        &'r self,
        pick: fn(Option<&'r str>, Option<&'r str>) -> Option<&'r str>,
    ) -> impl Iterator<Item = Explained<'r>> + 'r {
        let status = self
            .status
            .as_ref()
            .filter(|s| s.primary != s.candidate)
            .and_then(|s| {
                pick(s.noise.as_deref(), s.accepted.as_deref()).map(|label| Explained {
                    path: "status".to_owned(),
                    kind: DiffKind::Changed,
                    label,
                    rule: s.rule.as_deref().unwrap_or(label),
                })
            });
        let headers = self.headers.iter().filter_map(move |d| {
            pick(d.noise.as_deref(), d.accepted.as_deref()).map(|label| Explained {
                path: format!("header:{}", d.name),
                kind: d.kind,
                label,
                rule: d.rule.as_deref().unwrap_or(label),
            })
        });
        let body = self.body.iter().filter_map(move |d| {
            pick(d.noise.as_deref(), d.accepted.as_deref()).map(|label| Explained {
                path: d.pointer.clone(),
                kind: d.kind,
                label,
                rule: d.rule.as_deref().unwrap_or(label),
            })
        });
        status.into_iter().chain(headers).chain(body)
    }
}

/// The contract-change label of a pre-attribution `noise` label that named
/// a status or envelope class.
fn legacy_class(label: &str) -> Option<String> {
    if label.starts_with("status-class:") {
        Some(label.to_owned())
    } else {
        label
            .strip_prefix("envelope:")
            .map(|name| format!("envelope-class:{name}"))
    }
}
