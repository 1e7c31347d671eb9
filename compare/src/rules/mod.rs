//! Comparison rules: loaded from TOML, compiled once, then shared read-only by
//! every diff.
//!
//! Compilation turns every pattern (header globs, pointer patterns, regexes,
//! tolerances) into a ready-to-match form and merges `[defaults]` into each
//! route section, so that a diff does no parsing and no allocation to decide
//! which rule applies.
//!
//! A rule explains a difference in one of two ways ([`Explanation`]):
//! - **value noise**: values that differ between any two correct runs of
//!   the same system (generated ids of the same format, timestamps of the
//!   same layout within a tolerance, per-response header values);
//! - **accepted contract change**: a difference a client could notice that
//!   an operator knowingly accepts (status classes, envelope classes,
//!   `Content-Type` normalisation, ids or timestamps of another format).
//!   Reports list these apart and the gate refuses them unless the run
//!   acknowledges each one.
//!
//! Every compiled rule knows where it was written (`[defaults] match
//! /**/created_at`), so a diff record can say which rule explained what.

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

/// The rules shipped with the tool: value noise only (see the file's
/// comments for each entry).
pub const DEFAULT_RULES_TOML: &str = include_str!("../../rules/default.toml");

/// Why a difference does not count as unexplained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Explanation {
    /// Short label: `shape:id`, `timestamp±5000ms` for noise;
    /// `status-class:send-accepted`, `format-change:/id` for a contract
    /// change (the name the gate's acknowledgement uses).
    pub label: String,
    /// The rule entry: `[defaults] match /**/created_at`.
    pub rule: String,
    /// An accepted contract change rather than value noise.
    pub change: bool,
}

impl Explanation {
    fn noise(label: impl Into<String>, rule: &str) -> Self {
        Self {
            label: label.into(),
            rule: rule.to_owned(),
            change: false,
        }
    }

    fn change(label: impl Into<String>, rule: &str) -> Self {
        Self {
            label: label.into(),
            rule: rule.to_owned(),
            change: true,
        }
    }

    /// Bodies not compared on a route with `ignore_body = true`.
    pub fn ignore_body(rule: &str) -> Self {
        Self::noise("ignore-body", rule)
    }
}

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
    pub ignore: Vec<IgnoreRule>,
    pub sets: Vec<PointerPattern>,
    pub matchers: Vec<Matcher>,
    pub header_normalize: Vec<HeaderNormalizer>,
    pub status_classes: Vec<StatusClass>,
    pub envelope_classes: Vec<EnvelopeClass>,
    /// Where `ignore_body = true` was set, if anywhere.
    pub ignore_body: Option<String>,
}

/// A compiled `ignore` entry: differences at or below it are recorded as
/// noise (so reports show what was ignored), not compared further.
#[derive(Debug, Clone)]
pub(crate) struct IgnoreRule {
    pattern: PointerPattern,
    pub rule: String,
}

impl IgnoreRule {
    pub fn explanation(&self) -> Explanation {
        Explanation::noise("ignore", &self.rule)
    }
}

/// `[defaults]` or `[routes."POST /v1/sms/send"]`: where a rule was written.
fn section_name(route: Option<&str>) -> String {
    match route {
        None => "[defaults]".to_owned(),
        Some(template) => format!("[routes.{template:?}]"),
    }
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
        let defaults = RuleSet::compile(&[(&file.defaults, section_name(None))])?;
        let mut routes = file
            .routes
            .iter()
            .map(|(template, spec)| {
                let mut specs = vec![(spec, section_name(Some(template)))];
                if spec.inherit {
                    specs.push((&file.defaults, section_name(None)));
                }
                Ok(Route {
                    template: RouteTemplate::parse(template)?,
                    rules: RuleSet::compile(&specs)?,
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

    /// Every contract change these rules can accept, as `(label, rule)`:
    /// the labels a gate over their diff logs will ask to acknowledge.
    /// Empty for the shipped defaults.
    pub fn contract_changes(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let sets = std::iter::once(&self.defaults).chain(self.routes.iter().map(|r| &r.rules));
        for set in sets {
            let mut add = |e: Explanation| {
                if !out.iter().any(|(l, r)| *l == e.label && *r == e.rule) {
                    out.push((e.label, e.rule));
                }
            };
            set.status_classes.iter().for_each(|c| add(c.explanation()));
            set.envelope_classes
                .iter()
                .for_each(|c| add(c.explanation()));
            for n in &set.header_normalize {
                if n.strip_params || n.lowercase || n.accept_format_change {
                    add(Explanation::change(n.change_label.as_str(), &n.rule));
                }
            }
            for m in set.matchers.iter().filter(|m| m.accept_format_change) {
                add(Explanation::change(
                    format!("format-change:{}", m.pointer.as_str()),
                    &m.rule,
                ));
            }
        }
        out.sort();
        out
    }
}

impl RuleSet {
    /// Compiles rule sets in order: a route's own section first, then the
    /// defaults it inherits, so that a route's matcher wins over a default
    /// one on the same path.
    fn compile(specs: &[(&RuleSetSpec, String)]) -> Result<Self, RulesError> {
        let mut set = Self {
            ignore_headers: HeaderMatcher::new(
                specs
                    .iter()
                    .flat_map(|(s, _)| s.ignore_headers.iter().map(String::as_str)),
            )?,
            ..Self::default()
        };
        for (spec, section) in specs {
            for pattern in &spec.ignore {
                set.ignore.push(IgnoreRule {
                    pattern: PointerPattern::parse(pattern)?,
                    rule: format!("{section} ignore {pattern}"),
                });
            }
            for pattern in &spec.sets {
                set.sets.push(PointerPattern::parse(pattern)?);
            }
            for matcher in &spec.matchers {
                set.matchers.push(Matcher::compile(matcher, section)?);
            }
            for normalizer in &spec.header_normalize {
                set.header_normalize
                    .push(HeaderNormalizer::compile(normalizer, section)?);
            }
            for class in &spec.status_class {
                set.status_classes.push(StatusClass {
                    name: class.name.clone(),
                    primary: class.primary.clone(),
                    candidate: class.candidate.clone(),
                    rule: format!("{section} status_class {}", class.name),
                });
            }
            for class in &spec.envelope_class {
                set.envelope_classes.push(EnvelopeClass {
                    name: class.name.clone(),
                    primary: EnvelopeSide::compile(&class.primary)?,
                    candidate: EnvelopeSide::compile(&class.candidate)?,
                    rule: format!("{section} envelope_class {}", class.name),
                });
            }
            if spec.ignore_body && set.ignore_body.is_none() {
                set.ignore_body = Some(format!("{section} ignore_body"));
            }
        }
        Ok(set)
    }

    /// Whether some envelope class admits this status pair, i.e. whether
    /// the bodies must be parsed to check it.
    pub fn envelope_may_apply(&self, primary: u16, candidate: u16) -> bool {
        self.envelope_classes
            .iter()
            .any(|c| c.primary.admits_status(primary) && c.candidate.admits_status(candidate))
    }

    /// The `ignore` entry whose pattern covers this path (matches it or an
    /// ancestor), if any.
    pub fn ignored_by(&self, path: &[PathSeg<'_>]) -> Option<&IgnoreRule> {
        self.ignore.iter().find(|i| i.pattern.covers(path))
    }

    pub fn is_set(&self, path: &[PathSeg<'_>]) -> bool {
        self.sets.iter().any(|p| p.matches(path))
    }

    /// What explains a differing pair of values at `path`: the first
    /// matcher on the path that accepts both, as noise or as an accepted
    /// format change. A noise explanation wins over a change one further
    /// down the list.
    pub fn explain(
        &self,
        path: &[PathSeg<'_>],
        primary: &Json<'_>,
        candidate: &Json<'_>,
    ) -> Option<Explanation> {
        let mut change = None;
        for m in self.matchers.iter().filter(|m| m.pointer.matches(path)) {
            match m.explain(primary, candidate) {
                Some(e) if !e.change => return Some(e),
                Some(e) => {
                    change.get_or_insert(e);
                }
                None => {}
            }
        }
        change
    }

    /// What explains two differing values of the header `name`: the first
    /// normaliser for it that makes them equal.
    pub fn explain_header(
        &self,
        name: &str,
        primary: &str,
        candidate: &str,
    ) -> Option<Explanation> {
        let mut change = None;
        for n in self
            .header_normalize
            .iter()
            .filter(|n| n.header.matches(name))
        {
            match n.explain(name, primary, candidate) {
                Some(e) if !e.change => return Some(e),
                Some(e) => {
                    change.get_or_insert(e);
                }
                None => {}
            }
        }
        change
    }
}

/// A compiled `[[match]]` entry.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pointer: PointerPattern,
    kind: MatchKind,
    /// Shown in diff records as the reason a difference is noise.
    label: String,
    /// `[defaults] match /**/created_at`.
    rule: String,
    /// Values of different formats are an accepted contract change.
    accept_format_change: bool,
}

/// How two values relate under a shape: not both of it, both of it with
/// the same format (value noise), or both of it in different formats.
enum Fit {
    No,
    SameFormat,
    OtherFormat,
}

impl Fit {
    fn of<F: PartialEq>(a: Option<F>, b: Option<F>) -> Self {
        match (a, b) {
            (Some(a), Some(b)) if a == b => Fit::SameFormat,
            (Some(_), Some(_)) => Fit::OtherFormat,
            _ => Fit::No,
        }
    }
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
    fn compile(spec: &MatcherSpec, section: &str) -> Result<Self, RulesError> {
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
        let formats = matches!(
            spec.shape,
            ShapeSpec::Id
                | ShapeSpec::Uuid
                | ShapeSpec::Ulid
                | ShapeSpec::ObjectId
                | ShapeSpec::Timestamp
        );
        if spec.accept_format_change && !formats {
            return Err(bad(
                "accept_format_change applies to the id, uuid, ulid, object-id and timestamp shapes",
            ));
        }
        Ok(Self {
            rule: format!("{section} match {}", spec.pointer),
            pointer,
            kind,
            label,
            accept_format_change: spec.accept_format_change,
        })
    }

    fn fit(&self, p: &Json<'_>, c: &Json<'_>) -> Fit {
        let (a, b) = match (p.as_str(), c.as_str()) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return match &self.kind {
                    MatchKind::Present => Fit::SameFormat,
                    MatchKind::Number { absolute, relative } => match (p.as_f64(), c.as_f64()) {
                        (Some(a), Some(b)) => {
                            let diff = (a - b).abs();
                            if diff <= *absolute || diff <= relative * a.abs().max(b.abs()) {
                                Fit::SameFormat
                            } else {
                                Fit::No
                            }
                        }
                        _ => Fit::No,
                    },
                    _ => Fit::No,
                };
            }
        };
        let id_of =
            |f: fn(&str) -> bool| move |s: &str| f(s).then(|| shape::id_format(s)).flatten();
        match &self.kind {
            MatchKind::Id => Fit::of(shape::id_format(a), shape::id_format(b)),
            MatchKind::Uuid => {
                let f = id_of(shape::is_uuid);
                Fit::of(f(a), f(b))
            }
            MatchKind::Ulid => {
                let f = id_of(shape::is_ulid);
                Fit::of(f(a), f(b))
            }
            MatchKind::ObjectId => {
                let f = id_of(shape::is_object_id);
                Fit::of(f(a), f(b))
            }
            MatchKind::Present => Fit::SameFormat,
            MatchKind::Pattern(re) => {
                if re.is_match(a) && re.is_match(b) {
                    Fit::SameFormat
                } else {
                    Fit::No
                }
            }
            MatchKind::Timestamp(tolerance) => {
                match (shape::parse_timestamp(a), shape::parse_timestamp(b)) {
                    (Some(ta), Some(tb)) if (ta - tb).abs() <= *tolerance => {
                        Fit::of(shape::timestamp_format(a), shape::timestamp_format(b))
                    }
                    _ => Fit::No,
                }
            }
            MatchKind::Number { .. } => Fit::No,
        }
    }

    fn explain(&self, p: &Json<'_>, c: &Json<'_>) -> Option<Explanation> {
        match self.fit(p, c) {
            Fit::No => None,
            Fit::SameFormat => Some(Explanation::noise(self.label.as_str(), &self.rule)),
            Fit::OtherFormat if self.accept_format_change => Some(Explanation::change(
                format!("format-change:{}", self.pointer.as_str()),
                &self.rule,
            )),
            Fit::OtherFormat => None,
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
    accept_format_change: bool,
    /// `header-normalize:content-type`: the name of the contract change
    /// this normaliser accepts when case, parameters or id formats differ.
    change_label: String,
    /// `[defaults] header_normalize Content-Type`.
    rule: String,
}

impl HeaderNormalizer {
    fn compile(spec: &file::HeaderNormalizeSpec, section: &str) -> Result<Self, RulesError> {
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
        if spec.accept_format_change && !spec.ids {
            return Err(RulesError::Header {
                pattern: format!("{} (accept_format_change needs ids = true)", spec.header),
            });
        }
        Ok(Self {
            header: HeaderMatcher::new(vec![spec.header.as_str()])?,
            ids: spec.ids,
            lowercase: spec.lowercase,
            strip_params: spec.strip_params,
            replace,
            accept_format_change: spec.accept_format_change,
            change_label: format!("header-normalize:{}", spec.header.to_ascii_lowercase()),
            rule: format!("{section} header_normalize {}", spec.header),
        })
    }

    /// The value after every step of this normaliser.
    pub fn normalise<'v>(&self, value: &'v str) -> Cow<'v, str> {
        self.normalise_with(value, true)
    }

    /// `contract`: also apply the steps that hide a client-visible change
    /// (`strip_params`, `lowercase`); without it only the value-noise steps
    /// (`ids`, `replace`) run.
    fn normalise_with<'v>(&self, value: &'v str, contract: bool) -> Cow<'v, str> {
        let mut out = Cow::Borrowed(value);
        if contract
            && self.strip_params
            && let Some((head, _)) = out.split_once(';')
        {
            out = Cow::Owned(head.trim_end().to_owned());
        }
        if contract && self.lowercase && out.bytes().any(|b| b.is_ascii_uppercase()) {
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

    /// Whether this normaliser explains two differing values of `name`,
    /// and how: value noise when the value-noise steps make them equal and
    /// any ids in them have the same format; a contract change when that
    /// needs `strip_params`/`lowercase`, or ids of another format with
    /// `accept_format_change`.
    fn explain(&self, name: &str, primary: &str, candidate: &str) -> Option<Explanation> {
        let same_ids = !self.ids || path_id_formats(primary) == path_id_formats(candidate);
        if !same_ids && !self.accept_format_change {
            return None;
        }
        if self.normalise_with(primary, false) == self.normalise_with(candidate, false) {
            return Some(if same_ids {
                Explanation::noise(format!("normalize:{name}"), &self.rule)
            } else {
                Explanation::change(self.change_label.as_str(), &self.rule)
            });
        }
        (self.normalise(primary) == self.normalise(candidate))
            .then(|| Explanation::change(self.change_label.as_str(), &self.rule))
    }
}

/// The formats of the id-like path segments of a header value, in order
/// (`None` for decimal numbers).
pub(crate) fn path_id_formats(value: &str) -> Vec<Option<shape::IdFormat>> {
    let path = value.split(['?', '#']).next().unwrap_or("");
    path.split('/')
        .filter(|seg| shape::is_path_id(seg))
        .map(shape::id_format)
        .collect()
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
    pub rule: String,
}

impl StatusClass {
    pub fn admits(&self, primary: u16, candidate: u16) -> bool {
        self.primary.contains(&primary) && self.candidate.contains(&candidate)
    }

    /// Always a contract change: a client checking the status sees it.
    pub fn explanation(&self) -> Explanation {
        Explanation::change(format!("status-class:{}", self.name), &self.rule)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct EnvelopeClass {
    pub name: String,
    pub primary: EnvelopeSide,
    pub candidate: EnvelopeSide,
    pub rule: String,
}

impl EnvelopeClass {
    /// Always a contract change: a client reading the error body sees it.
    pub fn explanation(&self) -> Explanation {
        Explanation::change(format!("envelope-class:{}", self.name), &self.rule)
    }
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
    fn the_shipped_defaults_accept_no_contract_change() {
        let rules = Rules::default_rules().expect("default.toml compiles");
        assert_eq!(rules.contract_changes(), Vec::<(String, String)>::new());
        let with_class = Rules::from_toml_str(&format!(
            "{DEFAULT_RULES_TOML}\n[[routes.\"POST /v1/sms/bulk\".status_class]]\nname = \"bulk-accepted\"\nprimary = [201]\ncandidate = [202]\n"
        ))
        .expect("compiles");
        assert_eq!(
            with_class.contract_changes(),
            vec![(
                "status-class:bulk-accepted".to_owned(),
                "[routes.\"POST /v1/sms/bulk\"] status_class bulk-accepted".to_owned()
            )]
        );
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

    fn location_normalizer(accept_format_change: bool) -> HeaderNormalizer {
        HeaderNormalizer::compile(
            &file::HeaderNormalizeSpec {
                header: "Location".into(),
                ids: true,
                lowercase: false,
                strip_params: false,
                replace: None,
                accept_format_change,
            },
            "[defaults]",
        )
        .expect("compiles")
    }

    #[test]
    fn location_ids_of_the_same_format_are_noise_and_of_another_format_are_not() {
        let n = location_normalizer(false);
        let noise = n
            .explain(
                "location",
                "/v1/sms/507f1f77bcf86cd799439011",
                "/v1/sms/65f000000000000000000001",
            )
            .expect("two ObjectIds");
        assert!(!noise.change);
        assert_eq!(noise.rule, "[defaults] header_normalize Location");
        assert_eq!(
            n.explain(
                "location",
                "/v1/sms/507f1f77bcf86cd799439011",
                "/v1/sms/0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a"
            ),
            None,
            "an ObjectId and a UUIDv7 are not the same format"
        );
        let accepted = location_normalizer(true)
            .explain(
                "location",
                "/v1/sms/507f1f77bcf86cd799439011",
                "/v1/sms/0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a",
            )
            .expect("accepted");
        assert!(accepted.change);
        assert_eq!(accepted.label, "header-normalize:location");
        assert_eq!(
            n.explain(
                "location",
                "/v1/sms/507f1f77bcf86cd799439011",
                "/v2/sms/507f1f77bcf86cd799439011"
            ),
            None,
            "the path must not differ"
        );
    }

    #[test]
    fn content_type_parameters_are_a_contract_change() {
        let n = HeaderNormalizer::compile(
            &file::HeaderNormalizeSpec {
                header: "Content-Type".into(),
                ids: false,
                lowercase: true,
                strip_params: true,
                replace: None,
                accept_format_change: false,
            },
            "[defaults]",
        )
        .expect("compiles");
        let e = n
            .explain(
                "content-type",
                "application/json; charset=utf-8",
                "application/json",
            )
            .expect("explained");
        assert!(e.change);
        assert_eq!(e.label, "header-normalize:content-type");
    }

    #[test]
    fn location_normalisation_replaces_ids() {
        let n = location_normalizer(false);
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
