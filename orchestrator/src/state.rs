//! What every handler shares, built once at start-up.

use std::ops::Deref;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::contract::Contract;
use crate::flag::SubmitFlag;
use crate::idempotency::IdempotencyCache;
use crate::metrics::Metrics;
use crate::relay::SinkHealth;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub contract: Contract,
    pub store: Store,
    pub cache: IdempotencyCache,
    pub auth: Authenticator,
    pub metrics: Metrics,
    pub flag: SubmitFlag,
    /// Wakes the relay after a commit that wrote outbox rows.
    pub relay_wake: Arc<Notify>,
    pub sink: SinkHealth,
    /// Checks every answer against the contract (`CHECK_RESPONSES`).
    pub conformance: Option<crate::conformance::Conformance>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
