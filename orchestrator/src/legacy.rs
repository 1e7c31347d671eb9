//! The legacy api-gateway's surface as data: the contract's `x-legacy`
//! section (`orchestrator/openapi.yaml`), loaded once at start-up.
//!
//! Everything a client could notice that is a fixed fact of the old
//! service lives there, not in code: the error bodies (key order
//! included), the validation messages and their order, the static
//! headers, the body size limit, the Node release whose `JSON.parse`
//! wording malformed-JSON messages use. Code here only fills templates.
//! An SRE who captures the real gateway's answers corrects the YAML.

use std::collections::HashMap;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use crate::node_json::JsString;

/// The legacy surface of one loaded contract.
#[derive(Debug, Clone)]
pub struct Surface {
    /// body-parser's limit, the default for both POST routes.
    pub body_limit: usize,
    /// Headers on every answer (`X-Powered-By: Express`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `application/json; charset=utf-8`.
    pub content_type: HeaderValue,
    errors: HashMap<String, ErrorTemplate>,
    validation: Validation,
}

/// One error's status and body template.
#[derive(Debug, Clone)]
pub struct ErrorTemplate {
    pub status: StatusCode,
    body: Value,
}

#[derive(Debug, Clone)]
struct Validation {
    unknown_property: String,
    not_an_object: String,
    item_not_an_object: String,
    /// field → (JSON Schema keyword or `default`) → message.
    fields: HashMap<String, HashMap<String, String>>,
}

/// The values a template may name.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub messages: Vec<String>,
    pub parser: Option<JsString>,
    pub charset: Option<String>,
    pub method: Option<String>,
    pub url: Option<String>,
    pub param: Option<String>,
}

/// Every error kind the code raises; each must have a template.
pub const ERROR_KINDS: &[&str] = &[
    "validation-failed",
    "malformed-json",
    "duplicate-key",
    "unsupported-media-type",
    "payload-too-large",
    "request-timeout",
    "path-param-invalid",
    "tenant-header-missing",
    "idempotency-key-invalid",
    "idempotency-key-missing",
    "invalid-token",
    "tenant-mismatch",
    "shadow-credential-invalid",
    "not-found",
    "unknown-route",
    "submit-api-disabled",
    "idempotency-key-in-flight",
    "idempotency-key-reused",
    "internal",
    "storage-unavailable",
];

impl Surface {
    /// Reads `x-legacy` from the contract document. Fails on anything
    /// missing or malformed: better not to start than to answer in a shape
    /// nobody wrote down.
    pub fn from_document(document: &Value) -> anyhow::Result<Self> {
        let x = document
            .get("x-legacy")
            .ok_or_else(|| anyhow::anyhow!("the contract has no x-legacy section"))?;
        let text = |pointer: &str| -> anyhow::Result<String> {
            x.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("x-legacy{pointer} missing or not a string"))
        };
        let node = text("/runtime/node")?;
        anyhow::ensure!(
            node == crate::node_json::NODE_MAJOR,
            "x-legacy.runtime.node is {node:?}, but this build speaks only Node {}'s JSON.parse",
            crate::node_json::NODE_MAJOR
        );
        anyhow::ensure!(
            text("/etag")? == "weak",
            "x-legacy.etag: only Express's default `weak` is implemented"
        );
        let body_limit = x
            .get("body_limit_bytes")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| anyhow::anyhow!("x-legacy.body_limit_bytes missing"))?;
        let mut headers = Vec::new();
        for (name, value) in x
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let value = value
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("x-legacy.headers.{name} is not a string"))?;
            headers.push((
                HeaderName::try_from(name.as_str())?,
                HeaderValue::try_from(value)?,
            ));
        }
        let content_type = HeaderValue::try_from(text("/content_type")?)?;
        let mut errors = HashMap::new();
        for (kind, e) in x
            .get("errors")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow::anyhow!("x-legacy.errors missing"))?
        {
            let status = e
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .ok_or_else(|| anyhow::anyhow!("x-legacy.errors.{kind}.status"))?;
            let body = e
                .get("body")
                .filter(|b| b.is_object())
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("x-legacy.errors.{kind}.body must be an object"))?;
            errors.insert(kind.clone(), ErrorTemplate { status, body });
        }
        if let Some(missing) = ERROR_KINDS.iter().find(|k| !errors.contains_key(**k)) {
            anyhow::bail!("x-legacy.errors has no template for {missing}");
        }
        let mut fields = HashMap::new();
        for (field, m) in x
            .pointer("/validation/fields")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow::anyhow!("x-legacy.validation.fields missing"))?
        {
            let by_rule: HashMap<String, String> = match m {
                Value::String(s) => HashMap::from([("default".to_owned(), s.clone())]),
                Value::Object(o) => o
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect(),
                _ => anyhow::bail!("x-legacy.validation.fields.{field}"),
            };
            anyhow::ensure!(
                by_rule.contains_key("default"),
                "x-legacy.validation.fields.{field} has no default message"
            );
            fields.insert(field.clone(), by_rule);
        }
        Ok(Self {
            body_limit,
            headers,
            content_type,
            errors,
            validation: Validation {
                unknown_property: text("/validation/unknown_property")?,
                not_an_object: text("/validation/not_an_object")?,
                item_not_an_object: text("/validation/item_not_an_object")?,
                fields,
            },
        })
    }

    /// The template of an error kind (one of [`ERROR_KINDS`]).
    pub fn error(&self, kind: &str) -> &ErrorTemplate {
        // Every kind was checked at load time.
        self.errors
            .get(kind)
            .or_else(|| self.errors.get("internal"))
            .unwrap_or_else(|| unreachable!("x-legacy checked at start-up"))
    }

    /// `property colour should not exist`, after the nesting prefix.
    pub fn unknown_property(&self, prefix: &str, property: &str) -> String {
        format!(
            "{prefix}{}",
            self.validation
                .unknown_property
                .replace("${property}", property)
        )
    }

    /// The request (or a bulk item) is not a JSON object.
    pub fn not_an_object(&self, prefix: &str) -> String {
        if prefix.is_empty() {
            self.validation.not_an_object.clone()
        } else {
            format!(
                "{} {}",
                prefix.trim_end_matches('.'),
                self.validation.item_not_an_object
            )
        }
    }

    /// The message of an invalid `field` that broke `rule` (a JSON Schema
    /// keyword, or `domain`).
    pub fn field(&self, prefix: &str, field: &str, rule: &str, max: usize) -> String {
        let message = self
            .validation
            .fields
            .get(field)
            .and_then(|m| m.get(rule).or_else(|| m.get("default")))
            .cloned()
            .unwrap_or_else(|| format!("{field} is invalid"));
        format!("{prefix}{}", message.replace("${max}", &max.to_string()))
    }
}

/// A timestamp as JavaScript's `Date.prototype.toISOString()` writes it,
/// the only form clients and workers ever saw: UTC, milliseconds, `Z`
/// (`2026-05-01T12:00:00.123Z`).
pub fn iso_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl ErrorTemplate {
    /// The body, as the legacy wrote it (`JSON.stringify` of the template
    /// with the placeholders filled).
    pub fn render(&self, vars: &Vars) -> Vec<u8> {
        let mut out = String::new();
        write_value(&self.body, vars, &mut out);
        out.into_bytes()
    }
}

fn write_value(v: &Value, vars: &Vars, out: &mut String) {
    match v {
        Value::String(s) if s == "${messages}" => {
            out.push_str(&serde_json::to_string(&vars.messages).unwrap_or_default());
        }
        Value::String(s) => out.push_str(&fill(s, vars).to_json()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, vars, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                write_value(item, vars, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `${name}` placeholders replaced; the parser's message may hold lone
/// surrogates, so the result is a JavaScript string.
fn fill(template: &str, vars: &Vars) -> JsString {
    let mut out = JsString::default();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + end];
        match name {
            "parser" => {
                if let Some(p) = &vars.parser {
                    out.push_js(p);
                }
            }
            "charset" => out.push_str(vars.charset.as_deref().unwrap_or_default()),
            "method" => out.push_str(vars.method.as_deref().unwrap_or_default()),
            "url" => out.push_str(vars.url.as_deref().unwrap_or_default()),
            "param" => out.push_str(vars.param.as_deref().unwrap_or_default()),
            other => out.push_str(&format!("${{{other}}}")),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surface() -> Surface {
        crate::contract::Contract::embedded()
            .unwrap()
            .legacy()
            .clone()
    }

    #[test]
    fn every_template_states_its_own_status() {
        let s = surface();
        for kind in ERROR_KINDS {
            let t = s.error(kind);
            let body: Value = serde_json::from_slice(&t.render(&Vars::default())).unwrap();
            assert_eq!(body["statusCode"], t.status.as_u16(), "{kind}");
        }
    }

    #[test]
    fn templates_keep_their_key_order_and_fill_placeholders() {
        let s = surface();
        let body = s.error("validation-failed").render(&Vars {
            messages: vec!["to must be a valid phone number".into()],
            ..Vars::default()
        });
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"message":["to must be a valid phone number"],"error":"Bad Request","statusCode":400}"#
        );
        let body = s.error("unknown-route").render(&Vars {
            method: Some("GET".into()),
            url: Some("/v1/nothing?x=1".into()),
            ..Vars::default()
        });
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"message":"Cannot GET /v1/nothing?x=1","error":"Not Found","statusCode":404}"#
        );
        let body = s.error("payload-too-large").render(&Vars::default());
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"statusCode":413,"message":"request entity too large"}"#
        );
        let body = s.error("request-timeout").render(&Vars::default());
        assert_eq!(s.error("request-timeout").status.as_u16(), 408);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"message":"Request Timeout","statusCode":408}"#
        );
    }

    #[test]
    fn a_wrong_node_version_refuses_to_load() {
        let mut doc: Value = serde_norway::from_str(crate::contract::OPENAPI_YAML).unwrap();
        doc["x-legacy"]["runtime"]["node"] = Value::String("18".into());
        let e = Surface::from_document(&doc).unwrap_err().to_string();
        assert!(e.contains("Node"), "{e}");
    }

    #[test]
    fn a_missing_template_refuses_to_load() {
        let mut doc: Value = serde_norway::from_str(crate::contract::OPENAPI_YAML).unwrap();
        doc["x-legacy"]["errors"]
            .as_object_mut()
            .unwrap()
            .remove("not-found");
        assert!(Surface::from_document(&doc).is_err());
    }

    #[test]
    fn field_messages_use_the_rule_then_the_default_and_carry_the_prefix() {
        let s = surface();
        assert_eq!(
            s.field("", "reference", "type", 1000),
            "reference must be a string"
        );
        assert!(
            s.field("messages.2.", "reference", "maxLength", 1000)
                .starts_with("messages.2.reference must be longer")
        );
        assert_eq!(
            s.field("", "messages", "maxItems", 3),
            "messages must contain no more than 3 elements"
        );
        assert_eq!(
            s.unknown_property("messages.0.", "colour"),
            "messages.0.property colour should not exist"
        );
        assert_eq!(
            s.not_an_object("messages.4."),
            "messages.4 must be an object"
        );
    }
}
