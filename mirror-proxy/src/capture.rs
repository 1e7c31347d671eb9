//! The primary's answer, as the diff needs it: status, headers and body up
//! to a cap, copied as the response streams to the client. Only done for
//! requests that were mirrored.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use compare::RecordedResponse;
use http::{HeaderMap, StatusCode};

use crate::tee::PrimaryOutcome;

#[derive(Debug)]
pub struct PrimaryCapture {
    status: StatusCode,
    headers: HeaderMap,
    body: BytesMut,
    cap: usize,
    over_cap: bool,
    complete: bool,
}

impl PrimaryCapture {
    pub fn new(status: StatusCode, headers: HeaderMap, cap: usize) -> Self {
        Self {
            status,
            headers,
            body: BytesMut::new(),
            cap,
            over_cap: false,
            complete: false,
        }
    }

    pub fn push(&mut self, chunk: Option<&Bytes>, end_of_stream: bool) {
        if let Some(chunk) = chunk
            && !self.over_cap
        {
            if self.body.len() + chunk.len() > self.cap {
                self.over_cap = true;
                self.body = BytesMut::new();
            } else {
                self.body.extend_from_slice(chunk);
            }
        }
        self.complete |= end_of_stream;
    }

    /// The outcome once the client's response is done. `failed`: the proxy
    /// phase ended with an error.
    pub fn finish(self, started: Instant, failed: bool) -> PrimaryOutcome {
        if failed && !self.complete {
            return PrimaryOutcome::Failed;
        }
        if self.over_cap {
            return PrimaryOutcome::TooLarge;
        }
        PrimaryOutcome::Complete(RecordedResponse {
            status: self.status,
            headers: self.headers,
            body: self.body.freeze(),
            latency: started.elapsed(),
        })
    }
}
