//! # orchestrator
//!
//! The SMS platform's submit endpoint after the api-gateway's retirement:
//! Kong does the edge (TLS, JWT, key-auth, rate limits, correlation ids);
//! this service owns validation, Idempotency-Key storage, tenant
//! re-validation and publishing `sms.outbound.request` to NATS.
//!
//! ## Layout: a submit, in the order it meets the code
//!
//! 1. [`flag`]: `SUBMIT_API_ENABLED` gate (phase 0 of the migration plan).
//! 2. [`correlation`]: correlation id in and out; request log and metrics.
//! 3. [`auth`]: the JWT is verified again and `X-Tenant-Id` held to its
//!    claim; [`shadow`] classifies mirrored traffic.
//! 4. [`contract`] then [`domain`]: JSON Schema from the committed OpenAPI,
//!    then parse-don't-validate types ([`submit::parse`]).
//! 5. [`idempotency`] and [`store`]: key, messages and outbox rows in one
//!    transaction ([`submit::accept`]); `202` after commit.
//! 6. [`relay`]: outbox → JetStream ([`event_sink`]), woken on commit; [`status_events`]
//!    bring delivery statuses back; [`reaper`] enforces retention.
//!
//! Around them: [`config`] (and [`secret`]: `*_FILE`, never printed), [`startup`] (build + run, graceful shutdown),
//! [`routes`] (the API and admin routers), [`reload`] (SIGHUP), [`problem`] (every error as
//! problem+json, from one place), [`metrics`], [`telemetry`], [`dev`].

pub mod auth;
pub mod contract;
pub mod correlation;
pub mod domain;
pub mod event_sink;
pub mod flag;
pub mod idempotency;
pub mod reaper;
pub mod relay;
pub mod shadow;
pub mod status_events;
pub mod store;
pub mod submit;

pub mod config;
pub mod dev;
pub mod metrics;
pub mod problem;
pub mod reload;
pub mod routes;
pub mod secret;
pub mod startup;
pub mod state;
pub mod telemetry;
