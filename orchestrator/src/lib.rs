//! # orchestrator
//!
//! The SMS platform's submit endpoint after the api-gateway's retirement:
//! Kong does the edge (TLS, JWT, key-auth, rate limits, correlation ids);
//! this service owns validation, Idempotency-Key storage, tenant
//! re-validation and publishing `sms.outbound.request` to NATS.
//!
//! ## Layout: a submit, in the order it meets the code
//!
//! The answers are the legacy api-gateway's, as the committed contract
//! (`openapi.yaml`, its `x-legacy` data read by [`legacy`]) writes them down.
//!
//! 1. [`correlation`]: correlation id in; request log and metrics.
//! 2. [`problem`] and [`express`]: around everything below, errors are
//!    rendered in the negotiated envelope (the legacy's NestJS body, or
//!    RFC 9457 on `Accept: application/problem+json`) and every answer is
//!    finished as Express did (`X-Powered-By`, weak `ETag`, `304`).
//!    [`conformance`] checks each answer against the contract when asked.
//! 3. [`body`]: the JSON body, read once before routing, as body-parser and
//!    Node's `JSON.parse` did ([`node_json`]), duplicate keys refused.
//! 4. [`routes`]: Express's routing (any case, a trailing slash, no `405`);
//!    [`flag`]: the `SUBMIT_API_ENABLED` gate.
//! 5. [`auth`]: the JWT is verified again and `X-Tenant-Id` held to its
//!    claim; [`shadow`] classifies mirrored traffic.
//! 6. [`contract`] then [`domain`]: JSON Schema from the committed OpenAPI,
//!    then parse-don't-validate types ([`submit::parse`]), every violation
//!    at once.
//! 7. [`idempotency`] and [`store`]: key, messages and outbox rows in one
//!    transaction ([`submit::accept`]); `201` after commit.
//! 8. [`relay`]: outbox → JetStream ([`event_sink`]), woken on commit;
//!    [`status_events`] bring delivery statuses back; [`reaper`] enforces
//!    retention.
//!
//! Around them: [`config`] (and [`secret`]: `*_FILE`, never printed;
//! [`cause`]: an error and its causes on one line),
//! [`startup`] (build + run, graceful shutdown), [`server`] (hyper with
//! header timeouts and size limits), [`reload`] (SIGHUP),
//! [`metrics`], [`telemetry`], [`dev`].

pub mod auth;
pub mod body;
pub mod contract;
pub mod correlation;
pub mod domain;
pub mod event_sink;
pub mod flag;
pub mod idempotency;
pub mod legacy;
pub mod node_json;
pub mod reaper;
pub mod relay;
pub mod shadow;
pub mod status_events;
pub mod store;
pub mod submit;

pub mod cause;
pub mod config;
pub mod conformance;
pub mod dev;
pub mod express;
pub mod metrics;
pub mod problem;
pub mod reload;
pub mod routes;
pub mod secret;
pub mod server;
pub mod startup;
pub mod state;
pub mod telemetry;
