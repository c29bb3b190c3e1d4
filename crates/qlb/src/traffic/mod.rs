//! Client traffic for `qlb load` and `qlb demo`: request loops over [`qlb_client::Client`]s,
//! periodic connection migrations, a live progress line, and the [`Tally`] they fill.

mod engine;
mod migrate;
mod progress;
mod tally;

pub use engine::{Limit, Load, LoadSpec, LoadView};
pub use progress::Progress;
pub use tally::{Summary, Tally};
