//! Case-insensitive header-name globs (`Date`, `X-Kong-*`, `*-Token`).

use regex::Regex;

use crate::error::RulesError;

/// A compiled list of header-name patterns. Exact names are a set lookup,
/// `Prefix-*` patterns a prefix test; other globs fall back to one regex.
#[derive(Debug, Clone, Default)]
pub struct HeaderMatcher {
    exact: Vec<String>,
    prefixes: Vec<String>,
    other: Option<Regex>,
}

impl HeaderMatcher {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, RulesError> {
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        let mut other = Vec::new();
        for raw in patterns {
            let pattern = raw.trim().to_ascii_lowercase();
            let valid = !pattern.is_empty()
                && pattern
                    .bytes()
                    .all(|b| b == b'*' || (b.is_ascii_graphic() && b != b':'));
            if !valid {
                return Err(RulesError::Header {
                    pattern: raw.to_owned(),
                });
            }
            match pattern.find('*') {
                None => exact.push(pattern),
                Some(i) if i == pattern.len() - 1 => prefixes.push(pattern[..i].to_owned()),
                Some(_) => other.push(
                    pattern
                        .split('*')
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(".*"),
                ),
            }
        }
        exact.sort();
        exact.dedup();
        let other = if other.is_empty() {
            None
        } else {
            let source = format!("^(?:{})$", other.join("|"));
            Some(Regex::new(&source).map_err(|e| RulesError::Regex {
                pattern: source,
                reason: e.to_string(),
            })?)
        };
        Ok(Self {
            exact,
            prefixes,
            other,
        })
    }

    /// Whether `name` matches; `name` must already be lowercase, as
    /// `http::HeaderName::as_str` is.
    pub fn matches(&self, name: &str) -> bool {
        self.exact
            .binary_search_by(|e| e.as_str().cmp(name))
            .is_ok()
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
            || self.other.as_ref().is_some_and(|re| re.is_match(name))
    }

    /// Like [`HeaderMatcher::matches`] for a name of any case.
    pub fn matches_any_case(&self, name: &str) -> bool {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            self.matches(&name.to_ascii_lowercase())
        } else {
            self.matches(name)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty() && self.other.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_case_insensitively() {
        let m = HeaderMatcher::new(["Date", "X-Kong-*", "*-token", "x-*-secret"]).expect("valid");
        assert!(m.matches("date"));
        assert!(m.matches("x-kong-upstream-latency"));
        assert!(m.matches("x-refresh-token"));
        assert!(m.matches("x-api-secret"));
        assert!(m.matches_any_case("X-Kong-Proxy-Latency"));
        assert!(!m.matches("location"));
    }

    #[test]
    fn invalid_names_are_rejected() {
        assert!(HeaderMatcher::new(["bad name"]).is_err());
        assert!(HeaderMatcher::new([""]).is_err());
    }
}
