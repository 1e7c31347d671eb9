//! Domain types: the values a submit is made of, each proven valid once.
//!
//! The JSON Schema step checks a request's shape: which fields exist, which
//! are strings. It cannot say that a string is a phone number or how many
//! segments a text costs. That is the job of this module: every value a
//! submit carries is parsed into one of these types, and each type's only
//! constructor is `parse`. Invalid states are therefore unrepresentable;
//! code after the boundary takes a `PhoneNumber` and never checks it again.
//!
//! The types, in the order a submit meets them:
//!
//! 1. [`TenantId`]: who is calling, from the credential.
//! 2. [`IdempotencyKey`]: the `Idempotency-Key` header.
//! 3. [`PhoneNumber`]: the recipient, E.164.
//! 4. [`SenderId`]: the sender, alphanumeric, E.164 or a short code.
//! 5. [`MessageText`]: the body, with its encoding and the segments a
//!    carrier will bill for.
//! 6. [`MessageId`]: the id an accepted message gets (and a `GET` names),
//!    the legacy's ObjectId layout.
//!
//! Every `parse` fails with a [`DomainError`] whose detail is safe to send to
//! the client: it says which rule failed and never echoes a phone number or
//! message text. The caller knows which field it parsed and attaches the
//! JSON pointer.

mod idempotency_key;
mod message_id;
mod phone;
mod sender;
mod tenant;
mod text;

pub use idempotency_key::IdempotencyKey;
pub use message_id::{MessageId, MessageIds, process_ids};
pub use phone::PhoneNumber;
pub use sender::{SenderId, SenderKind};
pub use tenant::TenantId;
pub use text::{Encoding, MessageText};

/// A value that failed to parse into a domain type.
///
/// The detail is a short human sentence meant for the client (it ends up in
/// the problem+json `detail` or an `errors[]` entry). It names the rule that
/// failed, never the whole rejected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DomainError {
    detail: String,
}

impl DomainError {
    fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
        }
    }

    /// The client-safe explanation of which rule the value broke.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}
