//! `compare events`: the side-effect diff. What downstream SMS workers
//! receive from the legacy (`sms.outbound.request`) is compared with what
//! the orchestrator publishes in shadow mode (`shadow.sms.outbound.request`).
//!
//! Events are paired by correlation id (the `X-Correlation-ID` NATS header,
//! else a payload field, `/correlation_id` by default) **and position**: one
//! bulk request publishes one event per accepted item, all with its
//! correlation id, so the n-th event of a correlation id on one side pairs
//! with the n-th on the other. Both systems publish a request's events in
//! item order (the legacy item by item before it answers, the
//! orchestrator's relay in creation order); a system that reordered them
//! would show as differences (`/to`, …), never as a silent pass. An event
//! whose `Nats-Msg-Id` that side already published (a redelivery, a
//! republish after an unknown outcome) is a duplicate, not the next item.
//! A pair's record carries the correlation id, with `#n` after it from the
//! second event of a request on (`bulk-1`, `bulk-1#1`, `bulk-1#2`).
//!
//! An event waits at most `window` for its partner; then it is written as
//! an unmatched record (or, with `sampled`, a legacy-only event is just
//! counted, since a sampled mirror leaves most legacy events without a
//! shadow twin). Pairs are diffed under the route `event <event-name>` with
//! the same rules as HTTP.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::diff::Differ;
use crate::difflog::DiffLogWriter;
use crate::error::EventsError;
use crate::exchange::{Exchange, RecordedRequest, RecordedResponse, correlation_id};
use crate::record::{DiffRecord, Side, Verdict};
use crate::rules::event_method;

/// How to listen and pair.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub nats_url: String,
    /// The legacy's subject (primary).
    pub primary_subject: String,
    /// The orchestrator's shadow subject (candidate).
    pub candidate_subject: String,
    /// Logical event name; records use the route `event <name>`.
    pub event_name: String,
    /// JSON pointer of the correlation id in the payload.
    pub correlation_pointer: String,
    /// How long an event waits for its partner.
    pub window: Duration,
    /// Legacy-only events are expected (sampled mirroring): count them, do
    /// not write them as differences.
    pub sampled: bool,
    /// Stop after this many pairs (None: until shutdown).
    pub max_pairs: Option<u64>,
    /// Most events waiting for a partner at once (memory bound).
    pub max_pending: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            primary_subject: "sms.outbound.request".to_owned(),
            candidate_subject: "shadow.sms.outbound.request".to_owned(),
            event_name: "sms.outbound.request".to_owned(),
            correlation_pointer: "/correlation_id".to_owned(),
            window: Duration::from_secs(30),
            sampled: false,
            max_pairs: None,
            max_pending: 100_000,
        }
    }
}

/// One received event.
#[derive(Debug, Clone)]
pub struct Event {
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub received: Instant,
}

impl Event {
    /// The pairing key: the correlation header, else the payload field.
    pub fn correlation_id(&self, pointer: &str) -> Option<String> {
        if let Some(id) = correlation_id(&self.headers) {
            return Some(id.to_owned());
        }
        let value: serde_json::Value = serde_json::from_slice(&self.payload).ok()?;
        match value.pointer(pointer)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The publisher's message id (JetStream's de-duplication id).
    pub fn message_id(&self) -> Option<&str> {
        self.headers
            .get("nats-msg-id")
            .and_then(|v| v.to_str().ok())
    }

    fn into_response(self, latency: Duration) -> RecordedResponse {
        RecordedResponse {
            // Events have no status; the differ leaves it out for them.
            status: StatusCode::OK,
            headers: self.headers,
            body: self.payload,
            latency,
        }
    }
}

/// What pairing produced for one offered event.
// Not boxed: a value is consumed right where it is made, and boxing would
// cost two allocations per pair for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Paired {
    /// Both sides are here.
    Pair {
        key: String,
        primary: Event,
        candidate: Event,
    },
    /// Waiting for the partner.
    Waiting,
    /// The same side sent the same key again while waiting; dropped.
    Duplicate,
}

/// A bounded pairing window, independent of NATS so it can be tested with
/// plain values.
#[derive(Debug)]
pub struct Pairer {
    window: Duration,
    max_pending: usize,
    pending: HashMap<String, (Side, Event)>,
    /// Arrival order, for expiry; entries whose key was already paired are
    /// skipped when they come up.
    order: VecDeque<(Instant, String)>,
}

impl Pairer {
    /// `max_pending` bounds memory when one side stops publishing: beyond
    /// it the oldest waiting events expire early.
    pub fn new(window: Duration, max_pending: usize) -> Self {
        Self {
            window,
            max_pending: max_pending.max(1),
            pending: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn offer(&mut self, side: Side, key: String, event: Event) -> Paired {
        match self.pending.remove(&key) {
            Some((waiting_side, waiting)) if waiting_side != side => {
                let (primary, candidate) = match side {
                    Side::Candidate => (waiting, event),
                    Side::Primary => (event, waiting),
                };
                Paired::Pair {
                    key,
                    primary,
                    candidate,
                }
            }
            Some(same_side) => {
                self.pending.insert(key, same_side);
                Paired::Duplicate
            }
            None => {
                self.order.push_back((event.received, key.clone()));
                self.pending.insert(key, (side, event));
                Paired::Waiting
            }
        }
    }

    /// Removes and returns the events that waited longer than the window
    /// (or that must go because more than `max_pending` are waiting).
    pub fn expire(&mut self, now: Instant) -> Vec<(String, Side, Event)> {
        let mut expired = Vec::new();
        while let Some((arrived, _)) = self.order.front() {
            let over_capacity =
                self.pending.len() > self.max_pending || self.order.len() > 2 * self.max_pending;
            if !over_capacity && now.saturating_duration_since(*arrived) < self.window {
                break;
            }
            let Some((arrived, key)) = self.order.pop_front() else {
                break;
            };
            // Only the entry that is still pending and arrived at this time
            // (a key can come back after being paired).
            if self
                .pending
                .get(&key)
                .is_some_and(|(_, event)| event.received == arrived)
                && let Some((side, event)) = self.pending.remove(&key)
            {
                expired.push((key, side, event));
            }
        }
        expired
    }

    /// Events still waiting.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Each side's events so far per correlation id: how many (the next one's
/// position) and their message ids (to tell a duplicate from the next
/// item). Forgotten a window after a correlation id's last event.
#[derive(Debug, Default)]
pub struct Positions {
    seen: HashMap<(Side, String), Seen>,
}

#[derive(Debug)]
struct Seen {
    next: usize,
    message_ids: HashSet<String>,
    last: Instant,
}

impl Positions {
    /// The position of this event among its side's events with
    /// `correlation_id` (0 for the first), or `None` when that side already
    /// published `message_id`.
    pub fn place(
        &mut self,
        side: Side,
        correlation_id: &str,
        message_id: Option<&str>,
        at: Instant,
    ) -> Option<usize> {
        let seen = self
            .seen
            .entry((side, correlation_id.to_owned()))
            .or_insert_with(|| Seen {
                next: 0,
                message_ids: HashSet::new(),
                last: at,
            });
        seen.last = at;
        if let Some(id) = message_id
            && !seen.message_ids.insert(id.to_owned())
        {
            return None;
        }
        seen.next += 1;
        Some(seen.next - 1)
    }

    /// Forgets correlation ids quiet for longer than `window`; keeps at
    /// most `max` (the most recent).
    pub fn expire(&mut self, now: Instant, window: Duration, max: usize) {
        self.seen
            .retain(|_, s| now.saturating_duration_since(s.last) < window);
        if self.seen.len() > max {
            let mut lasts: Vec<Instant> = self.seen.values().map(|s| s.last).collect();
            let cut = lasts.len() - max;
            lasts.select_nth_unstable(cut);
            let threshold = lasts[cut];
            self.seen.retain(|_, s| s.last >= threshold);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The pairing key of an event at `position` of `correlation_id`.
pub fn pairing_key(correlation_id: &str, position: usize) -> String {
    if position == 0 {
        correlation_id.to_owned()
    } else {
        format!("{correlation_id}#{position}")
    }
}

/// Totals of an events run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventsSummary {
    pub pairs: u64,
    pub same: u64,
    pub noise_only: u64,
    pub differs: u64,
    pub unmatched_primary: u64,
    pub unmatched_candidate: u64,
    pub duplicates: u64,
    pub without_correlation_id: u64,
    /// Still waiting for a partner when the run stopped (not written).
    pub pending_at_exit: u64,
}

/// Pairs events and turns them into diff records.
#[derive(Debug)]
pub struct EventDiffer<'a> {
    differ: &'a Differ,
    config: &'a EventsConfig,
    pairer: Pairer,
    positions: Positions,
    pub summary: EventsSummary,
}

impl<'a> EventDiffer<'a> {
    pub fn new(differ: &'a Differ, config: &'a EventsConfig) -> Self {
        Self {
            differ,
            config,
            pairer: Pairer::new(config.window, config.max_pending),
            positions: Positions::default(),
            summary: EventsSummary::default(),
        }
    }

    fn request(&self) -> RecordedRequest {
        RecordedRequest {
            method: event_method(),
            path: self.config.event_name.clone(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Offers one event; returns the record when it completed a pair.
    pub fn offer(&mut self, side: Side, event: Event) -> Option<DiffRecord> {
        let Some(correlation_id) = event.correlation_id(&self.config.correlation_pointer) else {
            self.summary.without_correlation_id += 1;
            return None;
        };
        let Some(position) =
            self.positions
                .place(side, &correlation_id, event.message_id(), event.received)
        else {
            self.summary.duplicates += 1;
            return None;
        };
        match self
            .pairer
            .offer(side, pairing_key(&correlation_id, position), event)
        {
            Paired::Waiting => None,
            Paired::Duplicate => {
                self.summary.duplicates += 1;
                None
            }
            Paired::Pair {
                key,
                primary,
                candidate,
            } => {
                // The "latency" of an event is how long after the legacy's
                // the shadow's arrived (zero when it came first).
                let lag = candidate
                    .received
                    .saturating_duration_since(primary.received);
                let mut headers = HeaderMap::new();
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(b"x-correlation-id"),
                    HeaderValue::from_str(&key),
                ) {
                    headers.insert(name, value);
                }
                let exchange = Exchange {
                    request: RecordedRequest {
                        headers,
                        ..self.request()
                    },
                    primary: primary.into_response(Duration::ZERO),
                    candidate: candidate.into_response(lag),
                };
                let record = self.differ.diff(&exchange);
                self.summary.pairs += 1;
                match record.verdict {
                    Verdict::Same => self.summary.same += 1,
                    Verdict::NoiseOnly => self.summary.noise_only += 1,
                    Verdict::Differs => self.summary.differs += 1,
                }
                Some(record)
            }
        }
    }

    /// Records for events whose window ran out.
    pub fn expire(&mut self, now: Instant) -> Vec<DiffRecord> {
        self.positions
            .expire(now, self.config.window, 2 * self.config.max_pending);
        let request = self.request();
        let mut out = Vec::new();
        for (key, side, _) in self.pairer.expire(now) {
            match side {
                Side::Primary => {
                    self.summary.unmatched_primary += 1;
                    if self.config.sampled {
                        continue;
                    }
                }
                Side::Candidate => self.summary.unmatched_candidate += 1,
            }
            out.push(self.differ.unmatched(&request, side, Some(key)));
        }
        out
    }

    pub fn finish(mut self) -> EventsSummary {
        self.summary.pending_at_exit = self.pairer.pending() as u64;
        self.summary
    }
}

/// Subscribes to both subjects and writes diff records until `shutdown`
/// completes or `max_pairs` pairs were diffed. `ready` is called once both
/// subscriptions are registered with the server.
pub async fn run<W: std::io::Write>(
    config: &EventsConfig,
    differ: &Differ,
    writer: &mut DiffLogWriter<W>,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> Result<EventsSummary, EventsError> {
    let client = async_nats::connect(&config.nats_url)
        .await
        .map_err(|e| EventsError::Connect {
            url: config.nats_url.clone(),
            reason: e.to_string(),
        })?;
    let subscribe = |subject: &str| {
        let client = client.clone();
        let subject = subject.to_owned();
        async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| EventsError::Subscribe {
                    subject,
                    reason: e.to_string(),
                })
        }
    };
    let mut primary = subscribe(&config.primary_subject).await?;
    let mut candidate = subscribe(&config.candidate_subject).await?;
    // `flush` only empties our socket buffer. To know the server has
    // registered both subscriptions (tests publish right after `ready`),
    // send ourselves a message: the server handles one connection's
    // commands in order, so once it comes back the SUBs before it are live.
    let probe_subject = client.new_inbox();
    let probe_failed = |reason: String| EventsError::Subscribe {
        subject: config.primary_subject.clone(),
        reason,
    };
    let mut probe = subscribe(&probe_subject).await?;
    client
        .publish(probe_subject, Bytes::new())
        .await
        .map_err(|e| probe_failed(e.to_string()))?;
    tokio::time::timeout(Duration::from_secs(10), probe.next())
        .await
        .map_err(|_| {
            probe_failed("the server did not confirm the subscriptions within 10 s".to_owned())
        })?;
    drop(probe);
    ready();

    let mut events = EventDiffer::new(differ, config);
    let sweep_every = (config.window / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut sweep = tokio::time::interval(sweep_every);
    tokio::pin!(shutdown);
    loop {
        let (side, message) = tokio::select! {
            _ = &mut shutdown => break,
            Some(m) = primary.next() => (Side::Primary, m),
            Some(m) = candidate.next() => (Side::Candidate, m),
            _ = sweep.tick() => {
                for record in events.expire(Instant::now()) {
                    writer.write(record)?;
                }
                writer.flush()?;
                continue;
            }
        };
        let event = Event {
            headers: nats_headers(message.headers.as_ref()),
            payload: message.payload,
            received: Instant::now(),
        };
        if let Some(record) = events.offer(side, event) {
            writer.write(record)?;
            writer.flush()?;
            if config
                .max_pairs
                .is_some_and(|max| events.summary.pairs >= max)
            {
                break;
            }
        }
    }
    for record in events.expire(Instant::now()) {
        writer.write(record)?;
    }
    writer.flush().map_err(EventsError::from)?;
    Ok(events.finish())
}

fn nats_headers(headers: Option<&async_nats::HeaderMap>) -> HeaderMap {
    let mut out = HeaderMap::new();
    let Some(headers) = headers else {
        return out;
    };
    for (name, values) in headers.iter() {
        let Ok(name) = HeaderName::from_bytes(AsRef::<[u8]>::as_ref(name)) else {
            continue;
        };
        for value in values {
            if let Ok(value) = HeaderValue::from_str(value.as_str()) {
                out.append(name.clone(), value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: Instant) -> Event {
        Event {
            headers: HeaderMap::new(),
            payload: Bytes::new(),
            received: at,
        }
    }

    #[test]
    fn pairs_across_sides_and_drops_same_side_duplicates() {
        let now = Instant::now();
        let mut pairer = Pairer::new(Duration::from_secs(1), 10);
        assert!(matches!(
            pairer.offer(Side::Candidate, "a".into(), event(now)),
            Paired::Waiting
        ));
        assert!(matches!(
            pairer.offer(Side::Candidate, "a".into(), event(now)),
            Paired::Duplicate
        ));
        assert!(matches!(
            pairer.offer(Side::Primary, "a".into(), event(now)),
            Paired::Pair { .. }
        ));
        assert_eq!(pairer.pending(), 0);
        // The paired key's arrival entry does not expire anything later.
        assert!(pairer.expire(now + Duration::from_secs(5)).is_empty());
    }

    fn published(correlation_id: &str, message_id: &str, to: &str, at: Instant) -> Event {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-correlation-id",
            HeaderValue::from_str(correlation_id).unwrap(),
        );
        headers.insert("nats-msg-id", HeaderValue::from_str(message_id).unwrap());
        Event {
            headers,
            payload: Bytes::from(format!(r#"{{"id":"{message_id}","to":"{to}"}}"#)),
            received: at,
        }
    }

    #[test]
    fn a_bulk_requests_events_pair_by_position_and_a_redelivery_is_a_duplicate() {
        let rules = crate::Rules::compile(&crate::rules::RulesFile {
            version: 1,
            ..Default::default()
        })
        .unwrap();
        let differ = Differ::new(rules);
        let config = EventsConfig::default();
        let mut events = EventDiffer::new(&differ, &config);
        let now = Instant::now();
        // The legacy's three items, then the shadow's, one of them twice.
        for (i, to) in ["+1", "+2", "+3"].iter().enumerate() {
            assert!(
                events
                    .offer(
                        Side::Primary,
                        published("bulk-1", &format!("p{i}"), to, now)
                    )
                    .is_none()
            );
        }
        let mut records = Vec::new();
        for (id, to) in [("s0", "+1"), ("s1", "+2"), ("s1", "+2"), ("s2", "+3")] {
            records.extend(events.offer(Side::Candidate, published("bulk-1", id, to, now)));
        }
        assert_eq!(events.summary.pairs, 3);
        assert_eq!(events.summary.duplicates, 1);
        let keys: Vec<_> = records
            .iter()
            .map(|r| r.correlation_id.clone().unwrap())
            .collect();
        assert_eq!(keys, ["bulk-1", "bulk-1#1", "bulk-1#2"]);
        // Each item met its own twin: only the ids differ, never `/to`.
        for record in &records {
            let paths: Vec<_> = record.body.iter().map(|d| d.pointer.as_str()).collect();
            assert_eq!(paths, ["/id"], "{record:?}");
        }
        assert_eq!(events.finish().pending_at_exit, 0);
    }

    #[test]
    fn positions_are_forgotten_a_window_after_the_last_event() {
        let mut positions = Positions::default();
        let t0 = Instant::now();
        assert_eq!(positions.place(Side::Primary, "c", Some("a"), t0), Some(0));
        assert_eq!(positions.place(Side::Primary, "c", Some("b"), t0), Some(1));
        assert_eq!(positions.place(Side::Primary, "c", Some("a"), t0), None);
        assert_eq!(positions.place(Side::Candidate, "c", None, t0), Some(0));
        positions.expire(t0 + Duration::from_secs(2), Duration::from_secs(1), 10);
        assert!(positions.is_empty());
        for i in 0..100 {
            positions.place(
                Side::Primary,
                &format!("k{i}"),
                None,
                t0 + Duration::from_millis(i),
            );
        }
        positions.expire(t0, Duration::from_secs(3600), 10);
        assert_eq!(positions.len(), 10);
        assert_eq!(
            positions.place(Side::Primary, "k99", None, t0),
            Some(1),
            "the newest are kept"
        );
    }

    #[test]
    fn waiting_events_expire_after_the_window() {
        let now = Instant::now();
        let mut pairer = Pairer::new(Duration::from_secs(1), 10);
        pairer.offer(Side::Primary, "a".into(), event(now));
        pairer.offer(
            Side::Primary,
            "b".into(),
            event(now + Duration::from_millis(800)),
        );
        let expired = pairer.expire(now + Duration::from_millis(1200));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, "a");
        assert_eq!(pairer.pending(), 1);
    }

    #[test]
    fn memory_is_bounded_when_one_side_goes_quiet() {
        let now = Instant::now();
        let mut pairer = Pairer::new(Duration::from_secs(3600), 100);
        let mut expired = 0;
        for i in 0..10_000 {
            pairer.offer(Side::Primary, format!("k{i}"), event(now));
            expired += pairer.expire(now).len();
        }
        assert!(pairer.pending() <= 100);
        assert_eq!(expired + pairer.pending(), 10_000);
    }
}
