//! Kong: the decK file of a step ([`render`]) and the checks decK does not
//! do ([`check`]): plugin settings, ranges, references and the phase
//! invariants, read back from the file itself.

pub mod check;
pub mod render;

pub use check::{KongFile, check_file};
pub use render::document;
