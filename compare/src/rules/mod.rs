//! Comparison rules: loaded from TOML, compiled once, then shared read-only by
//! every diff.
//!
//! Compilation turns every pattern (header globs, pointer patterns, regexes,
//! tolerances) into a ready-to-match form and merges `[defaults]` into each
//! route section, so that a diff does no parsing and no allocation to decide
//! which rule applies.

pub mod file;
mod header;
pub mod pointer;
mod route;
pub mod shape;

use std::borrow::Cow;
use std::path::Path;

use chrono::TimeDelta;
use regex::Regex;

use crate::diff::json::Json;
use crate::error::RulesError;
pub use file::RulesFile;
use file::{EnvelopeSideSpec, MatcherSpec, RuleSetSpec, ShapeSpec, ToleranceSpec};
pub use header::HeaderMatcher;
use pointer::{PathSeg, PointerPattern};
pub use route::RouteTemplate;
pub(crate) use route::event_method;

/// The rules shipped with the tool, covering the known api-gateway ↔
/// orchestrator differences.
pub const DEFAULT_RULES_TOML: &str = include_str!("../../rules/default.toml");

/// A compiled rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    routes: Vec<Route>,
    defaults: RuleSet,
    redact: file::RedactSpec,
}

#[derive(Debug, Clone)]
struct Route {
    template: RouteTemplate,
    rules: RuleSet,
}

/// The compiled rules that apply to one route.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleSet {
    pub ignore_headers: HeaderMatcher,
    pub ignore: Vec<PointerPattern>,
    pub sets: Vec<PointerPattern>,
    pub matchers: Vec<Matcher>,
    pub header_normalize: Vec<HeaderNormalizer>,
    pub status_classes: Vec<StatusClass>,
    pub envelope_classes: Vec<EnvelopeClass>,
    pub ignore_body: bool,
}

impl Rules {
    /// Rules that compare everything: no header or path is ignored.
    pub fn empty() -> Self {
        Self {
            routes: Vec::new(),
            defaults: RuleSet::default(),
            redact: file::RedactSpec::default(),
        }
    }

    /// The shipped `compare/rules/default.toml`.
    pub fn default_rules() -> Result<Self, RulesError> {
        Self::from_toml_str(DEFAULT_RULES_TOML)
    }

    /// Reads and compiles a rules file.
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parses and compiles rules from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RulesError::Parse(e.to_string()))?;
        Self::compile(&file)
    }

    /// Compiles an already-parsed rules file.
    pub fn compile(file: &RulesFile) -> Result<Self, RulesError> {
        if file.version != 1 {
            return Err(RulesError::Version(file.version));
        }
        let defaults = RuleSet::compile(&file.defaults, None)?;
        let mut routes = file
            .routes
            .iter()
            .map(|(template, spec)| {
                let inherited = spec.inherit.then_some(&file.defaults);
                Ok(Route {
                    template: RouteTemplate::parse(template)?,
                    rules: RuleSet::compile(spec, inherited)?,
                })
            })
            .collect::<Result<Vec<_>, RulesError>>()?;
        // Most specific first: literal segments beat `{params}`, so that
        // `GET /v1/sms/health` wins over `GET /v1/sms/{id}`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.template.specificity()));
        Ok(Self {
            routes,
            defaults,
            redact: file.redact.clone(),
        })
    }

    /// The route template and rules for a request. Requests no section
    /// names get the defaults and a template guessed from the path, with
    /// id-like segments replaced by `{id}`.
    pub(crate) fn route(&self, method: &http::Method, path: &str) -> (Cow<'_, str>, &RuleSet) {
        match self
            .routes
            .iter()
            .find(|r| r.template.matches(method, path))
        {
            Some(route) => (Cow::Borrowed(route.template.as_str()), &route.rules),
            None => (
                Cow::Owned(RouteTemplate::guess(method, path)),
                &self.defaults,
            ),
        }
    }

    /// The route template a request belongs to: the most specific section
    /// that matches, else one guessed from the path (id-like segments as
    /// `{id}`).
    pub fn route_template(&self, method: &http::Method, path: &str) -> String {
        self.route(method, path).0.into_owned()
    }

    /// The `[redact]` section, for building a [`crate::Redactor`].
    pub fn redact_spec(&self) -> &file::RedactSpec {
        &self.redact
    }
}

impl RuleSet {
    fn compile(spec: &RuleSetSpec, inherited: Option<&RuleSetSpec>) -> Result<Self, RulesError> {
        // Route-specific entries come first, so that a route's matcher wins
        // over a default one on the same path.
        let specs: Vec<&RuleSetSpec> = std::iter::once(spec).chain(inherited).collect();
        let all = |f: fn(&RuleSetSpec) -> &Vec<String>| -> Vec<&str> {
            specs
                .iter()
                .flat_map(|s| f(s).iter().map(String::as_str))
                .collect()
        };
        let pointers = |list: Vec<&str>| -> Result<Vec<PointerPattern>, RulesError> {
            list.into_iter().map(PointerPattern::parse).collect()
        };
        Ok(Self {
            ignore_headers: HeaderMatcher::new(all(|s| &s.ignore_headers))?,
            ignore: pointers(all(|s| &s.ignore))?,
            sets: pointers(all(|s| &s.sets))?,
            matchers: specs
                .iter()
                .flat_map(|s| s.matchers.iter())
                .map(Matcher::compile)
                .collect::<Result<_, _>>()?,
            header_normalize: specs
                .iter()
                .flat_map(|s| s.header_normalize.iter())
                .map(HeaderNormalizer::compile)
                .collect::<Result<_, _>>()?,
            status_classes: specs
                .iter()
                .flat_map(|s| s.status_class.iter())
                .map(|c| StatusClass {
                    name: c.name.clone(),
                    primary: c.primary.clone(),
                    candidate: c.candidate.clone(),
                })
                .collect(),
            envelope_classes: specs
                .iter()
                .flat_map(|s| s.envelope_class.iter())
                .map(|c| {
                    Ok(EnvelopeClass {
                        name: c.name.clone(),
                        primary: EnvelopeSide::compile(&c.primary)?,
                        candidate: EnvelopeSide::compile(&c.candidate)?,
                    })
                })
                .collect::<Result<_, RulesError>>()?,
            ignore_body: specs.iter().any(|s| s.ignore_body),
        })
    }

    /// Whether some envelope class admits this status pair, i.e. whether
    /// the bodies must be parsed to check it.
    pub fn envelope_may_apply(&self, primary: u16, candidate: u16) -> bool {
        self.envelope_classes
            .iter()
            .any(|c| c.primary.admits_status(primary) && c.candidate.admits_status(candidate))
    }

    pub fn is_ignored(&self, path: &[PathSeg<'_>]) -> bool {
        self.ignore.iter().any(|p| p.covers(path))
    }

    pub fn is_set(&self, path: &[PathSeg<'_>]) -> bool {
        self.sets.iter().any(|p| p.matches(path))
    }

    /// The first matcher on `path` that accepts both values, by label.
    pub fn noise_for(
        &self,
        path: &[PathSeg<'_>],
        primary: &Json<'_>,
        candidate: &Json<'_>,
    ) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.pointer.matches(path) && m.accepts(primary, candidate))
            .map(|m| m.label.as_str())
    }
}

/// A compiled `[[match]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pointer: PointerPattern,
    kind: MatchKind,
    /// Shown in diff records as the reason a difference is noise.
    label: String,
}

#[derive(Debug, Clone)]
enum MatchKind {
    Id,
    Uuid,
    Ulid,
    ObjectId,
    Timestamp(TimeDelta),
    Number { absolute: f64, relative: f64 },
    Pattern(Regex),
    Present,
}

impl Matcher {
    fn compile(spec: &MatcherSpec) -> Result<Self, RulesError> {
        let pointer = PointerPattern::parse(&spec.pointer)?;
        let bad = |reason: &str| RulesError::Matcher {
            pointer: spec.pointer.clone(),
            reason: reason.to_owned(),
        };
        let (kind, label) = match spec.shape {
            ShapeSpec::Id => (MatchKind::Id, "shape:id".to_owned()),
            ShapeSpec::Uuid => (MatchKind::Uuid, "shape:uuid".to_owned()),
            ShapeSpec::Ulid => (MatchKind::Ulid, "shape:ulid".to_owned()),
            ShapeSpec::ObjectId => (MatchKind::ObjectId, "shape:object-id".to_owned()),
            ShapeSpec::Present => (MatchKind::Present, "shape:present".to_owned()),
            ShapeSpec::Timestamp => {
                let tolerance = match &spec.tolerance {
                    None => TimeDelta::seconds(5),
                    Some(ToleranceSpec::Text(text)) => parse_duration(text)?,
                    Some(ToleranceSpec::Number(secs)) => seconds(*secs, &secs.to_string())?,
                };
                let label = format!("timestamp±{}ms", tolerance.num_milliseconds());
                (MatchKind::Timestamp(tolerance), label)
            }
            ShapeSpec::Number => {
                let absolute = match &spec.tolerance {
                    None => 0.0,
                    Some(ToleranceSpec::Number(n)) if *n >= 0.0 && n.is_finite() => *n,
                    Some(_) => return Err(bad("number tolerance must be a non-negative number")),
                };
                let relative = spec.relative.unwrap_or(0.0);
                if !(relative >= 0.0 && relative.is_finite()) {
                    return Err(bad("relative must be a non-negative number"));
                }
                let label = format!("number±{absolute}/{relative}");
                (MatchKind::Number { absolute, relative }, label)
            }
            ShapeSpec::Pattern => {
                let pattern = spec
                    .pattern
                    .as_deref()
                    .ok_or_else(|| bad("shape \"pattern\" needs `pattern`"))?;
                let regex = Regex::new(pattern).map_err(|e| RulesError::Regex {
                    pattern: pattern.to_owned(),
                    reason: e.to_string(),
                })?;
                (MatchKind::Pattern(regex), "shape:pattern".to_owned())
            }
        };
        Ok(Self {
            pointer,
            kind,
            label,
        })
    }

    fn accepts(&self, p: &Json<'_>, c: &Json<'_>) -> bool {
        let both_str = |f: fn(&str) -> bool| match (p.as_str(), c.as_str()) {
            (Some(a), Some(b)) => f(a) && f(b),
            _ => false,
        };
        match &self.kind {
            MatchKind::Id => both_str(shape::is_id_like),
            MatchKind::Uuid => both_str(shape::is_uuid),
            MatchKind::Ulid => both_str(shape::is_ulid),
            MatchKind::ObjectId => both_str(shape::is_object_id),
            MatchKind::Present => true,
            MatchKind::Pattern(re) => match (p.as_str(), c.as_str()) {
                (Some(a), Some(b)) => re.is_match(a) && re.is_match(b),
                _ => false,
            },
            MatchKind::Timestamp(tolerance) => match (p.as_str(), c.as_str()) {
                (Some(a), Some(b)) => {
                    match (shape::parse_timestamp(a), shape::parse_timestamp(b)) {
                        (Some(a), Some(b)) => (a - b).abs() <= *tolerance,
                        _ => false,
                    }
                }
                _ => false,
            },
            MatchKind::Number { absolute, relative } => match (p.as_f64(), c.as_f64()) {
                (Some(a), Some(b)) => {
                    let diff = (a - b).abs();
                    diff <= *absolute || diff <= relative * a.abs().max(b.abs())
                }
                _ => false,
            },
        }
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<TimeDelta, RulesError> {
    let t = text.trim();
    let (number, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| RulesError::Tolerance {
        value: text.to_owned(),
        reason: "expected a duration such as 250ms, 5s, 2m or 1h".to_owned(),
    })?;
    seconds(value * unit_secs, text)
}

fn seconds(secs: f64, text: &str) -> Result<TimeDelta, RulesError> {
    if !(secs.is_finite() && (0.0..=86_400.0 * 365.0).contains(&secs)) {
        return Err(RulesError::Tolerance {
            value: text.to_owned(),
            reason: "must be between 0 and one year".to_owned(),
        });
    }
    Ok(TimeDelta::milliseconds((secs * 1000.0).round() as i64))
}

/// A compiled `[[header_normalize]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct HeaderNormalizer {
    pub header: HeaderMatcher,
    ids: bool,
    lowercase: bool,
    strip_params: bool,
    replace: Option<(Regex, String)>,
}

impl HeaderNormalizer {
    fn compile(spec: &file::HeaderNormalizeSpec) -> Result<Self, RulesError> {
        let replace = spec
            .replace
            .as_ref()
            .map(|r| {
                Regex::new(&r.pattern)
                    .map(|re| (re, r.with.clone()))
                    .map_err(|e| RulesError::Regex {
                        pattern: r.pattern.clone(),
                        reason: e.to_string(),
                    })
            })
            .transpose()?;
        Ok(Self {
            header: HeaderMatcher::new(vec![spec.header.as_str()])?,
            ids: spec.ids,
            lowercase: spec.lowercase,
            strip_params: spec.strip_params,
            replace,
        })
    }

    pub fn normalise<'v>(&self, value: &'v str) -> Cow<'v, str> {
        let mut out = Cow::Borrowed(value);
        if self.strip_params
            && let Some((head, _)) = out.split_once(';')
        {
            out = Cow::Owned(head.trim_end().to_owned());
        }
        if self.lowercase && out.bytes().any(|b| b.is_ascii_uppercase()) {
            out = Cow::Owned(out.to_ascii_lowercase());
        }
        if self.ids && out.split(['/', '?', '#']).any(shape::is_path_id) {
            out = Cow::Owned(replace_path_ids(&out));
        }
        if let Some((re, with)) = &self.replace
            && re.is_match(&out)
        {
            out = Cow::Owned(re.replace_all(&out, with.as_str()).into_owned());
        }
        out
    }
}

/// Replaces id-like segments of a path or URL with `{id}`.
pub(crate) fn replace_path_ids(value: &str) -> String {
    let (path, tail) = match value.find(['?', '#']) {
        Some(i) => value.split_at(i),
        None => (value, ""),
    };
    let mut out: String = path
        .split('/')
        .map(|seg| if shape::is_path_id(seg) { "{id}" } else { seg })
        .collect::<Vec<_>>()
        .join("/");
    out.push_str(tail);
    out
}

#[derive(Debug, Clone)]
pub(crate) struct StatusClass {
    pub name: String,
    pub primary: Vec<u16>,
    pub candidate: Vec<u16>,
}

impl StatusClass {
    pub fn admits(&self, primary: u16, candidate: u16) -> bool {
        self.primary.contains(&primary) && self.candidate.contains(&candidate)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct EnvelopeClass {
    pub name: String,
    pub primary: EnvelopeSide,
    pub candidate: EnvelopeSide,
}

#[derive(Debug, Clone)]
pub(crate) struct EnvelopeSide {
    status: Vec<u16>,
    content_type: Option<String>,
    require: Vec<String>,
    status_pointer: Option<String>,
}

impl EnvelopeSide {
    fn compile(spec: &EnvelopeSideSpec) -> Result<Self, RulesError> {
        for pointer in spec.require.iter().chain(spec.status_pointer.iter()) {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(RulesError::Pointer {
                    pattern: pointer.clone(),
                    reason: "must start with '/'".to_owned(),
                });
            }
        }
        Ok(Self {
            status: spec.status.clone(),
            content_type: spec.content_type.as_ref().map(|c| c.to_ascii_lowercase()),
            require: spec.require.clone(),
            status_pointer: spec.status_pointer.clone(),
        })
    }

    /// The effective status when this response fits the envelope.
    /// Whether `status` is one this side admits (cheap pre-check).
    pub fn admits_status(&self, status: u16) -> bool {
        self.status.is_empty() || self.status.contains(&status)
    }

    pub fn effective_status(
        &self,
        status: u16,
        content_type: &str,
        body: Option<&Json<'_>>,
    ) -> Option<u16> {
        if !self.status.is_empty() && !self.status.contains(&status) {
            return None;
        }
        if let Some(expected) = &self.content_type
            && !content_type
                .trim_start()
                .to_ascii_lowercase()
                .starts_with(expected.as_str())
        {
            return None;
        }
        if !self.require.is_empty() {
            let body = body?;
            if !self.require.iter().all(|p| body.pointer(p).is_some()) {
                return None;
            }
        }
        match &self.status_pointer {
            None => Some(status),
            Some(pointer) => {
                let value = body?.pointer(pointer)?;
                value
                    .as_u64()
                    .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                    .and_then(|s| u16::try_from(s).ok())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(TimeDelta::milliseconds(250))
        );
        assert_eq!(parse_duration("5s").ok(), Some(TimeDelta::seconds(5)));
        assert_eq!(parse_duration("2m").ok(), Some(TimeDelta::seconds(120)));
        assert_eq!(parse_duration("3").ok(), Some(TimeDelta::seconds(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_shipped_default_rules_compile() {
        let rules = Rules::default_rules().expect("default.toml compiles");
        let (template, _) = rules.route(
            &http::Method::GET,
            "/v1/sms/0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a",
        );
        assert_eq!(template, "GET /v1/sms/{id}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Rules::from_toml_str("[defaults]\nignore_header = [\"Date\"]\n");
        assert!(matches!(err, Err(RulesError::Parse(_))));
    }

    #[test]
    fn unknown_routes_get_a_guessed_template() {
        let rules = Rules::empty();
        assert_eq!(
            rules.route_template(
                &http::Method::DELETE,
                "/v1/things/507f1f77bcf86cd799439011?x=1"
            ),
            "DELETE /v1/things/{id}"
        );
    }

    #[test]
    fn location_normalisation_replaces_ids() {
        let n = HeaderNormalizer::compile(&file::HeaderNormalizeSpec {
            header: "Location".into(),
            ids: true,
            lowercase: false,
            strip_params: false,
            replace: None,
        })
        .expect("compiles");
        assert_eq!(
            n.normalise("/v1/sms/507f1f77bcf86cd799439011"),
            "/v1/sms/{id}"
        );
        assert_eq!(
            n.normalise("https://api.example/v1/sms/0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a"),
            "https://api.example/v1/sms/{id}"
        );
    }
}
