//! Route templates: `POST /v1/sms/send`, `GET /v1/sms/{id}`,
//! `event sms.outbound.request`, `* /health`.

use http::Method;

use super::shape;
use crate::error::RulesError;
use crate::exchange::EVENT_METHOD;

#[derive(Debug, Clone)]
enum Seg {
    Literal(String),
    Param,
}

/// A compiled route template.
#[derive(Debug, Clone)]
pub struct RouteTemplate {
    source: String,
    /// `None` matches any method (`*`).
    method: Option<Method>,
    segs: Vec<Seg>,
}

impl RouteTemplate {
    /// Parses `METHOD /path/{param}`; `event NAME` is the route of a NATS
    /// event and `*` matches any method.
    pub fn parse(template: &str) -> Result<Self, RulesError> {
        let bad = |reason: &str| RulesError::Route {
            template: template.to_owned(),
            reason: reason.to_owned(),
        };
        let (method, path) = template
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("expected 'METHOD /path'"))?;
        let path = path.trim();
        let method = match method {
            "*" => None,
            m if m.eq_ignore_ascii_case("event") => Some(event_method()),
            m => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| bad("invalid method"))?,
            ),
        };
        let is_event = method.as_ref().is_some_and(|m| m.as_str() == EVENT_METHOD);
        if !is_event && !path.starts_with('/') {
            return Err(bad("path must start with '/'"));
        }
        let segs = path
            .split('/')
            .map(|s| {
                if s.starts_with('{') && s.ends_with('}') && s.len() > 2 {
                    Seg::Param
                } else {
                    Seg::Literal(s.to_owned())
                }
            })
            .collect();
        Ok(Self {
            source: template.trim().to_owned(),
            method,
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Higher is more specific: literal segments first, then having a method.
    pub fn specificity(&self) -> (usize, bool) {
        let literals = self
            .segs
            .iter()
            .filter(|s| matches!(s, Seg::Literal(_)))
            .count();
        (literals, self.method.is_some())
    }

    /// Whether a request falls on this route, as the legacy's router
    /// (Express, `caseSensitive: false`, `strict: false`) decided it:
    /// literal segments in any letter case, one optional trailing slash. A
    /// request the legacy served as a send is grouped, labelled and ruled as
    /// a send here too.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        let mut parts = path.split('/');
        for seg in &self.segs {
            match (seg, parts.next()) {
                (_, None) => return false,
                (Seg::Param, Some(part)) => {
                    if part.is_empty() {
                        return false;
                    }
                }
                (Seg::Literal(lit), Some(part)) => {
                    if !lit.eq_ignore_ascii_case(part) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// A template for a request that no rules section names: the method and
    /// the path with id-like segments replaced by `{id}` and the query
    /// dropped, so that such requests still group sensibly in reports.
    pub fn guess(method: &Method, path: &str) -> String {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let method = if method.as_str() == EVENT_METHOD {
            "event"
        } else {
            method.as_str()
        };
        let mut out = String::with_capacity(method.len() + path.len() + 1);
        out.push_str(method);
        out.push(' ');
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(if shape::is_path_id(seg) { "{id}" } else { seg });
        }
        out
    }
}

pub(crate) fn event_method() -> Method {
    // A constant, valid token: from_bytes cannot fail on it.
    Method::from_bytes(EVENT_METHOD.as_bytes()).unwrap_or(Method::GET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_params_and_literals() {
        let t = RouteTemplate::parse("GET /v1/sms/{id}").expect("valid");
        assert!(t.matches(&Method::GET, "/v1/sms/abc?x=1"));
        assert!(!t.matches(&Method::GET, "/v1/sms/abc/def"));
        assert!(!t.matches(&Method::GET, "/v1/sms/"));
        assert!(!t.matches(&Method::POST, "/v1/sms/abc"));
    }

    #[test]
    fn routes_match_as_express_routed_them() {
        let send = RouteTemplate::parse("POST /v1/sms/send").expect("valid");
        assert!(send.matches(&Method::POST, "/V1/SMS/Send/"));
        assert!(send.matches(&Method::POST, "/v1/sms/send/?x=1"));
        assert!(!send.matches(&Method::POST, "/v1/sms/send//"));
        assert!(!send.matches(&Method::POST, "/v1/sms/sendx"));
        let read = RouteTemplate::parse("GET /v1/sms/{id}").expect("valid");
        assert!(read.matches(&Method::GET, "/V1/sms/abc/"));
        assert!(!read.matches(&Method::GET, "/v1/sms//"));
    }

    #[test]
    fn event_routes_use_the_event_method() {
        let t = RouteTemplate::parse("event sms.outbound.request").expect("valid");
        assert!(t.matches(&event_method(), "sms.outbound.request"));
        assert!(!t.matches(&Method::POST, "sms.outbound.request"));
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(RouteTemplate::parse("/v1/sms").is_err());
        assert!(RouteTemplate::parse("GET v1/sms").is_err());
    }
}
