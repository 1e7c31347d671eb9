//! Header comparison: ignored names skipped (they are framing, edge or
//! server-identity headers, not part of the API), values compared as the
//! list of all values of a name, normalisers consulted only when raw values
//! differ. A header present on one side only is always a difference: a
//! normaliser explains values, never absence.

use std::collections::HashSet;

use http::HeaderMap;
use http::header::{GetAll, HeaderValue};

use crate::record::{DiffKind, HeaderDiff};
use crate::rules::{Explanation, RuleSet};

pub(crate) fn compare(
    rules: &RuleSet,
    primary: &HeaderMap,
    candidate: &HeaderMap,
    secondary_noise: Option<&HashSet<String>>,
) -> Vec<HeaderDiff> {
    let mut out = Vec::new();
    for name in primary.keys() {
        let key = name.as_str();
        if rules.ignore_headers.matches(key) {
            continue;
        }
        let pv = primary.get_all(name);
        let cv = candidate.get_all(name);
        if cv.iter().next().is_none() {
            out.push(diff(key, DiffKind::Removed, Some(join(pv)), None, None));
            continue;
        }
        if pv.iter().eq(cv.iter()) {
            continue;
        }
        let (p, c) = (join(pv), join(cv));
        let mut d = diff(key, DiffKind::Changed, Some(p), Some(c), None);
        if let (Some(p), Some(c)) = (&d.primary, &d.candidate)
            && let Some(e) = rules.explain_header(key, p, c)
        {
            explain(&mut d, e);
        }
        out.push(d);
    }
    for name in candidate.keys() {
        let key = name.as_str();
        if primary.contains_key(name) || rules.ignore_headers.matches(key) {
            continue;
        }
        out.push(diff(
            key,
            DiffKind::Added,
            None,
            Some(join(candidate.get_all(name))),
            None,
        ));
    }
    if let Some(noisy) = secondary_noise {
        for d in out
            .iter_mut()
            .filter(|d| d.noise.is_none() && d.accepted.is_none())
        {
            if noisy.contains(&d.name) {
                d.noise = Some("secondary".to_owned());
                d.rule = Some("secondary".to_owned());
            }
        }
    }
    out
}

/// Marks a header difference as explained.
pub(crate) fn explain(d: &mut HeaderDiff, e: Explanation) {
    if e.change {
        d.accepted = Some(e.label);
    } else {
        d.noise = Some(e.label);
    }
    d.rule = Some(e.rule);
}

fn diff(
    name: &str,
    kind: DiffKind,
    primary: Option<String>,
    candidate: Option<String>,
    noise: Option<String>,
) -> HeaderDiff {
    HeaderDiff {
        name: name.to_owned(),
        kind,
        primary,
        candidate,
        noise,
        accepted: None,
        rule: None,
    }
}

/// All values of a header, joined as they would be folded on the wire.
fn join(values: GetAll<'_, HeaderValue>) -> String {
    let mut out = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    out
}
