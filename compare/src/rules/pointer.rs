//! JSON Pointer patterns (`/messages/*/id`, `/**/created_at`, `/**/*_at`)
//! and the path of the value being compared.
//!
//! Patterns are parsed once when the rules load; matching walks segment
//! slices and never allocates, because it runs for every difference found.

use std::fmt::Write as _;

use crate::error::RulesError;

/// One step of the path from a body's root to the value being compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSeg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Renders a path as an RFC 6901 JSON Pointer (`""` for the root).
pub fn render(path: &[PathSeg<'_>]) -> String {
    let mut out = String::with_capacity(path.len() * 8);
    for seg in path {
        out.push('/');
        match seg {
            PathSeg::Key(key) => escape_into(&mut out, key),
            PathSeg::Index(index) => {
                let _ = write!(out, "{index}");
            }
        }
    }
    out
}

fn escape_into(out: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// Splits an RFC 6901 pointer into unescaped segments. `None` if it does not
/// start with `/` (and is not the empty root pointer).
pub fn split(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// Replaces array indices, and object keys that are generated ids, in a
/// pointer with `*`, so that the same field of every array element (or of
/// every entry of a map keyed by id) is counted as one path
/// (`/results/3/id` → `/results/*/id`). Reports and noise learning group by
/// it, so their memory is bounded by the API's shape, not by the traffic.
pub fn generalise(pointer: &str) -> String {
    if pointer.is_empty() {
        return String::new();
    }
    pointer
        .split('/')
        .map(|seg| {
            if !seg.is_empty() && super::shape::is_path_id(seg) {
                "*"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(Debug, Clone)]
enum SegPattern {
    /// A literal key; `index` is set when it is also a valid array index.
    Literal { key: String, index: Option<usize> },
    /// `prefix*suffix` within one key.
    Glob { prefix: String, suffix: String },
    /// `*`: exactly one segment.
    Any,
    /// `**`: zero or more segments.
    AnyDepth,
}

impl SegPattern {
    fn matches(&self, seg: &PathSeg<'_>) -> bool {
        match (self, seg) {
            (SegPattern::Any, _) => true,
            (SegPattern::AnyDepth, _) => true,
            (SegPattern::Literal { key, .. }, PathSeg::Key(k)) => key == k,
            (SegPattern::Literal { index, .. }, PathSeg::Index(i)) => *index == Some(*i),
            (SegPattern::Glob { prefix, suffix }, PathSeg::Key(k)) => {
                k.len() >= prefix.len() + suffix.len()
                    && k.starts_with(prefix.as_str())
                    && k.ends_with(suffix.as_str())
            }
            (SegPattern::Glob { .. }, PathSeg::Index(_)) => false,
        }
    }
}

/// A compiled JSON Pointer pattern.
///
/// `*` matches one segment, `**` any number of segments (including none), and
/// one `*` inside a segment matches within a key (`*_at`). Everything else is
/// an RFC 6901 pointer, `~0`/`~1` escapes included.
#[derive(Debug, Clone)]
pub struct PointerPattern {
    source: String,
    segs: Vec<SegPattern>,
}

impl PointerPattern {
    /// Parses a pattern; the error names the pattern and what is wrong.
    pub fn parse(pattern: &str) -> Result<Self, RulesError> {
        let err = |reason: &str| RulesError::Pointer {
            pattern: pattern.to_owned(),
            reason: reason.to_owned(),
        };
        let segments = split(pattern).ok_or_else(|| err("must start with '/'"))?;
        let mut segs = Vec::with_capacity(segments.len());
        for seg in segments {
            let compiled = match seg.as_str() {
                "**" => SegPattern::AnyDepth,
                "*" => SegPattern::Any,
                s if s.contains("**") => return Err(err("'**' must be a whole segment")),
                s => match s.split_once('*') {
                    Some((prefix, suffix)) => {
                        if suffix.contains('*') {
                            return Err(err("at most one '*' inside a segment"));
                        }
                        SegPattern::Glob {
                            prefix: prefix.to_owned(),
                            suffix: suffix.to_owned(),
                        }
                    }
                    None => SegPattern::Literal {
                        index: s.parse().ok().filter(|_| !s.starts_with('+')),
                        key: s.to_owned(),
                    },
                },
            };
            segs.push(compiled);
        }
        Ok(Self {
            source: pattern.to_owned(),
            segs,
        })
    }

    /// The pattern as written in the rules file.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches exactly this path.
    pub fn matches(&self, path: &[PathSeg<'_>]) -> bool {
        match_from(&self.segs, path, false)
    }

    /// Whether the pattern matches this path or one of its ancestors, i.e.
    /// the value lies at or below a matched location.
    pub fn covers(&self, path: &[PathSeg<'_>]) -> bool {
        match_from(&self.segs, path, true)
    }
}

fn match_from(pattern: &[SegPattern], path: &[PathSeg<'_>], prefix_ok: bool) -> bool {
    match pattern.split_first() {
        None => path.is_empty() || prefix_ok,
        Some((SegPattern::AnyDepth, rest)) => {
            (0..=path.len()).any(|skip| match_from(rest, &path[skip..], prefix_ok))
        }
        Some((seg, rest)) => match path.split_first() {
            Some((head, tail)) => seg.matches(head) && match_from(rest, tail, prefix_ok),
            None => false,
        },
    }
}

/// Owned path segments, for matching a pointer string from a diff record
/// against patterns.
#[derive(Debug, Clone)]
pub struct OwnedPath {
    keys: Vec<String>,
}

impl OwnedPath {
    pub fn parse(pointer: &str) -> Option<Self> {
        split(pointer).map(|keys| Self { keys })
    }

    /// Borrowed segments; numeric keys become indices so that `*`, literals
    /// and index patterns behave as they do on live bodies.
    pub fn segs(&self) -> Vec<PathSeg<'_>> {
        self.keys
            .iter()
            .map(|k| match k.parse::<usize>() {
                Ok(i) if !k.starts_with('+') && (k == "0" || !k.starts_with('0')) => {
                    PathSeg::Index(i)
                }
                _ => PathSeg::Key(k),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PointerPattern {
        PointerPattern::parse(s).expect("valid pattern")
    }

    #[test]
    fn literal_patterns_match_keys_and_indices() {
        let pat = p("/results/0/id");
        assert!(pat.matches(&[
            PathSeg::Key("results"),
            PathSeg::Index(0),
            PathSeg::Key("id")
        ]));
        assert!(!pat.matches(&[
            PathSeg::Key("results"),
            PathSeg::Index(1),
            PathSeg::Key("id")
        ]));
    }

    #[test]
    fn star_matches_one_segment_and_double_star_any_depth() {
        let path = [
            PathSeg::Key("a"),
            PathSeg::Index(3),
            PathSeg::Key("created_at"),
        ];
        assert!(p("/a/*/created_at").matches(&path));
        assert!(p("/**/created_at").matches(&path));
        assert!(p("/**/*_at").matches(&path));
        assert!(!p("/*/created_at").matches(&path));
        assert!(p("/**").matches(&path));
    }

    #[test]
    fn covers_matches_descendants() {
        let path = [PathSeg::Key("meta"), PathSeg::Key("trace")];
        assert!(p("/meta").covers(&path));
        assert!(!p("/meta").matches(&path));
        assert!(!p("/met").covers(&path));
    }

    #[test]
    fn escapes_round_trip() {
        let path = [PathSeg::Key("a/b"), PathSeg::Key("c~d")];
        assert_eq!(render(&path), "/a~1b/c~0d");
        assert!(p("/a~1b/c~0d").matches(&path));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert!(PointerPattern::parse("no-slash").is_err());
        assert!(PointerPattern::parse("/a**b").is_err());
        assert!(PointerPattern::parse("/*a*b").is_err());
    }

    #[test]
    fn generalise_replaces_indices() {
        assert_eq!(generalise("/results/12/id"), "/results/*/id");
        assert_eq!(generalise(""), "");
        assert_eq!(
            generalise("/by_id/507f1f77bcf86cd799439011/status"),
            "/by_id/*/status"
        );
        assert_eq!(generalise("/meta/campaign"), "/meta/campaign");
    }
}
