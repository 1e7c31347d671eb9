//! The rules file as written by people (TOML), before compilation.
//!
//! `compare/README.md` documents every key with examples; the shipped
//! `compare/rules/default.toml` uses all of them. Unknown keys are errors, so
//! a typo cannot silently disable a rule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// The whole rules file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// Format version; only `1` exists.
    #[serde(default = "one")]
    pub version: u32,
    /// Rules for every route (and for routes no section names).
    #[serde(default)]
    pub defaults: RuleSetSpec,
    /// Per-route sections keyed by route template: `"POST /v1/sms/send"`,
    /// `"GET /v1/sms/{id}"`, `"event sms.outbound.request"`.
    #[serde(default)]
    pub routes: BTreeMap<String, RuleSetSpec>,
    /// What the redactor hashes or drops besides its built-in list.
    #[serde(default)]
    pub redact: RedactSpec,
}

/// Rules for one route, or the defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetSpec {
    /// Route sections only: also apply `[defaults]` (the default) or not.
    #[serde(default = "yes")]
    pub inherit: bool,
    /// Header names not compared; `*` globs (`X-Kong-*`), case-insensitive.
    #[serde(default)]
    pub ignore_headers: Vec<String>,
    /// JSON pointer patterns whose values (and everything below) are not
    /// compared.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Arrays compared as multisets (order ignored).
    #[serde(default)]
    pub sets: Vec<String>,
    /// Shape and tolerance matchers: a difference at `pointer` is noise when
    /// both values satisfy the shape.
    #[serde(default, rename = "match")]
    pub matchers: Vec<MatcherSpec>,
    /// Header values normalised before comparison.
    #[serde(default)]
    pub header_normalize: Vec<HeaderNormalizeSpec>,
    /// Status codes that are equivalent between the two systems.
    #[serde(default)]
    pub status_class: Vec<StatusClassSpec>,
    /// Error bodies that are equivalent although their formats differ.
    #[serde(default)]
    pub envelope_class: Vec<EnvelopeClassSpec>,
    /// Do not compare bodies at all on this route.
    #[serde(default)]
    pub ignore_body: bool,
}

impl Default for RuleSetSpec {
    fn default() -> Self {
        Self {
            inherit: true,
            ignore_headers: Vec::new(),
            ignore: Vec::new(),
            sets: Vec::new(),
            matchers: Vec::new(),
            header_normalize: Vec::new(),
            status_class: Vec::new(),
            envelope_class: Vec::new(),
            ignore_body: false,
        }
    }
}

/// The shape both values must have for a difference to be noise.
///
/// The id and timestamp shapes explain *value* noise only: both values must
/// have the same format ([`crate::rules::shape::IdFormat`],
/// [`crate::rules::shape::TimestampFormat`]). Values of different formats
/// (an ObjectId and a UUIDv7, milliseconds and microseconds) stay real
/// differences unless the matcher says `accept_format_change = true`; they
/// are then reported as an accepted contract change, never as noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShapeSpec {
    /// Both are generated ids (UUID, ULID, ObjectId, hex, prefixed) of the
    /// same format.
    Id,
    /// Both are UUIDs of the same version.
    Uuid,
    Ulid,
    ObjectId,
    /// Both are RFC 3339 timestamps of the same layout within `tolerance`
    /// (default `5s`).
    Timestamp,
    /// Both are numbers within `tolerance` (absolute) or `relative`.
    Number,
    /// Both strings match the regular expression `pattern`.
    Pattern,
    /// Both are present; their values do not matter.
    Present,
}

/// A tolerance: a number (absolute, for `number`) or a duration such as
/// `"5s"`, `"250ms"`, `"2m"` (for `timestamp`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ToleranceSpec {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatcherSpec {
    pub pointer: String,
    pub shape: ShapeSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<ToleranceSpec>,
    /// For `number`: relative tolerance (0.01 = 1 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative: Option<f64>,
    /// For `pattern`: the regular expression both values must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For the id and timestamp shapes: values of different formats are
    /// accepted too, as a contract change (`format-change:<pointer>`) that
    /// `compare report` lists apart and the gate refuses unless
    /// acknowledged. Never in shipped defaults.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_format_change: bool,
    /// Why this rule exists (shown nowhere else; for reviewers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderNormalizeSpec {
    /// Header name (case-insensitive, `*` globs allowed).
    pub header: String,
    /// Replace id-like path segments (UUID, ObjectId, numbers…) by `{id}`.
    /// Value noise when the ids on both sides have the same format.
    #[serde(default)]
    pub ids: bool,
    /// Compare case-insensitively: a contract change (a client comparing
    /// the value sees it), reported as `header-normalize:<header>`.
    #[serde(default)]
    pub lowercase: bool,
    /// Drop `;`-parameters (`application/json; charset=utf-8` →
    /// `application/json`): a contract change, reported as
    /// `header-normalize:<header>`.
    #[serde(default)]
    pub strip_params: bool,
    /// Regex replacement applied last: `{ pattern = "…", with = "…" }`.
    /// Value noise: meant for values generated per response (an ETag's
    /// hash, a length) whose layout the pattern still pins.
    #[serde(default)]
    pub replace: Option<ReplaceSpec>,
    /// With `ids`: ids of different formats are accepted too, as a
    /// contract change (`header-normalize:<header>`).
    #[serde(default)]
    pub accept_format_change: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceSpec {
    pub pattern: String,
    #[serde(default)]
    pub with: String,
}

/// Primary statuses in `primary` are equivalent to candidate statuses in
/// `candidate`. Always a contract change (`status-class:<name>`): listed
/// apart in reports and refused by the gate unless acknowledged.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusClassSpec {
    pub name: String,
    pub primary: Vec<u16>,
    pub candidate: Vec<u16>,
}

/// Two error formats that say the same thing: when the primary's response
/// fits `primary` and the candidate's fits `candidate`, the bodies are not
/// compared field by field and only the effective statuses must agree.
/// Always a contract change (`envelope-class:<name>`): listed apart in
/// reports and refused by the gate unless acknowledged.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeClassSpec {
    pub name: String,
    pub primary: EnvelopeSideSpec,
    pub candidate: EnvelopeSideSpec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSideSpec {
    /// HTTP statuses this side may have (empty: any).
    #[serde(default)]
    pub status: Vec<u16>,
    /// Content type prefix the response must have (`application/problem+json`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// JSON pointers that must exist in the body.
    #[serde(default)]
    pub require: Vec<String>,
    /// Where the body carries the effective status (`/statusCode`); the HTTP
    /// status is used when absent.
    #[serde(default)]
    pub status_pointer: Option<String>,
}

/// Additions to the redactor's built-in lists.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedactSpec {
    /// JSON pointer patterns whose values are replaced by a keyed hash.
    #[serde(default)]
    pub hash: Vec<String>,
    /// Header names dropped from everything written (globs).
    #[serde(default)]
    pub drop_headers: Vec<String>,
}
