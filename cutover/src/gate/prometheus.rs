//! The Prometheus HTTP API, as much as the gate needs: instant queries.

use std::time::Duration;

use serde::Deserialize;

use super::expr::{Labels, Vector};
use crate::error::CutoverError;

#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct Sample {
    metric: Labels,
    value: (f64, String),
}

impl Prometheus {
    pub fn new(base: &str) -> Result<Self, CutoverError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| CutoverError::Prometheus(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// An instant query at the server's now. A scalar comes back as one
    /// sample without labels.
    pub async fn query(&self, promql: &str) -> Result<Vector, CutoverError> {
        let url = format!("{}/api/v1/query", self.base);
        let with_query = reqwest::Url::parse_with_params(&url, &[("query", promql)])
            .map_err(|e| CutoverError::Prometheus(format!("{url}: {e}")))?;
        let response = self
            .http
            .get(with_query)
            .send()
            .await
            .map_err(|e| CutoverError::Prometheus(format!("{url}: {e}")))?;
        let status = response.status();
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| CutoverError::Prometheus(format!("{url}: HTTP {status}, {e}")))?;
        if answer.status != "success" {
            return Err(CutoverError::Prometheus(format!(
                "query {promql:?} failed: {}",
                answer.error.unwrap_or_default()
            )));
        }
        let parse = |s: &str| match s {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or(f64::NAN),
        };
        match answer.data {
            Some(Data::Vector(samples)) => Ok(samples
                .into_iter()
                .map(|s| {
                    let mut labels = s.metric;
                    labels.remove("__name__");
                    (labels, parse(&s.value.1))
                })
                .collect()),
            Some(Data::Scalar((_, v))) => Ok(vec![(Labels::new(), parse(&v))]),
            _ => Err(CutoverError::Prometheus(format!(
                "query {promql:?} did not return an instant vector"
            ))),
        }
    }
}
