//! `compare`: decides whether the orchestrator answers like the legacy
//! api-gateway did, and whether the cutover may move from shadow to canary.
//!
//! The same library runs live inside the mirror proxy (one [`Differ::diff`]
//! per mirrored request, on its background task) and offline in the
//! `compare` CLI. The modules, in the order traffic meets them:
//!
//! 1. [`capture`]: read recorded requests (the mirror proxy's JSONL capture,
//!    HAR 1.2, GoReplay files);
//! 2. [`replay`]: send them, rate-controlled, to the primary, the candidate
//!    and optionally a secondary, honouring write safety;
//! 3. [`exchange`]: the request and both answers, as the diff engine sees
//!    them;
//! 4. [`rules`]: the compiled comparison rules (TOML, per route);
//! 5. [`diff`]: the diff engine, producing a [`DiffRecord`] ([`record`]);
//! 6. [`redact`]: hash personal data and drop credentials before anything
//!    is written;
//! 7. [`difflog`]: the JSONL diff log;
//! 8. [`events`]: the same diff for NATS events (legacy subject vs shadow
//!    subject, paired by correlation id);
//! 9. [`report`]: per-route diff rates with confidence intervals, HTML /
//!    Markdown / JSON reports and the go/no-go gate;
//! 10. [`noise`]: learning noisy paths from a diff log and writing accepted
//!     ones into the rules file.
//!
//! The library never panics on input data and exposes only `thiserror`
//! errors ([`error`]).

pub mod capture;
pub mod diff;
pub mod difflog;
pub mod error;
pub mod events;
pub mod exchange;
mod lines;
pub mod noise;
pub mod record;
pub mod redact;
pub mod replay;
pub mod report;
pub mod rules;
pub mod template;

pub use diff::{Differ, KeepRequest};
pub use difflog::{DiffLogWriter, Redaction};
pub use exchange::{Exchange, RecordedRequest, RecordedResponse};
pub use record::{BodyDiff, Category, DiffKind, DiffRecord, HeaderDiff, Verdict};
pub use redact::Redactor;
pub use rules::Rules;
