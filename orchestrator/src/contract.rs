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

/// The committed contract, as written.
pub const OPENAPI_YAML: &str = include_str!("../openapi.yaml");

/// The compiled request schemas plus the document itself.
#[derive(Clone)]
pub struct Contract {
    inner: Arc<Inner>,
}

struct Inner {
    document_json: Vec<u8>,
    send_fields: Vec<String>,
    bulk_fields: Vec<String>,
    legacy: crate::legacy::Surface,
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
        let fields = |name: &str| -> Vec<String> {
            components
                .pointer(&format!("/schemas/{name}/properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        };
        Ok(Self {
            inner: Arc::new(Inner {
                send_fields: fields("SendRequest"),
                bulk_fields: fields("BulkRequest"),
                send: compile("SendRequest")?,
                bulk: compile("BulkRequest")?,
                legacy: crate::legacy::Surface::from_document(&document)?,
                document_json: serde_json::to_vec_pretty(&document)?,
            }),
        })
    }

    /// The legacy surface (`x-legacy`): error bodies, messages, headers.
    pub fn legacy(&self) -> &crate::legacy::Surface {
        &self.inner.legacy
    }

    /// The document as JSON, served at `GET /openapi.json`.
    pub fn document_json(&self) -> &[u8] {
        &self.inner.document_json
    }

    /// Every way `body` breaks `schema`, one issue per problem, in the
    /// validator's order. Details never quote the offending value: it may
    /// be a phone number.
    pub fn issues(&self, schema: RequestSchema, body: &Value) -> Vec<SchemaIssue> {
        let validator = match schema {
            RequestSchema::Send => &self.inner.send,
            RequestSchema::Bulk => &self.inner.bulk,
        };
        let mut out = Vec::new();
        for error in validator.iter_errors(body) {
            let path: Vec<String> = error
                .instance_path()
                .as_str()
                .split('/')
                .skip(1)
                .map(unescape_pointer)
                .collect();
            let keyword = error.kind().keyword().to_owned();
            match error.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    let mut path = path.clone();
                    path.push(property.as_str().unwrap_or_default().to_owned());
                    out.push(SchemaIssue {
                        path,
                        keyword,
                        detail: "is required".to_owned(),
                    });
                }
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        let mut path = path.clone();
                        path.push(name.clone());
                        out.push(SchemaIssue {
                            path,
                            keyword: keyword.clone(),
                            detail: "is not an allowed field".to_owned(),
                        });
                    }
                }
                _ => out.push(SchemaIssue {
                    path,
                    keyword,
                    detail: error.masked().to_string(),
                }),
            }
        }
        out
    }

    /// The fields of a request schema in the order the contract lists
    /// them: the order validation messages are reported in.
    pub fn field_order(&self, schema: RequestSchema) -> &[String] {
        match schema {
            RequestSchema::Send => &self.inner.send_fields,
            RequestSchema::Bulk => &self.inner.bulk_fields,
        }
    }
}

/// One way a body breaks a request schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaIssue {
    /// Where, as unescaped JSON Pointer segments; for a missing or an
    /// unknown property, its name is the last segment.
    pub path: Vec<String>,
    /// The JSON Schema keyword that failed (`required`, `pattern`, …).
    pub keyword: String,
    pub detail: String,
}

impl SchemaIssue {
    /// The issue's RFC 6901 pointer under `prefix`.
    pub fn pointer(&self, prefix: &str) -> String {
        let mut p = prefix.to_owned();
        for segment in &self.path {
            p.push('/');
            p.push_str(&escape_pointer(segment));
        }
        p
    }
}

fn unescape_pointer(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointers(v: &[SchemaIssue]) -> Vec<String> {
        let mut p: Vec<String> = v.iter().map(|v| v.pointer("")).collect();
        p.sort_unstable();
        p
    }

    #[test]
    fn embedded_contract_compiles_and_accepts_a_minimal_send() {
        let c = Contract::embedded().unwrap();
        let body = json!({"to": "+447700900123", "from": "Acme", "body": "hi"});
        assert!(c.issues(RequestSchema::Send, &body).is_empty());
    }

    /// Postgres `text` and `jsonb` cannot hold U+0000: a NUL in any stored
    /// string must be a `400` naming the field, not a storage error (a
    /// `5xx`) after validation passed.
    #[test]
    fn a_nul_character_in_any_stored_string_is_a_schema_violation() {
        let c = Contract::embedded().unwrap();
        for (body, pointer) in [
            (
                json!({"to": "+447700900123", "from": "Acme", "body": "a\u{0}"}),
                "/body",
            ),
            (
                json!({"to": "+447700900123", "from": "Acme", "body": "hi", "reference": "\u{0}"}),
                "/reference",
            ),
            (
                json!({"to": "+447700900123", "from": "Acme", "body": "hi", "callback_url": "https://a.example/\u{0}"}),
                "/callback_url",
            ),
            (
                json!({"to": "+447700900123", "from": "Acme", "body": "hi", "metadata": {"k": "\u{0}"}}),
                "/metadata/k",
            ),
        ] {
            let v = c.issues(RequestSchema::Send, &body);
            assert_eq!(pointers(&v), [pointer], "{body}");
        }
    }

    #[test]
    fn three_errors_give_three_issues_with_pointers() {
        let c = Contract::embedded().unwrap();
        let body = json!({"to": "447700900123", "body": "", "colour": "red"});
        let v = c.issues(RequestSchema::Send, &body);
        assert_eq!(
            pointers(&v),
            vec!["/body", "/colour", "/from", "/to"],
            "{v:?}"
        );
    }

    #[test]
    fn details_never_quote_the_phone_number() {
        let c = Contract::embedded().unwrap();
        let body = json!({"to": "0044770090012", "from": "Acme", "body": "x"});
        let v = c.issues(RequestSchema::Send, &body);
        assert_eq!(v.len(), 1);
        assert!(!v[0].detail.contains("0044770090012"), "{}", v[0].detail);
    }

    #[test]
    fn fields_are_listed_in_the_contracts_order() {
        let c = Contract::embedded().unwrap();
        assert_eq!(
            c.field_order(RequestSchema::Send),
            [
                "to",
                "from",
                "body",
                "reference",
                "callback_url",
                "schedule_at",
                "validity_period",
                "metadata"
            ]
        );
        assert_eq!(
            c.field_order(RequestSchema::Bulk),
            ["messages", "defaults", "atomic"]
        );
    }

    /// Every example the document shows is valid against the schema it
    /// illustrates: the contract does not contradict itself.
    #[test]
    fn every_example_in_the_contract_matches_its_schema() {
        let doc: Value = serde_norway::from_str(OPENAPI_YAML).unwrap();
        let components = doc["components"].clone();
        let resolve = |v: &Value| -> Value {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => doc
                    .pointer(r.trim_start_matches('#'))
                    .cloned()
                    .unwrap_or(Value::Null),
                None => v.clone(),
            }
        };
        let mut checked = 0;
        let mut media = Vec::new();
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                for (_, response) in op["responses"].as_object().into_iter().flatten() {
                    let response = resolve(response);
                    for (_, m) in response["content"].as_object().into_iter().flatten() {
                        media.push(m.clone());
                    }
                }
                if let Some(content) = op.pointer("/requestBody/content") {
                    media.extend(content.as_object().unwrap().values().cloned());
                }
            }
        }
        for m in media {
            let root = json!({"$ref": "#/schema", "schema": m["schema"], "components": components});
            let validator = jsonschema::validator_for(&root).unwrap();
            for (name, example) in m["examples"].as_object().into_iter().flatten() {
                let value = resolve(example)["value"].clone();
                let errors: Vec<String> = validator
                    .iter_errors(&value)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "example {name}: {errors:?}");
                checked += 1;
            }
        }
        assert!(checked > 20, "{checked}");
    }

    #[test]
    fn validation_follows_the_document_not_the_code() {
        // Same body, two documents: only the constraint in the text differs.
        let body = json!({"to": "+447700900123", "from": "Acme", "body": "hello", "reference": "abcdefghij"});
        let original = Contract::embedded().unwrap();
        assert!(original.issues(RequestSchema::Send, &body).is_empty());

        let mut doc: Value = serde_norway::from_str(OPENAPI_YAML).unwrap();
        let reference = doc
            .pointer_mut("/components/schemas/Reference")
            .expect("components.schemas.Reference exists");
        reference["maxLength"] = json!(5);
        let changed = Contract::from_yaml(&serde_norway::to_string(&doc).unwrap()).unwrap();
        let v = changed.issues(RequestSchema::Send, &body);
        assert_eq!(pointers(&v), vec!["/reference"]);
    }
}
