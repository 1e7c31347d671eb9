//! The diff engine: one [`Exchange`] in, one [`DiffRecord`] out.
//!
//! Order of work for an exchange:
//! 1. find the route and its compiled rules;
//! 2. parse both bodies once;
//! 3. statuses: an envelope class (legacy error body ≡ problem+json) or a
//!    status class may accept different statuses as a contract change;
//! 4. headers: ignored names skipped, normalisers applied to differing values;
//! 5. bodies: both trees walked in step, differences checked against ignore
//!    paths, set rules and shape matchers;
//! 6. verdict, latencies and (when it differs) the request snapshot.
//!
//! Every explained difference names the rule that explained it (`rule`),
//! and says whether it is value noise (`noise`) or a contract change an
//! operator accepted (`accepted`).
//!
//! The record is not redacted here: pass it through a [`crate::Redactor`]
//! (or write it with [`crate::DiffLogWriter`], which does) before storing it.

mod body;
mod headers;
pub(crate) mod json;

use std::collections::HashSet;

use chrono::Utc;

pub(crate) use body::ParsedBody;
use body::{BodyWalk, content_type};

use crate::exchange::{Exchange, RecordedRequest, RecordedResponse, correlation_id};
use crate::record::{
    DiffRecord, Latency, RequestSnapshot, SCHEMA_VERSION, Side, StatusDiff, Verdict,
};
use crate::rules::{EnvelopeClass, RuleSet, Rules};

/// Bodies larger than this (both together) are not kept as the example of
/// an envelope class: error envelopes are small, and a record stays one
/// modest line.
const MAX_ENVELOPE_EXAMPLE_BYTES: usize = 16 * 1024;

/// When a record carries the request (for "copy as curl").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepRequest {
    Never,
    /// Only when the verdict is `differs` (the default: those are the
    /// examples a report shows).
    #[default]
    WhenDiffers,
    Always,
}

/// Compares exchanges under compiled rules. Cheap to share: wrap it in an
/// `Arc` and call [`Differ::diff`] from any number of tasks.
#[derive(Debug, Clone)]
pub struct Differ {
    rules: Rules,
    keep_request: KeepRequest,
}

/// What the primary/secondary comparison found to be noisy in one exchange.
#[derive(Debug, Default)]
struct SecondaryNoise {
    status: bool,
    headers: HashSet<String>,
    body: HashSet<String>,
}

impl Differ {
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            keep_request: KeepRequest::default(),
        }
    }

    /// Sets when records carry the request snapshot.
    pub fn keep_request(mut self, keep: KeepRequest) -> Self {
        self.keep_request = keep;
        self
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Compares the primary's and the candidate's answers.
    pub fn diff(&self, exchange: &Exchange) -> DiffRecord {
        self.diff_parts(
            &exchange.request,
            &exchange.primary,
            &exchange.candidate,
            None,
        )
    }

    /// Diffy-style noise cancellation: what differs between the primary and
    /// a second instance of the primary (the secondary) is noise by
    /// definition, so the same paths in the candidate diff are marked
    /// `secondary`. Only for read-only routes: calling the primary twice
    /// doubles side effects.
    pub fn diff_with_secondary(
        &self,
        exchange: &Exchange,
        secondary: &RecordedResponse,
    ) -> DiffRecord {
        let baseline = self.diff_parts(&exchange.request, &exchange.primary, secondary, None);
        let noise = SecondaryNoise {
            status: baseline
                .status
                .as_ref()
                .is_some_and(|s| s.primary != s.candidate),
            headers: baseline.headers.into_iter().map(|d| d.name).collect(),
            body: baseline.body.into_iter().map(|d| d.pointer).collect(),
        };
        self.diff_parts(
            &exchange.request,
            &exchange.primary,
            &exchange.candidate,
            Some(&noise),
        )
    }

    fn diff_parts(
        &self,
        request: &RecordedRequest,
        primary: &RecordedResponse,
        candidate: &RecordedResponse,
        secondary: Option<&SecondaryNoise>,
    ) -> DiffRecord {
        let (route, rules) = self.rules.route(&request.method, &request.path);
        // Identical bytes need no parsing unless an envelope class could
        // apply to these statuses (it inspects the bodies).
        let skip_bodies = rules.ignore_body.is_some()
            || (primary.body == candidate.body
                && !rules.envelope_may_apply(primary.status.as_u16(), candidate.status.as_u16()));
        let (p_body, c_body) = if skip_bodies {
            (ParsedBody::Empty, ParsedBody::Empty)
        } else {
            (
                ParsedBody::parse(&primary.headers, &primary.body),
                ParsedBody::parse(&candidate.headers, &candidate.body),
            )
        };

        let (status, envelope) = if request.is_event() {
            (None, None)
        } else {
            let (mut status, envelope) =
                compare_status(rules, primary, candidate, &p_body, &c_body);
            if status.primary != status.candidate
                && status.accepted.is_none()
                && secondary.is_some_and(|n| n.status)
            {
                status.noise = Some("secondary".to_owned());
                status.rule = Some("secondary".to_owned());
            }
            (Some(status), envelope)
        };

        let mut headers = headers::compare(
            rules,
            &primary.headers,
            &candidate.headers,
            secondary.map(|n| &n.headers),
        );
        if let Some(class) = envelope {
            // The two envelopes are different media types by definition.
            for diff in headers
                .iter_mut()
                .filter(|d| d.name == "content-type" && d.noise.is_none() && d.accepted.is_none())
            {
                headers::explain(diff, class.explanation());
            }
        }

        let mut walk = BodyWalk::new(rules, secondary.map(|n| &n.body));
        if let Some(class) = envelope {
            // Not compared field by field; kept whole, as the example of
            // what the class accepted.
            let small = primary.body.len() + candidate.body.len() <= MAX_ENVELOPE_EXAMPLE_BYTES;
            walk.explain_whole(&p_body, &c_body, class.explanation(), small);
        } else if let Some(rule) = &rules.ignore_body {
            if primary.body != candidate.body {
                let e = crate::rules::Explanation::ignore_body(rule);
                walk.explain_whole(
                    &ParsedBody::Text(&primary.body),
                    &ParsedBody::Text(&candidate.body),
                    e,
                    false,
                );
            }
        } else {
            walk.compare(&p_body, &c_body);
        }

        let mut record =
            self.bare_record(route.into_owned(), request, Some(primary), Some(candidate));
        record.status = status;
        record.headers = headers;
        record.body = walk.diffs;
        record.truncated = walk.truncated;
        record.envelope = envelope.map(|class| class.name.clone());
        record.latency_ms = Some(Latency {
            primary: primary.latency.as_secs_f64() * 1000.0,
            candidate: candidate.latency.as_secs_f64() * 1000.0,
        });
        record.recompute_verdict();
        let keep = match self.keep_request {
            KeepRequest::Never => false,
            KeepRequest::WhenDiffers => record.verdict == Verdict::Differs,
            KeepRequest::Always => true,
        };
        if keep && !request.is_event() {
            record.request = Some(snapshot(request));
        }
        record
    }
}

impl Differ {
    /// The record for an exchange whose candidate gave no answer (timeout,
    /// connection refused): always `differs`, with the error.
    pub fn failed(
        &self,
        request: &RecordedRequest,
        primary: &RecordedResponse,
        error: String,
    ) -> DiffRecord {
        let route = self.rules.route_template(&request.method, &request.path);
        let mut record = self.bare_record(route, request, Some(primary), None);
        record.error = Some(error);
        record.recompute_verdict();
        if self.keep_request != KeepRequest::Never && !request.is_event() {
            record.request = Some(snapshot(request));
        }
        record
    }

    /// The record for an event that found no partner within the pairing
    /// window: `differs`, with the side that was seen.
    pub fn unmatched(
        &self,
        request: &RecordedRequest,
        side: Side,
        correlation_id: Option<String>,
    ) -> DiffRecord {
        let route = self.rules.route_template(&request.method, &request.path);
        let mut record = self.bare_record(route, request, None, None);
        record.correlation_id = correlation_id.or(record.correlation_id);
        record.unmatched = Some(side);
        record.recompute_verdict();
        record
    }

    /// A record with no differences yet; the correlation id comes from the
    /// request, else from either response.
    fn bare_record(
        &self,
        route: String,
        request: &RecordedRequest,
        primary: Option<&RecordedResponse>,
        candidate: Option<&RecordedResponse>,
    ) -> DiffRecord {
        DiffRecord {
            schema_version: SCHEMA_VERSION,
            ts: Utc::now(),
            route,
            method: request.method.as_str().to_owned(),
            correlation_id: request
                .correlation_id()
                .or_else(|| primary.and_then(|r| correlation_id(&r.headers)))
                .or_else(|| candidate.and_then(|r| correlation_id(&r.headers)))
                .map(str::to_owned),
            status: None,
            headers: Vec::new(),
            body: Vec::new(),
            truncated: 0,
            envelope: None,
            verdict: Verdict::Same,
            latency_ms: None,
            request: None,
            unmatched: None,
            error: None,
            redacted: false,
        }
    }
}

/// Compares statuses. Returns the status pair (`accepted` set when a
/// status or envelope class accepts the difference) and, when both bodies
/// fit an envelope class with the same effective status, the class (bodies
/// are then not compared field by field).
fn compare_status<'r>(
    rules: &'r RuleSet,
    primary: &RecordedResponse,
    candidate: &RecordedResponse,
    p_body: &ParsedBody<'_>,
    c_body: &ParsedBody<'_>,
) -> (StatusDiff, Option<&'r EnvelopeClass>) {
    let (ps, cs) = (primary.status.as_u16(), candidate.status.as_u16());
    let (p_ct, c_ct) = (
        content_type(&primary.headers),
        content_type(&candidate.headers),
    );
    let envelope = rules.envelope_classes.iter().find(|class| {
        let p = class.primary.effective_status(ps, p_ct, p_body.json());
        let c = class.candidate.effective_status(cs, c_ct, c_body.json());
        matches!((p, c), (Some(p), Some(c)) if p == c)
    });
    let explanation = if ps == cs {
        None
    } else if let Some(class) = envelope {
        Some(class.explanation())
    } else {
        rules
            .status_classes
            .iter()
            .find(|class| class.admits(ps, cs))
            .map(|class| class.explanation())
    };
    let mut status = StatusDiff {
        primary: ps,
        candidate: cs,
        noise: None,
        accepted: None,
        rule: None,
    };
    if let Some(e) = explanation {
        // Status and envelope classes are contract changes by definition.
        status.accepted = Some(e.label);
        status.rule = Some(e.rule);
    }
    (status, envelope)
}

/// The request as a record value (not yet redacted).
pub(crate) fn snapshot(request: &RecordedRequest) -> RequestSnapshot {
    let body = ParsedBody::parse(&request.headers, &request.body).to_value();
    RequestSnapshot {
        method: request.method.as_str().to_owned(),
        path: request.path.clone(),
        headers: request
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    }
}
