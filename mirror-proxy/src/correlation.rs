//! Id correlation: the legacy gateway and the orchestrator mint different
//! message ids, so a mirrored `GET /v1/sms/{legacy id}` would always be a
//! 404 on the shadow. The proxy learns `primary id → shadow id` from the
//! send and bulk answers and rewrites the mirrored GET to the shadow's id.
//! For the same reason a conditional read (`If-None-Match: <legacy ETag>`)
//! would never be fresh on the shadow, whose body holds its own id: the
//! proxy learns `primary ETag → shadow ETag` from status reads both
//! answered (a second map, same limits) and rewrites the copy's
//! `If-None-Match`. Status reads are recognised as Express routed them:
//! `/v1/sms/` in any case, one optional trailing slash.
//!
//! The map is bounded (oldest pairs go first) and every pair expires after
//! its TTL. It lives behind a std `Mutex`: every operation is a hash lookup
//! or insert, never held across an await. A primary id learned again (an
//! idempotent replay answers with the same id) leaves a superseded entry in
//! the eviction queue; the queue is compacted when those outnumber the
//! pairs (plus 64), so it stays within twice the pairs plus 64 entries
//! (amortised O(1) per insert).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;

#[derive(Debug)]
pub struct IdMap {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    pairs: HashMap<String, (String, Instant)>,
    /// Insertion order, for eviction: (primary id, inserted at).
    order: VecDeque<(String, Instant)>,
    ttl: Duration,
    capacity: usize,
}

impl IdMap {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                pairs: HashMap::new(),
                order: VecDeque::new(),
                ttl,
                capacity: capacity.max(1),
            }),
        }
    }

    /// Applies reloaded limits (the pairs are kept).
    pub fn configure(&self, ttl: Duration, capacity: usize) {
        let mut inner = self.lock();
        inner.ttl = ttl;
        inner.capacity = capacity.max(1);
        inner.evict(Instant::now());
    }

    pub fn insert(&self, primary: String, shadow: String) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.order.push_back((primary.clone(), now));
        inner.pairs.insert(primary, (shadow, now));
        inner.evict(now);
    }

    /// The shadow id paired with a primary id, if learned and not expired.
    pub fn get(&self, primary: &str) -> Option<String> {
        let inner = self.lock();
        inner
            .pairs
            .get(primary)
            .filter(|(_, at)| at.elapsed() < inner.ttl)
            .map(|(shadow, _)| shadow.clone())
    }

    pub fn len(&self) -> usize {
        self.lock().pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every
        // operation completes its mutation before it can panic), so poison
        // is ignored rather than spread to every request.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn evict(&mut self, now: Instant) {
        while let Some((id, at)) = self.order.front() {
            let expired = now.duration_since(*at) >= self.ttl;
            if !expired && self.pairs.len() <= self.capacity {
                break;
            }
            // Remove the pair only if this queue entry is its latest insert.
            if self.pairs.get(id).is_some_and(|(_, t)| t == at) {
                self.pairs.remove(id);
            }
            self.order.pop_front();
        }
        if self.order.len() > 2 * self.pairs.len() + 64 {
            // Keep only each pair's latest entry (the one `evict` honours).
            let pairs = &self.pairs;
            self.order
                .retain(|(id, at)| pairs.get(id).is_some_and(|(_, t)| t == at));
        }
    }
}

/// `/v1/sms/`, the prefix of a status read (matched in any case).
const STATUS_PREFIX: &str = "/v1/sms/";

/// The id in `GET /v1/sms/{id}`, if this is a status read, as Express
/// routes it: the prefix in any case, one optional trailing slash.
pub fn status_read_id<'p>(method: &Method, path: &'p str) -> Option<&'p str> {
    if *method != Method::GET && *method != Method::HEAD {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_suffix('/').unwrap_or(path);
    if !path
        .get(..STATUS_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(STATUS_PREFIX))
    {
        return None;
    }
    let id = &path[STATUS_PREFIX.len()..];
    (!id.is_empty()
        && !id.contains('/')
        && !id.eq_ignore_ascii_case("send")
        && !id.eq_ignore_ascii_case("bulk"))
    .then_some(id)
}

/// `path` (a status read of `id`) with the id replaced by `shadow_id`; the
/// prefix as the client wrote it, a trailing slash and the query kept.
pub fn rewrite_status_path(path: &str, id: &str, shadow_id: &str) -> String {
    let start = STATUS_PREFIX.len();
    format!("{}{shadow_id}{}", &path[..start], &path[start + id.len()..])
}

/// `If-None-Match` with each entity tag the primary issued replaced by the
/// shadow's for the same read (`*` stays); `None` when one of them was
/// never learned (the copy would compare a 304 with a 200 for nothing).
pub fn rewrite_if_none_match(value: &str, etags: &IdMap) -> Option<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(|tag| {
            if tag == "*" {
                Some(tag.to_owned())
            } else {
                etags.get(tag)
            }
        })
        .collect::<Option<Vec<_>>>()
        .map(|tags| tags.join(", "))
}

/// Pairs of (primary id, shadow id) in a send or bulk answer pair.
pub fn learned_pairs(route: &str, primary: &[u8], shadow: &[u8]) -> Vec<(String, String)> {
    let (Ok(p), Ok(s)) = (
        serde_json::from_slice::<Value>(primary),
        serde_json::from_slice::<Value>(shadow),
    ) else {
        return Vec::new();
    };
    let id = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_owned);
    match route {
        "POST /v1/sms/send" => id(&p).zip(id(&s)).into_iter().collect(),
        "POST /v1/sms/bulk" => {
            // Items are paired by their `index` (both systems report one
            // result per input item), falling back to array position.
            let results = |v: &Value| -> Vec<(u64, String)> {
                v.get("results")
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .enumerate()
                            .filter_map(|(pos, item)| {
                                let index = item
                                    .get("index")
                                    .and_then(Value::as_u64)
                                    .unwrap_or(pos as u64);
                                id(item).map(|id| (index, id))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let shadow: HashMap<u64, String> = results(&s).into_iter().collect();
            results(&p)
                .into_iter()
                .filter_map(|(index, pid)| shadow.get(&index).map(|sid| (pid, sid.clone())))
                .collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_are_recognised_and_rewritten() {
        assert_eq!(status_read_id(&Method::GET, "/v1/sms/abc?x=1"), Some("abc"));
        assert_eq!(status_read_id(&Method::GET, "/v1/sms/send"), None);
        assert_eq!(status_read_id(&Method::POST, "/v1/sms/abc"), None);
        assert_eq!(
            rewrite_status_path("/v1/sms/abc?x=1", "abc", "u-1"),
            "/v1/sms/u-1?x=1"
        );
        // As Express routes them: any case, one trailing slash.
        assert_eq!(status_read_id(&Method::GET, "/V1/SMS/abc/"), Some("abc"));
        assert_eq!(status_read_id(&Method::GET, "/v1/sms/abc//"), None);
        assert_eq!(status_read_id(&Method::GET, "/v1/sms/Send/"), None);
        assert_eq!(
            rewrite_status_path("/V1/Sms/abc/?x=1", "abc", "u-1"),
            "/V1/Sms/u-1/?x=1"
        );
    }

    #[test]
    fn if_none_match_is_rewritten_only_when_every_tag_is_known() {
        let etags = IdMap::new(Duration::from_secs(60), 10);
        etags.insert(r#"W/"1a-p""#.into(), r#"W/"1a-s""#.into());
        assert_eq!(
            rewrite_if_none_match(r#"W/"1a-p""#, &etags).as_deref(),
            Some(r#"W/"1a-s""#)
        );
        assert_eq!(rewrite_if_none_match("*", &etags).as_deref(), Some("*"));
        assert_eq!(
            rewrite_if_none_match(r#"W/"1a-p", "x""#, &etags),
            None,
            "an unknown tag: not translatable"
        );
    }

    #[test]
    fn send_and_bulk_answers_teach_pairs() {
        let pairs = learned_pairs("POST /v1/sms/send", br#"{"id":"p1"}"#, br#"{"id":"s1"}"#);
        assert_eq!(pairs, vec![("p1".to_owned(), "s1".to_owned())]);
        let pairs = learned_pairs(
            "POST /v1/sms/bulk",
            br#"{"results":[{"index":0,"id":"p0"},{"index":1,"error":{}},{"index":2,"id":"p2"}]}"#,
            br#"{"results":[{"index":2,"id":"s2"},{"index":0,"id":"s0"}]}"#,
        );
        assert_eq!(
            pairs,
            vec![
                ("p0".to_owned(), "s0".to_owned()),
                ("p2".to_owned(), "s2".to_owned())
            ]
        );
    }

    #[test]
    fn the_map_is_bounded_and_pairs_expire() {
        let map = IdMap::new(Duration::from_secs(60), 2);
        map.insert("a".into(), "1".into());
        map.insert("b".into(), "2".into());
        map.insert("c".into(), "3".into());
        assert_eq!(map.len(), 2);
        assert_eq!(map.get("a"), None);
        assert_eq!(map.get("c").as_deref(), Some("3"));
        let map = IdMap::new(Duration::ZERO, 10);
        map.insert("a".into(), "1".into());
        assert_eq!(map.get("a"), None);
    }

    #[test]
    fn learning_the_same_id_again_does_not_grow_the_queue() {
        let map = IdMap::new(Duration::from_secs(60), 4);
        map.insert("old".into(), "0".into());
        for i in 0..1000 {
            map.insert("replayed".into(), i.to_string());
        }
        let inner = map.lock();
        assert!(
            inner.order.len() <= 2 * 2 + 64,
            "queue of {}",
            inner.order.len()
        );
        drop(inner);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get("old").as_deref(), Some("0"));
        assert_eq!(map.get("replayed").as_deref(), Some("999"));
        for id in ["b", "c", "d"] {
            map.insert(id.into(), "x".into());
        }
        // Capacity 4: the oldest pair goes first, the replayed one stays.
        assert_eq!(map.get("old"), None);
        assert_eq!(map.get("replayed").as_deref(), Some("999"));
    }
}
