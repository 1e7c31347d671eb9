//! What downstream workers would consume: every message JetStream stored
//! in the orchestrator's default stream, by subject, with the time the
//! server stored it and the correlation id it carries. (A core NATS
//! subscription would also see publishes that no stream captured, which
//! is exactly what must not count as delivered.)

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

/// The orchestrator's defaults: the live stream and subject, the shadow
/// stream and subject (shadow events have a stream of their own).
#[derive(Debug, Clone)]
pub struct Subjects {
    pub stream: String,
    pub shadow_stream: String,
    pub live: String,
    pub shadow: String,
}

impl Subjects {
    pub fn defaults() -> Subjects {
        let c = orchestrator::config::Config::from_args(["orchestrator"]).expect("default config");
        Subjects {
            stream: c.nats.stream,
            shadow_stream: c.nats.shadow_stream,
            live: c.nats.subject,
            shadow: c.shadow.subject,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub subject: String,
    /// When JetStream stored it, seconds since the epoch.
    pub stored: f64,
    pub correlation_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct Events(pub Vec<Event>);

impl Events {
    /// Every message of both streams.
    pub async fn read_all(url: &str, streams: &[&str]) -> Events {
        let mut all = Vec::new();
        for stream in streams {
            all.extend(Events::read(url, stream).await.0);
        }
        Events(all)
    }

    /// Every message of `stream` on `url`, read with an ordered consumer.
    pub async fn read(url: &str, stream: &str) -> Events {
        let client = async_nats::connect(url).await.expect("nats");
        let js = async_nats::jetstream::new(client);
        let Ok(stream) = js.get_stream(stream).await else {
            return Events::default();
        };
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .expect("ordered consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut out = Vec::new();
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(1000), messages.next()).await
        {
            let correlation_id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("X-Correlation-ID"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            let stored = m
                .info()
                .map(|i| i.published.unix_timestamp_nanos() as f64 / 1e9)
                .unwrap_or_default();
            out.push(Event {
                subject: m.subject.to_string(),
                stored,
                correlation_id,
            });
        }
        Events(out)
    }

    /// Events per correlation id on `subject`.
    pub fn by_correlation(&self, subject: &str) -> HashMap<String, Vec<Event>> {
        let mut m: HashMap<String, Vec<Event>> = HashMap::new();
        for e in self.0.iter().filter(|e| e.subject == subject) {
            m.entry(e.correlation_id.clone())
                .or_default()
                .push(e.clone());
        }
        m
    }

    pub fn count(&self, subject: &str) -> usize {
        self.0.iter().filter(|e| e.subject == subject).count()
    }
}
