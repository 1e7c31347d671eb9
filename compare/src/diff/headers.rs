//! Header comparison: ignored names skipped, values compared as the list of
//! all values of a name, normalisers consulted only when raw values differ.

use std::collections::HashSet;

use http::HeaderMap;
use http::header::{GetAll, HeaderValue};

use crate::record::{DiffKind, HeaderDiff};
use crate::rules::RuleSet;

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
        let noise = rules
            .header_normalize
            .iter()
            .find(|n| n.header.matches(key) && n.normalise(&p) == n.normalise(&c))
            .map(|_| format!("normalize:{key}"));
        out.push(diff(key, DiffKind::Changed, Some(p), Some(c), noise));
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
        for d in out.iter_mut().filter(|d| d.noise.is_none()) {
            if noisy.contains(&d.name) {
                d.noise = Some("secondary".to_owned());
            }
        }
    }
    out
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
