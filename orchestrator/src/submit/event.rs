//! The event downstream SMS workers consume, `sms.outbound.request` v1.
//! Its JSON Schema is committed at `contracts/sms.outbound.request.v1.json`;
//! tests validate every published payload against it.

use serde::Serialize;

use crate::config::Config;
use crate::legacy::iso_timestamp;
use crate::store::{NewMessage, OutboxEvent};

/// Value of the payload's `schema` field.
pub const SCHEMA: &str = "sms.outbound.request.v1";

#[derive(Debug, Serialize)]
struct Payload<'a> {
    schema: &'static str,
    id: String,
    tenant_id: &'a str,
    to: &'a str,
    from: &'a str,
    body: &'a str,
    encoding: &'static str,
    segments: u32,
    reference: Option<&'a str>,
    callback_url: Option<&'a str>,
    schedule_at: Option<String>,
    validity_period: Option<u32>,
    metadata: Option<&'a serde_json::Map<String, serde_json::Value>>,
    correlation_id: &'a str,
    created_at: String,
}

/// The outbox row for a message: the real subject for live traffic, the
/// shadow subject for shadow traffic, none when shadow publishing is off.
pub fn outbox_event(config: &Config, m: &NewMessage) -> Option<OutboxEvent> {
    let subject = if m.shadow {
        if config.shadow.subject.is_empty() {
            return None;
        }
        config.shadow.subject.clone()
    } else {
        config.nats.subject.clone()
    };
    let payload = Payload {
        schema: SCHEMA,
        id: m.id.to_string(),
        tenant_id: m.tenant.as_str(),
        to: m.to.as_str(),
        from: m.from.as_str(),
        body: m.body.as_str(),
        encoding: m.body.encoding().as_str(),
        segments: m.body.segments(),
        reference: m.reference.as_deref(),
        callback_url: m.callback_url.as_deref(),
        schedule_at: m.schedule_at.map(iso_timestamp),
        validity_period: m.validity_period,
        metadata: m.metadata.as_ref(),
        correlation_id: &m.correlation_id,
        created_at: iso_timestamp(m.created_at),
    };
    let mut headers = vec![
        ("Nats-Msg-Id".to_owned(), m.id.to_string()),
        ("X-Tenant-Id".to_owned(), m.tenant.as_str().to_owned()),
        ("X-Correlation-ID".to_owned(), m.correlation_id.clone()),
    ];
    if m.shadow {
        headers.push(("X-Shadow-Request".to_owned(), "1".to_owned()));
    }
    Some(OutboxEvent {
        message_id: m.id,
        subject,
        headers,
        payload: serde_json::to_vec(&payload).unwrap_or_default(),
    })
}
