//! Body comparison: parse each body once, then walk both JSON trees in step.
//!
//! Equal subtrees cost one comparison per node and no allocation; rules are
//! consulted only where the values differ (and at arrays, when set rules
//! exist; at every node, when `ignore` rules exist), so typical "same"
//! responses stay in the fast path.
//!
//! An ignored subtree is not compared further, but when it differs it is
//! recorded once, as noise attributed to its `ignore` rule: a report shows
//! what each rule explained away.

use std::collections::HashSet;

use http::HeaderMap;
use serde_json::{Number, Value};

use super::json::{self, Json};
use crate::record::{BodyDiff, DiffKind, MAX_BODY_DIFFS};
use crate::rules::pointer::{PathSeg, render};
use crate::rules::{Explanation, RuleSet};

/// Text bodies longer than this are cut in diff records.
const MAX_TEXT_CHARS: usize = 2048;

/// Arrays longer than this are compared by index even under a set rule, to
/// bound the quadratic multiset match.
const MAX_SET_LEN: usize = 2000;

/// A body parsed once for everything that needs it (envelope checks, the
/// walk, the request snapshot). Borrows from the body bytes.
#[derive(Debug)]
pub(crate) enum ParsedBody<'a> {
    Empty,
    Json(Json<'a>),
    Text(&'a [u8]),
}

impl<'a> ParsedBody<'a> {
    /// Parses as JSON when the content type says so or, without one, when
    /// the body starts like JSON; anything unparsable is text.
    pub fn parse(headers: &HeaderMap, body: &'a [u8]) -> Self {
        if body.iter().all(u8::is_ascii_whitespace) {
            return ParsedBody::Empty;
        }
        let content_type = content_type(headers);
        let looks_json = if content_type.is_empty() {
            matches!(
                body.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'{' | b'[')
            )
        } else {
            content_type
                .as_bytes()
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"json"))
        };
        if looks_json && let Some(value) = json::parse(body) {
            return ParsedBody::Json(value);
        }
        ParsedBody::Text(body)
    }

    pub fn json(&self) -> Option<&Json<'a>> {
        match self {
            ParsedBody::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The body as a record value: JSON as is, text as a (cut) string.
    pub fn to_value(&self) -> Option<Value> {
        match self {
            ParsedBody::Empty => None,
            ParsedBody::Json(v) => Some(v.to_value()),
            ParsedBody::Text(b) => Some(Value::String(cut_text(b))),
        }
    }
}

pub(crate) fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn cut_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

/// Collects body differences under a rule set.
pub(crate) struct BodyWalk<'r> {
    rules: &'r RuleSet,
    /// Pointers where primary and secondary already disagree (Diffy-style
    /// noise); differences at or below them are noise.
    secondary_noise: Option<&'r HashSet<String>>,
    pub diffs: Vec<BodyDiff>,
    pub truncated: usize,
}

impl<'r> BodyWalk<'r> {
    pub fn new(rules: &'r RuleSet, secondary_noise: Option<&'r HashSet<String>>) -> Self {
        Self {
            rules,
            secondary_noise,
            diffs: Vec::new(),
            truncated: 0,
        }
    }

    pub fn compare(&mut self, primary: &ParsedBody<'_>, candidate: &ParsedBody<'_>) {
        let path = Vec::new();
        match (primary, candidate) {
            (ParsedBody::Empty, ParsedBody::Empty) => {}
            (ParsedBody::Json(p), ParsedBody::Json(c)) => self.walk(&mut Vec::new(), p, c),
            _ => {
                if let Some(kind) = whole_body_kind(primary, candidate) {
                    self.record(&path, kind, primary.to_value(), candidate.to_value(), None);
                }
            }
        }
    }

    /// Records the whole bodies as one difference explained by `e` (an
    /// envelope class, `ignore_body`), when they differ. `values`: keep
    /// both bodies as the example (small error bodies), or not.
    pub fn explain_whole(
        &mut self,
        primary: &ParsedBody<'_>,
        candidate: &ParsedBody<'_>,
        e: Explanation,
        values: bool,
    ) {
        let kind = match (primary, candidate) {
            (ParsedBody::Json(p), ParsedBody::Json(c)) => {
                (!values_equal(p, c)).then_some(DiffKind::Changed)
            }
            _ => whole_body_kind(primary, candidate),
        };
        if let Some(kind) = kind {
            let (p, c) = if values {
                (primary.to_value(), candidate.to_value())
            } else {
                (None, None)
            };
            self.record(&[], kind, p, c, Some(e));
        }
    }

    fn walk<'v>(&mut self, path: &mut Vec<PathSeg<'v>>, p: &'v Json<'v>, c: &'v Json<'v>) {
        if !self.rules.ignore.is_empty()
            && let Some(ignore) = self.rules.ignored_by(path)
        {
            if !values_equal(p, c) {
                let kind = if std::mem::discriminant(p) == std::mem::discriminant(c) {
                    DiffKind::Changed
                } else {
                    DiffKind::Type
                };
                let e = ignore.explanation();
                self.record(path, kind, Some(p.to_value()), Some(c.to_value()), Some(e));
            }
            return;
        }
        match (p, c) {
            (Json::Object(pm), Json::Object(cm)) => {
                // Same serialiser, same member order: look at the same
                // position first, search only when that misses.
                let mut in_order = pm.len() == cm.len();
                for (i, (key, pv)) in pm.iter().enumerate() {
                    path.push(PathSeg::Key(key));
                    let cv = cm.at_if(i, key).or_else(|| {
                        in_order = false;
                        cm.get(key)
                    });
                    match cv {
                        Some(cv) => self.walk(path, pv, cv),
                        None => self.leaf(path, DiffKind::Removed, Some(pv), None),
                    }
                    path.pop();
                }
                if !in_order {
                    for (key, cv) in cm.iter().filter(|(k, _)| !pm.contains_key(k)) {
                        path.push(PathSeg::Key(key));
                        self.leaf(path, DiffKind::Added, None, Some(cv));
                        path.pop();
                    }
                }
            }
            (Json::Array(pa), Json::Array(ca)) => {
                if !self.rules.sets.is_empty()
                    && pa.len().max(ca.len()) <= MAX_SET_LEN
                    && self.rules.is_set(path)
                {
                    self.compare_set(path, pa, ca);
                    return;
                }
                for (i, (pv, cv)) in pa.iter().zip(ca).enumerate() {
                    path.push(PathSeg::Index(i));
                    self.walk(path, pv, cv);
                    path.pop();
                }
                for (i, pv) in pa.iter().enumerate().skip(ca.len()) {
                    path.push(PathSeg::Index(i));
                    self.leaf(path, DiffKind::Removed, Some(pv), None);
                    path.pop();
                }
                for (i, cv) in ca.iter().enumerate().skip(pa.len()) {
                    path.push(PathSeg::Index(i));
                    self.leaf(path, DiffKind::Added, None, Some(cv));
                    path.pop();
                }
            }
            (Json::String(a), Json::String(b)) => {
                if a != b {
                    self.leaf(path, DiffKind::Changed, Some(p), Some(c));
                }
            }
            (Json::Number(a), Json::Number(b)) => {
                if !numbers_equal(a, b) {
                    self.leaf(path, DiffKind::Changed, Some(p), Some(c));
                }
            }
            (Json::Bool(a), Json::Bool(b)) => {
                if a != b {
                    self.leaf(path, DiffKind::Changed, Some(p), Some(c));
                }
            }
            (Json::Null, Json::Null) => {}
            _ => self.leaf(path, DiffKind::Type, Some(p), Some(c)),
        }
    }

    /// Multiset comparison: every primary element is paired with an equal,
    /// unused candidate element; the rest are removed/added.
    fn compare_set<'v>(
        &mut self,
        path: &mut Vec<PathSeg<'v>>,
        pa: &'v [Json<'v>],
        ca: &'v [Json<'v>],
    ) {
        let mut used = vec![false; ca.len()];
        let mut unpaired = Vec::new();
        for (i, pv) in pa.iter().enumerate() {
            let partner = ca
                .iter()
                .enumerate()
                .position(|(j, cv)| !used.get(j).copied().unwrap_or(true) && values_equal(pv, cv));
            match partner {
                Some(j) => {
                    if let Some(slot) = used.get_mut(j) {
                        *slot = true;
                    }
                }
                None => unpaired.push(i),
            }
        }
        for i in unpaired {
            path.push(PathSeg::Index(i));
            self.leaf(path, DiffKind::Removed, pa.get(i), None);
            path.pop();
        }
        for (j, cv) in ca.iter().enumerate() {
            if !used.get(j).copied().unwrap_or(false) {
                path.push(PathSeg::Index(j));
                self.leaf(path, DiffKind::Added, None, Some(cv));
                path.pop();
            }
        }
    }

    fn leaf(
        &mut self,
        path: &[PathSeg<'_>],
        kind: DiffKind,
        p: Option<&Json<'_>>,
        c: Option<&Json<'_>>,
    ) {
        let explanation = match (p, c) {
            (Some(p), Some(c)) => self.rules.explain(path, p, c),
            // A member on one side only: an `ignore` rule may cover it
            // (walk() stops at ignored nodes both sides have).
            _ => self.rules.ignored_by(path).map(|i| i.explanation()),
        };
        self.record(
            path,
            kind,
            p.map(Json::to_value),
            c.map(Json::to_value),
            explanation,
        );
    }

    fn record(
        &mut self,
        path: &[PathSeg<'_>],
        kind: DiffKind,
        primary: Option<Value>,
        candidate: Option<Value>,
        explanation: Option<Explanation>,
    ) {
        let pointer = render(path);
        let mut diff = BodyDiff {
            pointer,
            kind,
            primary,
            candidate,
            noise: None,
            accepted: None,
            rule: None,
        };
        match explanation {
            Some(e) => {
                if e.change {
                    diff.accepted = Some(e.label);
                } else {
                    diff.noise = Some(e.label);
                }
                diff.rule = Some(e.rule);
            }
            None => {
                if let Some(noisy) = self.secondary_noise
                    && is_under_any(&diff.pointer, noisy)
                {
                    diff.noise = Some("secondary".to_owned());
                    diff.rule = Some("secondary".to_owned());
                }
            }
        }
        self.push(diff);
    }

    /// Keeps at most [`MAX_BODY_DIFFS`]; a difference that is not noise
    /// evicts a noise one, so the verdict never loses a real difference (or
    /// an accepted change) to truncation.
    fn push(&mut self, diff: BodyDiff) {
        if self.diffs.len() < MAX_BODY_DIFFS {
            self.diffs.push(diff);
            return;
        }
        self.truncated += 1;
        if diff.noise.is_none()
            && let Some(slot) = self.diffs.iter_mut().rev().find(|d| d.noise.is_some())
        {
            *slot = diff;
        }
    }
}

/// How two bodies that are not both JSON differ, if they do.
fn whole_body_kind(primary: &ParsedBody<'_>, candidate: &ParsedBody<'_>) -> Option<DiffKind> {
    match (primary, candidate) {
        (ParsedBody::Empty, ParsedBody::Empty) => None,
        (ParsedBody::Text(p), ParsedBody::Text(c)) => (p != c).then_some(DiffKind::Changed),
        (ParsedBody::Empty, _) => Some(DiffKind::Added),
        (_, ParsedBody::Empty) => Some(DiffKind::Removed),
        _ => Some(DiffKind::Type),
    }
}

/// Whether `pointer` is one of `set` or lies below one of them.
pub(crate) fn is_under_any(pointer: &str, set: &HashSet<String>) -> bool {
    if set.contains(pointer) || set.contains("") {
        return true;
    }
    pointer
        .match_indices('/')
        .skip(1)
        .any(|(i, _)| set.contains(&pointer[..i]))
}

/// Numbers are equal when they denote the same value: `1` equals `1.0`.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    if a == b {
        return true;
    }
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_u64(), b.as_u64()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_f64().zip(b.as_f64()).is_some_and(|(x, y)| x == y),
        },
    }
}

/// Deep equality with the numeric rule of [`numbers_equal`] and member
/// order ignored.
fn values_equal(a: &Json<'_>, b: &Json<'_>) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => numbers_equal(x, y),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_equal(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        (Json::String(x), Json::String(y)) => x == y,
        (Json::Bool(x), Json::Bool(y)) => x == y,
        (Json::Null, Json::Null) => true,
        _ => false,
    }
}
