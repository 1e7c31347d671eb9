//! The comparison rules the diff service applies: compare's shipped
//! `compare/rules/default.toml`, with this deployment's files laid over it
//! (`mirror-proxy/rules/shadow.toml` is the one shipped for the legacy
//! simulator ↔ orchestrator pair).
//!
//! Laying over means: lists are appended, `ignore_body` is or-ed, route
//! sections with the same template are merged, new ones added. A later file
//! can only explain more differences, never hide a rule of an earlier one.
//!
//! The shipped files explain value noise only. An overlay that accepts a
//! contract change (a status or envelope class, `Content-Type`
//! normalisation, `accept_format_change`) is logged as a warning at every
//! start and reload, and every record it explains carries `accepted`, not
//! `noise`, so `compare report` lists it apart and the gate refuses it
//! unless acknowledged.

use std::path::{Path, PathBuf};

use compare::Rules;
use compare::rules::file::RuleSetSpec;
use compare::rules::{DEFAULT_RULES_TOML, RulesFile};

/// A rules file could not be loaded, parsed or compiled.
#[derive(Debug, thiserror::Error)]
pub enum RulesLoadError {
    #[error("cannot read rules file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rules file {path} is invalid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("rules do not compile: {0}")]
    Compile(#[from] compare::error::RulesError),
}

/// Compiles the default rules (when `with_default`) and the overlays, in order.
pub fn load(with_default: bool, overlays: &[PathBuf]) -> Result<Rules, RulesLoadError> {
    let mut merged = if with_default {
        parse(Path::new("compare/rules/default.toml"), DEFAULT_RULES_TOML)?
    } else {
        RulesFile {
            version: 1,
            ..RulesFile::default()
        }
    };
    for path in overlays {
        let text = std::fs::read_to_string(path).map_err(|source| RulesLoadError::Read {
            path: path.clone(),
            source,
        })?;
        merge(&mut merged, parse(path, &text)?);
    }
    Ok(Rules::compile(&merged)?)
}

fn parse(path: &Path, text: &str) -> Result<RulesFile, RulesLoadError> {
    toml::from_str(text).map_err(|e| RulesLoadError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Lays `overlay` over `base`.
pub fn merge(base: &mut RulesFile, overlay: RulesFile) {
    merge_set(&mut base.defaults, overlay.defaults);
    for (template, spec) in overlay.routes {
        match base.routes.get_mut(&template) {
            Some(existing) => merge_set(existing, spec),
            None => {
                base.routes.insert(template, spec);
            }
        }
    }
    base.redact.hash.extend(overlay.redact.hash);
    base.redact.drop_headers.extend(overlay.redact.drop_headers);
}

fn merge_set(base: &mut RuleSetSpec, overlay: RuleSetSpec) {
    base.inherit = base.inherit && overlay.inherit;
    base.ignore_headers.extend(overlay.ignore_headers);
    base.ignore.extend(overlay.ignore);
    base.sets.extend(overlay.sets);
    base.matchers.extend(overlay.matchers);
    base.header_normalize.extend(overlay.header_normalize);
    base.status_class.extend(overlay.status_class);
    base.envelope_class.extend(overlay.envelope_class);
    base.ignore_body |= overlay.ignore_body;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_shadow_rules_lay_over_the_defaults_and_accept_no_contract_change() {
        let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/shadow.toml"));
        let rules = load(true, &[path]).expect("shipped rules compile");
        assert_eq!(
            rules.contract_changes(),
            Vec::<(String, String)>::new(),
            "the shipped rules explain value noise only"
        );
    }

    #[test]
    fn an_overlay_appends_to_an_existing_route() {
        let mut base: RulesFile =
            toml::from_str("version = 1\n[routes.\"GET /a\"]\nignore = [\"/x\"]\n").unwrap();
        let overlay: RulesFile = toml::from_str(
            "version = 1\n[routes.\"GET /a\"]\nignore = [\"/y\"]\n[routes.\"GET /b\"]\nignore_body = true\n",
        )
        .unwrap();
        merge(&mut base, overlay);
        assert_eq!(base.routes["GET /a"].ignore, vec!["/x", "/y"]);
        assert!(base.routes["GET /b"].ignore_body);
    }
}
