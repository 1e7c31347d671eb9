//! Sampling: which requests get a shadow copy.
//!
//! A percentage per route (route templates as in the rules,
//! `"POST /v1/sms/send"`), a default for the rest. With `hash_header` set
//! the decision is a function of that header's value (FNV-1a, 64 bit, the
//! hash GoReplay uses for the same purpose), so a replay, or a second proxy
//! in another region, picks the same requests; requests without the header
//! fall back to a random draw.

use compare::rules::RouteTemplate;
use http::{HeaderMap, HeaderName, Method};

use crate::config::SamplingFile;

/// Routes always given their own metric label, whether or not sampling
/// names them.
const KNOWN_ROUTES: &[&str] = &["POST /v1/sms/send", "POST /v1/sms/bulk", "GET /v1/sms/{id}"];

/// Label for requests on no known route.
pub const OTHER_ROUTE: &str = "other";

/// Resolution of the percentages: one part in a million.
const SCALE: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct Sampler {
    default: u64,
    /// Most specific first, like compare's rules.
    routes: Vec<(RouteTemplate, u64)>,
    hash_header: Option<HeaderName>,
}

/// The route a request belongs to and its share.
#[derive(Debug, Clone)]
pub struct RouteShare {
    pub route: String,
    threshold: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    #[error("sampling route {0:?}: {1}")]
    Route(String, String),
    #[error("sampling hash_header {0:?} is not a header name")]
    Header(String),
}

fn threshold(percent: f64) -> u64 {
    // Config checked 0..=100; the cast is exact for these magnitudes.
    (percent.clamp(0.0, 100.0) / 100.0 * SCALE as f64).round() as u64
}

impl Sampler {
    pub fn new(file: &SamplingFile) -> Result<Self, SamplingError> {
        let default = threshold(file.percent.unwrap_or(100.0));
        let mut routes = Vec::new();
        for (template, percent) in &file.routes {
            let parsed = RouteTemplate::parse(template)
                .map_err(|e| SamplingError::Route(template.clone(), e.to_string()))?;
            routes.push((parsed, threshold(*percent)));
        }
        for known in KNOWN_ROUTES {
            if !file.routes.contains_key(*known) {
                let parsed = RouteTemplate::parse(known)
                    .map_err(|e| SamplingError::Route((*known).to_owned(), e.to_string()))?;
                routes.push((parsed, default));
            }
        }
        routes.sort_by_key(|(t, _)| std::cmp::Reverse(t.specificity()));
        let hash_header = file
            .hash_header
            .as_deref()
            .map(|h| {
                HeaderName::from_bytes(h.trim().as_bytes())
                    .map_err(|_| SamplingError::Header(h.to_owned()))
            })
            .transpose()?;
        Ok(Self {
            default,
            routes,
            hash_header,
        })
    }

    /// The route label and share of a request.
    pub fn route(&self, method: &Method, path: &str) -> RouteShare {
        let path = path.split(['?', '#']).next().unwrap_or("");
        match self.routes.iter().find(|(t, _)| t.matches(method, path)) {
            Some((template, threshold)) => RouteShare {
                route: template.as_str().to_owned(),
                threshold: *threshold,
            },
            None => RouteShare {
                route: OTHER_ROUTE.to_owned(),
                threshold: self.default,
            },
        }
    }

    /// Whether this request gets a copy.
    pub fn selects(&self, share: &RouteShare, headers: &HeaderMap) -> bool {
        if share.threshold == 0 {
            return false;
        }
        if share.threshold >= SCALE {
            return true;
        }
        let draw = self
            .hash_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .map(|value| fnv1a(value.as_bytes()) % SCALE)
            .unwrap_or_else(|| rand::random::<u64>() % SCALE);
        draw < share.threshold
    }
}

/// FNV-1a, 64 bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(percent: f64, routes: &[(&str, f64)], hash: Option<&str>) -> Sampler {
        Sampler::new(&SamplingFile {
            percent: Some(percent),
            hash_header: hash.map(str::to_owned),
            routes: routes.iter().map(|(r, p)| ((*r).to_owned(), *p)).collect(),
        })
        .unwrap()
    }

    #[test]
    fn routes_get_their_own_share_and_label() {
        let s = sampler(10.0, &[("GET /v1/sms/{id}", 0.0)], None);
        let get = s.route(&Method::GET, "/v1/sms/abc?x=1");
        assert_eq!(get.route, "GET /v1/sms/{id}");
        assert!(!s.selects(&get, &HeaderMap::new()));
        assert_eq!(
            s.route(&Method::POST, "/v1/sms/send").route,
            "POST /v1/sms/send"
        );
        assert_eq!(s.route(&Method::GET, "/other/thing").route, OTHER_ROUTE);
    }

    #[test]
    fn hashing_on_a_header_is_deterministic_and_near_the_share() {
        let s = sampler(10.0, &[], Some("x-request-id"));
        let share = s.route(&Method::POST, "/v1/sms/send");
        let mut picked = 0;
        for i in 0..20_000 {
            let mut h = HeaderMap::new();
            h.insert("x-request-id", format!("req-{i}").parse().unwrap());
            let first = s.selects(&share, &h);
            assert_eq!(first, s.selects(&share, &h));
            picked += usize::from(first);
        }
        // 10 % of 20 000 = 2000, sd ≈ 42.
        assert!((1800..=2200).contains(&picked), "picked {picked}");
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
