//! Step 4 of a submit: the JSON Schema check, against the committed OpenAPI
//! document (`orchestrator/openapi.yaml`).
//!
//! The document is embedded at compile time and its request schemas are
//! compiled once at start-up. There is no second copy of any constraint in
//! Rust: change the document and validation follows (a test proves it by
//! compiling a modified copy). Domain rules that JSON Schema cannot say
//! (segment counts, sender id kinds, "in the future") come after, in
//! [`crate::submit`].

use std::sync::Arc;

use jsonschema::Validator;
use serde_json::{Value, json};

use crate::problem::Violation;

/// The committed contract, as written.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// The compiled request schemas plus the document itself.
#[derive(Clone)]
pub struct Contract {
    inner: Arc<Inner>,
}

struct Inner {
    document_json: Vec<u8>,
    send: Validator,
    bulk: Validator,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract").finish_non_exhaustive()
    }
}

/// Which request schema to check a body against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSchema {
    /// `components.schemas.SendRequest`, also used for each merged bulk item.
    Send,
    /// `components.schemas.BulkRequest`.
    Bulk,
}

impl Contract {
    /// The embedded contract. Fails only if the committed document is
    /// broken, which the unit tests catch before anything ships.
    pub fn embedded() -> anyhow::Result<Self> {
        Self::from_yaml(OPENAPI_YAML)
    }

    /// Compiles a contract from OpenAPI YAML text.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let document: Value = serde_norway::from_str(text)?;
        let components = document
            .get("components")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("OpenAPI document has no components"))?;
        let compile = |name: &str| -> anyhow::Result<Validator> {
            if components.pointer(&format!("/schemas/{name}")).is_none() {
                anyhow::bail!("OpenAPI document has no components.schemas.{name}");
            }
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$ref": format!("#/components/schemas/{name}"),
                "components": components,
            });
            jsonschema::options()
                .should_validate_formats(false)
                .build(&root)
                .map_err(|e| anyhow::anyhow!("schema {name} does not compile: {e}"))
        };
        Ok(Self {
            inner: Arc::new(Inner {
                send: compile("SendRequest")?,
                bulk: compile("BulkRequest")?,
                document_json: serde_json::to_vec_pretty(&document)?,
            }),
        })
    }

    /// The document as JSON, served at `GET /openapi.json`.
    pub fn document_json(&self) -> &[u8] {
        &self.inner.document_json
    }

    /// Every violation of `schema` in `body`, one per problem, with pointers
    /// prefixed by `prefix` (used for bulk items: `/messages/3`). Messages
    /// never quote the offending value: it may be a phone number.
    pub fn violations(&self, schema: RequestSchema, body: &Value, prefix: &str) -> Vec<Violation> {
        let validator = match schema {
            RequestSchema::Send => &self.inner.send,
            RequestSchema::Bulk => &self.inner.bulk,
        };
        let mut out = Vec::new();
        for error in validator.iter_errors(body) {
            let at = format!("{prefix}{}", error.instance_path().as_str());
            match error.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    out.push(Violation::new(
                        format!("{at}/{}", escape_pointer(name)),
                        "is required",
                    ));
                }
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        out.push(Violation::new(
                            format!("{at}/{}", escape_pointer(name)),
                            "is not an allowed field",
                        ));
                    }
                }
                _ => out.push(Violation::new(at, error.masked().to_string())),
            }
        }
        out
    }

    /// The JSON Schema keyword behind each violation, for the
    /// validation-failures-by-rule metric.
    pub fn violated_keywords(&self, schema: RequestSchema, body: &Value) -> Vec<String> {
        let validator = match schema {
            RequestSchema::Send => &self.inner.send,
            RequestSchema::Bulk => &self.inner.bulk,
        };
        validator
            .iter_errors(body)
            .map(|e| e.kind().keyword().to_owned())
            .collect()
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(v: &[Violation]) -> Vec<&str> {
        let mut p: Vec<&str> = v.iter().map(|v| v.pointer.as_str()).collect();
        p.sort_unstable();
        p
    }

    #[test]
    fn embedded_contract_compiles_and_accepts_a_minimal_send() {
        let c = Contract::embedded().unwrap();
        let body = json!({"to": "+447700900123", "from": "Acme", "body": "hi"});
        assert!(c.violations(RequestSchema::Send, &body, "").is_empty());
    }

    #[test]
    fn three_errors_give_three_violations_with_pointers() {
        let c = Contract::embedded().unwrap();
        let body = json!({"to": "447700900123", "body": "", "colour": "red"});
        let v = c.violations(RequestSchema::Send, &body, "");
        assert_eq!(
            pointers(&v),
            vec!["/body", "/colour", "/from", "/to"],
            "{v:?}"
        );
    }

    #[test]
    fn messages_never_quote_the_phone_number() {
        let c = Contract::embedded().unwrap();
        let body = json!({"to": "0044770090012", "from": "Acme", "body": "x"});
        let v = c.violations(RequestSchema::Send, &body, "");
        assert_eq!(v.len(), 1);
        assert!(!v[0].detail.contains("0044770090012"), "{}", v[0].detail);
    }

    #[test]
    fn validation_follows_the_document_not_the_code() {
        // Same body, two documents: only the constraint in the text differs.
        let body = json!({"to": "+447700900123", "from": "Acme", "body": "hello", "reference": "abcdefghij"});
        let original = Contract::embedded().unwrap();
        assert!(
            original
                .violations(RequestSchema::Send, &body, "")
                .is_empty()
        );

        let mut doc: Value = serde_norway::from_str(OPENAPI_YAML).unwrap();
        let reference = doc
            .pointer_mut("/components/schemas/Reference")
            .expect("components.schemas.Reference exists");
        reference["maxLength"] = json!(5);
        let changed = Contract::from_yaml(&serde_norway::to_string(&doc).unwrap()).unwrap();
        let v = changed.violations(RequestSchema::Send, &body, "");
        assert_eq!(pointers(&v), vec!["/reference"]);
    }
}
